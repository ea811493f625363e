//! `crypto.x509.parse_rsa_private_key` and `crypto.parse_private_keys`: the private keys in
//! PEM data (`RSA PRIVATE KEY`, `PRIVATE KEY`, `EC PRIVATE KEY` blocks, optionally base64
//! encoded), as OPA v1.20 reads them (`topdown/crypto.go`, `getPrivateKeysFromPEMData`)
//! with Go 1.26's `crypto/x509` parsers, including the consistency checks Go's
//! `rsa.PrivateKey.Validate` makes. The first answers the first key as a JWK
//! (lestrrat-go/jwx's fields), the second every key as Go's `json.Marshal` writes it
//! (`N`, `E`, `D`, `Primes`, `Precomputed` for RSA; `Curve` (`{}`), `X`, `Y`, `D` for
//! ECDSA; Ed25519 as base64 bytes; X25519 as `{}`).
//!
//! Go's big integers stay exact (regorus's big numbers), so a policy compares them as OPA
//! does; as any integer beyond 64 bits in this engine, one cannot be part of a decision's
//! result (the evaluation fails rather than answer a rounded number).
//!
//! Not read, where Go would: RSA keys of more than two primes (jwx refuses them too, so
//! only `crypto.parse_private_keys` differs), moduli over 16,384 bits, P-224 keys.

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use rsa::pkcs8::der::{Decode, SliceReader};
use rsa::pkcs8::ObjectIdentifier;
use rsa::BigUint;

use super::{jose, string, Builtin};

pub const BUILTINS: &[Builtin] = &[
    ("crypto.x509.parse_rsa_private_key", 1, |a| parse_rsa_private_key(&a[0])),
    ("crypto.parse_private_keys", 1, |a| parse_private_keys(&a[0])),
];

const RSA_MAX_BITS: usize = 16384;

/// Go's `base64.StdEncoding.DecodeString`: padded, line breaks skipped, trailing bits ignored.
fn go_std_b64(s: &str) -> Option<Vec<u8>> {
    const GO_STD: GeneralPurpose = GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true).with_decode_padding_mode(DecodePaddingMode::RequireCanonical),
    );
    let s: String = s.chars().filter(|c| *c != '\r' && *c != '\n').collect();
    GO_STD.decode(s).ok()
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Curve {
    P256,
    P384,
    P521,
}

/// An RSA key's parts, as Go's `rsa.PrivateKey` holds them (two primes).
#[derive(Debug)]
struct Rsa {
    n: BigUint,
    e: u32,
    d: BigUint,
    p: BigUint,
    q: BigUint,
    dp: BigUint,
    dq: BigUint,
    qinv: BigUint,
}

#[derive(Debug)]
enum PrivateKey {
    Rsa(Box<Rsa>),
    Ec { curve: Curve, x: Vec<u8>, y: Vec<u8>, d: Vec<u8> },
    Ed25519 { seed: [u8; 32], public: [u8; 32] },
    X25519 { d: [u8; 32], public: [u8; 32] },
}

fn parse_rsa_private_key(arg: &regorus::Value) -> Option<regorus::Value> {
    let input = string(arg)?;
    if input.is_empty() {
        return None;
    }
    let text = if input.starts_with("-----BEGIN") { input.to_owned() } else { String::from_utf8_lossy(&go_std_b64(input)?).into_owned() };
    let keys = keys_from_pem_data(&text).ok()?;
    let Some(first) = keys.first() else { return Some(regorus::Value::Null) };
    Some(jwk(first))
}

fn parse_private_keys(arg: &regorus::Value) -> Option<regorus::Value> {
    let input = string(arg)?;
    if input.is_empty() {
        return Some(regorus::Value::Null);
    }
    let keys = keys_from_pem_data(input).ok()?;
    Some(regorus::Value::from(keys.iter().map(go_json).collect::<Vec<_>>()))
}

