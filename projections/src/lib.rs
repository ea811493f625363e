//! Read models in the primary database and the projectors that build them.
//!
//! Layout:
//! - [`EventRecord`]: what a projector sees of a ledger entry (the service's ledger
//!   adapter converts; this crate never touches the audit database), decoded through the
//!   domain's types by [`EventRecord::decode`] (aggregate events and facts alike).
//! - [`tenant`]: transactions scoped to one tenant through `app.tenant_id`, which the
//!   row-level-security policies of every tenant table read.
//! - [`policies`]: the Policy read model (`gov_governance_policies`,
//!   `gov_governance_policy_versions`), its projector and its queries.
//! - [`decisions`]: decision records (`gov_policy_decisions`), one per evaluation.
//! - [`compliance`]: workflows, their transitions and not-applicable justifications, and
//!   tenant-defined requirement → control mappings.
//! - [`compliance_review`]: what a workflow records after creation (changes, findings,
//!   certification) and tenants' not-applicable marks on requirement → control links.
//! - [`evidence`]: evidence records (`gov_evidence`).
//! - [`evidence_packs`]: the facts of a workflow's active evidence, a few dozen records to
//!   a row (`gov_evidence_packs`), kept by the evidence projector; what a cold dashboard
//!   reads.
//! - [`system_evidence`]: decisions of policies that check CSF controls, rolled up per
//!   control and UTC day (`gov_system_evidence*`), and every decision counted per policy
//!   and UTC day (`gov_decision_days`).
//! - [`copy`]: rows loaded with a binary `COPY` (a rebuild's bulk path).
//! - [`Projector`]: the trait the projection runner drives.
//!
//! Projectors are idempotent per event: they run inside the transaction that advances
//! the projector's stored position, so each event takes effect exactly once.

pub mod compliance;
pub mod compliance_review;
pub mod copy;
pub mod decisions;
pub mod evidence;
pub mod evidence_packs;
pub mod policies;
pub mod system_evidence;
pub mod tenant;

use aggregates::{DecodeError, Recorded};
use chrono::{DateTime, Utc};
use uuid::Uuid;

/// A ledger entry, as a projector reads it.
#[derive(Debug, Clone)]
pub struct EventRecord {
    pub seq: i64,
    pub tenant_id: Uuid,
    pub aggregate_type: String,
    pub aggregate_id: String,
    pub event_type: String,
    /// The payload as the ledger stores it (JSON text), parsed only by [`Self::decode`];
    /// shared by the record's clones.
    pub payload: std::sync::Arc<str>,
    pub actor: String,
    pub recorded_at: DateTime<Utc>,
    /// The payload decoded, shared by every clone of this record: a rebuild hands one
    /// record to every projector that handles it, and it is decoded once for all.
    pub decoded: Decoded,
}

/// The once-decoded payload of an [`EventRecord`] and its clones (empty until the first
/// [`EventRecord::decode`]). A new record always gets `Decoded::default()`: one taken
/// from another record would answer that record's decoding.
#[derive(Debug, Clone, Default)]
pub struct Decoded(std::sync::Arc<std::sync::OnceLock<Result<Recorded, DecodeError>>>);

impl EventRecord {
    /// The entry as its typed event or fact. `None` for a kind this code does not know
    /// (written by newer code: skipped, so old readers keep running); a bad field of a
    /// known kind is an error, never a default (the runner reports the entry as stuck).
    /// Decoded once per record and its clones.
    pub fn decode(&self) -> Result<Option<&Recorded>, ProjectionError> {
        match self.decoded() {
            Ok(recorded) => Ok(Some(recorded)),
            Err(DecodeError::Unknown { .. }) => {
                tracing::warn!(aggregate_type = %self.aggregate_type, event_type = %self.event_type, seq = self.seq,
                    "projector skips an entry of a kind it does not know");
                Ok(None)
            }
            Err(e @ DecodeError::Malformed { .. }) => Err(ProjectionError::Decode(format!("seq {}: {e}", self.seq))),
        }
    }

    /// Decodes the payload now, for [`Self::decode`] and every clone's to find done (a
    /// rebuild decodes each window once, on a blocking thread, before any projector reads
    /// it). Errors are kept for [`Self::decode`] to report.
    pub fn decode_ahead(&self) {
        let _ = self.decoded();
    }

