//! preflow: an embeddable Apigee-style policy engine for Rust API gateways.
//!
//! This crate loads API proxy and shared flow bundles into an endpoint model that the
//! flow engine runs: [`load_path`] reads a bundle folder, a folder of bundles or a zip;
//! [`load_files`] does the same from files in memory. Every condition is parsed at load
//! time and every policy becomes a typed [`PolicyConfig`]. Problems are [`Diagnostic`]s
//! naming file, line and column; [`lint`] adds the checks of `preflow check`.
//!
//! ```
//! use preflow::{load_files, LoadOptions, RouteTarget};
//!
//! let files = [
//!     ("apiproxy/proxies/default.xml", r#"<ProxyEndpoint name="default">
//!         <PreFlow><Request><Step><Name>SA</Name></Step></Request></PreFlow>
//!         <HTTPProxyConnection><BasePath>/v1/api</BasePath></HTTPProxyConnection>
//!         <RouteRule name="none"/>
//!     </ProxyEndpoint>"#),
//!     ("apiproxy/policies/SA.xml", r#"<SpikeArrest name="SA"><Rate>10ps</Rate></SpikeArrest>"#),
//! ];
//! let loaded = load_files(files, &LoadOptions::default());
//! assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
//! let proxy = &loaded.bundles[0].proxy_endpoints[0];
//! assert_eq!(proxy.base_path.as_deref(), Some("/v1/api"));
//! assert_eq!(proxy.pre_flow.request[0].policy, "SA");
//! assert_eq!(proxy.route_rules[0].target, RouteTarget::Null);
//! ```
#![deny(missing_docs)]

mod bundle;
mod endpoint;
mod lint;

pub use bundle::{
    Bundle, BundleKind, Limits, LoadOptions, Loaded, load_files, load_path, load_zip,
};
pub use endpoint::{
    Condition, DefaultFaultRule, FaultRule, Flow, HttpTargetConnection, LoadBalancer,
    LocalTargetConnection, ProxyEndpoint, RouteRule, RouteTarget, Server, SharedFlow, Step,
    TargetConnection, TargetEndpoint,
};
pub use lint::lint;
pub use preflow_condition::{Dialect, ParseOptions};
pub use preflow_policy::{
    Diagnostic, Location, Policy, PolicyConfig, Setting, Severity, Template, template,
    xml::XmlLimits,
};

/// The typed policy configurations, by policy family.
pub mod policies {
    pub use preflow_policy::{callout, extract, kvm, message, security, traffic};
}

#[cfg(test)]
mod tests;
