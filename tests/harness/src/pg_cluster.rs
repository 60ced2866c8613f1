//! A throwaway PostgreSQL cluster started from the installed server binaries: `initdb`
//! into a temporary directory, a free loopback port, the Unix socket in that directory,
//! trust authentication on loopback.
//!
//! Two uses:
//! * [`PgCluster::start`]: a cluster owned by one test, stopped and removed on drop. Unlike
//!   the suite's shared PostgreSQL, a test may stop and start it (a database outage)
//!   without disturbing anyone else.
//! * the suite's default PostgreSQL when `POSBRIDGE_TEST_POSTGRES_URL` is not set: one
//!   cluster for the whole test run, see `pg_shared.rs`.
//!
//! The binaries are looked up in this order:
//! `POSBRIDGE_TEST_PG_BINDIR` (only there, when set), `pg_config --bindir`, the newest
//! `/usr/lib/postgresql/<version>/bin` (Debian's layout), then `PATH`.
//!
//! PostgreSQL refuses to run as root: when the tests run as root, `initdb` and `pg_ctl`
//! run as the `postgres` user, or `nobody` where there is none (`runuser -u USER`), and
//! the cluster directory is handed to that user.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

/// How long `pg_ctl` may take to start or stop the cluster (`-t`).
const PG_CTL_WAIT_SECS: &str = "60";

/// Start attempts, each on a fresh free port (another process may take the port between
/// our probe and the postmaster's bind).
const START_ATTEMPTS: usize = 3;

/// A PostgreSQL cluster in a temporary directory; see the module docs.
#[derive(Debug)]
pub struct PgCluster {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    run_as: Option<String>,
    removed: AtomicBool,
}

/// Environment variable naming the directory of `initdb`, `pg_ctl` and `postgres`; when
/// set, no other place is searched (point it at an empty directory to see what the tests
/// do on a machine without PostgreSQL).
pub(crate) const BINDIR_ENV: &str = "POSBRIDGE_TEST_PG_BINDIR";

impl PgCluster {
    /// Whether PostgreSQL server binaries are installed (searched as the module docs say).
    pub fn available() -> bool {
        server_bin_dir().is_some()
    }

    /// Initialises and starts a new cluster in a fresh temporary directory, owned by the
    /// caller; panics with the reason (and the server log) if the binaries are missing or
    /// it does not come up.
    pub fn start() -> PgCluster {
        let bin = server_bin_dir()
            .unwrap_or_else(|| panic!("{}", crate::postgres::no_postgres_message()));
        let dir = tempfile::Builder::new()
            .prefix("posbridge-pgcluster-")
            .tempdir()
            .expect("creating the cluster directory")
            .keep();
        PgCluster::start_in(bin, dir).unwrap_or_else(|err| panic!("{err}"))
    }

    /// Initialises and starts a cluster from the binaries in `bin` in the directory `dir`
    /// (created if missing, removed with the cluster). On failure the directory is
    /// removed and the error carries the server log.
    pub(crate) fn start_in(bin: PathBuf, dir: PathBuf) -> Result<PgCluster, String> {
        std::fs::create_dir_all(&dir)
            .map_err(|e| format!("creating the cluster directory {}: {e}", dir.display()))?;
        let mut cluster = PgCluster {
            bin,
            dir,
            port: 0,
            run_as: None,
            removed: AtomicBool::new(false),
        };
        let outcome = cluster.init_and_start();
        if let Err(err) = outcome {
            let log = cluster.log();
            cluster.stop_and_remove();
            return Err(format!(
                "PostgreSQL cluster did not start: {err}\nlog:\n{log}"
            ));
        }
        Ok(cluster)
    }

