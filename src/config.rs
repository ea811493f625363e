//! Configuration from the environment. Every variable is read here and nowhere else; an
//! invalid value stops start-up with a message that names the variable.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// A value that must never be printed (database URLs carry passwords).
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(v: impl Into<String>) -> Self {
        Self(v.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{var}: {message}")]
pub struct ConfigError {
    pub var: &'static str,
    pub message: String,
}

fn err(var: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError { var, message: message.into() }
}

/// Where the databases are. `None` in [`Config::databases`] means the embedded default:
/// local clusters under the data directory.
#[derive(Debug, Clone)]
pub struct DatabaseUrls {
    /// Primary, as the non-owner app role.
    pub primary: Secret,
    /// Primary, as the owner/migrator (only `migrate` needs it).
    pub primary_migrator: Option<Secret>,
    /// Audit, as `gov_ledger_writer`.
    pub audit_writer: Secret,
    /// Audit, as `gov_ledger_reader`.
    pub audit_reader: Secret,
    /// Audit, as the ledger admin (only `migrate` needs it).
    pub audit_admin: Option<Secret>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyEngineKind {
    Embedded,
    Opa,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JwtAlgorithm {
    EdDsa,
    Es256,
    Rs256,
}

#[derive(Debug, Clone)]
pub struct JwtConfig {
    /// PEM public key that verifies bearer tokens. `None`: the embedded default's key.
    pub public_key_file: Option<PathBuf>,
    /// PEM private key, used only by `dev token`.
    pub private_key_file: Option<PathBuf>,
    /// The algorithm of `public_key_file` (JWKS keys carry their own).
    pub algorithm: JwtAlgorithm,
    /// A JWKS URL to take the keys from instead of a PEM file.
    pub jwks_url: Option<String>,
    /// At most one JWKS fetch per this interval (unknown `kid`s trigger fetches).
    pub jwks_min_refresh: Duration,
    /// JWKS keys are refetched when older than this.
    pub jwks_max_age: Duration,
    /// Development only: accept an `http://` JWKS URL (anyone on the path could serve keys).
    pub jwks_allow_insecure_http: bool,
    pub issuer: String,
    pub audience: String,
    pub leeway: Duration,
}

#[derive(Debug, Clone)]
pub struct Config {
    pub http_addr: SocketAddr,
    /// Serve `/metrics` only on this separate address (default: on `http_addr`).
    pub metrics_addr: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub databases: Option<DatabaseUrls>,
    pub audit_pool_size: u32,
    pub primary_pool_size: u32,
    pub policy_engine: PolicyEngineKind,
    pub opa_url: String,
    /// The bearer token OPA's REST API requires (`--authentication=token`).
    pub opa_token: Option<Secret>,
    pub eval_timeout: Duration,
    pub evidence_bucket: Option<String>,
    pub kafka_bootstrap: Option<String>,
    /// Prepended to every Kafka topic name (default: none).
    pub kafka_topic_prefix: String,
    /// TLS and SASL for every Kafka client (`AUMOS_KAFKA_SECURITY_PROTOCOL`, …).
    pub kafka_security: crate::adapters::kafka::KafkaSecurity,
    pub jwt: JwtConfig,
    pub otel_endpoint: Option<String>,
    /// Extra trusted CA certificates (PEM) for outgoing HTTPS (JWKS, OPA), on top of the
    /// system roots.
    pub tls_ca_file: Option<PathBuf>,
    /// How long a command waits for its projections before answering 202.
    pub read_your_writes_timeout: Duration,
    pub request_body_limit: usize,
    /// The largest ledger entry, as the relay publishes it (413 above); the relay's Kafka
    /// producer and topics allow this plus headers.
    pub ledger_entry_max_bytes: usize,
    /// The most bytes of entries (sized as for `ledger_entry_max_bytes`) one ledger transaction holds (a larger request is one alone).
    pub ledger_batch_max_bytes: usize,
    /// The largest evidence artifact accepted (413 above).
    pub evidence_max_bytes: u64,
    /// Evidence ending within this many days makes a requirement `expiring`.
    pub evidence_expiring_days: u32,
    /// Every request is answered within this (503 `request_timeout` otherwise).
    pub request_timeout: Duration,
    /// Evaluations per second per tenant (0: no limit), and the burst above that rate.
    pub evaluate_rate_per_tenant: u32,
    pub evaluate_burst_per_tenant: u32,
    pub pg_bin_dir: PathBuf,
    pub ledger: LedgerConfig,
    pub sandbox: SandboxConfig,
}

/// The embedded engine's sandbox: evaluation worker processes (docs/policy-engines.md).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SandboxConfig {
    /// Worker processes (default: the number of cores, at least 2).
    pub workers: usize,
    /// At most this many workers busy for one tenant (default: half the workers, at least 1).
    pub workers_per_tenant: usize,
    /// Requests one tenant may have waiting for a worker; beyond: 503 `policy_engine_overloaded`.
    pub queue_per_tenant: usize,
    /// A request waiting longer than this for a worker: 503 `policy_engine_overloaded`.
    pub queue_timeout: Duration,
    /// Address-space cap of each worker (RLIMIT_AS), in MiB.
    pub worker_memory_mb: u64,
    /// One deadline for validating a source and running all of its tests at activation.
    pub test_timeout: Duration,
    /// Prepared modules each worker keeps (least recently used first out).
    pub worker_cache_entries: usize,
}

/// The ledger's signing key and checkpoint cadence.
#[derive(Debug, Clone)]
pub struct LedgerConfig {
    /// PKCS#8 PEM Ed25519 key that signs checkpoints. `None`: the embedded default's key.
    pub signing_key_file: Option<PathBuf>,
    /// Names this deployment's ledger in every checkpoint (and is the key's name).
    pub origin: String,
    pub checkpoint_every_entries: u64,
    pub checkpoint_every: Duration,
}

/// Reads variables through a function, so tests can feed a map instead of the process env.
pub struct Env<'a>(pub &'a dyn Fn(&str) -> Option<String>);

impl fmt::Debug for Env<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Env")
    }
}

