//! Results policies leave on an exchange for variables and later policies to read.

use http::header::{HeaderName, HeaderValue};
use preflow_oauth::{VerifiedApiKey, VerifiedToken};
use preflow_ratelimit::QuotaDecision;

use super::PolicyRef;

/// What policies recorded on one exchange: the last verified access token, verified API
/// keys and quota decisions by policy.
#[derive(Debug, Default)]
pub struct ExchangeState {
    pub(crate) verified: Option<VerifiedToken>,
    pub(crate) api_keys: Vec<(PolicyRef, VerifiedApiKey)>,
    pub(crate) quotas: Vec<(PolicyRef, QuotaDecision, String)>,
    /// Headers a policy asked to add to the final response (CORS on an allowed request).
    pub(crate) response_headers: Vec<(HeaderName, HeaderValue)>,
    /// Javascript executions waiting for an `httpClient` response.
    pub(crate) javascript: Vec<(PolicyRef, crate::policies::javascript::Replay)>,
    /// `context.session` of the Javascript policies: attribute name and value as JSON,
    /// shared by every script of the exchange.
    pub(crate) javascript_session: Vec<(String, String)>,
    /// Messages AssignMessage built under a name of their own (`<AssignTo>CustomReq`).
    pub(crate) messages: Vec<(String, super::Message)>,
}

/// Most named messages one exchange keeps; more replace the oldest.
const MAX_NAMED_MESSAGES: usize = 32;

impl ExchangeState {
    /// The message AssignMessage built as `name`.
    pub fn named_message(&self, name: &str) -> Option<&super::Message> {
        self.messages
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, m)| m)
    }

    /// Keeps `m` as the message `name`.
    pub(crate) fn set_named_message(&mut self, name: &str, m: super::Message) {
        if let Some(slot) = self.messages.iter_mut().find(|(n, _)| n == name) {
            slot.1 = m;
            return;
        }
        if self.messages.len() >= MAX_NAMED_MESSAGES {
            self.messages.remove(0);
        }
        self.messages.push((name.to_owned(), m));
    }

    /// The token the last VerifyAccessToken or ValidateToken accepted.
    pub fn verified_token(&self) -> Option<&VerifiedToken> {
        self.verified.as_ref()
    }

    /// The API key policy `at` accepted last.
    pub fn api_key(&self, at: PolicyRef) -> Option<&VerifiedApiKey> {
        self.api_keys
            .iter()
            .rev()
            .find(|(p, _)| *p == at)
            .map(|(_, k)| k)
    }

    /// The API key the last VerifyAPIKey accepted, whichever policy it was.
    pub fn last_api_key(&self) -> Option<&VerifiedApiKey> {
        self.api_keys.last().map(|(_, k)| k)
    }

    /// Whether policies left headers for the final response ([`finish_response`](Self::finish_response)).
    pub fn has_response_headers(&self) -> bool {
        !self.response_headers.is_empty()
    }

    /// Adds the headers policies left for the final response to `m`.
    pub fn finish_response(&self, m: &mut super::Message) {
        for (n, v) in &self.response_headers {
            m.headers.insert(n.clone(), v.clone());
        }
    }

    /// The last decision of quota policy `at`, with its identifier.
    pub fn quota(&self, at: PolicyRef) -> Option<(&QuotaDecision, &str)> {
        self.quotas
            .iter()
            .rev()
            .find(|(p, _, _)| *p == at)
            .map(|(_, d, id)| (d, id.as_str()))
    }
}
