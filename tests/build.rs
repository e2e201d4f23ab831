//! Builds every guest component once for the integration tests.
//!
//! Each folder in `examples/` and `tests/guests/` is a workspace package of the
//! same name. They are built for wasm32-wasip2 with the `guest` profile and a target
//! folder inside `OUT_DIR` (so this nested cargo does not wait on the outer
//! one's lock), and `components.rs` gets one constant per component path, e.g.
//! `HELLO` for `examples/hello`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

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
    let mut cargo = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .current_dir(&root)
        .args(["build", "--profile", "guest", "--target", "wasm32-wasip2"])
        .arg("--target-dir")
        .arg(&target_dir);
    for name in &names {
        cargo.args(["-p", name]);
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

    let built = target_dir.join("wasm32-wasip2/guest");
    let mut constants = String::new();
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

/// Libraries (`cdylib`) are named with underscores, binaries keep their dashes.
fn wasm_file(built: &Path, name: &str, package: &Path) -> PathBuf {
    if package.join("src/lib.rs").exists() {
        built.join(format!("{}.wasm", name.replace('-', "_")))
    } else {
        built.join(format!("{name}.wasm"))
    }
}
