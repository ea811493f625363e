//! A JWKS (JSON Web Key Set) client: the identity provider's public keys by `kid`.
//!
//! Keys are fetched at start-up and kept; a token with a `kid` we do not know triggers a
//! refetch (the provider may have rotated keys), but at most one fetch per
//! `min_refresh_interval`, so a flood of tokens with made-up `kid`s cannot turn us into a
//! load generator against the provider. Keys older than `max_age` are refetched on the
//! next lookup, under the same limit. Only EdDSA (Ed25519), ES256 (P-256) and RS256 keys
//! are taken; symmetric (`oct`) keys are ignored, so no HMAC key can ever verify a token.

use std::collections::HashMap;
use std::sync::RwLock;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey};

type KeyMap = HashMap<String, (DecodingKey, Algorithm)>;

pub struct Jwks {
    url: String,
    http: reqwest::Client,
    min_refresh_interval: Duration,
    max_age: Duration,
    keys: RwLock<KeyMap>,
    /// When the last fetch was attempted and when one last succeeded.
    fetch: tokio::sync::Mutex<(Option<Instant>, Option<Instant>)>,
}

impl std::fmt::Debug for Jwks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Jwks").field("url", &self.url).finish()
    }
}

impl Jwks {
    pub fn new(url: String, min_refresh_interval: Duration, max_age: Duration) -> Self {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap_or_default();
        Self { url, http, min_refresh_interval, max_age, keys: RwLock::new(HashMap::new()), fetch: tokio::sync::Mutex::new((None, None)) }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    fn lookup(&self, kid: &str) -> Option<(DecodingKey, Algorithm)> {
        self.keys.read().ok()?.get(kid).cloned()
    }

    /// The key for `kid`, refetching the set (rate-limited) when it is unknown or stale.
    pub async fn key(&self, kid: &str) -> Option<(DecodingKey, Algorithm)> {
        let stale = self.fetch.lock().await.1.is_none_or(|ok| ok.elapsed() > self.max_age);
        if !stale {
            if let Some(k) = self.lookup(kid) {
                return Some(k);
            }
        }
        self.refresh(false).await;
        self.lookup(kid)
    }

    /// Fetches the set, unless one was fetched within the minimum interval (`force` skips
    /// that check, for start-up). A failed fetch keeps the keys we had.
    pub async fn refresh(&self, force: bool) {
        let mut fetch = self.fetch.lock().await;
        if !force && fetch.0.is_some_and(|at| at.elapsed() < self.min_refresh_interval) {
            return;
        }
        fetch.0 = Some(Instant::now());
        match self.download().await {
            Ok(map) => {
                tracing::info!(url = %self.url, keys = map.len(), "fetched the JWKS");
                if let Ok(mut keys) = self.keys.write() {
                    *keys = map;
                }
                fetch.1 = Some(Instant::now());
            }
            Err(e) => tracing::warn!(url = %self.url, error = %e, "cannot fetch the JWKS; keeping the keys we had"),
        }
    }

    async fn download(&self) -> Result<KeyMap, String> {
        let resp = self.http.get(&self.url).send().await.map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("the JWKS endpoint answered {}", resp.status()));
        }
        let set: JwkSet = resp.json().await.map_err(|e| format!("not a JWKS: {e}"))?;
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
