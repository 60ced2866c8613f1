//! Signed plugins and plugin logs through the real binary: keys made and components signed
//! with the CLI (`plugin keygen`, `plugin sign`), signers trusted with `PUT
//! /admin/plugin-signers`, uploads refused under `--require-signed-plugins` when unsigned,
//! signed by an untrusted key or tampered with, the signer shown on the plugin; and what a
//! plugin logs, readable at `GET /admin/plugins/{id}/logs` and in the host's log.

use std::path::{Path, PathBuf};

use posbridge_harness::reqwest::Method;
use posbridge_harness::{both_backends, Backend, Body, Resp, TestServer};
use serde_json::{json, Value};

use crate::wasm;

async fn upload(srv: &TestServer, bytes: Vec<u8>) -> Resp {
    srv.admin()
        .send(
            Method::POST,
            "/admin/plugins",
            Body::Raw {
                bytes,
                content_type: Some("application/wasm".into()),
            },
            &[],
        )
        .await
}

/// `plugin keygen --out DIR/NAME`; returns (secret key file, public key text).
async fn keygen(srv: &TestServer, name: &str) -> (PathBuf, String) {
    let prefix = srv.dir().join(name);
    let out = srv
        .cli(&["plugin", "keygen", "--out", prefix.to_str().unwrap()])
        .await;
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    let public = std::fs::read_to_string(prefix.with_extension("pub")).unwrap();
    assert!(out.stdout.contains(public.trim()), "{}", out.stdout);
    (prefix.with_extension("key"), public.trim().to_owned())
}

/// A copy of test component `component`, signed with `key` by `plugin sign`.
async fn signed(srv: &TestServer, component: &str, key: &Path) -> Vec<u8> {
    let file = srv.dir().join(format!(
        "{component}-{}.wasm",
        posbridge_harness::random_suffix(6)
    ));
    std::fs::write(&file, wasm(component)).unwrap();
    let out = srv
        .cli(&[
            "plugin",
            "sign",
            file.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ])
        .await;
    assert!(out.status.success(), "{}\n{}", out.stdout, out.stderr);
    std::fs::read(&file).unwrap()
}

async fn required_signatures_refuse_unsigned_untrusted_and_tampered_plugins(backend: Backend) {
    let srv = crate::start_with(backend, &["--require-signed-plugins"]).await;
    let admin = srv.admin();

    // Bundled plugins are signed by the build key, trusted for them.
    let square = admin.get("/admin/plugins/square").await.expect(200).clone();
    assert_eq!(square["signer"]["name"], "posbridge build key", "{square}");
    assert_eq!(square["signer"]["key_id"].as_str().unwrap().len(), 16);

    // Unsigned: refused, saying why.
    let refused = upload(&srv, wasm("test_swap_v1")).await;
    refused.expect_error(422, "plugin_unsigned");
    assert!(refused.text.contains("not signed"), "{}", refused.text);

    // Signed by a key nobody trusts yet: refused, naming the key.
    let (key, public) = keygen(&srv, "acme").await;
    let v1 = signed(&srv, "test_swap_v1", &key).await;
    let untrusted = upload(&srv, v1.clone()).await;
    untrusted.expect_error(422, "plugin_signer_untrusted");

    // Trusting the key: operator only, checked, listed.
    srv.anon()
        .put(
            "/admin/plugin-signers",
            &json!({"name": "acme", "public_key": public}),
        )
        .await
        .expect_error(401, "unauthorized");
    admin
        .put(
            "/admin/plugin-signers",
            &json!({"name": "acme", "public_key": "not a key"}),
        )
        .await
        .expect_error(422, "invalid_signer");
    admin
        .put(
            "/admin/plugin-signers",
            &json!({"name": "no spaces please", "public_key": public}),
        )
        .await
        .expect_error(422, "invalid_signer");
    let trusted = admin
        .put(
            "/admin/plugin-signers",
            &json!({"name": "acme", "public_key": public}),
        )
        .await;
    let signer = trusted.expect(201).clone();
    let key_id = signer["key_id"].as_str().unwrap().to_owned();
    // The same key under a second name would make `signer` ambiguous.
    admin
        .put(
            "/admin/plugin-signers",
            &json!({"name": "acme-again", "public_key": public}),
        )
        .await
        .expect_error(409, "signer_key_trusted");
    // Putting the same name again replaces (200), not creates.
    admin
        .put(
            "/admin/plugin-signers",
            &json!({"name": "acme", "public_key": public}),
        )
        .await
        .expect(200);
    let listed = admin.get("/admin/plugin-signers").await.expect(200).clone();
    assert_eq!(listed["signers"].as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed["signers"][0]["key_id"], key_id.as_str());
    admin.get("/admin/plugin-signers/acme").await.expect(200);

    // Signed by the trusted key: accepted, and the signer is shown.
    let installed = upload(&srv, v1).await;
    let status = installed.expect(201).clone();
    assert_eq!(status["signer"], json!({"key_id": key_id, "name": "acme"}));
    assert_eq!(status["versions"][0]["signer"]["name"], "acme");
    let shown = admin
        .get("/admin/plugins/test-swap")
        .await
        .expect(200)
        .clone();
    assert_eq!(shown["signer"]["name"], "acme");

    // Tampered after signing: one byte in the middle of the component changed.
    let mut v2 = signed(&srv, "test_swap_v2", &key).await;
    let middle = v2.len() / 2;
    v2[middle] ^= 0x20;
    let tampered = upload(&srv, v2).await;
    tampered.expect_error(422, "plugin_signature_invalid");
    assert!(
        tampered.text.contains("changed after it was signed"),
        "{}",
        tampered.text
    );
    let after = admin
        .get("/admin/plugins/test-swap")
        .await
        .expect(200)
        .clone();
    assert_eq!(after["active_version"], "1.0.0", "{after}");
    assert_eq!(after["versions"].as_array().unwrap().len(), 1);

    // No longer trusted: later uploads are refused, what it signed keeps its signer.
    admin.delete("/admin/plugin-signers/acme").await.expect(204);
    admin
        .delete("/admin/plugin-signers/acme")
        .await
        .expect_error(404, "signer_not_found");
    let v2 = signed(&srv, "test_swap_v2", &key).await;
    upload(&srv, v2)
        .await
        .expect_error(422, "plugin_signer_untrusted");
    let kept = admin
        .get("/admin/plugins/test-swap")
        .await
        .expect(200)
        .clone();
    assert_eq!(kept["signer"]["name"], "acme");
}

