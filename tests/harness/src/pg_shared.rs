//! The suite's default PostgreSQL when `POSBRIDGE_TEST_POSTGRES_URL` is not set: one
//! throwaway [`PgCluster`] for the whole test run, started by whichever test needs it
//! first and removed when the run ends.
//!
//! * Under cargo-nextest every test is its own process, so the processes of one run
//!   (`NEXTEST_RUN_ID`) meet in `$TMPDIR/posbridge-pg-nextest-<run id>/`: the first takes
//!   the lock file, starts the cluster in `cluster/` and writes `state`; the others wait on
//!   the lock, read `state` and reuse the cluster. Nobody of the run outlives the others
//!   to clean up, so the first process also leaves a small detached watchdog (`sh`) that
//!   waits for the nextest process (its parent) to end, then stops the cluster and
//!   deletes the directory.
//! * Under plain `cargo test` a test binary is one process: the cluster is that process's,
//!   removed at exit, and the same watchdog (watching the process itself) covers an exit
//!   that skips `atexit` handlers, such as Ctrl-C.
//!
//! An initialisation that failed is recorded too, so every test of the run reports the
//! same error at once instead of each retrying `initdb`.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use crate::pg_cluster::{server_bin_dir, PgCluster};

/// Name and password of the role the tests use on the throwaway cluster: allowed to log in
/// and create databases, nothing more, like the role a real deployment gets.
const ROLE: &str = "posbridge";

/// Why the run has no throwaway cluster.
#[derive(Debug, Clone)]
pub(crate) enum Unavailable {
    /// No PostgreSQL server binaries on this machine.
    NoBinaries,
    /// Binaries exist but the cluster could not be started; the message says why.
    Failed(String),
}

static PROCESS_RESULT: OnceLock<Result<String, Unavailable>> = OnceLock::new();
static PROCESS_CLUSTER: OnceLock<PgCluster> = OnceLock::new();

/// The admin URL of the run's throwaway cluster (role `posbridge`, database `postgres`),
/// starting the cluster if this is the first test to need it. Blocks: initdb and start
/// take a second or two, and other processes of the run may hold the lock meanwhile.
pub(crate) fn admin_url() -> Result<String, Unavailable> {
    PROCESS_RESULT
        .get_or_init(|| match std::env::var("NEXTEST_RUN_ID") {
            Ok(run_id) if !run_id.trim().is_empty() => run_wide(run_id.trim()),
            _ => process_wide(),
        })
        .clone()
}

/// One cluster for the whole nextest run (see the module docs).
fn run_wide(run_id: &str) -> Result<String, Unavailable> {
    // The run id is a UUID; anything else is kept out of the path.
    let safe_id: String = run_id
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .collect();
    let state_dir = std::env::temp_dir().join(format!("posbridge-pg-nextest-{safe_id}"));
    let failed = |what: &str, e: std::io::Error| {
        Unavailable::Failed(format!("{what} {}: {e}", state_dir.display()))
    };
    std::fs::create_dir_all(&state_dir).map_err(|e| failed("creating", e))?;
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(state_dir.join("lock"))
        .map_err(|e| failed("opening the lock file in", e))?;
    // SAFETY: flock(2) on a descriptor `lock` owns for the whole call; the lock is
    // released when `lock` is closed at the end of this function.
    if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(failed("locking", std::io::Error::last_os_error()));
    }

    let state_file = state_dir.join("state");
    if let Ok(state) = std::fs::read_to_string(&state_file) {
        match parse_state(&state) {
            Some(State::Ready(port)) if listening(port) => return Ok(url_for(port)),
            Some(State::Ready(port)) if postmaster_alive(&state_dir.join("cluster")) => {
                return Err(Unavailable::Failed(format!(
                    "the run's cluster ({}) runs but does not accept connections on port {port}",
                    state_dir.join("cluster").display()
                )));
            }
            // The cluster is gone (killed from outside): start another below.
            Some(State::Ready(_)) | None => {}
            Some(State::NoBinaries) => return Err(Unavailable::NoBinaries),
            Some(State::Failed(msg)) => return Err(Unavailable::Failed(msg)),
        }
    } else {
        // First process of the run: the watchdog goes first, so that even a crash
        // between here and the cluster's start leaves nothing behind. Its parent is the
        // nextest process that runs every test of this run.
        // SAFETY: getppid(2) cannot fail and has no side effects.
        let parent = unsafe { libc::getppid() };
        spawn_watchdog(parent, &state_dir.join("cluster"), &state_dir);
    }

    // Whatever a dead cluster left (a stale data directory) would make initdb refuse.
    let cluster_dir = state_dir.join("cluster");
    let _ = std::fs::remove_dir_all(&cluster_dir);
    let result = start_cluster(cluster_dir).map(|cluster| {
        let port = cluster.port();
        // Kept running for the other processes of the run; the watchdog removes it.
        cluster.detach();
        port
    });
    let state = match &result {
        Ok(port) => format!("ready {port}\n"),
        Err(Unavailable::NoBinaries) => "no-binaries\n".to_owned(),
        Err(Unavailable::Failed(msg)) => format!("failed\n{msg}"),
    };
    write_state(&state_file, &state).map_err(|e| failed("writing the state file in", e))?;
    drop(lock);
    result.map(url_for)
}

