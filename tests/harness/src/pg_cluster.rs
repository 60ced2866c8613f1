//! A throwaway PostgreSQL cluster a test starts itself, from the server binaries Debian
//! installs under `/usr/lib/postgresql/<version>/bin`: `initdb` into a temporary
//! directory, a free loopback port, the Unix socket in that directory, trust
//! authentication on loopback. Unlike the shared server of `POSBRIDGE_TEST_POSTGRES_URL`,
//! a test may stop and start it (a database outage) without disturbing anyone else.
//!
//! Two ways to use it:
//! * [`PgCluster::start`]: a cluster owned by one test, stopped and removed on drop;
//! * [`PgCluster::shared`]: one cluster per test process, started on first use and
//!   removed when the process exits, meant to back the suite's default PostgreSQL when
//!   no `POSBRIDGE_TEST_POSTGRES_URL` is set (pass [`PgCluster::admin_url`] wherever that
//!   URL would go).
//!
//! PostgreSQL refuses to run as root: when the tests run as root, `initdb` and `pg_ctl`
//! run as the `postgres` user (`runuser -u postgres`), and the directory is handed to it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

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

static SHARED: OnceLock<PgCluster> = OnceLock::new();

extern "C" fn remove_shared_cluster() {
    if let Some(cluster) = SHARED.get() {
        cluster.stop_and_remove();
    }
}

impl PgCluster {
    /// Whether PostgreSQL server binaries are installed (see [`PgCluster::start`]).
    pub fn available() -> bool {
        find_bin_dir().is_some()
    }

    /// Initialises and starts a new cluster; panics with the reason (and the server log)
    /// if the binaries are missing or it does not come up.
    pub fn start() -> PgCluster {
        let bin = find_bin_dir().unwrap_or_else(|| {
            panic!(
                "no PostgreSQL server binaries under /usr/lib/postgresql/*/bin \
                 (install postgresql, e.g. apt-get install postgresql)"
            )
        });
        let dir = tempfile::Builder::new()
            .prefix("posbridge-pgcluster-")
            .tempdir()
            .expect("creating the cluster directory")
            .keep();
        let run_as = is_root().then(|| "postgres".to_owned());
        if let Some(user) = &run_as {
            chown_to(&dir, user);
        }
        let mut cluster = PgCluster {
            bin,
            dir,
            port: 0,
            run_as,
            removed: AtomicBool::new(false),
        };
        cluster.initdb();
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            cluster.port = free_port();
            match cluster.pg_ctl_start() {
                Ok(()) => return cluster,
                Err(err) => last_error = err,
            }
        }
        let log = cluster.log();
        cluster.stop_and_remove();
        panic!("PostgreSQL cluster did not start: {last_error}\nlog:\n{log}");
    }

    /// The process-wide cluster, started on first use and stopped and removed when the
    /// process exits.
    pub fn shared() -> &'static PgCluster {
        SHARED.get_or_init(|| {
            let cluster = PgCluster::start();
            // SAFETY: registers a plain `extern "C" fn` without arguments, as atexit(3) wants.
            unsafe {
                libc::atexit(remove_shared_cluster);
            }
            cluster
        })
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

    fn initdb(&self) {
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
        run(cmd).unwrap_or_else(|err| panic!("initdb failed: {err}"));
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
                let mut cmd = Command::new("runuser");
                cmd.args(["-u", user, "--"]).arg(path);
                cmd
            }
            None => Command::new(path),
        }
    }

    /// Stops the cluster (if running) and deletes its directory; runs once.
    fn stop_and_remove(&self) {
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

/// The newest `/usr/lib/postgresql/<version>/bin` holding `initdb` and `pg_ctl`.
fn find_bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let version: u32 = entry.file_name().to_str()?.parse().ok()?;
            let bin = entry.path().join("bin");
            (bin.join("initdb").exists() && bin.join("pg_ctl").exists()).then_some((version, bin))
        })
        .collect();
    dirs.sort();
    dirs.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    // SAFETY: geteuid(2) cannot fail and has no side effects.
    unsafe { libc::geteuid() == 0 }
}

fn chown_to(dir: &Path, user: &str) {
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, user])
            .output()
            .unwrap_or_else(|e| panic!("running id {flag} {user}: {e}"));
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("no user {user:?} to run PostgreSQL as"))
    };
    std::os::unix::fs::chown(dir, Some(id("-u")), Some(id("-g")))
        .unwrap_or_else(|e| panic!("chown {} to {user}: {e}", dir.display()));
}

/// A port the kernel just handed out on loopback and that nobody holds now.
fn free_port() -> u16 {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a probe port");
    socket.local_addr().expect("probe address").port()
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
