//! `governance-engine projections …`: where each read model and the Kafka relay stand.

use clap::Subcommand;

use crate::app::{self, AppError};
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum ProjectionsCommand {
    /// Show each projector's position and its lag behind the ledger, and the Kafka relay's.
    Status,
}

pub async fn run(cmd: ProjectionsCommand, config: &Config) -> Result<String, AppError> {
    let ProjectionsCommand::Status = cmd;
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
