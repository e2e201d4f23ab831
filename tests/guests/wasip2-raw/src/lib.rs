//! A handler written against the raw `wasi:http` bindings of the `wasip2` crate.
//! `/trap-mid-body` panics after the response head and part of the body went out.

use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Raw;

impl wasip2::exports::http::incoming_handler::Guest for Raw {
    fn handle(request: IncomingRequest, response_out: ResponseOutparam) {
        let path = request.path_with_query().unwrap_or_default();
        let headers = Fields::from_list(&[("content-type".to_owned(), b"text/plain".to_vec())])
            .expect("valid headers");
        let response = OutgoingResponse::new(headers);
        let body = response.body().expect("body taken once");
        ResponseOutparam::set(response_out, Ok(response));
        let stream = body.write().expect("stream taken once");
        stream
            .blocking_write_and_flush(format!("raw wasip2 at {path}\n").as_bytes())
            .expect("client reads the body");
        if path == "/trap-mid-body" {
            panic!("trapped after sending the response head");
        }
        drop(stream);
        OutgoingBody::finish(body, None).expect("body finishes");
    }
}

wasip2::http::proxy::export!(Raw);
