//! Bearer-token verification, roles, and the development key pair.
//!
//! Tokens are JWTs signed with an asymmetric key: EdDSA, ES256 or RS256. Keys come from
//! a PEM file (one key, the configured algorithm) or a JWKS URL (`jwks.rs`: keys by
//! `kid`, each with its algorithm). Only those three algorithms are accepted and a token
//! must use its key's, so `alg: none` and HS* tokens are rejected by construction (no
//! algorithm confusion).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{EncodePrivateKey, EncodePublicKey};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::{JwtAlgorithm, JwtConfig};

/// The claims the service reads.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub tenant_id: String,
    #[serde(default)]
    pub roles: Vec<String>,
    pub iss: String,
    pub aud: String,
    pub exp: u64,
    pub nbf: u64,
    pub iat: u64,
}

/// Roles read from the `roles` claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Admin,
    PolicyAuthor,
    PolicyEvaluator,
    ComplianceOfficer,
    Auditor,
}

impl Role {
    pub const ALL: [Role; 5] = [Role::Admin, Role::PolicyAuthor, Role::PolicyEvaluator, Role::ComplianceOfficer, Role::Auditor];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "governance:admin",
            Role::PolicyAuthor => "policy:author",
            Role::PolicyEvaluator => "policy:evaluator",
            Role::ComplianceOfficer => "compliance:officer",
            Role::Auditor => "auditor",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read key file {path}: {source}")]
    KeyFile {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid key: {0}")]
    Key(String),
    #[error("{0}")]
    Token(String),
}

fn algorithm(a: JwtAlgorithm) -> Algorithm {
    match a {
        JwtAlgorithm::EdDsa => Algorithm::EdDSA,
        JwtAlgorithm::Es256 => Algorithm::ES256,
        JwtAlgorithm::Rs256 => Algorithm::RS256,
    }
}

fn read(path: &Path) -> Result<Vec<u8>, AuthError> {
    std::fs::read(path).map_err(|source| AuthError::KeyFile { path: path.display().to_string(), source })
}

/// Where verification keys come from.
enum Keys {
    /// One PEM public key, for the configured algorithm.
    Static { key: DecodingKey, alg: Algorithm },
    /// A JWKS endpoint: keys by `kid`, each with its own algorithm.
    Jwks(Arc<crate::adapters::jwks::Jwks>),
}

/// The algorithms a token may use: asymmetric only. `none` and HS* never verify, so an
/// HMAC token "signed" with a public key (algorithm confusion) is rejected by construction.
const ACCEPTED: [Algorithm; 3] = [Algorithm::EdDSA, Algorithm::ES256, Algorithm::RS256];

/// Verifies bearer tokens against a PEM public key or a JWKS.
///
/// Verified claims are cached by the token's SHA-256 until shortly before the token
/// expires, so a service calling evaluate many times with one token pays for the
/// signature check once. Expiry is still enforced on every hit.
#[derive(Clone)]
pub struct TokenVerifier {
    keys: Arc<Keys>,
    validation: Validation,
    cache: moka::sync::Cache<[u8; 32], Claims>,
}

impl std::fmt::Debug for TokenVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let source = match &*self.keys {
            Keys::Static { alg, .. } => format!("static {alg:?}"),
            Keys::Jwks(j) => format!("jwks {}", j.url()),
        };
        f.debug_struct("TokenVerifier").field("keys", &source).finish()
    }
}

