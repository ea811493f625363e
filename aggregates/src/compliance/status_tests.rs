//! Given/when/then tests of the status rules: period edges, `as_of`, `partial`, outcomes,
//! auditor verdicts and mapping relations.

use super::*;

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap_or_default()
}
fn p(a: &str, b: &str) -> Period {
    Period { start: d(a), end: d(b) }
}
fn pass(a: &str, b: &str) -> Cover {
    Cover { period: p(a, b), contribution: Contribution::Satisfies }
}
fn with(a: &str, b: &str, contribution: Contribution) -> Cover {
    Cover { period: p(a, b), contribution }
}
const AUDIT: (&str, &str) = ("2026-01-01", "2026-06-30");
fn audit() -> Period {
    p(AUDIT.0, AUDIT.1)
}
fn judged(covers: &[Cover], as_of: &str) -> Derived {
    derive(false, covers, audit(), d(as_of), 30)
}
fn status(covers: &[Cover], as_of: &str) -> RequirementStatus {
    judged(covers, as_of).status
}

#[test]
fn given_no_evidence_then_missing_with_the_whole_period_as_gap() {
    let r = judged(&[], "2026-03-01");
    assert_eq!((r.status, r.gaps), (RequirementStatus::Missing, vec![audit()]));
}

#[test]
fn given_a_justification_then_not_applicable_whatever_the_evidence() {
    assert_eq!(derive(true, &[], audit(), d("2026-03-01"), 30).status, RequirementStatus::NotApplicable);
}

#[test]
fn given_evidence_covering_the_period_exactly_on_its_boundaries_then_satisfied() {
    assert_eq!(status(&[pass("2026-01-01", "2026-07-31")], "2026-06-30"), RequirementStatus::Satisfied);
    assert_eq!(status(&[pass("2026-01-01", "2026-06-30")], "2026-05-31"), RequirementStatus::Satisfied);
}

#[test]
fn given_a_closed_period_covered_exactly_then_it_stays_satisfied_after_the_period_ends() {
    // The day after the period ends, and a year later: the audited days are covered.
    for as_of in ["2026-07-01", "2027-07-01"] {
        let r = judged(&[pass("2026-01-01", "2026-06-30")], as_of);
        assert_eq!((r.status, r.gaps, r.covered_until), (RequirementStatus::Satisfied, vec![], Some(d("2026-06-30"))), "{as_of}");
    }
}

#[test]
fn given_evidence_starting_one_day_late_then_partial_with_that_day_as_gap() {
    let r = judged(&[pass("2026-01-02", "2027-01-01")], "2026-03-01");
    assert_eq!((r.status, r.gaps), (RequirementStatus::Partial, vec![p("2026-01-01", "2026-01-01")]));
}

#[test]
fn given_two_adjacent_records_then_they_cover_together_and_a_one_day_hole_is_a_gap() {
    assert_eq!(status(&[pass("2026-04-01", "2027-01-01"), pass("2025-12-01", "2026-03-31")], "2026-03-01"), RequirementStatus::Satisfied);
    let r = judged(&[pass("2025-12-01", "2026-03-30"), pass("2026-04-01", "2027-01-01")], "2026-03-01");
    assert_eq!((r.status, r.gaps), (RequirementStatus::Partial, vec![p("2026-03-31", "2026-03-31")]));
}

#[test]
fn given_an_open_period_and_evidence_ending_within_n_days_then_expiring_and_on_its_last_valid_day_still_expiring() {
    assert_eq!(status(&[pass("2025-01-01", "2026-07-14")], "2026-06-15"), RequirementStatus::Expiring);
    assert_eq!(status(&[pass("2025-01-01", "2026-06-30")], "2026-06-30"), RequirementStatus::Expiring);
    // valid_until = as_of + 30 days is not "within" 30 days.
    assert_eq!(status(&[pass("2025-01-01", "2026-07-15")], "2026-06-15"), RequirementStatus::Satisfied);
}

#[test]
fn given_satisfying_evidence_that_ended_before_as_of_inside_the_period_then_expired() {
    let r = judged(&[pass("2025-01-01", "2026-03-31")], "2026-04-01");
    assert_eq!(
        (r.status, r.covered_until, r.gaps),
        (RequirementStatus::Expired, Some(d("2026-03-31")), vec![p("2026-04-01", "2026-06-30")])
    );
    // Judged as of a day it was still valid, the rest of the open period is a gap.
    assert_eq!(status(&[pass("2025-01-01", "2026-03-31")], "2026-03-20"), RequirementStatus::Partial);
}

#[test]
fn as_of_moves_freshness_but_not_coverage() {
    let covers = [pass("2025-06-01", "2026-06-30")];
    assert_eq!(status(&covers, "2026-02-01"), RequirementStatus::Satisfied);
    assert_eq!(status(&covers, "2026-06-10"), RequirementStatus::Expiring);
    assert_eq!(status(&covers, "2026-08-01"), RequirementStatus::Satisfied);
}

