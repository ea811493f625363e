use super::*;

fn tally(version: u32, pass_when: PassWhen, allowed: u64, denied: u64, undefined: u64) -> VersionTally {
    VersionTally { version, pass_when, allowed, denied, undefined }
}

#[test]
fn decisions_count_as_allowed_denied_or_undefined_by_their_allowed_field() {
    let mut t = VersionTally::new(1, PassWhen::NoDeny);
    for a in [Some(true), Some(true), Some(false), None] {
        t.count(DecisionClass::of(a));
    }
    assert_eq!((t.allowed, t.denied, t.undefined, t.decisions()), (2, 1, 1, 4));
}

#[test]
fn a_day_of_allows_passes_and_one_deny_fails_it_under_no_deny() {
    assert_eq!(day_outcome(&[tally(1, PassWhen::NoDeny, 3, 0, 0)]), Outcome::Pass);
    assert_eq!(day_outcome(&[tally(1, PassWhen::NoDeny, 3, 1, 0)]), Outcome::Fail);
    assert_eq!(day_outcome(&[tally(1, PassWhen::NoDeny, 3, 0, 2)]), Outcome::Pass, "undefined does not fail no_deny");
}

#[test]
fn decided_passes_with_only_denies_and_all_allowed_fails_on_an_undefined_result() {
    assert_eq!(day_outcome(&[tally(1, PassWhen::Decided, 0, 4, 0)]), Outcome::Pass);
    assert_eq!(day_outcome(&[tally(1, PassWhen::AllAllowed, 4, 0, 1)]), Outcome::Fail);
    assert_eq!(day_outcome(&[tally(1, PassWhen::AllAllowed, 4, 0, 0)]), Outcome::Pass);
}

#[test]
fn with_several_versions_each_is_judged_by_its_own_rule_on_its_own_counts_and_any_failure_fails_the_day() {
    // Version 1 (decided) denied all morning; version 2 (no_deny) only allowed: both pass.
    assert_eq!(day_outcome(&[tally(1, PassWhen::Decided, 0, 5, 0), tally(2, PassWhen::NoDeny, 3, 0, 0)]), Outcome::Pass);
    // The same denies under a no_deny version fail the day, whatever the other version did.
    assert_eq!(day_outcome(&[tally(1, PassWhen::NoDeny, 0, 5, 0), tally(2, PassWhen::NoDeny, 3, 0, 0)]), Outcome::Fail);
    // Pooling the counts would have judged differently: decided's denies would fail no_deny.
    assert!(!PassWhen::NoDeny.passes(3, 5, 0));
}

#[test]
fn a_day_without_any_tally_never_passes() {
    assert_eq!(day_outcome(&[]), Outcome::Fail);
    assert_eq!(day_outcome(&[tally(1, PassWhen::Decided, 0, 0, 0)]), Outcome::Fail);
}

#[test]
fn a_roll_up_has_one_stable_id_per_tenant_policy_control_and_day() {
    let (t, p) = (Uuid::from_u128(1), Uuid::from_u128(2));
    let day = NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
    let id = system_evidence_id(t, p, "PR.AA-01", day);
    assert_eq!(id, system_evidence_id(t, p, "PR.AA-01", day));
    assert_eq!(id.get_version_num(), 8);
    assert_ne!(id, system_evidence_id(Uuid::from_u128(3), p, "PR.AA-01", day), "another tenant");
    assert_ne!(id, system_evidence_id(t, Uuid::from_u128(3), "PR.AA-01", day), "another policy");
    assert_ne!(id, system_evidence_id(t, p, "PR.AA-02", day), "another control");
    assert_ne!(id, system_evidence_id(t, p, "PR.AA-01", day.succ_opt().unwrap()), "another day");
}

#[test]
fn few_decisions_are_all_proven_and_many_are_sampled_first_last_and_evenly_spaced() {
    assert_eq!(proof_sample(0, PROOF_SAMPLE), Vec::<u64>::new());
    assert_eq!(proof_sample(20, PROOF_SAMPLE), (0..20).collect::<Vec<_>>());
    let s = proof_sample(1000, PROOF_SAMPLE);
    assert_eq!(s.len(), PROOF_SAMPLE);
    assert_eq!((s[0], s[19]), (0, 999));
    assert!(s.windows(2).all(|w| w[1] > w[0] && w[1] - w[0] >= 52 && w[1] - w[0] <= 53), "{s:?}");
    assert_eq!(proof_sample(21, PROOF_SAMPLE).len(), 20);
    assert_eq!(proof_sample(u64::MAX, PROOF_SAMPLE).last(), Some(&(u64::MAX - 1)));
    assert_eq!(proof_sample(5, 1), vec![0]);
}
