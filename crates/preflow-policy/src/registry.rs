//! The one list of supported policy types. Each line names a policy module's type (which
//! implements [`PolicyType`]), the root elements it parses and the prefix of its
//! `{prefix}.{policy}.*` variables; the macro generates from it the configuration enum,
//! the supported-type list, parse dispatch, the compiled enum and run dispatch. Dispatch
//! is a `match`: no `dyn`, no allocation per request.
//!
//! Adding a policy type: write its module under `policies/` and add one line here.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use preflow_oauth::Registry;

use crate::parse::Cx;
use crate::policies::{
    access_entity, cache, callout, cors, extract, format, javascript, jwt, kvm, message,
    oas_validation, protect, security, service, traffic,
};
use crate::runtime::{
    Outcome, PolicyRef, Runtime, Settings, StateMode, StoreReply, TargetError, Waiting, faults,
};
use crate::vars::Slot;
use crate::xml::Element;

/// What compiling a policy may need besides its configuration.
#[derive(Clone, Copy)]
pub struct BuildCx<'a> {
    /// Where the policy sits.
    pub at: PolicyRef,
    /// Its name.
    pub name: &'a str,
    /// The gateway's settings.
    pub settings: &'a Settings,
    /// The registry OAuth and API-key policies check.
    pub registry: &'a Arc<Registry>,
    /// Failed client authentications, counted once for every token policy of the
    /// gateway (so a second token endpoint gives an attacker no fresh guesses).
    pub throttle: &'a Arc<preflow_oauth::Throttle>,
    /// Where rate-limit and token state lives.
    pub state: StateMode,
    /// Shared-flow bundles by name, to their bundle index.
    pub shared_flows: &'a HashMap<String, usize>,
    /// The bundle's policies by name, to resolve variable names at build time.
    pub policies: &'a HashMap<String, usize>,
}

impl BuildCx<'_> {
    /// Resolves a variable name for this policy's bundle.
    pub fn resolve(&self, name: &str) -> Slot {
        crate::vars::resolve_name(name, self.at.bundle, self.policies)
    }
}

impl fmt::Debug for BuildCx<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BuildCx")
            .field("at", &self.at)
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Why a policy's configuration cannot run.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CompileError {
    message: String,
}

impl CompileError {
    /// An error saying what is wrong.
    pub fn new(message: impl Into<String>) -> Self {
        CompileError {
            message: message.into(),
        }
    }

    /// What is wrong.
    pub fn message(&self) -> &str {
        &self.message
    }
}

/// One policy type: how its XML becomes a configuration, its configuration a compiled
/// form, and how that runs on an exchange.
pub(crate) trait PolicyType {
    /// The typed configuration users read.
    type Config;
    /// The executable form.
    type Compiled: fmt::Debug + Send + Sync;

