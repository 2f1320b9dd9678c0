//! Security policies: OAuthV2, GetOAuthV2Info, SetOAuthV2Info, VerifyAPIKey,
//! BasicAuthentication and AccessControl.

use crate::Setting;
use crate::parse::{Cx, ref_attr};
use crate::policy::variable_of;
use crate::template::Template;
use crate::xml::Element;

/// The `<Operation>` of an OAuthV2 policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OAuthOperation {
    /// Issue an access token (token endpoint).
    GenerateAccessToken,
    /// Issue an access token for the implicit grant.
    GenerateAccessTokenImplicitGrant,
    /// Issue an authorization code.
    GenerateAuthorizationCode,
    /// Exchange a refresh token for a new access token.
    RefreshAccessToken,
    /// Check a bearer token on an API call.
    VerifyAccessToken,
    /// Revoke tokens.
    InvalidateToken,
    /// Re-approve revoked tokens.
    ValidateToken,
    /// Issue a JWT access token (Apigee X).
    GenerateJwtAccessToken,
    /// Verify a JWT access token (Apigee X).
    VerifyJwtAccessToken,
    /// Refresh a JWT access token (Apigee X).
    RefreshJwtAccessToken,
}

impl OAuthOperation {
    /// Parses an operation name as Apigee spells it.
    pub fn parse(text: &str) -> Option<Self> {
        Some(match text.trim() {
            "GenerateAccessToken" => Self::GenerateAccessToken,
            "GenerateAccessTokenImplicitGrant" => Self::GenerateAccessTokenImplicitGrant,
            "GenerateAuthorizationCode" => Self::GenerateAuthorizationCode,
            "RefreshAccessToken" => Self::RefreshAccessToken,
            "VerifyAccessToken" => Self::VerifyAccessToken,
            "InvalidateToken" => Self::InvalidateToken,
            "ValidateToken" => Self::ValidateToken,
            "GenerateJWTAccessToken" => Self::GenerateJwtAccessToken,
            "VerifyJWTAccessToken" => Self::VerifyJwtAccessToken,
            "RefreshJWTAccessToken" => Self::RefreshJwtAccessToken,
            _ => return None,
        })
    }
}

/// A custom token attribute: `<Attribute name ref display>value</Attribute>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenAttribute {
    /// Attribute name.
    pub name: String,
    /// Variable holding the value.
    pub reference: Option<String>,
    /// Literal value, used when the ref does not resolve.
    pub value: Option<String>,
    /// `display` (default true): false hides it from the token response.
    pub display: bool,
}

/// Which token a `<Tokens><Token>` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenType {
    /// `accesstoken`.
    AccessToken,
    /// `refreshtoken`.
    RefreshToken,
}

/// `<Token type cascade>variable</Token>` of InvalidateToken and ValidateToken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRef {
    /// The token type.
    pub token_type: TokenType,
    /// `cascade`: also act on the paired token.
    pub cascade: bool,
    /// The variable holding the token.
    pub variable: Option<String>,
}

