//! Named counters in the key-value store.
//!
//! - `POST /count/{name}`: adds one and answers the new value as text.
//! - `GET /count/{name}`: answers the value, `0` for a name never counted.
//! - `DELETE /count/{name}`: forgets it; 204.
//!
//! The counters live in the store `default`: SQLite beside the manifest with
//! `cyclone.toml`, Redis with `cyclone-redis.toml`, where any number of
//! hosts count together. When the store cannot be reached the answer is 503.

use cyclone_sdk::kv::Store;
use cyclone_sdk::{Application, Handler, HttpError, Request, Response, StatusCode, handler_impl};

/// The key of counter `name`.
fn key(req: &Request) -> Result<String, HttpError> {
    let name: String = req.param("name")?;
    Ok(format!("count:{name}"))
}

/// `/count/{name}`.
struct Counter;

#[handler_impl]
impl Handler for Counter {
    async fn get(&mut self, req: &mut Request) -> Result<Response, HttpError> {
        let value = Store::open("default")?.get(&key(req)?)?;
        let text = value.map_or_else(
            || "0".to_owned(),
            |v| String::from_utf8_lossy(&v).into_owned(),
        );
        Ok(Response::text(text))
    }

    async fn post(&mut self, req: &mut Request) -> Result<Response, HttpError> {
        let value = Store::open("default")?.increment(&key(req)?, 1)?;
        Ok(Response::text(value.to_string()))
    }

    async fn delete(&mut self, req: &mut Request) -> Result<Response, HttpError> {
        Store::open("default")?.delete(&key(req)?)?;
        Ok(Response::new(StatusCode::NO_CONTENT))
    }
}

/// The counter's routes.
#[cyclone_sdk::handler]
async fn handle(req: Request) -> Response {
    Application::new()
        .route("/count/{name}", Counter)
        .handle(req)
        .await
}
