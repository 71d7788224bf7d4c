//! Creating a clinic's database. Every step is idempotent, so retrying `CreateOrganization`
//! after a crash at any point completes the work:
//!
//! 1. the central register reserves the organization (PROVISIONING) and places it on a server
//!    — before any database exists, so no database is ever without its organization — and, in
//!    the same transaction, claims one of that server's READY spare databases (see `spares`);
//!    a retry gets the same claim back;
//! 2. the database comes into place: when `clinic_<slug>` exists this already happened; else the
//!    claimed spare, if it still exists, is renamed to it (no data copied); else it is cloned
//!    from the template, a database kept at the latest migration (cloning costs about one
//!    `CREATE DATABASE`), and inherits the template's schema marker;
//! 3. migrations run on it only when it lacks the current marker (a fresh spare or clone has
//!    it; a database created without them is repaired), and it gets its own login role, the
//!    only one besides its owner that may connect to it — unless it was a spare that came with
//!    its role and grants (recorded with the organization at the claim);
//! 4. the creator becomes its admin (once), while the membership is recorded centrally — for
//!    the spare this process keeps armed (see `spares`), before the rename, through the warm
//!    connection that staged the row while the reservation ran;
//! 5. the organization is marked ACTIVE (which forgets the claimed spare).
//!
//! The server's pooled maintenance connection and one tenant connection (the tenant's pool, or
//! its owner's when grants are due or a fresh clone gets its admin row) serve steps 2 to 4.

use clinic_shared::pg::RowExt;
use tokio_postgres::{Client, GenericClient, error::SqlState, types::Type};

use super::{
    Caller, Location, OrgRecord, OrgStatus, TenantAccess,
    login::{PreparedLogin, TenantLogins},
    migrations,
    pools::RawConnection,
};
use crate::{auth::Person, error::Error, metrics::MigrationTarget, roles::Role};

/// Advisory lock key (taken in a server's maintenance database) guarding its template:
/// exclusive while migrating it, shared while cloning it ("clinictp"). Session-level, on a
/// maintenance connection of its own that is closed afterwards, or when a cancelled call drops
/// it: the lock never outlives the operation (the same holds for the login-role lock in
/// `login.rs`).
const TEMPLATE_LOCK: i64 = 0x636c_696e_6963_7470;

