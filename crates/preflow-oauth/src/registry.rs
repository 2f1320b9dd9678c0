//! Developers, API products, apps and credentials (spec/policies.md §6.1).
//!
//! The registry is local state: it is read on every request and answered inline. Entities
//! are immutable values behind [`Arc`]; changing one replaces it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};

use dashmap::DashMap;

use crate::error::RegistryError;
use crate::resource::ResourcePattern;
use crate::scope::is_scope_token;
use crate::secret::{DEFAULT_TOKEN_BYTES, PasswordHashCost, SecretHash, random_token};
use crate::token::GrantType;

/// Whether a developer may use their apps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DeveloperStatus {
    /// Active.
    #[default]
    Active,
    /// Inactive: all of the developer's apps are refused.
    Inactive,
}

/// A developer: the owner of apps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Developer {
    /// Email address; identifies the developer.
    pub email: String,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// User name.
    pub user_name: String,
    /// Status.
    pub status: DeveloperStatus,
    /// Custom attributes.
    pub attributes: Vec<(String, String)>,
}

impl Developer {
    /// An active developer with this email and no other details.
    pub fn new(email: impl Into<String>) -> Self {
        Self {
            email: email.into(),
            first_name: String::new(),
            last_name: String::new(),
            user_name: String::new(),
            status: DeveloperStatus::Active,
            attributes: Vec::new(),
        }
    }
}

/// Unit of a quota interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaTimeUnit {
    /// Minutes.
    Minute,
    /// Hours.
    Hour,
    /// Days.
    Day,
    /// Weeks.
    Week,
    /// Months.
    Month,
}

impl QuotaTimeUnit {
    /// The Apigee spelling (`minute`, `hour`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Minute => "minute",
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        }
    }
}

/// A product's quota: `limit` requests per `interval` `time_unit`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProductQuota {
    /// Requests allowed per interval.
    pub limit: u64,
    /// Length of the interval in `time_unit`s.
    pub interval: u64,
    /// Unit of the interval.
    pub time_unit: QuotaTimeUnit,
}

/// An API product: a bundle of proxies and resource paths that apps subscribe to.
///
/// Empty `environments` or `proxies` lists mean "all"; an empty `api_resources` list
/// matches every path (as Edge Microgateway and SAP do).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiProduct {
    /// Name; identifies the product.
    pub name: String,
    /// Display name.
    pub display_name: String,
    /// Environments the product is available in.
    pub environments: Vec<String>,
    /// API proxies the product covers.
    pub proxies: Vec<String>,
    /// Resource path patterns, matched against `proxy.pathsuffix`.
    pub api_resources: Vec<ResourcePattern>,
    /// OAuth scopes the product grants.
    pub scopes: Vec<String>,
    /// Quota settings, exposed as `apiproduct.developer.quota.*`.
    pub quota: Option<ProductQuota>,
    /// Custom attributes, exposed as `apiproduct.{name}`.
    pub attributes: Vec<(String, String)>,
}

impl ApiProduct {
    /// A product with this name that covers everything (no restrictions, no scopes).
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        Self {
            display_name: name.clone(),
            name,
            environments: Vec::new(),
            proxies: Vec::new(),
            api_resources: Vec::new(),
            scopes: Vec::new(),
            quota: None,
            attributes: Vec::new(),
        }
    }

    /// Adds API resource patterns.
    pub fn with_resources<'a>(
        mut self,
        patterns: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, RegistryError> {
        for p in patterns {
            self.api_resources.push(ResourcePattern::new(p)?);
        }
        Ok(self)
    }

    /// Sets the proxies.
    pub fn with_proxies<'a>(mut self, proxies: impl IntoIterator<Item = &'a str>) -> Self {
        self.proxies = proxies.into_iter().map(str::to_owned).collect();
        self
    }

    /// Sets the environments.
    pub fn with_environments<'a>(mut self, envs: impl IntoIterator<Item = &'a str>) -> Self {
        self.environments = envs.into_iter().map(str::to_owned).collect();
        self
    }

    /// Sets the scopes (each must be an RFC 6749 §3.3 scope-token).
    pub fn with_scopes<'a>(
        mut self,
        scopes: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, RegistryError> {
        for s in scopes {
            if !is_scope_token(s) {
                return Err(RegistryError::InvalidScope(s.to_owned()));
            }
            self.scopes.push(s.to_owned());
        }
        Ok(self)
    }

    /// Sets the quota.
    pub fn with_quota(mut self, limit: u64, interval: u64, time_unit: QuotaTimeUnit) -> Self {
        self.quota = Some(ProductQuota {
            limit,
            interval,
            time_unit,
        });
        self
    }

    /// Whether this product authorizes a call to `proxy` in `environment` at `path_suffix`
    /// (spec/policies.md §6.3).
    pub fn covers(&self, proxy: &str, path_suffix: &str, environment: &str) -> bool {
        (self.environments.is_empty() || self.environments.iter().any(|e| e == environment))
            && (self.proxies.is_empty() || self.proxies.iter().any(|p| p == proxy))
            && (self.api_resources.is_empty()
                || self.api_resources.iter().any(|r| r.matches(path_suffix)))
    }
}

