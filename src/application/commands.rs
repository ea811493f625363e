//! Runs commands on cqrs-es aggregates, with the ledger as the event store.
//!
//! cqrs-es's `CqrsFramework` discards what a commit returns and dispatches queries inside
//! the request; we need each command's ledger seq (for read-your-writes and decision
//! records) and projections that tail the ledger instead. So this bus does the same three
//! steps as `CqrsFramework::execute_with_metadata` (load and fold, handle, commit) and
//! returns where the events landed. Aggregates stay plain `cqrs_es::Aggregate`s.

use aggregates::{Actor, LedgerEvent, TenantId};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use ledger::EntryMetadata;

use crate::adapters::ledger::{Appended, AppenderHandle, LedgerError, LedgerReader, NewEntry};

/// Who runs a command and in which request; recorded with every event it causes.
#[derive(Debug, Clone)]
pub struct CommandContext {
    pub tenant_id: TenantId,
    pub actor: Actor,
    pub request_id: Option<String>,
    pub trace_id: Option<String>,
    pub correlation_id: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::error::Error> {
    #[error(transparent)]
    Domain(E),
    #[error(transparent)]
    Ledger(#[from] LedgerError),
}

/// Loads an aggregate from the ledger: its events folded with its own `apply`, and the
/// aggregate_seq of the last one (0 for none). The command bus decides on this state;
/// the domain services that read the ledger (evidence references, OPA sync) fold the same
/// way. An event that does not decode is an error.
pub async fn load<A>(reader: &LedgerReader, aggregate_id: &str) -> Result<(A, i64), LedgerError>
where
    A: Aggregate,
    A::Event: LedgerEvent,
{
    let history = reader.aggregate_events(A::TYPE, aggregate_id).await?;
    let mut aggregate = A::default();
    let mut version = 0i64;
    for entry in &history {
        let corrupt = |reason: String| LedgerError::Corrupt { seq: entry.seq, reason };
        let payload = serde_json::from_str(&entry.payload).map_err(|e| corrupt(e.to_string()))?;
        let event = A::Event::from_ledger(&entry.event_type, payload).map_err(|e| corrupt(e.to_string()))?;
        aggregate.apply(event);
        version = entry.aggregate_seq;
    }
    Ok((aggregate, version))
}

#[derive(Debug, Clone)]
pub struct CommandBus {
    appender: AppenderHandle,
    reader: LedgerReader,
}

impl CommandBus {
    pub fn new(appender: AppenderHandle, reader: LedgerReader) -> Self {
        Self { appender, reader }
    }

    /// Appends entries in one atomic append: facts that belong to no aggregate with
    /// invariants (decision records, one entry each at aggregate_seq 1 of their own id), or
    /// what several commands decided together ([`CommandBus::decide`]), all or nothing.
    /// Durable when this returns.
    pub async fn record(&self, entries: Vec<NewEntry>) -> Result<Vec<Appended>, LedgerError> {
        self.appender.append(entries).await
    }

    /// Loads the aggregate from the ledger, handles the command and appends the resulting
    /// events. Returns the appended entries (empty when the command emitted nothing).
    /// Nothing is stored unless the append commits.
    pub async fn execute<A>(
        &self,
        aggregate_id: &str,
        command: A::Command,
        services: &A::Services,
        ctx: &CommandContext,
    ) -> Result<Vec<Appended>, CommandError<A::Error>>
    where
        A: Aggregate,
        A::Event: LedgerEvent,
    {
        let entries = self.decide::<A>(aggregate_id, command, services, ctx).await?;
        Ok(self.appender.append(entries).await?)
    }

    /// Loads the aggregate from the ledger and handles the command: the entries its events
    /// would append, at the aggregate's next seqs. Nothing is stored.
    pub async fn decide<A>(
        &self,
        aggregate_id: &str,
        command: A::Command,
        services: &A::Services,
        ctx: &CommandContext,
    ) -> Result<Vec<NewEntry>, CommandError<A::Error>>
    where
        A: Aggregate,
        A::Event: LedgerEvent,
    {
        let (mut aggregate, version) = load::<A>(&self.reader, aggregate_id).await?;
        let sink = EventSink::default();
        aggregate.handle(command, services, &sink).await.map_err(CommandError::Domain)?;
        let events = sink.collect().await;
        let metadata = EntryMetadata {
            actor: ctx.actor.to_string(),
            request_id: ctx.request_id.clone(),
            trace_id: ctx.trace_id.clone(),
            causation_id: None,
            correlation_id: ctx.correlation_id.clone(),
        };
        let mut entries = Vec::with_capacity(events.len());
        for (i, event) in events.iter().enumerate() {
            let payload = event.ledger_text().map_err(|e| LedgerError::Corrupt { seq: 0, reason: e.to_string() })?;
            entries.push(NewEntry {
                tenant_id: ctx.tenant_id.as_uuid(),
                aggregate_type: A::TYPE.to_owned(),
                aggregate_id: aggregate_id.to_owned(),
                aggregate_seq: version + 1 + i64::try_from(i).unwrap_or(0),
                event_type: event.event_type(),
                event_version: event.event_version(),
                payload,
                metadata: metadata.clone(),
            });
        }
        Ok(entries)
    }
}
