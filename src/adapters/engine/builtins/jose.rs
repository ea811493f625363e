//! Keys and signatures for the `io.jwt.*` builtins, as OPA v1.20.2 reads and checks them
//! (`topdown/tokens.go`, with lestrrat-go/jwx for JWKs and signatures): a PEM certificate or
//! public key, a JWK or a JWK set; RSA (PKCS#1 v1.5 and PSS), ECDSA (P-256, P-384, P-521),
//! Ed25519 and HMAC, all RustCrypto.
//!
//! Limits that keep hostile keys cheap: RSA public moduli of 1,024 to 16,384 bits (Go, as
//! OPA is built, refuses RSA keys under 1,024 bits), private RSA keys (JWKs) of at most 4,096
//! bits (signing with a larger one would hold a worker for seconds), at most 64 keys in a
//! set. Beyond these the builtin is undefined where OPA would still answer.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use rsa::pkcs8::DecodePublicKey;
use rsa::{BigUint, RsaPrivateKey, RsaPublicKey};
use x509_cert::der::{Decode, Encode};

pub use super::signatures::{sign, verify, verify_public, EcLayout};

const RSA_MAX_BITS: usize = 16384;
const RSA_MAX_PRIVATE_BITS: usize = 4096;
const MAX_KEYS: usize = 64;

/// A public key (or the public half of a private one).
#[derive(Clone)]
pub enum Public {
    Rsa(RsaPublicKey),
    /// An RSA key Go parses but will not verify with (under 1,024 bits, a bad exponent) or
    /// one too large to check here: no signature verifies.
    UnusableRsa,
    P256(p256::ecdsa::VerifyingKey),
    P384(p384::ecdsa::VerifyingKey),
    P521(p521::ecdsa::VerifyingKey),
    Ed25519(ed25519_dalek::VerifyingKey),
}

/// Key material as Go holds it after parsing: a public key, a private key, or a secret.
#[derive(Clone)]
pub enum Material {
    Public(Public),
    Private(Box<Private>),
    Secret(Vec<u8>),
}

#[derive(Clone)]
pub enum Private {
    Rsa(RsaPrivateKey),
    P256(p256::ecdsa::SigningKey),
    P384(p384::ecdsa::SigningKey),
    P521(p521::ecdsa::SigningKey),
    Ed25519(ed25519_dalek::SigningKey),
}

impl Private {
    pub fn public(&self) -> Public {
        match self {
            Private::Rsa(k) => Public::Rsa(k.to_public_key()),
            Private::P256(k) => Public::P256(*k.verifying_key()),
            Private::P384(k) => Public::P384(*k.verifying_key()),
            Private::P521(k) => Public::P521(p521::ecdsa::VerifyingKey::from(k)),
            Private::Ed25519(k) => Public::Ed25519(k.verifying_key()),
        }
    }
}

/// A key to verify with, and the `alg` and `kid` its JWK names (empty when none).
#[derive(Clone)]
pub struct Key {
    pub alg: String,
    pub kid: String,
    pub material: Material,
}

/// The algorithms OPA knows (`tokenAlgorithms`).
pub const ALGORITHMS: &[&str] =
    &["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "HS256", "HS384", "HS512", "EdDSA"];

/// Go's `base64.RawURLEncoding`-after-padding as OPA's `base64url.decode` does it: padding
/// is added when missing, line breaks are skipped, non-zero trailing bits are accepted.
pub fn b64url(s: &str) -> Option<Vec<u8>> {
    const URL: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true).with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
    );
    let mut s = s.to_owned();
    if !s.ends_with('=') {
        match s.len() % 4 {
            0 => {}
            2 => s.push_str("=="),
            3 => s.push('='),
            _ => return None,
        }
    }
    s.retain(|c| c != '\r' && c != '\n');
    URL.decode(s).ok()
}

