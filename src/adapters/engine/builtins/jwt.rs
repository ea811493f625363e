//! `io.jwt.decode`: a JWS in compact form split into its header, payload and signature
//! (hex), as OPA's `topdown/tokens.go` does; no signature is checked.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use regorus::Value;

use super::{string, Builtin};

pub const BUILTINS: &[Builtin] = &[
    ("io.jwt.decode", 1, decode),
    ("io.jwt.verify_hs256", 2, |a| verify_hmac::<Hmac<sha2::Sha256>>(a)),
    ("io.jwt.verify_hs384", 2, |a| verify_hmac::<Hmac<sha2::Sha384>>(a)),
    ("io.jwt.verify_hs512", 2, |a| verify_hmac::<Hmac<sha2::Sha512>>(a)),
];

/// Whether the token's HMAC signature matches the secret (the algorithm in its header is
/// not consulted, as in OPA's `io.jwt.verify_hs*`).
fn verify_hmac<M: Mac + KeyInit>(a: &[Value]) -> Option<Value> {
    let (token, secret) = (string(&a[0])?, string(&a[1])?);
    let (signed, signature) = token.rsplit_once('.')?;
    if signed.matches('.').count() != 1 {
        return None;
    }
    let signature = b64(signature)?;
    let mut mac = <M as KeyInit>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(signed.as_bytes());
    Some(Value::from(mac.verify_slice(&signature).is_ok()))
}

/// base64url, with or without padding (Go's `RawURLEncoding` after trimming `=`).
fn b64(part: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(part.trim_end_matches('=')).ok()
}

fn json(bytes: &[u8]) -> Option<Value> {
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    Some(Value::from(v))
}

fn decode(a: &[Value]) -> Option<Value> {
    let token = string(&a[0])?;
    let parts: Vec<&str> = token.split('.').collect();
    let [header, payload, signature] = parts.as_slice() else { return None };
    let header_json: serde_json::Value = serde_json::from_slice(&b64(header)?).ok()?;
    // A JWE (encrypted) is not supported, as in OPA.
    if header_json.get("enc").is_some() {
        return None;
    }
    let payload_bytes = b64(payload)?;
    // A nested JWT (`cty: JWT`) is decoded in turn.
    let payload = if header_json.get("cty").and_then(|c| c.as_str()) == Some("JWT") {
        let inner = decode(&[Value::from(String::from_utf8(payload_bytes).ok()?)])?;
        return Some(inner);
    } else {
        json(&payload_bytes)?
    };
    let signature = hex::encode(b64(signature)?);
    Some(Value::from(vec![Value::from(header_json), payload, Value::from(signature)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_decodes_into_header_payload_and_hex_signature_and_a_malformed_one_is_undefined() {
        let t = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIwIiwiaXNzIjoib3BhIn0.XmVoLoHI3pxMtMO_WRONMSJzGUDP9pDjy8Jp0_tdRXY";
        let v = decode(&[t.into()]).unwrap();
        let arr = v.as_array().unwrap();
        assert_eq!(arr[0], Value::from(serde_json::json!({"alg": "HS256", "typ": "JWT"})));
        assert_eq!(arr[1], Value::from(serde_json::json!({"sub": "0", "iss": "opa"})));
        assert_eq!(arr[2], Value::from("5e65682e81c8de9c4cb4c3bf59138d3122731940cff690e3cbc269d3fb5d4576"));
        assert_eq!(decode(&["no.periods".into()]), None);
    }

    #[test]
    fn an_hs256_token_verifies_with_its_secret_only() {
        // jwt.io's example token, signed with "your-256-bit-secret".
        let t = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
        let verify = |secret: &str| BUILTINS[1].2(&[t.into(), secret.into()]);
        assert_eq!(verify("your-256-bit-secret"), Some(true.into()));
        assert_eq!(verify("wrong"), Some(false.into()));
    }
}
