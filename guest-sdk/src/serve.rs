//! Serving a request through `wasi:http` 0.2: the handler runs on the
//! SDK's executor, and the response goes back through the outparam.

use std::future::Future;

use wasip2::http::types::{
    ErrorCode, Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};
use wasip2::io::streams::StreamError;
use wstd::io::AsyncOutputStream;

use crate::response::{Body, BodyWriter};
use crate::{IntoResponse, Request, Response};

/// Reads the request, runs the handler on the SDK's executor, and writes
/// its response.
pub fn serve<F, Fut>(request: IncomingRequest, response_out: ResponseOutparam, handler: F)
where
    F: FnOnce(Request) -> Fut,
    Fut: Future,
    Fut::Output: IntoResponse,
{
    wstd::runtime::block_on(async move {
        let response = match Request::from_incoming(request) {
            Ok(request) => handler(request).await.into_response(),
            Err(error) => error.into_response(),
        };
        send(response, response_out).await;
    })
}

/// Where a streamed response body goes.
pub(crate) type Sink = AsyncOutputStream;

/// Sends `response` through `out`: the head first, then the body. A body
/// that fails part-way is left unfinished, which the host reports to the
/// client by cutting the connection.
async fn send(response: Response, out: ResponseOutparam) {
    let (status, entries, body) = response.into_wire();
    let fields = match Fields::from_list(&entries) {
        Ok(fields) => fields,
        Err(e) => {
            let message = format!("the response has a header the host refuses: {e:?}");
            eprintln!("{message}");
            ResponseOutparam::set(out, Err(ErrorCode::InternalError(Some(message))));
            return;
        }
    };
    let outgoing = OutgoingResponse::new(fields);
    // A new response's status is 200: one host call fewer for most.
    if status != http::StatusCode::OK {
        outgoing
            .set_status_code(status.as_u16())
            .expect("an http::StatusCode is a valid status");
    }
    let outgoing_body = outgoing.body().expect("the body is taken once");
    ResponseOutparam::set(out, Ok(outgoing));
    // Each arm drops what it opened before the body is finished: the
    // stream is a child of the body.
    let written = match body {
        // Nothing to write: the body is finished as it is.
        Body::Omitted => Ok(()),
        // A small body goes in one host call, written and flushed at once,
        // where the executor's writer would take five and a pollable.
        Body::Bytes(bytes) if bytes.len() <= ONE_CALL_MAX => {
            let stream = outgoing_body.write().expect("the stream is taken once");
            stream.blocking_write_and_flush(&bytes).map_err(io_error)
        }
        Body::Bytes(bytes) => {
            let mut writer = writer_into(&outgoing_body);
            writer.write(bytes);
            writer.flush().await
        }
        Body::Stream(write) => {
            let mut writer = writer_into(&outgoing_body);
            match write(&mut writer).await {
                Ok(()) => writer.flush().await,
                Err(e) => Err(e),
            }
        }
    };
    finish(outgoing_body, written);
}

/// A writer into `body`'s stream, through the executor.
fn writer_into(body: &OutgoingBody) -> BodyWriter {
    BodyWriter::new(AsyncOutputStream::new(
        body.write().expect("the stream is taken once"),
    ))
}

/// The most `blocking-write-and-flush` takes in one call.
const ONE_CALL_MAX: usize = 4096;

/// A failed write as an I/O error, as the executor's writer reports it.
fn io_error(error: StreamError) -> std::io::Error {
    match error {
        StreamError::Closed => std::io::Error::from(std::io::ErrorKind::ConnectionReset),
        StreamError::LastOperationFailed(e) => std::io::Error::other(e.to_debug_string()),
    }
}

fn finish(body: OutgoingBody, written: std::io::Result<()>) {
    if let Err(e) = written {
        // Dropping the body unfinished tells the host it is incomplete.
        eprintln!("the response body was not sent whole: {e}");
        return;
    }
    // The host refuses only a body whose length is not its content-length.
    // (Not `{e:?}`: the Debug names of every `ErrorCode` would be 1.3 KB
    // more data in every instance of every component.)
    match OutgoingBody::finish(body, None) {
        Ok(()) => {}
        Err(ErrorCode::HttpResponseBodySize(Some(sent))) => {
            eprintln!("the response body was refused: {sent} bytes, not its content-length");
        }
        Err(_) => eprintln!("the response body was refused"),
    }
}
