//! The state every exchange of a gateway shares: settings, the registry, the in-memory
//! stores and the policies' resources.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use preflow_oauth::{Registry, ResponseMode};
use preflow_ratelimit::SpikeBehaviour;

use crate::policies::cache::{CacheLimits, MemoryCache};
use crate::policies::service::LogSink;

/// Which platform's fault statuses to follow (DESIGN.md: compatibility is explicit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Profile {
    /// Apigee X and Edge cloud: rate-limit violations answer 429 (the default).
    #[default]
    Cloud,
    /// Edge private cloud and SAP API Management: rate-limit violations answer 500.
    PrivateCloud,
}

/// Where SpikeArrest, Quota and token state lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StateMode {
    /// In-memory stores owned by the gateway, answered inline.
    #[default]
    Local,
    /// Every rate-limit and token-store operation is surfaced as
    /// `Step::Store` for the host to run.
    Remote,
}

/// Gateway settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// Fault statuses: 429 or 500 for rate-limit violations.
    pub profile: Profile,
    /// SpikeArrest algorithm: Edge smoothing (default) or the Apigee X token bucket.
    pub spike: SpikeBehaviour,
    /// `environment.name`, also used for API product checks. Default `prod`.
    pub environment: String,
    /// `organization.name`. Default `preflow`.
    pub organization: String,
    /// Shape of token-endpoint responses. Default strict RFC 6749; an OAuthV2 policy
    /// with `<RFCCompliantRequestResponse>true` is always RFC.
    pub token_response: ResponseMode,
    /// After a fault in a TargetEndpoint, run the ProxyEndpoint's DefaultFaultRule too
    /// when it has `AlwaysEnforce` (default true).
    pub proxy_default_rule_on_target_fault: bool,
    /// Deepest nesting of FlowCallouts (default 8).
    pub max_callout_depth: usize,
    /// Default target connect timeout, when the target endpoint sets none.
    pub connect_timeout: Option<Duration>,
    /// Default target I/O timeout, when the target endpoint sets none.
    pub io_timeout: Option<Duration>,
    /// What VerifyAccessToken's `<Scope>` list asks of a token: every listed scope
    /// (default, as SAP's Verify Access Tokens page states) or at least one (Apigee X's
    /// reference).
    pub scope_match: preflow_oauth::ScopeMatch,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            profile: Profile::Cloud,
            spike: SpikeBehaviour::Edge,
            environment: "prod".to_owned(),
            organization: "preflow".to_owned(),
            token_response: ResponseMode::Rfc,
            proxy_default_rule_on_target_fault: true,
            max_callout_depth: 8,
            connect_timeout: None,
            io_timeout: None,
            scope_match: preflow_oauth::ScopeMatch::All,
        }
    }
}

/// State the family policies share across exchanges: the response and lookup cache, the
/// log sink MessageLogging writes to, and JWKS documents by URI.
#[derive(Debug, Default)]
pub struct PolicyResources {
    pub(crate) cache: MemoryCache,
    pub(crate) log_sink: Option<Arc<dyn LogSink>>,
    pub(crate) jwks: HashMap<String, String>,
    throttle_key: Option<SecretKey>,
    /// Environment key value maps the host defines (an environment file's).
    pub(crate) kvms: Vec<KvmMap>,
    kvm_key: Option<SecretKey>,
}

/// An environment-scoped key value map the host provides, as Apigee's management API
/// creates them. Values of an `encrypted` map are kept encrypted (XChaCha20-Poly1305
/// under the deployment's key, see [`PolicyResources::with_kvm_key`]) and
/// KeyValueMapOperations reads them only into `private.` variables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvmMap {
    /// The map's name (`mapIdentifier`).
    pub name: String,
    /// Whether its values are encrypted at rest.
    pub encrypted: bool,
    /// Entries: key and values.
    pub entries: Vec<(String, Vec<String>)>,
}

