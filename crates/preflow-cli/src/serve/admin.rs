//! Developer self-service: the admin API on its own listener.
//!
//! Every call carries `Authorization: Bearer <admin token>` (the token comes from the
//! `PREFLOW_ADMIN_TOKEN` environment variable). Changes are written to the apps file
//! (atomically, secrets as hashes) before they take effect, so a restart loses nothing.
//!
//! | method and path | what it does |
//! |---|---|
//! | `GET /admin/products` | lists the API products |
//! | `GET /admin/apps` | lists the apps with their client ids (never secrets) |
//! | `POST /admin/apps` `{"name","developer","products":[…]}` | creates an app subscribed to the products; answers its client id and secret, once |
//! | `POST /admin/credentials/{client_id}/rotate` | replaces a secret; answers the new one, once |
//! | `POST /admin/apps/{app_id}/revoke` | revokes an app: its tokens and credentials stop working |
//! | `POST /admin/developers/{email}/activate` | approves a developer who signed up in the portal (with `approval = true`), or reactivates one |
//! | `POST /admin/developers/{email}/deactivate` | deactivates a developer: their apps are refused and they cannot sign in to the portal |
//! | `GET /admin/deployments` | lists the kept revisions of the deployed bundles, the active one marked |
//! | `POST /admin/deployments[?name=N]` with a bundle zip as body | checks the zip's bundles and deploys them as a new revision (replacing bundles of the same name); `422` with the errors when they do not load or build, and the running revision keeps serving |
//! | `POST /admin/deployments/{revision}/activate` | makes a kept revision active again |
//! | `POST /admin/deployments/rollback` | activates the newest kept revision older than the active one |
//!
//! A second app of the same name for one developer is refused (`409`); a method a
//! resource does not take gets `405` with `Allow`. The operator's endpoints
//! (`/metrics`, `/healthz`, `/readyz`, see [`super::ops`]) answer here without the token.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use preflow_oauth::secret::random_token;
use preflow_oauth::{Approval, Registry, SecretHash, SecretSpec};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use super::apps::{
    AppEntry, AppsFile, CredentialEntry, DeveloperEntry, Status, format_hash, install_app,
};
use super::listener::{Handled, Handler};

/// Name of the environment variable holding the admin bearer token.
pub const TOKEN_VARIABLE: &str = "PREFLOW_ADMIN_TOKEN";

/// Fewest characters the admin token must have.
pub const MIN_TOKEN_LEN: usize = 16;

/// The admin API.
#[derive(Debug)]
pub struct Admin {
    token_digest: [u8; 32],
    writer: Arc<AppsWriter>,
    redis: Option<preflow_redis::RegistrySync>,
    ops: Option<Arc<super::ops::Ops>>,
    deployments: Option<Arc<super::deploy::Deployments>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewApp {
    name: String,
    developer: String,
    #[serde(default)]
    products: Vec<String>,
}

fn json_response(status: StatusCode, body: &Value) -> Response<Bytes> {
    let mut resp = Response::new(Bytes::from(body.to_string()));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn error(status: StatusCode, error: &str, description: &str) -> Response<Bytes> {
    json_response(
        status,
        &json!({ "error": error, "error_description": description }),
    )
}

/// 405 with the `Allow` header RFC 9110 §15.5.6 requires.
fn not_allowed(allow: &'static str) -> Response<Bytes> {
    let mut resp = error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        &format!("this resource allows {allow}"),
    );
    resp.headers_mut()
        .insert(header::ALLOW, HeaderValue::from_static(allow));
    resp
}

impl Admin {
    /// The admin API over `registry`, persisting to `path`, whose current content is
    /// `file` (secrets already hashed).
    #[cfg(test)]
    pub fn new(token: &str, registry: Arc<Registry>, file: AppsFile, path: PathBuf) -> Self {
        Self::over(token, Arc::new(AppsWriter::new(registry, file, path)))
    }

    /// The admin API changing apps through `writer` (which the portal may share).
    pub fn over(token: &str, writer: Arc<AppsWriter>) -> Self {
        Self {
            token_digest: Sha256::digest(token.as_bytes()).into(),
            writer,
            redis: None,
            ops: None,
            deployments: None,
        }
    }

    /// Serves `/metrics`, `/healthz` and `/readyz` too, without the admin token (see
    /// [`super::ops`] for why).
    pub fn with_ops(mut self, ops: Arc<super::ops::Ops>) -> Self {
        self.ops = Some(ops);
        self
    }

