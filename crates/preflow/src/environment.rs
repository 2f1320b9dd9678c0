//! What Apigee keeps per environment and bundles refer to by name: target servers (for
//! `<LoadBalancer>`), API providers (`provider://NAME/…` targets, SAP `<provider_id>`),
//! and the names of trust stores, key stores and virtual hosts. The engine resolves
//! names against it at build time; the host owns the files, sockets and certificates.

use std::fmt;

pub use preflow_policy::runtime::TlsSettings;

/// A value that must never be printed: `Debug` shows `"***"`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that sends it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

/// An Apigee TargetServer: a named host and port a `<LoadBalancer>` can choose.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TargetServer {
    /// Name (`<Server name>`).
    pub name: String,
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Disabled servers take no traffic.
    pub enabled: bool,
    /// TLS; `None` for plain HTTP.
    pub tls: Option<TlsSettings>,
}

impl TargetServer {
    /// An enabled plain-HTTP server.
    pub fn new(name: impl Into<String>, host: impl Into<String>, port: u16) -> Self {
        TargetServer {
            name: name.into(),
            host: host.into(),
            port,
            enabled: true,
            tls: None,
        }
    }

    /// With TLS.
    pub fn with_tls(mut self, tls: TlsSettings) -> Self {
        self.tls = Some(tls);
        self
    }

    /// Enabled or not.
    pub fn with_enabled(mut self, enabled: bool) -> Self {
        self.enabled = enabled;
        self
    }
}

/// How the gateway authenticates to a provider's back end.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ProviderAuth {
    /// No credentials.
    #[default]
    None,
    /// HTTP Basic.
    Basic {
        /// User name.
        username: String,
        /// Password.
        password: Secret,
    },
    /// OAuth 2.0 client credentials (RFC 6749 §4.4): the gateway obtains the token.
    ClientCredentials {
        /// The token endpoint (absolute URL).
        token_url: String,
        /// Client id.
        client_id: String,
        /// Client secret.
        client_secret: Secret,
        /// Scope to ask for, if any.
        scope: Option<String>,
    },
}

/// An SAP API provider: where a back end lives and how the gateway authenticates to it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Provider {
    /// Name (`provider://NAME/…`, SAP `<provider_id>`).
    pub name: String,
    /// Base URL (`http://…` or `https://…`), to which a target's path is appended.
    pub base_url: String,
    /// TLS settings for an `https` base URL (default: verified against the web PKI).
    pub tls: Option<TlsSettings>,
    /// Authentication towards the back end.
    pub auth: ProviderAuth,
}

impl Provider {
    /// A provider at `base_url` without authentication.
    pub fn new(name: impl Into<String>, base_url: impl Into<String>) -> Self {
        Provider {
            name: name.into(),
            base_url: base_url.into(),
            tls: None,
            auth: ProviderAuth::None,
        }
    }

    /// With TLS settings.
    pub fn with_tls(mut self, tls: TlsSettings) -> Self {
        self.tls = Some(tls);
        self
    }

    /// With authentication.
    pub fn with_auth(mut self, auth: ProviderAuth) -> Self {
        self.auth = auth;
        self
    }
}

/// The environment a gateway runs in. Default: empty (no target servers, providers,
/// stores or virtual hosts; every ProxyEndpoint serves on every listener).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Environment {
    /// Target servers.
    pub target_servers: Vec<TargetServer>,
    /// API providers.
    pub providers: Vec<Provider>,
    /// Names of the trust stores the host holds.
    pub truststores: Vec<String>,
    /// Names of the key stores the host holds.
    pub keystores: Vec<String>,
    /// Names of the virtual hosts the host listens on.
    pub virtual_hosts: Vec<String>,
}

impl Environment {
    /// An empty environment.
    pub fn new() -> Self {
        Environment::default()
    }

    /// Adds a target server.
    pub fn target_server(mut self, server: TargetServer) -> Self {
        self.target_servers.push(server);
        self
    }

    /// Adds a provider.
    pub fn provider(mut self, provider: Provider) -> Self {
        self.providers.push(provider);
        self
    }

    /// Adds a trust store name.
    pub fn truststore(mut self, name: impl Into<String>) -> Self {
        self.truststores.push(name.into());
        self
    }

    /// Adds a key store name.
    pub fn keystore(mut self, name: impl Into<String>) -> Self {
        self.keystores.push(name.into());
        self
    }

    /// Adds a virtual host name.
    pub fn virtual_host(mut self, name: impl Into<String>) -> Self {
        self.virtual_hosts.push(name.into());
        self
    }

    /// The target server called `name`.
    pub fn find_target_server(&self, name: &str) -> Option<&TargetServer> {
        self.target_servers.iter().find(|s| s.name == name)
    }

    /// The provider called `name`.
    pub fn find_provider(&self, name: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.name == name)
    }
}
