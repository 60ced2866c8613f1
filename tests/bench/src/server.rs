//! Spawning the real `posbridge` binary and observing it through /proc.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const LISTENING_PREFIX: &str = "posbridge listening on http://";

pub struct Server {
    child: Child,
    pub pid: u32,
    pub addr: SocketAddr,
    pub operator_token: String,
    pub database_url: String,
    pub log_path: PathBuf,
    /// Holds the SQLite file and the server log.
    pub tmp_dir: PathBuf,
    // Removes `tmp_dir` when the bench ends, unless --keep-temp was given.
    _tmp: Option<tempfile::TempDir>,
}

/// `posbridge` next to this executable (both live in the same `target/<profile>` dir).
pub fn default_server_bin() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("locating the bench executable")?;
    let dir = exe
        .parent()
        .ok_or_else(|| anyhow!("bench executable {} has no parent dir", exe.display()))?;
    Ok(dir.join(format!("posbridge{}", std::env::consts::EXE_SUFFIX)))
}

fn random_hex(bytes: usize) -> String {
    (0..bytes)
        .map(|_| format!("{:02x}", rand::random::<u8>()))
        .collect()
}

pub fn random_suffix() -> String {
    random_hex(4)
}

impl Server {
    pub async fn start(
        bin: &Path,
        database_url: Option<&str>,
        extra: &[String],
        keep_temp: bool,
    ) -> Result<Server> {
        if !bin.is_file() {
            bail!(
                "server binary {} not found: build it first: cargo build --release -p posbridge \
                 (or pass --server-bin PATH)",
                bin.display()
            );
        }
        let tmp = tempfile::Builder::new()
            .prefix("posbridge-bench-")
            .tempdir()
            .context("creating a temp dir")?;
        let tmp_dir = tmp.path().to_path_buf();
        let tmp = if keep_temp {
            let _kept: PathBuf = tmp.keep();
            None
        } else {
            Some(tmp)
        };
        let database_url = match database_url {
            Some(url) => url.to_string(),
            None => format!("sqlite://{}", tmp_dir.join("bench.db").display()),
        };
        let operator_token = random_hex(24);
        let log_path = tmp_dir.join("server.log");
        let log = std::fs::File::create(&log_path)
            .with_context(|| format!("creating {}", log_path.display()))?;

        // The server runs inside the temp dir: with a PostgreSQL URL it keeps its plugin
        // cache and key file in the working directory, which must not be the caller's.
        let bin =
            std::fs::canonicalize(bin).with_context(|| format!("resolving {}", bin.display()))?;
        let mut child = Command::new(&bin)
            .current_dir(&tmp_dir)
            .arg("serve")
            .arg("--bind")
            .arg("127.0.0.1:0")
            .arg("--database-url")
            .arg(&database_url)
            .args(extra)
            .env("POSBRIDGE_OPERATOR_TOKEN", &operator_token)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let pid = child
            .id()
            .ok_or_else(|| anyhow!("server exited immediately"))?;
        let stdout = child
            .stdout
            .take()
            .ok_or_else(|| anyhow!("server stdout not captured"))?;
        let mut lines = BufReader::new(stdout).lines();

        let wait_listening = async {
            while let Some(line) = lines.next_line().await? {
                if let Some(rest) = line.trim().strip_prefix(LISTENING_PREFIX) {
                    let addr: SocketAddr = rest
                        .trim_end_matches('/')
                        .parse()
                        .with_context(|| format!("unparsable listening line {line:?}"))?;
                    return Ok::<_, anyhow::Error>(Some(addr));
                }
                eprintln!("[server stdout] {line}");
            }
            Ok(None)
        };
        let addr = match tokio::time::timeout(Duration::from_secs(60), wait_listening).await {
            Ok(Ok(Some(addr))) => addr,
            outcome => {
                let why = match outcome {
                    Ok(Ok(_)) => "server closed stdout without printing its listening line".into(),
                    Ok(Err(e)) => format!("reading server stdout: {e:#}"),
                    Err(_) => "server did not print its listening line within 60 s".into(),
                };
                let _ = child.start_kill();
                let status = match tokio::time::timeout(Duration::from_secs(5), child.wait()).await
                {
                    Ok(Ok(status)) => status.to_string(),
                    Ok(Err(e)) => format!("unknown: {e}"),
                    Err(_) => "still running, killed".into(),
                };
                bail!(
                    "{why} (server {status})\n--- server log tail ---\n{}",
                    log_tail(&log_path, 30)
                );
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        tokio::spawn(async move {
            while let Ok(Some(line)) = lines.next_line().await {
                eprintln!("[server stdout] {line}");
            }
        });

        Ok(Server {
            child,
            pid,
            addr,
            operator_token,
            database_url,
            log_path,
            tmp_dir,
            _tmp: tmp,
        })
    }

    /// `Err` with the exit status and log tail if the server is gone.
    pub fn check_alive(&mut self) -> Result<()> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => bail!(
                "server exited unexpectedly ({status})\n--- server log tail ---\n{}",
                log_tail(&self.log_path, 30)
            ),
            Err(e) => Err(e).context("checking the server process"),
        }
    }

    pub fn rss_kib(&self) -> Result<u64> {
        proc_status_kib(self.pid, "VmRSS:")
    }

    pub fn cpu_secs(&self) -> Result<f64> {
        cpu_secs(&format!("/proc/{}/stat", self.pid))
    }

