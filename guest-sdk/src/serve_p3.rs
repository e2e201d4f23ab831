//! Serving a request through `wasi:http` 0.3 (the `wasip3` feature): the
//! handler runs as a task of the component's async export, and a streamed
//! body is written by a task of its own after the response head is returned.

use std::future::Future;

use wasip3::http::types::{ErrorCode, Fields, Request as WasiRequest, Response as WasiResponse};
use wasip3::wit_bindgen::{self, StreamWriter};
use wasip3::{wit_future, wit_stream};

use crate::request::Head;
use crate::response::{Body, BodyWriter};
use crate::{HttpError, IntoResponse, Request, Response};

/// Where a streamed response body goes.
pub(crate) struct Sink(StreamWriter<u8>);

impl Sink {
    /// Sends `bytes`; fails when the client has gone away.
    pub(crate) async fn write_all(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        if self.0.write_all(bytes.to_vec()).await.is_empty() {
            Ok(())
        } else {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
    }

    /// Nothing to do: what `write_all` sent is with the host already.
    pub(crate) async fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Reads `request`, runs `handler` on it and returns its response; a body
/// the response streams is written on after this returns.
pub async fn serve<F, Fut>(request: WasiRequest, handler: F) -> Result<WasiResponse, ErrorCode>
where
    F: FnOnce(Request) -> Fut,
    Fut: Future,
    Fut::Output: IntoResponse,
{
    let response = match read(request).await {
        Ok(request) => handler(request).await.into_response(),
        Err(error) => error.into_response(),
    };
    send(response)
}

/// The request with its whole body.
async fn read(request: WasiRequest) -> Result<Request, HttpError> {
    let head = Head {
        method: request.get_method(),
        scheme: request.get_scheme(),
        authority: request.get_authority(),
        path_with_query: request.get_path_with_query(),
        headers: request.get_headers().copy_all(),
    }
    .parse()
    .map_err(|e| HttpError::bad_request(format!("unreadable request: {e}")))?;
    let (_, done) = wit_future::new(|| Ok(()));
    let (body, _trailers) = WasiRequest::consume_body(request, done);
    let body = body.collect().await;
    Ok(Request::from_http(http::Request::from_parts(head, body)))
}

/// The response's head, with its body written by a task of its own. A body
/// that fails part-way ends in an error the host passes on to the client by
/// cutting the connection.
fn send(response: Response) -> Result<WasiResponse, ErrorCode> {
    let (status, entries, body) = response.into_wire();
    let fields = Fields::from_list(&entries).map_err(|e| {
        let message = format!("the response has a header the host refuses: {e:?}");
        eprintln!("{message}");
        ErrorCode::InternalError(Some(message))
    })?;
    let (mut contents, contents_rx) = wit_stream::new();
    let (trailers, trailers_rx) = wit_future::new(|| Ok(None));
    let (outgoing, _sent) = WasiResponse::new(fields, Some(contents_rx), trailers_rx);
    outgoing
        .set_status_code(status.as_u16())
        .expect("an http::StatusCode is a valid status");
    match body {
        Body::Bytes(bytes) if !bytes.is_empty() => {
            wit_bindgen::spawn_local(async move {
                contents.write_all(bytes).await;
                drop(contents);
                drop(trailers);
            });
        }
        Body::Bytes(_) | Body::Omitted => {}
        Body::Stream(write) => wit_bindgen::spawn_local(async move {
            let mut writer = BodyWriter::new(Sink(contents));
            let written = match write(&mut writer).await {
                Ok(()) => writer.flush().await,
                Err(e) => Err(e),
            };
            drop(writer);
            if let Err(e) = written {
                eprintln!("the response body was not sent whole: {e}");
                let _ = trailers
                    .write(Err(ErrorCode::InternalError(Some(
                        "the response body was not sent whole".to_owned(),
                    ))))
                    .await;
            }
        }),
    }
    Ok(outgoing)
}
