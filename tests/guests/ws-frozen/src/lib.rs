//! An echo built against the websocket interfaces as they were before
//! sessions could hibernate (`wit/world.wit` here is a frozen copy): it
//! exports `websocket-handler` alone, and the host must serve its sessions
//! live. Plain HTTP requests answer `frozen`.

wit_bindgen::generate!({
    path: "wit",
    world: "cyclone:platform/frozen",
    with: { "wasi:io/poll@0.2.12": wasip2::io::poll },
});

use cyclone::platform::websocket::{Event, Request, Response, Session};
use wasip2::http::types::{
    Fields, IncomingRequest, OutgoingBody, OutgoingResponse, ResponseOutparam,
};

struct Frozen;

impl exports::cyclone::platform::websocket_handler::Guest for Frozen {
    fn connect(_request: Request) -> Option<Response> {
        None
    }

    fn run(session: Session) {
        loop {
            match session.try_next() {
                Some(Event::Message(message)) => {
                    if session.send(&message).is_err() {
                        return;
                    }
                }
                Some(Event::Closed(_)) => return,
                None => session.subscribe().block(),
            }
        }
    }
}

export!(Frozen);

impl wasip2::exports::http::incoming_handler::Guest for Frozen {
    fn handle(_request: IncomingRequest, response_out: ResponseOutparam) {
        let response = OutgoingResponse::new(Fields::new());
        let body = response.body().expect("body taken once");
        ResponseOutparam::set(response_out, Ok(response));
        let stream = body.write().expect("stream taken once");
        stream
            .blocking_write_and_flush(b"frozen")
            .expect("client reads the body");
        drop(stream);
        OutgoingBody::finish(body, None).expect("body finishes");
    }
}

wasip2::http::proxy::export!(Frozen);
