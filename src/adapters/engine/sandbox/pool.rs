//! The service side of the sandbox: worker processes, per-tenant queues, fair dispatch,
//! and a hard deadline per request.
//!
//! Each worker slot is a task that owns one child process and takes the next request from
//! [`Scheduler`]: round-robin over the tenants with waiting requests, skipping a tenant
//! that already has `workers_per_tenant` requests running. The slot writes the request,
//! waits for the reply until the request's deadline, and otherwise kills the worker
//! (SIGKILL) and starts a fresh one. Only small I/O runs on the async runtime; the Rego
//! runs in the child.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::{oneshot, Notify};
use uuid::Uuid;

use super::child::{encode_frame, Lost, Worker};
use super::{Reply, Request};
use crate::adapters::engine::{EngineError, PolicySource};
use crate::config::SandboxConfig;

/// The pause before retrying a worker that could not start.
const STARTUP_RETRY: Duration = Duration::from_millis(500);

/// How the pool starts a worker: `program engine-worker --memory-mb N --cache-entries M`.
#[derive(Debug, Clone)]
pub struct WorkerCommand {
    pub program: PathBuf,
    pub memory_mb: u64,
    pub cache_entries: usize,
}

/// One request waiting for a worker.
struct Job {
    tenant: Uuid,
    request: Request,
    /// For an evaluation: the source, sent only when the worker asks for it.
    source: Option<Arc<PolicySource>>,
    budget: Duration,
    enqueued: Instant,
    reply: oneshot::Sender<Result<Reply, EngineError>>,
}

#[derive(Default)]
struct TenantQueue {
    jobs: VecDeque<Job>,
    running: usize,
}

/// Per-tenant queues and the round-robin order of tenants with waiting requests.
#[derive(Default)]
struct Scheduler {
    tenants: HashMap<Uuid, TenantQueue>,
    ring: VecDeque<Uuid>,
}

impl Scheduler {
    /// The next request to run: the first tenant in round-robin order that has one
    /// waiting and is under its cap of busy workers.
    fn next(&mut self, cap: usize) -> Option<Job> {
        for _ in 0..self.ring.len() {
            let tenant = self.ring.pop_front()?;
            let Some(q) = self.tenants.get_mut(&tenant) else { continue };
            if q.running >= cap {
                self.ring.push_back(tenant);
                continue;
            }
            let Some(job) = q.jobs.pop_front() else { continue };
            q.running += 1;
            if !q.jobs.is_empty() {
                self.ring.push_back(tenant);
            }
            return Some(job);
        }
        None
    }

    /// Up to `max` more evaluations of `first`'s module (same key, same budget) waiting at
    /// the front of its tenant's queue, to run in the same round. Only when no other
    /// tenant has a request waiting: then nobody takes turns with this tenant on the worker
    /// anyway, and otherwise the round-robin is exactly as before.
    fn same_module(&mut self, first: &Job, max: usize) -> Vec<Job> {
        let Request::Evaluate { key, budget_ms, .. } = &first.request else { return Vec::new() };
        let tenant = first.tenant;
        let others_wait = self.others_wait(tenant);
        let Some(q) = self.tenants.get_mut(&tenant).filter(|_| !others_wait) else { return Vec::new() };
        let same = |j: &Job| matches!(&j.request, Request::Evaluate { key: k, budget_ms: b, .. } if k == key && b == budget_ms);
        let mut more = Vec::new();
        while more.len() < max && q.jobs.front().is_some_and(same) {
            more.extend(q.jobs.pop_front());
        }
        if q.jobs.is_empty() {
            self.ring.retain(|t| *t != tenant);
        }
        more
    }

    /// Whether a tenant other than `tenant` has a request waiting.
    fn others_wait(&self, tenant: Uuid) -> bool {
        self.ring.iter().any(|t| *t != tenant && self.tenants.get(t).is_some_and(|q| !q.jobs.is_empty()))
    }

    /// Puts back, at the front of their tenant's queue and in order, jobs a worker had
    /// been given but not started (it was lost, or another tenant's turn came). The
    /// tenant goes to the back of the round-robin: the tenants waiting now go first.
    fn requeue(&mut self, tenant: Uuid, jobs: Vec<Job>) {
        let q = self.tenants.entry(tenant).or_default();
        for job in jobs.into_iter().rev() {
            q.jobs.push_front(job);
        }
        if !q.jobs.is_empty() {
            self.ring.retain(|t| *t != tenant);
            self.ring.push_back(tenant);
        }
    }

    fn finished(&mut self, tenant: Uuid) {
        if let Some(q) = self.tenants.get_mut(&tenant) {
            q.running = q.running.saturating_sub(1);
            if q.running == 0 && q.jobs.is_empty() {
                self.tenants.remove(&tenant);
            }
        }
    }
}

