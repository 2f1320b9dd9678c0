//! The portal's pages: askama templates (in `templates/`), compiled into the binary and
//! HTML-escaped by default.

use askama::Template;

/// What the layout shows on every page.
#[derive(Debug, Clone)]
pub struct Nav {
    /// The portal's name.
    pub site: String,
    /// The signed-in developer.
    pub developer: Option<String>,
    /// The CSRF token of this visitor's forms.
    pub csrf: String,
}

/// An API a product covers.
#[derive(Debug)]
pub struct ApiLink {
    /// The API proxy's name.
    pub name: String,
    /// Whether the portal has its OpenAPI document.
    pub documented: bool,
}

/// A published product.
#[derive(Debug)]
pub struct ProductView {
    /// The product's name.
    pub name: String,
    /// Its display name (the name when it has none).
    pub display_name: String,
    /// Its description.
    pub description: String,
    /// OAuth scopes it grants.
    pub scopes: Vec<String>,
    /// Its quota in words.
    pub quota: String,
    /// The APIs it covers.
    pub apis: Vec<ApiLink>,
}

/// One of the developer's apps.
#[derive(Debug)]
pub struct AppView {
    /// The app's id.
    pub id: String,
    /// Its name.
    pub name: String,
    /// `approved` or `revoked`.
    pub status: &'static str,
    /// Whether it can still be rotated and revoked.
    pub active: bool,
    /// Products of its credential.
    pub products: Vec<String>,
    /// Its client id.
    pub client_id: String,
    /// Requests counted.
    pub requests: u64,
    /// Of which errors.
    pub errors: u64,
    /// Quota used, in words.
    pub quota: String,
}

/// The catalogue (home page).
#[derive(Debug, Template)]
#[template(path = "catalogue.html")]
pub struct Catalogue<'a> {
    pub title: &'a str,
    pub nav: &'a Nav,
    pub products: &'a [ProductView],
}

/// An API's reference page.
#[derive(Debug, Template)]
#[template(path = "reference.html")]
pub struct Reference<'a> {
    pub title: &'a str,
    pub nav: &'a Nav,
    pub api: &'a str,
    pub file: &'a str,
}

/// The sign-up form.
#[derive(Debug, Template)]
#[template(path = "signup.html")]
pub struct SignUp<'a> {
    pub title: &'a str,
    pub nav: &'a Nav,
    pub error: Option<String>,
    pub email: &'a str,
    pub first_name: &'a str,
    pub last_name: &'a str,
    pub min_password: usize,
}

/// The sign-in form.
#[derive(Debug, Template)]
#[template(path = "signin.html")]
pub struct SignIn<'a> {
    pub title: &'a str,
    pub nav: &'a Nav,
    pub error: Option<String>,
    pub email: &'a str,
}

/// My apps.
#[derive(Debug, Template)]
#[template(path = "apps.html")]
pub struct Apps<'a> {
    pub title: &'a str,
    pub nav: &'a Nav,
    pub error: Option<String>,
    pub apps: &'a [AppView],
    pub products: &'a [ProductView],
}

/// A key and secret shown once.
#[derive(Debug, Template)]
#[template(path = "secret.html")]
pub struct Secret<'a> {
    pub title: &'a str,
    pub nav: &'a Nav,
    pub heading: &'a str,
    pub app: &'a str,
    pub client_id: &'a str,
    pub client_secret: &'a str,
}

/// A message with one link onwards.
#[derive(Debug, Template)]
#[template(path = "message.html")]
pub struct Message<'a> {
    pub title: &'a str,
    pub nav: &'a Nav,
    pub text: &'a str,
    pub link: &'a str,
    pub link_text: &'a str,
}
