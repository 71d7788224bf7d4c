//! clinic-service binary: `clinic-service` serves; `clinic-service migrate` migrates every
//! tenant database (and each server's template and outdated spare databases), prints one line
//! per tenant and exits non-zero if any failed; `clinic-service reconcile` re-publishes every tenant's members to the central
//! index (repairing drift), one line per tenant, non-zero if any failed; `clinic-service audit
//! verify [--org ID]` checks every tenant's audit chain (or one's) against its central
//! checkpoint, one line per tenant naming the first broken position, non-zero if any is broken;
//! `clinic-service audit export --org ID --since RFC3339` writes that tenant's events since then
//! to stdout as FHIR R4 `AuditEvent` JSON lines.

use std::process::ExitCode;

use clinic_service::{Application, Config, audit, relay, startup, tenancy};

#[tokio::main]
async fn main() -> ExitCode {
    let telemetry = clinic_shared::telemetry::init("clinic-service");
    let code = run().await;
    telemetry.shutdown().await;
    code
}

async fn run() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(e) => {
            eprintln!("configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match std::env::args().nth(1).as_deref() {
        None | Some("serve") => serve(config).await,
        Some("migrate") => migrate(config).await,
        Some("reconcile") => reconcile(config).await,
        Some("audit") => {
            let args: Vec<String> = std::env::args().skip(2).collect();
            match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
                ["verify"] => verify(config, None).await,
                ["verify", "--org", id] => match id.parse() {
                    Ok(id) => verify(config, Some(id)).await,
                    Err(_) => {
                        eprintln!("--org takes an organization id (UUID)");
                        return ExitCode::from(2);
                    }
                },
                ["export", "--org", id, "--since", since] => {
                    let id = id.parse();
                    let since = chrono::DateTime::parse_from_rfc3339(since);
                    match (id, since) {
                        (Ok(id), Ok(since)) => export(config, id, since.to_utc()).await,
                        _ => {
                            eprintln!("--org takes a UUID, --since an RFC 3339 time");
                            return ExitCode::from(2);
                        }
                    }
                }
                _ => {
                    eprintln!(
                        "usage: clinic-service audit verify [--org ID] | \
                         audit export --org ID --since RFC3339"
                    );
                    return ExitCode::from(2);
                }
            }
        }
        Some(other) => {
            eprintln!(
                "unknown command {other:?}; usage: clinic-service [serve|migrate|reconcile|audit]"
            );
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("clinic-service: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(config: Config) -> Result<ExitCode, clinic_service::Error> {
    let app = Application::build(config).await?;
    // On stdout, so whoever started the process (scripts, the end-to-end test) learns the port.
    println!("clinic-service listening on {}", app.address());
    app.run_until_stopped().await?;
    Ok(ExitCode::SUCCESS)
}

async fn migrate(config: Config) -> Result<ExitCode, clinic_service::Error> {
    let access = startup::tenant_access(&config)?;
    let mut failed = 0;
    for server in access.server_keys().to_vec() {
        match tenancy::provisioning::ensure_template(&access, &server).await {
            Ok(()) => println!("template {server}: ok"),
            Err(e) => {
                failed += 1;
                println!("template {server}: FAILED {e}");
            }
        }
    }
    for server in access.server_keys().to_vec() {
        match tenancy::spares::migrate_spares(&access, &server).await {
            Ok(spares) => {
                for s in spares {
                    match s.result {
                        Ok(n) => println!("spare {server}/{}: ok, {n} applied", s.database),
                        Err(e) => {
                            failed += 1;
                            println!(
                                "spare {server}/{}: FAILED {e} (it will be replaced)",
                                s.database
                            );
                        }
                    }
                }
            }
            Err(e) => {
                failed += 1;
                println!("spares {server}: FAILED {e}");
            }
        }
    }
    let results = tenancy::migrations::migrate_all(&access, config.migration_concurrency).await?;
    for r in &results {
        match &r.result {
            Ok(n) => println!("{} {}/{}: ok, {n} applied", r.organization_id, r.server, r.database),
            Err(e) => {
                failed += 1;
                println!("{} {}/{}: FAILED {e}", r.organization_id, r.server, r.database);
            }
        }
    }
    println!("{} tenants, {failed} failed", results.len());
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn reconcile(config: Config) -> Result<ExitCode, clinic_service::Error> {
    let access = startup::tenant_access(&config)?;
    let reports = relay::reconcile::reconcile_all(&access).await?;
    let mut failed = 0;
    for r in &reports {
        match &r.result {
            Ok((published, removed)) => {
                println!("{}: ok, {published} published, {removed} removed", r.organization_id)
            }
            Err(e) => {
                failed += 1;
                println!("{}: FAILED {e}", r.organization_id);
            }
        }
    }
    println!("{} tenants, {failed} failed", reports.len());
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn verify(
    config: Config,
    organization: Option<uuid::Uuid>,
) -> Result<ExitCode, clinic_service::Error> {
    let access = startup::tenant_access(&config)?;
    let orgs = match organization {
        Some(id) => vec![access.organization(id).await?],
        None => relay::reconcile::active_organizations(&access).await?,
    };
    let mut failed = 0;
    for org in &orgs {
        match audit::verify::verify(&access, org).await {
            Ok(report) => {
                let counts = format!(
                    "{} sealed, {} unsealed (not yet provable), checkpoint {}",
                    report.sealed,
                    report.unsealed,
                    report.checkpoint.map_or("none".to_owned(), |c| c.to_string())
                );
                match report.broken {
                    None => println!("{}: ok, {counts}", org.id),
                    Some(b) => {
                        failed += 1;
                        let event = b.event_id.map(|e| format!(" (event {e})")).unwrap_or_default();
                        println!(
                            "{}: BROKEN at seq {}{event}: {}; {counts}",
                            org.id, b.seq, b.reason
                        );
                    }
                }
            }
            Err(e) => {
                failed += 1;
                println!("{}: FAILED {e}", org.id);
            }
        }
    }
    println!("{} tenants, {failed} failed", orgs.len());
    Ok(if failed == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

async fn export(
    config: Config,
    organization: uuid::Uuid,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<ExitCode, clinic_service::Error> {
    let access = startup::tenant_access(&config)?;
    let org = access.organization(organization).await?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let n = audit::export::export(&access, &org, since, &mut out).await?;
    eprintln!("{n} events exported");
    Ok(ExitCode::SUCCESS)
}
