//! An Envoy external processor (`envoy.service.ext_proc.v3.ExternalProcessor`) that runs
//! preflow API proxies: Envoy's `ext_proc` filter hands each request's headers (and
//! bodies, when the engine needs them) to [`ExtProc`], which drives one
//! [`preflow::Exchange`] per gRPC stream.
//!
//! How the phases map onto the exchange:
//!
//! * **Request headers**: the exchange begins from the head. [`Step::Respond`] becomes an
//!   `ImmediateResponse` (a missing token, a spike arrest, a RaiseFault: the back end
//!   never sees the request). When the engine asks for the body, the answer overrides the
//!   processing mode to `BUFFERED` for this request only, so bodies no policy needs are
//!   never sent to the processor (the filter's configured mode is `NONE`).
//! * **The target call** ([`Step::Forward`]): the request is mutated into the engine's
//!   target request: `:method`, `:path`, `:authority`, added, changed and removed headers,
//!   and the body when it was buffered. The header `x-preflow-cluster` names the target's
//!   authority (`host:port`) and the route cache is cleared, so an Envoy route with
//!   `cluster_header: x-preflow-cluster` sends the request where the bundle's target
//!   says (see `examples/envoy/envoy.yaml`).
//! * **Response headers**: the response flows run on the head. When a response policy
//!   needs the body (decided by the engine when the gateway was built, told by the
//!   Forward step) or the response is an error the fault rules may read, the response
//!   body is asked for (`BUFFERED`) and the flows run on the whole response. The final
//!   answer is either header mutations (status included) over the back end's streamed
//!   body, or an `ImmediateResponse` carrying the engine's response.
//! * Store steps, pauses and side calls (ServiceCallout, API provider tokens) are
//!   answered inside the processor ([`preflow_host::Host`]).
//!
//! PostClientFlow runs in the engine before the final response is handed over.
#![deny(missing_docs)]

mod mutation;

use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::SystemTime;

use bytes::Bytes;
use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::ProcessingMode;
use envoy_types::pb::envoy::extensions::filters::http::ext_proc::v3::processing_mode::{
    BodySendMode, HeaderSendMode,
};
use envoy_types::pb::envoy::service::ext_proc::v3::external_processor_server::{
    ExternalProcessor, ExternalProcessorServer,
};
use envoy_types::pb::envoy::service::ext_proc::v3::{
    BodyResponse, CommonResponse, HeadersResponse, HttpBody, HttpHeaders, ProcessingRequest,
    ProcessingResponse, processing_request, processing_response,
};
use preflow::{Client, Exchange, Target};
use preflow_host::{Host, Next};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};

pub use mutation::CLUSTER_HEADER;

/// Why the processor stopped serving.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The gRPC server failed.
    #[error("the gRPC server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The external processor: one [`Host`] (gateway and drivers) shared by every stream.
#[derive(Debug, Clone)]
pub struct ExtProc {
    host: Host,
}

impl ExtProc {
    /// A processor running `host`'s gateway.
    pub fn new(host: Host) -> Self {
        Self { host }
    }

    /// Serves the processor over gRPC (HTTP/2 cleartext) on `listener` until
    /// `shutdown` completes.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        tonic::transport::Server::builder()
            .add_service(ExternalProcessorServer::new(self))
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
            .await?;
        Ok(())
    }
}

type ProcessStream = ReceiverStream<Result<ProcessingResponse, tonic::Status>>;

#[tonic::async_trait]
impl ExternalProcessor for ExtProc {
    type ProcessStream = ProcessStream;