/// `getPrivateKeysFromPEMData`: base64 decoded when it decodes, then every key block, in
/// order; a key block that does not parse fails the whole.
fn keys_from_pem_data(data: &str) -> Result<Vec<PrivateKey>, String> {
    let decoded = go_std_b64(data).map(|b| String::from_utf8_lossy(&b).into_owned());
    let mut rest = decoded.as_deref().unwrap_or(data);
    let mut keys = Vec::new();
    while let Some((kind, der, after)) = jose::pem_decode(rest) {
        rest = after;
        match kind.as_str() {
            "RSA PRIVATE KEY" => keys.push(pkcs1(&der)?),
            "PRIVATE KEY" => keys.push(pkcs8(&der)?),
            "EC PRIVATE KEY" => keys.push(ec(None, &der)?),
            _ => {}
        }
    }
    Ok(keys)
}

fn uint(bytes: &[u8]) -> BigUint {
    BigUint::from_bytes_be(bytes)
}

/// `x509.ParsePKCS1PrivateKey`, with the checks of Go's `checkPrivateKey`.
fn pkcs1(der: &[u8]) -> Result<PrivateKey, String> {
    let key = rsa::pkcs1::RsaPrivateKey::from_der(der).map_err(|e| e.to_string())?;
    if key.other_prime_infos.is_some() {
        return Err("multi-prime RSA keys are not read".into());
    }
    let zero = BigUint::from(0u8);
    let one = BigUint::from(1u8);
    let n = uint(key.modulus.as_bytes());
    let e_big = uint(key.public_exponent.as_bytes());
    let (d, p, q) = (uint(key.private_exponent.as_bytes()), uint(key.prime1.as_bytes()), uint(key.prime2.as_bytes()));
    let (dp, dq, qinv) = (uint(key.exponent1.as_bytes()), uint(key.exponent2.as_bytes()), uint(key.coefficient.as_bytes()));
    if [&n, &d, &p, &q, &dp, &dq, &qinv].iter().any(|v| **v == zero) {
        return Err("x509: private key contains zero or negative value".into());
    }
    if n.bits() > RSA_MAX_BITS {
        return Err("RSA modulus too large".into());
    }
    // bigmod.NewModulus: greater than one; SetBytes: below the modulus.
    if n <= one || p <= one || q <= one || d >= n || qinv >= p {
        return Err("crypto/rsa: invalid key".into());
    }
    // checkPublicKey.
    if &n % 2u8 == zero {
        return Err("crypto/rsa: public modulus is even".into());
    }
    let e = (e_big.bits() <= 31)
        .then(|| e_big.to_bytes_be().iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)))
        .filter(|e| *e >= 2 && e % 2 == 1);
    let Some(e) = e else { return Err("crypto/rsa: bad public exponent".into()) };
    let e_uint = BigUint::from(e);
    // checkPrivateKey.
    if p >= n || q >= n || (&p * &q) % &n != zero {
        return Err("crypto/rsa: p * q != n".into());
    }
    let (p1, q1) = (&p - &one, &q - &one);
    if p1 <= one || q1 <= one || dp >= p1 || dq >= q1 {
        return Err("crypto/rsa: invalid CRT exponent".into());
    }
    if (&e_uint * &dp) % &p1 != one || (&e_uint * &dq) % &q1 != one {
        return Err("crypto/rsa: invalid CRT exponent".into());
    }
    if &p % 2u8 == zero {
        return Err("crypto/rsa: p is even".into());
    }
    if ((&q % &p) * &qinv) % &p != one {
        return Err("crypto/rsa: invalid CRT coefficient".into());
    }
    if &d % &p1 != dp || &d % &q1 != dq {
        return Err("crypto/rsa: d does not match dP or dQ".into());
    }
    if p == q {
        return Err("crypto/rsa: p == q".into());
    }
    let diff = if p > q { &p - &q } else { &q - &p };
    let half = i64::try_from(n.bits() / 2).unwrap_or(i64::MAX);
    if i64::try_from(diff.bits()).unwrap_or(i64::MAX) <= half - 100 {
        return Err("crypto/rsa: |p - q| too small".into());
    }
    if i64::try_from(d.bits()).unwrap_or(i64::MAX) <= half {
        return Err("crypto/rsa: d too small".into());
    }
    Ok(PrivateKey::Rsa(Box::new(Rsa { n, e, d, p, q, dp, dq, qinv })))
}