    fn decoded(&self) -> &Result<Recorded, DecodeError> {
        self.decoded.0.get_or_init(|| Recorded::decode_text(&self.aggregate_type, &self.event_type, &self.payload))
    }

    /// The aggregate id as a UUID (every projected stream's ids are UUIDs).
    pub fn aggregate_uuid(&self) -> Result<Uuid, ProjectionError> {
        Uuid::parse_str(&self.aggregate_id).map_err(|_| ProjectionError::Decode(format!("aggregate id at seq {} is not a UUID", self.seq)))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot decode event: {0}")]
    Decode(String),
}

/// A read model builder. `apply` runs inside the runner's transaction, with
/// `app.tenant_id` already set to the event's tenant.
#[async_trait::async_trait]
pub trait Projector: Send + Sync {
    /// The name under which the position is stored (`gov_projection_positions`).
    fn name(&self) -> &'static str;
    /// The read-model tables this projector owns (rebuilt and swapped together).
    fn tables(&self) -> &'static [&'static str];
    /// The aggregate types whose events this projector applies.
    fn aggregate_types(&self) -> &'static [&'static str];
    /// Whether this projector cares about an aggregate type.
    fn handles(&self, aggregate_type: &str) -> bool {
        self.aggregate_types().contains(&aggregate_type)
    }
    /// Whether the effect of each event is independent of every other event's and of their
    /// order (each only inserts rows of its own and reads none), so a rebuild may apply
    /// parts of the ledger on several connections at once.
    fn order_free(&self) -> bool {
        false
    }
    async fn apply(&self, tx: &mut sqlx::PgConnection, event: &EventRecord) -> Result<(), ProjectionError>;
    /// Applies a run of events of one tenant, in order. Projectors whose events are
    /// independent rows override it with one multi-row statement (rebuilds and backlogs).
    async fn apply_many(&self, tx: &mut sqlx::PgConnection, events: &[EventRecord]) -> Result<(), ProjectionError> {
        for e in events {
            self.apply(&mut *tx, e).await?;
        }
        Ok(())
    }
    /// What a rebuild calls instead of [`Self::apply_many`] for an
    /// [order-free](Self::order_free) projector, to fill its own copies of the tables (in
    /// `gov_rebuild`, written by their owner, row-level security not yet forced: the
    /// projector reads nothing). `events` may mix tenants and `app.tenant_id` is not set:
    /// each row takes its tenant from its event. Must leave the same rows as
    /// [`Self::apply_many`]; may load them more cheaply, e.g. with `COPY`. By default,
    /// each tenant's run goes to `apply_many` with `app.tenant_id` set, as the runner does.
    async fn apply_bulk(&self, conn: &mut sqlx::PgConnection, events: &[EventRecord]) -> Result<(), ProjectionError> {
        for run in events.chunk_by(|a, b| a.tenant_id == b.tenant_id) {
            if let Some(first) = run.first() {
                tenant::set_tenant(&mut *conn, first.tenant_id).await?;
                self.apply_many(&mut *conn, run).await?;
            }
        }
        Ok(())
    }
}

/// Every projector, in the order the service runs them.
pub fn all() -> Vec<std::sync::Arc<dyn Projector>> {
    vec![
        std::sync::Arc::new(policies::PolicyProjector),
        std::sync::Arc::new(decisions::DecisionProjector),
        std::sync::Arc::new(compliance::ComplianceProjector),
        std::sync::Arc::new(evidence::EvidenceProjector),
        std::sync::Arc::new(system_evidence::SystemEvidenceProjector::default()),
    ]
}

/// One page of a list, with the total that matched.
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub page: u32,
    pub page_size: u32,
    pub total: i64,
}

/// The row offset of a 1-based page.
pub fn offset(page: u32, page_size: u32) -> i64 {
    i64::from(page.saturating_sub(1)).saturating_mul(i64::from(page_size))
}

/// Sort direction of a list query.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SortOrder {
    Asc,
    Desc,
}

