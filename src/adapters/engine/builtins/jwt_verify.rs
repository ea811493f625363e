//! `io.jwt.decode_verify(token, constraints)`: OPA's `builtinJWTDecodeVerify`. The answer is
//! `[valid, header, payload]`; `[false, {}, {}]` when the signature or a constraint fails;
//! undefined when the token or the constraints are malformed.

use regorus::Value;

use super::jose::{self, Key, Material};
use super::jwt::{json_object, rego_object, Header, Token};

/// What the constraints object asks (`tokenConstraints`).
struct Constraints {
    keys: Option<Vec<Key>>,
    secret: String,
    alg: String,
    iss: String,
    aud: String,
    /// Nanoseconds since the epoch.
    time: f64,
}

fn text(v: &Value) -> Option<String> {
    v.as_string().ok().map(|s| s.to_string())
}

fn number(v: &Value) -> Option<f64> {
    match v {
        // As Go's `json.Number.Float64`: the nearest float, however many digits.
        Value::Number(n) => n.format_decimal().parse().ok().filter(|f: &f64| f.is_finite()),
        _ => None,
    }
}

fn now_ns() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as f64).unwrap_or(0.0)
}

impl Constraints {
    fn parse(v: &Value) -> Option<Self> {
        let Value::Object(map) = v else { return None };
        let mut c =
            Constraints { keys: None, secret: String::new(), alg: String::new(), iss: String::new(), aud: String::new(), time: -1.0 };
        for (k, v) in map.iter() {
            match k.as_string().ok()?.as_ref() {
                "cert" => c.keys = Some(jose::keys_from_cert_or_jwk(v.as_string().ok()?)?),
                "secret" => c.secret = text(v)?,
                "alg" => c.alg = text(v)?,
                "iss" => c.iss = text(v)?,
                "aud" => c.aud = text(v)?,
                "time" => {
                    let t = number(v)?;
                    if t < 0.0 {
                        return None;
                    }
                    c.time = t;
                }
                _ => return None,
            }
        }
        if c.time == -1.0 {
            c.time = now_ns();
        }
        // Exactly one of `cert` and `secret`.
        (c.keys.is_some() == c.secret.is_empty()).then_some(c)
    }

    /// Whether a key the constraints trust signed the token (`tokenConstraints.verify`).
    fn verified(&self, header: &Header, message: &[u8], signature: &[u8]) -> bool {
        let Some(keys) = &self.keys else {
            return jose::verify(&Material::Secret(self.secret.as_bytes().to_vec()), &header.alg, message, signature);
        };
        if !header.kid.is_empty() {
            if let Some(key) = keys.iter().find(|k| k.kid == header.kid) {
                return jose::verify(&key.material, &header.alg, message, signature);
            }
        }
        keys.iter().filter(|k| k.alg.is_empty() || k.alg == header.alg).any(|k| jose::verify(&k.material, &header.alg, message, signature))
    }

    fn audience_ok(&self, aud: &serde_json::Value) -> bool {
        match aud {
            serde_json::Value::String(s) => *s == self.aud,
            serde_json::Value::Array(items) => items.iter().any(|e| e.as_str() == Some(self.aud.as_str())),
            _ => false,
        }
    }
}

/// Nested tokens are followed this deep at most.
const MAX_NESTING: usize = 64;

pub fn decode_verify(a: &[Value]) -> Result<Option<Value>, String> {
    verify(a).transpose()
}

/// `None`: undefined; `Some(Err(_))`: OPA fails (an issuer that is not a string).
fn verify(a: &[Value]) -> Option<Result<Value, String>> {
    let constraints = Constraints::parse(&a[1])?;
    let unverified = || Some(Ok(Value::from(vec![Value::from(false), Value::new_object(), Value::new_object()])));
    let mut token_text = a[0].as_string().ok()?.to_string();
    let mut depth = 0;
    let (header, payload) = loop {
        let token = Token::split(&token_text)?;
        let header_map = token.decoded_header()?;
        let header = Header::parse(&header_map)?;
        if !header.valid() || (!constraints.alg.is_empty() && constraints.alg != header.alg) {
            return unverified();
        }
        let signature = jose::b64url(token.signature)?;
        if !constraints.verified(&header, token.signed().as_bytes(), &signature) {
            return unverified();
        }
        let payload = jose::b64url(token.payload)?;
        if header.cty.eq_ignore_ascii_case("JWT") {
            depth += 1;
            if depth > MAX_NESTING {
                return None;
            }
            token_text = String::from_utf8_lossy(&payload).into_owned();
            continue;
        }
        break (header_map, json_object(&payload)?);
    };
    if !constraints.iss.is_empty() {
        match payload.get("iss") {
            Some(serde_json::Value::String(iss)) if *iss == constraints.iss => {}
            Some(serde_json::Value::String(_)) | None => return unverified(),
            // OPA's implementation panics on an issuer that is not a string.
            Some(_) => return Some(Err("io.jwt.decode_verify: iss is not a string".into())),
        }
    }
    match payload.get("aud") {
        Some(aud) if !constraints.audience_ok(aud) => return unverified(),
        None if !constraints.aud.is_empty() => return unverified(),
        _ => {}
    }
    let now = constraints.time / 1e9;
    if let Some(exp) = payload.get("exp") {
        if now >= exp.as_f64()? {
            return unverified();
        }
    }
    if let Some(nbf) = payload.get("nbf") {
        if now < nbf.as_f64()? {
            return unverified();
        }
    }
    Some(Ok(Value::from(vec![Value::from(true), rego_object(&header)?, rego_object(&payload)?])))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(j: serde_json::Value) -> Value {
        Value::from(j)
    }

    // RFC 7515 A.1's token and key (HS256, exp 1300819380).
    const TOKEN: &str = "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const JWK: &str = r#"{"kty":"oct","k":"AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow"}"#;

    #[test]
    fn a_token_verifies_before_its_expiry_with_its_key_and_issuer_and_not_after_or_with_others() {
        let at = |time: f64, extra: serde_json::Value| {
            let mut c = serde_json::json!({"cert": JWK, "time": time});
            if let (Some(c), Some(extra)) = (c.as_object_mut(), extra.as_object()) {
                c.extend(extra.clone());
            }
            decode_verify(&[TOKEN.into(), obj(c)]).unwrap().unwrap().as_array().unwrap()[0].clone()
        };
        assert_eq!(at(1300819379e9, serde_json::json!({})), Value::from(true));
        assert_eq!(at(1300819381e9, serde_json::json!({})), Value::from(false), "expired");
        assert_eq!(at(2e18, serde_json::json!({"iss": "joe", "alg": "HS256"})), Value::from(false));
        assert_eq!(at(0.0, serde_json::json!({"iss": "joe", "alg": "HS256"})), Value::from(true));
        assert_eq!(at(0.0, serde_json::json!({"iss": "bob"})), Value::from(false));
        assert_eq!(at(0.0, serde_json::json!({"aud": "bob"})), Value::from(false), "an audience is required when asked for");
        assert_eq!(decode_verify(&[TOKEN.into(), obj(serde_json::json!({"secret": "x", "cert": JWK}))]), Ok(None), "two keys");
        assert_eq!(decode_verify(&[TOKEN.into(), obj(serde_json::json!({"cert": JWK, "what": 1}))]), Ok(None));
    }
}
