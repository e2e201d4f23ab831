//! Static files an app's manifest lists (`static = { "/static/..." =
//! "public" }`), served by the host without an instance: tower-http's
//! `ServeDir` (content type by extension, `ETag` and `Last-Modified` with
//! 304s, `Range` with 206, precompressed `.br` and `.gz` siblings), over a
//! backend that opens nothing outside the folder, symlinks included. A
//! versioned URL (`?v=…`, made by [`Versions::url`] for the guest's
//! `static-files.url`) is cacheable for a year; any other is revalidated.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::SystemTime;

use http::{HeaderValue, Uri, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tower_http::services::ServeDir;
use tower_http::services::fs::{Backend, TokioBackend, TokioFile};
use tower_service::Service;
use wasmtime_wasi_http::Error as ErrorCode;

use crate::response::{Response, not_found};

/// The most of a file one response reads ahead of its client.
const READ_CHUNK: usize = 16 * 1024;

/// `Cache-Control` of a versioned URL: its content never changes.
const VERSIONED: &str = "public, max-age=31536000, immutable";
/// `Cache-Control` of any other: cache, but ask first (a 304 is cheap).
const UNVERSIONED: &str = "no-cache";

/// One `static` entry of an app: the route prefix and its folder.
#[derive(Debug, Clone)]
pub struct StaticFiles {
    /// The route without its `/...`, e.g. `/static`.
    prefix: String,
    serve: ServeDir<tower_http::services::fs::DefaultServeDirFallback, Confined>,
}

impl StaticFiles {
    /// Serves `folder` at `prefix` (a prefix route's path, without `/...`).
    pub fn new(prefix: &str, folder: &Path) -> io::Result<Self> {
        let root = folder.canonicalize()?;
        let serve = ServeDir::with_backend(&root, Confined { root: root.clone() })
            .precompressed_br()
            .precompressed_gzip()
            // `/static/docs` redirects to `/static/docs/`, not `/docs/`.
            .redirect_path_prefix(prefix)
            // What one response holds while its client reads (default 64 KiB).
            .with_buf_chunk_size(READ_CHUNK);
        Ok(Self {
            prefix: prefix.to_owned(),
            serve,
        })
    }

    /// The answer to `req`, whose path is under this entry's prefix.
    pub async fn serve(&self, req: hyper::Request<Incoming>) -> Response {
        let (mut parts, body) = req.into_parts();
        let Some(rest) = parts.uri.path().strip_prefix(self.prefix.as_str()) else {
            return not_found();
        };
        let versioned = parts
            .uri
            .query()
            .is_some_and(|q| q.split('&').any(|pair| pair.starts_with("v=")));
        let path = if rest.is_empty() { "/" } else { rest };
        let path_and_query = match parts.uri.query() {
            Some(query) => format!("{path}?{query}"),
            None => path.to_owned(),
        };
        let Ok(uri) = path_and_query.parse::<Uri>() else {
            return not_found();
        };
        parts.uri = uri;
        let request = hyper::Request::from_parts(parts, body);
        let Ok(response) = self.serve.clone().call(request).await;
        let mut response = response.map(|body| {
            body.map_err(|e| ErrorCode::InternalError(Some(e.to_string())))
                .boxed_unsync()
        });
        if response.status().is_success() || response.status() == http::StatusCode::NOT_MODIFIED {
            response.headers_mut().insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static(if versioned { VERSIONED } else { UNVERSIONED }),
            );
        }
        response
    }
}

/// The tokio file system, refusing (as not found) any path whose real
/// location, symlinks resolved, is outside `root`.
#[derive(Debug, Clone)]
struct Confined {
    root: PathBuf,
}

impl Confined {
    async fn inside(root: PathBuf, path: PathBuf) -> io::Result<PathBuf> {
        let real = tokio::fs::canonicalize(&path).await?;
        if real.starts_with(&root) {
            Ok(real)
        } else {
            tracing::info!(path = %path.display(), "static file refused: it leads outside its folder");
            Err(io::ErrorKind::NotFound.into())
        }
    }
}

