//! The decision-record read model (`gov_policy_decisions`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{EventRecord, Page, ProjectionError, Projector};

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct DecisionView {
    pub decision_id: Uuid,
    pub policy_id: Uuid,
    pub policy_version: i32,
    pub engine: String,
    pub rule: Option<String>,
    pub input_sha256: String,
    pub input: Option<serde_json::Value>,
    pub result: Option<serde_json::Value>,
    pub defined: bool,
    pub allowed: Option<bool>,
    pub latency_ms: f64,
    pub actor: String,
    pub decided_at: DateTime<Utc>,
    /// Prove it with `GET /api/v1/ledger/entries/{ledger_seq}/proof`.
    pub ledger_seq: i64,
}

#[derive(Debug, Clone, Default)]
pub struct DecisionFilter {
    pub policy_id: Option<Uuid>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
}

const COLUMNS: &str =
    "decision_id, policy_id, policy_version, engine, rule, input_sha256, input, result, defined, allowed, latency_ms, actor, decided_at, ledger_seq";

pub async fn get(conn: &mut PgConnection, decision_id: Uuid) -> Result<Option<DecisionView>, ProjectionError> {
    let sql = format!("SELECT {COLUMNS} FROM gov_policy_decisions WHERE decision_id = $1");
    Ok(sqlx::query_as(&sql).bind(decision_id).fetch_optional(conn).await?)
}

/// Newest first; `from` is inclusive and `to` exclusive.
pub async fn list(conn: &mut PgConnection, f: &DecisionFilter, page: u32, page_size: u32) -> Result<Page<DecisionView>, ProjectionError> {
    let filter = "($1::uuid IS NULL OR policy_id = $1) AND ($2::timestamptz IS NULL OR decided_at >= $2) AND ($3::timestamptz IS NULL OR decided_at < $3)";
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM gov_policy_decisions WHERE {filter}"))
        .bind(f.policy_id)
        .bind(f.from)
        .bind(f.to)
        .fetch_one(&mut *conn)
        .await?;
    let sql =
        format!("SELECT {COLUMNS} FROM gov_policy_decisions WHERE {filter} ORDER BY decided_at DESC, decision_id DESC LIMIT $4 OFFSET $5");
    let items = sqlx::query_as(&sql)
        .bind(f.policy_id)
        .bind(f.from)
        .bind(f.to)
        .bind(i64::from(page_size))
        .bind(crate::offset(page, page_size))
        .fetch_all(&mut *conn)
        .await?;
    Ok(Page { items, page, page_size, total })
}

#[derive(Debug, Default)]
pub struct DecisionProjector;

#[async_trait::async_trait]
impl Projector for DecisionProjector {
    fn name(&self) -> &'static str {
        "decisions"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[aggregates::decision::DECISION_AGGREGATE]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["gov_policy_decisions"]
    }

    async fn apply_many(&self, tx: &mut PgConnection, events: &[EventRecord]) -> Result<(), ProjectionError> {
        let mut rows = DecisionRows::default();
        for e in events.iter().filter(|e| e.event_type == aggregates::decision::POLICY_EVALUATED) {
            let d: aggregates::decision::PolicyEvaluated =
                serde_json::from_value(e.payload.clone()).map_err(|err| ProjectionError::Decode(format!("seq {}: {err}", e.seq)))?;
            rows.push(e, d);
        }
        if rows.seq.is_empty() {
            return Ok(());
        }
        sqlx::query(
            "INSERT INTO gov_policy_decisions (tenant_id, decision_id, policy_id, policy_version, engine, rule, input_sha256, input, result, \
             defined, allowed, latency_ms, actor, decided_at, ledger_seq) SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::int[], \
             $5::text[], $6::text[], $7::text[], $8::text[]::json[], $9::text[]::json[], $10::bool[], $11::bool[], $12::float8[], $13::text[], $14::timestamptz[], $15::bigint[])",
        )
        .bind(&rows.tenant)
        .bind(&rows.decision)
        .bind(&rows.policy)
        .bind(&rows.version)
        .bind(&rows.engine)
        .bind(&rows.rule)
        .bind(&rows.sha)
        .bind(&rows.input)
        .bind(&rows.result)
        .bind(&rows.defined)
        .bind(&rows.allowed)
        .bind(&rows.latency)
        .bind(&rows.actor)
        .bind(&rows.at)
        .bind(&rows.seq)
        .execute(tx)
        .await?;
        Ok(())
    }

    async fn apply(&self, tx: &mut PgConnection, e: &EventRecord) -> Result<(), ProjectionError> {
        if e.event_type != aggregates::decision::POLICY_EVALUATED {
            return Ok(());
        }
        let d: aggregates::decision::PolicyEvaluated =
            serde_json::from_value(e.payload.clone()).map_err(|err| ProjectionError::Decode(format!("seq {}: {err}", e.seq)))?;
        sqlx::query(
            "INSERT INTO gov_policy_decisions (tenant_id, decision_id, policy_id, policy_version, engine, rule, input_sha256, input, result, \
             defined, allowed, latency_ms, actor, decided_at, ledger_seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::json, $9::text::json, $10, $11, $12, $13, $14, $15)",
        )
        .bind(e.tenant_id)
        .bind(d.decision_id)
        .bind(d.policy_id)
        .bind(i32::try_from(d.policy_version).unwrap_or(i32::MAX))
        .bind(&d.engine)
        .bind(&d.rule)
        .bind(&d.input_sha256)
        .bind(exact(&d.input))
        .bind(exact(&d.result))
        .bind(d.defined)
        .bind(d.allowed)
        .bind(d.latency_ms)
        .bind(&e.actor)
        .bind(e.recorded_at)
        .bind(e.seq)
        .execute(tx)
        .await?;
        Ok(())
    }
}

/// JSON text for a `json` column. Not `jsonb`: jsonb turns numbers into numerics and
/// prints them back in a form that need not parse as the number that went in (f64::MAX
/// comes back as 309 digits that overflow), so the read model keeps the text exactly.
fn exact(v: &Option<serde_json::Value>) -> Option<String> {
    v.as_ref().map(|v| v.to_string())
}

/// Column arrays for one multi-row insert.
#[derive(Default)]
struct DecisionRows {
    tenant: Vec<Uuid>,
    decision: Vec<Uuid>,
    policy: Vec<Uuid>,
    version: Vec<i32>,
    engine: Vec<String>,
    rule: Vec<Option<String>>,
    sha: Vec<String>,
    input: Vec<Option<String>>,
    result: Vec<Option<String>>,
    defined: Vec<bool>,
    allowed: Vec<Option<bool>>,
    latency: Vec<f64>,
    actor: Vec<String>,
    at: Vec<DateTime<Utc>>,
    seq: Vec<i64>,
}

impl DecisionRows {
    fn push(&mut self, e: &EventRecord, d: aggregates::decision::PolicyEvaluated) {
        self.tenant.push(e.tenant_id);
        self.decision.push(d.decision_id);
        self.policy.push(d.policy_id);
        self.version.push(i32::try_from(d.policy_version).unwrap_or(i32::MAX));
        self.engine.push(d.engine);
        self.rule.push(d.rule);
        self.sha.push(d.input_sha256);
        self.input.push(exact(&d.input));
        self.result.push(exact(&d.result));
        self.defined.push(d.defined);
        self.allowed.push(d.allowed);
        self.latency.push(d.latency_ms);
        self.actor.push(e.actor.clone());
        self.at.push(e.recorded_at);
        self.seq.push(e.seq);
    }
}
