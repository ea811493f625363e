//! Kafka connection security, shared by every Kafka client the service builds: the relay's
//! producer (which the health check also uses), the topic admin and `ledger replicate`'s
//! consumer. Settings come from `AUMOS_KAFKA_*` (docs/OPERATIONS.md) and pass through to
//! librdkafka, built with OpenSSL (the `ssl` feature) for TLS and SCRAM.
//!
//! A client's errors (a refused password, a certificate that does not verify, a broker
//! that cannot be reached) are counted in `aumos_governance_kafka_client_errors_total` by
//! librdkafka's error code, logged, and the last one is kept for the admin's health details.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::error::KafkaError;
use rdkafka::producer::ProducerContext;
use rdkafka::ClientConfig;

use crate::config::{ConfigError, Env, Secret};

/// `security.protocol`: how the client talks to the brokers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityProtocol {
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl SecurityProtocol {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    pub fn tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    pub fn sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// `sasl.mechanism`. GSSAPI (Kerberos) and OAUTHBEARER are not supported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl SaslMechanism {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaslCredentials {
    pub mechanism: SaslMechanism,
    pub username: String,
    pub password: Secret,
}

/// How every Kafka client connects. The default is PLAINTEXT with nothing else set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSecurity {
    pub protocol: SecurityProtocol,
    /// CA certificates (PEM) that verify the brokers; `None`: the system's CA store.
    pub ca_location: Option<PathBuf>,
    /// The client's certificate and key (PEM), for brokers that require client
    /// authentication (mutual TLS); both or neither.
    pub certificate_location: Option<PathBuf>,
    pub key_location: Option<PathBuf>,
    pub key_password: Option<Secret>,
    /// Check that a broker's certificate names the host the client connected to.
    pub verify_hostname: bool,
    pub sasl: Option<SaslCredentials>,
}

impl Default for KafkaSecurity {
    fn default() -> Self {
        Self {
            protocol: SecurityProtocol::Plaintext,
            ca_location: None,
            certificate_location: None,
            key_location: None,
            key_password: None,
            verify_hostname: true,
            sasl: None,
        }
    }
}

const PROTOCOL: &str = "AUMOS_KAFKA_SECURITY_PROTOCOL";
const CA: &str = "AUMOS_KAFKA_SSL_CA_LOCATION";
const CERT: &str = "AUMOS_KAFKA_SSL_CERTIFICATE_LOCATION";
const KEY: &str = "AUMOS_KAFKA_SSL_KEY_LOCATION";
const KEY_PASSWORD: &str = "AUMOS_KAFKA_SSL_KEY_PASSWORD";
const ENDPOINT: &str = "AUMOS_KAFKA_SSL_ENDPOINT_IDENTIFICATION";
const MECHANISM: &str = "AUMOS_KAFKA_SASL_MECHANISM";
const USERNAME: &str = "AUMOS_KAFKA_SASL_USERNAME";
const PASSWORD: &str = "AUMOS_KAFKA_SASL_PASSWORD";

fn err(var: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError { var, message: message.into() }
}

/// A file the client will read: it must exist and be readable now, not at the first
/// connection attempt in a background thread.
fn readable_file(env: &Env<'_>, var: &'static str) -> Result<Option<PathBuf>, ConfigError> {
    let Some(v) = env.get(var) else { return Ok(None) };
    let path = PathBuf::from(v.trim());
    match std::fs::File::open(&path) {
        Ok(f) if f.metadata().is_ok_and(|m| m.is_file()) => Ok(Some(path)),
        Ok(_) => Err(err(var, format!("{} is not a file", path.display()))),
        Err(e) => Err(err(var, format!("cannot read {}: {e}", path.display()))),
    }
}

