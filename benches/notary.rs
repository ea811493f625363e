//! `make bench-ledger` (second part): the notary's memory does not grow with the ledger.
//!
//! On a private audit cluster, the ledger is filled with synthetic entries (rows that
//! satisfy the chain constraints, inserted by the table owner) to 10,000 and then to
//! 1,000,000 entries; after each, a fresh notary in this process catches up (hashing every
//! entry and storing the tree nodes) and signs a checkpoint. The process's resident memory
//! is read from /proc after each. Writes target/bench/notary.json.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use governance_engine::adapters::ledger::notary::{Notary, NotaryConfig};
use governance_engine::adapters::ledger::LedgerReader;
use ledger::checkpoint::NoteSigner;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection};

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run `make bench-ledger`"))
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: f64 = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap().split_whitespace().nth(1).unwrap().parse().unwrap();
    kb / 1024.0
}

/// Fills the ledger up to `target` entries with ~500-byte payloads; hashes are synthetic
/// (the notary hashes what is stored, whatever it is).
async fn fill_to(admin: &mut PgConnection, target: i64) {
    let (head, head_hash): (i64, Vec<u8>) = sqlx::query_as(
        "SELECT COALESCE(max(seq), 0), COALESCE((SELECT hash FROM gov_audit_trail_entries ORDER BY seq DESC LIMIT 1), decode(repeat('00', 32), 'hex')) \
         FROM gov_audit_trail_entries",
    )
    .fetch_one(&mut *admin)
    .await
    .unwrap();
    let mut from = head + 1;
    let mut prev_of_first = head_hash;
    while from <= target {
        let to = (from + 99_999).min(target);
        sqlx::query(
            "INSERT INTO gov_audit_trail_entries (seq, tenant_id, aggregate_type, aggregate_id, aggregate_seq, event_type, \
             event_version, payload, actor, recorded_at, prev_hash, hash) \
             SELECT s, '00000000-0000-4000-8000-000000000001', 'Bench', 'bench-' || s, 1, 'Written', '1', \
                    json_build_object('decision_id', md5(s::text), 'input', repeat('x', 400)), 'bench', now(), \
                    CASE WHEN s = $1 THEN $3 ELSE sha256(int8send(s - 1)) END, sha256(int8send(s)) \
             FROM generate_series($1::bigint, $2::bigint) AS s",
        )
        .bind(from)
        .bind(to)
        .bind(&prev_of_first)
        .execute(&mut *admin)
        .await
        .unwrap();
        prev_of_first = sha256_of(to);
        from = to + 1;
    }
}

/// The synthetic hash of entry `seq`, as the fill writes it: SHA-256 of its big-endian seq.
fn sha256_of(seq: i64) -> Vec<u8> {
    use sha2::Digest;
    sha2::Sha256::digest(seq.to_be_bytes()).to_vec()
}

async fn catch_up(reader: &LedgerReader, writer: &sqlx::PgPool, signer_pem: &str) -> (Duration, f64, i64) {
    let signer = NoteSigner::from_pem("bench.example/ledger", signer_pem).unwrap();
    let config = NotaryConfig { origin: "bench.example/ledger".into(), every_entries: u64::MAX, every: Duration::from_secs(3600) };
    let notary = Notary::new(reader.clone(), writer.clone(), signer, config);
    let start = Instant::now();
    let cp = notary.checkpoint_now().await.unwrap();
    (start.elapsed(), rss_mib(), cp.tree_size)
}

#[tokio::main]
async fn main() {
    let mut admin = PgConnection::connect(&env("AUMOS_GOVERNANCE_AUDIT_DB_ADMIN_URL")).await.unwrap();
    let reader =
        LedgerReader::new(PgPoolOptions::new().max_connections(2).connect(&env("AUMOS_GOVERNANCE_AUDIT_DB_READER_URL")).await.unwrap());
    let writer = PgPoolOptions::new().max_connections(2).connect(&env("AUMOS_GOVERNANCE_AUDIT_DB_URL")).await.unwrap();
    let pem = NoteSigner::generate_pem().unwrap();
    let small: i64 = std::env::var("BENCH_NOTARY_SMALL").ok().and_then(|s| s.parse().ok()).unwrap_or(10_000);
    let large: i64 = std::env::var("BENCH_NOTARY_LARGE").ok().and_then(|s| s.parse().ok()).unwrap_or(1_000_000);
    // The ledger bench may have appended real entries first: both sizes count from there.
    let head: i64 = sqlx::query_scalar("SELECT COALESCE(max(seq), 0) FROM gov_audit_trail_entries").fetch_one(&mut admin).await.unwrap();
    let (small, large) = (head.max(small), head.max(small) + large);
    eprintln!("filling the ledger to {small} entries");
    fill_to(&mut admin, small).await;
    let (t_small, rss_small, n_small) = catch_up(&reader, &writer, &pem).await;
    eprintln!("filling the ledger to {large} entries");
    fill_to(&mut admin, large).await;
    let (t_large, rss_large, n_large) = catch_up(&reader, &writer, &pem).await;
    // A restart: a fresh notary over the stored nodes reads no old entry.
    let (t_restart, rss_restart, _) = catch_up(&reader, &writer, &pem).await;
    let caught_up = (n_large - n_small) as f64 / t_large.as_secs_f64();
    let report = serde_json::json!({
        "notary_rss_mib_at_small": (rss_small * 10.0).round() / 10.0,
        "notary_rss_mib_at_large": (rss_large * 10.0).round() / 10.0,
        "notary_rss_mib_after_restart": (rss_restart * 10.0).round() / 10.0,
        "small_entries": n_small,
        "large_entries": n_large,
        "notary_catch_up_entries_per_s": caught_up.round(),
        "notary_restart_ms": (t_restart.as_secs_f64() * 1e4).round() / 10.0,
        "first_catch_up_ms": (t_small.as_secs_f64() * 1e4).round() / 10.0,
    });
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("notary.json"), serde_json::to_string_pretty(&report).unwrap()).unwrap();
    println!("\nnotary memory (resident set of the whole bench process)");
    println!("  after {n_small:>9} entries  {rss_small:>7.1} MiB");
    println!("  after {n_large:>9} entries  {rss_large:>7.1} MiB  (caught up at {caught_up:.0} entries/s)");
    println!("  fresh notary over stored nodes: {:.1} ms, {rss_restart:.1} MiB", t_restart.as_secs_f64() * 1e3);
    println!("  wrote target/bench/notary.json");
}
