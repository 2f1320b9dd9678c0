//! One request/response exchange through the gateway, and the steps it asks the host for.

use std::collections::HashMap;
use std::time::SystemTime;

use bytes::Bytes;
use http::Uri;
use preflow_condition::OwnedValue;
use preflow_policy::runtime::{
    Client, ExchangeState, Fault, Message, PolicyRef, StoreOp, StoreReply, Target, TargetError,
    Waiting,
};

/// What the host must do next for an exchange.
#[derive(Debug)]
#[must_use]
pub enum Step {
    /// Send this response to the client; the exchange is finished.
    Respond(http::Response<Bytes>),
    /// Call the backend and pass the outcome to [`Exchange::target_response`].
    Forward(Target),
    /// Perform this store operation and pass its reply to [`Exchange::store_reply`].
    Store(StoreOp),
    /// Read the request body and pass it to [`Exchange::request_body`]. Only an
    /// exchange begun from the head alone ([`Gateway::begin_head`](crate::Gateway::begin_head))
    /// asks, and only when a policy, condition or the target call on the path taken
    /// needs the body; a request answered earlier never has its body read.
    ReadBody,
    /// Call [`Gateway::step`](crate::Gateway::step) again after this long: the exchange
    /// waits for something another exchange is doing (a back-end token being fetched).
    Pause(std::time::Duration),
}

/// A reason phrase other than the status's canonical one, set by a policy
/// (`<Set><ReasonPhrase>`, RaiseFault, `response.reason.phrase`): carried in the
/// extensions of the response [`Step::Respond`] gives, for hosts that can write it
/// (HTTP/1.1 only; HTTP/2 has no reason phrase).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReasonPhrase(pub String);

/// Which part of the execution a trace event belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// ProxyEndpoint request path.
    ProxyRequest,
    /// TargetEndpoint request path.
    TargetRequest,
    /// TargetEndpoint response path.
    TargetResponse,
    /// ProxyEndpoint response path.
    ProxyResponse,
    /// Fault handling.
    Error,
    /// PostClientFlow.
    PostClient,
}

/// One event of an exchange, recorded when tracing is on ([`Exchange::enable_trace`]).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum TraceEvent {
    /// A proxy endpoint was selected by base path.
    ProxySelected {
        /// The API proxy.
        proxy: String,
        /// The ProxyEndpoint.
        endpoint: String,
        /// `proxy.basepath`.
        base_path: String,
        /// `proxy.pathsuffix`.
        path_suffix: String,
    },
    /// A flow (PreFlow, conditional Flow, PostFlow, fault rule…) started.
    Flow {
        /// Where.
        phase: Phase,
        /// The flow's name.
        name: String,
    },
    /// A condition was evaluated.
    Condition {
        /// What it guards (`flow X`, `step P`, `route rule R`, `fault rule F`).
        what: String,
        /// The text.
        text: String,
        /// The result.
        result: bool,
    },
    /// A policy ran.
    Policy {
        /// Policy name.
        name: String,
        /// Policy type.
        type_name: String,
        /// `ok`, `skipped (disabled)`, `fault NAME`, `failed NAME (continueOnError)`.
        result: String,
    },
    /// A route rule was chosen.
    Route {
        /// The rule's name.
        rule: String,
        /// Where it sends the request (`target endpoint X`, a URL, or `null route`).
        target: String,
    },
    /// The exchange entered the error state.
    Fault {
        /// `fault.name`.
        name: String,
        /// The error code.
        code: String,
        /// The status.
        status: u16,
    },
    /// A script printed a line (`print()` in a Javascript policy).
    Print {
        /// The policy that printed.
        policy: String,
        /// What it printed.
        line: String,
    },
    /// A store operation was performed.
    Store {
        /// A short description.
        op: String,
    },
}

// ---------------------------------------------------------------------------------------
// Where an exchange stands

/// A part of an endpoint's flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    Pre,
    Flow,
    Post,
}

/// A segment: which endpoint, which direction, which part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seg {
    ProxyReq(Part),
    TargetReq(Part),
    TargetResp(Part),
    ProxyResp(Part),
}

