//! Signed checkpoints: C2SP `tlog-checkpoint` bodies in C2SP `signed-note` envelopes,
//! signed with Ed25519.
//!
//! ```text
//! <origin>\n<tree size>\n<base64 root hash>\n
//! \n
//! — <key name> <base64(key id ‖ signature)>\n
//! ```
//! The key id is the first four bytes of SHA-256(name ‖ "\n" ‖ 0x01 ‖ public key), so a
//! rotated key gets a new id and old checkpoints still verify against the old key.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::{Signature, Signer as _, SigningKey, Verifier as _, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// The signature-type byte of Ed25519 in signed notes.
const ED25519: u8 = 0x01;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    #[error("malformed note: {0}")]
    Malformed(String),
    #[error("no signature by a known key (signed by: {0})")]
    UnknownKey(String),
    #[error("signature by {0} does not verify")]
    BadSignature(String),
    #[error("malformed verifier key: {0}")]
    BadKey(String),
}

fn key_id(name: &str, public: &VerifyingKey) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ED25519]);
    h.update(public.as_bytes());
    let d = h.finalize();
    [d[0], d[1], d[2], d[3]]
}

fn valid_name(name: &str) -> bool {
    !name.is_empty() && !name.contains('+') && !name.chars().any(char::is_whitespace)
}

/// A checkpoint signer: the ledger's private key and its name.
#[derive(Clone)]
pub struct NoteSigner {
    name: String,
    key: SigningKey,
    id: [u8; 4],
}

impl std::fmt::Debug for NoteSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key itself.
        f.debug_struct("NoteSigner").field("name", &self.name).field("key_id", &hex::encode(self.id)).finish()
    }
}

impl NoteSigner {
    pub fn new(name: &str, key: SigningKey) -> Result<Self, CheckpointError> {
        if !valid_name(name) {
            return Err(CheckpointError::BadKey(format!("key name {name:?} must be non-empty, without spaces or '+'")));
        }
        let id = key_id(name, &key.verifying_key());
        Ok(Self { name: name.to_owned(), key, id })
    }

    /// Reads a PKCS#8 PEM Ed25519 private key.
    pub fn from_pem(name: &str, pem: &str) -> Result<Self, CheckpointError> {
        let key = SigningKey::from_pkcs8_pem(pem).map_err(|e| CheckpointError::BadKey(e.to_string()))?;
        Self::new(name, key)
    }

    /// A new random key as PKCS#8 PEM.
    pub fn generate_pem() -> Result<String, CheckpointError> {
        let key = SigningKey::generate(&mut rand_core::OsRng);
        key.to_pkcs8_pem(LineEnding::LF).map(|p| p.to_string()).map_err(|e| CheckpointError::BadKey(e.to_string()))
    }

    pub fn key_id_hex(&self) -> String {
        hex::encode(self.id)
    }

    /// The verifier key in the C2SP signed-note format.
    pub fn verifier_key(&self) -> String {
        let mut bytes = vec![ED25519];
        bytes.extend_from_slice(self.key.verifying_key().as_bytes());
        format!("{}+{}+{}", self.name, hex::encode(self.id), B64.encode(bytes))
    }

    /// Signs a note body (which must end with a newline) and returns the whole note.
    pub fn sign(&self, body: &str) -> String {
        let sig = self.key.sign(body.as_bytes());
        let mut blob = self.id.to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        format!("{body}\n\u{2014} {} {}\n", self.name, B64.encode(blob))
    }

    /// Signs a checkpoint of the tree with `size` leaves and root `root`.
    pub fn sign_checkpoint(&self, origin: &str, size: u64, root: &Hash) -> String {
        self.sign(&checkpoint_body(origin, size, root))
    }
}

/// The tlog-checkpoint body.
pub fn checkpoint_body(origin: &str, size: u64, root: &Hash) -> String {
    format!("{origin}\n{size}\n{}\n", B64.encode(root))
}

/// A public key that verifies notes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierKey {
    pub name: String,
    pub id: [u8; 4],
    key: VerifyingKey,
}

impl VerifierKey {
    /// Parses `<name>+<key id hex>+<base64(0x01 ‖ key)>`.
    pub fn parse(text: &str) -> Result<Self, CheckpointError> {
        let bad = |m: &str| CheckpointError::BadKey(m.to_owned());
        let mut parts = text.trim().splitn(3, '+');
        let (name, id, key) = match (parts.next(), parts.next(), parts.next()) {
            (Some(n), Some(i), Some(k)) => (n, i, k),
            _ => return Err(bad("expected <name>+<key id>+<key>")),
        };
        let bytes = B64.decode(key).map_err(|_| bad("key is not base64"))?;
        if bytes.len() != 33 || bytes[0] != ED25519 {
            return Err(bad("only Ed25519 keys (type 0x01, 32 bytes) are supported"));
        }
        let mut raw = [0u8; 32];
        raw.copy_from_slice(&bytes[1..]);
        let key = VerifyingKey::from_bytes(&raw).map_err(|e| bad(&e.to_string()))?;
        let expected = key_id(name, &key);
        if hex::encode(expected) != id.to_ascii_lowercase() {
            return Err(bad("key id does not match the name and key"));
        }
        Ok(Self { name: name.to_owned(), id: expected, key })
    }