/// `x509.ParsePKCS8PrivateKey` (trailing data after the structure ignored, as Go does).
fn pkcs8(der: &[u8]) -> Result<PrivateKey, String> {
    let mut reader = SliceReader::new(der).map_err(|e| e.to_string())?;
    let info = rsa::pkcs8::PrivateKeyInfo::decode(&mut reader).map_err(|e| e.to_string())?;
    let oid = info.algorithm.oid;
    if oid == rsa::pkcs1::ALGORITHM_OID {
        return pkcs1(info.private_key);
    }
    if oid == ObjectIdentifier::new_unwrap("1.2.840.10045.2.1") {
        let named = info.algorithm.parameters.and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        return ec(named, info.private_key);
    }
    let ed25519 = oid == ObjectIdentifier::new_unwrap("1.3.101.112");
    let x25519 = oid == ObjectIdentifier::new_unwrap("1.3.101.110");
    if !(ed25519 || x25519) || info.algorithm.parameters.is_some() {
        return Err("x509: unknown or invalid private key algorithm".into());
    }
    let mut inner = SliceReader::new(info.private_key).map_err(|e| e.to_string())?;
    let bytes = rsa::pkcs8::der::asn1::OctetStringRef::decode(&mut inner).map_err(|e| e.to_string())?;
    let raw: [u8; 32] = bytes.as_bytes().try_into().map_err(|_| "x509: invalid private key length".to_owned())?;
    if ed25519 {
        let public = ed25519_dalek::SigningKey::from_bytes(&raw).verifying_key().to_bytes();
        Ok(PrivateKey::Ed25519 { seed: raw, public })
    } else {
        Ok(PrivateKey::X25519 { d: raw, public: curve25519_dalek::montgomery::MontgomeryPoint::mul_base_clamped(raw).to_bytes() })
    }
}

/// `x509.parseECPrivateKey`: the curve from PKCS#8's parameters or the key's own, the
/// scalar left-padded (or stripped of leading zeros) to the curve's size, then checked.
fn ec(named: Option<ObjectIdentifier>, der: &[u8]) -> Result<PrivateKey, String> {
    let mut reader = SliceReader::new(der).map_err(|e| e.to_string())?;
    let key = sec1::EcPrivateKey::decode(&mut reader).map_err(|e| e.to_string())?;
    let oid = named.or_else(|| key.parameters.and_then(|p| p.named_curve())).ok_or("x509: unknown elliptic curve")?;
    let curve = match oid.to_string().as_str() {
        "1.2.840.10045.3.1.7" => Curve::P256,
        "1.3.132.0.34" => Curve::P384,
        "1.3.132.0.35" => Curve::P521,
        _ => return Err("x509: unknown elliptic curve".into()),
    };
    let size = match curve {
        Curve::P256 => 32,
        Curve::P384 => 48,
        Curve::P521 => 66,
    };
    let mut scalar = key.private_key;
    while scalar.len() > size {
        if scalar[0] != 0 {
            return Err("x509: invalid private key length".into());
        }
        scalar = &scalar[1..];
    }
    let mut d = vec![0u8; size];
    d[size - scalar.len()..].copy_from_slice(scalar);
    let point = match curve {
        Curve::P256 => p256::SecretKey::from_slice(&d).map(|k| k.public_key().to_sec1_bytes()),
        Curve::P384 => p384::SecretKey::from_slice(&d).map(|k| k.public_key().to_sec1_bytes()),
        Curve::P521 => p521::SecretKey::from_slice(&d).map(|k| k.public_key().to_sec1_bytes()),
    }
    .map_err(|_| "crypto/ecdsa: invalid private key".to_owned())?;
    // Uncompressed: 0x04, X, Y.
    let (x, y) = point.get(1..).ok_or("no point")?.split_at(size);
    Ok(PrivateKey::Ec { curve, x: x.to_vec(), y: y.to_vec(), d })
}

