//! Wiring: builds the adapters from the configuration, runs the server, and shuts down in
//! order (stop accepting, flush the ledger appender, stop the projectors, stop the
//! embedded clusters).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ledger::checkpoint::NoteSigner;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::sync::watch;

use crate::adapters::auth::{dev_key_paths, ensure_dev_keypair, TokenVerifier};
use crate::adapters::devstack::LocalStack;
use crate::adapters::http::{router, AppState};
use crate::adapters::ledger::notary::{Notary, NotaryConfig};
use crate::adapters::ledger::{Appender, LedgerReader};
use crate::application::commands::CommandBus;
use crate::application::runtime::PolicyRuntime;
use crate::config::{Config, DatabaseUrls};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error(transparent)]
    DevStack(#[from] crate::adapters::devstack::DevStackError),
    #[error(transparent)]
    Migrate(#[from] crate::adapters::migrate::MigrateError),
    #[error(transparent)]
    Auth(#[from] crate::adapters::auth::AuthError),
    #[error("{context}: {source}")]
    Database {
        context: &'static str,
        #[source]
        source: sqlx::Error,
    },
    #[error(transparent)]
    Ledger(#[from] crate::adapters::ledger::LedgerError),
    #[error("{0}")]
    Io(String),
    /// An auditor's input that cannot be used (unreadable file, bad key).
    #[error(transparent)]
    Input(#[from] ledger::offline::InputError),
}

/// Where the embedded default keeps its secrets.
pub fn secrets_dir(config: &Config) -> PathBuf {
    config.data_dir.join("secrets")
}

/// The ledger's checkpoint signer: the configured key, or the embedded default's key
/// (generated on first use). The key is read from a file, never logged or stored.
pub fn ledger_signer(config: &Config) -> Result<NoteSigner, AppError> {
    let path = match &config.ledger.signing_key_file {
        Some(p) => p.clone(),
        None => {
            let p = secrets_dir(config).join(LEDGER_KEY_FILE);
            ensure_ledger_key(&p)?;
            p
        }
    };
    private_to_owner(&path)?;
    let pem = std::fs::read_to_string(&path)
        .map_err(|e| AppError::Io(format!("AUMOS_GOVERNANCE_LEDGER_SIGNING_KEY_FILE {}: {e}", path.display())))?;
    NoteSigner::from_pem(&config.ledger.origin, &pem).map_err(|e| AppError::Io(format!("ledger signing key {}: {e}", path.display())))
}

/// Refuses a key file that its group or others may read or write: whoever can read the
/// ledger's signing key can sign checkpoints of a forged ledger.
fn private_to_owner(path: &std::path::Path) -> Result<(), AppError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = std::fs::metadata(path)
            .map_err(|e| AppError::Io(format!("AUMOS_GOVERNANCE_LEDGER_SIGNING_KEY_FILE {}: {e}", path.display())))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(AppError::Io(format!(
                "the ledger signing key {} is accessible to its group or others (mode {mode:03o}); \
                 run `chmod 600 {}` (and check who may have read it)",
                path.display(),
                path.display()
            )));
        }
    }
    Ok(())
}

pub const LEDGER_KEY_FILE: &str = "ledger-ed25519.pem";

/// Creates a ledger signing key at `path` unless one exists (owner-only permissions).
pub fn ensure_ledger_key(path: &std::path::Path) -> Result<(), AppError> {
    if path.exists() {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| AppError::Io(format!("{}: {e}", dir.display())))?;
    }
    let pem = NoteSigner::generate_pem().map_err(|e| AppError::Io(e.to_string()))?;
    crate::adapters::fsutil::write_private(path, pem.as_bytes()).map_err(|e| AppError::Io(format!("{}: {e}", path.display())))
}

/// The databases to use: the configured ones, or local clusters under the data directory
/// (created, started and migrated here). Returns the stack to stop at shutdown.
pub async fn databases(config: &Config) -> Result<(DatabaseUrls, Option<LocalStack>), AppError> {
    if let Some(urls) = &config.databases {
        return Ok((urls.clone(), None));
    }
    tracing::info!(data_dir = %config.data_dir.display(), "no AUMOS_DATABASE_URL: starting local PostgreSQL clusters (embedded default)");
    let stack = LocalStack::up(&config.data_dir, &config.pg_bin_dir, None).await?;
    let urls = stack.urls();
    migrate_all(&urls).await?;
    Ok((urls, Some(stack)))
}

/// Applies both sets of migrations with the owner/admin roles.
pub async fn migrate_all(urls: &DatabaseUrls) -> Result<(), AppError> {
    let missing = |var: &'static str| crate::config::ConfigError { var, message: "required by migrate".into() };
    let primary = urls.primary_migrator.as_ref().ok_or_else(|| missing("AUMOS_DATABASE_MIGRATION_URL"))?;
    let audit = urls.audit_admin.as_ref().ok_or_else(|| missing("AUMOS_GOVERNANCE_AUDIT_DB_ADMIN_URL"))?;
    let p = crate::adapters::migrate::run("primary", primary.expose(), &crate::adapters::migrate::PRIMARY).await?;
    let a = crate::adapters::migrate::run("audit", audit.expose(), &crate::adapters::migrate::AUDIT).await?;
    tracing::info!(primary_applied = p, audit_applied = a, "migrations applied");
    Ok(())
}

