//! Requirement status, derived from evidence (never stored, so it cannot go stale).
//!
//! For one workflow and one in-scope requirement, the *covering* evidence is every active
//! (not superseded, not withdrawn) record of the workflow that names the requirement, or
//! names a control the requirement maps to ("test once, comply many"). Each record
//! contributes according to [`contribution`]: it satisfies (for its days), only counts
//! towards the requirement, marks its days as failing, or (rejected by an auditor) does
//! not count at all. Dates are calendar days and every range includes both ends.
//!
//! Coverage is judged over the workflow's audit period; freshness as of `as_of`. The last
//! day that matters is `min(as_of, audit end)`: once the period is over, evidence need not
//! stay valid past its end. With `expiring_within` days N, checked in this order:
//!
//! 1. `not_applicable`: the workflow recorded a justification for the requirement.
//! 2. `missing`: no evidence at all (rejected records do not count).
//! 3. `expired`: satisfying evidence exists, and all of it ended before the last day that
//!    matters.
//! 4. `partial`: days of the audit period are not covered by satisfying evidence, or are
//!    covered by a failing result (`gaps` says which); this includes evidence that only
//!    counts towards the requirement (informational, or through a partial relation).
//! 5. `expiring`: the audit period is still open on `as_of` and the satisfying evidence
//!    runs out within N days: the latest `valid_until` is before `as_of + N`.
//! 6. `satisfied`: otherwise.

use chrono::{Days, NaiveDate};
use serde::{Deserialize, Serialize};

use super::codes::Relation;
use super::evidence::{Outcome, Verdict};
use super::workflow::Period;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RequirementStatus {
    Satisfied,
    Expiring,
    Expired,
    Partial,
    Missing,
    NotApplicable,
}

impl RequirementStatus {
    pub const ALL: [RequirementStatus; 6] =
        [Self::Satisfied, Self::Expiring, Self::Expired, Self::Partial, Self::Missing, Self::NotApplicable];
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Satisfied => "satisfied",
            Self::Expiring => "expiring",
            Self::Expired => "expired",
            Self::Partial => "partial",
            Self::Missing => "missing",
            Self::NotApplicable => "not_applicable",
        }
    }
    pub fn parse(raw: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == raw)
    }
}

/// What one record contributes to one requirement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contribution {
    /// Its days count as covered.
    Satisfies,
    /// It is evidence for the requirement, but cannot cover days on its own.
    Counts,
    /// Its days are not covered, whatever else covers them (a failed result).
    Fails,
    /// An auditor rejected it: it is not evidence.
    Ignored,
}

/// How a record counts for a requirement: by the auditor's verdict, its outcome, and the
/// relation through which it reaches the requirement (`None`: it names the requirement,
/// or reaches it through a baseline link, which carries no relation and counts as `equal`).
pub fn contribution(outcome: Outcome, verdict: Option<Verdict>, relation: Option<Relation>) -> Contribution {
    match (verdict, outcome) {
        (Some(Verdict::Rejected), _) => Contribution::Ignored,
        (_, Outcome::Fail) => Contribution::Fails,
        (_, Outcome::Informational) => Contribution::Counts,
        (_, Outcome::Pass) if relation.is_none_or(Relation::covers_requirement) => Contribution::Satisfies,
        (_, Outcome::Pass) => Contribution::Counts,
    }
}

/// One covering record: its effective period and what it contributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cover {
    pub period: Period,
    pub contribution: Contribution,
}

/// The derived status, and the facts behind it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Derived {
    pub status: RequirementStatus,
    /// Days of the audit period no satisfying evidence covers (or a failure marks), as ranges.
    pub gaps: Vec<Period>,
    /// The last day the satisfying evidence is effective.
    pub covered_until: Option<NaiveDate>,
}

/// Derives one requirement's status from its covering records.
pub fn derive(not_applicable: bool, covers: &[Cover], audit: Period, as_of: NaiveDate, expiring_within_days: u32) -> Derived {
    if not_applicable {
        return Derived { status: RequirementStatus::NotApplicable, gaps: vec![], covered_until: None };
    }
    if covers.iter().all(|c| c.contribution == Contribution::Ignored) {
        return Derived { status: RequirementStatus::Missing, gaps: vec![audit], covered_until: None };
    }
    let of = |kind: Contribution| covers.iter().filter(move |c| c.contribution == kind).map(|c| c.period);
    let satisfying: Vec<Period> = of(Contribution::Satisfies).collect();
    let failing: Vec<Period> = of(Contribution::Fails).collect();
    let latest = satisfying.iter().map(|p| p.end).max();
    let gaps = uncovered(&satisfying, &failing, audit);
    let status = classify(latest, gaps.is_empty(), audit, as_of, expiring_within_days);
    Derived { status, gaps, covered_until: latest }
}

