//! The environment file (`--env FILE`, default `environment.toml` in a PATH folder): what
//! Apigee keeps per environment. Virtual hosts (listen addresses, TLS), trust stores and
//! key stores (PEM files), target servers and API providers. Read and checked at start:
//! unknown keys, dangling references and unreadable PEM files stop the gateway with the
//! file, line and reason.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde::Deserialize;
use toml::Spanned;

/// Largest environment file read.
const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The name of the virtual host that `--listen` sets.
pub const DEFAULT_HOST: &str = "default";

/// Why the environment file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum EnvError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A problem at a place in the file.
    #[error("{path}:{line}:{column}: {message}")]
    At {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// A problem of the file as a whole.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvironmentFile {
    /// `[[virtual_host]]`.
    #[serde(default)]
    pub virtual_host: Vec<Spanned<VirtualHost>>,
    /// `[[truststore]]`.
    #[serde(default)]
    pub truststore: Vec<Spanned<Truststore>>,
    /// `[[keystore]]`.
    #[serde(default)]
    pub keystore: Vec<Spanned<Keystore>>,
    /// `[[target_server]]`.
    #[serde(default)]
    pub target_server: Vec<Spanned<TargetServer>>,
    /// `[[provider]]`.
    #[serde(default)]
    pub provider: Vec<Spanned<Provider>>,
    /// `[[kvm]]`.
    #[serde(default)]
    pub kvm: Vec<Spanned<Kvm>>,
}

/// An environment key value map, read by KeyValueMapOperations with
/// `<Scope>environment</Scope>`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Kvm {
    /// The map's name (`mapIdentifier`).
    pub name: Spanned<String>,
    /// Keep the values encrypted; policies read them into `private.` variables only.
    #[serde(default)]
    pub encrypted: bool,
    /// Entries: a value or a list of values per key.
    #[serde(default)]
    pub entries: BTreeMap<String, KvmValue>,
    /// Entries whose value is read from an environment variable (secrets stay out of
    /// the file): key = variable name.
    #[serde(default)]
    pub entries_env: BTreeMap<String, Spanned<String>>,
}

/// One value or several.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum KvmValue {
    /// `key = "value"`.
    One(String),
    /// `key = ["a", "b"]`.
    Many(Vec<String>),
}

/// A listener with a name that ProxyEndpoints refer to.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VirtualHost {
    /// Name (`<VirtualHost>` of a ProxyEndpoint).
    pub name: Spanned<String>,
    /// Address to listen on (`host:port`; port 0 picks a free port).
    pub listen: Spanned<String>,
    /// Host names served with their own certificate on a shared TLS address (SNI).
    #[serde(default)]
    pub hosts: Vec<String>,
    /// TLS: absent for plain HTTP.
    pub tls: Option<ListenerTls>,
}

/// A listener's certificate and optional client CA.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenerTls {
    /// PEM certificate chain, leaf first.
    pub cert: Spanned<PathBuf>,
    /// PEM private key.
    pub key: Spanned<PathBuf>,
    /// PEM CA certificates that client certificates must chain to (mutual TLS).
    pub client_ca: Option<Spanned<PathBuf>>,
}

/// Named CA certificates.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Truststore {
    /// Name.
    pub name: Spanned<String>,
    /// PEM file of CA certificates.
    pub ca: Spanned<PathBuf>,
}

/// A named client certificate and key.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Keystore {
    /// Name.
    pub name: Spanned<String>,
    /// PEM certificate chain.
    pub cert: Spanned<PathBuf>,
    /// PEM private key.
    pub key: Spanned<PathBuf>,
}

/// TLS towards a back end.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientTls {
    /// Trust store to verify the back end with; default the web PKI roots.
    pub truststore: Option<Spanned<String>>,
    /// Key store with the client certificate to present (mutual TLS).
    pub keystore: Option<Spanned<String>>,
    /// Accept any certificate (Apigee's `IgnoreValidationErrors`): logged at start.
    #[serde(default)]
    pub ignore_validation_errors: bool,
}

/// An Apigee TargetServer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetServer {
    /// Name (`<Server name>` of a load balancer).
    pub name: Spanned<String>,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Disabled servers take no traffic.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// TLS: absent for plain HTTP.
    pub tls: Option<ClientTls>,
}

