//! `io.jwt.*` as OPA v1.20.2's `topdown/tokens.go` defines them: `decode`, the `verify_*`
//! family, `decode_verify`, `encode_sign` and `encode_sign_raw`. Keys and signatures are in
//! [`super::jose`]. As in OPA, a malformed token or key is an error (the expression is
//! undefined), a signature that does not verify is `false`.

use regorus::Value;

use super::jose::{self, EcLayout, Key, Material, Public};
use super::{string, Builtin, Fallible};

/// Those that fail the query on input where OPA's own implementation fails hard (a Go
/// panic, which OPA's server answers with an error).
pub const FALLIBLE: &[Fallible] = &[("io.jwt.decode", 1, decode), ("io.jwt.decode_verify", 2, super::jwt_verify::decode_verify)];

pub const BUILTINS: &[Builtin] = &[
    ("io.jwt.verify_hs256", 2, |a| verify_hmac(a, "HS256")),
    ("io.jwt.verify_hs384", 2, |a| verify_hmac(a, "HS384")),
    ("io.jwt.verify_hs512", 2, |a| verify_hmac(a, "HS512")),
    ("io.jwt.verify_rs256", 2, |a| verify_asymmetric(a, "RS256")),
    ("io.jwt.verify_rs384", 2, |a| verify_asymmetric(a, "RS384")),
    ("io.jwt.verify_rs512", 2, |a| verify_asymmetric(a, "RS512")),
    ("io.jwt.verify_ps256", 2, |a| verify_asymmetric(a, "PS256")),
    ("io.jwt.verify_ps384", 2, |a| verify_asymmetric(a, "PS384")),
    ("io.jwt.verify_ps512", 2, |a| verify_asymmetric(a, "PS512")),
    ("io.jwt.verify_es256", 2, |a| verify_asymmetric(a, "ES256")),
    ("io.jwt.verify_es384", 2, |a| verify_asymmetric(a, "ES384")),
    ("io.jwt.verify_es512", 2, |a| verify_asymmetric(a, "ES512")),
    ("io.jwt.verify_eddsa", 2, |a| verify_asymmetric(a, "EdDSA")),
    ("io.jwt.encode_sign", 3, encode_sign),
    ("io.jwt.encode_sign_raw", 3, encode_sign_raw),
];

/// A token in compact form: its three base64url parts (OPA's `decodeJWT`).
pub struct Token<'a> {
    pub header: &'a str,
    pub payload: &'a str,
    pub signature: &'a str,
}

impl<'a> Token<'a> {
    pub fn split(token: &'a str) -> Option<Self> {
        let mut parts = token.split('.');
        let (header, payload, signature) = (parts.next()?, parts.next()?, parts.next()?);
        parts.next().is_none().then_some(Token { header, payload, signature })
    }

    /// `header.payload`, what the signature covers.
    pub fn signed(&self) -> String {
        format!("{}.{}", self.header, self.payload)
    }

    /// The header: a JSON object that is not a JWE's.
    pub fn decoded_header(&self) -> Option<serde_json::Map<String, serde_json::Value>> {
        let header = json_object(&jose::b64url(self.header)?)?;
        (!header.contains_key("enc")).then_some(header)
    }
}

/// A JSON object, read as Go's `json.Unmarshal` reads bytes (invalid UTF-8 in a string
/// becomes U+FFFD; the last of duplicate keys wins).
pub fn json_object(bytes: &[u8]) -> Option<serde_json::Map<String, serde_json::Value>> {
    match serde_json::from_str(&String::from_utf8_lossy(bytes)).ok()? {
        serde_json::Value::Object(map) => Some(map),
        _ => None,
    }
}

/// The same object as a Rego value (numbers keep their precision).
pub fn rego_object(map: &serde_json::Map<String, serde_json::Value>) -> Option<Value> {
    Value::from_json_str(&serde_json::to_string(map).ok()?).ok()
}

/// The fields of a header OPA reads (`parseTokenHeader`): `alg`, `kid`, `typ`, `cty` must be
/// strings and `crit` a non-empty list; other fields are noted as unknown.
pub struct Header {
    pub alg: String,
    pub kid: String,
    pub cty: String,
    pub crit: Vec<String>,
    pub unknown: Vec<String>,
}

impl Header {
    pub fn parse(map: &serde_json::Map<String, serde_json::Value>) -> Option<Self> {
        let mut h = Header { alg: String::new(), kid: String::new(), cty: String::new(), crit: Vec::new(), unknown: Vec::new() };
        for (k, v) in map {
            match k.as_str() {
                "alg" => h.alg = v.as_str()?.to_owned(),
                "kid" => h.kid = v.as_str()?.to_owned(),
                "cty" => h.cty = v.as_str()?.to_owned(),
                "typ" => {
                    v.as_str()?;
                }
                "crit" => {
                    // Strings up to the first that is not one (Go stops there, quietly).
                    h.crit = v.as_array()?.iter().map_while(|e| e.as_str().map(str::to_owned)).collect();
                    if h.crit.is_empty() {
                        return None;
                    }
                }
                other => h.unknown.push(other.to_owned()),
            }
        }
        Some(h)
    }

