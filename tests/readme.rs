//! The README's walkthrough works verbatim on the embedded default.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

fn block(tag: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let fence = format!("```bash {tag}\n");
    let start = readme.find(&fence).unwrap_or_else(|| panic!("README has a {tag} block")) + fence.len();
    let len = readme[start..].find("```").unwrap();
    readme[start..start + len].to_owned()
}

/// Runs a README block with bash against `base`; returns its non-empty output lines, JSON
/// where they are JSON and strings otherwise (the offline verifiers print text).
fn run(tag: &str, base: &str, data_dir: &str, remove: &[&str]) -> Vec<serde_json::Value> {
    let mut cmd = std::process::Command::new("bash");
    cmd.args(["-euo", "pipefail", "-c", &block(tag)])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("BASE", base)
        .env("AUMOS_GOVERNANCE_DATA_DIR", data_dir);
    for k in remove {
        cmd.env_remove(k);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{tag} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|_| serde_json::Value::String(l.to_owned())))
        .collect()
}

#[tokio::test]
async fn the_readme_walkthrough_works_verbatim_on_the_embedded_default() {
    let dir = std::env::temp_dir().join(format!("gov-readme-{}", uuid::Uuid::new_v4()));
    let data_dir = dir.display().to_string();
    let remove = [
        "AUMOS_DATABASE_URL",
        "AUMOS_GOVERNANCE_AUDIT_DB_URL",
        "AUMOS_GOVERNANCE_AUDIT_DB_READER_URL",
        "AUMOS_JWT_PUBLIC_KEY_FILE",
        "AUMOS_JWT_PRIVATE_KEY_FILE",
        "AUMOS_KAFKA_BOOTSTRAP_SERVERS",
        "AUMOS_GOVERNANCE_EVIDENCE_ARTIFACT_BUCKET",
    ];
    let svc = Service::spawn(&[("AUMOS_GOVERNANCE_DATA_DIR", &data_dir)], &remove).await;
    let lines = run("walkthrough", &svc.base, &data_dir, &remove);
    assert_eq!(lines.len(), 8, "create, activate, evaluate, the record, the proof, its check, the export and its check: {lines:?}");
    let (created, active, decision, record, proof) = (&lines[0], &lines[1], &lines[2], &lines[3], &lines[4]);
    assert_eq!((created["name"].as_str(), created["status"].as_str()), (Some("model-promotion-gate"), Some("draft")));
    assert_eq!((active["status"].as_str(), active["active_version"].as_i64()), (Some("active"), Some(1)));
    assert_eq!((decision["policy_id"].clone(), decision["allowed"].clone()), (created["policy_id"].clone(), serde_json::json!(true)));
    assert_eq!((record["decision_id"].clone(), record["allowed"].clone()), (decision["decision_id"].clone(), serde_json::json!(true)));
    assert_eq!(proof["entry"]["seq"], decision["ledger_seq"], "the proof is of the decision's entry: {proof}");
    let (proved, exported, verified) = (lines[5].as_str().unwrap(), lines[6].as_str().unwrap(), lines[7].as_str().unwrap());
    assert!(proved.starts_with(&format!("entry {} is included in the ledger", decision["ledger_seq"])), "{proved}");
    assert!(exported.starts_with("exported"), "{exported}");
    assert!(verified.starts_with("OK: "), "{verified}");

    let lines = run("replay-walkthrough", &svc.base, &data_dir, &remove);
    assert_eq!(lines.len(), 2, "the replay report and the activation: {lines:?}");
    let (replay, activated) = (&lines[0], &lines[1]);
    assert_eq!(replay["status"], "done", "{replay}");
    assert_eq!(replay["report"]["changed"]["defined_to_undefined"], 1, "0.93 passes version 1, not version 2: {replay}");
    assert_eq!(replay["report"]["controls_affected"], serde_json::json!(["PR.AA-01"]), "{replay}");
    assert_eq!((activated["status"].as_str(), activated["active_version"].as_i64()), (Some("active"), Some(2)), "{activated}");

    let lines = run("compliance-walkthrough", &svc.base, &data_dir, &remove);
    assert_eq!(lines.len(), 5, "workflow, evidence, statuses, system evidence and the one-day statuses: {lines:?}");
    assert_eq!((lines[0]["regulation"].as_str(), lines[0]["state"].as_str()), (Some("soc2"), Some("draft")));
    assert_eq!((lines[1]["kind"].as_str(), lines[1]["content_type"].as_str()), (Some("configuration_export"), Some("text/csv")));
    assert_eq!(lines[2]["summary"], serde_json::json!({"satisfied": 2}), "one piece of evidence satisfies both criteria");
    let (system, day) = (&lines[3], &lines[4]);
    assert_eq!((system["total"].as_i64(), system["items"][0]["kind"].as_str()), (Some(1), Some("policy_evaluation")), "{system}");
    assert_eq!((system["items"][0]["allowed"].as_i64(), system["items"][0]["outcome"].as_str()), (Some(2), Some("pass")));
    assert_eq!(day["summary"], serde_json::json!({"satisfied": 1}), "the decisions alone satisfy CC6.1: {day}");
    assert_eq!(day["items"][0]["system_evidence"][0]["evidence_id"], system["items"][0]["evidence_id"]);
    drop(svc);
    let _ = std::fs::remove_dir_all(dir);
}

#[test]
fn no_document_holds_a_merge_conflict_marker() {
    let root = env!("CARGO_MANIFEST_DIR");
    let mut docs = vec![format!("{root}/README.md")];
    for entry in std::fs::read_dir(format!("{root}/docs")).unwrap().flatten() {
        docs.push(entry.path().display().to_string());
    }
    for doc in docs.iter().filter(|d| d.ends_with(".md")) {
        let text = std::fs::read_to_string(doc).unwrap();
        for marker in ["<<<<<<< ", ">>>>>>> "] {
            assert!(!text.lines().any(|l| l.starts_with(marker)), "{doc} holds a merge conflict marker ({marker})");
        }
    }
}
