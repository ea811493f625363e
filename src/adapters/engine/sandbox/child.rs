//! The service's side of one evaluation worker process: starting it, the framed exchange
//! over its pipes with a deadline, and killing it when it is lost (see [`super::pool`]).

use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::pool::WorkerCommand;
use super::{Reply, Request, MAX_FRAME};
use crate::adapters::engine::PolicySource;

/// How long a new worker may take to start.
const STARTUP: Duration = Duration::from_secs(10);

/// A live worker process and its pipes.
pub(super) struct Worker {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// Why an exchange with a worker ended without a reply.
pub(super) enum Lost {
    Deadline,
    Died(String),
}

impl Worker {
    /// Starts a worker and waits until it is ready (its memory cap in place).
    pub(super) async fn start(command: &WorkerCommand) -> std::io::Result<Worker> {
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
            // The binary's allocator (mimalloc) reserves address space in 1 GiB arenas and
            // keeps what it freed reserved, which the worker's RLIMIT_AS counts: after a
            // large allocation an innocent evaluation could fail. In a worker it takes
            // segments straight from the OS and gives freed ones back.
            .env("MIMALLOC_DISALLOW_ARENA_ALLOC", "1")
            .env("MIMALLOC_ARENA_RESERVE", "0")
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
        let mut frame = Vec::new();
        encode_frame(&mut frame, request)?;
        self.send_frames(&frame).await
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

    /// Writes several encoded requests at once (the worker reads them one by one).
    pub(super) async fn send_frames(&mut self, frames: &[u8]) -> std::io::Result<()> {
        self.stdin.write_all(frames).await?;
        self.stdin.flush().await
    }

    /// Kills the worker if it still runs and says how it was lost: at a missed deadline, or
    /// dead on its own (memory cap, stack, abort: its pipe broke), with its exit status.
    pub(super) async fn lose(&mut self, lost: Lost) -> Lost {
        let _ = self.child.start_kill();
        let status = self.child.wait().await.map(|s| s.to_string()).unwrap_or_else(|e| e.to_string());
        match lost {
            Lost::Deadline => Lost::Deadline,
            Lost::Died(_) => Lost::Died(status),
        }
    }

    /// The next reply, until `deadline`; on a miss or a broken pipe the worker is dead
    /// (killed here if it was not already) and must be replaced.
    pub(super) async fn receive_by(&mut self, deadline: tokio::time::Instant) -> Result<Reply, Lost> {
        match tokio::time::timeout_at(deadline, self.receive()).await {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(e)) => Err(self.lose(Lost::Died(e.to_string())).await),
            Err(_) => Err(self.lose(Lost::Deadline).await),
        }
    }

    /// One request and its reply, until `deadline` (see [`Worker::receive_by`]).
    async fn round(&mut self, request: &Request, deadline: tokio::time::Instant) -> Result<Reply, Lost> {
        match tokio::time::timeout_at(deadline, self.send(request)).await {
            Ok(Ok(())) => self.receive_by(deadline).await,
            Ok(Err(e)) => Err(self.lose(Lost::Died(e.to_string())).await),
            Err(_) => Err(self.lose(Lost::Deadline).await),
        }
    }

    /// Runs a job: its budget is the deadline. When the worker has to prepare the module
    /// first (it asks for the source), that round may also take `prepare`, the bound of
    /// validation: a fresh worker does not make a sound policy miss its deadline.
    pub(super) async fn run(
        &mut self,
        request: &mut Request,
        source: Option<&Arc<PolicySource>>,
        budget: Duration,
        prepare: Duration,
    ) -> Result<Reply, Lost> {
        let reply = self.round(request, tokio::time::Instant::now() + budget).await?;
        if let (Reply::NeedSource, Some(source)) = (&reply, source) {
            if let Request::Evaluate { source: wanted, .. } | Request::EvaluateMany { source: wanted, .. } = request {
                *wanted = Some(PolicySource::clone(source));
                return self.round(request, tokio::time::Instant::now() + prepare + budget).await;
            }
        }
        Ok(reply)
    }
}

/// Appends one frame: a little-endian u32 length, then the request's JSON.
pub(super) fn encode_frame(out: &mut Vec<u8>, request: &Request) -> std::io::Result<()> {
    let at = out.len();
    out.extend_from_slice(&[0u8; 4]);
    serde_json::to_writer(&mut *out, request).map_err(std::io::Error::other)?;
    let len = u32::try_from(out.len() - at - 4)
        .ok()
        .filter(|n| (*n as usize) <= MAX_FRAME)
        .ok_or_else(|| std::io::Error::other("frame too large"))?;
    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
    Ok(())
}