    /// Every key in a text (one per line; blank lines and `#` comments are skipped).
    pub fn parse_all(text: &str) -> Result<Vec<Self>, CheckpointError> {
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(Self::parse).collect()
    }
}

/// A checkpoint whose signature verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    pub origin: String,
    pub tree_size: u64,
    pub root: Hash,
    pub signed_by: String,
}

/// Verifies a signed checkpoint note against trusted keys and parses its body.
pub fn verify_checkpoint(note: &str, keys: &[VerifierKey]) -> Result<VerifiedCheckpoint, CheckpointError> {
    let malformed = |m: &str| CheckpointError::Malformed(m.to_owned());
    let split = note.find("\n\n").ok_or_else(|| malformed("no blank line before the signatures"))?;
    let body = &note[..=split];
    let sigs = &note[split + 2..];
    let mut signers = Vec::new();
    let mut verified_by = None;
    for line in sigs.lines() {
        let rest = line.strip_prefix("\u{2014} ").ok_or_else(|| malformed("signature line does not start with an em dash"))?;
        let (name, blob) = rest.rsplit_once(' ').ok_or_else(|| malformed("signature line has no signature"))?;
        let blob = B64.decode(blob).map_err(|_| malformed("signature is not base64"))?;
        if blob.len() < 4 {
            return Err(malformed("signature too short"));
        }
        signers.push(format!("{name}+{}", hex::encode(&blob[..4])));
        let Some(key) = keys.iter().find(|k| k.name == name && k.id[..] == blob[..4]) else { continue };
        let sig = Signature::from_slice(&blob[4..]).map_err(|_| CheckpointError::BadSignature(name.to_owned()))?;
        key.key.verify(body.as_bytes(), &sig).map_err(|_| CheckpointError::BadSignature(name.to_owned()))?;
        verified_by = Some(name.to_owned());
    }
    let signed_by = verified_by.ok_or_else(|| CheckpointError::UnknownKey(signers.join(", ")))?;
    let mut lines = body.lines();
    let origin = lines.next().filter(|o| !o.is_empty()).ok_or_else(|| malformed("no origin line"))?;
    let tree_size = lines.next().and_then(|s| s.parse::<u64>().ok()).ok_or_else(|| malformed("bad tree size line"))?;
    let root = lines
        .next()
        .and_then(|r| B64.decode(r).ok())
        .and_then(|r| <Hash>::try_from(r.as_slice()).ok())
        .ok_or_else(|| malformed("bad root hash line"))?;
    Ok(VerifiedCheckpoint { origin: origin.to_owned(), tree_size, root, signed_by })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(name: &str) -> NoteSigner {
        NoteSigner::from_pem(name, &NoteSigner::generate_pem().unwrap()).unwrap()
    }

    #[test]
    fn a_signed_checkpoint_verifies_with_the_published_verifier_key() {
        let s = signer("example.com/ledger");
        let key = VerifierKey::parse(&s.verifier_key()).unwrap();
        let note = s.sign_checkpoint("example.com/ledger", 42, &[7u8; 32]);
        let cp = verify_checkpoint(&note, &[key]).unwrap();
        assert_eq!((cp.origin.as_str(), cp.tree_size, cp.root), ("example.com/ledger", 42, [7u8; 32]));
        assert!(note.contains("\n\n\u{2014} example.com/ledger "));
    }

    #[test]
    fn a_checkpoint_by_an_unknown_key_is_rejected() {
        let note = signer("a").sign_checkpoint("o", 1, &[0u8; 32]);
        let other = VerifierKey::parse(&signer("a").verifier_key()).unwrap();
        assert!(matches!(verify_checkpoint(&note, &[other]), Err(CheckpointError::UnknownKey(_))));
    }

    #[test]
    fn an_altered_body_fails_its_signature() {
        let s = signer("a");
        let note = s.sign_checkpoint("o", 10, &[1u8; 32]).replacen("\n10\n", "\n11\n", 1);
        let key = VerifierKey::parse(&s.verifier_key()).unwrap();
        assert_eq!(verify_checkpoint(&note, &[key]), Err(CheckpointError::BadSignature("a".into())));
    }

    #[test]
    fn a_rotated_key_has_a_new_id_and_old_checkpoints_still_verify() {
        let (old, new) = (signer("ledger"), signer("ledger"));
        assert_ne!(old.key_id_hex(), new.key_id_hex());
        let keys = VerifierKey::parse_all(&format!("{}\n{}\n", old.verifier_key(), new.verifier_key())).unwrap();
        assert!(verify_checkpoint(&old.sign_checkpoint("o", 1, &[0u8; 32]), &keys).is_ok());
        assert!(verify_checkpoint(&new.sign_checkpoint("o", 2, &[0u8; 32]), &keys).is_ok());
    }

    #[test]
    fn a_verifier_key_whose_id_does_not_match_is_rejected() {
        let text = signer("a").verifier_key();
        let (name, rest) = text.split_once('+').unwrap();
        let forged = format!("{name}+00000000+{}", rest.split_once('+').unwrap().1);
        assert!(VerifierKey::parse(&forged).is_err());
    }

    #[test]
    fn the_debug_form_never_shows_the_private_key() {
        let s = signer("a");
        assert!(!format!("{s:?}").contains("SigningKey"));
    }
}
