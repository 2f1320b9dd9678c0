//! The developer portal (`preflow serve --portal ADDR`): a small server-rendered site
//! where developers read the product catalogue and the APIs' references, sign up, sign
//! in, and create, rotate and revoke the keys and secrets of their apps.
//!
//! Pages are askama templates and plain HTML forms: every action works without
//! JavaScript (only the API reference page runs the vendored Redoc viewer). Changes go
//! through the same [`AppsWriter`] as the admin API (the apps file, then the running
//! registry) and, with `--redis`, are shared with every instance before the page answers,
//! so a key created here gets a token at once on every gateway. Developers are records
//! of the same registry; their Argon2id password hash is an attribute
//! ([`PASSWORD_ATTRIBUTE`]) that AccessEntity does not return.
//!
//! Security: one HttpOnly, SameSite=Lax cookie (Secure over HTTPS); a CSRF token on
//! every form, checked on every POST; `Content-Security-Policy`, `X-Frame-Options: DENY`,
//! `X-Content-Type-Options: nosniff` and `Referrer-Policy` on every answer; secrets only
//! in POST answers marked `Cache-Control: no-store`, never in URLs or logs; an app is
//! found only among the signed-in developer's own; sign-in failures throttled per source
//! and per account and source.

mod pages;
mod sessions;
#[cfg(test)]
mod tests;
mod throttle;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use askama::Template as _;
use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use preflow_oauth::{Approval, DeveloperStatus, PasswordHashCost, SecretHash};
use serde::Deserialize;

use super::admin::{AppsWriter, ChangeError};
use super::apps::{DevStatus, DeveloperEntry, ProductEntry};
use super::listener::{Handled, Handler};
use pages::{ApiLink, AppView, Nav, ProductView};

/// The developer attribute holding the portal password's Argon2id hash (PHC string).
pub const PASSWORD_ATTRIBUTE: &str = "preflow.portal.password";

/// Shortest password accepted at sign-up.
pub const MIN_PASSWORD: usize = 12;

/// Largest form body the portal reads.
const MAX_FORM_BYTES: usize = 64 * 1024;

/// Largest OpenAPI document served.
const MAX_DOC_BYTES: u64 = 8 * 1024 * 1024;

/// The portal's settings file, found like the apps file (`portal.toml` directly in a
/// PATH folder) or named with `--portal-config`.
pub const SETTINGS_FILE: &str = "portal.toml";

/// What the operator configures (`portal.toml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The portal's name, in every page's title and header.
    pub title: String,
    /// New developers wait for an administrator (`status = "active"` in the apps file)
    /// before they can sign in.
    pub approval: bool,
    /// Mark the cookie `Secure` although the portal listener is plain HTTP (behind a
    /// proxy that terminates TLS).
    pub secure_cookies: bool,
    /// OpenAPI documents by API proxy name, besides those found in the bundles'
    /// `resources/oas/` folders; relative paths are from the settings file's folder.
    pub openapi: BTreeMap<String, PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            title: "preflow developer portal".to_owned(),
            approval: false,
            secure_cookies: false,
            openapi: BTreeMap::new(),
        }
    }
}