    /// Serves `/admin/deployments` over `deployments`.
    pub fn with_deployments(mut self, deployments: Arc<super::deploy::Deployments>) -> Self {
        self.deployments = Some(deployments);
        self
    }

    /// Shares every change through Redis as well (`--redis`): the answer comes once every
    /// connected instance has applied it.
    pub fn with_redis(mut self, redis: Option<preflow_redis::RegistrySync>) -> Self {
        self.redis = redis;
        self
    }

    fn authorized(&self, req: &Request<Bytes>) -> bool {
        let Some(value) = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let Some((scheme, token)) = value.split_once(' ') else {
            return false;
        };
        if !scheme.eq_ignore_ascii_case("bearer") {
            return false;
        }
        let digest: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        bool::from(digest.ct_eq(&self.token_digest))
    }

    /// Answers one admin request.
    pub fn respond(&self, req: &Request<Bytes>) -> Response<Bytes> {
        if !self.authorized(req) {
            let mut resp = error(
                StatusCode::UNAUTHORIZED,
                "invalid_token",
                "the admin API needs Authorization: Bearer <admin token>",
            );
            resp.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"preflow-admin\""),
            );
            return resp;
        }
        let path = req.uri().path();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        match (req.method(), segments.as_slice()) {
            (&Method::GET, ["admin", "products"]) => self.list_products(),
            (&Method::GET, ["admin", "apps"]) => self.list_apps(),
            (&Method::POST, ["admin", "apps"]) => self.create_app(req.body()),
            (&Method::POST, ["admin", "credentials", key, "rotate"]) => self.rotate(key),
            (&Method::POST, ["admin", "apps", id, "revoke"]) => self.revoke(id),
            (
                &Method::POST,
                [
                    "admin",
                    "developers",
                    email,
                    action @ ("activate" | "deactivate"),
                ],
            ) => self.developer_status(email, *action == "activate"),
            (_, ["admin", "deployments", rest @ ..]) => self.deployments(req, rest),
            (_, ["admin", "products"]) => not_allowed("GET"),
            (_, ["admin", "apps"]) => not_allowed("GET, POST"),
            (_, ["admin", "credentials", _, "rotate"])
            | (_, ["admin", "apps", _, "revoke"])
            | (_, ["admin", "developers", _, "activate" | "deactivate"]) => not_allowed("POST"),
            _ => error(StatusCode::NOT_FOUND, "not_found", "no such admin resource"),
        }
    }

    fn deployments(&self, req: &Request<Bytes>, rest: &[&str]) -> Response<Bytes> {
        use super::deploy::{DeployError, describe};
        let Some(d) = &self.deployments else {
            return error(StatusCode::NOT_FOUND, "not_found", "no such admin resource");
        };
        let refused = |e: DeployError| {
            let (status, code) = match &e {
                DeployError::Invalid(_) | DeployError::Build(_) => {
                    (StatusCode::UNPROCESSABLE_ENTITY, "invalid_bundle")
                }
                DeployError::NoSuchRevision(_) => (StatusCode::NOT_FOUND, "not_found"),
                DeployError::Unavailable => (StatusCode::INTERNAL_SERVER_ERROR, "server_error"),
            };
            let errors: Vec<String> = match &e {
                DeployError::Invalid(list) => list.clone(),
                DeployError::Build(msg) => vec![msg.clone()],
                _ => Vec::new(),
            };
            json_response(
                status,
                &json!({ "error": code, "error_description": e.to_string(), "errors": errors }),
            )
        };
        let active =
            |r: &Arc<super::deploy::Revision>| json_response(StatusCode::OK, &describe(r, true));
        match (req.method(), rest) {
            (&Method::GET, []) => {
                let now = d.current().number;
                let list: Vec<Value> = d
                    .revisions()
                    .iter()
                    .rev()
                    .map(|r| describe(r, r.number == now))
                    .collect();
                json_response(StatusCode::OK, &json!({ "active": now, "revisions": list }))
            }
            (&Method::POST, []) => {
                let name = req
                    .uri()
                    .query()
                    .and_then(|q| {
                        form_urlencoded::parse(q.as_bytes())
                            .find(|(k, _)| k == "name")
                            .map(|(_, v)| v.into_owned())
                    })
                    .filter(|n| !n.is_empty() && n.len() <= 128)
                    .unwrap_or_else(|| "upload.zip".to_owned());
                match d.upload(&name, req.body()) {
                    Ok(done) => {
                        let mut body = describe(&done.revision, true);
                        if let Some(fields) = body.as_object_mut() {
                            fields.insert("warnings".to_owned(), json!(done.warnings));
                        }
                        json_response(StatusCode::CREATED, &body)
                    }
                    Err(e) => refused(e),
                }
            }
            (&Method::POST, ["rollback"]) => d.rollback().map_or_else(refused, |r| active(&r)),
            (&Method::POST, [n, "activate"]) => match n.parse::<u64>() {
                Ok(n) => d.activate(n).map_or_else(refused, |r| active(&r)),
                Err(_) => error(StatusCode::NOT_FOUND, "not_found", "no such revision"),
            },
            (_, []) => not_allowed("GET, POST"),
            (_, ["rollback"] | [_, "activate"]) => not_allowed("POST"),
            _ => error(StatusCode::NOT_FOUND, "not_found", "no such admin resource"),
        }
    }

    fn list_products(&self) -> Response<Bytes> {
        let Ok(file) = self.writer.file.lock() else {
            return poisoned();
        };
        let products: Vec<Value> = file
            .products
            .iter()
            .map(|p| {
                json!({
                    "name": p.name,
                    "display_name": if p.display_name.is_empty() { &p.name } else { &p.display_name },
                    "description": p.description,
                    "proxies": p.proxies,
                    "resources": p.resources,
                    "scopes": p.scopes,
                })
            })
            .collect();
        json_response(StatusCode::OK, &json!({ "products": products }))
    }

    fn list_apps(&self) -> Response<Bytes> {
        let Ok(file) = self.writer.file.lock() else {
            return poisoned();
        };
        let apps: Vec<Value> = file.apps.iter().map(app_json).collect();
        json_response(StatusCode::OK, &json!({ "apps": apps }))
    }

    fn create_app(&self, body: &Bytes) -> Response<Bytes> {
        let new: NewApp = match serde_json::from_slice(body) {
            Ok(n) => n,
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    &format!("expected {{\"name\", \"developer\", \"products\"}}: {e}"),
                );
            }
        };
        match self
            .writer
            .create_app(&new.name, &new.developer, &new.products)
        {
            Ok(created) => json_response(
                StatusCode::CREATED,
                &json!({
                    "app_id": created.app_id,
                    "name": new.name,
                    "developer": new.developer,
                    "products": new.products,
                    "client_id": created.client_id,
                    "client_secret": created.client_secret,
                }),
            ),
            Err(e) => change_refused(&e),
        }
    }

    fn rotate(&self, key: &str) -> Response<Bytes> {
        match self.writer.rotate(key) {
            Ok(secret) => json_response(
                StatusCode::OK,
                &json!({ "client_id": key, "client_secret": secret }),
            ),
            Err(e) => change_refused(&e),
        }
    }

    fn developer_status(&self, email: &str, active: bool) -> Response<Bytes> {
        // The email arrives percent-encoded in the path (`@` as `%40`).
        let email = percent_encoding::percent_decode_str(email).decode_utf8_lossy();
        match self.writer.set_developer_status(&email, active) {
            Ok(()) => json_response(
                StatusCode::OK,
                &json!({ "developer": email, "status": if active { "active" } else { "inactive" } }),
            ),
            Err(e) => change_refused(&e),
        }
    }

    fn revoke(&self, app_id: &str) -> Response<Bytes> {
        match self.writer.revoke(app_id) {
            Ok(()) => json_response(
                StatusCode::OK,
                &json!({ "app_id": app_id, "status": "revoked" }),
            ),
            Err(e) => change_refused(&e),
        }
    }
}

