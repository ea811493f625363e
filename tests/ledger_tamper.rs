//! The tamper matrix: from a valid export, and from a real audit cluster tampered with as a
//! superuser with the triggers bypassed, `ledger verify` catches every change and names the
//! first bad seq. Each test runs on its own embedded clusters, since it breaks the ledger.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::*;
use governance_engine::adapters::devstack::Cluster;
use ledger::checkpoint::NoteSigner;
use ledger::export::{ExportEntry, ExportLine, ProofFile};
use ledger::LedgerEntry;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

/// 12 entries from two tenants, with signed checkpoints at sizes 4, 8 and 12.
async fn workload(e: &Embedded) -> (Uuid, String) {
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let (ta, tb) = (e.token(a, "governance:admin"), e.token(b, "governance:admin"));
    // Six creates of two entries each (the policy and its name claim), a checkpoint after
    // every four entries: checkpoints at tree sizes 4, 8 and 12.
    for i in 0..6 {
        let (t, tok) = if i % 3 == 0 { (b, &tb) } else { (a, &ta) };
        let (status, body) = e.svc.call(Method::POST, "/api/v1/policies", Some(t), Some(tok), Some(&policy_body(&format!("p{i}")))).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        if i % 2 == 1 {
            let (status, body) = e.svc.call(Method::POST, "/api/v1/ledger/checkpoints", Some(a), Some(&ta), None).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
        }
    }
    (a, ta)
}