/// `<OAuthV2>`: the OAuth 2.0 authorization server and token verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthV2 {
    /// `<Operation>`; `None` when missing or invalid (both errors).
    pub operation: Option<OAuthOperation>,
    /// `<GrantType>`: the variable holding the grant type.
    pub grant_type: Option<String>,
    /// `<SupportedGrantTypes><GrantType>`; empty means authorization_code and implicit.
    pub supported_grant_types: Vec<String>,
    /// `<ExpiresIn ref>` in milliseconds, `-1` never expires.
    pub expires_in: Setting<i64>,
    /// `<RefreshTokenExpiresIn ref>` in milliseconds.
    pub refresh_token_expires_in: Setting<i64>,
    /// `<GenerateResponse enabled>`: `None` when absent (only variables are set); an
    /// element without `enabled` counts as enabled.
    pub generate_response: Option<bool>,
    /// `<GenerateErrorResponse enabled>`.
    pub generate_error_response: Option<bool>,
    /// `<Scope>`: a variable holding requested scopes (generate), or the literal required
    /// scopes (verify).
    pub scope: Option<String>,
    /// `<Tokens><Token>`.
    pub tokens: Vec<TokenRef>,
    /// `<ExternalAuthorization>`, default false.
    pub external_authorization: bool,
    /// `<ExternalAccessToken>`.
    pub external_access_token: Option<String>,
    /// `<ExternalRefreshToken>`.
    pub external_refresh_token: Option<String>,
    /// `<ExternalAuthorizationCode>`.
    pub external_authorization_code: Option<String>,
    /// `<StoreToken>`, default false.
    pub store_token: bool,
    /// `<ReuseRefreshToken>`, default false.
    pub reuse_refresh_token: bool,
    /// `<Attributes><Attribute>`.
    pub attributes: Vec<TokenAttribute>,
    /// `<AccessToken>`: variable holding the token to verify (default the Authorization
    /// header).
    pub access_token: Option<String>,
    /// `<AccessTokenPrefix>`, default `Bearer`.
    pub access_token_prefix: Option<String>,
    /// `<ClientId>`, `<Code>`, `<RedirectUri>`, `<State>`, `<ResponseType>`,
    /// `<AppEndUser>`, `<UserName>`, `<PassWord>`, `<RefreshToken>`: variables where the
    /// request values are found, as `(element, variable)`.
    pub request_variables: Vec<(String, String)>,
    /// `<RFCCompliantRequestResponse>` (Apigee X), default false.
    pub rfc_compliant: bool,
}

const OAUTH_VARIABLE_ELEMENTS: &[&str] = &[
    "ClientId",
    "Code",
    "RedirectUri",
    "State",
    "ResponseType",
    "AppEndUser",
    "UserName",
    "PassWord",
    "RefreshToken",
];

