//! The `governance-engine` command line.

pub mod ledger;
pub mod policy;
pub mod projections;
pub mod replicate;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};

use crate::app;
use crate::config::Config;

#[derive(Debug, Parser)]
#[command(
    name = "governance-engine",
    version,
    about = "Governance layer of the AumOS platform: policy-as-code, compliance, and the Audit Wall ledger",
    long_about = "Governance layer of the AumOS platform: policy-as-code, compliance, and the Audit Wall ledger.\n\n\
Configuration comes from AUMOS_* environment variables (see README.md). Without AUMOS_DATABASE_URL \
the service runs on its embedded default: two local PostgreSQL clusters under AUMOS_GOVERNANCE_DATA_DIR \
(default ./.governance-data) and the embedded Rego engine."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP service until SIGINT/SIGTERM.
    ///
    /// Without AUMOS_DATABASE_URL it creates, migrates and starts local PostgreSQL clusters under
    /// AUMOS_GOVERNANCE_DATA_DIR and stops them again on shutdown.
    Serve,
    /// Apply pending migrations to the primary (migrations/) and audit (audit-schema/) databases.
    ///
    /// Uses AUMOS_DATABASE_MIGRATION_URL (the primary's owner role) and AUMOS_GOVERNANCE_AUDIT_DB_ADMIN_URL
    /// (the ledger admin); without AUMOS_DATABASE_URL, the embedded default's local clusters.
    Migrate,
    /// The auditor's commands: export, verify (offline or live), checkpoint, prove.
    #[command(subcommand)]
    Ledger(ledger::LedgerCommand),
    /// Read models and the Kafka relay: positions and lag.
    #[command(subcommand)]
    Projections(projections::ProjectionsCommand),
    /// Policy helpers: import a .rego file into a tenant through the API.
    #[command(subcommand)]
    Policy(policy::PolicyCommand),
    /// Development helpers: tokens and local clusters.
    #[command(subcommand)]
    Dev(DevCommand),
    /// Print the OpenAPI 3.1 document (the one served at /api/v1/openapi.json) to stdout.
    ///
    /// Needs no database or configuration: e.g. to generate a client.
    Openapi,
    /// An evaluation worker of the embedded engine's sandbox (started by the service).
    #[command(hide = true)]
    EngineWorker(EngineWorkerArgs),
}

#[derive(Debug, Args)]
pub struct EngineWorkerArgs {
    /// Address-space cap (RLIMIT_AS) in MiB.
    #[arg(long)]
    pub memory_mb: u64,
    /// Prepared modules to keep.
    #[arg(long, default_value_t = 256)]
    pub cache_entries: usize,
}

#[derive(Debug, Subcommand)]
pub enum DevCommand {
    /// Print a bearer token signed with the development key, valid for an hour.
    ///
    /// The key is AUMOS_JWT_PRIVATE_KEY_FILE, or the embedded default's key under
    /// AUMOS_GOVERNANCE_DATA_DIR. Only the token is printed, so `TOKEN=$(governance-engine dev token ...)` works.
    Token(TokenArgs),
    /// Create (if needed) and start local primary and audit PostgreSQL clusters and a development JWT key
    /// pair, then print `export NAME=value` lines for a shell.
    Up(UpArgs),
    /// Stop the local clusters started by `dev up`.
    Down(DownArgs),
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// Tenant id (UUID) for the token's tenant_id claim.
    #[arg(long)]
    pub tenant: String,
    /// Comma-separated roles, e.g. governance:admin,policy:author.
    #[arg(long, value_delimiter = ',', default_value = "governance:admin")]
    pub roles: Vec<String>,
    /// The token's subject (recorded as the actor of every change).
    #[arg(long, default_value = "dev-user")]
    pub subject: String,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    pub ttl_seconds: u64,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Directory for the clusters' data, credentials and keys.
    #[arg(long)]
    pub dir: PathBuf,
    /// Port of the primary cluster (default: a free port, remembered in DIR/stack.json).
    #[arg(long)]
    pub primary_port: Option<u16>,
    /// Port of the audit cluster (default: a free port, remembered in DIR/stack.json).
    #[arg(long)]
    pub audit_port: Option<u16>,
    /// Also apply the migrations.
    #[arg(long)]
    pub migrate: bool,
}

#[derive(Debug, Args)]
pub struct DownArgs {
    /// The directory given to `dev up`.
    #[arg(long)]
    pub dir: PathBuf,
}

