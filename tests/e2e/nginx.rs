//! nginx (Debian's package, started by the test on loopback) in front of two hosts on one
//! PostgreSQL database, with the locations of `deploy/nginx/posbridge-proxy.conf`
//! included unchanged: terminals connected through it receive every event exactly once,
//! in order, when the host they were on is killed (kill -9) and they reconnect through
//! nginx with `since`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use posbridge_harness::tokio_tungstenite::tungstenite::Message;
use posbridge_harness::{eventually, postgres_available, Backend, TenantKeys, Ws};
use serde_json::{json, Value};

use crate::last_seq;

/// The locations file of the deployment kit, included by the generated configuration.
const PROXY_LOCATIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../deploy/nginx/posbridge-proxy.conf"
);

/// Terminals connected through nginx (round robin puts half on each host).
const TERMINALS: usize = 6;
/// Events written in each phase (before the kill, while terminals reconnect, after).
const PER_PHASE: i64 = 20;
/// How long a terminal may wait for one frame.
const FRAME_WITHIN: Duration = Duration::from_secs(20);

/// Where nginx is, or a failure that says to install it: this test must not pass
/// silently on a machine without it.
fn nginx_binary() -> PathBuf {
    let candidates = [
        PathBuf::from("/usr/sbin/nginx"),
        PathBuf::from("/usr/bin/nginx"),
    ];
    let on_path = std::env::var_os("PATH")
        .map(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("nginx"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    candidates
        .into_iter()
        .chain(on_path)
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "nginx is not installed, and the nginx end-to-end test needs it: install it \
                 (Debian/Ubuntu: `apt-get install -y nginx`; .ci/run does this)"
            )
        })
}

/// An nginx started by the test, in the foreground, with everything under a temporary
/// directory. One process (`master_process off`), so killing it leaves no worker behind.
struct Nginx {
    child: tokio::process::Child,
    port: u16,
    dir: tempfile::TempDir,
}

impl Nginx {
    async fn start(bin: &Path, upstreams: &[&str]) -> Nginx {
        let dir = tempfile::Builder::new()
            .prefix("posbridge-nginx-")
            .tempdir()
            .expect("temp dir");
        let port = free_port();
        let d = dir.path().display();
        let servers: String = upstreams
            .iter()
            .map(|addr| format!("        server {addr} max_fails=1 fail_timeout=10s;\n"))
            .collect();
        // As root, nginx would switch its worker to `nobody`, which cannot use the
        // private temporary directory.
        let user = if running_as_root() {
            "user root root;\n"
        } else {
            ""
        };
        let config = format!(
            "{user}master_process off;\n\
             error_log {d}/error.log info;\n\
             pid {d}/nginx.pid;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n\
             \x20   access_log {d}/access.log;\n\
             \x20   client_body_temp_path {d}/client_body;\n\
             \x20   proxy_temp_path {d}/proxy;\n\
             \x20   fastcgi_temp_path {d}/fastcgi;\n\
             \x20   uwsgi_temp_path {d}/uwsgi;\n\
             \x20   scgi_temp_path {d}/scgi;\n\
             \x20   upstream posbridge {{\n{servers}        keepalive 32;\n    }}\n\
             \x20   server {{\n\
             \x20       listen 127.0.0.1:{port};\n\
             \x20       include {PROXY_LOCATIONS};\n\
             \x20   }}\n\
             }}\n"
        );
        let conf = dir.path().join("nginx.conf");
        std::fs::write(&conf, config).expect("writing nginx.conf");
        let child = tokio::process::Command::new(bin)
            .arg("-p")
            .arg(dir.path())
            .arg("-e")
            .arg(dir.path().join("error.log"))
            .arg("-c")
            .arg(&conf)
            .args(["-g", "daemon off;"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("starting {}: {e}", bin.display()));
        let nginx = Nginx { child, port, dir };
        let http = posbridge_harness::reqwest::Client::new();
        let url = format!("http://127.0.0.1:{port}/healthz");
        eventually(Duration::from_secs(20), "nginx answering /healthz", || {
            let http = http.clone();
            let url = url.clone();
            async move {
                let resp = http.get(&url).send().await.ok()?;
                (resp.status() == 200).then_some(())
            }
        })
        .await;
        nginx
    }

    fn ws_url(&self, slug: &str, since: Option<i64>) -> String {
        match since {
            Some(n) => format!("ws://127.0.0.1:{}/ws/pos/{slug}?since={n}", self.port),
            None => format!("ws://127.0.0.1:{}/ws/pos/{slug}", self.port),
        }
    }

    /// A terminal's socket through nginx, retried until a host takes it.
    async fn connect(&self, tenant: &TenantKeys, since: Option<i64>) -> Ws {
        let url = self.ws_url(&tenant.slug, since);
        let headers = [
            ("X-API-Key", tenant.terminal.key.as_str()),
            ("X-Tenant-ID", tenant.slug.as_str()),
        ];
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            match Ws::connect(&url, &headers).await {
                Ok(ws) => return ws,
                Err(err) if Instant::now() < deadline => {
                    eprintln!("reconnecting through nginx: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(err) => panic!(
                    "no host took the socket through nginx: {err}\n{}",
                    self.log()
                ),
            }
        }
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("binding a free port");
    listener.local_addr().expect("local address").port()
}

fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|meta| meta.uid() == 0)
}

