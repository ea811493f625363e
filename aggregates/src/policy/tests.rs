//! Given/when/then tests of the Policy aggregate's invariants.

use cqrs_es::test::TestFramework;

use super::*;
use crate::ids::{Actor, Description, PolicyId, PolicyName, RegoSource, ReplayId, TenantId};

type PolicyTest = TestFramework<Policy>;

/// A stand-in for the engine: records every version it is asked about and accepts or
/// refuses them all.
#[derive(Debug, Default)]
struct Engine {
    refuse: bool,
    checked: std::sync::Mutex<Vec<(u32, VersionSource)>>,
    /// The replays the ledger knows, and what each replayed.
    replays: Vec<(ReplayId, ReplaySubject)>,
}

#[derive(Debug, thiserror::Error)]
#[error("test_allow failed")]
struct TestsFailed;

#[async_trait::async_trait]
impl ActivationCheck for Engine {
    async fn check_version(&self, _: TenantId, _: PolicyId, version: u32, source: &VersionSource) -> Result<(), VersionRejected> {
        self.checked.lock().unwrap().push((version, source.clone()));
        if self.refuse {
            return Err(VersionRejected(std::sync::Arc::new(TestsFailed)));
        }
        Ok(())
    }

    async fn replay_subject(&self, _: TenantId, replay: ReplayId) -> Result<Option<ReplaySubject>, VersionRejected> {
        Ok(self.replays.iter().find(|(id, _)| *id == replay).map(|(_, s)| *s))
    }
}

fn engine() -> PolicyServices {
    PolicyServices::new(std::sync::Arc::new(Engine::default()))
}

fn recording(refuse: bool) -> (PolicyServices, std::sync::Arc<Engine>) {
    let e = std::sync::Arc::new(Engine { refuse, ..Engine::default() });
    (PolicyServices::new(e.clone()), e)
}

fn tenant() -> TenantId {
    TenantId::parse("11111111-1111-4111-8111-111111111111").unwrap()
}
fn other_tenant() -> TenantId {
    TenantId::parse("22222222-2222-4222-8222-222222222222").unwrap()
}
fn policy_id() -> PolicyId {
    PolicyId::parse("33333333-3333-4333-8333-333333333333").unwrap()
}
fn actor() -> Actor {
    Actor::parse("alice").unwrap()
}
fn rego(n: u32) -> RegoSource {
    RegoSource::parse(&format!("package p\nallow := {n} > 0")).unwrap()
}
fn created() -> PolicyEvent {
    PolicyEvent::PolicyCreated {
        data: Default::default(),
        modules: Default::default(),
        policy_id: policy_id(),
        tenant_id: tenant(),
        name: PolicyName::parse("gate").unwrap(),
        description: Description::default(),
        version: 1,
        rego: rego(1),
        input_logging: InputLogging::Full,
        input_mask: Default::default(),
        control_checks: Default::default(),
        actor: actor(),
        reason: None,
    }
}
fn activated(version: u32) -> PolicyEvent {
    PolicyEvent::PolicyActivated { version, replay_id: None, actor: actor(), reason: None }
}
fn activate(version: Option<u32>) -> PolicyCommand {
    PolicyCommand::Activate { tenant_id: tenant(), version, replay_id: None, actor: actor(), reason: None }
}
fn archive() -> PolicyCommand {
    PolicyCommand::Archive { tenant_id: tenant(), actor: actor(), reason: None }
}

#[test]
fn create_on_an_empty_stream_emits_policy_created_as_version_one() {
    PolicyTest::with(engine())
        .given_no_previous_events()
        .when(PolicyCommand::Create {
            data: Default::default(),
            modules: Default::default(),
            policy_id: policy_id(),
            tenant_id: tenant(),
            name: PolicyName::parse("gate").unwrap(),
            description: Description::default(),
            rego: rego(1),
            input_logging: InputLogging::Full,
            input_mask: Default::default(),
            control_checks: Default::default(),
            actor: actor(),
            reason: None,
        })
        .then_expect_events(vec![created()]);
}

#[test]
fn create_twice_is_rejected() {
    PolicyTest::with(engine())
        .given(vec![created()])
        .when(PolicyCommand::Create {
            data: Default::default(),
            modules: Default::default(),
            policy_id: policy_id(),
            tenant_id: tenant(),
            name: PolicyName::parse("gate").unwrap(),
            description: Description::default(),
            rego: rego(1),
            input_logging: InputLogging::Full,
            input_mask: Default::default(),
            control_checks: Default::default(),
            actor: actor(),
            reason: None,
        })
        .then_expect_error(PolicyError::AlreadyExists);
}

#[test]
fn add_version_numbers_the_new_version_after_the_newest() {
    PolicyTest::with(engine())
        .given(vec![created(), version_added(2)])
        .when(PolicyCommand::AddVersion {
            data: Default::default(),
            modules: Default::default(),
            tenant_id: tenant(),
            rego: rego(3),
            control_checks: Default::default(),
            actor: actor(),
            reason: None,
        })
        .then_expect_events(vec![PolicyEvent::PolicyVersionAdded {
            data: Default::default(),
            modules: Default::default(),
            version: 3,
            rego: rego(3),
            control_checks: Default::default(),
            actor: actor(),
            reason: None,
        }]);
}