async fn public_key(e: &Embedded, tenant: Uuid, tok: &str) -> std::path::PathBuf {
    let r = e
        .svc
        .client
        .get(format!("{}/api/v1/ledger/public-key", e.svc.base))
        .bearer_auth(tok)
        .header("X-Tenant-ID", tenant.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let path = e.dir.join("verifier.key");
    std::fs::write(&path, r.text().await.unwrap()).unwrap();
    path
}

fn verify(e: &Embedded, args: &[&str]) -> Result<String, String> {
    let (ok, out, err) = cli(&e.dir, args);
    if ok {
        Ok(out)
    } else {
        Err(err)
    }
}

fn read_lines(path: &Path) -> Vec<ExportLine> {
    std::fs::read_to_string(path).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

fn write_lines(path: &Path, lines: &[ExportLine]) {
    let text: Vec<String> = lines.iter().map(|l| serde_json::to_string(l).unwrap()).collect();
    std::fs::write(path, text.join("\n") + "\n").unwrap();
}

fn entry_pos(lines: &[ExportLine], seq: i64) -> usize {
    lines.iter().position(|l| matches!(l, ExportLine::Entry(e) if e.seq == seq)).unwrap()
}

fn entry_mut(lines: &mut [ExportLine], seq: i64) -> &mut ExportEntry {
    let i = entry_pos(lines, seq);
    match &mut lines[i] {
        ExportLine::Entry(e) => e,
        ExportLine::Checkpoint(_) => unreachable!(),
    }
}

/// Recomputes hashes from `from` on, as an attacker who rewrites history would.
fn rechain(lines: &mut [ExportLine], from: i64) {
    let mut prev: Option<String> = None;
    for l in lines.iter_mut() {
        if let ExportLine::Entry(x) = l {
            if x.seq >= from {
                if let Some(p) = &prev {
                    x.prev_hash = p.clone();
                }
                let mut entry = LedgerEntry::try_from(&*x).unwrap();
                entry.hash = entry.computed_hash();
                x.hash = hex::encode(entry.hash);
            }
            prev = Some(x.hash.clone());
        }
    }
}

fn expect_bad(result: Result<String, String>, seq: i64, what: &str) {
    let err = result.expect_err(what);
    assert!(err.contains(&format!("first bad seq {seq}:")), "{what}: expected seq {seq}, got: {err}");
}

#[tokio::test]
async fn verify_catches_every_tampering_of_an_export_and_names_the_first_bad_seq() {
    let e = Embedded::start(&[]).await;
    let (tenant, tok) = workload(&e).await;
    let key = public_key(&e, tenant, &tok).await;
    let key = key.to_str().unwrap();
    let export = e.dir.join("ledger.jsonl");
    let (ok, _, err) = cli(&e.dir, &["ledger", "export", "--out", export.to_str().unwrap()]);
    assert!(ok, "{err}");
    let good = read_lines(&export);
    let sizes: Vec<u64> = good.iter().filter_map(|l| if let ExportLine::Checkpoint(c) = l { Some(c.tree_size) } else { None }).collect();
    // The notary may add one of its own (its first tick runs when it starts).
    assert!([4, 8, 12].iter().all(|n| sizes.contains(n)), "{sizes:?}");
    let out = verify(&e, &["ledger", "verify", export.to_str().unwrap(), "--public-key", key]).unwrap();
    assert!(out.contains("OK: 12 entries"), "{out}");

    // The independent Python verifier agrees on the valid export.
    let py = std::process::Command::new(var("AUMOS_DEV_PYTHON"))
        .args([concat!(env!("CARGO_MANIFEST_DIR"), "/tests/verify_ledger.py"), "export", export.to_str().unwrap(), "--public-key", key])
        .output()
        .unwrap();
    assert!(py.status.success(), "{}", String::from_utf8_lossy(&py.stderr));

    let case = |name: &str, mutate: &dyn Fn(&mut Vec<ExportLine>), seq: i64| {
        let mut lines = good.clone();
        mutate(&mut lines);
        let path = e.dir.join(format!("{name}.jsonl"));
        write_lines(&path, &lines);
        expect_bad(verify(&e, &["ledger", "verify", path.to_str().unwrap(), "--public-key", key]), seq, name);
        let py = std::process::Command::new(var("AUMOS_DEV_PYTHON"))
            .args([concat!(env!("CARGO_MANIFEST_DIR"), "/tests/verify_ledger.py"), "export", path.to_str().unwrap(), "--public-key", key])
            .output()
            .unwrap();
        assert!(!py.status.success(), "python verifier also rejects {name}");
    };
    case("payload-byte", &|l| entry_mut(l, 5).payload = entry_mut(l, 5).payload.replacen("p", "q", 1), 5);
    case("metadata", &|l| entry_mut(l, 6).request_id = Some("forged-request".into()), 6);
    case(
        "deleted-middle",
        &|l| {
            let i = entry_pos(l, 7);
            l.remove(i);
        },
        7,
    );
    case(
        "swapped",
        &|l| {
            let (i, j) = (entry_pos(l, 3), entry_pos(l, 4));
            l.swap(i, j);
        },
        3,
    );
    case("truncated-tail", &|l| l.retain(|x| !matches!(x, ExportLine::Entry(e) if e.seq > 10)), 11);
    case(
        "inserted-forged",
        &|l| {
            let mut forged = entry_mut(l, 5).clone();
            forged.seq = 6;
            forged.payload = r#"{"name":"forged"}"#.into();
            forged.prev_hash = entry_mut(l, 5).hash.clone();
            let mut entry = LedgerEntry::try_from(&forged).unwrap();
            entry.hash = entry.computed_hash();
            forged.hash = hex::encode(entry.hash);
            for x in l.iter_mut() {
                if let ExportLine::Entry(x) = x {
                    if x.seq >= 6 {
                        x.seq += 1;
                    }
                }
            }
            let i = entry_pos(l, 7);
            l.insert(i, ExportLine::Entry(forged));
        },
        6,
    );
    case("moved-to-another-tenant", &|l| entry_mut(l, 8).tenant_id = Uuid::new_v4().to_string(), 8);
    case(
        "rewritten-and-rechained",
        &|l| {
            entry_mut(l, 2).payload = r#"{"name":"rewritten"}"#.into();
            rechain(l, 2);
        },
        4,
    );
    case(
        "checkpoint-by-unknown-key",
        &|l| {
            let mallory = NoteSigner::from_pem("aumos-governance.local/ledger", &NoteSigner::generate_pem().unwrap()).unwrap();
            for x in l.iter_mut() {
                if let ExportLine::Checkpoint(c) = x {
                    if c.tree_size == 8 {
                        let root: [u8; 32] = hex::decode(&c.root_hash).unwrap().try_into().unwrap();
                        c.note = mallory.sign_checkpoint("aumos-governance.local/ledger", 8, &root);
                    }
                }
            }
        },
        8,
    );
    case(
        "checkpoint-root-mismatch",
        &|l| {
            // Signed with the real key (as a compromised signer would) over a wrong root.
            let pem = std::fs::read_to_string(e.dir.join("secrets/ledger-ed25519.pem")).unwrap();
            let signer = NoteSigner::from_pem("aumos-governance.local/ledger", &pem).unwrap();
            for x in l.iter_mut() {
                if let ExportLine::Checkpoint(c) = x {
                    if c.tree_size == 8 {
                        c.note = signer.sign_checkpoint("aumos-governance.local/ledger", 8, &[0x42; 32]);
                    }
                }
            }
        },
        8,
    );
    case(
        "checkpoint-note-edited",
        &|l| {
            for x in l.iter_mut() {
                if let ExportLine::Checkpoint(c) = x {
                    if c.tree_size == 4 {
                        c.note = c.note.replacen("\n4\n", "\n3\n", 1);
                    }
                }
            }
        },
        4,
    );

    // An auditor's kept checkpoint exposes a truncation that also removed the checkpoints.
    let kept = e.dir.join("kept.note");
    if let Some(ExportLine::Checkpoint(c)) = good.iter().rev().find(|l| matches!(l, ExportLine::Checkpoint(_))) {
        std::fs::write(&kept, &c.note).unwrap();
    }
    let mut cut = good.clone();
    cut.retain(|x| match x {
        ExportLine::Entry(e) => e.seq <= 9,
        ExportLine::Checkpoint(c) => c.tree_size <= 8,
    });
    let path = e.dir.join("cut.jsonl");
    write_lines(&path, &cut);
    assert!(
        verify(&e, &["ledger", "verify", path.to_str().unwrap(), "--public-key", key]).is_ok(),
        "without outside knowledge a clean cut looks valid"
    );
    expect_bad(
        verify(&e, &["ledger", "verify", path.to_str().unwrap(), "--public-key", key, "--checkpoint", kept.to_str().unwrap()]),
        10,
        "kept checkpoint",
    );

    e.finish().await;
}

#[tokio::test]
async fn verify_proof_rejects_forged_inclusion_and_consistency_proofs() {
    let e = Embedded::start(&[]).await;
    let (tenant, tok) = workload(&e).await;
    let key = public_key(&e, tenant, &tok).await;
    let key = key.to_str().unwrap();

    // A proof of one of the tenant's own entries, at tree size 8.
    let (_, list) =
        e.svc.call(Method::GET, "/api/v1/policies?page_size=100&sort_by=created_at&sort_order=asc", Some(tenant), Some(&tok), None).await;
    let seq = list["items"].as_array().unwrap().iter().map(|p| p["last_seq"].as_i64().unwrap()).find(|s| *s <= 8).unwrap();
    let (status, incl) =
        e.svc.call(Method::GET, &format!("/api/v1/ledger/entries/{seq}/proof?tree_size=8"), Some(tenant), Some(&tok), None).await;
    assert_eq!(status, StatusCode::OK, "{incl}");
    let (status, cons) = e.svc.call(Method::GET, "/api/v1/ledger/consistency?from=4&to=12", Some(tenant), Some(&tok), None).await;
    assert_eq!(status, StatusCode::OK, "{cons}");

    let check = |name: &str, proof: &Value| {
        let path = e.dir.join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_string(proof).unwrap()).unwrap();
        verify(&e, &["ledger", "verify-proof", path.to_str().unwrap(), "--public-key", key])
    };
    assert!(check("inclusion", &incl).unwrap().contains(&format!("entry {seq} is included")));
    assert!(check("consistency", &cons).unwrap().contains("extends"));

    let flip = |v: &Value, field: &str, i: usize| {
        let mut v = v.clone();
        let h = v[field][i].as_str().unwrap().to_owned();
        let c = if h.starts_with('0') { "1" } else { "0" };
        v[field][i] = Value::String(format!("{c}{}", &h[1..]));
        v
    };
    let forged: Vec<(&str, Value)> = vec![
        ("inclusion-flipped-path", flip(&incl, "inclusion_proof", 0)),
        ("inclusion-other-index", {
            let mut v = incl.clone();
            v["leaf_index"] = Value::from(v["leaf_index"].as_u64().unwrap() ^ 1);
            v
        }),
        ("inclusion-altered-entry", {
            let mut v = incl.clone();
            v["entry"]["actor"] = Value::from("mallory");
            v
        }),
        ("inclusion-extra-element", {
            let mut v = incl.clone();
            v["inclusion_proof"].as_array_mut().unwrap().push(Value::from("00".repeat(32)));
            v
        }),
        ("inclusion-dropped-element", {
            let mut v = incl.clone();
            v["inclusion_proof"].as_array_mut().unwrap().pop();
            v
        }),
        ("consistency-flipped", flip(&cons, "consistency_proof", 0)),
        ("consistency-empty", {
            let mut v = cons.clone();
            v["consistency_proof"] = Value::Array(vec![]);
            v
        }),
        ("consistency-reversed", {
            let mut v = cons.clone();
            let (a, b) = (v["from_checkpoint"].clone(), v["to_checkpoint"].clone());
            v["from_checkpoint"] = b;
            v["to_checkpoint"] = a;
            v
        }),
        ("consistency-forked-root", {
            // A checkpoint validly signed over a different history (a fork) is not
            // consistent with the real one.
            let pem = std::fs::read_to_string(e.dir.join("secrets/ledger-ed25519.pem")).unwrap();
            let signer = NoteSigner::from_pem("aumos-governance.local/ledger", &pem).unwrap();
            let mut v = cons.clone();
            v["to_checkpoint"] = Value::from(signer.sign_checkpoint("aumos-governance.local/ledger", 12, &[7u8; 32]));
            v
        }),
    ];
    for (name, proof) in forged {
        assert!(check(name, &proof).is_err(), "{name} must be rejected");
    }
    // The typed form still parses, so the rejections above are verification failures.
    let _: ProofFile = serde_json::from_value(incl).unwrap();

    // Another tenant cannot get a proof of this tenant's entry.
    let other = Uuid::new_v4();
    let (status, _) =
        e.svc.call(Method::GET, &format!("/api/v1/ledger/entries/{seq}/proof"), Some(other), Some(&e.token(other, "auditor")), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    e.finish().await;
}

/// Runs SQL as the audit superuser with the append-only triggers bypassed.
async fn tamper(e: &Embedded, sql: &str) {
    let mut su = PgConnection::connect(&e.superuser_url(Cluster::Audit)).await.unwrap();
    sqlx::raw_sql(&format!("SET session_replication_role = replica; {sql}")).execute(&mut su).await.unwrap();
}

#[tokio::test]
async fn verify_database_catches_a_superuser_who_rewrites_the_audit_cluster() {
    let e = Embedded::start(&[]).await;
    let (tenant, tok) = workload(&e).await;
    let key = public_key(&e, tenant, &tok).await;
    let key = key.to_str().unwrap().to_owned();
    let ok = verify(&e, &["ledger", "verify", "--database", "--public-key", &key]).unwrap();
    assert!(ok.contains("OK: 12 entries"), "{ok}");
    tamper(
        &e,
        "CREATE TABLE backup_entries AS SELECT * FROM gov_audit_trail_entries; \
         CREATE TABLE backup_checkpoints AS SELECT * FROM gov_audit_checkpoints",
    )
    .await;
    let restore = "DELETE FROM gov_audit_trail_entries; INSERT INTO gov_audit_trail_entries SELECT * FROM backup_entries; \
                   DELETE FROM gov_audit_checkpoints; INSERT INTO gov_audit_checkpoints SELECT * FROM backup_checkpoints";
    let pem = std::fs::read_to_string(e.dir.join("secrets/ledger-ed25519.pem")).unwrap();
    let wrong_root_note = NoteSigner::from_pem("aumos-governance.local/ledger", &pem).unwrap().sign_checkpoint(
        "aumos-governance.local/ledger",
        10,
        &[9u8; 32],
    );
    let mallory = NoteSigner::from_pem("aumos-governance.local/ledger", &NoteSigner::generate_pem().unwrap()).unwrap();
    let unknown_note = mallory.sign_checkpoint("aumos-governance.local/ledger", 11, &[9u8; 32]);
    let cases: Vec<(&str, String, i64)> = vec![
        // Even seqs are the policies (odd ones their name claims): seq 6 holds "test policy".
        ("payload", "UPDATE gov_audit_trail_entries SET payload = replace(payload::text, 'test policy', 'tost policy')::json WHERE seq = 6".into(), 6),
        ("metadata", "UPDATE gov_audit_trail_entries SET actor = 'mallory' WHERE seq = 5".into(), 5),
        ("deleted-middle", "DELETE FROM gov_audit_trail_entries WHERE seq = 7".into(), 7),
        (
            "swapped",
            "UPDATE gov_audit_trail_entries SET seq = 1000003 WHERE seq = 3; UPDATE gov_audit_trail_entries SET seq = 3 WHERE seq = 4; \
             UPDATE gov_audit_trail_entries SET seq = 4 WHERE seq = 1000003"
                .into(),
            3,
        ),
        ("truncated-tail", "DELETE FROM gov_audit_trail_entries WHERE seq > 10".into(), 11),
        (
            "inserted-forged",
            "UPDATE gov_audit_trail_entries SET seq = seq + 1000001 WHERE seq >= 6; UPDATE gov_audit_trail_entries SET seq = seq - 1000000 WHERE seq > 1000000; \
             INSERT INTO gov_audit_trail_entries SELECT 6, tenant_id, aggregate_type, 'forged', 1, event_type, event_version, payload, actor, \
             request_id, trace_id, causation_id, correlation_id, recorded_at, hash, hash FROM gov_audit_trail_entries WHERE seq = 5"
                .into(),
            6,
        ),
        ("moved-tenant", "UPDATE gov_audit_trail_entries SET tenant_id = gen_random_uuid() WHERE seq = 8".into(), 8),
        ("checkpoint-unknown-key", format!("INSERT INTO gov_audit_checkpoints (tree_size, root_hash, origin, key_id, note) VALUES (11, decode(repeat('09', 32), 'hex'), 'o', 'k', $${unknown_note}$$)"), 11),
        ("checkpoint-wrong-root", format!("INSERT INTO gov_audit_checkpoints (tree_size, root_hash, origin, key_id, note) VALUES (10, decode(repeat('09', 32), 'hex'), 'o', 'k', $${wrong_root_note}$$)"), 10),
    ];
    for (name, sql, seq) in cases {
        tamper(&e, &sql).await;
        expect_bad(verify(&e, &["ledger", "verify", "--database", "--public-key", &key]), seq, name);
        tamper(&e, restore).await;
        assert!(verify(&e, &["ledger", "verify", "--database", "--public-key", &key]).is_ok(), "restored after {name}");
    }
    e.finish().await;
}
