//! The apps file: developers, API products, apps and credentials in TOML.
//!
//! ```toml
//! [[developer]]
//! email = "demo@example.com"
//!
//! [[product]]
//! name = "hello"
//! proxies = ["oauth", "hello-api"]
//! resources = ["/**"]
//!
//! [[app]]
//! id = "demo-app"
//! name = "demo-app"
//! developer = "demo@example.com"
//!
//! [[app.credential]]
//! client_id = "demo-client"
//! client_secret = "demo-secret"        # in clear: hashed (Argon2id) at load
//! # secret_hash = "sha256:…" or "$argon2id$…" instead of client_secret
//! products = ["hello"]
//! ```
//!
//! An app entry may carry `introspect_any_token = true`, the introspection role: its
//! clients may then introspect tokens issued to any client (a resource server's need).
//! Without it a client introspecting another client's token is told `{"active":false}`.
//!
//! Secrets given in clear are hashed when the file is loaded; whenever the gateway writes
//! the file back (after a change through the admin API), it writes hashes only. Writes
//! are atomic: a temporary file in the same folder, fsync, rename, fsync of the folder.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use preflow_oauth::{
    ApiProduct, App, Approval, Developer, DeveloperStatus, NewCredential, PasswordHashCost,
    QuotaTimeUnit, Registry, RegistryError, SecretHash, SecretSpec, TokenHash,
};
use serde::{Deserialize, Serialize};

/// Largest apps file read, in bytes.
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// An error reading, checking or writing the apps file.
#[derive(Debug, thiserror::Error)]
pub enum AppsError {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file is larger than the limit.
    #[error("{path}: larger than {MAX_FILE_BYTES} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The file is not valid TOML or does not have the expected shape.
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// What the parser said, with line and column.
        message: String,
    },
    /// An entry is inconsistent (unknown reference, duplicate, bad value).
    #[error("{0}")]
    Invalid(String),
    /// An entry of a file is inconsistent.
    #[error("{path}: {message}")]
    InFile {
        /// The file.
        path: PathBuf,
        /// What is wrong, and with which entry.
        message: String,
    },
    /// The registry refused an entry.
    #[error(transparent)]
    Registry(#[from] RegistryError),
    /// The file could not be serialised.
    #[error("cannot write the apps file: {0}")]
    Serialize(String),
}

/// Status of a developer in the file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DevStatus {
    /// Active.
    #[default]
    Active,
    /// Inactive: the developer's apps are refused.
    Inactive,
}

/// Approval of an app, a credential or a product on a credential.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Approved.
    #[default]
    Approved,
    /// Pending (products on a credential only).
    Pending,
    /// Revoked.
    Revoked,
}

impl Status {
    fn approval(self) -> Approval {
        match self {
            Self::Approved => Approval::Approved,
            Self::Pending => Approval::Pending,
            Self::Revoked => Approval::Revoked,
        }
    }

    fn is_approved(self) -> bool {
        self == Self::Approved
    }
}

/// A developer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeveloperEntry {
    /// Email; identifies the developer.
    pub email: String,
    /// First name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub first_name: String,
    /// Last name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub last_name: String,
    /// User name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub user_name: String,
    /// Status.
    #[serde(default, skip_serializing_if = "is_default")]
    pub status: DevStatus,
    /// Custom attributes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

/// A product quota.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QuotaEntry {
    /// Requests per interval.
    pub limit: u64,
    /// Length of the interval in time units.
    pub interval: u64,
    /// `minute`, `hour`, `day`, `week` or `month`.
    pub time_unit: TimeUnit,
}

/// Unit of a quota interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimeUnit {
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

impl TimeUnit {
    fn unit(self) -> QuotaTimeUnit {
        match self {
            Self::Minute => QuotaTimeUnit::Minute,
            Self::Hour => QuotaTimeUnit::Hour,
            Self::Day => QuotaTimeUnit::Day,
            Self::Week => QuotaTimeUnit::Week,
            Self::Month => QuotaTimeUnit::Month,
        }
    }
}