impl Env<'_> {
    pub(crate) fn get(&self, var: &str) -> Option<String> {
        (self.0)(var).filter(|v| !v.trim().is_empty())
    }

    fn parse<T: std::str::FromStr>(&self, var: &'static str, default: T, what: &str) -> Result<T, ConfigError> {
        match self.get(var) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|_| err(var, format!("expected {what}, got {v:?}"))),
        }
    }

    fn url(&self, var: &'static str) -> Result<Option<Secret>, ConfigError> {
        match self.get(var) {
            None => Ok(None),
            Some(v) if v.starts_with("postgres://") || v.starts_with("postgresql://") => Ok(Some(Secret::new(v))),
            Some(_) => Err(err(var, "expected a postgres:// URL")),
        }
    }

    fn millis(&self, var: &'static str, default: u64) -> Result<Duration, ConfigError> {
        let ms: u64 = self.parse(var, default, "a whole number of milliseconds")?;
        if ms == 0 {
            return Err(err(var, "must be greater than 0"));
        }
        Ok(Duration::from_millis(ms))
    }
}

impl Config {
    pub fn from_process_env() -> Result<Self, ConfigError> {
        Self::from_env(&Env(&|k| std::env::var(k).ok()))
    }

    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let primary = env.url("AUMOS_DATABASE_URL")?;
        let databases = match primary {
            None => None,
            Some(primary) => Some(DatabaseUrls {
                primary,
                primary_migrator: env.url("AUMOS_DATABASE_MIGRATION_URL")?,
                audit_writer: env
                    .url("AUMOS_GOVERNANCE_AUDIT_DB_URL")?
                    .ok_or_else(|| err("AUMOS_GOVERNANCE_AUDIT_DB_URL", "required when AUMOS_DATABASE_URL is set"))?,
                audit_reader: env
                    .url("AUMOS_GOVERNANCE_AUDIT_DB_READER_URL")?
                    .ok_or_else(|| err("AUMOS_GOVERNANCE_AUDIT_DB_READER_URL", "required when AUMOS_DATABASE_URL is set"))?,
                audit_admin: env.url("AUMOS_GOVERNANCE_AUDIT_DB_ADMIN_URL")?,
            }),
        };
        let audit_pool_size: u32 = env.parse("AUMOS_GOVERNANCE_AUDIT_DB_POOL_SIZE", 8, "a pool size from 2 to 256")?;
        if !(2..=256).contains(&audit_pool_size) {
            return Err(err("AUMOS_GOVERNANCE_AUDIT_DB_POOL_SIZE", "must be from 2 to 256"));
        }
        // Below 64 KiB group commit would all but stop; near PostgreSQL's 1 GB per parameter
        // the failure the bound prevents would come back.
        let ledger_batch_max_bytes: usize = env.parse(
            "AUMOS_GOVERNANCE_LEDGER_BATCH_MAX_BYTES",
            crate::adapters::ledger::DEFAULT_BATCH_MAX_BYTES,
            "a number of bytes from 65536 to 268435456",
        )?;
        if !(64 << 10..=256 << 20).contains(&ledger_batch_max_bytes) {
            return Err(err("AUMOS_GOVERNANCE_LEDGER_BATCH_MAX_BYTES", "must be from 65536 (64 KiB) to 268435456 (256 MiB)"));
        }
        let primary_pool_size: u32 = env.parse("AUMOS_DATABASE_POOL_SIZE", 16, "a pool size from 2 to 256")?;
        if !(2..=256).contains(&primary_pool_size) {
            return Err(err("AUMOS_DATABASE_POOL_SIZE", "must be from 2 to 256"));
        }
        let policy_engine = match env.get("AUMOS_GOVERNANCE_POLICY_ENGINE").as_deref().map(str::trim) {
            None | Some("embedded") => PolicyEngineKind::Embedded,
            Some("opa") => PolicyEngineKind::Opa,
            Some(other) => return Err(err("AUMOS_GOVERNANCE_POLICY_ENGINE", format!("expected embedded or opa, got {other:?}"))),
        };
        let opa_url = env.get("AUMOS_GOVERNANCE_OPA_URL").unwrap_or_else(|| "http://localhost:8181".to_owned());
        if !(opa_url.starts_with("http://") || opa_url.starts_with("https://")) {
            return Err(err("AUMOS_GOVERNANCE_OPA_URL", "expected an http:// or https:// URL"));
        }
        let evidence_bucket = env.get("AUMOS_GOVERNANCE_EVIDENCE_ARTIFACT_BUCKET");
        if let Some(b) = &evidence_bucket {
            if !["s3://", "gs://", "file://"].iter().any(|p| b.starts_with(p)) {
                return Err(err("AUMOS_GOVERNANCE_EVIDENCE_ARTIFACT_BUCKET", "expected s3://bucket[/prefix], gs://… or file://…"));
            }
        }
        let algorithm = match env.get("AUMOS_JWT_ALGORITHM").as_deref().map(str::trim) {
            None | Some("EdDSA") => JwtAlgorithm::EdDsa,
            Some("ES256") => JwtAlgorithm::Es256,
            Some("RS256") => JwtAlgorithm::Rs256,
            Some(other) => return Err(err("AUMOS_JWT_ALGORITHM", format!("expected EdDSA, ES256 or RS256, got {other:?}"))),
        };
        let jwt = JwtConfig {
            public_key_file: env.get("AUMOS_JWT_PUBLIC_KEY_FILE").map(PathBuf::from),
            private_key_file: env.get("AUMOS_JWT_PRIVATE_KEY_FILE").map(PathBuf::from),
            algorithm,
            jwks_url: env.get("AUMOS_JWT_JWKS_URL"),
            jwks_min_refresh: Duration::from_secs(env.parse("AUMOS_JWT_JWKS_MIN_REFRESH_SECONDS", 30, "a number of seconds")?),
            jwks_max_age: Duration::from_secs(env.parse("AUMOS_JWT_JWKS_MAX_AGE_SECONDS", 300, "a number of seconds")?),
            jwks_allow_insecure_http: env.parse("AUMOS_DEV_ALLOW_INSECURE_JWKS_HTTP", false, "true or false")?,
            issuer: env.get("AUMOS_JWT_ISSUER").unwrap_or_else(|| "aumos-dev".to_owned()),
            audience: env.get("AUMOS_JWT_AUDIENCE").unwrap_or_else(|| "aumos-governance".to_owned()),
            leeway: Duration::from_secs(env.parse("AUMOS_JWT_LEEWAY_SECONDS", 30, "a number of seconds")?),
        };
        if databases.is_some() && env.get("AUMOS_GOVERNANCE_LEDGER_SIGNING_KEY_FILE").is_none() {
            return Err(err("AUMOS_GOVERNANCE_LEDGER_SIGNING_KEY_FILE", "required when AUMOS_DATABASE_URL is set"));
        }
        if let Some(url) = &jwt.jwks_url {
            if url.starts_with("http://") && !jwt.jwks_allow_insecure_http {
                return Err(err(
                    "AUMOS_JWT_JWKS_URL",
                    "an http:// JWKS lets anyone on the path mint tokens: use https:// (or, in development only, set AUMOS_DEV_ALLOW_INSECURE_JWKS_HTTP=true)",
                ));
            }
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(err("AUMOS_JWT_JWKS_URL", "expected an https:// URL"));
            }
            if jwt.public_key_file.is_some() {
                return Err(err("AUMOS_JWT_JWKS_URL", "set either AUMOS_JWT_JWKS_URL or AUMOS_JWT_PUBLIC_KEY_FILE, not both"));
            }
        }
        if databases.is_some() && jwt.public_key_file.is_none() && jwt.jwks_url.is_none() {
            return Err(err("AUMOS_JWT_PUBLIC_KEY_FILE", "required when AUMOS_DATABASE_URL is set (or AUMOS_JWT_JWKS_URL)"));
        }
        Ok(Config {
            http_addr: env.parse("AUMOS_HTTP_ADDR", SocketAddr::from(([127, 0, 0, 1], 8000)), "host:port")?,
            metrics_addr: match env.get("AUMOS_METRICS_ADDR") {
                None => None,
                Some(v) => Some(v.trim().parse().map_err(|_| err("AUMOS_METRICS_ADDR", format!("expected host:port, got {v:?}")))?),
            },
            data_dir: PathBuf::from(env.get("AUMOS_GOVERNANCE_DATA_DIR").unwrap_or_else(|| "./.governance-data".to_owned())),
            databases,
            audit_pool_size,
            primary_pool_size,
            policy_engine,
            opa_url: opa_url.trim_end_matches('/').to_owned(),
            opa_token: env.get("AUMOS_GOVERNANCE_OPA_TOKEN").filter(|t| !t.trim().is_empty()).map(Secret::new),
            eval_timeout: env.millis("AUMOS_GOVERNANCE_POLICY_EVAL_TIMEOUT_MS", 200)?,
            evidence_bucket,
            kafka_bootstrap: env.get("AUMOS_KAFKA_BOOTSTRAP_SERVERS"),
            kafka_topic_prefix: env.get("AUMOS_KAFKA_TOPIC_PREFIX").unwrap_or_default(),
            kafka_security: crate::adapters::kafka::KafkaSecurity::from_env(env)?,
            jwt,
            otel_endpoint: env.get("OTEL_EXPORTER_OTLP_ENDPOINT"),
            tls_ca_file: env.get("AUMOS_TLS_CA_FILE").map(PathBuf::from),
            read_your_writes_timeout: env.millis("AUMOS_GOVERNANCE_READ_YOUR_WRITES_TIMEOUT_MS", 2000)?,
            evidence_max_bytes: env.parse("AUMOS_GOVERNANCE_EVIDENCE_MAX_BYTES", 50 * 1024 * 1024, "a number of bytes")?,
            evidence_expiring_days: env.parse("AUMOS_GOVERNANCE_EVIDENCE_EXPIRING_DAYS", 30, "a number of days")?,
            request_timeout: env.millis("AUMOS_HTTP_REQUEST_TIMEOUT_MS", 10_000)?,
            evaluate_rate_per_tenant: env.parse(
                "AUMOS_GOVERNANCE_EVALUATE_RATE_PER_TENANT",
                2000,
                "evaluations per second (0: no limit)",
            )?,
            evaluate_burst_per_tenant: env.parse("AUMOS_GOVERNANCE_EVALUATE_BURST_PER_TENANT", 4000, "a number of evaluations")?,
            request_body_limit: env.parse("AUMOS_HTTP_BODY_LIMIT_BYTES", 1024 * 1024, "a number of bytes")?,
            ledger_entry_max_bytes: env.parse(
                "AUMOS_GOVERNANCE_LEDGER_ENTRY_MAX_BYTES",
                crate::application::limits::DEFAULT_LEDGER_ENTRY_MAX_BYTES,
                "a number of bytes",
            )?,
            ledger_batch_max_bytes,
            ledger: LedgerConfig {
                signing_key_file: env.get("AUMOS_GOVERNANCE_LEDGER_SIGNING_KEY_FILE").map(PathBuf::from),
                origin: {
                    let o = env.get("AUMOS_GOVERNANCE_LEDGER_ORIGIN").unwrap_or_else(|| "aumos-governance.local/ledger".to_owned());
                    if o.contains('+') || o.chars().any(char::is_whitespace) {
                        return Err(err("AUMOS_GOVERNANCE_LEDGER_ORIGIN", "must not contain spaces or '+'"));
                    }
                    o
                },
                checkpoint_every_entries: {
                    let n: u64 = env.parse("AUMOS_GOVERNANCE_LEDGER_CHECKPOINT_EVERY_ENTRIES", 1000, "a number of entries")?;
                    if n == 0 {
                        return Err(err("AUMOS_GOVERNANCE_LEDGER_CHECKPOINT_EVERY_ENTRIES", "must be greater than 0"));
                    }
                    n
                },
                checkpoint_every: Duration::from_secs({
                    let s: u64 = env.parse("AUMOS_GOVERNANCE_LEDGER_CHECKPOINT_EVERY_SECONDS", 60, "a number of seconds")?;
                    if s == 0 {
                        return Err(err("AUMOS_GOVERNANCE_LEDGER_CHECKPOINT_EVERY_SECONDS", "must be greater than 0"));
                    }
                    s
                }),
            },
            sandbox: sandbox(env)?,
            pg_bin_dir: PathBuf::from(env.get("AUMOS_GOVERNANCE_PG_BIN_DIR").unwrap_or_else(|| "/usr/lib/postgresql/15/bin".to_owned())),
        })
    }
}