#[test]
fn given_evidence_entirely_outside_the_period_then_partial_with_the_whole_period_as_gap() {
    let r = judged(&[pass("2026-07-01", "2027-07-01")], "2026-05-02");
    assert_eq!((r.status, r.gaps), (RequirementStatus::Partial, vec![audit()]));
}

#[test]
fn a_failed_result_uncovers_its_days_even_where_passing_evidence_covers_them() {
    let r = judged(&[pass("2025-01-01", "2027-01-01"), with("2026-03-01", "2026-03-07", Contribution::Fails)], "2026-05-01");
    assert_eq!((r.status, r.gaps), (RequirementStatus::Partial, vec![p("2026-03-01", "2026-03-07")]));
    let only_failing = judged(&[with("2025-01-01", "2027-01-01", Contribution::Fails)], "2026-05-01");
    assert_eq!((only_failing.status, only_failing.gaps), (RequirementStatus::Partial, vec![audit()]));
}

#[test]
fn evidence_that_only_counts_gives_partial_and_rejected_evidence_is_no_evidence() {
    let r = judged(&[with("2025-01-01", "2027-01-01", Contribution::Counts)], "2026-05-01");
    assert_eq!((r.status, r.gaps), (RequirementStatus::Partial, vec![audit()]));
    assert_eq!(status(&[with("2025-01-01", "2027-01-01", Contribution::Ignored)], "2026-05-01"), RequirementStatus::Missing);
}

#[test]
fn outcomes_verdicts_and_relations_decide_what_a_record_contributes() {
    use Contribution::*;
    assert_eq!(contribution(Outcome::Pass, None, None), Satisfies);
    assert_eq!(contribution(Outcome::Pass, Some(Verdict::Accepted), None), Satisfies);
    assert_eq!(contribution(Outcome::Pass, Some(Verdict::Rejected), None), Ignored);
    assert_eq!(contribution(Outcome::Fail, Some(Verdict::Accepted), None), Fails);
    assert_eq!(contribution(Outcome::Fail, Some(Verdict::Rejected), None), Ignored);
    assert_eq!(contribution(Outcome::Informational, None, None), Counts);
    let by: Vec<(Relation, Contribution)> = Relation::ALL.iter().map(|r| (*r, contribution(Outcome::Pass, None, Some(*r)))).collect();
    assert_eq!(
        by,
        vec![(Relation::Subset, Satisfies), (Relation::Intersects, Counts), (Relation::Equal, Satisfies), (Relation::Superset, Counts)]
    );
    // A failure is a failure through any relation.
    assert!(Relation::ALL.iter().all(|r| contribution(Outcome::Fail, None, Some(*r)) == Fails));
}

#[test]
fn gaps_handle_the_calendar_edges() {
    let all = Period { start: NaiveDate::MIN, end: NaiveDate::MAX };
    assert!(uncovered(&[all], &[], audit()).is_empty());
    assert_eq!(uncovered(&[all], &[all], audit()), vec![audit()]);
    assert_eq!(
        derive(false, &[Cover { period: all, contribution: Contribution::Satisfies }], all, d("2026-01-01"), u32::MAX).status,
        RequirementStatus::Satisfied
    );
    assert_eq!(
        merge(vec![p("2026-01-05", "2026-01-09"), p("2026-01-01", "2026-01-04"), p("2026-01-03", "2026-01-06")]),
        vec![p("2026-01-01", "2026-01-09")]
    );
}

/// `status_of` (the dashboard's, no gaps built) says what `derive` says, over random covers
/// of every contribution around a random audit period, as of random days: few covers (the
/// scan) and many (the sort), periods reaching the last day there is, and empty ones.
#[test]
fn the_status_alone_is_the_status_derived_with_the_gaps_for_random_covers() {
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let base = d("2026-01-01");
    let kinds = [Contribution::Satisfies, Contribution::Counts, Contribution::Fails, Contribution::Ignored];
    let mut seen = std::collections::HashSet::new();
    for case in 0..40_000 {
        let day = |n: u64| base.checked_add_days(chrono::Days::new(n)).unwrap_or(base);
        let start = next(40);
        let audit = Period { start: day(start), end: day(start + next(40)) };
        let covers: Vec<Cover> = (0..next(if case % 2 == 0 { 5 } else { 14 }))
            .map(|_| {
                let from = next(100);
                let end = match next(20) {
                    0 => NaiveDate::MAX,
                    1 => day(from.saturating_sub(3)),
                    _ => day(from + next(50)),
                };
                // Satisfying covers most often, so that gapless periods are common.
                let kind = if next(3) == 0 { kinds[next(4) as usize] } else { Contribution::Satisfies };
                Cover { period: Period { start: day(from), end }, contribution: kind }
            })
            .collect();
        let (na, as_of, within) = (next(10) == 0, day(next(120)), next(40) as u32);
        let derived = derive(na, &covers, audit, as_of, within);
        assert_eq!(status_of(na, &covers, audit, as_of, within), derived.status, "{covers:?} over {audit:?} as of {as_of}");
        seen.insert(derived.status);
    }
    assert_eq!(seen.len(), RequirementStatus::ALL.len(), "every status was met: {seen:?}");
}
