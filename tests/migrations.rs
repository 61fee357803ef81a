//! Schema migrations on a real database: applied when an upgrade brings
//! new ones, and a database a newer version migrated refused at start.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

const FUTURE: i64 = 29_991_231_000_001;

async fn pool_of(data: &Path) -> sqlx::SqlitePool {
    let url = format!("sqlite:{}?mode=rwc", data.join("brokerstream.db").display());
    sqlx::SqlitePool::connect(&url).await.unwrap()
}

async fn applied(data: &Path) -> Vec<i64> {
    let pool = pool_of(data).await;
    let versions = sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
        .fetch_all(&pool)
        .await
        .unwrap();
    pool.close().await;
    versions
}

/// `brokerstream serve` on `data`, which must exit on its own: its exit
/// status and what it printed.
fn refused_start(data: &Path) -> (std::process::ExitStatus, String) {
    let port = free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_brokerstream"))
        .args(["serve", "--http-addr", &format!("127.0.0.1:{port}")])
        .env("BROKERSTREAM_BBDO_ADDR", "none")
        .env("BROKERSTREAM_DATA_DIR", data)
        .env("BROKERSTREAM_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let mut text = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut text).unwrap();
            return (status, text);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("brokerstream started on {}", data.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test]
async fn a_database_a_newer_version_migrated_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let p = Process::serve_with_config(dir.path(), "", &[]).await;
    assert!(p.terminate().await.success());
    let known = applied(&data).await;
    assert!(!known.is_empty());

    // What a newer brokerstream's migration leaves: its row, and its change.
    let pool = pool_of(&data).await;
    sqlx::query(
        "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
         VALUES (?, 'from the future', 1, X'00', 1)",
    )
    .bind(FUTURE)
    .execute(&pool)
    .await
    .unwrap();
    sqlx::query("CREATE TABLE future_things (id INTEGER PRIMARY KEY)")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;

    let (status, text) = refused_start(&data);
    assert_eq!(status.code(), Some(1), "{text}");
    assert!(
        text.contains(&format!("migration(s) {FUTURE} applied"))
            && text.contains("brokerstream.db")
            && text.contains(&format!(
                "the newest it knows is {}",
                known[known.len() - 1]
            ))
            && text.contains("Install the newer brokerstream again")
            && text.contains("brokerstream restore"),
        "{text}"
    );
    // Refused before anything was written: the schema is as it was.
    let mut expected = known.clone();
    expected.push(FUTURE);
    assert_eq!(applied(&data).await, expected);

    // A backup of it cannot be restored by this binary either.
    let backup = dir.path().join("backup");
    let output = Command::new(env!("CARGO_BIN_EXE_brokerstream"))
        .args(["backup", backup.to_str().unwrap(), "--data-dir"])
        .arg(&data)
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let output = Command::new(env!("CARGO_BIN_EXE_brokerstream"))
        .args(["restore", backup.to_str().unwrap(), "--data-dir"])
        .arg(dir.path().join("restored"))
        .output()
        .unwrap();
    assert!(!output.status.success());
    let text = String::from_utf8_lossy(&output.stderr);
    assert!(text.contains(&FUTURE.to_string()), "{text}");
    assert!(!dir.path().join("restored").exists());
}

#[tokio::test]
async fn an_upgrade_applies_the_migrations_the_database_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    // The database an older version left: its first migration only.
    let mut files: Vec<_> = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 2, "{files:?}");
    let older = dir.path().join("older-migrations");
    std::fs::create_dir_all(&older).unwrap();
    std::fs::copy(&files[0], older.join(files[0].file_name().unwrap())).unwrap();
    let pool = pool_of(&data).await;
    sqlx::migrate::Migrator::new(older.as_path())
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    pool.close().await;
    let first = applied(&data).await;
    assert_eq!(first.len(), 1);

    let log_path = dir.path().join("log");
    let port = free_port();
    let p = Process::spawn_logging(
        &[
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--http-addr",
            &format!("127.0.0.1:{port}"),
        ],
        &[],
        port,
        std::fs::File::create(&log_path).unwrap(),
    );
    p.wait_ready().await;
    // The tables of the later migrations are there and used: users.
    let me = p.get_json("/api/v1/me").await;
    assert_eq!(me["name"], "admin", "{me}");
    assert!(p.terminate().await.success());
    let now = applied(&data).await;
    assert_eq!(now.len(), files.len(), "{now:?}");
    let log = std::fs::read_to_string(&log_path).unwrap();
    let added: Vec<String> = now[1..].iter().map(i64::to_string).collect();
    assert!(
        log.contains(&format!("applied schema migration(s) {}", added.join(", "))),
        "{log}"
    );
}
