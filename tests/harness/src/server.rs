//! The server under test: the real `posbridge` binary as a child process.

use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::http::{new_http_trusting, Client};
use crate::postgres::PgDatabase;
use crate::ws::{Ws, WsError};
use crate::Backend;

/// How long the server may take to print its listening line (debug builds compile the
/// bundled plugins on start).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the server may take to exit after SIGTERM.
const EXIT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a CLI invocation may take.
const CLI_TIMEOUT: Duration = Duration::from_secs(60);

const LISTENING_PREFIX: &str = "posbridge listening on ";

/// A tenant API key as created through the admin API or the CLI.
#[derive(Debug, Clone)]
pub struct ApiKey {
    /// Key id.
    pub id: String,
    /// The secret.
    pub key: String,
    /// `terminal` or `manager`.
    pub role: String,
    /// Label.
    pub label: String,
}

/// A tenant with one terminal and one manager key.
#[derive(Debug, Clone)]
pub struct TenantKeys {
    /// The tenant's slug.
    pub slug: String,
    /// A terminal key labelled `till 1`.
    pub terminal: ApiKey,
    /// A manager key labelled `cloud`.
    pub manager: ApiKey,
}

/// What a CLI invocation returned.
#[derive(Debug, Clone)]
pub struct CliOutput {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl CliOutput {
    /// Panics unless the command succeeded; returns stdout parsed as JSON.
    #[track_caller]
    pub fn json(&self) -> Value {
        assert!(
            self.status.success(),
            "CLI failed ({}):\nstdout: {}\nstderr: {}",
            self.status,
            self.stdout,
            self.stderr
        );
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "CLI stdout is not JSON ({e}):\n{}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }
}

/// A running `posbridge serve` on 127.0.0.1 with its own database and temporary directory.
/// Dropping it kills the process and drops its PostgreSQL database.
pub struct TestServer {
    bin: PathBuf,
    backend: Backend,
    extra_args: Vec<String>,
    dir: Option<tempfile::TempDir>,
    database_url: String,
    pg: Option<PgDatabase>,
    operator_token: String,
    log_path: PathBuf,
    child: Option<Child>,
    base_url: String,
    http: reqwest::Client,
    /// The CA certificate (PEM) the test's clients trust, for a host serving TLS.
    tls_ca: Option<String>,
}

impl std::fmt::Debug for TestServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestServer")
            .field("backend", &self.backend)
            .field("base_url", &self.base_url)
            .field("database_url", &self.database_url)
            .field("log_path", &self.log_path)
            .finish_non_exhaustive()
    }
}

impl TestServer {
    /// Starts `bin serve --bind 127.0.0.1:0 --database-url … <extra_args>` on a fresh
    /// database of `backend` and waits (≤ 30 s) for its listening line. Panics, showing
    /// the server's log, if it does not come up.
    pub async fn start(bin: impl AsRef<Path>, backend: Backend, extra_args: &[&str]) -> TestServer {
        TestServer::start_inner(bin.as_ref(), backend, None, extra_args, None).await
    }

    /// Like [`TestServer::start`] for a host serving TLS (`extra_args` name its
    /// `--tls-cert` and `--tls-key`): the listening line must say `https://`, and the
    /// HTTP and WebSocket clients trust the CA certificate `ca_pem`.
    pub async fn start_with_tls(
        bin: impl AsRef<Path>,
        backend: Backend,
        extra_args: &[&str],
        ca_pem: &str,
    ) -> TestServer {
        TestServer::start_inner(bin.as_ref(), backend, None, extra_args, Some(ca_pem)).await
    }

    /// Like [`TestServer::start`] on PostgreSQL, but with a fresh database on the server
    /// of `admin_url` (a [`crate::PgCluster`] the test controls) instead of the shared one.
    pub async fn start_on_postgres(
        bin: impl AsRef<Path>,
        admin_url: &str,
        extra_args: &[&str],
    ) -> TestServer {
        TestServer::start_inner(
            bin.as_ref(),
            Backend::Postgres,
            Some(admin_url),
            extra_args,
            None,
        )
        .await
    }

    async fn start_inner(
        bin: &Path,
        backend: Backend,
        admin_url: Option<&str>,
        extra_args: &[&str],
        tls_ca: Option<&str>,
    ) -> TestServer {
        let dir = tempfile::Builder::new()
            .prefix("posbridge-e2e-")
            .tempdir()
            .expect("creating a temporary directory");
        let (database_url, pg) = match backend {
            Backend::Sqlite => (
                format!("sqlite://{}/posbridge.db", dir.path().display()),
                None,
            ),
            Backend::Postgres => {
                let db = match admin_url {
                    Some(url) => PgDatabase::create_on(url).await,
                    None => PgDatabase::create().await,
                };
                (db.url.clone(), Some(db))
            }
        };
        let log_path = dir.path().join("server.log");
        let mut server = TestServer {
            bin: bin.to_owned(),
            backend,
            extra_args: extra_args.iter().map(|s| (*s).to_owned()).collect(),
            dir: Some(dir),
            database_url,
            pg,
            operator_token: format!("pbo_test_{}", crate::random_suffix(32)),
            log_path,
            child: None,
            base_url: String::new(),
            http: new_http_trusting(tls_ca),
            tls_ca: tls_ca.map(str::to_owned),
        };
        server.spawn().await;
        server
    }

