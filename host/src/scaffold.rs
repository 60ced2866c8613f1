//! `posbridge plugin new`: writes a guest crate that builds to an installable component.

use std::path::Path;

use anyhow::Context;

/// What to scaffold.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Kind {
    /// A POS provider.
    Provider,
    /// An event hook.
    Hook,
}

/// Creates the crate at `dir`.
pub fn create(kind: Kind, name: &str, sdk_path: &Path, dir: &Path) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    anyhow::ensure!(
        valid,
        "plugin names are 1-63 characters of a-z, 0-9 and '-'"
    );
    anyhow::ensure!(!dir.exists(), "{} already exists", dir.display());
    let sdk = std::fs::canonicalize(sdk_path)
        .with_context(|| format!("the SDK is not at {} (pass --sdk-path)", sdk_path.display()))?;
    std::fs::create_dir_all(dir.join("src"))?;
    let manifest = CARGO_TOML
        .replace("{name}", name)
        .replace("{sdk}", &sdk.display().to_string().replace('\\', "/"));
    std::fs::write(dir.join("Cargo.toml"), manifest)?;
    let source = match kind {
        Kind::Provider => PROVIDER_RS,
        Kind::Hook => HOOK_RS,
    };
    std::fs::write(dir.join("src/lib.rs"), source.replace("{name}", name))?;
    Ok(())
}

const CARGO_TOML: &str = r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
posbridge-plugin-sdk = { path = "{sdk}" }
serde = { version = "1", features = ["derive"] }
serde_json = "1"

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true

# A standalone crate, not a member of any enclosing workspace.
[workspace]
"#;

const PROVIDER_RS: &str = include_str!("scaffold/provider.rs.txt");
const HOOK_RS: &str = include_str!("scaffold/hook.rs.txt");