#[test]
fn activate_without_a_version_activates_the_newest() {
    PolicyTest::with(engine()).given(vec![created(), version_added(2)]).when(activate(None)).then_expect_events(vec![activated(2)]);
}

/// Version `n` added, of `rego(n)`, with nothing else.
fn version_added(n: u32) -> PolicyEvent {
    PolicyEvent::PolicyVersionAdded {
        version: n,
        rego: rego(n),
        modules: Default::default(),
        data: Default::default(),
        control_checks: Default::default(),
        actor: actor(),
        reason: None,
    }
}

#[test]
fn activate_without_a_version_checks_the_newest_version_in_the_events_before_activating_it() {
    let (services, engine) = recording(false);
    PolicyTest::with(services).given(vec![created(), version_added(2)]).when(activate(None)).then_expect_events(vec![activated(2)]);
    assert_eq!(
        *engine.checked.lock().unwrap(),
        vec![(2, VersionSource::single(rego(2)))],
        "the engine checked exactly the version activated"
    );
}

#[test]
fn activate_with_a_version_checks_that_version_s_own_source() {
    let (services, engine) = recording(false);
    PolicyTest::with(services).given(vec![created(), version_added(2)]).when(activate(Some(1))).then_expect_events(vec![activated(1)]);
    assert_eq!(*engine.checked.lock().unwrap(), vec![(1, VersionSource::single(rego(1)))]);
}

#[test]
fn activation_checks_the_version_s_further_modules_and_data_document_with_its_main_module() {
    let (services, engine) = recording(false);
    let lib = RegoSource::parse("package lib\nlimit := data.limits.max\n").unwrap();
    let modules = ExtraModules::parse(vec![lib]).unwrap();
    let data = DataDocument::from_value(serde_json::json!({"limits": {"max": 3}})).unwrap();
    PolicyTest::with(services)
        .given(vec![
            created(),
            PolicyEvent::PolicyVersionAdded {
                version: 2,
                rego: rego(2),
                modules: modules.clone(),
                data: data.clone(),
                control_checks: Default::default(),
                actor: actor(),
                reason: None,
            },
        ])
        .when(activate(Some(2)))
        .then_expect_events(vec![activated(2)]);
    assert_eq!(*engine.checked.lock().unwrap(), vec![(2, VersionSource { rego: rego(2), modules, data })]);
}

#[test]
fn a_version_the_engine_refuses_is_not_activated() {
    let (services, _) = recording(true);
    PolicyTest::with(services)
        .given(vec![created()])
        .when(activate(None))
        .then_expect_error(PolicyError::VersionRejected { version: 1, reason: VersionRejected(std::sync::Arc::new(TestsFailed)) });
}

#[test]
fn the_engine_is_not_asked_about_a_transition_the_state_forbids() {
    let (services, engine) = recording(false);
    PolicyTest::with(services)
        .given(vec![created(), PolicyEvent::PolicyArchived { actor: actor(), reason: None }])
        .when(activate(None))
        .then_expect_error(PolicyError::InvalidTransition { from: PolicyStatus::Archived, transition: "activate", allowed: &[] });
    assert!(engine.checked.lock().unwrap().is_empty());
}

#[test]
fn activate_rejects_a_version_that_does_not_exist() {
    PolicyTest::with(engine())
        .given(vec![created()])
        .when(activate(Some(7)))
        .then_expect_error(PolicyError::UnknownVersion { requested: 7, latest: 1 });
}

#[test]
fn activate_rejects_the_version_that_is_already_active() {
    PolicyTest::with(engine())
        .given(vec![created(), activated(1)])
        .when(activate(Some(1)))
        .then_expect_error(PolicyError::AlreadyActive(1));
}

#[test]
fn activate_rejects_an_archived_policy_and_lists_no_allowed_transitions() {
    PolicyTest::with(engine())
        .given(vec![created(), PolicyEvent::PolicyArchived { actor: actor(), reason: None }])
        .when(activate(Some(1)))
        .then_expect_error(PolicyError::InvalidTransition { from: PolicyStatus::Archived, transition: "activate", allowed: &[] });
}

#[test]
fn archive_rejects_an_active_policy_until_it_is_deactivated() {
    PolicyTest::with(engine()).given(vec![created(), activated(1)]).when(archive()).then_expect_error(PolicyError::InvalidTransition {
        from: PolicyStatus::Active,
        transition: "archive",
        allowed: &["add_version", "activate", "deactivate"],
    });
}

