//! URLs of the app's static files: the folders the manifest's `static`
//! table lists, which the host serves itself, without running the guest.
//!
//! ```toml
//! [apps.site]
//! static = { "/static/..." = "public" }
//! ```
//!
//! ```no_run
//! let css = cyclone_sdk::static_url("site.css");
//! // "/static/site.css?v=3f2a9c0d81b7e6a5": the hash changes with the file,
//! // so browsers may cache the URL for good.
//! let page = format!("<link rel=\"stylesheet\" href=\"{css}\">");
//! ```

/// The URL of `path` (relative, e.g. `css/site.css`) in the first of the
/// app's static folders that holds it, with `?v=` and a hash of its content,
/// like Tornado's `static_url`. When no folder holds it, `/static/{path}`
/// without a version (the host answers that 404 unless the file appears).
pub fn static_url(path: &str) -> String {
    crate::bindings::cyclone::platform::static_files::url(path)
        .unwrap_or_else(|| format!("/static/{}", path.trim_start_matches('/')))
}
