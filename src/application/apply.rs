//! Applying ledger entries to a projector: the one conversion of an entry into the record a
//! projector reads, and the application of a batch of records (by runs of one tenant, or
//! every tenant's at once for a rebuild's bulk fill). The projection runner and
//! `projections rebuild` share it.

use std::collections::HashSet;

use ledger::LedgerEntry;
use projections::{EventRecord, Projector};

/// The one conversion of a ledger entry into what a projector reads: its own, not yet
/// decoded, record (the payload copied once, then shared by the record's clones).
pub(crate) fn record(e: &LedgerEntry) -> EventRecord {
    EventRecord {
        seq: e.seq,
        tenant_id: e.tenant_id,
        aggregate_type: e.aggregate_type.clone(),
        aggregate_id: e.aggregate_id.clone(),
        event_type: e.event_type.clone(),
        payload: e.payload.as_str().into(),
        actor: e.metadata.actor.clone(),
        recorded_at: e.recorded_at,
        decoded: projections::Decoded::default(),
    }
}

/// Ledger entries read for projectors, as projectors read them.
pub fn records(entries: &[LedgerEntry]) -> Vec<EventRecord> {
    entries.iter().map(record).collect()
}

/// Applies the events a projector handles, in order, on `conn` (inside its transaction),
/// except those the operator decided to skip. The projection runner and `projections
/// rebuild` share this; `bulk` (a rebuild's fill of an order-free projector's tables)
/// gives every tenant's events of the batch to [`Projector::apply_bulk`] at once.
pub async fn apply_events(
    projector: &dyn Projector,
    conn: &mut sqlx::PgConnection,
    batch: &[EventRecord],
    skip: &HashSet<i64>,
    bulk: bool,
) -> Result<(), projections::ProjectionError> {
    let handled = batch.iter().filter(|e| projector.handles(&e.aggregate_type) && !skip.contains(&e.seq));
    if bulk {
        // Every tenant's events at once: the rows carry their tenants, and the tables do
        // not force row-level security yet (see `Projector::apply_bulk`).
        let events: Vec<EventRecord> = handled.cloned().collect();
        return if events.is_empty() { Ok(()) } else { projector.apply_bulk(&mut *conn, &events).await };
    }
    // Runs of consecutive events of one tenant go to the projector together (one
    // `set_config` per run; projectors may write a run in one statement). A record's clone
    // shares its payload and its decoding.
    let mut run: Vec<EventRecord> = Vec::new();
    for event in handled {
        if run.first().is_some_and(|r| r.tenant_id != event.tenant_id) {
            flush(projector, conn, &mut run).await?;
        }
        run.push(event.clone());
    }
    flush(projector, conn, &mut run).await
}

async fn flush(
    projector: &dyn Projector,
    conn: &mut sqlx::PgConnection,
    run: &mut Vec<EventRecord>,
) -> Result<(), projections::ProjectionError> {
    let Some(first) = run.first() else { return Ok(()) };
    projections::tenant::set_tenant(&mut *conn, first.tenant_id).await?;
    projector.apply_many(&mut *conn, run).await?;
    run.clear();
    Ok(())
}
