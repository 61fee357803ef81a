//! The life of an output through the API: rename (cursor, dead letters and
//! sealed passwords kept), clone (passwords copied, never shown), enable
//! and disable (the backlog kept in the journal).

use std::path::Path;
use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::*;

/// The lines of a file output, as many as there are now.
fn lines_of(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Waits for exactly `count` lines, and checks no more come.
async fn exactly(path: &Path, count: usize) -> Vec<String> {
    wait_lines(path, count).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let lines = lines_of(path);
    assert_eq!(lines.len(), count, "{lines:#?}");
    lines
}

async fn set_enabled(server: &Server, name: &str, enabled: bool) {
    let response = server
        .send_json(
            Method::PATCH,
            &format!("/api/v1/outputs/{name}"),
            &json!({ "enabled": enabled }),
        )
        .await;
    assert_eq!(response.status(), 200, "{}", response.text().await.unwrap());
}

async fn rename(server: &Server, from: &str, to: &str) -> (u16, Value) {
    let response = server
        .post_json(
            &format!("/api/v1/outputs/{from}/rename"),
            &json!({ "name": to }),
        )
        .await;
    (
        response.status().as_u16(),
        response.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn a_renamed_output_delivers_what_was_pending_once_and_keeps_its_history() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let out = dir.path().join("out.log");
    server.create_file_output("before", &out, json!({})).await;
    server.post_events(&[host(1, "a"), host(2, "b")]).await;
    exactly(&out, 2).await;
    let flushes = server.status("before").await["flushes"].clone();

    // Disabled, it keeps its cursor: the events wait in the journal.
    set_enabled(&server, "before", false).await;
    server
        .post_events(&[host(3, "c"), host(4, "d"), host(5, "e")])
        .await;
    let status = server
        .wait_status("before", "three pending", |s| s["queue_depth"] == 3)
        .await;
    assert_eq!(status["state"], "stopped", "{status:#}");
    assert_eq!(lines_of(&out).len(), 2);

    let (code, renamed) = rename(&server, "before", "after").await;
    assert_eq!(code, 200, "{renamed}");
    assert_eq!(renamed["name"], "after");
    assert_eq!(renamed["enabled"], false);
    assert_eq!(server.get("/api/v1/outputs/before").await.status(), 404);
    let status = server.status("after").await;
    assert_eq!(status["queue_depth"], 3, "the backlog moved: {status:#}");
    assert_eq!(status["flushes"], flushes, "the flush history moved");

    // Enabled under its new name, it sends those three, once, then the
    // new ones.
    set_enabled(&server, "after", true).await;
    exactly(&out, 5).await;
    server.post_events(&[host(6, "f")]).await;
    let lines = exactly(&out, 6).await;
    for id in 1..=6 {
        assert_eq!(
            lines
                .iter()
                .filter(|l| serde_json::from_str::<Value>(l).unwrap()["host_id"] == id)
                .count(),
            1,
            "host {id}: {lines:#?}"
        );
    }

    // Taken and invalid names are refused, saying why.
    server
        .create_file_output("other", &dir.path().join("other.log"), json!({}))
        .await;
    let (code, answer) = rename(&server, "after", "other").await;
    assert_eq!(code, 409, "{answer}");
    assert!(
        answer["error"].as_str().unwrap().contains("already exists"),
        "{answer}"
    );
    let (code, answer) = rename(&server, "after", "bad name!").await;
    assert_eq!(code, 422, "{answer}");
    assert!(answer["fields"]["name"].is_string(), "{answer}");
    let (code, answer) = rename(&server, "after", "after").await;
    assert_eq!(code, 422, "{answer}");
    let (code, _) = rename(&server, "nope", "x").await;
    assert_eq!(code, 404);
    // PATCH does not rename, and says where to go.
    let response = server
        .send_json(
            Method::PATCH,
            "/api/v1/outputs/after",
            &json!({"name": "elsewhere"}),
        )
        .await;
    assert_eq!(response.status(), 422);
    let answer: Value = response.json().await.unwrap();
    assert!(
        answer["fields"]["name"]
            .as_str()
            .unwrap()
            .contains("rename"),
        "{answer}"
    );

    let audit = server.get_json("/api/v1/audit").await;
    let entry = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "output.rename")
        .unwrap_or_else(|| panic!("{audit:#}"));
    assert_eq!(entry["target"], "after", "{entry}");
    assert_eq!(entry["detail"]["from"], "before", "{entry}");
    server.stop().await;
}

#[tokio::test]
async fn a_rename_moves_the_dead_letters_and_seals_passwords_under_the_new_name() {
    use crate::native::{create, metric_at, names, reply, Destination};
    let destination = Destination::start(vec![reply(400, "unknown field `name`")]).await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    create(
        &server,
        "strict",
        "http",
        &["storage:metric"],
        &[
            ("http_url", &destination.url),
            ("max_buffer_size", "1"),
            ("http_user", "me"),
        ],
    )
    .await;
    let response = server
        .send_json(
            Method::PUT,
            "/api/v1/outputs/strict/parameters/http_password",
            &json!({"type": "password", "value": "pw-sealed-by-name"}),
        )
        .await;
    assert!(response.status().is_success(), "{:?}", response);
    let mut events = names();
    events.push(metric_at("a", 1.0, 1_732_000_000));
    assert_eq!(server.post_events(&events).await.0, 200);
    server
        .wait_status("strict", "a dead letter", |s| s["dead_letters_held"] == 1)
        .await;

    let (code, answer) = rename(&server, "strict", "lenient").await;
    assert_eq!(code, 200, "{answer}");
    let letters = server.get_json("/api/v1/outputs/lenient/deadletters").await;
    assert_eq!(letters["held"], 1, "{letters}");
    assert!(dir.path().join("deadletter/lenient.ndjson").is_file());
    assert!(!dir.path().join("deadletter/strict.ndjson").exists());
    server.stop().await;

    // The password opens under the new name: the service starts (it
    // refuses to with a value it cannot open) and the output still has it.
    let server = Server::start(dir.path()).await;
    let stored = server.get_json("/api/v1/outputs/lenient").await;
    assert!(
        stored["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p == &json!({"name": "http_password", "type": "password"})),
        "{stored}"
    );
    server.stop().await;
}

const KEEPER: &str = r#"
local out
function init(conf)
  out = conf.out
  local f = io.open(out, "a")
  f:write("init " .. conf.token .. "\n")
  f:close()
end
function write(e) return true end
"#;

#[tokio::test]
async fn a_clone_copies_the_definition_and_its_password_without_showing_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    std::fs::write(dir.path().join("scripts/keeper.lua"), KEEPER).unwrap();
    let first = dir.path().join("first.log");
    let response = server
        .post_json(
            "/api/v1/outputs",
            &json!({
                "name": "original",
                "kind": "lua",
                "path": "keeper.lua",
                "filters": {"category": ["neb"]},
                "parameters": [
                    {"name": "out", "type": "string", "value": first.to_str().unwrap()},
                    {"name": "token", "type": "password", "value": "clone-me-secret"},
                ],
            }),
        )
        .await;
    assert_eq!(response.status(), 201);
    wait_lines(&first, 1).await;

    let response = server
        .post_json("/api/v1/outputs/original/clone", &json!({"name": "copy"}))
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["location"], "/api/v1/outputs/copy");
    let text = response.text().await.unwrap();
    assert!(!text.contains("clone-me-secret"), "{text}");
    let copy: Value = serde_json::from_str(&text).unwrap();
    let original = server.get_json("/api/v1/outputs/original").await;
    for key in ["kind", "path", "filters", "parameters"] {
        assert_eq!(copy[key], original[key], "{key}");
    }
    assert_eq!(copy["enabled"], false, "a clone starts disabled");
    assert_eq!(server.status("copy").await["state"], "stopped");

    // Enabled, the copy runs with the password it was given on the server.
    let second = dir.path().join("second.log");
    let response = server
        .send_json(
            Method::PUT,
            "/api/v1/outputs/copy/parameters/out",
            &json!({"type": "string", "value": second.to_str().unwrap()}),
        )
        .await;
    assert!(response.status().is_success());
    set_enabled(&server, "copy", true).await;
    assert_eq!(wait_lines(&second, 1).await, vec!["init clone-me-secret"]);

    for (name, code) in [("copy", 409), ("bad name!", 422)] {
        let response = server
            .post_json("/api/v1/outputs/original/clone", &json!({ "name": name }))
            .await;
        assert_eq!(response.status(), code, "{name}");
    }
    let response = server
        .post_json("/api/v1/outputs/nope/clone", &json!({"name": "x"}))
        .await;
    assert_eq!(response.status(), 404);
    let audit = server.get_json("/api/v1/audit").await.to_string();
    assert!(audit.contains("output.clone"), "{audit}");
    assert!(!audit.contains("clone-me-secret"));
    server.stop().await;
}