impl KafkaSecurity {
    pub fn from_env(env: &Env<'_>) -> Result<Self, ConfigError> {
        let protocol = match env.get(PROTOCOL).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("plaintext") => SecurityProtocol::Plaintext,
            Some("ssl") => SecurityProtocol::Ssl,
            Some("sasl_plaintext") => SecurityProtocol::SaslPlaintext,
            Some("sasl_ssl") => SecurityProtocol::SaslSsl,
            Some(other) => return Err(err(PROTOCOL, format!("expected plaintext, ssl, sasl_plaintext or sasl_ssl, got {other:?}"))),
        };
        let tls_vars = [CA, CERT, KEY, KEY_PASSWORD, ENDPOINT];
        if let Some(var) = tls_vars.iter().find(|v| !protocol.tls() && env.get(v).is_some()) {
            return Err(err(var, format!("is only used with {PROTOCOL}=ssl or sasl_ssl (it is {})", protocol.as_str())));
        }
        let sasl_vars = [MECHANISM, USERNAME, PASSWORD];
        if let Some(var) = sasl_vars.iter().find(|v| !protocol.sasl() && env.get(v).is_some()) {
            return Err(err(var, format!("is only used with {PROTOCOL}=sasl_plaintext or sasl_ssl (it is {})", protocol.as_str())));
        }
        let certificate_location = readable_file(env, CERT)?;
        let key_location = readable_file(env, KEY)?;
        match (&certificate_location, &key_location) {
            (Some(_), None) => return Err(err(KEY, format!("required with {CERT}"))),
            (None, Some(_)) => return Err(err(CERT, format!("required with {KEY}"))),
            _ => {}
        }
        let key_password = env.get(KEY_PASSWORD).map(Secret::new);
        if key_password.is_some() && key_location.is_none() {
            return Err(err(KEY_PASSWORD, format!("is only used with {KEY}")));
        }
        let verify_hostname = match env.get(ENDPOINT).map(|v| v.trim().to_ascii_lowercase()).as_deref() {
            None | Some("https") => true,
            Some("none") => false,
            Some(other) => return Err(err(ENDPOINT, format!("expected https or none, got {other:?}"))),
        };
        let sasl = if protocol.sasl() {
            let mechanism = match env.get(MECHANISM).map(|v| v.trim().to_ascii_uppercase()).as_deref() {
                Some("PLAIN") => SaslMechanism::Plain,
                Some("SCRAM-SHA-256") => SaslMechanism::ScramSha256,
                Some("SCRAM-SHA-512") => SaslMechanism::ScramSha512,
                Some(other) => return Err(err(MECHANISM, format!("expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512, got {other:?}"))),
                None => return Err(err(MECHANISM, format!("required with {PROTOCOL}={}", protocol.as_str()))),
            };
            let username = env.get(USERNAME).ok_or_else(|| err(USERNAME, format!("required with {PROTOCOL}={}", protocol.as_str())))?;
            let password = env.get(PASSWORD).ok_or_else(|| err(PASSWORD, format!("required with {PROTOCOL}={}", protocol.as_str())))?;
            Some(SaslCredentials { mechanism, username: username.trim().to_owned(), password: Secret::new(password) })
        } else {
            None
        };
        Ok(Self { protocol, ca_location: readable_file(env, CA)?, certificate_location, key_location, key_password, verify_hostname, sasl })
    }

    /// A client configuration for `bootstrap` with these settings. Never print it: it
    /// holds the SASL password.
    pub fn client_config(&self, bootstrap: &str) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", bootstrap).set("security.protocol", self.protocol.as_str());
        let path = |p: &Path| p.display().to_string();
        if self.protocol.tls() {
            if let Some(ca) = &self.ca_location {
                c.set("ssl.ca.location", path(ca));
            }
            if let (Some(cert), Some(key)) = (&self.certificate_location, &self.key_location) {
                c.set("ssl.certificate.location", path(cert)).set("ssl.key.location", path(key));
            }
            if let Some(pw) = &self.key_password {
                c.set("ssl.key.password", pw.expose());
            }
            c.set("ssl.endpoint.identification.algorithm", if self.verify_hostname { "https" } else { "none" });
        }
        if let Some(sasl) = &self.sasl {
            c.set("sasl.mechanism", sasl.mechanism.as_str())
                .set("sasl.username", &sasl.username)
                .set("sasl.password", sasl.password.expose());
        }
        c
    }
}

/// The same error text again within this is rdkafka delivering one event twice.
const DUPLICATE_WITHIN: Duration = Duration::from_millis(20);
/// An error of a kind already logged within this is counted but not logged again.
const LOG_EVERY: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seen {
    New,
    Repeat,
    Duplicate,
}