/// Why the portal cannot start.
#[derive(Debug, thiserror::Error)]
pub enum PortalError {
    /// The settings file could not be read or parsed.
    #[error("{path}: {message}")]
    Settings {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An OpenAPI document could not be read.
    #[error("OpenAPI document {path}: {source}")]
    Doc {
        /// The file.
        path: PathBuf,
        /// The read error.
        source: std::io::Error,
    },
    /// An OpenAPI document is larger than the portal serves.
    #[error("OpenAPI document {0}: larger than 8 MiB")]
    DocTooLarge(PathBuf),
}

impl Settings {
    /// Reads `path`; relative OpenAPI paths become relative to its folder.
    pub fn read(path: &Path) -> Result<Self, PortalError> {
        let err = |message: String| PortalError::Settings {
            path: path.to_owned(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let mut s: Settings = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        for file in s.openapi.values_mut() {
            if file.is_relative() {
                *file = base.join(&*file);
            }
        }
        Ok(s)
    }

    /// The first `portal.toml` directly in a PATH folder.
    pub fn find(paths: &[PathBuf]) -> Option<PathBuf> {
        paths
            .iter()
            .map(|p| p.join(SETTINGS_FILE))
            .find(|p| p.is_file())
    }
}

/// An API's OpenAPI document.
#[derive(Debug, Clone)]
struct ApiDoc {
    file: String,
    content_type: &'static str,
    body: Bytes,
}

/// Finds the OpenAPI documents of the bundles in `paths` (`apiproxy/resources/oas/*.yaml`,
/// `.yml` or `.json`; the first by name per proxy) and adds those the settings name.
fn find_docs(
    paths: &[PathBuf],
    settings: &Settings,
) -> Result<BTreeMap<String, ApiDoc>, PortalError> {
    let mut found: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut bundles = Vec::new();
    for p in paths {
        if p.join("apiproxy").is_dir() {
            bundles.push(p.join("apiproxy"));
        } else if let Ok(entries) = std::fs::read_dir(p) {
            let mut dirs: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path().join("apiproxy"))
                .filter(|d| d.is_dir())
                .collect();
            dirs.sort();
            bundles.extend(dirs);
        }
    }
    for apiproxy in bundles {
        let Some(name) = proxy_name(&apiproxy) else {
            continue;
        };
        let Ok(entries) = std::fs::read_dir(apiproxy.join("resources").join("oas")) else {
            continue;
        };
        let mut docs: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|f| content_type(f).is_some())
            .collect();
        docs.sort();
        if let Some(first) = docs.into_iter().next() {
            found.entry(name).or_insert(first);
        }
    }
    for (name, file) in &settings.openapi {
        found.insert(name.clone(), file.clone());
    }
    let mut out = BTreeMap::new();
    for (name, path) in found {
        let meta = std::fs::metadata(&path).map_err(|source| PortalError::Doc {
            path: path.clone(),
            source,
        })?;
        if meta.len() > MAX_DOC_BYTES {
            return Err(PortalError::DocTooLarge(path));
        }
        let body = std::fs::read(&path).map_err(|source| PortalError::Doc {
            path: path.clone(),
            source,
        })?;
        let file = path
            .file_name()
            .map(|f| f.to_string_lossy().into_owned())
            .unwrap_or_default();
        out.insert(
            name,
            ApiDoc {
                file,
                content_type: content_type(&path).unwrap_or("application/yaml"),
                body: Bytes::from(body),
            },
        );
    }
    Ok(out)
}

/// The proxy's name: the stem of the bundle's top-level XML file, else its folder's.
fn proxy_name(apiproxy: &Path) -> Option<String> {
    let xml = std::fs::read_dir(apiproxy)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.is_file() && p.extension().is_some_and(|e| e == "xml"));
    xml.as_deref()
        .or_else(|| apiproxy.parent())
        .and_then(Path::file_stem)
        .map(|s| s.to_string_lossy().into_owned())
}

fn content_type(path: &Path) -> Option<&'static str> {
    match path.extension()?.to_str()? {
        "yaml" | "yml" => Some("application/yaml"),
        "json" => Some("application/json"),
        _ => None,
    }
}

/// The portal.
#[derive(Debug)]
pub struct Portal {
    writer: Arc<AppsWriter>,
    redis: Option<preflow_redis::RegistrySync>,
    settings: Settings,
    docs: BTreeMap<String, ApiDoc>,
    sessions: sessions::Sessions,
    throttle: throttle::Throttle,
    cost: PasswordHashCost,
    /// A password hash verified when the email is unknown, so the time taken does not
    /// tell which developers exist.
    dummy: SecretHash,
    /// Argon2id takes 19 MiB and tens of milliseconds a hash: at most this many at once.
    hashing: tokio::sync::Semaphore,
}

/// Password hashes computed at once (sign-ups and sign-ins); further ones wait.
pub const MAX_CONCURRENT_HASHES: usize = 4;

/// One request as the portal sees it.
#[derive(Debug)]
pub struct Visit {
    /// The request.
    pub request: Request<Bytes>,
    /// The client's address (throttling).
    pub source: IpAddr,
    /// Whether the connection is HTTPS (the cookie's `Secure`).
    pub https: bool,
}