/// Approval status of an app, a credential or a product on a credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Approval {
    /// Approved.
    #[default]
    Approved,
    /// Waiting for approval (products on a credential only).
    Pending,
    /// Revoked.
    Revoked,
}

impl Approval {
    /// The Apigee spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::Pending => "pending",
            Self::Revoked => "revoked",
        }
    }
}

/// A developer app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// Unique id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Email of the owning developer.
    pub developer_email: String,
    /// Approved or revoked.
    pub status: Approval,
    /// Redirect URI for the authorization-code grant.
    pub callback_url: Option<String>,
    /// Custom attributes, exposed as `app.{name}`.
    pub attributes: Vec<(String, String)>,
    /// Grant types this app may use; `None` means every grant the endpoint supports.
    pub grant_types: Option<Vec<GrantType>>,
    /// Whether the app may authenticate with `client_secret_post` (RFC 6749 §2.3.1 MAY).
    pub allow_client_secret_post: bool,
    /// The introspection role: the app's clients may introspect tokens issued to any
    /// client (a resource server). Without it a client introspects only its own tokens
    /// (RFC 7662 §4). Revocation is never widened by it.
    pub introspect_any_token: bool,
}

impl App {
    /// An approved app with this name; its id is generated when it is added.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            id: String::new(),
            name: name.into(),
            developer_email: String::new(),
            status: Approval::Approved,
            callback_url: None,
            attributes: Vec::new(),
            grant_types: None,
            allow_client_secret_post: true,
            introspect_any_token: false,
        }
    }
}

/// A product subscription of a credential, with its own approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialProduct {
    /// Product name.
    pub name: String,
    /// Approval of this product for this credential.
    pub status: Approval,
}

/// A credential (consumer key and secret) of an app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// Consumer key: the OAuth `client_id` and the API key.
    pub key: String,
    /// The secret, hashed.
    pub secret: SecretHash,
    /// Id of the owning app.
    pub app_id: String,
    /// Approved or revoked.
    pub status: Approval,
    /// Creation time (seconds since the epoch).
    pub issued_at: u64,
    /// Expiry (seconds since the epoch); `None` never expires.
    pub expires_at: Option<u64>,
    /// Subscribed products.
    pub products: Vec<CredentialProduct>,
}

impl Credential {
    /// Names of the products approved on this credential.
    pub fn approved_products(&self) -> impl Iterator<Item = &str> {
        self.products
            .iter()
            .filter(|p| p.status == Approval::Approved)
            .map(|p| p.name.as_str())
    }

    /// Whether the credential has expired at `now`.
    pub fn is_expired(&self, now: u64) -> bool {
        self.expires_at.is_some_and(|e| now >= e)
    }
}

/// How the secret of a new credential is chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSpec {
    /// Generate a secret with this many random bytes (at least 32, i.e. 256 bits),
    /// encoded base64url: only `[A-Za-z0-9_-]`. Stored as SHA-256.
    Generated {
        /// Random bytes.
        bytes: usize,
    },
    /// Use this value (1 to 512 bytes, no control characters; RFC 6749 client secrets are
    /// printable ASCII, imported ones may hold more). Stored as Argon2id.
    Custom(String),
    /// A secret that is already hashed, e.g. read back from a file. The plaintext is not
    /// known, so the [`IssuedCredential`] carries an empty secret.
    Hashed(SecretHash),
}

