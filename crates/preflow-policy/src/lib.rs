//! Apigee policy XML to typed policy configurations.
//!
//! [`parse_policy`] reads one policy file into a [`Policy`]: the attributes every policy
//! has (`name`, `enabled`, `continueOnError`, `async`, `DisplayName`) and a
//! [`PolicyConfig`] with the elements and defaults of the policy type. Policy types the
//! engine does not model load as [`PolicyConfig::Unsupported`] with a warning. Problems are
//! [`Diagnostic`]s that name the file, line and column.
//!
//! The crate also holds what bundle loading shares with it: the positioned XML tree
//! ([`xml`]), message templates ([`Template`]) and deploy-time placeholder detection.
//!
//! Several policy families come with their runtime logic as pure functions over simple
//! inputs (bytes, header lists, a variable lookup, a passed-in time), which the engine
//! calls: [`jwt`] (VerifyJWT, GenerateJWT, DecodeJWT), [`protect`] (JSON and XML threat
//! protection as streaming scans, RegularExpressionProtection), [`cors`], [`cache`] (the
//! cache policies and a bounded in-memory cache), [`service`] (ServiceCallout,
//! MessageLogging, StatisticsCollector, DataCapture, AssertCondition), [`format`](mod@format)
//! (JSONToXML, XMLToJSON, a JSONPath subset) and [`xpath`].
//!
//! ```
//! use preflow_policy::{parse_policy, PolicyConfig, Source, xml::XmlLimits};
//! use preflow_policy::traffic::{Rate, RatePeriod};
//!
//! let src = Source::new("SA.xml", r#"<SpikeArrest name="SA"><Rate>30ps</Rate></SpikeArrest>"#);
//! let mut diags = Vec::new();
//! let policy = parse_policy(&src, &XmlLimits::default(), &mut diags).unwrap();
//! let PolicyConfig::SpikeArrest(sa) = &policy.config else { panic!() };
//! assert_eq!(sa.rate.value, Some(Rate { count: 30, period: RatePeriod::Second }));
//! assert!(diags.is_empty());
//! ```
#![deny(missing_docs)]

pub mod cache;
pub mod callout;
pub mod cors;
mod diag;
pub mod extract;
mod families;
pub mod format;
pub mod jwt;
pub mod kvm;
pub mod message;
mod parse;
mod placeholder;
mod policy;
pub mod protect;
pub mod security;
pub mod service;
pub mod template;
pub mod traffic;
pub mod xml;
pub mod xpath;

pub use diag::{Diagnostic, Location, Severity, Source};
pub use parse::is_placeholder;
pub use placeholder::{find_placeholders, warn_placeholders};
pub use policy::{
    Policy, PolicyConfig, Setting, is_supported_type, parse_policy, policy_from_element,
};
pub use template::Template;

#[cfg(test)]
mod families_tests;
#[cfg(test)]
mod tests;
