//! Password parameters: sealed in the database under `<data_dir>/secret.key`,
//! write-only in the API and the form, and absent from every answer, page,
//! status, error message and log line, while scripts still get them in
//! clear.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};

use crate::common::*;
use crate::web::Multipart;

const SECRET: &str = "Zq7-s3cr3t-brokerstream";
const NEW_SECRET: &str = "Wx4-n3w-s3cr3t-brokerstream";

/// Records the token it is given at each `init`, and logs it (the log must
/// show it redacted).
const KEEPER: &str = r#"
function init(conf)
  local f = assert(io.open(conf.out, "a"))
  f:write("init " .. conf.token .. "\n")
  f:close()
  broker_log:info(0, "init with token " .. conf.token)
end
function write(e) return true end
"#;

fn keeper_output(out: &Path) -> Value {
    json!({
        "name": "keeper",
        "kind": "lua",
        "path": "keeper.lua",
        "parameters": [
            {"name": "out", "type": "string", "value": out.to_str().unwrap()},
            {"name": "token", "type": "password", "value": SECRET},
        ],
    })
}

/// A native output whose Basic password is [`SECRET`], sending to a closed
/// loopback port so that it fails and says so.
fn http_output(port: u16) -> Value {
    json!({
        "name": "web",
        "kind": "http",
        "parameters": [
            {"name": "http_url", "type": "string", "value": format!("http://127.0.0.1:{port}/in")},
            {"name": "http_user", "type": "string", "value": "me"},
            {"name": "http_password", "type": "password", "value": SECRET},
            {"name": "max_buffer_size", "type": "number", "value": "1"},
        ],
    })
}

fn basic_credentials(password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("me:{password}"))
}

fn write_script(data: &Path, name: &str, text: &str) {
    std::fs::create_dir_all(data.join("scripts")).unwrap();
    std::fs::write(data.join("scripts").join(name), text).unwrap();
}

/// Every byte SQLite keeps: the database, its write-ahead log and index.
fn database_bytes(data: &Path) -> Vec<u8> {
    let mut bytes = Vec::new();
    for suffix in ["", "-wal", "-shm", "-journal"] {
        if let Ok(b) = std::fs::read(data.join(format!("brokerstream.db{suffix}"))) {
            bytes.extend(b);
        }
    }
    assert!(!bytes.is_empty(), "no database in {}", data.display());
    bytes
}

