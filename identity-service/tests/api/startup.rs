use clinic_shared::pg::TestDatabase;
use identity_service::{Application, Config};
use tonic::transport::Endpoint;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

#[tokio::test]
async fn two_instances_starting_together_migrate_once() {
    let database = TestDatabase::create(&TestDatabase::server(), "identity_test").await;
    let (a, b) = tokio::join!(
        Application::build(Config::for_tests(database.config.clone())),
        Application::build(Config::for_tests(database.config.clone())),
    );
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_ne!(a.address(), b.address());
    let client = clinic_shared::pg::connect(&database.config).await.unwrap();
    let row = client
        .query_one("SELECT count(*), count(DISTINCT version) FROM refinery_schema_history", &[])
        .await
        .unwrap();
    let (applied, distinct): (i64, i64) = (row.get(0), row.get(1));
    assert!(applied >= 2, "every migration applied");
    assert_eq!(applied, distinct, "each migration applied once");
}

#[tokio::test]
async fn the_shutdown_handle_stops_the_server_gracefully() {
    let database = TestDatabase::create(&TestDatabase::server(), "identity_test").await;
    let app = Application::build(Config::for_tests(database.config.clone())).await.unwrap();
    let (address, handle) = (app.address(), app.shutdown_handle());
    let server = tokio::spawn(app.run_until_stopped());
    let endpoint = Endpoint::from_shared(format!("http://{address}")).unwrap();
    let mut health = HealthClient::new(endpoint.connect().await.unwrap());
    health.check(HealthCheckRequest::default()).await.unwrap();
    handle.shutdown();
    server.await.unwrap().unwrap();
    assert!(endpoint.connect().await.is_err());
}

#[tokio::test]
async fn production_refuses_to_run_as_a_superuser() {
    let database = TestDatabase::create(&TestDatabase::server(), "identity_test").await;
    let mut config = Config::for_tests(database.config.clone());
    config.mode = clinic_shared::config::Mode::Production;
    let Err(error) = Application::build(config).await else {
        panic!("production identity-service started as the superuser");
    };
    assert!(error.to_string().contains("superuser or CREATEROLE"), "{error}");
}