/// Creates (or finishes creating) the organization `name` for `claims`' user. Returns it with
/// the creator's membership as its admin row was written (`None` when this call wrote none: the
/// organization was active already, or a racing retry wrote it).
#[tracing::instrument(skip_all, fields(organization_id))]
pub async fn create_organization(
    access: &TenantAccess,
    user_id: uuid::Uuid,
    person: impl std::future::Future<Output = Result<Person, Error>>,
    name: &str,
) -> Result<(OrgRecord, Option<Caller>), Error> {
    let claim = access.spares().enabled();
    let started = std::time::Instant::now();
    let servers = access.server_keys().to_vec();
    let armed: Vec<Armed> = servers
        .iter()
        .filter_map(|server| {
            let (spare, conn) = access.pools().take_armed(server)?;
            Some(Armed { server: server.clone(), spare, conn, staged: None })
        })
        .collect();
    let preferred = armed.iter().map(|a| a.spare.clone()).collect();
    // Who the caller is (identity-service re-checks their session) is asked alongside the
    // reservation, which checks their verified email itself (no row for an unverified one).
    // The answer stages the admin row in each armed spare, uncommitted, while the reservation
    // runs: the one claimed commits it, the others roll back and stay armed. A session revoked
    // within the revocation stream's delay may leave a PROVISIONING row, which only its creator
    // can see or complete.
    let reserve = async {
        let reserved =
            access.identity().reserve_organization(name, user_id, servers, claim, preferred).await;
        tracing::debug!(reserved_ms = ms(started.elapsed()), "reservation answered");
        reserved
    };
    let staging = async {
        let staged = match person.await {
            Ok(person) => {
                let staged = armed.into_iter().map(|a| a.stage(&person));
                let armed = futures::future::join_all(staged).await;
                (Ok(person), armed)
            }
            Err(e) => (Err(e), armed),
        };
        tracing::debug!(staged_ms = ms(started.elapsed()), "caller known, admin staged");
        staged
    };
    let (reserved, (person, armed)) = tokio::join!(reserve, staging);
    let outcome = async {
        let claims = person?;
        if !claims.email_verified {
            return Err(Error::PermissionDenied("verify your email address first".into()));
        }
        let reserved = reserved?;
        let spare = spare_name(&reserved.spare_database_name)?.map(str::to_owned);
        let org = OrgRecord::try_from(
            reserved.organization.ok_or_else(|| Error::Internal("Reserve without a row".into()))?,
        )?;
        Ok((claims, reserved.created, spare, org))
    }
    .await;
    // The armed spare this creation claimed commits its admin row; the others roll back and
    // are armed again, unless this reservation claimed on their server and did not get them
    // (then they are no longer READY: another replica's claim).
    let mut used = None;
    for a in armed {
        let (claimed, taken) = match outcome.as_ref() {
            Ok((_, created, spare, org)) if org.location.server == a.server => {
                let claimed = spare.as_deref() == Some(a.spare.as_str());
                (claimed, *created && claim && !claimed)
            }
            _ => (false, false),
        };
        if claimed && used.is_none() {
            match a.commit().await {
                Ok(committed) => used = Some(committed),
                Err(e) => tracing::debug!(error = %e, "admin not committed in the armed spare"),
            }
        } else {
            a.rollback(access, !taken).await;
        }
    }
    let (claims, created, spare, org) = outcome?;
    tracing::Span::current().record("organization_id", tracing::field::display(org.id));
    if org.creator.is_some_and(|c| c != claims.user_id) {
        return Err(Error::AlreadyExists("an organization with this name exists".into()));
    }
    if org.status == OrgStatus::Active {
        return Ok((org, None));
    }
    if claim && created {
        // A spare was taken (or none was left): top the server up in the background.
        access.spares().wake();
    }
    let membership =
        access.identity().record_membership(org.id, claims.user_id, Role::Admin.to_membership(), 0);
    let reserve_ms = ms(started.elapsed());
    let provisioned = provision_database(access, &org.location, spare.as_deref(), &claims, used);
    let (admin, membership) = tokio::join!(provisioned, membership);
    let admin = admin?;
    membership?;
    let tenant_ms = ms(started.elapsed()) - reserve_ms;
    let active = access.identity().activate_organization(org.id).await?;
    let total_ms = ms(started.elapsed());
    if claim {
        // The next spare is armed when this one's warm connection was used (see `spares`).
        let (access, server) = (access.clone(), org.location.server.clone());
        tokio::spawn(async move { super::spares::arm(&access, &server).await });
    }
    access.metrics().provisioned(spare.is_some(), started);
    // Where the time went (benches/clinic.rs reports these): reservation (and claim), the
    // tenant's database with the membership recorded alongside, activation.
    tracing::info!(
        from_spare = spare.is_some(),
        reserve_ms,
        tenant_ms,
        activate_ms = total_ms - reserve_ms - tenant_ms,
        total_ms,
        "organization provisioned"
    );
    Ok((OrgRecord::try_from(active)?, admin))
}

/// An armed spare (see `spares`) taken by one creation: its server, its name, its warm
/// connection as its owner, and the admin row staged in it, in a transaction left open.
struct Armed {
    server: String,
    spare: String,
    conn: RawConnection,
    staged: Option<Result<Option<Caller>, Error>>,
}

impl Armed {
    /// Opens a transaction and inserts `person` as admin in it, uncommitted.
    async fn stage(mut self, person: &Person) -> Self {
        let staged = async {
            let client = &self.conn.client;
            client.batch_execute("BEGIN").await.map_err(|e| Error::tenant_db("stage admin", &e))?;
            insert_admin(client, person).await
        }
        .await;
        self.staged = Some(staged);
        self
    }