/// An API product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductEntry {
    /// Name; identifies the product.
    pub name: String,
    /// Display name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub display_name: String,
    /// Description, shown to developers by the admin API.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Proxies covered; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub proxies: Vec<String>,
    /// Resource path patterns on `proxy.pathsuffix`; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// Environments; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub environments: Vec<String>,
    /// OAuth scopes granted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<QuotaEntry>,
    /// Custom attributes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
}

/// A credential of an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CredentialEntry {
    /// Consumer key (OAuth client id, API key).
    pub client_id: String,
    /// Secret in clear; hashed at load and never written back.
    #[serde(default, skip_serializing)]
    pub client_secret: Option<String>,
    /// Stored secret: `sha256:<64 hex digits>` (generated secrets) or an Argon2id PHC
    /// string `$argon2id$…` (chosen secrets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_hash: Option<String>,
    /// Subscribed products, approved.
    #[serde(default)]
    pub products: Vec<String>,
    /// Approval of individual products when not approved (`pending` or `revoked`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub product_status: BTreeMap<String, Status>,
    /// Status of the credential.
    #[serde(default, skip_serializing_if = "is_default")]
    pub status: Status,
    /// Creation time, seconds since the epoch.
    #[serde(default, skip_serializing_if = "is_default")]
    pub issued_at: u64,
    /// Expiry, seconds since the epoch; absent never expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<u64>,
}

/// An app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppEntry {
    /// Unique id.
    pub id: String,
    /// Name.
    pub name: String,
    /// Email of the owning developer.
    pub developer: String,
    /// Status.
    #[serde(default, skip_serializing_if = "is_default")]
    pub status: Status,
    /// Redirect URI for the authorization-code grant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
    /// Whether the app may send its secret in the request body (`client_secret_post`).
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub client_secret_post: bool,
    /// The introspection role: the app's clients may introspect tokens issued to any
    /// client (for resource servers). Without it a client introspects only its own.
    #[serde(default, skip_serializing_if = "is_default")]
    pub introspect_any_token: bool,
    /// Custom attributes.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// Credentials.
    #[serde(default, rename = "credential")]
    pub credentials: Vec<CredentialEntry>,
}

/// The whole apps file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppsFile {
    /// Developers.
    #[serde(default, rename = "developer")]
    pub developers: Vec<DeveloperEntry>,
    /// API products.
    #[serde(default, rename = "product")]
    pub products: Vec<ProductEntry>,
    /// Apps.
    #[serde(default, rename = "app")]
    pub apps: Vec<AppEntry>,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

fn yes() -> bool {
    true
}

fn is_true(v: &bool) -> bool {
    *v
}

/// Formats a stored secret for the file.
pub fn format_hash(hash: &SecretHash) -> String {
    match hash {
        SecretHash::Sha256(d) => format!("sha256:{}", d.to_hex()),
        SecretHash::Argon2(phc) => phc.clone(),
    }
}

/// Reads a stored secret from the file.
pub fn parse_hash(text: &str) -> Option<SecretHash> {
    if let Some(hex) = text.strip_prefix("sha256:") {
        let bytes = hex.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (slot, pair) in out.iter_mut().zip(bytes.chunks_exact(2)) {
            let hi = char::from(*pair.first()?).to_digit(16)?;
            let lo = char::from(*pair.get(1)?).to_digit(16)?;
            *slot = u8::try_from(hi * 16 + lo).ok()?;
        }
        return Some(SecretHash::Sha256(TokenHash(out)));
    }
    if text.starts_with("$argon2id$") {
        return Some(SecretHash::Argon2(text.to_owned()));
    }
    None
}