impl Default for SecretSpec {
    fn default() -> Self {
        Self::Generated {
            bytes: DEFAULT_TOKEN_BYTES,
        }
    }
}

/// The parameters of a new credential.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewCredential {
    /// Custom consumer key; generated (24 random bytes, base64url) when `None`.
    pub key: Option<String>,
    /// The secret.
    pub secret: SecretSpec,
    /// Products; each starts approved.
    pub products: Vec<String>,
    /// Expiry (seconds since the epoch); `None` never expires.
    pub expires_at: Option<u64>,
    /// Creation time (seconds since the epoch).
    pub issued_at: u64,
}

/// A created credential. The plaintext secret is shown here once and never stored.
#[derive(Clone, PartialEq, Eq)]
pub struct IssuedCredential {
    /// The consumer key (client id).
    pub client_id: String,
    /// The plaintext secret.
    pub client_secret: String,
}

impl std::fmt::Debug for IssuedCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IssuedCredential")
            .field("client_id", &self.client_id)
            .field("client_secret", &"…")
            .finish()
    }
}

/// A resource owner for the (disabled by default) password grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResourceOwner {
    /// User name.
    pub username: String,
    /// Argon2id hash of the password.
    pub password: SecretHash,
}

/// A credential with the app and developer it belongs to, as found by a lookup.
#[derive(Debug, Clone)]
pub struct ClientRecord {
    /// The credential.
    pub credential: Arc<Credential>,
    /// Its app.
    pub app: Arc<App>,
    /// The app's developer.
    pub developer: Arc<Developer>,
    /// The credential's approved products as the registry defines them now, in the
    /// credential's order, so a verification finds its product without another lookup;
    /// kept in step when a product or the credential's products change.
    approved: Arc<[Arc<ApiProduct>]>,
}

impl ClientRecord {
    /// The credential's approved products (those the registry defines), in its order.
    pub fn approved_products(&self) -> &[Arc<ApiProduct>] {
        &self.approved
    }
}

/// Why a credential that was found may not be used (checked in the order of
/// spec/policies.md §6.2, after the secret if there is one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientRefusal {
    /// The credential has expired.
    CredentialExpired,
    /// The credential is not approved.
    CredentialNotApproved,
    /// The app is not approved.
    AppNotApproved,
    /// The developer is not active.
    DeveloperInactive,
}

impl ClientRefusal {
    /// Plain description.
    pub fn description(self) -> &'static str {
        match self {
            Self::CredentialExpired => "the client credential has expired",
            Self::CredentialNotApproved => "the client credential is not approved",
            Self::AppNotApproved => "the app is not approved",
            Self::DeveloperInactive => "the app's developer is not active",
        }
    }
}

/// A registry map. foldhash's quality hasher is randomly seeded per map (hash flooding
/// stays out of reach, as with SipHash) and hashes a short key in a fraction of the time;
/// every token verification looks up its client and product here.
type Map<V> = DashMap<String, V, foldhash::quality::RandomState>;

/// The client records, read by every token and API-key verification: a lock-free map
/// ([`papaya`]), so a lookup takes no shard lock and workers looking up the same client on
/// several cores write no shared cache line for it. Writes are rare (administration) and
/// take [`Registry`]'s write lock, so each read-modify-write of a record is whole.
type ClientMap = papaya::HashMap<String, Arc<ClientRecord>, foldhash::quality::RandomState>;

/// Developers, products, apps and credentials.
#[derive(Debug, Default)]
pub struct Registry {
    developers: Map<Arc<Developer>>,
    products: Map<Arc<ApiProduct>>,
    apps: Map<Arc<App>>,
    /// Credentials with their app and developer, so a lookup by client id is one probe;
    /// kept in step when an app or developer changes.
    credentials: ClientMap,
    /// Serialises the writes that change client records (and the maps they are built
    /// from), so a record is never rebuilt from a definition another writer is replacing.
    writes: Mutex<()>,
    owners: Map<Arc<ResourceOwner>>,
    cost: PasswordHashCost,
    /// Set once a client secret is stored as Argon2id: from then on every rejected client
    /// authentication does one Argon2id verification's work (see
    /// [`Registry::pad_rejection`]).
    chosen_secrets: AtomicBool,
    /// An Argon2id hash at this registry's cost, verified against for padding.
    dummy_hash: OnceLock<SecretHash>,
}