/// Which fault-handling steps run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FaultSeg {
    /// A FaultRule of the proxy (`target == false`) or target endpoint.
    Rule { target: bool, rule: usize },
    /// The endpoint's DefaultFaultRule.
    Default { target: bool },
    /// The ProxyEndpoint's DefaultFaultRule after a target fault (AlwaysEnforce).
    ProxyDefaultAfterTarget,
}

/// Where an exchange stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stage {
    Start,
    Run(Seg, usize),
    Route,
    Forward,
    /// Waiting for an API provider's token endpoint.
    AwaitToken,
    AwaitTarget,
    Fault(FaultSeg, usize),
    Respond,
    PostClient(usize),
    Done,
}

impl Stage {
    /// Whether `message` is the response here.
    pub(crate) fn is_response_side(&self) -> bool {
        !matches!(
            self,
            Stage::Start
                | Stage::Run(Seg::ProxyReq(_) | Seg::TargetReq(_), _)
                | Stage::Route
                | Stage::Forward
                | Stage::AwaitToken
                | Stage::AwaitTarget
        )
    }

    pub(crate) fn target_side(&self) -> bool {
        matches!(
            self,
            Stage::Run(Seg::TargetReq(_) | Seg::TargetResp(_), _)
                | Stage::Forward
                | Stage::AwaitToken
                | Stage::AwaitTarget
        )
    }

    pub(crate) fn state_name(&self) -> &'static str {
        match self {
            Stage::Run(Seg::ProxyReq(_), _) | Stage::Route | Stage::Start => "PROXY_REQ_FLOW",
            Stage::Run(Seg::TargetReq(_), _) | Stage::Forward | Stage::AwaitToken => {
                "TARGET_REQ_FLOW"
            }
            Stage::AwaitTarget | Stage::Run(Seg::TargetResp(_), _) => "TARGET_RESP_FLOW",
            Stage::Run(Seg::ProxyResp(_), _) => "PROXY_RESP_FLOW",
            _ => "ERROR_FLOW",
        }
    }
}

/// A FlowCallout in progress: the shared flow's bundle and the next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Frame {
    pub bundle: usize,
    pub idx: usize,
}

/// A policy waiting for a store reply.
#[derive(Debug)]
pub(crate) struct Resume {
    pub at: PolicyRef,
    pub op: StoreOp,
    pub kind: Waiting,
}

