//! Telemetry: JSON logs carry request_id and tenant_id inside the request span, and
//! OpenTelemetry spans go to the OTLP endpoint when OTEL_EXPORTER_OTLP_ENDPOINT is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use axum::routing::post;
use common::*;
use reqwest::{Method, StatusCode};
use uuid::Uuid;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_carry_request_and_tenant_ids_and_spans_reach_the_otlp_endpoint() {
    // A stand-in OTLP/HTTP collector that records what it receives.
    let received: Arc<Mutex<Vec<(String, usize)>>> = Arc::default();
    let app = {
        let received = received.clone();
        axum::Router::new().route(
            "/v1/traces",
            post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
                let received = received.clone();
                async move {
                    let ct = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                    received.lock().unwrap().push((ct, body.len()));
                    StatusCode::OK
                }
            }),
        )
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let svc = Service::start(&[("OTEL_EXPORTER_OTLP_ENDPOINT", &endpoint)]).await;
    let tenant = Uuid::new_v4();
    let tok = token(tenant, ADMIN);
    let r = svc
        .client
        .get(format!("{}/api/v1/policies/{}", svc.base, Uuid::new_v4()))
        .bearer_auth(&tok)
        .header("X-Tenant-ID", tenant.to_string())
        .header("X-Request-ID", "telemetry-check-1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let (status, _) = svc.call(Method::POST, "/api/v1/policies", Some(tenant), Some(&tok), Some(&policy_body("otel"))).await;
    assert_eq!(status, StatusCode::CREATED);
    let log = svc.stop().await; // graceful: the span exporter flushes

    let line = log.lines().find(|l| l.contains("telemetry-check-1")).unwrap_or_else(|| panic!("no log line for the request:\n{log}"));
    let json: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(json["span"]["request_id"], "telemetry-check-1", "{line}");
    assert_eq!(json["span"]["tenant_id"], tenant.to_string(), "{line}");
    assert!(!log.contains(&tok), "the bearer token never reaches the logs");

    let got = received.lock().unwrap().clone();
    assert!(!got.is_empty(), "spans were exported to the OTLP endpoint");
    assert!(got.iter().all(|(ct, len)| ct.starts_with("application/x-protobuf") && *len > 0), "{got:?}");
}