async fn signatures_are_checked_even_when_not_required(backend: Backend) {
    let srv = crate::start(backend).await;
    let (key, _public) = keygen(&srv, "dev").await;

    // Unsigned is fine here, and shown as such.
    let unsigned = upload(&srv, wasm("test_swap_v1")).await;
    assert_eq!(unsigned.expect(201)["signer"], Value::Null);

    // A valid signature by a key nobody trusted: accepted, key shown without a name.
    let v2 = signed(&srv, "test_swap_v2", &key).await;
    let status = upload(&srv, v2.clone()).await.expect(201).clone();
    assert_eq!(status["signer"]["name"], Value::Null, "{status}");
    assert_eq!(status["signer"]["key_id"].as_str().unwrap().len(), 16);

    // A signature that does not match the bytes is refused whether required or not.
    let mut tampered = signed(&srv, "test_panic", &key).await;
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x01;
    upload(&srv, tampered)
        .await
        .expect_error(422, "plugin_signature_invalid");
    srv.admin()
        .get("/admin/plugins/test-panic")
        .await
        .expect_error(404, "plugin_not_found");
}

async fn plugin_logs_are_kept_per_plugin_for_operators(backend: Backend) {
    let srv = crate::start_with(backend, &["--plugin-log-rate-per-sec", "1"]).await;
    let keys = srv.setup_tenant("bistro").await;
    let manager = srv.manager(&keys);
    crate::install_plugin(&srv, "test_swap_v1")
        .await
        .expect(201);

    let empty = srv
        .admin()
        .get("/admin/plugins/test-swap/logs")
        .await
        .expect(200)
        .clone();
    assert_eq!(empty["lines"], json!([]));
    srv.admin()
        .get("/admin/plugins/no-such-plugin/logs")
        .await
        .expect_error(404, "plugin_not_found");
    srv.anon()
        .get("/admin/plugins/test-swap/logs")
        .await
        .expect_error(401, "unauthorized");

    // Each validate logs one line; at one line a second, most of a burst is dropped.
    let calls = 12;
    for i in 0..calls {
        manager
            .post(
                "/pos/validate",
                &json!({"provider": "test-swap", "location_id": format!("loc-{i}")}),
            )
            .await
            .expect(200);
    }
    let logs = srv
        .admin()
        .get("/admin/plugins/test-swap/logs")
        .await
        .expect(200)
        .clone();
    let lines = logs["lines"].as_array().unwrap();
    let dropped = logs["dropped"].as_u64().unwrap();
    assert!(!lines.is_empty(), "{logs}");
    assert_eq!(lines.len() as u64 + dropped, calls, "{logs}");
    assert!(
        dropped >= 1,
        "a 1/s limit let {calls} quick lines through: {logs}"
    );
    let first = &lines[0];
    assert_eq!(first["message"], "v1: validate loc-0", "{logs}");
    assert_eq!(first["level"], "info");
    assert_eq!(first["version"], "1.0.0");
    assert!(first["time"].as_str().unwrap().ends_with('Z'), "{first}");

    // The host's structured log has the admitted lines with the plugin id and version.
    let host_log = srv.logs();
    let logged = host_log
        .lines()
        .find(|l| l.contains("v1: validate loc-0"))
        .unwrap_or_else(|| panic!("plugin line not in the host log:\n{host_log}"));
    assert!(logged.contains("plugin=test-swap"), "{logged}");
    assert!(logged.contains("version=1.0.0"), "{logged}");
    assert!(
        host_log.contains("plugin log lines dropped by the rate limit"),
        "{host_log}"
    );
}

both_backends!(
    required_signatures_refuse_unsigned_untrusted_and_tampered_plugins,
    signatures_are_checked_even_when_not_required,
    plugin_logs_are_kept_per_plugin_for_operators,
);
