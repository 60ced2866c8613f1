//! Project tasks, run as `cargo xtask <task>` (the alias lives in `.cargo/config.toml`).
//!
//! `cargo xtask test [ARGS…]` is the project's test command. The host workspace and the
//! plugin workspace are separate Cargo workspaces (the plugins build for wasm32-wasip2),
//! so one `cargo` invocation cannot test both; chaining two with `&&` skipped the plugin
//! tests whenever a host test failed. This runs both halves every time and fails if either
//! did:
//!
//! 1. `cargo nextest run --workspace --no-fail-fast ARGS…` (each test in its own process,
//!    with the timeouts of `.config/nextest.toml`); when cargo-nextest is not installed,
//!    `cargo test --workspace --no-fail-fast ARGS…` instead, said so on stderr;
//! 2. `cargo test --manifest-path plugins/Cargo.toml --workspace` (the plugins' native
//!    unit tests), whatever the first half did.
//!
//! ARGS go to the first half only, e.g. `cargo xtask test -E 'test(health)'`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "\
usage: cargo xtask test [ARGS...]

  Runs the host workspace's tests (cargo nextest run --workspace --no-fail-fast ARGS...,
  or cargo test when cargo-nextest is missing), then the plugin workspace's tests
  (cargo test --manifest-path plugins/Cargo.toml --workspace), always both; exits
  non-zero if either failed. ARGS go to the host half, e.g. -E 'test(health)'.";

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    match args.next().as_deref().and_then(|a| a.to_str()) {
        Some("test") => test(args.collect()),
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        other => {
            if let Some(task) = other {
                eprintln!("xtask: unknown task {task:?}");
            }
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

/// How one half of the test command ended.
enum Outcome {
    Passed,
    Failed(String),
}

impl Outcome {
    fn of(what: &str, mut cmd: Command) -> Outcome {
        eprintln!("xtask: running {}", describe(&cmd));
        match cmd.status() {
            Ok(status) if status.success() => Outcome::Passed,
            Ok(status) => Outcome::Failed(format!("{what} exited with {status}")),
            Err(err) => Outcome::Failed(format!("{what} could not be started: {err}")),
        }
    }

    fn word(&self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed(_) => "FAILED",
        }
    }
}

fn test(extra: Vec<OsString>) -> ExitCode {
    let root = workspace_root();
    let cargo = cargo();

    let host = if has_nextest(&cargo, &root) {
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(&root)
            .args(["nextest", "run", "--workspace", "--no-fail-fast"])
            .args(&extra);
        Outcome::of("cargo nextest run", cmd)
    } else {
        eprintln!(
            "xtask: cargo-nextest is not installed; running the host tests with cargo test \
             (all tests of a binary share one process and there are no per-test timeouts; \
             `cargo install cargo-nextest --locked` gets the intended runner)"
        );
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(&root)
            .args(["test", "--workspace", "--no-fail-fast"])
            .args(&extra);
        Outcome::of("cargo test (host)", cmd)
    };

    let mut cmd = Command::new(&cargo);
    cmd.current_dir(&root).args([
        "test",
        "--manifest-path",
        "plugins/Cargo.toml",
        "--workspace",
    ]);
    let plugins = Outcome::of("cargo test (plugins)", cmd);

    println!(
        "xtask test summary: host workspace {}, plugin workspace {}",
        host.word(),
        plugins.word()
    );
    let mut ok = true;
    for outcome in [host, plugins] {
        if let Outcome::Failed(why) = outcome {
            eprintln!("xtask: {why}");
            ok = false;
        }
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// The repository root: this crate lives in `<root>/xtask`. The directory `cargo run` names
/// at run time comes first: with a `CARGO_TARGET_DIR` shared by several clones (as `.ci/run`
/// keeps one), cargo may run a binary another clone built, whose compile-time path can be
/// gone; the tests then failed to start ("No such file or directory").
fn workspace_root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or(manifest_dir)
}

/// The cargo that ran us (`CARGO`, set by `cargo run`), so the toolchain stays the same.
fn cargo() -> OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

fn has_nextest(cargo: &OsString, root: &Path) -> bool {
    Command::new(cargo)
        .current_dir(root)
        .args(["nextest", "--version"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn describe(cmd: &Command) -> String {
    // The program is the full path of the toolchain's cargo; `cargo` reads better.
    let mut line = String::from("cargo");
    for arg in cmd.get_args() {
        line.push(' ');
        line.push_str(&arg.to_string_lossy());
    }
    line
}
