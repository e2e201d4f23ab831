//! Errors that become responses.

use std::fmt;

use http::StatusCode;

use crate::{IntoResponse, Response};

/// An error with the HTTP status it should be answered with, like Tornado's
/// `HTTPError`. Return it from a handler (often with `?`) and the client gets
/// the status and the message as plain text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// The response status.
    pub status: StatusCode,
    /// A message for the client; empty for just the status line.
    pub message: String,
}

impl HttpError {
    /// An error answered with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400 Bad Request with a message saying what was wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 404 Not Found.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "")
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = self.status.canonical_reason().unwrap_or("Error");
        if self.message.is_empty() {
            write!(f, "{} {reason}", self.status.as_u16())
        } else {
            write!(f, "{} {reason}: {}", self.status.as_u16(), self.message)
        }
    }
}

impl std::error::Error for HttpError {}

impl IntoResponse for HttpError {
    fn into_response(self) -> Response {
        let body = format!("{self}\n");
        Response::text(body).with_status(self.status)
    }
}
