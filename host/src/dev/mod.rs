//! The developer loop: `cyclone new` (a guest crate from a template),
//! `cyclone build` (each app's build command), and `cyclone up --watch`
//! (rebuild an app when its sources change and deploy it into the running
//! host, sessions kept).

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::{Build, Manifest};
use crate::deploy::Deployments;

pub mod new;

/// The build command of an app in a Rust crate's folder that names none.
pub const DEFAULT_BUILD: &str = "cargo build --profile guest --target wasm32-wasip2";

/// The target guests are built for.
const TARGET: &str = "wasm32-wasip2";

/// One build command and the apps whose components it makes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// The shell command.
    pub command: String,
    /// The folder it runs in.
    pub workdir: PathBuf,
    /// What `--watch` looks at: files and folders.
    pub watch: Vec<PathBuf>,
    /// The apps it builds, with their components' paths.
    pub apps: Vec<(String, PathBuf)>,
}

/// The build steps of `manifest`, read from `manifest_dir`: one per
/// distinct command and folder, in the apps' order; apps with no build
/// command (and no `Cargo.toml` beside the manifest) have none.
pub fn plan(manifest: &Manifest, manifest_dir: &Path) -> Vec<Step> {
    let mut steps: Vec<Step> = Vec::new();
    for (name, app) in &manifest.apps {
        let (command, workdir, watch) = match &app.build {
            Some(Build::Command(command)) => (command.clone(), manifest_dir.to_owned(), vec![]),
            Some(Build::Table {
                command,
                workdir,
                watch,
            }) => {
                let workdir = match workdir {
                    Some(dir) => manifest_dir.join(dir),
                    None => manifest_dir.to_owned(),
                };
                let watch = watch.iter().map(|path| workdir.join(path)).collect();
                (command.clone(), workdir, watch)
            }
            None if manifest_dir.join("Cargo.toml").is_file() => {
                (DEFAULT_BUILD.to_owned(), manifest_dir.to_owned(), vec![])
            }
            None => continue,
        };
        let watch = if watch.is_empty() {
            vec![workdir.clone()]
        } else {
            watch
        };
        let app = (name.clone(), app.component.clone());
        match steps
            .iter_mut()
            .find(|step| step.command == command && step.workdir == workdir)
        {
            Some(step) => {
                step.apps.push(app);
                for path in watch {
                    if !step.watch.contains(&path) {
                        step.watch.push(path);
                    }
                }
            }
            None => steps.push(Step {
                command,
                workdir,
                watch,
                apps: vec![app],
            }),
        }
    }
    steps
}

/// Runs every step; stops at the first failure. The commands' output goes
/// to stderr.
pub fn build_all(steps: &[Step]) -> Result<(), String> {
    if steps.is_empty() {
        eprintln!(
            "nothing to build: no app has a build command or a Cargo.toml beside the manifest"
        );
    }
    for step in steps {
        run(step)?;
    }
    Ok(())
}

/// Runs one step's command and checks that it made every component.
pub fn run(step: &Step) -> Result<(), String> {
    let names: Vec<&str> = step.apps.iter().map(|(name, _)| name.as_str()).collect();
    let names = names.join(", ");
    if step.command.contains(TARGET) {
        ensure_target(&step.workdir)?;
    }
    eprintln!(
        "building {names}: {} (in {})",
        step.command,
        step.workdir.display()
    );
    let status = Command::new("sh")
        .arg("-c")
        .arg(&step.command)
        .current_dir(&step.workdir)
        .stdin(Stdio::null())
        // The command's output is the build's, not the server's: stdout
        // stays for the server's own `listening` line.
        .stdout(stderr_handle())
        .status()
        .map_err(|e| format!("building {names}: cannot run `sh -c {}`: {e}", step.command))?;
    if !status.success() {
        return Err(format!(
            "building {names}: `{}` failed ({status})",
            step.command
        ));
    }
    for (name, component) in &step.apps {
        if !component.is_file() {
            return Err(format!(
                "building {name}: `{}` succeeded but {} is not there; does `component` name what it builds?",
                step.command,
                component.display()
            ));
        }
    }
    Ok(())
}

