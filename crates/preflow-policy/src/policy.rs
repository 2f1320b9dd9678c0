//! A policy file: the common attributes and the typed configuration.

use crate::diag::{Diagnostic, Location, Source};
use crate::parse::{Cx, ref_attr};
use crate::xml::{self, Element, XmlLimits};
use crate::{
    cache, callout, cors, extract, format, jwt, kvm, message, protect, security, service, traffic,
};

/// A value written as `<X ref="variable">default</X>`: the variable, when it resolves,
/// takes precedence over the literal default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting<T> {
    /// The literal value, if written and valid.
    pub value: Option<T>,
    /// The name of the variable to read first, if any.
    pub reference: Option<String>,
}

impl<T> Default for Setting<T> {
    fn default() -> Self {
        Self {
            value: None,
            reference: None,
        }
    }
}

impl<T> Setting<T> {
    /// A literal value without a ref.
    pub fn literal(value: T) -> Self {
        Self {
            value: Some(value),
            reference: None,
        }
    }

    /// Whether neither a ref nor a literal is set.
    pub fn is_empty(&self) -> bool {
        self.value.is_none() && self.reference.is_none()
    }
}

/// A loaded policy: the attributes every policy has, and its typed configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// The `name` attribute, referenced by `<Step><Name>`.
    pub name: String,
    /// The root element name, such as `SpikeArrest`.
    pub type_name: String,
    /// `<DisplayName>`.
    pub display_name: Option<String>,
    /// `enabled` (default true): a disabled policy is skipped.
    pub enabled: bool,
    /// `continueOnError` (default false): a failure sets `<prefix>.<name>.failed` and the
    /// flow goes on instead of entering the error flow.
    pub continue_on_error: bool,
    /// `async` (default false): deprecated, kept for completeness, no effect.
    pub async_: bool,
    /// The typed configuration.
    pub config: PolicyConfig,
    /// Where the root element is.
    pub location: Location,
}

/// The typed configuration of a policy, by policy type.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum PolicyConfig {
    /// `<SpikeArrest>`.
    SpikeArrest(traffic::SpikeArrest),
    /// `<Quota>`.
    Quota(traffic::Quota),
    /// `<OAuthV2>`.
    OAuthV2(security::OAuthV2),
    /// `<GetOAuthV2Info>`.
    GetOAuthV2Info(security::GetOAuthV2Info),
    /// `<SetOAuthV2Info>`.
    SetOAuthV2Info(security::SetOAuthV2Info),
    /// `<VerifyAPIKey>`.
    VerifyApiKey(security::VerifyApiKey),
    /// `<BasicAuthentication>`.
    BasicAuthentication(security::BasicAuthentication),
    /// `<AccessControl>`.
    AccessControl(security::AccessControl),
    /// `<RaiseFault>`.
    RaiseFault(message::RaiseFault),
    /// `<AssignMessage>`.
    AssignMessage(message::AssignMessage),
    /// `<ExtractVariables>`.
    ExtractVariables(extract::ExtractVariables),
    /// `<KeyValueMapOperations>`.
    KeyValueMapOperations(kvm::KeyValueMapOperations),
    /// `<FlowCallout>`.
    FlowCallout(callout::FlowCallout),
    /// `<VerifyJWT>`, `<GenerateJWT>` or `<DecodeJWT>` (see [`jwt::Jwt::operation`]).
    Jwt(Box<jwt::Jwt>),
    /// `<JSONThreatProtection>`.
    JsonThreatProtection(protect::JsonThreatProtection),
    /// `<XMLThreatProtection>`.
    XmlThreatProtection(protect::XmlThreatProtection),
    /// `<RegularExpressionProtection>`.
    RegularExpressionProtection(Box<protect::RegularExpressionProtection>),
    /// `<CORS>`.
    Cors(cors::Cors),
    /// `<ResponseCache>`.
    ResponseCache(cache::ResponseCache),
    /// `<LookupCache>`.
    LookupCache(cache::LookupCache),
    /// `<PopulateCache>`.
    PopulateCache(cache::PopulateCache),
    /// `<InvalidateCache>`.
    InvalidateCache(cache::InvalidateCache),
    /// `<ServiceCallout>`.
    ServiceCallout(Box<service::ServiceCallout>),
    /// `<MessageLogging>`.
    MessageLogging(service::MessageLogging),
    /// `<StatisticsCollector>`.
    StatisticsCollector(service::StatisticsCollector),
    /// `<DataCapture>`.
    DataCapture(service::DataCapture),
    /// `<AssertCondition>`.
    AssertCondition(service::AssertCondition),
    /// `<JSONToXML>`.
    JsonToXml(format::JsonToXml),
    /// `<XMLToJSON>`.
    XmlToJson(format::XmlToJson),
    /// A policy type the engine does not model; it loads with a warning.
    Unsupported {
        /// The root element name.
        type_name: String,
    },
}

impl PolicyConfig {
    /// Whether the engine models this policy type.
    pub fn is_supported(&self) -> bool {
        !matches!(self, PolicyConfig::Unsupported { .. })
    }
}

