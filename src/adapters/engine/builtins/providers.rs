//! `providers.aws.sign_req`: an `http.send` request signed with AWS Signature Version 4, as
//! OPA v1.20 signs it (`topdown/providers.go` over `internal/providers/aws.SignV4`): the
//! same operand checks, canonical request (Go's `URL.EscapedPath` and raw query, every
//! header but `authorization`, `user-agent` and `x-amzn-trace-id`, lower-cased and
//! sorted), `x-amz-content-sha256` for S3 and Glacier, and the request answered with its
//! headers, the `Authorization` header and the AWS headers. A body is signed as Go's
//! `json.Marshal` writes it (see "Number text" in docs/policy-engines.md), a `raw_body`
//! as it is. Any failure is undefined, as OPA without strict builtin errors.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use regorus::Value;
use sha2::{Digest, Sha256};

use super::{string, uri, Builtin};

pub const BUILTINS: &[Builtin] = &[("providers.aws.sign_req", 3, sign_req)];

/// The request keys `http.send` takes (`topdown/http.go`'s `allowedKeyNames`).
const ALLOWED_KEYS: &[&str] = &[
    "method",
    "url",
    "body",
    "enable_redirect",
    "force_json_decode",
    "force_yaml_decode",
    "headers",
    "raw_body",
    "tls_use_system_certs",
    "tls_ca_cert",
    "tls_ca_cert_file",
    "tls_ca_cert_env_variable",
    "tls_client_cert",
    "tls_client_cert_file",
    "tls_client_cert_env_variable",
    "tls_client_key",
    "tls_client_key_file",
    "tls_client_key_env_variable",
    "tls_insecure_skip_verify",
    "tls_server_name",
    "timeout",
    "cache",
    "force_cache",
    "force_cache_duration_seconds",
    "raise_error",
    "caching_mode",
    "max_retry_attempts",
    "cache_ignored_headers",
];

const IGNORED_HEADERS: &[&str] = &["authorization", "user-agent", "x-amzn-trace-id"];

/// Go's `stringFromTerm`: the string, or `""` for anything else.
fn text(v: Option<&Value>) -> String {
    v.and_then(string).unwrap_or_default().to_owned()
}

fn hmac(key: &[u8], message: &str) -> Option<Vec<u8>> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).ok()?;
    mac.update(message.as_bytes());
    Some(mac.finalize().into_bytes().to_vec())
}