impl SortOrder {
    pub fn sql(self) -> &'static str {
        match self {
            SortOrder::Asc => "ASC",
            SortOrder::Desc => "DESC",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn record(aggregate_type: &str, event_type: &str, payload: serde_json::Value) -> EventRecord {
        EventRecord {
            seq: 12,
            tenant_id: Uuid::nil(),
            aggregate_type: aggregate_type.into(),
            aggregate_id: Uuid::nil().to_string(),
            event_type: event_type.into(),
            payload: payload.to_string().into(),
            actor: "alice".into(),
            recorded_at: Utc::now(),
            decoded: Decoded::default(),
        }
    }

    #[test]
    fn a_projector_reads_a_known_entry_as_its_typed_event() {
        let e = record("Policy", "PolicyActivated", json!({"version": 2, "actor": "alice", "reason": null}));
        assert!(matches!(e.decode(), Ok(Some(Recorded::Policy(aggregates::policy::PolicyEvent::PolicyActivated { version: 2, .. })))));
    }

    #[test]
    fn a_record_and_its_clones_share_one_decoding_and_a_bad_field_stays_an_error_for_each() {
        let e = record("Policy", "PolicyActivated", json!({"version": 2, "actor": "alice", "reason": null}));
        let clone = e.clone();
        e.decode_ahead();
        let (Ok(Some(first)), Ok(Some(second))) = (e.decode(), clone.decode()) else { panic!("both decode") };
        assert!(std::ptr::eq(first, second), "the clone reads the decoding done for the original");
        let bad = record("Policy", "PolicyActivated", json!({"version": "two", "actor": "alice", "reason": null}));
        bad.decode_ahead();
        assert!(matches!(bad.clone().decode(), Err(ProjectionError::Decode(_))));
        assert!(matches!(bad.decode(), Err(ProjectionError::Decode(_))), "decoding ahead keeps the error for the projector");
        let fresh = record("Policy", "PolicyActivated", json!({"version": 2, "actor": "alice", "reason": null}));
        let (Ok(Some(a)), Ok(Some(b))) = (fresh.decode(), e.decode()) else { panic!("both decode") };
        assert!(!std::ptr::eq(a, b), "separate records decode separately");
    }

    #[test]
    fn a_projector_skips_an_entry_of_a_kind_it_does_not_know() {
        assert!(matches!(record("Policy", "PolicyRenamed", json!({})).decode(), Ok(None)));
    }

    #[test]
    fn a_bad_field_stops_a_projector_instead_of_becoming_a_default() {
        for (aggregate_type, event_type, payload) in [
            ("Policy", "PolicyActivated", json!({"version": "2", "actor": "alice", "reason": null})),
            (
                "ControlMapping",
                "ControlMappingSet",
                json!({"regulation": "soc2", "requirement_id": "CC6.1", "control_id": 7,
                "relation": "subset", "rationale": "r", "actor": "a"}),
            ),
            ("Evidence", "EvidenceWithdrawn", json!({"actor": "a"})),
        ] {
            let e = record(aggregate_type, event_type, payload);
            let decoded = e.decode();
            assert!(matches!(&decoded, Err(ProjectionError::Decode(m)) if m.starts_with("seq 12: ")), "{event_type}: {decoded:?}");
        }
    }

    #[test]
    fn every_projector_has_its_own_name_and_tables_and_together_they_cover_every_aggregate_type() {
        let all = super::all();
        let names: std::collections::HashSet<_> = all.iter().map(|p| p.name()).collect();
        assert_eq!(names.len(), all.len(), "positions are stored by name");
        let mut tables = std::collections::HashSet::new();
        for p in &all {
            for t in p.tables() {
                assert!(t.starts_with("gov_"), "{t}: platform tables are prefixed gov_");
                assert!(tables.insert(*t), "{t} is rebuilt by one projector only");
            }
        }
        for aggregate_type in ["Policy", "PolicyDecision", "ComplianceWorkflow", "Evidence", "ControlMapping"] {
            assert!(all.iter().any(|p| p.handles(aggregate_type)), "nobody projects {aggregate_type}");
        }
    }

    #[test]
    fn pages_are_one_based_and_offsets_do_not_overflow() {
        assert_eq!(super::offset(1, 50), 0);
        assert_eq!(super::offset(3, 50), 100);
        assert!(super::offset(u32::MAX, u32::MAX) > 0);
    }

    #[test]
    fn an_aggregate_id_that_is_not_a_uuid_is_an_error() {
        let mut e = record("Evidence", "EvidenceWithdrawn", json!({}));
        e.aggregate_id = "nope".into();
        assert!(matches!(e.aggregate_uuid(), Err(ProjectionError::Decode(_))));
    }
}
