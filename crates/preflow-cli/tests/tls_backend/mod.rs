//! HTTPS back ends for the TLS tests of `preflow serve` and of the Pingora host: a test
//! CA made here (rcgen) and a back end that reports the HTTP version and whether the
//! client presented a certificate.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// A test CA and what it issues, as PEM text.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

impl Ca {
    pub fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        Self {
            issuer: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// (certificate PEM, key PEM) for `names`.
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        let params =
            CertificateParams::new(names.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

/// What the back end saw.
#[derive(Default)]
pub struct Seen {
    pub requests: AtomicUsize,
}

/// An HTTPS back end on 127.0.0.1:0 answering `tls back end via {version}, client
/// certificate: {yes|no}`; with `client_ca`, it requires a client certificate.
pub fn https_backend(
    cert: &str,
    key: &str,
    client_ca: Option<&str>,
) -> (SocketAddr, Arc<Seen>, std::thread::JoinHandle<()>) {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert.as_bytes())
        .collect::<Result<_, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap();
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .unwrap();
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(ca.as_bytes()) {
                roots.add(c.unwrap()).unwrap();
            }
            let v = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .unwrap();
            builder.with_client_cert_verifier(v)
        }
    };
    let mut config = builder.with_single_cert(chain, key).unwrap();
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let seen = Arc::new(Seen::default());
    let (tx, rx) = std::sync::mpsc::channel();
    let seen2 = Arc::clone(&seen);
    let handle = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            tx.send(listener.local_addr().unwrap()).unwrap();
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                let acceptor = acceptor.clone();
                let seen = Arc::clone(&seen2);
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let client_cert = tls.get_ref().1.peer_certificates().is_some();
                    let service =
                        hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                            let seen = Arc::clone(&seen);
                            async move {
                                seen.requests.fetch_add(1, Ordering::SeqCst);
                                let body = format!(
                                    "tls back end via {:?}, client certificate: {}, path {}",
                                    req.version(),
                                    if client_cert { "yes" } else { "no" },
                                    req.uri().path()
                                );
                                let _ = req.into_body().collect().await;
                                Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                                    Bytes::from(body),
                                )))
                            }
                        });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(tls), service)
                        .await;
                });
            }
        });
    });
    (rx.recv().unwrap(), seen, handle)
}

/// A bundle `tls-api` under `dir` at base path `/tls`, whose target's
/// `<HTTPTargetConnection>` holds `connection`; returns the bundle's folder.
pub fn tls_api(dir: &std::path::Path, connection: &str) -> std::path::PathBuf {
    let api = dir.join("tls-api/apiproxy");
    std::fs::create_dir_all(api.join("proxies")).unwrap();
    std::fs::create_dir_all(api.join("targets")).unwrap();
    std::fs::write(api.join("tls-api.xml"), r#"<APIProxy name="tls-api"/>"#).unwrap();
    std::fs::write(
        api.join("proxies/default.xml"),
        r#"<ProxyEndpoint name="default">
  <HTTPProxyConnection><BasePath>/tls</BasePath></HTTPProxyConnection>
  <RouteRule name="r"><TargetEndpoint>default</TargetEndpoint></RouteRule>
</ProxyEndpoint>"#,
    )
    .unwrap();
    std::fs::write(
        api.join("targets/default.xml"),
        format!(
            r#"<TargetEndpoint name="default">
  <HTTPTargetConnection>{connection}</HTTPTargetConnection>
</TargetEndpoint>"#
        ),
    )
    .unwrap();
    dir.join("tls-api")
}
