//! TLS without a proxy (`--tls-cert` / `--tls-key`): https and wss with a certificate of
//! the test's own CA, the pair reloaded when its files change or on SIGHUP, a bad
//! replacement ignored, an unusable pair refused at start, and a client that never
//! finishes its handshake released by the header timeout.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use posbridge_harness::tls::{presented_certificate, write_replacing, HostCert, TestCa};
use posbridge_harness::{eventually, Backend, TestServer};
use serde_json::json;

use crate::BIN;

/// How long a reload may take: the files are polled every 2 s.
const RELOAD_WITHIN: Duration = Duration::from_secs(15);

/// A CA, a first host certificate written to `dir`, and the flags naming it.
struct Setup {
    ca: TestCa,
    dir: tempfile::TempDir,
    first: HostCert,
}

impl Setup {
    fn new() -> Setup {
        let ca = TestCa::new();
        let dir = tempfile::tempdir().expect("temp dir");
        let first = ca.issue("posbridge first");
        let setup = Setup { ca, dir, first };
        setup.first.write(&setup.cert(), &setup.key());
        setup
    }

    fn cert(&self) -> PathBuf {
        self.dir.path().join("host.crt")
    }

    fn key(&self) -> PathBuf {
        self.dir.path().join("host.key")
    }

    async fn start(&self, extra: &[&str]) -> TestServer {
        let cert = self.cert().display().to_string();
        let key = self.key().display().to_string();
        let mut args = vec!["--tls-cert", cert.as_str(), "--tls-key", key.as_str()];
        args.extend_from_slice(extra);
        TestServer::start_with_tls(BIN, Backend::Sqlite, &args, &self.ca.pem()).await
    }