/// The admin API's answer to a refused change.
fn change_refused(e: &ChangeError) -> Response<Bytes> {
    let (status, code) = match e {
        ChangeError::NoSuchApp | ChangeError::NoSuchClient | ChangeError::NoSuchDeveloper => {
            (StatusCode::NOT_FOUND, "not_found")
        }
        ChangeError::AppExists { .. } => (StatusCode::CONFLICT, "app_exists"),
        ChangeError::DeveloperExists => (StatusCode::CONFLICT, "developer_exists"),
        ChangeError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
        ChangeError::NotSaved | ChangeError::NotApplied | ChangeError::Unavailable => {
            (StatusCode::INTERNAL_SERVER_ERROR, "server_error")
        }
    };
    error(status, code, &e.to_string())
}

/// Why a change of the apps was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum ChangeError {
    /// No app has this id.
    #[error("no such app")]
    NoSuchApp,
    /// No credential has this client id.
    #[error("no such client id")]
    NoSuchClient,
    /// No developer has this email.
    #[error("no such developer")]
    NoSuchDeveloper,
    /// The developer already has an app of this name.
    #[error("developer {developer} already has an app named `{name}`; choose another name")]
    AppExists {
        /// The developer's email.
        developer: String,
        /// The app name asked for.
        name: String,
    },
    /// A developer with this email is registered already.
    #[error("a developer with this email is registered already")]
    DeveloperExists,
    /// The changed file would not be valid (an unknown product, an empty name…).
    #[error("{0}")]
    Invalid(String),
    /// Writing the apps file failed; nothing changed.
    #[error("the change could not be saved; nothing was changed")]
    NotSaved,
    /// The file was written but the running registry refused the change.
    #[error("the change was saved but takes effect at the next start")]
    NotApplied,
    /// An earlier failure left the state unusable.
    #[error("the admin state is unavailable after an earlier failure")]
    Unavailable,
}

