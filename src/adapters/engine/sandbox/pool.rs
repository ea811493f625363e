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
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::{oneshot, Notify};
use uuid::Uuid;

use super::{Reply, Request, MAX_FRAME};
use crate::adapters::engine::{EngineError, PolicySource};
use crate::config::SandboxConfig;

/// How long a new worker may take to start.
const STARTUP: Duration = Duration::from_secs(10);
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

/// A live worker process and its pipes.
struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// Why an exchange with a worker ended without a reply.
enum Lost {
    Deadline,
    Died(String),
}

impl Worker {
    /// Starts a worker and waits until it is ready (its memory cap in place).
    async fn start(command: &WorkerCommand) -> std::io::Result<Worker> {
        let mut w = Self::spawn(command)?;
        match tokio::time::timeout(STARTUP, w.receive()).await {
            Ok(Ok(Reply::Ready)) => Ok(w),
            Ok(Ok(other)) => Err(std::io::Error::other(format!("unexpected first frame {other:?}"))),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(std::io::Error::other("the worker did not start in time")),
        }
    }

    fn spawn(command: &WorkerCommand) -> std::io::Result<Worker> {
        let mut child = Command::new(&command.program)
            .arg("engine-worker")
            .arg("--memory-mb")
            .arg(command.memory_mb.to_string())
            .arg("--cache-entries")
            .arg(command.cache_entries.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()?;
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            return Err(std::io::Error::other("the worker's pipes are missing"));
        };
        Ok(Worker { child, stdin, stdout: BufReader::new(stdout) })
    }

    async fn send(&mut self, request: &Request) -> std::io::Result<()> {
        let body = serde_json::to_vec(request).map_err(std::io::Error::other)?;
        let len = u32::try_from(body.len())
            .ok()
            .filter(|n| (*n as usize) <= MAX_FRAME)
            .ok_or_else(|| std::io::Error::other("frame too large"))?;
        let mut frame = Vec::with_capacity(body.len() + 4);
        frame.extend_from_slice(&len.to_le_bytes());
        frame.extend_from_slice(&body);
        self.stdin.write_all(&frame).await?;
        self.stdin.flush().await
    }

    async fn receive(&mut self) -> std::io::Result<Reply> {
        let len = self.stdout.read_u32_le().await? as usize;
        if len > MAX_FRAME {
            return Err(std::io::Error::other("frame too large"));
        }
        let mut body = vec![0u8; len];
        self.stdout.read_exact(&mut body).await?;
        serde_json::from_slice(&body).map_err(std::io::Error::other)
    }

    /// One request and its reply, until `deadline`; on a miss or a broken pipe the worker
    /// is dead (killed here if it was not already) and must be replaced.
    async fn round(&mut self, request: &Request, deadline: tokio::time::Instant) -> Result<Reply, Lost> {
        let exchange = async {
            self.send(request).await?;
            self.receive().await
        };
        match tokio::time::timeout_at(deadline, exchange).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => {
                // The pipe broke: the worker died on its own (memory cap, stack, abort).
                let _ = self.child.start_kill();
                let status = self.child.wait().await.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
                Err(Lost::Died(status))
            }
            Err(_) => {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
                Err(Lost::Deadline)
            }
        }
    }

    /// Runs a job: its budget is the deadline. When the worker has to prepare the module
    /// first (it asks for the source), that round may also take `prepare`, the bound of
    /// validation: a fresh worker does not make a sound policy miss its deadline.
    async fn run(&mut self, job: &mut Job, prepare: Duration) -> Result<Reply, Lost> {
        let reply = self.round(&job.request, tokio::time::Instant::now() + job.budget).await?;
        if let (Reply::NeedSource, Some(source)) = (&reply, &job.source) {
            if let Request::Evaluate { source: wanted, .. } | Request::EvaluateMany { source: wanted, .. } = &mut job.request {
                *wanted = Some(PolicySource::clone(source));
                return self.round(&job.request, tokio::time::Instant::now() + prepare + job.budget).await;
            }
        }
        Ok(reply)
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
        let Some(mut job) = next else {
            notified.await;
            continue;
        };
        let tenant = job.tenant;
        let outcome = if job.reply.is_closed() {
            None // the caller gave up (its request timed out)
        } else if job.enqueued.elapsed() > shared.config.queue_timeout {
            Some(Err(EngineError::Overloaded(format!(
                "no policy engine worker was free for this tenant within {} ms",
                shared.config.queue_timeout.as_millis()
            ))))
        } else if let Some(w) = worker.as_mut() {
            Some(match w.run(&mut job, shared.config.test_timeout).await {
                Ok(reply) => Ok(reply),
                Err(lost) => {
                    worker = None;
                    Err(match lost {
                        Lost::Deadline => EngineError::Timeout(format!("stopped at its {} ms deadline", job.budget.as_millis())),
                        Lost::Died(status) => {
                            tracing::warn!(%tenant, %status, "a policy engine worker died; replacing it");
                            EngineError::ResourceLimit(format!(
                                "the evaluation exceeded the sandbox's memory ({} MiB) or stack limit",
                                shared.command.memory_mb
                            ))
                        }
                    })
                }
            })
        } else {
            Some(Err(EngineError::Unavailable("no policy engine worker could be started".into())))
        };
        if let Some(outcome) = outcome {
            let _ = job.reply.send(outcome);
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
mod tests {
    use super::*;

    fn job(tenant: Uuid) -> Job {
        let (reply, _) = oneshot::channel();
        Job {
            tenant,
            request: Request::Check { source: PolicySource::default() },
            source: None,
            budget: Duration::ZERO,
            enqueued: Instant::now(),
            reply,
        }
    }

    fn queue(s: &mut Scheduler, tenant: Uuid, n: usize) {
        for _ in 0..n {
            let q = s.tenants.entry(tenant).or_default();
            if q.jobs.is_empty() {
                s.ring.push_back(tenant);
            }
            s.tenants.entry(tenant).or_default().jobs.push_back(job(tenant));
        }
    }

    #[test]
    fn tenants_take_turns_and_none_exceeds_its_cap_of_busy_workers() {
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let mut s = Scheduler::default();
        queue(&mut s, a, 5);
        queue(&mut s, b, 1);
        assert_eq!(s.next(1).map(|j| j.tenant), Some(a));
        // a is at its cap of one: b goes next although a queued first.
        assert_eq!(s.next(1).map(|j| j.tenant), Some(b));
        assert!(s.next(1).is_none(), "a waits for its running request to finish");
        s.finished(a);
        assert_eq!(s.next(1).map(|j| j.tenant), Some(a));
        s.finished(b);
        assert!(!s.tenants.contains_key(&b), "an idle tenant leaves no state behind");
    }
}
