//! What the host answers on its own, without a guest: short plain-text
//! responses for refusals and failures.

use bytes::Bytes;
use http::{HeaderValue, StatusCode, header};
use http_body_util::{BodyExt, Full};
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;

use crate::limits::RETRY_AFTER_SECS;

/// The response type the server writes.
pub type Response = hyper::Response<HyperOutgoingBody>;

/// A short plain-text response.
pub fn plain(status: StatusCode, body: impl Into<Bytes>) -> Response {
    let mut response = hyper::Response::new(
        Full::new(body.into())
            .map_err(|never| match never {})
            .boxed_unsync(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// 404.
pub fn not_found() -> Response {
    plain(StatusCode::NOT_FOUND, "Not Found\n")
}

/// 400.
pub fn bad_request() -> Response {
    plain(StatusCode::BAD_REQUEST, "Bad Request\n")
}

/// 408, closing the connection: the rest of the body is not read.
pub fn request_timeout() -> Response {
    let mut response = plain(StatusCode::REQUEST_TIMEOUT, "Request Timeout\n");
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// 413.
pub fn too_large() -> Response {
    plain(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large\n")
}

/// 431.
pub fn header_fields_too_large() -> Response {
    plain(
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        "Request Header Fields Too Large\n",
    )
}

/// 500, naming the request id that the log has the cause under.
pub fn internal_error(request_id: u64) -> Response {
    plain(
        StatusCode::INTERNAL_SERVER_ERROR,
        format!("Internal Server Error (request {request_id})\n"),
    )
}

/// 503 with `Retry-After`.
pub fn unavailable() -> Response {
    let mut response = plain(StatusCode::SERVICE_UNAVAILABLE, "Service Unavailable\n");
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    response
}

/// 504.
pub fn gateway_timeout() -> Response {
    plain(StatusCode::GATEWAY_TIMEOUT, "Gateway Timeout\n")
}
