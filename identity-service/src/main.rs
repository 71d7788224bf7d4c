//! identity-service binary: configuration from the environment, then the application.

use std::io::Write as _;

use identity_service::{Application, Config};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let telemetry = clinic_shared::telemetry::init("identity-service");
    let served = serve().await;
    telemetry.shutdown().await;
    served
}

async fn serve() -> Result<(), Box<dyn std::error::Error>> {
    let config = Config::from_env()?;
    let app = Application::build(config).await?;
    // Scripts and tests read these lines; a closed stdout must not stop the server.
    let mut out = std::io::stdout();
    let _ = writeln!(out, "identity-service listening on {}", app.address());
    let _ = writeln!(out, "identity-service internal listener on {}", app.internal_address());
    let _ = out.flush();
    app.run_until_stopped().await?;
    Ok(())
}