    async fn process(
        &self,
        request: tonic::Request<tonic::Streaming<ProcessingRequest>>,
    ) -> Result<tonic::Response<Self::ProcessStream>, tonic::Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(4);
        let host = self.host.clone();
        tokio::spawn(async move {
            let mut stream = Stream::new(host);
            loop {
                let message = match inbound.message().await {
                    Ok(Some(m)) => m,
                    // Envoy closed the stream (the request ended) or reset it.
                    Ok(None) | Err(_) => break,
                };
                let Some(req) = message.request else {
                    continue;
                };
                let reply = stream.handle(req, &message.attributes).await;
                let done = matches!(
                    reply.response,
                    Some(processing_response::Response::ImmediateResponse(_))
                );
                if tx.send(Ok(reply)).await.is_err() || done {
                    break;
                }
            }
            stream.finish();
        });
        Ok(tonic::Response::new(ReceiverStream::new(rx)))
    }
}

/// Where one request stands.
#[derive(Debug)]
enum State {
    /// Nothing seen yet.
    Start,
    /// The request body was asked for.
    AwaitRequestBody,
    /// The request went to the back end.
    Forwarded {
        /// No policy needs the response body.
        stream_response_body: bool,
    },
    /// The response body was asked for; the head waits here.
    AwaitResponseBody(http::response::Parts),
    /// The answer was given.
    Done,
}

/// One gRPC stream: one HTTP request through Envoy.
struct Stream {
    host: Host,
    ex: Option<Exchange>,
    state: State,
    /// The headers Envoy sent for the request, as the mutations' starting point.
    request_headers: http::HeaderMap,
    status: Option<u16>,
}

impl Stream {
    fn new(host: Host) -> Self {
        Self {
            host,
            ex: None,
            state: State::Start,
            request_headers: http::HeaderMap::new(),
            status: None,
        }
    }

    async fn handle(
        &mut self,
        req: processing_request::Request,
        attributes: &std::collections::HashMap<String, envoy_types::pb::google::protobuf::Struct>,
    ) -> ProcessingResponse {
        use processing_request::Request as R;
        let state = std::mem::replace(&mut self.state, State::Done);
        match (req, state) {
            (R::RequestHeaders(h), State::Start) => self.request_headers(h, attributes).await,
            (R::RequestBody(b), State::AwaitRequestBody) => self.request_body(b).await,
            (
                R::ResponseHeaders(h),
                State::Forwarded {
                    stream_response_body,
                },
            ) => self.response_headers(h, stream_response_body).await,
            (R::ResponseBody(b), State::AwaitResponseBody(parts)) => {
                self.response_body(parts, b).await
            }
            // Trailers and anything out of order: let the message through unchanged.
            (R::RequestTrailers(_), s) => {
                self.state = s;
                reply(processing_response::Response::RequestTrailers(
                    Default::default(),
                ))
            }
            (R::ResponseTrailers(_), s) => {
                self.state = s;
                reply(processing_response::Response::ResponseTrailers(
                    Default::default(),
                ))
            }
            (other, s) => {
                tracing::error!(
                    host = "envoy",
                    state = ?s,
                    message = message_name(&other),
                    "ext_proc message out of order"
                );
                self.immediate(preflow_host::fault(
                    http::StatusCode::INTERNAL_SERVER_ERROR,
                    "messaging.runtime.InternalError",
                    "the external processor received a message out of order",
                ))
            }
        }
    }

    async fn request_headers(
        &mut self,
        h: HttpHeaders,
        attributes: &std::collections::HashMap<String, envoy_types::pb::google::protobuf::Struct>,
    ) -> ProcessingResponse {
        let parts = match mutation::request_parts(h.headers.as_ref()) {
            Ok(p) => p,
            Err(why) => {
                tracing::warn!(host = "envoy", error = why, "request head refused");
                return self.immediate(preflow_host::fault(
                    http::StatusCode::BAD_REQUEST,
                    "protocol.http.BadRequest",
                    "The request head could not be read",
                ));
            }
        };
        self.request_headers = parts.headers.clone();
        let client = Client::http(source_address(attributes));
        let mut ex = self
            .host
            .gateway()
            .begin_head(parts, client, SystemTime::now());
        ex.enable_streaming();
        if h.end_of_stream {
            ex.request_body(Bytes::new());
        }
        let next = self.host.advance(&mut ex).await;
        self.ex = Some(ex);
        match next {
            Next::Respond(resp) => self.immediate(resp),
            Next::ReadBody => {
                self.state = State::AwaitRequestBody;
                let mut r = reply(processing_response::Response::RequestHeaders(
                    HeadersResponse::default(),
                ));
                r.mode_override = Some(mode(BodySendMode::Buffered, BodySendMode::None));
                r
            }
            Next::Forward(target) => {
                let (common, stream_response_body) = self.forward(target, false);
                self.state = State::Forwarded {
                    stream_response_body,
                };
                reply(processing_response::Response::RequestHeaders(
                    HeadersResponse {
                        response: Some(common),
                    },
                ))
            }
        }
    }