    pub fn threads(&self) -> Result<u64> {
        proc_status_kib(self.pid, "Threads:")
    }

    pub fn log_size(&self) -> u64 {
        std::fs::metadata(&self.log_path)
            .map(|m| m.len())
            .unwrap_or(0)
    }

    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path, lines)
    }

    /// SIGTERM, then wait for a graceful exit (the contract says status 0).
    pub async fn shutdown(mut self) -> Result<ExitStatus> {
        if let Ok(Some(status)) = self.child.try_wait() {
            return Ok(status);
        }
        let pid = i32::try_from(self.pid).context("server pid out of range")?;
        // SAFETY: plain kill(2) on the pid of a child we spawned and have not reaped.
        let rc = unsafe { libc::kill(pid, libc::SIGTERM) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error()).context("sending SIGTERM to the server");
        }
        match tokio::time::timeout(Duration::from_secs(15), self.child.wait()).await {
            Ok(status) => status.context("waiting for the server"),
            Err(_) => {
                let _ = self.child.start_kill();
                let _ = self.child.wait().await;
                bail!("server did not exit within 15 s of SIGTERM (killed it)")
            }
        }
    }
}

fn proc_status_kib(pid: u32, field: &str) -> Result<u64> {
    let path = format!("/proc/{pid}/status");
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let line = text
        .lines()
        .find(|l| l.starts_with(field))
        .ok_or_else(|| anyhow!("no {field} in {path}"))?;
    line[field.len()..]
        .split_whitespace()
        .next()
        .ok_or_else(|| anyhow!("empty {field} in {path}"))?
        .parse()
        .with_context(|| format!("unparsable {line:?} in {path}"))
}

/// utime + stime of a process, in seconds, from a `/proc/<pid>/stat` file.
fn cpu_secs(path: &str) -> Result<f64> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) may contain spaces; fields after it follow the last ')'.
    let after = text
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| anyhow!("unparsable {path}"))?;
    let fields: Vec<&str> = after.split_whitespace().collect();
    // fields[0] is field 3 (state); utime is field 14, stime field 15.
    let ticks = |i: usize| -> Result<u64> {
        fields
            .get(i)
            .ok_or_else(|| anyhow!("short {path}"))?
            .parse::<u64>()
            .with_context(|| format!("unparsable {path}"))
    };
    let total = ticks(11)? + ticks(12)?;
    Ok(total as f64 / clock_ticks())
}

/// CPU seconds of the whole machine (all CPUs) from /proc/stat: time in processes
/// (user, nice, system) and time in interrupts (irq, softirq — loopback TCP delivery runs
/// largely there — plus steal).
fn machine_secs() -> Result<(f64, f64)> {
    let text = std::fs::read_to_string("/proc/stat").context("reading /proc/stat")?;
    let line = text
        .lines()
        .find(|l| l.starts_with("cpu "))
        .ok_or_else(|| anyhow!("no cpu line in /proc/stat"))?;
    // user nice system idle iowait irq softirq steal …
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let field = |i: usize| v.get(i).copied().unwrap_or(0);
    let tasks = field(0) + field(1) + field(2);
    let irq = field(5) + field(6) + field(7);
    Ok((tasks as f64 / clock_ticks(), irq as f64 / clock_ticks()))
}

fn machine_busy_secs() -> Result<f64> {
    machine_secs().map(|(tasks, irq)| tasks + irq)
}

/// Average busy cores of the whole machine over `window` (before the server starts: how
/// quiet the machine is).
pub async fn machine_busy_cores(window: Duration) -> Option<f64> {
    let a = machine_busy_secs().ok()?;
    tokio::time::sleep(window).await;
    let b = machine_busy_secs().ok()?;
    Some((b - a) / window.as_secs_f64())
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 {
        hz as f64
    } else {
        100.0
    }
}

/// CPU time of the server, of the bench itself and of the whole machine at one instant.
#[derive(Clone, Copy)]
pub struct CpuSample {
    at: std::time::Instant,
    server: Option<f64>,
    client: Option<f64>,
    machine: Option<(f64, f64)>,
}

/// Cores used on average between two samples.
#[derive(Clone, Copy, Debug)]
pub struct CpuUse {
    pub server: f64,
    pub client: f64,
    /// Interrupt and softirq time (not charged to any process) plus steal.
    pub irq: f64,
    /// Other processes.
    pub others: f64,
}

impl CpuSample {
    pub fn take(server: &Server) -> CpuSample {
        CpuSample {
            at: std::time::Instant::now(),
            server: server.cpu_secs().ok(),
            client: cpu_secs("/proc/self/stat").ok(),
            machine: machine_secs().ok(),
        }
    }

    pub fn until(&self, later: &CpuSample) -> Option<CpuUse> {
        let secs = later.at.duration_since(self.at).as_secs_f64();
        if secs <= 0.0 {
            return None;
        }
        let server = (later.server? - self.server?) / secs;
        let client = (later.client? - self.client?) / secs;
        let (tasks0, irq0) = self.machine?;
        let (tasks1, irq1) = later.machine?;
        Some(CpuUse {
            server,
            client,
            irq: (irq1 - irq0) / secs,
            others: ((tasks1 - tasks0) / secs - server - client).max(0.0),
        })
    }
}

fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(could not read {}: {e})", path.display()),
    }
}
