//! Evidence packs (`gov_evidence_packs`, migration 20261202000101): what judging needs of
//! a workflow's active evidence, a few dozen records to a row, so that a cold dashboard
//! reads thousands of packs rather than tens of thousands of rows.
//!
//! The evidence projector keeps them: each record belongs to one chunk of its workflow
//! ([`chunk_for_new`]), and a chunk's lines are recomputed in PostgreSQL from its records
//! (at most [`RECORDS_PER_CHUNK`]) whenever one of them is added or changes
//! ([`record_added`], [`record_changed`]): one bounded recomputation per evidence event,
//! however many records the workflow has. The line of a record is made by one SQL
//! function (`gov_evidence_fact_line`) and read here, into the same [`EvidenceFacts`] as
//! the evidence's own rows; a line that does not decode is an error, never a default.

use chrono::NaiveDate;
use sqlx::PgConnection;
use uuid::Uuid;

use aggregates::compliance::{EvidenceKind, Outcome, Verdict};

use crate::evidence::EvidenceFacts;
use crate::ProjectionError;

/// Records a chunk is given before the next chunk is begun.
pub const RECORDS_PER_CHUNK: i32 = 32;
/// Bytes of lines after which a chunk is given no more records (one record naming
/// thousands of ids fills a chunk on its own).
pub const CHUNK_BYTES: i32 = 8192;

/// The chunk of `workflow_id` a record projected now goes to: the workflow's last chunk,
/// unless it is full (or there is none).
pub(crate) async fn chunk_for_new(conn: &mut PgConnection, tenant: Uuid, workflow_id: Uuid) -> Result<i32, ProjectionError> {
    let last: Option<(i32, i32, i32)> = sqlx::query_as(
        "SELECT chunk, assigned, octet_length(facts) FROM gov_evidence_packs WHERE tenant_id = $1 AND workflow_id = $2 \
         ORDER BY chunk DESC LIMIT 1",
    )
    .bind(tenant)
    .bind(workflow_id)
    .fetch_optional(conn)
    .await?;
    Ok(next_chunk(last))
}

/// [`chunk_for_new`]'s rule, from the last chunk's number, records given and bytes.
fn next_chunk(last: Option<(i32, i32, i32)>) -> i32 {
    match last {
        None => 0,
        Some((chunk, assigned, bytes)) if assigned >= RECORDS_PER_CHUNK || bytes >= CHUNK_BYTES => chunk.saturating_add(1),
        Some((chunk, ..)) => chunk,
    }
}

/// The lines of chunk `$3` of workflow `$2` of tenant `$1`: its active records', in
/// evidence-id order ('' when none is active).
const CHUNK_FACTS: &str = "coalesce((SELECT string_agg(gov_evidence_fact_line(e.evidence_id, e.kind, e.requirement_ids, \
    e.control_ids, e.valid_from, e.valid_until, e.outcome, e.review_verdict), E'\\n' ORDER BY e.evidence_id) \
    FROM gov_evidence e WHERE e.tenant_id = $1 AND e.workflow_id = $2 AND e.pack_chunk = $3 AND e.status = 'active'), '')";

/// A record was added to `chunk` (already in `gov_evidence`): the chunk counts it and its
/// lines are recomputed.
pub(crate) async fn record_added(conn: &mut PgConnection, tenant: Uuid, workflow_id: Uuid, chunk: i32) -> Result<(), ProjectionError> {
    let sql = format!(
        "INSERT INTO gov_evidence_packs (tenant_id, workflow_id, chunk, assigned, facts) VALUES ($1, $2, $3, 1, {CHUNK_FACTS}) \
         ON CONFLICT (tenant_id, workflow_id, chunk) DO UPDATE SET assigned = gov_evidence_packs.assigned + 1, facts = EXCLUDED.facts"
    );
    sqlx::query(&sql).bind(tenant).bind(workflow_id).bind(chunk).execute(conn).await?;
    Ok(())
}

/// A record of `chunk` changed (its status or verdict): the chunk's lines are recomputed.
pub(crate) async fn record_changed(conn: &mut PgConnection, tenant: Uuid, workflow_id: Uuid, chunk: i32) -> Result<(), ProjectionError> {
    let sql = format!("UPDATE gov_evidence_packs SET facts = {CHUNK_FACTS} WHERE tenant_id = $1 AND workflow_id = $2 AND chunk = $3");
    sqlx::query(&sql).bind(tenant).bind(workflow_id).bind(chunk).execute(conn).await?;
    Ok(())
}

/// Which of the tenant's workflows [`PacksInWorkflowOrder`] reads the packs of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workflows {
    /// One workflow.
    Only(Uuid),
    /// Those whose id is at least `from` (if given) and below `before` (if given), in the
    /// order of their ids (PostgreSQL's and [`Uuid`]'s: bytewise).
    Range { from: Option<Uuid>, before: Option<Uuid> },
}

impl Workflows {
    /// Every workflow of the tenant.
    pub const ALL: Workflows = Workflows::Range { from: None, before: None };

    /// The cursor's extra condition. A Uuid prints as hex digits and dashes only, so it is
    /// safe as a literal here (DECLARE takes no parameters over the simple protocol).
    fn predicate(&self) -> String {
        match *self {
            Workflows::Only(w) => format!(" AND workflow_id = '{w}'::uuid"),
            Workflows::Range { from, before } => {
                let from = from.map(|w| format!(" AND workflow_id >= '{w}'::uuid")).unwrap_or_default();
                let before = before.map(|w| format!(" AND workflow_id < '{w}'::uuid")).unwrap_or_default();
                from + &before
            }
        }
    }
}

