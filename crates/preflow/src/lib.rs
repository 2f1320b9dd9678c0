//! preflow: an embeddable Apigee-style policy engine for Rust API gateways.
//!
//! This crate loads API proxy and shared flow bundles into an endpoint model: [`load_path`]
//! reads a bundle folder, a folder of bundles or a zip; [`load_files`] does the same from
//! files in memory. Every condition is parsed at load time and every policy becomes a typed
//! [`PolicyConfig`]. Problems are [`Diagnostic`]s naming file, line and column; [`lint`]
//! adds the checks of `preflow check`. Bundles are found by folder name or by content
//! (SAP exports under any folder name); SAP policy templates load as [`PolicyTemplate`]s
//! and [`PolicyTemplate::apply`] applies one to a proxy's files.
//!
//! A [`Gateway`] compiles loaded bundles for execution and runs one request at a time as
//! an [`Exchange`], sans-IO: the host passes the request and the time, and performs
//! whatever the gateway asks for as a [`Step`] — answer the client, call a target, or (with
//! [`StateMode::Remote`]) run a store operation.
//!
//! ```
//! use std::time::SystemTime;
//! use bytes::Bytes;
//! use preflow::{load_files, Client, Gateway, LoadOptions, Step};
//!
//! let files = [
//!     ("apiproxy/proxies/default.xml", r#"<ProxyEndpoint name="default">
//!         <PreFlow><Request><Step><Name>SA</Name></Step></Request></PreFlow>
//!         <HTTPProxyConnection><BasePath>/v1/api</BasePath></HTTPProxyConnection>
//!         <RouteRule name="default"><TargetEndpoint>default</TargetEndpoint></RouteRule>
//!     </ProxyEndpoint>"#),
//!     ("apiproxy/targets/default.xml", r#"<TargetEndpoint name="default">
//!         <HTTPTargetConnection><URL>http://backend.internal:8080/base</URL></HTTPTargetConnection>
//!     </TargetEndpoint>"#),
//!     ("apiproxy/policies/SA.xml", r#"<SpikeArrest name="SA"><Rate>10ps</Rate></SpikeArrest>"#),
//! ];
//! let loaded = load_files(files, &LoadOptions::default());
//! assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
//! let gateway = Gateway::builder().bundles(loaded).build()?;
//!
//! let request = http::Request::get("/v1/api/items?x=1").body(Bytes::new())?;
//! let client = Client::http("192.0.2.1:50000".parse()?);
//! let mut ex = gateway.begin(request, client, SystemTime::now());
//! let response = loop {
//!     match gateway.step(&mut ex) {
//!         Step::Respond(response) => break response,
//!         Step::Forward(target) => {
//!             // The host calls the backend here.
//!             assert_eq!(target.request.uri(), "http://backend.internal:8080/base/items?x=1");
//!             ex.target_response(Ok(http::Response::new(Bytes::from("hello"))));
//!         }
//!         Step::Store(_) => unreachable!("local state is answered inline"),
//!         Step::ReadBody => unreachable!("begin gave the whole request"),
//!         Step::Pause(wait) => std::thread::sleep(wait),
//!     }
//! };
//! assert_eq!(response.status(), 200);
//! assert_eq!(response.body(), "hello");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! What the engine does, per spec/policies.md §2:
//!
//! * The request path is normalised first ([`path::normalize`]): dot segments, encoded
//!   unreserved characters and doubled slashes are resolved; encoded slashes and escapes
//!   above the root answer 400. The longest matching base path selects the proxy
//!   endpoint; none gives 404 `messaging.adaptors.http.flow.ApplicationNotFound`.
//! * PreFlow, the first conditional Flow whose condition holds, PostFlow — on the proxy
//!   and target endpoints, request and response; the selected Flow's response part runs
//!   on the way back. RouteRules: the first match wins; no target is a null route; no
//!   match is 500 `messaging.runtime.RouteFailed`.
//! * A failing policy (unless `continueOnError`), a RaiseFault, a route or target error
//!   enters the error state: the endpoint's FaultRules are tried (ProxyEndpoint bottom to
//!   top, TargetEndpoint top to bottom) and only the first that holds runs; the
//!   DefaultFaultRule runs when none did, or after it with `AlwaysEnforce` unless that
//!   FaultRule raised a fault. Without custom handling the client gets Apigee's body
//!   `{"fault":{"faultstring":…,"detail":{"errorcode":…}}}` (XML when it asks for XML).
//! * PostClientFlow runs after the response is final.
//! * Conditions are compiled at [`GatewayBuilder::build`] into slots (request and
//!   response parts, headers by case-insensitive name, query and form parameters, flow,
//!   route, client, fault and policy variables), so evaluating one allocates nothing.
//!   A condition that does not parse or compile loads with a warning
//!   ([`ConditionForm::Invalid`]); wherever it is reached (flow selection, a step, a
//!   route rule, a fault rule) evaluating it raises 500
//!   `messaging.runtime.ConditionInvalid` naming the condition and the parse error,
//!   never a silent true or false. Inside fault handling that fault is the answer.
//!
//! With [`StateMode::Remote`], SpikeArrest, Quota and token-store operations become
//! [`Step::Store`] steps carrying a [`StoreOp`]; the host runs it (for instance against
//! Redis) and resumes with [`Exchange::store_reply`]. [`Exchange::enable_trace`] records
//! every flow, condition, policy, route and fault as a [`TraceEvent`].
//!
//! The bundle model itself:
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
// Faults are the cold path: carried by value in `Result`s rather than boxed.
#![allow(clippy::result_large_err)]

