use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use brokerstream::app::{self, App};
use brokerstream::config::{BbdoConfig, Config, Redacted};
use reqwest::{Client, Response};
use serde_json::{json, Value};

/// The password of the `admin` user every test service starts with.
pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";

pub fn basic_auth(user: &str, password: &str) -> reqwest::header::HeaderValue {
    use base64::Engine;
    let encoded = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    reqwest::header::HeaderValue::from_str(&format!("Basic {encoded}")).unwrap()
}

/// A client that sends `credentials` (an Authorization header value)
/// with every request.
pub fn client_as(credentials: reqwest::header::HeaderValue) -> reqwest::ClientBuilder {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, credentials);
    Client::builder().default_headers(headers)
}

/// A client builder that authenticates as the test admin (HTTP Basic).
pub fn admin_client_builder() -> reqwest::ClientBuilder {
    client_as(basic_auth("admin", ADMIN_PASSWORD))
}

pub fn admin_client() -> Client {
    admin_client_builder().build().unwrap()
}

/// A brokerstream running in this process on a loopback port.
pub struct Server {
    pub app: Option<App>,
    pub base: String,
    pub client: Client,
}

impl Server {
    pub async fn start(data_dir: &Path) -> Server {
        let config = Config {
            data_dir: data_dir.to_owned(),
            http_addr: "127.0.0.1:0".parse().unwrap(),
            // Tests run in parallel: no listener on the shared default port.
            bbdo: BbdoConfig::disabled(),
            ..Config::default()
        };
        Server::start_with(config).await
    }

    pub async fn start_with(mut config: Config) -> Server {
        if config.admin_password.is_none() {
            config.admin_password = Some(Redacted(ADMIN_PASSWORD.into()));
        }
        let app = app::start(config).await.expect("service starts");
        Server {
            base: format!("http://{}", app.http_addr),
            app: Some(app),
            client: admin_client(),
        }
    }

