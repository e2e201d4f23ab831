//! The wasmtime `Engine`, its instance pool, and compiled components.
//!
//! One engine serves the whole process. Components are compiled once and kept
//! in an on-disk cache keyed by the SHA-256 of their bytes and of the engine's
//! compatibility hash, so a restart loads machine code instead of compiling.
//! Each entry begins with those digests, so an entry is loaded only for the
//! component and engine it was made for; a cache that other users could
//! write is refused.

use std::hash::{Hash, Hasher};
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
/// Fiber stacks budgeted per instance of a WASI 0.3 component (a 0.2 call
/// runs on one). A 0.3 instance runs its guest on a worker fiber, and a task
/// that stops mid-call keeps that fiber while a new worker runs the rest of
/// the instance's work: a Rust guest does so whenever it drops a pending host
/// call (`subtask.cancel` blocks), as the chat example's long polls do when a
/// message beats their timer, so such an instance holds two stacks at once.
/// The third is for guest code the host starts (a `cabi_realloc`) that
/// yields at an epoch tick meanwhile.
const P3_STACKS_PER_INSTANCE: u32 = 3;
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
    /// The component serves neither WASI 0.2 nor WASI 0.3 HTTP.
    #[error("{path}: not an HTTP component: {message}")]
    NotHandler {
        /// The component's path.
        path: PathBuf,
        /// What it exports instead.
        message: String,
    },
    /// The compile cache cannot be trusted: others could plant machine code
    /// in it.
    #[error("{path}: {message}")]
    UnsafeCache {
        /// The folder or entry.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
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

/// The WASI release a component serves, told from its exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wasi {
    /// WASI 0.2: it exports `wasi:http/incoming-handler@0.2.x`.
    P2,
    /// WASI 0.3: it exports `wasi:http/handler@0.3.x` (world `wasi:http/service`).
    P3,
}

impl Wasi {
    /// Fiber stacks its engine's pool holds per instance slot.
    pub fn stacks_per_instance(self) -> u32 {
        match self {
            Wasi::P2 => 1,
            Wasi::P3 => P3_STACKS_PER_INSTANCE,
        }
    }

    /// The release's number, e.g. `0.3`.
    pub fn release(self) -> &'static str {
        match self {
            Wasi::P2 => "0.2",
            Wasi::P3 => "0.3",
        }
    }

    /// Which release the component in `bytes` serves, from its top-level
    /// exports; an error says what it exports instead.
    pub fn of(bytes: &[u8]) -> Result<Self, String> {
        let mut depth = 0usize;
        let mut exports = Vec::new();
        for payload in wasmparser::Parser::new(0).parse_all(bytes) {
            match payload.map_err(|e| format!("not a valid component: {e}"))? {
                wasmparser::Payload::Version { .. } => depth += 1,
                wasmparser::Payload::End(_) => depth = depth.saturating_sub(1),
                wasmparser::Payload::ComponentExportSection(section) if depth == 1 => {
                    for export in section {
                        let export = export.map_err(|e| format!("not a valid component: {e}"))?;
                        exports.push(export.name.name.to_owned());
                    }
                }
                _ => {}
            }
        }
        if exports.iter().any(|name| name.starts_with(P3_HANDLER)) {
            Ok(Self::P3)
        } else if exports.iter().any(|name| name.starts_with(P2_HANDLER)) {
            Ok(Self::P2)
        } else {
            Err(format!(
                "it exports neither `{P2_HANDLER}0.2.x` (WASI 0.2) nor `{P3_HANDLER}0.3.x` (WASI 0.3); its exports: {}",
                if exports.is_empty() {
                    "none".to_owned()
                } else {
                    exports.join(", ")
                }
            ))
        }
    }
}

/// The export a WASI 0.2 HTTP component serves requests through.
const P2_HANDLER: &str = "wasi:http/incoming-handler@";
/// The export a WASI 0.3 HTTP component serves requests through.
const P3_HANDLER: &str = "wasi:http/handler@";

