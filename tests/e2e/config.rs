//! Issue 13: one source for each setting. A config file (`--config`, `POSBRIDGE_CONFIG`)
//! is read by `serve` and the other commands alike; the command line beats the
//! environment, which beats the file, which beats the default; unknown keys and values
//! below a setting's minimum are refused before anything starts.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use posbridge_harness::{random_suffix, Backend, TestServer};

/// Longest a CLI run (or a refused `serve`) may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        let dir = std::env::temp_dir().join(format!("posbridge-e2e-config-{}", random_suffix(12)));
        std::fs::create_dir_all(&dir).expect("creating a scratch directory");
        Scratch(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `text` to `name` in the directory and returns its path as text.
    fn write(&self, name: &str, text: &str) -> String {
        let path = self.0.join(name);
        std::fs::write(&path, text).expect("writing a file");
        path.display().to_string()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs the binary in `cwd` with `args` and `env`, none of the caller's own settings
/// variables leaking in.
async fn run(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(crate::BIN);
    cmd.current_dir(cwd)
        .args(args)
        .env_remove("POSBRIDGE_CONFIG")
        .env_remove("POSBRIDGE_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .env_remove("POSBRIDGE_MASTER_KEY")
        .env_remove("POSBRIDGE_MASTER_KEY_FILE")
        .env_remove("POSBRIDGE_RATE_LIMIT_BURST")
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(RUN_TIMEOUT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("posbridge {args:?} did not finish within {RUN_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("running posbridge {args:?}: {e}"))
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Asserts that `output` is a refusal: a non-zero exit whose message contains every one
/// of `needles`.
fn assert_refused(output: &Output, needles: &[&str]) {
    let err = stderr(output);
    assert!(
        !output.status.success(),
        "expected a refusal, got {}: {err}",
        output.status
    );
    for needle in needles {
        assert!(err.contains(needle), "stderr lacks {needle:?}: {err}");
    }
}

/// A rate limit set only in the config file is the one the server enforces, and a path
/// in the file (the master key file) is relative to the file, not to the working
/// directory.
#[tokio::test(flavor = "multi_thread")]
async fn a_config_file_sets_the_rate_limit_of_serve() {
    let scratch = Scratch::new();
    let config = scratch.write(
        "posbridge.toml",
        "rate-limit-per-sec = 1\nrate-limit-burst = 3\nmaster-key-file = \"sealed.keys\"\n",
    );
    let srv = TestServer::start(crate::BIN, Backend::Sqlite, &["--config", &config]).await;
    let tenant = srv.setup_tenant("acme").await;
    let till = srv.terminal(&tenant);

    let started = Instant::now();
    let mut ok = 0u64;
    let mut limited = false;
    for _ in 0..20 {
        let resp = till.get("/health").await;
        match resp.status {
            200 => ok += 1,
            429 => {
                limited = true;
                break;
            }
            other => panic!("unexpected {other}: {}", resp.text),
        }
    }
    let refills = started.elapsed().as_secs();
    assert!(
        limited,
        "20 requests passed; the file's limit of 1/s was not applied"
    );
    assert!(
        (3..=3 + refills).contains(&ok),
        "{ok} requests passed in {refills} s with the file's burst of 3"
    );
    assert!(
        scratch.path().join("sealed.keys").exists(),
        "the master key file was not created beside the config file"
    );
}

/// `tenant list` (any command, not only `serve`) reads the database from the file; the
/// environment beats the file and the command line beats both.
#[tokio::test(flavor = "multi_thread")]
async fn the_command_line_beats_the_environment_which_beats_the_file() {
    let scratch = Scratch::new();
    let cwd = scratch.path().join("elsewhere");
    std::fs::create_dir_all(&cwd).expect("creating the working directory");
    // Only `serve` creates a database: each one is a server's, snapshot with `backup`.
    for source in ["file", "env", "flag"] {
        let srv = TestServer::start(crate::BIN, Backend::Sqlite, &[]).await;
        srv.create_tenant(&format!("from-{source}")).await;
        let backup = scratch.path().join(format!("backup-{source}"));
        let backup_arg = backup.display().to_string();
        srv.cli(&["backup", &backup_arg]).await.json();
        std::fs::rename(
            backup.join("posbridge.db"),
            scratch.path().join(format!("{source}.db")),
        )
        .expect("moving the snapshot");
    }
    // Relative to the file's directory, not to the working directory `elsewhere`.
    let config = scratch.write("posbridge.toml", "database-url = \"file.db\"\n");
    let env_db = scratch.path().join("env.db").display().to_string();
    let flag_db = scratch.path().join("flag.db").display().to_string();

    let listed = |out: &Output| {
        assert!(out.status.success(), "tenant list: {}", stderr(out));
        let text = stdout(out);
        ["file", "env", "flag"]
            .into_iter()
            .filter(|source| text.contains(&format!("\"from-{source}\"")))
            .collect::<Vec<_>>()
    };

    let out = run(&cwd, &["--config", &config, "tenant", "list"], &[]).await;
    assert_eq!(listed(&out), ["file"]);
    let out = run(&cwd, &["tenant", "list"], &[("POSBRIDGE_CONFIG", &config)]).await;
    assert_eq!(
        listed(&out),
        ["file"],
        "POSBRIDGE_CONFIG names the file too"
    );

    let env = [("POSBRIDGE_DATABASE_URL", env_db.as_str())];
    let out = run(&cwd, &["tenant", "list", "--config", &config], &env).await;
    assert_eq!(listed(&out), ["env"]);
    let legacy = [("DATABASE_URL", env_db.as_str())];
    let out = run(&cwd, &["--config", &config, "tenant", "list"], &legacy).await;
    assert_eq!(
        listed(&out),
        ["env"],
        "DATABASE_URL still counts as the environment"
    );

    let args = [
        "--config",
        &config,
        "--database-url",
        &flag_db,
        "tenant",
        "list",
    ];
    let out = run(&cwd, &args, &env).await;
    assert_eq!(listed(&out), ["flag"]);
}

/// A key that names no setting stops every command with a message naming the key and
/// the file.
#[tokio::test(flavor = "multi_thread")]
async fn an_unknown_key_in_the_config_file_is_refused() {
    let scratch = Scratch::new();
    let db = scratch.path().join("p.db").display().to_string();
    let config = scratch.write("posbridge.toml", "rate-limit-per-sec = 5\nrate-limit = 5\n");
    for command in [
        &["tenant", "list"][..],
        &["serve", "--bind", "127.0.0.1:0"][..],
    ] {
        let mut args = vec!["--config", config.as_str(), "--database-url", db.as_str()];
        args.extend_from_slice(command);
        let out = run(scratch.path(), &args, &[]).await;
        assert_refused(&out, &["unknown key `rate-limit`", &config]);
        assert_eq!(out.status.code(), Some(2), "{command:?}: {}", stderr(&out));
    }
}

/// Values below a setting's documented minimum are refused, not raised silently, from
/// the file, the environment and the command line alike.
#[tokio::test(flavor = "multi_thread")]
async fn a_value_below_its_minimum_is_refused() {
    let scratch = Scratch::new();
    let db = scratch.path().join("p.db").display().to_string();
    let serve = ["serve", "--database-url", &db, "--bind", "127.0.0.1:0"];

    let config = scratch.write("posbridge.toml", "ws-queue = 0\n");
    let mut args = serve.to_vec();
    args.extend(["--config", &config]);
    let out = run(scratch.path(), &args, &[]).await;
    assert_refused(&out, &["`ws-queue`", "minimum is 1", &config]);

    let mut args = serve.to_vec();
    args.extend(["--hook-poll-interval-ms", "5"]);
    let out = run(scratch.path(), &args, &[]).await;
    assert_refused(
        &out,
        &["--hook-poll-interval-ms", "minimum is 10 milliseconds"],
    );

    let env = [("POSBRIDGE_RATE_LIMIT_BURST", "0")];
    let out = run(scratch.path(), &serve, &env).await;
    assert_refused(&out, &["--rate-limit-burst", "minimum is 1"]);
    assert!(
        !scratch.path().join("p.db").exists(),
        "a refused serve must not have opened the database"
    );
}