    pub async fn stop(mut self) {
        if let Some(app) = self.app.take() {
            app.shutdown().await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().await.unwrap()
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    pub async fn send_json(&self, method: reqwest::Method, path: &str, body: &Value) -> Response {
        self.client
            .request(method, self.url(path))
            .json(body)
            .send()
            .await
            .unwrap()
    }

    pub async fn post_json(&self, path: &str, body: &Value) -> Response {
        self.send_json(reqwest::Method::POST, path, body).await
    }

    /// Posts NDJSON and returns the status and the JSON answer.
    pub async fn post_events(&self, lines: &[Value]) -> (u16, Value) {
        let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let response = self
            .client
            .post(self.url("/api/v1/events"))
            .header("content-type", "application/x-ndjson")
            .body(body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap())
    }

    pub async fn create_file_output(&self, name: &str, path: &Path, extra: Value) -> Value {
        let mut body = json!({
            "name": name,
            "kind": "file",
            "parameters": [
                {"name": "path", "type": "string", "value": path.to_str().unwrap()},
                {"name": "max_buffer_size", "type": "number", "value": "1"},
            ],
        });
        if let (Some(obj), Value::Object(extra)) = (body.as_object_mut(), extra) {
            for (k, v) in extra {
                obj.insert(k, v);
            }
        }
        let response = self.post_json("/api/v1/outputs", &body).await;
        let status = response.status();
        let answer: Value = response.json().await.unwrap();
        assert_eq!(status, 201, "create {name}: {answer}");
        answer
    }

    pub async fn status(&self, name: &str) -> Value {
        self.get_json(&format!("/api/v1/outputs/{name}/status"))
            .await
    }

    /// Waits until the output's status satisfies `ready`, or fails with the
    /// last status seen.
    pub async fn wait_status(
        &self,
        name: &str,
        what: &str,
        ready: impl Fn(&Value) -> bool,
    ) -> Value {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let status = self.status(name).await;
            if ready(&status) {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last status: {status:#}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// Waits until `path` holds at least `lines` lines, and returns them.
pub async fn wait_lines(path: &Path, lines: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let found: Vec<String> = text.lines().map(str::to_owned).collect();
        if found.len() >= lines {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {lines} lines in {}; found {}: {found:?}",
            path.display(),
            found.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub fn host(host_id: i64, name: &str) -> Value {
    json!({"_type": 65548, "host_id": host_id, "name": name})
}

pub fn service(host_id: i64, service_id: i64, description: &str) -> Value {
    json!({"_type": 65559, "host_id": host_id, "service_id": service_id, "description": description})
}

pub fn host_status(host_id: i64, state: i64, output: &str) -> Value {
    json!({"_type": 65550, "host_id": host_id, "state": state, "output": output, "last_check": 1732000000})
}

pub fn service_status(host_id: i64, service_id: i64, state: i64) -> Value {
    json!({"category": 1, "element": 24, "host_id": host_id, "service_id": service_id, "state": state, "output": "OK"})
}

pub fn metric(host_id: i64, service_id: i64, name: &str, value: f64) -> Value {
    json!({"_type": 196609, "host_id": host_id, "service_id": service_id, "metric_id": 7, "name": name, "value": value, "ctime": 1732000000})
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Process {
    pub child: Child,
    pub base: String,
    pub client: reqwest::Client,
}

/// A test that fails must not leave its service running (it would hold the
/// test runner's output open).
impl Drop for Process {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Process {
    pub fn spawn(args: &[&str], env: &[(&str, &str)], port: u16) -> Process {
        Process::spawn_to(args, env, port, Stdio::null(), Stdio::inherit())
    }

    /// [`Process::spawn`] with everything the service prints (its log goes
    /// to standard output) written to `log`, for a test that reads it.
    pub fn spawn_logging(
        args: &[&str],
        env: &[(&str, &str)],
        port: u16,
        log: std::fs::File,
    ) -> Process {
        let stderr = log.try_clone().expect("log file");
        Process::spawn_to(args, env, port, log.into(), stderr.into())
    }

    fn spawn_to(
        args: &[&str],
        env: &[(&str, &str)],
        port: u16,
        stdout: Stdio,
        stderr: Stdio,
    ) -> Process {
        let mut command = Command::new(env!("CARGO_BIN_EXE_brokerstream"));
        // Tests run in parallel: no one may take the default BBDO port. A
        // test that wants a listener says so with --bbdo-addr.
        command.env("BROKERSTREAM_BBDO_ADDR", "none");
        command.env("BROKERSTREAM_ADMIN_PASSWORD", ADMIN_PASSWORD);
        command.args(args).stdout(stdout).stderr(stderr);
        for (k, v) in env {
            command.env(k, v);
        }
        Process {
            child: command.spawn().expect("binary starts"),
            base: format!("http://127.0.0.1:{port}"),
            client: admin_client(),
        }
    }

    /// `brokerstream serve` with `toml` as its configuration file, its data
    /// in `dir/data`, on a free loopback port; returned once it answers.
    pub async fn serve_with_config(dir: &Path, toml: &str, env: &[(&str, &str)]) -> Process {
        let config = dir.join("brokerstream.toml");
        std::fs::write(&config, toml).expect("write the configuration");
        let port = free_port();
        let addr = format!("127.0.0.1:{port}");
        let data = dir.join("data");
        let process = Process::spawn(
            &[
                "serve",
                "--config",
                config.to_str().expect("a UTF-8 path"),
                "--data-dir",
                data.to_str().expect("a UTF-8 path"),
                "--http-addr",
                &addr,
            ],
            env,
            port,
        );
        process.wait_ready().await;
        process
    }

    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(r) = self
                .client
                .get(format!("{}/healthz", self.base))
                .send()
                .await
            {
                if r.status() == 200 {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("brokerstream did not answer on {}", self.base);
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The status code of a GET to a full URL.
    pub async fn get(&self, url: &str) -> u16 {
        self.client
            .get(url)
            .send()
            .await
            .map(|r| r.status().as_u16())
            .unwrap_or(0)
    }

    pub async fn get_json(&self, path: &str) -> Value {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "GET {path}");
        response.json().await.unwrap()
    }

    /// Posts NDJSON lines to `/api/v1/events`.
    pub fn post_events(
        &self,
        body: impl Into<reqwest::Body>,
    ) -> impl std::future::Future<Output = reqwest::Result<Response>> {
        self.client
            .post(format!("{}/api/v1/events", self.base))
            .body(body)
            .send()
    }

    pub async fn terminate(mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(killed.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "no exit after SIGTERM");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

pub async fn create_output(p: &Process, body: &Value) {
    let response = p
        .client
        .post(format!("{}/api/v1/outputs", p.base))
        .json(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 201);
}

pub fn file_output(name: &str, path: &Path, filters: &[&str]) -> Value {
    json!({
        "name": name,
        "kind": "file",
        "filters": {"category": filters},
        "parameters": [
            {"name": "path", "type": "string", "value": path.to_str().unwrap()},
            {"name": "max_buffer_size", "type": "number", "value": "100000"},
            {"name": "max_buffer_age", "type": "number", "value": "3600"},
        ],
    })
}

/// Reads a server-sent event stream until `done` says what was read is enough.
pub async fn read_sse(response: &mut reqwest::Response, done: impl Fn(&str) -> bool) -> String {
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done(&text) {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "timed out; read so far:\n{text}");
        match tokio::time::timeout(left, response.chunk()).await {
            Ok(Ok(Some(chunk))) => text.push_str(&String::from_utf8_lossy(&chunk)),
            Ok(Ok(None)) => panic!("the stream ended; read:\n{text}"),
            Ok(Err(e)) => panic!("{e}"),
            Err(_) => panic!("timed out; read so far:\n{text}"),
        }
    }
    text
}

/// A browser's session, signed in through the login form: the pages'
/// messages (flash notices) are kept for a session, never for Basic
/// credentials or tokens.
pub struct Session {
    pub client: Client,
    pub cookie: String,
    pub csrf: String,
    base: String,
}

fn set_cookie_pair(response: &Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| v.split(';').next().unwrap_or_default().to_owned())
}

/// The CSRF token of a page's form.
pub fn csrf_field(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a csrf field") + 19;
    page[at..at + page[at..].find('"').unwrap()].to_owned()
}

impl Session {
    pub async fn login(server: &Server, user: &str, password: &str) -> Session {
        let client = Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        let form = client.get(server.url("/login")).send().await.unwrap();
        let login_cookie = set_cookie_pair(&form, "brokerstream_login").unwrap();
        let token = csrf_field(&form.text().await.unwrap());
        let response = client
            .post(server.url("/login"))
            .header("cookie", &login_cookie)
            .form(&[
                ("user", user),
                ("password", password),
                ("csrf", &token),
                ("next", "/"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303, "login as {user}");
        let cookie = set_cookie_pair(&response, "brokerstream_session").unwrap();
        let mut session = Session {
            client,
            cookie,
            csrf: String::new(),
            base: server.base.clone(),
        };
        let (_, page) = session.page("/account").await;
        session.csrf = csrf_field(&page);
        session
    }

    pub async fn admin(server: &Server) -> Session {
        Session::login(server, "admin", ADMIN_PASSWORD).await
    }

    /// A page: its status and text.
    pub async fn page(&self, path: &str) -> (u16, String) {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// Posts a page's form with the session's CSRF token: the status and
    /// where it sends the browser.
    pub async fn post_form(&self, path: &str, form: &[(&str, &str)]) -> (u16, String) {
        let mut form: Vec<(&str, &str)> = form.to_vec();
        form.push(("csrf", &self.csrf));
        let response = self
            .client
            .post(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .form(&form)
            .send()
            .await
            .unwrap();
        let location = response
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (response.status().as_u16(), location)
    }

    /// Posts a form and follows its redirect: the message the page shows,
    /// as `(class, role, text)`.
    pub async fn act(&self, path: &str, form: &[(&str, &str)]) -> Notice {
        let (status, location) = self.post_form(path, form).await;
        assert_eq!(status, 303, "POST {path} {form:?}");
        let (status, page) = self.page(&location).await;
        assert_eq!(status, 200, "GET {location}");
        notice(&page).unwrap_or_else(|| panic!("no notice after POST {path} {form:?}: {page}"))
    }
}

/// A page's message: its class (`notice-success`, `notice-info`,
/// `notice-error`), role and text (unescaped).
#[derive(Debug, PartialEq)]
pub struct Notice {
    pub class: String,
    pub role: String,
    pub text: String,
}

pub fn notice(page: &str) -> Option<Notice> {
    let start = page.find("<p class=\"notice ")?;
    let tag = &page[start..];
    let attribute = |name: &str| {
        let at = tag.find(&format!("{name}=\""))? + name.len() + 2;
        Some(tag[at..at + tag[at..].find('"')?].to_owned())
    };
    let class = attribute("class")?.trim_start_matches("notice ").to_owned();
    let role = attribute("role")?;
    let open = tag.find('>')? + 1;
    let text = &tag[open..open + tag[open..].find("</p>")?];
    let text = text
        .replace("&#96;", "`")
        .replace("&#39;", "'")
        .replace("&#34;", "\"")
        .replace("&quot;", "\"")
        .replace("&#60;", "<")
        .replace("&#62;", ">")
        .replace("&amp;", "&");
    Some(Notice { class, role, text })
}