/// The process's engines: one for WASI 0.2 components and one for WASI 0.3
/// components, each made when the first component of its kind is loaded.
///
/// They differ in one setting: component-model concurrency, which WASI 0.3
/// needs and which costs every 0.2 call (per-store state and a slower call
/// path), so 0.2 components never pay for it. Each engine has its own pool
/// of `server.max_instances` slots and its own epoch ticker; the
/// process-wide instance gate keeps the sum within `max_instances`. A pool
/// maps its fiber stacks when it is made (one per slot for 0.2, three for
/// 0.3), so an engine is made only when `vm.max_map_count` has room for its
/// pool beside the other's.
pub struct Engines {
    /// The 0.2 and the 0.3 engine, once made.
    made: std::sync::Mutex<[Option<Engine>; 2]>,
    server: ServerConfig,
    max_memory_bytes: usize,
}

impl Engines {
    /// No engine yet: each is built on first use.
    pub fn new(server: &ServerConfig, max_memory_bytes: usize) -> Self {
        Self {
            made: std::sync::Mutex::new([None, None]),
            server: server.clone(),
            max_memory_bytes,
        }
    }

    /// The engine for components of `wasi`, built (with its epoch ticker)
    /// on first use. Fails when it cannot be built, or when it would be the
    /// second engine and its pool's mappings do not fit.
    pub fn get(&self, wasi: Wasi) -> wasmtime::Result<Engine> {
        let mut made = self.made.lock().unwrap_or_else(|e| e.into_inner());
        let (this, other) = match wasi {
            Wasi::P2 => (0, 1),
            Wasi::P3 => (1, 0),
        };
        if let Some(engine) = &made[this] {
            return Ok(engine.clone());
        }
        let stacks = match made[other] {
            Some(_) => Wasi::P2.stacks_per_instance() + Wasi::P3.stacks_per_instance(),
            None => wasi.stacks_per_instance(),
        };
        crate::limits::check_map_count(self.server.max_instances, stacks).map_err(|e| {
            if made[other].is_some() {
                wasmtime::format_err!("WASI 0.2 and 0.3 apps side by side: {e}")
            } else {
                wasmtime::format_err!("WASI {} apps: {e}", wasi.release())
            }
        })?;
        let engine = new_engine(&self.server, self.max_memory_bytes, wasi)?;
        crate::limits::start_epoch_ticker(&engine);
        tracing::info!("WASI {} engine started", wasi.release());
        Ok(made[this].insert(engine).clone())
    }
}