impl AppsFile {
    /// Reads and parses a file. Clear secrets are kept as given; [`AppsFile::hash_secrets`]
    /// replaces them.
    pub fn read(path: &Path) -> Result<Self, AppsError> {
        let io = |source| AppsError::Io {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        if meta.len() > MAX_FILE_BYTES {
            return Err(AppsError::TooLarge {
                path: path.to_owned(),
            });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Self::parse(&text).map_err(|message| AppsError::Syntax {
            path: path.to_owned(),
            message,
        })
    }

    /// Reads a file and checks its entries ([`AppsFile::validate`]); errors name the file.
    pub fn load(path: &Path) -> Result<Self, AppsError> {
        let file = Self::read(path)?;
        file.validate().map_err(|e| match e {
            AppsError::Invalid(message) => AppsError::InFile {
                path: path.to_owned(),
                message,
            },
            other => other,
        })?;
        Ok(file)
    }

    /// [`AppsFile::load`], then [`AppsFile::hash_secrets`]: the file as a gateway serves
    /// it.
    pub fn load_hashed(path: &Path, cost: PasswordHashCost) -> Result<Self, AppsError> {
        let mut file = Self::load(path)?;
        file.hash_secrets(cost)?;
        Ok(file)
    }

    /// The apps file of bundles given as `paths`: the first `apps.toml` directly in one
    /// of the folders.
    pub fn find(paths: &[PathBuf]) -> Option<PathBuf> {
        paths
            .iter()
            .filter(|p| p.is_dir())
            .map(|p| p.join("apps.toml"))
            .find(|p| p.is_file())
    }

    /// Parses the TOML text of a file.
    pub fn parse(text: &str) -> Result<Self, String> {
        toml::from_str(text).map_err(|e| e.to_string().trim_end().to_owned())
    }

    /// The TOML text of the file (hashes only, never clear secrets).
    pub fn to_toml(&self) -> Result<String, AppsError> {
        let body = toml::to_string(self).map_err(|e| AppsError::Serialize(e.to_string()))?;
        Ok(format!(
            "# Developers, API products, apps and credentials of `preflow serve --apps`.\n\
             # Secrets are stored as hashes: sha256:<hex> for generated secrets, Argon2id for\n\
             # chosen ones. A secret may also be given in clear as client_secret = \"…\"; it is\n\
             # hashed at load and written back as a hash.\n\n{body}"
        ))
    }

    /// Replaces every clear `client_secret` by its Argon2id hash.
    pub fn hash_secrets(&mut self, cost: PasswordHashCost) -> Result<(), AppsError> {
        for app in &mut self.apps {
            for cred in &mut app.credentials {
                if let Some(clear) = cred.client_secret.take() {
                    if cred.secret_hash.is_some() {
                        return Err(AppsError::Invalid(format!(
                            "credential {:?}: give client_secret or secret_hash, not both",
                            cred.client_id
                        )));
                    }
                    let hash = SecretHash::custom(&clear, cost)?;
                    cred.secret_hash = Some(format_hash(&hash));
                }
            }
        }
        Ok(())
    }

    /// Checks references and uniqueness.
    pub fn validate(&self) -> Result<(), AppsError> {
        let mut emails = std::collections::HashSet::new();
        for d in &self.developers {
            if d.email.is_empty() || !emails.insert(d.email.as_str()) {
                return Err(AppsError::Invalid(format!(
                    "developer {:?}: email empty or given twice",
                    d.email
                )));
            }
        }
        let mut products = std::collections::HashSet::new();
        for p in &self.products {
            if p.name.is_empty() || !products.insert(p.name.as_str()) {
                return Err(AppsError::Invalid(format!(
                    "product {:?}: name empty or given twice",
                    p.name
                )));
            }
        }
        let mut app_ids = std::collections::HashSet::new();
        let mut keys = std::collections::HashSet::new();
        for a in &self.apps {
            if a.id.is_empty() || !app_ids.insert(a.id.as_str()) {
                return Err(AppsError::Invalid(format!(
                    "app {:?}: id empty or given twice",
                    a.id
                )));
            }
            if !emails.contains(a.developer.as_str()) {
                return Err(AppsError::Invalid(format!(
                    "app {:?}: unknown developer {:?}",
                    a.id, a.developer
                )));
            }
            for c in &a.credentials {
                if !keys.insert(c.client_id.as_str()) {
                    return Err(AppsError::Invalid(format!(
                        "credential {:?}: client_id given twice",
                        c.client_id
                    )));
                }
                match (&c.client_secret, &c.secret_hash) {
                    (Some(_), Some(_)) | (None, None) => {
                        return Err(AppsError::Invalid(format!(
                            "credential {:?}: give exactly one of client_secret and secret_hash",
                            c.client_id
                        )));
                    }
                    (None, Some(h)) if parse_hash(h).is_none() => {
                        return Err(AppsError::Invalid(format!(
                            "credential {:?}: secret_hash is neither sha256:<64 hex digits> \
                             nor an Argon2id string ($argon2id$…)",
                            c.client_id
                        )));
                    }
                    _ => {}
                }
                for p in c.products.iter().chain(c.product_status.keys()) {
                    if !products.contains(p.as_str()) {
                        return Err(AppsError::Invalid(format!(
                            "credential {:?}: unknown product {p:?}",
                            c.client_id
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Builds a registry holding everything in the file. Clear secrets must have been
    /// hashed first ([`AppsFile::hash_secrets`]).
    pub fn to_registry(&self, cost: PasswordHashCost) -> Result<Registry, AppsError> {
        self.validate()?;
        let registry = Registry::with_password_hash_cost(cost);
        for d in &self.developers {
            registry.put_developer(developer_record(d));
        }
        for p in &self.products {
            registry.put_product(product(p)?);
        }
        for a in &self.apps {
            install_app(&registry, a)?;
        }
        Ok(registry)
    }

    /// The TOML text of the file written over `old` (the file's current text): the
    /// entries keep their place, comments and layout, changed values are replaced, new
    /// entries are added at the end and removed ones dropped. Entries are matched by
    /// `client_id`, `id`, `email` or `name`. Falls back to [`AppsFile::to_toml`] when
    /// `old` is not TOML.
    pub fn to_toml_over(&self, old: &str) -> Result<String, AppsError> {
        let Ok(mut doc) = old.parse::<toml_edit::DocumentMut>() else {
            return self.to_toml();
        };
        let body = toml::to_string(self).map_err(|e| AppsError::Serialize(e.to_string()))?;
        let new = body
            .parse::<toml_edit::DocumentMut>()
            .map_err(|e| AppsError::Serialize(e.to_string()))?;
        merge_table(doc.as_table_mut(), new.as_table());
        Ok(doc.to_string())
    }

    /// Writes the file atomically: a temporary file beside it, fsync, rename over the
    /// old one, fsync of the folder. The current file's comments and layout are kept
    /// ([`AppsFile::to_toml_over`]).
    pub fn write_atomic(&self, path: &Path) -> Result<(), AppsError> {
        let text = match std::fs::read_to_string(path) {
            Ok(old) => self.to_toml_over(&old)?,
            Err(_) => self.to_toml()?,
        };
        let io = |source| AppsError::Io {
            path: path.to_owned(),
            source,
        };
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
            _ => PathBuf::from("."),
        };
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "apps.toml".to_owned());
        let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
        let result = (|| {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            drop(f);
            std::fs::rename(&tmp, path)?;
            std::fs::File::open(&dir)?.sync_all()
        })();
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result.map_err(io)
    }
}

/// Keys that identify an entry of an array of tables, in order of preference.
const ENTRY_KEYS: &[&str] = &["client_id", "id", "email", "name"];

fn entry_key(t: &toml_edit::Table) -> Option<(&'static str, String)> {
    ENTRY_KEYS.iter().find_map(|k| {
        t.get(k)
            .and_then(toml_edit::Item::as_str)
            .map(|v| (*k, v.to_owned()))
    })
}

/// Makes `old` hold what `new` holds, keeping the comments, order and layout of what
/// both hold.
fn merge_table(old: &mut toml_edit::Table, new: &toml_edit::Table) {
    merge_into(old, new, false);
}

/// [`merge_table`] for an entry of an array of tables: new maps are written inline.
fn merge_table_inline(old: &mut toml_edit::Table, new: &toml_edit::Table) {
    merge_into(old, new, true);
}

fn merge_into(old: &mut toml_edit::Table, new: &toml_edit::Table, inline: bool) {
    let gone: Vec<String> = old
        .iter()
        .map(|(k, _)| k.to_owned())
        .filter(|k| !new.contains_key(k))
        .collect();
    for k in gone {
        old.remove(&k);
    }
    for (k, item) in new.iter() {
        match (old.get_mut(k), item) {
            (Some(toml_edit::Item::ArrayOfTables(o)), toml_edit::Item::ArrayOfTables(n)) => {
                merge_entries(o, n);
            }
            (Some(toml_edit::Item::Table(o)), toml_edit::Item::Table(n)) => merge_table(o, n),
            (Some(toml_edit::Item::Value(o)), toml_edit::Item::Value(n)) => {
                if !same_value(o, n) {
                    let decor = o.decor().clone();
                    *o = n.clone();
                    *o.decor_mut() = decor;
                }
            }
            // An entry's map (`attributes = { … }`): kept inline, where it is.
            (Some(toml_edit::Item::Value(o)), toml_edit::Item::Table(n)) if o.is_inline_table() => {
                let n = toml_edit::Value::InlineTable(n.clone().into_inline_table());
                if !same_value(o, &n) {
                    let decor = o.decor().clone();
                    *o = n;
                    *o.decor_mut() = decor;
                }
            }
            (_, toml_edit::Item::Table(n)) if inline => {
                old.insert(
                    k,
                    toml_edit::value(toml_edit::Value::InlineTable(n.clone().into_inline_table())),
                );
            }
            _ => {
                old.insert(k, item.clone());
            }
        }
    }
}

/// An entry of an array of tables with its maps written inline, so that they stay with
/// the entry wherever it is placed.
fn with_inline_maps(entry: &toml_edit::Table) -> toml_edit::Table {
    let mut out = entry.clone();
    let maps: Vec<String> = out
        .iter()
        .filter(|(_, item)| item.is_table())
        .map(|(k, _)| k.to_owned())
        .collect();
    for k in maps {
        if let Some(toml_edit::Item::Table(map)) = out.remove(&k) {
            let inline = toml_edit::Value::InlineTable(map.into_inline_table());
            out.insert(&k, toml_edit::value(inline));
        }
    }
    out
}

/// Entries of `new` in its order: each merged into the entry of `old` with the same key
/// (keeping its place and comments), or added.
fn merge_entries(old: &mut toml_edit::ArrayOfTables, new: &toml_edit::ArrayOfTables) {
    let mut before: Vec<Option<toml_edit::Table>> = old.iter().cloned().map(Some).collect();
    let mut merged = Vec::with_capacity(new.len());
    for n in new.iter() {
        let key = entry_key(n);
        let found = key.as_ref().and_then(|key| {
            before
                .iter_mut()
                .find(|o| o.as_ref().and_then(entry_key).as_ref() == Some(key))
                .and_then(Option::take)
        });
        match found {
            Some(mut o) => {
                merge_table_inline(&mut o, n);
                merged.push(o);
            }
            None => merged.push(with_inline_maps(n)),
        }
    }
    old.clear();
    for t in merged {
        old.push(t);
    }
}

/// Whether two values are equal, whatever their layout.
fn same_value(a: &toml_edit::Value, b: &toml_edit::Value) -> bool {
    let parse = |v: &toml_edit::Value| {
        let mut v = v.clone();
        v.decor_mut().clear();
        toml::from_str::<toml::Table>(&format!("v = {v}")).ok()
    };
    match (parse(a), parse(b)) {
        (Some(x), Some(y)) => x == y,
        _ => false,
    }
}

/// The registry's record of a developer entry.
pub fn developer_record(d: &DeveloperEntry) -> Developer {
    let mut dev = Developer::new(d.email.clone());
    dev.first_name.clone_from(&d.first_name);
    dev.last_name.clone_from(&d.last_name);
    dev.user_name.clone_from(&d.user_name);
    dev.status = match d.status {
        DevStatus::Active => DeveloperStatus::Active,
        DevStatus::Inactive => DeveloperStatus::Inactive,
    };
    dev.attributes = d
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    dev
}

fn product(p: &ProductEntry) -> Result<ApiProduct, AppsError> {
    let mut product = ApiProduct::new(p.name.clone())
        .with_proxies(p.proxies.iter().map(String::as_str))
        .with_environments(p.environments.iter().map(String::as_str))
        .with_resources(p.resources.iter().map(String::as_str))?
        .with_scopes(p.scopes.iter().map(String::as_str))?;
    if !p.display_name.is_empty() {
        product.display_name.clone_from(&p.display_name);
    }
    if let Some(q) = p.quota {
        product = product.with_quota(q.limit, q.interval, q.time_unit.unit());
    }
    product.attributes = p
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Ok(product)
}

/// Adds an app and its credentials to the registry.
pub fn install_app(registry: &Registry, a: &AppEntry) -> Result<(), AppsError> {
    let mut app = App::new(a.name.clone());
    app.id.clone_from(&a.id);
    app.status = a.status.approval();
    app.callback_url.clone_from(&a.callback_url);
    app.allow_client_secret_post = a.client_secret_post;
    app.introspect_any_token = a.introspect_any_token;
    app.attributes = a
        .attributes
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let id = registry.add_app(&a.developer, app)?;
    for c in &a.credentials {
        install_credential(registry, &id, c)?;
    }
    Ok(())
}

/// Adds one credential (with a hashed secret) to an app of the registry.
pub fn install_credential(
    registry: &Registry,
    app_id: &str,
    c: &CredentialEntry,
) -> Result<(), AppsError> {
    let hash = c
        .secret_hash
        .as_deref()
        .and_then(parse_hash)
        .ok_or_else(|| {
            AppsError::Invalid(format!(
                "credential {:?}: no usable secret_hash",
                c.client_id
            ))
        })?;
    registry.add_credential(
        app_id,
        NewCredential {
            key: Some(c.client_id.clone()),
            secret: SecretSpec::Hashed(hash),
            products: c.products.clone(),
            expires_at: c.expires_at,
            issued_at: c.issued_at,
        },
    )?;
    for (product, status) in &c.product_status {
        registry.set_credential_product(&c.client_id, product, status.approval())?;
    }
    if !c.status.is_approved() {
        registry.set_credential_status(&c.client_id, c.status.approval())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_of_entries_stay_with_their_entry() {
        let old = "[[developer]]\nemail = \"a@example.com\"\n\n[[product]]\nname = \"p\"\nresources = [\"/**\"]\nattributes = { access = \"internal\" }\n\n[[product]]\nname = \"q\"\nresources = [\"/**\"]\n";
        let mut file = AppsFile::parse(old).unwrap();
        file.products[0]
            .attributes
            .insert("access".into(), "private".into());
        file.products[1]
            .attributes
            .insert("team".into(), "blue".into());
        let mut dev = file.developers[0].clone();
        dev.email = "b@example.com".into();
        dev.attributes
            .insert("preflow.portal.password".into(), "$argon2id$x".into());
        file.developers.push(dev);
        let text = file.to_toml_over(old).unwrap();
        assert_eq!(AppsFile::parse(&text).unwrap(), file, "{text}");
        assert!(!text.contains(".attributes]"), "maps stay inline: {text}");
        assert!(
            text.contains("attributes = { access = \"private\" }"),
            "{text}"
        );
        assert!(text.contains("\"preflow.portal.password\" = "), "{text}");
    }

    #[test]
    fn rewriting_keeps_comments_and_layout() {
        let old = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/seed/apps.toml"
        ))
        .unwrap();
        let mut file = AppsFile::parse(&old).unwrap();
        let cost = PasswordHashCost::insecure_for_tests();
        file.hash_secrets(cost).unwrap();
        // A new app, a revoked one, a developer's name changed.
        let mut added = file.apps[0].clone();
        added.id = "new-app".into();
        added.name = "new-app".into();
        added.credentials[0].client_id = "new-client".into();
        file.apps.push(added);
        file.apps[1].status = Status::Revoked;
        file.developers[0].first_name = "Renamed".into();
        let text = file.to_toml_over(&old).unwrap();

        // Every comment line of the old file is still there, in the same order.
        let comments = |t: &str| {
            t.lines()
                .filter(|l| l.trim_start().starts_with('#'))
                .map(str::to_owned)
                .collect::<Vec<_>>()
        };
        assert_eq!(comments(&text), comments(&old), "{text}");
        // The entries kept their order: the rfc-app still comes before the tenant's developer.
        let at = |needle: &str| {
            text.find(needle)
                .unwrap_or_else(|| panic!("{needle} in {text}"))
        };
        assert!(at("id = \"rfc-app\"") < at("email = \"integration@example.com\""));
        assert!(at("email = \"integration@example.com\"") < at("id = \"new-app\""));
        // The file means what the changed one does; clear secrets became hashes.
        let back = AppsFile::parse(&text).unwrap();
        assert_eq!(back, file);
        assert!(!text.contains("demo-secret"), "{text}");
        // Unchanged values keep their layout.
        assert!(
            text.contains("proxies = [\"oauth\", \"hello-api\"]"),
            "{text}"
        );
        // Not TOML: written afresh.
        assert_eq!(file.to_toml_over("[[[").unwrap(), file.to_toml().unwrap());
    }

    const SAMPLE: &str = r#"
[[developer]]
email = "demo@example.com"

[[product]]
name = "hello"
proxies = ["oauth", "hello-api"]
resources = ["/**"]

[[app]]
id = "demo-app"
name = "demo-app"
developer = "demo@example.com"

[[app.credential]]
client_id = "demo-client"
client_secret = "demo-secret"
products = ["hello"]

[[app.credential]]
client_id = "gen-client"
secret_hash = "sha256:2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b"
products = ["hello"]
status = "revoked"
"#;

    #[test]
    fn clear_secrets_are_hashed_and_never_written() {
        let mut file = AppsFile::parse(SAMPLE).unwrap();
        file.hash_secrets(PasswordHashCost::insecure_for_tests())
            .unwrap();
        let registry = file
            .to_registry(PasswordHashCost::insecure_for_tests())
            .unwrap();
        let demo = registry.credential("demo-client").unwrap();
        assert!(demo.secret.verify(b"demo-secret"));
        let generated = registry.credential("gen-client").unwrap();
        assert!(generated.secret.verify(b"secret"));
        assert_eq!(generated.status, Approval::Revoked);

        let text = file.to_toml().unwrap();
        assert!(!text.contains("demo-secret"), "{text}");
        assert!(text.contains("$argon2id$"), "{text}");
        let again = AppsFile::parse(&text).unwrap();
        assert_eq!(again, file);
    }

    #[test]
    fn hashes_round_trip() {
        let h = SecretHash::generated("abc");
        assert_eq!(parse_hash(&format_hash(&h)), Some(h));
        assert_eq!(parse_hash("sha256:zz"), None);
        assert_eq!(parse_hash("plain"), None);
    }

    #[test]
    fn inconsistent_files_are_refused() {
        let unknown_product = SAMPLE.replace(r#"products = ["hello"]"#, r#"products = ["x"]"#);
        let err = AppsFile::parse(&unknown_product)
            .unwrap()
            .validate()
            .unwrap_err();
        assert!(err.to_string().contains("unknown product \"x\""), "{err}");

        let both = SAMPLE.replace(
            "client_secret = \"demo-secret\"",
            "client_secret = \"a\"\nsecret_hash = \"sha256:00\"",
        );
        assert!(AppsFile::parse(&both).unwrap().validate().is_err());

        let typo = SAMPLE.replace("proxies", "proxys");
        let err = AppsFile::parse(&typo).unwrap_err();
        assert!(err.contains("proxys"), "{err}");
    }

    #[test]
    fn writes_are_atomic_and_complete() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("apps.toml");
        let mut file = AppsFile::parse(SAMPLE).unwrap();
        file.hash_secrets(PasswordHashCost::insecure_for_tests())
            .unwrap();
        file.write_atomic(&path).unwrap();
        let back = AppsFile::read(&path).unwrap();
        assert_eq!(back, file);
        let leftovers: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers.len(), 1, "{leftovers:?}");
    }
}
