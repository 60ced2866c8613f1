//! `posbridge plugin new`: writes a guest crate that builds to an installable component in
//! any directory, with stock `cargo build --target wasm32-wasip2` and nothing from a
//! posbridge checkout.
//!
//! The crate depends on `posbridge-plugin-sdk = "0.3"` the way it will once the SDK is on
//! crates.io. Until then the SDK's sources, embedded in this binary at build time, are
//! written to `vendor/posbridge-plugin-sdk/` beside it and `[patch.crates-io]` points there;
//! the SDK's own dependencies come from the package registry as usual. Deleting the patch
//! section and `vendor/` is all it takes to switch to the published crate.

use std::path::{Path, PathBuf};

use anyhow::Context;

/// What to scaffold.
#[derive(Clone, Copy, clap::ValueEnum)]
pub enum Kind {
    /// A POS provider.
    Provider,
    /// An event hook.
    Hook,
}

/// The SDK version requirement the scaffold writes: the contract the host speaks newest.
pub const SDK_REQUIREMENT: &str = "0.3";

/// Where the vendored SDK goes, relative to the new crate.
const VENDOR_DIR: &str = "vendor/posbridge-plugin-sdk";

/// The SDK crate's files (path inside the crate, contents), embedded at build time.
/// `sdk_files_are_all_embedded` fails if a file is added to `plugins/sdk` and not here.
pub const SDK_FILES: &[(&str, &str)] = &[
    ("Cargo.toml", include_str!("../../plugins/sdk/Cargo.toml")),
    ("README.md", include_str!("../../plugins/sdk/README.md")),
    (
        "src/clock.rs",
        include_str!("../../plugins/sdk/src/clock.rs"),
    ),
    (
        "src/config.rs",
        include_str!("../../plugins/sdk/src/config.rs"),
    ),
    (
        "src/errors.rs",
        include_str!("../../plugins/sdk/src/errors.rs"),
    ),
    ("src/ext.rs", include_str!("../../plugins/sdk/src/ext.rs")),
    ("src/http.rs", include_str!("../../plugins/sdk/src/http.rs")),
    ("src/lib.rs", include_str!("../../plugins/sdk/src/lib.rs")),
    ("src/log.rs", include_str!("../../plugins/sdk/src/log.rs")),
    (
        "src/money.rs",
        include_str!("../../plugins/sdk/src/money.rs"),
    ),
    (
        "src/signature.rs",
        include_str!("../../plugins/sdk/src/signature.rs"),
    ),
    (
        "src/state.rs",
        include_str!("../../plugins/sdk/src/state.rs"),
    ),
    ("src/sys.rs", include_str!("../../plugins/sdk/src/sys.rs")),
    ("src/time.rs", include_str!("../../plugins/sdk/src/time.rs")),
    (
        "wit/hook.wit",
        include_str!("../../plugins/sdk/wit/hook.wit"),
    ),
    (
        "wit/host.wit",
        include_str!("../../plugins/sdk/wit/host.wit"),
    ),
    (
        "wit/provider.wit",
        include_str!("../../plugins/sdk/wit/provider.wit"),
    ),
    (
        "wit/types.wit",
        include_str!("../../plugins/sdk/wit/types.wit"),
    ),
    (
        "wit/worlds.wit",
        include_str!("../../plugins/sdk/wit/worlds.wit"),
    ),
];

/// What `create` wrote, for the CLI to tell the user.
pub struct Created {
    /// The crate's directory.
    pub dir: PathBuf,
    /// The component a release build produces, relative to `dir`.
    pub artifact: String,
}

/// Creates the crate at `dir`. With `sdk_path` (a checkout's `plugins/sdk`, for work on
/// the SDK itself) the patch points there instead of at a vendored copy.
pub fn create(
    kind: Kind,
    name: &str,
    dir: &Path,
    sdk_path: Option<&Path>,
) -> anyhow::Result<Created> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && name.as_bytes()[0].is_ascii_lowercase();
    anyhow::ensure!(
        valid,
        "plugin names are 1-63 characters of a-z, 0-9 and '-', starting with a letter"
    );
    anyhow::ensure!(!dir.exists(), "{} already exists", dir.display());
    let sdk = match sdk_path {
        Some(path) => std::fs::canonicalize(path)
            .with_context(|| format!("the SDK is not at {}", path.display()))?
            .display()
            .to_string()
            .replace('\\', "/"),
        None => VENDOR_DIR.to_owned(),
    };
    std::fs::create_dir_all(dir.join("src"))?;
    // The component is named after the library, which cannot hold '-': say so up front.
    let lib = name.replace('-', "_");
    let artifact = format!("target/wasm32-wasip2/release/{lib}.wasm");
    let fill = |template: &str| {
        template
            .replace("{name}", name)
            .replace("{lib}", &lib)
            .replace("{artifact}", &artifact)
            .replace("{sdk_req}", SDK_REQUIREMENT)
            .replace("{sdk}", &sdk)
    };
    std::fs::write(dir.join("Cargo.toml"), fill(CARGO_TOML))?;
    std::fs::write(dir.join("README.md"), fill(README_MD))?;
    std::fs::write(dir.join(".gitignore"), "/target\n")?;
    let source = match kind {
        Kind::Provider => PROVIDER_RS,
        Kind::Hook => HOOK_RS,
    };
    std::fs::write(dir.join("src/lib.rs"), fill(source))?;
    if sdk_path.is_none() {
        let vendor = dir.join(VENDOR_DIR);
        for (path, contents) in SDK_FILES {
            let file = vendor.join(path);
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&file, contents)
                .with_context(|| format!("writing {}", file.display()))?;
        }
    }
    Ok(Created {
        dir: dir.to_path_buf(),
        artifact,
    })
}

