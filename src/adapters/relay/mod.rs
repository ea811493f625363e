//! The Kafka relay: tails the ledger by seq and publishes every entry, at least once, with
//! a stable CloudEvents id consumers deduplicate on.
//!
//! - `governance.audit.entry.written` carries every entry in full (the export format of
//!   docs/ledger-format.md, `hash` and `prev_hash` included), so a consumer can verify the
//!   chain it replicates.
//! - The domain topics (`governance.policy.created`, …) carry the domain event's JSON.
//! - Key: the aggregate id (order per aggregate). Headers: CloudEvents 1.0 binary mode
//!   (`ce_specversion`, `ce_id`, `ce_type`, `ce_source`, `ce_time`) and `ce_tenantid`.
//! - The producer is idempotent; the position (in the primary database) advances only
//!   after the broker acknowledged every message up to it. One process relays at a time
//!   (advisory lock), so a crash replays from the last acknowledged seq.
//!
//! - [`leader`]: the leader-only loop (one step per batch, what it keeps between steps).
//! - this module: topics, ids, headers, publishing entries and checkpoints.

mod leader;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use chrono::SecondsFormat;
use ledger::export::{ExportEntry, ExportLine};
use ledger::LedgerEntry;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::PgPool;

use aggregates::{DecodeError, EventKind, Recorded};

use crate::adapters::kafka::{KafkaSecurity, LastError, ReportingContext};
use crate::adapters::ledger::LedgerReader;

pub const AUDIT_TOPIC: &str = "governance.audit.entry.written";
/// `ce_type` of an entry on the audit topic, and of a signed checkpoint (which the audit
/// topic also carries, once the entries it covers are published).
pub const CE_ENTRY: &str = "com.aumos.governance.audit.entry.written";
pub const CE_CHECKPOINT: &str = "com.aumos.governance.audit.checkpoint.signed";
const RELAY: &str = "kafka";
const CHECKPOINT_RELAY: &str = "kafka-checkpoints";
const BATCH: i64 = 1000;

/// The domain topic of each kind of entry, named `governance.<domain>.<noun>.<verb>`
/// (the README lists them). A function of the decoded kind, exhaustive: every event and
/// fact the service records has its topic (or, for an operator's skip decision, none), so
/// a consumer of a domain topic sees every change of that domain, not only the audit topic.
pub fn domain_topic(kind: EventKind) -> Option<&'static str> {
    use EventKind as K;
    Some(match kind {
        K::PolicyCreated => "governance.policy.created",
        K::PolicyVersionAdded => "governance.policy.version_added",
        K::PolicyActivated => "governance.policy.activated",
        K::PolicyDeactivated => "governance.policy.deactivated",
        K::PolicyArchived => "governance.policy.archived",
        K::PolicyNameClaimed => "governance.policy.name_claimed",
        K::PolicyEvaluated => "governance.policy.evaluated",
        K::PolicyReplayed => "governance.policy.replayed",
        K::WorkflowCreated => "governance.compliance.workflow.created",
        K::WorkflowStatusChanged => "governance.compliance.workflow.status_changed",
        K::RequirementMarkedNotApplicable => "governance.compliance.requirement.marked_not_applicable",
        K::ControlMappingSet => "governance.compliance.mapping.set",
        K::EvidenceSubmitted => "governance.evidence.submitted",
        K::EvidenceSuperseded => "governance.evidence.superseded",
        K::EvidenceWithdrawn => "governance.evidence.withdrawn",
        K::EvidenceReviewed => "governance.evidence.reviewed",
        K::WorkflowChanged => "governance.compliance.workflow.changed",
        K::WorkflowCertified => "governance.compliance.workflow.certified",
        K::NotApplicableWithdrawn => "governance.compliance.requirement.not_applicable_withdrawn",
        K::FindingRaised => "governance.compliance.finding.raised",
        K::FindingClosed => "governance.compliance.finding.closed",
        K::ControlMappingNotApplicable => "governance.compliance.mapping.not_applicable",
        K::ControlMappingNotApplicableWithdrawn => "governance.compliance.mapping.not_applicable_withdrawn",
        // Operational, not a domain change: on the audit topic only.
        K::ProjectionEntrySkipped => return None,
    })
}