    /// Reads the configuration from the policy's root element.
    fn parse(cx: &mut Cx<'_>, el: &Element) -> Self::Config;

    /// Compiles a configuration.
    fn compile(config: &Self::Config, cx: &BuildCx<'_>) -> Result<Self::Compiled, CompileError>;

    /// Runs the policy.
    fn run<R: Runtime>(compiled: &Self::Compiled, rt: &mut R) -> Outcome;

    /// Resumes the policy with the reply to its store operation.
    fn resume<R: Runtime>(
        compiled: &Self::Compiled,
        rt: &mut R,
        waiting: Waiting,
        reply: StoreReply,
    ) -> Outcome {
        let _ = (compiled, rt, waiting, reply);
        Outcome::Continue
    }

    /// Resumes the policy with the result of its call.
    fn resume_callout<R: Runtime>(
        compiled: &Self::Compiled,
        rt: &mut R,
        result: Result<http::Response<Bytes>, TargetError>,
    ) -> Outcome {
        let _ = (compiled, rt, result);
        Outcome::Continue
    }

    /// The flow variables the policy sets, for lint.
    fn variables_set(config: &Self::Config) -> Vec<String> {
        let _ = config;
        Vec::new()
    }

    /// Whether running the policy reads the request body. The engine reads the body
    /// before such a policy runs and not before; a type that does not say assumes it does.
    fn reads_request_body(config: &Self::Config) -> bool {
        let _ = config;
        true
    }

    /// Whether running the policy may read the request's headers. After the target call
    /// the engine lets the forwarded request take the client's headers (rather than a
    /// copy) when no step that may run then reads them; a type that does not say assumes
    /// it does.
    fn reads_request_headers(config: &Self::Config) -> bool {
        let _ = config;
        true
    }

    /// The largest request body the policy accepts, when it has a limit of its own
    /// below the host's: the engine refuses a larger declared body (`413`,
    /// `protocol.http.TooBigBody`) before asking the host to read it.
    fn max_request_body(config: &Self::Config) -> Option<usize> {
        let _ = config;
        None
    }

    /// Whether the policy sets the verified token's variables (`client_id`,
    /// `developer.*`, `apiproduct.*`…), for lint.
    fn sets_token_variables(config: &Self::Config) -> bool {
        let _ = config;
        false
    }

    /// The shared flow bundle the policy calls, if it calls one.
    fn shared_flow(config: &Self::Config) -> Option<&str> {
        let _ = config;
        None
    }

    /// Advice about a configuration that loads but is wrong or risky, for lint.
    fn advice(config: &Self::Config) -> Vec<crate::Advice> {
        let _ = config;
        Vec::new()
    }

    /// A variable of this type's prefix: `{prefix}.{policy}.{field}` (other than
    /// `failed`), for the policy at `at`.
    fn variable(at: PolicyRef, field: &str) -> Option<Slot> {
        let _ = (at, field);
        None
    }
}

macro_rules! registry {
    ($(
        $(#[$doc:meta])*
        $variant:ident($config:ty) = $module:ident :: $ty:ident, [$($root:literal),+], [$($prefix:literal),*];
    )+) => {
        /// The typed configuration of a policy, by policy type.
        #[derive(Debug, Clone, PartialEq)]
        #[non_exhaustive]
        pub enum PolicyConfig {
            $($(#[$doc])* $variant($config),)+
            /// A policy type the engine does not model; it loads with a warning.
            Unsupported {
                /// The root element name.
                type_name: String,
            },
        }

        /// Root elements of the policy types that have a typed configuration.
        const SUPPORTED: &[&str] = &[$($($root,)+)+];

        /// The prefixes of `{prefix}.{policy}.*` variables.
        pub(crate) const VARIABLE_PREFIXES: &[&str] = &[$($($prefix,)*)+];

        /// Parses the configuration of root element `el`; `None` for other types.
        pub(crate) fn parse_config(cx: &mut Cx<'_>, el: &Element) -> Option<PolicyConfig> {
            match el.name.as_str() {
                $($($root)|+ => Some(PolicyConfig::$variant(<$module::$ty as PolicyType>::parse(cx, el))),)+
                _ => None,
            }
        }

        /// The executable form of a policy.
        #[derive(Debug)]
        enum Exec {
            $($variant(<$module::$ty as PolicyType>::Compiled),)+
            Missing,
            Unsupported,
        }

        fn compile_exec(config: &PolicyConfig, cx: &BuildCx<'_>) -> Result<Exec, CompileError> {
            Ok(match config {
                $(PolicyConfig::$variant(c) => Exec::$variant(<$module::$ty as PolicyType>::compile(c, cx)?),)+
                PolicyConfig::Unsupported { .. } => Exec::Unsupported,
            })
        }

        impl CompiledPolicy {
            /// Runs the policy on the exchange `rt` gives access to.
            pub fn run<R: Runtime>(&self, rt: &mut R) -> Outcome {
                match &self.exec {
                    $(Exec::$variant(c) => <$module::$ty as PolicyType>::run(c, rt),)+
                    Exec::Missing => Outcome::Fault(faults::policy_missing(&self.name)),
                    Exec::Unsupported => Outcome::Fault(faults::unsupported(&self.type_name, &self.name)),
                }
            }

            /// Resumes the policy with the reply to the store operation it asked for.
            pub fn resume<R: Runtime>(&self, rt: &mut R, waiting: Waiting, reply: StoreReply) -> Outcome {
                match &self.exec {
                    $(Exec::$variant(c) => <$module::$ty as PolicyType>::resume(c, rt, waiting, reply),)+
                    Exec::Missing | Exec::Unsupported => Outcome::Continue,
                }
            }

            /// Resumes the policy with the result of the call it asked for.
            pub fn resume_callout<R: Runtime>(
                &self,
                rt: &mut R,
                result: Result<http::Response<Bytes>, TargetError>,
            ) -> Outcome {
                match &self.exec {
                    $(Exec::$variant(c) => <$module::$ty as PolicyType>::resume_callout(c, rt, result),)+
                    Exec::Missing | Exec::Unsupported => Outcome::Continue,
                }
            }
        }

        /// The flow variables a policy sets, for lint.
        pub fn variables_set(config: &PolicyConfig) -> Vec<String> {
            match config {
                $(PolicyConfig::$variant(c) => <$module::$ty as PolicyType>::variables_set(c),)+
                PolicyConfig::Unsupported { .. } => Vec::new(),
            }
        }

        impl PolicyConfig {
            /// Whether the policy sets the verified token's variables (`client_id`,
            /// `developer.*`, `apiproduct.*`…).
            pub fn sets_token_variables(&self) -> bool {
                match self {
                    $(PolicyConfig::$variant(c) => <$module::$ty as PolicyType>::sets_token_variables(c),)+
                    PolicyConfig::Unsupported { .. } => false,
                }
            }

            /// Whether running the policy reads the request body.
            pub fn reads_request_body(&self) -> bool {
                match self {
                    $(PolicyConfig::$variant(c) => <$module::$ty as PolicyType>::reads_request_body(c),)+
                    PolicyConfig::Unsupported { .. } => false,
                }
            }

            /// Whether running the policy may read the request's headers.
            pub fn reads_request_headers(&self) -> bool {
                match self {
                    $(PolicyConfig::$variant(c) => <$module::$ty as PolicyType>::reads_request_headers(c),)+
                    PolicyConfig::Unsupported { .. } => false,
                }
            }

            /// The largest request body the policy accepts, when it limits it.
            pub fn max_request_body(&self) -> Option<usize> {
                match self {
                    $(PolicyConfig::$variant(c) => <$module::$ty as PolicyType>::max_request_body(c),)+
                    PolicyConfig::Unsupported { .. } => None,
                }
            }

            /// Advice about a configuration that loads but is wrong or risky, for lint.
            pub fn advice(&self) -> Vec<crate::Advice> {
                match self {
                    $(PolicyConfig::$variant(c) => <$module::$ty as PolicyType>::advice(c),)+
                    PolicyConfig::Unsupported { .. } => Vec::new(),
                }
            }

            /// The shared flow bundle the policy calls (a FlowCallout), if any.
            pub fn shared_flow(&self) -> Option<&str> {
                match self {
                    $(PolicyConfig::$variant(c) => <$module::$ty as PolicyType>::shared_flow(c),)+
                    PolicyConfig::Unsupported { .. } => None,
                }
            }
        }

        /// The slot of `{prefix}.{policy}.{field}` for the policy at `at`, when a type
        /// with that prefix defines the field.
        pub(crate) fn policy_variable(prefix: &str, at: PolicyRef, field: &str) -> Option<Slot> {
            $($(if prefix == $prefix {
                if let Some(slot) = <$module::$ty as PolicyType>::variable(at, field) {
                    return Some(slot);
                }
            })*)+
            None
        }
    };
}

registry! {
    /// `<SpikeArrest>`.
    SpikeArrest(traffic::SpikeArrest) = traffic::SpikeArrestPolicy, ["SpikeArrest"], [];
    /// `<Quota>`.
    Quota(traffic::Quota) = traffic::QuotaPolicy, ["Quota"], ["ratelimit"];
    /// `<OAuthV2>`.
    OAuthV2(security::OAuthV2) = security::OAuthV2Policy, ["OAuthV2"], ["oauthV2", "oauthv2accesstoken"];
    /// `<GetOAuthV2Info>`.
    GetOAuthV2Info(security::GetOAuthV2Info) = security::GetOAuthV2InfoPolicy, ["GetOAuthV2Info"], [];
    /// `<SetOAuthV2Info>`.
    SetOAuthV2Info(security::SetOAuthV2Info) = security::SetOAuthV2InfoPolicy, ["SetOAuthV2Info"], [];
    /// `<VerifyAPIKey>`.
    VerifyApiKey(security::VerifyApiKey) = security::VerifyApiKeyPolicy, ["VerifyAPIKey"], ["verifyapikey"];
    /// `<BasicAuthentication>`.
    BasicAuthentication(security::BasicAuthentication) = security::BasicAuthenticationPolicy, ["BasicAuthentication"], ["BasicAuthentication"];
    /// `<AccessControl>`.
    AccessControl(security::AccessControl) = security::AccessControlPolicy, ["AccessControl"], ["acl"];
    /// `<RaiseFault>`.
    RaiseFault(message::RaiseFault) = message::RaiseFaultPolicy, ["RaiseFault"], ["raisefault"];
    /// `<AssignMessage>`.
    AssignMessage(message::AssignMessage) = message::AssignMessagePolicy, ["AssignMessage"], ["assignmessage"];
    /// `<ExtractVariables>`.
    ExtractVariables(extract::ExtractVariables) = extract::ExtractVariablesPolicy, ["ExtractVariables"], ["extractvariables"];
    /// `<KeyValueMapOperations>`.
    KeyValueMapOperations(kvm::KeyValueMapOperations) = kvm::KeyValueMapPolicy, ["KeyValueMapOperations"], ["keyvaluemap"];
    /// `<FlowCallout>`.
    FlowCallout(callout::FlowCallout) = callout::FlowCalloutPolicy, ["FlowCallout"], ["flowcallout"];
    /// `<VerifyJWT>`, `<GenerateJWT>` or `<DecodeJWT>` (see [`jwt::Jwt::operation`]).
    Jwt(Box<jwt::Jwt>) = jwt::JwtPolicy, ["VerifyJWT", "GenerateJWT", "DecodeJWT"], [];
    /// `<JSONThreatProtection>`.
    JsonThreatProtection(protect::JsonThreatProtection) = protect::JsonThreatProtectionPolicy, ["JSONThreatProtection"], ["jsonattack"];
    /// `<XMLThreatProtection>`.
    XmlThreatProtection(protect::XmlThreatProtection) = protect::XmlThreatProtectionPolicy, ["XMLThreatProtection"], ["xmlattack"];
    /// `<RegularExpressionProtection>`.
    RegularExpressionProtection(Box<protect::RegularExpressionProtection>) = protect::RegularExpressionProtectionPolicy, ["RegularExpressionProtection"], ["regularexpressionprotection"];
    /// `<CORS>`.
    Cors(cors::Cors) = cors::CorsPolicy, ["CORS"], [];
    /// `<ResponseCache>`.
    ResponseCache(cache::ResponseCache) = cache::ResponseCachePolicy, ["ResponseCache"], [];
    /// `<LookupCache>`.
    LookupCache(cache::LookupCache) = cache::LookupCachePolicy, ["LookupCache"], [];
    /// `<PopulateCache>`.
    PopulateCache(cache::PopulateCache) = cache::PopulateCachePolicy, ["PopulateCache"], [];
    /// `<InvalidateCache>`.
    InvalidateCache(cache::InvalidateCache) = cache::InvalidateCachePolicy, ["InvalidateCache"], [];
    /// `<ServiceCallout>`.
    ServiceCallout(Box<service::ServiceCallout>) = service::ServiceCalloutPolicy, ["ServiceCallout"], ["servicecallout"];
    /// `<MessageLogging>`.
    MessageLogging(service::MessageLogging) = service::MessageLoggingPolicy, ["MessageLogging"], [];
    /// `<StatisticsCollector>`.
    StatisticsCollector(service::StatisticsCollector) = service::StatisticsCollectorPolicy, ["StatisticsCollector"], [];
    /// `<DataCapture>`.
    DataCapture(service::DataCapture) = service::DataCapturePolicy, ["DataCapture"], [];
    /// `<AssertCondition>`.
    AssertCondition(service::AssertCondition) = service::AssertConditionPolicy, ["AssertCondition"], [];
    /// `<JSONToXML>`.
    JsonToXml(format::JsonToXml) = format::JsonToXmlPolicy, ["JSONToXML"], ["jsontoxml"];
    /// `<XMLToJSON>`.
    XmlToJson(format::XmlToJson) = format::XmlToJsonPolicy, ["XMLToJSON"], ["xmltojson"];
    /// `<AccessEntity>`.
    AccessEntity(access_entity::AccessEntity) = access_entity::AccessEntityPolicy, ["AccessEntity"], [];
    /// `<OASValidation>`.
    OasValidation(Box<oas_validation::OasValidation>) = oas_validation::OasValidationPolicy, ["OASValidation"], [];
    /// `<Javascript>`.
    Javascript(Box<javascript::Javascript>) = javascript::JavascriptPolicy, ["Javascript"], ["javascript"];
}

impl PolicyConfig {
    /// Whether the engine models this policy type.
    pub fn is_supported(&self) -> bool {
        !matches!(self, PolicyConfig::Unsupported { .. })
    }
}

/// Whether `type_name` (a policy root element) has a typed configuration.
pub fn is_supported_type(type_name: &str) -> bool {
    SUPPORTED.contains(&type_name)
}

/// A policy ready to run: its common attributes and its executable form.
#[derive(Debug)]
pub struct CompiledPolicy {
    name: String,
    type_name: String,
    enabled: bool,
    continue_on_error: bool,
    reads_body: bool,
    reads_headers: bool,
    max_body: Option<usize>,
    exec: Exec,
}

impl CompiledPolicy {
    /// Compiles `policy`.
    ///
    /// # Errors
    /// A [`CompileError`] when its configuration cannot run (an invalid rate, a quota
    /// start time that does not parse…).
    pub fn compile(policy: &crate::Policy, cx: &BuildCx<'_>) -> Result<Self, CompileError> {
        Ok(CompiledPolicy {
            name: policy.name.clone(),
            type_name: policy.type_name.clone(),
            enabled: policy.enabled,
            continue_on_error: policy.continue_on_error,
            reads_body: policy.config.reads_request_body(),
            reads_headers: policy.config.reads_request_headers(),
            max_body: policy.config.max_request_body(),
            exec: compile_exec(&policy.config, cx)?,
        })
    }

    /// A step naming a policy the bundle lacks: running it faults with `PolicyNotFound`.
    pub fn missing(name: &str) -> Self {
        CompiledPolicy {
            name: name.to_owned(),
            type_name: "(missing)".to_owned(),
            enabled: true,
            continue_on_error: false,
            reads_body: false,
            reads_headers: false,
            max_body: None,
            exec: Exec::Missing,
        }
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its root element name.
    pub fn type_name(&self) -> &str {
        &self.type_name
    }

    /// Whether it runs (`enabled`).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// Whether running it reads the request body.
    pub fn reads_request_body(&self) -> bool {
        self.reads_body
    }

    /// Whether running it may read the request's headers.
    pub fn reads_request_headers(&self) -> bool {
        self.reads_headers
    }

    /// The largest request body it accepts, when it limits it (a token endpoint's form).
    pub fn max_request_body(&self) -> Option<usize> {
        self.max_body
    }

    /// Whether a failure lets the flow go on (`continueOnError`).
    pub fn continue_on_error(&self) -> bool {
        self.continue_on_error
    }
}