fn holds(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Asserts that `text` carries no secret, naming where it came from.
fn assert_clean(text: &str, what: &str) {
    for secret in [SECRET, NEW_SECRET] {
        assert!(!text.contains(secret), "{what} shows a password:\n{text}");
        assert!(
            !text.contains(&basic_credentials(secret)),
            "{what} shows a password in a Basic header:\n{text}"
        );
    }
}

async fn text_of(response: reqwest::Response, what: &str) -> (u16, String) {
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    assert_clean(&text, what);
    (status, text)
}

/// Waits for the `count`th `init` of the keeper and returns every line.
async fn inits(out: &Path, count: usize) -> Vec<String> {
    let lines = wait_lines(out, count).await;
    assert_eq!(lines.len(), count, "{lines:?}");
    lines
}

#[tokio::test]
async fn a_password_is_write_only_kept_by_every_update_and_never_shown() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_script(&data, "keeper.lua", KEEPER);
    let server = Server::start(&data).await;
    let out = dir.path().join("inits.log");

    let created = server
        .post_json("/api/v1/outputs", &keeper_output(&out))
        .await;
    let (status, _) = text_of(created, "the create answer").await;
    assert_eq!(status, 201);
    // The script gets the clear value.
    assert_eq!(inits(&out, 1).await, vec![format!("init {SECRET}")]);
    let closed = free_port();
    let created = server
        .post_json("/api/v1/outputs", &http_output(closed))
        .await;
    assert_eq!(text_of(created, "the create answer").await.0, 201);
    let (code, _) = server.post_events(&[host_status(1, 1, "DOWN")]).await;
    assert_eq!(code, 200);
    server
        .wait_status("web", "a failed send", |s| s["last_error"].is_string())
        .await;

    // Every route that shows an output, in the API and in the pages.
    let mut routes = vec![
        "/api/v1/outputs".to_owned(),
        "/api/v1/kinds".to_owned(),
        "/api/v1/journal".to_owned(),
        "/readyz".to_owned(),
        "/metrics".to_owned(),
        "/".to_owned(),
        "/fragments/overview".to_owned(),
    ];
    for name in ["keeper", "web"] {
        for route in [
            "/api/v1/outputs/{}",
            "/api/v1/outputs/{}/parameters",
            "/api/v1/outputs/{}/status",
            "/outputs/{}",
            "/outputs/{}/edit",
            "/fragments/outputs/{}",
        ] {
            routes.push(route.replace("{}", name));
        }
    }
    for route in &routes {
        let (status, _) = text_of(server.get(route).await, route).await;
        assert_eq!(status, 200, "GET {route}");
    }
    let stored = server.get_json("/api/v1/outputs/keeper").await;
    assert_eq!(
        stored["parameters"][1],
        json!({"name": "token", "type": "password"})
    );
    // The script logged its token: the page's log shows it redacted.
    let page = server.get("/outputs/keeper").await.text().await.unwrap();
    assert!(page.contains("init with token [redacted]"), "{page}");

    // Every way of updating without a value keeps the stored one: each
    // update restarts the script, which records what it got.
    let without_value = json!([
        {"name": "out", "type": "string", "value": out.to_str().unwrap()},
        {"name": "token", "type": "password"},
    ]);
    let replaced = server
        .send_json(
            Method::PUT,
            "/api/v1/outputs/keeper",
            &json!({"kind": "lua", "path": "keeper.lua", "parameters": without_value}),
        )
        .await;
    assert_eq!(text_of(replaced, "PUT").await.0, 200);
    inits(&out, 2).await;
    let patched = server
        .send_json(
            Method::PATCH,
            "/api/v1/outputs/keeper",
            &json!({"parameters": without_value}),
        )
        .await;
    assert_eq!(text_of(patched, "PATCH").await.0, 200);
    inits(&out, 3).await;
    let patched = server
        .send_json(
            Method::PATCH,
            "/api/v1/outputs/keeper",
            &json!({"filters": {"category": ["neb"]}}),
        )
        .await;
    assert_eq!(text_of(patched, "PATCH").await.0, 200);
    inits(&out, 4).await;
    let put = server
        .send_json(
            Method::PUT,
            "/api/v1/outputs/keeper/parameters/token",
            &json!({"type": "password"}),
        )
        .await;
    let (status, body) = text_of(put, "parameter PUT").await;
    assert_eq!(status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"name": "token", "type": "password"})
    );
    inits(&out, 5).await;
    // The edit form as a browser sends it: the password field left empty.
    let edit_form = |out: &Path, action: &str| {
        Multipart::new()
            .text("kind", "lua")
            .text("enabled", "on")
            .text("path", "keeper.lua")
            .text("param_name", "out")
            .text("param_type", "string")
            .text("param_value", out.to_str().unwrap())
            .text("param_name", "token")
            .text("param_type", "password")
            .text("param_value", "")
            .text("action", action)
    };
    let (status, _, page) = edit_form(&out, "save")
        .post(&server, "/outputs/keeper/edit")
        .await;
    assert_eq!(status, 303, "{page}");
    let lines = inits(&out, 6).await;
    assert!(
        lines.iter().all(|l| *l == format!("init {SECRET}")),
        "{lines:?}"
    );

    // The Test button runs the script with the stored value, and shows its
    // log without it.
    let test_out = dir.path().join("test-inits.log");
    let (status, _, page) = edit_form(&test_out, "test")
        .post(&server, "/outputs/keeper/edit")
        .await;
    assert_eq!(status, 200, "{page}");
    assert_clean(&page, "the Test output");
    assert!(page.contains("init with token [redacted]"), "{page}");
    assert_eq!(inits(&test_out, 1).await, vec![format!("init {SECRET}")]);
    // A form refused for another field does not send a typed password back.
    let (status, _, page) = Multipart::new()
        .text("kind", "lua")
        .text("name", "bad name!")
        .text("path", "keeper.lua")
        .text("param_name", "token")
        .text("param_type", "password")
        .text("param_value", SECRET)
        .text("action", "save")
        .post(&server, "/outputs/new")
        .await;
    assert_eq!(status, 422);
    assert_clean(&page, "a refused form");

    // Validation errors never quote a value, whatever its declared type.
    let refused = [
        (
            Method::POST,
            "/api/v1/outputs",
            json!({"name": "n", "kind": "lua", "path": "keeper.lua",
                   "parameters": [{"name": "token", "type": "number", "value": SECRET}]}),
        ),
        (
            Method::POST,
            "/api/v1/outputs",
            json!({"name": "i", "kind": "influxdb", "parameters": [
                {"name": "http_server_address", "type": "string", "value": "127.0.0.1"},
                {"name": "influx_database", "type": "string", "value": "db"},
                {"name": "influx_password", "type": "number", "value": SECRET}]}),
        ),
        (
            Method::PUT,
            "/api/v1/outputs/keeper/parameters/token",
            json!({"type": "number", "value": SECRET}),
        ),
        (
            Method::PATCH,
            "/api/v1/outputs/web",
            json!({"parameters": [{"name": "timeout", "type": "number", "value": SECRET}]}),
        ),
    ];
    for (method, path, body) in refused {
        let response = server.send_json(method.clone(), path, &body).await;
        let (status, text) = text_of(response, &format!("{method} {path}")).await;
        assert_eq!(status, 422, "{text}");
    }

    // A value given replaces the stored one.
    let put = server
        .send_json(
            Method::PUT,
            "/api/v1/outputs/keeper/parameters/token",
            &json!({"type": "password", "value": NEW_SECRET}),
        )
        .await;
    assert_eq!(text_of(put, "parameter PUT").await.0, 200);
    let lines = inits(&out, 7).await;
    assert_eq!(lines[6], format!("init {NEW_SECRET}"));
    server.stop().await;

    // Neither value is anywhere in the database's files.
    let bytes = database_bytes(&data);
    assert!(!holds(&bytes, SECRET) && !holds(&bytes, NEW_SECRET));
    assert!(holds(&bytes, "enc:v1:"));
    let key = data.join("secret.key");
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );

    // After a restart, the script gets the value again.
    let server = Server::start(&data).await;
    let lines = inits(&out, 8).await;
    assert_eq!(lines[7], format!("init {NEW_SECRET}"));
    let (status, _) = text_of(server.get("/api/v1/outputs").await, "GET outputs").await;
    assert_eq!(status, 200);
    server.stop().await;
}

