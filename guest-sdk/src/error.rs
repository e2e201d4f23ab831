//! Errors that become responses.

use std::fmt;

use http::StatusCode;

use crate::{IntoResponse, Response};

/// An error with the HTTP status it should be answered with, like Tornado's
/// `HTTPError`. Return it from a handler (often with `?`): an
/// [`Application`](crate::Application) renders it through its error page
/// ([`Application::error_page`](crate::Application::error_page)), a bare
/// handler as plain text.
///
/// `message` is for the client; `log_message` is for the operator and only
/// reaches the host's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpError {
    /// The response status.
    pub status: StatusCode,
    /// A message for the client; empty for just the status line.
    pub message: String,
    /// Detail for the host log, never sent to the client.
    pub log_message: Option<String>,
}

impl HttpError {
    /// An error answered with `status` and `message`.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
            log_message: None,
        }
    }

    /// The same error with `detail` written to the host log when it is answered.
    pub fn with_log(mut self, detail: impl Into<String>) -> Self {
        self.log_message = Some(detail.into());
        self
    }

    /// 400 Bad Request with a message saying what was wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    /// 401 Unauthorized with a message.
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    /// 403 Forbidden with a message.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, message)
    }

    /// 404 Not Found.
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "")
    }

    /// 405 Method Not Allowed; the application adds the `Allow` header.
    pub fn method_not_allowed() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "")
    }

    /// 500 Internal Server Error: the client sees only the status, `detail`
    /// goes to the host log.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "").with_log(detail)
    }

    /// The default rendering: `404 Not Found: message` as plain text.
    pub fn default_page(&self) -> Response {
        Response::text(format!("{self}\n")).with_status(self.status)
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
        if let Some(detail) = &self.log_message {
            eprintln!("{}: {detail}", self.status.as_u16());
        }
        self.default_page()
    }

    fn into_result(self) -> Result<Response, HttpError> {
        Err(self)
    }
}
