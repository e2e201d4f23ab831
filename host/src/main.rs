//! `cyclone`: serve WebAssembly components over HTTP.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use cyclone_host::Host;
use cyclone_host::config::Manifest;
use cyclone_host::dev;
use cyclone_host::engine::ComponentCache;
use tokio::signal::unix::{SignalKind, signal};

#[global_allocator]
static ALLOCATOR: Allocator = Allocator;

/// Allocations of at least this many bytes come from the system allocator.
const LARGE_ALLOCATION: usize = 1024;

/// mimalloc for small allocations, the system's malloc for the rest.
///
/// Every request allocates and frees a store, an instance and many small
/// objects; glibc's malloc and free were about 9% of the server's time under
/// load, so the small ones come from mimalloc. The few of a kilobyte or more
/// (hyper's 8 KiB buffers, wasmtime's VM contexts and instance state, the
/// connection's and the guest's tasks) cost less resident memory from glibc:
/// 10,000 suspended requests peaked at 102.6 KiB each with mimalloc alone,
/// 100.0 with this split and 99.5 with glibc alone.
struct Allocator;

fn large(size: usize) -> bool {
    size >= LARGE_ALLOCATION
}

// SAFETY: each block is freed and resized by the allocator that gave it out,
// chosen by its size, which every call receives.
unsafe impl GlobalAlloc for Allocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY (all forwarding calls): the caller's guarantees carry over.
        if large(layout.size()) {
            unsafe { System.alloc(layout) }
        } else {
            unsafe { mimalloc::MiMalloc.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if large(layout.size()) {
            unsafe { System.alloc_zeroed(layout) }
        } else {
            unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // `layout` is the one `ptr` was allocated with, so its size picks the
        // allocator that gave it out.
        if large(layout.size()) {
            unsafe { System.dealloc(ptr, layout) }
        } else {
            unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match (large(layout.size()), large(new_size)) {
            (true, true) => unsafe { System.realloc(ptr, layout, new_size) },
            (false, false) => unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) },
            _ => {
                // SAFETY: the caller guarantees that `new_size` with
                // `layout`'s alignment is a valid, non-zero layout.
                let new_layout =
                    unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
                let new = unsafe { self.alloc(new_layout) };
                if !new.is_null() {
                    // SAFETY: both blocks hold the smaller size and are
                    // distinct; the old one goes back where it came from.
                    unsafe {
                        std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                        self.dealloc(ptr, layout);
                    }
                }
                new
            }
        }
    }
}

