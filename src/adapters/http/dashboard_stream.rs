//! The cold dashboard's evidence stream: the packs of a tenant's active records fetched in
//! workflow order (undecoded) and sent in batches of whole workflows to the judging
//! threads; for a large tenant, two such streams at once over halves of its workflows.

use std::sync::atomic::{AtomicBool, Ordering};

use uuid::Uuid;

use projections::evidence::EvidenceFacts;
use projections::evidence_packs::{FetchedPack, Workflows};

use super::super::extract::Caller;
use super::super::SharedState;
use crate::error::ApiError;

/// A second transaction of the tenant's, if a connection of the pool is idle now (one
/// stream otherwise; a failure here is logged and costs nothing else).
pub(super) async fn second_tx(state: &SharedState, caller: &Caller) -> Option<sqlx::Transaction<'static, sqlx::Postgres>> {
    let conn = state.primary.try_acquire()?;
    let began = async {
        let mut tx = sqlx::Transaction::begin(conn, None).await?;
        projections::tenant::set_tenant(&mut tx, caller.tenant_id.as_uuid()).await?;
        Ok::<_, sqlx::Error>(tx)
    };
    began.await.inspect_err(|e| tracing::debug!(error = %e, "a dashboard's second evidence stream could not begin")).ok()
}

/// The id that splits `workflows` by id for two streams feeding `low` and `judges - low`
/// judging threads: `len * low / judges` of them lie below it (read by the first stream),
/// the others at or above it (it is one of theirs).
pub(super) fn pivot(workflows: &[projections::compliance::WorkflowView], low: usize, judges: usize) -> Uuid {
    let mut ids: Vec<Uuid> = workflows.iter().map(|w| w.workflow_id).collect();
    let at = ids.len() * low / judges.max(1);
    if at < ids.len() {
        ids.select_nth_unstable(at);
    }
    ids.get(at).copied().unwrap_or(Uuid::nil())
}

/// Packs sent to a judging thread at once (~2,000 records of ten-record workflows; a batch
/// ends where a workflow does, so one workflow with more packs makes a larger batch).
const BATCH: usize = 200;

/// An item of the evidence stream: its workflow (what the stream is ordered and batched
/// by) and, decoded by a judging thread, its records' facts.
pub(super) trait Streamed: Send {
    fn workflow(&self) -> Uuid;
    /// Appends the item's records to `out`.
    fn facts_into(&self, out: &mut Vec<EvidenceFacts>) -> Result<(), projections::ProjectionError>;
}

impl Streamed for FetchedPack {
    fn workflow(&self) -> Uuid {
        self.workflow_id
    }

    fn facts_into(&self, out: &mut Vec<EvidenceFacts>) -> Result<(), projections::ProjectionError> {
        self.decode_into(out)
    }
}

/// Records already decoded (the unit tests' streams).
impl Streamed for EvidenceFacts {
    fn workflow(&self) -> Uuid {
        self.workflow_id
    }

    fn facts_into(&self, out: &mut Vec<EvidenceFacts>) -> Result<(), projections::ProjectionError> {
        out.push(self.clone());
        Ok(())
    }
}

/// Sends the packs of the active evidence of `which` workflows to `to` in batches that hold
/// whole workflows, in workflow order, until `stop` (see [`send_in_batches`]).
pub(super) async fn stream_evidence(
    conn: &mut sqlx::PgConnection,
    which: Workflows,
    to: &[tokio::sync::mpsc::Sender<Vec<FetchedPack>>],
    stop: &AtomicBool,
) -> Result<(), ApiError> {
    let opened = projections::evidence_packs::PacksInWorkflowOrder::open(&mut *conn, which).await;
    let packs = opened.inspect_err(|_| stop.store(true, Ordering::Relaxed))?;
    let records = futures::stream::try_unfold((packs, conn), |(mut packs, conn)| async move {
        Ok::<_, projections::ProjectionError>(packs.next(&mut *conn).await?.map(|pack| (pack, (packs, conn))))
    });
    Ok(send_in_batches(records, BATCH, to, stop).await?)
}

/// Sends `records` (in workflow order) in batches of at least `size` records (the last may
/// hold fewer), each ending where a workflow does, to each of `to` in turn. Stops early
/// once `stop` is set; sets it when `records` fails or a judging thread is gone (its join
/// says why), so that a dashboard's other stream stops reading too.
pub(super) async fn send_in_batches<R: Streamed, E>(
    records: impl futures::Stream<Item = Result<R, E>>,
    size: usize,
    to: &[tokio::sync::mpsc::Sender<Vec<R>>],
    stop: &AtomicBool,
) -> Result<(), E> {
    let sent = send_all(records, size, to, stop).await;
    if !matches!(sent, Ok(true)) {
        stop.store(true, Ordering::Relaxed);
    }
    sent.map(|_| ())
}

/// [`send_in_batches`]' loop: true when every record was sent.
async fn send_all<R: Streamed, E>(
    records: impl futures::Stream<Item = Result<R, E>>,
    size: usize,
    to: &[tokio::sync::mpsc::Sender<Vec<R>>],
    stop: &AtomicBool,
) -> Result<bool, E> {
    use futures::TryStreamExt;
    let mut records = std::pin::pin!(records);
    let mut batches = Batches { turns: to.iter().cycle(), batch: Vec::with_capacity(size), size };
    while let Some(record) = records.try_next().await? {
        if stop.load(Ordering::Relaxed) || !batches.push(record).await {
            return Ok(false);
        }
    }
    Ok(batches.batch.is_empty() || send(batches.turns.next(), batches.batch).await)
}

/// The batch being filled and where the next one goes.
struct Batches<'a, R: 'a, T: Iterator<Item = &'a tokio::sync::mpsc::Sender<Vec<R>>>> {
    turns: T,
    batch: Vec<R>,
    size: usize,
}

impl<'a, R: Streamed + 'a, T: Iterator<Item = &'a tokio::sync::mpsc::Sender<Vec<R>>>> Batches<'a, R, T> {
    /// Adds `record`, first sending the batch when it is full and `record` starts another
    /// workflow; false when a judging thread is gone (the join says why).
    async fn push(&mut self, record: R) -> bool {
        if self.batch.len() >= self.size && self.batch.last().is_some_and(|last| last.workflow() != record.workflow()) {
            let full = std::mem::replace(&mut self.batch, Vec::with_capacity(self.size));
            if !send(self.turns.next(), full).await {
                return false;
            }
        }
        self.batch.push(record);
        true
    }
}

/// Sends `batch` on `to`; whether it was taken.
async fn send<R>(to: Option<&tokio::sync::mpsc::Sender<Vec<R>>>, batch: Vec<R>) -> bool {
    match to {
        Some(to) => to.send(batch).await.is_ok(),
        None => false,
    }
}