fn yes() -> bool {
    true
}

/// An SAP API provider: where a back end lives and how the gateway authenticates to it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Provider {
    /// Name (`provider://NAME/…`, SAP `<provider_id>`).
    pub name: Spanned<String>,
    /// Base URL (`http://` or `https://`); with `virtual_host`, a path on that host.
    pub base_url: Spanned<String>,
    /// A virtual host of this gateway that serves the back end: the base URL (and a
    /// `token_url` written as a path) are taken on wherever it listens.
    pub virtual_host: Option<Spanned<String>>,
    /// TLS settings for an `https://` base URL.
    pub tls: Option<ClientTls>,
    /// Authentication towards the back end.
    #[serde(default)]
    pub auth: ProviderAuth,
}

/// How the gateway authenticates to a provider's back end.
#[derive(Debug, Default, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ProviderAuth {
    /// No credentials.
    #[default]
    None,
    /// HTTP Basic.
    Basic {
        /// User name.
        username: String,
        /// Password in the file …
        password: Option<String>,
        /// … or the name of the environment variable that holds it.
        password_env: Option<String>,
    },
    /// OAuth 2.0 client credentials (RFC 6749 §4.4).
    Oauth2ClientCredentials {
        /// Token endpoint.
        token_url: String,
        /// Client id.
        client_id: String,
        /// Secret in the file …
        client_secret: Option<String>,
        /// … or the name of the environment variable that holds it.
        client_secret_env: Option<String>,
        /// Scope to ask for.
        scope: Option<String>,
    },
}

/// PEM material of a listener, ready for rustls.
#[derive(Debug)]
pub struct ServerTls {
    /// Certificate chain.
    pub chain: Vec<CertificateDer<'static>>,
    /// Private key.
    pub key: Arc<PrivateKeyDer<'static>>,
    /// Client CA certificates (mutual TLS), if any.
    pub client_ca: Option<Vec<CertificateDer<'static>>>,
}

/// A virtual host as the gateway uses it.
#[derive(Debug)]
pub struct Host {
    /// Name.
    pub name: String,
    /// Address to bind.
    pub listen: SocketAddr,
    /// Host names (SNI) besides the name.
    pub hosts: Vec<String>,
    /// TLS material.
    pub tls: Option<ServerTls>,
}

/// Resolved TLS settings towards a back end.
#[derive(Debug, Clone, Default)]
pub struct TargetTls {
    /// CA certificates to trust instead of the web PKI roots.
    pub roots: Option<Vec<CertificateDer<'static>>>,
    /// Client certificate chain and key.
    pub identity: Option<(Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>)>,
    /// Accept any server certificate.
    pub ignore_validation_errors: bool,
    /// TLS versions allowed (`TLSv1.2`, `TLSv1.3`); empty: both.
    pub protocols: Vec<String>,
    /// Cipher suites allowed, by their IANA names; empty: rustls's defaults.
    pub ciphers: Vec<String>,
}

/// The environment, checked and with its PEM files read.
#[derive(Debug, Default)]
pub struct Environment {
    /// Virtual hosts in file order.
    pub hosts: Vec<Host>,
    /// TLS settings towards `host:port` back ends: target servers and providers.
    pub target_tls: BTreeMap<(String, u16), TargetTls>,
    /// Names of the target servers (enabled or not).
    pub target_servers: Vec<String>,
    /// Names of the API providers.
    pub providers: Vec<String>,
    /// Trust stores by name, for `<SSLInfo><TrustStore>`.
    pub truststores: BTreeMap<String, Vec<CertificateDer<'static>>>,
    /// Key stores by name, for `<SSLInfo><KeyStore>`.
    pub keystores: BTreeMap<String, Identity>,
    /// What the engine resolves bundles' names against: target servers, providers (with
    /// their credentials), store and virtual-host names.
    pub engine: preflow::Environment,
    /// Providers served by a virtual host of this gateway: index in `engine.providers`,
    /// and the host's name; their URLs are known once the hosts are bound.
    pub vhost_providers: Vec<(usize, String)>,
    /// Environment key value maps.
    pub kvms: Vec<preflow::KvmMap>,
}

/// A client certificate chain and its key.
pub type Identity = (Vec<CertificateDer<'static>>, Arc<PrivateKeyDer<'static>>);