pub(crate) fn oauth_v2(cx: &mut Cx<'_>, el: &Element) -> OAuthV2 {
    let mut known = vec![
        "Operation",
        "GrantType",
        "SupportedGrantTypes",
        "ExpiresIn",
        "RefreshTokenExpiresIn",
        "GenerateResponse",
        "GenerateErrorResponse",
        "Scope",
        "Tokens",
        "ExternalAuthorization",
        "ExternalAccessToken",
        "ExternalRefreshToken",
        "ExternalAuthorizationCode",
        "StoreToken",
        "ReuseRefreshToken",
        "Attributes",
        "AccessToken",
        "AccessTokenPrefix",
        "RFCCompliantRequestResponse",
        // JWT access tokens (Apigee X): recognised, not modelled.
        "Algorithm",
        "PublicKey",
        "SecretKey",
        "PrivateKey",
        "CacheExpiryInSeconds",
    ];
    known.extend_from_slice(OAUTH_VARIABLE_ELEMENTS);
    cx.known_policy(el, &known);
    let operation = match el.child("Operation") {
        None => {
            cx.warning_hint(
                el.offset,
                "OAuthV2 has no `<Operation>`; running it raises fault `OperationRequired`",
                "add for example `<Operation>GenerateAccessToken</Operation>`",
            );
            None
        }
        Some(op) => {
            let parsed = OAuthOperation::parse(op.text());
            if parsed.is_none() {
                cx.error_hint(
                    op.text_offset(),
                    format!("invalid OAuthV2 operation `{}`", op.text()),
                    "use GenerateAccessToken, GenerateAuthorizationCode, RefreshAccessToken, \
                     VerifyAccessToken, InvalidateToken or ValidateToken",
                );
            }
            parsed
        }
    };
    let ms = |t: &str| t.trim().parse::<i64>().ok();
    let expires_in = cx.setting(el.child("ExpiresIn"), "milliseconds", ms);
    let refresh_token_expires_in =
        cx.setting(el.child("RefreshTokenExpiresIn"), "milliseconds", ms);
    let generate_response = el
        .child("GenerateResponse")
        .map(|g| cx.attr_bool(g, "enabled", true));
    let generate_error_response = el
        .child("GenerateErrorResponse")
        .map(|g| cx.attr_bool(g, "enabled", true));
    let mut tokens = Vec::new();
    if let Some(t) = el.child("Tokens") {
        for token in t.children_named("Token") {
            let token_type = match token.attr("type").map(str::trim) {
                Some("refreshtoken") => TokenType::RefreshToken,
                Some("accesstoken") | None => TokenType::AccessToken,
                Some(other) => {
                    cx.error(token.offset, format!("invalid token type `{other}`"));
                    TokenType::AccessToken
                }
            };
            tokens.push(TokenRef {
                token_type,
                cascade: cx.attr_bool(token, "cascade", false),
                variable: variable_of(token),
            });
        }
    }
    let mut attributes = Vec::new();
    if let Some(a) = el.child("Attributes") {
        for attr in a.children_named("Attribute") {
            attributes.push(TokenAttribute {
                name: attr.attr("name").unwrap_or_default().to_owned(),
                reference: ref_attr(attr),
                value: attr.non_empty_text().map(str::to_owned),
                display: cx.attr_bool(attr, "display", true),
            });
        }
    }
    let request_variables = OAUTH_VARIABLE_ELEMENTS
        .iter()
        .filter_map(|name| {
            el.child(name)
                .and_then(variable_of)
                .map(|v| ((*name).to_owned(), v))
        })
        .collect();
    OAuthV2 {
        operation,
        grant_type: el.child("GrantType").and_then(variable_of),
        supported_grant_types: el
            .child("SupportedGrantTypes")
            .map(|s| {
                s.children_named("GrantType")
                    .filter_map(|g| g.non_empty_text().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default(),
        expires_in,
        refresh_token_expires_in,
        generate_response,
        generate_error_response,
        scope: el.child("Scope").and_then(variable_of),
        tokens,
        external_authorization: cx.child_bool(el, "ExternalAuthorization", false),
        external_access_token: el.child("ExternalAccessToken").and_then(variable_of),
        external_refresh_token: el.child("ExternalRefreshToken").and_then(variable_of),
        external_authorization_code: el.child("ExternalAuthorizationCode").and_then(variable_of),
        store_token: cx.child_bool(el, "StoreToken", false),
        reuse_refresh_token: cx.child_bool(el, "ReuseRefreshToken", false),
        attributes,
        access_token: el.child("AccessToken").and_then(variable_of),
        access_token_prefix: cx.child_text(el, "AccessTokenPrefix"),
        request_variables,
        rfc_compliant: cx.child_bool(el, "RFCCompliantRequestResponse", false),
    }
}

/// `<GetOAuthV2Info>`: reads the attributes of a token, code or client into variables.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct GetOAuthV2Info {
    /// `<AccessToken ref>`.
    pub access_token: Option<String>,
    /// `<ClientId ref>`.
    pub client_id: Option<String>,
    /// `<AuthorizationCode ref>`.
    pub authorization_code: Option<String>,
    /// `<RefreshToken ref>`.
    pub refresh_token: Option<String>,
}

pub(crate) fn get_oauth_v2_info(cx: &mut Cx<'_>, el: &Element) -> GetOAuthV2Info {
    cx.known_policy(
        el,
        &[
            "AccessToken",
            "ClientId",
            "AuthorizationCode",
            "RefreshToken",
            "IgnoreAccessTokenStatus",
        ],
    );
    let info = GetOAuthV2Info {
        access_token: el.child("AccessToken").and_then(variable_of),
        client_id: el.child("ClientId").and_then(variable_of),
        authorization_code: el.child("AuthorizationCode").and_then(variable_of),
        refresh_token: el.child("RefreshToken").and_then(variable_of),
    };
    if info == GetOAuthV2Info::default() {
        cx.error(
            el.offset,
            "GetOAuthV2Info needs one of `<AccessToken>`, `<ClientId>`, `<AuthorizationCode>`, `<RefreshToken>`",
        );
    }
    info
}

/// `<SetOAuthV2Info>`: adds or changes custom attributes of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SetOAuthV2Info {
    /// `<AccessToken ref>`.
    pub access_token: Option<String>,
    /// `<Attributes><Attribute>`.
    pub attributes: Vec<TokenAttribute>,
}

pub(crate) fn set_oauth_v2_info(cx: &mut Cx<'_>, el: &Element) -> SetOAuthV2Info {
    cx.known_policy(el, &["AccessToken", "Attributes"]);
    let mut attributes = Vec::new();
    if let Some(a) = el.child("Attributes") {
        for attr in a.children_named("Attribute") {
            attributes.push(TokenAttribute {
                name: attr.attr("name").unwrap_or_default().to_owned(),
                reference: ref_attr(attr),
                value: attr.non_empty_text().map(str::to_owned),
                display: cx.attr_bool(attr, "display", true),
            });
        }
    }
    SetOAuthV2Info {
        access_token: el.child("AccessToken").and_then(variable_of),
        attributes,
    }
}

/// `<VerifyAPIKey>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyApiKey {
    /// `<APIKey ref>`: where the key is found (a ref, or a literal key).
    pub api_key: Setting<String>,
}

