//! One configuration for `serve` and the operator commands: the CLI reads the same
//! `--config` file, refuses a database that does not exist (no silent empty database) or
//! that posbridge never migrated, and names on stderr the database it used; `serve` names
//! its database, key file, plugin cache and config file at start.

use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use posbridge_harness::Backend;

/// How long one command may take.
const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the binary with `args` in `dir`, with no operator configuration from the test's
/// environment; panics if it does not exit within a minute (a `serve` that should have
/// refused to start is killed and reported).
pub(crate) async fn run_bin(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::new(crate::BIN);
    cmd.current_dir(dir)
        .args(args)
        .env_remove("DATABASE_URL")
        .env_remove("POSBRIDGE_DATABASE_URL")
        .env_remove("POSBRIDGE_CONFIG")
        .env_remove("POSBRIDGE_MASTER_KEY")
        .env_remove("POSBRIDGE_MASTER_KEY_FILE")
        .env_remove("POSBRIDGE_OPERATOR_TOKEN")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .kill_on_drop(true);
    tokio::time::timeout(RUN_TIMEOUT, cmd.output())
        .await
        .unwrap_or_else(|_| panic!("posbridge {args:?} did not exit within {RUN_TIMEOUT:?}"))
        .unwrap_or_else(|e| panic!("running posbridge {args:?}: {e}"))
}

/// The files in `dir`, for asserting a refused command left nothing behind.
fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .expect("reading the directory")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_in_an_empty_directory_refuses_and_creates_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    for args in [
        &["tenant", "list"][..],
        &["key", "list", "--tenant", "kitchen"],
        &["plugin", "list"],
        &["vault", "rotate"],
        &["backup", "snapshot"],
        &[
            "tenant",
            "create",
            "--slug",
            "k",
            "--name",
            "K",
            "--currency",
            "USD",
            "--timezone",
            "UTC",
        ],
    ] {
        let out = run_bin(dir.path(), args, &[]).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded: {stderr}");
        assert!(
            stderr.contains("no database at") && stderr.contains("posbridge.db"),
            "{args:?}: {stderr}"
        );
        assert!(
            stderr.contains("--database-url") && stderr.contains("--config"),
            "the refusal says what to do: {stderr}"
        );
        assert_eq!(entries(dir.path()), Vec::<String>::new(), "{args:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_with_the_servers_config_file_sees_its_tenants() {
    let srv = crate::start(Backend::Sqlite).await;
    srv.setup_tenant("kitchen").await;
    // A config file elsewhere, naming the database relative to itself.
    let conf_dir = tempfile::tempdir().expect("temp dir");
    let db = srv.dir().join("posbridge.db");
    let rel = pathdiff(&db, conf_dir.path());
    let config = conf_dir.path().join("posbridge.toml");
    std::fs::write(&config, format!("database-url = {:?}\n", rel)).expect("writing the config");
    let elsewhere = tempfile::tempdir().expect("temp dir");
    let config_arg = config.display().to_string();
    let by_flag: (Vec<&str>, Vec<(&str, &str)>) = (
        vec!["--config", config_arg.as_str(), "tenant", "list"],
        vec![],
    );
    let by_env: (Vec<&str>, Vec<(&str, &str)>) = (
        vec!["tenant", "list"],
        vec![("POSBRIDGE_CONFIG", config_arg.as_str())],
    );
    for (args, envs) in [by_flag, by_env] {
        let out = run_bin(elsewhere.path(), &args, &envs).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?}: {stderr}");
        let tenants: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
        assert_eq!(tenants[0]["slug"], "kitchen", "{stdout}");
        let canonical = db.canonicalize().expect("db path");
        assert!(
            stderr.contains(&format!("using database sqlite {}", canonical.display())),
            "{stderr}"
        );
        assert_eq!(entries(elsewhere.path()), Vec::<String>::new());
    }
}

/// `target` relative to `base` (both absolute, no symlinks involved in tests' temp dirs).
fn pathdiff(target: &Path, base: &Path) -> String {
    let target: Vec<_> = target.components().collect();
    let base: Vec<_> = base.components().collect();
    let common = target.iter().zip(&base).take_while(|(a, b)| a == b).count();
    let mut parts: Vec<String> = vec!["..".to_owned(); base.len() - common];
    parts.extend(
        target[common..]
            .iter()
            .map(|c| c.as_os_str().to_string_lossy().into_owned()),
    );
    parts.join("/")
}

#[tokio::test(flavor = "multi_thread")]
async fn cli_refuses_a_postgres_database_without_posbridges_schema_postgres() {
    if !posbridge_harness::postgres_available().await {
        return;
    }
    // The server's maintenance database exists but was never migrated by posbridge.
    let url = posbridge_harness::postgres_admin_url();
    let dir = tempfile::tempdir().expect("temp dir");
    let out = run_bin(dir.path(), &["--database-url", &url, "tenant", "list"], &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(stderr.contains("has no posbridge schema"), "{stderr}");
    if let Ok(parsed) = posbridge_harness::reqwest::Url::parse(&url) {
        if let Some(password) = parsed.password() {
            assert!(
                !stderr.contains(&format!(":{password}@")),
                "password shown: {stderr}"
            );
            assert!(stderr.contains(":***@"), "{stderr}");
        }
    }
    // The migrated database of a server is accepted, and named with its password masked.
    let srv = crate::start(Backend::Postgres).await;
    srv.setup_tenant("kitchen").await;
    let out = srv.cli(&["tenant", "list"]).await;
    assert_eq!(out.json()[0]["slug"], "kitchen");
    assert!(
        out.stderr.contains("using database postgres"),
        "{}",
        out.stderr
    );
    // The server's startup line names the database the same way.
    let logs = srv.logs();
    let line = logs
        .lines()
        .find(|l| l.starts_with("[stdout] posbridge using database postgres"))
        .unwrap_or_else(|| panic!("no startup line in:\n{logs}"));
    let db_url = posbridge_harness::reqwest::Url::parse(srv.database_url()).expect("URL");
    if let Some(password) = db_url.password() {
        assert!(!line.contains(&format!(":{password}@")), "{line}");
        assert!(line.contains(":***@"), "{line}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_names_its_database_key_file_cache_and_config_file() {
    let conf_dir = tempfile::tempdir().expect("temp dir");
    let config = conf_dir.path().join("pb.toml");
    std::fs::write(&config, "rate-limit-per-sec = 60\n").expect("writing the config");
    let config_arg = config.display().to_string();
    let srv = crate::start_with(Backend::Sqlite, &["--config", &config_arg]).await;
    let logs = srv.logs();
    let line = logs
        .lines()
        .find(|l| l.starts_with("[stdout] posbridge using database"))
        .unwrap_or_else(|| panic!("no startup line in:\n{logs}"));
    let dir = srv.dir().display().to_string();
    let db = srv.dir().join("posbridge.db").canonicalize().expect("db");
    assert!(
        line.contains(&format!("database sqlite {}", db.display())),
        "{line}"
    );
    assert!(
        line.contains(&format!("key file {dir}/posbridge.keys")),
        "{line}"
    );
    assert!(line.contains("plugin cache /"), "{line}");
    assert!(
        line.contains(&format!("config file {config_arg}")),
        "{line}"
    );
    // The line comes before the listening line the harness waited for.
    let using = logs.find("[stdout] posbridge using").expect("using line");
    let listening = logs
        .find("[stdout] posbridge listening on")
        .expect("listening line");
    assert!(using < listening);
}