mod balance;
mod build;
mod bundle;
mod compiled;
mod context;
mod endpoint;
mod engine;
mod environment;
mod exchange;
mod fault;
mod gateway;
mod guard;
mod layout;
mod lint;
mod load;
pub mod path;
mod policy_template;
mod provider;
mod sap;
mod select;
mod summary;
mod vars;

pub use balance::{BalancerError, CheckKind, HealthCheck, HttpCheck};
pub use bundle::{Bundle, BundleKind, Limits, LoadOptions};
pub use endpoint::{
    Condition, ConditionForm, DefaultFaultRule, FaultRule, Flow, HealthMonitor, HttpProbe,
    HttpTargetConnection, LoadBalancer, LocalTargetConnection, Probe, ProxyEndpoint, RouteRule,
    RouteTarget, Server, SharedFlow, Step as FlowStep, TargetConnection, TargetEndpoint,
};
pub use environment::{Environment, Provider, ProviderAuth, Secret, TargetServer, TlsSettings};
pub use exchange::{Exchange, Phase, ReasonPhrase, Step, TraceEvent};
pub use gateway::{BuildError, Gateway, GatewayBuilder};
pub use layout::is_macos_metadata;
pub use lint::{LintOptions, Platform, lint, lint_environment, lint_with, rules};
pub use load::{Loaded, load_files, load_path, load_paths, load_zip};
pub use path::PathError;
pub use policy_template::{Applied, ApplyError, OnClash, PolicyTemplate};
pub use preflow_condition::{Dialect, ParseOptions};
pub use preflow_policy::runtime::{
    Client, KvOp, KvReply, KvmMap, PolicyResources, Profile, Scheme, Settings, StateMode, StoreOp,
    StoreReply, Target, TargetError, Timeouts,
};
pub use preflow_policy::{
    CompileError, Diagnostic, Location, Policy, PolicyConfig, Setting, Severity, Template,
    printable, template, xml::XmlLimits,
};
pub use summary::{Answerer, ExchangeSummary, TokenOutcome};
pub use {bytes, http, preflow_oauth, preflow_ratelimit};

/// The typed policy configurations, by policy family.
pub mod policies {
    pub use preflow_policy::{
        cache, callout, cors, extract, format, jwt, kvm, message, protect, security, service,
        traffic, xpath,
    };
}

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