/// The packs of the tenant's active evidence (or of some of its workflows) in workflow
/// order, so that each workflow's records come together, fetched a few at a time from a
/// cursor opened in the caller's transaction: the caller handles a workflow at a time and
/// holds no more than a fetch.
#[derive(Debug)]
pub struct PacksInWorkflowOrder {
    rows: std::collections::VecDeque<FetchedPack>,
    done: bool,
}

impl PacksInWorkflowOrder {
    /// Packs fetched at once: each holds at most [`CHUNK_BYTES`] of lines and one more
    /// record's (~1 KB for ten records of a few ids).
    const PER_FETCH: usize = 128;

    /// Opens the cursor over `which` workflows in `conn`'s transaction (it closes with it).
    pub async fn open(conn: &mut PgConnection, which: Workflows) -> Result<Self, ProjectionError> {
        let sql = format!(
            "DECLARE gov_packs NO SCROLL CURSOR FOR SELECT workflow_id, facts FROM gov_evidence_packs WHERE facts <> ''{} \
             ORDER BY workflow_id, chunk",
            which.predicate()
        );
        // A &str runs over the simple protocol, as `raw_sql` would, in a future that can
        // move between threads.
        sqlx::Executor::execute(conn, sql.as_str()).await?;
        Ok(PacksInWorkflowOrder { rows: Default::default(), done: false })
    }

    /// The next pack in workflow order, not yet decoded; `None` after the last.
    pub async fn next(&mut self, conn: &mut PgConnection) -> Result<Option<FetchedPack>, ProjectionError> {
        if self.rows.is_empty() && !self.done {
            let fetch = format!("FETCH {} FROM gov_packs", Self::PER_FETCH);
            let rows: Vec<(Uuid, String)> = sqlx::query_as(&fetch).fetch_all(&mut *conn).await?;
            self.done = rows.len() < Self::PER_FETCH;
            self.rows.extend(rows.into_iter().map(|(workflow_id, facts)| FetchedPack { workflow_id, facts }));
        }
        Ok(self.rows.pop_front())
    }
}

/// A pack as [`PacksInWorkflowOrder`] fetched it: its workflow and its lines, which
/// [`FetchedPack::decode_into`] turns into [`EvidenceFacts`] (a dashboard leaves that to
/// its judging threads, off the async runtime).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedPack {
    pub workflow_id: Uuid,
    pub facts: String,
}

impl FetchedPack {
    /// Appends the pack's records to `out`.
    pub fn decode_into(&self, out: &mut Vec<EvidenceFacts>) -> Result<(), ProjectionError> {
        for line in self.facts.split('\n') {
            out.push(
                decode_line(self.workflow_id, line)
                    .map_err(|e| ProjectionError::Decode(format!("an evidence pack of workflow {}: {e} in {line:?}", self.workflow_id)))?,
            );
        }
        Ok(())
    }
}

/// 2000-01-01, the day lines count their dates from, as days from the common era.
const EPOCH_CE: i32 = 730_120;

/// One record's line: evidence id, kind, requirement ids, control ids, first and last
/// day, outcome and verdict (see the migration).
fn decode_line(workflow_id: Uuid, line: &str) -> Result<EvidenceFacts, String> {
    let mut fields = line.split('\t');
    let mut field = |name: &'static str| fields.next().ok_or_else(|| format!("no {name}"));
    let evidence_id = Uuid::try_parse(field("evidence_id")?).map_err(|e| format!("evidence_id: {e}"))?;
    let raw_kind = field("kind")?;
    let kind = EvidenceKind::parse(raw_kind).ok_or_else(|| format!("unknown kind {raw_kind:?}"))?;
    let requirement_ids = ids(field("requirement_ids")?)?;
    let control_ids = ids(field("control_ids")?)?;
    let valid_from = day(field("valid_from")?)?;
    let valid_until = day(field("valid_until")?)?;
    let raw_outcome = field("outcome")?;
    let outcome = Outcome::parse(raw_outcome).ok_or_else(|| format!("unknown outcome {raw_outcome:?}"))?;
    let review_verdict = match field("review_verdict")? {
        "" => None,
        raw => Some(Verdict::parse(raw).ok_or_else(|| format!("unknown verdict {raw:?}"))?),
    };
    if fields.next().is_some() {
        return Err("more fields than a record has".into());
    }
    Ok(EvidenceFacts { evidence_id, workflow_id, kind, requirement_ids, control_ids, valid_from, valid_until, outcome, review_verdict })
}

/// Ids separated by single spaces ('' for none); an empty id is an error.
fn ids(raw: &str) -> Result<Vec<String>, String> {
    if raw.is_empty() {
        return Ok(Vec::new());
    }
    raw.split(' ').map(|id| if id.is_empty() { Err("an empty id".to_owned()) } else { Ok(id.to_owned()) }).collect()
}

/// A day, as days since 2000-01-01.
fn day(raw: &str) -> Result<NaiveDate, String> {
    let days: i32 = raw.parse().map_err(|_| format!("a day that is not a number: {raw:?}"))?;
    days.checked_add(EPOCH_CE).and_then(NaiveDate::from_num_days_from_ce_opt).ok_or_else(|| format!("a day out of range: {days}"))
}

#[cfg(test)]
#[path = "evidence_packs_tests.rs"]
mod tests;
