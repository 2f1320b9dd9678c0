//! The registry of developers, products, apps and credentials in Redis.
//!
//! Each entity is one JSON record in a hash per table under the `{registry}` hash tag,
//! with its version in a second hash (see [`crate::RegistrySync`])
//! ([`KeyLayout::registry`](crate::KeyLayout::registry)). Credentials are stored with
//! their secret hashes only. [`RedisStore::save_registry`] writes every record of a
//! [`Registry`] (upsert), [`RedisStore::load_registry`] builds a [`Registry`] from the
//! records at start, and [`RedisRegistry`] writes each change through as it is made.
//! Resource owners of the password grant are not stored.

use std::sync::Arc;

use preflow_oauth::{
    ApiProduct, App, Approval, Credential, CredentialProduct, Developer, DeveloperStatus,
    GrantType, IssuedCredential, NewCredential, QuotaTimeUnit, Registry, SecretHash,
};
use serde::{Deserialize, Serialize};

use crate::error::RedisError;
use crate::store::RedisStore;

const DEVELOPERS: &str = "developers";
const PRODUCTS: &str = "products";
const APPS: &str = "apps";
const CREDENTIALS: &str = "credentials";

/// The registry tables, in the order records must be applied (a credential needs its
/// app, an app its developer).
pub(crate) const TABLES: [&str; 4] = [DEVELOPERS, PRODUCTS, APPS, CREDENTIALS];

/// Every record of `registry` as `(table, id, json)`, in [`TABLES`] order.
pub(crate) fn records(
    registry: &Registry,
) -> Result<Vec<(&'static str, String, String)>, RedisError> {
    let mut out = Vec::new();
    for d in registry.developers().iter() {
        out.push((DEVELOPERS, d.email.clone(), developer_json(d)?));
    }
    for p in registry.products().iter() {
        out.push((PRODUCTS, p.name.clone(), product_json(p)?));
    }
    for a in registry.apps().iter() {
        out.push((APPS, a.id.clone(), app_json(a)?));
    }
    for c in registry.credentials().iter() {
        out.push((CREDENTIALS, c.key.clone(), credential_json(c)?));
    }
    Ok(out)
}

/// The JSON of one record of `registry` as it is now, if it exists.
pub(crate) fn record_json(
    registry: &Registry,
    table: &str,
    id: &str,
) -> Result<Option<String>, RedisError> {
    Ok(match table {
        DEVELOPERS => registry
            .developer(id)
            .map(|d| developer_json(&d))
            .transpose()?,
        PRODUCTS => registry.product(id).map(|p| product_json(&p)).transpose()?,
        APPS => registry.app(id).map(|a| app_json(&a)).transpose()?,
        CREDENTIALS => registry
            .credential(id)
            .map(|c| credential_json(&c))
            .transpose()?,
        _ => None,
    })
}

/// Applies one stored record (JSON) of `table` to `registry`, adding or replacing it.
pub(crate) fn apply_record(registry: &Registry, table: &str, json: &str) -> Result<(), RedisError> {
    match table {
        DEVELOPERS => {
            let r: DeveloperRecord = serde_json::from_str(json)?;
            registry.put_developer(Developer {
                email: r.email,
                first_name: r.first_name,
                last_name: r.last_name,
                user_name: r.user_name,
                status: if r.active {
                    DeveloperStatus::Active
                } else {
                    DeveloperStatus::Inactive
                },
                attributes: r.attributes,
            });
        }
        PRODUCTS => {
            let r: ProductRecord = serde_json::from_str(json)?;
            let mut product = ApiProduct::new(r.name)
                .with_resources(r.api_resources.iter().map(String::as_str))?;
            product.display_name = r.display_name;
            product.environments = r.environments;
            product.proxies = r.proxies;
            product.scopes = r.scopes;
            product.attributes = r.attributes;
            if let Some(q) = r.quota {
                let unit = time_unit(&q.time_unit).ok_or_else(|| {
                    RedisError::Reply(format!("unknown quota time unit {:?}", q.time_unit))
                })?;
                product = product.with_quota(q.limit, q.interval, unit);
            }
            registry.put_product(product);
        }
        APPS => {
            let r: AppRecord = serde_json::from_str(json)?;
            let mut app = App::new(r.name);
            app.id = r.id;
            app.status = approval(&r.status);
            app.callback_url = r.callback_url;
            app.attributes = r.attributes;
            app.grant_types = r.grant_types;
            app.allow_client_secret_post = r.allow_client_secret_post;
            app.introspect_any_token = r.introspect_any_token;
            registry.add_app(&r.developer_email, app)?;
        }
        CREDENTIALS => {
            let r: CredentialRecord = serde_json::from_str(json)?;
            registry.put_credential(Credential {
                key: r.key,
                secret: r.secret,
                app_id: r.app_id,
                status: approval(&r.status),
                issued_at: r.issued_at,
                expires_at: r.expires_at,
                products: r
                    .products
                    .into_iter()
                    .map(|(name, status)| CredentialProduct {
                        name,
                        status: approval(&status),
                    })
                    .collect(),
            })?;
        }
        other => {
            return Err(RedisError::Reply(format!(
                "unknown registry table {other:?}"
            )));
        }
    }
    Ok(())
}

