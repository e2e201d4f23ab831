//! {{name}}: an HTTP handler. Every request gets a fresh, sandboxed instance
//! of this component.

use cyclone_sdk::{HttpError, Request, Response};

#[cyclone_sdk::handler]
async fn handle(req: Request) -> Result<Response, HttpError> {
    match req.path() {
        "/" => Ok(Response::text("Hello from {{name}}!\n")),
        "/echo" => Ok(Response::text(req.text()?.to_owned())),
        _ => Err(HttpError::not_found()),
    }
}