/// An app just created: its credential, the secret in clear for this once.
#[derive(Debug)]
pub struct Created {
    /// The app's id.
    pub app_id: String,
    /// The credential's client id (API key).
    pub client_id: String,
    /// The secret in clear; only its hash is kept.
    pub client_secret: String,
}

/// Changes of developers and apps, shared by the admin API and the portal: each is
/// written to the apps file (atomically, secrets as hashes) and then applied to the
/// running registry. Sharing the change through Redis is the caller's step afterwards.
#[derive(Debug)]
pub struct AppsWriter {
    registry: Arc<Registry>,
    file: Mutex<AppsFile>,
    path: PathBuf,
}

impl AppsWriter {
    /// Writes to `path`, whose current content is `file` (secrets already hashed), and
    /// applies to `registry`.
    pub fn new(registry: Arc<Registry>, file: AppsFile, path: PathBuf) -> Self {
        Self {
            registry,
            file: Mutex::new(file),
            path,
        }
    }

    /// The registry changes are applied to (every instance's truth with `--redis`).
    pub fn registry(&self) -> &Arc<Registry> {
        &self.registry
    }

    /// The API products of the apps file (which the registry lacks descriptions of).
    pub fn products(&self) -> Vec<super::apps::ProductEntry> {
        self.file
            .lock()
            .map(|f| f.products.clone())
            .unwrap_or_default()
    }

    /// Applies `change` to a copy of the file, writes it, then installs it with `apply`.
    fn commit(
        &self,
        change: impl FnOnce(&mut AppsFile) -> Result<(), ChangeError>,
        apply: impl FnOnce(&Registry, &AppsFile) -> Result<(), String>,
    ) -> Result<(), ChangeError> {
        let Ok(mut file) = self.file.lock() else {
            return Err(ChangeError::Unavailable);
        };
        let mut next = file.clone();
        change(&mut next)?;
        if let Err(e) = next.validate() {
            return Err(ChangeError::Invalid(e.to_string()));
        }
        if let Err(e) = next.write_atomic(&self.path) {
            tracing::error!(error = %e, "cannot persist the apps file");
            return Err(ChangeError::NotSaved);
        }
        if let Err(e) = apply(&self.registry, &next) {
            tracing::error!(error = %e, "saved change not applied to the running gateway");
            return Err(ChangeError::NotApplied);
        }
        *file = next;
        Ok(())
    }

    /// Registers a new developer (refused when the email is known to the file or the
    /// registry, which holds other instances' developers too).
    pub fn add_developer(&self, entry: DeveloperEntry) -> Result<(), ChangeError> {
        if self.registry.developer(&entry.email).is_some() {
            return Err(ChangeError::DeveloperExists);
        }
        let record = super::apps::developer_record(&entry);
        self.commit(
            |file| {
                if file
                    .developers
                    .iter()
                    .any(|d| d.email.eq_ignore_ascii_case(&entry.email))
                {
                    return Err(ChangeError::DeveloperExists);
                }
                file.developers.push(entry);
                Ok(())
            },
            |registry, _| {
                registry.put_developer(record);
                Ok(())
            },
        )
    }