    /// RFC 7515: `alg` is present and every critical parameter is understood.
    pub fn valid(&self) -> bool {
        !self.alg.is_empty() && !self.unknown.iter().any(|u| self.crit.contains(u))
    }
}

fn decode(a: &[Value]) -> Result<Option<Value>, String> {
    string(&a[0]).map_or(Ok(None), |t| decode_str(t, 0).transpose())
}

/// Nested tokens (`cty: JWT`) are followed this deep at most.
const MAX_NESTING: usize = 64;

/// `None`: undefined; `Some(Err(_))`: OPA fails (a `cty` that is not a string).
fn decode_str(token: &str, depth: usize) -> Option<Result<Value, String>> {
    let token = Token::split(token)?;
    let header = token.decoded_header()?;
    let payload = jose::b64url(token.payload)?;
    match header.get("cty") {
        // A nested token, quoted or not (as jwt.io writes it).
        Some(serde_json::Value::String(cty)) if cty == "JWT" => {
            if depth >= MAX_NESTING {
                return None;
            }
            let inner = String::from_utf8_lossy(&payload).trim_matches(['"', '\'']).to_owned();
            return decode_str(&inner, depth + 1);
        }
        Some(serde_json::Value::String(_)) | None => {}
        Some(_) => return Some(Err("io.jwt.decode: cty is not a string".into())),
    }
    let payload = json_object(&payload)?;
    let signature = hex::encode(jose::b64url(token.signature)?);
    Some(Ok(Value::from(vec![rego_object(&header)?, rego_object(&payload)?, Value::from(signature)])))
}

/// OPA's `io.jwt.verify_hs*`: the MAC over the token with the secret; the header is not read.
fn verify_hmac(a: &[Value], alg: &str) -> Option<Value> {
    let (token, secret) = (string(&a[0])?, string(&a[1])?);
    let token = Token::split(token)?;
    let signature = jose::b64url(token.signature)?;
    let material = Material::Secret(secret.as_bytes().to_vec());
    Some(Value::from(jose::verify(&material, alg, token.signed().as_bytes(), &signature)))
}

/// OPA's `builtinJWTVerify`: the keys of the second argument, tried as its `kid` and `alg`
/// say, with the builtin's algorithm; a key of another type does not verify.
fn verify_asymmetric(a: &[Value], alg: &str) -> Option<Value> {
    let token = Token::split(string(&a[0])?)?;
    let keys = jose::keys_from_cert_or_jwk(string(&a[1])?)?;
    let signature = jose::b64url(token.signature)?;
    let header = Header::parse(&token.decoded_header()?)?;
    let message = token.signed();
    let check = |key: &Key| -> bool {
        let public = match (&key.material, alg.get(..2)) {
            (Material::Public(p @ (Public::Rsa(_) | Public::UnusableRsa)), Some("RS" | "PS")) => p,
            (Material::Public(p @ (Public::P256(_) | Public::P384(_) | Public::P521(_))), Some("ES")) => p,
            (Material::Public(p @ Public::Ed25519(_)), Some("Ed")) => p,
            _ => return false,
        };
        jose::verify_public(public, alg, message.as_bytes(), &signature, EcLayout::Halves, alg.starts_with("PS"))
    };
    if !header.kid.is_empty() {
        if let Some(key) = keys.iter().find(|k| k.kid == header.kid) {
            return Some(Value::from(check(key)));
        }
    }
    let valid = keys.iter().filter(|k| k.alg.is_empty() || k.alg == header.alg).any(check);
    Some(Value::from(valid))
}

/// A Rego value as Go's `json.Marshal` writes OPA's values: object keys sorted, sets as
/// arrays, `<`, `>`, `&`, U+2028 and U+2029 escaped.
pub(super) fn go_json(v: &Value) -> Option<String> {
    let text = v.to_json_str().ok()?;
    let compact: serde_json::Value = serde_json::from_str(&text).ok()?;
    let out = serde_json::to_string(&compact).ok()?;
    Some(
        out.replace('<', "\\u003c")
            .replace('>', "\\u003e")
            .replace('&', "\\u0026")
            .replace('\u{2028}', "\\u2028")
            .replace('\u{2029}', "\\u2029"),
    )
}

fn encode_sign(a: &[Value]) -> Option<Value> {
    sign(&go_json(&a[0])?, &go_json(&a[1])?, &go_json(&a[2])?)
}

fn encode_sign_raw(a: &[Value]) -> Option<Value> {
    let (key, header, payload) = (string(&a[2])?, string(&a[0])?, string(&a[1])?);
    sign(header, payload, key)
}

