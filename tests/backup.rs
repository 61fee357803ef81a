//! `brokerstream backup` of a running service that receives events, and
//! `brokerstream restore` into a fresh data directory that a service then
//! starts on: the real binary throughout.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::*;

const TOKEN: &str = "backup-test-token-7f3a";

/// Writes each event's host_id, and at each init the token it was given:
/// a restored service that cannot decrypt the token writes another one.
const KEEPER: &str = r#"
local out
function init(conf)
  out = conf.out
  local f = io.open(conf.out .. ".init", "a")
  f:write("init " .. conf.token .. "\n")
  f:close()
end
function write(e)
  local f = io.open(out, "a")
  f:write(e.host_id .. "\n")
  f:close()
  return true
end
"#;

fn brokerstream(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_brokerstream"))
        .args(args)
        .env_remove("BROKERSTREAM_CONFIG")
        .env_remove("BROKERSTREAM_DATA_DIR")
        .output()
        .expect("the binary runs")
}

fn text_of(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The host_id of every whole line: the last one may be half written.
fn host_ids(path: &Path) -> Vec<i64> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let whole = &text[..text.rfind('\n').map_or(0, |at| at + 1)];
    whole
        .lines()
        .map(|line| {
            if let Ok(n) = line.parse() {
                return n;
            }
            let event: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            event["host_id"]
                .as_i64()
                .unwrap_or_else(|| panic!("{line}"))
        })
        .collect()
}

fn serve(data: &Path) -> (Process, u16) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let process = Process::spawn(
        &[
            "serve",
            "--data-dir",
            data.to_str().unwrap(),
            "--http-addr",
            &addr,
        ],
        &[],
        port,
    );
    (process, port)
}

