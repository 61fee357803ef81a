//! The web UI: plain HTTP tests of the form, the live tail and the
//! pause/resume/restart routes, and one test in a real headless Chromium
//! driven over WebDriver (a `chromedriver` started on a loopback port).
//! Screenshots of each page land in `target/screenshots/` for review.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};

use crate::common::*;

/// A `multipart/form-data` body, built by hand as a browser would send it.
pub(crate) struct Multipart {
    boundary: String,
    body: Vec<u8>,
}

impl Multipart {
    pub(crate) fn new() -> Self {
        Multipart {
            boundary: "----brokerstream-test-boundary-7d93".into(),
            body: Vec::new(),
        }
    }

    pub(crate) fn text(mut self, name: &str, value: &str) -> Self {
        let part = format!(
            "--{}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n",
            self.boundary
        );
        self.body.extend_from_slice(part.as_bytes());
        self
    }

    pub(crate) fn file(mut self, name: &str, file_name: &str, content: &[u8]) -> Self {
        let head = format!(
            "--{}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"{file_name}\"\r\nContent-Type: application/octet-stream\r\n\r\n",
            self.boundary
        );
        self.body.extend_from_slice(head.as_bytes());
        self.body.extend_from_slice(content);
        self.body.extend_from_slice(b"\r\n");
        self
    }

    pub(crate) async fn post(self, server: &Server, path: &str) -> (u16, String, String) {
        let client = admin_client_builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        self.send(client.post(server.url(path))).await
    }

    /// Posted as a browser signed in as `session` posts it, with its CSRF
    /// token: passwords typed into a form are kept for a session only.
    pub(crate) async fn post_in(
        self,
        server: &Server,
        session: &Session,
        path: &str,
    ) -> (u16, String, String) {
        let form = self.text("csrf", &session.csrf);
        let request = session
            .client
            .post(server.url(path))
            .header("cookie", &session.cookie);
        form.send(request).await
    }

    async fn send(mut self, request: reqwest::RequestBuilder) -> (u16, String, String) {
        self.body
            .extend_from_slice(format!("--{}--\r\n", self.boundary).as_bytes());
        let response = request
            .header(
                "content-type",
                format!("multipart/form-data; boundary={}", self.boundary),
            )
            .body(self.body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (status, location, response.text().await.unwrap())
    }
}

#[tokio::test]
async fn the_form_shows_each_error_beside_its_field_and_keeps_what_was_typed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let target = dir.path().join("out.log");

