//! `cyclone new`: a guest crate that builds and serves as it is.

use std::path::{Path, PathBuf};

/// What the new crate starts as (`cyclone new --template`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Template {
    /// One handler function answering every request.
    Http,
    /// An `Application` with routes and a `Handler`.
    App,
    /// A websocket echo and a page that uses it.
    Websocket,
}

impl Template {
    fn source(self) -> &'static str {
        match self {
            Template::Http => include_str!("templates/http.rs"),
            Template::App => include_str!("templates/app.rs"),
            Template::Websocket => include_str!("templates/websocket.rs"),
        }
    }
}

/// The guest SDK this binary was built with, when its sources are still there.
pub fn bundled_sdk() -> Option<PathBuf> {
    let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../guest-sdk");
    sdk.join("Cargo.toml")
        .is_file()
        .then(|| sdk.canonicalize().unwrap_or(sdk))
}

/// Writes the crate `name` into the new folder `dir`, depending on the SDK
/// in the folder `sdk`. Returns the files written.
pub fn create(
    dir: &Path,
    name: &str,
    template: Template,
    sdk: &Path,
) -> Result<Vec<PathBuf>, String> {
    check_name(name)?;
    if !sdk.join("Cargo.toml").is_file() {
        return Err(format!(
            "{}: not the cyclone SDK's folder (no Cargo.toml); pass --sdk with the guest-sdk folder of a cyclone checkout",
            sdk.display()
        ));
    }
    if dir.exists() {
        return Err(format!("{} already exists", dir.display()));
    }
    let sdk = sdk.canonicalize().unwrap_or_else(|_| sdk.to_owned());
    let sdk = toml::Value::String(sdk.display().to_string());
    let file = name.replace('-', "_");
    let files = [
        ("Cargo.toml", cargo_toml(name, &sdk)),
        ("src/lib.rs", template.source().replace("{{name}}", name)),
        ("cyclone.toml", manifest(name, &file)),
        (".cargo/config.toml", CARGO_CONFIG.to_owned()),
        (".gitignore", "/target\n/.cyclone\n".to_owned()),
    ];
    let mut written = Vec::new();
    for (path, text) in files {
        let path = dir.join(path);
        let parent = path.parent().unwrap_or(dir);
        std::fs::create_dir_all(parent)
            .and_then(|()| std::fs::write(&path, text))
            .map_err(|e| format!("writing {}: {e}", path.display()))?;
        written.push(path);
    }
    Ok(written)
}

/// Crate names: ASCII letters, digits, `-` and `_`, starting with a letter.
fn check_name(name: &str) -> Result<(), String> {
    let valid = name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{name}` is not a crate name: use ASCII letters, digits, `-` and `_`, starting with a letter"
        ))
    }
}

fn cargo_toml(name: &str, sdk: &toml::Value) -> String {
    format!(
        r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"

[lib]
crate-type = ["cdylib"]

[dependencies]
cyclone-sdk = {{ path = {sdk} }}

# `cyclone build` builds with this profile: a smaller component makes every
# instance cheaper.
[profile.guest]
inherits = "release"
lto = true
codegen-units = 1
opt-level = "s"
debug = false
strip = true

# A workspace of its own, wherever the folder is.
[workspace]
"#
    )
}

fn manifest(name: &str, file: &str) -> String {
    format!(
        r#"# Build and serve on http://127.0.0.1:8080: cyclone up
# Rebuild and redeploy on every change:   cyclone up --watch
[apps.{name}]
component = "target/wasm32-wasip2/guest/{file}.wasm"
routes = ["/..."]
# How `cyclone build` makes it (the default for a crate's folder):
# build = "{default}"
"#,
        default = super::DEFAULT_BUILD,
    )
}

/// A stack one KiB short of 1 MiB lets its first page also hold the first
/// KiB of data: one page fewer per instance.
const CARGO_CONFIG: &str = r#"[target.wasm32-wasip2]
rustflags = ["-C", "link-arg=-zstack-size=1047552"]
"#;