    /// Commits the staged admin row; returns the connection (to be closed before the rename)
    /// and the admin's membership.
    async fn commit(self) -> Result<(RawConnection, Option<Caller>), Error> {
        let staged = self.staged.unwrap_or_else(|| Err(Error::Internal("nothing staged".into())));
        let committed = match staged {
            Ok(admin) => self
                .conn
                .client
                .batch_execute("COMMIT")
                .await
                .map(|()| admin)
                .map_err(|e| Error::tenant_db("commit admin", &e)),
            Err(e) => Err(e),
        };
        match committed {
            Ok(admin) => Ok((self.conn, admin)),
            Err(e) => {
                tokio::spawn(self.conn.close());
                Err(e)
            }
        }
    }

    /// Rolls back what was staged (the spare is as it was) and, when `rearm`, arms it again;
    /// otherwise, or when that fails, closes the connection.
    async fn rollback(self, access: &TenantAccess, rearm: bool) {
        match self.conn.client.batch_execute("ROLLBACK").await {
            Ok(()) if rearm => access.pools().arm(&self.server, &self.spare, self.conn),
            _ => drop(tokio::spawn(self.conn.close())),
        }
    }
}

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The claimed spare's name from the directory, checked before it is used as an identifier.
fn spare_name(name: &str) -> Result<Option<&str>, Error> {
    if name.is_empty() {
        return Ok(None);
    }
    let safe = name.len() <= clinic_shared::slug::MAX_IDENTIFIER_BYTES
        && !name.starts_with(clinic_shared::slug::DATABASE_PREFIX)
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !safe {
        return Err(Error::Internal("directory returned an unsafe spare database name".into()));
    }
    Ok(Some(name))
}

/// How the tenant database came into place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Placed {
    /// It existed already (an earlier attempt placed it).
    Existed,
    /// The claimed spare was renamed to it.
    Renamed,
    /// It was cloned from the template by this call.
    Cloned,
}

