//! A private OPA server, as scripts/services.sh runs it (token authentication, OPA's own
//! authz policy), for tests that stop it or need its modules to themselves.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;
use uuid::Uuid;

use super::{free_port, var};

pub struct Opa {
    child: Child,
    pub port: u16,
    pub token: String,
}

impl Opa {
    /// OPA as scripts/services.sh runs it: its API answers only the holder of the token.
    pub async fn start_on(port: u16) -> Opa {
        Self::start_with_token(port, format!("{}{}", Uuid::new_v4().simple(), Uuid::new_v4().simple())).await
    }
    pub async fn start_with_token(port: u16, token: String) -> Opa {
        let authz = concat!(env!("CARGO_MANIFEST_DIR"), "/opa/system/authz.rego");
        let child = Command::new(var("AUMOS_DEV_OPA_BIN"))
            .args(["run", "--server", "--addr", &format!("127.0.0.1:{port}"), "--log-level", "error"])
            .args(["--authentication=token", "--authorization=basic", authz])
            .env("AUMOS_GOVERNANCE_OPA_TOKEN", &token)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Owned from here on, so Drop reaps it on every path.
        let opa = Opa { child, port, token };
        let client = reqwest::Client::new();
        for _ in 0..100 {
            if client.get(format!("http://127.0.0.1:{port}/health")).send().await.is_ok_and(|r| r.status().is_success()) {
                return opa;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("OPA did not start");
    }
    pub async fn start() -> Opa {
        Self::start_on(free_port()).await
    }
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
    /// The ids of the modules OPA holds, asked with the token.
    pub async fn modules(&self) -> Vec<String> {
        let r = reqwest::Client::new().get(format!("{}/v1/policies", self.url())).bearer_auth(&self.token).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let body: Value = r.json().await.unwrap();
        body["result"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap().to_owned()).collect()
    }
    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Opa {
    fn drop(&mut self) {
        self.stop();
    }
}