/// The state of one exchange: the request, the response under construction, flow
/// variables and where execution stands. Created by [`Gateway::begin`](crate::Gateway::begin)
/// and driven by [`Gateway::step`](crate::Gateway::step).
#[derive(Debug)]
pub struct Exchange {
    /// The virtual host the request arrived on (lower case), if the host says.
    pub(crate) virtual_host: Option<Box<str>>,
    /// A chained call to a local target in progress: the host's answers go to it.
    pub(crate) local: Option<Box<Exchange>>,
    /// How many local target calls this exchange is nested in.
    pub(crate) depth: u8,
    /// What this exchange waits for on behalf of an API provider, if anything.
    pub(crate) provider_wait: Option<crate::provider::AwaitToken>,
    /// Whether the state store was asked for the provider's token.
    pub(crate) provider_looked_up: bool,
    /// This exchange's claim on fetching a provider's token, if it holds one.
    pub(crate) provider_lease: Option<crate::provider::Lease>,
    /// Which of the provider's tokens the target call carried.
    pub(crate) provider_generation: Option<u64>,
    /// Whether the call was already retried after a 401.
    pub(crate) provider_retried: bool,
    pub(crate) request: Message,
    pub(crate) original_uri: Uri,
    pub(crate) response: Option<Message>,
    pub(crate) client: Client,
    pub(crate) now: SystemTime,
    pub(crate) now_ns: u64,
    /// The bundle and proxy endpoint selected, and the base path's length in the path.
    pub(crate) bundle: usize,
    pub(crate) endpoint: usize,
    pub(crate) base_len: usize,
    pub(crate) target: Option<usize>,
    pub(crate) target_url: Option<String>,
    pub(crate) route: Option<usize>,
    pub(crate) proxy_flow: Option<usize>,
    pub(crate) target_flow: Option<usize>,
    pub(crate) current_flow: &'static str,
    pub(crate) current_flow_name: Option<String>,
    pub(crate) stage: Stage,
    pub(crate) resume: Option<Box<Resume>>,
    pub(crate) reply: Option<Box<StoreReply>>,
    pub(crate) target_result: Option<Box<Result<http::Response<Bytes>, TargetError>>>,
    pub(crate) fault: Option<Box<Fault>>,
    pub(crate) vars: HashMap<String, OwnedValue>,
    pub(crate) failed: Vec<PolicyRef>,
    /// Policies that ran (a policy that never ran has no `{policy}.failed`).
    /// Inline for the usual handful, so a request allocates nothing for it.
    pub(crate) ran: smallvec::SmallVec<[PolicyRef; 8]>,
    /// What policies recorded: verified tokens and keys, quota decisions.
    pub(crate) state: ExchangeState,
    pub(crate) trace: Option<Vec<TraceEvent>>,
    pub(crate) message_id: u64,
    pub(crate) query_cache: std::sync::OnceLock<Vec<(String, String)>>,
    pub(crate) form_cache: std::sync::OnceLock<Vec<(String, String)>>,
    pub(crate) client_ip_cache: std::sync::OnceLock<String>,
    pub(crate) target_url_cache: std::sync::OnceLock<String>,
    /// `system.time`, built when first read.
    pub(crate) system_time_cache: std::sync::OnceLock<String>,
    pub(crate) callouts: Vec<Frame>,
    pub(crate) rule_raised: bool,
    /// The request path and query are still only in `original_uri` (no copy made).
    pub(crate) path_lazy: bool,
    pub(crate) query_lazy: bool,
    pub(crate) final_response: Option<Box<http::Response<Bytes>>>,
    /// A policy waiting for the host's call (ServiceCallout).
    pub(crate) callout: Option<PolicyRef>,
    /// The request body has not been read yet (begun from the head alone).
    pub(crate) body_pending: bool,
    /// The load balancer's server for the target call, once chosen.
    pub(crate) balance: Option<Box<crate::balance::Chosen>>,
    /// The host can pipe bodies ([`Exchange::enable_streaming`]).
    pub(crate) streaming: bool,
    /// The request body went to the back end without the engine reading it.
    pub(crate) request_streamed: bool,
    /// The host gave the target response's head alone.
    pub(crate) response_streamed: bool,
    /// The answer is the back end's error response (status 400 and above) given as its
    /// head alone, and no step of the error flow has run: its body streams to the client,
    /// as Apigee passes a target's error on when no fault rule handles it.
    pub(crate) target_error_streams: bool,
    /// Whether a target answered the exchange's target call.
    pub(crate) target_answered: bool,
    /// Set when the request's headers moved into the forwarded request: whether faults
    /// render as XML (read off `Accept` before the move; keeping the value instead would
    /// allocate when its bytes are first shared).
    pub(crate) xml_faults: Option<bool>,
}

impl Exchange {
    /// Hands the outcome of the target call requested by [`Step::Forward`] to the
    /// exchange; the next [`Gateway::step`](crate::Gateway::step) continues with the
    /// response flows (or the error flow).
    pub fn target_response(&mut self, result: Result<http::Response<Bytes>, TargetError>) {
        match self.local.as_mut() {
            Some(chained) => chained.target_response(result),
            None => self.target_result = Some(Box::new(result)),
        }
    }

    /// Says which virtual host (the environment's name) the request arrived on, before
    /// the first step: only ProxyEndpoints that serve there (their
    /// `<HTTPProxyConnection><VirtualHost>`, or every host when they name none) are
    /// candidates, and `virtualhost.name` reads it. Without it every endpoint is.
    pub fn set_virtual_host(&mut self, name: &str) {
        self.virtual_host = Some(name.to_ascii_lowercase().into_boxed_str());
    }