/// An answer and whether it changed the registry (to share through Redis).
#[derive(Debug)]
pub struct Answer {
    /// The response.
    pub response: Response<Bytes>,
    /// A developer or app changed.
    pub changed: bool,
}

impl From<Response<Bytes>> for Answer {
    fn from(response: Response<Bytes>) -> Self {
        Self {
            response,
            changed: false,
        }
    }
}

/// The visitor: cookie (new when absent), CSRF token, signed-in developer.
struct Visitor {
    cookie: String,
    new_cookie: bool,
    developer: Option<String>,
    nav: Nav,
    secure: bool,
}

/// The static assets, compiled in.
const CSS: &[u8] = include_bytes!("static/portal.css");
const REDOC: &[u8] = include_bytes!("static/redoc.standalone.js");
const REDOC_LICENSE: &[u8] = include_bytes!("static/redoc.LICENSE");

/// Pages without scripts.
const CSP: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// The reference page: Redoc's own script, the inline styles it generates, its search
/// worker (a blob) and the fetch of the document from this origin.
const CSP_REFERENCE: &str = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; font-src 'self' data:; connect-src 'self'; worker-src 'self' blob:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

#[derive(Debug, Default, Deserialize)]
struct Form {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    first_name: String,
    #[serde(default)]
    last_name: String,
    #[serde(default)]
    name: String,
    #[serde(default)]
    product: Vec<String>,
}

/// Parses a form body (`product` may repeat).
fn parse_form(body: &[u8]) -> Form {
    let mut f = Form::default();
    for (k, v) in form_urlencoded::parse(body) {
        let v = v.into_owned();
        match k.as_ref() {
            "csrf" => f.csrf = v,
            "email" => f.email = v,
            "password" => f.password = v,
            "first_name" => f.first_name = v,
            "last_name" => f.last_name = v,
            "name" => f.name = v,
            "product" if f.product.len() < 64 => f.product.push(v),
            _ => {}
        }
    }
    f
}

/// An email the portal accepts: one `@` with text on both sides, no spaces or controls,
/// at most 254 characters; compared in lower case.
fn normalise_email(email: &str) -> Option<String> {
    let e = email.trim().to_lowercase();
    let (local, domain) = e.split_once('@')?;
    let ok = !local.is_empty()
        && domain.contains('.')
        && !domain.contains('@')
        && e.len() <= 254
        && !e.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then_some(e)
}

fn html(status: StatusCode, body: Result<String, askama::Error>) -> Response<Bytes> {
    match body {
        Ok(text) => {
            let mut r = Response::new(Bytes::from(text));
            *r.status_mut() = status;
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/html; charset=utf-8"),
            );
            r
        }
        Err(e) => {
            tracing::error!(error = %e, "portal page not rendered");
            let mut r = Response::new(Bytes::from_static(b"the page could not be rendered"));
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            r
        }
    }
}

fn redirect(to: &'static str) -> Response<Bytes> {
    let mut r = Response::new(Bytes::new());
    *r.status_mut() = StatusCode::SEE_OTHER;
    r.headers_mut()
        .insert(header::LOCATION, HeaderValue::from_static(to));
    r
}

fn asset(body: &'static [u8], content_type: &'static str) -> Response<Bytes> {
    let mut r = Response::new(Bytes::from_static(body));
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    r
}

/// The headers every answer carries; HTML answers are never stored by caches (some
/// show secrets, all are per visitor).
fn secure_headers(r: &mut Response<Bytes>, csp: &'static str) {
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(csp),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
}

fn quota_words(q: Option<preflow_oauth::ProductQuota>) -> String {
    match q {
        Some(q) => format!(
            "{} requests per {} {}{}",
            q.limit,
            q.interval,
            q.time_unit.as_str(),
            if q.interval == 1 { "" } else { "s" }
        ),
        None => "no quota".to_owned(),
    }
}

/// Whether a product is shown and can be subscribed to: its `access` attribute is not
/// `private` or `internal` (Apigee's product access levels).
fn published(p: &ProductEntry) -> bool {
    !matches!(
        p.attributes.get("access").map(String::as_str),
        Some("private" | "internal")
    )
}

