//! docker-compose.yml cannot rot unnoticed: it describes the stack the design asks for,
//! and the service in it sets only variables the service reads.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use governance_engine::config::ENV_VARS;

fn compose() -> serde_yaml::Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml")).unwrap();
    serde_yaml::from_str(&text).unwrap()
}

#[test]
fn compose_describes_two_databases_opa_kafka_and_the_service() {
    let c = compose();
    for name in ["primary-db", "audit-db", "opa", "kafka", "governance-engine"] {
        assert!(!c["services"][name].is_null(), "service {name} is missing");
    }
    assert_eq!(c["services"]["governance-engine"]["build"], ".");
    assert!(std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).exists());
}

#[test]
fn the_service_sets_only_variables_the_service_reads_and_all_the_required_ones() {
    let c = compose();
    let env = c["services"]["governance-engine"]["environment"].as_mapping().unwrap();
    let names: Vec<&str> = env.keys().map(|k| k.as_str().unwrap()).collect();
    for n in &names {
        assert!(ENV_VARS.contains(n), "docker-compose.yml sets {n}, which the service does not read");
    }
    for required in [
        "AUMOS_DATABASE_URL",
        "AUMOS_GOVERNANCE_AUDIT_DB_URL",
        "AUMOS_GOVERNANCE_AUDIT_DB_READER_URL",
        "AUMOS_GOVERNANCE_POLICY_ENGINE",
        "AUMOS_GOVERNANCE_OPA_URL",
        "AUMOS_GOVERNANCE_OPA_TOKEN",
        "AUMOS_KAFKA_BOOTSTRAP_SERVERS",
        "AUMOS_JWT_PUBLIC_KEY_FILE",
    ] {
        assert!(names.contains(&required), "docker-compose.yml does not set {required}");
    }
    // And the configuration it describes parses.
    let vars: std::collections::HashMap<String, String> =
        env.iter().map(|(k, v)| (k.as_str().unwrap().to_owned(), v.as_str().unwrap().to_owned())).collect();
    let cfg = governance_engine::config::Config::from_env(&governance_engine::config::Env(&|k| vars.get(k).cloned())).unwrap();
    assert_eq!(cfg.policy_engine, governance_engine::config::PolicyEngineKind::Opa);
}

#[test]
fn the_audit_database_is_a_separate_instance() {
    let c = compose();
    let env = &c["services"]["governance-engine"]["environment"];
    let host = |var: &str| env[var].as_str().unwrap().split('@').nth(1).unwrap().split('/').next().unwrap().to_owned();
    assert_ne!(host("AUMOS_DATABASE_URL"), host("AUMOS_GOVERNANCE_AUDIT_DB_URL"));
}

#[test]
fn opa_requires_the_token_the_service_sends() {
    let c = compose();
    let opa = &c["services"]["opa"];
    let args: Vec<&str> = opa["command"].as_sequence().unwrap().iter().map(|a| a.as_str().unwrap()).collect();
    for flag in ["--authentication=token", "--authorization=basic", "/opa/system/authz.rego"] {
        assert!(args.contains(&flag), "OPA runs without {flag}: {args:?}");
    }
    let token = |svc: &serde_yaml::Value| svc["environment"]["AUMOS_GOVERNANCE_OPA_TOKEN"].as_str().unwrap().to_owned();
    assert_eq!(token(opa), token(&c["services"]["governance-engine"]), "OPA and the service share one token");
    assert!(token(opa).starts_with("${AUMOS_GOVERNANCE_OPA_TOKEN:?"), "compose refuses to start without a token");
    assert_eq!(opa["restart"], "unless-stopped", "an OPA killed by a runaway policy comes back");
}

#[test]
fn only_migrate_gets_the_owner_and_ledger_admin_urls() {
    let mut c = compose();
    c.apply_merge().unwrap();
    let service = &c["services"]["governance-engine"]["environment"];
    let migrate = &c["services"]["migrate"]["environment"];
    for owner in ["AUMOS_DATABASE_MIGRATION_URL", "AUMOS_GOVERNANCE_AUDIT_DB_ADMIN_URL"] {
        assert!(service.get(owner).is_none(), "the running service must not hold {owner}");
        assert!(migrate[owner].as_str().is_some_and(|u| u.starts_with("postgres://")), "migrate needs {owner}");
    }
    assert_eq!(migrate["AUMOS_DATABASE_URL"], service["AUMOS_DATABASE_URL"], "migrate shares the rest");
}
