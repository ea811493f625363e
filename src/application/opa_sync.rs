//! Keeps OPA holding exactly the active policy versions. OPA keeps policies in memory, so
//! a restarted sidecar has none, and a version that stops being active (deactivated,
//! archived, replaced by a newer activation) must stop being loaded.
//!
//! The task follows the ledger (the source of truth) from its last position, reading only
//! new Policy events (decoded as the typed `PolicyEvent`s; one that does not decode fails
//! the pass, unless the operator had the policies projector skip it, which this task
//! honours too), and keeps just the active version of each policy in memory. The source of
//! an activated version comes from the Policy aggregate's own fold of its events
//! ([`crate::application::commands::load`]), as the command bus folds it. Each
//! event takes effect at once: an activation uploads the new version and unloads the one it
//! replaces; a deactivation or archival unloads. At start-up and then every
//! [`RECONCILE_EVERY`] passes it also compares OPA's module list with the active set,
//! uploading what OPA lacks and unloading every other service module (a version an
//! evaluation re-uploaded just before it was replaced).
//!
//! OPA restarts (its supervisor starts it again when a tenant's allocation bomb kills it):
//! every pass reads the id OPA gave itself at start-up ([`OpaEngine::instance_id`], one
//! small request) and reconciles at once when it changed, so a restarted OPA holds the
//! active set again within one pass, not after the next periodic reconciliation.
//! Evaluation also re-uploads a module it finds missing, so that window never turns into
//! wrong answers. With OPA's disk storage (scripts/services.sh, docker-compose.yml) a
//! restarted OPA has usually compiled its persisted modules once at boot, and there is
//! nothing left to upload.
//!
//! A scratch copy (a compile check or activation test in flight) lives for one request;
//! one that OPA still holds [`SCRATCH_ORPHANED_AFTER`] after a reconciliation first saw it
//! was orphaned (OPA died, or the process that made it did, mid-request; OPA's disk storage
//! would keep it forever) and is removed. `/health/ready` reports the status.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::RwLock;
use std::time::{Duration, Instant};

use aggregates::policy::{Policy, PolicyEvent, VersionSource};
use aggregates::{DecodeError, Recorded, Stream};
use ledger::LedgerEntry;
// The policies projector's skip decisions are OPA sync's too: both follow the Policy events.
use projections::policies::PolicyProjector;
use projections::Projector;
use serde::Serialize;
use tokio::sync::watch;
use uuid::Uuid;

use crate::adapters::engine::opa::{OpaEngine, SCRATCH_PREFIX};
use crate::adapters::engine::{PolicyEngine, PolicyModule, PolicySource};
use crate::adapters::ledger::LedgerReader;

/// A full comparison with OPA's module list every this many passes (and at the first).
pub const RECONCILE_EVERY: u64 = 15;

/// A scratch copy lives for one compile check or activation test (seconds); one OPA still
/// holds this long after it was first seen is an orphan.
pub const SCRATCH_ORPHANED_AFTER: Duration = Duration::from_secs(120);

/// How many ledger sequence numbers one read covers.
const WINDOW: i64 = 50_000;

#[derive(Debug, Clone, Default, Serialize)]
pub struct SyncStatus {
    pub ok: bool,
    pub active_policies: usize,
    /// The ledger position the active set is folded up to.
    pub position: i64,
    /// How many times this task saw OPA restarted (a new instance id) and reloaded it.
    pub opa_restarts_seen: usize,
    pub reuploaded_last_sync: usize,
    pub reuploaded_total: usize,
    pub unloaded_total: usize,
    pub last_error: Option<String>,
    pub synced_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// The active set, folded from the ledger up to `position`.
#[derive(Debug, Default)]
pub struct Followed {
    position: i64,
    passes: u64,
    active: BTreeMap<Uuid, PolicyModule>,
    /// OPA's instance id when this task last read it (at the start of each pass).
    opa_instance: Option<String>,
    /// The scratch copies OPA held at the last reconciliation, and when each was first seen.
    scratch_seen: HashMap<String, Instant>,
}

#[derive(Debug)]
pub struct OpaSync {
    reader: LedgerReader,
    engine: OpaEngine,
    status: RwLock<SyncStatus>,
}

/// What one Policy event does to the active set.
enum Change {
    Activate(PolicyModule),
    Stop(Uuid),
}

impl OpaSync {
    pub fn new(reader: LedgerReader, engine: OpaEngine) -> Self {
        Self { reader, engine, status: RwLock::new(SyncStatus::default()) }
    }