const CARGO_TOML: &str = r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
# The component is {artifact}.
name = "{lib}"
crate-type = ["cdylib"]

[dependencies]
posbridge-plugin-sdk = "{sdk_req}"
serde = { version = "1", features = ["derive"] }

# Until posbridge-plugin-sdk is published on crates.io, `posbridge plugin new` wrote the SDK
# its binary was built with into vendor/. Once it is published, delete this section and
# vendor/: nothing else changes.
[patch.crates-io]
posbridge-plugin-sdk = { path = "{sdk}" }

[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
strip = true

# A standalone crate, not a member of any enclosing workspace.
[workspace]
"#;

const README_MD: &str = r#"# {name}

A posbridge plugin (contract `posbridge:plugin@{sdk_req}`), scaffolded by `posbridge plugin new`.

```sh
rustup target add wasm32-wasip2                  # once
cargo build --release --target wasm32-wasip2
posbridge plugin check {artifact}
posbridge plugin install {artifact}              # or POST it to /admin/plugins
```

`cargo test` runs the plugin's logic natively, with the SDK's fakes of the host imports
(`posbridge_sdk::testing`).
"#;

const PROVIDER_RS: &str = include_str!("scaffold/provider.rs.txt");
const HOOK_RS: &str = include_str!("scaffold/hook.rs.txt");

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of `plugins/sdk` (but build output) is in [`SDK_FILES`], so the vendored
    /// copy a scaffold gets is the whole crate.
    #[test]
    fn sdk_files_are_all_embedded() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../plugins/sdk");
        let mut found = Vec::new();
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir).expect("plugins/sdk is readable") {
                let path = entry.expect("directory entry").path();
                let relative = path
                    .strip_prefix(&root)
                    .expect("under the SDK")
                    .to_string_lossy()
                    .replace('\\', "/");
                if relative == "target" {
                    continue;
                }
                if path.is_dir() {
                    dirs.push(path);
                } else {
                    found.push(relative);
                }
            }
        }
        found.sort();
        let mut embedded: Vec<String> = SDK_FILES.iter().map(|(p, _)| p.to_string()).collect();
        embedded.sort();
        assert_eq!(
            found, embedded,
            "add the new SDK file to scaffold::SDK_FILES"
        );
    }

    #[test]
    fn the_requirement_matches_the_embedded_sdk() {
        let manifest: toml::Table = SDK_FILES[0].1.parse().expect("the SDK's Cargo.toml");
        let version = manifest["package"]["version"].as_str().expect("a version");
        assert!(
            version.starts_with(&format!("{SDK_REQUIREMENT}.")),
            "SDK {version} does not satisfy the scaffold's \"{SDK_REQUIREMENT}\""
        );
        // Publishable: nothing inherited from (or pointing into) a workspace.
        let text = SDK_FILES[0].1;
        assert!(!text.contains("workspace = true"), "{text}");
        assert!(!text.contains("path ="), "{text}");
    }

    #[test]
    fn a_scaffold_names_its_artifact_and_vendors_the_sdk() {
        let tmp = std::env::temp_dir().join(format!("posbridge-scaffold-{}", std::process::id()));
        let dir = tmp.join("acme-pos");
        let created = create(Kind::Provider, "acme-pos", &dir, None).expect("created");
        assert_eq!(
            created.artifact,
            "target/wasm32-wasip2/release/acme_pos.wasm"
        );
        let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).expect("Cargo.toml");
        assert!(
            manifest.contains("posbridge-plugin-sdk = \"0.3\""),
            "{manifest}"
        );
        assert!(
            manifest.contains("path = \"vendor/posbridge-plugin-sdk\""),
            "{manifest}"
        );
        assert!(dir
            .join("vendor/posbridge-plugin-sdk/wit/types.wit")
            .exists());
        assert!(
            create(Kind::Hook, "acme-pos", &dir, None).is_err(),
            "exists"
        );
        assert!(create(Kind::Hook, "Acme", &tmp.join("x"), None).is_err());
        assert!(create(Kind::Hook, "9x", &tmp.join("y"), None).is_err());
        std::fs::remove_dir_all(&tmp).expect("cleanup");
    }
}