/// Steps 2 to 4 of the module header on the tenant's server.
///
/// From the armed spare (`armed`: its connection, the admin row committed in it during the
/// reservation; the usual case), the connection is closed while the server's pooled
/// maintenance connection looks the spare up, then renames it: no connection opened. From
/// another spare that carries its login role and grants, the rename, then the admin row
/// through the tenant's own pool (its role): no role work, no connection opened but the
/// tenant's first. When none is left, the template is cloned while the role's verifier is computed and the role made (on a side
/// connection); the clone's schema marker and its CONNECT grant then take one round trip on the
/// maintenance connection while the admin row goes in through a connection of the clone's
/// owner. Those side connections are taken only when the budget has one free at once (else the
/// role follows on the maintenance connection and the admin row goes in through the tenant's
/// pool afterwards), so concurrent creations never hold one connection of the budget while
/// waiting for another. Otherwise one connection at a time (the maintenance database, then the
/// tenant's as its owner). Returns the admin's membership as [`insert_admin`] does.
async fn provision_database(
    access: &TenantAccess,
    location: &Location,
    spare: Option<&str>,
    claims: &Person,
    armed: Option<(RawConnection, Option<Caller>)>,
) -> Result<Option<Caller>, Error> {
    // Once per process; it opens connections of its own, so before ours.
    ensure_template(access, &location.server).await?;
    let started = std::time::Instant::now();
    // The claimed spare was the armed one, its admin row committed: its connection closes (the
    // rename waits until its backend is gone) while the spare is looked up.
    let (early_admin, closing) = match armed {
        Some((conn, admin)) => (Some(admin), Some(tokio::spawn(conn.close()))),
        None => (None, None),
    };
    let mut maintenance = access.maintenance(&location.server).await?;
    let acquired_ms = ms(started.elapsed());
    // Without a spare that carries its role, the role's verifier (PBKDF2, on a blocking thread)
    // will be needed: computed while the database is put in place. With no spare at all the
    // template will be cloned, and the role is made meanwhile too, when the budget has a
    // connection to spare at once (PostgreSQL checks every new verifier against the empty
    // password, one more PBKDF2 of its own).
    let early = spare.is_none() || !location.login_role_recorded;
    let mut login = Login::new(access, location, early, spare.is_none());
    let placement =
        match place_database(access, &maintenance.client, location, spare, closing).await {
            Ok(placement) => placement,
            Err(e) => {
                tokio::spawn(maintenance.close());
                return Err(e);
            }
        };
    let Placement { placed, marker, finish } = placement;
    let place_ms = ms(started.elapsed());
    tracing::debug!(?placed, acquired_ms, place_ms, "tenant database in place");
    if let Some(finish) = finish {
        // A fresh clone: its role (its verifier was computed during the clone) and, pipelined
        // right behind it on the same connection, its marker and grants. Meanwhile, when the
        // budget has a connection to spare at once, the admin row goes in through a connection
        // of the clone's owner (its first connection also builds the clone's relation cache);
        // otherwise through the tenant's pool once its role can connect.
        let finished = async {
            let (login, created) = login.get().await?;
            let role = async {
                match &login {
                    Some(login) if !created => {
                        TenantLogins::create_role(&maintenance.client, login).await
                    }
                    _ => Ok(()),
                }
            };
            let batch = async {
                maintenance
                    .client
                    .batch_execute(&finish)
                    .await
                    .map_err(|e| Error::tenant_db("finish the clone", &e))
            };
            let (role, batch) = tokio::join!(role, batch);
            tracing::debug!(granted_ms = ms(started.elapsed()), "clone finished");
            role.and(batch)
        };
        let early_admin = async {
            let Some(owner) = access.pools().try_connect(&access.owner_config(location)?).await?
            else {
                return Ok(None);
            };
            let connected_ms = ms(started.elapsed());
            let admin = insert_admin(&owner.client, claims).await;
            tokio::spawn(owner.close());
            // Where the time went (benches/clinic.rs reports these).
            tracing::debug!(connected_ms, admin_ms = ms(started.elapsed()), "admin row written");
            admin.map(Some)
        };
        let (finished, early_admin) = tokio::join!(finished, early_admin);
        match finished {
            Ok(()) => access.release_maintenance(&location.server, maintenance),
            Err(e) => {
                tokio::spawn(maintenance.close());
                return Err(e);
            }
        }
        let finish_ms = ms(started.elapsed());
        let admin = match early_admin? {
            Some(admin) => admin,
            None => insert_admin(access.connect(location).await?.raw(), claims).await?,
        };
        // Where the time went (benches/clinic.rs reports these).
        tracing::debug!(
            finish_ms,
            ready_ms = ms(started.elapsed()),
            "cloned tenant database ready"
        );
        return Ok(admin);
    }
    let current = marker.as_deref() == Some(migrations::marker().as_str());
    let ready = placed == Placed::Renamed && current && location.login_role_recorded;
    if ready || !access.has_logins() && current {
        access.release_maintenance(&location.server, maintenance);
        let admin = match early_admin {
            Some(admin) => Ok(admin),
            None => insert_admin(access.connect(location).await?.raw(), claims).await,
        };
        // Where the time went (benches/clinic.rs reports these).
        tracing::debug!(ready_ms = ms(started.elapsed()), "tenant database ready");
        return admin;
    }
    // The role (and CONNECT for it): on a spare without a role, or a retry; the tables' grants
    // too.
    let granted = async {
        let (login, _) = login.get().await?;
        access.grant_login_database(&mut maintenance.client, login.as_ref()).await
    }
    .await;
    match granted {
        Ok(()) => access.release_maintenance(&location.server, maintenance),
        Err(e) => {
            tokio::spawn(maintenance.close());
            return Err(e);
        }
    }
    let owner_config = access.owner_config(location)?;
    if !current {
        let applied = migrations::migrate(access.pools().connect(&owner_config).await?).await?;
        tracing::info!(applied, "repaired a tenant database without the current schema");
    }
    let mut owner = access.pools().connect(&owner_config).await?;
    let done = async {
        let db = |e: tokio_postgres::Error| Error::tenant_db("insert admin", &e);
        let tx = owner.client.transaction().await.map_err(db)?;
        access.grant_login_tables(&tx, location).await?;
        let admin = insert_admin(&tx, claims).await?;
        tx.commit().await.map_err(db)?;
        Ok(admin)
    }
    .await;
    tokio::spawn(owner.close());
    done
}

/// The tenant's login, prepared on a blocking thread from the start when it may be needed (and
/// then its role created too, on a maintenance connection of its own, when asked and the
/// budget has one to spare at once), and awaited (or prepared then) only where it is.
struct Login {
    access: TenantAccess,
    location: Location,
    computing: Option<tokio::task::JoinHandle<Result<LoginState, Error>>>,
}