#[derive(Serialize, Deserialize)]
struct DeveloperRecord {
    email: String,
    first_name: String,
    last_name: String,
    user_name: String,
    active: bool,
    attributes: Vec<(String, String)>,
}

#[derive(Serialize, Deserialize)]
struct QuotaRecord {
    limit: u64,
    interval: u64,
    time_unit: String,
}

#[derive(Serialize, Deserialize)]
struct ProductRecord {
    name: String,
    display_name: String,
    environments: Vec<String>,
    proxies: Vec<String>,
    api_resources: Vec<String>,
    scopes: Vec<String>,
    quota: Option<QuotaRecord>,
    attributes: Vec<(String, String)>,
}

#[derive(Serialize, Deserialize)]
struct AppRecord {
    id: String,
    name: String,
    developer_email: String,
    status: String,
    callback_url: Option<String>,
    attributes: Vec<(String, String)>,
    grant_types: Option<Vec<GrantType>>,
    allow_client_secret_post: bool,
    #[serde(default)]
    introspect_any_token: bool,
}

#[derive(Serialize, Deserialize)]
struct CredentialRecord {
    key: String,
    secret: SecretHash,
    app_id: String,
    status: String,
    issued_at: u64,
    expires_at: Option<u64>,
    products: Vec<(String, String)>,
}

fn approval(s: &str) -> Approval {
    match s {
        "approved" => Approval::Approved,
        "pending" => Approval::Pending,
        _ => Approval::Revoked,
    }
}

fn time_unit(s: &str) -> Option<QuotaTimeUnit> {
    Some(match s {
        "minute" => QuotaTimeUnit::Minute,
        "hour" => QuotaTimeUnit::Hour,
        "day" => QuotaTimeUnit::Day,
        "week" => QuotaTimeUnit::Week,
        "month" => QuotaTimeUnit::Month,
        _ => return None,
    })
}

fn developer_json(d: &Developer) -> Result<String, RedisError> {
    Ok(serde_json::to_string(&DeveloperRecord {
        email: d.email.clone(),
        first_name: d.first_name.clone(),
        last_name: d.last_name.clone(),
        user_name: d.user_name.clone(),
        active: d.status == DeveloperStatus::Active,
        attributes: d.attributes.clone(),
    })?)
}

fn product_json(p: &ApiProduct) -> Result<String, RedisError> {
    Ok(serde_json::to_string(&ProductRecord {
        name: p.name.clone(),
        display_name: p.display_name.clone(),
        environments: p.environments.clone(),
        proxies: p.proxies.clone(),
        api_resources: p
            .api_resources
            .iter()
            .map(|r| r.as_str().to_owned())
            .collect(),
        scopes: p.scopes.clone(),
        quota: p.quota.map(|q| QuotaRecord {
            limit: q.limit,
            interval: q.interval,
            time_unit: q.time_unit.as_str().to_owned(),
        }),
        attributes: p.attributes.clone(),
    })?)
}

fn app_json(a: &App) -> Result<String, RedisError> {
    Ok(serde_json::to_string(&AppRecord {
        id: a.id.clone(),
        name: a.name.clone(),
        developer_email: a.developer_email.clone(),
        status: a.status.as_str().to_owned(),
        callback_url: a.callback_url.clone(),
        attributes: a.attributes.clone(),
        grant_types: a.grant_types.clone(),
        allow_client_secret_post: a.allow_client_secret_post,
        introspect_any_token: a.introspect_any_token,
    })?)
}

fn credential_json(c: &Credential) -> Result<String, RedisError> {
    Ok(serde_json::to_string(&CredentialRecord {
        key: c.key.clone(),
        secret: c.secret.clone(),
        app_id: c.app_id.clone(),
        status: c.status.as_str().to_owned(),
        issued_at: c.issued_at,
        expires_at: c.expires_at,
        products: c
            .products
            .iter()
            .map(|p| (p.name.clone(), p.status.as_str().to_owned()))
            .collect(),
    })?)
}

