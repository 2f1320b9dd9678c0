//! `<AccessEntity>`: reads an app, developer, API product or consumer key profile from
//! the registry into the variable `AccessEntity.{policy}`, as XML (the default) or JSON.
//!
//! The entity is found from `<EntityIdentifier ref type>` (and, for an app by name, the
//! `<SecondaryIdentifier>` developer email): an identifier that finds nothing leaves the
//! variable unset, as in Apigee. Consumer secrets are never part of a profile.

use std::sync::Arc;

use preflow_oauth::{ApiProduct, App, Credential, Developer, DeveloperStatus, Registry};
use quick_xml::escape::escape;

use crate::parse::Cx;
use crate::registry::{BuildCx, CompileError, PolicyType};
use crate::runtime::{Outcome, Runtime};
use crate::xml::Element;

/// What kind of profile to read (`<EntityType value>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EntityType {
    /// `apiproduct`.
    ApiProduct,
    /// `app`.
    App,
    /// `consumerkey`.
    ConsumerKey,
    /// `developer`.
    Developer,
    /// `company` or `companydeveloper`: no companies in the registry; never found.
    Company,
}

/// How an identifier names its entity (`type` of `<EntityIdentifier>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdentifierType {
    /// `appid`.
    AppId,
    /// `appname` (with the developer email as the secondary identifier).
    AppName,
    /// `consumerkey`.
    ConsumerKey,
    /// `developeremail` or `developerid` (the registry keys developers by email).
    Developer,
    /// `apiproductname`.
    ApiProductName,
    /// `companyname` and other company identifiers: never found.
    Company,
}

/// An identifier: its variable and type.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Identifier {
    /// The variable holding the identifier.
    pub reference: String,
    /// What it names.
    pub kind: IdentifierType,
}

/// `<AccessEntity>`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct AccessEntity {
    /// `<EntityType value>`.
    pub entity: Option<EntityType>,
    /// `<EntityIdentifier>`.
    pub identifier: Option<Identifier>,
    /// `<SecondaryIdentifier>`.
    pub secondary: Option<Identifier>,
    /// `<OutputFormat>`: JSON instead of XML.
    pub json: bool,
}

fn entity_type(s: &str) -> Option<EntityType> {
    Some(match s.trim().to_ascii_lowercase().as_str() {
        "apiproduct" => EntityType::ApiProduct,
        "app" => EntityType::App,
        "consumerkey" => EntityType::ConsumerKey,
        "developer" => EntityType::Developer,
        "company" | "companydeveloper" => EntityType::Company,
        _ => return None,
    })
}

fn identifier_type(s: &str) -> Option<IdentifierType> {
    Some(match s.trim().to_ascii_lowercase().as_str() {
        "appid" => IdentifierType::AppId,
        "appname" => IdentifierType::AppName,
        "consumerkey" => IdentifierType::ConsumerKey,
        "developeremail" | "developerid" => IdentifierType::Developer,
        "apiproductname" => IdentifierType::ApiProductName,
        "companyname" | "companyid" => IdentifierType::Company,
        _ => return None,
    })
}

fn identifier(cx: &mut Cx<'_>, el: &Element) -> Option<Identifier> {
    let reference = el
        .attr("ref")
        .map(str::trim)
        .filter(|r| !r.is_empty())
        .map(str::to_owned);
    let Some(reference) = reference else {
        cx.error(
            el.offset,
            format!("`<{}>` needs a `ref` attribute", el.name),
        );
        return None;
    };
    let kind = el.attr("type").and_then(identifier_type);
    let Some(kind) = kind else {
        cx.error(
            el.offset,
            format!(
                "`<{}>` type must be appid, appname, consumerkey, developeremail, developerid or apiproductname",
                el.name
            ),
        );
        return None;
    };
    Some(Identifier { reference, kind })
}

fn access_entity(cx: &mut Cx<'_>, el: &Element) -> AccessEntity {
    cx.known_policy(
        el,
        &[
            "EntityType",
            "EntityIdentifier",
            "SecondaryIdentifier",
            "OutputFormat",
            "IgnoreUnresolvedVariables",
        ],
    );
    let entity = match el.child("EntityType") {
        Some(e) => {
            let value = e.attr("value").or_else(|| e.non_empty_text()).unwrap_or("");
            let t = entity_type(value);
            if t.is_none() {
                cx.error(
                    e.offset,
                    format!("unknown entity type `{value}`: apiproduct, app, company, companydeveloper, consumerkey or developer"),
                );
            }
            t
        }
        None => {
            cx.error(
                el.offset,
                "AccessEntity needs `<EntityType value=\"...\"/>`",
            );
            None
        }
    };
    let primary = match el.child("EntityIdentifier") {
        Some(e) => identifier(cx, e),
        None => {
            cx.error(
                el.offset,
                "AccessEntity needs `<EntityIdentifier ref type/>`",
            );
            None
        }
    };
    let secondary = el
        .child("SecondaryIdentifier")
        .and_then(|e| identifier(cx, e));
    let json = cx
        .child_text(el, "OutputFormat")
        .is_some_and(|f| f.eq_ignore_ascii_case("json"));
    AccessEntity {
        entity,
        identifier: primary,
        secondary,
        json,
    }
}

