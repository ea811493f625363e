//! Health: `/health/live` is the process; `/health/ready` is the databases (and OPA when it
//! is the engine); Kafka down is `degraded`, still ready; details only for an admin.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use uuid::Uuid;

#[tokio::test]
async fn readiness_says_only_ok_or_unavailable_in_public_and_gives_details_to_an_admin() {
    let svc = Service::start(&[]).await;
    let (status, public) = svc.call(Method::GET, "/health/ready", None, None, None).await;
    assert_eq!(status, StatusCode::OK, "{public}");
    assert_eq!(public["status"], "ready");
    assert_eq!(public["checks"]["primary_database"], "ok");
    assert_eq!(public["checks"]["audit_database"], "ok");
    assert!(public.get("details").is_none() && public.get("projections").is_none(), "no positions in public: {public}");

    let tenant = Uuid::new_v4();
    let (_, not_admin) = svc.call(Method::GET, "/health/ready", Some(tenant), Some(&token(tenant, &["auditor"])), None).await;
    assert!(not_admin.get("details").is_none(), "an auditor is not an admin: {not_admin}");
    let (status, admin) = svc.call(Method::GET, "/health/ready", Some(tenant), Some(&token(tenant, ADMIN)), None).await;
    assert_eq!(status, StatusCode::OK);
    let positions = admin["details"]["projections"].as_object().unwrap();
    assert!(!positions.is_empty() && positions.values().all(Value::is_i64), "{admin}");
}

#[tokio::test]
async fn kafka_down_leaves_the_service_ready_but_degraded_and_commands_still_succeed() {
    let dead = format!("127.0.0.1:{}", free_port());
    let svc = Service::start(&[("AUMOS_KAFKA_BOOTSTRAP_SERVERS", &dead)]).await;
    let (status, ready) = svc.call(Method::GET, "/health/ready", None, None, None).await;
    assert_eq!(status, StatusCode::OK, "{ready}");
    assert_eq!(ready["status"], "degraded");
    assert_eq!(ready["checks"]["kafka"], "unavailable");
    assert_eq!(ready["checks"]["primary_database"], "ok");
    let tenant = Uuid::new_v4();
    let tok = token(tenant, ADMIN);
    let (status, body) = svc.call(Method::POST, "/api/v1/policies", Some(tenant), Some(&tok), Some(&policy_body("no-kafka"))).await;
    assert_eq!(status, StatusCode::CREATED, "the relay is asynchronous: {body}");
    let (_, admin) = svc.call(Method::GET, "/health/ready", Some(tenant), Some(&tok), None).await;
    assert!(admin["details"]["errors"]["kafka"].as_str().is_some_and(|e| !e.is_empty()), "the admin sees why: {admin}");
}

#[tokio::test]
async fn liveness_is_the_process_alone() {
    let svc = Service::start(&[]).await;
    let (status, live) = svc.call(Method::GET, "/health/live", None, None, None).await;
    assert_eq!((status, live["status"].as_str()), (StatusCode::OK, Some("ok")));
}
