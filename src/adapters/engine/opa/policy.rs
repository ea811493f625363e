//! A version OPA holds, as the service evaluates it: alone, as a data query of its own,
//! or in a batch with other evaluations of the same version ([`super::batch`]).

use std::sync::Arc;

use aggregates::facts::JsonText;
use serde_json::Value;

use super::super::{EngineError, PreparedPolicy};
use super::{batch, data_path, query, Confined, OpaEngine, LOADED_MARKER};

/// A version uploaded to OPA.
#[derive(Debug)]
pub struct OpaPolicy {
    pub(super) inner: Arc<Version>,
}

/// What an [`OpaPolicy`] and its batch lanes share.
#[derive(Debug)]
pub(super) struct Version {
    pub(super) engine: OpaEngine,
    pub(super) version: Confined,
    pub(super) package: String,
    /// The batch module's data path and the version's queue ([`batch`]); `None` when its
    /// evaluations are never batched.
    pub(super) batcher: Option<(String, Arc<batch::Batcher>)>,
}

impl Version {
    async fn query<I: serde::Serialize + ?Sized>(&self, rule: Option<&str>, input: Option<&I>) -> Result<Option<Value>, EngineError> {
        query(&self.engine, &data_path(&self.package, rule), input, self.engine.timeout).await
    }

    /// One evaluation, as a data query of its own.
    async fn alone<I: serde::Serialize + ?Sized>(&self, rule: Option<&str>, input: Option<&I>) -> Result<Option<Value>, EngineError> {
        let result = self.query(rule, input).await?;
        if result.is_some() && rule.is_some() {
            return Ok(result);
        }
        // Undefined (or a package document without its marker): is the module still there?
        let loaded = match (&result, rule) {
            (Some(doc), None) => doc.get(LOADED_MARKER).is_some(),
            _ => self.query(Some(LOADED_MARKER), None::<&Value>).await? == Some(Value::Bool(true)),
        };
        if loaded {
            return Ok(result.map(|mut doc| {
                if let Some(map) = doc.as_object_mut() {
                    map.remove(LOADED_MARKER);
                }
                doc
            }));
        }
        tracing::warn!(module = %self.version.ids.first().map_or("", String::as_str), "OPA lost the policy module (restart?); uploading it again");
        self.engine.upload(&self.version).await?;
        let retried = self.query(rule, input).await?;
        Ok(retried.map(|mut doc| {
            if rule.is_none() {
                if let Some(map) = doc.as_object_mut() {
                    map.remove(LOADED_MARKER);
                }
            }
            doc
        }))
    }

    /// A lane of the version's batcher: answers `items`, then the batches that queued
    /// meanwhile, until none waits.
    async fn lane(self: Arc<Self>, path: String, batcher: Arc<batch::Batcher>, mut items: Vec<batch::Item>) {
        let mut guard = batch::LaneGuard { batcher: batcher.clone(), open: true };
        loop {
            let (n, started) = (items.len(), std::time::Instant::now());
            self.answer(&path, items).await;
            match batcher.next(n, started.elapsed()) {
                Some(next) => items = next,
                None => {
                    guard.open = false;
                    return;
                }
            }
        }
    }

    /// Answers the items of one batch: alone when it holds one, else in one query, and
    /// alone again when that query failed as a whole ([`batch`]).
    async fn answer(&self, path: &str, items: Vec<batch::Item>) {
        crate::adapters::metrics::get().opa_query_items(items.len());
        if items.len() > 1 {
            let answer = query(&self.engine, path, Some(&batch::Body::of(&items)), self.engine.timeout).await;
            match answer.map(|a| batch::values(a, items.len())) {
                Ok(Some(values)) => {
                    for (item, value) in items.into_iter().zip(values) {
                        let _ = item.reply.send(Ok(value));
                    }
                    return;
                }
                Err(e @ (EngineError::Timeout(_) | EngineError::Unavailable(_) | EngineError::Quarantined(..))) => {
                    for item in items {
                        let _ = item.reply.send(Err(e.clone()));
                    }
                    return;
                }
                Ok(None) | Err(_) => {}
            }
        }
        let items: Vec<batch::Item> = items.into_iter().filter(|item| !item.reply.is_closed()).collect();
        let alone = items.iter().map(|item| self.alone(Some(&item.rule), Some(&*item.input)));
        let results = futures::future::join_all(alone).await;
        for (item, result) in items.into_iter().zip(results) {
            let _ = item.reply.send(result);
        }
    }
}

/// Whether a rule path is one name (a batch item's rule is a key of the package document).
fn one_name(rule: &str) -> bool {
    !rule.is_empty() && rule.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[async_trait::async_trait]
impl PreparedPolicy for OpaPolicy {
    async fn evaluate(&self, rule: Option<&str>, input: Option<&JsonText>) -> Result<Option<Value>, EngineError> {
        let (Some(rule), Some(input), Some((path, batcher))) = (rule, input, &self.inner.batcher) else {
            return self.inner.alone(rule, input).await;
        };
        // An input of `null` goes alone: OPA's API may read `{"input": null}` as no input,
        // and `with input as null` as `null`.
        if !one_name(rule) || input.get() == "null" || !batcher.knows(rule) {
            let result = self.inner.alone(Some(rule), Some(input)).await;
            if result.is_ok() && one_name(rule) {
                batcher.learned(rule);
            }
            return result;
        }
        let input = input.raw().to_owned();
        let (reply, answered) = tokio::sync::oneshot::channel();
        let deadline = std::time::Instant::now() + self.inner.engine.timeout;
        match batcher.enter(batch::Item { rule: rule.to_owned(), input, reply, deadline }) {
            batch::Entry::Lane(items) => {
                let lane = self.inner.clone().lane(path.clone(), batcher.clone(), items);
                tokio::spawn(super::super::on_behalf_of(super::super::current_tenant(), lane));
            }
            batch::Entry::Queued => {}
            batch::Entry::Full => {
                return Err(EngineError::Overloaded(format!(
                    "{} evaluations of this policy are already waiting for OPA",
                    batch::MAX_QUEUED
                )));
            }
        }
        match tokio::time::timeout(self.inner.engine.timeout, answered).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(EngineError::Fault("the evaluation's batch was dropped".into())),
            Err(_) => Err(EngineError::Timeout("OPA did not answer within the evaluation budget".into())),
        }
    }
}