/// The login (`None` without login roles) and whether its role was created already.
type LoginState = (Option<PreparedLogin>, bool);

impl Login {
    fn new(access: &TenantAccess, location: &Location, early: bool, create: bool) -> Self {
        let computing =
            early.then(|| tokio::spawn(prepare_login(access.clone(), location.clone(), create)));
        Self { access: access.clone(), location: location.clone(), computing }
    }

    /// The login (`None` when tenants are served without login roles of their own), and
    /// whether its role was created already. A role made early but not needed is harmless: it
    /// has no privilege until its database grants it CONNECT (and retries refresh it).
    async fn get(&mut self) -> Result<LoginState, Error> {
        match self.computing.take() {
            Some(computing) => computing.await.map_err(|e| Error::internal("tenant role", e))?,
            None => prepare_login(self.access.clone(), self.location.clone(), false).await,
        }
    }
}

async fn prepare_login(
    access: TenantAccess,
    location: Location,
    create: bool,
) -> Result<LoginState, Error> {
    let login = access.prepare_login(&location.database, &location.login_role).await?;
    let Some(prepared) = login.as_ref().filter(|_| create) else { return Ok((login, false)) };
    let config = access.maintenance_config(&location.server)?;
    // Best effort: whatever fails here, the maintenance connection makes the role later.
    let Ok(Some(side)) = access.pools().try_connect(&config).await else {
        return Ok((login, false));
    };
    let created = TenantLogins::create_role(&side.client, prepared).await;
    side.close().await;
    if let Err(e) = &created {
        tracing::debug!(error = %e, "tenant role not made during the clone; made after it");
    }
    Ok((login, created.is_ok()))
}

/// Where [`place_database`] left the tenant's database.
struct Placement {
    placed: Placed,
    /// Its schema marker as looked up (the spare's, when renamed; `None` for a clone, which
    /// gets the template's with `finish`, or a racing retry's).
    marker: Option<String>,
    /// For a database this call cloned: the batch that finishes it on the same maintenance
    /// connection (the marker, the grants, the template's lock released). Run it, or close the
    /// connection.
    finish: Option<String>,
}

/// Brings the tenant's database into place: it exists already, or the claimed spare is renamed
/// to it, or it is cloned from the template (its role made and granted by [`Placement::finish`]).
async fn place_database(
    access: &TenantAccess,
    client: &Client,
    location: &Location,
    spare: Option<&str>,
    mut closing: Option<tokio::task::JoinHandle<()>>,
) -> Result<Placement, Error> {
    let target = location.database.as_str();
    let placement = |placed, marker| Placement { placed, marker, finish: None };
    let clone = || async {
        let role = access.has_logins().then_some(location.login_role.as_str());
        match clone_template(access, client, target, role).await? {
            Some(finish) => {
                Ok(Placement { placed: Placed::Cloned, marker: None, finish: Some(finish) })
            }
            None => Ok(placement(Placed::Existed, marker_of_db(client, target).await?)),
        }
    };
    // Without a spare, the clone itself finds out whether the database exists (a retry).
    let Some(spare) = spare else { return clone().await };
    // Twice: a concurrent retry of the same creation may rename the spare between our look and
    // our rename.
    for _ in 0..2 {
        let names: &[&str] = &[target, spare];
        let rows = client
            .query_typed(
                "SELECT datname::text, shobj_description(oid, 'pg_database') FROM pg_database \
                 WHERE datname = ANY($1)",
                &[(&names, Type::TEXT_ARRAY)],
            )
            .await
            .map_err(|e| Error::tenant_db("look up database", &e))?;
        let found: Vec<(String, Option<String>)> =
            rows.iter().map(|r| Ok((r.col(0)?, r.col(1)?))).collect::<Result<_, Error>>()?;
        let marker_of = |name: &str| found.iter().find(|(f, _)| f == name).map(|(_, m)| m.clone());
        if let Some(marker) = marker_of(target) {
            return Ok(placement(Placed::Existed, marker));
        }
        let Some(marker) = marker_of(spare) else { return clone().await };
        // This process's armed connection to the spare is gone before the rename.
        if let Some(closing) = closing.take() {
            closing.await.map_err(|e| Error::internal("close the armed spare", e))?;
        }
        // Anyone else connected to the spare as this role (a racing arm, another replica's
        // armed connection; see `spares`) is ended first; the rename waits for such a backend
        // to exit (rare). The name was checked by `spare_name`: a plain identifier.
        let sql = format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = '{spare}' AND usename = current_user AND pid <> pg_backend_pid(); \
             ALTER DATABASE {} RENAME TO {}",
            clinic_shared::slug::quote_ident(spare),
            clinic_shared::slug::quote_ident(target)
        );
        match client.batch_execute(&sql).await {
            Ok(()) => return Ok(placement(Placed::Renamed, marker)),
            Err(e)
                if e.code() == Some(&SqlState::UNDEFINED_DATABASE)
                    || e.code() == Some(&SqlState::DUPLICATE_DATABASE) => {}
            Err(e) => return Err(Error::tenant_db("rename spare", &e)),
        }
    }
    Err(Error::Internal("the tenant database could not be put in place".into()))
}

