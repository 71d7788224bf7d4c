//! identity-service binary: configuration from the environment, then the application.

use identity_service::{Application, Config};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    clinic_shared::telemetry::init();
    let config = Config::from_env()?;
    let app = Application::build(config).await?;
    println!("identity-service listening on {}", app.address());
    app.run_until_stopped().await?;
    Ok(())
}