/// OPA's `commonBuiltinJWTEncodeSign`: the first key of the JWK (set) signs
/// `base64url(header).base64url(payload)` with the header's `alg`.
fn sign(header: &str, payload: &str, jwk: &str) -> Option<Value> {
    let key = jose::jwk_set(jwk)?.into_iter().next()?;
    let fields: serde_json::Value = serde_json::from_str(header).ok()?;
    let alg = fields.get("alg")?.as_str()?;
    if !jose::ALGORITHMS.contains(&alg) {
        return None;
    }
    let typ = fields.get("typ").map(|t| t.as_str());
    if matches!(typ, None | Some(None) | Some(Some("JWT"))) && serde_json::from_str::<serde::de::IgnoredAny>(payload).is_err() {
        return None;
    }
    let signed = format!("{}.{}", jose::b64url_encode(header.as_bytes()), jose::b64url_encode(payload.as_bytes()));
    let signature = jose::sign(&key.material, alg, signed.as_bytes())?;
    Some(Value::from(format!("{signed}.{}", jose::b64url_encode(&signature))))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = r#"{"kty":"oct","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"}"#;

    #[test]
    fn a_token_decodes_into_header_payload_and_hex_signature_and_a_malformed_one_is_undefined() {
        let t = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIwIiwiaXNzIjoib3BhIn0.XmVoLoHI3pxMtMO_WRONMSJzGUDP9pDjy8Jp0_tdRXY";
        let v = decode(&[t.into()]).unwrap().unwrap();
        let arr = v.as_array().unwrap();
        assert_eq!(arr[0], Value::from(serde_json::json!({"alg": "HS256", "typ": "JWT"})));
        assert_eq!(arr[1], Value::from(serde_json::json!({"sub": "0", "iss": "opa"})));
        assert_eq!(arr[2], Value::from("5e65682e81c8de9c4cb4c3bf59138d3122731940cff690e3cbc269d3fb5d4576"));
        assert_eq!(decode(&["no.periods".into()]), Ok(None));
        // {"alg":"HS256","cty":1}: OPA's implementation panics, its server answers an error.
        assert!(decode(&["eyJhbGciOiJIUzI1NiIsImN0eSI6MX0.e30.YQ".into()]).is_err());
    }

    #[test]
    fn an_hs256_token_verifies_with_its_secret_only() {
        // jwt.io's example token, signed with "your-256-bit-secret".
        let t = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
        let verify = |secret: &str| verify_hmac(&[t.into(), secret.into()], "HS256");
        assert_eq!(verify("your-256-bit-secret"), Some(true.into()));
        assert_eq!(verify("wrong"), Some(false.into()));
    }

    #[test]
    fn encode_sign_reproduces_rfc_7515_appendix_a_1_and_sorts_the_header_as_go_does() {
        // RFC 7515 A.1's header and payload, as encode_sign_raw takes them (CRLF included).
        let header = "{\"typ\":\"JWT\",\r\n \"alg\":\"HS256\"}";
        let payload = "{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}";
        let jws = encode_sign_raw(&[header.into(), payload.into(), KEY.into()]).unwrap();
        assert_eq!(
            jws,
            Value::from("eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk")
        );
        let obj = |j: serde_json::Value| Value::from(j);
        let jws = encode_sign(&[
            obj(serde_json::json!({"typ": "JWT", "alg": "HS256"})),
            obj(serde_json::json!({})),
            obj(serde_json::from_str(KEY).unwrap()),
        ]);
        assert_eq!(jws, Some(Value::from("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.e30.6cvao8lnOu6FAdK68jQFcDMXOmaWNwWiYhCgijd-AD8")));
        assert_eq!(encode_sign_raw(&["{\"alg\":\"none\"}".into(), "{}".into(), KEY.into()]), None, "unknown algorithm");
    }

    #[test]
    fn an_es256_token_signed_with_a_jwk_verifies_with_its_public_half_and_not_with_another_key() {
        let key = p256::ecdsa::SigningKey::random(&mut rand_core::OsRng);
        let point = key.verifying_key().to_encoded_point(false);
        let (x, y) = (jose::b64url_encode(point.x().unwrap()), jose::b64url_encode(point.y().unwrap()));
        let d = jose::b64url_encode(&key.to_bytes());
        let public = format!(r#"{{"kty":"EC","crv":"P-256","x":"{x}","y":"{y}"}}"#);
        let private = format!(r#"{{"kty":"EC","crv":"P-256","x":"{x}","y":"{y}","d":"{d}"}}"#);
        let (public, private) = (public.as_str(), private.as_str());
        let token = encode_sign_raw(&[r#"{"alg":"ES256"}"#.into(), "{}".into(), private.into()]).unwrap();
        assert_eq!(verify_asymmetric(&[token.clone(), public.into()], "ES256"), Some(true.into()));
        assert_eq!(
            verify_asymmetric(&[token.clone(), private.into()], "ES256"),
            Some(false.into()),
            "a private key is not a public key (Go's type check)"
        );
        assert_eq!(verify_asymmetric(&[token, KEY.into()], "ES256"), Some(false.into()));
        assert_eq!(verify_asymmetric(&["a.b".into(), public.into()], "ES256"), None);
    }
}
