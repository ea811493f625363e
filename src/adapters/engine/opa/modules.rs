//! OPA's modules and data documents of the service: uploads (a version's data document,
//! then its modules, through stubs when they call each other's functions) and removals
//! (OPA refuses to remove a module whose functions another still calls). OPA compiles
//! every PUT and DELETE against everything it holds, so each call here costs one
//! compilation of OPA's whole set.

use std::time::Duration;

use serde_json::Value;

use super::super::confine::{data_document_of, in_module, stub, Confined};
use super::super::{CompileError, EngineError};
use super::{compile_errors, unavailable, OpaEngine};

impl OpaEngine {
    /// Removes one of the service's modules from OPA (of a version that is no longer
    /// active, or a scratch copy); with a version's main module goes its data document.
    /// OPA refuses (a compile error) to remove a module whose functions another still
    /// calls: [`OpaEngine::unload_all`] removes modules that may depend on one another.
    pub async fn unload(&self, module_id: &str) -> Result<(), EngineError> {
        self.remove(&format!("/v1/policies/{module_id}"), "a policy removal").await?;
        if let Some(path) = data_document_of(module_id) {
            self.remove(&format!("/v1/data/{path}"), "a data removal").await?;
        }
        Ok(())
    }

    /// Removes modules that may call each other's functions: one OPA refuses to remove is
    /// tried again after the others; when a round removes nothing, each module left is
    /// first replaced by its stub, which calls nothing, and then removed.
    pub async fn unload_all(&self, ids: &[String]) -> Result<(), EngineError> {
        let mut pending: Vec<String> = ids.to_vec();
        let mut stubbed = false;
        loop {
            let mut refused = Vec::new();
            let mut last = None;
            for id in &pending {
                match self.unload(id).await {
                    Ok(()) => {}
                    Err(e @ EngineError::Compile(_)) => {
                        refused.push(id.clone());
                        last = Some(e);
                    }
                    Err(e) => return Err(e),
                }
            }
            let Some(error) = last else { return Ok(()) };
            if refused.len() == pending.len() {
                if stubbed {
                    return Err(error);
                }
                stubbed = true;
                for id in &refused {
                    let request = self.request(reqwest::Method::GET, &format!("/v1/policies/{id}")).timeout(Duration::from_secs(5));
                    let held = Self::json_answer(request, "a policy read").await?;
                    if let Some(stand_in) = held["result"]["raw"].as_str().and_then(stub) {
                        let _ = self.put(id, &stand_in).await;
                    }
                }
            }
            pending = refused;
        }
    }

    async fn remove(&self, path: &str, what: &str) -> Result<(), EngineError> {
        let resp = self.request(reqwest::Method::DELETE, path).timeout(Duration::from_secs(5)).send().await.map_err(|e| unavailable(&e))?;
        match resp.status() {
            s if s.is_success() || s == reqwest::StatusCode::NOT_FOUND => Ok(()),
            reqwest::StatusCode::BAD_REQUEST => {
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                Err(EngineError::Compile(compile_errors(&body)))
            }
            s => Err(EngineError::BadResponse(format!("OPA answered {s} to {what}"))),
        }
    }

    /// Puts a version's data document under its namespace (before its modules, which
    /// read it).
    async fn put_data(&self, prefix: &str, data: &Value) -> Result<(), EngineError> {
        let resp = self
            .request(reqwest::Method::PUT, &format!("/v1/data/{}", prefix.replace('.', "/")))
            .json(data)
            .timeout(self.timeout.max(Duration::from_secs(5)))
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        match resp.status() {
            s if s.is_success() => Ok(()),
            s if s == reqwest::StatusCode::BAD_REQUEST || s == reqwest::StatusCode::CONFLICT => {
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                let message = format!("data: {}", body["message"].as_str().unwrap_or("OPA refused the data document"));
                Err(EngineError::Compile(vec![CompileError { message, row: None, col: None }]))
            }
            s => Err(EngineError::BadResponse(format!("OPA answered {s} to a data upload"))),
        }
    }

    /// Uploads a version: its data document, then its modules, further ones first (a main
    /// module usually calls their functions, and OPA compiles every upload against what it
    /// holds). A module OPA refuses is tried again after the others. When a round uploads
    /// nothing more, the modules left may call each other's functions: their stubs go up
    /// first, once ([`stub`]), and each real module then replaces its own. When that does
    /// not help either, the errors of the last round are the answer.
    pub(super) async fn upload(&self, version: &Confined) -> Result<(), EngineError> {
        if let Some(data) = &version.data {
            self.put_data(&version.prefix, data).await?;
        }
        let mut pending: Vec<usize> = (1..version.bodies.len()).chain(std::iter::once(0)).collect();
        let mut stubbed = false;
        loop {
            let mut refused = Vec::new();
            let mut errors = Vec::new();
            for &i in &pending {
                match self.put(&version.ids[i], &version.bodies[i]).await {
                    Ok(()) => {}
                    Err(e @ EngineError::Compile(_)) => {
                        refused.push(i);
                        if let EngineError::Compile(found) = in_module(i, e) {
                            errors.extend(found);
                        }
                    }
                    Err(e) => return Err(e),
                }
            }
            if refused.is_empty() {
                return Ok(());
            }
            if refused.len() == pending.len() {
                if stubbed || refused.len() < 2 {
                    return Err(EngineError::Compile(errors));
                }
                stubbed = true;
                for &i in &refused {
                    if let Some(stand_in) = stub(&version.bodies[i]) {
                        // A stub OPA refuses changes nothing: the real module's error stands.
                        let _ = self.put(&version.ids[i], &stand_in).await;
                    }
                }
            }
            pending = refused;
        }
    }

    /// Uploads a module; 400 from OPA is a compile error.
    pub(super) async fn put(&self, id: &str, rego: &str) -> Result<(), EngineError> {
        let resp = self
            .request(reqwest::Method::PUT, &format!("/v1/policies/{id}"))
            .header(reqwest::header::CONTENT_TYPE, "text/plain")
            .body(rego.to_owned())
            .timeout(self.timeout.max(Duration::from_secs(5)))
            .send()
            .await
            .map_err(|e| unavailable(&e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(());
        }
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if status == reqwest::StatusCode::BAD_REQUEST {
            return Err(EngineError::Compile(compile_errors(&body)));
        }
        Err(EngineError::BadResponse(format!("OPA answered {status} to a policy upload")))
    }

    /// Removes a version's modules, logging (not failing on) what OPA keeps.
    pub(super) async fn delete(&self, ids: &[String]) {
        if let Err(e) = self.unload_all(ids).await {
            tracing::warn!(modules = ?ids, error = %e, "could not remove modules from OPA");
        }
    }
}