/// base64url without padding, as JWS writes its parts.
pub fn b64url_encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// The first PEM block in `data` and what follows it, as Go's `pem.Decode` finds them.
pub(super) fn pem_decode(data: &str) -> Option<(String, Vec<u8>, &str)> {
    fn line(s: &str) -> (&str, &str) {
        let (l, rest) = s.split_once('\n').unwrap_or((s, ""));
        (l.strip_suffix('\r').unwrap_or(l).trim_end_matches([' ', '\t']), rest)
    }
    const BEGIN: &str = "-----BEGIN ";
    const END: &str = "\n-----END ";
    let mut rest = data;
    loop {
        let end = rest.find(END)?;
        let trailer = end + END.len();
        let Some(begin) = rest[..end].rfind(BEGIN) else {
            rest = &rest[trailer..];
            continue;
        };
        if begin > 0 && !rest[..begin].ends_with('\n') {
            rest = &rest[trailer..];
            continue;
        }
        let (type_line, mut body) = line(&rest[begin + BEGIN.len()..]);
        let Some(kind) = type_line.strip_suffix("-----") else {
            rest = &rest[trailer..];
            continue;
        };
        // Headers (`Key: value` lines) are skipped, as Go keeps them aside.
        let mut headers = false;
        loop {
            let (l, next) = line(body);
            if body.is_empty() || !l.contains(':') {
                break;
            }
            headers = true;
            body = next;
        }
        let end_at = if body.starts_with(&END[1..]) { 0 } else { body.find(END)? + 1 };
        if headers && end_at == 0 {
            rest = &rest[trailer..];
            continue;
        }
        let after = &body[end_at + END.len() - 1..];
        let (end_line, remainder) = line(after);
        if end_line.strip_prefix(kind).and_then(|t| t.strip_suffix("-----")) != Some("") {
            rest = &rest[trailer..];
            continue;
        }
        let b64: String = body[..end_at].chars().filter(|c| !matches!(c, ' ' | '\t' | '\r' | '\n')).collect();
        let Ok(bytes) = STANDARD.decode(b64) else {
            rest = &rest[trailer..];
            continue;
        };
        return Some((kind.to_owned(), bytes, remainder));
    }
}

fn rsa_public(n: BigUint, e: BigUint) -> Public {
    RsaPublicKey::new_with_max_size(n, e, RSA_MAX_BITS).map_or(Public::UnusableRsa, Public::Rsa)
}

/// A DER `SubjectPublicKeyInfo`, as Go's `x509.ParsePKIXPublicKey`.
fn spki(der: &[u8]) -> Option<Public> {
    if let Ok(info) = x509_cert::spki::SubjectPublicKeyInfoRef::from_der(der) {
        if info.algorithm.oid == rsa::pkcs1::ALGORITHM_OID {
            let key = rsa::pkcs1::RsaPublicKey::from_der(info.subject_public_key.raw_bytes()).ok()?;
            let n = BigUint::from_bytes_be(key.modulus.as_bytes());
            let e = BigUint::from_bytes_be(key.public_exponent.as_bytes());
            if key.modulus.as_bytes().iter().all(|b| *b == 0) || key.public_exponent.as_bytes().iter().all(|b| *b == 0) {
                return None;
            }
            return Some(rsa_public(n, e));
        }
    }
    if let Ok(k) = p256::ecdsa::VerifyingKey::from_public_key_der(der) {
        return Some(Public::P256(k));
    }
    if let Ok(k) = p384::ecdsa::VerifyingKey::from_public_key_der(der) {
        return Some(Public::P384(k));
    }
    if let Ok(k) = p521::PublicKey::from_public_key_der(der) {
        return p521::ecdsa::VerifyingKey::from_affine(*k.as_affine()).ok().map(Public::P521);
    }
    ed25519_dalek::VerifyingKey::from_public_key_der(der).ok().map(Public::Ed25519)
}