fn check_printable(value: &str, what: &'static str) -> Result<(), RegistryError> {
    if value.is_empty() || value.len() > 512 || value.chars().any(char::is_control) {
        return Err(RegistryError::InvalidCredentialValue(what));
    }
    Ok(())
}

impl Registry {
    /// An empty registry with the default Argon2id cost.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty registry hashing custom secrets with this Argon2id cost.
    pub fn with_password_hash_cost(cost: PasswordHashCost) -> Self {
        Self {
            cost,
            ..Self::default()
        }
    }

    /// Takes the write lock (a panic elsewhere while holding it leaves no half-written
    /// record behind: each record is replaced whole, so the lock is taken back).
    fn write_lock(&self) -> MutexGuard<'_, ()> {
        self.writes.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Replaces each client record for which `change` returns a new version. The caller
    /// holds the write lock.
    fn refresh_clients(&self, change: impl Fn(&ClientRecord) -> Option<ClientRecord>) {
        let map = self.credentials.pin();
        let changed: Vec<(String, ClientRecord)> = map
            .iter()
            .filter_map(|(key, record)| change(record).map(|new| (key.clone(), new)))
            .collect();
        for (key, record) in changed {
            map.insert(key, Arc::new(record));
        }
    }

    /// Replaces one client record by a changed copy. The caller holds the write lock.
    fn update_client(
        &self,
        key: &str,
        change: impl FnOnce(&mut ClientRecord),
    ) -> Result<(), RegistryError> {
        let map = self.credentials.pin();
        let mut record = map
            .get(key)
            .map(|r| ClientRecord::clone(r))
            .ok_or_else(|| RegistryError::UnknownCredential(key.to_owned()))?;
        change(&mut record);
        map.insert(key.to_owned(), Arc::new(record));
        Ok(())
    }

    /// Adds or replaces a developer.
    pub fn put_developer(&self, developer: Developer) {
        let _writing = self.write_lock();
        let developer = Arc::new(developer);
        let replaced = self
            .developers
            .insert(developer.email.clone(), Arc::clone(&developer));
        // A new developer has no apps yet, so no client record to refresh: loading n
        // developers stays O(n) rather than a scan of every record each.
        if replaced.is_some() {
            self.refresh_developer(&developer);
        }
    }

    fn refresh_developer(&self, developer: &Arc<Developer>) {
        self.refresh_clients(|record| {
            (record.app.developer_email == developer.email).then(|| ClientRecord {
                developer: Arc::clone(developer),
                ..record.clone()
            })
        });
    }

    fn refresh_app(&self, app: &Arc<App>) {
        // A replaced app may belong to another developer now: its records take that one.
        let developer = self.developer(&app.developer_email);
        self.refresh_clients(|record| {
            (record.credential.app_id == app.id).then(|| ClientRecord {
                app: Arc::clone(app),
                developer: developer
                    .clone()
                    .unwrap_or_else(|| Arc::clone(&record.developer)),
                ..record.clone()
            })
        });
    }

    /// Sets a developer's status.
    pub fn set_developer_status(
        &self,
        email: &str,
        status: DeveloperStatus,
    ) -> Result<(), RegistryError> {
        let _writing = self.write_lock();
        let updated = {
            let mut entry = self
                .developers
                .get_mut(email)
                .ok_or_else(|| RegistryError::UnknownDeveloper(email.to_owned()))?;
            Arc::make_mut(entry.value_mut()).status = status;
            Arc::clone(entry.value())
        };
        self.refresh_developer(&updated);
        Ok(())
    }

    /// A developer by email.
    pub fn developer(&self, email: &str) -> Option<Arc<Developer>> {
        self.developers.get(email).map(|d| Arc::clone(d.value()))
    }

    /// Adds or replaces an API product. Tokens refer to products by name, so a changed
    /// definition applies to tokens already issued.
    pub fn put_product(&self, product: ApiProduct) {
        let _writing = self.write_lock();
        let name = product.name.clone();
        self.products.insert(name.clone(), Arc::new(product));
        self.refresh_clients(|record| {
            record
                .credential
                .products
                .iter()
                .any(|p| p.name == name)
                .then(|| ClientRecord {
                    approved: self.resolve(&record.credential),
                    ..record.clone()
                })
        });
    }