/// A key that never shows in `Debug` output.
#[derive(Clone, Copy)]
struct SecretKey([u8; 32]);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl PolicyResources {
    /// Resources with a cache bounded by `limits`.
    pub fn new(limits: CacheLimits) -> Self {
        Self {
            cache: MemoryCache::new(limits),
            log_sink: None,
            jwks: HashMap::new(),
            throttle_key: None,
            kvms: Vec::new(),
            kvm_key: None,
        }
    }

    /// Adds an environment key value map.
    pub fn with_kvm(mut self, map: KvmMap) -> Self {
        self.kvms.push(map);
        self
    }

    /// Encrypts the values of encrypted key value maps under `key` instead of a random
    /// per-deployment key: instances that share a store must share it.
    pub fn with_kvm_key(mut self, key: [u8; 32]) -> Self {
        self.kvm_key = Some(SecretKey(key));
        self
    }

    /// Derives the token endpoints' client-authentication throttle keys under `key`
    /// ([`preflow_oauth::Throttle::with_key`]) instead of a random per-process key: the
    /// instances that share a store must share it, so that their counts meet.
    pub fn with_throttle_key(mut self, key: [u8; 32]) -> Self {
        self.throttle_key = Some(SecretKey(key));
        self
    }

    /// The throttle's MAC key set by [`PolicyResources::with_throttle_key`].
    pub fn throttle_key(&self) -> Option<[u8; 32]> {
        self.throttle_key.map(|k| k.0)
    }

    /// Sends MessageLogging records to `sink` (without one they are dropped).
    pub fn with_log_sink(mut self, sink: Arc<dyn LogSink>) -> Self {
        self.log_sink = Some(sink);
        self
    }

    /// The JWKS document VerifyJWT uses for `<JWKS uri="uri">` (the gateway never fetches).
    pub fn with_jwks(mut self, uri: impl Into<String>, document: impl Into<String>) -> Self {
        self.jwks.insert(uri.into(), document.into());
        self
    }
}

/// What the policies of one gateway share across exchanges. Built once with the gateway.
#[derive(Debug)]
#[non_exhaustive]
pub struct Env {
    /// The gateway's settings.
    pub settings: Settings,
    /// Where rate-limit and token state lives.
    pub state: StateMode,
    /// Developers, apps, products and credentials.
    pub registry: Arc<Registry>,
    /// The token store of [`StateMode::Local`].
    pub tokens: preflow_oauth::MemoryStore,
    /// Key value maps: `{scope}:{map}:{key}` to values.
    pub kvm: dashmap::DashMap<String, Vec<String>>,
    /// Caches, the log sink and JWKS documents.
    pub resources: PolicyResources,
    /// This gateway instance's UUID (`system.uuid`), random at start.
    pub instance_uuid: String,
    /// The stored-name prefixes (`env\u{1}{env}\u{1}{map}`) of encrypted maps.
    pub(crate) encrypted_kvms: Vec<String>,
    /// The key encrypted map values are sealed with.
    pub(crate) kvm_cipher: crate::policies::kvm::KvmCipher,
}

impl Env {
    /// An environment with empty stores.
    pub fn new(
        settings: Settings,
        state: StateMode,
        registry: Arc<Registry>,
        resources: PolicyResources,
    ) -> Self {
        let kvm_cipher = crate::policies::kvm::KvmCipher::new(resources.kvm_key.map(|k| k.0));
        let kvm = dashmap::DashMap::new();
        let mut encrypted_kvms = Vec::new();
        for m in &resources.kvms {
            let prefix = crate::policies::kvm::environment_map(&settings.environment, &m.name);
            if m.encrypted {
                encrypted_kvms.push(prefix.clone());
            }
            for (k, vs) in &m.entries {
                let stored = if m.encrypted {
                    vs.iter().map(|v| kvm_cipher.seal(v)).collect()
                } else {
                    vs.clone()
                };
                kvm.insert(format!("{prefix}\u{2}{k}"), stored);
            }
        }
        Env {
            settings,
            state,
            registry,
            tokens: preflow_oauth::MemoryStore::new(),
            kvm,
            resources,
            instance_uuid: uuid::Uuid::new_v4().to_string(),
            encrypted_kvms,
            kvm_cipher,
        }
    }
}
