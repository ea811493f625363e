//! Local PostgreSQL clusters for the embedded default and for development.
//!
//! One implementation serves both `serve` without a database URL and
//! `scripts/services.sh` (through `governance-engine dev up`): two clusters, primary and
//! audit, each with its own data directory, port and credentials, on 127.0.0.1 only.
//!
//! Roles created here (cluster-level objects with secrets, hence not in migrations):
//! - primary: `gov_owner` (owns the schema, runs migrations), `gov_app` (the service;
//!   no ownership, `NOBYPASSRLS`);
//! - audit: `gov_ledger_admin` (owns the ledger), `gov_ledger_writer` (append only),
//!   `gov_ledger_reader` (select only).
//!
//! Each cluster accepts only its own roles: the app role does not exist on the audit
//! cluster. PostgreSQL refuses to run as root, so as root the server binaries run as the
//! `postgres` system user.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};
use sqlx::{Connection, PgConnection};

use crate::config::{DatabaseUrls, Secret};

pub const PRIMARY_DB: &str = "aumos_governance";
pub const AUDIT_DB: &str = "aumos_governance_audit";
const SUPERUSER: &str = "gov_superuser";

#[derive(Debug, thiserror::Error)]
pub enum DevStackError {
    #[error("{0}")]
    Io(String),
    #[error("{command} failed: {output}")]
    Command { command: String, output: String },
    #[error("provisioning {cluster} failed: {source}")]
    Provision {
        cluster: &'static str,
        #[source]
        source: sqlx::Error,
    },
}

fn io(context: &str, e: std::io::Error) -> DevStackError {
    DevStackError::Io(format!("{context}: {e}"))
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Passwords {
    superuser: String,
    owner: String,
    app: String,
    ledger_admin: String,
    ledger_writer: String,
    ledger_reader: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StackState {
    primary_port: u16,
    audit_port: u16,
    passwords: Passwords,
}

/// Which of the two clusters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cluster {
    Primary,
    Audit,
}

impl Cluster {
    fn name(self) -> &'static str {
        match self {
            Cluster::Primary => "primary",
            Cluster::Audit => "audit",
        }
    }

    /// PostgreSQL's own cache. The primary's holds the read models a cold dashboard reads
    /// (at 500,000 evidence records, ~100 MB of evidence packs). A page outside it comes
    /// from the kernel's page cache, which a machine may trim of file pages no process
    /// maps: this project's VMs page out those not read for a minute (DAMON), PostgreSQL's
    /// mapped buffers are kept. With the default 128 MB, after a bulk load a tenant's first
    /// cold dashboard took up to 1 s instead of ~60 ms, as if it read its packs from disk;
    /// with 512 MB, 51-98 ms but one (#14, `make bench-dashboard`). The audit cluster is
    /// appended to and read near its head: PostgreSQL's default.
    fn shared_buffers(self) -> &'static str {
        match self {
            Cluster::Primary => "512MB",
            Cluster::Audit => "128MB",
        }
    }
}

/// The two local clusters under one directory.
#[derive(Debug, Clone)]
pub struct LocalStack {
    dir: PathBuf,
    pg_bin: PathBuf,
    state: StackState,
    /// The clusters this value started (and so may stop without pulling a database out
    /// from under another process).
    started: Vec<Cluster>,
}

fn random_password() -> String {
    use rand_core::RngCore;
    let mut bytes = [0u8; 18];
    rand_core::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

fn free_port() -> Result<u16, DevStackError> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| io("choosing a free port", e))?;
    l.local_addr().map(|a| a.port()).map_err(|e| io("choosing a free port", e))
}

/// How often [`LocalStack::up`] moves a cluster whose chosen port another process took.
const PORT_MOVES: u32 = 5;

/// What PostgreSQL logs when its port is bound by another process.
const PORT_IN_USE: &[u8] = b"Address already in use";