fn sign_req(a: &[Value]) -> Option<Value> {
    let request = a[0].as_object().ok()?;
    let config = a[1].as_object().ok()?;
    let get = |o: &regorus::value::Object, k: &str| o.get(&Value::from(k)).cloned();
    for key in ["aws_service", "aws_access_key", "aws_secret_access_key", "aws_region"] {
        string(&get(config, key)?)?;
    }
    let service = text(get(config, "aws_service").as_ref());
    let access_key = text(get(config, "aws_access_key").as_ref());
    let secret_key = text(get(config, "aws_secret_access_key").as_ref());
    let region = text(get(config, "aws_region").as_ref());
    let session_token = text(get(config, "aws_session_token").as_ref());
    let nanos = a[2].as_i64().ok()?;
    // validateHTTPRequestOperand.
    if request.keys().any(|k| string(k).is_none_or(|k| !ALLOWED_KEYS.contains(&k))) {
        return None;
    }
    // Go's objectToMap: keys and values as strings (`""` when they are not).
    let headers: BTreeMap<String, String> = match get(request, "headers") {
        Some(h) => h.as_object().ok()?.iter().map(|(k, v)| (text(Some(k)), text(Some(v)))).collect(),
        None => BTreeMap::new(),
    };
    let url = string(&get(request, "url")?)?.to_owned();
    let method = string(&get(request, "method")?)?.to_owned();
    let (host, path, query) = uri::host_path_query(&url)?;
    let body = match (get(request, "raw_body"), get(request, "body")) {
        (Some(raw), _) => text(Some(&raw)).into_bytes(),
        (None, Some(body)) => super::jwt::go_json(&body)?.into_bytes(),
        (None, None) => Vec::new(),
    };
    let unsigned = match get(config, "disable_payload_signing") {
        Some(Value::Bool(b)) => b,
        Some(_) => return None,
        None => false,
    };

    let time = chrono::DateTime::from_timestamp_nanos(nanos);
    let (date, stamp) = (time.format("%Y%m%d").to_string(), time.format("%Y%m%dT%H%M%SZ").to_string());
    let content_sha256 = if unsigned { "UNSIGNED-PAYLOAD".to_owned() } else { hex::encode(Sha256::digest(&body)) };
    let mut aws_headers: BTreeMap<String, String> = BTreeMap::new();
    aws_headers.insert("host".into(), String::from_utf8_lossy(&host).into_owned());
    aws_headers.insert("x-amz-date".into(), stamp.clone());
    if service == "s3" || service == "glacier" {
        aws_headers.insert("x-amz-content-sha256".into(), content_sha256.clone());
    }
    if !session_token.is_empty() {
        aws_headers.insert("x-amz-security-token".into(), session_token);
    }
    let mut to_sign = aws_headers.clone();
    for (k, v) in &headers {
        let lower = k.to_lowercase();
        if !IGNORED_HEADERS.contains(&lower.as_str()) {
            to_sign.insert(lower, v.clone());
        }
    }
    let mut canonical = format!("{method}\n{}\n{}\n", String::from_utf8_lossy(&path), String::from_utf8_lossy(&query));
    for (k, v) in &to_sign {
        canonical.push_str(&format!("{k}:{v}\n"));
    }
    let signed_headers = to_sign.keys().map(String::as_str).collect::<Vec<_>>().join(";");
    canonical.push_str(&format!("\n{signed_headers}\n{content_sha256}"));
    let scope = format!("{date}/{region}/{service}/aws4_request");
    let to_sign_text = format!("AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{}", hex::encode(Sha256::digest(canonical.as_bytes())));
    let mut key = hmac(format!("AWS4{secret_key}").as_bytes(), &date)?;
    for part in [region.as_str(), service.as_str(), "aws4_request"] {
        key = hmac(&key, part)?;
    }
    let signature = hex::encode(hmac(&key, &to_sign_text)?);
    let authorization = format!("AWS4-HMAC-SHA256 Credential={access_key}/{scope},SignedHeaders={signed_headers},Signature={signature}");

    let mut out_headers: BTreeMap<Value, Value> = headers.into_iter().map(|(k, v)| (Value::from(k), Value::from(v))).collect();
    out_headers.insert(Value::from("Authorization"), Value::from(authorization));
    for (k, v) in aws_headers {
        out_headers.insert(Value::from(k), Value::from(v));
    }
    let mut out: BTreeMap<Value, Value> = request.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    out.insert(Value::from("headers"), Value::from(out_headers));
    Some(Value::from(out))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn json(s: &str) -> Value {
        Value::from_json_str(s).unwrap()
    }

    const CONFIG: &str = r#"{"aws_access_key": "MYAWSACCESSKEYGOESHERE", "aws_secret_access_key": "MYAWSSECRETACCESSKEYGOESHERE", "aws_service": "s3", "aws_region": "us-east-1"}"#;

    #[test]
    fn providers_aws_sign_req_signs_as_opa_does() {
        // OPA's conformance case `success-simple-no body`.
        let signed =
            sign_req(&[json(r#"{"method": "get", "url": "http://example.com"}"#), json(CONFIG), Value::from(1451311705000000000_i64)]);
        let want = json(
            r#"{"headers": {
                "Authorization": "AWS4-HMAC-SHA256 Credential=MYAWSACCESSKEYGOESHERE/20151228/us-east-1/s3/aws4_request,SignedHeaders=host;x-amz-content-sha256;x-amz-date,Signature=0047a7016c81e5c7f29cd522f97e911e04fc472fced0aee7916cbc287ad6c8e3",
                "host": "example.com",
                "x-amz-content-sha256": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
                "x-amz-date": "20151228T140825Z"},
              "method": "get", "url": "http://example.com"}"#,
        );
        assert_eq!(signed, Some(want));
    }

    #[test]
    fn providers_aws_sign_req_with_bad_operands_is_undefined_as_opas_error() {
        let ts = Value::from(1451311705000000000_i64);
        assert_eq!(sign_req(&[json("{}"), json(CONFIG), ts.clone()]), None, "no method or url");
        assert_eq!(sign_req(&[json(r#"{"method": "get", "url": "http://x", "nope": 1}"#), json(CONFIG), ts.clone()]), None);
        assert_eq!(sign_req(&[json(r#"{"method": "get", "url": "http://x"}"#), json(r#"{"example": "x"}"#), ts.clone()]), None);
        assert_eq!(sign_req(&[json(r#"{"method": "get", "url": "http://x"}"#), json(CONFIG), Value::from("now")]), None);
        let config = CONFIG.replace('}', r#", "disable_payload_signing": "yes"}"#);
        assert_eq!(sign_req(&[json(r#"{"method": "get", "url": "http://x"}"#), json(&config), ts]), None);
    }
}
