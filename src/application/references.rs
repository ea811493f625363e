//! The Evidence aggregate's services (cqrs-es `Services`) on the ledger and the catalog:
//! the workflow and the superseding evidence folded from their events with the command
//! bus's own fold ([`crate::application::commands::load`]), the decision record read from its ledger
//! entry and decoded as the typed fact, and the compiled-in catalog's requirements. Never
//! a read model: a reference to something just recorded holds before any projector has
//! applied it.

use std::sync::Arc;

use aggregates::compliance::{
    ComplianceWorkflow, Evidence, EvidenceReferences, EvidenceServices, RecordedDecision, ReferenceUnavailable, RegulationCode,
    RequirementCatalog, RequirementId,
};
use aggregates::facts::DecisionEvent;
use aggregates::{DecisionId, EvidenceId, Recorded, Stream, TenantId, WorkflowId};

use crate::adapters::ledger::{LedgerError, LedgerReader};
use crate::application::catalog::Catalog;
use crate::application::commands::load;

fn unavailable(e: LedgerError) -> ReferenceUnavailable {
    ReferenceUnavailable(Arc::new(e))
}

/// The ledger, as the Evidence aggregate reads it.
#[derive(Debug, Clone)]
pub struct LedgerReferences {
    reader: LedgerReader,
}

#[async_trait::async_trait]
impl EvidenceReferences for LedgerReferences {
    async fn workflow(&self, id: WorkflowId) -> Result<ComplianceWorkflow, ReferenceUnavailable> {
        load::<ComplianceWorkflow>(&self.reader, &id.to_string()).await.map(|(workflow, _)| workflow).map_err(unavailable)
    }

    async fn decision(&self, id: DecisionId) -> Result<Option<RecordedDecision>, ReferenceUnavailable> {
        let entries = self.reader.aggregate_events(Stream::PolicyDecision.aggregate_type(), &id.to_string()).await.map_err(unavailable)?;
        let Some(entry) = entries.first() else { return Ok(None) };
        match Recorded::decode_text(&entry.aggregate_type, &entry.event_type, &entry.payload) {
            Ok(Recorded::Decision(DecisionEvent::PolicyEvaluated(record))) => {
                Ok(Some(RecordedDecision { tenant_id: TenantId::from_uuid(entry.tenant_id), record }))
            }
            Ok(other) => {
                Err(unavailable(LedgerError::Corrupt { seq: entry.seq, reason: format!("{:?} is no decision record", other.kind()) }))
            }
            Err(e) => Err(unavailable(LedgerError::Corrupt { seq: entry.seq, reason: e.to_string() })),
        }
    }

    async fn evidence(&self, id: EvidenceId) -> Result<Evidence, ReferenceUnavailable> {
        load::<Evidence>(&self.reader, &id.to_string()).await.map(|(evidence, _)| evidence).map_err(unavailable)
    }
}

/// The compiled-in catalog's requirements.
#[derive(Debug, Clone, Copy)]
pub struct CatalogRequirements;

impl RequirementCatalog for CatalogRequirements {
    fn has_requirement(&self, regulation: RegulationCode, requirement: &RequirementId) -> bool {
        Catalog::get().regulation(regulation).and_then(|r| r.requirement(requirement.as_str())).is_some()
    }
}

/// The Evidence aggregate's services on this ledger.
pub fn evidence_services(reader: LedgerReader) -> EvidenceServices {
    EvidenceServices::new(Arc::new(LedgerReferences { reader }), Arc::new(CatalogRequirements))
}

/// The ComplianceWorkflow aggregate's services on this ledger.
pub fn workflow_services(reader: LedgerReader) -> aggregates::compliance::WorkflowServices {
    aggregates::compliance::WorkflowServices::new(Arc::new(LedgerReferences { reader }))
}

/// The API's answer when a reference could not be checked: the ledger error's own (503
/// when the audit database is down).
pub fn unavailable_answer(e: &ReferenceUnavailable) -> crate::error::ApiError {
    use crate::error::{ApiError, ErrorCode};
    match e.0.downcast_ref::<LedgerError>() {
        Some(ledger) => ApiError::from(ledger),
        None => ApiError::new(ErrorCode::Internal, e.to_string()),
    }
}