/// Builds an engine: component model, async calls on fibers, epoch
/// interruption, and a pooling allocator sized from `server.max_instances`
/// with memory slots of `max_memory_bytes`; component-model concurrency
/// only for WASI 0.3.
fn new_engine(
    server: &ServerConfig,
    max_memory_bytes: usize,
    wasi: Wasi,
) -> wasmtime::Result<Engine> {
    let instances = server.max_instances;
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(instances)
        .total_core_instances(instances.saturating_mul(CORE_INSTANCES_PER_COMPONENT))
        .total_memories(instances.saturating_mul(MEMORIES_PER_COMPONENT))
        .total_tables(instances.saturating_mul(TABLES_PER_COMPONENT))
        .total_stacks(instances.saturating_mul(wasi.stacks_per_instance()))
        .max_memory_size(max_memory_bytes)
        .linear_memory_keep_resident(MEMORY_KEEP_RESIDENT)
        .table_keep_resident(TABLE_KEEP_RESIDENT)
        .pagemap_scan(Enabled::Auto);

    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .wasm_component_model_async(wasi == Wasi::P3)
        .concurrency_support(wasi == Wasi::P3)
        // Guests yield at every epoch tick and are stopped past their CPU budget.
        .epoch_interruption(true)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    if wasi == Wasi::P3 {
        // Each engine's pool reserves address space for every slot: by
        // default 4 GiB per memory, which lets compiled code skip bounds
        // checks, and two such pools of 10,000 instances do not fit in the
        // 128 TiB a process may map. The 0.2 engine keeps that; the 0.3
        // engine reserves only the memory cap (its guests check bounds).
        config.memory_reservation(u64::try_from(max_memory_bytes).unwrap_or(u64::MAX));
    }
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

    /// Loads the component at `path` for the engine of the WASI release it
    /// serves: from the cache when it holds this exact file for that engine,
    /// otherwise compiled and then stored.
    ///
    /// A cache folder or entry that another user could write is refused: it
    /// holds machine code that runs in this process. An entry that does not
    /// prove it was compiled from these bytes for this engine is ignored and
    /// replaced.
    pub fn load(&self, engines: &Engines, path: &Path) -> Result<(Component, Wasi), LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_owned(),
            source,
        })?;
        check_component_header(&bytes).map_err(|what| LoadError::NotComponent {
            path: path.to_owned(),
            what,
        })?;
        let wasi = Wasi::of(&bytes).map_err(|message| LoadError::NotHandler {
            path: path.to_owned(),
            message,
        })?;
        let engine = &engines.get(wasi).map_err(|e| LoadError::Compile {
            path: path.to_owned(),
            message: format!("cannot create the WASI 0.3 engine: {e:#}"),
        })?;
        let stamp = CacheStamp::new(engine, &bytes);
        let cached = match &self.dir {
            Some(dir) => {
                check_private(dir, "folder")?;
                Some(dir.join(stamp.file_name()))
            }
            None => None,
        };

        if let Some(file) = cached.as_deref()
            && let Some(component) = load_cached(engine, file, &stamp)?
        {
            tracing::info!(component = %path.display(), "loaded from cache");
            cache_lookup("hit");
            return Ok((component, wasi));
        }

        if self.dir.is_some() {
            cache_lookup("miss");
        }
        let started = Instant::now();
        let component = Component::new(engine, &bytes).map_err(|e| LoadError::Compile {
            path: path.to_owned(),
            message: format!("{e:#}").replace('\n', " "),
        })?;
        tracing::info!(component = %path.display(), bytes = bytes.len(), elapsed = ?started.elapsed(), "compiled");
        if let Some(file) = cached
            && let Err(e) = store(&component, &file, &stamp)
        {
            tracing::warn!(cache = %file.display(), "cannot write compile cache: {e:#}");
        }
        Ok((component, wasi))
    }
}

fn cache_lookup(outcome: &str) {
    let outcome = crate::metrics::CacheOutcome {
        outcome: outcome.to_owned(),
    };
    crate::metrics::METRICS
        .compile_cache
        .get_or_create(&outcome)
        .inc();
}

/// What a cache entry must begin with to be loaded for a component: a
/// magic string, the SHA-256 of the component's bytes and of the engine's
/// compatibility hash. The file name carries the same digests, but a name
/// proves nothing: an entry renamed or copied from another component is
/// caught by its content.
struct CacheStamp([u8; CacheStamp::LEN]);

impl CacheStamp {
    const MAGIC: &[u8; 16] = b"cyclone-cache-1\0";
    const LEN: usize = 16 + 32 + 32;

    fn new(engine: &Engine, bytes: &[u8]) -> Self {
        let mut compat = Sha256Hasher(Sha256::new());
        engine.precompile_compatibility_hash().hash(&mut compat);
        let mut stamp = [0; Self::LEN];
        stamp[..16].copy_from_slice(Self::MAGIC);
        stamp[16..48].copy_from_slice(&Sha256::digest(bytes));
        stamp[48..].copy_from_slice(&compat.0.finalize());
        Self(stamp)
    }

    /// `<component digest>-<first 16 hex digits of the engine digest>.cwasm`.
    fn file_name(&self) -> String {
        let hex = |bytes: &[u8]| bytes.iter().map(|b| format!("{b:02x}")).collect::<String>();
        format!("{}-{}.cwasm", hex(&self.0[16..48]), hex(&self.0[48..56]))
    }
}

/// A `Hasher` that feeds SHA-256, so the engine's compatibility hash gives
/// the same cache key with every toolchain (`DefaultHasher` may change).
struct Sha256Hasher(Sha256);

impl Hasher for Sha256Hasher {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        unreachable!("only the full digest is used")
    }
}