fn stderr_handle() -> Stdio {
    use std::os::fd::AsFd;
    match std::io::stderr().as_fd().try_clone_to_owned() {
        Ok(fd) => Stdio::from(fd),
        Err(_) => Stdio::inherit(),
    }
}

/// Installs the guest target with rustup when rustup is there and the
/// toolchain that builds in `workdir` lacks it.
fn ensure_target(workdir: &Path) -> Result<(), String> {
    let Ok(installed) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(workdir)
        .stderr(Stdio::null())
        .output()
    else {
        // No rustup: the build's own error says what is missing.
        return Ok(());
    };
    if !installed.status.success()
        || String::from_utf8_lossy(&installed.stdout)
            .lines()
            .any(|line| line.trim() == TARGET)
    {
        return Ok(());
    }
    eprintln!("installing the {TARGET} target: rustup target add {TARGET}");
    let status = Command::new("rustup")
        .args(["target", "add", TARGET])
        .current_dir(workdir)
        .stdin(Stdio::null())
        .stdout(stderr_handle())
        .status()
        .map_err(|e| format!("rustup target add {TARGET}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("rustup target add {TARGET} failed ({status})"))
    }
}

/// How often `--watch` looks at the sources.
const POLL: Duration = Duration::from_millis(500);

/// Files `--watch` looks at, at most, per step; past it the rest are not watched.
const MAX_WATCHED: usize = 20_000;

/// Watches each step's sources, and when they change, rebuilds and deploys
/// its apps into `deployments`. A failed build leaves the running versions
/// serving. Returns when `stop` turns true.
pub fn watch(
    steps: Vec<Step>,
    deployments: Arc<Deployments>,
    stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut seen: Vec<u64> = steps.iter().map(fingerprint).collect();
    for step in &steps {
        let watched: Vec<String> = step.watch.iter().map(|p| p.display().to_string()).collect();
        tracing::info!(apps = ?step.apps.iter().map(|(n, _)| n).collect::<Vec<_>>(), "watching {}", watched.join(", "));
    }
    while !*stop.borrow() {
        std::thread::sleep(POLL);
        for (step, seen) in steps.iter().zip(&mut seen) {
            let mut now = fingerprint(step);
            if now == *seen {
                continue;
            }
            // Editors write in bursts: wait until the files hold still.
            loop {
                std::thread::sleep(POLL / 2);
                let again = fingerprint(step);
                if again == now {
                    break;
                }
                now = again;
            }
            rebuild(step, &deployments);
            // What was built is what the sources held before the build: a
            // change saved while it ran is rebuilt next. (What the build
            // itself writes there, a new lock file, costs one rebuild that
            // finds the component unchanged.)
            *seen = now;
        }
    }
}

/// Builds `step` and deploys each app whose component changed.
fn rebuild(step: &Step, deployments: &Deployments) {
    tracing::info!("sources changed: rebuilding");
    if let Err(e) = run(step) {
        tracing::error!("{e}; the running versions keep serving");
        return;
    }
    let live: BTreeMap<String, String> = deployments
        .status()
        .into_iter()
        .map(|app| (app.name, app.live.sha256))
        .collect();
    for (name, component) in &step.apps {
        let bytes = match std::fs::read(component) {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::error!(app = %name, "cannot read {}: {e}", component.display());
                continue;
            }
        };
        if live.get(name) == Some(&crate::deploy::sha256_hex(&bytes)) {
            tracing::info!(app = %name, "component unchanged");
            continue;
        }
        match deployments.deploy(name, &bytes) {
            Ok(status) => tracing::info!(
                app = %name,
                version = status.live.version,
                "rebuilt and deployed"
            ),
            Err(e) => {
                tracing::error!(app = %name, "not deployed, the running version keeps serving: {e}")
            }
        }
    }
}