    /// Starts a second host on this server's database (PostgreSQL: several hosts share
    /// one database), with the same flags, operator token and master key file, in a
    /// directory of its own. The database stays this server's: dropping the sibling does
    /// not drop it.
    pub async fn start_sibling(&self) -> TestServer {
        let dir = tempfile::Builder::new()
            .prefix("posbridge-e2e-sibling-")
            .tempdir()
            .expect("creating a temporary directory");
        // The vault's default key file is relative to the working directory on PostgreSQL.
        let keys = self.dir().join("posbridge.keys");
        if keys.exists() {
            std::fs::copy(&keys, dir.path().join("posbridge.keys")).expect("copying the key file");
        }
        let log_path = dir.path().join("server.log");
        let mut sibling = TestServer {
            bin: self.bin.clone(),
            backend: self.backend,
            extra_args: self.extra_args.clone(),
            dir: Some(dir),
            database_url: self.database_url.clone(),
            pg: None,
            operator_token: self.operator_token.clone(),
            log_path,
            child: None,
            base_url: String::new(),
            http: new_http_trusting(self.tls_ca.as_deref()),
            tls_ca: self.tls_ca.clone(),
        };
        sibling.spawn().await;
        sibling
    }

    async fn spawn(&mut self) {
        assert!(self.child.is_none(), "server is already running");
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .expect("opening the server log");
        let mut cmd = Command::new(&self.bin);
        // Run inside the temp dir so nothing the server writes relative to its working
        // directory (e.g. the PostgreSQL plugin cache) lands in the repository.
        cmd.current_dir(self.dir())
            .arg("serve")
            .args([
                "--bind",
                "127.0.0.1:0",
                "--database-url",
                &self.database_url,
            ])
            .args(&self.extra_args)
            .env("POSBRIDGE_OPERATOR_TOKEN", &self.operator_token)
            // One artifact cache for every test server: compiled plugins are reused instead
            // of recompiled per test (a test that needs a cold cache passes
            // `--plugin-cache-dir`, which takes precedence).
            .env("POSBRIDGE_PLUGIN_CACHE_DIR", shared_plugin_cache())
            .env_remove("DATABASE_URL")
            .env_remove("POSBRIDGE_BIND")
            // An operator's config file or key file must not change what a test runs.
            .env_remove("POSBRIDGE_CONFIG")
            .env_remove("POSBRIDGE_MASTER_KEY_FILE")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("spawning {}: {e}", self.bin.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let log_path = self.log_path.clone();
        let found = tokio::time::timeout(START_TIMEOUT, async {
            while let Ok(Some(line)) = lines.next_line().await {
                append_line(&log_path, &format!("[stdout] {line}"));
                if let Some(url) = line.trim().strip_prefix(LISTENING_PREFIX) {
                    return Some(url.trim().trim_end_matches('/').to_owned());
                }
            }
            None
        })
        .await;
        let url = match found {
            Ok(Some(url)) => url,
            Ok(None) => {
                let status = tokio::time::timeout(Duration::from_secs(10), child.wait()).await;
                panic!(
                    "posbridge exited before printing its listening line ({status:?}); log:\n{}",
                    self.logs()
                );
            }
            Err(_) => {
                let _ = child.start_kill();
                panic!(
                    "posbridge printed no listening line within {START_TIMEOUT:?}; log:\n{}",
                    self.logs()
                );
            }
        };
        let expected = if self.tls_ca.is_some() {
            "https://127.0.0.1:"
        } else {
            "http://127.0.0.1:"
        };
        assert!(
            url.starts_with(expected),
            "server must listen on loopback ({expected}…), announced {url}"
        );
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                append_line(&log_path, &format!("[stdout] {line}"));
            }
        });
        self.base_url = url;
        self.child = Some(child);
    }

    /// The backend this server runs on.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// `http://127.0.0.1:PORT`, or `https://` for a host serving TLS (changes on
    /// [`TestServer::restart`]).
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        self.base_url
            .trim_start_matches("https://")
            .trim_start_matches("http://")
    }

    /// `ws://127.0.0.1:PORT` (`wss://` for a host serving TLS) + `path_and_query`.
    pub fn ws_url(&self, path_and_query: &str) -> String {
        let scheme = if self.base_url.starts_with("https://") {
            "wss"
        } else {
            "ws"
        };
        format!("{scheme}://{}{}", self.addr(), path_and_query)
    }

    /// The database URL the server (and [`TestServer::cli`]) uses.
    pub fn database_url(&self) -> &str {
        &self.database_url
    }

    /// The operator token the server was started with.
    pub fn operator_token(&self) -> &str {
        &self.operator_token
    }

    /// The server's temporary directory.
    pub fn dir(&self) -> &Path {
        self.dir.as_ref().expect("temp dir").path()
    }

    /// The file the server's stderr (and stdout) is appended to.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Everything the server has logged so far (across restarts).
    pub fn logs(&self) -> String {
        std::fs::read(&self.log_path)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    /// The server's process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Sends SIGTERM without waiting.
    pub fn sigterm(&self) {
        let pid = self.pid().expect("server is not running");
        let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        assert_eq!(rc, 0, "kill(SIGTERM) failed");
    }

    /// Kills the server with SIGKILL (`kill -9`: no shutdown, leases and claims left as
    /// they were) and reaps it.
    pub async fn kill9(&mut self) {
        let mut child = self.child.take().expect("server is not running");
        child.start_kill().expect("kill -9 the server");
        let status = child.wait().await.expect("reaping the killed server");
        assert!(!status.success(), "a killed server exits unsuccessfully");
    }

    /// Sends SIGHUP (reload the TLS certificate) without waiting.
    pub fn sighup(&self) {
        let pid = self.pid().expect("server is not running");
        let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
        // SAFETY: kill(2) with a pid we spawned and still own (not yet reaped).
        let rc = unsafe { libc::kill(pid, libc::SIGHUP) };
        assert_eq!(rc, 0, "kill(SIGHUP) failed");
    }

    /// Waits (≤ 30 s) for the server to exit and returns its status.
    pub async fn wait_exit(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("server is not running");
        match tokio::time::timeout(EXIT_TIMEOUT, child.wait()).await {
            Ok(status) => status.expect("waiting for the server"),
            Err(_) => {
                let _ = child.start_kill();
                let _ = child.wait().await;
                panic!(
                    "server did not exit within {EXIT_TIMEOUT:?} of SIGTERM; log:\n{}",
                    self.logs()
                );
            }
        }
    }

    /// SIGTERM, then wait for the exit status.
    pub async fn sigterm_and_wait(&mut self) -> ExitStatus {
        self.sigterm();
        self.wait_exit().await
    }

    /// Stops the server with SIGTERM and starts it again on the same database (new port).
    /// Returns the stopped process's exit status.
    pub async fn restart(&mut self) -> ExitStatus {
        let status = self.sigterm_and_wait().await;
        self.spawn().await;
        status
    }

    /// Starts the server again on the same database after it exited (see
    /// [`TestServer::wait_exit`]).
    pub async fn start_again(&mut self) {
        self.spawn().await;
    }

    /// Runs `bin --database-url URL <args>` (the CLI) against this server's database.
    pub async fn cli(&self, args: &[&str]) -> CliOutput {
        let mut cmd = Command::new(&self.bin);
        cmd.current_dir(self.dir())
            .args(["--database-url", &self.database_url])
            .args(args)
            .env_remove("DATABASE_URL")
            .env_remove("POSBRIDGE_OPERATOR_TOKEN")
            .env_remove("POSBRIDGE_CONFIG")
            .env_remove("POSBRIDGE_MASTER_KEY_FILE")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let output = tokio::time::timeout(CLI_TIMEOUT, cmd.output())
            .await
            .unwrap_or_else(|_| panic!("CLI {args:?} did not finish within {CLI_TIMEOUT:?}"))
            .unwrap_or_else(|e| panic!("running the CLI {args:?}: {e}"));
        let out = CliOutput {
            status: output.status,
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        };
        append_line(
            &self.log_path,
            &format!(
                "[cli {args:?}] {} stderr: {}",
                out.status,
                out.stderr.trim()
            ),
        );
        out
    }

    // ----- HTTP clients -----

    /// A client without credentials, at the server root.
    pub fn anon(&self) -> Client {
        Client::with_http(self.http.clone(), self.base_url.clone())
    }

    /// A client at the server root carrying the operator token.
    pub fn admin(&self) -> Client {
        self.anon()
            .with_header("Authorization", &format!("Bearer {}", self.operator_token))
    }

    /// A client at `/api/{slug}` with `X-API-Key: key` and `X-Tenant-ID: slug`.
    pub fn tenant_client(&self, slug: &str, key: &str) -> Client {
        Client::with_http(self.http.clone(), format!("{}/api/{slug}", self.base_url))
            .with_header("X-API-Key", key)
            .with_header("X-Tenant-ID", slug)
    }

    /// A client at `/api/{slug}` with `Authorization: Bearer key` only.
    pub fn bearer_client(&self, slug: &str, key: &str) -> Client {
        Client::with_http(self.http.clone(), format!("{}/api/{slug}", self.base_url))
            .with_header("Authorization", &format!("Bearer {key}"))
    }

    /// A client at `/api/{slug}` with no credentials.
    pub fn tenant_anon(&self, slug: &str) -> Client {
        Client::with_http(self.http.clone(), format!("{}/api/{slug}", self.base_url))
    }

    /// The tenant's terminal-key client.
    pub fn terminal(&self, tenant: &TenantKeys) -> Client {
        self.tenant_client(&tenant.slug, &tenant.terminal.key)
    }

    /// The tenant's manager-key client.
    pub fn manager(&self, tenant: &TenantKeys) -> Client {
        self.tenant_client(&tenant.slug, &tenant.manager.key)
    }

    // ----- fixtures through the admin API -----

    /// Creates a USD / America/New_York tenant; panics unless 201.
    pub async fn create_tenant(&self, slug: &str) -> Value {
        let body = json!({
            "slug": slug,
            "name": format!("Tenant {slug}"),
            "currency": "USD",
            "timezone": "America/New_York",
        });
        self.admin()
            .post("/admin/tenants", &body)
            .await
            .expect(201)
            .clone()
    }

    /// Creates a key; panics unless 201 with a key.
    pub async fn create_key(&self, slug: &str, role: &str, label: &str) -> ApiKey {
        let resp = self
            .admin()
            .post(
                &format!("/admin/tenants/{slug}/keys"),
                &json!({"role": role, "label": label}),
            )
            .await;
        let body = resp.expect(201);
        ApiKey {
            id: body["id"].as_str().expect("key id").to_owned(),
            key: body["key"].as_str().expect("key secret").to_owned(),
            role: role.to_owned(),
            label: label.to_owned(),
        }
    }

    /// Creates a tenant with a terminal key (`till 1`) and a manager key (`cloud`).
    pub async fn setup_tenant(&self, slug: &str) -> TenantKeys {
        self.create_tenant(slug).await;
        TenantKeys {
            slug: slug.to_owned(),
            terminal: self.create_key(slug, "terminal", "till 1").await,
            manager: self.create_key(slug, "manager", "cloud").await,
        }
    }

    // ----- WebSockets -----

    /// Opens `/ws/pos/{slug}[?since=N]` with `X-API-Key` + `X-Tenant-ID`; panics if refused.
    pub async fn ws(&self, slug: &str, key: &str, since: Option<i64>) -> Ws {
        let path = match since {
            Some(n) => format!("/ws/pos/{slug}?since={n}"),
            None => format!("/ws/pos/{slug}"),
        };
        self.ws_connect(&path, &[("X-API-Key", key), ("X-Tenant-ID", slug)])
            .await
            .unwrap_or_else(|e| panic!("WebSocket {path} refused: {e}"))
    }

    /// Opens `path_and_query` with arbitrary headers; the error tells why it was refused.
    pub async fn ws_connect(
        &self,
        path_and_query: &str,
        headers: &[(&str, &str)],
    ) -> Result<Ws, WsError> {
        match &self.tls_ca {
            Some(ca) => {
                let config = crate::tls::client_config(ca);
                Ws::connect_tls(&self.ws_url(path_and_query), headers, config).await
            }
            None => Ws::connect(&self.ws_url(path_and_query), headers).await,
        }
    }
}

fn append_line(path: &Path, line: &str) {
    if let Ok(mut f) = OpenOptions::new().create(true).append(true).open(path) {
        let _ = writeln!(f, "{line}");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.start_kill();
            for _ in 0..250 {
                if !matches!(child.try_wait(), Ok(None)) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        if let Some(pg) = self.pg.take() {
            pg.drop_now();
        }
        if std::thread::panicking() {
            let logs = self.logs();
            let lines: Vec<&str> = logs.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!(
                "---- posbridge log ({}; last {} lines) ----\n{}\n---- end of log ----",
                self.log_path.display(),
                tail.len(),
                tail.join("\n")
            );
            if std::env::var_os("POSBRIDGE_TEST_KEEP_DIR").is_some() {
                if let Some(dir) = self.dir.take() {
                    let kept = dir.keep();
                    eprintln!("(kept {} for inspection)", kept.display());
                }
            } else {
                eprintln!("(set POSBRIDGE_TEST_KEEP_DIR=1 to keep the server's directory)");
            }
        }
    }
}

/// The plugin artifact cache shared by all test servers of this machine.
fn shared_plugin_cache() -> PathBuf {
    std::env::temp_dir().join("posbridge-e2e-plugin-cache")
}
