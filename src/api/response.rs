//! JSON answers and JSON errors: every answer of the API is one JSON document, and every
//! error is `{"error": {"code", "message"}}` with a fitting status.

use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};

use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Frame, SizeHint};
use hyper::{Response, StatusCode};
use serde::Serialize;
use serde_json::json;

/// Every answer's body: a whole JSON document, or a stream (an MCP session's SSE).
pub type Body = BoxBody<Bytes, Infallible>;

/// A body that holds `guard` until it has been sent (or dropped): a streamed answer keeps
/// its connection counted as busy for as long as it streams.
pub struct HeldUntilSent<G> {
    body: Body,
    _guard: G,
}

impl<G: Send + Sync + Unpin + 'static> HeldUntilSent<G> {
    pub fn wrap(body: Body, guard: G) -> Body {
        BoxBody::new(Self {
            body,
            _guard: guard,
        })
    }
}

impl<G: Unpin> hyper::body::Body for HeldUntilSent<G> {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

fn whole(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).boxed()
}

/// A JSON answer with `status`.
pub fn json(status: StatusCode, value: &impl Serialize) -> Response<Body> {
    let body = serde_json::to_vec(value).expect("API answers always serialize");
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(whole(body))
        .expect("valid response")
}

/// A plain-text answer (Prometheus metrics).
pub fn text(status: StatusCode, content_type: &str, body: String) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(whole(body))
        .expect("valid response")
}

/// An API error.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Sent as `Retry-After` (whole seconds) when set.
    pub retry_after: Option<std::time::Duration>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    pub fn into_response(self) -> Response<Body> {
        let mut response = json(
            self.status,
            &json!({"error": {"code": self.code, "message": self.message}}),
        );
        if let Some(after) = self.retry_after {
            response.headers_mut().insert(
                "retry-after",
                after.as_secs().max(1).to_string().parse().expect("digits"),
            );
        }
        if self.status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert("www-authenticate", "Bearer".parse().expect("valid header"));
        }
        response
    }
}

impl From<crate::sandbox::SandboxError> for ApiError {
    fn from(err: crate::sandbox::SandboxError) -> Self {
        let status =
            StatusCode::from_u16(err.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut api = Self::new(status, err.code(), err.to_string());
        api.retry_after = err.retry_after();
        api
    }
}
