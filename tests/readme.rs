//! The README's walkthrough works verbatim on the embedded default.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;

fn walkthrough() -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let start = readme.find("```bash walkthrough\n").expect("README has a walkthrough block") + "```bash walkthrough\n".len();
    let len = readme[start..].find("```").unwrap();
    readme[start..start + len].to_owned()
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
    let mut cmd = std::process::Command::new("bash");
    cmd.args(["-euo", "pipefail", "-c", &walkthrough()])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("BASE", &svc.base)
        .env("AUMOS_GOVERNANCE_DATA_DIR", &data_dir);
    for k in remove {
        cmd.env_remove(k);
    }
    let out = cmd.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "walkthrough failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 3, "create, get and list each print one document:\n{stdout}");
    let created: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
    let got: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
    let list: serde_json::Value = serde_json::from_str(lines[2]).unwrap();
    assert_eq!(created["name"], "model-promotion-gate");
    assert_eq!(got, created);
    assert_eq!(list["total"], 1);
    assert_eq!(list["items"][0], created);
    drop(svc);
    let _ = std::fs::remove_dir_all(dir);
}