async fn status(p: &Process, name: &str) -> Value {
    p.get_json(&format!("/api/v1/outputs/{name}/status")).await
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_backup_taken_during_ingest_restores_every_acknowledged_event_and_output() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(data.join("scripts")).unwrap();
    std::fs::write(data.join("scripts").join("keeper.lua"), KEEPER).unwrap();
    let (a, _) = serve(&data);
    a.wait_ready().await;
    let kept = dir.path().join("kept.txt");
    create_output(
        &a,
        &json!({
            "name": "keeper",
            "kind": "lua",
            "path": "keeper.lua",
            "parameters": [
                {"name": "out", "type": "string", "value": kept.to_str().unwrap()},
                {"name": "token", "type": "password", "value": TOKEN},
            ],
        }),
    )
    .await;
    // Disabled with a cursor: every event waits in the journal for it.
    let late = dir.path().join("late.ndjson");
    let mut body = file_output("late", &late, &[]);
    body["enabled"] = json!(false);
    body["start_at"] = json!("head");
    body["parameters"][1]["value"] = json!("1");
    create_output(&a, &body).await;

    // Batches of host_status events, host_id numbering every event; a
    // batch is acknowledged when its POST answered 200.
    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let ingest = {
        let (acknowledged, stop) = (Arc::clone(&acknowledged), Arc::clone(&stop));
        let (client, base) = (a.client.clone(), a.base.clone());
        tokio::spawn(async move {
            let mut next = 1;
            while !stop.load(Ordering::Relaxed) {
                let ids: Vec<i64> = (next..next + 50).collect();
                next += 50;
                let body: String = ids
                    .iter()
                    .map(|&i| format!("{}\n", host_status(i, 0, "OK")))
                    .collect();
                let response = client
                    .post(format!("{base}/api/v1/events"))
                    .body(body)
                    .send()
                    .await
                    .expect("the service answers");
                assert_eq!(response.status(), 200);
                acknowledged.lock().unwrap().extend(ids);
            }
        })
    };
    wait_until("500 acknowledged events", || {
        acknowledged.lock().unwrap().len() >= 500
    })
    .await;

    // Cursors reach their file about once a second: let `keeper`'s get
    // there, so that the restored one has a position to go on from.
    let deadline = Instant::now() + Duration::from_secs(30);
    while status(&a, "keeper").await["position"].as_u64().unwrap_or(0) == 0 {
        assert!(Instant::now() < deadline, "`keeper` delivers nothing");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let backup = dir.path().join("backup");
    let before: BTreeSet<i64> = acknowledged.lock().unwrap().clone();
    let args = [
        "backup",
        backup.to_str().unwrap(),
        "--with-journal",
        "--data-dir",
        data.to_str().unwrap(),
    ]
    .map(str::to_owned);
    let output = tokio::task::spawn_blocking(move || {
        brokerstream(&args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .unwrap();
    let during = acknowledged.lock().unwrap().len();
    assert!(output.status.success(), "{}", text_of(&output));
    stop.store(true, Ordering::Relaxed);
    ingest.await.unwrap();
    assert!(
        during > before.len(),
        "ingest went on during the backup: {} then {during}",
        before.len()
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(backup.join("brokerstream-backup.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["with_journal"], true);
    let cursors: Value =
        serde_json::from_slice(&std::fs::read(backup.join("journal/cursors.json")).unwrap())
            .unwrap();
    let late_cursor = cursors["cursors"]["late"]["acked"]
        .as_u64()
        .unwrap_or_else(|| panic!("no cursor of `late`: {cursors}"));
    let keeper_cursor = cursors["cursors"]["keeper"]["acked"]
        .as_u64()
        .unwrap_or_else(|| panic!("no cursor of `keeper`: {cursors}"));
    assert!(keeper_cursor > 0, "{cursors}");
    assert!(a.terminate().await.success());
    // What `keeper` wrote in the first service: the restored one adds to it.
    let kept_by_a = host_ids(&kept).len();

    let restored = dir.path().join("restored");
    let output = brokerstream(&[
        "restore",
        backup.to_str().unwrap(),
        "--data-dir",
        restored.to_str().unwrap(),
    ]);
    assert!(output.status.success(), "{}", text_of(&output));
    assert!(
        text_of(&output).contains("restored"),
        "{}",
        text_of(&output)
    );

    let (b, _) = serve(&restored);
    b.wait_ready().await;
    let outputs = b.get_json("/api/v1/outputs").await;
    let names: Vec<&str> = outputs
        .as_array()
        .unwrap_or_else(|| panic!("{outputs}"))
        .iter()
        .filter_map(|o| o["name"].as_str())
        .collect();
    assert_eq!(names, ["keeper", "late"], "{outputs}");
    let keeper = b.get_json("/api/v1/outputs/keeper").await;
    assert_eq!(keeper["path"], "keeper.lua", "{keeper}");
    assert_eq!(keeper["parameters"][1]["type"], "password", "{keeper}");
    // The cursors are the backup's: `late` waits where it was.
    let late_status = status(&b, "late").await;
    assert_eq!(late_status["position"], late_cursor, "{late_status}");
    assert!(
        late_status["queue_depth"].as_u64().unwrap_or(0) >= before.len() as u64,
        "{late_status}"
    );
    // The token decrypted: the restored service's init was given it.
    let inits = kept.with_extension("txt.init");
    wait_until("the second init", || {
        std::fs::read_to_string(&inits)
            .unwrap_or_default()
            .lines()
            .count()
            >= 2
    })
    .await;
    assert_eq!(
        std::fs::read_to_string(&inits).unwrap(),
        format!("init {TOKEN}\ninit {TOKEN}\n")
    );
    let response = b
        .client
        .patch(format!("{}/api/v1/outputs/late", b.base))
        .json(&json!({"enabled": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    // Every event acknowledged before the backup began reaches `late`.
    wait_until("`late` to deliver what was acknowledged before", || {
        let got: BTreeSet<i64> = host_ids(&late).into_iter().collect();
        before.is_subset(&got)
    })
    .await;
    // And `keeper` went on from its cursor, not from the oldest event.
    let keeper_status = status(&b, "keeper").await;
    assert!(
        keeper_status["position"].as_u64().unwrap_or(0) >= keeper_cursor,
        "{keeper_status}"
    );
    let kept_by_both: BTreeSet<i64> = host_ids(&kept).into_iter().collect();
    assert!(before.is_subset(&kept_by_both));
    let redelivered = host_ids(&kept).len() - kept_by_a;
    // Held in the restored journal: what `late` (at its position) waits for.
    let held = late_cursor + late_status["queue_depth"].as_u64().unwrap_or(0);
    assert!(
        redelivered as u64 <= held - keeper_cursor,
        "`keeper` was sent {redelivered} events again; its cursor was at {keeper_cursor} of {held}"
    );
    assert!(b.terminate().await.success());
}

#[tokio::test]
async fn a_backup_or_restore_that_would_overwrite_or_cannot_write_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (p, _) = serve(&data);
    p.wait_ready().await;
    let data_arg = data.to_str().unwrap();

    let full = dir.path().join("full");
    std::fs::create_dir_all(&full).unwrap();
    std::fs::write(full.join("other"), "kept").unwrap();
    let output = brokerstream(&["backup", full.to_str().unwrap(), "--data-dir", data_arg]);
    assert!(!output.status.success());
    let text = text_of(&output);
    assert!(
        text.contains("backup directory") && text.contains("is not empty"),
        "{text}"
    );
    assert_eq!(std::fs::read_to_string(full.join("other")).unwrap(), "kept");
    assert_eq!(std::fs::read_dir(&full).unwrap().count(), 1);

    // Under a regular file: no directory can be made there, even by root.
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let under = file.join("backup");
    let output = brokerstream(&["backup", under.to_str().unwrap(), "--data-dir", data_arg]);
    assert!(!output.status.success());
    let text = text_of(&output);
    assert!(
        text.contains("cannot")
            && text.contains("backup directory")
            && text.contains("a-file/backup"),
        "{text}"
    );

    let output = brokerstream(&["backup", "/tmp/x", "--data-dir", full.to_str().unwrap()]);
    assert!(!output.status.success());
    assert!(
        text_of(&output).contains("no database in"),
        "{}",
        text_of(&output)
    );

    let good = dir.path().join("good");
    let output = brokerstream(&["backup", good.to_str().unwrap(), "--data-dir", data_arg]);
    assert!(output.status.success(), "{}", text_of(&output));
    assert!(text_of(&output).contains("journal's events left out"));
    assert!(good.join("journal/cursors.json").exists());
    assert!(!std::fs::read_dir(good.join("journal")).unwrap().any(|e| e
        .unwrap()
        .path()
        .extension()
        .is_some_and(|x| x == "seg")));

    // Restoring over a data directory in use, or any non-empty one.
    let output = brokerstream(&["restore", good.to_str().unwrap(), "--data-dir", data_arg]);
    assert!(!output.status.success());
    let text = text_of(&output);
    assert!(
        text.contains("data directory") && text.contains("is not empty"),
        "{text}"
    );
    // What is not a finished backup.
    let target = dir.path().join("target");
    let output = brokerstream(&[
        "restore",
        full.to_str().unwrap(),
        "--data-dir",
        target.to_str().unwrap(),
    ]);
    assert!(!output.status.success());
    assert!(
        text_of(&output).contains("is not a finished brokerstream backup"),
        "{}",
        text_of(&output)
    );
    assert!(!target.exists(), "a refused restore created its target");
    assert!(p.terminate().await.success());
}
