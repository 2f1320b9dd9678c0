//! The portal at the HTTP level: CSRF refusals, cookie flags, security headers, one
//! developer against another's apps, sign-in throttling, approval.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use preflow_oauth::{Approval, DeveloperStatus, PasswordHashCost};

use super::super::admin::AppsWriter;
use super::super::apps::AppsFile;
use super::{Portal, Settings, Visit};

const FILE: &str = r#"
[[developer]]
email = "demo@example.com"

[[product]]
name = "hello"
display_name = "Hello"
resources = ["/**"]
proxies = ["hello-api"]
quota = { limit = 100, interval = 1, time_unit = "hour" }

[[product]]
name = "inside"
resources = ["/**"]
attributes = { access = "internal" }

[[app]]
id = "demo-app"
name = "demo-app"
developer = "demo@example.com"

[[app.credential]]
client_id = "demo-client"
client_secret = "demo-secret"
products = ["hello"]
"#;

const PASSWORD: &str = "a long enough password";

fn portal(dir: &std::path::Path, settings: Settings) -> (Portal, Arc<AppsWriter>) {
    let path = dir.join("apps.toml");
    std::fs::write(&path, FILE).unwrap();
    portal_over(&path, settings, &[])
}

/// A portal over the apps file at `path` as a starting gateway loads it, with the
/// OpenAPI documents of the bundles in `paths`.
fn portal_over(
    path: &std::path::Path,
    settings: Settings,
    paths: &[std::path::PathBuf],
) -> (Portal, Arc<AppsWriter>) {
    let cost = PasswordHashCost::insecure_for_tests();
    let file = AppsFile::load_hashed(path, cost).unwrap();
    let registry = Arc::new(file.to_registry(cost).unwrap());
    let writer = Arc::new(AppsWriter::new(registry, file, path.to_owned()));
    let portal = Portal::new(Arc::clone(&writer), settings, paths, cost).unwrap();
    (portal, writer)
}

/// A browser: keeps the portal's cookie, reads forms' CSRF tokens.
struct Browser<'a> {
    portal: &'a Portal,
    cookie: Option<String>,
    source: IpAddr,
    https: bool,
}

fn text(r: &Response<Bytes>) -> String {
    String::from_utf8_lossy(r.body()).into_owned()
}

fn csrf_of(page: &str) -> String {
    let after = page.split("name=\"csrf\" value=\"").nth(1).unwrap();
    after.split('"').next().unwrap().to_owned()
}

/// The text of the element with `id`.
fn element(page: &str, id: &str) -> String {
    let after = page.split(&format!("id=\"{id}\">")).nth(1).unwrap();
    after.split('<').next().unwrap().to_owned()
}

impl<'a> Browser<'a> {
    fn new(portal: &'a Portal) -> Self {
        Self {
            portal,
            cookie: None,
            source: IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            https: false,
        }
    }

    fn send(&mut self, method: &str, path: &str, body: &str) -> Response<Bytes> {
        let mut b = Request::builder().method(method).uri(path);
        if let Some(c) = &self.cookie {
            b = b.header("cookie", format!("other=1; preflow_portal={c}"));
        }
        if method == "POST" {
            b = b.header("content-type", "application/x-www-form-urlencoded");
        }
        let visit = Visit {
            request: b.body(Bytes::from(body.to_owned())).unwrap(),
            source: self.source,
            https: self.https,
        };
        let r = self.portal.respond(&visit).response;
        if let Some(set) = r.headers().get("set-cookie") {
            let v = set.to_str().unwrap();
            let value = v.split(';').next().unwrap().split_once('=').unwrap().1;
            self.cookie = Some(value.to_owned());
        }
        r
    }

    fn get(&mut self, path: &str) -> Response<Bytes> {
        self.send("GET", path, "")
    }

    /// Posts `fields` with the CSRF token of the form at `form_page`.
    fn submit(
        &mut self,
        form_page: &str,
        action: &str,
        fields: &[(&str, &str)],
    ) -> Response<Bytes> {
        let page = text(&self.get(form_page));
        let token = csrf_of(&page);
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("csrf", &token)
            .extend_pairs(fields)
            .finish();
        self.send("POST", action, &body)
    }

    fn sign_up(&mut self, email: &str) -> Response<Bytes> {
        self.submit(
            "/signup",
            "/signup",
            &[
                ("email", email),
                ("first_name", "F"),
                ("password", PASSWORD),
            ],
        )
    }

    fn sign_in(&mut self, email: &str, password: &str) -> Response<Bytes> {
        self.submit(
            "/signin",
            "/signin",
            &[("email", email), ("password", password)],
        )
    }

