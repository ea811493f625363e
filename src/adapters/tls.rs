//! TLS for outgoing HTTP (the JWKS and OPA): rustls (ring), the system's root certificates
//! plus, when `AUMOS_TLS_CA_FILE` is set, the CA certificates in that PEM file. Redirects
//! are never followed: a JWKS or OPA URL names the server to trust, not one it points to.
//! (PostgreSQL TLS is set in the database URLs: `sslmode=verify-full&sslrootcert=...`.)

use crate::app::AppError;
use crate::config::Config;

/// A client builder with rustls, the configured roots and no redirects.
pub fn http_client(config: &Config) -> Result<reqwest::ClientBuilder, AppError> {
    let mut builder = reqwest::Client::builder().use_rustls_tls().redirect(reqwest::redirect::Policy::none()).https_only(false);
    if let Some(path) = &config.tls_ca_file {
        let pem = std::fs::read(path).map_err(|e| AppError::Io(format!("AUMOS_TLS_CA_FILE {}: {e}", path.display())))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem)
            .map_err(|e| AppError::Io(format!("AUMOS_TLS_CA_FILE {}: not PEM certificates: {e}", path.display())))?;
        if certs.is_empty() {
            return Err(AppError::Io(format!("AUMOS_TLS_CA_FILE {}: no certificate in the file", path.display())));
        }
        for cert in certs {
            builder = builder.add_root_certificate(cert);
        }
    }
    Ok(builder)
}
