//! The hostile policy author against the embedded engine's sandbox (issue #11): every
//! attack is answered with its own 4xx/503 code, records nothing, and leaves the process,
//! another tenant's evaluations and its policies' projection unharmed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use uuid::Uuid;

struct Tenant<'a> {
    svc: &'a Service,
    id: Uuid,
    tok: String,
}

impl Tenant<'_> {
    fn new(svc: &Service) -> Tenant<'_> {
        let id = Uuid::new_v4();
        Tenant { svc, id, tok: token(id, ADMIN) }
    }
    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.svc.call(method, path, Some(self.id), Some(&self.tok), body.as_ref()).await
    }
    async fn create(&self, rego: &str) -> (StatusCode, Value) {
        self.call(Method::POST, "/api/v1/policies", Some(json!({"name": format!("attack-{}", Uuid::new_v4()), "rego": rego}))).await
    }
    /// Creates a policy and waits until it is projected (201, or 202 and then readable).
    async fn created(&self, rego: &str) -> String {
        let (status, p) = self.create(rego).await;
        assert!(status == StatusCode::CREATED || status == StatusCode::ACCEPTED, "{status} {p}");
        let id = p["policy_id"].as_str().unwrap().to_owned();
        for _ in 0..100 {
            if self.call(Method::GET, &format!("/api/v1/policies/{id}"), None).await.0 == StatusCode::OK {
                return id;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("policy {id} was never projected");
    }
    /// Creates and activates a policy; returns its id.
    async fn active(&self, rego: &str) -> String {
        let id = self.created(rego).await;
        let (status, a) = self.call(Method::POST, &format!("/api/v1/policies/{id}/activate"), None).await;
        assert!(status == StatusCode::OK || status == StatusCode::ACCEPTED, "{status} {a}");
        for _ in 0..100 {
            if self.call(Method::GET, &format!("/api/v1/policies/{id}"), None).await.1["status"] == "active" {
                return id;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("policy {id} was never active");
    }
    async fn evaluate(&self, id: &str, rule: &str, input: Value) -> (StatusCode, Value) {
        self.call(Method::POST, &format!("/api/v1/policies/{id}/evaluate"), Some(json!({"rule": rule, "input": input}))).await
    }
}

const GATE: &str = "package bystander.gate\n\nallow if input.score > 0.5\n";

/// After an attack: the process answers, the other tenant's evaluate decides normally,
/// and a policy it creates now is projected (201: the read model caught up).
async fn bystander_is_unharmed(b: &Tenant<'_>, gate: &str) {
    let (status, r) = b.evaluate(gate, "allow", json!({"score": 0.9})).await;
    assert_eq!((status, &r["result"]), (StatusCode::OK, &json!(true)), "{r}");
    b.created(GATE).await;
}

/// Where an attack strikes.
#[derive(Debug, Clone, Copy)]
enum At {
    /// In a rule that evaluate runs (`rule: x`).
    Evaluate,
    /// In a `test_` rule that activation runs.
    Activation,
    /// In the source itself, at validation.
    Validation,
}

async fn attack(a: &Tenant<'_>, name: &str, at: At, rego: &str, input: Value) -> (StatusCode, String) {
    let before = ledger_count_for(a.id).await;
    let (status, body) = match at {
        At::Validation => a.create(rego).await,
        At::Activation => {
            let id = a.created(rego).await;
            let before = ledger_count_for(a.id).await;
            let r = a.call(Method::POST, &format!("/api/v1/policies/{id}/activate"), None).await;
            assert_eq!(ledger_count_for(a.id).await, before, "{name}: a refused activation records nothing");
            let (_, p) = a.call(Method::GET, &format!("/api/v1/policies/{id}"), None).await;
            assert_eq!(p["status"], "draft", "{name}");
            r
        }
        At::Evaluate => {
            let id = a.active(rego).await;
            let before = ledger_count_for(a.id).await;
            let r = a.evaluate(&id, "x", input).await;
            assert_eq!(ledger_count_for(a.id).await, before, "{name}: a refused evaluation records no decision");
            r
        }
    };
    if matches!(at, At::Validation) {
        assert_eq!(ledger_count_for(a.id).await, before, "{name}: a refused source records nothing");
    }
    assert!(status.is_client_error() || status == StatusCode::SERVICE_UNAVAILABLE, "{name}: {status} {body}");
    (status, error_code(&body))
}

/// Each attack with the codes it may be answered with (the sandbox decides by which limit
/// it meets first: deadline, memory cap, or a contained panic).
const LIMITS: &[&str] = &["policy_evaluation_timeout", "policy_resource_limit_exceeded"];

#[tokio::test]
async fn every_hostile_policy_is_refused_with_its_code_and_harms_no_other_tenant() {
    let svc = Service::start(&[("AUMOS_GOVERNANCE_ENGINE_WORKERS", "2"), ("AUMOS_GOVERNANCE_ENGINE_WORKER_MEMORY_MB", "512")]).await;
    let (a, b) = (Tenant::new(&svc), Tenant::new(&svc));
    let gate = b.active(GATE).await;
    let huge_range = "count(numbers.range(0, 1000000000000000))";
    let nested = format!("package n\n\nx := {}1{}\n", "[".repeat(100_000), "]".repeat(100_000));
    let cases: Vec<(&str, At, String, Value, &[&str])> = vec![
        ("numbers.range allocation", At::Evaluate, format!("package p\n\nx := {huge_range}\n"), json!({}), LIMITS),
        ("numbers.range in a test", At::Activation, format!("package p\n\ntest_x if {huge_range} > 0\n"), json!({}), LIMITS),
        ("object.subset of an empty array (a regorus panic)", At::Evaluate, "package p\n\nx := object.subset(input.a, [])\n".into(), json!({"a": [1]}), &["policy_engine_fault"]),
        ("numbers.range_step allocation", At::Evaluate, "package p\n\nx := count(numbers.range_step(0, 1000000000000000, 1))\n".into(), json!({}), LIMITS),
        ("units.parse huge exponent", At::Evaluate, "package p\n\nx := units.parse(input.s)\n".into(), json!({"s": "1e999999999"}), LIMITS),
        ("sprintf width", At::Evaluate, "package p\n\nx := sprintf(\"%0999999999999d\", [1])\n".into(), json!({}), &["policy_engine_fault"]),
        ("sprintf 2 GB width", At::Evaluate, "package p\n\nx := sprintf(\"%02000000000d\", [1])\n".into(), json!({}), LIMITS),
        ("concat growth", At::Evaluate, "package p\n\nx := count(concat(\"\", [s | some i in numbers.range(1, 100000000); s := \"aaaaaaaaaaaaaaaa\"]))\n".into(), json!({}), LIMITS),
        ("comprehension doubling", At::Evaluate, "package p\n\nx := count({i: v | some i in numbers.range(1, 100000000); v := [i, i, i, i]})\n".into(), json!({}), LIMITS),
        ("nested loops", At::Evaluate, "package p\n\nx := sum([1 | some i in numbers.range(1, 100000); some j in numbers.range(1, 100000)])\n".into(), json!({}), LIMITS),
        ("deep nesting", At::Validation, nested, json!({}), &["policy_compile_failed", "policy_evaluation_timeout", "policy_resource_limit_exceeded"]),
        ("huge regex", At::Evaluate, "package p\n\nx := regex.match(concat(\"\", [\"(a{1000}){1000}\" | some i in numbers.range(1, 50)]), input.s)\n".into(), json!({"s": "aaaa"}), &["evaluation_failed"]),
        ("json.unmarshal deep", At::Evaluate, "package p\n\nx := json.unmarshal(concat(\"\", [concat(\"\", [\"[\" | some i in numbers.range(1, 1000000)]), concat(\"\", [\"]\" | some i in numbers.range(1, 1000000)])]))\n".into(), json!({}), LIMITS),
    ];
    for (name, at, rego, input, codes) in cases {
        let (status, code) = attack(&a, name, at, &rego, input).await;
        eprintln!("{name}: {status} {code}");
        assert!(codes.contains(&code.as_str()), "{name}: {status} {code}, expected one of {codes:?}");
        bystander_is_unharmed(&b, &gate).await;
    }
    // A glob intersection whose search explodes (5,000 stars on each side) stops at its
    // bound inside the builtin: OPA's semantics for a builtin error (undefined), so the
    // decision is recorded as undefined and never allowed; the bystander is served.
    let globs = a.active("package p\n\nx := regex.globs_match(concat(\"\", [\"a*\" | some i in numbers.range(1, 5000)]), concat(\"\", [\"*b\" | some i in numbers.range(1, 5000)]))\n").await;
    let (status, r) = a.evaluate(&globs, "x", json!({})).await;
    assert_eq!((status, &r["defined"], &r["allowed"]), (StatusCode::OK, &json!(false), &json!(false)), "{r}");
    bystander_is_unharmed(&b, &gate).await;
    // Ten thousand `walk(x)` values where no rewrite applies (rule heads): refused at
    // validation, the first few located, the rest counted; nothing recorded.
    let walks: String = (0..10_000).map(|i| format!("w{i} := walk(input)\n")).collect();
    let before = ledger_count_for(a.id).await;
    let (status, e) = a.create(&format!("package p\n\n{walks}")).await;
    assert_eq!((status, error_code(&e).as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "policy_compile_failed"), "{e}");
    let errors = e["error"]["details"]["errors"].as_array().unwrap();
    assert!(errors.len() <= 11 && errors.last().unwrap()["message"].as_str().unwrap().contains("more such calls"), "{errors:?}");
    assert_eq!(ledger_count_for(a.id).await, before);
    bystander_is_unharmed(&b, &gate).await;
    // Builtins that panicked in regorus answer as OPA does: a count, and undefined for an
    // error (a negative step).
    let count = a.active("package p\n\nx := strings.count(input.s, \"\")\ny := numbers.range_step(0, 10, -1)\n").await;
    assert_eq!(a.evaluate(&count, "x", json!({"s": "abc"})).await.1["result"], json!(4));
    let (status, r) = a.evaluate(&count, "y", json!({})).await;
    assert_eq!((status, &r["defined"]), (StatusCode::OK, &json!(false)), "{r}");
    bystander_is_unharmed(&b, &gate).await;
    // The attacker itself is not locked out: its own sound policy still evaluates.
    let ok = a.active(GATE).await;
    assert_eq!(a.evaluate(&ok, "allow", json!({"score": 0.9})).await.0, StatusCode::OK);
    svc.stop().await;
}

#[tokio::test]
async fn a_tenant_flooding_the_engine_is_turned_away_while_another_tenant_is_served() {
    let svc = Service::start(&[
        ("AUMOS_GOVERNANCE_ENGINE_WORKERS", "2"),
        ("AUMOS_GOVERNANCE_ENGINE_QUEUE_PER_TENANT", "3"),
        ("AUMOS_GOVERNANCE_EVALUATE_RATE_PER_TENANT", "0"),
        // Generous for the bystander on a loaded machine; the attacker's loop needs far more.
        ("AUMOS_GOVERNANCE_POLICY_EVAL_TIMEOUT_MS", "1000"),
    ])
    .await;
    let (a, b) = (Tenant::new(&svc), Tenant::new(&svc));
    let gate = b.active(GATE).await;
    let spin = a.active("package p\n\nx := sum([1 | some i in numbers.range(1, 100000); some j in numbers.range(1, 100000)])\n").await;
    let before = ledger_count_for(a.id).await;
    let flood: Vec<_> = (0..12).map(|_| a.evaluate(&spin, "x", json!({}))).collect();
    let served = async {
        let mut answers = Vec::new();
        for _ in 0..5 {
            answers.push(b.evaluate(&gate, "allow", json!({"score": 0.9})).await);
        }
        answers
    };
    let (flooded, served) = tokio::join!(futures::future::join_all(flood), served);
    assert!(served.iter().all(|(s, _)| *s == StatusCode::OK), "the other tenant is served: {served:?}");
    let codes: Vec<String> = flooded.iter().map(|(_, body)| error_code(body)).collect();
    assert!(codes.iter().all(|c| c == "policy_evaluation_timeout" || c == "policy_engine_overloaded"), "{codes:?}");
    assert!(codes.iter().any(|c| c == "policy_engine_overloaded"), "a full queue answers at once: {codes:?}");
    assert_eq!(ledger_count_for(a.id).await, before, "no decision is recorded for a refused evaluation");
    svc.stop().await;
}

/// The sandbox's memory cap, alone: with one worker, a 256 MiB cap and budgets far above
/// what any bomb needs to reach the cap, every allocation bomb is answered with the
/// memory code (never the deadline's), and the single worker is replaced each time (the
/// next request, on the same and only slot, is served). Nothing here races a clock.
#[tokio::test]
async fn the_worker_memory_cap_turns_every_allocation_bomb_into_the_resource_limit_error_and_the_worker_is_replaced() {
    let svc = Service::start(&[
        ("AUMOS_GOVERNANCE_ENGINE_WORKERS", "1"),
        ("AUMOS_GOVERNANCE_ENGINE_WORKER_MEMORY_MB", "256"),
        ("AUMOS_GOVERNANCE_POLICY_EVAL_TIMEOUT_MS", "30000"),
        ("AUMOS_GOVERNANCE_POLICY_TEST_TIMEOUT_MS", "30000"),
        ("AUMOS_HTTP_REQUEST_TIMEOUT_MS", "90000"),
    ])
    .await;
    let (a, b) = (Tenant::new(&svc), Tenant::new(&svc));
    let gate = b.active(GATE).await;
    // Below the cap the same builtins answer: the cap, not the builtin, ends the bombs.
    let fine = a.active("package fine\n\nx := count(numbers.range(1, 100000)) + count(sprintf(\"%0100000d\", [1]))\n").await;
    assert_eq!(a.evaluate(&fine, "x", json!({})).await.1["result"], json!(100_000 + 100_000));
    let bombs = [
        ("numbers.range", At::Evaluate, "package p\n\nx := count(numbers.range(0, 1000000000000000))\n"),
        ("sprintf 2 GB width", At::Evaluate, "package p\n\nx := sprintf(\"%02000000000d\", [1])\n"),
        (
            "concat growth",
            At::Evaluate,
            "package p\n\nx := count(concat(\"\", [sprintf(\"%01000000d\", [i]) | some i in numbers.range(1, 100000)]))\n",
        ),
        ("numbers.range in a test", At::Activation, "package p\n\ntest_x if count(numbers.range(0, 1000000000000000)) > 0\n"),
    ];
    for (name, at, rego) in bombs {
        let started = std::time::Instant::now();
        let (status, code) = attack(&a, name, at, rego, json!({})).await;
        eprintln!("{name}: {status} {code} after {:?}", started.elapsed());
        assert_eq!((status, code.as_str()), (StatusCode::UNPROCESSABLE_ENTITY, "policy_resource_limit_exceeded"), "{name}");
        // The one slot's worker died with the bomb: these are served by its replacement.
        bystander_is_unharmed(&b, &gate).await;
        assert_eq!(a.evaluate(&fine, "x", json!({})).await.1["result"], json!(200_000), "{name}: the attacker's sound policy");
    }
    svc.stop().await;
}

/// Evaluations of one tenant waiting together go to its worker together (written at once,
/// answered one by one): each is answered with its own input's result, and one that meets
/// a limit among them costs only itself: those before and after it are answered normally
/// (after a worker killed at a limit, those it had not started run on its replacement).
#[tokio::test]
async fn evaluations_sent_to_a_worker_together_each_get_their_own_answer_and_one_over_a_limit_fails_alone() {
    const DOUBLE: &str = "package pipelined\n\ndouble := input.n * 2 if not input.spin\n\ndouble := x if {\n\tinput.spin\n\t\
                          x := sum([1 | some i in numbers.range(1, 100000); some j in numbers.range(1, 100000)])\n}\n";
    let svc = Service::start(&[
        ("AUMOS_GOVERNANCE_ENGINE_WORKERS", "2"),
        ("AUMOS_GOVERNANCE_ENGINE_QUEUE_PER_TENANT", "500"),
        ("AUMOS_GOVERNANCE_EVALUATE_RATE_PER_TENANT", "0"),
        ("AUMOS_GOVERNANCE_POLICY_EVAL_TIMEOUT_MS", "1000"),
        // 240 on one worker, one of them killed at its deadline: not a queue-time test.
        ("AUMOS_GOVERNANCE_ENGINE_QUEUE_TIMEOUT_MS", "120000"),
    ])
    .await;
    let a = Tenant::new(&svc);
    let id = a.active(DOUBLE).await;
    let before = ledger_count_for(a.id).await;
    let (n, slow) = (240, 97);
    let calls = (0..n).map(|i| {
        let input = if i == slow { json!({"spin": true}) } else { json!({ "n": i }) };
        let (a, id) = (&a, &id);
        async move { (i, a.evaluate(id, "double", input).await) }
    });
    let answers = futures::future::join_all(calls).await;
    for (i, (status, body)) in &answers {
        if *i == slow {
            assert!(LIMITS.contains(&error_code(body).as_str()), "the slow one meets a limit: {status} {body}");
        } else {
            assert_eq!((*status, &body["result"]), (StatusCode::OK, &json!(i * 2)), "evaluation {i}: {body}");
        }
    }
    assert_eq!(ledger_count_for(a.id).await - before, n - 1, "one decision per answered evaluation");
    svc.stop().await;
}

/// A tenant whose many slow evaluations go to the only worker in rounds does not make
/// another tenant wait for a whole round: between two writes to the worker (8 requests
/// at most), the other tenant takes its turn, and the rest of the round waits.
///
/// The test counts the flood's answers seen between sending the other tenant's request
/// and its answer, so the count also holds the request's way to the queue and answers
/// already on their way back. Each slow evaluation takes ~100 ms here, so that slack is
/// far shorter than one of them: with ~25 ms each, CI once counted 9. Without the turn
/// the count is 17.
#[tokio::test]
async fn another_tenant_arriving_during_a_pipelined_round_is_served_before_the_rest_of_it() {
    const SLOW: &str = "package slow\n\nx := sum([1 | some i in numbers.range(1, 300); some j in numbers.range(1, 300)])\n";
    let svc = Service::start(&[
        ("AUMOS_GOVERNANCE_ENGINE_WORKERS", "1"),
        ("AUMOS_GOVERNANCE_EVALUATE_RATE_PER_TENANT", "0"),
        ("AUMOS_GOVERNANCE_POLICY_EVAL_TIMEOUT_MS", "10000"),
        ("AUMOS_GOVERNANCE_ENGINE_QUEUE_TIMEOUT_MS", "120000"),
    ])
    .await;
    let (a, b) = (Tenant::new(&svc), Tenant::new(&svc));
    let (slow, gate) = (a.active(SLOW).await, b.active(GATE).await);
    let a_done = std::sync::atomic::AtomicUsize::new(0);
    let (a, slow, a_done) = (&a, &slow, &a_done);
    let flood = (0..24).map(|i| async move {
        // The first runs alone; the others queue behind it and go to the worker as a round.
        if i > 0 {
            tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        }
        let answer = a.evaluate(slow, "x", json!({})).await;
        a_done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        answer
    });
    let other = async {
        // The round after the first evaluation is under way by then.
        while a_done.load(std::sync::atomic::Ordering::SeqCst) == 0 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
        let sent_at = a_done.load(std::sync::atomic::Ordering::SeqCst);
        let answer = b.evaluate(&gate, "allow", json!({"score": 0.9})).await;
        (answer, a_done.load(std::sync::atomic::Ordering::SeqCst) - sent_at)
    };
    let (flooded, ((status, body), while_b_waited)) = tokio::join!(futures::future::join_all(flood), other);
    assert_eq!((status, &body["result"]), (StatusCode::OK, &json!(true)), "{body}");
    assert!(flooded.iter().all(|(s, _)| *s == StatusCode::OK), "every slow evaluation is answered");
    // A round holds up to 16 of the flood; the other tenant waits for the rest of the
    // write under way when it arrived (8 at most), not for the rest of the round.
    assert!(while_b_waited <= 8, "{while_b_waited} of the flood were answered while the other tenant waited");
    assert!(a_done.load(std::sync::atomic::Ordering::SeqCst) == 24);
    svc.stop().await;
}
