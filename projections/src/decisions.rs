//! The decision-record read model (`gov_policy_decisions`).

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use aggregates::facts::{DecisionEvent, JsonText, PolicyEvaluated, RulePath, DECISION_AGGREGATE};
use aggregates::Recorded;

use crate::{EventRecord, ProjectionError, Projector};

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
    /// `false` when the result was undefined or not a boolean decision (fail closed).
    pub allowed: bool,
    pub latency_ms: f64,
    pub actor: String,
    pub decided_at: DateTime<Utc>,
    /// Prove it with `GET /api/v1/ledger/entries/{ledger_seq}/proof`.
    pub ledger_seq: i64,
}

#[derive(Debug, Clone, Default)]
pub struct DecisionFilter {
    pub policy_id: Option<Uuid>,
    pub policy_version: Option<i32>,
    pub allowed: Option<bool>,
    /// Inclusive.
    pub from: Option<DateTime<Utc>>,
    /// Inclusive.
    pub to: Option<DateTime<Utc>>,
}

/// One page of decision records. `next_after` is the keyset cursor of the next page
/// (pass it as `after`); absent on the last page.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DecisionPage {
    pub items: Vec<DecisionView>,
    pub page: u32,
    pub page_size: u32,
    pub total: i64,
    pub next_after: Option<i64>,
}

/// Where a page starts: an offset page, or after a keyset cursor (a `ledger_seq`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecisionCursor {
    Page(u32),
    After(i64),
}

const COLUMNS: &str =
    "decision_id, policy_id, policy_version, engine, rule, input_sha256, input, result, defined, coalesce(allowed, false) AS allowed, latency_ms, actor, decided_at, ledger_seq";

pub async fn get(conn: &mut PgConnection, decision_id: Uuid) -> Result<Option<DecisionView>, ProjectionError> {
    let sql = format!("SELECT {COLUMNS} FROM gov_policy_decisions WHERE decision_id = $1");
    Ok(sqlx::query_as(&sql).bind(decision_id).fetch_optional(conn).await?)
}

const FILTER: &str = "($1::uuid IS NULL OR policy_id = $1) AND ($2::int IS NULL OR policy_version = $2) \
     AND ($3::bool IS NULL OR coalesce(allowed, false) = $3) AND ($4::timestamptz IS NULL OR decided_at >= $4) \
     AND ($5::timestamptz IS NULL OR decided_at <= $5)";

/// In ledger order (the order decisions were recorded), newest first unless `ascending`;
/// `from` and `to` are both inclusive. A keyset cursor reads only the rows of its page,
/// however deep it is; an offset page skips the rows before it.
pub async fn list(
    conn: &mut PgConnection,
    f: &DecisionFilter,
    cursor: DecisionCursor,
    page_size: u32,
    ascending: bool,
) -> Result<DecisionPage, ProjectionError> {
    let total: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM gov_policy_decisions WHERE {FILTER}"))
        .bind(f.policy_id)
        .bind(f.policy_version)
        .bind(f.allowed)
        .bind(f.from)
        .bind(f.to)
        .fetch_one(&mut *conn)
        .await?;
    let (order, beyond) = if ascending { ("ASC", ">") } else { ("DESC", "<") };
    let (after, offset, page) = match cursor {
        DecisionCursor::Page(p) => (None, crate::offset(p, page_size), p),
        DecisionCursor::After(seq) => (Some(seq), 0, 1),
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM gov_policy_decisions WHERE {FILTER} AND ($6::bigint IS NULL OR ledger_seq {beyond} $6) \
         ORDER BY ledger_seq {order} LIMIT $7 OFFSET $8"
    );
    let items: Vec<DecisionView> = sqlx::query_as(&sql)
        .bind(f.policy_id)
        .bind(f.policy_version)
        .bind(f.allowed)
        .bind(f.from)
        .bind(f.to)
        .bind(after)
        .bind(i64::from(page_size))
        .bind(offset)
        .fetch_all(&mut *conn)
        .await?;
    let next_after = if items.len() == page_size as usize { items.last().map(|d| d.ledger_seq) } else { None };
    Ok(DecisionPage { items, page, page_size, total, next_after })
}

/// A recorded decision as a replay reads it: what was decided, on which input.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct ReplayRow {
    pub decision_id: Uuid,
    pub ledger_seq: i64,
    pub policy_version: i32,
    pub rule: Option<String>,
    /// `None` when the policy keeps only the input's hash, or when there was no input. A
    /// record's `input` is `null` both when it keeps none and when the input was `null`;
    /// the input's hash tells them apart (an input of `null` is read as `null`).
    pub input: Option<serde_json::Value>,
    /// Whether the caller gave an input (`false`: the policy saw `input` undefined).
    pub input_given: bool,
    pub result: Option<serde_json::Value>,
    pub defined: bool,
    /// The input's size in bytes (its JSON text).
    pub input_bytes: i64,
}