/// Makes sure the template on `server` exists and is at the latest migration, once per process.
pub async fn ensure_template(access: &TenantAccess, server: &str) -> Result<(), Error> {
    let once = access
        .template_once(server)
        .ok_or_else(|| Error::Internal(format!("tenant server {server:?} is not configured")))?;
    once.get_or_try_init(|| migrate_template(access, server)).await.map(|_| ())
}

async fn migrate_template(access: &TenantAccess, server: &str) -> Result<(), Error> {
    let maintenance = access.pools().connect(&access.maintenance_config(server)?).await?;
    if let Err(e) = access.check_role(&maintenance.client).await {
        maintenance.close().await;
        return Err(e);
    }
    lock(&maintenance.client, "SELECT pg_advisory_lock($1)").await?;
    let result = async {
        clinic_shared::pg::create_database(&maintenance.client, access.template(), None)
            .await
            .map_err(|e| server_error("create template", e))?;
        let config = access.database_config(server, access.template())?;
        // CREATE DATABASE ... TEMPLATE refuses while anyone is connected to the template;
        // `migrate` has fully closed its connection when it returns, before the lock is
        // released, and so has `share_template`.
        let conn = access.pools().connect(&config).await?;
        let applied = migrations::migrate_measured(access, MigrationTarget::Template, conn).await?;
        if access.has_logins() {
            share_template(access, &maintenance.client, &config).await?;
        }
        if applied > 0 {
            compact_template(access, &config).await?;
        }
        Ok::<_, Error>(applied)
    }
    .await;
    let unlocked = lock(&maintenance.client, "SELECT pg_advisory_unlock($1)").await;
    maintenance.close().await;
    let applied = result?;
    unlocked?;
    tracing::info!(server, applied, "tenant template ready");
    Ok(())
}

/// Readies the template's tables for the tenant login roles: its owner grants them to the
/// role they all belong to (`login::SHARED_ROLE`), now and for the tables of later migrations,
/// so every clone (a spare, or a clinic when none is left) arrives with its grants and needs no
/// connection as its owner. Nobody but the owner may connect to the template itself. Idempotent;
/// run under the template's exclusive lock.
async fn share_template(
    access: &TenantAccess,
    maintenance: &Client,
    template: &tokio_postgres::Config,
) -> Result<(), Error> {
    let shared = super::login::SHARED_ROLE;
    let found = maintenance
        .query_opt("SELECT 1 FROM pg_roles WHERE rolname = $1", &[&shared])
        .await
        .map_err(|e| Error::tenant_db("look up the tenants' role", &e))?;
    if found.is_none() {
        return Err(Error::Internal(format!(
            "role {shared} is missing on a tenant server: run deploy/bootstrap.sql on it"
        )));
    }
    let sql = format!(
        "REVOKE ALL ON DATABASE {} FROM PUBLIC",
        clinic_shared::slug::quote_ident(access.template())
    );
    maintenance.batch_execute(&sql).await.map_err(|e| Error::tenant_db("close template", &e))?;
    let mut owner = access.pools().connect(template).await?;
    let granted = async {
        let db = |e: tokio_postgres::Error| Error::tenant_db("template grants", &e);
        let tx = owner.client.transaction().await.map_err(db)?;
        super::login::TenantLogins::grant_tables(&tx, shared).await?;
        tx.commit().await.map_err(db)
    }
    .await;
    owner.close().await;
    granted
}