/// A pooled connection idle for longer than this is pinged before it is handed out (one
/// that died meanwhile, e.g. across a database restart, is replaced instead of failing a
/// request). A busy one is not: sqlx's default, a ping at every acquire, was one round trip
/// more per statement, an eighth of the service's CPU under evaluate load (perf, session 11).
const PING_IF_IDLE_FOR: Duration = Duration::from_secs(1);

pub async fn pool(url: &str, size: u32, context: &'static str) -> Result<PgPool, AppError> {
    PgPoolOptions::new()
        .max_connections(size)
        .acquire_timeout(Duration::from_secs(3))
        .test_before_acquire(false)
        .before_acquire(|conn, meta| {
            Box::pin(async move {
                if meta.idle_for < PING_IF_IDLE_FOR {
                    return Ok(true);
                }
                Ok(sqlx::Connection::ping(conn).await.is_ok())
            })
        })
        .connect(url)
        .await
        .map_err(|source| AppError::Database { context, source })
}

async fn verifier(config: &Config) -> Result<TokenVerifier, AppError> {
    if let Some(url) = &config.jwt.jwks_url {
        let http = crate::adapters::tls::http_client(config)?
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| AppError::Io(format!("JWKS client: {e}")))?;
        let jwks = crate::adapters::jwks::Jwks::new(url.clone(), http, config.jwt.jwks_min_refresh, config.jwt.jwks_max_age);
        return Ok(TokenVerifier::from_jwks(jwks, &config.jwt).await);
    }
    let path = match &config.jwt.public_key_file {
        Some(p) => p.clone(),
        None => {
            ensure_dev_keypair(&secrets_dir(config))?;
            dev_key_paths(&secrets_dir(config)).1
        }
    };
    Ok(TokenVerifier::from_file(&path, &config.jwt)?)
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term => {}
    }
    tracing::info!("shutdown requested");
}

/// Runs the service until SIGINT or SIGTERM.
pub async fn serve(config: Config) -> Result<(), AppError> {
    let verifier = verifier(&config).await?;
    let signer = ledger_signer(&config)?;
    let (urls, stack) = databases(&config).await?;
    let result = serve_with(config, urls, verifier, signer).await;
    if let Some(stack) = stack {
        tracing::info!("stopping the local PostgreSQL clusters");
        if let Err(e) = stack.stop_started() {
            tracing::error!(error = %e, "cannot stop the local clusters");
        }
    }
    result
}

/// Connection pools to the primary and both audit roles.
#[derive(Debug)]
pub struct Pools {
    pub primary: PgPool,
    pub writer: PgPool,
    pub reader: LedgerReader,
}

pub async fn pools(config: &Config, urls: &DatabaseUrls) -> Result<Pools, AppError> {
    Ok(Pools {
        primary: pool(urls.primary.expose(), config.primary_pool_size, "connecting to the primary database").await?,
        writer: pool(urls.audit_writer.expose(), config.audit_pool_size, "connecting to the audit database (writer)").await?,
        reader: LedgerReader::new(
            pool(urls.audit_reader.expose(), config.audit_pool_size, "connecting to the audit database (reader)").await?,
        ),
    })
}

/// The notary over `reader`: the service gives it the reader that holds its appender's
/// recent entries, so the entries it hashes come from memory, not read back.
pub fn notary(config: &Config, reader: LedgerReader, writer: PgPool, signer: NoteSigner) -> Notary {
    let cfg = NotaryConfig {
        origin: config.ledger.origin.clone(),
        every_entries: config.ledger.checkpoint_every_entries,
        every: config.ledger.checkpoint_every,
    };
    Notary::new(reader, writer, signer, cfg)
}