pub(crate) fn verify_api_key(cx: &mut Cx<'_>, el: &Element) -> VerifyApiKey {
    cx.known_policy(el, &["APIKey"]);
    let api_key = cx.string_setting(el.child("APIKey"));
    if api_key.is_empty() {
        cx.error_hint(
            el.child("APIKey").map_or(el.offset, |k| k.offset),
            "VerifyAPIKey needs an `<APIKey>` with a `ref` or a value",
            "add `<APIKey ref=\"request.queryparam.apikey\"/>`",
        );
    }
    VerifyApiKey { api_key }
}

/// BasicAuthentication `<Operation>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BasicAuthOperation {
    /// Writes `Basic base64(user:password)` to `AssignTo`.
    Encode,
    /// Parses `Source` into the `User` and `Password` variables.
    Decode,
}

/// `<AssignTo createNew>variable</AssignTo>` of BasicAuthentication.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssignToVariable {
    /// The variable written.
    pub variable: String,
    /// `createNew`, default false.
    pub create_new: bool,
}

/// `<BasicAuthentication>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BasicAuthentication {
    /// `<Operation>`; `None` when missing or invalid (an error).
    pub operation: Option<BasicAuthOperation>,
    /// `<IgnoreUnresolvedVariables>`, default false.
    pub ignore_unresolved_variables: bool,
    /// `<User ref>`: source (Encode) or target (Decode) variable.
    pub user: Option<String>,
    /// `<Password ref>`.
    pub password: Option<String>,
    /// `<Source>` (Decode).
    pub source: Option<String>,
    /// `<AssignTo>` (Encode).
    pub assign_to: Option<AssignToVariable>,
}

pub(crate) fn basic_authentication(cx: &mut Cx<'_>, el: &Element) -> BasicAuthentication {
    cx.known_policy(
        el,
        &[
            "Operation",
            "IgnoreUnresolvedVariables",
            "User",
            "Password",
            "Source",
            "AssignTo",
        ],
    );
    let operation = match el.child("Operation") {
        Some(op) => match op.text().to_ascii_lowercase().as_str() {
            "encode" => Some(BasicAuthOperation::Encode),
            "decode" => Some(BasicAuthOperation::Decode),
            other => {
                cx.error_hint(
                    op.text_offset(),
                    format!("invalid BasicAuthentication operation `{other}`"),
                    "use `Encode` or `Decode`",
                );
                None
            }
        },
        None => {
            cx.error(el.offset, "BasicAuthentication needs an `<Operation>`");
            None
        }
    };
    let config = BasicAuthentication {
        operation,
        ignore_unresolved_variables: cx.child_bool(el, "IgnoreUnresolvedVariables", false),
        user: el.child("User").and_then(variable_of),
        password: el.child("Password").and_then(variable_of),
        source: cx.child_text(el, "Source"),
        assign_to: el.child("AssignTo").and_then(|a| {
            Some(AssignToVariable {
                variable: a.non_empty_text()?.to_owned(),
                create_new: cx.attr_bool(a, "createNew", false),
            })
        }),
    };
    if config.user.is_none() {
        cx.error(el.offset, "BasicAuthentication needs a `<User ref>`");
    }
    if config.password.is_none() {
        cx.error(el.offset, "BasicAuthentication needs a `<Password ref>`");
    }
    match operation {
        Some(BasicAuthOperation::Decode) if config.source.is_none() => {
            cx.error(el.offset, "BasicAuthentication Decode needs a `<Source>`");
        }
        Some(BasicAuthOperation::Encode) if config.assign_to.is_none() => {
            cx.error(
                el.offset,
                "BasicAuthentication Encode needs an `<AssignTo>`",
            );
        }
        _ => {}
    }
    config
}