    /// Hands over the head of the target response when the [`Step::Forward`]'s
    /// `stream_response_body` said the engine does not need its body: the response flows
    /// run on the head, and if [`streams_response_body`](Self::streams_response_body)
    /// holds at [`Step::Respond`] the host sends the back end's body after the answered
    /// head. Give error responses (status 400 and above) whole, with
    /// [`target_response`](Self::target_response), when the host can: the error flow may
    /// read them. Given as a head, an error response's body still follows when no step
    /// of the error flow runs, but a fault rule's steps and conditions see no content.
    pub fn target_response_head(&mut self, result: Result<http::response::Parts, TargetError>) {
        self.response_streamed = result.is_ok();
        self.target_result =
            Some(Box::new(result.map(|parts| {
                http::Response::from_parts(parts, Bytes::new())
            })));
    }

    /// Declares that the host can pipe bodies: send the client's body to the back end
    /// as it arrives, and the back end's body to the client. Then a [`Step::Forward`]
    /// says when the engine needs neither (decided when the gateway was built). An
    /// exchange begun from the head alone ([`Gateway::begin_head`](crate::Gateway::begin_head)).
    pub fn enable_streaming(&mut self) {
        self.streaming = true;
    }

    /// Whether the final response's body is the back end's, still to be streamed by the
    /// host: the response head was given alone and no fault replaced the response (a
    /// back end's error status that no step of the error flow acted on leaves it the back
    /// end's).
    pub fn streams_response_body(&self) -> bool {
        self.response_streamed && (self.fault.is_none() || self.target_error_streams)
    }

    /// Hands the request body asked for by [`Step::ReadBody`] to the exchange.
    pub fn request_body(&mut self, body: Bytes) {
        self.request.body = body;
        self.body_pending = false;
        self.invalidate_params();
    }

    /// Whether the request body is still unread: after the final response, the host
    /// closes the connection (or drains the body within a bound) rather than reading it.
    pub fn body_pending(&self) -> bool {
        self.body_pending
    }

    /// Hands the reply to the operation requested by [`Step::Store`] to the exchange.
    pub fn store_reply(&mut self, reply: StoreReply) {
        match self.local.as_mut() {
            Some(chained) => chained.store_reply(reply),
            None => self.reply = Some(Box::new(reply)),
        }
    }

    /// Records a [`TraceEvent`] for everything that happens from now on.
    pub fn enable_trace(&mut self) {
        if self.trace.is_none() {
            self.trace = Some(Vec::new());
        }
    }

    /// The events recorded since [`enable_trace`](Self::enable_trace).
    pub fn trace(&self) -> &[TraceEvent] {
        self.trace.as_deref().unwrap_or(&[])
    }

    /// The time the exchange began at.
    pub fn now(&self) -> SystemTime {
        self.now
    }

    /// The client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The `fault.name` of the fault the exchange is handling or ended with, if any.
    pub fn fault_name(&self) -> Option<&str> {
        self.fault.as_ref().map(|f| f.name.as_ref())
    }

    /// The request path (normalised once the exchange has started).
    pub(crate) fn req_path(&self) -> &str {
        if self.path_lazy {
            self.original_uri.path()
        } else {
            &self.request.path
        }
    }

    /// The request query, without `?`.
    pub(crate) fn req_query(&self) -> Option<&str> {
        if self.query_lazy {
            self.original_uri.query()
        } else {
            self.request.query.as_deref()
        }
    }

    /// Copies the path and query into the request message before it is changed or
    /// cloned as a whole.
    pub(crate) fn materialize(&mut self) {
        if self.path_lazy {
            self.request.path = self.original_uri.path().to_owned();
            self.path_lazy = false;
        }
        if self.query_lazy {
            self.request.query = self.original_uri.query().map(str::to_owned);
            self.query_lazy = false;
        }
    }

    pub(crate) fn record(&mut self, event: impl FnOnce() -> TraceEvent) {
        if let Some(t) = &mut self.trace {
            t.push(event());
        }
    }
}