async fn serve_with(config: Config, urls: DatabaseUrls, verifier: TokenVerifier, signer: NoteSigner) -> Result<(), AppError> {
    let Pools { primary, writer, reader } = pools(&config, &urls).await?;
    let (appender, appender_handle) = Appender::start(writer.clone(), config.ledger_batch_max_bytes);
    let appender_handle = appender_handle.with_entry_max_bytes(config.ledger_entry_max_bytes);
    // This process's tailing readers (projectors, relay) take what its appender just
    // committed from memory instead of reading it back.
    let reader = reader.with_recent(appender_handle.recent());
    let notary = Arc::new(notary(&config, reader.clone(), writer, signer));
    let (shutdown_tx, shutdown_rx) = watch::channel(false);
    let http = crate::adapters::tls::http_client(&config)?
        .pool_idle_timeout(Duration::from_secs(90))
        .pool_max_idle_per_host(64)
        .tcp_nodelay(true)
        .build()
        .map_err(|e| AppError::Io(format!("building the HTTP client: {e}")))?;
    let engine = crate::adapters::engine::build(&config, http.clone());
    let runtime = PolicyRuntime::new(engine.clone(), primary.clone());
    let opa_sync = match config.policy_engine {
        crate::config::PolicyEngineKind::Opa => {
            let sync = Arc::new(crate::application::opa_sync::OpaSync::new(
                reader.clone(),
                crate::adapters::engine::opa_engine(&config, http.clone()),
            ));
            let (task_sync, stop) = (sync.clone(), shutdown_rx.clone());
            tokio::spawn(async move { task_sync.run(Duration::from_secs(2), stop).await });
            Some(sync)
        }
        crate::config::PolicyEngineKind::Embedded => None,
    };
    let projectors = projections::all();
    let dashboards = crate::adapters::http::dashboard::DashboardCache::default();
    let listeners: Vec<Arc<dyn crate::application::runtime::AppliedListener>> =
        vec![Arc::new(runtime.clone()), Arc::new(dashboards.clone())];
    let artifacts = crate::adapters::artifacts::ArtifactStore::from_location(
        config.evidence_bucket.as_deref(),
        &config.data_dir,
        config.evidence_max_bytes,
    )
    .map_err(|e| AppError::Io(e.to_string()))?;
    let (watch, runners) = crate::application::projection::start(
        projectors,
        listeners,
        reader.clone(),
        primary.clone(),
        appender_handle.head(),
        shutdown_rx.clone(),
    );
    let relay = match &config.kafka_bootstrap {
        Some(bootstrap) => {
            let relay = Arc::new(
                crate::adapters::relay::KafkaRelay::new(
                    bootstrap,
                    &config.kafka_security,
                    &config.kafka_topic_prefix,
                    reader.clone(),
                    primary.clone(),
                    &config.ledger.origin,
                    crate::application::limits::kafka_message_max_bytes(config.ledger_entry_max_bytes),
                    watch.stuck.clone(),
                )
                .map_err(|e| AppError::Io(format!("AUMOS_KAFKA_BOOTSTRAP_SERVERS: {e}")))?,
            );
            let (r, head, stop) = (relay.clone(), appender_handle.head(), shutdown_rx.clone());
            Some((relay, tokio::spawn(async move { r.run(head, stop).await })))
        }
        None => None,
    };
    let shutdown_rx_metrics = shutdown_rx.clone();
    let notary_task = {
        let (notary, head) = (notary.clone(), appender_handle.head());
        tokio::spawn(async move { notary.run(head, shutdown_rx).await })
    };
    let addr = config.http_addr;
    let bus = CommandBus::new(appender_handle, reader.clone());
    let replays = crate::application::replay::Replayer::new(primary.clone(), reader.clone(), bus.clone(), runtime.engine().clone());
    let state = Arc::new(AppState {
        kafka_bootstrap: config.kafka_bootstrap.clone(),
        artifacts,
        dashboards,
        health: Default::default(),
        evaluate_limiter: crate::application::limits::TenantRateLimiter::new(
            config.evaluate_rate_per_tenant,
            config.evaluate_burst_per_tenant,
        ),
        config,
        primary,
        ledger: reader,
        bus,
        verifier,
        projections: watch,
        notary,
        runtime,
        replays,
        opa_sync,
        relay: relay.as_ref().map(|(r, _)| r.clone()),
        http,
    });
    let listener = tokio::net::TcpListener::bind(addr).await.map_err(|e| AppError::Io(format!("binding {addr}: {e}")))?;
    let metrics_task = match state.config.metrics_addr {
        Some(maddr) => {
            let l = tokio::net::TcpListener::bind(maddr).await.map_err(|e| AppError::Io(format!("AUMOS_METRICS_ADDR {maddr}: {e}")))?;
            tracing::info!(addr = %maddr, "serving /metrics");
            let (app, mut stop) = (crate::adapters::http::metrics_router(state.clone()), shutdown_rx_metrics);
            Some(tokio::spawn(async move {
                let _ = axum::serve(l, app)
                    .with_graceful_shutdown(async move {
                        let _ = stop.changed().await;
                    })
                    .await;
            }))
        }
        None => None,
    };
    tracing::info!(%addr, "listening");
    let served = axum::serve(listener, router(state)).with_graceful_shutdown(shutdown_signal()).await;
    // The router (and with it every appender handle) is gone: the appender drains its
    // queue, committing what callers are waiting for, and stops.
    appender.join().await;
    let _ = shutdown_tx.send(true);
    if let Some(t) = metrics_task {
        let _ = t.await;
    }
    for r in runners {
        let _ = r.await;
    }
    // The notary signs a last checkpoint covering everything appended before exit.
    let _ = notary_task.await;
    // The relay finishes its batch (publishing what was acknowledged) and stops.
    if let Some((_, task)) = relay {
        let _ = task.await;
    }
    tracing::info!("shutdown complete");
    served.map_err(|e| AppError::Io(format!("server: {e}")))
}