    async fn request_body(&mut self, b: HttpBody) -> ProcessingResponse {
        let Some(mut ex) = self.ex.take() else {
            return self.internal("request body without an exchange");
        };
        ex.request_body(Bytes::from(b.body));
        let next = self.host.advance(&mut ex).await;
        self.ex = Some(ex);
        match next {
            Next::Respond(resp) => self.immediate(resp),
            Next::ReadBody => self.internal("the engine asked for the request body twice"),
            Next::Forward(target) => {
                let (common, stream_response_body) = self.forward(target, true);
                self.state = State::Forwarded {
                    stream_response_body,
                };
                reply(processing_response::Response::RequestBody(BodyResponse {
                    response: Some(common),
                }))
            }
        }
    }

    /// The request mutations of a target call; whether the response body may stream.
    fn forward(&mut self, target: Target, body_buffered: bool) -> (CommonResponse, bool) {
        let stream_response_body = target.stream_response_body;
        let common = mutation::request(&self.request_headers, target, body_buffered);
        (common, stream_response_body)
    }

    async fn response_headers(
        &mut self,
        h: HttpHeaders,
        stream_response_body: bool,
    ) -> ProcessingResponse {
        let parts = match mutation::response_parts(h.headers.as_ref()) {
            Ok(p) => p,
            Err(why) => {
                let Some(mut ex) = self.ex.take() else {
                    return self.internal("response without an exchange");
                };
                ex.target_response(Err(preflow::TargetError::Other(why.to_owned())));
                return self.finish_whole(ex).await;
            }
        };
        // A body a response policy needs, or an error response a fault rule may read:
        // ask for it whole.
        if !h.end_of_stream && (!stream_response_body || parts.status.as_u16() >= 400) {
            self.state = State::AwaitResponseBody(parts);
            let mut r = reply(processing_response::Response::ResponseHeaders(
                HeadersResponse::default(),
            ));
            r.mode_override = Some(mode(BodySendMode::None, BodySendMode::Buffered));
            return r;
        }
        let Some(mut ex) = self.ex.take() else {
            return self.internal("response without an exchange");
        };
        // Nothing of the engine touches this answer: Envoy sends it unchanged.
        if !h.end_of_stream && self.host.gateway().pass_response(&mut ex, parts.status) {
            self.status = Some(parts.status.as_u16());
            self.ex = Some(ex);
            return reply(processing_response::Response::ResponseHeaders(
                HeadersResponse::default(),
            ));
        }
        let upstream = parts.headers.clone();
        let upstream_status = parts.status;
        if h.end_of_stream {
            ex.target_response(Ok(http::Response::from_parts(parts, Bytes::new())));
        } else {
            ex.target_response_head(Ok(parts));
        }
        let next = self.host.advance(&mut ex).await;
        let streams = ex.streams_response_body();
        self.ex = Some(ex);
        match next {
            Next::Respond(resp) if streams || h.end_of_stream => {
                self.status = Some(resp.status().as_u16());
                if !resp.body().is_empty() {
                    // A response policy set a body on an empty response.
                    return self.immediate(resp);
                }
                let common = mutation::response(&upstream, upstream_status, &resp);
                reply(processing_response::Response::ResponseHeaders(
                    HeadersResponse {
                        response: Some(common),
                    },
                ))
            }
            Next::Respond(resp) => self.immediate(resp),
            Next::ReadBody | Next::Forward(_) => {
                self.internal("the engine asked for a second target call on the response")
            }
        }
    }