fn write_state(state_file: &Path, state: &StackState) -> Result<(), DevStackError> {
    let json = serde_json::to_vec_pretty(state).map_err(|e| DevStackError::Io(e.to_string()))?;
    crate::adapters::fsutil::write_private(state_file, &json).map_err(|e| io("writing stack.json", e))
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0").unwrap_or(false)
}

fn run(mut cmd: Command) -> Result<String, DevStackError> {
    let shown = format!("{cmd:?}");
    let out = cmd.output().map_err(|e| io(&shown, e))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(DevStackError::Command {
            command: shown,
            output: format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)),
        })
    }
}

impl LocalStack {
    fn pg_dir(&self) -> PathBuf {
        self.dir.join("pg")
    }
    fn data_dir(&self, c: Cluster) -> PathBuf {
        self.pg_dir().join(c.name())
    }
    fn port(&self, c: Cluster) -> u16 {
        match c {
            Cluster::Primary => self.state.primary_port,
            Cluster::Audit => self.state.audit_port,
        }
    }

    /// A PostgreSQL server binary, run as `postgres` when we are root.
    fn pg_command(&self, binary: &str) -> Command {
        let path = self.pg_bin.join(binary);
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(path);
            c
        } else {
            Command::new(path)
        }
    }

    /// The stack `dev up` created in `dir`, without starting anything.
    pub fn open_existing(dir: &Path, pg_bin: &Path) -> Result<Self, DevStackError> {
        let dir = dir.canonicalize().map_err(|e| io("resolving the data directory", e))?;
        let state_file = dir.join("stack.json");
        let bytes = std::fs::read(&state_file).map_err(|e| io(&state_file.display().to_string(), e))?;
        let state = serde_json::from_slice(&bytes).map_err(|e| DevStackError::Io(format!("{}: {e}", state_file.display())))?;
        Ok(LocalStack { dir, pg_bin: pg_bin.to_path_buf(), state, started: Vec::new() })
    }

    /// Creates the clusters if needed, starts them if stopped and (re)provisions roles
    /// and databases. Idempotent. Without `ports`, it chooses free ones, and moves a
    /// cluster whose port another process took meanwhile.
    pub async fn up(dir: &Path, pg_bin: &Path, ports: Option<(u16, u16)>) -> Result<Self, DevStackError> {
        std::fs::create_dir_all(dir).map_err(|e| io("creating the data directory", e))?;
        let dir = dir.canonicalize().map_err(|e| io("resolving the data directory", e))?;
        let state_file = dir.join("stack.json");
        let state = match std::fs::read(&state_file) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| DevStackError::Io(format!("{}: {e}", state_file.display())))?,
            Err(_) => {
                let (primary_port, audit_port) = match ports {
                    Some(p) => p,
                    None => (free_port()?, free_port()?),
                };
                let state = StackState {
                    primary_port,
                    audit_port,
                    passwords: Passwords {
                        superuser: random_password(),
                        owner: random_password(),
                        app: random_password(),
                        ledger_admin: random_password(),
                        ledger_writer: random_password(),
                        ledger_reader: random_password(),
                    },
                };
                write_state(&state_file, &state)?;
                state
            }
        };
        let mut stack = LocalStack { dir, pg_bin: pg_bin.to_path_buf(), state, started: Vec::new() };
        std::fs::create_dir_all(stack.pg_dir()).map_err(|e| io("creating pg/", e))?;
        if is_root() {
            let mut chown = Command::new("chown");
            chown.arg("postgres:postgres").arg(stack.pg_dir());
            run(chown)?;
        }
        for c in [Cluster::Primary, Cluster::Audit] {
            stack.init(c)?;
            if !stack.is_running(c) {
                // Ports given by the caller stay where they were given.
                stack.start_on_a_free_port(c, ports.is_none())?;
                stack.started.push(c);
            }
        }
        stack.provision_primary().await?;
        stack.provision_audit().await?;
        Ok(stack)
    }

    fn init(&self, c: Cluster) -> Result<(), DevStackError> {
        let data = self.data_dir(c);
        if data.join("PG_VERSION").exists() {
            return Ok(());
        }
        let pwfile = self.pg_dir().join(format!(".{}-pw", c.name()));
        std::fs::write(&pwfile, &self.state.passwords.superuser).map_err(|e| io("writing the password file", e))?;
        if is_root() {
            let mut chown = Command::new("chown");
            chown.arg("postgres:postgres").arg(&pwfile);
            run(chown)?;
        }
        let mut cmd = self.pg_command("initdb");
        cmd.arg("-D").arg(&data).args(["-U", SUPERUSER, "-E", "UTF8", "--no-locale", "--auth=scram-sha-256"]);
        cmd.arg(format!("--pwfile={}", pwfile.display()));
        let result = run(cmd);
        let _ = std::fs::remove_file(&pwfile);
        result?;
        let conf = format!(
            "\n# aumos-governance local cluster ({})\nlisten_addresses = '127.0.0.1'\nport = {}\nunix_socket_directories = ''\n\
             max_connections = 200\nshared_buffers = {}\nlog_min_messages = warning\n",
            c.name(),
            self.port(c),
            c.shared_buffers()
        );
        self.append_conf(c, &conf)
    }

    /// Appends settings to a cluster's postgresql.conf (a later line of a setting overrides
    /// an earlier one). Takes effect at the next start.
    fn append_conf(&self, c: Cluster, text: &str) -> Result<(), DevStackError> {
        use std::io::Write;
        let conf = self.data_dir(c).join("postgresql.conf");
        let mut f = std::fs::OpenOptions::new().append(true).open(conf).map_err(|e| io("postgresql.conf", e))?;
        f.write_all(text.as_bytes()).map_err(|e| io("postgresql.conf", e))
    }

    /// Switches TLS on for a cluster with the given PEM certificate (chain) and key, and, if
    /// `only`, refuses connections without it. Takes effect at the next start.
    pub fn enable_tls(&self, c: Cluster, cert_pem: &str, key_pem: &str, only: bool) -> Result<(), DevStackError> {
        let data = self.data_dir(c);
        for (name, text) in [("server.crt", cert_pem), ("server.key", key_pem)] {
            let path = data.join(name);
            crate::adapters::fsutil::write_private(&path, text.as_bytes()).map_err(|e| io(name, e))?;
            if is_root() {
                let mut chown = Command::new("chown");
                chown.arg("postgres:postgres").arg(&path);
                run(chown)?;
            }
        }
        self.append_conf(c, "\nssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n")?;
        if only {
            let hba = "hostssl all all 127.0.0.1/32 scram-sha-256\nhostnossl all all 0.0.0.0/0 reject\n";
            std::fs::write(data.join("pg_hba.conf"), hba).map_err(|e| io("pg_hba.conf", e))?;
        }
        Ok(())
    }

    /// Whether a cluster's server is running.
    pub fn is_running(&self, c: Cluster) -> bool {
        let mut cmd = self.pg_command("pg_ctl");
        cmd.arg("-D").arg(self.data_dir(c)).arg("status");
        cmd.output().map(|o| o.status.success()).unwrap_or(false)
    }

    pub fn start(&self, c: Cluster) -> Result<(), DevStackError> {
        if self.is_running(c) {
            return Ok(());
        }
        let mut cmd = self.pg_command("pg_ctl");
        cmd.arg("-D").arg(self.data_dir(c)).arg("-l").arg(self.log_file(c));
        cmd.args(["-w", "-t", "60", "start"]);
        run(cmd).map(|_| ())
    }

    /// Starts a cluster. With `may_move` (its port was chosen here, not given), a start
    /// that fails because another process bound the port between its choice and the start
    /// (the log says the address is in use: a race that choosing a free port cannot close)
    /// is tried again on a new free port, recorded in postgresql.conf and stack.json.
    fn start_on_a_free_port(&mut self, c: Cluster, may_move: bool) -> Result<(), DevStackError> {
        let mut moves = 0;
        loop {
            let logged = std::fs::metadata(self.log_file(c)).map(|m| m.len()).unwrap_or(0);
            match self.start(c) {
                Ok(()) => return Ok(()),
                Err(e) if may_move && moves < PORT_MOVES && self.port_was_taken(c, logged) => {
                    moves += 1;
                    let port = free_port()?;
                    tracing::warn!(cluster = c.name(), from = self.port(c), to = port, error = %e, "a local cluster's port was taken; moving it");
                    self.move_port(c, port)?;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether the cluster's log, after its first `from` bytes, says its port was in use.
    fn port_was_taken(&self, c: Cluster, from: u64) -> bool {
        let log = std::fs::read(self.log_file(c)).unwrap_or_default();
        let new = usize::try_from(from).ok().and_then(|f| log.get(f..)).unwrap_or_default();
        new.windows(PORT_IN_USE.len()).any(|w| w == PORT_IN_USE)
    }

    /// Gives a cluster a new port: in its configuration and in stack.json, so the URLs and a later `dev up` use it.
    fn move_port(&mut self, c: Cluster, port: u16) -> Result<(), DevStackError> {
        match c {
            Cluster::Primary => self.state.primary_port = port,
            Cluster::Audit => self.state.audit_port = port,
        }
        self.append_conf(c, &format!("\n# the port chosen before was taken by another process\nport = {port}\n"))?;
        write_state(&self.dir.join("stack.json"), &self.state)
    }

    fn log_file(&self, c: Cluster) -> PathBuf {
        self.pg_dir().join(format!("{}.log", c.name()))
    }

    pub fn stop(&self, c: Cluster) -> Result<(), DevStackError> {
        if !self.is_running(c) {
            return Ok(());
        }
        let mut cmd = self.pg_command("pg_ctl");
        cmd.arg("-D").arg(self.data_dir(c)).args(["-m", "fast", "-w", "-t", "60", "stop"]);
        run(cmd).map(|_| ())
    }

    /// Stops the clusters that [`LocalStack::up`] started, leaving running ones alone.
    pub fn stop_started(&self) -> Result<(), DevStackError> {
        for c in &self.started {
            self.stop(*c)?;
        }
        Ok(())
    }

    pub fn stop_all(&self) -> Result<(), DevStackError> {
        self.stop(Cluster::Primary)?;
        self.stop(Cluster::Audit)
    }

    fn url(&self, c: Cluster, user: &str, password: &str, db: &str) -> String {
        format!("postgres://{user}:{password}@127.0.0.1:{}/{db}", self.port(c))
    }

    /// The superuser URL of a cluster (provisioning and tamper tests only).
    pub fn superuser_url(&self, c: Cluster, db: &str) -> String {
        self.url(c, SUPERUSER, &self.state.passwords.superuser, db)
    }

    async fn superuser(&self, c: Cluster) -> Result<PgConnection, DevStackError> {
        PgConnection::connect(&self.superuser_url(c, "postgres"))
            .await
            .map_err(|source| DevStackError::Provision { cluster: c.name(), source })
    }

    async fn provision(&self, c: Cluster, roles: &[(&str, &str)], db: &str, owner: &str) -> Result<(), DevStackError> {
        let e = |source| DevStackError::Provision { cluster: c.name(), source };
        let mut conn = self.superuser(c).await?;
        for (role, password) in roles {
            // Role names are constants and passwords are hex: nothing here needs quoting.
            // Two processes provisioning one cluster at once (a standby started beside the
            // embedded default) may both find the role missing: the second CREATE is ignored.
            let sql = format!(
                "DO $$ BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN CREATE ROLE {role}; END IF; \
                 EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$; \
                 ALTER ROLE {role} LOGIN PASSWORD '{password}' NOSUPERUSER NOCREATEDB NOCREATEROLE NOBYPASSRLS NOREPLICATION;"
            );
            sqlx::raw_sql(&sql).execute(&mut conn).await.map_err(e)?;
        }
        let exists: bool = sqlx::query_scalar("SELECT EXISTS (SELECT FROM pg_database WHERE datname = $1)")
            .bind(db)
            .fetch_one(&mut conn)
            .await
            .map_err(e)?;
        if !exists {
            // Another process provisioning the same cluster at once may create it first.
            let created = sqlx::raw_sql(&format!("CREATE DATABASE {db} OWNER {owner}")).execute(&mut conn).await;
            match created {
                Err(err) if err.as_database_error().and_then(|d| d.code()).is_some_and(|c| c == "42P04" || c == "23505") => {}
                other => {
                    other.map_err(e)?;
                }
            }
        }
        let names: Vec<&str> = roles.iter().map(|(r, _)| *r).collect();
        let sql = format!("REVOKE ALL ON DATABASE {db} FROM PUBLIC; GRANT CONNECT ON DATABASE {db} TO {};", names.join(", "));
        sqlx::raw_sql(&sql).execute(&mut conn).await.map_err(e)?;
        Ok(())
    }

    async fn provision_primary(&self) -> Result<(), DevStackError> {
        let p = &self.state.passwords;
        self.provision(Cluster::Primary, &[("gov_owner", &p.owner), ("gov_app", &p.app)], PRIMARY_DB, "gov_owner").await
    }

    async fn provision_audit(&self) -> Result<(), DevStackError> {
        let p = &self.state.passwords;
        let roles = [
            ("gov_ledger_admin", p.ledger_admin.as_str()),
            ("gov_ledger_writer", &p.ledger_writer),
            ("gov_ledger_reader", &p.ledger_reader),
        ];
        self.provision(Cluster::Audit, &roles, AUDIT_DB, "gov_ledger_admin").await
    }

    /// Connection URLs for every role the service and `migrate` use.
    pub fn urls(&self) -> DatabaseUrls {
        let p = &self.state.passwords;
        DatabaseUrls {
            primary: Secret::new(self.url(Cluster::Primary, "gov_app", &p.app, PRIMARY_DB)),
            primary_migrator: Some(Secret::new(self.url(Cluster::Primary, "gov_owner", &p.owner, PRIMARY_DB))),
            audit_writer: Secret::new(self.url(Cluster::Audit, "gov_ledger_writer", &p.ledger_writer, AUDIT_DB)),
            audit_reader: Secret::new(self.url(Cluster::Audit, "gov_ledger_reader", &p.ledger_reader, AUDIT_DB)),
            audit_admin: Some(Secret::new(self.url(Cluster::Audit, "gov_ledger_admin", &p.ledger_admin, AUDIT_DB))),
        }
    }

    /// `export NAME=value` lines for a shell, the superuser URLs included (tests use them
    /// to prove what roles can and cannot do).
    pub fn exports(&self) -> String {
        let u = self.urls();
        let mut lines = vec![
            ("AUMOS_DATABASE_URL", u.primary.expose().to_owned()),
            ("AUMOS_GOVERNANCE_AUDIT_DB_URL", u.audit_writer.expose().to_owned()),
            ("AUMOS_GOVERNANCE_AUDIT_DB_READER_URL", u.audit_reader.expose().to_owned()),
            ("AUMOS_DEV_PRIMARY_SUPERUSER_URL", self.superuser_url(Cluster::Primary, PRIMARY_DB)),
            ("AUMOS_DEV_AUDIT_SUPERUSER_URL", self.superuser_url(Cluster::Audit, AUDIT_DB)),
            ("AUMOS_DEV_PG_DIR", self.pg_dir().display().to_string()),
        ];
        if let Some(m) = &u.primary_migrator {
            lines.push(("AUMOS_DATABASE_MIGRATION_URL", m.expose().to_owned()));
        }
        if let Some(a) = &u.audit_admin {
            lines.push(("AUMOS_GOVERNANCE_AUDIT_DB_ADMIN_URL", a.expose().to_owned()));
        }
        lines.into_iter().map(|(k, v)| format!("export {k}='{v}'\n")).collect()
    }
}
