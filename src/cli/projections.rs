//! `governance-engine projections …`: where each read model and the Kafka relay stand,
//! rebuilding one, and the operator's way past a ledger entry one cannot apply.

use aggregates::facts::{ProjectionEntrySkipped, ProjectionName, SkipReason};
use clap::Subcommand;

use crate::app::{self, AppError};
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Show each projector's position and its lag behind the ledger, and the Kafka relay's;
    /// one that is stuck shows the seq it cannot apply and why.
    Status,
    /// Record, in the ledger, the decision that a projector (or the Kafka relay: `kafka`)
    /// skips one entry it can never apply, e.g. text an older version accepted.
    ///
    /// The ledger is not edited: the decision is a new entry (`ProjectionEntrySkipped`,
    /// under the skipped entry's tenant), which the running projector, `projections
    /// rebuild` and the relay honour. Each projection and seq can be skipped once.
    Skip {
        /// The projector (see `projections status`) or `kafka`.
        #[arg(long)]
        projection: String,
        /// The ledger seq to skip.
        #[arg(long)]
        seq: i64,
        /// Why; recorded with the decision.
        #[arg(long)]
        reason: String,
        /// Who decides (recorded as the entry's actor).
        #[arg(long, default_value = "operator")]
        actor: String,
    },
    /// Replay the ledger into fresh tables and swap them in atomically (progress on stderr).
    ///
    /// Readers keep the old tables until the swap and never see an empty or half-built model.
    /// Needs the schema owner's URL (AUMOS_DATABASE_MIGRATION_URL) for the DDL.
    Rebuild {
        /// Only this projector (default: all). Names: see `projections status`.
        #[arg(long)]
        projection: Option<String>,
    },
}

pub async fn run(cmd: ProjectionsCommand, config: &Config) -> Result<String, AppError> {
    match cmd {
        ProjectionsCommand::Rebuild { projection } => return rebuild(projection, config).await,
        ProjectionsCommand::Skip { projection, seq, reason, actor } => return skip(projection, seq, reason, actor, config).await,
        ProjectionsCommand::Status => {}
    }
    let (urls, stack) = app::databases(config).await?;
    let result = async {
        let pools = app::pools(config, &urls).await?;
        let head = pools.reader.head_seq().await?;
        let db = |e: sqlx::Error| AppError::Database { context: "reading positions", source: e };
        type Row = (String, i64, chrono::DateTime<chrono::Utc>, Option<i64>, Option<String>);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT projection, position, updated_at, stuck_seq, stuck_reason FROM gov_projection_positions ORDER BY projection",
        )
        .fetch_all(&pools.primary)
        .await
        .map_err(db)?;
        let relay: Vec<Row> =
            sqlx::query_as("SELECT relay, position, updated_at, stuck_seq, stuck_reason FROM gov_relay_positions ORDER BY relay")
                .fetch_all(&pools.primary)
                .await
                .map_err(db)?;
        let mut out = format!("ledger head: seq {head}\n{:<12} {:<17} {:>12} {:>12}  updated\n", "kind", "name", "position", "lag");
        for (kind, list) in [("projection", rows), ("relay", relay)] {
            for (name, position, updated, stuck_seq, reason) in list {
                out.push_str(&format!("{kind:<12} {name:<17} {position:>12} {:>12}  {}", head - position, updated.to_rfc3339()));
                if let Some(seq) = stuck_seq {
                    out.push_str(&format!("  STUCK at seq {seq}: {}", reason.unwrap_or_default()));
                }
                out.push('\n');
            }
        }
        Ok(out.trim_end().to_owned())
    }
    .await;
    if let Some(stack) = stack {
        stack.stop_started()?;
    }
    result
}

async fn rebuild(only: Option<String>, config: &Config) -> Result<String, AppError> {
    let (urls, stack) = app::databases(config).await?;
    let result = async {
        let owner = urls
            .primary_migrator
            .clone()
            .ok_or_else(|| AppError::Io("AUMOS_DATABASE_MIGRATION_URL: required by projections rebuild".into()))?;
        let pools = app::pools(config, &urls).await?;
        let head = pools.reader.head_seq().await?;
        let chosen: Vec<_> = projections::all().into_iter().filter(|p| only.as_deref().is_none_or(|n| n == p.name())).collect();
        if chosen.is_empty() {
            return Err(AppError::Io(format!("--projection: no projector named {:?}", only.unwrap_or_default())));
        }
        // The projectors are rebuilt at once, each on its own connection.
        let progress = |name: &'static str, pos: i64| eprintln!("rebuild {name}: {pos} of {head} entries replayed");
        let done = crate::application::rebuild::rebuild_all(owner.expose(), &pools.reader, &chosen, &progress)
            .await
            .map_err(|e| AppError::Io(format!("rebuilding: {e}")))?;
        let out: Vec<String> = chosen
            .iter()
            .zip(done)
            .map(|(p, (pos, took))| {
                let secs = took.as_secs_f64();
                format!("rebuilt {} up to seq {pos} in {secs:.1} s ({:.0} entries/s)", p.name(), pos as f64 / secs.max(1e-9))
            })
            .collect();
        Ok(out.join("\n"))
    }
    .await;
    if let Some(stack) = stack {
        stack.stop_started()?;
    }
    result
}

async fn skip(projection: String, seq: i64, reason: String, actor: String, config: &Config) -> Result<String, AppError> {
    let known = projections::all().iter().any(|p| p.name() == projection) || projection == "kafka";
    if !known {
        return Err(AppError::Io(format!("--projection: no projector named {projection:?} (see `projections status`, or `kafka`)")));
    }
    if reason.trim().is_empty() {
        return Err(AppError::Io("--reason: say why the entry is skipped".into()));
    }
    let (urls, stack) = app::databases(config).await?;
    let result = async {
        let pools = app::pools(config, &urls).await?;
        let entry = pools.reader.entry(seq).await?.ok_or_else(|| AppError::Io(format!("--seq: the ledger has no entry {seq}")))?;
        let fact = ProjectionEntrySkipped {
            projection: ProjectionName::parse(&projection).map_err(|e| AppError::Io(format!("--projection: {e}")))?,
            seq,
            reason: SkipReason::parse(&reason).map_err(|e| AppError::Io(format!("--reason: {e}")))?,
        };
        let record = crate::application::projection::skip_entry(fact, entry.tenant_id, &actor)?;
        let (appender, handle) = crate::adapters::ledger::Appender::start(pools.writer.clone(), config.ledger_batch_max_bytes);
        let appended = handle.append(vec![record]).await;
        drop(handle);
        appender.join().await;
        let at = match appended {
            Ok(a) => a.first().map(|a| a.seq).unwrap_or(0),
            Err(crate::adapters::ledger::LedgerError::Conflict { .. }) => {
                return Err(AppError::Io(format!("{projection} already skips seq {seq}")));
            }
            Err(e) => return Err(e.into()),
        };
        Ok(format!(
            "recorded at seq {at}: {projection} skips seq {seq} ({} {} of tenant {}); running projectors pick it up within seconds",
            entry.aggregate_type, entry.event_type, entry.tenant_id
        ))
    }
    .await;
    if let Some(stack) = stack {
        stack.stop_started()?;
    }
    result
}