    /// Creates an app; its id, client id and secret.
    fn create_app(&mut self, name: &str, writer: &AppsWriter) -> (String, String, String) {
        let r = self.submit("/apps", "/apps", &[("name", name), ("product", "hello")]);
        assert_eq!(r.status(), StatusCode::OK, "{}", text(&r));
        assert_eq!(r.headers()["cache-control"], "no-store");
        let page = text(&r);
        let client_id = element(&page, "client-id");
        let secret = element(&page, "client-secret");
        let app_id = writer
            .registry()
            .credential(&client_id)
            .unwrap()
            .app_id
            .clone();
        (app_id, client_id, secret)
    }
}

#[test]
fn every_form_needs_its_csrf_token() {
    let dir = tempfile::tempdir().unwrap();
    let (portal, writer) = portal(dir.path(), Settings::default());
    let mut ada = Browser::new(&portal);
    let signup = "email=ada%40example.com&password=a+long+enough+password";

    // No cookie at all, a cookie without the token, another cookie's token.
    assert_eq!(ada.send("POST", "/signup", signup).status(), 403);
    ada.get("/signup");
    assert_eq!(ada.send("POST", "/signup", signup).status(), 403);
    let mut eve = Browser::new(&portal);
    let eves_token = csrf_of(&text(&eve.get("/signup")));
    let forged = format!("csrf={eves_token}&{signup}");
    let r = ada.send("POST", "/signup", &forged);
    assert_eq!(r.status(), 403);
    assert!(text(&r).contains("Form expired"));
    assert!(writer.registry().developer("ada@example.com").is_none());

    assert_eq!(ada.sign_up("ada@example.com").status(), 303);
    let (app_id, client_id, _) = ada.create_app("mine", &writer);
    // Signed in, a change without the token changes nothing.
    for action in ["rotate", "revoke"] {
        let r = ada.send("POST", &format!("/apps/{app_id}/{action}"), "csrf=");
        assert_eq!(r.status(), 403, "{action}");
    }
    let r = ada.send("POST", "/apps", "name=other&product=hello");
    assert_eq!(r.status(), 403);
    assert_eq!(
        writer.registry().app(&app_id).unwrap().status,
        Approval::Approved
    );
    assert_eq!(writer.registry().credentials().len(), 2, "{client_id}");
    // The token issued before sign-in (another cookie) is dead after it.
    assert_eq!(ada.send("POST", "/signout", &forged).status(), 403);
}

#[test]
fn the_cookie_is_httponly_samesite_and_secure_over_https() {
    let dir = tempfile::tempdir().unwrap();
    let (portal, _) = portal(dir.path(), Settings::default());
    let mut plain = Browser::new(&portal);
    let r = plain.get("/");
    let cookie = r.headers()["set-cookie"].to_str().unwrap().to_owned();
    assert!(cookie.starts_with("preflow_portal="), "{cookie}");
    assert!(cookie.contains("; HttpOnly"), "{cookie}");
    assert!(cookie.contains("; SameSite=Lax"), "{cookie}");
    assert!(cookie.contains("; Path=/"), "{cookie}");
    assert!(!cookie.contains("Secure"), "{cookie}");
    // Sign-in binds the session to a fresh cookie, with the same flags.
    let before = plain.cookie.clone();
    let r = plain.sign_up("ada@example.com");
    let signed_in = r.headers()["set-cookie"].to_str().unwrap();
    assert!(
        signed_in.contains("; HttpOnly; SameSite=Lax"),
        "{signed_in}"
    );
    assert_ne!(plain.cookie, before, "a new session id at sign-in");

    let mut tls = Browser::new(&portal);
    tls.https = true;
    let cookie = tls.get("/").headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.ends_with("; Secure"), "{cookie}");
    let dir = tempfile::tempdir().unwrap();
    let behind_proxy = Settings {
        secure_cookies: true,
        ..Settings::default()
    };
    let (portal, _) = self::portal(dir.path(), behind_proxy);
    let cookie = Browser::new(&portal).get("/").headers()["set-cookie"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(cookie.ends_with("; Secure"), "{cookie}");
}

