//! Keeps OPA holding every active policy. OPA keeps policies in memory, so a restarted
//! sidecar has none: at start-up and then periodically, the active set is folded from the
//! ledger (the source of truth) and any module OPA lacks is uploaded again. Evaluation
//! also re-uploads a module it finds missing, so the window between an OPA restart and
//! the next sync never turns into wrong answers. `/health/ready` reports the last sync.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use aggregates::policy::PolicyEvent;
use aggregates::LedgerEvent;
use serde::Serialize;
use tokio::sync::watch;

use crate::engine::{PolicyEngine, PolicyModule};
use crate::ledger::LedgerReader;

#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncStatus {
    pub ok: bool,
    pub active_policies: usize,
    pub reuploaded_last_sync: usize,
    pub reuploaded_total: usize,
    pub last_error: Option<String>,
    pub synced_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug)]
pub struct OpaSync {
    reader: LedgerReader,
    engine: Arc<dyn PolicyEngine>,
    status: RwLock<SyncStatus>,
}

/// Folds the ledger's Policy events into the active modules.
pub fn active_modules(entries: &[crate::ledger::LedgerEntry]) -> Vec<PolicyModule> {
    #[derive(Default)]
    struct State {
        versions: BTreeMap<u32, String>,
        active: Option<u32>,
    }
    let mut policies: BTreeMap<String, State> = BTreeMap::new();
    for e in entries {
        let Ok(payload) = serde_json::from_str(&e.payload) else { continue };
        let Ok(event) = PolicyEvent::from_ledger(&e.event_type, payload) else { continue };
        let st = policies.entry(e.aggregate_id.clone()).or_default();
        match event {
            PolicyEvent::PolicyCreated { version, rego, .. } | PolicyEvent::PolicyVersionAdded { version, rego, .. } => {
                st.versions.insert(version, rego.as_str().to_owned());
            }
            PolicyEvent::PolicyActivated { version, .. } => st.active = Some(version),
            PolicyEvent::PolicyDeactivated { .. } | PolicyEvent::PolicyArchived { .. } => st.active = None,
        }
    }
    policies
        .into_iter()
        .filter_map(|(id, st)| {
            let version = st.active?;
            Some(PolicyModule {
                policy_id: uuid::Uuid::parse_str(&id).ok()?,
                version,
                package: String::new(),
                rego: st.versions.get(&version)?.clone(),
            })
        })
        .collect()
}

impl OpaSync {
    pub fn new(reader: LedgerReader, engine: Arc<dyn PolicyEngine>) -> Self {
        Self { reader, engine, status: RwLock::new(SyncStatus::default()) }
    }

    pub fn status(&self) -> SyncStatus {
        self.status.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// One pass: uploads every active module OPA does not hold. Returns how many.
    pub async fn sync_once(&self) -> Result<usize, String> {
        let entries = self.reader.events_of_type("Policy").await.map_err(|e| e.to_string())?;
        let modules = active_modules(&entries);
        let mut uploaded = 0;
        for m in &modules {
            if !self.engine.is_loaded(m).await.map_err(|e| e.to_string())? {
                self.engine.prepare(m).await.map_err(|e| e.to_string())?;
                uploaded += 1;
            }
        }
        if uploaded > 0 {
            tracing::warn!(uploaded, "re-uploaded active policies that OPA did not hold");
        }
        if let Ok(mut s) = self.status.write() {
            s.ok = true;
            s.active_policies = modules.len();
            s.reuploaded_last_sync = uploaded;
            s.reuploaded_total += uploaded;
            s.last_error = None;
            s.synced_at = Some(chrono::Utc::now());
        }
        Ok(uploaded)
    }

    pub async fn run(&self, every: Duration, mut shutdown: watch::Receiver<bool>) {
        loop {
            if let Err(e) = self.sync_once().await {
                tracing::warn!(error = %e, "OPA policy sync failed; will retry");
                if let Ok(mut s) = self.status.write() {
                    s.ok = false;
                    s.last_error = Some(e);
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