/// The `input_sha256` of an input of `null` (the SHA-256 of `null`).
const NULL_INPUT_SHA256: &str = "74234e98afe7498fb5daf1f36ac2d78acc339464f950703b8c019892f982b90b";

/// The decisions a replay of `policy_id` reads: decided within `[from, to]`, recorded at
/// a ledger seq after `after` and at most `through`, in ledger order, at most `limit`, and
/// no more rows than start within `max_bytes` of input (at least one), so a page of large
/// inputs stays bounded in memory.
pub async fn replay_page(
    conn: &mut PgConnection,
    policy_id: Uuid,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    (after, through): (i64, i64),
    limit: i64,
    max_bytes: i64,
) -> Result<Vec<ReplayRow>, ProjectionError> {
    Ok(sqlx::query_as(
        "SELECT decision_id, ledger_seq, policy_version, rule, \
                CASE WHEN input IS NULL AND input_sha256 = $9 THEN 'null'::json ELSE input END AS input, \
                input_sha256 <> $8 AS input_given, result, defined, \
                size::bigint AS input_bytes FROM ( \
           SELECT decision_id, ledger_seq, policy_version, rule, input, input_sha256, result, defined, \
                  coalesce(octet_length(input::text), 0) AS size, \
                  sum(coalesce(octet_length(input::text), 0)) OVER (ORDER BY ledger_seq) AS running \
             FROM gov_policy_decisions \
            WHERE policy_id = $1 AND decided_at >= $2 AND decided_at <= $3 AND ledger_seq > $4 AND ledger_seq <= $5 \
            ORDER BY ledger_seq LIMIT $6) page \
         WHERE running - size < $7 ORDER BY ledger_seq",
    )
    .bind(policy_id)
    .bind(from)
    .bind(to)
    .bind(after)
    .bind(through)
    .bind(limit)
    .bind(max_bytes)
    .bind(aggregates::facts::NO_INPUT_SHA256)
    .bind(NULL_INPUT_SHA256)
    .fetch_all(conn)
    .await?)
}

/// How many decisions [`replay_page`] would read in all (before any limit).
pub async fn replay_count(
    conn: &mut PgConnection,
    policy_id: Uuid,
    (from, to): (DateTime<Utc>, DateTime<Utc>),
    through: i64,
) -> Result<i64, ProjectionError> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM gov_policy_decisions WHERE policy_id = $1 AND decided_at >= $2 AND decided_at <= $3 AND ledger_seq <= $4",
    )
    .bind(policy_id)
    .bind(from)
    .bind(to)
    .bind(through)
    .fetch_one(conn)
    .await?)
}

/// The ledger seq the decisions read model has applied: every decision recorded at or
/// before it is in `gov_policy_decisions`.
pub async fn applied_through(conn: &mut PgConnection) -> Result<i64, ProjectionError> {
    let position: Option<i64> =
        sqlx::query_scalar("SELECT position FROM gov_projection_positions WHERE projection = 'decisions'").fetch_optional(conn).await?;
    Ok(position.unwrap_or(0))
}

#[derive(Debug, Default)]
pub struct DecisionProjector;

