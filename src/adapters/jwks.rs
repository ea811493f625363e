//! A JWKS (JSON Web Key Set) client: the identity provider's public keys by `kid`.
//!
//! Keys are fetched at start-up and kept; a token with a `kid` we do not know triggers a
//! refetch (the provider may have rotated keys), but at most one fetch per
//! `min_refresh_interval`, so a flood of tokens with made-up `kid`s cannot turn us into a
//! load generator against the provider. The set is refetched in the background every
//! `max_age` (and when a lookup finds it older). No lock is held across the network call:
//! a slow provider never delays tokens signed with keys we already hold. Redirects are not
//! followed and the document is limited to [`MAX_JWKS_BYTES`]. Only EdDSA (Ed25519), ES256 (P-256) and RS256 keys
//! are taken; symmetric (`oct`) keys are ignored, so no HMAC key can ever verify a token.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};

type KeyMap = HashMap<String, (DecodingKey, Algorithm)>;

/// The largest JWKS document accepted (a real one is a few kilobytes).
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// When the last fetch was attempted and when one last succeeded.
#[derive(Debug, Default, Clone, Copy)]
struct Fetches {
    attempted: Option<Instant>,
    succeeded: Option<Instant>,
}

pub struct Jwks {
    url: String,
    http: reqwest::Client,
    min_refresh_interval: Duration,
    max_age: Duration,
    keys: RwLock<KeyMap>,
    /// Held only to read or update the times, never across a fetch.
    fetches: Mutex<Fetches>,
    /// One fetch at a time; only lookups of a `kid` we do not hold wait for it.
    in_flight: tokio::sync::Mutex<()>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks").field("url", &self.url).finish()
    }
}

impl Jwks {
    /// `http` must be the TLS-configured client of [`crate::adapters::tls::http_client`] (no
    /// redirects, the configured roots).
    pub fn new(url: String, http: reqwest::Client, min_refresh_interval: Duration, max_age: Duration) -> Self {
        Self {
            url,
            http,
            min_refresh_interval,
            max_age,
            keys: RwLock::new(HashMap::new()),
            fetches: Mutex::new(Fetches::default()),
            in_flight: tokio::sync::Mutex::new(()),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn lookup(&self, kid: &str) -> Option<(DecodingKey, Algorithm)> {
        self.keys.read().ok()?.get(kid).cloned()
    }

    fn fetches(&self) -> Fetches {
        self.fetches.lock().map(|f| *f).unwrap_or_default()
    }

    /// The key for `kid`. A key we hold is answered at once, whatever the identity provider
    /// is doing; when the set is older than `max_age` a refetch starts in the background.
    /// An unknown `kid` waits for a (rate-limited) refetch.
    pub async fn key(self: &Arc<Self>, kid: &str) -> Option<(DecodingKey, Algorithm)> {
        if let Some(k) = self.lookup(kid) {
            if self.fetches().succeeded.is_none_or(|ok| ok.elapsed() > self.max_age) {
                let this = Arc::clone(self);
                tokio::spawn(async move { this.refresh(false).await });
            }
            return Some(k);
        }
        self.refresh(false).await;
        self.lookup(kid)
    }

    /// Refetches the set every `max_age`, so keys in use never go stale waiting for a lookup.
    pub fn spawn_refresher(self: &Arc<Self>) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(this.max_age).await;
                this.refresh(false).await;
            }
        });
    }

    /// Fetches the set, unless one was fetched within the minimum interval (`force` skips
    /// that check, for start-up). A failed fetch keeps the keys we had.
    pub async fn refresh(&self, force: bool) {
        let _one_at_a_time = self.in_flight.lock().await;
        {
            let Ok(mut f) = self.fetches.lock() else { return };
            if !force && f.attempted.is_some_and(|at| at.elapsed() < self.min_refresh_interval) {
                return;
            }
            f.attempted = Some(Instant::now());
        }
        match self.download().await {
            Ok(map) => {
                tracing::info!(url = %self.url, keys = map.len(), "fetched the JWKS");
                if let Ok(mut keys) = self.keys.write() {
                    *keys = map;
                }
                if let Ok(mut f) = self.fetches.lock() {
                    f.succeeded = Some(Instant::now());
                }
            }
            Err(e) => tracing::warn!(url = %self.url, error = %e, "cannot fetch the JWKS; keeping the keys we had"),
        }
    }

    async fn download(&self) -> Result<KeyMap, String> {
        let mut resp = self.http.get(&self.url).send().await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("the JWKS endpoint answered {}", resp.status()));
        }
        if resp.content_length().is_some_and(|n| n > MAX_JWKS_BYTES as u64) {
            return Err(format!("the JWKS is larger than {MAX_JWKS_BYTES} bytes"));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| e.to_string())? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(format!("the JWKS is larger than {MAX_JWKS_BYTES} bytes"));
            }
            body.extend_from_slice(&chunk);
        }
        let set: JwkSet = serde_json::from_slice(&body).map_err(|e| format!("not a JWKS: {e}"))?;
        Ok(set.keys.iter().filter_map(usable).collect())
    }
}

/// A key we can verify with: it has a `kid`, is meant for signatures, and is one of the
/// three accepted kinds (whose algorithm, if stated, must agree with the key type).
fn usable(jwk: &Jwk) -> Option<(String, (DecodingKey, Algorithm))> {
    let kid = jwk.common.key_id.clone()?;
    if jwk.common.public_key_use.as_ref().is_some_and(|u| !matches!(u, jsonwebtoken::jwk::PublicKeyUse::Signature)) {
        return None;
    }
    let by_type = match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(p) if p.curve == EllipticCurve::Ed25519 => Algorithm::EdDSA,
        AlgorithmParameters::EllipticCurve(p) if p.curve == EllipticCurve::P256 => Algorithm::ES256,
        AlgorithmParameters::RSA(_) => Algorithm::RS256,
        _ => return None,
    };
    let stated = match jwk.common.key_algorithm {
        None => by_type,
        Some(KeyAlgorithm::EdDSA) => Algorithm::EdDSA,
        Some(KeyAlgorithm::ES256) => Algorithm::ES256,
        Some(KeyAlgorithm::RS256) => Algorithm::RS256,
        Some(_) => return None,
    };
    if stated != by_type {
        return None;
    }
    DecodingKey::from_jwk(jwk).ok().map(|k| (kid, (k, by_type)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwk(v: serde_json::Value) -> Jwk {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn symmetric_keys_and_mismatched_algorithms_are_never_used() {
        let oct = jwk(serde_json::json!({"kty": "oct", "k": "c2VjcmV0", "kid": "h", "alg": "HS256"}));
        assert!(usable(&oct).is_none());
        let ed = serde_json::json!({"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo", "kid": "e"});
        assert_eq!(usable(&jwk(ed.clone())).map(|(k, (_, a))| (k, a)), Some(("e".to_owned(), Algorithm::EdDSA)));
        let mut lying = ed.clone();
        lying["alg"] = "RS256".into();
        assert!(usable(&jwk(lying)).is_none());
        let mut no_kid = ed;
        no_kid.as_object_mut().unwrap().remove("kid");
        assert!(usable(&jwk(no_kid)).is_none());
    }
}