    let (status, _, page) = Multipart::new()
        .text("kind", "file")
        .text("name", "bad name!")
        .text("enabled", "on")
        .text("p.format", "template")
        .text("p.max_buffer_size", "lots")
        .text("filter", "neb")
        .text("filter_other", "neb:nonsense")
        .text("action", "save")
        .post(&server, "/outputs/new")
        .await;
    assert_eq!(status, 422, "{page}");
    assert!(page.contains(r#"id="name-error""#), "{page}");
    assert!(
        page.contains(r#"value="bad name!""#),
        "the name typed is kept"
    );
    assert!(page.contains(r#"id="p-path-error""#), "path is required");
    assert!(page.contains(r#"id="p-max_buffer_size-error""#), "{page}");
    assert!(page.contains(r#"value="lots""#), "the number typed is kept");
    assert!(page.contains(r#"id="filters-error""#), "{page}");
    assert!(page.contains("neb:nonsense"));
    // What the browser sent is escaped, never markup.
    let (status, _, page) = Multipart::new()
        .text("kind", "file")
        .text("name", "<script>alert(1)</script>")
        .text("action", "save")
        .post(&server, "/outputs/new")
        .await;
    assert_eq!(status, 422);
    assert!(!page.contains("<script>alert(1)"), "{page}");
    assert!(
        page.contains("alert(1)"),
        "the name is kept, escaped: {page}"
    );

    // Corrected, it saves through the API's path and sends the browser on.
    let (status, location, _) = Multipart::new()
        .text("kind", "file")
        .text("name", "good")
        .text("enabled", "on")
        .text("p.path", target.to_str().unwrap())
        .text("p.max_buffer_size", "10")
        .text("filter", "neb")
        .text("filter_other", "storage:metric")
        .text("action", "save")
        .post(&server, "/outputs/new")
        .await;
    assert_eq!(status, 303);
    assert_eq!(location, "/outputs/good");
    let stored = server.get_json("/api/v1/outputs/good").await;
    assert_eq!(
        stored["filters"],
        json!({"category": ["neb", "storage:metric"]})
    );
    assert_eq!(
        stored["parameters"],
        json!([
            {"name": "path", "type": "string", "value": target.to_str().unwrap()},
            {"name": "max_buffer_size", "type": "number", "value": "10"},
        ])
    );
    // A second one of the same name is refused on the name field.
    let (status, _, page) = Multipart::new()
        .text("kind", "file")
        .text("name", "good")
        .text("p.path", target.to_str().unwrap())
        .text("action", "save")
        .post(&server, "/outputs/new")
        .await;
    assert_eq!(status, 409);
    assert!(page.contains(r#"id="name-error""#), "{page}");
    server.stop().await;
}

#[tokio::test]
async fn a_script_is_uploaded_and_a_stored_password_is_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let script = b"function init(conf) broker_log:info(0, 'init ' .. conf.url) end\n\
        function write(e) broker_log:info(0, 'write ' .. e.category) return true end\n";
    let (status, location, page) = Multipart::new()
        .text("kind", "lua")
        .text("name", "scripted")
        .text("enabled", "on")
        .text("path", "")
        .file("script_file", "../../evil/my-connector.lua", script)
        .text("param_name", "url")
        .text("param_type", "string")
        .text("param_value", "http://127.0.0.1:1/")
        .text("param_name", "token")
        .text("param_type", "password")
        .text("param_value", "hunter2")
        .text("param_name", "")
        .text("param_type", "string")
        .text("param_value", "")
        .text("p.max_buffer_size", "5")
        .text("action", "save")
        .post(&server, "/outputs/new")
        .await;
    assert_eq!(status, 303, "{page}");
    assert_eq!(location, "/outputs/scripted");
    // Saved under its own name, inside the first script directory.
    assert!(dir.path().join("scripts/my-connector.lua").is_file());
    // Through the control layer: audited like the scripts API.
    let audit = server.get_json("/api/v1/audit").await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "script.put"
                && e["target"] == "my-connector.lua"
                && e["detail"]["replaced"] == false),
        "{audit:#}"
    );
    let edit = server
        .get("/outputs/scripted/edit")
        .await
        .text()
        .await
        .unwrap();
    assert!(!edit.contains("hunter2"), "{edit}");
    assert!(edit.contains("(stored, unchanged)"));
    assert!(edit.contains(r#"<option value="my-connector.lua" selected>"#));
    // An empty password keeps the stored one.
    let (status, _, page) = Multipart::new()
        .text("kind", "lua")
        .text("enabled", "on")
        .text("path", "my-connector.lua")
        .text("param_name", "url")
        .text("param_type", "string")
        .text("param_value", "http://127.0.0.1:2/")
        .text("param_name", "token")
        .text("param_type", "password")
        .text("param_value", "")
        .text("action", "save")
        .post(&server, "/outputs/scripted/edit")
        .await;
    assert_eq!(status, 303, "{page}");
    let stored = server.get_json("/api/v1/outputs/scripted").await;
    assert_eq!(stored["parameters"][0]["value"], "http://127.0.0.1:2/");
    assert_eq!(
        stored["parameters"][1],
        json!({"name": "token", "type": "password"})
    );
    // The same name again is refused, not overwritten.
    let (status, _, page) = Multipart::new()
        .text("kind", "lua")
        .text("name", "other")
        .file("script_file", "my-connector.lua", b"-- not this one")
        .text("action", "save")
        .post(&server, "/outputs/new")
        .await;
    assert_eq!(status, 422);
    assert!(page.contains(r#"id="upload-error""#), "{page}");
    // The Test button runs the script on sample events and shows its log.
    let (status, _, page) = Multipart::new()
        .text("kind", "lua")
        .text("enabled", "on")
        .text("path", "my-connector.lua")
        .text("param_name", "url")
        .text("param_type", "string")
        .text("param_value", "http://test/")
        .text("action", "test")
        .post(&server, "/outputs/scripted/edit")
        .await;
    assert_eq!(status, 200);
    assert!(page.contains(r#"id="test-result""#), "{page}");
    assert!(page.contains("log INFO: init http://test/"), "{page}");
    assert!(page.contains("log INFO: write 1"), "{page}");
    assert!(page.contains("summary: 20 events"), "{page}");
    server.stop().await;
}

#[tokio::test]
async fn the_test_button_shows_what_a_file_output_would_write() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let (status, _, page) = Multipart::new()
        .text("kind", "file")
        .text("name", "preview")
        .text("p.path", dir.path().join("x.log").to_str().unwrap())
        .text("p.format", "template")
        .text("p.template", "HOST {host_id} state {state}")
        .text("filter", "neb:host_status")
        .text("action", "test")
        .post(&server, "/outputs/new")
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(page.contains(r#"id="test-result""#), "{page}");
    assert!(page.contains("HOST "), "{page}");
    // Nothing was saved.
    assert_eq!(server.get("/api/v1/outputs/preview").await.status(), 404);
    server.stop().await;
}

/// The value of a page's field `name` (a hidden input).
fn hidden_field(page: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let at = page
        .find(&marker)
        .unwrap_or_else(|| panic!("no `{name}` field: {page}"))
        + marker.len();
    page[at..at + page[at..].find('"').unwrap()].to_owned()
}

/// The text of the Test's result on a page, tags left out.
fn test_result(page: &str) -> String {
    let start = page
        .find(r#"id="test-result""#)
        .unwrap_or_else(|| panic!("no test result: {page}"));
    let end = start + page[start..].find("</section>").unwrap();
    let mut text = String::new();
    let mut in_tag = false;
    for c in page[start..end].chars() {
        match c {
            '<' => in_tag = true,
            '>' => in_tag = false,
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    text.replace("&#34;", "\"").replace("&#39;", "'")
}

/// An `http` output's Test posts recent events from the journal, that
/// pass its filters, to the destination and says what it answered: a 401
/// with the hint, then (the password left empty: the one typed before is
/// kept for the session) an acceptance; a dead port and a bad value fail
/// without anything saved.
#[tokio::test]
async fn the_test_of_an_http_output_posts_recent_events_and_reports_each_answer() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let session = Session::admin(&server).await;
    let destination = crate::native::Destination::start(vec![crate::native::reply(
        401,
        r#"{"error":"bad credentials"}"#,
    )])
    .await;
    let (status, _) = server
        .post_events(&[
            host(7, "srv-07"),
            host_status(7, 1, "DOWN from the journal"),
            service_status(7, 3, 2),
        ])
        .await;
    assert_eq!(status, 200);
    let url = format!("{}/in", destination.url);
    let form = |password: &str, draft: &str, url: &str| {
        Multipart::new()
            .text("kind", "http")
            .text("name", "tested")
            .text("draft", draft)
            .text("p.http_url", url)
            .text("p.http_user", "u")
            .text("p.http_password", password)
            .text("filter", "neb:host_status")
            .text("action", "test")
    };
    let (status, _, page) = form("hunter2", "", &url)
        .post_in(&server, &session, "/outputs/new")
        .await;
    assert_eq!(status, 200, "{page}");
    let result = test_result(&page);
    assert!(result.contains("Test failed"), "{result}");
    assert!(result.contains("HTTP 401"), "{result}");
    assert!(result.contains("authentication refused"), "{result}");
    assert!(result.contains("bad credentials"), "{result}");
    assert!(
        result.contains("1 recent event from the journal"),
        "{result}"
    );
    assert!(!page.contains("hunter2"), "a password is never sent back");
    let sent = destination.requests();
    assert_eq!(sent.len(), 1, "one POST, no health request for `http`");
    assert_eq!(sent[0].method, "POST");
    assert_eq!(sent[0].uri, "/in");
    assert!(
        sent[0].text().contains("DOWN from the journal"),
        "{}",
        sent[0].text()
    );
    let posted: Value = serde_json::from_slice(&sent[0].body).unwrap();
    assert_eq!(
        posted.as_array().map(Vec::len),
        Some(1),
        "only the host status passes the filters: {posted}"
    );
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("u:hunter2")
    );
    assert_eq!(sent[0].header("authorization"), Some(basic.as_str()));

    // Again with the password field empty, as the page came back: the one
    // typed is used, and this time the destination takes the sample.
    let draft = hidden_field(&page, "draft");
    assert!(page.contains("(as typed before, not shown)"), "{page}");
    let (status, _, page) = form("", &draft, &url)
        .post_in(&server, &session, "/outputs/new")
        .await;
    assert_eq!(status, 200, "{page}");
    let result = test_result(&page);
    assert!(result.contains("Test passed"), "{result}");
    assert!(result.contains("1 record was written"), "{result}");
    assert!(
        result.contains("The output itself was not saved"),
        "{result}"
    );
    let sent = destination.requests();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].header("authorization"), Some(basic.as_str()));
    // Another session's form does not get it.
    let other = Session::admin(&server).await;
    form("", &draft, &url)
        .post_in(&server, &other, "/outputs/new")
        .await;
    let sent = destination.requests();
    assert_eq!(sent.len(), 3);
    assert_ne!(sent[2].header("authorization"), Some(basic.as_str()));

    // Nothing listens on a port just freed.
    let dead = format!("http://127.0.0.1:{}/in", free_port());
    let (status, _, page) = form("hunter2", &draft, &dead)
        .post_in(&server, &session, "/outputs/new")
        .await;
    assert_eq!(status, 200, "{page}");
    let result = test_result(&page);
    assert!(result.contains("Test failed"), "{result}");
    assert!(result.contains("cannot connect"), "{result}");
    assert!(result.contains("Nothing was written"), "{result}");

    // A bad value is reported beside its field (in its opened section),
    // and nothing is sent.
    let (status, _, page) = form("", &draft, &url)
        .text("p.timeout", "lots")
        .post_in(&server, &session, "/outputs/new")
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(!page.contains(r#"id="test-result""#), "{page}");
    assert!(page.contains(r#"id="p-timeout-error""#), "{page}");
    assert!(page.contains(r#"value="lots""#), "the value typed is kept");
    assert!(
        page.contains(r#"<details class="section" open><summary>Batching"#),
        "{page}"
    );
    assert_eq!(destination.requests().len(), 3);
    assert_eq!(server.get("/api/v1/outputs/tested").await.status(), 404);
    server.stop().await;
}

/// An `influxdb` output's Test against a real InfluxDB: `/ping`, then the
/// sample's points written into the database, where they are read back.
#[tokio::test]
async fn the_test_of_an_influxdb_output_pings_and_writes_into_a_real_influxdb() {
    let influx = tokio::task::spawn_blocking(crate::lua_modules::start_influx)
        .await
        .unwrap();
    let influx = std::sync::Arc::new(influx);
    let setup = std::sync::Arc::clone(&influx);
    tokio::task::spawn_blocking(move || {
        crate::lua_modules::query(&setup, "", "CREATE DATABASE \"formtest\"")
    })
    .await
    .unwrap();
    let port = influx.base.rsplit(':').next().unwrap().to_owned();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    server
        .post_events(&[
            host(1, "srv-01"),
            service(1, 3, "Disk-var"),
            metric(1, 3, "used", 42.5),
        ])
        .await;
    let form = |port: &str| {
        Multipart::new()
            .text("kind", "influxdb")
            .text("name", "influx-tested")
            .text("p.http_server_address", "127.0.0.1")
            .text("p.http_server_port", port)
            .text("p.influx_database", "formtest")
            .text("filter", "storage")
            .text("action", "test")
    };
    let (status, _, page) = form(&port).post(&server, "/outputs/new").await;
    assert_eq!(status, 200, "{page}");
    let result = test_result(&page);
    assert!(result.contains("Test passed"), "{result}");
    assert!(result.contains("GET http://127.0.0.1:"), "{result}");
    assert!(result.contains("/ping answered HTTP 204"), "{result}");
    assert!(result.contains("accepted, HTTP 204"), "{result}");
    assert!(result.contains("written to the destination"), "{result}");
    let read = std::sync::Arc::clone(&influx);
    let points = tokio::task::spawn_blocking(move || {
        crate::lua_modules::query(&read, "formtest", "SELECT * FROM /.*/")
    })
    .await
    .unwrap();
    let text = points.to_string();
    assert!(text.contains("Disk-var") && text.contains("42.5"), "{text}");

    // The same settings on a dead port fail at the first request.
    let (_, _, page) = form(&free_port().to_string())
        .post(&server, "/outputs/new")
        .await;
    let result = test_result(&page);
    assert!(result.contains("Test failed"), "{result}");
    assert!(result.contains("/ping: cannot connect"), "{result}");
    assert_eq!(
        server.get("/api/v1/outputs/influx-tested").await.status(),
        404
    );
    server.stop().await;
}

/// A Lua output's form refused keeps every row as typed, in its order,
/// each error beside its row (named, or numbered from 1), every bad
/// value reported; a row named like a buffer setting stays a row.
#[tokio::test]
async fn a_refused_lua_form_keeps_its_rows_in_order_with_each_error_beside_its_row() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    std::fs::write(
        dir.path().join("scripts/rows.lua"),
        "function write(e) return true end\n",
    )
    .unwrap();
    let (status, _, page) = Multipart::new()
        .text("kind", "lua")
        .text("name", "rows")
        .text("path", "rows.lua")
        .text("param_name", "url")
        .text("param_type", "string")
        .text("param_value", "http://127.0.0.1:1/")
        .text("param_name", "count")
        .text("param_type", "number")
        .text("param_value", "lots")
        .text("param_name", "")
        .text("param_type", "string")
        .text("param_value", "orphan")
        .text("param_name", "max_buffer_size")
        .text("param_type", "number")
        .text("param_value", "7")
        .text("p.max_buffer_age", "soon")
        .text("action", "save")
        .post(&server, "/outputs/new")
        .await;
    assert_eq!(status, 422, "{page}");
    let order: Vec<usize> = ["http://127.0.0.1:1/", "lots", "orphan", r#"value="7""#]
        .iter()
        .map(|v| {
            page.find(v)
                .unwrap_or_else(|| panic!("`{v}` is lost: {page}"))
        })
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "rows reordered: {order:?}"
    );
    let row_error = |n: usize| {
        let marker = format!(r#"id="row-{n}-error">"#);
        page.find(&marker).map(|at| {
            let rest = &page[at + marker.len()..];
            rest[..rest.find('<').unwrap()].to_owned()
        })
    };
    assert!(row_error(1).is_none(), "{page}");
    assert!(row_error(2).unwrap().contains("as a number"), "{page}");
    assert!(
        row_error(3).unwrap().contains("a value needs a name"),
        "{page}"
    );
    assert!(page.contains("parameter row 3"), "1-based, in the summary");
    assert!(page.contains("parameter count</span>"), "{page}");
    assert!(!page.contains("parameters[2]"), "{page}");
    // The bad buffer age is reported too, in its own field.
    assert!(page.contains(r#"id="p-max_buffer_age-error""#), "{page}");
    assert!(page.contains(r#"value="soon""#), "{page}");
    // The buffer row stayed in the table; the Buffer field is still empty.
    assert!(
        page.contains(r#"name="param_name" value="max_buffer_size""#),
        "{page}"
    );
    assert!(
        page.contains(r#"id="p-max_buffer_size" name="p.max_buffer_size" value="""#),
        "{page}"
    );
    server.stop().await;
}

/// The kind is chosen inside the form: what was typed goes along, and
/// comes back on a move back.
#[tokio::test]
async fn choosing_another_kind_keeps_what_was_typed() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let (status, _, page) = Multipart::new()
        .text("kind", "file")
        .text("name", "typed-name")
        .text("enabled", "on")
        .text("p.path", "/var/tmp/typed.log")
        .text("p.max_buffer_size", "12")
        .text("filter", "neb")
        .text("switch_kind", "influxdb")
        .post(&server, "/outputs/new")
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains(r#"value="influxdb" class="kind-choice current""#),
        "{page}"
    );
    assert!(page.contains(r#"name="kind" value="influxdb""#), "{page}");
    assert!(
        page.contains(r#"id="name" name="name" value="typed-name""#),
        "{page}"
    );
    assert!(page.contains(r#"id="p-max_buffer_size" name="p.max_buffer_size" value="12""#));
    assert!(
        page.contains(r#"type="hidden" name="p.path" value="/var/tmp/typed.log""#),
        "{page}"
    );
    assert!(
        page.contains(r#"name="filter" value="neb" checked"#),
        "{page}"
    );
    assert!(
        !page.contains(r#"id="error-summary""#),
        "a kind change is not an error"
    );
    // Help text shows code, not backticks.
    assert!(
        page.contains("<code>http</code> or <code>https</code>"),
        "{page}"
    );
    // Back to `file`: the path is in its field again.
    let (_, _, page) = Multipart::new()
        .text("kind", "influxdb")
        .text("name", "typed-name")
        .text("p.path", "/var/tmp/typed.log")
        .text("switch_kind", "file")
        .post(&server, "/outputs/new")
        .await;
    assert!(
        page.contains(r#"id="p-path" name="p.path" value="/var/tmp/typed.log""#),
        "{page}"
    );
    server.stop().await;
}

/// Reads server-sent events until `done` holds for the text read so far.
#[tokio::test]
async fn the_tail_streams_each_stage_and_counts_what_it_samples_out() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let out = dir.path().join("out.log");
    server
        .create_file_output(
            "tailed",
            &out,
            json!({"filters": {"category": ["neb:host_status"]}}),
        )
        .await;
    let mut received = server
        .get("/api/v1/outputs/tailed/tail?stage=received")
        .await;
    assert_eq!(received.status(), 200);
    assert_eq!(
        received.headers()["content-type"].to_str().unwrap(),
        "text/event-stream"
    );
    let mut sent = server.get("/api/v1/outputs/tailed/tail?stage=sent").await;
    // The first `stats` tick shows the subscriptions are in place.
    read_sse(&mut received, |t| t.contains("event: stats")).await;
    read_sse(&mut sent, |t| t.contains("event: stats")).await;
    let (code, _) = server
        .post_events(&[metric(1, 1, "cpu", 1.0), host_status(12, 1, "DOWN")])
        .await;
    assert_eq!(code, 200);
    let text = read_sse(&mut received, |t| t.contains("\"host_id\":12")).await;
    assert!(text.contains("event: tail"), "{text}");
    assert!(
        text.contains("\"metric_id\":7"),
        "the metric was received: {text}"
    );
    // Only the host status passes the filter and is sent (batches of 1).
    let text = read_sse(&mut sent, |t| t.contains("\"host_id\":12")).await;
    assert!(!text.contains("metric_id"), "{text}");

    // At most `rate` events a second reach a client; the rest are counted.
    let mut sampled = server
        .get("/api/v1/outputs/tailed/tail?stage=received&rate=1")
        .await;
    read_sse(&mut sampled, |t| t.contains("event: stats")).await;
    let burst: Vec<Value> = (0..50).map(|i| host_status(i, 0, "UP")).collect();
    server.post_events(&burst).await;
    let text = read_sse(&mut sampled, |t| {
        t.lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .any(|d| d["skipped"].as_u64().unwrap_or(0) >= 49)
    })
    .await;
    assert_eq!(text.matches("event: tail").count(), 1, "{text}");

    assert_eq!(server.get("/api/v1/outputs/nope/tail").await.status(), 404);
    assert_eq!(
        server
            .get("/api/v1/outputs/tailed/tail?stage=bogus")
            .await
            .status(),
        422
    );
    server.stop().await;
}

#[tokio::test]
async fn pause_resume_and_restart() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let out = dir.path().join("out.log");
    server.create_file_output("o", &out, json!({})).await;
    server
        .wait_status("o", "running", |s| s["state"] == "running")
        .await;

    let response = server
        .post_json("/api/v1/outputs/o/pause", &json!({}))
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.json::<Value>().await.unwrap()["state"], "paused");
    assert_eq!(server.status("o").await["state"], "paused");
    server.post_events(&[host(1, "a"), host(2, "b")]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let status = server.status("o").await;
    assert_eq!(status["counters"]["received"], 0, "{status:#}");
    assert_eq!(status["queue_depth"], 2, "the events wait in the journal");
    // A paused output has no worker to flush.
    assert_eq!(
        server
            .post_json("/api/v1/outputs/o/flush", &json!({}))
            .await
            .status(),
        409
    );
    // An edit keeps it paused.
    let response = server
        .send_json(
            reqwest::Method::PATCH,
            "/api/v1/outputs/o",
            &json!({"filters": "all"}),
        )
        .await;
    assert_eq!(response.status(), 200);
    assert_eq!(server.status("o").await["state"], "paused");

    let response = server
        .post_json("/api/v1/outputs/o/resume", &json!({}))
        .await;
    assert_eq!(response.status(), 200);
    wait_lines(&out, 2).await;
    server
        .wait_status("o", "caught up", |s| s["queue_depth"] == 0)
        .await;

    let response = server
        .post_json("/api/v1/outputs/o/restart", &json!({}))
        .await;
    assert_eq!(response.status(), 200);
    server
        .wait_status("o", "running again", |s| s["state"] == "running")
        .await;
    server.post_events(&[host(3, "c")]).await;
    wait_lines(&out, 3).await;

    for action in ["pause", "resume", "restart"] {
        let response = server
            .post_json(&format!("/api/v1/outputs/nope/{action}"), &json!({}))
            .await;
        assert_eq!(response.status(), 404, "{action}");
    }
    server
        .send_json(
            reqwest::Method::PATCH,
            "/api/v1/outputs/o",
            &json!({"enabled": false}),
        )
        .await;
    let response = server
        .post_json("/api/v1/outputs/o/pause", &json!({}))
        .await;
    assert_eq!(response.status(), 409);
    server.stop().await;
}

// ---------------------------------------------------------------------------
// The browser test.

/// A chromedriver on a loopback port, killed when dropped.
struct Driver {
    child: Child,
    base: String,
    session: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

fn find_program(names: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    names.iter().find_map(|name| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    })
}

impl Driver {
    async fn start() -> Driver {
        let chromedriver = find_program(&["chromedriver"]).unwrap_or_else(|| {
            panic!(
                "chromedriver is not installed: the web UI is tested in a real headless \
                 Chromium. Run scripts/setup as root (it installs Debian's `chromium` and \
                 `chromium-driver`)."
            )
        });
        let chromium = find_program(&["chromium", "chromium-browser", "google-chrome"])
            .unwrap_or_else(|| panic!("chromium is not installed; run scripts/setup as root"));
        // The port is probed free, then handed to chromedriver: another test may
        // bind it in between. So the answer must be chromedriver's own ready
        // document, and a driver that exited or never answered is retried on a
        // fresh port.
        let http = reqwest::Client::new();
        let mut attempt = 0;
        let (child, base) = loop {
            attempt += 1;
            let port = free_port();
            let mut child = Command::new(&chromedriver)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("chromedriver starts");
            let base = format!("http://127.0.0.1:{port}");
            let deadline = Instant::now() + Duration::from_secs(20);
            let mut ready = false;
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if let Ok(r) = http.get(format!("{base}/status")).send().await {
                    let body: Value = r.json().await.unwrap_or(Value::Null);
                    if body["value"]["ready"] == Value::Bool(true) {
                        ready = true;
                        break;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if ready {
                break (child, base);
            }
            let _ = child.kill();
            let _ = child.wait();
            assert!(attempt < 3, "chromedriver did not answer on three ports");
        };
        let profile = tempfile::tempdir().unwrap();
        let args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--window-size=1280,1000".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
        ];
        let mut driver = Driver {
            child,
            base,
            session: String::new(),
            http,
            _profile: profile,
        };
        let answer = driver
            .call(
                reqwest::Method::POST,
                "/session",
                json!({"capabilities": {"alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {"binary": chromium, "args": args},
                }}}),
            )
            .await;
        driver.session = answer["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {answer}"))
            .to_owned();
        driver
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Value) -> Value {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base));
        if method != reqwest::Method::GET {
            request = request.json(&body);
        }
        let response = request.send().await.expect("chromedriver answers");
        let status = response.status();
        let answer: Value = response.json().await.unwrap_or(Value::Null);
        assert!(status.is_success(), "{method} {path}: {status} {answer}");
        answer["value"].clone()
    }

    fn at(&self, path: &str) -> String {
        format!("/session/{}{path}", self.session)
    }

    async fn goto(&self, url: &str) {
        self.call(reqwest::Method::POST, &self.at("/url"), json!({"url": url}))
            .await;
    }

    async fn url(&self) -> String {
        self.call(reqwest::Method::GET, &self.at("/url"), Value::Null)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The element, waiting for it to appear.
    async fn find(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let response = self
                .http
                .post(format!("{}{}", self.base, self.at("/element")))
                .json(&json!({"using": "css selector", "value": css}))
                .send()
                .await
                .unwrap();
            if response.status().is_success() {
                let answer: Value = response.json().await.unwrap();
                return answer["value"][ELEMENT].as_str().unwrap().to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no element `{css}` on {}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the element, finding it again if a refresh replaced it.
    async fn click(&self, css: &str) {
        for _ in 0..5 {
            let id = self.find(css).await;
            let response = self
                .http
                .post(format!(
                    "{}{}",
                    self.base,
                    self.at(&format!("/element/{id}/click"))
                ))
                .json(&json!({}))
                .send()
                .await
                .unwrap();
            if response.status().is_success() {
                return;
            }
            let answer: Value = response.json().await.unwrap_or(Value::Null);
            assert_eq!(
                answer["value"]["error"], "stale element reference",
                "click on `{css}`: {answer}"
            );
        }
        panic!("`{css}` kept being replaced");
    }

    async fn type_into(&self, css: &str, text: &str) {
        let id = self.find(css).await;
        self.call(
            reqwest::Method::POST,
            &self.at(&format!("/element/{id}/clear")),
            json!({}),
        )
        .await;
        self.call(
            reqwest::Method::POST,
            &self.at(&format!("/element/{id}/value")),
            json!({"text": text}),
        )
        .await;
    }

    /// The element's text, waiting for it to appear. Read in one script
    /// call: the live parts of a page are replaced every few seconds, so an
    /// element found in one call may be gone by the next.
    async fn text(&self, css: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self
                .call(
                    reqwest::Method::POST,
                    &self.at("/execute/sync"),
                    json!({
                        "script": "var e = document.querySelector(arguments[0]); return e ? e.innerText : null;",
                        "args": [css],
                    }),
                )
                .await;
            if let Some(text) = text.as_str() {
                return text.to_owned();
            }
            assert!(
                Instant::now() < deadline,
                "no element `{css}` on {}",
                self.url().await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the element's text satisfies `ready`.
    async fn wait_text(&self, css: &str, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.text(css).await;
            if ready(&text) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what} in `{css}`: {text:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn scroll_to(&self, css: &str) {
        self.call(
            reqwest::Method::POST,
            &self.at("/execute/sync"),
            json!({"script": "document.querySelector(arguments[0]).scrollIntoView();", "args": [css]}),
        )
        .await;
    }

    async fn screenshot(&self, name: &str) {
        let data = self
            .call(reqwest::Method::GET, &self.at("/screenshot"), Value::Null)
            .await;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data.as_str().unwrap_or_default())
            .expect("a base64 PNG");
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("{name}.png")), png).unwrap();
    }

    async fn quit(self) {
        let path = format!("/session/{}", self.session);
        let _ = self
            .http
            .delete(format!("{}{path}", self.base))
            .send()
            .await;
    }
}

#[tokio::test]
async fn in_a_browser_add_an_output_watch_its_events_and_flush_it() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let browser = Driver::start().await;
    let out = dir.path().join("web.log");

    // Anonymous, the browser is sent to the login form, then back.
    browser.goto(&server.url("/outputs/new?kind=file")).await;
    let at = browser.url().await;
    assert!(
        at.contains("/login?next=/outputs/new%3Fkind%3Dfile"),
        "{at}"
    );
    browser.screenshot("00-login").await;
    browser.type_into("#user", "admin").await;
    browser.type_into("#password", "not the password").await;
    browser.click("#login").await;
    let error = browser.text("#login-error").await;
    assert!(error.contains("Wrong user name or password"), "{error}");
    browser.type_into("#password", ADMIN_PASSWORD).await;
    browser.click("#login").await;

    // Add a file output; the first try forgets the path.
    browser.find("#output-form").await;
    assert!(browser.url().await.ends_with("/outputs/new?kind=file"));
    browser.screenshot("01-form").await;
    browser.type_into("#name", "web-file").await;
    browser.type_into("#p-max_buffer_size", "100000").await;
    browser.type_into("#p-max_buffer_age", "3600").await;
    browser.click("input[name=filter][value=neb]").await;
    browser.click("#save").await;
    let error = browser.text("#p-path-error").await;
    assert!(error.contains("required"), "{error}");
    browser.screenshot("02-form-error").await;
    // What was typed is still there; fix the path and save.
    let id = browser.find("#name").await;
    let kept = browser
        .call(
            reqwest::Method::GET,
            &browser.at(&format!("/element/{id}/property/value")),
            Value::Null,
        )
        .await;
    assert_eq!(kept, "web-file");
    browser.type_into("#p-path", out.to_str().unwrap()).await;
    browser.click("#save").await;
    browser
        .wait_text("#notice", "the saved notice", |t| t.contains("Saved"))
        .await;
    assert!(browser.url().await.ends_with("/outputs/web-file"));

    // The overview lists it.
    browser.goto(&server.url("/")).await;
    let row = browser
        .wait_text("tr[data-output=web-file]", "the output's row", |t| {
            t.contains("running")
        })
        .await;
    assert!(row.contains("file"), "{row}");
    browser.screenshot("03-overview").await;

    // Its detail page, with the live tail.
    browser.click("a[href='/outputs/web-file']").await;
    browser
        .wait_text("#tail-state", "the tail to connect", |t| {
            t.starts_with("Live")
        })
        .await;
    assert!(browser.text("#no-flush").await.contains("No flush"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut host_id = 500;
    loop {
        // Sent until one is seen: the stream may open after the first post.
        server
            .post_events(&[host_status(host_id, 1, "DOWN from the browser test")])
            .await;
        host_id += 1;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let tail = browser.text("#tail-lines").await;
        if tail.contains("DOWN from the browser test") {
            break;
        }
        assert!(Instant::now() < deadline, "no event in the tail: {tail:?}");
    }
    browser
        .wait_text("#c-received", "the counters to refresh", |t| {
            t.parse::<u64>().unwrap_or(0) >= 1
        })
        .await;
    browser
        .call(
            reqwest::Method::POST,
            &browser.at("/execute/sync"),
            json!({"script": "document.getElementById('tail').scrollIntoView()", "args": []}),
        )
        .await;
    browser.screenshot("04-detail-tail").await;

    // Flush now: the events are written and the flush appears.
    browser.click("#flush").await;
    let notice = browser
        .wait_text("#notice", "the flush notice", |t| t.contains("Flushed"))
        .await;
    assert!(notice.contains("ok"), "{notice}");
    let flushes = browser.text("#flushes").await;
    assert!(flushes.contains("manual"), "{flushes}");
    assert!(flushes.contains("ok"), "{flushes}");
    assert!(!wait_lines(&out, 1).await.is_empty());
    browser.screenshot("05-detail-flushed").await;

    // The overview refreshes by itself: a pause made elsewhere shows up.
    browser.goto(&server.url("/")).await;
    server
        .post_json("/api/v1/outputs/web-file/pause", &json!({}))
        .await;
    browser
        .wait_text("tr[data-output=web-file]", "the paused state", |t| {
            t.contains("paused")
        })
        .await;

    // A script output's parameter rows are added and removed in the page.
    browser.goto(&server.url("/outputs/new?kind=lua")).await;
    let rows = "document.querySelectorAll('#params tbody tr').length";
    let count = |script: &'static str| {
        let browser = &browser;
        async move {
            browser
                .call(
                    reqwest::Method::POST,
                    &browser.at("/execute/sync"),
                    json!({"script": format!("return {script};"), "args": []}),
                )
                .await
        }
    };
    let before = count(rows).await.as_u64().unwrap();
    browser.click("#add-row").await;
    browser.click("#add-row").await;
    assert_eq!(count(rows).await.as_u64().unwrap(), before + 2);
    browser
        .click("#params tbody tr:first-child .remove-row")
        .await;
    assert_eq!(count(rows).await.as_u64().unwrap(), before + 1);
    browser
        .type_into(
            "#params tbody tr:first-child input[name=param_name]",
            "http_server_address",
        )
        .await;
    browser
        .type_into(
            "#params tbody tr:first-child input[name=param_value]",
            "127.0.0.1",
        )
        .await;
    browser.screenshot("06-form-lua").await;

    // On a phone-sized screen the overview still reads.
    browser
        .call(
            reqwest::Method::POST,
            &browser.at("/window/rect"),
            json!({"width": 390, "height": 844}),
        )
        .await;
    browser.goto(&server.url("/")).await;
    browser.find("tr[data-output=web-file]").await;
    browser.screenshot("07-overview-phone").await;

    browser.quit().await;
    server.stop().await;
}

#[tokio::test]
async fn the_detail_page_shows_the_script_log_and_its_buttons_act() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    std::fs::write(
        dir.path().join("scripts/logs.lua"),
        "function init(conf) broker_log:info(0, 'hello <b>from</b> init') end\n\
         function write(e) return true end\n",
    )
    .unwrap();
    let response = server
        .post_json(
            "/api/v1/outputs",
            &json!({"name": "logged", "kind": "lua", "path": "logs.lua"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    server
        .wait_status("logged", "running", |s| s["state"] == "running")
        .await;
    let page = server.get("/outputs/logged").await.text().await.unwrap();
    // The script's log line, escaped like everything else.
    assert!(
        page.contains("INFO: hello &#60;b&#62;from&#60;/b&#62; init"),
        "{page}"
    );
    // Stamped as the rest of the page is: UTC, to the millisecond.
    let line = page
        .lines()
        .find(|l| l.contains("INFO: hello"))
        .unwrap_or_default();
    let stamp = line.rsplit('>').next().unwrap_or_default();
    assert_eq!(stamp.find(" UTC INFO: hello"), Some(23), "{line}");
    assert_eq!(&stamp[4..5], "-", "{line}");
    assert_eq!(&stamp[13..14], ":", "{line}");

    let session = Session::admin(&server).await;
    let act = |action: &'static str, since: &'static str| {
        let session = &session;
        async move {
            session
                .act(
                    "/outputs/logged/action",
                    &[("action", action), ("since", since)],
                )
                .await
        }
    };
    let said = act("pause", "").await;
    assert_eq!(said.class, "notice-success", "{said:?}");
    assert!(said.text.starts_with("Paused"), "{said:?}");
    assert_eq!(server.status("logged").await["state"], "paused");
    // A pause that changes nothing says so, and is not a success.
    let said = act("pause", "").await;
    assert_eq!(said.class, "notice-info", "{said:?}");
    assert!(said.text.contains("paused already"), "{said:?}");
    let said = act("flush", "").await;
    assert_eq!(
        (said.class.as_str(), said.role.as_str()),
        ("notice-error", "alert")
    );
    assert!(said.text.starts_with("Cannot flush"), "{said:?}");
    assert!(act("resume", "").await.text.starts_with("Resumed"));
    assert!(act("resume", "").await.text.contains("not paused"));
    assert!(act("replay", "yesterday")
        .await
        .text
        .starts_with("Cannot replay"));
    assert!(act("replay", "2026-01-01T00:00")
        .await
        .text
        .starts_with("Replaying"));
    // From the oldest, only once confirmed.
    let said = act("replay", "").await;
    assert!(said.text.starts_with("Nothing replayed"), "{said:?}");
    let said = session
        .act(
            "/outputs/logged/action",
            &[("action", "replay"), ("since", ""), ("confirm", "yes")],
        )
        .await;
    assert!(said.text.starts_with("Replaying"), "{said:?}");
    assert!(act("flush", "").await.text.contains("Flushed"));
    let page = server
        .get("/fragments/outputs/logged")
        .await
        .text()
        .await
        .unwrap();
    // The script has no flush(): nothing to flush, nothing recorded, and
    // nothing shown as failed.
    assert!(page.contains("No flush yet."), "{page}");
    assert!(!page.contains("no flush() function"), "{page}");
    let overview = server
        .get("/fragments/overview")
        .await
        .text()
        .await
        .unwrap();
    assert!(overview.contains(r#"data-output="logged""#), "{overview}");
    assert!(
        overview.contains("HTTP <code>POST /api/v1/events</code>"),
        "{overview}"
    );
    server.stop().await;
}

#[tokio::test]
async fn in_a_browser_a_failed_flush_shows_as_a_red_bar_of_visible_height() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let switch = dir.path().join("up");
    std::fs::write(&switch, "").unwrap();
    // flush() acknowledges while the switch file exists, else returns false.
    std::fs::write(
        dir.path().join("scripts/switch.lua"),
        "local switch\n\
         function init(conf) switch = conf.switch end\n\
         function write(e) return false end\n\
         function flush()\n\
           local f = io.open(switch, 'r')\n\
           if f then f:close() return true end\n\
           return false\n\
         end\n",
    )
    .unwrap();
    let response = server
        .post_json(
            "/api/v1/outputs",
            &json!({"name": "bars", "kind": "lua", "path": "switch.lua", "parameters": [
                {"name": "switch", "type": "string", "value": switch.to_str().unwrap()}]}),
        )
        .await;
    assert_eq!(response.status(), 201);
    // A flush of 200 events makes the tall bar; then the destination goes
    // down and three manual flushes of the next event fail.
    let events: Vec<Value> = (1..=200).map(|i| host_status(i, 0, "x")).collect();
    assert_eq!(server.post_events(&events).await.0, 200);
    server
        .wait_status("bars", "200 acknowledged", |s| {
            s["counters"]["acknowledged"] == 200
        })
        .await;
    std::fs::remove_file(&switch).unwrap();
    assert_eq!(server.post_events(&[host_status(1, 1, "y")]).await.0, 200);
    server
        .wait_status("bars", "201 written", |s| s["counters"]["written"] == 201)
        .await;
    for _ in 0..3 {
        let response = server
            .client
            .post(server.url("/api/v1/outputs/bars/flush"))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
    }

    let browser = Driver::start().await;
    browser.goto(&server.url("/outputs/bars")).await;
    browser.type_into("#user", "admin").await;
    browser.type_into("#password", ADMIN_PASSWORD).await;
    browser.click("#login").await;
    browser.find("rect.bar-bad").await;
    let measured = browser
        .call(
            reqwest::Method::POST,
            &browser.at("/execute/sync"),
            json!({"script": "var bars = document.querySelectorAll('rect.bar-bad'); \
                var chart = document.querySelector('svg.chart').getBoundingClientRect().height; \
                var manual = Array.from(bars).find(function (b) { \
                  return b.querySelector('title').textContent.indexOf('×') >= 0; }); \
                var bar = manual || bars[bars.length - 1]; \
                return {chart: chart, height: bar.getBoundingClientRect().height, \
                  fill: getComputedStyle(bar).fill, \
                  title: bar.querySelector('title').textContent};",
                "args": []}),
        )
        .await;
    browser.screenshot("08-detail-failed-flush").await;
    browser.quit().await;
    let chart = measured["chart"].as_f64().unwrap();
    let height = measured["height"].as_f64().unwrap();
    assert!(height >= chart * 0.15, "{measured}");
    assert_eq!(measured["fill"], "rgb(207, 34, 46)", "{measured}");
    let title = measured["title"].as_str().unwrap();
    assert!(title.contains("flush() returned false"), "{measured}");
    assert!(title.contains(" since "), "{measured}");
    server.stop().await;
}

/// The rate cell's number (`12.5`, or `12.5 (stale)`), as a float.
fn rate_in(text: &str) -> f64 {
    text.split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(-1.0)
}

async fn sign_in(browser: &Driver, server: &Server, path: &str) {
    browser.goto(&server.url(path)).await;
    browser.type_into("#user", "admin").await;
    browser.type_into("#password", ADMIN_PASSWORD).await;
    browser.click("#login").await;
}

#[tokio::test]
async fn in_a_browser_the_overview_shows_received_and_delivered_rates() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    server
        .create_file_output("delivers", &dir.path().join("out.log"), json!({}))
        .await;
    // Nothing listens on this port: the http output receives, never delivers.
    let closed = format!("http://127.0.0.1:{}/", free_port());
    let response = server
        .post_json(
            "/api/v1/outputs",
            &json!({"name": "refused", "kind": "http", "parameters": [
                {"name": "http_url", "type": "string", "value": closed},
                {"name": "max_buffer_size", "type": "number", "value": "50"}]}),
        )
        .await;
    assert_eq!(response.status(), 201);

    let browser = Driver::start().await;
    sign_in(&browser, &server, "/").await;
    browser.find("tr[data-output=refused]").await;
    let headers = browser.text("#outputs thead").await;
    assert!(headers.contains("Received/s"), "{headers}");
    assert!(headers.contains("Delivered/s"), "{headers}");
    // Events are posted until both outputs have received some and the file
    // output has delivered some, as the sparklines' summaries say ("... at
    // most 12.5 over the last 10 s"): the http output reads one batch per
    // retry, so its latest rate is mostly 0.
    let most = |output: &'static str, rate: &'static str| {
        let browser = &browser;
        async move {
            let label = browser
                .call(
                    reqwest::Method::POST,
                    &browser.at("/execute/sync"),
                    json!({"script": "var e = document.querySelector(arguments[0]); \
                        return e ? e.getAttribute('aria-label') : '';",
                        "args": [format!("tr[data-output={output}] td.rate.{rate} svg")]}),
                )
                .await;
            let label = label.as_str().unwrap_or_default().to_owned();
            let max = label.split("at most ").nth(1).map_or(-1.0, rate_in);
            (max, label)
        }
    };
    // A rate needs two samples: no event is posted before the sampler has
    // seen both outputs twice, so the first batch shows as a rise.
    let deadline = Instant::now() + Duration::from_secs(20);
    for output in ["delivers", "refused"] {
        loop {
            let (_, label) = most(output, "received").await;
            if label.contains("over the last") && !label.ends_with(" 0 s") {
                break;
            }
            assert!(Instant::now() < deadline, "no samples yet: {label}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut host_id = 1;
    loop {
        let events: Vec<Value> = (0..20).map(|i| host_status(host_id + i, 1, "x")).collect();
        host_id += 20;
        server.post_events(&events).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let file_in = most("delivers", "received").await;
        let file_out = most("delivers", "delivered").await;
        let http_in = most("refused", "received").await;
        if file_in.0 > 0.0 && file_out.0 > 0.0 && http_in.0 > 0.0 {
            let http_out = most("refused", "delivered").await;
            assert_eq!(
                http_out.0, 0.0,
                "the refused output delivers nothing: {http_out:?}"
            );
            assert!(http_out.1.contains("events/s delivered"), "{http_out:?}");
            assert!(http_in.1.contains("events/s received"), "{http_in:?}");
            break;
        }
        if Instant::now() >= deadline {
            let status = server.status("refused").await;
            panic!("rates: delivers {file_in:?}/{file_out:?}, refused {http_in:?}: {status:#}");
        }
    }
    let refused = browser
        .text("tr[data-output=refused] td.rate.delivered")
        .await;
    assert_eq!(refused.trim(), "0.0", "{refused}");
    browser.screenshot("09-overview-rates").await;

    // The detail page shows both as well.
    browser.goto(&server.url("/outputs/refused")).await;
    let delivered = browser.text("#r-delivered").await;
    assert_eq!(delivered.trim(), "0.0", "{delivered}");
    assert!(rate_in(&browser.text("#r-received").await) >= 0.0);

    // And the hour's history, from the minute under way: the API's and the
    // chart's, where the delivered line stays at the bottom.
    let rates = server.get_json("/api/v1/outputs/refused/rates").await;
    assert_eq!(rates["recent"]["step_secs"], 2, "{rates}");
    assert_eq!(rates["hour"]["step_secs"], 60, "{rates}");
    let hour_in = rates["hour"]["received"].as_array().unwrap();
    assert!(!hour_in.is_empty(), "{rates}");
    assert!(hour_in.last().unwrap().as_f64().unwrap() > 0.0, "{rates}");
    assert!(
        rates["hour"]["delivered"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r.as_f64() == Some(0.0)),
        "{rates}"
    );
    let delivers = server.get_json("/api/v1/outputs/delivers/rates").await;
    let delivered = delivers["hour"]["delivered"].as_array().unwrap();
    assert!(
        delivered.last().unwrap().as_f64().unwrap() > 0.0,
        "{delivers}"
    );
    assert_eq!(server.get("/api/v1/outputs/nope/rates").await.status(), 404);
    let label = browser
        .call(
            reqwest::Method::POST,
            &browser.at("/execute/sync"),
            json!({"script": "return document.querySelector('#hour-chart').getAttribute('aria-label');", "args": []}),
        )
        .await;
    let label = label.as_str().unwrap_or_default();
    assert!(
        label.contains("received and 0.0 delivered on average"),
        "{label}"
    );
    browser.scroll_to("#hour-title").await;
    browser.screenshot("10-detail-hour-rates").await;
    browser.quit().await;
    server.stop().await;
}

#[tokio::test]
async fn in_a_browser_a_page_whose_server_is_gone_says_it_is_stale() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    server
        .create_file_output("watched", &dir.path().join("out.log"), json!({}))
        .await;
    server
        .wait_status("watched", "running", |s| s["state"] == "running")
        .await;
    let browser = Driver::start().await;
    sign_in(&browser, &server, "/").await;
    browser
        .wait_text("tr[data-output=watched] .state", "running", |t| {
            t.trim() == "running"
        })
        .await;
    // A refresh succeeded, with no banner.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(browser.text("#stale-banner").await, "");
    // Refreshes that fail show the banner; one that succeeds again
    // removes it and the marks.
    let script = |script: &'static str| {
        let browser = &browser;
        async move {
            browser
                .call(
                    reqwest::Method::POST,
                    &browser.at("/execute/sync"),
                    json!({"script": script, "args": []}),
                )
                .await
        }
    };
    script(
        "window.realFetch = window.fetch; \
         window.fetch = function () { return Promise.reject(new Error('down')); };",
    )
    .await;
    browser
        .wait_text("#stale-banner", "the stale banner", |t| !t.is_empty())
        .await;
    script("window.fetch = window.realFetch;").await;
    browser
        .wait_text("#stale-banner", "the banner to go", |t| t.is_empty())
        .await;
    let state = browser.text("tr[data-output=watched] .state").await;
    assert_eq!(state, "running", "no stale mark once refreshed");
    assert_eq!(
        script("return document.querySelectorAll('#live.stale, .stale-mark').length;").await,
        0
    );
    server.stop().await;

    let banner = browser
        .wait_text("#stale-banner", "the stale banner", |t| !t.is_empty())
        .await;
    browser.screenshot("10-overview-stale").await;
    let rest = banner
        .strip_prefix("Connection lost, last update ")
        .unwrap_or_else(|| panic!("{banner}"));
    let clock = &rest[..8];
    assert!(
        clock.chars().enumerate().all(|(i, c)| if i == 2 || i == 5 {
            c == ':'
        } else {
            c.is_ascii_digit()
        }),
        "{banner}"
    );
    assert!(rest[8..].starts_with(" UTC"), "{banner}");
    let shown = browser
        .call(
            reqwest::Method::POST,
            &browser.at("/execute/sync"),
            json!({"script": "var b = document.getElementById('stale-banner'); \
                var s = document.querySelector('tr[data-output=watched] td.state-cell'); \
                return {role: b.getAttribute('role'), visible: b.getBoundingClientRect().height > 0, \
                  stale: document.getElementById('live').classList.contains('stale'), \
                  state: s.innerText, colour: getComputedStyle(s.querySelector('.state')).color, \
                  health: getComputedStyle(s.querySelector('.health')).backgroundColor, \
                  rate: document.querySelector('tr[data-output=watched] td.rate.received').innerText};",
                "args": []}),
        )
        .await;
    browser.quit().await;
    assert_eq!(shown["role"], "alert", "{shown}");
    assert_eq!(shown["visible"], true, "{shown}");
    assert_eq!(shown["stale"], true, "{shown}");
    assert_eq!(shown["state"], "ok (stale) running (stale)", "{shown}");
    // Greyed (--muted), no longer the green of a running output or of a
    // healthy one.
    assert_eq!(shown["colour"], "rgb(87, 96, 106)", "{shown}");
    assert_eq!(shown["health"], "rgb(87, 96, 106)", "{shown}");
    assert!(
        shown["rate"].as_str().unwrap().ends_with("(stale)"),
        "{shown}"
    );
}

/// Dead letters on the detail page: listed with their reason, replayed
/// by a click once the destination takes them, and discarded only once
/// the box is ticked (the browser itself refuses the form before).
#[tokio::test]
async fn in_a_browser_dead_letters_are_listed_replayed_and_discarded() {
    use crate::native::{create, metric_at, names, reply, Destination};
    let destination = Destination::start(vec![reply(400, "unknown field `name`")]).await;
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    create(
        &server,
        "strict",
        "http",
        &["storage:metric"],
        &[("http_url", &destination.url), ("max_buffer_size", "2")],
    )
    .await;
    let mut events = names();
    events.push(metric_at("a", 1.0, 1_732_000_000));
    events.push(metric_at("b", 2.0, 1_732_000_060));
    assert_eq!(server.post_events(&events).await.0, 200);
    server
        .wait_status("strict", "2 dead letters", |s| s["dead_letters_held"] == 2)
        .await;

    let browser = Driver::start().await;
    sign_in(&browser, &server, "/outputs/strict").await;
    let held = browser.text("#deadletters-held").await;
    assert!(
        held.starts_with("2 events the destination refused"),
        "{held}"
    );
    let table = browser.text("#deadletters-list").await;
    assert!(table.contains("HTTP 400: unknown field `name`"), "{table}");
    assert!(table.contains("\"name\":\"a\""), "{table}");
    browser.scroll_to("#deadletters").await;
    browser.screenshot("11-detail-dead-letters").await;

    // The destination takes them now: one click sends both again.
    browser.click("#deadletters-replay").await;
    let notice = browser
        .wait_text("#notice", "the replay's outcome", |t| {
            t.contains("replayed")
        })
        .await;
    assert!(
        notice.contains("2 delivered, 0 refused again, 0 kept"),
        "{notice}"
    );
    let held = browser.text("#deadletters-held").await;
    assert!(held.starts_with("None held"), "{held}");
    let last = destination.requests().pop().unwrap();
    assert!(last.text().contains("\"name\":\"b\""), "{}", last.text());

    // Refused again later, then discarded: not without the box ticked.
    destination.answer_with(400, "unknown field `name`");
    events = vec![
        metric_at("c", 3.0, 1_732_000_120),
        metric_at("d", 4.0, 1_732_000_180),
    ];
    assert_eq!(server.post_events(&events).await.0, 200);
    server
        .wait_status("strict", "2 more dead letters", |s| {
            s["dead_letters_held"] == 2
        })
        .await;
    browser.goto(&server.url("/outputs/strict")).await;
    browser.click("#deadletters-discard").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !browser.url().await.contains("notice="),
        "submitted unticked"
    );
    let held = browser.text("#deadletters-held").await;
    assert!(held.starts_with("2 events"), "{held}");
    browser.click("#deadletters-confirm").await;
    browser.click("#deadletters-discard").await;
    let notice = browser
        .wait_text("#notice", "the discard", |t| t.contains("Discarded"))
        .await;
    assert_eq!(notice, "Discarded 2 dead letters");
    let held = browser.text("#deadletters-held").await;
    assert!(held.starts_with("None held"), "{held}");
    browser.scroll_to("#deadletters").await;
    browser.screenshot("12-detail-dead-letters-discarded").await;
    browser.quit().await;
    server.stop().await;
}

/// The overview's health badges in their colours, as an operator scans
/// them: a file output that writes is green `ok`; an http output whose
/// destination answers 401 is red `failing`, its tooltip saying why.
#[tokio::test]
async fn in_a_browser_the_overview_colours_each_output_by_its_health() {
    use crate::native::{create, Destination};
    let destination = Destination::start(Vec::new()).await;
    destination.answer_with(401, "bad token");
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    server
        .create_file_output("writes", &dir.path().join("out.log"), json!({}))
        .await;
    create(
        &server,
        "denied",
        "http",
        &[],
        &[("http_url", &destination.url), ("max_buffer_size", "1")],
    )
    .await;
    assert_eq!(server.post_events(&[host_status(1, 0, "OK")]).await.0, 200);
    server
        .wait_status("denied", "failing", |s| s["health"]["state"] == "failing")
        .await;
    server
        .wait_status("writes", "written", |s| s["counters"]["acknowledged"] == 1)
        .await;

    let browser = Driver::start().await;
    sign_in(&browser, &server, "/").await;
    browser.find("tr[data-output=denied] .health").await;
    let shown = browser
        .call(
            reqwest::Method::POST,
            &browser.at("/execute/sync"),
            json!({"script": "var out = {}; ['writes', 'denied'].forEach(function (n) { \
                  var b = document.querySelector('tr[data-output=' + n + '] .health'); \
                  out[n] = {text: b.textContent, colour: getComputedStyle(b).backgroundColor, \
                    title: b.getAttribute('title')}; }); return out;",
                "args": []}),
        )
        .await;
    browser.screenshot("13-overview-health").await;
    browser.quit().await;
    assert_eq!(shown["writes"]["text"], "ok", "{shown}");
    assert_eq!(shown["writes"]["colour"], "rgb(26, 127, 55)", "{shown}");
    assert_eq!(shown["denied"]["text"], "failing", "{shown}");
    assert_eq!(shown["denied"]["colour"], "rgb(207, 34, 46)", "{shown}");
    let title = shown["denied"]["title"].as_str().unwrap();
    assert!(
        title.contains("HTTP 401") && title.contains("credentials"),
        "{title}"
    );
    server.stop().await;
}

/// The detail page offers only the buttons that apply to the output's
/// state, as plain HTML.
fn buttons(page: &str) -> Vec<&'static str> {
    [
        "flush",
        "pause",
        "resume",
        "restart",
        "replay",
        "replay-oldest",
        "disable",
        "enable",
        "rename",
        "clone",
        "delete",
    ]
    .into_iter()
    .filter(|id| page.contains(&format!("id=\"{id}\"")))
    .collect()
}

#[tokio::test]
async fn the_detail_page_offers_the_buttons_of_the_state_and_confirms_what_destroys() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let out = dir.path().join("out.log");
    server.create_file_output("o", &out, json!({})).await;
    server
        .wait_status("o", "running", |s| s["state"] == "running")
        .await;
    let session = Session::admin(&server).await;
    let page = |path: &'static str| {
        let session = &session;
        async move {
            let (status, page) = session.page(path).await;
            assert_eq!(status, 200, "{path}");
            page
        }
    };
    let running = vec![
        "flush",
        "pause",
        "restart",
        "replay",
        "replay-oldest",
        "disable",
        "rename",
        "clone",
        "delete",
    ];
    assert_eq!(buttons(&page("/outputs/o").await), running);

    // A message is shown once: a reload does not show it again.
    let said = session
        .act("/outputs/o/action", &[("action", "pause")])
        .await;
    assert_eq!(said.class, "notice-success");
    assert_eq!(said.role, "status");
    let again = page("/outputs/o").await;
    assert_eq!(notice(&again), None, "shown twice");
    assert_eq!(
        buttons(&again),
        vec![
            "resume",
            "replay",
            "replay-oldest",
            "disable",
            "rename",
            "clone",
            "delete"
        ]
    );
    // Never read from the URL.
    let forged = page("/outputs/o?notice=Everything%20deleted").await;
    assert!(!forged.contains("Everything deleted"), "{forged}");

    // Disabled: nothing acts on it but enable, rename, clone and delete,
    // and its state says so; its events wait.
    let said = session
        .act("/outputs/o/action", &[("action", "disable")])
        .await;
    assert!(said.text.starts_with("Disabled"), "{said:?}");
    server.post_events(&[host(1, "a"), host(2, "b")]).await;
    let disabled = page("/outputs/o").await;
    assert_eq!(
        buttons(&disabled),
        vec!["enable", "rename", "clone", "delete"]
    );
    assert!(
        disabled.contains(r#"<span class="state state-disabled" id="state">disabled</span>"#),
        "{disabled}"
    );
    assert!(disabled.contains("(2 pending)"), "{disabled}");
    let overview = page("/").await;
    assert!(overview.contains("state-disabled"), "{overview}");
    assert!(
        session
            .act("/outputs/o/action", &[("action", "disable")])
            .await
            .text
            .contains("disabled already"),
        "a second disable changes nothing"
    );
    // An operator may pause, not enable: the button is not offered, and
    // the action is refused.
    let response = server
        .post_json(
            "/api/v1/users",
            &json!({"name": "otto", "password": "operator-password-1", "role": "operator"}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let operator = Session::login(&server, "otto", "operator-password-1").await;
    let (_, as_operator) = operator.page("/outputs/o").await;
    assert!(buttons(&as_operator).is_empty(), "{as_operator}");
    assert!(
        as_operator.contains("until an admin enables it"),
        "{as_operator}"
    );
    let said = operator
        .act("/outputs/o/action", &[("action", "enable")])
        .await;
    assert_eq!(said.class, "notice-error", "{said:?}");
    assert!(!server.get_json("/api/v1/outputs/o").await["enabled"]
        .as_bool()
        .unwrap());

    // Delete: the page says what is lost, and nothing happens unconfirmed.
    let confirm = page("/outputs/o/delete").await;
    assert!(
        confirm.contains("<strong>2 events</strong> in the journal have not been delivered"),
        "{confirm}"
    );
    assert!(confirm.contains("It holds no dead letters"), "{confirm}");
    assert!(confirm.contains("id=\"delete-confirm\""), "{confirm}");
    // Without the session's CSRF token, the form is refused outright.
    for path in ["/outputs/o/delete", "/outputs/o/rename", "/outputs/o/clone"] {
        let forged = session
            .client
            .post(server.url(path))
            .header("cookie", &session.cookie)
            .form(&[("confirm", "yes"), ("name", "forged")])
            .send()
            .await
            .unwrap();
        assert_eq!(forged.status(), 403, "{path}");
    }
    let said = session.act("/outputs/o/delete", &[]).await;
    assert_eq!(said.class, "notice-error", "{said:?}");
    assert!(said.text.starts_with("Nothing deleted"), "{said:?}");
    assert_eq!(server.get("/api/v1/outputs/o").await.status(), 200);
    let (status, location) = session
        .post_form("/outputs/o/delete", &[("confirm", "yes")])
        .await;
    assert_eq!((status, location.as_str()), (303, "/"));
    let (_, overview) = session.page("/").await;
    let said = notice(&overview).unwrap();
    assert_eq!(said.text, "Deleted the output `o`");
    assert!(!overview.contains(r#"data-output="o""#), "{overview}");
    assert_eq!(server.get("/api/v1/outputs/o").await.status(), 404);
    let audit = server.get_json("/api/v1/audit").await.to_string();
    assert!(audit.contains("output.disable") && audit.contains("output.delete"));

    // Deleting a user and revoking a token need their box ticked too.
    let (status, _) = session
        .post_form("/users", &[("action", "delete"), ("user", "otto")])
        .await;
    assert_eq!(status, 422);
    assert_eq!(server.get("/api/v1/users/otto").await.status(), 200);
    let (status, _) = session
        .post_form(
            "/users",
            &[("action", "delete"), ("user", "otto"), ("confirm", "yes")],
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(server.get("/api/v1/users/otto").await.status(), 404);
    let token: Value = server
        .post_json("/api/v1/tokens", &json!({"name": "ci"}))
        .await
        .json()
        .await
        .unwrap();
    let id = token["id"].to_string();
    let (status, _) = session
        .post_form("/tokens", &[("action", "revoke"), ("id", &id)])
        .await;
    assert_eq!(status, 422);
    assert_eq!(
        server
            .get_json("/api/v1/tokens")
            .await
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let (status, _) = session
        .post_form(
            "/tokens",
            &[("action", "revoke"), ("id", &id), ("confirm", "yes")],
        )
        .await;
    assert_eq!(status, 200);
    assert!(server
        .get_json("/api/v1/tokens")
        .await
        .as_array()
        .unwrap()
        .is_empty());
    server.stop().await;
}

#[tokio::test]
async fn the_page_clones_an_output_without_showing_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let closed = format!("http://127.0.0.1:{}/", free_port());
    let response = server
        .post_json(
            "/api/v1/outputs",
            &json!({"name": "web", "kind": "http", "filters": {"category": ["neb"]}, "parameters": [
                {"name": "http_url", "type": "string", "value": closed},
                {"name": "http_user", "type": "string", "value": "me"},
                {"name": "http_password", "type": "password", "value": "page-clone-secret"}]}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let session = Session::admin(&server).await;
    let said = session
        .act("/outputs/web/clone", &[("name", "web-copy")])
        .await;
    assert!(said.text.contains("a copy of `web`"), "{said:?}");
    assert!(said.text.contains("disabled"), "{said:?}");
    let (_, page) = session.page("/outputs/web-copy").await;
    assert!(!page.contains("page-clone-secret"), "{page}");
    assert!(page.contains("(hidden)"), "{page}");
    let (_, edit) = session.page("/outputs/web-copy/edit").await;
    assert!(!edit.contains("page-clone-secret"), "{edit}");
    let copy = server.get_json("/api/v1/outputs/web-copy").await;
    let original = server.get_json("/api/v1/outputs/web").await;
    assert_eq!(copy["parameters"], original["parameters"]);
    assert_eq!(copy["filters"], original["filters"]);
    assert_eq!(copy["enabled"], false);
    // A taken or bad name is refused on the page, saying why.
    let said = session
        .act("/outputs/web/clone", &[("name", "web-copy")])
        .await;
    assert_eq!(said.class, "notice-error");
    assert!(said.text.contains("already exists"), "{said:?}");
    let said = session
        .act("/outputs/web/rename", &[("name", "web-copy")])
        .await;
    assert_eq!(said.class, "notice-error");
    assert!(said.text.contains("already exists"), "{said:?}");
    let said = session
        .act("/outputs/web/rename", &[("name", "no spaces")])
        .await;
    assert_eq!(said.class, "notice-error");
    assert!(said.text.contains("name may hold only"), "{said:?}");
    server.stop().await;
}

/// The whole life of an output in a browser: pause (the message shown
/// once), disable (its events wait), rename, enable (they are delivered
/// once), clone, and delete behind its confirmation.
#[tokio::test]
async fn in_a_browser_an_output_is_disabled_renamed_enabled_cloned_and_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let out = dir.path().join("life.log");
    server.create_file_output("life", &out, json!({})).await;
    server.post_events(&[host(1, "a")]).await;
    wait_lines(&out, 1).await;
    server
        .wait_status("life", "running", |s| s["state"] == "running")
        .await;
    let browser = Driver::start().await;
    sign_in(&browser, &server, "/outputs/life").await;
    browser.find("#pause").await;
    browser.screenshot("14-life-running").await;

    browser.click("#pause").await;
    let shown = browser
        .wait_text("#notice", "the pause message", |t| t.starts_with("Paused"))
        .await;
    assert!(shown.contains("wait in the journal"), "{shown}");
    let style = browser
        .call(
            reqwest::Method::POST,
            &browser.at("/execute/sync"),
            json!({"script": "var n = document.getElementById('notice'); \
                return {role: n.getAttribute('role'), border: getComputedStyle(n).borderLeftColor};",
                "args": []}),
        )
        .await;
    assert_eq!(style["role"], "status", "{style}");
    assert_eq!(style["border"], "rgb(26, 127, 55)", "{style}");
    browser.screenshot("15-life-paused-message").await;
    browser.find("#resume").await;
    // Reloaded, the message is gone.
    browser.goto(&server.url("/outputs/life")).await;
    browser.find("#resume").await;
    let gone = browser
        .call(
            reqwest::Method::POST,
            &browser.at("/execute/sync"),
            json!({"script": "return document.getElementById('notice') === null && document.getElementById('pause') === null;", "args": []}),
        )
        .await;
    assert_eq!(gone, true);

    // Disabled: its events wait, its state says so.
    browser.click("#disable").await;
    browser
        .wait_text("#notice", "the disable message", |t| {
            t.starts_with("Disabled")
        })
        .await;
    server
        .post_events(&[host(2, "b"), host(3, "c"), host(4, "d")])
        .await;
    browser.goto(&server.url("/outputs/life")).await;
    let state = browser.text("#state").await;
    assert_eq!(state, "disabled");
    let enabled = browser.text("#enabled").await;
    assert!(enabled.contains("(3 pending)"), "{enabled}");
    browser.screenshot("16-life-disabled").await;
    assert_eq!(std::fs::read_to_string(&out).unwrap().lines().count(), 1);

    // Renamed, then enabled: the three are delivered once.
    browser.type_into("#rename-name", "renamed").await;
    browser.click("#rename").await;
    browser
        .wait_text("#notice", "the rename message", |t| {
            t.starts_with("Renamed")
        })
        .await;
    assert!(browser.url().await.ends_with("/outputs/renamed"));
    let enabled = browser.text("#enabled").await;
    assert!(enabled.contains("(3 pending)"), "{enabled}");
    browser.click("#enable").await;
    browser
        .wait_text("#notice", "the enable message", |t| {
            t.starts_with("Enabled")
        })
        .await;
    wait_lines(&out, 4).await;
    server.post_events(&[host(5, "e")]).await;
    wait_lines(&out, 5).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    let lines = std::fs::read_to_string(&out).unwrap();
    assert_eq!(lines.lines().count(), 5, "{lines}");
    browser.goto(&server.url("/outputs/renamed")).await;
    browser
        .wait_text("#state", "running", |t| t == "running")
        .await;
    browser.screenshot("17-life-renamed-enabled").await;

    // A replay from the oldest says what it re-sends and waits for the box.
    let label = browser.text("#replay-confirm-label").await;
    assert!(label.contains("5 of them already delivered"), "{label}");
    browser.click("#replay-oldest").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        std::fs::read_to_string(&out).unwrap().lines().count(),
        5,
        "replayed without the box ticked"
    );

    // Cloned: the copy is disabled.
    browser.type_into("#clone-name", "copy").await;
    browser.click("#clone").await;
    browser
        .wait_text("#notice", "the clone message", |t| t.starts_with("Created"))
        .await;
    assert!(browser.url().await.ends_with("/outputs/copy"));
    assert_eq!(browser.text("#state").await, "disabled");
    browser.screenshot("18-life-cloned").await;

    // A taken name is refused, in red, interrupting a screen reader.
    browser.goto(&server.url("/outputs/renamed")).await;
    browser.type_into("#rename-name", "copy").await;
    browser.click("#rename").await;
    let refused = browser
        .wait_text("#notice", "the refusal", |t| t.starts_with("Cannot rename"))
        .await;
    assert!(refused.contains("already exists"), "{refused}");
    let style = browser
        .call(
            reqwest::Method::POST,
            &browser.at("/execute/sync"),
            json!({"script": "var n = document.getElementById('notice');                 return {role: n.getAttribute('role'), colour: getComputedStyle(n).color};",
                "args": []}),
        )
        .await;
    assert_eq!(style["role"], "alert", "{style}");
    assert_eq!(style["colour"], "rgb(207, 34, 46)", "{style}");
    browser.screenshot("18b-life-rename-refused").await;

    // Deleted, behind its confirmation page.
    browser.click("#delete").await;
    browser.find("#delete-form").await;
    browser.screenshot("19-life-delete-confirm").await;
    browser.click("#delete-confirmed").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        browser.url().await.ends_with("/outputs/renamed/delete"),
        "submitted unticked"
    );
    browser.click("#delete-confirm").await;
    browser.click("#delete-confirmed").await;
    let said = browser
        .wait_text("#notice", "the delete message", |t| {
            t.starts_with("Deleted")
        })
        .await;
    assert_eq!(said, "Deleted the output `renamed`");
    browser.find("tr[data-output=copy]").await;
    let rows = browser.text("#outputs").await;
    assert!(!rows.contains("renamed"), "{rows}");
    browser.screenshot("20-life-deleted").await;

    // The overview enables the copy in one click, and comes back.
    let state = browser.text("tr[data-output=copy] .state").await;
    assert_eq!(state, "disabled");
    browser.click("tr[data-output=copy] button.toggle").await;
    browser
        .wait_text("#notice", "the enable message", |t| {
            t.starts_with("Enabled")
        })
        .await;
    assert!(browser.url().await.ends_with('/'));
    browser
        .wait_text("tr[data-output=copy] .state", "running", |t| t == "running")
        .await;
    browser.screenshot("21-overview-enabled").await;
    browser.quit().await;
    server.stop().await;
}

const GOOD_SCRIPT: &str = "function init(conf) end\nfunction write(e) return true end\n";

/// A service whose script directory holds `fixme.lua`, run by the lua
/// output `uses-it`.
async fn server_with_script(dir: &std::path::Path) -> (Server, PathBuf) {
    let scripts = dir.join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    let file = scripts.join("fixme.lua");
    std::fs::write(&file, GOOD_SCRIPT).unwrap();
    let server = Server::start(dir).await;
    let created = server
        .post_json(
            "/api/v1/outputs",
            &json!({"name": "uses-it", "kind": "lua", "path": "fixme.lua"}),
        )
        .await;
    assert_eq!(created.status(), 201, "{}", created.text().await.unwrap());
    (server, file)
}

#[tokio::test]
async fn a_viewer_lists_the_scripts_but_cannot_read_or_change_one() {
    let dir = tempfile::tempdir().unwrap();
    let (server, file) = server_with_script(dir.path()).await;
    let added = server
        .post_json(
            "/api/v1/users",
            &json!({"name": "vera", "password": "viewer-password-123", "role": "viewer"}),
        )
        .await;
    assert_eq!(added.status(), 201);
    let viewer = Session::login(&server, "vera", "viewer-password-123").await;
    let (status, page) = viewer.page("/").await;
    assert_eq!(status, 200);
    assert!(page.contains(r#"<a href="/scripts">Scripts</a>"#), "{page}");
    let (status, page) = viewer.page("/scripts").await;
    assert_eq!(status, 200);
    assert!(page.contains("fixme.lua"), "{page}");
    assert!(
        page.contains(r#"<a href="/outputs/uses-it">uses-it</a>"#),
        "{page}"
    );
    assert!(!page.contains(r#"href="/scripts/fixme.lua""#), "{page}");
    assert_eq!(viewer.page("/scripts/fixme.lua").await.0, 403);
    for (path, form) in [
        ("/scripts/fixme.lua", vec![("text", "x = 1")]),
        ("/scripts/fixme.lua/delete", vec![("confirm", "yes")]),
    ] {
        assert_eq!(viewer.post_form(path, &form).await.0, 403, "{path}");
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), GOOD_SCRIPT);
    // Nor can an admin's browser be made to post without the CSRF token.
    let admin = Session::admin(&server).await;
    let forged = admin
        .client
        .post(server.url("/scripts/fixme.lua"))
        .header("cookie", &admin.cookie)
        .form(&[("text", "x = 1")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), GOOD_SCRIPT);
    server.stop().await;
}

#[tokio::test]
async fn a_script_is_replaced_by_an_upload_checked_as_an_edit_is() {
    let dir = tempfile::tempdir().unwrap();
    let (server, file) = server_with_script(dir.path()).await;
    let admin = Session::admin(&server).await;
    // Lines are numbered and the text escaped.
    std::fs::write(&file, "-- <b>&\n".to_owned() + GOOD_SCRIPT).unwrap();
    let (status, page) = admin.page("/scripts/fixme.lua").await;
    assert_eq!(status, 200);
    assert!(
        page.contains(
            r#"<tr id="L1"><th scope="row" class="num">1</th><td><code>-- &#60;b&#62;&#38;</code>"#
        ),
        "{page}"
    );

    let (status, _, page) = Multipart::new()
        .file(
            "script_file",
            "other-name.lua",
            b"function write(e)\n  return ((\nend\n",
        )
        .post(&server, "/scripts/fixme.lua/upload")
        .await;
    assert_eq!(status, 422, "{page}");
    assert!(page.contains("line 3"), "{page}");
    assert!(
        page.contains("return (("),
        "the upload is shown to be fixed: {page}"
    );
    assert!(std::fs::read_to_string(&file)
        .unwrap()
        .starts_with("-- <b>"));

    let (status, location, page) = Multipart::new()
        .file("script_file", "other-name.lua", GOOD_SCRIPT.as_bytes())
        .post(&server, "/scripts/fixme.lua/upload")
        .await;
    assert_eq!(
        (status, location.as_str()),
        (303, "/scripts/fixme.lua"),
        "{page}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), GOOD_SCRIPT);
    assert!(!dir.path().join("scripts/other-name.lua").exists());
    // Only a script that exists is edited: no page creates one.
    let (status, _, _) = Multipart::new()
        .file("script_file", "x.lua", GOOD_SCRIPT.as_bytes())
        .post(&server, "/scripts/new.lua/upload")
        .await;
    assert_eq!(status, 404);
    assert_eq!(admin.page("/scripts/new.lua").await.0, 404);
    assert_eq!(admin.page("/scripts/..%2Fx.lua").await.0, 404);
    // A page older than the file does not undo the change made since.
    let (_, page) = admin.page("/scripts/fixme.lua").await;
    let at = page.find(r#"name="base" value=""#).unwrap() + 19;
    let base = page[at..at + 64].to_owned();
    std::fs::write(&file, "-- changed meanwhile\n").unwrap();
    let stale = [("text", "x = 1"), ("base", base.as_str())];
    assert_eq!(admin.post_form("/scripts/fixme.lua", &stale).await.0, 409);
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        "-- changed meanwhile\n"
    );
    let (_, page) = admin.page("/scripts/fixme.lua").await;
    let at = page.find(r#"name="base" value=""#).unwrap() + 19;
    let fresh = [("text", "x = 1"), ("base", &page[at..at + 64])];
    assert_eq!(admin.post_form("/scripts/fixme.lua", &fresh).await.0, 303);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x = 1");
    // The output form's upload is checked too: refused on its field.
    let (status, _, page) = Multipart::new()
        .text("kind", "lua")
        .text("name", "broken")
        .text("path", "")
        .file("script_file", "broken.lua", b"x = = 1\n")
        .text("action", "save")
        .post(&server, "/outputs/new")
        .await;
    assert_eq!(status, 422, "{page}");
    assert!(page.contains(r#"id="upload-error""#), "{page}");
    assert!(page.contains("broken.lua:1:"), "{page}");
    assert!(!dir.path().join("scripts/broken.lua").exists());
    server.stop().await;
}

impl Driver {
    async fn run(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            &self.at("/execute/sync"),
            json!({"script": script, "args": []}),
        )
        .await
    }

    async fn resize(&self, width: u32, height: u32) {
        self.call(
            reqwest::Method::POST,
            &self.at("/window/rect"),
            json!({"width": width, "height": height}),
        )
        .await;
    }

    /// Nothing on the page is wider than the window.
    async fn assert_fits(&self, what: &str) {
        let widths = self
            .run("return [document.documentElement.scrollWidth, window.innerWidth];")
            .await;
        assert!(
            widths[0].as_u64() <= widths[1].as_u64(),
            "{what} is wider than the window: {widths}"
        );
    }
}

#[tokio::test]
async fn in_a_browser_a_broken_script_is_fixed_and_deleted_once_unused() {
    let dir = tempfile::tempdir().unwrap();
    let (server, file) = server_with_script(dir.path()).await;
    let browser = Driver::start().await;
    browser.resize(1366, 900).await;
    sign_in(&browser, &server, "/scripts").await;
    let table = browser.text("#scripts").await;
    assert!(table.contains("fixme.lua"), "{table}");
    assert!(table.contains("uses-it"), "{table}");
    assert!(table.contains("Modified (UTC)"), "{table}");
    browser.assert_fits("the list").await;
    browser.screenshot("30-scripts-list").await;

    browser.click("a[href='/scripts/fixme.lua']").await;
    let source = browser.text("#source").await;
    assert!(
        source.contains("function write(e) return true end"),
        "{source}"
    );
    // A typo: Lua's error and its line beside the editor, what was typed kept.
    let broken = "function init(conf) end\nfunction write(e)\n  return (\nend\n";
    browser.type_into("#script-text", broken).await;
    browser.click("#script-save").await;
    let error = browser
        .wait_text("#syntax-error", "the syntax error", |t| !t.is_empty())
        .await;
    assert!(error.contains("line 4"), "{error}");
    assert!(error.contains("fixme.lua:4:"), "{error}");
    let kept = browser
        .run("return document.querySelector('#script-text').value;")
        .await;
    assert_eq!(kept.as_str(), Some(broken));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), GOOD_SCRIPT);
    browser.assert_fits("the refused edit").await;
    browser.screenshot("31-script-syntax-error").await;

    let fixed = "function init(conf) end\nfunction write(e)\n  return true\nend\n";
    browser.type_into("#script-text", fixed).await;
    browser.click("#script-save").await;
    let notice = browser
        .wait_text("#notice", "the save", |t| t.contains("Saved"))
        .await;
    assert!(
        notice.contains("restarted on the new text: uses-it"),
        "{notice}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), fixed);
    browser.screenshot("32-script-saved").await;

    // Not deleted without the box, nor while an output runs it.
    browser.click("#script-delete-button").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(file.exists(), "deleted without the box ticked");
    browser.click("#script-delete-confirm").await;
    browser.click("#script-delete-button").await;
    let notice = browser
        .wait_text("#notice", "the refusal", |t| t.contains("Not deleted"))
        .await;
    assert!(notice.contains("used by output(s) uses-it"), "{notice}");
    assert!(file.exists());

    browser.resize(390, 844).await;
    browser.goto(&server.url("/scripts/fixme.lua")).await;
    browser.find("#source").await;
    browser.assert_fits("the script page on a phone").await;
    browser.screenshot("33-script-phone").await;
    browser.scroll_to("#script-delete").await;
    browser.screenshot("35-script-phone-upload-delete").await;
    browser.goto(&server.url("/scripts")).await;
    browser.find("#scripts").await;
    browser.assert_fits("the list on a phone").await;
    browser.screenshot("34-scripts-list-phone").await;

    let deleted = server
        .client
        .delete(server.url("/api/v1/outputs/uses-it"))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    browser.goto(&server.url("/scripts/fixme.lua")).await;
    browser.click("#script-delete-confirm").await;
    browser.click("#script-delete-button").await;
    let notice = browser
        .wait_text("#notice", "the delete", |t| t.contains("Deleted"))
        .await;
    assert_eq!(notice, "Deleted fixme.lua.");
    assert!(browser.url().await.ends_with("/scripts"));
    assert!(!file.exists());
    browser.quit().await;
    server.stop().await;
}

impl Driver {
    /// Runs `script` (a function body) in the page and gives its answer.
    async fn eval(&self, script: &str) -> Value {
        self.call(
            reqwest::Method::POST,
            &self.at("/execute/sync"),
            json!({"script": script, "args": []}),
        )
        .await
    }

    /// The Test's result has the focus and is in the window: whole, or its
    /// top in the upper half. Where the person who pressed Test looks.
    async fn assert_result_in_view(&self) {
        let at = self
            .eval(
                "var e = document.getElementById('test-result'); var r = e.getBoundingClientRect();\
                 return {focused: document.activeElement === e, top: r.top, bottom: r.bottom, height: window.innerHeight};",
            )
            .await;
        assert_eq!(at["focused"], true, "{at}");
        let top = at["top"].as_f64().unwrap();
        let bottom = at["bottom"].as_f64().unwrap();
        let height = at["height"].as_f64().unwrap();
        // Whole, or (taller than the window) starting in its upper half.
        assert!(
            top >= 0.0 && (bottom <= height || top < height / 2.0),
            "the result is out of sight: {at}"
        );
    }

    async fn value_of(&self, css: &str) -> Value {
        self.eval(&format!(
            "return document.querySelector({}).value;",
            json!(css)
        ))
        .await
    }
}

/// In a browser: a native output's Test reaches a live loopback
/// destination and a dead port, each result focused and in view; the
/// password typed once serves every later Test and is never shown; the
/// kind changes without losing the name; a Lua Test reaches write() on a
/// journal event; a refused form keeps its three parameter rows.
#[tokio::test]
async fn in_a_browser_a_test_answers_in_view_and_nothing_typed_is_lost() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    std::fs::write(
        dir.path().join("scripts/probe.lua"),
        "function init(conf) broker_log:info(0, 'init ' .. conf.greeting) end\n\
         function write(e) broker_log:info(0, 'write host ' .. tostring(e.host_id)) return true end\n",
    )
    .unwrap();
    let destination = crate::native::Destination::start(Vec::new()).await;
    let (status, _) = server
        .post_events(&[
            host(7, "srv-07"),
            host_status(7, 1, "DOWN seen by the test"),
        ])
        .await;
    assert_eq!(status, 200);
    let browser = Driver::start().await;
    sign_in(&browser, &server, "/outputs/new?kind=http").await;
    browser.find("#output-form").await;
    let live = format!("{}/in", destination.url);
    browser.type_into("#name", "browser-http").await;
    browser.type_into("#p-http_url", &live).await;
    browser.type_into("#p-http_user", "u").await;
    browser.type_into("#p-http_password", "hunter2").await;
    browser
        .click("input[name=filter][value='neb:host_status']")
        .await;
    browser.click("#test").await;
    let result = browser
        .wait_text("#test-result", "the test result", |t| t.contains("Test "))
        .await;
    assert!(result.contains("Test passed"), "{result}");
    assert!(result.contains("1 record was written"), "{result}");
    browser.screenshot("40-form-test-passed").await;
    browser.assert_result_in_view().await;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("u:hunter2")
    );
    let sent = destination.requests();
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].text().contains("DOWN seen by the test"),
        "{}",
        sent[0].text()
    );
    assert_eq!(sent[0].header("authorization"), Some(basic.as_str()));
    assert_eq!(browser.value_of("#p-http_password").await, "");
    assert_eq!(browser.value_of("#name").await, "browser-http");

    // A dead port: the failure is what the person sees.
    let dead = format!("http://127.0.0.1:{}/in", free_port());
    browser.type_into("#p-http_url", &dead).await;
    browser.click("#test").await;
    let result = browser
        .wait_text("#test-result", "the failure", |t| t.contains("Test failed"))
        .await;
    assert!(result.contains("cannot connect"), "{result}");
    browser.assert_result_in_view().await;
    browser.screenshot("41-form-test-dead-port").await;

    // Back to the live destination without typing the password again.
    browser.type_into("#p-http_url", &live).await;
    browser.click("#test").await;
    browser
        .wait_text("#test-result", "the second pass", |t| {
            t.contains("Test passed")
        })
        .await;
    let sent = destination.requests();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[1].header("authorization"), Some(basic.as_str()));

    // Another kind, chosen in the form: the name stays.
    browser.click("button[name=switch_kind][value=lua]").await;
    browser.find("#path").await;
    assert_eq!(browser.value_of("#name").await, "browser-http");
    browser.click("#path option[value='probe.lua']").await;
    browser
        .type_into("#row-1 input[name=param_name]", "greeting")
        .await;
    browser
        .type_into("#row-1 input[name=param_value]", "hello")
        .await;
    browser.click("#test").await;
    let result = browser
        .wait_text("#test-result", "the script's result", |t| {
            t.contains("Test ")
        })
        .await;
    assert!(result.contains("Test passed"), "{result}");
    assert!(result.contains("log INFO: init hello"), "{result}");
    assert!(result.contains("log INFO: write host 7"), "{result}");
    assert!(result.contains("1 handed to write()"), "{result}");
    assert!(result.contains("sandbox"), "{result}");
    browser.assert_result_in_view().await;
    browser.screenshot("42-form-lua-test").await;

    // Three rows, one a bad number and one without a name: refused, the
    // three rows come back as typed with the errors beside rows 2 and 3.
    browser
        .type_into("#row-2 input[name=param_name]", "count")
        .await;
    browser.click("#row-2 select option[value=number]").await;
    browser
        .type_into("#row-2 input[name=param_value]", "lots")
        .await;
    browser
        .type_into("#row-3 input[name=param_value]", "orphan")
        .await;
    browser.click("#save").await;
    browser.find("#error-summary").await;
    let rows = browser
        .eval(
            "return Array.prototype.map.call(document.querySelectorAll('#params tbody tr'), function (r) {\
               return [r.querySelector('[name=param_name]').value, r.querySelector('[name=param_type]').value, r.querySelector('[name=param_value]').value];\
             }).filter(function (r) { return r[0] !== '' || r[2] !== ''; });",
        )
        .await;
    assert_eq!(
        rows,
        json!([
            ["greeting", "string", "hello"],
            ["count", "number", "lots"],
            ["", "string", "orphan"]
        ])
    );
    assert!(browser.text("#row-2-error").await.contains("as a number"));
    assert!(browser.text("#row-3-error").await.contains("needs a name"));
    assert_eq!(browser.value_of("#name").await, "browser-http");
    browser.screenshot("43-form-lua-rows-kept").await;
    assert_eq!(
        server.get("/api/v1/outputs/browser-http").await.status(),
        404
    );
    browser.quit().await;
    server.stop().await;
}