/// A cursor no output owns (what a crash between the steps of a rename or
/// a delete leaves) is removed at the next start, so that it holds no
/// events back.
#[tokio::test]
async fn a_cursor_that_belongs_to_no_output_is_removed_at_start() {
    use brokerstream::config::{BbdoConfig, Config};
    use brokerstream::journal::{Journal, StartAt};
    let dir = tempfile::tempdir().unwrap();
    let config = || Config {
        data_dir: dir.path().to_owned(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        bbdo: BbdoConfig::disabled(),
        ..Config::default()
    };
    let server = Server::start_with(config()).await;
    let out = dir.path().join("out.log");
    server.create_file_output("kept", &out, json!({})).await;
    server.stop().await;
    {
        let journal = Journal::open(config().journal_config().unwrap()).unwrap();
        journal.cursor("ghost", StartAt::Head);
        journal.close();
    }
    let server = Server::start_with(config()).await;
    server.post_events(&[host(1, "a"), host(2, "b")]).await;
    exactly(&out, 2).await;
    server
        .wait_status("kept", "caught up", |s| s["queue_depth"] == 0)
        .await;
    let journal = server.get_json("/api/v1/journal").await;
    assert_eq!(journal["holding"], json!([]), "{journal:#}");
    server.stop().await;
}
