//! Apigee policies, one module each, behind a narrow runtime trait.
//!
//! [`parse_policy`] reads one policy file into a [`Policy`]: the attributes every policy
//! has (`name`, `enabled`, `continueOnError`, `async`, `DisplayName`) and a
//! [`PolicyConfig`] with the elements and defaults of the policy type. Policy types the
//! engine does not model load as [`PolicyConfig::Unsupported`] with a warning. Problems are
//! [`Diagnostic`]s that name the file, line and column.
//!
//! [`CompiledPolicy::compile`] turns a policy into its executable form, and
//! [`CompiledPolicy::run`] runs it on an exchange seen through the [`runtime::Runtime`]
//! trait, which the engine implements: variables, the request and response, the time. A
//! policy that needs I/O says so in its [`runtime::Outcome`] (a store operation, a call,
//! a shared flow) and is resumed with the result. Every policy type is a module under
//! `policies/` (`traffic::spike_arrest`, `security::oauth_v2`, `message::assign_message`…),
//! listed once in the registry, which generates the enums and the dispatch.
//!
//! Shared helpers sit below the policies: the positioned XML tree ([`xml`]), message
//! templates ([`Template`]), [`jsonpath`], [`xpath`], flow-variable names ([`vars`]).
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
// Faults are the cold path: carried by value in `Result`s rather than boxed.
#![allow(clippy::result_large_err)]

pub mod advice;
mod diag;
pub mod jsonpath;
mod parse;
mod placeholder;
pub mod policies;
mod policy;
mod registry;
pub mod runtime;
pub mod template;
pub mod vars;
pub mod xml;
pub mod xpath;

pub use advice::Advice;
pub use diag::{Diagnostic, Location, Severity, Source, printable};
pub use parse::{Cx as ParseContext, is_placeholder};
pub use placeholder::{find_placeholders, warn_placeholders};
pub use policies::{
    access_entity, cache, callout, cors, extract, format, javascript, jwt, kvm, message,
    oas_validation, protect, security, service, traffic,
};
pub use policy::{Policy, Setting, parse_policy, policy_from_element};
pub use registry::{
    BuildCx, CompileError, CompiledPolicy, PolicyConfig, is_supported_type, variables_set,
};
pub use template::Template;

#[cfg(test)]
mod test_support;
#[cfg(test)]
mod tests;
