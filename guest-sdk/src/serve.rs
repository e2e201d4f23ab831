//! Writing a response to the host through `wasi:http`.

use wasip2::http::types::{ErrorCode, Fields, OutgoingBody, OutgoingResponse, ResponseOutparam};
use wstd::io::AsyncOutputStream;

use crate::Response;
use crate::response::{Body, BodyWriter};

/// Sends `response` through `out`: the head first, then the body. A body
/// that fails part-way is left unfinished, which the host reports to the
/// client by cutting the connection.
pub(crate) async fn send(response: Response, out: ResponseOutparam) {
    let (status, mut headers, body) = response.into_parts();
    // 1xx, 204 and 304 responses have no body and must not declare one.
    let bodiless = status.is_informational()
        || status == http::StatusCode::NO_CONTENT
        || status == http::StatusCode::NOT_MODIFIED;
    if let Body::Bytes(bytes) = &body
        && !bodiless
    {
        headers.insert(http::header::CONTENT_LENGTH, bytes.len().into());
    }
    let entries: Vec<(String, Vec<u8>)> = headers
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.as_bytes().to_vec()))
        .collect();
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
    outgoing
        .set_status_code(status.as_u16())
        .expect("an http::StatusCode is a valid status");
    let outgoing_body = outgoing.body().expect("the body is taken once");
    ResponseOutparam::set(out, Ok(outgoing));
    let mut writer = BodyWriter::new(AsyncOutputStream::new(
        outgoing_body.write().expect("the stream is taken once"),
    ));
    let written = match body {
        Body::Bytes(bytes) => {
            writer.write(bytes);
            Ok(())
        }
        Body::Omitted => Ok(()),
        Body::Stream(write) => write(&mut writer).await,
    };
    let written = match written {
        Ok(()) => writer.flush().await,
        Err(e) => Err(e),
    };
    // The stream is a child of the body: it goes before the body is finished.
    drop(writer);
    finish(outgoing_body, written);
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
