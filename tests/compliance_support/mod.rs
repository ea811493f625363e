//! What the compliance test binaries share: a tenant with a token, and its calls.
#![allow(dead_code, clippy::unwrap_used)]

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::Digest;
use uuid::Uuid;

use crate::common::*;

pub struct T<'a> {
    pub svc: &'a Service,
    pub id: Uuid,
    pub tok: String,
}

impl T<'_> {
    pub async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.svc.call(method, path, Some(self.id), Some(&self.tok), body.as_ref()).await
    }
    pub async fn workflow(&self, scope: &[&str]) -> String {
        let body = json!({"regulation": "soc2", "name": "SOC 2 Type II", "scope": scope, "audit_period_start": "2026-01-01",
            "audit_period_end": "2026-06-30", "due_date": "2026-12-31"});
        let (status, w) = self.call(Method::POST, "/api/v1/compliance/workflows", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{w}");
        w["workflow_id"].as_str().unwrap().to_owned()
    }
    pub async fn upload(&self, metadata: Value, artifact: &[u8]) -> (StatusCode, Value) {
        let part = reqwest::multipart::Part::bytes(artifact.to_vec()).file_name("access-review.csv").mime_str("text/csv").unwrap();
        let resp = self.svc.upload_evidence(self.id, &self.tok, &metadata, part).await;
        let status = resp.status();
        (status, resp.json().await.unwrap_or(Value::Null))
    }
    pub async fn statuses(&self, workflow: &str) -> Value {
        let (status, s) =
            self.call(Method::GET, &format!("/api/v1/compliance/workflows/{workflow}/requirements?page_size=100"), None).await;
        assert_eq!(status, StatusCode::OK, "{s}");
        s
    }
}

pub fn tenant(svc: &Service) -> T<'_> {
    let id = Uuid::new_v4();
    T { svc, id, tok: token(id, ADMIN) }
}

pub fn sha(bytes: &[u8]) -> String {
    hex::encode(sha2::Sha256::digest(bytes))
}

pub fn status_of<'a>(statuses: &'a Value, requirement: &str) -> &'a str {
    statuses["items"].as_array().unwrap().iter().find(|i| i["requirement_id"] == requirement).unwrap()["status"].as_str().unwrap()
}

/// Policies that check controls and their decisions (system evidence).
impl T<'_> {
    /// Creates and activates a policy whose first version checks `checks`; returns its id.
    pub async fn checking_policy(&self, name: &str, rego: &str, checks: Value) -> String {
        let body = json!({"name": name, "rego": rego, "control_checks": checks});
        // 202: recorded, while the read models catch up (e.g. a projector rebuilding).
        let (status, p) = self.call(Method::POST, "/api/v1/policies", Some(body)).await;
        assert!(status == StatusCode::CREATED || status == StatusCode::ACCEPTED, "{status} {p}");
        let id = p["policy_id"].as_str().unwrap().to_owned();
        let (status, a) = self.call(Method::POST, &format!("/api/v1/policies/{id}/activate"), None).await;
        assert!(status == StatusCode::OK || status == StatusCode::ACCEPTED, "{status} {a}");
        id
    }

    /// One decision of `policy`'s active version; returns its ledger seq.
    pub async fn decide(&self, policy: &str, input: Value, rule: &str) -> i64 {
        let body = json!({"input": input, "rule": rule});
        let (status, d) = self.call(Method::POST, &format!("/api/v1/policies/{policy}/evaluate"), Some(body)).await;
        assert_eq!(status, StatusCode::OK, "{d}");
        d["ledger_seq"].as_i64().unwrap()
    }

    /// The tenant's system evidence once the read models reached `min_seq` (a query string
    /// without `?`, may be empty).
    pub async fn system_evidence(&self, min_seq: i64, query: &str) -> Value {
        let (status, s) = self.call(Method::GET, &format!("/api/v1/system-evidence?page_size=100&min_seq={min_seq}&{query}"), None).await;
        assert_eq!(status, StatusCode::OK, "{s}");
        s
    }

    /// A SOC 2 workflow whose audit period is the one day `day`.
    pub async fn one_day_workflow(&self, day: &str, scope: &[&str]) -> String {
        let body = json!({"regulation": "soc2", "name": "SOC 2 one day", "scope": scope, "audit_period_start": day,
            "audit_period_end": day, "due_date": "2099-12-31"});
        let (status, w) = self.call(Method::POST, "/api/v1/compliance/workflows", Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{w}");
        w["workflow_id"].as_str().unwrap().to_owned()
    }

    /// The statuses of a workflow's requirements as of `as_of`.
    pub async fn statuses_as_of(&self, workflow: &str, as_of: &str) -> Value {
        let path = format!("/api/v1/compliance/workflows/{workflow}/requirements?page_size=100&as_of={as_of}");
        let (status, s) = self.call(Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK, "{s}");
        s
    }
}

pub fn requirement<'a>(statuses: &'a Value, requirement: &str) -> &'a Value {
    statuses["items"].as_array().unwrap().iter().find(|i| i["requirement_id"] == requirement).unwrap()
}

/// The day after `day` (YYYY-MM-DD).
pub fn next_day(day: &str) -> String {
    chrono::NaiveDate::parse_from_str(day, "%Y-%m-%d").unwrap().succ_opt().unwrap().to_string()
}