/// Policy types that load as [`PolicyConfig::Unsupported`] without comment beyond one
/// warning: real Apigee types the engine does not execute.
const SUPPORTED: &[&str] = &[
    "SpikeArrest",
    "Quota",
    "OAuthV2",
    "GetOAuthV2Info",
    "SetOAuthV2Info",
    "VerifyAPIKey",
    "BasicAuthentication",
    "AccessControl",
    "RaiseFault",
    "AssignMessage",
    "ExtractVariables",
    "KeyValueMapOperations",
    "FlowCallout",
    "VerifyJWT",
    "GenerateJWT",
    "DecodeJWT",
    "JSONThreatProtection",
    "XMLThreatProtection",
    "RegularExpressionProtection",
    "CORS",
    "ResponseCache",
    "LookupCache",
    "PopulateCache",
    "InvalidateCache",
    "ServiceCallout",
    "MessageLogging",
    "StatisticsCollector",
    "DataCapture",
    "AssertCondition",
    "JSONToXML",
    "XMLToJSON",
];

/// Whether `type_name` (a policy root element) has a typed configuration.
pub fn is_supported_type(type_name: &str) -> bool {
    SUPPORTED.contains(&type_name)
}

/// Parses the policy file `src`. Problems go to `diags`; `None` when the file is not a
/// usable policy at all (not well-formed, or without a name).
pub fn parse_policy(
    src: &Source,
    limits: &XmlLimits,
    diags: &mut Vec<Diagnostic>,
) -> Option<Policy> {
    let root = match xml::parse(src.text(), limits) {
        Ok(root) => root,
        Err(e) => {
            diags.push(src.error(e.offset, e.message));
            return None;
        }
    };
    crate::placeholder::warn_placeholders(src, &root, diags);
    policy_from_element(src, &root, diags)
}

/// Builds a policy from the already parsed root element of `src`.
pub fn policy_from_element(
    src: &Source,
    root: &Element,
    diags: &mut Vec<Diagnostic>,
) -> Option<Policy> {
    let mut cx = Cx { src, diags };
    let Some(name) = root.attr("name").map(str::trim).filter(|n| !n.is_empty()) else {
        cx.error(
            root.offset,
            format!("policy `<{}>` has no `name` attribute", root.name),
        );
        return None;
    };
    let enabled = cx.attr_bool(root, "enabled", true);
    let continue_on_error = cx.attr_bool(root, "continueOnError", false);
    let async_ = cx.attr_bool(root, "async", false);
    let display_name = cx.child_text(root, "DisplayName");
    let config = match root.name.as_str() {
        "SpikeArrest" => PolicyConfig::SpikeArrest(traffic::spike_arrest(&mut cx, root)),
        "Quota" => PolicyConfig::Quota(traffic::quota(&mut cx, root)),
        "OAuthV2" => PolicyConfig::OAuthV2(security::oauth_v2(&mut cx, root)),
        "GetOAuthV2Info" => {
            PolicyConfig::GetOAuthV2Info(security::get_oauth_v2_info(&mut cx, root))
        }
        "SetOAuthV2Info" => {
            PolicyConfig::SetOAuthV2Info(security::set_oauth_v2_info(&mut cx, root))
        }
        "VerifyAPIKey" => PolicyConfig::VerifyApiKey(security::verify_api_key(&mut cx, root)),
        "BasicAuthentication" => {
            PolicyConfig::BasicAuthentication(security::basic_authentication(&mut cx, root))
        }
        "AccessControl" => PolicyConfig::AccessControl(security::access_control(&mut cx, root)),
        "RaiseFault" => PolicyConfig::RaiseFault(message::raise_fault(&mut cx, root)),
        "AssignMessage" => PolicyConfig::AssignMessage(message::assign_message(&mut cx, root)),
        "ExtractVariables" => {
            PolicyConfig::ExtractVariables(extract::extract_variables(&mut cx, root))
        }
        "KeyValueMapOperations" => {
            PolicyConfig::KeyValueMapOperations(kvm::key_value_map_operations(&mut cx, root))
        }
        "FlowCallout" => PolicyConfig::FlowCallout(callout::flow_callout(&mut cx, root)),
        other if crate::families::handles(other) => crate::families::parse(&mut cx, root),
        other => {
            cx.warning(
                root.offset,
                format!("policy type `{other}` is not supported; `{name}` loads but cannot run"),
            );
            PolicyConfig::Unsupported {
                type_name: other.to_owned(),
            }
        }
    };
    Some(Policy {
        name: name.to_owned(),
        type_name: root.name.clone(),
        display_name,
        enabled,
        continue_on_error,
        async_,
        config,
        location: src.location(root.offset),
    })
}

/// A variable reference written as `<X ref="var"/>` or `<X>var</X>`.
pub(crate) fn variable_of(el: &Element) -> Option<String> {
    ref_attr(el).or_else(|| el.non_empty_text().map(str::to_owned))
}