/// Serve HTTP through WebAssembly components, a fresh sandboxed instance per request.
#[derive(Parser)]
#[command(name = "cyclone", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve a component (at every path) or a manifest (apps and their routes).
    ///
    /// Prints `cyclone listening on http://IP:PORT` once ready. SIGINT or
    /// SIGTERM stops accepting, lets in-flight requests finish, and exits 0;
    /// a second SIGINT or SIGTERM exits at once with status 1. SIGHUP reads
    /// the manifest again and applies what changed (see `cyclone reload`).
    /// Log verbosity follows CYCLONE_LOG (e.g. `debug`, `cyclone_host=trace`);
    /// CYCLONE_LOG_FORMAT=json writes one JSON object per line.
    Serve {
        /// A `.wasm` component, a `cyclone.toml` manifest, or the folder holding one.
        #[arg(default_value = "cyclone.toml")]
        path: PathBuf,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Write a new guest crate that builds and serves as it is.
    ///
    /// NAME is the crate's name and its new folder. The crate depends on
    /// the cyclone SDK by path: the `guest-sdk` folder of the checkout this
    /// binary was built from, or --sdk.
    New {
        /// The crate's name (and folder).
        name: String,
        /// What it starts as: one handler function (`http`), an
        /// `Application` with routes (`app`), or a websocket echo with a
        /// page (`websocket`).
        #[arg(long, value_enum, default_value = "http")]
        template: dev::new::Template,
        /// The SDK's folder (`guest-sdk` in a cyclone checkout).
        #[arg(long, value_name = "DIR", env = "CYCLONE_SDK")]
        sdk: Option<PathBuf>,
    },
    /// Build every app of a manifest that says how (`[apps.NAME] build`, or
    /// cargo for a Rust crate's folder).
    ///
    /// Installs the wasm32-wasip2 target first when rustup is there and
    /// the toolchain lacks it.
    Build {
        /// A `cyclone.toml` manifest, or the folder holding one.
        #[arg(default_value = "cyclone.toml")]
        manifest: PathBuf,
    },
    /// Build, then serve (see `serve`). The freshly built components are
    /// served even where a later deploy is recorded in the data folder.
    Up {
        /// A `cyclone.toml` manifest, or the folder holding one.
        #[arg(default_value = "cyclone.toml")]
        manifest: PathBuf,
        /// Rebuild an app when its sources change and deploy it into the
        /// running host (sessions and requests in flight are kept); a failed
        /// build leaves the running version serving.
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        serve: ServeArgs,
    },
    /// Deploy a component as the new version of an app, in the running host.
    ///
    /// Requests in flight finish on the version they started on; every
    /// request after the answer gets the new one. Needs the host's admin API
    /// (`[admin] listen`) and its token in CYCLONE_ADMIN_TOKEN.
    Deploy {
        /// The app's name in the manifest.
        app: String,
        /// The component, a `.wasm` file.
        component: PathBuf,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// List the running host's apps and their versions, as JSON.
    Apps {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Make the running host read its manifest again (as SIGHUP does).
    ///
    /// Added, removed and changed apps take effect at once, atomically;
    /// settings only a restart can change are listed. An invalid manifest
    /// is refused and the running configuration kept.
    Reload {
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Put an app's previous version back live.
    Rollback {
        /// The app's name in the manifest.
        app: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// How to serve.
#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on; port 0 picks a free port. Overrides the
    /// manifest's `server.listen` (default 127.0.0.1:8080).
    #[arg(long, value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// Folder for compiled components [default: $XDG_CACHE_HOME/cyclone or ~/.cache/cyclone].
    #[arg(long, value_name = "DIR", conflicts_with = "no_cache")]
    cache_dir: Option<PathBuf>,
    /// Compile components at every start instead of caching them.
    #[arg(long)]
    no_cache: bool,
}

impl ServeArgs {
    fn cache_dir(self) -> Option<PathBuf> {
        if self.no_cache {
            None
        } else {
            self.cache_dir.or_else(ComponentCache::default_dir)
        }
    }
}

/// Where the admin API is.
#[derive(clap::Args)]
struct AdminArgs {
    /// The admin API's address.
    #[arg(
        long,
        value_name = "URL",
        env = "CYCLONE_ADMIN_URL",
        default_value = "http://127.0.0.1:9901"
    )]
    admin: String,
}

fn main() -> ExitCode {
    let huge_pages_off = no_transparent_huge_pages();
    let cli = Cli::parse();
    // Log lines go through a bounded queue to a thread of their own, so a
    // slow reader of stderr never stalls a worker's event loop; when the
    // queue is full, lines are dropped rather than waited for.
    let (writer, _flush_on_exit) = tracing_appender::non_blocking::NonBlockingBuilder::default()
        .buffered_lines_limit(LOG_QUEUE_LINES)
        .lossy(true)
        .thread_name("cyclone-log")
        .finish(std::io::stderr());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CYCLONE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(writer);
    // CYCLONE_LOG_FORMAT=json: one JSON object per line, for log collectors.
    if std::env::var("CYCLONE_LOG_FORMAT").is_ok_and(|format| format == "json") {
        logs.json().init();
    } else {
        logs.with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init();
    }
    if let Err(e) = huge_pages_off {
        // Kernels without THP support refuse, and then there is nothing to turn off.
        tracing::debug!("could not turn off transparent huge pages: {e}");
    }
    let outcome = match cli.command {
        Command::Serve { path, serve: args } => {
            let listen = args.listen;
            serve(&manifest_path(path), listen, args.cache_dir(), Mode::Serve)
        }
        Command::New {
            name,
            template,
            sdk,
        } => new(&name, template, sdk),
        Command::Build { manifest } => build(&manifest_path(manifest)).map(drop),
        Command::Up {
            manifest,
            watch,
            serve: args,
        } => {
            let manifest = manifest_path(manifest);
            build(&manifest).and_then(|steps| {
                let listen = args.listen;
                let watch = watch.then_some(steps);
                serve(&manifest, listen, args.cache_dir(), Mode::Up { watch })
            })
        }
        Command::Deploy {
            app,
            component,
            admin,
        } => {
            return admin_call(
                &admin,
                "PUT",
                &format!("/apps/{app}/component"),
                Some(&component),
            );
        }
        Command::Apps { admin } => return admin_call(&admin, "GET", "/apps", None),
        Command::Reload { admin } => return admin_call(&admin, "POST", "/reload", None),
        Command::Rollback { app, admin } => {
            return admin_call(&admin, "POST", &format!("/apps/{app}/rollback"), None);
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// A manifest's path: `path`, or `path/cyclone.toml` when it is a folder.
fn manifest_path(path: PathBuf) -> PathBuf {
    if path.is_dir() {
        path.join("cyclone.toml")
    } else {
        path
    }
}

fn new(name: &str, template: dev::new::Template, sdk: Option<PathBuf>) -> anyhow::Result<()> {
    let sdk = sdk.or_else(dev::new::bundled_sdk).context(
        "cannot find the cyclone SDK: pass --sdk DIR (or set CYCLONE_SDK) with the guest-sdk folder of a cyclone checkout",
    )?;
    let dir = PathBuf::from(name);
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .context("NAME must end in a folder name")?;
    let files = dev::new::create(&dir, name, template, &sdk).map_err(anyhow::Error::msg)?;
    for file in files {
        println!("created {}", file.display());
    }
    println!(
        "\nBuild and serve it on http://127.0.0.1:8080:\n\n    cd {} && cyclone up\n",
        dir.display()
    );
    Ok(())
}

/// Runs the build steps of the manifest at `path`; returns them.
fn build(path: &Path) -> anyhow::Result<Vec<dev::Step>> {
    let manifest = Manifest::load(path)?;
    let folder = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    };
    let steps = dev::plan(&manifest, &folder);
    dev::build_all(&steps).map_err(anyhow::Error::msg)?;
    Ok(steps)
}

/// One admin API call; prints the answer's body, exits 1 unless it is a 2xx.
fn admin_call(admin: &AdminArgs, method: &str, path: &str, file: Option<&Path>) -> ExitCode {
    match admin_request(admin, method, path, file) {
        Ok((status, body)) => {
            print!("{body}");
            if status.is_success() {
                ExitCode::SUCCESS
            } else {
                eprintln!("error: the admin API answered {status}");
                ExitCode::FAILURE
            }
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn admin_request(
    admin: &AdminArgs,
    method: &str,
    path: &str,
    file: Option<&Path>,
) -> anyhow::Result<(http::StatusCode, String)> {
    use http_body_util::BodyExt;
    let token = std::env::var("CYCLONE_ADMIN_TOKEN")
        .context("CYCLONE_ADMIN_TOKEN is not set: it holds the admin API's token")?;
    let base: http::Uri = admin
        .admin
        .parse()
        .with_context(|| format!("--admin {}: not a URL", admin.admin))?;
    if base.scheme_str() != Some("http") {
        anyhow::bail!("--admin {}: only http:// is supported", admin.admin);
    }
    let authority = base
        .authority()
        .with_context(|| format!("--admin {}: no host", admin.admin))?
        .to_string();
    let body = match file {
        Some(file) => std::fs::read(file).with_context(|| format!("reading {}", file.display()))?,
        None => Vec::new(),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        // A host started a moment ago may not listen yet: retry for a while.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        let stream = loop {
            match tokio::net::TcpStream::connect(&authority).await {
                Ok(stream) => break stream,
                Err(e)
                    if e.kind() == std::io::ErrorKind::ConnectionRefused
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e)
                        .context(format!("connecting to the admin API at {authority}")));
                }
            }
        };
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, &authority)
            .header(http::header::AUTHORIZATION, format!("Bearer {token}"))
            .body(http_body_util::Full::new(bytes::Bytes::from(body)))?;
        let response = sender.send_request(request).await?;
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    })
}

/// Log lines waiting to be written at most; past it new lines are dropped.
const LOG_QUEUE_LINES: usize = 16_384;

/// mimalloc asks the kernel for transparent huge pages on its arenas, and a
/// huge page is resident as a whole however little of it is in use: with
/// thousands of suspended requests each holding a few small allocations, that
/// put about 14 KiB of untouched memory on every request. Turn them off for
/// this process before the heap grows; the system setting is left alone.
fn no_transparent_huge_pages() -> std::io::Result<()> {
    // SAFETY: PR_SET_THP_DISABLE takes plain integers and touches no memory.
    if unsafe { libc::prctl(libc::PR_SET_THP_DISABLE, 1, 0, 0, 0) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Every connection is a file descriptor: take the hard open-file limit as
/// the soft one, so the soft default (often 1024) does not cap connections.
fn raise_open_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid resource and a pointer to a
    // live rlimit.
    let raised = unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 && {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit) == 0
        }
    };
    if raised {
        tracing::debug!(open_files = limit.rlim_cur, "raised the open-file limit");
    } else {
        tracing::warn!(
            "could not raise the open-file limit: {}",
            std::io::Error::last_os_error()
        );
    }
}