impl RedisStore {
    pub(crate) async fn hgetall(&self, table: &str) -> Result<Vec<(String, String)>, RedisError> {
        let key = self.keys().registry(table);
        self.guarded("registry_read", |mut c| async move {
            redis::cmd("HGETALL").arg(&key).query_async(&mut c).await
        })
        .await
    }

    /// Writes every developer, product, app and credential of `registry` (adding or
    /// replacing records; records of entities absent from `registry` are kept), each as a
    /// change newer than what is stored, notified to every [`crate::RegistrySync`].
    pub async fn save_registry(&self, registry: &Registry) -> Result<(), RedisError> {
        let rows: Vec<(usize, String, u64, String)> = records(registry)?
            .into_iter()
            .map(|(table, id, json)| (crate::sync::table_index(table), id, 0, json))
            .collect();
        let change = preflow_oauth::secret::random_token(12);
        crate::sync::versioned_write(self, "change", &change, "library", &rows)
            .await
            .map(|_| ())
    }

    /// Adds the stored developers, products, apps and credentials to `registry`.
    /// Returns how many records were applied.
    pub async fn load_registry_into(&self, registry: &Registry) -> Result<usize, RedisError> {
        let mut applied = 0;
        for table in TABLES {
            for (_, json) in self.hgetall(table).await? {
                apply_record(registry, table, &json)?;
                applied += 1;
            }
        }
        Ok(applied)
    }

    /// A new [`Registry`] holding the stored records.
    pub async fn load_registry(&self) -> Result<Registry, RedisError> {
        let registry = Registry::new();
        self.load_registry_into(&registry).await?;
        Ok(registry)
    }
}

/// A [`Registry`] whose changes are written through to Redis: each method changes the
/// local registry, then writes the changed record as a versioned change and notifies
/// every instance that runs a [`crate::RegistrySync`]. The local registry answers every
/// request inline.
#[derive(Debug, Clone)]
pub struct RedisRegistry {
    registry: Arc<Registry>,
    store: RedisStore,
}

impl RedisRegistry {
    /// Write-through over `registry`.
    pub fn new(registry: Arc<Registry>, store: RedisStore) -> Self {
        RedisRegistry { registry, store }
    }

    /// Loads the stored records into a new registry and writes through to the same store.
    pub async fn load(store: RedisStore) -> Result<Self, RedisError> {
        let registry = Arc::new(store.load_registry().await?);
        Ok(RedisRegistry { registry, store })
    }

    /// The local registry.
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// Adds or replaces a developer.
    pub async fn put_developer(&self, developer: Developer) -> Result<(), RedisError> {
        let (id, json) = (developer.email.clone(), developer_json(&developer)?);
        self.registry.put_developer(developer);
        crate::sync::write_change(&self.store, DEVELOPERS, id, json).await
    }

    /// Adds or replaces an API product.
    pub async fn put_product(&self, product: ApiProduct) -> Result<(), RedisError> {
        let (id, json) = (product.name.clone(), product_json(&product)?);
        self.registry.put_product(product);
        crate::sync::write_change(&self.store, PRODUCTS, id, json).await
    }

    /// Adds an app; returns its id.
    pub async fn add_app(&self, developer_email: &str, app: App) -> Result<String, RedisError> {
        let id = self.registry.add_app(developer_email, app)?;
        self.write_app(&id).await?;
        Ok(id)
    }

    /// Approves or revokes an app.
    pub async fn set_app_status(&self, app_id: &str, status: Approval) -> Result<(), RedisError> {
        self.registry.set_app_status(app_id, status)?;
        self.write_app(app_id).await
    }

    /// Adds a credential to an app; the plaintext secret is returned here only, Redis
    /// receives its hash.
    pub async fn add_credential(
        &self,
        app_id: &str,
        new: NewCredential,
    ) -> Result<IssuedCredential, RedisError> {
        let issued = self.registry.add_credential(app_id, new)?;
        self.write_credential(&issued.client_id).await?;
        Ok(issued)
    }

    /// Approves or revokes a credential.
    pub async fn set_credential_status(
        &self,
        key: &str,
        status: Approval,
    ) -> Result<(), RedisError> {
        self.registry.set_credential_status(key, status)?;
        self.write_credential(key).await
    }

    async fn write_app(&self, id: &str) -> Result<(), RedisError> {
        if let Some(app) = self.registry.app(id) {
            crate::sync::write_change(&self.store, APPS, app.id.clone(), app_json(&app)?).await?;
        }
        Ok(())
    }

    async fn write_credential(&self, key: &str) -> Result<(), RedisError> {
        if let Some(c) = self.registry.credential(key) {
            let json = credential_json(&c)?;
            crate::sync::write_change(&self.store, CREDENTIALS, c.key.clone(), json).await?;
        }
        Ok(())
    }
}