/// The last error of each kind (librdkafka error code) the clients of one relay reported:
/// a consequence (`AllBrokersDown`) does not hide its cause (`Authentication`, `SSL`).
#[derive(Debug, Clone, Default)]
pub struct LastError(Arc<Mutex<BTreeMap<String, (Instant, String)>>>);

impl LastError {
    /// Records an error; says whether it is news (worth a log line) or a repeat.
    fn set(&self, code: String, text: String) -> Seen {
        self.set_at(code, text, Instant::now())
    }

    /// [`Self::set`] at `now` (tests give the instants, so no test depends on the clock).
    fn set_at(&self, code: String, text: String, now: Instant) -> Seen {
        let Ok(mut last) = self.0.lock() else { return Seen::New };
        let seen = match last.get(&code) {
            // rdkafka 0.39 hands a producer's error event to the context twice.
            Some((at, t)) if *t == text && now.duration_since(*at) < DUPLICATE_WITHIN => return Seen::Duplicate,
            Some((at, _)) if now.duration_since(*at) < LOG_EVERY => Seen::Repeat,
            _ => Seen::New,
        };
        last.insert(code, (now, text));
        seen
    }

    /// Forgets the errors (the broker answered since).
    pub fn clear(&self) {
        if let Ok(mut last) = self.0.lock() {
            last.clear();
        }
    }

    /// The errors, most recent first, each with how long ago it was reported.
    pub fn get(&self) -> Option<String> {
        let last = self.0.lock().ok()?;
        let mut errors: Vec<&(Instant, String)> = last.values().collect();
        errors.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
        let text: Vec<String> = errors.iter().map(|(at, e)| format!("{e} ({} s ago)", at.elapsed().as_secs())).collect();
        (!text.is_empty()).then(|| text.join("; "))
    }
}

/// The context of the service's Kafka clients: errors are counted, logged and kept.
#[derive(Debug, Clone)]
pub struct ReportingContext {
    /// Which client (`relay`, `admin`): a metric label.
    client: &'static str,
    last: LastError,
}

impl ReportingContext {
    pub fn new(client: &'static str, last: LastError) -> Self {
        Self { client, last }
    }
}

impl ClientContext for ReportingContext {
    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code().map_or_else(|| "Unknown".to_owned(), |c| format!("{c:?}"));
        match self.last.set(code.clone(), format!("{error}: {reason}")) {
            Seen::Duplicate => return,
            Seen::New => tracing::warn!(client = self.client, %error, reason, "Kafka client error"),
            Seen::Repeat => tracing::debug!(client = self.client, %error, reason, "Kafka client error"),
        }
        crate::adapters::metrics::get().kafka_client_error(self.client, &code);
    }
}

impl ProducerContext for ReportingContext {
    type DeliveryOpaque = ();
    fn delivery(&self, _: &rdkafka::message::DeliveryResult<'_>, _: Self::DeliveryOpaque) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn security(vars: &[(&str, &str)]) -> Result<KafkaSecurity, ConfigError> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        KafkaSecurity::from_env(&Env(&|k| map.get(k).cloned()))
    }

    /// A PEM-looking file, removed on drop.
    struct TempFile(std::path::PathBuf);

