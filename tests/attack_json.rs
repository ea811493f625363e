//! Hostile JSON bodies. A well-formed body is parsed once; a failing one twice (the second
//! time for the message naming the field). The costliest bodies a tenant may send within
//! the body limit are refused with a 4xx, record nothing, and leave another tenant served.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// Posts `body` as JSON, as `t`.
async fn post_raw(t: &Tenant<'_>, path: &str, body: String) -> (StatusCode, Value) {
    let r = t
        .svc
        .client
        .post(format!("{}{path}", t.svc.base))
        .bearer_auth(&t.tok)
        .header("X-Tenant-ID", t.id.to_string())
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = r.status();
    (status, r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_costliest_json_bodies_are_refused_with_a_4xx_record_nothing_and_leave_another_tenant_served() {
    let svc = attack_service().await;
    let ((a, pa), (b, pb)) = hostile_and_bystander(&svc).await;
    let before = ledger_count_for(a.id).await;
    // Each just under the 1 MiB body limit, failing as late as it can.
    let pad = "x".repeat(1024 * 1024 - 256);
    let bodies: Vec<(&str, String, &[&str])> = vec![
        ("nested past the parser's depth", format!("{{\"input\": {}1{}}}", "[".repeat(500_000), "]".repeat(500_000)), &["malformed_json"]),
        ("cut off at its last byte", format!("{{\"input\": {{\"score\": 0.9, \"pad\": \"{pad}\"}}"), &["malformed_json"]),
        ("a wrong type after the padding", format!("{{\"input\": {{\"pad\": \"{pad}\"}}, \"rule\": 7}}"), &["invalid_request"]),
        ("an unknown field after the padding", format!("{{\"input\": {{\"pad\": \"{pad}\"}}, \"owner\": 1}}"), &["invalid_request"]),
    ];
    let evaluate_a = format!("/api/v1/policies/{pa}/evaluate");
    let flood = (0..4).map(|_| {
        let (a, bodies, path) = (&a, &bodies, &evaluate_a);
        async move {
            for _ in 0..4 {
                for (what, body, codes) in bodies {
                    let (status, e) = post_raw(a, path, body.clone()).await;
                    assert!(status.is_client_error(), "{what}: {status} {e}");
                    assert!(codes.contains(&error_code(&e).as_str()), "{what}: {e}");
                }
            }
        }
    });
    let served = bystander_served(&b, &pb, 30);
    tokio::join!(futures::future::join_all(flood), served);
    assert_eq!(ledger_count_for(a.id).await, before, "no refused body recorded anything");
    let (status, d) = a.call(Method::POST, &evaluate_a, Some(json!({"input": {"score": 0.9}, "rule": "allow"}))).await;
    assert_eq!((status, &d["result"]), (StatusCode::OK, &json!(true)), "the flooding tenant is still served too: {d}");
}
