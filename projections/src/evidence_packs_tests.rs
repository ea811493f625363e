use super::*;

fn pack(facts: &str) -> FetchedPack {
    FetchedPack { workflow_id: Uuid::from_u128(7), facts: facts.to_owned() }
}

fn decoded(facts: &str) -> Result<Vec<EvidenceFacts>, ProjectionError> {
    let mut out = Vec::new();
    pack(facts).decode_into(&mut out).map(|()| out)
}

const LINE: &str = "00000000-0000-0000-0000-000000000001\tdocument\tCC6.1 A.5.1(a)\tPR.AA-01\t9497\t9861\tpass\t";

#[test]
fn a_line_decodes_into_the_facts_of_its_record_in_its_packs_workflow() {
    let facts = decoded(LINE).unwrap();
    assert_eq!(
        facts,
        vec![EvidenceFacts {
            evidence_id: Uuid::from_u128(1),
            workflow_id: Uuid::from_u128(7),
            kind: EvidenceKind::Document,
            requirement_ids: vec!["CC6.1".into(), "A.5.1(a)".into()],
            control_ids: vec!["PR.AA-01".into()],
            valid_from: NaiveDate::from_ymd_opt(2026, 1, 1).unwrap(),
            valid_until: NaiveDate::from_ymd_opt(2026, 12, 31).unwrap(),
            outcome: Outcome::Pass,
            review_verdict: None,
        }]
    );
}

#[test]
fn days_count_from_the_first_of_january_2000_in_either_direction() {
    assert_eq!(day("0").unwrap(), NaiveDate::from_ymd_opt(2000, 1, 1).unwrap());
    assert_eq!(day("-1").unwrap(), NaiveDate::from_ymd_opt(1999, 12, 31).unwrap());
    assert_eq!(day("366").unwrap(), NaiveDate::from_ymd_opt(2001, 1, 1).unwrap());
    assert!(day("2147483647").is_err(), "out of range is an error, not a wrap");
    assert!(day("1.5").is_err() && day("").is_err());
}

#[test]
fn every_line_of_a_pack_is_a_record_and_no_ids_is_an_empty_list() {
    let two = format!("{LINE}\n00000000-0000-0000-0000-000000000002\tattestation\t\t\t0\t0\tfail\trejected");
    let facts = decoded(&two).unwrap();
    assert_eq!(facts.len(), 2);
    assert_eq!(facts[1].evidence_id, Uuid::from_u128(2));
    assert!(facts[1].requirement_ids.is_empty() && facts[1].control_ids.is_empty());
    assert_eq!((facts[1].outcome, facts[1].review_verdict), (Outcome::Fail, Some(Verdict::Rejected)));
}

#[test]
fn a_line_that_does_not_decode_is_an_error_that_names_its_workflow_never_a_default() {
    let broken = [
        LINE.replace("document", "memo"),
        LINE.replace("\tpass\t", "\tmaybe\t"),
        format!("{LINE}accepted-ish"),
        LINE.replace("00000000-0000-0000-0000-000000000001", "not-a-uuid"),
        LINE.replace("CC6.1 A.5.1(a)", "CC6.1  A.5.1(a)"),
        LINE.replace("9497", "x"),
        format!("{LINE}\textra"),
        LINE.rsplit_once('\t').unwrap().0.to_owned(),
        String::new(),
    ];
    for facts in broken {
        let e = decoded(&facts).unwrap_err().to_string();
        assert!(e.contains(&Uuid::from_u128(7).to_string()), "{facts:?}: {e}");
    }
}

#[test]
fn no_id_can_hold_a_separator_of_the_lines() {
    use aggregates::compliance::{ControlId, RequirementId};
    for sep in [" ", "\t", "\n"] {
        assert!(RequirementId::parse(&format!("CC6{sep}1")).is_err(), "{sep:?}");
        assert!(ControlId::parse(&format!("PR.AA{sep}1")).is_err(), "{sep:?}");
    }
    assert!(RequirementId::parse("164.308(a)(1),x").is_ok(), "commas are allowed: the lines do not use them");
}

#[test]
fn the_cursor_narrows_to_the_asked_workflows_with_literals_that_are_only_hex_and_dashes() {
    let (a, b) = (Uuid::from_u128(1), Uuid::from_u128(2));
    assert_eq!(Workflows::ALL.predicate(), "");
    assert_eq!(Workflows::Only(a).predicate(), format!(" AND workflow_id = '{a}'::uuid"));
    assert_eq!(
        Workflows::Range { from: Some(a), before: Some(b) }.predicate(),
        format!(" AND workflow_id >= '{a}'::uuid AND workflow_id < '{b}'::uuid")
    );
}

#[test]
fn the_migration_defines_the_line_this_module_reads_and_the_rule_the_projector_calls() {
    let migration = include_str!("../../migrations/20261202000101_gov_evidence_packs.sql");
    assert!(migration.contains("CREATE FUNCTION gov_evidence_fact_line("));
    assert!(migration.contains("CREATE FUNCTION gov_evidence_next_chunk(last_chunk integer, assigned integer, assigned_bytes integer)"));
    assert!(NEXT_CHUNK.contains("gov_evidence_next_chunk(p.chunk, p.assigned, p.assigned_bytes)"));
    assert!(migration.contains("(valid_from - DATE '2000-01-01')"));
    assert_eq!(NaiveDate::from_num_days_from_ce_opt(EPOCH_CE), NaiveDate::from_ymd_opt(2000, 1, 1));
}
