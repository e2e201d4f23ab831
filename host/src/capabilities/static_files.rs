//! `cyclone:platform/static-files`: versioned URLs of the app's static files.

use super::HostState;
use super::bindings::cyclone::platform::static_files::Host;

impl Host for HostState {
    async fn url(&mut self, path: String) -> wasmtime::Result<Option<String>> {
        let versions = self.hooks.app.static_files.clone();
        Ok(versions.url(&path).await)
    }
}
