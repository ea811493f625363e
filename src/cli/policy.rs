//! `governance-engine policy …`: loading Rego files into a tenant through the API (so an
//! import is validated, tested and recorded exactly like any other create).

use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;

use crate::app::{self, AppError};
use crate::config::Config;

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Create a policy in a tenant from a .rego file (e.g. one of opa/), optionally activating it.
    Import {
        /// The Rego file.
        file: PathBuf,
        /// The tenant (UUID).
        #[arg(long)]
        tenant: String,
        /// The policy's name (default: the file name without .rego).
        #[arg(long)]
        name: Option<String>,
        /// Activate it after creating (runs its tests first).
        #[arg(long)]
        activate: bool,
        /// The service's base URL (default: http://AUMOS_HTTP_ADDR).
        #[arg(long)]
        url: Option<String>,
        /// A bearer token; default: one minted with the development key (policy:author).
        #[arg(long, env = "AUMOS_TOKEN", hide_env_values = true)]
        token: Option<String>,
    },
}

fn io(e: impl std::fmt::Display) -> AppError {
    AppError::Io(e.to_string())
}

pub async fn run(cmd: PolicyCommand, config: &Config) -> Result<String, AppError> {
    let PolicyCommand::Import { file, tenant, name, activate, url, token } = cmd;
    let rego = std::fs::read_to_string(&file).map_err(|e| io(format!("{}: {e}", file.display())))?;
    let tenant = aggregates::TenantId::parse(&tenant).map_err(|e| io(format!("--tenant: {e}")))?;
    let token = match token {
        Some(t) => t,
        None => {
            let key =
                config.jwt.private_key_file.clone().unwrap_or_else(|| crate::adapters::auth::dev_key_paths(&app::secrets_dir(config)).0);
            let pem = std::fs::read(&key).map_err(|e| io(format!("no --token and no development key at {}: {e}", key.display())))?;
            crate::adapters::auth::mint(
                &pem,
                &config.jwt,
                "policy-import",
                &tenant.to_string(),
                &["policy:author".into()],
                Duration::from_secs(300),
            )?
        }
    };
    let base = url.unwrap_or_else(|| format!("http://{}", config.http_addr));
    let name = name.unwrap_or_else(|| file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "imported".into()));
    let client = reqwest::Client::new();
    let send = |req: reqwest::RequestBuilder| {
        req.bearer_auth(&token).header("X-Tenant-ID", tenant.to_string()).timeout(Duration::from_secs(30)).send()
    };
    let body = serde_json::json!({ "name": name, "rego": rego, "description": format!("imported from {}", file.display()) });
    let resp = send(client.post(format!("{base}/api/v1/policies")).json(&body)).await.map_err(io)?;
    let status = resp.status();
    let created: serde_json::Value = resp.json().await.map_err(io)?;
    if !status.is_success() {
        return Err(io(format!("create failed ({status}): {created}")));
    }
    if !activate {
        return serde_json::to_string_pretty(&created).map_err(io);
    }
    let id = created["policy_id"].as_str().ok_or_else(|| io("the service did not return a policy_id"))?;
    let resp = send(client.post(format!("{base}/api/v1/policies/{id}/activate"))).await.map_err(io)?;
    let status = resp.status();
    let activated: serde_json::Value = resp.json().await.map_err(io)?;
    if !status.is_success() {
        return Err(io(format!("created {id}, but activation failed ({status}): {activated}")));
    }
    serde_json::to_string_pretty(&activated).map_err(io)
}
