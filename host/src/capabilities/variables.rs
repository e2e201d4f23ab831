//! `cyclone:platform/variables`: an app's manifest variables, read by its guest.

use super::HostState;
use super::bindings::cyclone::platform::variables::Host;

impl Host for HostState {
    fn get(&mut self, name: String) -> wasmtime::Result<Option<String>> {
        Ok(self.hooks.app.variables.get(&name).cloned())
    }
}