#[async_trait::async_trait]
impl Projector for DecisionProjector {
    fn name(&self) -> &'static str {
        "decisions"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        &[DECISION_AGGREGATE]
    }

    fn tables(&self) -> &'static [&'static str] {
        &["gov_policy_decisions"]
    }

    /// Each decision inserts its own row (keyed by its id) and reads nothing.
    fn order_free(&self) -> bool {
        true
    }

    async fn apply_many(&self, tx: &mut PgConnection, events: &[EventRecord]) -> Result<(), ProjectionError> {
        let rows = DecisionRows::of(events)?;
        if rows.seq.is_empty() {
            return Ok(());
        }
        sqlx::query(&format!(
            "INSERT INTO gov_policy_decisions ({INSERTED}) SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::uuid[], $4::int[], \
             $5::text[], $6::text[], $7::text[], $8::text[]::json[], $9::text[]::json[], $10::bool[], $11::bool[], $12::float8[], $13::text[], $14::timestamptz[], $15::bigint[])",
        ))
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

    /// The same rows as [`Self::apply_many`], in one binary `COPY`.
    async fn apply_bulk(&self, conn: &mut PgConnection, events: &[EventRecord]) -> Result<(), ProjectionError> {
        let rows = DecisionRows::of(events)?;
        if rows.seq.is_empty() {
            return Ok(());
        }
        let statement = format!("COPY gov_policy_decisions ({INSERTED}) FROM STDIN (FORMAT binary)");
        let mut copy = crate::copy::BinaryCopy::start(conn, &statement, 15).await?;
        for i in 0..rows.seq.len() {
            copy.flush_if_full().await?;
            copy.row();
            copy.uuid(&rows.tenant[i]);
            copy.uuid(&rows.decision[i]);
            copy.uuid(&rows.policy[i]);
            copy.int4(rows.version[i]);
            copy.text(Some(&rows.engine[i]))?;
            copy.text(rows.rule[i].as_deref())?;
            copy.text(Some(&rows.sha[i]))?;
            copy.text(rows.input[i].as_deref())?;
            copy.text(rows.result[i].as_deref())?;
            copy.bool(Some(rows.defined[i]));
            copy.bool(rows.allowed[i]);
            copy.float8(rows.latency[i]);
            copy.text(Some(&rows.actor[i]))?;
            copy.timestamptz(&rows.at[i]);
            copy.int8(rows.seq[i]);
        }
        copy.finish().await?;
        Ok(())
    }

    async fn apply(&self, tx: &mut PgConnection, e: &EventRecord) -> Result<(), ProjectionError> {
        let Some(d) = decision(e)? else { return Ok(()) };
        sqlx::query(&format!(
            "INSERT INTO gov_policy_decisions ({INSERTED}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8::text::json, $9::text::json, $10, $11, $12, $13, $14, $15)",
        ))
        .bind(e.tenant_id)
        .bind(d.decision_id.as_uuid())
        .bind(d.policy_id.as_uuid())
        .bind(version(e, d)?)
        .bind(d.engine.as_str())
        .bind(d.rule.as_ref().map(RulePath::as_str))
        .bind(d.input_sha256.as_str())
        .bind(d.input.as_ref().map(JsonText::get))
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

/// The decision record of an entry (`None` for an entry of a kind this code does not know).
fn decision(e: &EventRecord) -> Result<Option<&PolicyEvaluated>, ProjectionError> {
    match e.decode()? {
        Some(Recorded::Decision(DecisionEvent::PolicyEvaluated(d))) => Ok(Some(d)),
        Some(other) => Err(ProjectionError::Decode(format!("seq {}: {:?} is not a decision record", e.seq, other.kind()))),
        None => Ok(None),
    }
}

/// The policy version as the read model's column holds it.
fn version(e: &EventRecord, d: &PolicyEvaluated) -> Result<i32, ProjectionError> {
    i32::try_from(d.policy_version).map_err(|_| ProjectionError::Decode(format!("policy_version at seq {} is out of range", e.seq)))
}

/// JSON text for a `json` column. Not `jsonb`: jsonb turns numbers into numerics and
/// prints them back in a form that need not parse as the number that went in (f64::MAX
/// comes back as 309 digits that overflow), so the read model keeps the text exactly.
/// (The input is already text, the record's own: [`JsonText`].)
fn exact(v: &Option<serde_json::Value>) -> Option<String> {
    v.as_ref().map(|v| v.to_string())
}

/// The columns a decision record fills, in the order its writers give them.
const INSERTED: &str = "tenant_id, decision_id, policy_id, policy_version, engine, rule, input_sha256, input, result, defined, allowed, \
     latency_ms, actor, decided_at, ledger_seq";

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
    /// The rows of a run's decision records (entries of kinds this code does not know are
    /// skipped).
    fn of(events: &[EventRecord]) -> Result<Self, ProjectionError> {
        let mut rows = Self::default();
        for e in events {
            if let Some(d) = decision(e)? {
                rows.push(e, d)?;
            }
        }
        Ok(rows)
    }

    fn push(&mut self, e: &EventRecord, d: &PolicyEvaluated) -> Result<(), ProjectionError> {
        self.tenant.push(e.tenant_id);
        self.decision.push(d.decision_id.as_uuid());
        self.policy.push(d.policy_id.as_uuid());
        self.version.push(version(e, d)?);
        self.engine.push(d.engine.as_str().to_owned());
        self.rule.push(d.rule.as_ref().map(|r| r.as_str().to_owned()));
        self.sha.push(d.input_sha256.as_str().to_owned());
        self.input.push(d.input.as_ref().map(|t| t.get().to_owned()));
        self.result.push(exact(&d.result));
        self.defined.push(d.defined);
        self.allowed.push(d.allowed);
        self.latency.push(d.latency_ms);
        self.actor.push(e.actor.clone());
        self.at.push(e.recorded_at);
        self.seq.push(e.seq);
        Ok(())
    }
}
