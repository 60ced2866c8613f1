//! Master keys across several hosts on one PostgreSQL database: a host whose key differs
//! from the one the database recorded, or that has no key file for a database that already
//! uses keys, refuses to start and says what to do; hosts reading one shared key file open
//! each other's sealed credentials, also after `vault rotate` while both run.

use std::path::Path;
use std::time::Duration;

use posbridge_harness::mock_square::MockSquare;
use posbridge_harness::{eventually, Backend, Client, TestServer};
use serde_json::{json, Value};

use crate::cli_database::run_bin;
use crate::providers::{approve_host, connect_square, first_sync};

/// The key file `srv` created (beside its working directory on PostgreSQL).
fn key_file(srv: &TestServer) -> Value {
    let text = std::fs::read_to_string(srv.dir().join("posbridge.keys")).expect("key file");
    serde_json::from_str(&text).expect("key file JSON")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_with_another_master_key_refuses_to_start_postgres() {
    if !posbridge_harness::postgres_available().await {
        return;
    }
    let host_a = crate::start(Backend::Postgres).await;
    let keys = key_file(&host_a);
    let key_id = keys["active"].as_str().expect("active key id").to_owned();

    // Same key id, other key material: what two hosts that each created a key file get.
    let dir = tempfile::tempdir().expect("temp dir");
    let other = dir.path().join("other.keys");
    let other_material = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=";
    assert_ne!(keys["keys"][&key_id], other_material);
    std::fs::write(
        &other,
        json!({"active": key_id, "keys": {&key_id: other_material}}).to_string(),
    )
    .expect("writing the other key file");
    let other_arg = other.display().to_string();
    let serve = |extra: Vec<String>| {
        let mut args = vec![
            "serve".to_owned(),
            "--bind".to_owned(),
            "127.0.0.1:0".to_owned(),
            "--database-url".to_owned(),
            host_a.database_url().to_owned(),
        ];
        args.extend(extra);
        args
    };
    let args = serve(vec!["--master-key-file".into(), other_arg.clone()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_bin(dir.path(), &args, &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "host B started: {stderr}");
    assert!(
        stderr.contains(&format!("master key {key_id:?}"))
            && stderr.contains("is not the key this database recorded"),
        "{stderr}"
    );
    assert!(
        stderr.contains("copy the key file") && stderr.contains("POSBRIDGE_MASTER_KEY_FILE"),
        "the refusal says what to do: {stderr}"
    );
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("posbridge listening"),
        "refused before listening"
    );

    // No key file at all: no fresh key is made for a database that already has one.
    let fresh = tempfile::tempdir().expect("temp dir");
    let args = serve(vec![]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run_bin(fresh.path(), &args, &[]).await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "host B started: {stderr}");
    assert!(
        stderr.contains("refusing to create a new master key file") && stderr.contains(&key_id),
        "{stderr}"
    );
    assert!(
        !fresh.path().join("posbridge.keys").exists(),
        "no key file was created"
    );

    // The environment variable with another key under A's id is refused the same way.
    let out = run_bin(
        fresh.path(),
        &args,
        &[(
            "POSBRIDGE_MASTER_KEY",
            &format!("{key_id}:{other_material}"),
        )],
    )
    .await;
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "host B started: {stderr}");
    assert!(
        stderr.contains("is not the key this database recorded")
            && stderr.contains("POSBRIDGE_MASTER_KEY"),
        "{stderr}"
    );

    // Host A's own key file still starts a host.
    let host_b = host_a.start_sibling().await;
    host_b.anon().get("/healthz").await.expect(200);
}

/// `POST /pos/sync/{venue}` until it is not 409 (a sync the other host's scheduler runs);
/// returns the successful answer, failing on anything but 200 or 409.
async fn sync_on(manager: &Client, venue: &str, host: &str) -> Value {
    eventually(
        Duration::from_secs(30),
        &format!("a manual sync of {venue} on host {host}"),
        || async {
            let resp = manager
                .post(&format!("/pos/sync/{venue}"), &json!({}))
                .await;
            match resp.status {
                200 => Some(resp.body.clone()),
                409 => None,
                other => panic!(
                    "sync of {venue} on host {host} answered {other}: {}",
                    resp.text
                ),
            }
        },
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn hosts_sharing_a_key_file_open_each_others_credentials_through_a_rotation_postgres() {
    if !posbridge_harness::postgres_available().await {
        return;
    }
    let shared = tempfile::tempdir().expect("temp dir");
    let keys = shared.path().join("posbridge.keys");
    let keys_arg = keys.display().to_string();
    let host_a = crate::start_with(Backend::Postgres, &["--master-key-file", &keys_arg]).await;
    assert!(keys.exists(), "host A created the shared key file");
    let host_b = host_a.start_sibling().await;
    for host in [&host_a, &host_b] {
        assert!(
            host.logs().contains(&format!("key file {keys_arg}")),
            "the startup line names the shared key file"
        );
    }
    let kitchen = host_a.setup_tenant("kitchen").await;
    let mock = MockSquare::start().await;
    // Approvals reaching every host are another concern (and test); approve on each here.
    for host in [&host_a, &host_b] {
        approve_host(host, "square", mock.host_port()).await;
    }
    let on_a = host_a.manager(&kitchen);
    let on_b = host_b.manager(&kitchen);

    // Sealed by A, opened by B.
    connect_square(&on_a, &mock, "main", json!({})).await;
    first_sync(&on_a, "main").await;
    sync_on(&on_b, "main", "B").await;

    // Rotation through the CLI while both hosts run: everything is re-sealed under a new
    // key that only the shared file holds; both hosts keep opening credentials.
    let before = key_file_path_json(&keys);
    let out = host_a
        .cli(&["--master-key-file", &keys_arg, "vault", "rotate"])
        .await;
    let report = out.json();
    assert!(report["resealed"].as_u64() >= Some(1), "{report}");
    let new_id = report["active_key_id"].as_str().expect("key id").to_owned();
    assert_ne!(before["active"], new_id.as_str());
    assert_eq!(key_file_path_json(&keys)["active"], new_id.as_str());
    sync_on(&on_b, "main", "B").await;
    sync_on(&on_a, "main", "A").await;
    assert!(
        host_b.logs().contains("master key file re-read"),
        "host B picked the rotated key up from the shared file"
    );

    // A venue connected on B after the rotation opens on A.
    connect_square(&on_b, &mock, "patio", json!({})).await;
    first_sync(&on_b, "patio").await;
    sync_on(&on_a, "patio", "A").await;
    assert!(
        !host_a.logs().contains("credentials do not open")
            && !host_b.logs().contains("credentials do not open"),
        "a host failed to open a credential"
    );

    // A third host started after the rotation, with the shared file, starts and opens them.
    let host_c = host_a.start_sibling().await;
    approve_host(&host_c, "square", mock.host_port()).await;
    sync_on(&host_c.manager(&kitchen), "patio", "C").await;
}

fn key_file_path_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).expect("key file")).expect("JSON")
}