    pub fn status(&self) -> SyncStatus {
        self.status.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// What one version holds, from this window's events or else the Policy aggregate
    /// folded from its events.
    async fn source_of(&self, id: Uuid, version: u32, seen: &HashMap<(Uuid, u32), PolicySource>) -> Result<Option<PolicySource>, String> {
        if let Some(source) = seen.get(&(id, version)) {
            return Ok(Some(source.clone()));
        }
        let (policy, _) = crate::application::commands::load::<Policy>(&self.reader, &id.to_string()).await.map_err(|e| e.to_string())?;
        Ok(policy.source(version).map(PolicySource::of))
    }

    /// Reads the Policy events after the followed position, in order.
    async fn changes(&self, followed: &mut Followed) -> Result<Vec<Change>, String> {
        let head = self.reader.head_seq().await.map_err(|e| e.to_string())?;
        let mut changes = Vec::new();
        let mut skipped = None;
        while followed.position < head {
            let upto = head.min(followed.position.saturating_add(WINDOW));
            let entries = self
                .reader
                .events_of_types_between(&[Stream::Policy.aggregate_type()], followed.position, upto)
                .await
                .map_err(|e| e.to_string())?;
            let mut seen = HashMap::new();
            for e in &entries {
                let Ok(id) = Uuid::parse_str(&e.aggregate_id) else { continue };
                let event = match decode(e) {
                    Ok(event) => event,
                    Err(err) => {
                        // An entry the operator had the policies projector skip is not part
                        // of any policy's state; any other bad entry fails the pass.
                        if skipped.is_none() {
                            skipped = Some(
                                crate::application::projection::skipped(&self.reader, PolicyProjector.name())
                                    .await
                                    .map_err(|e| e.to_string())?,
                            );
                        }
                        if skipped.as_ref().is_some_and(|s| s.contains(&e.seq)) {
                            continue;
                        }
                        return Err(err);
                    }
                };
                match event {
                    None => {}
                    Some(
                        PolicyEvent::PolicyCreated { version, rego, modules, data, .. }
                        | PolicyEvent::PolicyVersionAdded { version, rego, modules, data, .. },
                    ) => {
                        seen.insert((id, version), PolicySource::of(&VersionSource { rego, modules, data }));
                    }
                    Some(PolicyEvent::PolicyActivated { version, .. }) => {
                        if let Some(source) = self.source_of(id, version, &seen).await? {
                            changes.push(Change::Activate(PolicyModule { policy_id: id, version, package: String::new(), source }));
                        }
                    }
                    Some(PolicyEvent::PolicyDeactivated { .. } | PolicyEvent::PolicyArchived { .. }) => changes.push(Change::Stop(id)),
                }
            }
            followed.position = upto;
        }
        Ok(changes)
    }

    /// One pass: follows the ledger, applies what changed, and every few passes compares
    /// OPA's modules with the active set. Returns how many modules were uploaded.
    pub async fn sync_once(&self, followed: &mut Followed) -> Result<usize, String> {
        let first = followed.passes == 0;
        // A different instance id: OPA restarted since the last pass and lost every module
        // it did not read back from its disk store. Reconcile now (the id is read before the
        // listing, so a restart in between makes the next pass reconcile once more). The
        // id is kept at once: a pass that fails after this point is followed by a full
        // reconciliation anyway (see `run`), and each restart is counted once.
        let instance = self.engine.instance_id().await.map_err(|e| e.to_string())?;
        let restarted = followed.opa_instance.replace(instance.clone()).is_some_and(|seen| seen != instance);
        if restarted {
            tracing::warn!(instance = %instance, "OPA restarted; uploading the active policies again");
            // Shown at once: the repair below may take a while when OPA lost its store.
            if let Ok(mut s) = self.status.write() {
                s.opa_restarts_seen += 1;
            }
        }
        // OPA's list is taken before the ledger is read: every module in it was uploaded
        // after its activation was appended, so the fold below knows that activation.
        let listing = if restarted || followed.passes.is_multiple_of(RECONCILE_EVERY) {
            Some(self.engine.loaded_modules().await.map_err(|e| e.to_string())?)
        } else {
            None
        };
        let changes = self.changes(followed).await?;
        let (mut uploaded, mut unloaded) = (0, 0);
        for change in changes {
            let (id, next) = match change {
                Change::Activate(m) => (m.policy_id, Some(m)),
                Change::Stop(id) => (id, None),
            };
            let previous = match next {
                Some(m) => followed.active.insert(id, m),
                None => followed.active.remove(&id),
            };
            // At start-up the reconciliation below does the uploads and removals at once.
            if first {
                continue;
            }
            if let Some(old) = previous.filter(|old| Some(old.version) != followed.active.get(&id).map(|m| m.version)) {
                self.engine.unload_all(&OpaEngine::module_ids(&old)).await.map_err(|e| e.to_string())?;
                unloaded += 1;
            }
            if let Some(m) = followed.active.get(&id) {
                if !self.engine.is_loaded(m).await.map_err(|e| e.to_string())? {
                    self.engine.prepare(m).await.map_err(|e| e.to_string())?;
                    uploaded += 1;
                }
            }
        }
        if let Some(listing) = listing {
            let (scratch, listing): (Vec<String>, Vec<String>) = listing.into_iter().partition(|id| id.starts_with(SCRATCH_PREFIX));
            let (up, mut down) = self.reconcile(listing, &followed.active).await?;
            let (orphans, seen) = orphaned_scratch(&followed.scratch_seen, scratch, Instant::now());
            self.engine.unload_all(&orphans).await.map_err(|e| e.to_string())?;
            down += orphans.len();
            followed.scratch_seen = seen;
            uploaded += up;
            unloaded += down;
        }
        followed.passes += 1;
        if uploaded > 0 {
            tracing::warn!(uploaded, "uploaded active policies that OPA did not hold");
        }
        if let Ok(mut s) = self.status.write() {
            s.ok = true;
            s.active_policies = followed.active.len();
            s.position = followed.position;
            s.reuploaded_last_sync = uploaded;
            s.reuploaded_total += uploaded;
            s.unloaded_total += unloaded;
            s.last_error = None;
            s.synced_at = Some(chrono::Utc::now());
        }
        Ok(uploaded)
    }

    /// Makes OPA's service modules exactly the active set: (uploaded, unloaded).
    async fn reconcile(&self, listing: Vec<String>, active: &BTreeMap<Uuid, PolicyModule>) -> Result<(usize, usize), String> {
        let loaded: HashSet<String> = listing.into_iter().collect();
        let wanted: HashSet<String> = active.values().flat_map(OpaEngine::module_ids).collect();
        let mut uploaded = 0;
        for m in active.values().filter(|m| !OpaEngine::module_ids(m).iter().all(|id| loaded.contains(id))) {
            self.engine.prepare(m).await.map_err(|e| e.to_string())?;
            uploaded += 1;
        }
        let unwanted: Vec<String> = loaded.difference(&wanted).cloned().collect();
        self.engine.unload_all(&unwanted).await.map_err(|e| e.to_string())?;
        Ok((uploaded, unwanted.len()))
    }

    pub async fn run(&self, every: Duration, mut shutdown: watch::Receiver<bool>) {
        let mut followed = Followed::default();
        loop {
            if let Err(e) = self.sync_once(&mut followed).await {
                tracing::warn!(error = %e, "OPA policy sync failed; will retry with a full reconciliation");
                followed.passes = 0;
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

/// Of the scratch copies OPA holds now, the orphans (first seen at least
/// [`SCRATCH_ORPHANED_AFTER`] before `now`), and when each of the others was first seen.
fn orphaned_scratch(seen: &HashMap<String, Instant>, held: Vec<String>, now: Instant) -> (Vec<String>, HashMap<String, Instant>) {
    let mut orphans = Vec::new();
    let mut still = HashMap::new();
    for id in held {
        let first = seen.get(&id).copied().unwrap_or(now);
        if now.saturating_duration_since(first) >= SCRATCH_ORPHANED_AFTER {
            orphans.push(id);
        } else {
            still.insert(id, first);
        }
    }
    (orphans, still)
}

/// A Policy entry as its typed event: `None` for a kind this code does not know (newer
/// code), an error for a bad field.
fn decode(e: &LedgerEntry) -> Result<Option<PolicyEvent>, String> {
    match Recorded::decode_text(&e.aggregate_type, &e.event_type, &e.payload) {
        Ok(Recorded::Policy(event)) => Ok(Some(event)),
        Ok(other) => Err(format!("seq {}: {:?} is not a Policy event", e.seq, other.kind())),
        Err(DecodeError::Unknown { .. }) => Ok(None),
        Err(err @ DecodeError::Malformed { .. }) => Err(format!("seq {}: {err}", e.seq)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scratch_copy_is_an_orphan_only_once_it_has_been_held_for_the_whole_grace_period() {
        let t0 = Instant::now();
        let held = |ids: &[&str]| ids.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        // First sighting: nothing is an orphan, both are remembered from now.
        let (orphans, seen) = orphaned_scratch(&HashMap::new(), held(&["a", "b"]), t0);
        assert!(orphans.is_empty());
        assert_eq!(seen.get("a"), Some(&t0));
        // Just inside the grace period: still not; "b" went away (its request finished) and
        // is forgotten; "c" is new.
        let later = t0 + SCRATCH_ORPHANED_AFTER - Duration::from_secs(1);
        let (orphans, seen) = orphaned_scratch(&seen, held(&["a", "c"]), later);
        assert!(orphans.is_empty());
        assert_eq!((seen.get("a"), seen.get("b"), seen.get("c")), (Some(&t0), None, Some(&later)));
        // A copy held for the whole period is an orphan; a younger one is kept.
        let (orphans, seen) = orphaned_scratch(&seen, held(&["a", "c"]), t0 + SCRATCH_ORPHANED_AFTER);
        assert_eq!(orphans, vec!["a".to_owned()]);
        assert_eq!(seen.keys().collect::<Vec<_>>(), vec!["c"]);
    }
}