/// Every kind with a domain topic, and that topic.
pub fn domain_topics() -> impl Iterator<Item = (EventKind, &'static str)> {
    EventKind::ALL.iter().filter_map(|k| domain_topic(*k).map(|t| (*k, t)))
}

/// Every topic the relay writes: the audit topic and every domain topic.
pub fn topics() -> impl Iterator<Item = &'static str> {
    std::iter::once(AUDIT_TOPIC).chain(domain_topics().map(|(_, t)| t))
}

/// The domain topic of a ledger entry: its kind's, decoded through the domain's types.
/// An entry of a kind this code does not know (newer code) goes to the audit topic only;
/// a known kind whose payload does not decode is an error (the relay stops on it and
/// reports it, as projectors do).
fn entry_topic(e: &LedgerEntry) -> Result<Option<(&'static str, EventKind)>, RelayError> {
    match Recorded::decode_text(&e.aggregate_type, &e.event_type, &e.payload) {
        Ok(recorded) => Ok(domain_topic(recorded.kind()).map(|t| (t, recorded.kind()))),
        Err(DecodeError::Unknown { .. }) => Ok(None),
        Err(err @ DecodeError::Malformed { .. }) => Err(RelayError::Decode(format!("seq {}: {err}", e.seq))),
    }
}

/// The stable CloudEvents id of an entry on a topic: the same entry always gets the same
/// id, so a duplicate after a retry is recognisable.
pub fn ce_id(origin: &str, seq: i64, topic: &str) -> String {
    if topic == AUDIT_TOPIC {
        format!("{origin}/{seq}/entry")
    } else {
        format!("{origin}/{seq}")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("kafka: {0}")]
    Kafka(String),
    #[error(transparent)]
    Ledger(#[from] crate::adapters::ledger::LedgerError),
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("cannot decode the entry: {0}")]
    Decode(String),
}

pub struct KafkaRelay {
    producer: FutureProducer<ReportingContext>,
    bootstrap: String,
    /// TLS and SASL of every client the relay builds (`AUMOS_KAFKA_*`).
    security: KafkaSecurity,
    /// The last errors the relay's clients reported (for the admin's health details).
    last_error: LastError,
    /// Prepended to every topic name (`AUMOS_KAFKA_TOPIC_PREFIX`), so several
    /// deployments (or a benchmark) can share one cluster without mixing ledgers.
    prefix: String,
    reader: LedgerReader,
    primary: PgPool,
    origin: String,
    lag: Arc<AtomicI64>,
    /// The largest message: the producer's `message.max.bytes` and the topics'
    /// `max.message.bytes` (see [`crate::application::limits::kafka_message_max_bytes`]).
    message_max_bytes: usize,
    /// Where the relay is stuck, shown with the projectors'.
    stuck: crate::application::projection::StuckBoard,
}

impl std::fmt::Debug for KafkaRelay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaRelay").field("origin", &self.origin).field("lag", &self.lag.load(Ordering::Relaxed)).finish()
    }
}