/// A script that logs its token and fails with it in a URL, after a cURL
/// call (verbose: logged at debug level) with it in the query.
fn leaky_script(port: u16) -> String {
    format!(
        r#"
local token
function init(conf)
  token = conf.token
  broker_log:info(0, "init with token " .. token)
end
function write(e)
  local curl = require "cURL"
  local c = curl.easy{{ url = "http://127.0.0.1:{port}/write?u=me&p=" .. token, verbose = true }}
  local ok, err = pcall(function() c:perform() end)
  error("cannot send to http://me:" .. token .. "@127.0.0.1:{port}/: " .. tostring(err))
end
"#
    )
}

#[tokio::test]
async fn the_service_log_never_holds_a_password() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let closed = free_port();
    write_script(&data, "leaky.lua", &leaky_script(closed));
    let log_path = dir.path().join("stderr.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let p = Process::spawn_logging(
        &["serve", "--http-addr", &addr, "--bbdo-addr", "none"],
        &[
            ("BROKERSTREAM_DATA_DIR", data.to_str().unwrap()),
            ("BROKERSTREAM_LOG", "debug"),
            ("NO_COLOR", "1"),
        ],
        port,
        log,
    );
    p.wait_ready().await;
    create_output(&p, &http_output(closed)).await;
    create_output(
        &p,
        &json!({
            "name": "leaky",
            "kind": "lua",
            "path": "leaky.lua",
            "parameters": [{"name": "token", "type": "password", "value": SECRET}],
        }),
    )
    .await;
    let events = format!("{}\n", host_status(1, 1, "DOWN"));
    let posted = p.post_events(events).await.unwrap();
    assert_eq!(posted.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(20);
    for name in ["web", "leaky"] {
        loop {
            let status = p.get_json(&format!("/api/v1/outputs/{name}/status")).await;
            if status["last_error"].is_string() {
                assert_clean(&status.to_string(), "a status");
                break;
            }
            assert!(Instant::now() < deadline, "{name} never failed: {status}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let status = p.get_json("/api/v1/outputs/leaky/status").await;
    assert!(
        status["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("http://me:[redacted]@127.0.0.1")),
        "{status}"
    );
    assert!(p.terminate().await.success());
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert_clean(&log, "the service log");
    // What the log does hold, so that this test fails if nothing was logged.
    assert!(log.contains("init with token [redacted]"), "{log}");
    assert!(log.contains("http://me:[redacted]@"), "{log}");
    assert!(log.contains("cURL perform"), "{log}");
    assert!(log.contains("output=web"), "{log}");
}

/// Runs `serve` on `data` and returns what it printed, failing the test if
/// it did not stop by itself.
fn refused_start(data: &Path) -> String {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let mut child = Command::new(env!("CARGO_BIN_EXE_brokerstream"))
        .args(["serve", "--http-addr", &addr, "--bbdo-addr", "none"])
        .env("BROKERSTREAM_DATA_DIR", data)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(!status.success());
            let mut text = String::new();
            std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut text).unwrap();
            return text;
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
async fn a_key_open_to_others_missing_or_wrong_stops_the_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = Server::start(&data).await;
    let created = server.post_json("/api/v1/outputs", &http_output(1)).await;
    assert_eq!(created.status(), 201);
    server.stop().await;
    let key = data.join("secret.key");
    let key_name = key.to_str().unwrap();
    let original = std::fs::read(&key).unwrap();

    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let said = refused_start(&data);
    assert!(said.contains(key_name), "{said}");
    assert!(said.contains("chmod 600"), "{said}");

    std::fs::remove_file(&key).unwrap();
    let said = refused_start(&data);
    assert!(
        said.contains(key_name) && said.contains("missing"),
        "{said}"
    );
    assert!(!key.exists(), "no new key may replace the lost one");

    let other = "ab".repeat(32);
    std::fs::write(&key, format!("{other}\n")).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    let said = refused_start(&data);
    assert!(said.contains(key_name), "{said}");
    assert!(
        said.contains("cannot decrypt password parameter `http_password` of output `web`"),
        "{said}"
    );
    assert_clean(&said, "the refusal");

    // With its own key back, it starts and still has the password.
    std::fs::write(&key, original).unwrap();
    let server = Server::start(&data).await;
    let (status, _) = text_of(server.get("/api/v1/outputs/web").await, "GET").await;
    assert_eq!(status, 200);
    server.stop().await;
}

#[tokio::test]
async fn clear_values_of_an_older_database_are_sealed_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_script(&data, "keeper.lua", KEEPER);
    let out = dir.path().join("inits.log");
    // A database as the version before encryption left it: the same
    // schema, the password in clear, no key file.
    let path = data.join("brokerstream.db");
    let url = format!("sqlite:{}?mode=rwc", path.display());
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    sqlx::migrate!("./migrations").run(&pool).await.unwrap();
    let now = "2026-01-01T00:00:00Z";
    let id = sqlx::query(
        "INSERT INTO outputs (name, kind, path, enabled, filters, created_at, updated_at)
         VALUES ('keeper', 'lua', 'keeper.lua', 1, '[]', ?, ?)",
    )
    .bind(now)
    .bind(now)
    .execute(&pool)
    .await
    .unwrap()
    .last_insert_rowid();
    for (position, name, ty, value) in [
        (0, "out", "string", out.to_str().unwrap()),
        (1, "token", "password", SECRET),
    ] {
        sqlx::query(
            "INSERT INTO output_parameters (output_id, position, name, type, value)
             VALUES (?, ?, ?, ?, ?)",
        )
        .bind(id)
        .bind(position)
        .bind(name)
        .bind(ty)
        .bind(value)
        .execute(&pool)
        .await
        .unwrap();
    }
    pool.close().await;
    assert!(holds(&database_bytes(&data), SECRET));
    assert!(!data.join("secret.key").exists());

    let server = Server::start(&data).await;
    assert_eq!(inits(&out, 1).await, vec![format!("init {SECRET}")]);
    let (status, _) = text_of(server.get("/api/v1/outputs/keeper").await, "GET").await;
    assert_eq!(status, 200);
    server.stop().await;

    assert!(!holds(&database_bytes(&data), SECRET));
    let pool = sqlx::SqlitePool::connect(&url).await.unwrap();
    let stored: String =
        sqlx::query_scalar("SELECT value FROM output_parameters WHERE name = 'token'")
            .fetch_one(&pool)
            .await
            .unwrap();
    pool.close().await;
    assert!(stored.starts_with("enc:v1:"), "{stored}");
    assert_eq!(
        std::fs::metadata(data.join("secret.key"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    // And it starts again from the sealed form.
    let server = Server::start(&data).await;
    assert_eq!(inits(&out, 2).await[1], format!("init {SECRET}"));
    server.stop().await;
}

/// Reads what a script sees of the service's environment, and what a
/// program it runs inherits.
const ENVIRONMENT: &str = r#"
function init(conf)
  local f = assert(io.open(conf.out, "w"))
  f:write("getenv=" .. tostring(os.getenv("BROKERSTREAM_ADMIN_PASSWORD")) .. "\n")
  f:close()
  os.execute("env >> " .. conf.out)
end
function write(e) return true end
"#;

#[tokio::test]
async fn the_data_directory_is_private_and_the_admin_password_leaves_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_script(&data, "environment.lua", ENVIRONMENT);
    // As an older version, or a hand-made directory, left it.
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let p = Process::spawn(
        &["serve", "--http-addr", &addr, "--bbdo-addr", "none"],
        &[("BROKERSTREAM_DATA_DIR", data.to_str().unwrap())],
        port,
    );
    p.wait_ready().await;
    let out = dir.path().join("environment.txt");
    create_output(
        &p,
        &json!({
            "name": "environment",
            "kind": "lua",
            "path": "environment.lua",
            "parameters": [{"name": "out", "type": "string", "value": out.to_str().unwrap()}],
        }),
    )
    .await;
    let seen = wait_lines(&out, 2).await;
    assert_eq!(seen[0], "getenv=nil");
    assert!(
        !seen
            .iter()
            .any(|l| l.contains("BROKERSTREAM_ADMIN_PASSWORD") || l.contains(ADMIN_PASSWORD)),
        "{seen:#?}"
    );
    let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&data), 0o700, "the data directory");
    for file in ["brokerstream.db", "secret.key"] {
        assert_eq!(mode(&data.join(file)), 0o600, "{file}");
    }
    // What the service creates later is private too.
    assert_eq!(mode(&out), 0o600, "a file a script created");
}