/// The app an identifier names.
fn find_app(
    reg: &Registry,
    kind: IdentifierType,
    id: &str,
    developer: Option<&str>,
) -> Option<Arc<App>> {
    match kind {
        IdentifierType::AppId => reg.app(id),
        IdentifierType::ConsumerKey => reg.credential(id).and_then(|c| reg.app(&c.app_id)),
        IdentifierType::AppName => reg
            .apps()
            .into_iter()
            .find(|a| a.name == id && developer.is_none_or(|d| a.developer_email == d)),
        _ => None,
    }
}

/// Attributes under `preflow.` are the gateway's own (the developer portal keeps a
/// password hash there): never returned.
fn shown(attrs: &[(String, String)]) -> impl Iterator<Item = &(String, String)> {
    attrs.iter().filter(|(k, _)| !k.starts_with("preflow."))
}

fn attrs_xml(out: &mut String, attrs: &[(String, String)]) {
    out.push_str("<Attributes>");
    for (k, v) in shown(attrs) {
        out.push_str(&format!(
            "<Attribute><Name>{}</Name><Value>{}</Value></Attribute>",
            escape(k),
            escape(v)
        ));
    }
    out.push_str("</Attributes>");
}

fn attrs_json(attrs: &[(String, String)]) -> serde_json::Value {
    serde_json::Value::Array(
        shown(attrs)
            .map(|(k, v)| serde_json::json!({ "name": k, "value": v }))
            .collect(),
    )
}

fn developer_profile(d: &Developer, json: bool) -> String {
    let status = match d.status {
        DeveloperStatus::Active => "active",
        DeveloperStatus::Inactive => "inactive",
    };
    if json {
        return serde_json::json!({ "Developer": {
            "email": d.email, "developerId": d.email, "firstName": d.first_name,
            "lastName": d.last_name, "userName": d.user_name, "status": status,
            "attributes": attrs_json(&d.attributes),
        }})
        .to_string();
    }
    let mut out = format!(
        "<Developer email=\"{e}\"><Email>{e}</Email><DeveloperId>{e}</DeveloperId><FirstName>{}</FirstName><LastName>{}</LastName><UserName>{}</UserName><Status>{status}</Status>",
        escape(&d.first_name),
        escape(&d.last_name),
        escape(&d.user_name),
        e = escape(&d.email),
    );
    attrs_xml(&mut out, &d.attributes);
    out.push_str("</Developer>");
    out
}

fn credential_xml(out: &mut String, c: &Credential) {
    out.push_str(&format!(
        "<Credential><ConsumerKey>{}</ConsumerKey><Status>{}</Status><IssuedAt>{}</IssuedAt><ExpiresAt>{}</ExpiresAt><ApiProducts>",
        escape(&c.key),
        c.status.as_str(),
        c.issued_at.saturating_mul(1000),
        c.expires_at.map_or(-1, |e| i64::try_from(e.saturating_mul(1000)).unwrap_or(-1)),
    ));
    for p in &c.products {
        out.push_str(&format!(
            "<ApiProduct><Name>{}</Name><Status>{}</Status></ApiProduct>",
            escape(&p.name),
            p.status.as_str()
        ));
    }
    out.push_str("</ApiProducts></Credential>");
}

fn credential_json(c: &Credential) -> serde_json::Value {
    serde_json::json!({
        "consumerKey": c.key, "status": c.status.as_str(),
        "issuedAt": c.issued_at.saturating_mul(1000),
        "expiresAt": c.expires_at.map_or(-1, |e| i64::try_from(e.saturating_mul(1000)).unwrap_or(-1)),
        "apiProducts": c.products.iter().map(|p| serde_json::json!({ "apiproduct": p.name, "status": p.status.as_str() })).collect::<Vec<_>>(),
    })
}

fn app_profile(reg: &Registry, a: &App, json: bool) -> String {
    let creds: Vec<Arc<Credential>> = reg
        .credentials()
        .into_iter()
        .filter(|c| c.app_id == a.id)
        .collect();
    if json {
        return serde_json::json!({ "App": {
            "appId": a.id, "name": a.name, "developerId": a.developer_email,
            "status": a.status.as_str(), "callbackUrl": a.callback_url,
            "attributes": attrs_json(&a.attributes),
            "credentials": creds.iter().map(|c| credential_json(c)).collect::<Vec<_>>(),
        }})
        .to_string();
    }
    let mut out = format!(
        "<App><AppId>{}</AppId><Name>{}</Name><DeveloperId>{}</DeveloperId><Status>{}</Status><CallbackUrl>{}</CallbackUrl>",
        escape(&a.id),
        escape(&a.name),
        escape(&a.developer_email),
        a.status.as_str(),
        escape(a.callback_url.as_deref().unwrap_or("")),
    );
    attrs_xml(&mut out, &a.attributes);
    out.push_str("<Credentials>");
    for c in &creds {
        credential_xml(&mut out, c);
    }
    out.push_str("</Credentials></App>");
    out
}