/// Rewrites the template's tables and catalogues without the dead rows its migrations left
/// (as its owner: every table but the shared catalogues, `VACUUM FULL`), frozen: cloning copies
/// every page, so a compact template clones faster (on PostgreSQL 15, smaller than a stock
/// `template1`, which a bare `CREATE DATABASE` copies). Run under the template's exclusive lock,
/// after migrating it; the connection is closed before the lock is released.
async fn compact_template(
    access: &TenantAccess,
    template: &tokio_postgres::Config,
) -> Result<(), Error> {
    let owner = access.pools().connect(template).await?;
    let db = |e: tokio_postgres::Error| Error::tenant_db("compact the template", &e);
    let done = async {
        // The shared catalogues are skipped with a warning each: expected, not worth a log line.
        owner.client.batch_execute("SET client_min_messages = error").await.map_err(db)?;
        owner.client.batch_execute("VACUUM (FULL, FREEZE)").await.map_err(db)
    }
    .await;
    owner.close().await;
    done
}

/// Clones the template into `name` on the server `client` (a maintenance connection) is
/// connected to, unless it exists (`None`: a racing retry created it first; its marker is its
/// creator's business). The template's shared lock is taken and its marker read first; the
/// returned batch (see [`Placement::finish`]), run on the same connection, gives the clone that marker (so it describes
/// what was copied), closes it to everyone but its login `role` (which must exist by then), and
/// releases the lock. Before it has run, the clone is not known to be current.
pub(super) async fn clone_template(
    access: &TenantAccess,
    client: &Client,
    name: &str,
    role: Option<&str>,
) -> Result<Option<String>, Error> {
    // One round trip: the lock, then (a statement of its own, so read after the lock is held)
    // the marker.
    let template = access.template();
    if !template.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
        return Err(Error::Internal("the template's name is not a plain identifier".into()));
    }
    let sql = format!(
        "SELECT pg_advisory_lock_shared({TEMPLATE_LOCK}); \
         SELECT shobj_description(oid, 'pg_database') AS marker FROM pg_database \
         WHERE datname = '{template}'"
    );
    let quoted = clinic_shared::slug::quote_ident(name);
    let create = format!(
        "CREATE DATABASE {quoted} TEMPLATE {}",
        clinic_shared::slug::quote_ident(access.template())
    );
    let started = std::time::Instant::now();
    // Pipelined: the CREATE is sent right behind the lock, and runs once it is held (one
    // connection runs its statements in order). If the lock fails, so does the connection.
    let (locked, created) = tokio::join!(client.simple_query(&sql), client.batch_execute(&create));
    let result = async {
        let messages = locked.map_err(|e| Error::tenant_db("template lock", &e))?;
        let marker = messages.iter().find_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row)
                if row.columns().first().is_some_and(|c| c.name() == "marker") =>
            {
                row.try_get(0).ok().flatten().map(str::to_owned)
            }
            _ => None,
        });
        match created {
            Ok(()) => {}
            Err(e)
                if e.code() == Some(&SqlState::DUPLICATE_DATABASE)
                    || e.code() == Some(&SqlState::UNIQUE_VIOLATION) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(Error::tenant_db("create database", &e)),
        }
        tracing::debug!(clone_ms = ms(started.elapsed()), "template cloned");
        let mut finish = String::new();
        // COMMENT takes no parameters: only a well-formed marker is copied (no quotes in it).
        if let Some(marker) = marker.as_deref().filter(|m| is_marker(m)) {
            finish.push_str(&format!("COMMENT ON DATABASE {quoted} IS '{marker}';"));
        }
        if let Some(role) = role {
            finish.push_str(&TenantLogins::database_grants(name, role));
        }
        finish.push_str(&format!("SELECT pg_advisory_unlock_shared({TEMPLATE_LOCK});"));
        Ok(Some(finish))
    }
    .await;
    if !matches!(result, Ok(Some(_))) {
        // Best effort: the caller closes the connection on error, which releases it anyway.
        let _ = lock(client, "SELECT pg_advisory_unlock_shared($1)").await;
    }
    result
}

