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

/// Signature key of the Square integrations the benches connect.
pub const SQUARE_WEBHOOK_KEY: &str = "bench-webhook-key";

/// Approves `mock` as the Square plugin's host and connects `venue` to it (webhooks signed
/// with [`SQUARE_WEBHOOK_KEY`], no scheduled sync within a run); returns the integration.
pub async fn connect_square(
    srv: &crate::TestServer,
    manager: &crate::Client,
    mock: &crate::mock_square::MockSquare,
    venue: &str,
) -> serde_json::Value {
    use crate::mock_square::{SQUARE_LOCATION, SQUARE_TOKEN};
    approve_host(srv, "square", mock.host_port()).await;
    manager
        .post(
            "/pos/connect",
            &serde_json::json!({
                "venue": venue,
                "provider": "square",
                "credentials": {"access_token": SQUARE_TOKEN},
                "location_id": SQUARE_LOCATION,
                "environment": "sandbox",
                "base_url": mock.base_url(),
                "webhook_signature_key": SQUARE_WEBHOOK_KEY,
                "sync_interval_s": 86_400,
            }),
        )
        .await
        .expect(200)
        .clone()
}

/// Lets `plugin` call `host_port` (the operator's approval of a plugin's outbound host),
/// asserting 200.
pub async fn approve_host(srv: &crate::TestServer, plugin: &str, host_port: &str) {
    srv.admin()
        .send(
            reqwest::Method::PUT,
            &format!("/admin/plugins/{plugin}/hosts"),
            crate::Body::Json(serde_json::json!({"allow": [host_port]})),
            &[],
        )
        .await
        .expect(200);
}

/// Approves `mock` as the Toast plugin's host and connects `venue` to it (no scheduled
/// sync within a run); returns the integration.
pub async fn connect_toast(
    srv: &crate::TestServer,
    manager: &crate::Client,
    mock: &crate::mock_toast::MockToast,
    venue: &str,
) -> serde_json::Value {
    use crate::mock_toast::{TOAST_CLIENT_ID, TOAST_CLIENT_SECRET, TOAST_RESTAURANT};
    approve_host(srv, "toast", mock.host_port()).await;
    manager
        .post(
            "/pos/connect",
            &serde_json::json!({
                "venue": venue,
                "provider": "toast",
                "credentials": {"client_id": TOAST_CLIENT_ID, "client_secret": TOAST_CLIENT_SECRET},
                "location_id": TOAST_RESTAURANT,
                "environment": "sandbox",
                "base_url": mock.base_url(),
                "sync_interval_s": 86_400,
            }),
        )
        .await
        .expect(200)
        .clone()
}

/// Waits (up to a minute) for the scheduled first sales sync that connecting `venue` starts,
/// so that its provider calls are not counted as the measured ones; exits with status 1 if
/// it does not finish.
pub async fn first_sales_sync(manager: &crate::Client, venue: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let status = manager.get(&format!("/pos/status/{venue}")).await;
        if status.status == 200 && !status.body["last_sync"].is_null() {
            return;
        }
        if std::time::Instant::now() > deadline {
            eprintln!(
                "the first sales sync of {venue} did not finish: {}",
                status.text
            );
            std::process::exit(1);
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