fn product_profile(p: &ApiProduct, json: bool) -> String {
    if json {
        return serde_json::json!({ "ApiProduct": {
            "name": p.name, "displayName": p.display_name, "environments": p.environments,
            "proxies": p.proxies, "scopes": p.scopes, "attributes": attrs_json(&p.attributes),
        }})
        .to_string();
    }
    let list = |tag: &str, item: &str, v: &[String]| {
        let inner: String = v
            .iter()
            .map(|x| format!("<{item}>{}</{item}>", escape(x)))
            .collect();
        format!("<{tag}>{inner}</{tag}>")
    };
    let mut out = format!(
        "<ApiProduct name=\"{n}\"><Name>{n}</Name><DisplayName>{}</DisplayName>{}{}{}",
        escape(&p.display_name),
        list("Environments", "Environment", &p.environments),
        list("Proxies", "Proxy", &p.proxies),
        list("Scopes", "Scope", &p.scopes),
        n = escape(&p.name),
    );
    attrs_xml(&mut out, &p.attributes);
    out.push_str("</ApiProduct>");
    out
}

fn credential_profile(c: &Credential, json: bool) -> String {
    if json {
        return serde_json::json!({ "Credential": credential_json(c) }).to_string();
    }
    let mut out = String::new();
    credential_xml(&mut out, c);
    out
}

/// The profile `ae` asks for, with identifiers read by `var`; `None` when nothing is
/// found.
pub fn profile(
    reg: &Registry,
    ae: &AccessEntity,
    var: impl Fn(&str) -> Option<String>,
) -> Option<String> {
    let entity = ae.entity?;
    let ident = ae.identifier.as_ref()?;
    let id = var(&ident.reference)?;
    let secondary = ae.secondary.as_ref().and_then(|s| var(&s.reference));
    let kind = ident.kind;
    match entity {
        EntityType::Company => None,
        EntityType::Developer => {
            let email = match kind {
                IdentifierType::Developer => id,
                _ => find_app(reg, kind, &id, secondary.as_deref())?
                    .developer_email
                    .clone(),
            };
            reg.developer(&email)
                .map(|d| developer_profile(&d, ae.json))
        }
        EntityType::App => {
            find_app(reg, kind, &id, secondary.as_deref()).map(|a| app_profile(reg, &a, ae.json))
        }
        EntityType::ApiProduct => {
            let name = match kind {
                IdentifierType::ApiProductName => id,
                IdentifierType::ConsumerKey => {
                    reg.credential(&id)?.approved_products().next()?.to_owned()
                }
                _ => {
                    let app = find_app(reg, kind, &id, secondary.as_deref())?;
                    reg.credentials()
                        .into_iter()
                        .filter(|c| c.app_id == app.id)
                        .find_map(|c| c.approved_products().next().map(str::to_owned))?
                }
            };
            reg.product(&name).map(|p| product_profile(&p, ae.json))
        }
        EntityType::ConsumerKey => {
            let cred = match kind {
                IdentifierType::ConsumerKey => reg.credential(&id)?,
                _ => {
                    let app = find_app(reg, kind, &id, secondary.as_deref())?;
                    reg.credentials().into_iter().find(|c| c.app_id == app.id)?
                }
            };
            Some(credential_profile(&cred, ae.json))
        }
    }
}

/// The AccessEntity policy type.
#[derive(Debug)]
pub(crate) struct AccessEntityPolicy;

impl PolicyType for AccessEntityPolicy {
    type Config = AccessEntity;
    type Compiled = (String, AccessEntity);

    fn parse(cx: &mut Cx<'_>, el: &Element) -> AccessEntity {
        access_entity(cx, el)
    }

    fn compile(c: &AccessEntity, cx: &BuildCx<'_>) -> Result<Self::Compiled, CompileError> {
        if c.entity.is_none() || c.identifier.is_none() {
            return Err(CompileError::new(
                "AccessEntity needs an entity type and an identifier",
            ));
        }
        Ok((format!("AccessEntity.{}", cx.name), c.clone()))
    }

    fn run<R: Runtime>(c: &Self::Compiled, rt: &mut R) -> Outcome {
        let registry = Arc::clone(&rt.env().registry);
        if let Some(p) = profile(&registry, &c.1, |n| rt.variable(n)) {
            rt.set_variable(&c.0, p);
        }
        Outcome::Continue
    }

    fn reads_request_body(_: &AccessEntity) -> bool {
        false
    }
}

#[cfg(test)]
mod gateway_attributes {
    use super::*;

    #[test]
    fn attributes_under_preflow_are_never_returned() {
        let mut d = Developer::new("ada@example.com");
        d.attributes = vec![
            ("team".to_owned(), "blue".to_owned()),
            (
                "preflow.portal.password".to_owned(),
                "$argon2id$v=19$x".to_owned(),
            ),
        ];
        for json in [true, false] {
            let profile = developer_profile(&d, json);
            assert!(profile.contains("blue"), "{profile}");
            assert!(
                !profile.contains("argon2") && !profile.contains("preflow."),
                "{profile}"
            );
        }
    }
}
