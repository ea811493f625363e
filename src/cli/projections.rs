//! `governance-engine projections …`: where each read model and the Kafka relay stand.

use clap::Subcommand;

use crate::app::{self, AppError};
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Show each projector's position and its lag behind the ledger, and the Kafka relay's.
    Status,
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
    if let ProjectionsCommand::Rebuild { projection } = cmd {
        return rebuild(projection, config).await;
    }
    let (urls, stack) = app::databases(config).await?;
    let result = async {
        let pools = app::pools(config, &urls).await?;
        let head = pools.reader.head_seq().await?;
        let db = |e: sqlx::Error| AppError::Database { context: "reading positions", source: e };
        let rows: Vec<(String, i64, chrono::DateTime<chrono::Utc>)> =
            sqlx::query_as("SELECT projection, position, updated_at FROM gov_projection_positions ORDER BY projection")
                .fetch_all(&pools.primary)
                .await
                .map_err(db)?;
        let relay: Vec<(String, i64, chrono::DateTime<chrono::Utc>)> =
            sqlx::query_as("SELECT relay, position, updated_at FROM gov_relay_positions ORDER BY relay")
                .fetch_all(&pools.primary)
                .await
                .map_err(db)?;
        let mut out = format!("ledger head: seq {head}\n{:<12} {:<12} {:>12} {:>12}  updated\n", "kind", "name", "position", "lag");
        for (kind, list) in [("projection", rows), ("relay", relay)] {
            for (name, position, updated) in list {
                out.push_str(&format!("{kind:<12} {name:<12} {position:>12} {:>12}  {}\n", head - position, updated.to_rfc3339()));
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
        let mut out = Vec::new();
        for p in chosen {
            let name = p.name();
            let started = std::time::Instant::now();
            let progress = |pos: i64| eprintln!("rebuild {name}: {pos} of {head} entries replayed");
            let pos = crate::rebuild::rebuild(owner.expose(), &pools.reader, p.as_ref(), &progress)
                .await
                .map_err(|e| AppError::Io(format!("rebuilding {name}: {e}")))?;
            let secs = started.elapsed().as_secs_f64();
            out.push(format!("rebuilt {name} up to seq {pos} in {secs:.1} s ({:.0} entries/s)", pos as f64 / secs.max(1e-9)));
        }
        Ok(out.join("\n"))
    }
    .await;
    if let Some(stack) = stack {
        stack.stop_started()?;
    }
    result
}
