//! Threat protection: JSONThreatProtection, XMLThreatProtection and
//! RegularExpressionProtection.
//!
//! The JSON and XML checks scan the payload as a stream and stop at the first exceeded
//! limit: no tree is built. [`scan_json`] drives serde_json with a visitor that keeps only
//! counters; [`scan_xml`] reads quick-xml events and keeps one counter per open element.

mod json_threat_protection;
mod regular_expression_protection;
mod xml_threat_protection;

pub(crate) use json_threat_protection::JsonThreatProtectionPolicy;
pub use json_threat_protection::*;
pub(crate) use regular_expression_protection::RegularExpressionProtectionPolicy;
pub use regular_expression_protection::*;
pub(crate) use xml_threat_protection::XmlThreatProtectionPolicy;
pub use xml_threat_protection::*;

use crate::parse::Cx;
use crate::xml::Element;
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
use std::cell::Cell;
use std::fmt;

/// A numeric limit element; absent or invalid is no limit.
pub(super) fn limit(cx: &mut Cx<'_>, el: &Element, name: &str) -> Option<u64> {
    let c = el.child(name)?;
    let n: i64 = cx.number(c)?;
    u64::try_from(n).ok()
}

/// `<Source>`, default `request`.
pub(super) fn source(cx: &Cx<'_>, el: &Element) -> String {
    cx.child_text(el, "Source")
        .unwrap_or_else(|| "message".to_owned())
}

#[cfg(test)]
mod tests;