    /// Creates an app of `developer` (registered if new) subscribed to `products`, with
    /// one credential whose secret is returned in clear this once.
    pub fn create_app(
        &self,
        name: &str,
        developer: &str,
        products: &[String],
    ) -> Result<Created, ChangeError> {
        if name.trim().is_empty() || developer.trim().is_empty() {
            return Err(ChangeError::Invalid(
                "name and developer must not be empty".to_owned(),
            ));
        }
        let app_id = random_token(16);
        let client_id = random_token(24);
        let secret = random_token(32);
        let entry = AppEntry {
            id: app_id.clone(),
            name: name.to_owned(),
            developer: developer.to_owned(),
            status: Status::Approved,
            callback_url: None,
            client_secret_post: true,
            // Self-service apps never get the introspection role.
            introspect_any_token: false,
            attributes: Default::default(),
            credentials: vec![CredentialEntry {
                client_id: client_id.clone(),
                client_secret: None,
                secret_hash: Some(format_hash(&SecretHash::generated(&secret))),
                products: products.to_vec(),
                product_status: Default::default(),
                status: Status::Approved,
                issued_at: now_secs(),
                expires_at: None,
            }],
        };
        let installed = entry.clone();
        // Apigee keeps app names unique per developer: a second app of the same name
        // would be ambiguous in every console and report. Other instances' apps are in
        // the registry only.
        let taken = |n: &str| n.trim().eq_ignore_ascii_case(name.trim());
        if self
            .registry
            .apps()
            .iter()
            .any(|a| a.developer_email.eq_ignore_ascii_case(developer) && taken(&a.name))
        {
            return Err(ChangeError::AppExists {
                developer: developer.to_owned(),
                name: name.trim().to_owned(),
            });
        }
        self.commit(
            |file| {
                if !file.developers.iter().any(|d| d.email == developer) {
                    file.developers.push(DeveloperEntry {
                        email: developer.to_owned(),
                        first_name: String::new(),
                        last_name: String::new(),
                        user_name: String::new(),
                        status: Default::default(),
                        attributes: Default::default(),
                    });
                }
                if file
                    .apps
                    .iter()
                    .any(|a| a.developer.eq_ignore_ascii_case(developer) && taken(&a.name))
                {
                    return Err(ChangeError::AppExists {
                        developer: developer.to_owned(),
                        name: name.trim().to_owned(),
                    });
                }
                file.apps.push(entry);
                Ok(())
            },
            |registry, file| {
                if registry.developer(&installed.developer).is_none()
                    && let Some(d) = file
                        .developers
                        .iter()
                        .find(|d| d.email == installed.developer)
                {
                    registry.put_developer(preflow_oauth::Developer::new(d.email.clone()));
                }
                install_app(registry, &installed).map_err(|e| e.to_string())
            },
        )?;
        Ok(Created {
            app_id,
            client_id,
            client_secret: secret,
        })
    }

    /// Changes one record with `edit` in the file (false when the file lacks it), then
    /// with `set` in the registry. A record another instance created (in the registry
    /// through Redis, not in this file) is changed in the registry only; Redis keeps it.
    fn change_record(
        &self,
        in_registry: bool,
        missing: fn() -> ChangeError,
        edit: impl FnOnce(&mut AppsFile) -> bool,
        set: impl Fn(&Registry) -> Result<(), String>,
    ) -> Result<(), ChangeError> {
        let mut outside = false;
        let result = self.commit(
            |file| {
                if edit(file) {
                    Ok(())
                } else {
                    outside = true;
                    Err(missing())
                }
            },
            |registry, _| set(registry),
        );
        match (outside, in_registry) {
            (false, _) => result,
            (true, false) => Err(missing()),
            (true, true) => set(&self.registry).map_err(|_| ChangeError::NotApplied),
        }
    }

    /// Replaces the secret of credential `key`; returns the new one in clear, this once.
    pub fn rotate(&self, key: &str) -> Result<String, ChangeError> {
        let secret = random_token(32);
        let hash = SecretHash::generated(&secret);
        let stored = format_hash(&hash);
        self.change_record(
            self.registry.credential(key).is_some(),
            || ChangeError::NoSuchClient,
            |file| {
                file.apps
                    .iter_mut()
                    .flat_map(|a| a.credentials.iter_mut())
                    .find(|c| c.client_id == key)
                    .map(|c| c.secret_hash = Some(stored))
                    .is_some()
            },
            |registry| {
                registry
                    .set_credential_secret(key, SecretSpec::Hashed(hash.clone()))
                    .map(drop)
                    .map_err(|e| e.to_string())
            },
        )?;
        Ok(secret)
    }