    impl Drop for TempFile {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
        }
    }

    fn pem_file() -> (TempFile, String) {
        let p = std::env::temp_dir().join(format!("gov-kafka-test-{}.pem", uuid::Uuid::new_v4()));
        std::fs::write(&p, "-----BEGIN CERTIFICATE-----\n").unwrap();
        let s = p.display().to_string();
        (TempFile(p), s)
    }

    #[test]
    fn every_variable_is_listed_for_the_compose_check() {
        for var in [PROTOCOL, CA, CERT, KEY, KEY_PASSWORD, ENDPOINT, MECHANISM, USERNAME, PASSWORD] {
            assert!(crate::config::ENV_VARS.contains(&var), "{var}");
        }
    }

    #[test]
    fn a_doubly_delivered_error_counts_once_and_a_cause_is_not_hidden_by_its_consequence() {
        let (last, t0) = (LastError::default(), Instant::now());
        assert_eq!(last.set_at("Authentication".into(), "refused".into(), t0), Seen::New);
        let just_after = t0 + DUPLICATE_WITHIN - Duration::from_millis(1);
        assert_eq!(last.set_at("Authentication".into(), "refused".into(), just_after), Seen::Duplicate);
        assert_eq!(last.set_at("AllBrokersDown".into(), "1/1 brokers are down".into(), t0), Seen::New);
        assert_eq!(last.set_at("Authentication".into(), "refused".into(), just_after + DUPLICATE_WITHIN), Seen::Repeat);
        let text = last.get().unwrap();
        assert!(text.starts_with("refused (0 s ago); 1/1 brokers are down"), "{text}");
        last.clear();
        assert_eq!(last.get(), None);
    }

    #[test]
    fn the_default_is_plaintext_with_nothing_else_set() {
        let s = security(&[]).unwrap();
        assert_eq!(s, KafkaSecurity::default());
        let c = s.client_config("b:9092");
        assert_eq!(c.get("security.protocol"), Some("plaintext"));
        assert_eq!(c.get("ssl.ca.location"), None);
    }

    #[test]
    fn sasl_ssl_passes_every_setting_through_to_librdkafka() {
        let (_ca, ca) = pem_file();
        let s = security(&[
            (PROTOCOL, "SASL_SSL"),
            (CA, &ca),
            (MECHANISM, "scram-sha-512"),
            (USERNAME, "relay"),
            (PASSWORD, "hunter2"),
            (ENDPOINT, "none"),
        ])
        .unwrap();
        let c = s.client_config("b:9093");
        let want = [
            ("bootstrap.servers", "b:9093"),
            ("security.protocol", "sasl_ssl"),
            ("ssl.ca.location", ca.as_str()),
            ("ssl.endpoint.identification.algorithm", "none"),
            ("sasl.mechanism", "SCRAM-SHA-512"),
            ("sasl.username", "relay"),
            ("sasl.password", "hunter2"),
        ];
        for (k, v) in want {
            assert_eq!(c.get(k), Some(v), "{k}");
        }
        assert!(!format!("{s:?}").contains("hunter2"), "the password never prints");
    }

    #[test]
    fn a_client_certificate_needs_its_key_and_files_must_be_readable() {
        let (_cert, cert) = pem_file();
        let e = security(&[(PROTOCOL, "ssl"), (CERT, &cert)]).unwrap_err();
        assert_eq!(e.var, KEY);
        let e = security(&[(PROTOCOL, "ssl"), (CA, "/nonexistent/ca.pem")]).unwrap_err();
        assert_eq!(e.var, CA);
        assert!(e.message.contains("/nonexistent/ca.pem"), "{e}");
        let c = security(&[(PROTOCOL, "ssl"), (CERT, &cert), (KEY, &cert), (KEY_PASSWORD, "k")]).unwrap().client_config("b");
        assert_eq!((c.get("ssl.certificate.location"), c.get("ssl.key.password")), (Some(cert.as_str()), Some("k")));
        assert_eq!(c.get("ssl.endpoint.identification.algorithm"), Some("https"), "host names are checked by default");
    }

    #[test]
    fn settings_the_protocol_would_ignore_are_refused_rather_than_silently_dropped() {
        let (_ca, ca) = pem_file();
        let e = security(&[(CA, &ca)]).unwrap_err();
        assert_eq!(e.var, CA);
        assert!(e.message.contains("sasl_ssl"), "{e}");
        let e = security(&[(PROTOCOL, "ssl"), (USERNAME, "u")]).unwrap_err();
        assert_eq!(e.var, USERNAME);
        let e = security(&[(PROTOCOL, "sasl_ssl"), (USERNAME, "u"), (PASSWORD, "p")]).unwrap_err();
        assert_eq!(e.var, MECHANISM, "SASL needs an explicit mechanism");
        let e = security(&[(PROTOCOL, "sasl_plaintext"), (MECHANISM, "PLAIN"), (USERNAME, "u")]).unwrap_err();
        assert_eq!(e.var, PASSWORD);
        let e = security(&[(PROTOCOL, "sasl_ssl"), (MECHANISM, "GSSAPI"), (USERNAME, "u"), (PASSWORD, "p")]).unwrap_err();
        assert_eq!(e.var, MECHANISM);
        let e = security(&[(PROTOCOL, "tls")]).unwrap_err();
        assert_eq!(e.var, PROTOCOL);
    }
}