fn object(fields: Vec<(&str, regorus::Value)>) -> regorus::Value {
    regorus::Value::from(fields.into_iter().map(|(k, v)| (regorus::Value::from(k), v)).collect::<std::collections::BTreeMap<_, _>>())
}

fn b64url(bytes: &[u8]) -> regorus::Value {
    regorus::Value::from(jose::b64url_encode(bytes))
}

/// The key as lestrrat-go/jwx imports it.
fn jwk(key: &PrivateKey) -> regorus::Value {
    match key {
        PrivateKey::Rsa(k) => {
            let Rsa { n, e, d, p, q, dp, dq, qinv } = k.as_ref();
            let b = |v: &BigUint| b64url(&v.to_bytes_be());
            object(vec![
                ("kty", "RSA".into()),
                ("n", b(n)),
                ("e", b(&BigUint::from(*e))),
                ("d", b(d)),
                ("p", b(p)),
                ("q", b(q)),
                ("dp", b(dp)),
                ("dq", b(dq)),
                ("qi", b(qinv)),
            ])
        }
        PrivateKey::Ec { curve, x, y, d } => {
            let crv = match curve {
                Curve::P256 => "P-256",
                Curve::P384 => "P-384",
                Curve::P521 => "P-521",
            };
            object(vec![("kty", "EC".into()), ("crv", crv.into()), ("x", b64url(x)), ("y", b64url(y)), ("d", b64url(d))])
        }
        PrivateKey::Ed25519 { seed, public } => {
            object(vec![("kty", "OKP".into()), ("crv", "Ed25519".into()), ("x", b64url(public)), ("d", b64url(seed))])
        }
        PrivateKey::X25519 { d, public } => {
            object(vec![("kty", "OKP".into()), ("crv", "X25519".into()), ("x", b64url(public)), ("d", b64url(d))])
        }
    }
}

/// A big integer as Go's `json.Marshal` writes a `*big.Int`: a number, exact.
fn number(v: &BigUint) -> regorus::Value {
    regorus::Value::from_numeric_string(&v.to_str_radix(10)).unwrap_or(regorus::Value::Undefined)
}

/// The key as Go's `json.Marshal` writes it.
fn go_json(key: &PrivateKey) -> regorus::Value {
    match key {
        PrivateKey::Rsa(k) => {
            let Rsa { n, e, d, p, q, dp, dq, qinv } = k.as_ref();
            object(vec![
                ("N", number(n)),
                ("E", regorus::Value::from(u64::from(*e))),
                ("D", number(d)),
                ("Primes", regorus::Value::from(vec![number(p), number(q)])),
                (
                    "Precomputed",
                    object(vec![
                        ("Dp", number(dp)),
                        ("Dq", number(dq)),
                        ("Qinv", number(qinv)),
                        ("CRTValues", regorus::Value::from(Vec::new())),
                    ]),
                ),
            ])
        }
        PrivateKey::Ec { x, y, d, .. } => {
            object(vec![("Curve", object(Vec::new())), ("X", number(&uint(x))), ("Y", number(&uint(y))), ("D", number(&uint(d)))])
        }
        PrivateKey::Ed25519 { seed, public } => regorus::Value::from(STANDARD.encode([&seed[..], &public[..]].concat())),
        PrivateKey::X25519 { .. } => object(Vec::new()),
    }
}

#[cfg(test)]
#[path = "keys_tests.rs"]
mod tests;