    async fn response_body(
        &mut self,
        parts: http::response::Parts,
        b: HttpBody,
    ) -> ProcessingResponse {
        let Some(mut ex) = self.ex.take() else {
            return self.internal("response body without an exchange");
        };
        ex.target_response(Ok(http::Response::from_parts(parts, Bytes::from(b.body))));
        self.finish_whole(ex).await
    }

    /// Runs the response flows on a whole response and answers with the result.
    async fn finish_whole(&mut self, mut ex: Exchange) -> ProcessingResponse {
        let next = self.host.advance(&mut ex).await;
        self.ex = Some(ex);
        match next {
            Next::Respond(resp) => self.immediate(resp),
            Next::ReadBody | Next::Forward(_) => {
                self.internal("the engine asked for a second target call on the response")
            }
        }
    }

    fn internal(&mut self, why: &'static str) -> ProcessingResponse {
        tracing::error!(host = "envoy", error = why, "exchange failed");
        self.immediate(preflow_host::fault(
            http::StatusCode::INTERNAL_SERVER_ERROR,
            "messaging.runtime.InternalError",
            "the request could not be processed",
        ))
    }

    fn immediate(&mut self, resp: http::Response<Bytes>) -> ProcessingResponse {
        self.state = State::Done;
        self.status = Some(resp.status().as_u16());
        reply(processing_response::Response::ImmediateResponse(
            mutation::immediate(resp),
        ))
    }

    /// The access-log line of the exchange.
    fn finish(&self) {
        let Some(ex) = &self.ex else {
            return;
        };
        let gateway = self.host.gateway();
        tracing::info!(
            host = "envoy",
            status = self.status.unwrap_or(0),
            proxy = gateway.variable(ex, "apiproxy.name").unwrap_or_default(),
            flow = gateway.variable(ex, "proxy.flow.name").unwrap_or_default(),
            fault = ex.fault_name().unwrap_or_default(),
            "request"
        );
    }
}

fn reply(response: processing_response::Response) -> ProcessingResponse {
    ProcessingResponse {
        response: Some(response),
        ..Default::default()
    }
}

/// A processing mode for the rest of this request: headers both ways, the given bodies.
fn mode(request_body: BodySendMode, response_body: BodySendMode) -> ProcessingMode {
    ProcessingMode {
        request_header_mode: HeaderSendMode::Send as i32,
        response_header_mode: HeaderSendMode::Send as i32,
        request_body_mode: request_body as i32,
        response_body_mode: response_body as i32,
        request_trailer_mode: HeaderSendMode::Skip as i32,
        response_trailer_mode: HeaderSendMode::Skip as i32,
    }
}

/// The client's address from the `source.address` attribute (the filter's
/// `request_attributes`), or `0.0.0.0:0`.
fn source_address(
    attributes: &std::collections::HashMap<String, envoy_types::pb::google::protobuf::Struct>,
) -> SocketAddr {
    use envoy_types::pb::google::protobuf::value::Kind;
    attributes
        .values()
        .filter_map(|s| s.fields.get("source.address"))
        .find_map(|v| match &v.kind {
            Some(Kind::StringValue(s)) => s.parse().ok(),
            _ => None,
        })
        .unwrap_or_else(|| SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)))
}

fn message_name(r: &processing_request::Request) -> &'static str {
    use processing_request::Request as R;
    match r {
        R::RequestHeaders(_) => "request_headers",
        R::ResponseHeaders(_) => "response_headers",
        R::RequestBody(_) => "request_body",
        R::ResponseBody(_) => "response_body",
        R::RequestTrailers(_) => "request_trailers",
        R::ResponseTrailers(_) => "response_trailers",
    }
}
