//! The relay's leader-only loop: one step relays a batch and moves the position; what
//! it read once (position, skip decisions) is kept between steps and read again after any
//! failure or election.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::{KafkaRelay, RelayError, BATCH, RELAY};
use crate::application::leader::{LeaderTask, Pace};

/// How often the leading relay looks for new signed checkpoints to publish.
const CHECKPOINT_POLL: Duration = Duration::from_millis(100);
/// How often the leading relay reads the ledger's head for its lag gauge.
const LAG_POLL: Duration = Duration::from_millis(500);

/// What the leading relay keeps between steps instead of reading it again at each one
/// (before, each append cost the relay eight statements: its two positions, the
/// checkpoints, the skip decisions and the head). All of it is read again after any
/// failure, and when this process becomes the leader.
#[derive(Debug, Default)]
struct Kept {
    /// The position as this leader stored it.
    position: Option<i64>,
    /// The operator's skip decisions for the relay.
    skip: Option<std::collections::HashSet<i64>>,
    /// When checkpoints were last looked for.
    checkpoints_at: Option<Instant>,
    /// When the head was last read for the lag gauge.
    head_at: Option<Instant>,
}

impl KafkaRelay {
    /// Relays until `shutdown`; only while this process holds the relay lock.
    pub async fn run(self: Arc<Self>, wake: watch::Receiver<i64>, mut shutdown: watch::Receiver<bool>) {
        // A broker that does not answer (or refuses the client) must not hold up shutdown.
        tokio::select! {
            _ = self.ensure_topics() => {}
            _ = shutdown.changed() => return,
        }
        let primary = self.primary.clone();
        let runner = RelayRunner { relay: self, step: BATCH, kept: Kept::default(), coalescer: Default::default() };
        crate::application::leader::run(runner, primary, wake, shutdown).await;
    }

    async fn measure_lag(&self) {
        if let (Ok(pos), Ok(head)) = (self.position().await, self.reader.head_seq().await) {
            self.lag.store(head - pos, Ordering::Relaxed);
        }
    }

    async fn mark_stuck(&self, at: Option<&crate::application::projection::Stuck>) {
        if let Err(e) =
            crate::application::projection::store_stuck(&self.primary, crate::application::projection::StuckTable::Relay, RELAY, at).await
        {
            tracing::warn!(error = %e, "cannot store the relay's stuck mark");
        }
    }

    /// Relays up to `limit` entries; returns how many it relayed (0: nothing to relay), or
    /// the error with the first seq of the batch that failed (then `kept` is forgotten).
    async fn step(&self, kept: &mut Kept, limit: i64) -> Result<usize, (RelayError, i64)> {
        let pos = match kept.position {
            Some(p) => p,
            None => {
                let p = self.position().await.map_err(|e| (e.into(), 0))?;
                kept.position = Some(p);
                p
            }
        };
        let result = self.step_from(kept, pos, limit).await;
        if result.is_err() {
            *kept = Kept::default();
        }
        result.map_err(|e| (e, pos + 1))
    }

    async fn step_from(&self, kept: &mut Kept, pos: i64, limit: i64) -> Result<usize, RelayError> {
        if kept.checkpoints_at.is_none_or(|at| at.elapsed() >= CHECKPOINT_POLL) {
            self.publish_checkpoints(pos).await?;
            kept.checkpoints_at = Some(Instant::now());
        }
        let batch = self.reader.entries_after(pos, limit).await?;
        let Some(last) = batch.last().map(|e| e.seq) else {
            self.lag.store(0, Ordering::Relaxed);
            return Ok(0);
        };
        let skip = match kept.skip.take() {
            Some(skip) => skip,
            None => crate::application::projection::skipped(&self.reader, RELAY).await?,
        };
        let published = self.publish(&batch, &skip).await;
        kept.skip = Some(skip);
        published?;
        let moved = sqlx::query("UPDATE gov_relay_positions SET position = $1, updated_at = now() WHERE relay = $2 AND position = $3")
            .bind(last)
            .bind(RELAY)
            .bind(pos)
            .execute(&self.primary)
            .await?
            .rows_affected();
        // Not moved: the stored position is not the one kept (read it again).
        kept.position = (moved == 1).then_some(last);
        if kept.head_at.is_none_or(|at| at.elapsed() >= LAG_POLL) {
            let head = self.reader.head_seq().await.unwrap_or(last);
            self.lag.store(head - last, Ordering::Relaxed);
            kept.head_at = Some(Instant::now());
        }
        Ok(batch.len())
    }
}

/// The relay as a leader-only task.
struct RelayRunner {
    relay: Arc<KafkaRelay>,
    /// The batch size: one entry at a time after a failure, to find the entry that fails.
    step: i64,
    /// What is kept between steps while this process leads.
    kept: Kept,
    /// Spaces the batches of a relay that keeps up (see [`crate::application::leader::COALESCE`]).
    coalescer: crate::application::leader::Coalescer,
}

#[async_trait::async_trait]
impl LeaderTask for RelayRunner {
    fn lock_name(&self) -> String {
        "gov-kafka-relay".to_owned()
    }

    async fn elected(&mut self) {
        tracing::info!("this process now runs the Kafka relay");
        self.kept = Kept::default();
    }

    async fn follow(&mut self) -> Pace {
        self.kept = Kept::default();
        self.relay.measure_lag().await;
        Pace::Idle(Duration::from_millis(500))
    }

    async fn lead(&mut self) -> Pace {
        if let Some(pause) = self.coalescer.pause() {
            return pause;
        }
        let relay = &self.relay;
        match relay.step(&mut self.kept, self.step).await {
            Ok(relayed) => {
                let moved = relayed > 0;
                // Fewer than a full batch: it reached the head.
                self.coalescer.done(moved && i64::try_from(relayed).unwrap_or(i64::MAX) < self.step);
                if self.step == 1 && moved {
                    self.step = BATCH;
                    if relay.stuck.clear(RELAY) {
                        tracing::info!("the Kafka relay moves again");
                        relay.mark_stuck(None).await;
                    }
                }
                if moved {
                    Pace::Again
                } else {
                    Pace::Idle(Duration::from_millis(100))
                }
            }
            Err((e, _)) if self.step > 1 => {
                tracing::debug!(error = %e, "Kafka relay batch failed; relaying one entry at a time");
                self.step = 1;
                Pace::Again
            }
            Err((e, seq)) => {
                let at = crate::application::projection::Stuck { seq, reason: e.to_string() };
                if relay.stuck.set(RELAY, at.clone()) {
                    tracing::error!(seq, reason = %at.reason, "the Kafka relay cannot publish this ledger entry and retries it \
                        (at-least-once); if it can never be published, record a decision with \
                        `governance-engine projections skip --projection kafka`");
                    relay.mark_stuck(Some(&at)).await;
                }
                Pace::Idle(Duration::from_millis(500))
            }
        }
    }
}