impl KafkaRelay {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        bootstrap: &str,
        security: &KafkaSecurity,
        prefix: &str,
        reader: LedgerReader,
        primary: PgPool,
        origin: &str,
        message_max_bytes: usize,
        stuck: crate::application::projection::StuckBoard,
    ) -> Result<Self, RelayError> {
        let last_error = LastError::default();
        let producer: FutureProducer<ReportingContext> = security
            .client_config(bootstrap)
            .set("message.max.bytes", message_max_bytes.to_string())
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "2")
            .set("message.timeout.ms", "30000")
            .create_with_context(ReportingContext::new("relay", last_error.clone()))
            .map_err(|e| RelayError::Kafka(e.to_string()))?;
        Ok(Self {
            producer,
            bootstrap: bootstrap.to_owned(),
            security: security.clone(),
            last_error,
            prefix: prefix.to_owned(),
            reader,
            primary,
            origin: origin.to_owned(),
            lag: Arc::new(AtomicI64::new(-1)),
            message_max_bytes,
            stuck,
        })
    }

    /// Creates every topic if they are missing, so consumers can subscribe before the
    /// first event of a kind exists, with `max.message.bytes` large enough for the largest
    /// entry; topics that already exist get that setting too. Best effort: a broker that
    /// forbids it is logged.
    async fn ensure_topics(&self) {
        use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, NewTopic, ResourceSpecifier, TopicReplication};
        let admin: Result<AdminClient<ReportingContext>, _> =
            self.security.client_config(&self.bootstrap).create_with_context(ReportingContext::new("admin", self.last_error.clone()));
        let admin = match admin {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "cannot create the Kafka admin client");
                return;
            }
        };
        let max = self.message_max_bytes.to_string();
        let topics: Vec<String> = topics().map(|t| format!("{}{t}", self.prefix)).collect();
        let new: Vec<NewTopic> =
            topics.iter().map(|t| NewTopic::new(t, 1, TopicReplication::Fixed(1)).set("max.message.bytes", &max)).collect();
        let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let mut existing = Vec::new();
        match admin.create_topics(new.iter(), &opts).await {
            Ok(results) => {
                for r in results {
                    match r {
                        Ok(_) => {}
                        Err((topic, rdkafka::types::RDKafkaErrorCode::TopicAlreadyExists)) => existing.push(topic),
                        Err((topic, code)) => tracing::warn!(%topic, error = %code, "cannot create Kafka topic"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot create Kafka topics"),
        }
        let alter: Vec<AlterConfig> =
            existing.iter().map(|t| AlterConfig::new(ResourceSpecifier::Topic(t)).set("max.message.bytes", &max)).collect();
        if alter.is_empty() {
            return;
        }
        match admin.alter_configs(alter.iter(), &opts).await {
            Ok(results) => {
                for r in results {
                    if let Err((resource, code)) = r {
                        tracing::warn!(?resource, error = %code, "cannot set max.message.bytes on a Kafka topic");
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot set max.message.bytes on the Kafka topics"),
        }
    }

    /// Entries published behind the ledger head (-1 before the first measurement).
    pub fn lag(&self) -> i64 {
        self.lag.load(Ordering::Relaxed)
    }

    /// Asks the broker for its metadata over the relay's own client: a real protocol
    /// round trip (TLS handshake and SASL authentication included), not just a TCP
    /// connect, and no new client per probe. A failure says why, with the last error the
    /// relay's clients reported (a refused password, a certificate that does not verify).
    pub async fn broker_reachable(&self, timeout: Duration) -> Result<(), String> {
        use rdkafka::producer::Producer;
        let producer = self.producer.clone();
        let result =
            tokio::task::spawn_blocking(move || producer.client().fetch_metadata(None, timeout).map(|_| ()).map_err(|e| e.to_string()))
                .await
                .map_err(|e| e.to_string())?;
        match result {
            Ok(()) => {
                self.last_error.clear();
                Ok(())
            }
            Err(e) => Err(match self.last_error.get() {
                Some(errors) => format!("{e}; last client errors: {errors}"),
                None => e,
            }),
        }
    }

    /// The ledger seq published up to (read only; 0 before the first batch).
    pub async fn published_upto(&self) -> Result<i64, sqlx::Error> {
        let p: Option<i64> = sqlx::query_scalar("SELECT position FROM gov_relay_positions WHERE relay = $1")
            .bind(RELAY)
            .fetch_optional(&self.primary)
            .await?;
        Ok(p.unwrap_or(0))
    }

    async fn position(&self) -> Result<i64, sqlx::Error> {
        self.position_of(RELAY).await
    }

    async fn position_of(&self, relay: &str) -> Result<i64, sqlx::Error> {
        sqlx::query("INSERT INTO gov_relay_positions (relay, position) VALUES ($1, 0) ON CONFLICT (relay) DO NOTHING")
            .bind(relay)
            .execute(&self.primary)
            .await?;
        sqlx::query_scalar("SELECT position FROM gov_relay_positions WHERE relay = $1").bind(relay).fetch_one(&self.primary).await
    }

    /// Publishes signed checkpoints whose entries are all published already.
    async fn publish_checkpoints(&self, published_upto: i64) -> Result<(), RelayError> {
        let from = self.position_of(CHECKPOINT_RELAY).await?;
        let cps = self.reader.checkpoints_between(from, published_upto).await?;
        let Some(last) = cps.last().map(|c| c.tree_size) else { return Ok(()) };
        let mut deliveries = Vec::new();
        for cp in &cps {
            let value = serde_json::to_vec(&ExportLine::Checkpoint(cp.to_export())).map_err(|e| RelayError::Kafka(e.to_string()))?;
            let id = format!("{}/checkpoint/{}", self.origin, cp.tree_size);
            let source = format!("/aumos/governance/{}", self.origin);
            let time = cp.created_at.to_rfc3339_opts(SecondsFormat::Micros, true);
            let headers = [
                ("ce_specversion", "1.0"),
                ("ce_id", id.as_str()),
                ("ce_type", CE_CHECKPOINT),
                ("ce_source", source.as_str()),
                ("ce_time", time.as_str()),
                ("content-type", "application/json"),
            ]
            .into_iter()
            .fold(OwnedHeaders::new(), |h, (key, value)| h.insert(Header { key, value: Some(value) }));
            let topic = format!("{}{AUDIT_TOPIC}", self.prefix);
            let record = FutureRecord::to(&topic).key("checkpoint").payload(&value).headers(headers);
            deliveries.push(self.producer.send_result(record).map_err(|(err, _)| RelayError::Kafka(err.to_string()))?);
        }
        await_all(deliveries).await?;
        sqlx::query("UPDATE gov_relay_positions SET position = $1, updated_at = now() WHERE relay = $2")
            .bind(last)
            .bind(CHECKPOINT_RELAY)
            .execute(&self.primary)
            .await?;
        Ok(())
    }

    fn headers(&self, e: &LedgerEntry, topic: &str, ce_type: &str) -> OwnedHeaders {
        let id = ce_id(&self.origin, e.seq, topic);
        let source = format!("/aumos/governance/{}", self.origin);
        let time = e.recorded_at.to_rfc3339_opts(SecondsFormat::Micros, true);
        let tenant = e.tenant_id.hyphenated().to_string();
        let seq = e.seq.to_string();
        [
            ("ce_specversion", "1.0"),
            ("ce_id", id.as_str()),
            ("ce_type", ce_type),
            ("ce_source", source.as_str()),
            ("ce_time", time.as_str()),
            ("ce_tenantid", tenant.as_str()),
            ("ce_ledgerseq", seq.as_str()),
            ("content-type", "application/json"),
        ]
        .into_iter()
        .fold(OwnedHeaders::new(), |h, (key, value)| h.insert(Header { key, value: Some(value) }))
    }

    /// Publishes one batch (but the entries the operator decided to skip) and waits for
    /// every acknowledgement.
    async fn publish(&self, batch: &[LedgerEntry], skip: &std::collections::HashSet<i64>) -> Result<(), RelayError> {
        let mut deliveries = Vec::with_capacity(batch.len() * 2);
        for e in batch.iter().filter(|e| !skip.contains(&e.seq)) {
            // Tagged `"kind":"entry"`, like checkpoint messages (`"kind":"checkpoint"`).
            let full = serde_json::to_vec(&ExportLine::Entry(ExportEntry::from(e))).map_err(|err| RelayError::Kafka(err.to_string()))?;
            let mut messages = vec![(AUDIT_TOPIC, full, CE_ENTRY.to_owned())];
            if let Some((topic, kind)) = entry_topic(e)? {
                messages.push((topic, e.payload.clone().into_bytes(), format!("com.aumos.governance.{}", kind.event_type())));
            }
            for (topic, value, ce_type) in messages {
                let name = format!("{}{topic}", self.prefix);
                let record =
                    FutureRecord::to(&name).key(e.aggregate_id.as_bytes()).payload(&value).headers(self.headers(e, topic, &ce_type));
                let delivery = self.producer.send_result(record).map_err(|(err, _)| RelayError::Kafka(err.to_string()))?;
                deliveries.push(delivery);
            }
        }
        await_all(deliveries).await
    }
}

/// Waits for every acknowledgement; the first failure fails the batch.
async fn await_all(deliveries: Vec<rdkafka::producer::DeliveryFuture>) -> Result<(), RelayError> {
    for d in deliveries {
        match d.await {
            Ok(Ok(_)) => {}
            Ok(Err((err, _))) => return Err(RelayError::Kafka(err.to_string())),
            Err(_) => return Err(RelayError::Kafka("delivery cancelled".into())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