/// A hash of the names, sizes and modification times of the files `step` watches.
fn fingerprint(step: &Step) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    let mut files = Vec::new();
    for path in &step.watch {
        collect(path, &mut files);
    }
    files.sort();
    files.hash(&mut hasher);
    hasher.finish()
}

fn collect(path: &Path, files: &mut Vec<(PathBuf, u64, SystemTime)>) {
    if files.len() >= MAX_WATCHED {
        return;
    }
    let Ok(meta) = std::fs::metadata(path) else {
        return;
    };
    if meta.is_file() {
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        files.push((path.to_owned(), meta.len(), modified));
        return;
    }
    let Ok(entries) = std::fs::read_dir(path) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // Build output and tool folders (.git, .cyclone) are not sources.
        if name == "target" || name.starts_with('.') {
            continue;
        }
        collect(&entry.path(), files);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(text: &str, dir: &Path) -> Manifest {
        Manifest::parse(text, dir).unwrap()
    }

    #[test]
    fn a_crate_folder_builds_with_cargo_by_default_once_for_all_its_apps() {
        let dir = tempfile::tempdir().unwrap();
        let text = "[apps.a]\ncomponent = \"a.wasm\"\nroutes = [\"/a\"]\n\
                    [apps.b]\ncomponent = \"b.wasm\"\nroutes = [\"/b\"]\n";
        assert!(plan(&manifest(text, dir.path()), dir.path()).is_empty());

        std::fs::write(dir.path().join("Cargo.toml"), "").unwrap();
        let steps = plan(&manifest(text, dir.path()), dir.path());
        assert_eq!(steps.len(), 1);
        assert_eq!(steps[0].command, DEFAULT_BUILD);
        assert_eq!(steps[0].workdir, dir.path());
        assert_eq!(steps[0].watch, vec![dir.path().to_owned()]);
        let apps: Vec<&str> = steps[0].apps.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(apps, ["a", "b"]);
        assert_eq!(steps[0].apps[0].1, dir.path().join("a.wasm"));
    }

    #[test]
    fn a_build_command_or_table_says_where_and_what_to_watch() {
        let dir = tempfile::tempdir().unwrap();
        let text = "[apps.a]\ncomponent = \"a.wasm\"\nroutes = [\"/a\"]\nbuild = \"make a\"\n\
                    [apps.b]\ncomponent = \"b.wasm\"\nroutes = [\"/b\"]\n\
                    build = { command = \"make b\", workdir = \"b\", watch = [\"src\", \"b.c\"] }\n";
        let steps = plan(&manifest(text, dir.path()), dir.path());
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[0].command, "make a");
        assert_eq!(steps[0].workdir, dir.path());
        assert_eq!(steps[1].command, "make b");
        assert_eq!(steps[1].workdir, dir.path().join("b"));
        assert_eq!(
            steps[1].watch,
            vec![dir.path().join("b/src"), dir.path().join("b/b.c")]
        );
    }

    #[test]
    fn the_fingerprint_changes_with_sources_but_not_with_build_output() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("src")).unwrap();
        std::fs::create_dir_all(dir.path().join("target")).unwrap();
        std::fs::write(dir.path().join("src/lib.rs"), "one").unwrap();
        let step = Step {
            command: String::new(),
            workdir: dir.path().to_owned(),
            watch: vec![dir.path().to_owned()],
            apps: Vec::new(),
        };
        let before = fingerprint(&step);
        std::fs::write(dir.path().join("target/out.wasm"), "built").unwrap();
        std::fs::write(dir.path().join(".hidden"), "x").unwrap();
        assert_eq!(fingerprint(&step), before);
        std::fs::write(dir.path().join("src/lib.rs"), "three").unwrap();
        assert_ne!(fingerprint(&step), before);
    }
}
