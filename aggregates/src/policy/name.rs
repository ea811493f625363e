//! The PolicyNameClaim aggregate: a policy name is unique per tenant.
//!
//! One aggregate per (tenant, name), whose id is [`claim_id`]. Creating a policy appends
//! `PolicyNameClaimed` to the claim in the same atomic ledger append as `PolicyCreated`,
//! so uniqueness is decided by the ledger at append time, never by a read model that may
//! lag: a second claim of the same name is refused by the aggregate (its history already
//! has the claim), and two racing claims collide on the ledger's unique
//! (aggregate_type, aggregate_id, aggregate_seq) key, so one of them fails and nothing of
//! it is stored. A name stays claimed for good (archived policies keep theirs), so a name
//! always means the same policy in the ledger's history.

use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::ids::{PolicyId, PolicyName, TenantId};
use crate::ledger_event::LedgerEvent;

/// The ledger's aggregate type of name claims.
pub const NAME_CLAIM_AGGREGATE: &str = "PolicyNameClaim";

/// The claim's aggregate id: the tenant and the SHA-256 of the name (names may hold any
/// printable text; the id stays short and plain).
pub fn claim_id(tenant: TenantId, name: &PolicyName) -> String {
    format!("{tenant}/{}", hex::encode(Sha256::digest(name.as_str().as_bytes())))
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClaimName {
    pub tenant_id: TenantId,
    pub name: PolicyName,
    pub policy_id: PolicyId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum NameClaimEvent {
    PolicyNameClaimed { tenant_id: TenantId, name: PolicyName, policy_id: PolicyId },
}

impl DomainEvent for NameClaimEvent {
    fn event_type(&self) -> String {
        match self {
            Self::PolicyNameClaimed { .. } => "PolicyNameClaimed".to_owned(),
        }
    }

    fn event_version(&self) -> String {
        "1".to_owned()
    }
}

impl LedgerEvent for NameClaimEvent {}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum NameClaimError {
    #[error("the tenant already has a policy named {name:?}")]
    Taken { name: String, policy_id: PolicyId },
}

/// Who holds the name, once claimed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyNameClaim {
    pub holder: Option<PolicyId>,
}

impl Aggregate for PolicyNameClaim {
    const TYPE: &'static str = NAME_CLAIM_AGGREGATE;
    type Command = ClaimName;
    type Event = NameClaimEvent;
    type Error = NameClaimError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &cqrs_es::event_sink::EventSink<Self>,
    ) -> Result<(), Self::Error> {
        if let Some(holder) = self.holder {
            return Err(NameClaimError::Taken { name: command.name.as_str().to_owned(), policy_id: holder });
        }
        sink.write(
            NameClaimEvent::PolicyNameClaimed { tenant_id: command.tenant_id, name: command.name, policy_id: command.policy_id },
            self,
        )
        .await;
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            NameClaimEvent::PolicyNameClaimed { policy_id, .. } => self.holder = Some(policy_id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cqrs_es::test::TestFramework;

    fn claim(policy_id: PolicyId) -> ClaimName {
        ClaimName {
            tenant_id: TenantId::parse("11111111-1111-4111-8111-111111111111").unwrap(),
            name: PolicyName::parse("gate").unwrap(),
            policy_id,
        }
    }

    #[test]
    fn given_no_claim_when_a_policy_claims_the_name_then_it_holds_it() {
        let id = PolicyId::generate();
        let c = claim(id);
        TestFramework::<PolicyNameClaim>::with(())
            .given_no_previous_events()
            .when(c.clone())
            .then_expect_events(vec![NameClaimEvent::PolicyNameClaimed { tenant_id: c.tenant_id, name: c.name, policy_id: id }]);
    }

    #[test]
    fn given_a_claimed_name_when_another_policy_claims_it_then_it_is_taken() {
        let first = claim(PolicyId::generate());
        let held = NameClaimEvent::PolicyNameClaimed { tenant_id: first.tenant_id, name: first.name.clone(), policy_id: first.policy_id };
        TestFramework::<PolicyNameClaim>::with(())
            .given(vec![held])
            .when(claim(PolicyId::generate()))
            .then_expect_error(NameClaimError::Taken { name: "gate".into(), policy_id: first.policy_id });
    }

    #[test]
    fn the_claim_id_is_per_tenant_and_per_exact_name() {
        let t1 = TenantId::parse("11111111-1111-4111-8111-111111111111").unwrap();
        let t2 = TenantId::parse("22222222-2222-4222-8222-222222222222").unwrap();
        let gate = PolicyName::parse("gate").unwrap();
        assert_ne!(claim_id(t1, &gate), claim_id(t2, &gate));
        assert_ne!(claim_id(t1, &gate), claim_id(t1, &PolicyName::parse("Gate").unwrap()));
        assert!(claim_id(t1, &gate).len() < 128);
    }
}
