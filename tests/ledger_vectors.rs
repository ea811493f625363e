//! The published ledger test vectors (docs/ledger-test-vectors.json) against the independent
//! Python verifier, written from docs/ledger-format.md alone. That this implementation
//! produces the same vectors is `crates/ledger/tests/vectors.rs` (`cargo test -p ledger`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

const PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/ledger-test-vectors.json");

#[test]
fn the_independent_python_verifier_accepts_the_published_vectors() {
    let python = std::env::var("AUMOS_DEV_PYTHON").expect("AUMOS_DEV_PYTHON (a Python with PyNaCl): run via make test");
    let out = std::process::Command::new(python)
        .args([concat!(env!("CARGO_MANIFEST_DIR"), "/tests/verify_ledger.py"), "vectors", PATH])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
}