    /// The current definitions of a credential's approved products.
    fn resolve(&self, credential: &Credential) -> Arc<[Arc<ApiProduct>]> {
        credential
            .approved_products()
            .filter_map(|name| self.product(name))
            .collect()
    }

    /// A product by name.
    pub fn product(&self, name: &str) -> Option<Arc<ApiProduct>> {
        self.products.get(name).map(|p| Arc::clone(p.value()))
    }

    /// Adds an app owned by `developer_email`. The app's id is generated if empty.
    /// Returns the id.
    pub fn add_app(&self, developer_email: &str, mut app: App) -> Result<String, RegistryError> {
        let _writing = self.write_lock();
        if !self.developers.contains_key(developer_email) {
            return Err(RegistryError::UnknownDeveloper(developer_email.to_owned()));
        }
        if app.id.is_empty() {
            app.id = random_token(16);
        }
        developer_email.clone_into(&mut app.developer_email);
        let id = app.id.clone();
        let app = Arc::new(app);
        // As for developers: only a replaced app can have credentials to refresh.
        if self.apps.insert(id.clone(), Arc::clone(&app)).is_some() {
            self.refresh_app(&app);
        }
        Ok(id)
    }

    /// An app by id.
    pub fn app(&self, id: &str) -> Option<Arc<App>> {
        self.apps.get(id).map(|a| Arc::clone(a.value()))
    }

    /// Approves or revokes an app.
    pub fn set_app_status(&self, app_id: &str, status: Approval) -> Result<(), RegistryError> {
        let _writing = self.write_lock();
        let updated = {
            let mut entry = self
                .apps
                .get_mut(app_id)
                .ok_or_else(|| RegistryError::UnknownApp(app_id.to_owned()))?;
            Arc::make_mut(entry.value_mut()).status = status;
            Arc::clone(entry.value())
        };
        self.refresh_app(&updated);
        Ok(())
    }

    /// Adds a credential to an app and returns its client id and plaintext secret (the
    /// only time the secret is available).
    pub fn add_credential(
        &self,
        app_id: &str,
        new: NewCredential,
    ) -> Result<IssuedCredential, RegistryError> {
        self.client_parts(app_id, new.products.iter().map(String::as_str))?;
        let key = match new.key {
            Some(k) => {
                check_printable(&k, "consumer key")?;
                k
            }
            None => random_token(24),
        };
        // Hashed before the write lock: an Argon2id hash takes a while.
        let (secret_plain, secret) = self.hash_secret(new.secret)?;
        let _writing = self.write_lock();
        // Read again under the lock, so the record holds the current app and developer.
        let (app, developer) =
            self.client_parts(app_id, new.products.iter().map(String::as_str))?;
        let credential = Credential {
            key: key.clone(),
            secret,
            app_id: app_id.to_owned(),
            status: Approval::Approved,
            issued_at: new.issued_at,
            expires_at: new.expires_at,
            products: new
                .products
                .into_iter()
                .map(|name| CredentialProduct {
                    name,
                    status: Approval::Approved,
                })
                .collect(),
        };
        let map = self.credentials.pin();
        if map.contains_key(&key) {
            return Err(RegistryError::DuplicateKey(key));
        }
        let approved = self.resolve(&credential);
        map.insert(
            key.clone(),
            Arc::new(ClientRecord {
                credential: Arc::new(credential),
                app,
                developer,
                approved,
            }),
        );
        Ok(IssuedCredential {
            client_id: key,
            client_secret: secret_plain,
        })
    }