    /// Waits until a new connection to `server` is handed `expected`.
    async fn wait_for(&self, server: &TestServer, expected: &HostCert, what: &str) {
        let ca = self.ca.pem();
        eventually(RELOAD_WITHIN, what, || async {
            let presented = presented_certificate(server.addr(), &ca).await.ok()?;
            (presented == expected.der).then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn https_and_wss_serve_rest_and_events() {
    let setup = Setup::new();
    let server = setup.start(&[]).await;
    assert!(server.base_url().starts_with("https://127.0.0.1:"));
    let kitchen = server.setup_tenant("kitchen").await;
    let mut ws = server.ws("kitchen", &kitchen.terminal.key, None).await;
    assert_eq!(
        ws.peer_certificate().as_deref(),
        Some(setup.first.der.as_slice()),
        "the wss socket got the configured certificate"
    );
    ws.hello().await;
    let added = server
        .terminal(&kitchen)
        .post("/loyalty/%2B15550100199/add", &json!({"points": 10}))
        .await;
    added.expect(200);
    let event = ws.next_json().await;
    assert_eq!(event["type"], "loyalty_updated", "{event}");
    assert_eq!(event["data"]["points"], 10, "{event}");
    // Plain http on the TLS port is not served.
    let plain = posbridge_harness::reqwest::Client::new()
        .get(format!("http://{}/healthz", server.addr()))
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    assert!(plain.is_err(), "plain http must fail on a TLS port");
    // A close from the server crosses the TLS pump before it lets go.
    server
        .admin()
        .delete(&format!(
            "/admin/tenants/kitchen/keys/{}",
            kitchen.terminal.id
        ))
        .await
        .expect(204);
    let code = ws.expect_close(Duration::from_secs(10)).await;
    assert_eq!(code, Some(4003), "closed as revoked, over wss");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_replaced_certificate_is_served_with_and_without_sighup() {
    let setup = Setup::new();
    let server = setup.start(&[]).await;
    let kitchen = server.setup_tenant("kitchen").await;
    let mut before = server.ws("kitchen", &kitchen.terminal.key, None).await;
    before.hello().await;
    setup
        .wait_for(&server, &setup.first, "the first certificate")
        .await;

    // Renewed on disk: the next connection sees it without any signal.
    let second = setup.ca.issue("posbridge second");
    second.write(&setup.cert(), &setup.key());
    setup
        .wait_for(&server, &second, "the certificate replaced on disk")
        .await;
    let mut after = server.ws("kitchen", &kitchen.terminal.key, None).await;
    assert_eq!(after.peer_certificate(), Some(second.der.clone()));
    after.hello().await;

    // Renewed and signalled: SIGHUP reloads (and says so).
    let third = setup.ca.issue("posbridge third");
    third.write(&setup.cert(), &setup.key());
    server.sighup();
    setup
        .wait_for(&server, &third, "the certificate reloaded on SIGHUP")
        .await;
    eventually(RELOAD_WITHIN, "a reload logged for SIGHUP", || async {
        server
            .logs()
            .lines()
            .any(|l| l.contains("TLS certificate reloaded") && l.contains("SIGHUP"))
            .then_some(())
    })
    .await;

    // Sockets opened before a reload keep working.
    server
        .terminal(&kitchen)
        .post("/loyalty/%2B15550100199/add", &json!({"points": 10}))
        .await
        .expect(200);
    assert_eq!(before.next_json().await["type"], "loyalty_updated");
    assert_eq!(after.next_json().await["type"], "loyalty_updated");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_replacement_keeps_the_old_certificate() {
    let setup = Setup::new();
    let server = setup.start(&[]).await;
    let failures = |server: &TestServer| {
        server
            .logs()
            .matches("TLS certificate reload failed")
            .count()
    };

    // A new certificate whose key is still the old one's: refused, old pair kept.
    let second = setup.ca.issue("posbridge second");
    write_replacing(&setup.cert(), second.cert_pem.as_bytes());
    eventually(RELOAD_WITHIN, "the mismatched pair reported", || async {
        (failures(&server) >= 1).then_some(())
    })
    .await;
    let ca = setup.ca.pem();
    let presented = presented_certificate(server.addr(), &ca).await;
    assert_eq!(presented, Ok(setup.first.der.clone()), "old pair kept");

    // Not PEM at all, then SIGHUP: refused again, old pair kept.
    write_replacing(&setup.cert(), b"not a certificate\n");
    server.sighup();
    eventually(RELOAD_WITHIN, "the garbage file reported", || async {
        (failures(&server) >= 2).then_some(())
    })
    .await;
    let presented = presented_certificate(server.addr(), &ca).await;
    assert_eq!(presented, Ok(setup.first.der.clone()), "old pair kept");
    assert!(
        server.logs().contains("holds no PEM certificate"),
        "the log says what is wrong"
    );
    server.admin().get("/healthz").await.expect(200);

    // Fixed: the good pair is taken up.
    second.write(&setup.cert(), &setup.key());
    setup.wait_for(&server, &second, "the fixed pair").await;
}

/// `serve` with `args`, expected to refuse to start: returns its exit code and stderr.
async fn refused(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let db = format!("sqlite://{}/p.db", dir.display());
    let child = tokio::process::Command::new(BIN)
        .current_dir(dir)
        .args(["serve", "--bind", "127.0.0.1:0", "--database-url", &db])
        .args(args)
        .env_remove("POSBRIDGE_CONFIG")
        .env_remove("POSBRIDGE_TLS_CERT")
        .env_remove("POSBRIDGE_TLS_KEY")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(60), child)
        .await
        .expect("serve must exit at once")
        .expect("running serve");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unusable_pair_refuses_to_start() {
    let setup = Setup::new();
    let dir = setup.dir.path();
    let cert = setup.cert().display().to_string();
    let key = setup.key().display().to_string();
    let missing = dir.join("missing.crt").display().to_string();

    let (code, stderr) = refused(dir, &["--tls-cert", &missing, "--tls-key", &key]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot read TLS certificate") && stderr.contains(&missing),
        "{stderr}"
    );

    let other = setup.ca.issue("other");
    let other_key = dir.join("other.key");
    std::fs::write(&other_key, &other.key_pem).expect("writing the other key");
    let other_key = other_key.display().to_string();
    let (code, stderr) = refused(dir, &["--tls-cert", &cert, "--tls-key", &other_key]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("does not fit certificate"), "{stderr}");

    let (code, stderr) = refused(dir, &["--tls-cert", &cert]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("tls-cert is set but tls-key is not"),
        "{stderr}"
    );
    // Through the config file, which the command line's pairing rule does not see.
    let config = dir.join("posbridge.toml");
    std::fs::write(&config, format!("tls-key = {key:?}\n")).expect("writing the config");
    let config = config.display().to_string();
    let (code, stderr) = refused(dir, &["--config", &config]).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("tls-key is set but tls-cert is not"),
        "{stderr}"
    );
    assert!(
        !dir.join("p.db").exists(),
        "nothing is created before the pair is checked"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_handshake_is_released_by_the_header_timeout() {
    use tokio::io::AsyncReadExt;

    let setup = Setup::new();
    let server = setup
        .start(&[
            "--max-connections",
            "1",
            "--reserved-connections",
            "0",
            "--header-read-timeout-ms",
            "1000",
        ])
        .await;
    let ca = setup.ca.pem();
    // Connects and never says hello: it holds the only slot…
    let mut stalled = tokio::net::TcpStream::connect(server.addr())
        .await
        .expect("connecting");
    let opened = tokio::time::Instant::now();
    // …until the header timeout closes it.
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), stalled.read(&mut buf))
        .await
        .expect("the stalled handshake must be closed within 10 s");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "closed without an answer: {read:?}"
    );
    assert!(
        opened.elapsed() >= Duration::from_millis(900),
        "closed by the timeout, not at once ({:?})",
        opened.elapsed()
    );
    // The slot is free again.
    let presented = eventually(
        Duration::from_secs(5),
        "a handshake after the release",
        || {
            let ca = ca.clone();
            let addr = server.addr().to_owned();
            async move { presented_certificate(&addr, &ca).await.ok() }
        },
    )
    .await;
    assert_eq!(presented, setup.first.der);
}
