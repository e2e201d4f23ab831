//! Fetches the upstream URLs in the app variable `upstreams` concurrently and
//! answers `GET /aggregate` with a JSON summary, like a Tornado handler
//! yielding a list of `AsyncHTTPClient.fetch` futures. Each upstream has its
//! own timeout (`upstream_timeout_ms`): a slow one is reported as timed out
//! while the others succeed.
//!
//! ```json
//! {"elapsed_ms": 312, "results": [
//!   {"url": "http://a/", "status": 200, "bytes": 1256, "elapsed_ms": 301},
//!   {"url": "http://b/", "error": "timed out after 500 ms", "elapsed_ms": 500},
//!   {"url": "http://c/", "error": "request to http://c/ denied: ...", "elapsed_ms": 0}
//! ]}
//! ```

use std::time::{Duration, Instant};

use cyclone_sdk::time::{join_all, timeout};
use cyclone_sdk::{Application, HttpError, Request, Response, client, variables};
use serde::Serialize;

/// What happened to one upstream.
#[derive(Serialize)]
struct Outcome {
    url: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bytes: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
    elapsed_ms: u128,
}

#[derive(Serialize)]
struct Summary {
    elapsed_ms: u128,
    results: Vec<Outcome>,
}

#[cyclone_sdk::handler]
async fn handle(req: Request) -> Response {
    Application::new()
        .get("/aggregate", aggregate)
        .handle(req)
        .await
}

async fn aggregate(_req: &mut Request) -> Result<Response, HttpError> {
    let upstreams = variables::get("upstreams")
        .ok_or_else(|| HttpError::internal("the app variable `upstreams` is not set"))?;
    let limit = variables::get("upstream_timeout_ms")
        .map(|ms| ms.parse::<u64>())
        .transpose()
        .map_err(|e| HttpError::internal(format!("upstream_timeout_ms: {e}")))?
        .map_or(Duration::from_secs(5), Duration::from_millis);
    let started = Instant::now();
    let fetches = upstreams
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| fetch_one(url.to_owned(), limit));
    let results = join_all(fetches).await;
    Ok(Response::json(&Summary {
        elapsed_ms: started.elapsed().as_millis(),
        results,
    }))
}

async fn fetch_one(url: String, limit: Duration) -> Outcome {
    let started = Instant::now();
    let result = timeout(limit, async {
        let response = client::get(&url).await?;
        let status = response.status().as_u16();
        let body = response.bytes().await?;
        Ok::<_, client::FetchError>((status, body.len()))
    })
    .await;
    let (status, bytes, error) = match result {
        Ok(Ok((status, bytes))) => (Some(status), Some(bytes), None),
        Ok(Err(e)) => (None, None, Some(e.to_string())),
        Err(elapsed) => (None, None, Some(elapsed.to_string())),
    };
    Outcome {
        url,
        status,
        bytes,
        error,
        elapsed_ms: started.elapsed().as_millis(),
    }
}
