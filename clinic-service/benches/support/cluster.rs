//! A private PostgreSQL cluster for benchmarks: initdb/pg_ctl from `PG_BIN` (default
//! /usr/lib/postgresql/15/bin), run as the `postgres` user when started as root, fsync off,
//! removed when its [`Removed`] guard is dropped.

use std::{net::TcpListener, path::PathBuf, process::Command};

/// A private cluster (see [`Removed`] for its end).
#[derive(Clone)]
pub struct Cluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl Cluster {
    pub fn start() -> Self {
        let bin = PathBuf::from(
            std::env::var("PG_BIN").unwrap_or_else(|_| "/usr/lib/postgresql/15/bin".into()),
        );
        let dir = std::env::temp_dir().join(format!("clinic-restart-{}", std::process::id()));
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let cluster = Self { bin, dir, port };
        cluster.run(&format!(
            "{} -D {} -U postgres --auth=trust --no-sync >/dev/null",
            cluster.tool("initdb"),
            cluster.dir.display()
        ));
        cluster.pg_ctl("start");
        cluster
    }

    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn tool(&self, name: &str) -> String {
        self.bin.join(name).display().to_string()
    }

    pub fn pg_ctl(&self, action: &str) {
        self.run(&format!(
            "{} -D {dir} -w -l {dir}/server.log -o '-p {} -k {dir} -c fsync=off' {action} >/dev/null",
            self.tool("pg_ctl"),
            self.port,
            dir = self.dir.display(),
        ));
    }

    /// Runs `script` with sh, as `postgres` when this process is root (initdb refuses root).
    fn run(&self, script: &str) {
        let root = Command::new("id").arg("-u").output().is_ok_and(|o| o.stdout == b"0\n");
        let status = if root {
            Command::new("su").args(["postgres", "-c", script]).status()
        } else {
            Command::new("sh").args(["-c", script]).status()
        };
        assert!(status.is_ok_and(|s| s.success()), "failed: {script}");
    }
}

/// Stops and deletes its cluster when dropped.
pub struct Removed(pub Cluster);

impl Drop for Removed {
    fn drop(&mut self) {
        let c = &self.0;
        let stop = format!(
            "{} -D {} -m immediate stop >/dev/null 2>&1; rm -rf {}",
            c.tool("pg_ctl"),
            c.dir.display(),
            c.dir.display()
        );
        let _ = std::panic::catch_unwind(|| c.run(&stop));
    }
}