/// The keys of a `cert` argument: one PEM certificate or public key, or a JWK (set).
pub fn keys_from_cert_or_jwk(text: &str) -> Option<Vec<Key>> {
    if let Some((kind, der, rest)) = pem_decode(text) {
        if !rest.is_empty() {
            return None;
        }
        let public = match kind.as_str() {
            "CERTIFICATE" => {
                let cert = x509_cert::Certificate::from_der(&der).ok()?;
                spki(&cert.tbs_certificate.subject_public_key_info.to_der().ok()?)?
            }
            "PUBLIC KEY" => spki(&der)?,
            _ => return None,
        };
        return Some(vec![Key { alg: String::new(), kid: String::new(), material: Material::Public(public) }]);
    }
    let keys = jwk_set(text)?;
    // Keys naming an algorithm OPA does not know are skipped.
    Some(keys.into_iter().filter(|k| k.alg.is_empty() || ALGORITHMS.contains(&k.alg.as_str())).collect())
}

/// A JWK or a JWK set (`{"keys": [...]}`), as jwx parses them.
pub fn jwk_set(text: &str) -> Option<Vec<Key>> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    match v.get("keys") {
        Some(serde_json::Value::Array(keys)) if keys.len() <= MAX_KEYS => keys.iter().map(jwk).collect(),
        Some(_) => None,
        None => Some(vec![jwk(&v)?]),
    }
}

/// A JWK member holding base64url (jwx also accepts standard base64, padded or not).
fn member(v: &serde_json::Value, name: &str) -> Option<Vec<u8>> {
    let s = v.get(name)?.as_str()?;
    let trimmed = s.trim_end_matches('=');
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(trimmed)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(trimmed))
        .ok()
}

fn uint(v: &serde_json::Value, name: &str) -> Option<BigUint> {
    member(v, name).map(|b| BigUint::from_bytes_be(&b))
}

fn text(v: &serde_json::Value, name: &str) -> Option<String> {
    match v.get(name) {
        None => Some(String::new()),
        Some(serde_json::Value::String(s)) => Some(s.clone()),
        Some(_) => None,
    }
}

/// Algorithms jwx knows besides OPA's (a JWK naming one of them is skipped, not refused).
const OTHER_JWX_ALGORITHMS: &[&str] = &[
    "ES256K",
    "Ed25519",
    "none",
    "RSA1_5",
    "RSA-OAEP",
    "RSA-OAEP-256",
    "RSA-OAEP-384",
    "RSA-OAEP-512",
    "A128KW",
    "A192KW",
    "A256KW",
    "A128GCMKW",
    "A192GCMKW",
    "A256GCMKW",
    "ECDH-ES",
    "ECDH-ES+A128KW",
    "ECDH-ES+A192KW",
    "ECDH-ES+A256KW",
    "PBES2-HS256+A128KW",
    "PBES2-HS384+A192KW",
    "PBES2-HS512+A256KW",
    "dir",
    "A128GCM",
    "A192GCM",
    "A256GCM",
    "A128CBC-HS256",
    "A192CBC-HS384",
    "A256CBC-HS512",
];

fn jwk(v: &serde_json::Value) -> Option<Key> {
    let (alg, kid) = (text(v, "alg")?, text(v, "kid")?);
    if !alg.is_empty() && !ALGORITHMS.contains(&alg.as_str()) && !OTHER_JWX_ALGORITHMS.contains(&alg.as_str()) {
        return None;
    }
    let private = v.get("d").is_some();
    let material = match v.get("kty")?.as_str()? {
        "RSA" => {
            let (n, e) = (member(v, "n")?, member(v, "e")?);
            if n.is_empty() || e.is_empty() {
                return None;
            }
            let (n, e) = (BigUint::from_bytes_be(&n), BigUint::from_bytes_be(&e));
            if private {
                let (p, q) = (uint(v, "p"), uint(v, "q"));
                let primes = p.zip(q).map(|(p, q)| vec![p, q]).unwrap_or_default();
                if n.bits() > RSA_MAX_PRIVATE_BITS {
                    return None;
                }
                let key = RsaPrivateKey::from_components(n, e, uint(v, "d")?, primes).ok()?;
                Material::Private(Box::new(Private::Rsa(key)))
            } else {
                Material::Public(rsa_public(n, e))
            }
        }
        "EC" => {
            let (x, y) = (member(v, "x")?, member(v, "y")?);
            let d = if private { Some(member(v, "d")?) } else { None };
            ec(v.get("crv")?.as_str()?, &x, &y, d.as_deref())?
        }
        "OKP" => {
            if v.get("crv")?.as_str()? != "Ed25519" {
                return None;
            }
            let x: [u8; 32] = member(v, "x")?.try_into().ok()?;
            let public = ed25519_dalek::VerifyingKey::from_bytes(&x).ok()?;
            if private {
                let d: [u8; 32] = member(v, "d")?.try_into().ok()?;
                let key = ed25519_dalek::SigningKey::from_bytes(&d);
                if key.verifying_key() != public {
                    return None;
                }
                Material::Private(Box::new(Private::Ed25519(key)))
            } else {
                Material::Public(Public::Ed25519(public))
            }
        }
        "oct" => Material::Secret(member(v, "k").filter(|k| !k.is_empty())?),
        _ => return None,
    };
    Some(Key { alg, kid, material })
}

