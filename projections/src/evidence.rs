//! The evidence read model (`gov_evidence`): one row per record, its status following
//! supersede and withdraw events; and, kept with it, the packs of its facts
//! ([`crate::evidence_packs`]).

use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;
use sqlx::PgConnection;
use uuid::Uuid;

use aggregates::compliance::{EvidenceEvent, EvidenceKind, Outcome, Verdict};
use aggregates::{Recorded, Stream};

use crate::{EventRecord, Page, ProjectionError, Projector};

#[derive(Debug, Clone, PartialEq, Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct EvidenceView {
    pub evidence_id: Uuid,
    pub workflow_id: Uuid,
    pub kind: String,
    pub description: String,
    pub requirement_ids: Vec<String>,
    pub control_ids: Vec<String>,
    /// The effective period (both days included), distinct from `submitted_at`.
    pub valid_from: NaiveDate,
    pub valid_until: NaiveDate,
    /// The artifact's SHA-256: its address in the object store and what the ledger holds.
    pub sha256: String,
    pub size_bytes: i64,
    pub content_type: String,
    pub filename: Option<String>,
    pub decision_id: Option<Uuid>,
    /// `pass`, `fail` or `informational`: what the evidence shows.
    pub outcome: String,
    /// The auditor's verdict, `accepted` or `rejected` (rejected evidence does not count).
    pub review_verdict: Option<String>,
    pub review_reason: Option<String>,
    pub reviewed_by: Option<String>,
    pub reviewed_at: Option<DateTime<Utc>>,
    /// `active`, `superseded` or `withdrawn`.
    pub status: String,
    pub superseded_by: Option<Uuid>,
    pub status_reason: Option<String>,
    pub submitted_by: String,
    pub submitted_at: DateTime<Utc>,
    /// The seq of the `EvidenceSubmitted` entry (prove it with the ledger's proofs).
    pub ledger_seq: i64,
    pub last_seq: i64,
}

const COLUMNS: &str = "evidence_id, workflow_id, kind, description, requirement_ids, control_ids, valid_from, valid_until, sha256, \
    size_bytes, content_type, filename, decision_id, outcome, review_verdict, review_reason, reviewed_by, reviewed_at, status, superseded_by, \
    status_reason, submitted_by, submitted_at, ledger_seq, last_seq";

pub async fn get(conn: &mut PgConnection, id: Uuid) -> Result<Option<EvidenceView>, ProjectionError> {
    let sql = format!("SELECT {COLUMNS} FROM gov_evidence WHERE evidence_id = $1");
    Ok(sqlx::query_as(&sql).bind(id).fetch_optional(conn).await?)
}

/// A workflow's evidence, whatever its status, oldest first.
pub async fn of_workflow(conn: &mut PgConnection, workflow_id: Uuid) -> Result<Vec<EvidenceView>, ProjectionError> {
    let sql = format!("SELECT {COLUMNS} FROM gov_evidence WHERE workflow_id = $1 ORDER BY submitted_at, evidence_id");
    Ok(sqlx::query_as(&sql).bind(workflow_id).fetch_all(conn).await?)
}

/// What judging requirements reads of an active evidence record: whom it reaches, its
/// period, outcome and verdict (read from the evidence's rows for one workflow, and from
/// [`crate::evidence_packs`] for a dashboard). Decoded into its types: a stored value none
/// of them names is an error, not a default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidenceFacts {
    pub evidence_id: Uuid,
    pub workflow_id: Uuid,
    pub kind: EvidenceKind,
    pub requirement_ids: Vec<String>,
    pub control_ids: Vec<String>,
    pub valid_from: NaiveDate,
    pub valid_until: NaiveDate,
    pub outcome: Outcome,
    pub review_verdict: Option<Verdict>,
}

/// The facts of a workflow's active evidence, oldest first.
pub async fn workflow_facts(conn: &mut PgConnection, workflow_id: Uuid) -> Result<Vec<EvidenceFacts>, ProjectionError> {
    let sql = format!("{FACTS} AND workflow_id = $1 ORDER BY submitted_at, evidence_id");
    Ok(sqlx::query_as(&sql).bind(workflow_id).fetch_all(conn).await?)
}

