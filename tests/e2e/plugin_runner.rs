//! `posbridge plugin test`: the real binary runs the bundled Square and Toast providers
//! against the recorded fixtures in `fixtures/plugin_test/` (sync over two pages, a login
//! before the data call, a signed webhook) and a test hook on an event, with no server and
//! no database; a request the fixtures do not answer, and a hook that spins past the host's
//! CPU deadline, fail with a clear message.

use std::path::PathBuf;
use std::process::Output;

use hmac::{Hmac, Mac};
use serde_json::Value;

/// The repository's fixtures for these tests.
fn fixture(name: &str) -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/e2e/fixtures/plugin_test")
        .join(name)
        .display()
        .to_string()
}

/// A component built by this build (`POSBRIDGE_WASM_DIR`).
fn component(name: &str) -> String {
    PathBuf::from(env!("POSBRIDGE_WASM_DIR"))
        .join(format!("{name}.wasm"))
        .display()
        .to_string()
}

/// Runs `posbridge plugin test ARGS` in an empty directory with no configuration.
async fn plugin_test(args: &[&str]) -> Output {
    let dir = tempfile::tempdir().unwrap();
    tokio::process::Command::new(crate::BIN)
        .current_dir(dir.path())
        .args(["plugin", "test"])
        .args(args)
        .env_remove("POSBRIDGE_CONFIG")
        .env_remove("POSBRIDGE_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .output()
        .await
        .unwrap()
}

#[track_caller]
fn json_of(out: &Output) -> Value {
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(
        out.status.success(),
        "plugin test failed:\n{stdout}\n{stderr}"
    );
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn plugin_test_syncs_square_over_recorded_pages() {
    let out = plugin_test(&[&component("square"), "--fixtures", &fixture("square.json")]).await;
    let result = json_of(&out);
    assert_eq!(result["plugin"], "square");
    assert_eq!(result["pages"], 2, "{result}");
    let txs = result["transactions"].as_array().unwrap();
    let ids: Vec<&str> = txs
        .iter()
        .map(|t| t["external_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["PAY-A1", "PAY-A2", "PAY-A3"], "{result}");
    assert_eq!(txs[0]["total"], 2800);
    assert_eq!(txs[0]["tip"], 300);
    assert_eq!(txs[0]["tender"], "card");
    assert_eq!(txs[1]["tender"], "cash");
    assert_eq!(txs[2]["refunded"], 1500);
    // What the plugin logged comes back with the output.
    let logs = result["logs"].as_array().unwrap();
    assert!(
        logs.iter().any(|l| l["message"]
            .as_str()
            .unwrap()
            .contains("fetched 2 Square payments")),
        "{result}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plugin_test_logs_in_to_toast_then_syncs() {
    let out = plugin_test(&[&component("toast"), "--fixtures", &fixture("toast.json")]).await;
    let result = json_of(&out);
    assert_eq!(result["plugin"], "toast");
    assert_eq!(result["pages"], 1, "{result}");
    let txs = result["transactions"].as_array().unwrap();
    assert_eq!(txs.len(), 2, "{result}");
    assert_eq!(txs[0]["total"], 2460, "{result}");
    assert_eq!(txs[1]["total"], 918, "{result}");
    assert_eq!(txs[0]["tax"], 160);
    assert_eq!(txs[0]["tip"], 300);
    assert!(
        result["logs"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["message"]
                .as_str()
                .unwrap()
                .contains("logged in to Toast")),
        "{result}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plugin_test_parses_a_signed_square_webhook() {
    let body_file = fixture("square-webhook.json");
    let body = std::fs::read(&body_file).unwrap();
    let url = "https://hub.example.com/webhooks/square/int-1";
    let key = "square-signature-key";
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key.as_bytes()).unwrap();
    mac.update(url.as_bytes());
    mac.update(&body);
    let signature = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        mac.finalize().into_bytes(),
    );
    let header = format!("x-square-hmacsha256-signature: {signature}");
    let args = [
        component("square"),
        "--webhook".into(),
        body_file.clone(),
        "--webhook-url".into(),
        url.into(),
        "--webhook-header".into(),
        header,
        "--webhook-key".into(),
    ];
    let mut good: Vec<&str> = args.iter().map(String::as_str).collect();
    good.push(key);
    let result = json_of(&plugin_test(&good).await);
    assert_eq!(result["event_id"], "evt-1");
    assert_eq!(result["event_type"], "payment.updated");
    assert_eq!(result["transactions"][0]["external_id"], "PAY-A1");
    assert_eq!(result["transactions"][0]["total"], 2800);

    // The wrong key: the signature check refuses the delivery.
    let mut bad: Vec<&str> = args.iter().map(String::as_str).collect();
    bad.push("another-key");
    let refused = plugin_test(&bad).await;
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("refused the delivery's signature"),
        "{stderr}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn plugin_test_names_a_request_no_fixture_answers() {
    // The Square fixtures hold location L1's payments; another location asks other URLs.
    let dir = tempfile::tempdir().unwrap();
    let mut fixtures: Value =
        serde_json::from_str(&std::fs::read_to_string(fixture("square.json")).unwrap()).unwrap();
    fixtures["connection"]["location_id"] = "L2".into();
    let file = dir.path().join("square-l2.json");
    std::fs::write(&file, fixtures.to_string()).unwrap();
    let out = plugin_test(&[&component("square"), "--fixtures", file.to_str().unwrap()]).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("no fixture answers") && stderr.contains("location_id=L2"),
        "{stderr}"
    );
    // The recorded URLs are listed to compare against.
    assert!(stderr.contains("location_id=L1"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn plugin_test_runs_a_hook_on_an_event_under_the_hosts_limits() {
    let hook = component("test_hook_recorder");
    let result = json_of(
        &plugin_test(&[
            &hook,
            "--event",
            &fixture("hook-event.json"),
            "--hook-config",
            &fixture("hook-config.json"),
        ])
        .await,
    );
    assert_eq!(result["plugin"], "test-hook-recorder");
    let actions = result["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 2, "{result}");
    assert_eq!(actions[0]["action"], "emit");
    assert_eq!(actions[0]["kind"], "checked");
    assert_eq!(actions[0]["data"]["seq"], 7);
    assert_eq!(actions[1]["action"], "tag-transaction");
    assert_eq!(actions[1]["target"], "tx-42");
    assert_eq!(actions[1]["tag"], "seen-by-test");

    // A hook that spins is stopped at the host's CPU deadline, as it would be when bound.
    let spun = plugin_test(&[
        &hook,
        "--event",
        &fixture("hook-event.json"),
        "--hook-config",
        &fixture("hook-spin.json"),
    ])
    .await;
    assert!(!spun.status.success());
    let stderr = String::from_utf8_lossy(&spun.stderr);
    assert!(stderr.contains("exceeded its time limit"), "{stderr}");

    // A hook given provider input says what it needs instead.
    let misuse = plugin_test(&[&hook]).await;
    assert!(!misuse.status.success());
    let stderr = String::from_utf8_lossy(&misuse.stderr);
    assert!(stderr.contains("this component is a hook"), "{stderr}");
}