/// ALLOW or DENY.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Let the request through.
    Allow,
    /// Reject it.
    Deny,
}

/// `<SourceAddress mask>address</SourceAddress>`; both may be templates such as `{var}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceAddress {
    /// The address.
    pub address: Template,
    /// The CIDR prefix length (`mask`), default 32.
    pub mask: Template,
}

/// `<MatchRule action>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MatchRule {
    /// What a match does.
    pub action: Action,
    /// The addresses; a client matches when it is in any of them.
    pub addresses: Vec<SourceAddress>,
}

/// Which address of `X-Forwarded-For` is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ValidateBasedOn {
    /// `X_FORWARDED_FOR_FIRST_IP` (default).
    #[default]
    FirstIp,
    /// `X_FORWARDED_FOR_LAST_IP`.
    LastIp,
    /// `X_FORWARDED_FOR_ALL_IP`: every address must pass.
    AllIp,
}

/// `<AccessControl>`: IP allow and deny rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessControl {
    /// `<IPRules noRuleMatchAction>`, default ALLOW.
    pub no_rule_match_action: Action,
    /// The rules in document order; the first match decides.
    pub rules: Vec<MatchRule>,
    /// `<IgnoreTrueClientIPHeader>`, default false.
    pub ignore_true_client_ip_header: bool,
    /// `<ValidateBasedOn>`.
    pub validate_based_on: ValidateBasedOn,
}

fn action(cx: &mut Cx<'_>, el: &Element, attr: &str, default: Action) -> Action {
    match el.attribute(attr) {
        None => default,
        Some(a) => match a.value.trim().to_ascii_uppercase().as_str() {
            "ALLOW" => Action::Allow,
            "DENY" => Action::Deny,
            other => {
                cx.error_hint(
                    a.offset,
                    format!("invalid action `{other}`"),
                    "use `ALLOW` or `DENY`",
                );
                default
            }
        },
    }
}

pub(crate) fn access_control(cx: &mut Cx<'_>, el: &Element) -> AccessControl {
    cx.known_policy(
        el,
        &["IPRules", "IgnoreTrueClientIPHeader", "ValidateBasedOn"],
    );
    let mut rules = Vec::new();
    let mut no_rule_match_action = Action::Allow;
    if let Some(ip) = el.child("IPRules") {
        cx.known(ip, &["MatchRule"]);
        no_rule_match_action = action(cx, ip, "noRuleMatchAction", Action::Allow);
        for rule in ip.children_named("MatchRule") {
            cx.known(rule, &["SourceAddress"]);
            let action = action(cx, rule, "action", Action::Allow);
            let addresses = rule
                .children_named("SourceAddress")
                .map(|a| SourceAddress {
                    address: Template::parse(a.text()),
                    mask: Template::parse(a.attr("mask").unwrap_or("32").trim()),
                })
                .collect();
            rules.push(MatchRule { action, addresses });
        }
    }
    let validate_based_on = match el.child("ValidateBasedOn") {
        None => ValidateBasedOn::FirstIp,
        Some(v) => match v.text() {
            "X_FORWARDED_FOR_FIRST_IP" => ValidateBasedOn::FirstIp,
            "X_FORWARDED_FOR_LAST_IP" => ValidateBasedOn::LastIp,
            "X_FORWARDED_FOR_ALL_IP" => ValidateBasedOn::AllIp,
            other => {
                cx.error(
                    v.text_offset(),
                    format!("invalid `<ValidateBasedOn>` value `{other}`"),
                );
                ValidateBasedOn::FirstIp
            }
        },
    };
    AccessControl {
        no_rule_match_action,
        rules,
        ignore_true_client_ip_header: cx.child_bool(el, "IgnoreTrueClientIPHeader", false),
        validate_based_on,
    }
}