/// Entry point of the binary.
#[allow(clippy::print_stdout)] // stdout carries the commands' output
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::EngineWorker(args) = &cli.command {
        // Before any configuration or runtime: the worker needs neither.
        return crate::adapters::engine::sandbox::worker::run(args.memory_mb, args.cache_entries);
    }
    if let Command::Openapi = cli.command {
        return match serde_json::to_string_pretty(&crate::adapters::http::document()) {
            Ok(json) => {
                println!("{json}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match Config::from_process_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("configuration error: {e}");
            return ExitCode::from(2);
        }
    };
    let _telemetry = crate::adapters::telemetry::init(config.otel_endpoint.as_deref());
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Command::Ledger(cmd) = cli.command {
        // The same report (and exit codes) as `ledger-verify`.
        return ::ledger::offline::report(runtime.block_on(ledger::run(cmd, config)));
    }
    match runtime.block_on(run(cli.command, config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %e, "failed");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[allow(clippy::print_stdout)] // stdout carries the commands' output (tokens, exports)
async fn run(command: Command, config: Config) -> Result<(), app::AppError> {
    match command {
        Command::Serve => app::serve(config).await,
        Command::Ledger(_) | Command::Openapi | Command::EngineWorker(_) => Ok(()),
        Command::Projections(cmd) => {
            println!("{}", projections::run(cmd, &config).await?);
            Ok(())
        }
        Command::Policy(cmd) => {
            println!("{}", policy::run(cmd, &config).await?);
            Ok(())
        }
        Command::Migrate => {
            let (urls, stack) = app::databases(&config).await?;
            let result = app::migrate_all(&urls).await;
            if let Some(stack) = stack {
                stack.stop_started()?;
            }
            result
        }
        Command::Dev(DevCommand::Token(args)) => {
            let path = match &config.jwt.private_key_file {
                Some(p) => p.clone(),
                None => crate::adapters::auth::dev_key_paths(&app::secrets_dir(&config)).0,
            };
            let pem = std::fs::read(&path).map_err(|e| {
                app::AppError::Io(format!(
                    "cannot read the development signing key {}: {e}; start the service once (make run) or set AUMOS_JWT_PRIVATE_KEY_FILE",
                    path.display()
                ))
            })?;
            let tenant = aggregates::TenantId::parse(&args.tenant).map_err(|e| app::AppError::Io(format!("--tenant: {e}")))?;
            let token = crate::adapters::auth::mint(
                &pem,
                &config.jwt,
                &args.subject,
                &tenant.to_string(),
                &args.roles,
                Duration::from_secs(args.ttl_seconds),
            )?;
            println!("{token}");
            Ok(())
        }
        Command::Dev(DevCommand::Up(args)) => {
            let ports = match (args.primary_port, args.audit_port) {
                (Some(p), Some(a)) => Some((p, a)),
                _ => None,
            };
            let stack = crate::adapters::devstack::LocalStack::up(&args.dir, &config.pg_bin_dir, ports).await?;
            if args.migrate {
                app::migrate_all(&stack.urls()).await?;
            }
            let keys = args.dir.canonicalize().map_err(|e| app::AppError::Io(e.to_string()))?.join("secrets");
            crate::adapters::auth::ensure_dev_keypair(&keys)?;
            let (private, public) = crate::adapters::auth::dev_key_paths(&keys);
            let ledger_key = keys.join(app::LEDGER_KEY_FILE);
            app::ensure_ledger_key(&ledger_key)?;
            println!("export AUMOS_GOVERNANCE_LEDGER_SIGNING_KEY_FILE='{}'", ledger_key.display());
            print!("{}", stack.exports());
            println!("export AUMOS_JWT_PUBLIC_KEY_FILE='{}'", public.display());
            println!("export AUMOS_JWT_PRIVATE_KEY_FILE='{}'", private.display());
            println!("export AUMOS_JWT_ISSUER='{}'", config.jwt.issuer);
            println!("export AUMOS_JWT_AUDIENCE='{}'", config.jwt.audience);
            Ok(())
        }
        Command::Dev(DevCommand::Down(args)) => {
            let stack = crate::adapters::devstack::LocalStack::open_existing(&args.dir, &config.pg_bin_dir)?;
            Ok(stack.stop_all()?)
        }
    }
}
