//! `governance-engine policy …`: loading Rego files into a tenant, and replaying recorded
//! decisions against a version, through the API (so both are validated, limited and
//! recorded exactly like any other request).

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
    /// Replay a policy's recorded decisions against one of its versions (impact analysis
    /// before activation), with a progress bar on stderr; prints the report (JSON) when done.
    Replay {
        /// The policy (UUID).
        #[arg(long)]
        policy: String,
        /// The version to replay the decisions against.
        #[arg(long)]
        version: u32,
        /// The tenant (UUID).
        #[arg(long)]
        tenant: String,
        /// Decisions decided at or after this instant (RFC 3339).
        #[arg(long)]
        from: chrono::DateTime<chrono::Utc>,
        /// Decisions decided at or before this instant (RFC 3339; default: now).
        #[arg(long)]
        to: Option<chrono::DateTime<chrono::Utc>>,
        /// At most this many decisions (the oldest first).
        #[arg(long)]
        limit: Option<u32>,
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

/// The tenant, a bearer token for it (given, or minted with the development key as
/// `subject` with `policy:author`), and the service's base URL.
fn api(config: &Config, tenant: &str, token: Option<String>, url: Option<String>, subject: &str) -> Result<Api, AppError> {
    let tenant = aggregates::TenantId::parse(tenant).map_err(|e| io(format!("--tenant: {e}")))?;
    let token = match token {
        Some(t) => t,
        None => {
            let key =
                config.jwt.private_key_file.clone().unwrap_or_else(|| crate::adapters::auth::dev_key_paths(&app::secrets_dir(config)).0);
            let pem = std::fs::read(&key).map_err(|e| io(format!("no --token and no development key at {}: {e}", key.display())))?;
            crate::adapters::auth::mint(
                &pem,
                &config.jwt,
                subject,
                &tenant.to_string(),
                &["policy:author".into()],
                Duration::from_secs(3600),
            )?
        }
    };
    let base = url.unwrap_or_else(|| format!("http://{}", config.http_addr));
    Ok(Api { tenant, token, base, client: reqwest::Client::new() })
}

struct Api {
    tenant: aggregates::TenantId,
    token: String,
    base: String,
    client: reqwest::Client,
}

impl Api {
    /// Sends a request; answers the status and the JSON body.
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<(reqwest::StatusCode, serde_json::Value), AppError> {
        let mut req = self
            .client
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("X-Tenant-ID", self.tenant.to_string())
            .timeout(Duration::from_secs(30));
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(io)?;
        let status = resp.status();
        Ok((status, resp.json().await.map_err(io)?))
    }
}

pub async fn run(cmd: PolicyCommand, config: &Config) -> Result<String, AppError> {
    match cmd {
        PolicyCommand::Import { file, tenant, name, activate, url, token } => {
            let api = api(config, &tenant, token, url, "policy-import")?;
            import(&api, file, name, activate).await
        }
        PolicyCommand::Replay { policy, version, tenant, from, to, limit, url, token } => {
            let api = api(config, &tenant, token, url, "policy-replay")?;
            let body = serde_json::json!({ "from": from, "to": to.unwrap_or_else(chrono::Utc::now), "limit": limit });
            replay(&api, &policy, version, &body).await
        }
    }
}

/// Starts a replay and follows it to its end with a progress bar.
async fn replay(api: &Api, policy: &str, version: u32, body: &serde_json::Value) -> Result<String, AppError> {
    let (status, mut r) =
        api.send(reqwest::Method::POST, &format!("/api/v1/policies/{policy}/versions/{version}/replay"), Some(body)).await?;
    if !status.is_success() {
        return Err(io(format!("replay refused ({status}): {r}")));
    }
    let id = r["replay_id"].as_str().ok_or_else(|| io("the service did not return a replay_id"))?.to_owned();
    let bar = indicatif::ProgressBar::new(r["progress"]["total"].as_u64().unwrap_or(0));
    if let Ok(style) = indicatif::ProgressStyle::with_template("replay {bar:40} {pos}/{len} decisions ({per_sec}, {eta} left)") {
        bar.set_style(style);
    }
    while r["status"] == "running" {
        bar.set_position(r["progress"]["read"].as_u64().unwrap_or(0));
        tokio::time::sleep(Duration::from_millis(250)).await;
        let (status, next) = api.send(reqwest::Method::GET, &format!("/api/v1/policies/{policy}/replays/{id}"), None).await?;
        if !status.is_success() {
            bar.abandon();
            return Err(io(format!("replay {id}: {status}: {next}")));
        }
        r = next;
    }
    bar.set_position(r["progress"]["read"].as_u64().unwrap_or(0));
    bar.finish();
    if r["status"] != "done" {
        return Err(io(format!("replay {id} failed: {}", r["error"])));
    }
    serde_json::to_string_pretty(&r).map_err(io)
}

/// Creates a policy from a file and, when asked, activates it.
async fn import(api: &Api, file: PathBuf, name: Option<String>, activate: bool) -> Result<String, AppError> {
    let rego = std::fs::read_to_string(&file).map_err(|e| io(format!("{}: {e}", file.display())))?;
    let name = name.unwrap_or_else(|| file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "imported".into()));
    let body = serde_json::json!({ "name": name, "rego": rego, "description": format!("imported from {}", file.display()) });
    let (status, created) = api.send(reqwest::Method::POST, "/api/v1/policies", Some(&body)).await?;
    if !status.is_success() {
        return Err(io(format!("create failed ({status}): {created}")));
    }
    if !activate {
        return serde_json::to_string_pretty(&created).map_err(io);
    }
    let id = created["policy_id"].as_str().ok_or_else(|| io("the service did not return a policy_id"))?;
    let (status, activated) = api.send(reqwest::Method::POST, &format!("/api/v1/policies/{id}/activate"), None).await?;
    if !status.is_success() {
        return Err(io(format!("created {id}, but activation failed ({status}): {activated}")));
    }
    serde_json::to_string_pretty(&activated).map_err(io)
}