#[test]
fn deactivate_rejects_a_draft() {
    PolicyTest::with(engine())
        .given(vec![created()])
        .when(PolicyCommand::Deactivate { tenant_id: tenant(), actor: actor(), reason: None })
        .then_expect_error(PolicyError::InvalidTransition {
            from: PolicyStatus::Draft,
            transition: "deactivate",
            allowed: &["add_version", "activate", "archive"],
        });
}

#[test]
fn deactivate_then_archive_is_accepted() {
    PolicyTest::with(engine())
        .given(vec![created(), activated(1), PolicyEvent::PolicyDeactivated { actor: actor(), reason: None }])
        .when(archive())
        .then_expect_events(vec![PolicyEvent::PolicyArchived { actor: actor(), reason: None }]);
}

#[test]
fn commands_for_another_tenants_policy_answer_not_found() {
    PolicyTest::with(engine())
        .given(vec![created()])
        .when(PolicyCommand::Archive { tenant_id: other_tenant(), actor: actor(), reason: None })
        .then_expect_error(PolicyError::NotFound);
}

#[test]
fn commands_on_an_empty_stream_answer_not_found() {
    PolicyTest::with(engine()).given_no_previous_events().when(archive()).then_expect_error(PolicyError::NotFound);
}

#[test]
fn events_round_trip_through_their_ledger_payload() {
    use crate::LedgerEvent;
    let event = created();
    let payload = event.ledger_payload().unwrap();
    assert_eq!(payload["name"], "gate");
    assert!(payload.get("PolicyCreated").is_none(), "the payload is the body, without the enum wrapper");
    let back = PolicyEvent::from_ledger("PolicyCreated", payload).unwrap();
    assert_eq!(back, event);
}

#[test]
fn a_created_event_without_input_logging_reads_as_full() {
    use crate::LedgerEvent;
    let mut payload = created().ledger_payload().unwrap();
    payload.as_object_mut().unwrap().remove("input_logging");
    match PolicyEvent::from_ledger("PolicyCreated", payload).unwrap() {
        PolicyEvent::PolicyCreated { input_logging, .. } => assert_eq!(input_logging, InputLogging::Full),
        other => panic!("{other:?}"),
    }
}

fn replay_id(n: u8) -> ReplayId {
    ReplayId::from_uuid(uuid::Uuid::from_bytes([n; 16]))
}

/// A policy with versions 1 and 2, and a ledger holding replay 1 (of version 2).
fn with_replay_of_version_two() -> (PolicyServices, std::sync::Arc<Engine>, Vec<PolicyEvent>) {
    let subject = ReplaySubject { policy_id: policy_id(), version: 2 };
    let e = std::sync::Arc::new(Engine { replays: vec![(replay_id(1), subject)], ..Engine::default() });
    let given = vec![created(), version_added(2)];
    (PolicyServices::new(e.clone()), e, given)
}

fn activate_after(version: u32, replay: ReplayId) -> PolicyCommand {
    PolicyCommand::Activate { tenant_id: tenant(), version: Some(version), replay_id: Some(replay), actor: actor(), reason: None }
}

#[test]
fn an_activation_naming_a_replay_of_that_version_records_the_replay() {
    let (services, _, given) = with_replay_of_version_two();
    PolicyTest::with(services).given(given).when(activate_after(2, replay_id(1))).then_expect_events(vec![PolicyEvent::PolicyActivated {
        version: 2,
        replay_id: Some(replay_id(1)),
        actor: actor(),
        reason: None,
    }]);
}

#[test]
fn an_activation_naming_a_replay_of_another_version_is_refused_before_the_engine_is_asked() {
    let (services, engine, given) = with_replay_of_version_two();
    PolicyTest::with(services)
        .given(given)
        .when(activate_after(1, replay_id(1)))
        .then_expect_error(PolicyError::ReplayMismatch { replay: replay_id(1), version: 1 });
    assert!(engine.checked.lock().unwrap().is_empty());
}

#[test]
fn an_activation_naming_a_replay_the_tenant_does_not_have_is_refused() {
    let (services, _, given) = with_replay_of_version_two();
    PolicyTest::with(services)
        .given(given)
        .when(activate_after(2, replay_id(9)))
        .then_expect_error(PolicyError::ReplayMismatch { replay: replay_id(9), version: 2 });
}

#[test]
fn a_version_records_the_controls_it_checks() {
    let checks = ControlChecks::new(vec![ControlCheck {
        control_id: crate::compliance::ControlId::parse("PR.AA-01").unwrap(),
        rule: None,
        pass_when: PassWhen::NoDeny,
    }])
    .unwrap();
    PolicyTest::with(engine())
        .given(vec![created()])
        .when(PolicyCommand::AddVersion {
            data: Default::default(),
            modules: Default::default(),
            tenant_id: tenant(),
            rego: rego(2),
            control_checks: checks.clone(),
            actor: actor(),
            reason: None,
        })
        .then_expect_events(vec![PolicyEvent::PolicyVersionAdded {
            data: Default::default(),
            modules: Default::default(),
            version: 2,
            rego: rego(2),
            control_checks: checks,
            actor: actor(),
            reason: None,
        }]);
}
