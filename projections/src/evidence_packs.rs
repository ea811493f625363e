//! Evidence packs (`gov_evidence_packs`, migration 20261202000101): what judging needs of
//! a workflow's active evidence, a few dozen records to a row, so that a cold dashboard
//! reads thousands of packs rather than tens of thousands of rows.
//!
//! The evidence projector keeps them: each record is given one chunk of its workflow
//! when submitted ([`NEXT_CHUNK`]: at most 32 records, with ids of 8 KiB in all plus the
//! last record's, to a chunk), and a chunk's lines are recomputed in PostgreSQL from its
//! records whenever one of them changes ([`record_changed`]; a new record's line is
//! appended, [`record_added`]): one bounded recomputation per evidence event, however
//! many records the workflow has. The line of a record is made by one SQL
//! function (`gov_evidence_fact_line`) and read here, into the same [`EvidenceFacts`] as
//! the evidence's own rows; a line that does not decode is an error, never a default.

use chrono::NaiveDate;
use sqlx::PgConnection;
use uuid::Uuid;

use aggregates::compliance::{EvidenceKind, Outcome, Verdict};

use crate::evidence::EvidenceFacts;
use crate::ProjectionError;

/// The chunk a record of workflow `$3` of tenant `$1` submitted now goes to (a scalar
/// subquery of the evidence's INSERT, so that the projector locks `gov_evidence` before
/// `gov_evidence_packs`, in the order a rebuild's swap locks them): the workflow's last
/// chunk, unless it is full (the rule is `gov_evidence_next_chunk`'s, the migration's).
pub(crate) const NEXT_CHUNK: &str = "coalesce((SELECT gov_evidence_next_chunk(p.chunk, p.assigned, p.assigned_bytes) \
    FROM gov_evidence_packs p WHERE p.tenant_id = $1 AND p.workflow_id = $3 ORDER BY p.chunk DESC LIMIT 1), \
    gov_evidence_next_chunk(NULL, 0, 0))";

/// What the evidence's INSERT returns for [`record_added`]: the record's chunk, the bytes
/// of its ids and its line.
pub(crate) const ADDED: &str = "pack_chunk, gov_evidence_id_bytes(requirement_ids, control_ids), \
    gov_evidence_fact_line(evidence_id, kind, requirement_ids, control_ids, valid_from, valid_until, outcome, review_verdict)";

/// The lines of chunk `$3` of workflow `$2` of tenant `$1`: its active records', in ledger
/// order ('' when none is active).
const CHUNK_FACTS: &str = "coalesce((SELECT string_agg(gov_evidence_fact_line(e.evidence_id, e.kind, e.requirement_ids, \
    e.control_ids, e.valid_from, e.valid_until, e.outcome, e.review_verdict), E'\\n' ORDER BY e.ledger_seq) \
    FROM gov_evidence e WHERE e.tenant_id = $1 AND e.workflow_id = $2 AND e.pack_chunk = $3 AND e.status = 'active'), '')";

/// A record was added to `chunk` (already in `gov_evidence`; its ids weigh `id_bytes`, and
/// `line` is its line): the chunk counts it and its line is appended (the record is the
/// chunk's latest in ledger order, as records are given chunks in that order).
pub(crate) async fn record_added(
    conn: &mut PgConnection,
    tenant: Uuid,
    workflow_id: Uuid,
    (chunk, id_bytes, line): (i32, i32, String),
) -> Result<(), ProjectionError> {
    sqlx::query(
        "INSERT INTO gov_evidence_packs AS p (tenant_id, workflow_id, chunk, assigned, assigned_bytes, facts) \
         VALUES ($1, $2, $3, 1, $4, $5) ON CONFLICT (tenant_id, workflow_id, chunk) DO UPDATE \
         SET assigned = p.assigned + 1, assigned_bytes = p.assigned_bytes + EXCLUDED.assigned_bytes, \
         facts = CASE WHEN p.facts = '' THEN EXCLUDED.facts ELSE p.facts || E'\\n' || EXCLUDED.facts END",
    )
    .bind(tenant)
    .bind(workflow_id)
    .bind(chunk)
    .bind(id_bytes)
    .bind(line)
    .execute(conn)
    .await?;
    Ok(())
}

/// A record of `chunk` changed (its status or verdict): the chunk's lines are recomputed.
/// The chunk's pack exists (its record was added to it); a missing one is an error, not
/// records silently left out of dashboards.
pub(crate) async fn record_changed(conn: &mut PgConnection, tenant: Uuid, workflow_id: Uuid, chunk: i32) -> Result<(), ProjectionError> {
    let sql = format!("UPDATE gov_evidence_packs SET facts = {CHUNK_FACTS} WHERE tenant_id = $1 AND workflow_id = $2 AND chunk = $3");
    let updated = sqlx::query(&sql).bind(tenant).bind(workflow_id).bind(chunk).execute(conn).await?;
    if updated.rows_affected() != 1 {
        return Err(ProjectionError::Decode(format!("the evidence pack of workflow {workflow_id}, chunk {chunk}, is missing")));
    }
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
    /// Packs fetched at once: a pack holds at most 32 records, with ids of 8 KiB in all
    /// and one more record's (~1 KB for ten records of a few ids).
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