#[test]
fn every_answer_carries_the_security_headers() {
    let dir = tempfile::tempdir().unwrap();
    let (portal, writer) = portal(dir.path(), Settings::default());
    let mut b = Browser::new(&portal);
    let mut answers = vec![
        b.get("/"),
        b.get("/signin"),
        b.get("/static/portal.css"),
        b.get("/static/redoc.standalone.js"),
        b.get("/nowhere"),
        b.get("/apis/none"),
        b.send("DELETE", "/signup", ""),
        b.send("POST", "/signin", "csrf=x"),
    ];
    assert_eq!(
        b.get("/apps").status(),
        303,
        "signed out: to the sign-in page"
    );
    b.sign_up("ada@example.com");
    answers.push(b.get("/apps"));
    let (app_id, _, _) = b.create_app("mine", &writer);
    answers.push(b.submit("/apps", &format!("/apps/{app_id}/rotate"), &[]));
    for r in &answers {
        let h = r.headers();
        assert_eq!(h["x-frame-options"], "DENY", "{:?}", r.status());
        assert_eq!(h["x-content-type-options"], "nosniff");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(csp.contains("default-src 'none'"), "{csp}");
        assert!(!csp.contains("unsafe-inline") || csp.contains("style-src 'self' 'unsafe-inline'"));
    }
    // Pages are never stored; the rotated secret's page above neither.
    assert_eq!(answers[0].headers()["cache-control"], "no-store");
    assert_eq!(answers[9].headers()["cache-control"], "no-store");
    assert!(text(&answers[9]).contains("id=\"client-secret\""));
    assert!(
        answers[2].headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age")
    );
    assert_eq!(answers[4].status(), 404);
    assert_eq!(answers[6].status(), 405);
    assert!(answers[6].headers().contains_key("allow"));
    // Every input of every form has a label.
    for page in [
        text(&answers[1]),
        text(&answers[8]),
        text(&b.get("/signup")),
    ] {
        for input in page.split("<input").skip(1) {
            if input.contains("type=\"hidden\"") {
                continue;
            }
            let id = input
                .split("id=\"")
                .nth(1)
                .unwrap()
                .split('"')
                .next()
                .unwrap();
            assert!(
                page.contains(&format!("<label for=\"{id}\">")),
                "no label for {id}"
            );
        }
    }
}

#[test]
fn a_developer_never_sees_or_changes_another_developers_apps() {
    let dir = tempfile::tempdir().unwrap();
    let (portal, writer) = portal(dir.path(), Settings::default());
    let mut ada = Browser::new(&portal);
    ada.sign_up("ada@example.com");
    let (app_id, client_id, secret) = ada.create_app("weather", &writer);
    let mine = text(&ada.get("/apps"));
    assert!(mine.contains("weather") && mine.contains(&client_id));
    assert!(!mine.contains(&secret), "the list never shows a secret");
    assert!(!mine.contains("demo-client"), "nor another developer's app");

    let mut eve = Browser::new(&portal);
    eve.sign_up("eve@example.com");
    let page = text(&eve.get("/apps"));
    assert!(
        !page.contains("weather") && !page.contains(&client_id),
        "{page}"
    );
    for action in ["rotate", "revoke"] {
        let r = eve.submit("/apps", &format!("/apps/{app_id}/{action}"), &[]);
        assert_eq!(r.status(), 404, "{action}: {}", text(&r));
        assert!(!text(&r).contains(&client_id));
    }
    // The seed developer's app neither (its id is known).
    assert_eq!(
        eve.submit("/apps", "/apps/demo-app/revoke", &[]).status(),
        404
    );
    assert_eq!(
        writer.registry().app(&app_id).unwrap().status,
        Approval::Approved
    );
    assert_eq!(
        writer.registry().app("demo-app").unwrap().status,
        Approval::Approved
    );
    assert!(
        writer
            .registry()
            .credential(&client_id)
            .unwrap()
            .secret
            .verify(secret.as_bytes())
    );

    // Ada's own changes work: rotate (old secret refused), revoke.
    let r = ada.submit("/apps", &format!("/apps/{app_id}/rotate"), &[]);
    let new_secret = element(&text(&r), "client-secret");
    let stored = writer
        .registry()
        .credential(&client_id)
        .unwrap()
        .secret
        .clone();
    assert!(stored.verify(new_secret.as_bytes()) && !stored.verify(secret.as_bytes()));
    assert_eq!(
        ada.submit("/apps", &format!("/apps/{app_id}/revoke"), &[])
            .status(),
        303
    );
    assert_eq!(
        writer.registry().app(&app_id).unwrap().status,
        Approval::Revoked
    );
    // Persisted, hashes only.
    let saved = std::fs::read_to_string(dir.path().join("apps.toml")).unwrap();
    assert!(saved.contains("weather") && !saved.contains(&new_secret));
    assert!(!saved.contains(PASSWORD) && saved.contains("$argon2id$"));
}

