//! `make bench-ledger`: the ledger's append throughput and latency against plain INSERTs
//! on the same audit cluster in the same run, and offline verification speed.
//!
//! Needs the audit cluster's URLs in the environment (scripts/bench-ledger.sh provides a
//! private cluster). Writes target/bench/ledger.json.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use governance_engine::adapters::ledger::{Appender, NewEntry};
use ledger::checkpoint::NoteSigner;
use ledger::export::{ExportEntry, ExportLine};
use ledger::format::{leaf_hash, GENESIS_HASH};
use ledger::merkle::MerkleTree;
use ledger::verify::Verifier;
use ledger::{EntryMetadata, LedgerEntry};
use sqlx::{Connection, PgConnection};

mod support;
use support::{env, histogram};

/// The service's allocator (src/main.rs), so the appender is measured as the service runs it.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const WRITERS: usize = 8;

fn seconds() -> Duration {
    Duration::from_secs(std::env::var("BENCH_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(15))
}

/// A payload of about 500 bytes, like a policy decision record.
fn payload(i: u64) -> String {
    let input = "x".repeat(330);
    format!(
        r#"{{"decision_id":"{i:032x}","engine":"embedded","input":"{input}","policy_id":"01a222d8-761d-75d4-808f-d1f0a65cccc7","result":{{"allow":true}},"version":3}}"#
    )
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

struct Run {
    per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    count: usize,
}

fn summarise(mut lat: Vec<f64>, elapsed: Duration) -> Run {
    lat.sort_by(f64::total_cmp);
    Run {
        per_s: lat.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: percentile(&lat, 0.50),
        p99_ms: percentile(&lat, 0.99),
        count: lat.len(),
    }
}

async fn plain_inserts(d: Duration) -> Run {
    let mut admin = PgConnection::connect(&env("AUMOS_GOVERNANCE_AUDIT_DB_ADMIN_URL")).await.unwrap();
    sqlx::raw_sql(
        "DROP TABLE IF EXISTS gov_bench_plain_entries; \
         CREATE TABLE gov_bench_plain_entries (seq bigserial PRIMARY KEY, tenant_id uuid NOT NULL, aggregate_type text NOT NULL, \
         aggregate_id text NOT NULL, aggregate_seq bigint NOT NULL, event_type text NOT NULL, event_version text NOT NULL, payload json NOT NULL, \
         actor text NOT NULL, request_id text, trace_id text, causation_id text, correlation_id text, recorded_at timestamptz NOT NULL, \
         prev_hash bytea NOT NULL, hash bytea NOT NULL, UNIQUE (aggregate_type, aggregate_id, aggregate_seq)); \
         GRANT INSERT ON gov_bench_plain_entries TO gov_ledger_writer; GRANT USAGE ON SEQUENCE gov_bench_plain_entries_seq_seq TO gov_ledger_writer;",
    )
    .execute(&mut admin)
    .await
    .unwrap();
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        tasks.push(tokio::spawn(async move {
            let mut c = PgConnection::connect(&env("AUMOS_GOVERNANCE_AUDIT_DB_URL")).await.unwrap();
            let (mut lat, mut i) = (Vec::new(), 0u64);
            let tenant = uuid::Uuid::new_v4();
            while start.elapsed() < d {
                let t = Instant::now();
                sqlx::query(
                    "INSERT INTO gov_bench_plain_entries (tenant_id, aggregate_type, aggregate_id, aggregate_seq, event_type, event_version, \
                     payload, actor, request_id, recorded_at, prev_hash, hash) VALUES ($1, 'Bench', $2, 1, 'Written', '1', $3::json, 'bench', 'r', now(), $4, $4)",
                )
                .bind(tenant)
                .bind(format!("{w}-{i}"))
                .bind(payload(i))
                .bind(vec![0u8; 32])
                .execute(&mut c)
                .await
                .unwrap();
                lat.push(t.elapsed().as_secs_f64() * 1e3);
                i += 1;
            }
            lat
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let run = summarise(all, start.elapsed());
    sqlx::raw_sql("DROP TABLE gov_bench_plain_entries").execute(&mut admin).await.unwrap();
    run
}

async fn ledger_appends(d: Duration, in_flight: usize) -> Run {
    // The service's own pool settings (no ping before each statement).
    let pool = governance_engine::app::pool(&env("AUMOS_GOVERNANCE_AUDIT_DB_URL"), 4, "bench ledger writer").await.unwrap();
    let (appender, handle) = Appender::start(pool);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..WRITERS * in_flight {
        let handle = handle.clone();
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut i) = (Vec::new(), 0u64);
            let tenant = uuid::Uuid::new_v4();
            let id = format!("bench-{}-{w}", uuid::Uuid::new_v4());
            while start.elapsed() < d {
                i += 1;
                let entry = NewEntry {
                    tenant_id: tenant,
                    aggregate_type: "Bench".into(),
                    aggregate_id: id.clone(),
                    aggregate_seq: i as i64,
                    event_type: "Written".into(),
                    event_version: "1".into(),
                    payload: payload(i),
                    metadata: EntryMetadata { actor: "bench".into(), request_id: Some("r".into()), ..Default::default() },
                };
                let t = Instant::now();
                handle.append(vec![entry]).await.expect("append");
                lat.push(t.elapsed().as_secs_f64() * 1e3);
            }
            lat
        }));
    }
    drop(handle);
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    let run = summarise(all, start.elapsed());
    appender.join().await;
    run
}

/// The audit cluster's WAL counters (`pg_stat_wal`, `pg_stat_bgwriter`): what an arm made
/// PostgreSQL write and flush, so a difference between arms can be traced to its cause.
#[derive(Clone, Copy)]
struct Wal {
    records: i64,
    fpi: i64,
    bytes: f64,
    syncs: i64,
    checkpoints: i64,
}

async fn wal() -> Wal {
    let mut admin = PgConnection::connect(&env("AUMOS_GOVERNANCE_AUDIT_DB_ADMIN_URL")).await.unwrap();
    let (records, fpi, bytes, syncs, checkpoints): (i64, i64, f64, i64, i64) = sqlx::query_as(
        "SELECT w.wal_records, w.wal_fpi, w.wal_bytes::float8, w.wal_sync, b.checkpoints_timed + b.checkpoints_req \
         FROM pg_stat_wal w, pg_stat_bgwriter b",
    )
    .fetch_one(&mut admin)
    .await
    .unwrap();
    Wal { records, fpi, bytes, syncs, checkpoints }
}

/// Per row written between two [`wal`] readings: WAL bytes, records, full-page images, and
/// the flushes and checkpoints in between.
fn wal_per_row(before: Wal, after: Wal, rows: usize) -> serde_json::Value {
    let n = rows.max(1) as f64;
    serde_json::json!({
        "wal_bytes_per_row": ((after.bytes - before.bytes) / n).round(),
        "wal_records_per_row": ((after.records - before.records) as f64 / n * 100.0).round() / 100.0,
        "full_page_images_per_row": ((after.fpi - before.fpi) as f64 / n * 1000.0).round() / 1000.0,
        "wal_flushes": after.syncs - before.syncs,
        "checkpoints": after.checkpoints - before.checkpoints,
    })
}

/// Writes a synthetic, valid export of `n` entries with a checkpoint every 100,000.
fn synthetic_export(n: u64, path: &std::path::Path, signer: &NoteSigner) {
    use std::io::Write;
    let mut w = std::io::BufWriter::with_capacity(1 << 22, std::fs::File::create(path).unwrap());
    let mut tree = MerkleTree::new();
    let mut prev = GENESIS_HASH;
    let tenant = uuid::Uuid::new_v4();
    let t0 = chrono::Utc::now();
    for seq in 1..=n {
        let mut e = LedgerEntry {
            seq: seq as i64,
            tenant_id: tenant,
            aggregate_type: "Policy".into(),
            aggregate_id: format!("agg-{}", seq % 1000),
            aggregate_seq: (seq / 1000 + 1) as i64,
            event_type: "PolicyEvaluated".into(),
            event_version: "1".into(),
            payload: payload(seq),
            metadata: EntryMetadata { actor: "svc-gateway".into(), request_id: Some(format!("req-{seq}")), ..Default::default() },
            recorded_at: t0,
            prev_hash: prev,
            hash: [0; 32],
        };
        let enc = e.encode();
        e.hash = ledger::format::entry_hash(&enc);
        tree.push(leaf_hash(&enc));
        prev = e.hash;
        serde_json::to_writer(&mut w, &ExportLine::Entry(ExportEntry::from(&e))).unwrap();
        w.write_all(b"\n").unwrap();
        if seq % 100_000 == 0 || seq == n {
            let note = signer.sign_checkpoint("bench.example/ledger", seq, &tree.root(seq).unwrap());
            let cp = ledger::export::ExportCheckpoint {
                tree_size: seq,
                root_hash: hex::encode(tree.root(seq).unwrap()),
                key_id: signer.key_id_hex(),
                note,
                created_at: t0.to_rfc3339(),
            };
            serde_json::to_writer(&mut w, &ExportLine::Checkpoint(cp)).unwrap();
            w.write_all(b"\n").unwrap();
        }
    }
    w.flush().unwrap();
}

fn verify_speed(n: u64) -> f64 {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ledger-verify-1m.jsonl");
    let signer = NoteSigner::from_pem("bench.example/ledger", &NoteSigner::generate_pem().unwrap()).unwrap();
    eprintln!("writing a synthetic export of {n} entries to {}", path.display());
    synthetic_export(n, &path, &signer);
    let key = ledger::checkpoint::VerifierKey::parse(&signer.verifier_key()).unwrap();
    let start = Instant::now();
    let mut v = Verifier::new(vec![key]);
    ledger::offline::verify_file(&path, &mut v, &[]).expect("the synthetic export verifies");
    let summary = v.finish().expect("the synthetic export verifies");
    let elapsed = start.elapsed();
    assert_eq!(summary.entries, n);
    let _ = std::fs::remove_file(&path);
    n as f64 / elapsed.as_secs_f64()
}

#[tokio::main]
async fn main() {
    let d = seconds();
    let entries = std::env::var("BENCH_VERIFY_ENTRIES").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    if std::env::var("BENCH_LEDGER_ONLY").as_deref() == Ok("verify") {
        // Only the offline verifier (no database): for profiling it.
        println!("offline verify {:.0} entries/s", verify_speed(entries));
        return;
    }
    // The offline verifier first, on a quiet machine: it is an auditor's tool on their own
    // machine, not something that shares it with the database arms' flushing afterwards.
    let verify = verify_speed(entries);
    eprintln!("plain single-row INSERTs: {WRITERS} writers, {}s", d.as_secs());
    let w0 = wal().await;
    let plain = plain_inserts(d).await;
    let w1 = wal().await;
    eprintln!("ledger appends through the group-commit appender: {WRITERS} writers, {}s", d.as_secs());
    // The appender records each batch's commit time and size in the process's metrics.
    let metrics = || governance_engine::adapters::metrics::get().render();
    let before = metrics();
    let ledger = ledger_appends(d, 1).await;
    let mid = metrics();
    let w2 = wal().await;
    eprintln!("ledger appends with 8 writers x 16 requests in flight each, {}s", d.as_secs());
    let busy = ledger_appends(d, 16).await;
    let w3 = wal().await;
    let (appends_8, appends_128) = (histogram::appends(&before, &mid), histogram::appends(&mid, &metrics()));
    let report = serde_json::json!({
        "ledger_events_per_s": ledger.per_s.round(),
        "ledger_p50_ms": (ledger.p50_ms * 1000.0).round() / 1000.0,
        "ledger_p99_ms": (ledger.p99_ms * 1000.0).round() / 1000.0,
        "plain_insert_rows_per_s": plain.per_s.round(),
        "plain_insert_p50_ms": (plain.p50_ms * 1000.0).round() / 1000.0,
        "plain_insert_p99_ms": (plain.p99_ms * 1000.0).round() / 1000.0,
        "ratio": (ledger.per_s / plain.per_s * 100.0).round() / 100.0,
        "ledger_128_in_flight_events_per_s": busy.per_s.round(),
        "ledger_128_in_flight_p50_ms": (busy.p50_ms * 1000.0).round() / 1000.0,
        "ledger_128_in_flight_p99_ms": (busy.p99_ms * 1000.0).round() / 1000.0,
        "ratio_128_in_flight": (busy.per_s / plain.per_s * 100.0).round() / 100.0,
        "wal": {"plain_insert": wal_per_row(w0, w1, plain.count), "ledger": wal_per_row(w1, w2, ledger.count),
            "ledger_128_in_flight": wal_per_row(w2, w3, busy.count)},
        "ledger_batches": appends_8,
        "ledger_128_in_flight_batches": appends_128,
        "verify_entries_per_s": verify.round(),
        "writers": WRITERS,
        "seconds_per_arm": d.as_secs(),
        "payload_bytes": payload(1).len(),
        "appended": ledger.count + busy.count,
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("ledger.json"), serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("\nledger benchmark ({WRITERS} concurrent writers, ~{} byte payloads, fsync on)", payload(1).len());
    println!("  plain INSERT      {:>9.0} rows/s    p50 {:>6.3} ms  p99 {:>6.3} ms", plain.per_s, plain.p50_ms, plain.p99_ms);
    println!(
        "  ledger append     {:>9.0} entries/s p50 {:>6.3} ms  p99 {:>6.3} ms  ratio {:.2}x",
        ledger.per_s,
        ledger.p50_ms,
        ledger.p99_ms,
        ledger.per_s / plain.per_s
    );
    println!(
        "  ledger, 128 in flight {:>6.0} entries/s p50 {:>6.3} ms  p99 {:>6.3} ms  ratio {:.2}x",
        busy.per_s,
        busy.p50_ms,
        busy.p99_ms,
        busy.per_s / plain.per_s
    );
    println!("  batches, 8 writers:     {}", report["ledger_batches"]);
    println!("  batches, 128 in flight: {}", report["ledger_128_in_flight_batches"]);
    println!("  WAL per row:            {}", report["wal"]);
    println!("  offline verify    {verify:>9.0} entries/s");
    println!("  wrote target/bench/ledger.json");
}