/// How `serve` starts.
enum Mode {
    /// `cyclone serve`: a restart serves what was deployed last.
    Serve,
    /// `cyclone up`: the manifest's components were just built and are
    /// served; with build steps to watch, they are rebuilt and deployed as
    /// their sources change.
    Up { watch: Option<Vec<dev::Step>> },
}

/// Serves the component or manifest at `path` until SIGINT or SIGTERM.
fn serve(
    path: &Path,
    listen: Option<SocketAddr>,
    cache_dir: Option<PathBuf>,
    mode: Mode,
) -> anyhow::Result<()> {
    let bare = path.extension().is_some_and(|ext| ext == "wasm");
    let manifest = if bare {
        Manifest::single_component(path)
    } else {
        Manifest::load(path)?
    };
    raise_open_file_limit();
    let host = Host::new(
        manifest,
        &cyclone_host::Options {
            cache_dir,
            ignore_deployed: matches!(mode, Mode::Up { .. }),
        },
    )?;
    let deployments = host.deployments();
    if !bare {
        deployments.set_manifest_path(path.to_owned());
    }
    let listeners = host.bind(listen).context("binding the listening socket")?;
    let admin = host
        .bind_admin()
        .context("binding the admin API's socket")?;
    let addr = listeners[0]
        .local_addr()
        .context("reading the bound address")?;

    // Install the signal handlers before announcing readiness.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal runtime")?;
    let (mut interrupt, mut terminate, mut hangup) = signals
        .block_on(async {
            Ok::<_, std::io::Error>((
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
                signal(SignalKind::hangup())?,
            ))
        })
        .context("installing signal handlers")?;
    std::thread::Builder::new()
        .name("cyclone-signals".into())
        .spawn(move || {
            signals.block_on(async {
                let name = loop {
                    tokio::select! {
                        _ = interrupt.recv() => break "SIGINT",
                        _ = terminate.recv() => break "SIGTERM",
                        _ = hangup.recv() => {
                            tracing::info!("SIGHUP: reading the manifest again");
                            let deployments = deployments.clone();
                            // Compiling may take a while; the signals keep being heard.
                            std::thread::spawn(move || {
                                if let Err(e) = deployments.reload_file() {
                                    tracing::error!("reload refused, the running configuration is kept: {e}");
                                }
                            });
                        }
                    }
                };
                tracing::info!(
                    "{name}: shutting down after in-flight requests finish (signal again to stop at once)"
                );
                let _ = stop.send(true);
                // A second signal during the drain means "now", as for most servers.
                let name = tokio::select! {
                    _ = interrupt.recv() => "SIGINT",
                    _ = terminate.recv() => "SIGTERM",
                };
                tracing::warn!("{name} again: exiting without waiting for the drain");
                std::process::exit(1);
            });
        })
        .context("starting the signal thread")?;

    let scheme = if host.deployments().certificate().is_some() {
        "https"
    } else {
        "http"
    };
    if let Mode::Up { watch: Some(steps) } = mode {
        let deployments = host.deployments();
        let stopped = stopped.clone();
        std::thread::Builder::new()
            .name("cyclone-watch".into())
            .spawn(move || dev::watch(steps, deployments, stopped))
            .context("starting the watch thread")?;
    }
    println!("cyclone listening on {scheme}://{addr}");
    host.run(listeners, admin, stopped).context("serving")?;
    tracing::info!("stopped");
    Ok(())
}
