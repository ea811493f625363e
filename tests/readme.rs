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

/// Runs a README block with bash against `base`; returns its non-empty output lines.
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
    stdout.lines().filter(|l| !l.trim().is_empty()).map(|l| serde_json::from_str(l).unwrap_or_else(|_| panic!("not JSON: {l}"))).collect()
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
    assert_eq!(lines.len(), 3, "create, get and list each print one document: {lines:?}");
    let (created, got, list) = (&lines[0], &lines[1], &lines[2]);
    assert_eq!(created["name"], "model-promotion-gate");
    assert_eq!(got, created);
    assert_eq!(list["total"], 1);
    assert_eq!(&list["items"][0], created);

    let lines = run("compliance-walkthrough", &svc.base, &data_dir, &remove);
    assert_eq!(lines.len(), 3, "workflow, evidence and statuses: {lines:?}");
    assert_eq!((lines[0]["regulation"].as_str(), lines[0]["state"].as_str()), (Some("soc2"), Some("draft")));
    assert_eq!((lines[1]["kind"].as_str(), lines[1]["content_type"].as_str()), (Some("configuration_export"), Some("text/csv")));
    assert_eq!(lines[2]["summary"], serde_json::json!({"satisfied": 2}), "one piece of evidence satisfies both criteria");
    drop(svc);
    let _ = std::fs::remove_dir_all(dir);
}