fn sec1(x: &[u8], y: &[u8], size: usize) -> Option<Vec<u8>> {
    if x.len() > size || y.len() > size {
        return None;
    }
    let mut point = vec![4u8];
    point.extend(std::iter::repeat_n(0, size - x.len()));
    point.extend_from_slice(x);
    point.extend(std::iter::repeat_n(0, size - y.len()));
    point.extend_from_slice(y);
    Some(point)
}

fn ec(crv: &str, x: &[u8], y: &[u8], d: Option<&[u8]>) -> Option<Material> {
    let material = match crv {
        "P-256" => {
            let public = p256::ecdsa::VerifyingKey::from_sec1_bytes(&sec1(x, y, 32)?).ok()?;
            match d {
                Some(d) => {
                    let key = p256::ecdsa::SigningKey::from_slice(d).ok()?;
                    (key.verifying_key() == &public).then_some(Material::Private(Box::new(Private::P256(key))))?
                }
                None => Material::Public(Public::P256(public)),
            }
        }
        "P-384" => {
            let public = p384::ecdsa::VerifyingKey::from_sec1_bytes(&sec1(x, y, 48)?).ok()?;
            match d {
                Some(d) => {
                    let key = p384::ecdsa::SigningKey::from_slice(d).ok()?;
                    (key.verifying_key() == &public).then_some(Material::Private(Box::new(Private::P384(key))))?
                }
                None => Material::Public(Public::P384(public)),
            }
        }
        "P-521" => {
            let public = p521::ecdsa::VerifyingKey::from_sec1_bytes(&sec1(x, y, 66)?).ok()?;
            match d {
                Some(d) => {
                    let key = p521::ecdsa::SigningKey::from_slice(d).ok()?;
                    (p521::ecdsa::VerifyingKey::from(&key).to_encoded_point(false) == public.to_encoded_point(false))
                        .then_some(Material::Private(Box::new(Private::P521(key))))?
                }
                None => Material::Public(Public::P521(public)),
            }
        }
        _ => return None,
    };
    Some(material)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pem_blocks_are_found_as_go_finds_them_and_trailing_data_is_reported() {
        let (kind, bytes, rest) = pem_decode("junk\n-----BEGIN PUBLIC KEY-----\nAAEC\n-----END PUBLIC KEY-----\n").unwrap();
        assert_eq!((kind.as_str(), bytes, rest), ("PUBLIC KEY", vec![0, 1, 2], ""));
        assert_eq!(pem_decode("-----BEGIN A-----\nAAEC\n-----END A-----\nmore").unwrap().2, "more");
        assert!(pem_decode("-----BEGIN A-----\nAAEC\n-----END B-----\n").is_none());
        assert!(keys_from_cert_or_jwk("-----BEGIN PUBLIC KEY-----\nAAEC\n-----END PUBLIC KEY-----\n").is_none(), "not a key");
        assert_eq!(b64url("YQ"), Some(b"a".to_vec()));
        assert_eq!(b64url("YR"), Some(b"a".to_vec()), "trailing bits are ignored, as in Go");
        assert_eq!(b64url("Y"), None);
    }
}
