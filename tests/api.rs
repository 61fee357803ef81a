//! The REST surface, with every error case.

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::*;

fn file_body(name: &str, path: &str) -> Value {
    json!({
        "name": name,
        "kind": "file",
        "filters": {"category": ["neb"]},
        "parameters": [{"name": "path", "type": "string", "value": path}],
    })
}

async fn expect_422(response: reqwest::Response, fields: &[&str]) -> Value {
    let status = response.status();
    let body: Value = response.json().await.unwrap();
    assert_eq!(status, 422, "{body:#}");
    for field in fields {
        assert!(
            body["fields"]
                .get(*field)
                .is_some_and(|m| m.as_str().is_some_and(|s| !s.is_empty())),
            "expected an error on `{field}`: {body:#}"
        );
    }
    body
}

#[tokio::test]
async fn kinds_list_the_file_output_with_its_schema() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let kinds = server.get_json("/api/v1/kinds").await;
    let file = kinds
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["name"] == "file")
        .expect("file kind");
    let path = file["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "path")
        .unwrap();
    assert_eq!(path["type"], "string");
    assert_eq!(path["required"], true);
    assert_eq!(path["secret"], false);
    let format = file["parameters"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == "format")
        .unwrap();
    assert_eq!(format["default"], "json");
    assert_eq!(format["choices"], json!(["json", "template"]));
    for name in ["max_buffer_size", "max_buffer_age"] {
        assert!(
            file["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == name),
            "{name}"
        );
    }
    server.stop().await;
}

#[tokio::test]
async fn outputs_crud_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let path = dir.path().join("out.log");
    let path = path.to_str().unwrap();

    let response = server
        .post_json("/api/v1/outputs", &file_body("export", path))
        .await;
    assert_eq!(response.status(), 201);
    assert_eq!(response.headers()["location"], "/api/v1/outputs/export");
    let created: Value = response.json().await.unwrap();
    assert_eq!(created["name"], "export");
    assert_eq!(created["kind"], "file");
    assert_eq!(created["enabled"], true);
    assert_eq!(created["filters"], json!({"category": ["neb"]}));
    let params = created["parameters"].as_array().unwrap();
    assert_eq!(
        params[0],
        json!({"name": "path", "type": "string", "value": path})
    );
    assert_eq!(params.len(), 1, "defaults are not stored: {created}");

    let listed = server.get_json("/api/v1/outputs").await;
    assert_eq!(listed.as_array().unwrap().len(), 1);
    assert_eq!(listed[0]["name"], "export");
    assert_eq!(server.get_json("/api/v1/outputs/export").await, created);

    // Duplicate name.
    let response = server
        .post_json("/api/v1/outputs", &file_body("export", path))
        .await;
    assert_eq!(response.status(), 409);
    let body: Value = response.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("already exists"),
        "{body}"
    );

    // PUT replaces the whole definition: filters left out mean everything.
    let mut replacement = file_body("export", path);
    replacement.as_object_mut().unwrap().remove("filters");
    replacement["enabled"] = json!(false);
    let response = server
        .send_json(Method::PUT, "/api/v1/outputs/export", &replacement)
        .await;
    assert_eq!(response.status(), 200);
    let replaced: Value = response.json().await.unwrap();
    assert_eq!(replaced["filters"], json!({"category": []}));
    assert_eq!(replaced["enabled"], false);
    assert_eq!(server.status("export").await["state"], "stopped");

    // PATCH changes only what it names.
    let response = server
        .send_json(
            Method::PATCH,
            "/api/v1/outputs/export",
            &json!({"enabled": true, "filters": {"category": "storage:metric"}}),
        )
        .await;
    assert_eq!(response.status(), 200);
    let patched: Value = response.json().await.unwrap();
    assert_eq!(patched["enabled"], true);
    assert_eq!(patched["filters"], json!({"category": ["storage:metric"]}));
    assert_eq!(patched["parameters"], replaced["parameters"]);
    server
        .wait_status("export", "running", |s| s["state"] == "running")
        .await;

    // DELETE, then everything about it is gone.
    let response = server
        .client
        .delete(server.url("/api/v1/outputs/export"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    for path in [
        "/api/v1/outputs/export",
        "/api/v1/outputs/export/status",
        "/api/v1/outputs/export/parameters",
    ] {
        assert_eq!(server.get(path).await.status(), 404, "{path}");
    }
    let response = server
        .client
        .delete(server.url("/api/v1/outputs/export"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn invalid_outputs_name_every_bad_field() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let post = |body: Value| {
        let server = &server;
        async move { server.post_json("/api/v1/outputs", &body).await }
    };

    expect_422(post(json!({})).await, &["name", "kind"]).await;
    expect_422(post(json!({"name": "a/b", "kind": "file", "parameters": [{"name": "path", "value": "/tmp/x"}]})).await, &["name"]).await;
    expect_422(post(json!({"name": "", "kind": "file"})).await, &["name"]).await;
    let body = expect_422(post(json!({"name": "x", "kind": "kafka"})).await, &["kind"]).await;
    assert!(
        body["fields"]["kind"]
            .as_str()
            .unwrap()
            .contains("available kinds: file"),
        "{body}"
    );
    let body = expect_422(
        post(json!({"name": "x", "kind": "lua", "path": "/etc/passwd"})).await,
        &["path"],
    )
    .await;
    assert!(
        body["fields"]["path"]
            .as_str()
            .unwrap()
            .contains("outside the script directories"),
        "{body}"
    );
    expect_422(
        post(json!({"name": "x", "kind": "file"})).await,
        &["parameters.path"],
    )
    .await;
    expect_422(
        post(json!({"name": "x", "kind": "file", "parameters": [
            {"name": "path", "type": "string", "value": "/tmp/x"},
            {"name": "colour", "type": "string", "value": "red"},
            {"name": "max_buffer_size", "type": "number", "value": "many"},
            {"name": "max_buffer_age", "type": "string", "value": "5"},
            {"name": "format", "type": "string", "value": "xml"},
        ]}))
        .await,
        &[
            "parameters.colour",
            "parameters.max_buffer_size",
            "parameters.max_buffer_age",
            "parameters.format",
        ],
    )
    .await;
    expect_422(
        post(json!({"name": "x", "kind": "file", "parameters": [
            {"name": "path", "type": "string", "value": "/tmp/x"},
            {"name": "max_buffer_size", "type": "number", "value": 0},
        ]}))
        .await,
        &["parameters.max_buffer_size"],
    )
    .await;
    expect_422(
        post(json!({"name": "x", "kind": "file", "parameters": [
            {"name": "path", "type": "boolean", "value": "/tmp/x"},
        ]}))
        .await,
        &["parameters.path"],
    )
    .await;
    expect_422(
        post(json!({"name": "x", "kind": "file", "parameters": [
            {"name": "path", "type": "string", "value": "/tmp/x"},
            {"name": "format", "type": "string", "value": "template"},
        ]}))
        .await,
        &["parameters.template"],
    )
    .await;
    expect_422(
        post(json!({"name": "x", "kind": "file", "parameters": [
            {"name": "path", "type": "string", "value": "/tmp/x"},
            {"name": "format", "type": "string", "value": "template"},
            {"name": "template", "type": "string", "value": "HOST:{cache.host.name"},
        ]}))
        .await,
        &["parameters.template"],
    )
    .await;
    let body = expect_422(
        post(json!({"name": "x", "kind": "file", "filters": {"category": ["neb", "nebula", "neb:no_such_event"]},
                    "parameters": [{"name": "path", "type": "string", "value": "/tmp/x"}]}))
        .await,
        &["filters.category[1]", "filters.category[2]"],
    )
    .await;
    assert!(
        body["fields"].get("filters.category[0]").is_none(),
        "{body}"
    );
    expect_422(
        post(json!({"name": "x", "kind": "file", "filters": ["neb"]})).await,
        &["filters"],
    )
    .await;
    expect_422(
        post(json!({"name": "x", "kind": "file", "enabled": "yes", "colour": 1})).await,
        &["enabled", "colour"],
    )
    .await;
    expect_422(post(json!({"name": "x", "kind": "file", "path": "/tmp/s.lua", "parameters": [{"name": "path", "type": "string", "value": "/tmp/x"}]})).await, &["path"]).await;

    // Not JSON, or not an object: 400.
    for body in ["{not json", "[1, 2]"] {
        let response = server
            .client
            .post(server.url("/api/v1/outputs"))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400, "{body}");
        let answer: Value = response.json().await.unwrap();
        assert!(answer["error"].is_string());
    }
    assert!(
        server
            .get_json("/api/v1/outputs")
            .await
            .as_array()
            .unwrap()
            .is_empty(),
        "nothing invalid was stored"
    );
    server.stop().await;
}

#[tokio::test]
async fn put_and_patch_errors() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let path = dir.path().join("o.log");
    server.create_file_output("o", &path, json!({})).await;
    let before = server.get_json("/api/v1/outputs/o").await;

    let response = server
        .send_json(
            Method::PUT,
            "/api/v1/outputs/nope",
            &file_body("nope", "/tmp/x"),
        )
        .await;
    assert_eq!(response.status(), 404);
    let response = server
        .send_json(
            Method::PATCH,
            "/api/v1/outputs/nope",
            &json!({"enabled": false}),
        )
        .await;
    assert_eq!(response.status(), 404);
    expect_422(
        server
            .send_json(
                Method::PUT,
                "/api/v1/outputs/o",
                &file_body("other", "/tmp/x"),
            )
            .await,
        &["name"],
    )
    .await;
    expect_422(
        server
            .send_json(Method::PUT, "/api/v1/outputs/o", &json!({"parameters": []}))
            .await,
        &["kind"],
    )
    .await;
    expect_422(
        server
            .send_json(
                Method::PATCH,
                "/api/v1/outputs/o",
                &json!({"kind": "teapot"}),
            )
            .await,
        &["kind"],
    )
    .await;
    let response = server
        .client
        .patch(server.url("/api/v1/outputs/o"))
        .body("nope")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    assert_eq!(
        server.get_json("/api/v1/outputs/o").await,
        before,
        "failed edits change nothing"
    );
    server.stop().await;
}

#[tokio::test]
async fn parameters_sub_resource() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let path = dir.path().join("p.log");
    server.create_file_output("p", &path, json!({})).await;

    let params = server.get_json("/api/v1/outputs/p/parameters").await;
    assert!(params
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["name"] == "max_buffer_size" && p["value"] == "1"));

    // Replace an existing one (200), given as a JSON number.
    let response = server
        .send_json(
            Method::PUT,
            "/api/v1/outputs/p/parameters/max_buffer_size",
            &json!({"type": "number", "value": 50}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(
        response.json::<Value>().await.unwrap(),
        json!({"name": "max_buffer_size", "type": "number", "value": "50"})
    );
    // Add a new one (201).
    let response = server
        .send_json(
            Method::PUT,
            "/api/v1/outputs/p/parameters/max_buffer_age",
            &json!({"type": "number", "value": "0.5"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let params = server.get_json("/api/v1/outputs/p/parameters").await;
    assert!(
        params
            .as_array()
            .unwrap()
            .iter()
            .any(|p| *p == json!({"name": "max_buffer_age", "type": "number", "value": "0.5"})),
        "{params}"
    );

    // Errors.
    expect_422(
        server
            .send_json(
                Method::PUT,
                "/api/v1/outputs/p/parameters/max_buffer_size",
                &json!({"type": "number", "value": "lots"}),
            )
            .await,
        &["parameters.max_buffer_size"],
    )
    .await;
    expect_422(
        server
            .send_json(
                Method::PUT,
                "/api/v1/outputs/p/parameters/max_buffer_size",
                &json!({"type": "float", "value": "1"}),
            )
            .await,
        &["parameters.max_buffer_size"],
    )
    .await;
    expect_422(
        server
            .send_json(
                Method::PUT,
                "/api/v1/outputs/p/parameters/unheard_of",
                &json!({"type": "string", "value": "1"}),
            )
            .await,
        &["parameters.unheard_of"],
    )
    .await;
    expect_422(
        server
            .send_json(
                Method::PUT,
                "/api/v1/outputs/p/parameters/path",
                &json!({"type": "string"}),
            )
            .await,
        &["parameters.path"],
    )
    .await;
    let response = server
        .send_json(
            Method::PUT,
            "/api/v1/outputs/nope/parameters/path",
            &json!({"type": "string", "value": "x"}),
        )
        .await;
    assert_eq!(response.status(), 404);
    // Deleting a required parameter is refused; an unknown one is 404.
    expect_422(
        server
            .client
            .delete(server.url("/api/v1/outputs/p/parameters/path"))
            .send()
            .await
            .unwrap(),
        &["parameters.path"],
    )
    .await;
    let response = server
        .client
        .delete(server.url("/api/v1/outputs/p/parameters/unheard_of"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    let response = server
        .client
        .delete(server.url("/api/v1/outputs/p/parameters/max_buffer_age"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let params = server.get_json("/api/v1/outputs/p/parameters").await;
    assert!(
        !params
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "max_buffer_age"),
        "a deleted parameter is gone; its default applies: {params}"
    );
    server.stop().await;
}

#[tokio::test]
async fn status_and_flush_of_unknown_or_stopped_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    assert_eq!(
        server.get("/api/v1/outputs/ghost/status").await.status(),
        404
    );
    let response = server
        .client
        .post(server.url("/api/v1/outputs/ghost/flush"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    server
        .create_file_output(
            "off",
            &dir.path().join("off.log"),
            json!({"enabled": false}),
        )
        .await;
    let response = server
        .client
        .post(server.url("/api/v1/outputs/off/flush"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 409);
    assert_eq!(server.get("/api/v1/no/such/route").await.status(), 404);
    server.stop().await;
}

#[tokio::test]
async fn invalid_ndjson_is_refused_whole_with_line_numbers() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let path = dir.path().join("all.log");
    server.create_file_output("all", &path, json!({})).await;
    let body = format!(
        "{}\n{{broken\n\n{}\n{}\n",
        host_status(1, 0, "OK"),
        json!({"_type": 65550, "host_id": "one"}),
        json!({"_type": 99}),
    );
    let response = server
        .client
        .post(server.url("/api/v1/events"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 422);
    let answer: Value = response.json().await.unwrap();
    assert_eq!(answer["accepted"], 0);
    let lines = answer["lines"].as_array().unwrap();
    assert_eq!(
        lines
            .iter()
            .map(|l| l["line"].as_u64().unwrap())
            .collect::<Vec<_>>(),
        [2, 4, 5]
    );
    assert!(lines[0]["message"]
        .as_str()
        .unwrap()
        .contains("invalid JSON"));
    assert!(
        lines[1]["message"]
            .as_str()
            .unwrap()
            .contains("`host_id`: expected an integer"),
        "{answer}"
    );
    assert!(lines[2]["message"]
        .as_str()
        .unwrap()
        .contains("unknown event type"));

    // Nothing of the request went through: the next valid event is the first.
    let (code, answer) = server.post_events(&[host_status(2, 1, "DOWN")]).await;
    assert_eq!((code, answer), (200, json!({"accepted": 1})));
    let lines = wait_lines(&path, 1).await;
    assert_eq!(lines.len(), 1);
    assert!(lines[0].contains("\"host_id\":2"));
    server.stop().await;
}

#[tokio::test]
async fn a_full_journal_answers_503_with_retry_after() {
    let dir = tempfile::tempdir().unwrap();
    let config = brokerstream::config::Config {
        data_dir: dir.path().to_owned(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        journal: brokerstream::config::JournalSettings {
            // Room for a few events only.
            max_bytes: 300,
            ..Default::default()
        },
        bbdo: brokerstream::config::BbdoConfig::disabled(),
        ..Default::default()
    };
    let server = Server::start_with(config).await;
    // An output that cannot write keeps every event in the journal.
    let blocked = dir.path().join("missing-dir").join("out.log");
    server
        .create_file_output("stuck", &blocked, json!({}))
        .await;
    let events: Vec<Value> = (1..=4).map(|i| host_status(i, 0, "OK")).collect();
    assert_eq!(server.post_events(&events).await.0, 200);
    let body: String = events.iter().map(|l| format!("{l}\n")).collect();
    let response = server
        .client
        .post(server.url("/api/v1/events"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let answer: Value = response.json().await.unwrap();
    assert!(
        answer["error"].as_str().unwrap().contains("full"),
        "{answer}"
    );
    server.stop().await;
}

#[tokio::test]
async fn overview_page_lists_outputs() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    server
        .create_file_output("page-test", &dir.path().join("x.log"), json!({}))
        .await;
    let response = server.get("/").await;
    assert_eq!(response.status(), 200);
    let html = response.text().await.unwrap();
    assert!(html.contains("page-test"), "{html}");
    assert_eq!(server.get("/static/style.css").await.status(), 200);
    server.stop().await;
}

/// The stylesheet and scripts come from the binary, linked with their
/// content's hash: kept for a year by browsers under that link, revalidated
/// under any other.
#[tokio::test]
async fn static_files_are_served_from_the_binary_with_their_version() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let html = server.get("/").await.text().await.unwrap();
    let link = html
        .split("href=\"")
        .filter_map(|s| s.split('"').next())
        .find(|l| l.starts_with("/static/style.css?v="))
        .unwrap_or_else(|| panic!("no versioned stylesheet link in {html}"))
        .to_owned();
    let css = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/static/style.css")).unwrap();
    let response = server.get(&link).await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-type"], "text/css");
    assert_eq!(
        headers["cache-control"],
        "public, max-age=31536000, immutable"
    );
    let etag = headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(response.bytes().await.unwrap().as_ref(), css.as_slice());
    // Another version, or none: revalidated, and not modified.
    let stale = server.get("/static/style.css?v=0000").await;
    assert_eq!(stale.headers()["cache-control"], "no-cache");
    let again = server
        .client
        .get(server.url("/static/style.css"))
        .header("if-none-match", etag)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 304);
    assert!(html.contains("/static/live.js?v="), "{html}");
    let js = server.get("/static/live.js").await;
    assert_eq!(js.headers()["content-type"], "text/javascript");
    for missing in ["/static/nope.css", "/static/../Cargo.toml", "/static/"] {
        assert_eq!(server.get(missing).await.status(), 404, "{missing}");
    }
    // The login page, before any credentials, has them too.
    let anonymous = reqwest::Client::new();
    let login = anonymous
        .get(server.url("/login"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(login.contains(&link), "{login}");
    let css_anonymously = anonymous.get(server.url(&link)).send().await.unwrap();
    assert_eq!(css_anonymously.status(), 200);
    server.stop().await;
}

#[tokio::test]
async fn a_journal_held_back_past_its_warning_is_degraded_then_failing_when_full() {
    let dir = tempfile::tempdir().unwrap();
    let config = brokerstream::config::Config {
        data_dir: dir.path().to_owned(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        journal: brokerstream::config::JournalSettings {
            // Room for a few dozen events.
            max_bytes: 4000,
            ..Default::default()
        },
        bbdo: brokerstream::config::BbdoConfig::disabled(),
        ..Default::default()
    };
    let server = Server::start_with(config).await;
    // An output that cannot write keeps every event in the journal.
    let blocked = dir.path().join("missing-dir").join("out.log");
    server
        .create_file_output("stuck", &blocked, json!({}))
        .await;
    let journal = server.get_json("/api/v1/journal").await;
    assert_eq!(journal["health"]["state"], "ok", "{journal:#}");
    assert_eq!(journal["fill_warning"], 0.8, "{journal:#}");
    // One event at a time until past 80 %, and not full yet.
    let mut journal = Value::Null;
    for i in 1..=200 {
        let (code, answer) = server.post_events(&[host_status(i, 0, "OK")]).await;
        assert_eq!(code, 200, "full before the warning: {answer}");
        journal = server.get_json("/api/v1/journal").await;
        if journal["fill_ratio"].as_f64().unwrap() > 0.8 {
            break;
        }
    }
    assert!(journal["fill_ratio"].as_f64().unwrap() > 0.8, "{journal:#}");
    assert_eq!(journal["health"]["state"], "degraded", "{journal:#}");
    assert_eq!(journal["holding"][0]["name"], "stuck", "{journal:#}");
    assert_eq!(journal["holding"][0]["unacked"], journal["events"]);
    assert!(journal["oldest_age_secs"].as_u64().is_some(), "{journal:#}");
    let html = server.get("/").await.text().await.unwrap();
    assert!(html.contains("journal journal-degraded"), "{html}");
    assert!(html.contains("held back by: stuck ("), "{html}");
    let fragment = server.get("/fragments/overview").await;
    assert_eq!(fragment.status(), 200);
    assert!(fragment
        .text()
        .await
        .unwrap()
        .contains("journal journal-degraded"));

    // Full: the block policy refuses new events, and says so.
    let mut refused = false;
    for i in 1000..1200 {
        if server.post_events(&[host_status(i, 0, "OK")]).await.0 == 503 {
            refused = true;
            break;
        }
    }
    assert!(refused);
    let journal = server.get_json("/api/v1/journal").await;
    assert_eq!(journal["health"]["state"], "failing", "{journal:#}");
    assert!(journal["full_refusals"].as_u64().unwrap() >= 1);
    let html = server.get("/").await.text().await.unwrap();
    assert!(html.contains("journal journal-failing"), "{html}");
    // And for Prometheus, which can alert on it.
    let metrics = server.get("/metrics").await.text().await.unwrap();
    let value = |name: &str| {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no `{name}` in {metrics}"))
            .parse::<f64>()
            .unwrap()
    };
    assert_eq!(value("brokerstream_journal_health{state=\"failing\"}"), 1.0);
    assert_eq!(value("brokerstream_journal_health{state=\"ok\"}"), 0.0);
    assert!(value("brokerstream_journal_fill_ratio") > 0.8);
    assert!(value("brokerstream_journal_full_refusals_total") >= 1.0);
    assert!(value("brokerstream_journal_oldest_event_age_seconds") >= 0.0);
    server.stop().await;
}