/// One cluster for this process (plain `cargo test`), removed at exit.
fn process_wide() -> Result<String, Unavailable> {
    let dir = tempfile::Builder::new()
        .prefix("posbridge-pg-")
        .tempdir()
        .map_err(|e| Unavailable::Failed(format!("creating a temporary directory: {e}")))?
        .keep();
    // SAFETY: getpid(2) cannot fail and has no side effects.
    let me = unsafe { libc::getpid() };
    spawn_watchdog(me, &dir, &dir);
    let cluster = match start_cluster(dir.clone()) {
        Ok(cluster) => cluster,
        Err(err) => {
            let _ = std::fs::remove_dir_all(&dir);
            return Err(err);
        }
    };
    let port = cluster.port();
    if PROCESS_CLUSTER.set(cluster).is_ok() {
        // SAFETY: registers a plain `extern "C" fn` without arguments, as atexit(3) wants.
        unsafe {
            libc::atexit(remove_process_cluster);
        }
    }
    Ok(url_for(port))
}

extern "C" fn remove_process_cluster() {
    if let Some(cluster) = PROCESS_CLUSTER.get() {
        cluster.stop_and_remove();
    }
}

/// Starts a cluster in `dir` with the tests' role; on failure nothing is left running.
fn start_cluster(dir: PathBuf) -> Result<PgCluster, Unavailable> {
    let bin = server_bin_dir().ok_or(Unavailable::NoBinaries)?;
    let cluster = PgCluster::start_in(bin, dir).map_err(Unavailable::Failed)?;
    if let Err(err) = create_role(&cluster.admin_url()) {
        let log = cluster.log();
        cluster.stop_and_remove();
        return Err(Unavailable::Failed(format!(
            "creating the role {ROLE} on the throwaway cluster: {err}\nlog:\n{log}"
        )));
    }
    Ok(cluster)
}

/// `CREATE ROLE posbridge LOGIN CREATEDB`, from a helper thread with its own runtime (the
/// caller may be on a runtime's blocking pool, where starting another is refused).
fn create_role(superuser_url: &str) -> Result<(), String> {
    let url = superuser_url.to_owned();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        rt.block_on(async move {
            use sqlx::Connection;
            let mut conn = tokio::time::timeout(
                Duration::from_secs(30),
                sqlx::postgres::PgConnection::connect(&url),
            )
            .await
            .map_err(|_| "no answer within 30 s".to_owned())?
            .map_err(|e| e.to_string())?;
            sqlx::raw_sql(&format!(
                "CREATE ROLE {ROLE} LOGIN CREATEDB PASSWORD '{ROLE}'"
            ))
            .execute(&mut conn)
            .await
            .map_err(|e| e.to_string())?;
            let _ = conn.close().await;
            Ok(())
        })
    })
    .join()
    .map_err(|_| "the helper thread panicked".to_owned())?
}