impl Backend for Confined {
    type File = TokioFile;
    type Metadata = std::fs::Metadata;
    type OpenFuture = Pin<Box<dyn Future<Output = io::Result<TokioFile>> + Send>>;
    type MetadataFuture = Pin<Box<dyn Future<Output = io::Result<std::fs::Metadata>> + Send>>;

    fn open(&self, path: PathBuf) -> Self::OpenFuture {
        let root = self.root.clone();
        Box::pin(async move { TokioBackend.open(Self::inside(root, path).await?).await })
    }

    fn metadata(&self, path: PathBuf) -> Self::MetadataFuture {
        let root = self.root.clone();
        Box::pin(async move { TokioBackend.metadata(Self::inside(root, path).await?).await })
    }
}

/// Hashed files kept at most per app; past it the cache starts over.
const MAX_HASHED: usize = 4096;

/// An app's static folders as `static-files.url` sees them, and the content
/// hashes it has computed (redone when a file's size or time changes).
#[derive(Debug, Default)]
pub struct Versions {
    /// Each route's prefix (without `/...`) and its folder's real path.
    folders: Vec<(String, PathBuf)>,
    hashes: std::sync::Mutex<HashMap<PathBuf, Hashed>>,
}

#[derive(Debug, Clone)]
struct Hashed {
    modified: Option<SystemTime>,
    len: u64,
    hash: String,
}

impl Versions {
    /// The folders of an app's `static` table.
    pub fn new(config: &crate::config::AppConfig) -> Self {
        let folders = config
            .static_folders()
            .filter_map(|(prefix, folder)| Some((prefix.to_owned(), folder.canonicalize().ok()?)))
            .collect();
        Self {
            folders,
            hashes: Default::default(),
        }
    }

    /// `/prefix/path?v=HASH` for the first folder holding `path`; none when
    /// none does, or `path` is absolute or would leave its folder.
    pub async fn url(&self, path: &str) -> Option<String> {
        let relative = Path::new(path);
        if path.contains(['\0', '\\'])
            || !relative
                .components()
                .all(|c| matches!(c, std::path::Component::Normal(_)))
        {
            return None;
        }
        for (prefix, root) in &self.folders {
            // Blocking, but a few cached stat calls: cheaper than a trip to
            // the blocking pool, which only hashing a new file takes.
            let Ok(real) = std::fs::canonicalize(root.join(relative)) else {
                continue;
            };
            let Ok(metadata) = std::fs::metadata(&real) else {
                continue;
            };
            if !real.starts_with(root) || !metadata.is_file() {
                continue;
            }
            let hash = self.hash(real, &metadata).await?;
            return Some(format!("{prefix}/{path}?v={hash}"));
        }
        None
    }

    /// The first 16 hex digits of the SHA-256 of the file at `real`.
    async fn hash(&self, real: PathBuf, metadata: &std::fs::Metadata) -> Option<String> {
        let (modified, len) = (metadata.modified().ok(), metadata.len());
        let lock = || self.hashes.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(known) = lock().get(&real)
            && known.modified == modified
            && known.len == len
        {
            return Some(known.hash.clone());
        }
        let file = real.clone();
        let hash = tokio::task::spawn_blocking(move || -> io::Result<String> {
            use sha2::Digest;
            let mut hasher = sha2::Sha256::new();
            io::copy(&mut std::fs::File::open(file)?, &mut hasher)?;
            let digest = hasher.finalize();
            Ok(digest[..8].iter().map(|b| format!("{b:02x}")).collect())
        })
        .await
        .ok()?
        .ok()?;
        let mut hashes = lock();
        if hashes.len() >= MAX_HASHED {
            hashes.clear();
        }
        hashes.insert(
            real,
            Hashed {
                modified,
                len,
                hash: hash.clone(),
            },
        );
        Some(hash)
    }
}