/// One terminal: its socket and every event seq it received.
struct Terminal {
    ws: Ws,
    seqs: Vec<i64>,
    last: i64,
    reconnects: usize,
}

impl Terminal {
    /// Reads until it has seen `target`, reconnecting through nginx with `since` when its
    /// socket ends. Returns how long the reconnections took.
    async fn read_until(&mut self, target: i64, nginx: &Nginx, tenant: &TenantKeys) -> Duration {
        let mut reconnecting = Duration::ZERO;
        while self.last < target {
            match self.ws.next_message(FRAME_WITHIN).await {
                Some(Message::Text(text)) => {
                    let frame: Value = serde_json::from_str(text.as_str()).expect("JSON frame");
                    match frame["type"].as_str() {
                        Some("hello") => {}
                        Some("reset") => panic!("resumed with a reset, events lost: {frame}"),
                        _ => {
                            let seq = frame["seq"].as_i64().expect("event seq");
                            self.seqs.push(seq);
                            self.last = seq;
                        }
                    }
                }
                Some(Message::Close(_)) | None => {
                    let started = Instant::now();
                    self.ws = nginx.connect(tenant, Some(self.last)).await;
                    reconnecting += started.elapsed();
                    self.reconnects += 1;
                }
                Some(_) => {}
            }
        }
        reconnecting
    }
}

async fn add_ten(client: &posbridge_harness::Client, n: i64) {
    for _ in 0..n {
        client
            .post("/loyalty/%2B15550100199/add", &json!({"points": 10}))
            .await
            .expect(200);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn terminals_behind_nginx_resume_exactly_once_after_kill_9_postgres() {
    let bin = nginx_binary();
    if !postgres_available().await {
        return;
    }
    let mut host_a = crate::start(Backend::Postgres).await;
    let host_b = host_a.start_sibling().await;
    let kitchen = host_a.setup_tenant("kitchen").await;
    let nginx = Nginx::start(&bin, &[host_a.addr(), host_b.addr()]).await;
    // Writes go to the host that survives, directly: what is tested is the terminals'
    // side through nginx.
    let writer = host_b.terminal(&kitchen);
    let base = last_seq(&writer).await;

    let mut terminals = Vec::new();
    for _ in 0..TERMINALS {
        let mut ws = nginx.connect(&kitchen, None).await;
        let hello = ws.hello().await;
        assert_eq!(hello["last_seq"], base, "{hello}");
        terminals.push(Terminal {
            ws,
            seqs: Vec::new(),
            last: base,
            reconnects: 0,
        });
    }

    add_ten(&writer, PER_PHASE).await;
    for terminal in &mut terminals {
        terminal
            .read_until(base + PER_PHASE, &nginx, &kitchen)
            .await;
    }

    // kill -9 the first host; its terminals lose their sockets and come back through
    // nginx, which now finds only the second.
    let pid = host_a.pid().expect("host A runs");
    let pid = libc::pid_t::try_from(pid).expect("pid fits pid_t");
    // SAFETY: kill(2) on the child the harness spawned and has not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGKILL) }, 0, "kill -9");
    host_a.wait_exit().await;
    add_ten(&writer, PER_PHASE).await;
    let mut slowest = Duration::ZERO;
    for terminal in &mut terminals {
        let took = terminal
            .read_until(base + 2 * PER_PHASE, &nginx, &kitchen)
            .await;
        slowest = slowest.max(took);
    }
    add_ten(&writer, PER_PHASE).await;
    for terminal in &mut terminals {
        terminal
            .read_until(base + 3 * PER_PHASE, &nginx, &kitchen)
            .await;
    }

    let expected: Vec<i64> = (base + 1..=base + 3 * PER_PHASE).collect();
    for (i, terminal) in terminals.iter().enumerate() {
        assert_eq!(
            terminal.seqs, expected,
            "terminal {i} must see every event exactly once, in order"
        );
    }
    let moved = terminals.iter().filter(|t| t.reconnects > 0).count();
    assert!(
        (1..TERMINALS).contains(&moved),
        "round robin put terminals on both hosts, and those of the killed host reconnected \
         ({moved} of {TERMINALS} reconnected)"
    );
    eprintln!(
        "nginx failover: {moved} of {TERMINALS} terminals moved to the surviving host; \
         slowest reconnection {slowest:?}"
    );
    // REST through nginx reaches the surviving host.
    let resp = posbridge_harness::reqwest::Client::new()
        .get(format!("http://127.0.0.1:{}/healthz", nginx.port))
        .send()
        .await
        .expect("GET /healthz through nginx");
    assert_eq!(resp.status(), 200);
}
