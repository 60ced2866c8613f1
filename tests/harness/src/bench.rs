//! Command-line plumbing shared by the benchmark binaries: `--name value` / `--name=value`
//! flags and the release server binary they drive.

use std::path::PathBuf;
use std::str::FromStr;

/// The value of flag `name` (`--seconds 10` or `--seconds=10`), if given.
pub fn arg(name: &str) -> Option<String> {
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == name {
            return args.next();
        }
        if let Some(v) = a.strip_prefix(&format!("{name}=")) {
            return Some(v.to_owned());
        }
    }
    None
}

/// Flag `name` parsed as `T`, or `default` when absent or unparsable.
pub fn arg_or<T: FromStr>(name: &str, default: T) -> T {
    arg(name).and_then(|s| s.parse().ok()).unwrap_or(default)
}

/// The server binary to benchmark: `--server-bin`, else `posbridge` beside this executable
/// (both live in `target/release`). Exits with status 2 and a hint when it is missing.
pub fn server_bin() -> PathBuf {
    let bin = arg("--server-bin").map(PathBuf::from).unwrap_or_else(|| {
        std::env::current_exe()
            .map(|exe| exe.with_file_name("posbridge"))
            .unwrap_or_else(|_| PathBuf::from("posbridge"))
    });
    if !bin.exists() {
        eprintln!(
            "{} not found: build it first with cargo build --release -p posbridge",
            bin.display()
        );
        std::process::exit(2);
    }
    bin
}
