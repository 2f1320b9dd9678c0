//! What a policy runs against: the [`Runtime`] trait the engine implements, the messages
//! and faults policies read and raise, the [`Outcome`] of a run, and the state shared by
//! every exchange of a gateway ([`Env`]).
//!
//! A policy never sees the engine's exchange or compiled gateway. It reads and writes
//! variables, reads and changes the request and response, reads the time the host passed
//! in, and asks for I/O by returning an outcome: a store operation
//! ([`Outcome::Store`]), a call ([`Outcome::Callout`]) or a shared flow
//! ([`Outcome::CallSharedFlow`]). The engine performs nothing itself either: it turns
//! those outcomes into steps for the host.

mod env;
mod fault;
mod message;
mod state;

use std::time::SystemTime;

use preflow_condition::{Compiled, Value};

pub use env::{Env, KvmMap, PolicyResources, Profile, Settings, StateMode};
pub use fault::{Fault, faults, wants_xml};
pub use message::{
    Client, KvOp, KvReply, Message, Scheme, StoreOp, StoreReply, Target, TargetError, Timeouts,
    TlsSettings,
};
pub use state::ExchangeState;

use crate::vars::Slot;

/// Where a policy sits in the gateway: its bundle and its index there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PolicyRef {
    /// The bundle's index.
    pub bundle: usize,
    /// The policy's index in its bundle.
    pub policy: usize,
}

/// What a policy's run comes to.
#[derive(Debug)]
pub enum Outcome {
    /// Go on with the next step.
    Continue,
    /// Enter the error state (or, with continueOnError, mark the policy failed).
    Fault(Fault),
    /// Perform a store operation, then resume the policy with the reply.
    Store(StoreOp, Waiting),
    /// Run a shared flow (by bundle index) inline.
    CallSharedFlow(usize),
    /// Answer the client with this response now (a CORS preflight): the rest of the
    /// request path and the target are skipped.
    Respond(Message),
    /// Use this response (a ResponseCache hit): the target is skipped and the
    /// ProxyEndpoint response flows run.
    CacheHit(Message),
    /// Ask the host to perform this call (ServiceCallout), then resume the policy.
    Callout(Target),
}

/// What a policy suspended by [`Outcome::Store`] waits for.
#[derive(Debug)]
#[non_exhaustive]
pub enum Waiting {
    /// A rate-limit decision; a quota also keeps its identifier.
    RateLimit {
        /// The operation, to resolve the reply.
        op: preflow_ratelimit::StoreOp,
        /// The quota's identifier, for a Quota.
        quota: Option<String>,
    },
    /// A token lookup for VerifyAccessToken or ValidateToken.
    Verify,
    /// The token endpoint's continuation.
    Token(preflow_oauth::Pending),
    /// A token lookup before revoking its grant (InvalidateToken with cascade).
    Invalidate {
        /// Whether the whole grant is revoked.
        cascade: bool,
    },
    /// A revocation or code store; then go on.
    Done,
    /// A policy's own sequence of store operations (KeyValueMapOperations,
    /// Get/SetOAuthV2Info): the index of the step the reply belongs to.
    Step(usize),
}

/// The engine's side of a running policy: one exchange, seen through variables and
/// messages. The engine implements it; policies are generic over it, so dispatch stays
/// static.
pub trait Runtime {
    /// The state every exchange of this gateway shares.
    fn env(&self) -> &Env;
    /// The running policy.
    fn policy(&self) -> PolicyRef;
    /// The name of the running policy's bundle (`apiproxy.name`).
    fn bundle_name(&self) -> &str;
    /// Resolves a variable name for the running policy's bundle.
    fn resolve(&self, name: &str) -> Slot;
    /// The value of a resolved variable.
    fn value(&self, slot: &Slot) -> Value<'_>;
    /// Evaluates a condition whose names resolve at run time.
    fn eval(&self, condition: &Compiled<Box<str>>) -> bool;
    /// Sets a variable: message parts are written to the message, the rest kept by name.
    fn set_variable(&mut self, name: &str, value: String);
    /// Removes a variable, so that it reads null again (a header is removed from its
    /// message).
    fn remove_variable(&mut self, name: &str);
    /// Records a line a script printed, for the exchange's trace.
    fn print(&mut self, line: &str);
    /// The request. Its `path` and `query` may not be filled in until
    /// [`request_mut`](Self::request_mut) is called: read them as variables.
    fn request(&self) -> &Message;
    /// The request, to change it.
    fn request_mut(&mut self) -> &mut Message;
    /// The request URI as the client sent it.
    fn original_uri(&self) -> &http::Uri;
    /// The response, once there is one.
    fn response(&self) -> Option<&Message>;
    /// The response slot, to set or change it.
    fn response_mut(&mut self) -> &mut Option<Message>;
    /// Whether `message` is the response at this point of the flow.
    fn is_response_side(&self) -> bool;
    /// `proxy.pathsuffix`.
    fn path_suffix(&self) -> &str;
    /// The client connection.
    fn client(&self) -> Client;
    /// The time the exchange began at.
    fn now(&self) -> SystemTime;
    /// The same time, in nanoseconds since the Unix epoch.
    fn now_ns(&self) -> u64;
    /// Per-exchange results of policies (verified tokens and keys, quota decisions).
    fn state(&self) -> &ExchangeState;
    /// The same, to record a result.
    fn state_mut(&mut self) -> &mut ExchangeState;
    /// Marks the running policy failed (`{prefix}.{policy}.failed` reads true).
    fn mark_failed(&mut self);
    /// Forgets cached query and form parameters after the request changed.
    fn invalidate_params(&mut self);
    /// The request's query parameters, decoded.
    fn query_params(&self) -> &[(String, String)];
    /// The request's form parameters, decoded (empty unless the body is a form).
    fn form_params(&self) -> &[(String, String)];

    /// Reads variable `name` as text.
    fn variable(&self, name: &str) -> Option<String> {
        let slot = self.resolve(name);
        let mut out = String::new();
        crate::vars::write_value(self.value(&slot), &mut out).then_some(out)
    }

    /// The current time in whole seconds since the Unix epoch.
    fn now_secs(&self) -> u64 {
        self.now_ns() / 1_000_000_000
    }
}