fn url_for(port: u16) -> String {
    format!("postgres://{ROLE}:{ROLE}@127.0.0.1:{port}/postgres")
}

enum State {
    Ready(u16),
    NoBinaries,
    Failed(String),
}

fn parse_state(text: &str) -> Option<State> {
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    match first.split_once(' ') {
        Some(("ready", port)) => port.trim().parse().ok().map(State::Ready),
        _ if first == "no-binaries" => Some(State::NoBinaries),
        _ if first == "failed" => Some(State::Failed(rest.to_owned())),
        _ => None,
    }
}

fn write_state(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let mut file = File::create(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(tmp, path)
}

/// Whether the postmaster of `cluster_dir/data` still runs (its pid file names a live
/// process).
fn postmaster_alive(cluster_dir: &Path) -> bool {
    std::fs::read_to_string(cluster_dir.join("data/postmaster.pid"))
        .ok()
        .and_then(|text| text.lines().next()?.trim().parse::<u32>().ok())
        .is_some_and(|pid| Path::new(&format!("/proc/{pid}")).exists())
}

/// Whether something accepts connections on the loopback `port`.
fn listening(port: u16) -> bool {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_ok()
}

/// The watchdog: `sh` polling once a second until process `pid` is gone (same pid and
/// same start time, so a recycled pid does not count), then stopping the postmaster of
/// `cluster_dir/data` (SIGQUIT, PostgreSQL's immediate shutdown) and deleting `remove`.
///
/// It runs in its own session with no standard streams, so neither a terminal's Ctrl-C
/// nor nextest (which waits for a test's output pipes to close) is held up by it.
const WATCHDOG: &str = r#"
pid=$1 started=$2 data=$3/data remove=$4
alive() {
  [ -d "/proc/$pid" ] || return 1
  [ -z "$started" ] && return 0
  now=$(sed 's/.*) //' "/proc/$pid/stat" 2>/dev/null | cut -d' ' -f20)
  [ "$now" = "$started" ]
}
while alive; do sleep 1; done
if [ -f "$data/postmaster.pid" ]; then
  pm=$(head -n 1 "$data/postmaster.pid")
  if [ -n "$pm" ] && [ "$(cat "/proc/$pm/comm" 2>/dev/null)" = postgres ]; then
    kill -QUIT "$pm" 2>/dev/null
    n=0
    while [ -d "/proc/$pm" ] && [ $n -lt 300 ]; do sleep 0.1; n=$((n + 1)); done
  fi
fi
rm -rf "$remove"
"#;

fn spawn_watchdog(pid: libc::pid_t, cluster_dir: &Path, remove: &Path) {
    let started = start_time(pid).unwrap_or_default();
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(WATCHDOG)
        .arg("posbridge-pg-watchdog")
        .arg(pid.to_string())
        .arg(started)
        .arg(cluster_dir)
        .arg(remove)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    // SAFETY: setsid(2) is async-signal-safe, which is all a pre_exec hook may call.
    unsafe {
        cmd.pre_exec(|| {
            libc::setsid();
            Ok(())
        });
    }
    // Without a watchdog the run still works; only its cleanup is lost, so say so.
    if let Err(err) = cmd.spawn() {
        eprintln!("posbridge-harness: no watchdog for the throwaway PostgreSQL cluster: {err}");
    }
}

/// Field 22 of `/proc/<pid>/stat` (start time in clock ticks since boot), read after the
/// command name, which may itself contain spaces and parentheses.
fn start_time(pid: libc::pid_t) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_comm = &stat[stat.rfind(')')? + 2..];
    after_comm.split(' ').nth(19).map(str::to_owned)
}
