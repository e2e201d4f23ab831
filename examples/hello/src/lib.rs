//! The smallest cyclone app: every path answers `Hello, world!`.

use cyclone_sdk::{Request, Response};

/// Answers every request with a plain-text greeting.
#[cyclone_sdk::handler]
async fn handle(_req: Request) -> Response {
    Response::text("Hello, world!")
}