struct Shared {
    scheduler: Mutex<Scheduler>,
    work: Notify,
    config: SandboxConfig,
    command: WorkerCommand,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Scheduler> {
        // A poisoned lock only means a panic elsewhere; the queues are still consistent.
        self.scheduler.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The pool of evaluation workers.
#[derive(Clone)]
pub struct Pool {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool").field("workers", &self.shared.config.workers).finish()
    }
}

impl Pool {
    /// Starts `config.workers` slots, each with a worker process.
    pub fn start(config: SandboxConfig, command: WorkerCommand) -> Pool {
        let shared = Arc::new(Shared { scheduler: Mutex::new(Scheduler::default()), work: Notify::new(), config, command });
        for _ in 0..shared.config.workers {
            tokio::spawn(slot(shared.clone()));
        }
        Pool { shared }
    }

    /// Queues `request` for `tenant` and waits for its reply. `budget` is the hard
    /// deadline once a worker has taken it; the wait for a worker is bounded separately.
    pub async fn call(
        &self,
        tenant: Uuid,
        request: Request,
        source: Option<Arc<PolicySource>>,
        budget: Duration,
    ) -> Result<Reply, EngineError> {
        let (tx, rx) = oneshot::channel();
        {
            let mut s = self.shared.lock();
            let q = s.tenants.entry(tenant).or_default();
            if q.jobs.len() >= self.shared.config.queue_per_tenant {
                return Err(EngineError::Overloaded(format!(
                    "this tenant already has {} requests waiting for a policy engine worker",
                    self.shared.config.queue_per_tenant
                )));
            }
            let was_idle = q.jobs.is_empty();
            q.jobs.push_back(Job { tenant, request, source, budget, enqueued: Instant::now(), reply: tx });
            if was_idle {
                s.ring.push_back(tenant);
            }
        }
        self.shared.work.notify_one();
        rx.await.unwrap_or_else(|_| Err(EngineError::Unavailable("the policy engine worker pool stopped".into())))
    }
}

/// Starts a worker; on failure logs it and pauses (not to spin on a binary that cannot
/// start; requests meanwhile are answered 503 by the slot).
async fn start_logged(command: &WorkerCommand) -> Option<Worker> {
    match Worker::start(command).await {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::error!(error = %e, "cannot start a policy engine worker");
            tokio::time::sleep(STARTUP_RETRY).await;
            None
        }
    }
}

/// At most this many evaluations of one module go to a worker at once (see
/// [`Scheduler::same_module`]). Under load from one tenant, the round trip to the worker
/// for each evaluation, not the evaluations, bounded the embedded engine: one worker busy
/// for a tenant (`workers_per_tenant`) answered about 2,500 a second here, idle between
/// a reply and the next request.
const MAX_ROUND: usize = 16;

/// The error a job gets when its worker was lost (a death is logged, with the tenant).
fn lost_error(lost: &Lost, job: &Job, shared: &Shared) -> EngineError {
    match lost {
        Lost::Deadline => EngineError::Timeout(format!("stopped at its {} ms deadline", job.budget.as_millis())),
        Lost::Died(status) => {
            tracing::warn!(tenant = %job.tenant, %status, "a policy engine worker died; replacing it");
            EngineError::ResourceLimit(format!(
                "the evaluation exceeded the sandbox's memory ({} MiB) or stack limit",
                shared.command.memory_mb
            ))
        }
    }
}

/// Bytes of requests written to a worker at once: less than a pipe holds (64 KiB on
/// Linux), so the write to a worker that has answered everything never waits on it.
const PIPE_BYTES: usize = 48 * 1024;

/// Requests written to a worker at once. Between two writes a tenant that arrived
/// meanwhile takes its turn (see [`serve`]), so it waits for at most this many.
const PIPE_DEPTH: usize = 8;

