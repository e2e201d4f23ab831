//! The wasmtime `Engine`, its instance pool, and compiled components.
//!
//! One engine serves the whole process. Components are compiled once and kept
//! in an on-disk cache keyed by the SHA-256 of their bytes and the engine's
//! compatibility hash, so a restart loads machine code instead of compiling.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::time::Instant;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use crate::config::ServerConfig;

/// Core wasm instances budgeted per component instance. A Rust component built
/// for wasm32-wasip2 has three; other toolchains may use a few more.
const CORE_INSTANCES_PER_COMPONENT: u32 = 8;
/// Linear memories budgeted per component instance (Rust components have one).
const MEMORIES_PER_COMPONENT: u32 = 2;
/// Tables budgeted per component instance (Rust components have two).
const TABLES_PER_COMPONENT: u32 = 4;
/// Linear memory left mapped between instances of a pool slot, so the next
/// instance reuses warm pages instead of faulting them in again.
const MEMORY_KEEP_RESIDENT: usize = 2 << 20;
/// Table memory left mapped between instances of a pool slot.
const TABLE_KEEP_RESIDENT: usize = 64 << 10;

/// Why a component could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{path}: cannot read component")]
    Read {
        /// The component's path.
        path: PathBuf,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The file is not a WebAssembly component.
    #[error("{path}: not a WebAssembly component ({what})")]
    NotComponent {
        /// The component's path.
        path: PathBuf,
        /// What the file is instead.
        what: &'static str,
    },
    /// The component failed to validate or compile.
    #[error("{path}: cannot compile component: {message}")]
    Compile {
        /// The component's path.
        path: PathBuf,
        /// The compiler's error, on one line.
        message: String,
    },
}

/// Builds the process's engine: component model, async calls on fibers, epoch
/// interruption, and a pooling allocator sized from `server.max_instances`
/// with memory slots of `max_memory_bytes`.
pub fn new_engine(server: &ServerConfig, max_memory_bytes: usize) -> wasmtime::Result<Engine> {
    let instances = server.max_instances;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
        .total_memories(instances.saturating_mul(MEMORIES_PER_COMPONENT))
        .total_tables(instances.saturating_mul(TABLES_PER_COMPONENT))
        .total_stacks(instances)
        .max_memory_size(max_memory_bytes)
        .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT)
        .table_keep_resident(TABLE_KEEP_RESIDENT)
        .pagemap_scan(Enabled::Auto);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        // Only WASI 0.2 is served: skip the per-store state of component-model async.
        .concurrency_support(false)
        // Guests yield at every epoch tick and are stopped past their CPU budget.
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    Engine::new(&config)
}

/// Compiled components, cached on disk.
#[derive(Debug, Clone)]
pub struct ComponentCache {
    dir: Option<PathBuf>,
}

impl ComponentCache {
    /// A cache in `dir`, or no cache at all when `None`.
    ///
    /// Files in the cache are loaded as machine code: the folder must be
    /// writable only by the user running cyclone.
    pub fn new(dir: Option<PathBuf>) -> Self {
        Self { dir }
    }

    /// The default folder: `$XDG_CACHE_HOME/cyclone`, else `$HOME/.cache/cyclone`.
    pub fn default_dir() -> Option<PathBuf> {
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache")))?;
        Some(base.join("cyclone"))
    }

    /// Loads the component at `path`: from the cache when it holds this exact
    /// file for this engine, otherwise compiled and then stored.
    pub fn load(&self, engine: &Engine, path: &Path) -> Result<Component, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        check_component_header(&bytes).map_err(|what| LoadError::NotComponent {
            path: path.to_owned(),
            what,
        })?;
        let cached = self
            .dir
            .as_ref()
            .map(|dir| dir.join(cache_key(engine, &bytes)));

        if let Some(file) = cached.as_deref().filter(|f| f.exists()) {
            // SAFETY: the file was written by `Component::serialize` for an engine
            // with the same compatibility hash (it is in the file name), and the
            // cache folder is the user's own (see `ComponentCache::new`).
            match unsafe { Component::deserialize_file(engine, file) } {
                Ok(component) => {
                    tracing::info!(component = %path.display(), "loaded from cache");
                    return Ok(component);
                }
                Err(e) => {
                    tracing::warn!(cache = %file.display(), "ignoring unusable cache entry: {e}")
                }
            }
        }

        let started = Instant::now();
        let component = Component::new(engine, &bytes).map_err(|e| LoadError::Compile {
            path: path.to_owned(),
            message: format!("{e:#}").replace('\n', " "),
        })?;
        tracing::info!(component = %path.display(), elapsed = ?started.elapsed(), "compiled");
        if let Some(file) = cached
            && let Err(e) = store(&component, &file)
        {
            tracing::warn!(cache = %file.display(), "cannot write compile cache: {e:#}");
        }
        Ok(component)
    }
}

/// The wasm binary header: magic, then a version and layer. Core modules are
/// layer 0, components layer 1.
fn check_component_header(bytes: &[u8]) -> Result<(), &'static str> {
    match bytes {
        [0, b'a', b's', b'm', _, _, 1, 0, ..] => Ok(()),
        [0, b'a', b's', b'm', _, _, 0, 0, ..] => Err(
            "it is a core wasm module; build for wasm32-wasip2 or wrap it with `wasm-tools component new`",
        ),
        _ => Err("no wasm header"),
    }
}

fn cache_key(engine: &Engine, bytes: &[u8]) -> String {
    let mut compat = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut compat);
    let digest = Sha256::digest(bytes);
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("{hex}-{:016x}.cwasm", compat.finish())
}

fn store(component: &Component, file: &Path) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let dir = file.parent().context("cache file has no folder")?;
    std::fs::create_dir_all(dir).context("creating cache folder")?;
    let code = component.serialize().map_err(|e| anyhow::anyhow!("{e}"))?;
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, code).context("writing cache file")?;
    std::fs::rename(&tmp, file).context("moving cache file into place")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tells_components_from_core_modules() {
        assert!(check_component_header(b"\0asm\x0d\0\x01\0rest").is_ok());
        assert!(
            check_component_header(b"\0asm\x01\0\0\0")
                .unwrap_err()
                .contains("core wasm module")
        );
        assert_eq!(
            check_component_header(b"hello").unwrap_err(),
            "no wasm header"
        );
    }
}