/// The status [`derive`] derives, without the gaps (so without allocating): a dashboard
/// judges hundreds of thousands of requirements and keeps only their statuses.
pub fn status_of(not_applicable: bool, covers: &[Cover], audit: Period, as_of: NaiveDate, expiring_within_days: u32) -> RequirementStatus {
    if not_applicable {
        return RequirementStatus::NotApplicable;
    }
    if covers.iter().all(|c| c.contribution == Contribution::Ignored) {
        return RequirementStatus::Missing;
    }
    let latest = covers.iter().filter(|c| c.contribution == Contribution::Satisfies).map(|c| c.period.end).max();
    // Only `partial` and the statuses after it depend on the gaps.
    let gapless = match latest {
        Some(l) if l >= as_of.min(audit.end) => no_gap(covers, audit),
        _ => false,
    };
    classify(latest, gapless, audit, as_of, expiring_within_days)
}

/// Rules 3 to 6 of the module's list, from the last day satisfying evidence is effective
/// and whether the audit period has no gap.
fn classify(latest: Option<NaiveDate>, gapless: bool, audit: Period, as_of: NaiveDate, expiring_within_days: u32) -> RequirementStatus {
    match latest {
        Some(l) if l < as_of.min(audit.end) => RequirementStatus::Expired,
        None => RequirementStatus::Partial,
        Some(_) if !gapless => RequirementStatus::Partial,
        Some(l) => {
            let horizon = as_of.checked_add_days(Days::new(u64::from(expiring_within_days))).unwrap_or(NaiveDate::MAX);
            if as_of <= audit.end && l < horizon {
                RequirementStatus::Expiring
            } else {
                RequirementStatus::Satisfied
            }
        }
    }
}

/// Beyond this many covers, [`no_gap`] sorts (through [`uncovered`]) instead of scanning
/// them again for each covered stretch.
const SCANNED_COVERS: usize = 8;

/// Whether `uncovered` of the satisfying and failing covers is empty, without building it:
/// no failing cover touches `audit`, and the satisfying ones cover it day after day.
fn no_gap(covers: &[Cover], audit: Period) -> bool {
    let of = |kind: Contribution| covers.iter().filter(move |c| c.contribution == kind).map(|c| c.period);
    if of(Contribution::Fails).any(|f| clip(f, audit).is_some()) {
        return false;
    }
    if covers.len() > SCANNED_COVERS {
        return uncovered(&of(Contribution::Satisfies).collect::<Vec<_>>(), &[], audit).is_empty();
    }
    // The first day not yet known to be covered; each step moves past the furthest end of
    // the covers that include it.
    let mut next = audit.start;
    while next <= audit.end {
        match of(Contribution::Satisfies).filter(|p| p.start <= next && next <= p.end).map(|p| p.end).max() {
            None => return false,
            Some(end) => match end.succ_opt() {
                Some(day) => next = day,
                None => return true,
            },
        }
    }
    true
}

/// The days of `audit` that no period in `covering` includes, or that a period in
/// `failing` includes, as sorted, disjoint ranges.
fn uncovered(covering: &[Period], failing: &[Period], audit: Period) -> Vec<Period> {
    let mut out = complement(covering, audit);
    out.extend(failing.iter().filter_map(|f| clip(*f, audit)));
    merge(out)
}

fn clip(p: Period, to: Period) -> Option<Period> {
    let (start, end) = (p.start.max(to.start), p.end.min(to.end));
    (start <= end).then_some(Period { start, end })
}

/// Sorts and joins overlapping or adjacent ranges.
fn merge(mut periods: Vec<Period>) -> Vec<Period> {
    periods.sort_by_key(|p| p.start);
    let mut out: Vec<Period> = Vec::with_capacity(periods.len());
    for p in periods {
        match out.last_mut() {
            Some(last) if last.end.succ_opt().is_none_or(|next| p.start <= next) => last.end = last.end.max(p.end),
            _ => out.push(p),
        }
    }
    out
}

/// The parts of `audit` no period in `covering` includes.
fn complement(covering: &[Period], audit: Period) -> Vec<Period> {
    let mut out = Vec::new();
    // The first day not yet known to be covered.
    let mut next = audit.start;
    for p in merge(covering.iter().filter_map(|p| clip(*p, audit)).collect()) {
        if p.start > next {
            out.push(Period { start: next, end: p.start.pred_opt().unwrap_or(p.start) });
        }
        match p.end.succ_opt() {
            Some(d) => next = d,
            None => return out,
        }
    }
    if next <= audit.end {
        out.push(Period { start: next, end: audit.end });
    }
    out
}

#[cfg(test)]
#[path = "status_tests.rs"]
mod tests;