impl ClientTls {
    /// The engine's view: store names only.
    fn settings(&self) -> preflow::TlsSettings {
        let mut t = preflow::TlsSettings::verified();
        if let Some(n) = &self.truststore {
            t = t.with_truststore(strip_ref(n.get_ref()));
        }
        if let Some(n) = &self.keystore {
            t = t.with_keystore(strip_ref(n.get_ref()));
        }
        if self.ignore_validation_errors {
            t = t.ignoring_validation_errors();
        }
        t
    }
}

/// A secret given inline or by environment variable name (checked at start).
fn secret(inline: &Option<String>, var: &Option<String>) -> preflow::Secret {
    preflow::Secret::new(match (inline, var) {
        (Some(s), _) => s.clone(),
        (None, Some(v)) => std::env::var(v).unwrap_or_default(),
        (None, None) => String::new(),
    })
}

struct Reader<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Reader<'_> {
    fn at(&self, offset: usize, message: impl Into<String>) -> EnvError {
        let before = self.text.get(..offset).unwrap_or(self.text);
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        EnvError::At {
            path: self.path.to_owned(),
            line,
            column,
            message: message.into(),
        }
    }

    fn file(&self, p: &Spanned<PathBuf>) -> PathBuf {
        let rel = p.get_ref();
        if rel.is_absolute() {
            rel.clone()
        } else {
            self.path
                .parent()
                .unwrap_or_else(|| Path::new("."))
                .join(rel)
        }
    }

    fn certs(&self, p: &Spanned<PathBuf>) -> Result<Vec<CertificateDer<'static>>, EnvError> {
        let file = self.file(p);
        let certs = CertificateDer::pem_file_iter(&file)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| {
                self.at(
                    p.span().start,
                    format!("cannot read certificates from {}: {e}", file.display()),
                )
            })?;
        if certs.is_empty() {
            return Err(self.at(
                p.span().start,
                format!("{} holds no PEM certificate", file.display()),
            ));
        }
        Ok(certs)
    }

    fn key(&self, p: &Spanned<PathBuf>) -> Result<PrivateKeyDer<'static>, EnvError> {
        let file = self.file(p);
        // The key's content never goes into the message.
        PrivateKeyDer::from_pem_file(&file).map_err(|e| {
            self.at(
                p.span().start,
                format!("cannot read a private key from {}: {e}", file.display()),
            )
        })
    }
}

