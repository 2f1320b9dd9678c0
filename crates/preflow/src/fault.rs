//! The engine's own faults: no proxy for the path, a bad path, no route, a target that
//! cannot be called or answered with an error. Policies raise theirs through
//! [`preflow_policy::runtime::Fault`].

use http::StatusCode;
use preflow_policy::runtime::{Fault, Message};

/// Fault builders for the engine's own faults.
pub(crate) mod faults {
    use super::*;

    pub(crate) use preflow_policy::runtime::faults::{condition_invalid, internal};

    pub fn application_not_found(host: &str, path: &str) -> Fault {
        let mut f = Fault::new(
            "messaging.adaptors.http.flow.ApplicationNotFound",
            StatusCode::NOT_FOUND,
            format!("Unable to identify proxy for host: {host} and url: {path}"),
        );
        f.source = "apigee";
        f
    }

    pub fn bad_path(why: &crate::path::PathError) -> Fault {
        let mut f = Fault::new(
            "messaging.adaptors.http.flow.BadRequestPath",
            StatusCode::BAD_REQUEST,
            format!("Bad request path: {why}"),
        );
        f.source = "apigee";
        f
    }

    pub fn route_failed() -> Fault {
        let mut f = Fault::new(
            "messaging.runtime.RouteFailed",
            StatusCode::INTERNAL_SERVER_ERROR,
            "Unable to route the message to a Target Endpoint",
        );
        f.source = "proxy";
        f
    }

    pub fn target_unusable(what: &str) -> Fault {
        let mut f = Fault::new(
            "messaging.runtime.TargetUnusable",
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("The target cannot be called: {what}"),
        );
        f.source = "proxy";
        f
    }

    /// A request body larger than the policy about to read it accepts (Apigee's fault
    /// for a payload over its limit).
    pub fn too_big_body(max: usize) -> Fault {
        let mut f = Fault::new(
            "protocol.http.TooBigBody",
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("Request body larger than {max} bytes, the most this request accepts"),
        );
        f.source = "apigee";
        f
    }

    pub fn service_unavailable() -> Fault {
        let mut f = Fault::new(
            "messaging.adaptors.http.flow.ServiceUnavailable",
            StatusCode::SERVICE_UNAVAILABLE,
            "The Service is temporarily unavailable",
        );
        f.source = "target";
        f
    }

    pub fn gateway_timeout() -> Fault {
        let mut f = Fault::new(
            "messaging.adaptors.http.flow.GatewayTimeout",
            StatusCode::GATEWAY_TIMEOUT,
            "Gateway Timeout",
        );
        f.source = "target";
        f
    }

    pub fn bad_gateway(why: &str) -> Fault {
        let mut f = Fault::new(
            "messaging.adaptors.http.flow.BadGateway",
            StatusCode::BAD_GATEWAY,
            format!("Bad Gateway: {why}"),
        );
        f.source = "target";
        f
    }

    pub fn error_response_code(response: Message) -> Fault {
        let status = response.status;
        let mut f = Fault::new(
            "messaging.adaptors.http.flow.ErrorResponseCode",
            status,
            format!(
                "Received {} Response without error handling",
                status.as_u16()
            ),
        )
        .with_response(response);
        f.source = "target";
        f
    }
}
