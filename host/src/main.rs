//! `cyclone`: serve WebAssembly components over HTTP.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use cyclone_host::Host;
use cyclone_host::config::Manifest;
use cyclone_host::engine::ComponentCache;
use tokio::signal::unix::{SignalKind, signal};

// Every request allocates and frees a store, an instance and hyper buffers;
// glibc's malloc and free were about 9% of the server's time under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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
    /// a second SIGINT or SIGTERM exits at once with status 1.
    /// Log verbosity follows CYCLONE_LOG (e.g. `debug`, `cyclone_host=trace`).
    Serve {
        /// A `.wasm` component, or a `cyclone.toml` manifest.
        #[arg(default_value = "cyclone.toml")]
        path: PathBuf,
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
    },
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("CYCLONE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(writer)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    if let Err(e) = huge_pages_off {
        // Kernels without THP support refuse, and then there is nothing to turn off.
        tracing::debug!("could not turn off transparent huge pages: {e}");
    }
    match cli.command {
        Command::Serve {
            path,
            listen,
            cache_dir,
            no_cache,
        } => {
            let cache_dir = if no_cache {
                None
            } else {
                cache_dir.or_else(ComponentCache::default_dir)
            };
            match serve(&path, listen, cache_dir) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::FAILURE
                }
            }
        }
    }
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

fn serve(
    path: &Path,
    listen: Option<SocketAddr>,
    cache_dir: Option<PathBuf>,
) -> anyhow::Result<()> {
    let manifest = if path.extension().is_some_and(|ext| ext == "wasm") {
        Manifest::single_component(path)
    } else {
        Manifest::load(path)?
    };
    raise_open_file_limit();
    let host = Host::new(manifest, cache_dir)?;
    let listeners = host.bind(listen).context("binding the listening socket")?;
    let addr = listeners[0]
        .local_addr()
        .context("reading the bound address")?;

    // Install the signal handlers before announcing readiness.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal runtime")?;
    let (mut interrupt, mut terminate) = signals
        .block_on(async {
            Ok::<_, std::io::Error>((
                signal(SignalKind::interrupt())?,
                signal(SignalKind::terminate())?,
            ))
        })
        .context("installing signal handlers")?;
    std::thread::Builder::new()
        .name("cyclone-signals".into())
        .spawn(move || {
            signals.block_on(async {
                let name = tokio::select! {
                    _ = interrupt.recv() => "SIGINT",
                    _ = terminate.recv() => "SIGTERM",
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

    println!("cyclone listening on http://{addr}");
    host.run(listeners, stopped).context("serving")?;
    tracing::info!("stopped");
    Ok(())
}
