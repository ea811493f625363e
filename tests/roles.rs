//! The endpoint → roles table of docs/SECURITY.md, checked for every row and every role:
//! a role outside the row gets 403 `forbidden`; a role inside it is let through (whatever
//! the endpoint then says about the made-up ids).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

const ROLES: &[&str] = &["governance:admin", "policy:author", "policy:evaluator", "compliance:officer", "auditor"];

fn table() -> Vec<(Method, String, Vec<String>)> {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/SECURITY.md")).unwrap();
    doc.lines()
        .filter(|l| l.starts_with("| GET ") || l.starts_with("| POST ") || l.starts_with("| PATCH "))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            let roles = if cells[2] == "any role" {
                ROLES.iter().map(|r| (*r).to_owned()).collect()
            } else {
                cells[2].split(", ").map(str::to_owned).collect()
            };
            (cells[0].parse().unwrap(), cells[1].to_owned(), roles)
        })
        .collect()
}

/// A body of the right shape, so the role check is what decides.
fn body(method: &Method, path: &str) -> Option<Value> {
    if *method == Method::PATCH {
        return Some(json!({"due_date": "2026-12-31", "reason": "r"}));
    }
    if *method != Method::POST {
        return None;
    }
    if path.contains("/link-exclusions") {
        return Some(json!({"requirement_id": "CC1.1", "control_id": "GV.PO-01", "rationale": "r"}));
    }
    Some(match path.rsplit('/').next().unwrap() {
        "policies" => json!({"name": "roles", "rego": "package roles\nallow := true\n"}),
        "versions" => json!({"rego": "package roles\nallow := true\n"}),
        "evaluate" => json!({"input": {}}),
        "replay" => json!({"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z"}),
        "workflows" => {
            json!({"regulation": "soc2", "name": "r", "audit_period_start": "2026-01-01", "audit_period_end": "2026-02-01", "due_date": "2026-03-01"})
        }
        "transitions" => json!({"to": "scoping", "reason": "r"}),
        "not-applicable" => json!({"requirement_id": "CC1.1", "justification": "r"}),
        "mappings" => json!({"mappings": [{"requirement_id": "CC1.1", "control_id": "PR.AA-01", "relation": "subset", "rationale": "r"}]}),
        "supersede" => json!({"by": Uuid::new_v4()}),
        "withdraw" => json!({"reason": "r"}),
        "withdrawals" => json!({"requirement_id": "CC1.1", "reason": "r"}),
        "accept" => json!({"reason": "r"}),
        "send-back" => json!({"reason": "r", "findings": [{"title": "t", "owner": "o", "due_date": "2026-12-31"}]}),
        "close" => json!({"evidence_id": Uuid::new_v4()}),
        "review" => json!({"verdict": "accepted", "reason": "r"}),
        _ => return None,
    })
}

#[tokio::test]
async fn every_endpoint_admits_exactly_the_roles_the_table_lists() {
    let svc = Service::start(&[]).await;
    let rows = table();
    assert!(rows.len() >= 16, "the table lists the endpoints");
    let tenant = Uuid::new_v4();
    for (method, template, allowed) in rows {
        let path = template
            .replace("{id}", &Uuid::new_v4().to_string())
            .replace("{finding_id}", &Uuid::new_v4().to_string())
            .replace("{seq}", "1")
            .replace("{code}", "soc2")
            .replace("{csf_id}", "PR.AA-01")
            .replace("{v}", "1")
            .replace("{replay_id}", &Uuid::new_v4().to_string());
        let path = if path.ends_with("/consistency") { format!("{path}?from=1&to=1") } else { path };
        for role in ROLES.iter().copied().chain(std::iter::once("no-such-role")) {
            let tok = token(tenant, &[role]);
            let (status, resp) = svc.call(method.clone(), &path, Some(tenant), Some(&tok), body(&method, &template).as_ref()).await;
            if allowed.iter().any(|a| a == role) {
                assert_ne!(status, StatusCode::FORBIDDEN, "{method} {template} must admit {role}: {resp}");
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{method} {template} must refuse {role}: {resp}");
                assert_eq!(error_code(&resp), "forbidden");
            }
        }
    }
}