fn now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Portal {
    /// A portal changing apps through `writer`, with the settings and the OpenAPI
    /// documents of the bundles in `paths`. Passwords are hashed at `cost`.
    pub fn new(
        writer: Arc<AppsWriter>,
        settings: Settings,
        paths: &[PathBuf],
        cost: PasswordHashCost,
    ) -> Result<Self, PortalError> {
        let docs = find_docs(paths, &settings)?;
        let dummy = SecretHash::custom(&preflow_oauth::secret::random_token(16), cost)
            .unwrap_or_else(|_| SecretHash::generated("unused"));
        Ok(Self {
            writer,
            redis: None,
            settings,
            docs,
            sessions: sessions::Sessions::default(),
            throttle: throttle::Throttle::default(),
            cost,
            dummy,
            hashing: tokio::sync::Semaphore::new(MAX_CONCURRENT_HASHES),
        })
    }

    /// Shares every change through Redis (`--redis`) before answering.
    pub fn with_redis(mut self, redis: Option<preflow_redis::RegistrySync>) -> Self {
        self.redis = redis;
        self
    }

    /// The names of the APIs with a reference page.
    pub fn documented_apis(&self) -> impl Iterator<Item = &str> {
        self.docs.keys().map(String::as_str)
    }

    fn visitor(&self, visit: &Visit) -> Visitor {
        let existing = sessions::cookie_value(visit.request.headers());
        let new_cookie = existing.is_none();
        let cookie = existing.unwrap_or_else(sessions::new_cookie);
        let developer = if new_cookie {
            None
        } else {
            self.sessions
                .developer(&cookie, Instant::now())
                .filter(|d| self.active(d))
        };
        self.visitor_with(cookie, new_cookie, developer, visit)
    }

    fn visitor_with(
        &self,
        cookie: String,
        new_cookie: bool,
        developer: Option<String>,
        visit: &Visit,
    ) -> Visitor {
        Visitor {
            nav: Nav {
                site: self.settings.title.clone(),
                developer: developer.clone(),
                csrf: self.sessions.csrf(&cookie),
            },
            cookie,
            new_cookie,
            developer,
            secure: visit.https || self.settings.secure_cookies,
        }
    }

    /// Whether the developer exists and is active (an inactive one is signed out).
    fn active(&self, email: &str) -> bool {
        self.writer
            .registry()
            .developer(email)
            .is_some_and(|d| d.status == DeveloperStatus::Active)
    }

    /// Answers one portal request.
    pub fn respond(&self, visit: &Visit) -> Answer {
        let v = self.visitor(visit);
        let path = visit.request.uri().path();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let method = visit.request.method();
        let mut csp = CSP;
        let mut answer: Answer = match (method, segments.as_slice()) {
            (&Method::GET | &Method::HEAD, [""]) => self.catalogue(&v).into(),
            (&Method::GET | &Method::HEAD, ["static", file]) => match *file {
                "portal.css" => asset(CSS, "text/css; charset=utf-8").into(),
                "redoc.standalone.js" => asset(REDOC, "text/javascript; charset=utf-8").into(),
                "redoc.LICENSE" => asset(REDOC_LICENSE, "text/plain; charset=utf-8").into(),
                _ => self.not_found(&v).into(),
            },
            (&Method::GET | &Method::HEAD, ["apis", api]) => {
                csp = CSP_REFERENCE;
                self.reference(&v, api).into()
            }
            (&Method::GET | &Method::HEAD, ["apis", api, "openapi"]) => match self.docs.get(*api) {
                Some(doc) => {
                    let mut r = Response::new(doc.body.clone());
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static(doc.content_type),
                    );
                    r.into()
                }
                None => self.not_found(&v).into(),
            },
            (&Method::GET | &Method::HEAD, ["signup"]) => {
                self.signup_page(&v, None, &Form::default()).into()
            }
            (&Method::GET | &Method::HEAD, ["signin"]) => self.signin_page(&v, None, "").into(),
            (&Method::GET | &Method::HEAD, ["apps"]) => match &v.developer {
                Some(d) => self.apps_page(&v, d, None, StatusCode::OK).into(),
                None => redirect("/signin").into(),
            },
            (&Method::POST, route) => self.post(visit, &v, route),
            (_, [""] | ["static", _] | ["apis", ..] | ["signup"] | ["signin"] | ["apps"]) => {
                let mut r = self.message(
                    &v,
                    StatusCode::METHOD_NOT_ALLOWED,
                    "Method not allowed",
                    "This page does not take that method.",
                );
                r.headers_mut()
                    .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD, POST"));
                r.into()
            }
            _ => self.not_found(&v).into(),
        };
        let r = &mut answer.response;
        if v.new_cookie && !r.headers().contains_key(header::SET_COOKIE) {
            let c = sessions::set_cookie(&v.cookie, v.secure);
            if let Ok(value) = HeaderValue::from_str(&c) {
                r.headers_mut().insert(header::SET_COOKIE, value);
            }
        }
        secure_headers(r, csp);
        answer
    }

    fn post(&self, visit: &Visit, v: &Visitor, route: &[&str]) -> Answer {
        let body = visit.request.body();
        if body.len() > MAX_FORM_BYTES {
            return self
                .message(
                    v,
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Form too large",
                    "The form sent more than the portal reads.",
                )
                .into();
        }
        let form = parse_form(body);
        // A new cookie has no forms yet: nothing can carry its token.
        if v.new_cookie || !self.sessions.csrf_ok(&v.cookie, &form.csrf) {
            return self
                .message(
                    v,
                    StatusCode::FORBIDDEN,
                    "Form expired",
                    "The form was not sent from this portal's current page (its security token did not match). Reload the page and try again.",
                )
                .into();
        }
        match route {
            ["signup"] => self.signup(visit, v, &form),
            ["signin"] => self.signin(visit, v, &form).into(),
            ["signout"] => {
                self.sessions.sign_out(&v.cookie);
                let mut r = redirect("/");
                self.set_cookie(&mut r, &sessions::new_cookie(), v.secure);
                r.into()
            }
            ["apps"] => match &v.developer {
                Some(d) => self.create_app(v, d, &form),
                None => redirect("/signin").into(),
            },
            ["apps", id, action @ ("rotate" | "revoke")] => match &v.developer {
                Some(d) => self.change_app(v, d, id, action),
                None => redirect("/signin").into(),
            },
            _ => self.not_found(v).into(),
        }
    }

    fn set_cookie(&self, r: &mut Response<Bytes>, cookie: &str, secure: bool) {
        if let Ok(value) = HeaderValue::from_str(&sessions::set_cookie(cookie, secure)) {
            r.headers_mut().insert(header::SET_COOKIE, value);
        }
    }

    fn message(&self, v: &Visitor, status: StatusCode, title: &str, text: &str) -> Response<Bytes> {
        let (link, link_text) = if v.developer.is_some() {
            ("/apps", "My apps")
        } else {
            ("/", "API products")
        };
        html(
            status,
            pages::Message {
                title,
                nav: &v.nav,
                text,
                link,
                link_text,
            }
            .render(),
        )
    }

    fn not_found(&self, v: &Visitor) -> Response<Bytes> {
        self.message(
            v,
            StatusCode::NOT_FOUND,
            "Not found",
            "There is no such page or app here.",
        )
    }

    fn products(&self) -> Vec<ProductView> {
        self.writer
            .products()
            .iter()
            .filter(|p| published(p))
            .map(|p| ProductView {
                name: p.name.clone(),
                display_name: if p.display_name.is_empty() {
                    p.name.clone()
                } else {
                    p.display_name.clone()
                },
                description: p.description.clone(),
                scopes: p.scopes.clone(),
                quota: quota_words(
                    self.writer
                        .registry()
                        .product(&p.name)
                        .and_then(|p| p.quota),
                ),
                apis: p
                    .proxies
                    .iter()
                    .map(|name| ApiLink {
                        name: name.clone(),
                        documented: self.docs.contains_key(name),
                    })
                    .collect(),
            })
            .collect()
    }

    fn catalogue(&self, v: &Visitor) -> Response<Bytes> {
        let products = self.products();
        html(
            StatusCode::OK,
            pages::Catalogue {
                title: "API products",
                nav: &v.nav,
                products: &products,
            }
            .render(),
        )
    }

    fn reference(&self, v: &Visitor, api: &str) -> Response<Bytes> {
        let Some(doc) = self.docs.get(api) else {
            return self.not_found(v);
        };
        let title = format!("{api} API reference");
        html(
            StatusCode::OK,
            pages::Reference {
                title: &title,
                nav: &v.nav,
                api,
                file: &doc.file,
            }
            .render(),
        )
    }

    fn signup_page(&self, v: &Visitor, error: Option<String>, form: &Form) -> Response<Bytes> {
        let status = if error.is_some() {
            StatusCode::BAD_REQUEST
        } else {
            StatusCode::OK
        };
        html(
            status,
            pages::SignUp {
                title: "Sign up",
                nav: &v.nav,
                error,
                email: &form.email,
                first_name: &form.first_name,
                last_name: &form.last_name,
                min_password: MIN_PASSWORD,
            }
            .render(),
        )
    }

    fn signin_page(
        &self,
        v: &Visitor,
        error: Option<(StatusCode, String)>,
        email: &str,
    ) -> Response<Bytes> {
        let status = error.as_ref().map_or(StatusCode::OK, |(s, _)| *s);
        html(
            status,
            pages::SignIn {
                title: "Sign in",
                nav: &v.nav,
                error: error.map(|(_, e)| e),
                email,
            }
            .render(),
        )
    }

    fn signup(&self, visit: &Visit, v: &Visitor, form: &Form) -> Answer {
        let Some(email) = normalise_email(&form.email) else {
            return self
                .signup_page(v, Some("Enter a valid email address.".to_owned()), form)
                .into();
        };
        let chars = form.password.chars().count();
        if chars < MIN_PASSWORD || form.password.len() > 1024 {
            return self
                .signup_page(
                    v,
                    Some(format!(
                        "Choose a password of {MIN_PASSWORD} to 1024 characters."
                    )),
                    form,
                )
                .into();
        }
        if form.first_name.chars().count() > 100 || form.last_name.chars().count() > 100 {
            return self
                .signup_page(
                    v,
                    Some("Names are at most 100 characters.".to_owned()),
                    form,
                )
                .into();
        }
        let hash = match SecretHash::custom(&form.password, self.cost) {
            Ok(SecretHash::Argon2(phc)) => phc,
            _ => {
                return self
                    .message(
                        v,
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Sign-up failed",
                        "The password could not be stored. Try again later.",
                    )
                    .into();
            }
        };
        let entry = DeveloperEntry {
            email: email.clone(),
            first_name: form.first_name.trim().to_owned(),
            last_name: form.last_name.trim().to_owned(),
            user_name: String::new(),
            status: if self.settings.approval {
                DevStatus::Inactive
            } else {
                DevStatus::Active
            },
            attributes: [(PASSWORD_ATTRIBUTE.to_owned(), hash)]
                .into_iter()
                .collect(),
        };
        match self.writer.add_developer(entry) {
            Ok(()) => {}
            Err(ChangeError::DeveloperExists) => {
                // Said plainly: hiding it would only move the question to sign-in.
                return self
                    .signup_page(
                        v,
                        Some(
                            "A developer with this email is registered already; sign in instead."
                                .to_owned(),
                        ),
                        form,
                    )
                    .into();
            }
            Err(e) => {
                tracing::error!(error = %e, "portal sign-up not saved");
                return self
                    .message(
                        v,
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "Sign-up failed",
                        "The registration could not be saved. Try again later.",
                    )
                    .into();
            }
        }
        tracing::info!(source = %visit.source, "portal: developer signed up");
        if self.settings.approval {
            let r = self.message(
                v,
                StatusCode::OK,
                "Thank you for signing up",
                "An administrator approves new developers; you can sign in once your account is approved.",
            );
            return Answer {
                response: r,
                changed: true,
            };
        }
        let cookie = self.sessions.sign_in(&email, Instant::now());
        let mut r = redirect("/apps");
        self.set_cookie(&mut r, &cookie, v.secure);
        Answer {
            response: r,
            changed: true,
        }
    }

    fn signin(&self, visit: &Visit, v: &Visitor, form: &Form) -> Response<Bytes> {
        let email = normalise_email(&form.email).unwrap_or_default();
        let now = Instant::now();
        if let Some(wait) = self.throttle.wait(&email, visit.source, now) {
            let minutes = wait.as_secs().div_ceil(60).max(1);
            let mut r = self.signin_page(
                v,
                Some((
                    StatusCode::TOO_MANY_REQUESTS,
                    format!("Too many failed sign-ins. Try again in {minutes} minute(s)."),
                )),
                &form.email,
            );
            if let Ok(value) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
                r.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return r;
        }
        let developer = self.writer.registry().developer(&email);
        let stored = developer.as_ref().and_then(|d| {
            d.attributes
                .iter()
                .find(|(k, _)| k == PASSWORD_ATTRIBUTE)
                .map(|(_, v)| SecretHash::Argon2(v.clone()))
        });
        let ok = match &stored {
            Some(hash) => hash.verify(form.password.as_bytes()),
            None => {
                let _ = self.dummy.verify(form.password.as_bytes());
                false
            }
        };
        if !ok {
            self.throttle.failed(&email, visit.source, now);
            tracing::info!(source = %visit.source, "portal: sign-in refused");
            return self.signin_page(
                v,
                Some((
                    StatusCode::UNAUTHORIZED,
                    "The email or the password is wrong.".to_owned(),
                )),
                &form.email,
            );
        }
        self.throttle.succeeded(&email, visit.source);
        if !developer.is_some_and(|d| d.status == DeveloperStatus::Active) {
            return self.signin_page(
                v,
                Some((
                    StatusCode::FORBIDDEN,
                    "Your account waits for an administrator's approval.".to_owned(),
                )),
                &form.email,
            );
        }
        // A fresh cookie: a value planted before sign-in never becomes a session.
        self.sessions.sign_out(&v.cookie);
        let cookie = self.sessions.sign_in(&email, now);
        let mut r = redirect("/apps");
        self.set_cookie(&mut r, &cookie, v.secure);
        r
    }

    /// The developer's apps (from the registry: every instance's), newest last.
    fn my_apps(&self, developer: &str) -> Vec<AppView> {
        let registry = self.writer.registry();
        let credentials = registry.credentials();
        let usage = super::metrics::get();
        let now = now_secs();
        let mut apps: Vec<AppView> = registry
            .apps()
            .iter()
            .filter(|a| a.developer_email.eq_ignore_ascii_case(developer))
            .map(|a| {
                let cred = credentials
                    .iter()
                    .filter(|c| c.app_id == a.id)
                    .max_by_key(|c| c.issued_at);
                let products: Vec<String> = cred
                    .map(|c| c.products.iter().map(|p| p.name.clone()).collect())
                    .unwrap_or_default();
                let counted = usage.map(|m| m.app_usage(&a.id)).unwrap_or_default();
                let quota = products
                    .iter()
                    .filter_map(|p| registry.product(p)?.quota)
                    .next()
                    .map_or_else(
                        || "no quota".to_owned(),
                        |q| match counted.last(q.interval, q.time_unit, now) {
                            Some(used) => format!(
                                "{used} of {} per {} {}",
                                q.limit,
                                q.interval,
                                q.time_unit.as_str()
                            ),
                            None => {
                                format!("{} per {} {}", q.limit, q.interval, q.time_unit.as_str())
                            }
                        },
                    );
                let active = a.status == Approval::Approved;
                AppView {
                    id: a.id.clone(),
                    name: a.name.clone(),
                    status: a.status.as_str(),
                    active,
                    products,
                    client_id: cred.map(|c| c.key.clone()).unwrap_or_default(),
                    requests: counted.requests,
                    errors: counted.errors,
                    quota,
                }
            })
            .collect();
        apps.sort_by_key(|a| a.name.to_lowercase());
        apps
    }

    fn apps_page(
        &self,
        v: &Visitor,
        developer: &str,
        error: Option<String>,
        status: StatusCode,
    ) -> Response<Bytes> {
        let apps = self.my_apps(developer);
        let products = self.products();
        html(
            status,
            pages::Apps {
                title: "My apps",
                nav: &v.nav,
                error,
                apps: &apps,
                products: &products,
            }
            .render(),
        )
    }

    fn secret_page(
        &self,
        v: &Visitor,
        heading: &str,
        app: &str,
        client_id: &str,
        client_secret: &str,
    ) -> Response<Bytes> {
        html(
            StatusCode::OK,
            pages::Secret {
                title: heading,
                nav: &v.nav,
                heading,
                app,
                client_id,
                client_secret,
            }
            .render(),
        )
    }

    fn create_app(&self, v: &Visitor, developer: &str, form: &Form) -> Answer {
        let name = form.name.trim();
        let refuse = |e: String| {
            Answer::from(self.apps_page(v, developer, Some(e), StatusCode::BAD_REQUEST))
        };
        if name.is_empty() || name.chars().count() > 100 {
            return refuse("Give the app a name of 1 to 100 characters.".to_owned());
        }
        if form.product.is_empty() {
            return refuse("Choose at least one product.".to_owned());
        }
        let published: Vec<String> = self
            .writer
            .products()
            .into_iter()
            .filter(published)
            .map(|p| p.name)
            .collect();
        if let Some(p) = form.product.iter().find(|p| !published.contains(p)) {
            return refuse(format!("There is no product `{p}` to subscribe to."));
        }
        let mut products = form.product.clone();
        products.dedup();
        match self.writer.create_app(name, developer, &products) {
            Ok(created) => Answer {
                response: self.secret_page(
                    v,
                    "App created",
                    name,
                    &created.client_id,
                    &created.client_secret,
                ),
                changed: true,
            },
            Err(e @ (ChangeError::AppExists { .. } | ChangeError::Invalid(_))) => {
                refuse(e.to_string())
            }
            Err(e) => {
                tracing::error!(error = %e, "portal: app not created");
                refuse("The app could not be saved. Try again later.".to_owned())
            }
        }
    }

    fn change_app(&self, v: &Visitor, developer: &str, app_id: &str, action: &str) -> Answer {
        let registry = self.writer.registry();
        // Only the developer's own apps are found: another's is "not found", as one
        // that does not exist.
        let Some(app) = registry
            .app(app_id)
            .filter(|a| a.developer_email.eq_ignore_ascii_case(developer))
        else {
            return self.not_found(v).into();
        };
        if app.status != Approval::Approved {
            return self
                .apps_page(
                    v,
                    developer,
                    Some(format!("The app `{}` is revoked.", app.name)),
                    StatusCode::CONFLICT,
                )
                .into();
        }
        let failed = |e: ChangeError, what: &str| -> Answer {
            tracing::error!(error = %e, "portal: {what} failed");
            let text = format!("The app could not be changed ({what}). Try again later.");
            self.apps_page(v, developer, Some(text), StatusCode::INTERNAL_SERVER_ERROR)
                .into()
        };
        if action == "revoke" {
            return match self.writer.revoke(app_id) {
                Ok(()) => Answer {
                    response: redirect("/apps"),
                    changed: true,
                },
                Err(e) => failed(e, "revoke"),
            };
        }
        let Some(key) = registry
            .credentials()
            .iter()
            .filter(|c| c.app_id == app.id)
            .max_by_key(|c| c.issued_at)
            .map(|c| c.key.clone())
        else {
            return self.not_found(v).into();
        };
        match self.writer.rotate(&key) {
            Ok(secret) => Answer {
                response: self.secret_page(v, "Secret rotated", &app.name, &key, &secret),
                changed: true,
            },
            Err(e) => failed(e, "rotate"),
        }
    }
}

impl Handler for Portal {
    async fn handle(
        &self,
        head: http::request::Parts,
        body: super::listener::Body,
        client: preflow::Client,
    ) -> (Response<Bytes>, Handled) {
        let request = match body.request(head).await {
            Ok(r) => r,
            Err(refused) => return refused,
        };
        let visit = Visit {
            request,
            source: client.addr.ip(),
            https: client.scheme == preflow::Scheme::Https,
        };
        // Password hashing and the apps file's write block: keep them off the workers.
        let hashes = visit.request.method() == Method::POST
            && matches!(visit.request.uri().path(), "/signin" | "/signup");
        let _permit = if hashes {
            self.hashing.acquire().await.ok()
        } else {
            None
        };
        let answer = tokio::task::block_in_place(|| self.respond(&visit));
        if answer.changed
            && let Some(redis) = &self.redis
            && !super::redis::share(redis).await
        {
            // Saved here; Redis gets it when it answers again (see the admin API).
            tracing::warn!("portal change saved on this gateway only until redis answers");
        }
        (answer.response, Handled::default())
    }
}
