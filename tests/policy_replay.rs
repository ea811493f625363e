//! Replay before activation, over HTTP on real services: a crafted history of decisions is
//! replayed against a new version; the report counts each kind of change exactly, skips
//! `hash_only` decisions, sees only the tenant's own policy, is recorded in the ledger with
//! the hash of the served report, adds no decision record, and can be named by activation.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use chrono::{Duration, Utc};
use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

const V1: &str = "package gate\n\ndefault allow := false\n\nallow if input.score >= 0.5\n\nlimit := 10\n";
const V2: &str = "package gate\n\ndefault allow := false\n\nallow if input.score >= 0.7\n\nallow if input.vip\n\nlimit := 20 if input.tier == \"gold\"\n";

impl Tenant<'_> {
    /// Creates and activates a policy of `rego`; returns its id.
    async fn active_policy(&self, name: &str, rego: &str, input_logging: &str) -> String {
        let body = json!({"name": name, "rego": rego, "input_logging": input_logging});
        let (status, p) = self.call(Method::POST, "/api/v1/policies", Some(body)).await;
        assert!(status.is_success(), "{p}");
        let id = p["policy_id"].as_str().unwrap().to_owned();
        let (status, p) = self.call(Method::POST, &format!("/api/v1/policies/{id}/activate"), None).await;
        assert!(status.is_success(), "{p}");
        id
    }

    /// Evaluates and returns the decision's ledger seq.
    async fn evaluate(&self, policy: &str, rule: &str, input: Value) -> i64 {
        let (status, d) =
            self.call(Method::POST, &format!("/api/v1/policies/{policy}/evaluate"), Some(json!({"rule": rule, "input": input}))).await;
        assert_eq!(status, StatusCode::OK, "{d}");
        d["ledger_seq"].as_i64().unwrap()
    }

    /// Waits until the decision read model has applied `seq`.
    async fn projected(&self, seq: i64) {
        let (status, page) = self.call(Method::GET, &format!("/api/v1/decisions?min_seq={seq}&page_size=1"), None).await;
        assert_eq!(status, StatusCode::OK, "{page}");
    }

    /// Replays and waits for the report.
    async fn replay(&self, policy: &str, version: u32, body: Value) -> Value {
        let (status, r) = self.call(Method::POST, &format!("/api/v1/policies/{policy}/versions/{version}/replay"), Some(body)).await;
        assert!(status == StatusCode::OK || status == StatusCode::ACCEPTED, "{status}: {r}");
        let id = r["replay_id"].as_str().unwrap().to_owned();
        for _ in 0..200 {
            let (status, r) = self.call(Method::GET, &format!("/api/v1/policies/{policy}/replays/{id}"), None).await;
            assert_eq!(status, StatusCode::OK, "{r}");
            if r["status"] != "running" {
                assert_eq!(r["status"], "done", "{r}");
                return r;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("replay {id} did not finish");
    }
}

fn window() -> Value {
    json!({"from": (Utc::now() - Duration::minutes(5)).to_rfc3339(), "to": (Utc::now() + Duration::minutes(5)).to_rfc3339()})
}

async fn decision_records(tenant: Uuid) -> i64 {
    let mut reader = connect("AUMOS_GOVERNANCE_AUDIT_DB_READER_URL").await;
    sqlx::query_scalar("SELECT count(*) FROM gov_audit_trail_entries WHERE tenant_id = $1 AND aggregate_type = 'PolicyDecision'")
        .bind(tenant)
        .fetch_one(&mut reader)
        .await
        .unwrap()
}

async fn ledger_payload(aggregate_id: &str, event_type: &str) -> Value {
    let mut reader = connect("AUMOS_GOVERNANCE_AUDIT_DB_READER_URL").await;
    let text: String = sqlx::query_scalar(
        "SELECT payload::text FROM gov_audit_trail_entries WHERE aggregate_id = $1 AND event_type = $2 ORDER BY seq DESC LIMIT 1",
    )
    .bind(aggregate_id)
    .bind(event_type)
    .fetch_one(&mut reader)
    .await
    .unwrap();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn a_replay_counts_each_kind_of_change_is_recorded_with_its_report_hash_and_adds_no_decision() {
    let svc = Service::start(&[]).await;
    let a = Tenant::new(&svc);
    let policy = a.active_policy("replayed", V1, "full").await;
    // Version 1 answers these; version 2 will answer as the comment says.
    let mut last = 0;
    for (rule, input) in [
        ("allow", json!({"score": 0.9})),              // true  -> true   unchanged
        ("allow", json!({"score": 0.6})),              // true  -> false  allow_to_deny
        ("allow", json!({"score": 0.3})),              // false -> false  unchanged
        ("allow", json!({"score": 0.1, "vip": true})), // false -> true   deny_to_allow
        ("limit", json!({"tier": "silver"})),          // 10    -> undef  defined_to_undefined
        ("limit", json!({"tier": "gold"})),            // 10    -> 20     other_change
    ] {
        last = a.evaluate(&policy, rule, input).await;
    }
    // Version 2 checks two controls: PR.AA-01 with its allow decisions (which change),
    // DE.CM-01 with a rule no recorded decision evaluated.
    let checks = json!([{"control_id": "PR.AA-01", "rule": "allow"}, {"control_id": "DE.CM-01", "rule": "audit"}]);
    let (status, v) =
        a.call(Method::POST, &format!("/api/v1/policies/{policy}/versions"), Some(json!({"rego": V2, "control_checks": checks}))).await;
    assert!(status.is_success(), "{v}");
    a.projected(last).await;
    let decisions_before = decision_records(a.id).await;

    let r = a.replay(&policy, 2, window()).await;
    let report = &r["report"];
    assert_eq!((report["read"].as_u64(), report["replayed"].as_u64(), report["skipped"].as_u64()), (Some(6), Some(6), Some(0)), "{r}");
    assert_eq!(report["unchanged"], 2, "{r}");
    assert_eq!(
        report["changed"],
        json!({"allow_to_deny": 1, "deny_to_allow": 1, "defined_to_undefined": 1, "other_change": 1, "error": 0}),
        "{r}"
    );
    let example = |kind: &str| report["examples"].as_array().unwrap().iter().find(|x| x["kind"] == kind).cloned().unwrap();
    assert_eq!(
        (example("allow_to_deny")["old_result"].clone(), example("allow_to_deny")["new_result"].clone()),
        (json!(true), json!(false))
    );
    assert_eq!((example("other_change")["old_result"].clone(), example("other_change")["new_result"].clone()), (json!(10), json!(20)));
    assert_eq!(example("defined_to_undefined")["new_result"], Value::Null);
    assert!(r["first_seq"].as_i64().unwrap() < r["last_seq"].as_i64().unwrap());
    assert_eq!(r["last_seq"], last);
    assert_eq!(report["controls_affected"], json!(["PR.AA-01"]), "{r}");

    // Recorded in the ledger: the served report is the recorded one, and its hash is the
    // SHA-256 of its canonical JSON.
    let replay_id = r["replay_id"].as_str().unwrap();
    let fact = ledger_payload(replay_id, "PolicyReplayed").await;
    assert_eq!(&fact["report"], report);
    let digest = hex::encode(Sha256::digest(ledger::format::canonical_json(report).as_bytes()));
    assert_eq!(fact["report_sha256"], digest);
    assert_eq!(r["report_sha256"], digest);
    assert_eq!(fact["decisions_sha256"], r["decisions_sha256"]);
    assert_eq!(decision_records(a.id).await, decisions_before, "a replay writes no decision record");

    // Activation may name the replay of the version it activates, and records it.
    let (status, v) = a.call(Method::POST, &format!("/api/v1/policies/{policy}/versions"), Some(json!({"rego": V1}))).await;
    assert!(status.is_success(), "{v}");
    let (status, e) =
        a.call(Method::POST, &format!("/api/v1/policies/{policy}/activate"), Some(json!({"version": 3, "replay_id": replay_id}))).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "a replay of version 2 does not vouch for version 3: {e}");
    let (status, e) =
        a.call(Method::POST, &format!("/api/v1/policies/{policy}/activate"), Some(json!({"version": 2, "replay_id": replay_id}))).await;
    assert!(status.is_success(), "{e}");
    assert_eq!(ledger_payload(&policy, "PolicyActivated").await["replay_id"], replay_id);
    svc.stop().await;
}

#[tokio::test]
async fn hash_only_decisions_are_skipped_and_a_limit_bounds_what_is_read() {
    let svc = Service::start(&[]).await;
    let a = Tenant::new(&svc);
    let private = a.active_policy("private", V1, "hash_only").await;
    let mut last = 0;
    for score in [0.9, 0.2] {
        last = a.evaluate(&private, "allow", json!({"score": score})).await;
    }
    let open = a.active_policy("open", V1, "full").await;
    for score in [0.1, 0.2, 0.3, 0.4] {
        last = a.evaluate(&open, "allow", json!({"score": score})).await;
    }
    a.projected(last).await;
    let r = a.replay(&private, 1, window()).await;
    assert_eq!(r["report"]["skipped"], 2, "{r}");
    assert_eq!(r["report"]["replayed"], 0, "{r}");
    assert_eq!(r["report"]["skipped_by_reason"], json!({"hash_only": 2}), "{r}");

    let mut body = window();
    body["limit"] = json!(3);
    let r = a.replay(&open, 1, body).await;
    assert_eq!((r["report"]["read"].as_u64(), r["report"]["unchanged"].as_u64()), (Some(3), Some(3)), "{r}");
    assert_eq!(r["progress"], json!({"read": 3, "total": 3}));
    svc.stop().await;
}

#[tokio::test]
async fn a_decision_made_without_an_input_is_recorded_as_such_and_replayed_without_one() {
    let svc = Service::start(&[]).await;
    let a = Tenant::new(&svc);
    let policy = a.active_policy("probe", "package probe\n\nseen := input\n", "full").await;
    // No input: the policy's `input` is undefined; a `null` input is `null`.
    let (status, none) = a.call(Method::POST, &format!("/api/v1/policies/{policy}/evaluate"), Some(json!({"rule": "seen"}))).await;
    assert_eq!(status, StatusCode::OK, "{none}");
    assert_eq!((none["defined"].clone(), none["result"].clone()), (json!(false), Value::Null), "{none}");
    let null = a.evaluate(&policy, "seen", Value::Null).await;
    let (status, d) =
        a.call(Method::GET, &format!("/api/v1/decisions/{}?min_seq={null}", none["decision_id"].as_str().unwrap()), None).await;
    assert_eq!(status, StatusCode::OK, "{d}");
    assert_eq!(d["input_sha256"], hex::encode(Sha256::digest(b"")), "no input: the SHA-256 of zero bytes: {d}");
    assert_eq!(d["input"], Value::Null);
    let record = ledger_payload(none["decision_id"].as_str().unwrap(), "PolicyEvaluated").await;
    assert_eq!(record["input_sha256"], d["input_sha256"]);

    // Version 2 tells the two apart: replayed without an input, the first changes.
    let v2 = "package probe\n\nseen := input\n\nseen := \"absent\" if not input\n";
    let (status, v) = a.call(Method::POST, &format!("/api/v1/policies/{policy}/versions"), Some(json!({"rego": v2}))).await;
    assert!(status.is_success(), "{v}");
    let r = a.replay(&policy, 2, window()).await;
    let report = &r["report"];
    assert_eq!((report["replayed"].as_u64(), report["skipped"].as_u64(), report["unchanged"].as_u64()), (Some(2), Some(0), Some(1)), "{r}");
    assert_eq!(report["changed"]["other_change"], 1, "{r}");
    let example = report["examples"].as_array().unwrap().iter().find(|x| x["kind"] == "other_change").cloned().unwrap();
    assert_eq!((example["old_result"].clone(), example["new_result"].clone()), (Value::Null, json!("absent")), "{r}");
    svc.stop().await;
}

#[tokio::test]
async fn a_tenant_replays_only_its_own_policies_and_reads_only_its_own_replays() {
    let svc = Service::start(&[]).await;
    let (a, b) = (Tenant::new(&svc), Tenant::new(&svc));
    let policy = a.active_policy("mine", V1, "full").await;
    let seq = a.evaluate(&policy, "allow", json!({"score": 0.9})).await;
    a.projected(seq).await;
    let r = a.replay(&policy, 1, window()).await;
    let replay_id = r["replay_id"].as_str().unwrap();

    let (status, e) = b.call(Method::POST, &format!("/api/v1/policies/{policy}/versions/1/replay"), Some(window())).await;
    assert_eq!((status, error_code(&e)), (StatusCode::NOT_FOUND, "not_found".to_owned()), "{e}");
    let (status, e) = b.call(Method::GET, &format!("/api/v1/policies/{policy}/replays/{replay_id}"), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{e}");
    // B's own policy of the same source replays none of A's decisions.
    let own = b.active_policy("mine", V1, "full").await;
    let r = b.replay(&own, 1, window()).await;
    assert_eq!(r["report"]["read"], 0, "{r}");
    svc.stop().await;
}

#[tokio::test]
async fn bad_replay_requests_are_clear_4xx_and_record_nothing() {
    let svc = Service::start(&[]).await;
    let a = Tenant::new(&svc);
    let policy = a.active_policy("checked", V1, "full").await;
    let before = ledger_count_for(a.id).await;
    let now = Utc::now();
    for (path, body, want) in [
        (format!("/api/v1/policies/{policy}/versions/9/replay"), window(), StatusCode::UNPROCESSABLE_ENTITY),
        (format!("/api/v1/policies/{policy}/versions/0/replay"), window(), StatusCode::UNPROCESSABLE_ENTITY),
        (format!("/api/v1/policies/{policy}/versions/x/replay"), window(), StatusCode::UNPROCESSABLE_ENTITY),
        (
            format!("/api/v1/policies/{policy}/versions/1/replay"),
            json!({"from": now.to_rfc3339(), "to": (now - Duration::hours(1)).to_rfc3339()}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            format!("/api/v1/policies/{policy}/versions/1/replay"),
            json!({"from": "yesterday", "to": now.to_rfc3339()}),
            StatusCode::BAD_REQUEST,
        ),
        (
            format!("/api/v1/policies/{policy}/versions/1/replay"),
            json!({"from": now.to_rfc3339(), "to": now.to_rfc3339(), "limit": 0}),
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (format!("/api/v1/policies/{}/versions/1/replay", Uuid::new_v4()), window(), StatusCode::NOT_FOUND),
    ] {
        let (status, e) = a.call(Method::POST, &path, Some(body.clone())).await;
        assert_eq!(status, want, "{path} {body}: {e}");
        assert!(e["error"]["code"].is_string() && e["error"]["request_id"].is_string(), "{e}");
    }
    let (status, _) =
        svc.call(Method::POST, &format!("/api/v1/policies/{policy}/versions/1/replay"), Some(a.id), None, Some(&window())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(ledger_count_for(a.id).await, before, "a refused replay records nothing");
    svc.stop().await;
}

#[tokio::test]
async fn the_cli_replays_a_version_with_progress_and_prints_the_report() {
    let svc = Service::start(&[]).await;
    let a = Tenant::new(&svc);
    let policy = a.active_policy("cli", V1, "full").await;
    let mut last = 0;
    for score in [0.9, 0.6, 0.1] {
        last = a.evaluate(&policy, "allow", json!({"score": score})).await;
    }
    let (status, v) = a.call(Method::POST, &format!("/api/v1/policies/{policy}/versions"), Some(json!({"rego": V2}))).await;
    assert!(status.is_success(), "{v}");
    a.projected(last).await;
    let from = (Utc::now() - Duration::minutes(5)).to_rfc3339();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_governance-engine"))
        .args([
            "policy",
            "replay",
            "--policy",
            &policy,
            "--version",
            "2",
            "--tenant",
            &a.id.to_string(),
            "--from",
            &from,
            "--url",
            &svc.base,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r["status"], "done", "{r}");
    assert_eq!((r["report"]["read"].as_u64(), r["report"]["changed"]["allow_to_deny"].as_u64()), (Some(3), Some(1)), "{r}");
    svc.stop().await;
}

#[tokio::test]
async fn a_replay_on_the_opa_engine_reports_what_the_embedded_engine_reports() {
    // The report must count no error: the 200 ms evaluation deadline is not what this test
    // is about, and the shared OPA pauses queries while it compiles each upload.
    let svc = Service::start(&[("AUMOS_GOVERNANCE_POLICY_ENGINE", "opa"), ("AUMOS_GOVERNANCE_POLICY_EVAL_TIMEOUT_MS", "5000")]).await;
    let a = Tenant::new(&svc);
    let policy = a.active_policy("on-opa", V1, "full").await;
    let mut last = 0;
    for (rule, input) in [
        ("allow", json!({"score": 0.9})),
        ("allow", json!({"score": 0.6})),
        ("allow", json!({"score": 0.1, "vip": true})),
        ("limit", json!({"tier": "silver"})),
        ("limit", json!({"tier": "gold"})),
    ] {
        last = a.evaluate(&policy, rule, input).await;
    }
    let (status, v) = a.call(Method::POST, &format!("/api/v1/policies/{policy}/versions"), Some(json!({"rego": V2}))).await;
    assert!(status.is_success(), "{v}");
    a.projected(last).await;
    let r = a.replay(&policy, 2, window()).await;
    assert_eq!(
        r["report"]["changed"],
        json!({"allow_to_deny": 1, "deny_to_allow": 1, "defined_to_undefined": 1, "other_change": 1, "error": 0}),
        "{r}"
    );
    assert_eq!(r["report"]["unchanged"], 1, "{r}");
    svc.stop().await;
}

#[tokio::test]
async fn another_tenant_is_served_while_a_tenant_replays_a_long_history() {
    let svc = Service::start(&[]).await;
    let (a, b) = (Tenant::new(&svc), Tenant::new(&svc));
    let noisy = a.active_policy("long", V1, "full").await;
    // A history of 800 decisions, recorded 16 at a time.
    let mut last = 0;
    for round in 0..50 {
        let calls = (0..16).map(|i| a.evaluate(&noisy, "allow", json!({"score": (round * 16 + i) as f64 / 800.0})));
        last = futures::future::join_all(calls).await.into_iter().max().unwrap().max(last);
    }
    let (status, v) = a.call(Method::POST, &format!("/api/v1/policies/{noisy}/versions"), Some(json!({"rego": V2}))).await;
    assert!(status.is_success(), "{v}");
    a.projected(last).await;
    let bystander = b.active_policy("bystander", V1, "full").await;
    // One running replay per tenant: of two asked at once, one runs and the other is 429
    // with Retry-After (whichever registers second).
    let path = format!("/api/v1/policies/{noisy}/versions/2/replay");
    let post = || async {
        let resp = svc
            .client
            .post(format!("{}{path}", svc.base))
            .bearer_auth(&a.tok)
            .header("X-Tenant-ID", a.id.to_string())
            .json(&window())
            .send()
            .await
            .unwrap();
        let retry = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        (resp.status(), retry, resp.json::<Value>().await.unwrap())
    };
    let (first, second) = tokio::join!(post(), post());
    let (ran, refused) = if first.0 == StatusCode::TOO_MANY_REQUESTS { (second, first) } else { (first, second) };
    assert!(ran.0 == StatusCode::OK || ran.0 == StatusCode::ACCEPTED, "one replay runs: {}", ran.2);
    assert_eq!((refused.0, refused.1.as_deref()), (StatusCode::TOO_MANY_REQUESTS, Some("1")), "{}", refused.2);
    assert_eq!(refused.2["error"]["code"], "rate_limited", "{}", refused.2);
    let first_id = ran.2["replay_id"].as_str().unwrap().to_owned();
    for _ in 0..400 {
        let (_, r) = a.call(Method::GET, &format!("/api/v1/policies/{noisy}/replays/{first_id}"), None).await;
        if r["status"] != "running" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let replay = a.replay(&noisy, 2, window());
    let served = async {
        for _ in 0..20 {
            b.evaluate(&bystander, "allow", json!({"score": 0.9})).await;
        }
        b.replay(&bystander, 1, window()).await
    };
    let (r, own) = tokio::join!(replay, served);
    assert_eq!(r["report"]["read"], 800, "{r}");
    assert_eq!(own["status"], "done", "B's own replay runs beside A's: {own}");
    svc.stop().await;
}

#[tokio::test]
async fn hostile_control_checks_are_refused_with_422_and_record_nothing() {
    let svc = Service::start(&[]).await;
    let a = Tenant::new(&svc);
    let before = ledger_count_for(a.id).await;
    let many: Vec<Value> = (1..=33).map(|n| json!({"control_id": format!("PR.DS-{n:02}")})).collect();
    for checks in [
        json!([{"control_id": "PR.AA-99"}]),
        json!([{"control_id": "XX.AA-01"}]),
        json!([{"control_id": "PR.AA-01\u{0000}"}]),
        json!([{"control_id": "PR.AA-01"}, {"control_id": "PR.AA-01"}]),
        json!([{"control_id": "PR.AA-01", "pass_when": "sometimes"}]),
        json!([{"control_id": "PR.AA-01", "rule": "allow; drop"}]),
        json!([{"control_id": "PR.AA-01", "extra": true}]),
        Value::Array(many),
    ] {
        let (status, e) =
            a.call(Method::POST, "/api/v1/policies", Some(json!({"name": "hostile", "rego": V1, "control_checks": checks}))).await;
        assert!(status == StatusCode::UNPROCESSABLE_ENTITY || status == StatusCode::BAD_REQUEST, "{checks}: {status} {e}");
    }
    assert_eq!(ledger_count_for(a.id).await, before, "nothing recorded");
    svc.stop().await;
}
