//! Driving the OAuth endpoints and bearer verification against Redis.

use preflow_oauth::http::{Request, Response};
use preflow_oauth::{ApiCall, OAuthServer, Outcome, VerifiedToken, VerifyError, VerifyStep};

use crate::store::RedisStore;

/// Store operations one endpoint may ask for before it is answered with an error.
const MAX_STEPS: usize = 8;

impl RedisStore {
    /// Drives an endpoint [`Outcome`] (token, revocation, introspection) to its response,
    /// performing each store operation on Redis. When Redis fails the endpoint answers
    /// 503 ([`preflow_oauth::StoreReply::Unavailable`]).
    pub async fn drive(&self, server: &OAuthServer, outcome: Outcome) -> Response<Vec<u8>> {
        let mut outcome = outcome;
        for _ in 0..MAX_STEPS {
            match outcome {
                Outcome::Respond(response) => return response,
                Outcome::NeedsStore(op, pending) => {
                    outcome = server.resume(pending, self.execute_token(&op).await);
                }
            }
        }
        match outcome {
            Outcome::Respond(response) => response,
            Outcome::NeedsStore(op, pending) => {
                tracing::warn!(?op, "endpoint asked for too many store operations");
                match server.resume(pending, preflow_oauth::StoreReply::Unavailable) {
                    Outcome::Respond(response) => response,
                    Outcome::NeedsStore(..) => {
                        let mut response = Response::new(Vec::new());
                        *response.status_mut() =
                            preflow_oauth::http::StatusCode::SERVICE_UNAVAILABLE;
                        response
                    }
                }
            }
        }
    }

    /// Verifies the bearer token of `req` for `call`, looking the token up in Redis.
    pub async fn verify_access_token<B: AsRef<[u8]>>(
        &self,
        server: &OAuthServer,
        req: &Request<B>,
        call: &ApiCall<'_>,
    ) -> Result<VerifiedToken, VerifyError> {
        match server.verify_access_token(req, call) {
            VerifyStep::Done(result) => result,
            VerifyStep::NeedsStore(op, pending) => {
                let reply = self.execute_token(&op).await;
                server.finish_verify(pending, reply, call)
            }
        }
    }
}
