//! Builds the guest crates in `../plugins` for wasm32-wasip2 and embeds the bundled ones,
//! so `cargo run -- serve` serves them with no extra step. Test guests (under
//! `plugins/testing/`) are built too and their directory is exported to the tests as
//! `POSBRIDGE_WASM_DIR`.
//!
//! Bundled plugins are signed with the build key (`POSBRIDGE_BUILD_SIGNING_KEY`, a key file
//! as `posbridge plugin keygen` writes it; default the committed development key
//! `host/keys/dev-build-signing.key`), and that key's public half is compiled in, so the host
//! trusts exactly the key its bundled plugins were signed with.

#[allow(dead_code)]
#[path = "src/plugins/signing.rs"]
mod signing;

use std::env;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-wasip2";

fn main() {
    let manifest_dir =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let workspace = manifest_dir
        .parent()
        .expect("host/ has a parent")
        .to_path_buf();
    let plugins = workspace.join("plugins");
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    println!("cargo:rerun-if-changed={}", plugins.display());
    println!("cargo:rerun-if-changed={}", workspace.join("wit").display());
    // `sqlx::migrate!` embeds the migrations at compile time: a new migration file must
    // rebuild the host, which cargo only knows through this script.
    println!(
        "cargo:rerun-if-changed={}",
        workspace.join("migrations").display()
    );
    println!("cargo:rerun-if-env-changed=POSBRIDGE_GUEST_CARGO_ARGS");
    println!("cargo:rerun-if-env-changed=POSBRIDGE_BUILD_SIGNING_KEY");
    let key_file = env::var_os("POSBRIDGE_BUILD_SIGNING_KEY")
        .map(PathBuf::from)
        .unwrap_or_else(|| manifest_dir.join("keys/dev-build-signing.key"));
    println!("cargo:rerun-if-changed={}", key_file.display());
    let key_text = std::fs::read_to_string(&key_file)
        .unwrap_or_else(|e| panic!("reading the build signing key {}: {e}", key_file.display()));
    let build_key = signing::parse_secret_key(&key_text)
        .unwrap_or_else(|e| panic!("build signing key {}: {e}", key_file.display()));

    let members = guest_members(&plugins);
    let wasm_dir = if members.is_empty() {
        out_dir.join("no-guests")
    } else {
        ensure_target();
        build_guests(&plugins, &out_dir)
    };

    let signed_dir = out_dir.join("signed-plugins");
    std::fs::create_dir_all(&signed_dir).expect("create the signed plugins directory");
    let mut generated = format!(
        "/// Public half of the key the bundled plugins were signed with.\npub(crate) static BUILD_KEY: [u8; 32] = {:?};\n",
        build_key.verifying_key().to_bytes()
    );
    generated.push_str("/// (file name, component bytes) of every bundled plugin, signed with [`BUILD_KEY`].\npub(crate) static COMPONENTS: &[(&str, &[u8])] = &[\n");
    for (path, crate_name) in &members {
        let bundled = !path.starts_with("testing/") && path != "sdk";
        if !bundled {
            continue;
        }
        let file = wasm_dir.join(format!("{}.wasm", crate_name.replace('-', "_")));
        let wasm = std::fs::read(&file)
            .unwrap_or_else(|e| panic!("guest {crate_name} built but {}: {e}", file.display()));
        let file = signed_dir.join(file.file_name().expect("a .wasm file name"));
        std::fs::write(&file, signing::sign(&wasm, &build_key))
            .unwrap_or_else(|e| panic!("writing {}: {e}", file.display()));
        writeln!(
            generated,
            "    ({:?}, include_bytes!({:?})),",
            file.file_name().and_then(|f| f.to_str()).unwrap_or(""),
            file.display().to_string()
        )
        .expect("writing to a String cannot fail");
    }
    generated.push_str("];\n");
    std::fs::write(out_dir.join("bundled_plugins.rs"), generated)
        .expect("write bundled_plugins.rs");
    println!("cargo:rustc-env=POSBRIDGE_WASM_DIR={}", wasm_dir.display());
}

/// `(member path, crate name)` for every member of the guest workspace.
fn guest_members(plugins: &Path) -> Vec<(String, String)> {
    let Ok(text) = std::fs::read_to_string(plugins.join("Cargo.toml")) else {
        return Vec::new();
    };
    let doc: toml::Table = text.parse().expect("plugins/Cargo.toml is valid TOML");
    let members = doc
        .get("workspace")
        .and_then(|w| w.get("members"))
        .and_then(|m| m.as_array())
        .cloned()
        .unwrap_or_default();
    members
        .iter()
        .filter_map(|m| m.as_str())
        .map(|path| {
            let manifest = plugins.join(path).join("Cargo.toml");
            let text = std::fs::read_to_string(&manifest)
                .unwrap_or_else(|e| panic!("read {}: {e}", manifest.display()));
            let doc: toml::Table = text
                .parse()
                .unwrap_or_else(|e| panic!("parse {}: {e}", manifest.display()));
            let name = doc
                .get("package")
                .and_then(|p| p.get("name"))
                .and_then(|n| n.as_str())
                .unwrap_or_else(|| panic!("{} has no package name", manifest.display()))
                .to_owned();
            (path.to_owned(), name)
        })
        .collect()
}

fn ensure_target() {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == TARGET)
        })
        .unwrap_or(false);
    if installed {
        return;
    }
    let added = Command::new("rustup")
        .args(["target", "add", TARGET])
        .status();
    if !matches!(added, Ok(s) if s.success()) {
        panic!(
            "the {TARGET} Rust target is needed to build the bundled plugins and could not be installed; \
             run `rustup target add {TARGET}` and build again"
        );
    }
}

/// Builds every guest and returns the directory holding the `.wasm` files.
fn build_guests(plugins: &Path, out_dir: &Path) -> PathBuf {
    // <target>/<profile>/build/<pkg>-<hash>/out → <target>/wasm-plugins, shared by profiles
    // and kept across builds; a separate directory avoids the outer build's lock.
    let target_root = out_dir
        .ancestors()
        .nth(4)
        .map(Path::to_path_buf)
        .unwrap_or_else(|| out_dir.to_path_buf());
    let guest_target = target_root.join("wasm-plugins");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["build", "--release", "--target", TARGET, "--manifest-path"])
        .arg(plugins.join("Cargo.toml"))
        .env("CARGO_TARGET_DIR", &guest_target);
    if let Ok(extra) = env::var("POSBRIDGE_GUEST_CARGO_ARGS") {
        cmd.args(extra.split_whitespace());
    }
    // Flags meant for the host build must not leak into the guest build.
    for var in [
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "RUSTC_WORKSPACE_WRAPPER",
    ] {
        cmd.env_remove(var);
    }
    let status = cmd
        .status()
        .unwrap_or_else(|e| panic!("could not run cargo for the guest plugins: {e}"));
    if !status.success() {
        panic!("building the guest plugins for {TARGET} failed (see the output above)");
    }
    guest_target.join(TARGET).join("release")
}