/// Refuses `path` (a cache folder or entry) when a user other than this
/// one owns it or could write it, in the words ssh uses for key files.
fn check_private(path: &Path, what: &str) -> Result<(), LoadError> {
    use std::os::unix::fs::MetadataExt;
    let meta = match std::fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(LoadError::UnsafeCache {
                path: path.to_owned(),
                message: format!("cannot check the compile cache {what}: {e}"),
            });
        }
    };
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    let problem = if meta.file_type().is_symlink() {
        Some("is a symbolic link".to_owned())
    } else if meta.uid() != me {
        Some(format!(
            "belongs to user {} and not to this one",
            meta.uid()
        ))
    } else if meta.mode() & 0o022 != 0 {
        Some(format!(
            "can be written by other users (mode {:o})",
            meta.mode() & 0o777
        ))
    } else {
        None
    };
    match problem {
        None => Ok(()),
        Some(problem) => Err(LoadError::UnsafeCache {
            path: path.to_owned(),
            message: format!(
                "the compile cache {what} {problem}; it holds machine code cyclone runs, so it must be yours and writable only by you: `chmod go-w` it (and `chown` it), remove it, or choose another with --cache-dir"
            ),
        }),
    }
}

/// The component in cache entry `file`, when there is one made for `stamp`.
fn load_cached(
    engine: &Engine,
    file: &Path,
    stamp: &CacheStamp,
) -> Result<Option<Component>, LoadError> {
    check_private(file, "entry")?;
    let Ok(entry) = std::fs::read(file) else {
        return Ok(None);
    };
    let Some(code) = entry.strip_prefix(&stamp.0[..]) else {
        tracing::warn!(cache = %file.display(), "cache entry was not made from this component for this engine; recompiling");
        return Ok(None);
    };
    // SAFETY: the code was written by `Component::serialize` (the stamp
    // before it says so, for these component bytes and this engine), in a
    // folder and file that only this user can write (`check_private`).
    match unsafe { Component::deserialize(engine, code) } {
        Ok(component) => Ok(Some(component)),
        Err(e) => {
            tracing::warn!(cache = %file.display(), "ignoring unusable cache entry: {e}");
            Ok(None)
        }
    }
}

/// The wasm binary header: magic, then a version and layer. Core modules are
/// layer 0, components layer 1.
pub(crate) fn check_component_header(bytes: &[u8]) -> Result<(), &'static str> {
    match bytes {
        [0, b'a', b's', b'm', _, _, 1, 0, ..] => Ok(()),
        [0, b'a', b's', b'm', _, _, 0, 0, ..] => Err(
            "it is a core wasm module; build for wasm32-wasip2 or wrap it with `wasm-tools component new`",
        ),
        _ => Err("no wasm header"),
    }
}

/// Writes `component` to `file` after its stamp. The folder is created
/// private; the code goes to a fresh temporary file (a random name, created
/// exclusively, so nothing planted in the folder can redirect it) that is
/// then renamed into place.
fn store(component: &Component, file: &Path, stamp: &CacheStamp) -> anyhow::Result<()> {
    use anyhow::Context as _;
    use std::io::Write as _;
    use std::os::unix::fs::DirBuilderExt;
    let dir = file.parent().context("cache file has no folder")?;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .context("creating cache folder")?;
    let code = component.serialize().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut tmp = tempfile::Builder::new()
        .prefix(".cyclone-")
        .suffix(".tmp")
        .tempfile_in(dir)
        .context("creating a temporary cache file")?;
    tmp.write_all(&stamp.0).context("writing cache file")?;
    tmp.write_all(&code).context("writing cache file")?;
    tmp.persist(file).context("moving cache file into place")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cache_folder_others_can_write_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        assert!(check_private(dir.path(), "folder").is_ok());
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = check_private(dir.path(), "folder").unwrap_err().to_string();
        assert!(
            err.contains("can be written by other users (mode 777)"),
            "{err}"
        );
        assert!(err.contains("chmod go-w"), "{err}");
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(dir.path(), &link).unwrap();
        let err = check_private(&link, "entry").unwrap_err().to_string();
        assert!(err.contains("is a symbolic link"), "{err}");
        assert!(check_private(&dir.path().join("missing"), "entry").is_ok());
    }

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
