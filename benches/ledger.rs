//! `make bench-ledger`: the ledger's append throughput and latency against plain INSERTs
//! on the same audit cluster in the same run (in turns, `BENCH_ROUNDS`), at 8 writers, at
//! 128 appends in flight and with full batches of 128 entries (the appender's ceiling at
//! that batch size), how busy the machine's cores were during each arm, and offline
//! verification speed.
//!
//! Needs the audit cluster's URLs in the environment (scripts/bench-ledger.sh provides a
//! private cluster). Writes target/bench/ledger.json.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use governance_engine::adapters::ledger::{Appender, NewEntry, DEFAULT_BATCH_MAX_BYTES};
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

/// The entries of each append of the full-batch arm: as many as the 128-in-flight arm
/// (8 writers x 16) can put in one batch at most.
const FULL_BATCH: usize = WRITERS * 16;

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

/// An arm's turns so far: latencies (ms), time run, WAL counters, metrics before and after
/// each turn, and the machine's busy and total CPU ticks over them.
#[derive(Default)]
struct Arm {
    lat: Vec<f64>,
    elapsed: Duration,
    wal: Wal,
    scrapes: Vec<(String, String)>,
    ticks: (f64, f64),
}

impl Arm {
    /// How busy the machine's cores were during the arm's turns (0 to 1): an arm that
    /// leaves them idle is held back by a serial path, not by the machine's CPU.
    fn machine_busy(&self) -> f64 {
        let (busy, total) = self.ticks;
        if total > 0.0 {
            (busy / total * 100.0).round() / 100.0
        } else {
            0.0
        }
    }
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

/// The plain-INSERT arm's table: the ledger's columns and its aggregate key, no chain.
async fn plain_table(create: bool) {
    let mut admin = PgConnection::connect(&env("AUMOS_GOVERNANCE_AUDIT_DB_ADMIN_URL")).await.unwrap();
    let sql = if create {
        "DROP TABLE IF EXISTS gov_bench_plain_entries; \
         CREATE TABLE gov_bench_plain_entries (seq bigserial PRIMARY KEY, tenant_id uuid NOT NULL, aggregate_type text NOT NULL, \
         aggregate_id text NOT NULL, aggregate_seq bigint NOT NULL, event_type text NOT NULL, event_version text NOT NULL, payload json NOT NULL, \
         actor text NOT NULL, request_id text, trace_id text, causation_id text, correlation_id text, recorded_at timestamptz NOT NULL, \
         prev_hash bytea NOT NULL, hash bytea NOT NULL, UNIQUE (aggregate_type, aggregate_id, aggregate_seq)); \
         GRANT INSERT ON gov_bench_plain_entries TO gov_ledger_writer; GRANT USAGE ON SEQUENCE gov_bench_plain_entries_seq_seq TO gov_ledger_writer;"
    } else {
        "DROP TABLE gov_bench_plain_entries"
    };
    sqlx::raw_sql(sql).execute(&mut admin).await.unwrap();
}

/// One turn of plain single-row INSERTs: latencies (ms) and how long it ran.
async fn plain_inserts(d: Duration) -> (Vec<f64>, Duration) {
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
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
                .bind(format!("{tenant}-{i}"))
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
    (all, start.elapsed())
}

/// One turn of appends through the group-commit appender by `callers` concurrent callers,
/// each append carrying `per_append` entries, one for each of the caller's `per_append`
/// aggregates (so a full batch writes the aggregate key at 128 places, as 128 callers
/// do): latencies of the appends (ms) and how long it ran.
async fn ledger_appends(d: Duration, callers: usize, per_append: usize) -> (Vec<f64>, Duration) {
    // The service's own pool settings (no ping before each statement).
    let pool = governance_engine::app::pool(&env("AUMOS_GOVERNANCE_AUDIT_DB_URL"), 4, "bench ledger writer").await.unwrap();
    let (appender, handle) = Appender::start(pool, DEFAULT_BATCH_MAX_BYTES);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..callers {
        let handle = handle.clone();
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut i) = (Vec::new(), 0u64);
            let tenant = uuid::Uuid::new_v4();
            // Random ids, so the aggregates of one caller lie apart in the aggregate key as
            // those of different callers do.
            let ids: Vec<String> = (0..per_append).map(|a| format!("bench-{}-{w}-{a}", uuid::Uuid::new_v4())).collect();
            while start.elapsed() < d {
                i += 1;
                let entries: Vec<NewEntry> = (0..per_append)
                    .map(|a| NewEntry {
                        tenant_id: tenant,
                        aggregate_type: "Bench".into(),
                        aggregate_id: ids[a].clone(),
                        aggregate_seq: i as i64,
                        event_type: "Written".into(),
                        event_version: "1".into(),
                        payload: payload(i),
                        metadata: EntryMetadata { actor: "bench".into(), request_id: Some("r".into()), ..Default::default() },
                    })
                    .collect();
                let t = Instant::now();
                handle.append(entries).await.expect("append");
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
    let elapsed = start.elapsed();
    appender.join().await;
    (all, elapsed)
}

/// The audit cluster's WAL counters (`pg_stat_wal`, `pg_stat_bgwriter`): what an arm made
/// PostgreSQL write and flush, so a difference between arms can be traced to its cause.
#[derive(Clone, Copy, Default)]
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

impl Wal {
    /// `self - before`, plus `acc`: an arm's counters summed over its turns.
    fn added(self, before: Wal, acc: Wal) -> Wal {
        Wal {
            records: acc.records + self.records - before.records,
            fpi: acc.fpi + self.fpi - before.fpi,
            bytes: acc.bytes + self.bytes - before.bytes,
            syncs: acc.syncs + self.syncs - before.syncs,
            checkpoints: acc.checkpoints + self.checkpoints - before.checkpoints,
        }
    }
}

/// Per row written, from an arm's counters ([`Wal::added`] over its turns): WAL bytes,
/// records, full-page images, and the flushes and checkpoints in between.
fn wal_per_row(w: Wal, rows: usize) -> serde_json::Value {
    let n = rows.max(1) as f64;
    serde_json::json!({
        "wal_bytes_per_row": (w.bytes / n).round(),
        "wal_records_per_row": (w.records as f64 / n * 100.0).round() / 100.0,
        "full_page_images_per_row": (w.fpi as f64 / n * 1000.0).round() / 1000.0,
        "wal_flushes": w.syncs,
        "checkpoints": w.checkpoints,
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
    // The four arms run side by side, in BENCH_ROUNDS turns each (default 3, 500 ms idle
    // before each turn), so that a drift of this machine's speed during the run moves all
    // of them alike. The fourth measures the appender's ceiling at the 128-in-flight arm's
    // largest batch: one caller whose every append is a full batch of 128 entries, so each
    // batch is as full as 128 in flight could ever make it and none waits to be joined.
    let rounds: u32 = std::env::var("BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3).max(1);
    eprintln!(
        "plain single-row INSERTs ({WRITERS} writers) | ledger appends ({WRITERS} writers) | ledger appends ({WRITERS} writers x 16 in flight) | \
         ledger appends of {FULL_BATCH} entries (1 caller): {} s each, in {rounds} turns",
        d.as_secs()
    );
    // The appender records each batch's commit time and size in the process's metrics.
    let metrics = || governance_engine::adapters::metrics::get().render();
    plain_table(true).await;
    let mut arms: [Arm; 4] = Default::default();
    for _ in 0..rounds {
        for (i, arm) in arms.iter_mut().enumerate() {
            tokio::time::sleep(Duration::from_millis(500)).await;
            let (w0, m0, t0) = (wal().await, metrics(), support::machine_ticks());
            let (lat, elapsed) = match i {
                0 => plain_inserts(d / rounds).await,
                1 => ledger_appends(d / rounds, WRITERS, 1).await,
                2 => ledger_appends(d / rounds, WRITERS * 16, 1).await,
                _ => ledger_appends(d / rounds, 1, FULL_BATCH).await,
            };
            let t1 = support::machine_ticks();
            arm.ticks = (arm.ticks.0 + t1.0 - t0.0, arm.ticks.1 + t1.1 - t0.1);
            arm.wal = wal().await.added(w0, arm.wal);
            arm.scrapes.push((m0, metrics()));
            arm.lat.extend(lat);
            arm.elapsed += elapsed;
        }
    }
    plain_table(false).await;
    let machine_busy = serde_json::json!({"plain_insert": arms[0].machine_busy(), "ledger": arms[1].machine_busy(),
        "ledger_128_in_flight": arms[2].machine_busy(), "ledger_full_batches": arms[3].machine_busy()});
    let [plain, ledger, busy, full] = arms;
    let (appends_8, appends_128, appends_full) =
        (histogram::appends_over(&ledger.scrapes), histogram::appends_over(&busy.scrapes), histogram::appends_over(&full.scrapes));
    let (plain_wal, ledger_wal, busy_wal, full_wal) = (plain.wal, ledger.wal, busy.wal, full.wal);
    let (plain, ledger, busy, full) = (
        summarise(plain.lat, plain.elapsed),
        summarise(ledger.lat, ledger.elapsed),
        summarise(busy.lat, busy.elapsed),
        summarise(full.lat, full.elapsed),
    );
    // The full-batch arm's latencies are of appends of FULL_BATCH entries each.
    let full_entries_per_s = full.per_s * FULL_BATCH as f64;
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
        "ledger_full_batches_events_per_s": full_entries_per_s.round(),
        "ledger_full_batches_append_p50_ms": (full.p50_ms * 1000.0).round() / 1000.0,
        "ledger_full_batches_append_p99_ms": (full.p99_ms * 1000.0).round() / 1000.0,
        "ratio_full_batches": (full_entries_per_s / plain.per_s * 100.0).round() / 100.0,
        "wal": {"plain_insert": wal_per_row(plain_wal, plain.count), "ledger": wal_per_row(ledger_wal, ledger.count),
            "ledger_128_in_flight": wal_per_row(busy_wal, busy.count), "ledger_full_batches": wal_per_row(full_wal, full.count * FULL_BATCH)},
        "machine_busy": machine_busy,
        "ledger_batches": appends_8,
        "ledger_128_in_flight_batches": appends_128,
        "ledger_full_batches_batches": appends_full,
        "full_batch_entries": FULL_BATCH,
        "verify_entries_per_s": verify.round(),
        "writers": WRITERS,
        "seconds_per_arm": d.as_secs(),
        "rounds_per_arm": rounds,
        "payload_bytes": payload(1).len(),
        "appended": ledger.count + busy.count + full.count * FULL_BATCH,
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
    println!(
        "  ledger, full batches  {:>6.0} entries/s (appends of {FULL_BATCH}: p50 {:>6.3} ms  p99 {:>6.3} ms)  ratio {:.2}x",
        full_entries_per_s,
        full.p50_ms,
        full.p99_ms,
        full_entries_per_s / plain.per_s
    );
    println!("  batches, 8 writers:     {}", report["ledger_batches"]);
    println!("  batches, 128 in flight: {}", report["ledger_128_in_flight_batches"]);
    println!("  batches, full:          {}", report["ledger_full_batches_batches"]);
    println!("  WAL per row:            {}", report["wal"]);
    println!("  machine busy (of its cores, per arm): {}", report["machine_busy"]);
    println!("  offline verify    {verify:>9.0} entries/s");
    println!("  wrote target/bench/ledger.json");
}