/// A row of [`FACTS`], by column position; the enumerations are read as borrowed text and
/// parsed, so they cost no allocation.
impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for EvidenceFacts {
    fn from_row(row: &'r sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row;
        fn typed<T>(row: &sqlx::postgres::PgRow, i: usize, parse: fn(&str) -> Option<T>) -> Result<Option<T>, sqlx::Error> {
            let Some(raw) = row.try_get::<Option<&str>, _>(i)? else { return Ok(None) };
            parse(raw)
                .map(Some)
                .ok_or_else(|| sqlx::Error::ColumnDecode { index: i.to_string(), source: format!("unknown value {raw:?}").into() })
        }
        fn required<T>(i: usize, v: Option<T>) -> Result<T, sqlx::Error> {
            v.ok_or_else(|| sqlx::Error::ColumnDecode { index: i.to_string(), source: "NULL".into() })
        }
        Ok(Self {
            evidence_id: row.try_get(0)?,
            workflow_id: row.try_get(1)?,
            kind: required(2, typed(row, 2, EvidenceKind::parse)?)?,
            requirement_ids: row.try_get(3)?,
            control_ids: row.try_get(4)?,
            valid_from: row.try_get(5)?,
            valid_until: row.try_get(6)?,
            outcome: required(7, typed(row, 7, Outcome::parse)?)?,
            review_verdict: typed(row, 8, Verdict::parse)?,
        })
    }
}

const FACTS: &str =
    "SELECT evidence_id, workflow_id, kind, requirement_ids, control_ids, valid_from, valid_until, outcome, review_verdict \
    FROM gov_evidence WHERE status = 'active'";

/// Sort keys of the evidence list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum EvidenceSort {
    SubmittedAt,
    ValidUntil,
}

impl EvidenceSort {
    fn column(self) -> &'static str {
        match self {
            EvidenceSort::SubmittedAt => "submitted_at",
            EvidenceSort::ValidUntil => "valid_until",
        }
    }
}

/// Which evidence records a list shows; every field narrows it.
#[derive(Debug, Clone, Default)]
pub struct EvidenceFilter {
    pub workflow_id: Option<Uuid>,
    pub status: Option<String>,
    pub kind: Option<String>,
    /// Names this CSF control.
    pub control_id: Option<String>,
    /// Names this requirement directly.
    pub requirement_id: Option<String>,
    /// Its `valid_until` is before this day.
    pub expiring_before: Option<NaiveDate>,
}

const FILTER: &str = "($1::uuid IS NULL OR workflow_id = $1) AND ($2::text IS NULL OR status = $2) AND ($3::text IS NULL OR kind = $3) \
    AND ($4::text IS NULL OR $4 = ANY(control_ids)) AND ($5::text IS NULL OR $5 = ANY(requirement_ids)) \
    AND ($6::date IS NULL OR valid_until < $6)";

/// One page of the tenant's evidence matching `f`, in the asked order.
pub async fn page(
    conn: &mut PgConnection,
    f: &EvidenceFilter,
    (page, page_size): (u32, u32),
    (sort, order): (EvidenceSort, crate::SortOrder),
) -> Result<Page<EvidenceView>, ProjectionError> {
    macro_rules! bind_filter {
        ($q:expr) => {
            $q.bind(f.workflow_id)
                .bind(f.status.as_deref())
                .bind(f.kind.as_deref())
                .bind(f.control_id.as_deref())
                .bind(f.requirement_id.as_deref())
                .bind(f.expiring_before)
        };
    }
    let total: i64 =
        bind_filter!(sqlx::query_scalar(&format!("SELECT count(*) FROM gov_evidence WHERE {FILTER}"))).fetch_one(&mut *conn).await?;
    let sql = format!(
        "SELECT {COLUMNS} FROM gov_evidence WHERE {FILTER} ORDER BY {} {o}, evidence_id {o} LIMIT $7 OFFSET $8",
        sort.column(),
        o = order.sql()
    );
    let items =
        bind_filter!(sqlx::query_as(&sql)).bind(i64::from(page_size)).bind(crate::offset(page, page_size)).fetch_all(&mut *conn).await?;
    Ok(Page { items, page, page_size, total })
}

/// Builds the evidence read model.
#[derive(Debug, Default)]
pub struct EvidenceProjector;

