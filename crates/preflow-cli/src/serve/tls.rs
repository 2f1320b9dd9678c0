//! rustls configurations (ring provider): listeners (TLS 1.2 and 1.3, ALPN `h2` and
//! `http/1.1`, optional client certificates) and back ends (web PKI roots or a trust
//! store, host name checked, optional client certificate).

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::environment::{ServerTls, TargetTls};

/// ALPN protocols offered, most preferred first.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

/// Why a TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// rustls refused the material.
    #[error("{what}: {source}")]
    Rustls {
        /// Whose configuration.
        what: String,
        /// Why.
        source: rustls::Error,
    },
    /// `<SSLInfo>` asks for what rustls cannot do.
    #[error("{what}: {why}")]
    Unsupported {
        /// Whose configuration.
        what: String,
        /// Why.
        why: String,
    },
    /// The client CA could not be used.
    #[error("{what}: client CA: {source}")]
    ClientCa {
        /// Whose configuration.
        what: String,
        /// Why.
        source: rustls::server::VerifierBuilderError,
    },
}

// ring builds here without downloads (aws-lc needs cmake and more); its provider lacks
// only the post-quantum key exchange, which is why rustls marks it deprecated.
#[allow(deprecated)]
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn roots(certs: &[CertificateDer<'static>]) -> RootCertStore {
    let mut store = RootCertStore::empty();
    // A certificate that is not a usable CA is skipped; an empty store verifies nothing.
    let _ = store.add_parsable_certificates(certs.iter().cloned());
    store
}

/// The server configuration of a TLS virtual host named `name`.
pub fn server_config(name: &str, tls: &ServerTls) -> Result<Arc<ServerConfig>, TlsError> {
    let what = || format!("virtual host `{name}`");
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| TlsError::Rustls {
            what: what(),
            source,
        })?;
    let builder = match &tls.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots(ca)), provider())
                    .build()
                    .map_err(|source| TlsError::ClientCa {
                        what: what(),
                        source,
                    })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder
        .with_single_cert(tls.chain.clone(), tls.key.clone_key())
        .map_err(|source| TlsError::Rustls {
            what: what(),
            source,
        })?;
    config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// The client configuration towards a back end: `settings`, or the web PKI roots.
pub fn client_config(what: &str, settings: &TargetTls) -> Result<Arc<ClientConfig>, TlsError> {
    let mut suites = CryptoProvider::clone(&provider());
    if !settings.ciphers.is_empty() {
        // `<Ciphers>` by IANA name; those rustls does not implement cannot be honoured.
        suites.cipher_suites.retain(|s| {
            let name = format!("{:?}", s.suite());
            settings
                .ciphers
                .iter()
                .any(|c| c.eq_ignore_ascii_case(&name))
        });
        if suites.cipher_suites.is_empty() {
            return Err(TlsError::Unsupported {
                what: what.to_owned(),
                why: format!(
                    "none of the ciphers {:?} is one rustls implements",
                    settings.ciphers
                ),
            });
        }
    }
    let mut versions = Vec::new();
    for p in &settings.protocols {
        match p.to_ascii_uppercase().as_str() {
            "TLSV1.2" => versions.push(&rustls::version::TLS12),
            "TLSV1.3" => versions.push(&rustls::version::TLS13),
            // TLS 1.0, 1.1 and SSL are not offered by rustls (nor safe).
            _ => {}
        }
    }
    if !settings.protocols.is_empty() && versions.is_empty() {
        return Err(TlsError::Unsupported {
            what: what.to_owned(),
            why: format!(
                "none of the protocols {:?} is TLSv1.2 or TLSv1.3",
                settings.protocols
            ),
        });
    }
    let builder = ClientConfig::builder_with_provider(Arc::new(suites));
    let builder = if versions.is_empty() {
        builder.with_safe_default_protocol_versions()
    } else {
        builder.with_protocol_versions(&versions)
    }
    .map_err(|source| TlsError::Rustls {
        what: what.to_owned(),
        source,
    })?;
    let builder = if settings.ignore_validation_errors {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider())))
    } else {
        let store = match &settings.roots {
            Some(certs) => roots(certs),
            None => RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            },
        };
        builder.with_root_certificates(store)
    };
    let config = match &settings.identity {
        None => builder.with_no_client_auth(),
        Some((chain, key)) => builder
            .with_client_auth_cert(chain.clone(), key.clone_key())
            .map_err(|source| TlsError::Rustls {
                what: what.to_owned(),
                source,
            })?,
    };
    Ok(Arc::new(config))
}

/// Accepts any server certificate (with a valid handshake signature): the explicit,
/// logged `ignore_validation_errors` opt-out.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
