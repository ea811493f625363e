//! Requirement status, derived from evidence (never stored, so it cannot go stale).
//!
//! For one workflow and one in-scope requirement, the *covering* evidence is every active
//! (not superseded, not withdrawn) record of the workflow that names the requirement, or
//! names a control the requirement maps to ("test once, comply many"). Dates are calendar
//! days and every range includes both ends. With `as_of` (today) and `expiring_within`
//! days N, checked in this order:
//!
//! 1. `not_applicable`: the workflow recorded a justification for the requirement.
//! 2. `missing`: nothing covers it.
//! 3. `expired`: everything covering it ended before `as_of`.
//! 4. `missing`: the covering periods leave a gap in the audit period (`gaps` says where).
//! 5. `expiring`: the covering evidence runs out within N days: the latest `valid_until`
//!    is before `as_of + N`.
//! 6. `satisfied`: otherwise.

use chrono::{Days, NaiveDate};
use serde::Serialize;

use super::workflow::Period;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RequirementStatus {
    Satisfied,
    Expiring,
    Expired,
    Missing,
    NotApplicable,
}

impl RequirementStatus {
    pub const ALL: [RequirementStatus; 5] = [Self::Satisfied, Self::Expiring, Self::Expired, Self::Missing, Self::NotApplicable];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Satisfied => "satisfied",
            Self::Expiring => "expiring",
            Self::Expired => "expired",
            Self::Missing => "missing",
            Self::NotApplicable => "not_applicable",
        }
    }
}

/// The derived status, and the facts behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Derived {
    pub status: RequirementStatus,
    /// Days of the audit period no covering evidence is effective on, as ranges.
    pub gaps: Vec<Period>,
    /// The last day the covering evidence is effective.
    pub covered_until: Option<NaiveDate>,
}

/// Derives one requirement's status from the effective periods of its covering evidence.
pub fn derive(not_applicable: bool, covering: &[Period], audit: Period, as_of: NaiveDate, expiring_within_days: u32) -> Derived {
    let done = |status, gaps, covered_until| Derived { status, gaps, covered_until };
    if not_applicable {
        return done(RequirementStatus::NotApplicable, vec![], None);
    }
    let Some(latest) = covering.iter().map(|p| p.end).max() else {
        return done(RequirementStatus::Missing, vec![audit], None);
    };
    if latest < as_of {
        return done(RequirementStatus::Expired, vec![], Some(latest));
    }
    let gaps = gaps(covering, audit);
    if !gaps.is_empty() {
        return done(RequirementStatus::Missing, gaps, Some(latest));
    }
    let horizon = as_of.checked_add_days(Days::new(u64::from(expiring_within_days))).unwrap_or(NaiveDate::MAX);
    let status = if latest < horizon { RequirementStatus::Expiring } else { RequirementStatus::Satisfied };
    done(status, vec![], Some(latest))
}

/// The parts of `audit` no period in `covering` includes.
fn gaps(covering: &[Period], audit: Period) -> Vec<Period> {
    let mut periods: Vec<Period> = covering.iter().copied().filter(|p| p.end >= audit.start && p.start <= audit.end).collect();
    periods.sort_by_key(|p| p.start);
    let mut out = Vec::new();
    // The first day not yet known to be covered.
    let mut next = audit.start;
    for p in periods {
        if p.start > next {
            out.push(Period { start: next, end: p.start.pred_opt().unwrap_or(p.start) });
        }
        if p.end >= next {
            match p.end.succ_opt() {
                Some(d) => next = d,
                None => return out,
            }
        }
        if next > audit.end {
            return out;
        }
    }
    if next <= audit.end {
        out.push(Period { start: next, end: audit.end });
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> NaiveDate {
        s.parse().unwrap_or_default()
    }
    fn p(a: &str, b: &str) -> Period {
        Period { start: d(a), end: d(b) }
    }
    const AUDIT: (&str, &str) = ("2026-01-01", "2026-06-30");
    fn status(covering: &[Period], as_of: &str) -> RequirementStatus {
        derive(false, covering, p(AUDIT.0, AUDIT.1), d(as_of), 30).status
    }

    #[test]
    fn given_no_evidence_then_missing_with_the_whole_period_as_gap() {
        let r = derive(false, &[], p(AUDIT.0, AUDIT.1), d("2026-03-01"), 30);
        assert_eq!((r.status, r.gaps), (RequirementStatus::Missing, vec![p(AUDIT.0, AUDIT.1)]));
    }

    #[test]
    fn given_a_justification_then_not_applicable_whatever_the_evidence() {
        assert_eq!(derive(true, &[], p(AUDIT.0, AUDIT.1), d("2026-03-01"), 30).status, RequirementStatus::NotApplicable);
    }

    #[test]
    fn given_evidence_covering_the_period_exactly_on_its_boundaries_then_satisfied() {
        // valid_until = as_of + 30 days is not "within" 30 days.
        assert_eq!(status(&[p("2026-01-01", "2026-07-31")], "2026-07-01"), RequirementStatus::Satisfied);
        assert_eq!(status(&[p("2026-01-01", "2026-06-30")], "2026-05-31"), RequirementStatus::Satisfied);
    }

    #[test]
    fn given_evidence_starting_one_day_late_then_missing_with_that_day_as_gap() {
        let r = derive(false, &[p("2026-01-02", "2027-01-01")], p(AUDIT.0, AUDIT.1), d("2026-03-01"), 30);
        assert_eq!((r.status, r.gaps), (RequirementStatus::Missing, vec![p("2026-01-01", "2026-01-01")]));
    }

    #[test]
    fn given_two_adjacent_records_then_they_cover_together_and_a_one_day_hole_is_a_gap() {
        assert_eq!(status(&[p("2026-04-01", "2027-01-01"), p("2025-12-01", "2026-03-31")], "2026-03-01"), RequirementStatus::Satisfied);
        let r = derive(false, &[p("2025-12-01", "2026-03-30"), p("2026-04-01", "2027-01-01")], p(AUDIT.0, AUDIT.1), d("2026-03-01"), 30);
        assert_eq!((r.status, r.gaps), (RequirementStatus::Missing, vec![p("2026-03-31", "2026-03-31")]));
    }

    #[test]
    fn given_evidence_ending_within_n_days_then_expiring_and_on_the_last_valid_day_still_expiring() {
        assert_eq!(status(&[p("2025-01-01", "2026-07-30")], "2026-07-01"), RequirementStatus::Expiring);
        assert_eq!(status(&[p("2025-01-01", "2026-07-01")], "2026-07-01"), RequirementStatus::Expiring);
    }

    #[test]
    fn given_evidence_that_ended_the_day_before_as_of_then_expired() {
        let r = derive(false, &[p("2025-01-01", "2026-06-30")], p(AUDIT.0, AUDIT.1), d("2026-07-01"), 30);
        assert_eq!((r.status, r.covered_until), (RequirementStatus::Expired, Some(d("2026-06-30"))));
    }

    #[test]
    fn given_evidence_entirely_outside_the_period_then_missing() {
        assert_eq!(status(&[p("2026-07-01", "2027-07-01")], "2026-07-02"), RequirementStatus::Missing);
    }

    #[test]
    fn gaps_handle_the_calendar_edges() {
        let all = Period { start: NaiveDate::MIN, end: NaiveDate::MAX };
        assert!(gaps(&[all], p(AUDIT.0, AUDIT.1)).is_empty());
        assert_eq!(derive(false, &[all], all, d("2026-01-01"), u32::MAX).status, RequirementStatus::Satisfied);
    }
}
