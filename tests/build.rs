//! Builds every guest component once for the integration tests.
//!
//! Each folder in `examples/` and `tests/guests/` is a workspace package of the
//! same name. They are built for wasm32-wasip2 with the `guest` profile and a target
//! folder inside `OUT_DIR` (so this nested cargo does not wait on the outer
//! one's lock), and `components.rs` gets one constant per component path, e.g.
//! `HELLO` for `examples/hello`. The examples in [`WASI_P3`] are built a
//! second time with cyclone-sdk's `wasip3` feature, in a target folder of
//! their own (the same file names), as `HELLO_P3` and so on.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Examples whose tests also run against their WASI 0.3 build.
const WASI_P3: &[&str] = &["aggregator", "chat", "hello", "tour"];

fn main() {
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest_dir.parent().unwrap().to_owned();
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap());
    let target_dir = out_dir.join("guests");

    let mut packages = Vec::new();
    for folder in ["examples", "tests/guests"] {
        let folder = root.join(folder);
        println!("cargo:rerun-if-changed={}", folder.display());
        let mut entries: Vec<_> = std::fs::read_dir(&folder)
            .unwrap_or_else(|e| panic!("reading {}: {e}", folder.display()))
            .map(|entry| entry.unwrap().path())
            .filter(|path| path.join("Cargo.toml").exists())
            .collect();
        entries.sort();
        packages.extend(entries);
    }
    for shared in ["guest-sdk", "wit", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(shared).display());
    }

    let names: Vec<String> = packages
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    build(&root, &target_dir, &names, &[]);
    let target_dir_p3 = out_dir.join("guests-p3");
    build(
        &root,
        &target_dir_p3,
        WASI_P3,
        &["--features", "cyclone-sdk/wasip3"],
    );

    let built = target_dir.join("wasm32-wasip2/guest");
    let built_p3 = target_dir_p3.join("wasm32-wasip2/guest");
    let mut constants = String::new();
    for name in WASI_P3 {
        let file = built_p3.join(format!("{name}.wasm"));
        assert!(
            file.exists(),
            "guest {name} did not produce {}",
            file.display()
        );
        writeln!(
            constants,
            "/// The WASI 0.3 build of `examples/{name}`.\npub const {}_P3: &str = {:?};",
            name.to_uppercase(),
            file.display().to_string(),
        )
        .unwrap();
    }
    for (name, package) in names.iter().zip(&packages) {
        let file = wasm_file(&built, name, package);
        assert!(
            file.exists(),
            "guest {name} did not produce {}",
            file.display()
        );
        let constant = name.to_uppercase().replace('-', "_");
        writeln!(
            constants,
            "/// The component built from `{}`.\npub const {constant}: &str = {:?};",
            package.strip_prefix(&root).unwrap().display(),
            file.display().to_string(),
        )
        .unwrap();
    }
    std::fs::write(out_dir.join("components.rs"), constants).unwrap();
}

/// Builds `packages` into `target_dir` with the `guest` profile, passing
/// `extra` arguments to cargo.
fn build(root: &Path, target_dir: &Path, packages: &[impl AsRef<str>], extra: &[&str]) {
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .current_dir(root)
        .args(["build", "--profile", "guest", "--target", "wasm32-wasip2"])
        .arg("--target-dir")
        .arg(target_dir)
        .args(extra);
    for name in packages {
        cargo.args(["-p", name.as_ref()]);
    }
    // The outer build's compiler settings are for the host, not for the guests.
    for var in [
        "CARGO_ENCODED_RUSTFLAGS",
        "RUSTFLAGS",
        "RUSTC_WRAPPER",
        "RUSTC_WORKSPACE_WRAPPER",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
    ] {
        cargo.env_remove(var);
    }
    let status = cargo.status().expect("running cargo to build the guests");
    assert!(
        status.success(),
        "building the guest components failed (is the wasm32-wasip2 target installed? `rustup target add wasm32-wasip2`)"
    );
}

/// Libraries (`cdylib`) are named with underscores, binaries keep their dashes.
fn wasm_file(built: &Path, name: &str, package: &Path) -> PathBuf {
    if package.join("src/lib.rs").exists() {
        built.join(format!("{}.wasm", name.replace('-', "_")))
    } else {
        built.join(format!("{name}.wasm"))
    }
}
