//! rustls configurations for inbound STARTTLS and for the upstream, from PEM files.

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::path::Path;
use std::sync::Arc;

use super::SmtpSetupError;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_err(what: &'static str, path: &Path, detail: impl ToString) -> SmtpSetupError {
    SmtpSetupError::Tls {
        what,
        path: path.display().to_string(),
        detail: detail.to_string(),
    }
}

/// The server configuration for inbound STARTTLS.
pub(crate) fn server_config(
    cert: &Path,
    key: &Path,
) -> Result<Arc<rustls::ServerConfig>, SmtpSetupError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls_err("certificate", cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err("certificate", cert, e))?;
    if certs.is_empty() {
        return Err(tls_err("certificate", cert, "no certificate in the file"));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_err("private key", key, e))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("certificate", cert, e))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| tls_err("certificate", cert, e))?;
    Ok(Arc::new(config))
}

/// The client configuration for the upstream: the public web roots plus `extra_ca`.
pub(crate) fn client_config(
    extra_ca: Option<&Path>,
) -> Result<Arc<rustls::ClientConfig>, SmtpSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = extra_ca {
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| tls_err("upstream CA", path, e))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| tls_err("upstream CA", path, e))?;
        if certs.is_empty() {
            return Err(tls_err("upstream CA", path, "no certificate in the file"));
        }
        for c in certs {
            roots.add(c).map_err(|e| tls_err("upstream CA", path, e))?;
        }
    }
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| SmtpSetupError::Invalid(format!("tls: {e}")))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Arc::new(config))
}
