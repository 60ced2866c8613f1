//! `posbridge backup` and `posbridge restore` on SQLite: an online snapshot taken while the
//! server runs, holding sealed values (a hook configuration and Square credentials) that
//! read back on a server started on the restored database and key file; and the refusals
//! (a backup directory that is not empty, a missing backup, a database already there).

use std::time::Duration;

use posbridge_harness::mock_square::MockSquare;
use posbridge_harness::{eventually, Backend};
use serde_json::{json, Value};

use crate::cli_database::run_bin;
use crate::providers::{approve_host, connect_square, first_sync};

#[tokio::test(flavor = "multi_thread")]
async fn a_backup_taken_online_restores_with_its_sealed_credentials() {
    let srv = crate::start(Backend::Sqlite).await;
    let kitchen = srv.setup_tenant("kitchen").await;
    let manager = srv.manager(&kitchen);
    let hook = manager
        .post(
            "/hooks",
            &json!({"plugin": "order-size-flag", "config": {"threshold": 2573}}),
        )
        .await
        .expect(201)
        .clone();
    let hook_id = hook["id"].as_str().expect("hook id").to_owned();
    let mock = MockSquare::start().await;
    approve_host(&srv, "square", mock.host_port()).await;
    connect_square(&manager, &mock, "main", json!({})).await;
    first_sync(&manager, "main").await;

    // Online: the server keeps running (and writing) while the snapshot is taken.
    let scratch = tempfile::tempdir().expect("temp dir");
    let backup_dir = scratch.path().join("backup");
    let backup_arg = backup_dir.display().to_string();
    let out = srv.cli(&["backup", &backup_arg]).await;
    let manifest = out.json();
    assert_eq!(manifest["backend"], "sqlite", "{manifest}");
    let active = std::fs::read_to_string(srv.dir().join("posbridge.keys")).expect("keys");
    let active: Value = serde_json::from_str(&active).expect("key file JSON");
    assert!(
        manifest["key_ids"]
            .as_array()
            .is_some_and(|ids| ids.contains(&active["active"])),
        "{manifest}"
    );
    for file in ["posbridge.db", "posbridge.keys", "manifest.json"] {
        assert!(
            backup_dir.join(file).is_file(),
            "{file} missing from the backup"
        );
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(backup_dir.join("posbridge.keys"))
            .expect("key file")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the key file copy is private");
    }
    assert!(
        out.stderr.contains("using database sqlite"),
        "{}",
        out.stderr
    );

    // A backup never mixes with another one.
    let again = srv.cli(&["backup", &backup_arg]).await;
    assert!(!again.status.success());
    assert!(again.stderr.contains("is not empty"), "{}", again.stderr);

    // Restore refuses a directory without a backup.
    let fresh = tempfile::tempdir().expect("temp dir");
    let fresh_db = fresh.path().join("data/posbridge.db");
    let fresh_db_arg = fresh_db.display().to_string();
    let missing = scratch.path().join("nothing-here").display().to_string();
    let out = run_bin(
        fresh.path(),
        &["--database-url", &fresh_db_arg, "restore", &missing],
        &[],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no posbridge backup"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!fresh_db.exists());

    // Into a fresh directory: database and key file land side by side.
    let out = run_bin(
        fresh.path(),
        &["--database-url", &fresh_db_arg, "restore", &backup_arg],
        &[],
    )
    .await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(fresh_db.is_file());
    assert_eq!(
        std::fs::read(fresh.path().join("data/posbridge.keys")).expect("restored keys"),
        std::fs::read(srv.dir().join("posbridge.keys")).expect("keys")
    );
    // ... and never over an existing database without --force.
    let out = run_bin(
        fresh.path(),
        &["--database-url", &fresh_db_arg, "restore", &backup_arg],
        &[],
    )
    .await;
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("already exists"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A server started on a restored database reads the sealed values back.
    let mut restored = crate::start(Backend::Sqlite).await;
    restored.sigterm_and_wait().await;
    for file in [
        "posbridge.db",
        "posbridge.db-wal",
        "posbridge.db-shm",
        "posbridge.keys",
    ] {
        let _ = std::fs::remove_file(restored.dir().join(file));
    }
    restored.cli(&["restore", &backup_arg]).await.json();
    restored.start_again().await;
    let on_restored = restored.tenant_client("kitchen", &kitchen.manager.key);
    let read_back = on_restored
        .get(&format!("/hooks/{hook_id}"))
        .await
        .expect(200)
        .clone();
    assert_eq!(read_back["config"], json!({"threshold": 2573}));
    let synced = eventually(
        Duration::from_secs(30),
        "a manual sync on the restored server",
        || async {
            let resp = on_restored.post("/pos/sync/main", &json!({})).await;
            match resp.status {
                200 => Some(resp.body.clone()),
                409 => None,
                other => panic!("sync answered {other}: {}", resp.text),
            }
        },
    )
    .await;
    assert!(synced["fetched"].as_u64().is_some(), "{synced}");
}

/// On PostgreSQL the backup holds the key file and the manifest, and names the `pg_dump`
/// command (without the password) in a README and on stderr.
#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_backup_saves_the_key_file_and_names_pg_dump_postgres() {
    if !posbridge_harness::postgres_available().await {
        return;
    }
    let srv = crate::start(Backend::Postgres).await;
    let scratch = tempfile::tempdir().expect("temp dir");
    let dir = scratch.path().join("pg-backup");
    let dir_arg = dir.display().to_string();
    let out = srv.cli(&["backup", &dir_arg]).await;
    let manifest = out.json();
    assert_eq!(manifest["backend"], "postgres", "{manifest}");
    let command = manifest["pg_dump"].as_str().expect("pg_dump command");
    assert!(
        command.starts_with("pg_dump --format=custom --file=") && command.contains(&dir_arg),
        "{command}"
    );
    let url = posbridge_harness::reqwest::Url::parse(srv.database_url()).expect("URL");
    if let Some(password) = url.password() {
        for text in [command, out.stderr.as_str()] {
            assert!(!text.contains(&format!(":{password}@")), "{text}");
        }
    }
    assert!(out.stderr.contains(command), "{}", out.stderr);
    let readme = std::fs::read_to_string(dir.join("README.txt")).expect("README");
    assert!(readme.contains(command), "{readme}");
    assert_eq!(
        std::fs::read(dir.join("posbridge.keys")).expect("key file copy"),
        std::fs::read(srv.dir().join("posbridge.keys")).expect("key file")
    );
    assert!(!dir.join("posbridge.db").exists());
}
