//! The command line: every subcommand has a useful --help, and bad configuration stops
//! start-up with a message that names the variable.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::process::Command;

fn run(args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_governance-engine"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn every_subcommand_has_a_useful_help() {
    for (args, expect) in [
        (vec!["--help"], "serve"),
        (vec!["serve", "--help"], "AUMOS_DATABASE_URL"),
        (vec!["migrate", "--help"], "AUMOS_DATABASE_MIGRATION_URL"),
        (vec!["dev", "--help"], "token"),
        (vec!["dev", "token", "--help"], "--tenant"),
        (vec!["dev", "up", "--help"], "export"),
        (vec!["ledger", "--help"], "verify"),
        (vec!["ledger", "verify", "--help"], "--public-key"),
        (vec!["ledger", "export", "--help"], "--out"),
        (vec!["ledger", "prove", "--help"], "--seq"),
        (vec!["policy", "import", "--help"], "--tenant"),
        (vec!["policy", "replay", "--help"], "--version"),
        (vec!["projections", "status", "--help"], "lag"),
        (vec!["ledger", "verify-bundle", "--help"], "--artifacts"),
        (vec!["openapi", "--help"], "OpenAPI"),
    ] {
        let (ok, stdout, _) = run(&args, &[]);
        assert!(ok, "{args:?}");
        assert!(stdout.contains(expect), "{args:?} --help mentions {expect}:\n{stdout}");
    }
}

#[test]
fn an_invalid_variable_stops_start_up_and_is_named() {
    let (ok, _, stderr) = run(&["serve"], &[("AUMOS_GOVERNANCE_POLICY_EVAL_TIMEOUT_MS", "soon")]);
    assert!(!ok);
    assert!(stderr.contains("AUMOS_GOVERNANCE_POLICY_EVAL_TIMEOUT_MS"), "{stderr}");
}

#[test]
fn dev_token_rejects_a_tenant_that_is_not_a_uuid() {
    let (ok, stdout, stderr) = run(&["dev", "token", "--tenant", "acme"], &[("AUMOS_GOVERNANCE_DATA_DIR", "/nonexistent")]);
    assert!(!ok);
    assert!(stdout.is_empty());
    assert!(stderr.contains("tenant") || stderr.contains("signing key"), "{stderr}");
}

#[test]
fn projections_status_shows_positions_and_lag() {
    if std::env::var("AUMOS_DATABASE_URL").is_err() {
        panic!("needs the real services: run via make test");
    }
    let (ok, stdout, stderr) = run(&["projections", "status"], &[]);
    assert!(ok, "{stderr}");
    assert!(stdout.contains("ledger head: seq"), "{stdout}");
    assert!(stdout.contains("policies") && stdout.contains("decisions"), "{stdout}");
}
