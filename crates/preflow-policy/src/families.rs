//! Dispatch of the policy families with their own modules: JWT, threat protection, CORS,
//! caching, callouts and logging, and format conversion.

use crate::parse::Cx;
use crate::policy::PolicyConfig;
use crate::xml::Element;
use crate::{cache, cors, format, jwt, protect, service};

/// Whether `type_name` is one of the families dispatched here.
pub(crate) fn handles(type_name: &str) -> bool {
    matches!(
        type_name,
        "VerifyJWT"
            | "GenerateJWT"
            | "DecodeJWT"
            | "JSONThreatProtection"
            | "XMLThreatProtection"
            | "RegularExpressionProtection"
            | "CORS"
            | "ResponseCache"
            | "LookupCache"
            | "PopulateCache"
            | "InvalidateCache"
            | "ServiceCallout"
            | "MessageLogging"
            | "StatisticsCollector"
            | "DataCapture"
            | "AssertCondition"
            | "JSONToXML"
            | "XMLToJSON"
    )
}

/// Parses a policy of a family [`handles`] accepts.
pub(crate) fn parse(cx: &mut Cx<'_>, el: &Element) -> PolicyConfig {
    match el.name.as_str() {
        "VerifyJWT" => PolicyConfig::Jwt(Box::new(jwt::jwt(cx, el, jwt::JwtOperation::Verify))),
        "GenerateJWT" => PolicyConfig::Jwt(Box::new(jwt::jwt(cx, el, jwt::JwtOperation::Generate))),
        "DecodeJWT" => PolicyConfig::Jwt(Box::new(jwt::jwt(cx, el, jwt::JwtOperation::Decode))),
        "JSONThreatProtection" => {
            PolicyConfig::JsonThreatProtection(protect::json_threat_protection(cx, el))
        }
        "XMLThreatProtection" => {
            PolicyConfig::XmlThreatProtection(protect::xml_threat_protection(cx, el))
        }
        "RegularExpressionProtection" => PolicyConfig::RegularExpressionProtection(Box::new(
            protect::regular_expression_protection(cx, el),
        )),
        "CORS" => PolicyConfig::Cors(cors::cors(cx, el)),
        "ResponseCache" => PolicyConfig::ResponseCache(cache::response_cache(cx, el)),
        "LookupCache" => PolicyConfig::LookupCache(cache::lookup_cache(cx, el)),
        "PopulateCache" => PolicyConfig::PopulateCache(cache::populate_cache(cx, el)),
        "InvalidateCache" => PolicyConfig::InvalidateCache(cache::invalidate_cache(cx, el)),
        "ServiceCallout" => {
            PolicyConfig::ServiceCallout(Box::new(service::service_callout(cx, el)))
        }
        "MessageLogging" => PolicyConfig::MessageLogging(service::message_logging(cx, el)),
        "StatisticsCollector" => {
            PolicyConfig::StatisticsCollector(service::statistics_collector(cx, el))
        }
        "DataCapture" => PolicyConfig::DataCapture(service::data_capture(cx, el)),
        "AssertCondition" => PolicyConfig::AssertCondition(service::assert_condition(cx, el)),
        "JSONToXML" => PolicyConfig::JsonToXml(format::json_to_xml(cx, el)),
        _ => PolicyConfig::XmlToJson(format::xml_to_json(cx, el)),
    }
}