impl TokenVerifier {
    fn new(keys: Keys, cfg: &JwtConfig) -> Self {
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.set_issuer(&[cfg.issuer.as_str()]);
        validation.set_audience(&[cfg.audience.as_str()]);
        validation.set_required_spec_claims(&["exp", "nbf", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        validation.leeway = cfg.leeway.as_secs();
        let cache = moka::sync::Cache::builder().max_capacity(100_000).time_to_live(Duration::from_secs(60)).build();
        Self { keys: Arc::new(keys), validation, cache }
    }

    pub fn from_pem(pem: &[u8], cfg: &JwtConfig) -> Result<Self, AuthError> {
        let alg = algorithm(cfg.algorithm);
        let key = match cfg.algorithm {
            JwtAlgorithm::EdDsa => DecodingKey::from_ed_pem(pem),
            JwtAlgorithm::Es256 => DecodingKey::from_ec_pem(pem),
            JwtAlgorithm::Rs256 => DecodingKey::from_rsa_pem(pem),
        }
        .map_err(|e| AuthError::Key(e.to_string()))?;
        Ok(Self::new(Keys::Static { key, alg }, cfg))
    }

    pub fn from_file(path: &Path, cfg: &JwtConfig) -> Result<Self, AuthError> {
        Self::from_pem(&read(path)?, cfg)
    }

    /// Keys from a JWKS endpoint (fetched now, and again for an unknown `kid`).
    pub async fn from_jwks(jwks: crate::adapters::jwks::Jwks, cfg: &JwtConfig) -> Self {
        let jwks = Arc::new(jwks);
        jwks.refresh(true).await;
        jwks.spawn_refresher();
        Self::new(Keys::Jwks(jwks), cfg)
    }

    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        if let Some(claims) = self.cache.get(&digest) {
            if claims.exp + self.validation.leeway > now() {
                return Ok(claims);
            }
            self.cache.invalidate(&digest);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|e| AuthError::Token(e.to_string()))?;
        if !ACCEPTED.contains(&header.alg) {
            return Err(AuthError::Token(format!("algorithm {:?} is not accepted", header.alg)));
        }
        let (key, alg) = match &*self.keys {
            Keys::Static { key, alg } => (key.clone(), *alg),
            Keys::Jwks(jwks) => {
                let kid = header.kid.as_deref().ok_or_else(|| AuthError::Token("the token has no kid".into()))?;
                jwks.key(kid).await.ok_or_else(|| AuthError::Token(format!("unknown key id {kid:?}")))?
            }
        };
        if header.alg != alg {
            return Err(AuthError::Token(format!("the token's algorithm {:?} is not its key's {alg:?}", header.alg)));
        }
        let mut validation = self.validation.clone();
        validation.algorithms = vec![alg];
        let claims =
            jsonwebtoken::decode::<Claims>(token, &key, &validation).map(|d| d.claims).map_err(|e| AuthError::Token(e.to_string()))?;
        self.cache.insert(digest, claims.clone());
        Ok(claims)
    }
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Mints a token with the private key in `pem` (development and tests only).
pub fn mint(pem: &[u8], cfg: &JwtConfig, subject: &str, tenant: &str, roles: &[String], ttl: Duration) -> Result<String, AuthError> {
    let key = match cfg.algorithm {
        JwtAlgorithm::EdDsa => EncodingKey::from_ed_pem(pem),
        JwtAlgorithm::Es256 => EncodingKey::from_ec_pem(pem),
        JwtAlgorithm::Rs256 => EncodingKey::from_rsa_pem(pem),
    }
    .map_err(|e| AuthError::Key(e.to_string()))?;
    let iat = now();
    let claims = Claims {
        sub: subject.to_owned(),
        tenant_id: tenant.to_owned(),
        roles: roles.to_vec(),
        iss: cfg.issuer.clone(),
        aud: cfg.audience.clone(),
        exp: iat + ttl.as_secs(),
        nbf: iat,
        iat,
    };
    jsonwebtoken::encode(&Header::new(algorithm(cfg.algorithm)), &claims, &key).map_err(|e| AuthError::Token(e.to_string()))
}

/// Paths of a development key pair under a directory.
pub fn dev_key_paths(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    (dir.join("jwt-ed25519.pem"), dir.join("jwt-ed25519.pub.pem"))
}

/// Creates an Ed25519 development key pair in `dir` unless one exists. The private key
/// file is readable by its owner only.
pub fn ensure_dev_keypair(dir: &Path) -> Result<(), AuthError> {
    let (private, public) = dev_key_paths(dir);
    if private.exists() && public.exists() {
        return Ok(());
    }
    let io = |source, p: &Path| AuthError::KeyFile { path: p.display().to_string(), source };
    std::fs::create_dir_all(dir).map_err(|e| io(e, dir))?;
    let signing = ed25519_dalek::SigningKey::generate(&mut rand_core::OsRng);
    let private_pem = signing.to_pkcs8_pem(LineEnding::LF).map_err(|e| AuthError::Key(e.to_string()))?;
    let public_pem = signing.verifying_key().to_public_key_pem(LineEnding::LF).map_err(|e| AuthError::Key(e.to_string()))?;
    crate::adapters::fsutil::write_private(&private, private_pem.as_bytes()).map_err(|e| io(e, &private))?;
    std::fs::write(&public, public_pem.as_bytes()).map_err(|e| io(e, &public))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> JwtConfig {
        JwtConfig {
            public_key_file: None,
            private_key_file: None,
            algorithm: JwtAlgorithm::EdDsa,
            jwks_url: None,
            jwks_min_refresh: Duration::from_secs(30),
            jwks_max_age: Duration::from_secs(300),
            jwks_allow_insecure_http: false,
            issuer: "iss".into(),
            audience: "aud".into(),
            leeway: Duration::from_secs(0),
        }
    }

    fn keypair() -> (tempdir::Dir, Vec<u8>, Vec<u8>) {
        let dir = tempdir::Dir::new();
        ensure_dev_keypair(dir.path()).unwrap();
        let (private, public) = dev_key_paths(dir.path());
        let (a, b) = (std::fs::read(private).unwrap(), std::fs::read(public).unwrap());
        (dir, a, b)
    }

    mod tempdir {
        pub struct Dir(std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                let p = std::env::temp_dir().join(format!("gov-auth-{}", uuid::Uuid::new_v4()));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
            pub fn path(&self) -> &std::path::Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[tokio::test]
    async fn a_minted_token_verifies_and_carries_its_claims() {
        let (_d, private, public) = keypair();
        let token = mint(&private, &cfg(), "alice", "t1", &["auditor".into()], Duration::from_secs(60)).unwrap();
        let claims = TokenVerifier::from_pem(&public, &cfg()).unwrap().verify(&token).await.unwrap();
        assert_eq!((claims.sub.as_str(), claims.tenant_id.as_str()), ("alice", "t1"));
        assert_eq!(claims.roles, vec!["auditor".to_owned()]);
    }

    #[tokio::test]
    async fn a_token_for_another_audience_is_rejected() {
        let (_d, private, public) = keypair();
        let mut other = cfg();
        other.audience = "someone-else".into();
        let token = mint(&private, &other, "alice", "t1", &[], Duration::from_secs(60)).unwrap();
        assert!(TokenVerifier::from_pem(&public, &cfg()).unwrap().verify(&token).await.is_err());
    }

    #[tokio::test]
    async fn an_unsigned_token_is_rejected() {
        let (_d, _private, public) = keypair();
        // {"alg":"none"} . {claims} . (empty signature)
        let header = base64_url(r#"{"alg":"none","typ":"JWT"}"#);
        let body = base64_url(r#"{"sub":"a","tenant_id":"t","iss":"iss","aud":"aud","exp":9999999999,"nbf":0,"iat":0}"#);
        let token = format!("{header}.{body}.");
        assert!(TokenVerifier::from_pem(&public, &cfg()).unwrap().verify(&token).await.is_err());
    }

    fn base64_url(s: &str) -> String {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s)
    }

    #[test]
    fn roles_parse_only_known_names() {
        assert_eq!(Role::parse("policy:author"), Some(Role::PolicyAuthor));
        assert_eq!(Role::parse("root"), None);
    }
}