/// Runs `jobs` on `w` and answers each as soon as its reply is in. Several small ones are
/// written at once (pipelined): the worker takes the next from its pipe as soon as it has
/// answered one, and each keeps its own deadline, counted from the previous reply, when
/// the worker started it. A job the worker asks the source for runs again, alone, with
/// it. Between two writes (at most [`PIPE_DEPTH`] each), when another tenant has a request
/// waiting, the rest go back to the front of their queue and that tenant takes its turn.
/// Returns false when the worker was lost (killed at a deadline, or dead): that job gets
/// the error, and those the worker had not started go back to the front of their
/// tenant's queue.
async fn serve(w: &mut Worker, jobs: Vec<Job>, shared: &Shared) -> bool {
    let mut pending = std::collections::VecDeque::from(jobs);
    let mut first = true;
    while let Some((tenant, budget)) = pending.front().map(|j| (j.tenant, j.budget)) {
        // Another tenant arrived meanwhile: it takes its turn before the rest of these.
        if !std::mem::take(&mut first) && shared.lock().others_wait(tenant) {
            give_back(pending, shared);
            return true;
        }
        // A job alone is encoded by `Worker::run`, not here as well.
        let (frames, n) = if pending.len() > 1 { frames_that_fit(&pending) } else { (Vec::new(), 1) };
        let mut alone = Vec::new();
        if n > 1 {
            let mut started = tokio::time::Instant::now();
            let sent = tokio::time::timeout_at(started + budget, w.send_frames(&frames)).await;
            if !matches!(sent, Ok(Ok(()))) {
                let lost = w.lose(Lost::Died("its pipe broke".into())).await;
                answer_lost(&lost, pending.drain(..n), shared);
                give_back(pending, shared);
                return false;
            }
            for _ in 0..n {
                let Some(job) = pending.pop_front() else { break };
                let result = w.receive_by(started + job.budget).await;
                if matches!(result, Ok(Reply::NeedSource)) {
                    alone.push(job);
                } else if !answer(job, result, shared) {
                    give_back(alone.into_iter().chain(pending).collect(), shared);
                    return false;
                }
                started = tokio::time::Instant::now();
            }
        } else if let Some(job) = pending.pop_front() {
            alone.push(job);
        }
        let mut alone = std::collections::VecDeque::from(alone);
        while let Some(mut job) = alone.pop_front() {
            let result = w.run(&mut job.request, job.source.as_ref(), job.budget, shared.config.test_timeout).await;
            if !answer(job, result, shared) {
                give_back(alone.into_iter().chain(pending).collect(), shared);
                return false;
            }
        }
    }
    true
}

/// The frames of the longest run of `pending` from its front, at most [`PIPE_DEPTH`], that
/// fits [`PIPE_BYTES`], and how many jobs that is (one alone, whatever its size, is sent
/// by [`Worker::run`]).
fn frames_that_fit(pending: &std::collections::VecDeque<Job>) -> (Vec<u8>, usize) {
    let mut frames = Vec::new();
    let mut n = 0;
    for job in pending.iter().take(PIPE_DEPTH) {
        let at = frames.len();
        let encoded = encode_frame(&mut frames, &job.request);
        if encoded.is_err() || frames.len() > PIPE_BYTES {
            frames.truncate(at);
            break;
        }
        n += 1;
    }
    (frames, n)
}

/// Puts jobs a worker has not started back at the front of their tenant's queue.
fn give_back(jobs: std::collections::VecDeque<Job>, shared: &Shared) {
    if let Some(tenant) = jobs.front().map(|j| j.tenant) {
        shared.lock().requeue(tenant, jobs.into());
    }
}

/// Answers `job` with its reply, or with the loss of its worker; returns whether the
/// worker lives.
fn answer(job: Job, result: Result<Reply, Lost>, shared: &Shared) -> bool {
    match result {
        Ok(reply) => {
            let _ = job.reply.send(Ok(reply));
            true
        }
        Err(lost) => {
            answer_lost(&lost, [job], shared);
            false
        }
    }
}

/// Answers every job with the loss of their worker.
fn answer_lost(lost: &Lost, jobs: impl IntoIterator<Item = Job>, shared: &Shared) {
    for job in jobs {
        let error = lost_error(lost, &job, shared);
        let _ = job.reply.send(Err(error));
    }
}

/// One worker slot: takes requests from the scheduler for as long as the process runs.
async fn slot(shared: Arc<Shared>) {
    let mut worker: Option<Worker> = None;
    loop {
        if worker.is_none() {
            worker = start_logged(&shared.command).await;
        }
        let notified = shared.work.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let next = shared.lock().next(shared.config.workers_per_tenant);
        let Some(job) = next else {
            notified.await;
            continue;
        };
        let tenant = job.tenant;
        let more = if worker.is_some() { shared.lock().same_module(&job, MAX_ROUND - 1) } else { Vec::new() };
        let mut jobs = Vec::with_capacity(1 + more.len());
        for job in std::iter::once(job).chain(more) {
            if job.reply.is_closed() {
                continue; // the caller gave up (its request timed out)
            }
            if job.enqueued.elapsed() > shared.config.queue_timeout {
                let _ = job.reply.send(Err(EngineError::Overloaded(format!(
                    "no policy engine worker was free for this tenant within {} ms",
                    shared.config.queue_timeout.as_millis()
                ))));
                continue;
            }
            jobs.push(job);
        }
        match worker.as_mut() {
            Some(w) if !jobs.is_empty() => {
                if !serve(w, jobs, &shared).await {
                    worker = None;
                }
            }
            Some(_) => {}
            None => {
                for job in jobs {
                    let _ = job.reply.send(Err(EngineError::Unavailable("no policy engine worker could be started".into())));
                }
            }
        }
        if worker.is_none() {
            // The tenant whose request killed the worker keeps this slot until its
            // replacement is ready: the respawn counts against its share, not another's.
            worker = start_logged(&shared.command).await;
        }
        shared.lock().finished(tenant);
        // A tenant that was at its cap may have more waiting: let another slot look.
        shared.work.notify_one();
    }
}

#[cfg(test)]
#[path = "pool_tests.rs"]
mod tests;