fn sandbox(env: &Env<'_>) -> Result<SandboxConfig, ConfigError> {
    let cores = std::thread::available_parallelism().map_or(2, usize::from).max(2);
    let positive = |var: &'static str, default: usize, what: &str| -> Result<usize, ConfigError> {
        let n: usize = env.parse(var, default, what)?;
        if n == 0 {
            return Err(err(var, "must be greater than 0"));
        }
        Ok(n)
    };
    let workers = positive("AUMOS_GOVERNANCE_ENGINE_WORKERS", cores, "a number of worker processes")?;
    let workers_per_tenant = positive("AUMOS_GOVERNANCE_ENGINE_WORKERS_PER_TENANT", (workers / 2).max(1), "a number of workers")?;
    if workers_per_tenant > workers {
        return Err(err("AUMOS_GOVERNANCE_ENGINE_WORKERS_PER_TENANT", "must not exceed AUMOS_GOVERNANCE_ENGINE_WORKERS"));
    }
    let worker_memory_mb: u64 = env.parse("AUMOS_GOVERNANCE_ENGINE_WORKER_MEMORY_MB", 1024, "a number of MiB")?;
    if worker_memory_mb < 128 {
        return Err(err("AUMOS_GOVERNANCE_ENGINE_WORKER_MEMORY_MB", "must be at least 128"));
    }
    Ok(SandboxConfig {
        workers,
        workers_per_tenant,
        queue_per_tenant: positive("AUMOS_GOVERNANCE_ENGINE_QUEUE_PER_TENANT", 256, "a number of requests")?,
        queue_timeout: env.millis("AUMOS_GOVERNANCE_ENGINE_QUEUE_TIMEOUT_MS", 5000)?,
        worker_memory_mb,
        test_timeout: env.millis("AUMOS_GOVERNANCE_POLICY_TEST_TIMEOUT_MS", 2000)?,
        worker_cache_entries: positive("AUMOS_GOVERNANCE_ENGINE_WORKER_CACHE_ENTRIES", 256, "a number of modules")?,
    })
}