#[async_trait::async_trait]
impl Projector for EvidenceProjector {
    fn name(&self) -> &'static str {
        "evidence"
    }

    fn aggregate_types(&self) -> &'static [&'static str] {
        const TYPES: &[&str] = &[Stream::Evidence.aggregate_type()];
        TYPES
    }

    fn tables(&self) -> &'static [&'static str] {
        &["gov_evidence", "gov_evidence_packs"]
    }

    async fn apply(&self, tx: &mut PgConnection, e: &EventRecord) -> Result<(), ProjectionError> {
        let id = e.aggregate_uuid()?;
        // Unknown kinds are skipped; a bad field is an error.
        let Some(Recorded::Evidence(event)) = e.decode()?.cloned() else { return Ok(()) };
        let (status, by, reason) = match event {
            EvidenceEvent::EvidenceSubmitted(s) => {
                let workflow_id = s.workflow_id.as_uuid();
                let sql = format!(
                    "INSERT INTO gov_evidence (tenant_id, evidence_id, workflow_id, kind, description, requirement_ids, control_ids, valid_from, \
                     valid_until, sha256, size_bytes, content_type, filename, decision_id, status, submitted_by, submitted_at, ledger_seq, last_seq, outcome, \
                     pack_chunk) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, 'active', $15, $16, $17, $17, $18, {}) \
                     RETURNING {}",
                    crate::evidence_packs::NEXT_CHUNK,
                    crate::evidence_packs::ADDED
                );
                let added: (i32, i32, String) = sqlx::query_as(&sql)
                    .bind(e.tenant_id)
                    .bind(id)
                    .bind(workflow_id)
                    .bind(s.kind.as_str())
                    .bind(s.description.as_str())
                    .bind(s.requirement_ids.iter().map(|r| r.as_str().to_owned()).collect::<Vec<_>>())
                    .bind(s.control_ids.iter().map(|c| c.as_str().to_owned()).collect::<Vec<_>>())
                    .bind(s.valid_from)
                    .bind(s.valid_until)
                    .bind(s.artifact.sha256.as_str())
                    .bind(i64::try_from(s.artifact.size_bytes).unwrap_or(i64::MAX))
                    .bind(&s.artifact.content_type)
                    .bind(&s.artifact.filename)
                    .bind(s.decision_id.map(|d| d.as_uuid()))
                    .bind(&e.actor)
                    .bind(e.recorded_at)
                    .bind(e.seq)
                    .bind(s.outcome.as_str())
                    .fetch_one(&mut *tx)
                    .await?;
                return crate::evidence_packs::record_added(tx, e.tenant_id, workflow_id, added).await;
            }
            EvidenceEvent::EvidenceReviewed { verdict, actor, reason } => {
                let reviewed: Option<(Uuid, i32)> = sqlx::query_as(
                    "UPDATE gov_evidence SET review_verdict = $3, review_reason = $4, reviewed_by = $5, reviewed_at = $6, last_seq = $7 \
                     WHERE tenant_id = $1 AND evidence_id = $2 RETURNING workflow_id, pack_chunk",
                )
                .bind(e.tenant_id)
                .bind(id)
                .bind(verdict.as_str())
                .bind(reason.as_str())
                .bind(actor.as_str())
                .bind(e.recorded_at)
                .bind(e.seq)
                .fetch_optional(&mut *tx)
                .await?;
                return changed(tx, e.tenant_id, reviewed).await;
            }
            EvidenceEvent::EvidenceSuperseded { by, reason, .. } => ("superseded", Some(by.as_uuid()), reason.map(String::from)),
            EvidenceEvent::EvidenceWithdrawn { reason, .. } => ("withdrawn", None, Some(String::from(reason))),
        };
        let updated: Option<(Uuid, i32)> = sqlx::query_as(
            "UPDATE gov_evidence SET status = $3, superseded_by = $4, status_reason = $5, last_seq = $6 WHERE tenant_id = $1 AND evidence_id = $2 \
             RETURNING workflow_id, pack_chunk",
        )
        .bind(e.tenant_id)
        .bind(id)
        .bind(status)
        .bind(by)
        .bind(reason)
        .bind(e.seq)
        .fetch_optional(&mut *tx)
        .await?;
        changed(tx, e.tenant_id, updated).await
    }
}

/// The pack of a record whose status or verdict changed (`None`: no such record) is
/// recomputed.
async fn changed(tx: &mut PgConnection, tenant: Uuid, record: Option<(Uuid, i32)>) -> Result<(), ProjectionError> {
    match record {
        Some((workflow_id, chunk)) => crate::evidence_packs::record_changed(tx, tenant, workflow_id, chunk).await,
        None => Ok(()),
    }
}
