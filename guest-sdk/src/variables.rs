//! The app's variables from the manifest (`[apps.NAME.variables]`).
//!
//! ```toml
//! [apps.site.variables]
//! greeting = "Hello"
//! api_key = { env = "SITE_API_KEY" }   # read from the host's environment at start-up
//! ```
//!
//! ```no_run
//! let greeting = cyclone_sdk::variables::get("greeting").unwrap_or_else(|| "Hi".into());
//! ```

/// The value of the app variable `name`, or `None` when the manifest does not
/// set it.
pub fn get(name: &str) -> Option<String> {
    crate::bindings::cyclone::platform::variables::get(name)
}