#[test]
fn products_not_published_cannot_be_subscribed() {
    let dir = tempfile::tempdir().unwrap();
    let (portal, writer) = portal(dir.path(), Settings::default());
    let mut ada = Browser::new(&portal);
    let catalogue = text(&ada.get("/"));
    assert!(catalogue.contains("Hello") && catalogue.contains("100 requests per 1 hour"));
    assert!(!catalogue.contains("inside"), "{catalogue}");
    ada.sign_up("ada@example.com");
    let r = ada.submit("/apps", "/apps", &[("name", "x"), ("product", "inside")]);
    assert_eq!(r.status(), 400);
    assert!(text(&r).contains("no product `inside`"));
    let r = ada.submit("/apps", "/apps", &[("name", "x")]);
    assert_eq!(r.status(), 400);
    ada.create_app("x", &writer);
    let r = ada.submit("/apps", "/apps", &[("name", "X"), ("product", "hello")]);
    assert_eq!(r.status(), 400);
    assert!(text(&r).contains("already has an app named"));
}

#[test]
fn sign_in_failures_are_throttled_per_source_and_account() {
    let dir = tempfile::tempdir().unwrap();
    let (portal, _) = portal(dir.path(), Settings::default());
    Browser::new(&portal).sign_up("ada@example.com");
    let mut mallory = Browser::new(&portal);
    for _ in 0..super::throttle::PER_ACCOUNT_AND_SOURCE {
        assert_eq!(
            mallory
                .sign_in("ada@example.com", "guess guess guess")
                .status(),
            401
        );
    }
    // Now even the right password waits, from this source.
    let r = mallory.sign_in("ada@example.com", PASSWORD);
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    assert!(text(&r).contains("Too many failed sign-ins"));
    // Ada, elsewhere, is not locked out.
    let mut ada = Browser::new(&portal);
    ada.source = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7));
    assert_eq!(ada.sign_in("ada@example.com", PASSWORD).status(), 303);
    assert_eq!(ada.get("/apps").status(), 200);
    // An unknown email is refused the same way as a wrong password.
    let r = ada.sign_in("nobody@example.com", PASSWORD);
    assert_eq!(r.status(), 401);
    assert!(text(&r).contains("The email or the password is wrong."));
}

#[test]
fn developers_survive_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (first, _) = portal(dir.path(), Settings::default());
    assert_eq!(
        Browser::new(&first).sign_up("ada@example.com").status(),
        303
    );
    drop(first);
    // A new process: the apps file as written is all it has.
    let (again, _) = portal_over(&dir.path().join("apps.toml"), Settings::default(), &[]);
    let mut ada = Browser::new(&again);
    assert_eq!(
        ada.sign_in("ada@example.com", "wrong wrong wrong").status(),
        401
    );
    assert_eq!(ada.sign_in("ada@example.com", PASSWORD).status(), 303);
    assert_eq!(ada.get("/apps").status(), 200);
}

#[test]
fn with_approval_new_developers_wait() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        approval: true,
        ..Settings::default()
    };
    let (portal, writer) = portal(dir.path(), settings);
    let mut ada = Browser::new(&portal);
    let r = ada.sign_up("Ada@Example.com");
    assert_eq!(r.status(), 200);
    assert!(text(&r).contains("approves new developers"));
    let dev = writer.registry().developer("ada@example.com").unwrap();
    assert_eq!(dev.status, DeveloperStatus::Inactive);
    let r = ada.sign_in("ada@example.com", PASSWORD);
    assert_eq!(r.status(), 403);
    assert_eq!(ada.get("/apps").status(), 303);
    // A second sign-up with the same email is refused.
    let r = Browser::new(&portal).sign_up("ada@example.com");
    assert_eq!(r.status(), 400);
    assert!(text(&r).contains("registered already"));
    let short = Browser::new(&portal).submit(
        "/signup",
        "/signup",
        &[("email", "bob@example.com"), ("password", "short")],
    );
    assert_eq!(short.status(), 400);
}

#[test]
fn the_reference_page_serves_the_bundles_openapi_document() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("apps.toml");
    std::fs::write(&path, FILE).unwrap();
    let seed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/seed");
    let (portal, _) = portal_over(&path, Settings::default(), &[seed]);
    assert_eq!(portal.documented_apis().collect::<Vec<_>>(), ["hello-api"]);
    let mut b = Browser::new(&portal);
    let catalogue = text(&b.get("/"));
    assert!(
        catalogue.contains("<a href=\"/apis/hello-api\">hello-api</a>"),
        "{catalogue}"
    );
    let r = b.get("/apis/hello-api");
    assert_eq!(r.status(), 200);
    let page = text(&r);
    assert!(page.contains("<redoc spec-url=\"/apis/hello-api/openapi\""));
    assert!(page.contains("<script src=\"/static/redoc.standalone.js\">"));
    assert!(
        r.headers()["content-security-policy"]
            .to_str()
            .unwrap()
            .contains("script-src 'self'")
    );
    let doc = b.get("/apis/hello-api/openapi");
    assert_eq!(doc.headers()["content-type"], "application/yaml");
    assert!(text(&doc).starts_with("openapi: 3"));
}