impl Environment {
    /// Reads and checks `path`.
    pub fn read(path: &Path) -> Result<Self, EnvError> {
        let io = |source| EnvError::Io {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.len() > MAX_FILE_BYTES {
            return Err(EnvError::File {
                path: path.to_owned(),
                message: format!("larger than {MAX_FILE_BYTES} bytes"),
            });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Self::parse(path, &text)
    }

    /// Checks the TOML `text` of the file at `path` (relative PEM paths are taken from
    /// its folder).
    pub fn parse(path: &Path, text: &str) -> Result<Self, EnvError> {
        let r = Reader { path, text };
        let file: EnvironmentFile = toml::from_str(text).map_err(|e| match e.span() {
            Some(span) => r.at(span.start, e.message().to_owned()),
            None => EnvError::File {
                path: path.to_owned(),
                message: e.message().to_owned(),
            },
        })?;
        let mut env = Environment::default();

        let mut names = HashSet::new();
        for vh in &file.virtual_host {
            let vh = vh.get_ref();
            if !names.insert(vh.name.get_ref().clone()) {
                return Err(r.at(
                    vh.name.span().start,
                    format!("virtual host `{}` is defined twice", vh.name.get_ref()),
                ));
            }
            let listen: SocketAddr = vh.listen.get_ref().parse().map_err(|_| {
                r.at(
                    vh.listen.span().start,
                    format!("`{}` is not an address (IP:port)", vh.listen.get_ref()),
                )
            })?;
            let tls = match &vh.tls {
                None => None,
                Some(t) => Some(ServerTls {
                    chain: r.certs(&t.cert)?,
                    key: Arc::new(r.key(&t.key)?),
                    client_ca: t.client_ca.as_ref().map(|c| r.certs(c)).transpose()?,
                }),
            };
            env.hosts.push(Host {
                name: vh.name.get_ref().clone(),
                listen,
                hosts: vh.hosts.clone(),
                tls,
            });
        }

        let mut trust = BTreeMap::new();
        for t in &file.truststore {
            let t = t.get_ref();
            let certs = r.certs(&t.ca)?;
            if trust.insert(t.name.get_ref().clone(), certs).is_some() {
                return Err(r.at(
                    t.name.span().start,
                    format!("truststore `{}` is defined twice", t.name.get_ref()),
                ));
            }
        }
        let mut keys = BTreeMap::new();
        for k in &file.keystore {
            let k = k.get_ref();
            let identity = (r.certs(&k.cert)?, Arc::new(r.key(&k.key)?));
            if keys.insert(k.name.get_ref().clone(), identity).is_some() {
                return Err(r.at(
                    k.name.span().start,
                    format!("keystore `{}` is defined twice", k.name.get_ref()),
                ));
            }
        }
        let resolve = |tls: &ClientTls| -> Result<TargetTls, EnvError> {
            let roots = match &tls.truststore {
                None => None,
                Some(name) => Some(trust.get(strip_ref(name.get_ref())).cloned().ok_or_else(
                    || {
                        r.at(
                            name.span().start,
                            format!("no truststore named `{}`", name.get_ref()),
                        )
                    },
                )?),
            };
            let identity = match &tls.keystore {
                None => None,
                Some(name) => Some(keys.get(strip_ref(name.get_ref())).cloned().ok_or_else(
                    || {
                        r.at(
                            name.span().start,
                            format!("no keystore named `{}`", name.get_ref()),
                        )
                    },
                )?),
            };
            Ok(TargetTls {
                roots,
                identity,
                ignore_validation_errors: tls.ignore_validation_errors,
                ..TargetTls::default()
            })
        };

        let mut servers = HashSet::new();
        for s in &file.target_server {
            let span = s.span();
            let s = s.get_ref();
            if !servers.insert(s.name.get_ref().clone()) {
                return Err(r.at(
                    s.name.span().start,
                    format!("target server `{}` is defined twice", s.name.get_ref()),
                ));
            }
            if s.host.trim().is_empty() {
                return Err(r.at(span.start, "a target server needs a host"));
            }
            if let Some(tls) = &s.tls {
                env.target_tls
                    .insert((s.host.to_ascii_lowercase(), s.port), resolve(tls)?);
            }
            tracing::info!(
                target_server = s.name.get_ref().as_str(),
                host = s.host.as_str(),
                port = s.port,
                enabled = s.enabled,
                tls = s.tls.is_some(),
                "target server"
            );
            env.target_servers.push(s.name.get_ref().clone());
            let mut server = preflow::TargetServer::new(s.name.get_ref(), &s.host, s.port)
                .with_enabled(s.enabled);
            if let Some(tls) = &s.tls {
                server = server.with_tls(tls.settings());
            }
            env.engine.target_servers.push(server);
        }

        let mut providers = HashSet::new();
        for p in &file.provider {
            let span = p.span();
            let p = p.get_ref();
            if !providers.insert(p.name.get_ref().clone()) {
                return Err(r.at(
                    p.name.span().start,
                    format!("provider `{}` is defined twice", p.name.get_ref()),
                ));
            }
            let on_vhost = p.virtual_host.as_ref().map(|v| v.get_ref().clone());
            if let Some(v) = &p.virtual_host {
                if !env.hosts.iter().any(|h| h.name == *v.get_ref()) {
                    return Err(r.at(
                        v.span().start,
                        format!("no virtual host named `{}`", v.get_ref()),
                    ));
                }
                if !p.base_url.get_ref().starts_with('/') {
                    return Err(r.at(
                        p.base_url.span().start,
                        "with virtual_host, base_url is a path (starting with /)",
                    ));
                }
            } else {
                let url: http::Uri = p
                    .base_url
                    .get_ref()
                    .parse()
                    .map_err(|_| r.at(p.base_url.span().start, "base_url is not a URL"))?;
                let (Some(scheme), Some(host)) = (url.scheme_str(), url.host()) else {
                    return Err(r.at(
                        p.base_url.span().start,
                        "base_url needs a scheme and a host",
                    ));
                };
                let port = match (url.port_u16(), scheme) {
                    (Some(port), _) => port,
                    (None, "https") => 443,
                    (None, "http") => 80,
                    _ => {
                        return Err(r.at(
                            p.base_url.span().start,
                            "base_url must be http:// or https://",
                        ));
                    }
                };
                if scheme == "https" {
                    let tls = resolve(p.tls.as_ref().unwrap_or(&ClientTls::default()))?;
                    env.target_tls
                        .insert((host.to_ascii_lowercase(), port), tls);
                } else if p.tls.is_some() {
                    return Err(r.at(span.start, "tls settings need an https:// base_url"));
                }
            }
            if let Some(tls) = &p.tls {
                // Checked here: a dangling store name fails at start.
                resolve(tls)?;
            }
            check_auth(&r, span.start, &p.auth, on_vhost.is_some())?;
            // Never the secret.
            let (auth, user) = match &p.auth {
                ProviderAuth::None => ("none", None),
                ProviderAuth::Basic { username, .. } => ("basic", Some(username.as_str())),
                ProviderAuth::Oauth2ClientCredentials {
                    client_id, scope, ..
                } => {
                    tracing::debug!(scope = scope.as_deref().unwrap_or("-"), "provider scope");
                    ("oauth2_client_credentials", Some(client_id.as_str()))
                }
            };
            tracing::info!(
                provider = p.name.get_ref().as_str(),
                base_url = p.base_url.get_ref().as_str(),
                auth,
                user = user.unwrap_or("-"),
                "API provider"
            );
            env.providers.push(p.name.get_ref().clone());
            let auth = match &p.auth {
                ProviderAuth::None => preflow::ProviderAuth::None,
                ProviderAuth::Basic {
                    username,
                    password,
                    password_env,
                } => preflow::ProviderAuth::Basic {
                    username: username.clone(),
                    password: secret(password, password_env),
                },
                ProviderAuth::Oauth2ClientCredentials {
                    token_url,
                    client_id,
                    client_secret,
                    client_secret_env,
                    scope,
                } => preflow::ProviderAuth::ClientCredentials {
                    token_url: token_url.clone(),
                    client_id: client_id.clone(),
                    client_secret: secret(client_secret, client_secret_env),
                    scope: scope.clone(),
                },
            };
            let mut provider =
                preflow::Provider::new(p.name.get_ref(), p.base_url.get_ref()).with_auth(auth);
            if p.base_url.get_ref().starts_with("https://") || on_vhost.is_some() {
                provider = provider.with_tls(p.tls.clone().unwrap_or_default().settings());
            }
            if let Some(v) = on_vhost {
                env.vhost_providers.push((env.engine.providers.len(), v));
            }
            env.engine.providers.push(provider);
        }
        let mut maps = HashSet::new();
        for m in &file.kvm {
            let m = m.get_ref();
            if !maps.insert(m.name.get_ref().clone()) {
                return Err(r.at(
                    m.name.span().start,
                    format!("kvm `{}` is defined twice", m.name.get_ref()),
                ));
            }
            let mut entries: Vec<(String, Vec<String>)> = m
                .entries
                .iter()
                .map(|(k, v)| {
                    let values = match v {
                        KvmValue::One(one) => vec![one.clone()],
                        KvmValue::Many(many) => many.clone(),
                    };
                    (k.clone(), values)
                })
                .collect();
            for (k, var) in &m.entries_env {
                // The variable's name may be shown, never its value.
                let value = std::env::var(var.get_ref()).map_err(|_| {
                    r.at(
                        var.span().start,
                        format!("environment variable `{}` is not set", var.get_ref()),
                    )
                })?;
                entries.push((k.clone(), vec![value]));
            }
            env.kvms.push(preflow::KvmMap {
                name: m.name.get_ref().clone(),
                encrypted: m.encrypted,
                entries,
            });
        }
        env.engine.truststores = trust.keys().cloned().collect();
        env.engine.keystores = keys.keys().cloned().collect();
        env.engine.virtual_hosts = env.hosts.iter().map(|h| h.name.clone()).collect();
        env.truststores = trust;
        env.keystores = keys;
        for ((host, port), tls) in &env.target_tls {
            if tls.ignore_validation_errors {
                tracing::warn!(
                    host,
                    port,
                    "certificates of this back end are not verified (ignore_validation_errors)"
                );
            }
        }
        Ok(env)
    }

    /// The TLS settings of a target's `<SSLInfo>` (or of the target server or provider it
    /// goes through), with the stores it names.
    ///
    /// # Errors
    /// A store the environment does not hold, named in the message.
    pub fn resolve_tls(&self, tls: &preflow::TlsSettings) -> Result<TargetTls, String> {
        let roots = match &tls.truststore {
            None => None,
            Some(n) => Some(
                self.truststores
                    .get(n)
                    .cloned()
                    .ok_or_else(|| format!("the environment has no truststore named `{n}`"))?,
            ),
        };
        let identity = match &tls.keystore {
            None => None,
            Some(n) => Some(
                self.keystores
                    .get(n)
                    .cloned()
                    .ok_or_else(|| format!("the environment has no keystore named `{n}`"))?,
            ),
        };
        Ok(TargetTls {
            roots,
            identity,
            ignore_validation_errors: tls.ignore_validation_errors,
            protocols: tls.protocols.clone(),
            ciphers: tls.ciphers.clone(),
        })
    }

    /// Gives the providers that name a virtual host of this gateway their URLs, from
    /// the addresses the hosts are bound to (`(name, address, tls)`).
    ///
    /// # Errors
    /// A provider whose virtual host is not bound.
    pub fn resolve_virtual_host_providers(
        &mut self,
        bound: &[(String, SocketAddr, bool)],
    ) -> Result<(), EnvError> {
        for (i, vhost) in &self.vhost_providers {
            let Some((_, addr, tls)) = bound.iter().find(|(n, _, _)| n == vhost) else {
                return Err(EnvError::File {
                    path: PathBuf::from("environment"),
                    message: format!("virtual host `{vhost}` of an API provider is not bound"),
                });
            };
            // A host bound to every address is reached on loopback.
            let mut addr = *addr;
            if addr.ip().is_unspecified() {
                addr.set_ip(if addr.is_ipv4() {
                    std::net::Ipv4Addr::LOCALHOST.into()
                } else {
                    std::net::Ipv6Addr::LOCALHOST.into()
                });
            }
            let origin = format!("{}://{addr}", if *tls { "https" } else { "http" });
            if let Some(p) = self.engine.providers.get_mut(*i) {
                p.base_url = format!("{origin}{}", p.base_url);
                if let preflow::ProviderAuth::ClientCredentials { token_url, .. } = &mut p.auth
                    && token_url.starts_with('/')
                {
                    *token_url = format!("{origin}{token_url}");
                }
            }
        }
        Ok(())
    }

    /// The virtual host named `name`.
    pub fn host_mut(&mut self, name: &str) -> Option<&mut Host> {
        self.hosts.iter_mut().find(|h| h.name == name)
    }
}

/// The environment file of bundles given as `paths`: the first `environment.toml`
/// directly in one of the folders.
pub fn find(paths: &[PathBuf]) -> Option<PathBuf> {
    paths
        .iter()
        .filter(|p| p.is_dir())
        .map(|p| p.join("environment.toml"))
        .find(|p| p.is_file())
}

/// `ref://name` and `name` name the same store.
fn strip_ref(name: &str) -> &str {
    name.strip_prefix("ref://").unwrap_or(name)
}

fn check_auth(
    r: &Reader<'_>,
    at: usize,
    auth: &ProviderAuth,
    on_vhost: bool,
) -> Result<(), EnvError> {
    let one_of = |inline: &Option<String>, var: &Option<String>, what: &str| match (inline, var) {
        (Some(_), None) => Ok(()),
        (None, Some(v)) => match std::env::var(v) {
            Ok(s) if !s.is_empty() => Ok(()),
            _ => Err(r.at(
                at,
                format!("the environment variable `{v}` (the {what}) is not set"),
            )),
        },
        _ => Err(r.at(
            at,
            format!(
                "give the {what} either inline or by environment variable name, not both or neither"
            ),
        )),
    };
    match auth {
        ProviderAuth::None => Ok(()),
        ProviderAuth::Basic {
            password,
            password_env,
            ..
        } => one_of(password, password_env, "password"),
        ProviderAuth::Oauth2ClientCredentials {
            token_url,
            client_secret,
            client_secret_env,
            ..
        } => {
            let ok = token_url.parse::<http::Uri>().ok().is_some_and(|u| {
                matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
            }) || (on_vhost && token_url.starts_with('/'));
            if !ok {
                return Err(r.at(
                    at,
                    "token_url must be an http:// or https:// URL (or a path, with virtual_host)",
                ));
            }
            one_of(client_secret, client_secret_env, "client secret")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Environment, EnvError> {
        Environment::parse(Path::new("/nonexistent/environment.toml"), text)
    }

    #[test]
    fn unknown_keys_fail_with_the_line() {
        let e = parse("[[virtual_host]]\nname = \"default\"\nlisten = \"127.0.0.1:0\"\nport = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("/nonexistent/environment.toml:4:"), "{e}");
        assert!(e.contains("unknown field `port`"), "{e}");
    }

    #[test]
    fn key_value_maps_are_read() {
        let env = parse(
            "[[kvm]]\nname = \"secrets\"\nencrypted = true\nentries = { a = \"1\", b = [\"x\", \"y\"] }\n",
        )
        .unwrap();
        assert_eq!(env.kvms.len(), 1);
        assert!(env.kvms[0].encrypted);
        assert_eq!(
            env.kvms[0].entries,
            [
                ("a".to_owned(), vec!["1".to_owned()]),
                ("b".to_owned(), vec!["x".to_owned(), "y".to_owned()])
            ]
        );
        let e = parse("[[kvm]]\nname = \"m\"\n[[kvm]]\nname = \"m\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("kvm `m` is defined twice") && e.contains(":4:"),
            "{e}"
        );
        let e = parse(
            "[[kvm]]\nname = \"m\"\nentries_env = { pw = \"PREFLOW_TEST_SURELY_UNSET_VAR\" }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("PREFLOW_TEST_SURELY_UNSET_VAR` is not set"),
            "{e}"
        );
    }

    #[test]
    fn dangling_references_fail_with_the_line() {
        let e = parse(
            "[[provider]]\nname = \"p\"\nbase_url = \"https://b.example\"\ntls = { truststore = \"nope\" }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("environment.toml:4:"), "{e}");
        assert!(e.contains("no truststore named `nope`"), "{e}");
        let e = parse("[[target_server]]\nname = \"s\"\nhost = \"b\"\nport = 1\ntls = { keystore = \"ref://k\" }\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(":5:") && e.contains("no keystore named `ref://k`"),
            "{e}"
        );
    }

    #[test]
    fn missing_pem_files_fail_with_the_line() {
        let e = parse("[[truststore]]\nname = \"t\"\nca = \"missing.pem\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(":3:") && e.contains("/nonexistent/missing.pem"),
            "{e}"
        );
    }

    #[test]
    fn provider_auth_is_checked_and_secrets_stay_out_of_errors() {
        let e = parse(
            "[[provider]]\nname = \"p\"\nbase_url = \"http://b\"\nauth = { type = \"oauth2_client_credentials\", token_url = \"https://t/token\", client_id = \"c\", client_secret = \"s3cret\", client_secret_env = \"X\" }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("not both or neither") && !e.contains("s3cret"),
            "{e}"
        );
        let e = parse(
            "[[provider]]\nname = \"p\"\nbase_url = \"http://b\"\nauth = { type = \"kerberos\" }\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains(":4:") && e.contains("kerberos"), "{e}");
        let ok = parse(
            "[[provider]]\nname = \"p\"\nbase_url = \"http://b\"\nauth = { type = \"basic\", username = \"u\", password = \"pw\" }\n",
        )
        .unwrap();
        assert_eq!(ok.providers, ["p"]);
    }

    #[test]
    fn hosts_and_servers_are_read() {
        let env = parse(
            "[[virtual_host]]\nname = \"default\"\nlisten = \"127.0.0.1:8080\"\n\n[[target_server]]\nname = \"a\"\nhost = \"A.example\"\nport = 8443\ntls = {}\n",
        )
        .unwrap();
        assert_eq!(env.hosts[0].listen, "127.0.0.1:8080".parse().unwrap());
        assert!(env.target_tls.contains_key(&("a.example".to_owned(), 8443)));
        assert_eq!(env.target_servers, ["a"]);
        let e = parse("[[virtual_host]]\nname = \"default\"\nlisten = \"nowhere\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains(":3:") && e.contains("not an address"), "{e}");
    }
}