    fn init_and_start(&mut self) -> Result<(), String> {
        if is_root() {
            let user = unprivileged_user()?;
            chown_to(&self.dir, &user)?;
            self.run_as = Some(user);
        }
        self.initdb()?;
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            self.port = free_port()?;
            match self.pg_ctl_start() {
                Ok(()) => return Ok(()),
                Err(err) => last_error = err,
            }
        }
        Err(last_error)
    }

    /// Leaves the cluster running when this value is dropped: whoever keeps it (the
    /// run-wide watchdog) is now responsible for stopping and removing it.
    pub(crate) fn detach(self) {
        self.removed.store(true, Ordering::SeqCst);
    }

    /// The loopback port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `postgres://postgres@127.0.0.1:PORT/postgres`: the superuser over TCP (trust auth,
    /// any password is accepted and ignored).
    pub fn admin_url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// Stops the cluster the hard way (`pg_ctl stop -m immediate`): every backend is
    /// killed at once, as in a crash or a pulled cable; committed data survives (crash
    /// recovery on the next start).
    pub fn stop_immediate(&self) {
        if let Err(err) = self.pg_ctl(&["stop", "-m", "immediate", "-w", "-t", PG_CTL_WAIT_SECS]) {
            panic!("pg_ctl stop failed: {err}\nlog:\n{}", self.log());
        }
    }

    /// Starts the cluster again on the same port after [`PgCluster::stop_immediate`].
    pub fn start_again(&self) {
        if let Err(err) = self.pg_ctl_start() {
            panic!("pg_ctl start failed: {err}\nlog:\n{}", self.log());
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read(self.dir.join("server.log"))
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn initdb(&self) -> Result<(), String> {
        let data = self.data_dir();
        let mut cmd = self.command("initdb");
        cmd.args(["-D", &data.display().to_string()]).args([
            "-U",
            "postgres",
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-sync",
        ]);
        run(cmd).map_err(|err| format!("initdb failed: {err}"))
    }

    fn pg_ctl_start(&self) -> Result<(), String> {
        // fsync off: the tests stop PostgreSQL, never the machine, so committed data is
        // in the page cache either way; sparing the fsyncs keeps the cluster fast.
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log");
        self.pg_ctl(&[
            "start",
            "-w",
            "-t",
            PG_CTL_WAIT_SECS,
            "-l",
            &log.display().to_string(),
            "-o",
            &options,
        ])
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), String> {
        let mut cmd = self.command("pg_ctl");
        cmd.args(["-D", &self.data_dir().display().to_string()])
            .args(args);
        run(cmd)
    }

    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        match &self.run_as {
            Some(user) => {
                let mut cmd = Command::new(runuser());
                cmd.args(["-u", user, "--"]).arg(path);
                cmd
            }
            None => Command::new(path),
        }
    }

    /// Stops the cluster (if running) and deletes its directory; runs once.
    pub(crate) fn stop_and_remove(&self) {
        if self.removed.swap(true, Ordering::SeqCst) {
            return;
        }
        if self.data_dir().join("postmaster.pid").exists() {
            let _ = self.pg_ctl(&["stop", "-m", "immediate", "-w", "-t", "30"]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Drop for PgCluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            eprintln!(
                "---- PostgreSQL cluster log (last 30 lines) ----\n{}",
                lines[lines.len().saturating_sub(30)..].join("\n")
            );
        }
        self.stop_and_remove();
    }
}

/// The directory holding PostgreSQL's server binaries (`initdb`, `pg_ctl`, `postgres`),
/// searched in the order the module docs give; `None` when there are none.
pub(crate) fn server_bin_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os(BINDIR_ENV).filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return has_server_binaries(&dir).then_some(dir);
    }
    pg_config_bindir()
        .or_else(newest_debian_bindir)
        .or_else(path_bindir)
}

fn has_server_binaries(dir: &Path) -> bool {
    ["initdb", "pg_ctl", "postgres"]
        .iter()
        .all(|b| dir.join(b).is_file())
}

/// `pg_config --bindir`, when that directory has the server binaries (Debian's
/// `pg_config` comes with libpq-dev and may name a version whose server is absent).
fn pg_config_bindir() -> Option<PathBuf> {
    let out = Command::new("pg_config")
        .arg("--bindir")
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
    has_server_binaries(&dir).then_some(dir)
}

/// The newest `/usr/lib/postgresql/<version>/bin` holding the server binaries.
fn newest_debian_bindir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            has_server_binaries(&bin).then_some((version, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, bin)| bin)
}

/// The first `PATH` entry with the server binaries (distributions that put them in
/// `/usr/bin`).
fn path_bindir() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).find(|dir| has_server_binaries(dir))
}

/// util-linux's `runuser`, which lives in an sbin directory that a root shell's `PATH`
/// may lack.
fn runuser() -> PathBuf {
    ["/usr/sbin/runuser", "/sbin/runuser", "/usr/bin/runuser"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .unwrap_or_else(|| PathBuf::from("runuser"))
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and has no side effects.
    unsafe { libc::geteuid() == 0 }
}

/// The account a root test run starts PostgreSQL as: `postgres` (Debian's server package
/// creates it), else `nobody`.
fn unprivileged_user() -> Result<String, String> {
    ["postgres", "nobody"]
        .into_iter()
        .find(|user| user_id(user, "-u").is_ok())
        .map(str::to_owned)
        .ok_or_else(|| {
            "running as root and there is neither a postgres nor a nobody user to run \
             PostgreSQL as"
                .to_owned()
        })
}

fn user_id(user: &str, flag: &str) -> Result<u32, String> {
    let out = Command::new("id")
        .args([flag, user])
        .stdin(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("running id {flag} {user}: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .map_err(|_| format!("no user {user:?}"))
}

fn chown_to(dir: &Path, user: &str) -> Result<(), String> {
    let uid = user_id(user, "-u")?;
    let gid = user_id(user, "-g")?;
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))
        .map_err(|e| format!("chown {} to {user}: {e}", dir.display()))
}

/// A port the kernel just handed out on loopback and that nobody holds now.
fn free_port() -> Result<u16, String> {
    let socket = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| format!("binding a probe port on 127.0.0.1: {e}"))?;
    socket
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("probe port address: {e}"))
}

fn run(mut cmd: Command) -> Result<(), String> {
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| format!("{cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} exited with {}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}