    /// Activates or deactivates developer `email`.
    pub fn set_developer_status(&self, email: &str, active: bool) -> Result<(), ChangeError> {
        let (entry, record) = if active {
            (
                super::apps::DevStatus::Active,
                preflow_oauth::DeveloperStatus::Active,
            )
        } else {
            (
                super::apps::DevStatus::Inactive,
                preflow_oauth::DeveloperStatus::Inactive,
            )
        };
        self.change_record(
            self.registry.developer(email).is_some(),
            || ChangeError::NoSuchDeveloper,
            |file| {
                file.developers
                    .iter_mut()
                    .find(|d| d.email == email)
                    .map(|d| d.status = entry)
                    .is_some()
            },
            |registry| {
                registry
                    .set_developer_status(email, record)
                    .map_err(|e| e.to_string())
            },
        )
    }

    /// Revokes app `app_id`: its credentials and tokens stop working.
    pub fn revoke(&self, app_id: &str) -> Result<(), ChangeError> {
        self.change_record(
            self.registry.app(app_id).is_some(),
            || ChangeError::NoSuchApp,
            |file| {
                file.apps
                    .iter_mut()
                    .find(|a| a.id == app_id)
                    .map(|a| a.status = Status::Revoked)
                    .is_some()
            },
            |registry| {
                registry
                    .set_app_status(app_id, Approval::Revoked)
                    .map_err(|e| e.to_string())
            },
        )
    }
}

fn app_json(a: &AppEntry) -> Value {
    let credentials: Vec<Value> = a
        .credentials
        .iter()
        .map(|c| {
            json!({
                "client_id": c.client_id,
                "status": status_str(c.status),
                "products": c.products,
            })
        })
        .collect();
    json!({
        "app_id": a.id,
        "name": a.name,
        "developer": a.developer,
        "status": status_str(a.status),
        "credentials": credentials,
    })
}

fn status_str(s: Status) -> &'static str {
    match s {
        Status::Approved => "approved",
        Status::Pending => "pending",
        Status::Revoked => "revoked",
    }
}