/// Whether `m` has the form of the schema markers this service writes (letters, digits,
/// spaces and dashes after `clinic-schema `): safe between quotes.
fn is_marker(m: &str) -> bool {
    m.starts_with("clinic-schema ")
        && m.bytes().all(|b| b.is_ascii_alphanumeric() || b == b' ' || b == b'-')
}

/// The schema marker (comment) of database `name`, read through any connection to its server.
pub(super) async fn marker_of_db(client: &Client, name: &str) -> Result<Option<String>, Error> {
    let row = client
        .query_opt(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .await
        .map_err(|e| Error::tenant_db("schema marker", &e))?;
    Ok(row.map(|r| r.col::<Option<String>>(0)).transpose()?.flatten())
}

async fn lock(client: &Client, sql: &str) -> Result<(), Error> {
    client
        .execute(sql, &[&TEMPLATE_LOCK])
        .await
        .map_err(|e| Error::tenant_db("template lock", &e))?;
    Ok(())
}

fn server_error(context: &str, e: clinic_shared::pg::PgError) -> Error {
    match e {
        clinic_shared::pg::PgError::Postgres(e) => Error::tenant_db(context, &e),
        other => Error::internal(context, other),
    }
}

/// Readies `client`, a connection to a READY spare as its owner, for [`insert_admin`]: runs it
/// once in a transaction rolled back, so the backend has what it needs cached (catalogues,
/// the foreign-key check's plan) and the spare is left as it was.
pub(super) async fn warm_up(client: &mut Client) -> Result<(), Error> {
    let db = |e: tokio_postgres::Error| Error::tenant_db("warm up a spare", &e);
    let tx = client.transaction().await.map_err(db)?;
    let nobody = Person {
        user_id: uuid::Uuid::nil(),
        email: "warm-up@invalid".into(),
        name: "warm-up".into(),
        email_verified: false,
    };
    insert_admin(&tx, &nobody).await?;
    tx.rollback().await.map_err(db)
}

/// Inserts the creator as admin unless they are a member already, in one statement (through
/// the tenant's role or, in the owner's transaction or connection, as its owner), unprepared:
/// one round trip. Returns the creator's membership as it stands (the row inserted, or the one
/// an earlier attempt inserted; `None` only when a concurrent retry's insert is not visible
/// yet), so the creation's audit event needs no read of its own.
async fn insert_admin(
    client: &impl GenericClient,
    claims: &Person,
) -> Result<Option<Caller>, Error> {
    let rows = client
        .query_typed(
            "WITH profile AS ( \
                 INSERT INTO admin_profile (id) SELECT gen_random_uuid() \
                 WHERE NOT EXISTS (SELECT 1 FROM organization_user WHERE user_id = $1) \
                 RETURNING id), \
             inserted AS ( \
                 INSERT INTO organization_user (user_id, email, email_key, name, admin_profile_id) \
                 SELECT $1, $2, $3, $4, id FROM profile ON CONFLICT (user_id) DO NOTHING \
                 RETURNING id, role, status) \
             SELECT id, role::text, status::text FROM inserted \
             UNION ALL SELECT id, role::text, status::text FROM organization_user WHERE user_id = $1",
            &[
                (&claims.user_id, Type::UUID),
                (&claims.email, Type::TEXT),
                (&clinic_shared::email::normalize(&claims.email), Type::TEXT),
                (&claims.name, Type::TEXT),
            ],
        )
        .await
        .map_err(|e| Error::tenant_db("insert admin", &e))?;
    let Some(row) = rows.first() else { return Ok(None) };
    if row.col::<&str>(2)? != "active" {
        return Ok(None);
    }
    let role = Role::from_db(Some(row.col::<&str>(1)?))
        .ok_or_else(|| Error::Internal("a member without a known role".into()))?;
    Ok(Some(Caller { member_id: row.col(0)?, user_id: claims.user_id, role }))
}