    /// The app and developer a credential of `app_id` belongs to, once its products are
    /// known to exist.
    fn client_parts<'a>(
        &self,
        app_id: &str,
        mut products: impl Iterator<Item = &'a str>,
    ) -> Result<(Arc<App>, Arc<Developer>), RegistryError> {
        let app = self
            .app(app_id)
            .ok_or_else(|| RegistryError::UnknownApp(app_id.to_owned()))?;
        let developer = self
            .developer(&app.developer_email)
            .ok_or_else(|| RegistryError::UnknownDeveloper(app.developer_email.clone()))?;
        if let Some(p) = products.find(|p| !self.products.contains_key(*p)) {
            return Err(RegistryError::UnknownProduct(p.to_owned()));
        }
        Ok((app, developer))
    }

    fn hash_secret(&self, spec: SecretSpec) -> Result<(String, SecretHash), RegistryError> {
        Ok(match spec {
            SecretSpec::Generated { bytes } => {
                let s = random_token(bytes.max(DEFAULT_TOKEN_BYTES));
                let h = SecretHash::generated(&s);
                (s, h)
            }
            SecretSpec::Custom(s) => {
                check_printable(&s, "client secret")?;
                let h = SecretHash::custom(&s, self.cost)?;
                (s, h)
            }
            SecretSpec::Hashed(h) => (String::new(), h),
        })
        .inspect(|(_, h)| {
            if matches!(h, SecretHash::Argon2(_)) {
                self.chosen_secrets.store(true, Ordering::Relaxed);
            }
        })
    }

    /// Whether any client secret has been stored as Argon2id.
    pub fn has_chosen_secrets(&self) -> bool {
        self.chosen_secrets.load(Ordering::Relaxed)
    }

    /// Pads the work of a rejected client authentication so that every rejection costs
    /// the same whatever the client id: `stored` is the secret of the id (`None` for an
    /// unknown id) against which `presented` already failed.
    ///
    /// Once any secret is stored as Argon2id, every rejection costs one Argon2id
    /// verification at this registry's cost: an unknown id or a generated (SHA-256)
    /// secret gets a verification against a dummy hash. That is no amplifier: a known id
    /// with a chosen secret, which anyone may name, already costs that much. Without
    /// Argon2id secrets an unknown id costs one SHA-256, as a generated secret does.
    pub(crate) fn pad_rejection(&self, stored: Option<&SecretHash>, presented: &[u8]) {
        match stored {
            Some(SecretHash::Argon2(_)) => {}
            _ if self.has_chosen_secrets() => self.verify_dummy(presented),
            Some(SecretHash::Sha256(_)) => {}
            None => crate::secret::dummy_verify(presented),
        }
    }

    /// One Argon2id verification at this registry's cost, against a dummy hash.
    fn verify_dummy(&self, presented: &[u8]) {
        let dummy = self.dummy_hash.get_or_init(|| {
            SecretHash::custom("preflow-rejection-padding", self.cost)
                .unwrap_or_else(|_| SecretHash::generated(""))
        });
        let _ = std::hint::black_box(dummy.verify(presented));
    }

    /// Replaces the secret of a credential (rotation) and returns the new plaintext secret
    /// (empty for [`SecretSpec::Hashed`]). The old secret stops working at once; tokens
    /// already issued stay valid.
    pub fn set_credential_secret(
        &self,
        key: &str,
        secret: SecretSpec,
    ) -> Result<IssuedCredential, RegistryError> {
        if !self.credentials.pin().contains_key(key) {
            return Err(RegistryError::UnknownCredential(key.to_owned()));
        }
        let (secret_plain, hash) = self.hash_secret(secret)?;
        let _writing = self.write_lock();
        self.update_client(key, |record| {
            Arc::make_mut(&mut record.credential).secret = hash;
        })?;
        Ok(IssuedCredential {
            client_id: key.to_owned(),
            client_secret: secret_plain,
        })
    }

    /// Approves or revokes a credential.
    pub fn set_credential_status(&self, key: &str, status: Approval) -> Result<(), RegistryError> {
        let _writing = self.write_lock();
        self.update_client(key, |record| {
            Arc::make_mut(&mut record.credential).status = status;
        })
    }

    /// Sets the approval of one product on a credential (adding the product if absent).
    pub fn set_credential_product(
        &self,
        key: &str,
        product: &str,
        status: Approval,
    ) -> Result<(), RegistryError> {
        let _writing = self.write_lock();
        if !self.products.contains_key(product) {
            return Err(RegistryError::UnknownProduct(product.to_owned()));
        }
        self.update_client(key, |record| {
            let cred = Arc::make_mut(&mut record.credential);
            match cred.products.iter_mut().find(|p| p.name == product) {
                Some(p) => p.status = status,
                None => cred.products.push(CredentialProduct {
                    name: product.to_owned(),
                    status,
                }),
            }
            record.approved = self.resolve(&record.credential);
        })
    }

    /// A credential by consumer key.
    pub fn credential(&self, key: &str) -> Option<Arc<Credential>> {
        self.credentials
            .pin()
            .get(key)
            .map(|c| Arc::clone(&c.credential))
    }

    /// A credential with its app and developer.
    pub fn client(&self, key: &str) -> Option<Arc<ClientRecord>> {
        self.credentials.pin().get(key).map(Arc::clone)
    }

    /// Adds a resource owner for the password grant; the password is hashed with Argon2id.
    pub fn add_resource_owner(&self, username: &str, password: &str) -> Result<(), RegistryError> {
        let hash = SecretHash::custom(password, self.cost)?;
        match self.owners.entry(username.to_owned()) {
            dashmap::Entry::Occupied(_) => {
                Err(RegistryError::DuplicateResourceOwner(username.to_owned()))
            }
            dashmap::Entry::Vacant(v) => {
                v.insert(Arc::new(ResourceOwner {
                    username: username.to_owned(),
                    password: hash,
                }));
                Ok(())
            }
        }
    }

    /// Checks resource-owner credentials.
    pub fn verify_resource_owner(&self, username: &str, password: &str) -> bool {
        match self.owners.get(username).map(|o| Arc::clone(o.value())) {
            Some(owner) => owner.password.verify(password.as_bytes()),
            None => {
                // As much work as a wrong password, so usernames cannot be told by timing.
                self.verify_dummy(password.as_bytes());
                false
            }
        }
    }

    /// Every developer (in no particular order), e.g. to save the registry to a store.
    pub fn developers(&self) -> Vec<Arc<Developer>> {
        self.developers
            .iter()
            .map(|d| Arc::clone(d.value()))
            .collect()
    }

    /// Every API product (in no particular order).
    pub fn products(&self) -> Vec<Arc<ApiProduct>> {
        self.products
            .iter()
            .map(|p| Arc::clone(p.value()))
            .collect()
    }

    /// Every app (in no particular order).
    pub fn apps(&self) -> Vec<Arc<App>> {
        self.apps.iter().map(|a| Arc::clone(a.value())).collect()
    }

    /// Every credential (in no particular order); secrets appear only as their hashes.
    pub fn credentials(&self) -> Vec<Arc<Credential>> {
        self.credentials
            .pin()
            .iter()
            .map(|(_, c)| Arc::clone(&c.credential))
            .collect()
    }

    /// Adds or replaces a credential whose secret is already hashed, e.g. one restored
    /// from a store. Its app (and the app's developer) and its products must exist.
    pub fn put_credential(&self, credential: Credential) -> Result<(), RegistryError> {
        let _writing = self.write_lock();
        let (app, developer) = self.client_parts(
            &credential.app_id,
            credential.products.iter().map(|p| p.name.as_str()),
        )?;
        check_printable(&credential.key, "consumer key")?;
        let approved = self.resolve(&credential);
        self.credentials.pin().insert(
            credential.key.clone(),
            Arc::new(ClientRecord {
                credential: Arc::new(credential),
                app,
                developer,
                approved,
            }),
        );
        Ok(())
    }

    /// Checks that a found client may be used at `now` (spec/policies.md §6.2, steps 2-3).
    pub fn check_client(client: &ClientRecord, now: u64) -> Result<(), ClientRefusal> {
        if client.credential.is_expired(now) {
            return Err(ClientRefusal::CredentialExpired);
        }
        if client.credential.status != Approval::Approved {
            return Err(ClientRefusal::CredentialNotApproved);
        }
        if client.app.status != Approval::Approved {
            return Err(ClientRefusal::AppNotApproved);
        }
        if client.developer.status != DeveloperStatus::Active {
            return Err(ClientRefusal::DeveloperInactive);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry_with_app() -> (Registry, String) {
        let r = Registry::with_password_hash_cost(PasswordHashCost::insecure_for_tests());
        r.put_developer(Developer::new("d@example.com"));
        let app = r.add_app("d@example.com", App::new("a")).unwrap();
        (r, app)
    }

    /// A registry with one app holding one credential, `k`, of no product.
    fn registry_with_client() -> (Registry, String) {
        let (r, app) = registry_with_app();
        r.add_credential(
            &app,
            NewCredential {
                key: Some("k".into()),
                ..Default::default()
            },
        )
        .unwrap();
        (r, app)
    }

    #[test]
    fn concurrent_writes_to_one_client_are_all_kept() {
        // Each thread adds its own product to the same credential while others change the
        // app and the developer: a read-modify-write of the record that another writer
        // interleaves with would drop one of the changes.
        let (r, app) = registry_with_client();
        let products: Vec<String> = (0..8).map(|i| format!("p{i}")).collect();
        for p in &products {
            r.put_product(ApiProduct::new(p));
        }
        std::thread::scope(|s| {
            for p in &products {
                let r = &r;
                s.spawn(move || {
                    for _ in 0..50 {
                        r.set_credential_product("k", p, Approval::Revoked).unwrap();
                        r.set_credential_product("k", p, Approval::Approved)
                            .unwrap();
                    }
                });
            }
            let (r, app) = (&r, &app);
            s.spawn(move || {
                for i in 0..100 {
                    let status = if i % 2 == 0 {
                        Approval::Revoked
                    } else {
                        Approval::Approved
                    };
                    r.set_app_status(app, status).unwrap();
                    r.put_developer(Developer::new("d@example.com"));
                }
            });
        });
        let client = r.client("k").unwrap();
        let mut names: Vec<&str> = client
            .approved_products()
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        names.sort_unstable();
        assert_eq!(
            names,
            products.iter().map(String::as_str).collect::<Vec<_>>()
        );
        // The record holds the app as the registry has it now (the last write approved it).
        assert_eq!(client.app.status, Approval::Approved);
        assert_eq!(r.app(&app).unwrap().status, Approval::Approved);
    }

    #[test]
    fn a_replaced_developer_or_app_reaches_its_client_records() {
        // New developers and apps skip the refresh of client records (they have none);
        // replaced ones must still reach the records of their credentials.
        let (r, app) = registry_with_client();
        let mut developer = Developer::new("d@example.com");
        developer.attributes = vec![("tier".into(), "gold".into())];
        r.put_developer(developer);
        let mut replacement = App::new("renamed");
        replacement.id = app.clone();
        assert_eq!(r.add_app("d@example.com", replacement).unwrap(), app);
        let client = r.client("k").unwrap();
        assert_eq!(
            client.developer.attributes,
            [("tier".into(), "gold".into())]
        );
        assert_eq!(client.app.name, "renamed");
        // A second developer and app leave the first client record as it was.
        let mut inactive = Developer::new("e@example.com");
        inactive.status = DeveloperStatus::Inactive;
        r.put_developer(inactive);
        r.add_app("e@example.com", App::new("other")).unwrap();
        assert_eq!(r.client("k").unwrap().app.name, "renamed");
        assert_eq!(Registry::check_client(&r.client("k").unwrap(), 0), Ok(()));
        // The app handed to that (inactive) developer: its credential follows it.
        let mut moved = App::new("renamed");
        moved.id = app.clone();
        r.add_app("e@example.com", moved).unwrap();
        let client = r.client("k").unwrap();
        assert_eq!(client.developer.email, "e@example.com");
        assert_eq!(
            Registry::check_client(&client, 0),
            Err(ClientRefusal::DeveloperInactive)
        );
    }

    #[test]
    fn hashed_secrets_are_taken_as_given() {
        let (r, app) = registry_with_app();
        let hash = SecretHash::generated("s3cret");
        let issued = r
            .add_credential(
                &app,
                NewCredential {
                    key: Some("k".into()),
                    secret: SecretSpec::Hashed(hash.clone()),
                    ..Default::default()
                },
            )
            .unwrap();
        assert_eq!(issued.client_secret, "");
        assert_eq!(r.credential("k").unwrap().secret, hash);
        assert!(r.credential("k").unwrap().secret.verify(b"s3cret"));
    }

    #[test]
    fn rotation_replaces_the_secret() {
        let (r, app) = registry_with_app();
        let first = r
            .add_credential(
                &app,
                NewCredential {
                    key: Some("k".into()),
                    ..Default::default()
                },
            )
            .unwrap();
        let second = r.set_credential_secret("k", SecretSpec::default()).unwrap();
        assert_ne!(first.client_secret, second.client_secret);
        let stored = r.client("k").unwrap().credential.secret.clone();
        assert!(stored.verify(second.client_secret.as_bytes()));
        assert!(!stored.verify(first.client_secret.as_bytes()));
        assert_eq!(
            r.set_credential_secret("nope", SecretSpec::default()),
            Err(RegistryError::UnknownCredential("nope".into()))
        );
    }
}