fn poisoned() -> Response<Bytes> {
    error(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "the admin state is unavailable after an earlier failure",
    )
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Handler for Admin {
    async fn handle(
        &self,
        head: http::request::Parts,
        body: super::listener::Body,
        _client: preflow::Client,
    ) -> (Response<Bytes>, Handled) {
        if let Some(ops) = &self.ops
            && let Some(resp) = ops.answer(&head).await
        {
            let handled = Handled {
                close: body.is_unread(),
                ..Handled::default()
            };
            return (resp, handled);
        }
        let request = match body.request(head).await {
            Ok(r) => r,
            Err(refused) => return refused,
        };
        // Writing the apps file blocks briefly; keep it off the async workers.
        let resp = tokio::task::block_in_place(|| self.respond(&request));
        if let Some(redis) = &self.redis
            && request.method() == Method::POST
            && !request.uri().path().starts_with("/admin/deployments")
            && resp.status().is_success()
            && !super::redis::share(redis).await
        {
            // Saved here (apps file, this instance) but not yet in force elsewhere: it is
            // written to Redis when Redis answers again.
            let resp = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "temporarily_unavailable",
                "the change is saved on this gateway but could not be shared with the others yet; it will be when Redis answers",
            );
            return (resp, Handled::default());
        }
        (resp, Handled::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use preflow_oauth::PasswordHashCost;

    const FILE: &str = r#"
[[developer]]
email = "demo@example.com"

[[product]]
name = "hello"
resources = ["/**"]

[[app]]
id = "demo-app"
name = "demo-app"
developer = "demo@example.com"

[[app.credential]]
client_id = "demo-client"
client_secret = "demo-secret"
products = ["hello"]
"#;

    fn admin(dir: &std::path::Path) -> (Admin, Arc<Registry>, PathBuf) {
        let cost = PasswordHashCost::insecure_for_tests();
        let mut file = AppsFile::parse(FILE).unwrap();
        file.hash_secrets(cost).unwrap();
        let registry = Arc::new(file.to_registry(cost).unwrap());
        let path = dir.join("apps.toml");
        std::fs::write(&path, FILE).unwrap();
        (
            Admin::new(
                "0123456789abcdef-admin",
                Arc::clone(&registry),
                file,
                path.clone(),
            ),
            registry,
            path,
        )
    }

    fn call(admin: &Admin, method: &str, path: &str, body: &str) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(path)
            .header("authorization", "Bearer 0123456789abcdef-admin")
            .body(Bytes::from(body.to_owned()))
            .unwrap();
        let resp = admin.respond(&req);
        let v = serde_json::from_slice(resp.body()).unwrap_or(Value::Null);
        (resp.status(), v)
    }

    #[test]
    fn the_admin_token_is_required() {
        let dir = tempfile::tempdir().unwrap();
        let (admin, _, _) = admin(dir.path());
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("Basic 0123456789abcdef-admin"),
        ] {
            let mut b = Request::get("/admin/products");
            if let Some(a) = auth {
                b = b.header("authorization", a);
            }
            let resp = admin.respond(&b.body(Bytes::new()).unwrap());
            assert_eq!(resp.status(), 401, "{auth:?}");
            assert!(resp.headers().contains_key("www-authenticate"));
        }
    }

    #[test]
    fn create_rotate_revoke_persist_hashes_only() {
        let dir = tempfile::tempdir().unwrap();
        let (admin, registry, path) = admin(dir.path());

        let (status, products) = call(&admin, "GET", "/admin/products", "");
        assert_eq!(status, 200);
        assert_eq!(products["products"][0]["name"], "hello");

        let (status, created) = call(
            &admin,
            "POST",
            "/admin/apps",
            r#"{"name":"mine","developer":"new@example.com","products":["hello"]}"#,
        );
        assert_eq!(status, 201, "{created}");
        let cid = created["client_id"].as_str().unwrap().to_owned();
        let secret = created["client_secret"].as_str().unwrap().to_owned();
        assert!(
            registry
                .credential(&cid)
                .unwrap()
                .secret
                .verify(secret.as_bytes())
        );

        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains(&secret), "secret in clear: {text}");
        assert!(!text.contains("demo-secret"), "secret in clear: {text}");
        let reread = AppsFile::read(&path).unwrap();
        let restarted = reread
            .to_registry(PasswordHashCost::insecure_for_tests())
            .unwrap();
        assert!(
            restarted
                .credential(&cid)
                .unwrap()
                .secret
                .verify(secret.as_bytes())
        );
        assert!(
            restarted
                .credential("demo-client")
                .unwrap()
                .secret
                .verify(b"demo-secret")
        );

        let (status, rotated) = call(
            &admin,
            "POST",
            &format!("/admin/credentials/{cid}/rotate"),
            "",
        );
        assert_eq!(status, 200);
        let new_secret = rotated["client_secret"].as_str().unwrap();
        assert_ne!(new_secret, secret);
        let stored = registry.credential(&cid).unwrap().secret.clone();
        assert!(stored.verify(new_secret.as_bytes()));
        assert!(!stored.verify(secret.as_bytes()));
        let restarted = AppsFile::read(&path)
            .unwrap()
            .to_registry(PasswordHashCost::insecure_for_tests())
            .unwrap();
        assert!(
            restarted
                .credential(&cid)
                .unwrap()
                .secret
                .verify(new_secret.as_bytes())
        );

        let app_id = created["app_id"].as_str().unwrap();
        let (status, _) = call(&admin, "POST", &format!("/admin/apps/{app_id}/revoke"), "");
        assert_eq!(status, 200);
        assert_eq!(registry.app(app_id).unwrap().status, Approval::Revoked);
        let (_, apps) = call(&admin, "GET", "/admin/apps", "");
        let listed = apps["apps"].as_array().unwrap();
        assert_eq!(listed.len(), 2);
        assert_eq!(listed[1]["status"], "revoked");
        assert!(!apps.to_string().contains(new_secret));
        let restarted = AppsFile::read(&path)
            .unwrap()
            .to_registry(PasswordHashCost::insecure_for_tests())
            .unwrap();
        assert_eq!(restarted.app(app_id).unwrap().status, Approval::Revoked);
    }

    #[test]
    fn records_of_other_instances_change_in_the_registry() {
        let dir = tempfile::tempdir().unwrap();
        let (admin, registry, path) = admin(dir.path());
        // An app another instance created: in the registry (through Redis), not here.
        let mut file = AppsFile::parse(FILE).unwrap();
        file.hash_secrets(PasswordHashCost::insecure_for_tests())
            .unwrap();
        let mut elsewhere = file.apps[0].clone();
        elsewhere.id = "elsewhere".into();
        elsewhere.name = "elsewhere".into();
        elsewhere.credentials[0].client_id = "elsewhere-client".into();
        install_app(&registry, &elsewhere).unwrap();
        let before = std::fs::read_to_string(&path).unwrap();
        let (status, rotated) = call(
            &admin,
            "POST",
            "/admin/credentials/elsewhere-client/rotate",
            "",
        );
        assert_eq!(status, 200, "{rotated}");
        let secret = rotated["client_secret"].as_str().unwrap();
        let stored = registry
            .credential("elsewhere-client")
            .unwrap()
            .secret
            .clone();
        assert!(stored.verify(secret.as_bytes()) && !stored.verify(b"demo-secret"));
        assert_eq!(
            call(&admin, "POST", "/admin/apps/elsewhere/revoke", "").0,
            200
        );
        assert_eq!(registry.app("elsewhere").unwrap().status, Approval::Revoked);
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            before,
            "this file is left alone"
        );
    }

    #[test]
    fn developers_are_activated_and_deactivated() {
        let dir = tempfile::tempdir().unwrap();
        let (admin, registry, path) = admin(dir.path());
        let (status, body) = call(
            &admin,
            "POST",
            "/admin/developers/demo%40example.com/deactivate",
            "",
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["status"], "inactive");
        let inactive = preflow_oauth::DeveloperStatus::Inactive;
        assert_eq!(
            registry.developer("demo@example.com").unwrap().status,
            inactive
        );
        let reread = AppsFile::read(&path).unwrap();
        assert_eq!(
            reread.developers[0].status,
            super::super::apps::DevStatus::Inactive
        );
        let (status, _) = call(
            &admin,
            "POST",
            "/admin/developers/demo@example.com/activate",
            "",
        );
        assert_eq!(status, 200);
        let active = preflow_oauth::DeveloperStatus::Active;
        assert_eq!(
            registry.developer("demo@example.com").unwrap().status,
            active
        );
        assert_eq!(
            call(
                &admin,
                "POST",
                "/admin/developers/nobody%40x.org/activate",
                ""
            )
            .0,
            404
        );
        assert_eq!(
            call(
                &admin,
                "GET",
                "/admin/developers/demo%40example.com/activate",
                ""
            )
            .0,
            405
        );
    }

    #[test]
    fn bad_requests_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (admin, _, path) = admin(dir.path());
        let before = std::fs::read_to_string(&path).unwrap();
        let (status, body) = call(
            &admin,
            "POST",
            "/admin/apps",
            r#"{"name":"x","developer":"d@example.com","products":["nope"]}"#,
        );
        assert_eq!(status, 400);
        assert!(body["error_description"].as_str().unwrap().contains("nope"));
        assert_eq!(call(&admin, "POST", "/admin/apps", "{").0, 400);
        // The seed developer already has `demo-app` (names compare without case).
        let (status, body) = call(
            &admin,
            "POST",
            "/admin/apps",
            r#"{"name":"Demo-App","developer":"demo@example.com","products":["hello"]}"#,
        );
        assert_eq!(status, 409);
        assert!(
            body["error_description"]
                .as_str()
                .unwrap()
                .contains("already has an app named `Demo-App`"),
            "{body}"
        );
        assert_eq!(
            call(&admin, "POST", "/admin/credentials/none/rotate", "").0,
            404
        );
        assert_eq!(call(&admin, "POST", "/admin/apps/none/revoke", "").0, 404);
        assert_eq!(call(&admin, "DELETE", "/admin/apps", "").0, 405);
        let req = Request::builder()
            .method("GET")
            .uri("/admin/apps/x/revoke")
            .header("authorization", "Bearer 0123456789abcdef-admin")
            .body(Bytes::new())
            .unwrap();
        let resp = admin.respond(&req);
        assert_eq!(resp.status(), 405);
        assert_eq!(resp.headers()["allow"], "POST");
        assert_eq!(call(&admin, "GET", "/admin/other", "").0, 404);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), before);
    }
}
