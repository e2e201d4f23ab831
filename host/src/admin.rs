//! The admin API: deploys, rollbacks and the apps' status, on an address of
//! its own (`[admin] listen`), each request behind `Authorization: Bearer
//! TOKEN`.
//!
//! - `GET /apps`: every app as JSON (name, routes, the live version with
//!   its SHA-256, number, time and live instances; the previous one; the
//!   replaced versions still finishing their instances).
//! - `PUT /apps/NAME/component` with the `.wasm` as the body: compiled and
//!   linked before it goes live; 400 with the reason when it cannot serve
//!   (the live version untouched), 200 with the app's JSON when live.
//! - `POST /apps/NAME/rollback`: the previous version goes live again.
//! - `POST /reload`: reads the manifest again and applies it (as SIGHUP).
//! - `GET /metrics`: the Prometheus text format (see [`metrics`](crate::metrics)).
//!
//! It runs on a thread of its own, so compiling a component never holds up
//! a worker's event loop. One request at a time is served per connection,
//! and one deploy at a time.

use std::convert::Infallible;
use std::net::TcpListener;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use subtle::ConstantTimeEq;
use tokio::sync::watch;

use crate::deploy::{DeployError, Deployments};

/// The largest component the API takes, in bytes.
pub const MAX_COMPONENT_BYTES: usize = 256 << 20;

type Reply = hyper::Response<Full<Bytes>>;

/// Starts serving the admin API on `listener`, on a thread of its own,
/// until `shutdown` turns true.
pub fn start(
    listener: TcpListener,
    deployments: Arc<Deployments>,
    token: String,
    mut shutdown: watch::Receiver<bool>,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("cyclone-admin".into())
        .spawn(move || {
            runtime.block_on(async move {
                let listener = match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => listener,
                    Err(e) => {
                        tracing::error!("admin API: cannot listen: {e}");
                        return;
                    }
                };
                tracing::info!("admin API listening on http://{addr}");
                let token: Arc<[u8]> = token.into_bytes().into();
                loop {
                    let (stream, _) = tokio::select! {
                        accepted = listener.accept() => match accepted {
                            Ok(accepted) => accepted,
                            Err(e) => {
                                // Usually out of file descriptors: back off instead of spinning.
                                tracing::warn!("admin API: accept failed: {e}");
                                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                                continue;
                            }
                        },
                        _ = shutdown.wait_for(|stop| *stop) => return,
                    };
                    let deployments = deployments.clone();
                    let token = token.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |req| {
                            let deployments = deployments.clone();
                            let token = token.clone();
                            async move { Ok::<_, Infallible>(serve(req, &deployments, &token).await) }
                        });
                        let _ = hyper::server::conn::http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                }
            });
        })?;
    Ok(())
}

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Reply {
    hyper::Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, content_type)
        .body(Full::new(body.into()))
        .expect("a valid response")
}

fn json(status: StatusCode, value: &impl serde::Serialize) -> Reply {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    reply(status, "application/json", body)
}

fn error(status: StatusCode, message: &str) -> Reply {
    json(status, &serde_json::json!({ "error": message }))
}

/// Whether `req` carries the token, compared in constant time.
fn authorized(req: &hyper::Request<Incoming>, token: &[u8]) -> bool {
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .is_some_and(|given| bool::from(given.ct_eq(token)))
}

async fn serve(
    req: hyper::Request<Incoming>,
    deployments: &Arc<Deployments>,
    token: &[u8],
) -> Reply {
    if !authorized(&req, token) {
        tracing::warn!(path = %req.uri().path(), "admin API: 401 without the right token");
        let mut reply = error(
            StatusCode::UNAUTHORIZED,
            "send Authorization: Bearer <the admin token>",
        );
        reply.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            http::HeaderValue::from_static("Bearer"),
        );
        return reply;
    }
    let path = req.uri().path().to_owned();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (req.method(), segments.as_slice()) {
        (&Method::GET, ["apps"]) => json(StatusCode::OK, &deployments.status()),
        (&Method::GET, ["metrics"]) => reply(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            deployments.metrics(),
        ),
        (&Method::PUT, ["apps", name, "component"]) => {
            let name = (*name).to_owned();
            let body = match Limited::new(req.into_body(), MAX_COMPONENT_BYTES)
                .collect()
                .await
            {
                Ok(body) => body.to_bytes(),
                Err(e) => {
                    return error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        &format!(
                            "cannot read the component (at most {MAX_COMPONENT_BYTES} bytes): {e}"
                        ),
                    );
                }
            };
            let deployments = deployments.clone();
            let outcome =
                tokio::task::spawn_blocking(move || deployments.deploy(&name, &body)).await;
            outcome_reply(outcome)
        }
        (&Method::POST, ["apps", name, "rollback"]) => {
            let name = (*name).to_owned();
            let deployments = deployments.clone();
            let outcome = tokio::task::spawn_blocking(move || deployments.rollback(&name)).await;
            outcome_reply(outcome)
        }
        (&Method::POST, ["reload"]) => {
            let deployments = deployments.clone();
            match tokio::task::spawn_blocking(move || deployments.reload_file()).await {
                Ok(Ok(reloaded)) => json(StatusCode::OK, &reloaded),
                Ok(Err(e)) => {
                    tracing::error!("reload refused, the running configuration is kept: {e}");
                    error(StatusCode::BAD_REQUEST, &e)
                }
                Err(e) => error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("the reload failed: {e}"),
                ),
            }
        }
        (
            _,
            ["apps"]
            | ["apps", _, "component"]
            | ["apps", _, "rollback"]
            | ["reload"]
            | ["metrics"],
        ) => error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed"),
        _ => error(StatusCode::NOT_FOUND, "no such admin endpoint"),
    }
}

fn outcome_reply<T: serde::Serialize>(
    outcome: Result<Result<T, DeployError>, tokio::task::JoinError>,
) -> Reply {
    match outcome {
        Ok(Ok(status)) => json(StatusCode::OK, &status),
        Ok(Err(e)) => {
            let status = match e {
                DeployError::NoSuchApp(_) => StatusCode::NOT_FOUND,
                DeployError::Load(_) | DeployError::Unusable(_) | DeployError::NoPrevious(_) => {
                    StatusCode::BAD_REQUEST
                }
                DeployError::Io(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            tracing::warn!("admin API: {}: {e}", status.as_u16());
            error(status, &e.to_string())
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("the deploy failed: {e}"),
        ),
    }
}