/// The names of every variable [`Config::from_env`] reads. A test checks that
/// `docker-compose.yml` sets only these, so the two cannot drift apart.
pub const ENV_VARS: &[&str] = &[
    "AUMOS_DATABASE_URL",
    "AUMOS_DATABASE_MIGRATION_URL",
    "AUMOS_DATABASE_POOL_SIZE",
    "AUMOS_GOVERNANCE_AUDIT_DB_URL",
    "AUMOS_GOVERNANCE_AUDIT_DB_READER_URL",
    "AUMOS_GOVERNANCE_AUDIT_DB_ADMIN_URL",
    "AUMOS_GOVERNANCE_AUDIT_DB_POOL_SIZE",
    "AUMOS_GOVERNANCE_POLICY_ENGINE",
    "AUMOS_GOVERNANCE_OPA_URL",
    "AUMOS_GOVERNANCE_OPA_TOKEN",
    "AUMOS_GOVERNANCE_POLICY_EVAL_TIMEOUT_MS",
    "AUMOS_GOVERNANCE_POLICY_TEST_TIMEOUT_MS",
    "AUMOS_GOVERNANCE_ENGINE_WORKERS",
    "AUMOS_GOVERNANCE_ENGINE_WORKERS_PER_TENANT",
    "AUMOS_GOVERNANCE_ENGINE_QUEUE_PER_TENANT",
    "AUMOS_GOVERNANCE_ENGINE_QUEUE_TIMEOUT_MS",
    "AUMOS_GOVERNANCE_ENGINE_WORKER_MEMORY_MB",
    "AUMOS_GOVERNANCE_ENGINE_WORKER_CACHE_ENTRIES",
    "AUMOS_GOVERNANCE_EVIDENCE_ARTIFACT_BUCKET",
    "AUMOS_GOVERNANCE_EVIDENCE_MAX_BYTES",
    "AUMOS_GOVERNANCE_EVIDENCE_EXPIRING_DAYS",
    "AUMOS_KAFKA_BOOTSTRAP_SERVERS",
    "AUMOS_KAFKA_TOPIC_PREFIX",
    "AUMOS_KAFKA_SECURITY_PROTOCOL",
    "AUMOS_KAFKA_SSL_CA_LOCATION",
    "AUMOS_KAFKA_SSL_CERTIFICATE_LOCATION",
    "AUMOS_KAFKA_SSL_KEY_LOCATION",
    "AUMOS_KAFKA_SSL_KEY_PASSWORD",
    "AUMOS_KAFKA_SSL_ENDPOINT_IDENTIFICATION",
    "AUMOS_KAFKA_SASL_MECHANISM",
    "AUMOS_KAFKA_SASL_USERNAME",
    "AUMOS_KAFKA_SASL_PASSWORD",
    "AUMOS_HTTP_ADDR",
    "AUMOS_METRICS_ADDR",
    "AUMOS_HTTP_BODY_LIMIT_BYTES",
    "AUMOS_HTTP_REQUEST_TIMEOUT_MS",
    "AUMOS_GOVERNANCE_EVALUATE_RATE_PER_TENANT",
    "AUMOS_GOVERNANCE_EVALUATE_BURST_PER_TENANT",
    "AUMOS_GOVERNANCE_DATA_DIR",
    "AUMOS_GOVERNANCE_READ_YOUR_WRITES_TIMEOUT_MS",
    "AUMOS_GOVERNANCE_PG_BIN_DIR",
    "AUMOS_JWT_PUBLIC_KEY_FILE",
    "AUMOS_JWT_PRIVATE_KEY_FILE",
    "AUMOS_JWT_ALGORITHM",
    "AUMOS_JWT_JWKS_URL",
    "AUMOS_JWT_JWKS_MIN_REFRESH_SECONDS",
    "AUMOS_JWT_JWKS_MAX_AGE_SECONDS",
    "AUMOS_DEV_ALLOW_INSECURE_JWKS_HTTP",
    "AUMOS_TLS_CA_FILE",
    "AUMOS_JWT_ISSUER",
    "AUMOS_JWT_AUDIENCE",
    "AUMOS_JWT_LEEWAY_SECONDS",
    "AUMOS_GOVERNANCE_LEDGER_SIGNING_KEY_FILE",
    "AUMOS_GOVERNANCE_LEDGER_ORIGIN",
    "AUMOS_GOVERNANCE_LEDGER_ENTRY_MAX_BYTES",
    "AUMOS_GOVERNANCE_LEDGER_BATCH_MAX_BYTES",
    "AUMOS_GOVERNANCE_LEDGER_CHECKPOINT_EVERY_ENTRIES",
    "AUMOS_GOVERNANCE_LEDGER_CHECKPOINT_EVERY_SECONDS",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "RUST_LOG",
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        Config::from_env(&Env(&|k| map.get(k).cloned()))
    }

    #[test]
    fn defaults_are_the_embedded_setup() {
        let c = config(&[]).unwrap();
        assert!(c.databases.is_none());
        assert_eq!(c.policy_engine, PolicyEngineKind::Embedded);
        assert_eq!(c.opa_url, "http://localhost:8181");
        assert_eq!(c.eval_timeout, Duration::from_millis(200));
        assert_eq!(c.http_addr.to_string(), "127.0.0.1:8000");
        assert!(c.kafka_bootstrap.is_none());
        assert!(c.sandbox.workers >= 2);
        assert_eq!(c.sandbox.workers_per_tenant, c.sandbox.workers / 2);
        assert_eq!((c.sandbox.queue_per_tenant, c.sandbox.worker_memory_mb), (256, 1024));
        assert_eq!((c.sandbox.queue_timeout, c.sandbox.test_timeout), (Duration::from_secs(5), Duration::from_secs(2)));
    }

    #[test]
    fn a_tenant_cannot_be_given_more_workers_than_the_pool_has() {
        let e = config(&[("AUMOS_GOVERNANCE_ENGINE_WORKERS", "2"), ("AUMOS_GOVERNANCE_ENGINE_WORKERS_PER_TENANT", "3")]).unwrap_err();
        assert_eq!(e.var, "AUMOS_GOVERNANCE_ENGINE_WORKERS_PER_TENANT");
        let e = config(&[("AUMOS_GOVERNANCE_ENGINE_WORKER_MEMORY_MB", "16")]).unwrap_err();
        assert_eq!(e.var, "AUMOS_GOVERNANCE_ENGINE_WORKER_MEMORY_MB");
    }

    #[test]
    fn the_ledger_batch_byte_bound_is_refused_outside_64_kib_to_256_mib() {
        assert_eq!(config(&[]).unwrap().ledger_batch_max_bytes, 8 << 20);
        for bad in ["0", "65535", "268435457", "many"] {
            let e = config(&[("AUMOS_GOVERNANCE_LEDGER_BATCH_MAX_BYTES", bad)]).unwrap_err();
            assert_eq!(e.var, "AUMOS_GOVERNANCE_LEDGER_BATCH_MAX_BYTES", "{bad}");
        }
        for good in ["65536", "268435456"] {
            assert!(config(&[("AUMOS_GOVERNANCE_LEDGER_BATCH_MAX_BYTES", good)]).is_ok(), "{good}");
        }
    }

    #[test]
    fn an_invalid_value_names_its_variable() {
        let e = config(&[("AUMOS_GOVERNANCE_POLICY_EVAL_TIMEOUT_MS", "fast")]).unwrap_err();
        assert_eq!(e.var, "AUMOS_GOVERNANCE_POLICY_EVAL_TIMEOUT_MS");
        let e = config(&[("AUMOS_GOVERNANCE_POLICY_ENGINE", "wasm")]).unwrap_err();
        assert_eq!(e.var, "AUMOS_GOVERNANCE_POLICY_ENGINE");
        let e = config(&[("AUMOS_HTTP_ADDR", "nowhere")]).unwrap_err();
        assert_eq!(e.var, "AUMOS_HTTP_ADDR");
    }

    #[test]
    fn a_plain_http_jwks_url_is_refused_unless_the_development_variable_allows_it() {
        let e = config(&[("AUMOS_JWT_JWKS_URL", "http://idp.example/jwks.json")]).unwrap_err();
        assert_eq!(e.var, "AUMOS_JWT_JWKS_URL");
        assert!(e.message.contains("AUMOS_DEV_ALLOW_INSECURE_JWKS_HTTP"), "{e}");
        let c = config(&[("AUMOS_JWT_JWKS_URL", "http://idp.example/jwks.json"), ("AUMOS_DEV_ALLOW_INSECURE_JWKS_HTTP", "true")]);
        assert!(c.is_ok_and(|c| c.jwt.jwks_allow_insecure_http));
        assert!(config(&[("AUMOS_JWT_JWKS_URL", "https://idp.example/jwks.json")]).is_ok());
    }

    #[test]
    fn an_external_primary_requires_the_audit_urls() {
        let e = config(&[("AUMOS_DATABASE_URL", "postgres://a@h/d")]).unwrap_err();
        assert_eq!(e.var, "AUMOS_GOVERNANCE_AUDIT_DB_URL");
    }

    #[test]
    fn secrets_do_not_appear_in_debug_output() {
        let c = config(&[
            ("AUMOS_DATABASE_URL", "postgres://gov_app:hunter2@h/d"),
            ("AUMOS_GOVERNANCE_AUDIT_DB_URL", "postgres://w:hunter2@h/a"),
            ("AUMOS_GOVERNANCE_AUDIT_DB_READER_URL", "postgres://r:hunter2@h/a"),
            ("AUMOS_JWT_PUBLIC_KEY_FILE", "/k.pem"),
            ("AUMOS_GOVERNANCE_LEDGER_SIGNING_KEY_FILE", "/l.pem"),
            ("AUMOS_GOVERNANCE_OPA_TOKEN", "opa-hunter2"),
        ])
        .unwrap();
        assert_eq!(c.opa_token.as_ref().map(Secret::expose), Some("opa-hunter2"));
        assert!(!format!("{c:?}").contains("hunter2"));
    }
}
