//! `ledger replicate --from-kafka`: a replication consumer that trusts nothing it reads.
//! It consumes `governance.audit.entry.written` from the beginning and, as entries arrive,
//! verifies the hash chain and every signed checkpoint the relay publishes there, then
//! reports the verified head, or the first bad entry.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use ledger::export::{ExportEntry, ExportLine};
use ledger::offline::{load_keys, Outcome};
use ledger::verify::{Verifier, VerifyError};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};

use crate::adapters::relay::{AUDIT_TOPIC, CE_CHECKPOINT};
use crate::app::AppError;

#[derive(Debug, clap::Args)]
pub struct ReplicateArgs {
    /// Consume from Kafka (AUMOS_KAFKA_BOOTSTRAP_SERVERS).
    #[arg(long, required = true)]
    pub from_kafka: bool,
    /// Trusted verifier key(s): a file with one key per line, or the key text itself.
    #[arg(long = "public-key", required = true)]
    pub public_key: Vec<String>,
    /// The topic to read (a mirror, say).
    #[arg(long, default_value = AUDIT_TOPIC)]
    pub topic: String,
    /// Stop once this seq is verified.
    #[arg(long)]
    pub until_seq: Option<i64>,
    /// Stop after this many seconds without a new message.
    #[arg(long, default_value_t = 15)]
    pub idle_exit_seconds: u64,
}

fn bad(seq: i64, reason: impl Into<String>) -> VerifyError {
    VerifyError { seq, reason: reason.into() }
}

pub fn run(args: ReplicateArgs, bootstrap: Option<&str>, security: &crate::adapters::kafka::KafkaSecurity) -> Result<Outcome, AppError> {
    let bootstrap = bootstrap.ok_or_else(|| AppError::Io("AUMOS_KAFKA_BOOTSTRAP_SERVERS: required by ledger replicate".into()))?;
    let mut v = Verifier::new(load_keys(&args.public_key)?).keeping_history();
    let consumer: BaseConsumer = security
        .client_config(bootstrap)
        .set("group.id", format!("governance-replicate-{}", uuid::Uuid::new_v4()))
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("topic.metadata.refresh.interval.ms", "1000")
        .create()
        .map_err(|e| AppError::Io(format!("kafka: {e}")))?;
    consumer.subscribe(&[args.topic.as_str()]).map_err(|e| AppError::Io(format!("kafka: {e}")))?;
    let mut pending: BTreeMap<i64, ExportEntry> = BTreeMap::new();
    let (mut last_message, mut last_report) = (Instant::now(), Instant::now());
    let mut checkpoints = 0;
    let result: Result<(), VerifyError> = (|| loop {
        if args.until_seq.is_some_and(|u| v.entries() as i64 >= u) {
            return Ok(());
        }
        if last_message.elapsed() > Duration::from_secs(args.idle_exit_seconds) {
            return match pending.keys().next() {
                Some(first) => Err(bad(v.entries() as i64 + 1, format!("never received; entries from seq {first} wait behind the gap"))),
                None => Ok(()),
            };
        }
        if last_report.elapsed() > Duration::from_secs(5) {
            eprintln!("replicate: verified {} entries, {checkpoints} checkpoints", v.entries());
            last_report = Instant::now();
        }
        let Some(msg) = consumer.poll(Duration::from_millis(200)) else { continue };
        let msg = msg.map_err(|e| bad(0, format!("kafka: {e}")))?;
        last_message = Instant::now();
        let ce_type = msg
            .headers()
            .and_then(|h| h.iter().find(|x| x.key == "ce_type").and_then(|x| x.value).map(|b| String::from_utf8_lossy(b).into_owned()))
            .unwrap_or_default();
        let payload = msg.payload().unwrap_or_default();
        if ce_type == CE_CHECKPOINT {
            match serde_json::from_slice::<ExportLine>(payload) {
                Ok(ExportLine::Checkpoint(c)) => v.checkpoint(&c)?,
                _ => return Err(bad(0, "a checkpoint message that is not a checkpoint")),
            }
        } else {
            let e: ExportEntry =
                serde_json::from_slice(payload).map_err(|err| bad(v.entries() as i64 + 1, format!("unreadable entry message: {err}")))?;
            let done = v.entries() as i64;
            if e.seq <= done {
                // At-least-once delivery: a repeat must be the very same entry.
                if v.hash_of(e.seq).map(hex::encode).as_deref() != Some(e.hash.as_str()) {
                    return Err(bad(e.seq, "a second, different entry with this seq (fork)"));
                }
            } else {
                pending.insert(e.seq, e);
                while let Some(next) = pending.remove(&(v.entries() as i64 + 1)) {
                    v.export_entry(&next)?;
                }
            }
        }
        checkpoints = v.verified_checkpoints();
    })();
    Ok(match result {
        Ok(()) => Outcome::Ok(format!(
            "OK: verified head seq {} (hash {}), {checkpoints} signed checkpoints verified",
            v.entries(),
            hex::encode(v.head_hash())
        )),
        Err(e) => Outcome::Failed(e),
    })
}
