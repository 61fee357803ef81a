//! Authentication, roles, CSRF, sessions, tokens and the audit log, over
//! real HTTP against the service.

use std::collections::BTreeSet;
use std::time::Duration;

use brokerstream::auth::{AuthSettings, Role};
use brokerstream::config::{BbdoConfig, Config};
use brokerstream::web::{route_table, Access};
use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};

use crate::common::*;

/// What each route must demand. Written out here, apart from the router:
/// a route added to the router without a line here fails
/// `the_router_has_exactly_the_routes_this_test_expects`, and then every
/// line is probed by `every_route_refuses_anonymous_and_underprivileged_callers`.
const EXPECTED: &[(&str, &str, &str)] = &[
    ("POST", "/api/v1/events", "operator"),
    ("GET", "/api/v1/inputs", "viewer"),
    ("GET", "/api/v1/kinds", "viewer"),
    ("GET", "/api/v1/journal", "viewer"),
    ("GET", "/api/v1/outputs", "viewer"),
    ("POST", "/api/v1/outputs", "admin"),
    ("GET", "/api/v1/outputs/{name}", "viewer"),
    ("PUT", "/api/v1/outputs/{name}", "admin"),
    ("PATCH", "/api/v1/outputs/{name}", "admin"),
    ("DELETE", "/api/v1/outputs/{name}", "admin"),
    ("POST", "/api/v1/outputs/{name}/rename", "admin"),
    ("POST", "/api/v1/outputs/{name}/clone", "admin"),
    ("GET", "/api/v1/outputs/{name}/parameters", "viewer"),
    ("PUT", "/api/v1/outputs/{name}/parameters/{param}", "admin"),
    (
        "DELETE",
        "/api/v1/outputs/{name}/parameters/{param}",
        "admin",
    ),
    ("GET", "/api/v1/outputs/{name}/status", "viewer"),
    ("GET", "/api/v1/outputs/{name}/logs", "viewer"),
    ("GET", "/api/v1/outputs/{name}/rates", "viewer"),
    ("GET", "/api/v1/outputs/{name}/deadletters", "viewer"),
    ("POST", "/api/v1/outputs/{name}/deadletters/replay", "admin"),
    ("DELETE", "/api/v1/outputs/{name}/deadletters", "admin"),
    ("GET", "/api/v1/outputs/{name}/tail", "viewer"),
    ("POST", "/api/v1/outputs/{name}/flush", "operator"),
    ("POST", "/api/v1/outputs/{name}/replay", "operator"),
    ("POST", "/api/v1/outputs/{name}/skip", "operator"),
    ("POST", "/api/v1/outputs/{name}/pause", "operator"),
    ("POST", "/api/v1/outputs/{name}/resume", "operator"),
    ("POST", "/api/v1/outputs/{name}/restart", "operator"),
    ("GET", "/api/v1/scripts", "viewer"),
    ("GET", "/api/v1/scripts/{name}", "admin"),
    ("PUT", "/api/v1/scripts/{name}", "admin"),
    ("DELETE", "/api/v1/scripts/{name}", "admin"),
    ("GET", "/api/v1/me", "viewer"),
    ("PUT", "/api/v1/me/password", "viewer"),
    ("GET", "/api/v1/users", "admin"),
    ("POST", "/api/v1/users", "admin"),
    ("GET", "/api/v1/users/{user}", "admin"),
    ("PATCH", "/api/v1/users/{user}", "admin"),
    ("DELETE", "/api/v1/users/{user}", "admin"),
    ("GET", "/api/v1/tokens", "admin"),
    ("POST", "/api/v1/tokens", "admin"),
    ("DELETE", "/api/v1/tokens/{id}", "admin"),
    ("GET", "/api/v1/audit", "admin"),
    ("GET", "/", "viewer"),
    ("GET", "/fragments/overview", "viewer"),
    ("GET", "/fragments/outputs/{name}", "viewer"),
    ("GET", "/outputs/new", "admin"),
    ("POST", "/outputs/new", "admin"),
    ("GET", "/outputs/{name}", "viewer"),
    ("GET", "/outputs/{name}/edit", "admin"),
    ("POST", "/outputs/{name}/edit", "admin"),
    ("POST", "/outputs/{name}/action", "operator"),
    ("GET", "/outputs/{name}/delete", "admin"),
    ("POST", "/outputs/{name}/delete", "admin"),
    ("POST", "/outputs/{name}/rename", "admin"),
    ("POST", "/outputs/{name}/clone", "admin"),
    ("POST", "/outputs/{name}/deadletters", "admin"),
    ("GET", "/scripts", "viewer"),
    ("GET", "/scripts/{name}", "admin"),
    ("POST", "/scripts/{name}", "admin"),
    ("POST", "/scripts/{name}/upload", "admin"),
    ("POST", "/scripts/{name}/delete", "admin"),
    ("GET", "/account", "viewer"),
    ("POST", "/account", "viewer"),
    ("GET", "/users", "admin"),
    ("POST", "/users", "admin"),
    ("GET", "/tokens", "admin"),
    ("POST", "/tokens", "admin"),
    ("GET", "/audit", "admin"),
    ("GET", "/login", "public"),
    ("POST", "/login", "public"),
    ("POST", "/logout", "viewer"),
    ("GET", "/healthz", "public"),
    ("GET", "/readyz", "public"),
    ("GET", "/metrics", "viewer"),
];

const VIEWER_PASSWORD: &str = "viewer-password-123";
const OPERATOR_PASSWORD: &str = "operator-password-123";

/// What `GET /api/v1/me` answers to these Basic credentials.
async fn me_status(server: &Server, user: &str, password: &str) -> u16 {
    as_user(user, password)
        .get(server.url("/api/v1/me"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

fn no_redirects(builder: reqwest::ClientBuilder) -> Client {
    builder
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

fn as_user(user: &str, password: &str) -> Client {
    no_redirects(client_as(basic_auth(user, password)))
}

fn anonymous() -> Client {
    no_redirects(Client::builder())
}

async fn add_user(server: &Server, name: &str, password: &str, role: &str) {
    let response = server
        .post_json(
            "/api/v1/users",
            &json!({"name": name, "password": password, "role": role}),
        )
        .await;
    assert_eq!(response.status(), 201, "{}", response.text().await.unwrap());
}

/// Starts a service with a viewer and an operator besides the admin.
async fn server_with_roles(dir: &std::path::Path) -> Server {
    let server = Server::start(dir).await;
    add_user(&server, "vera", VIEWER_PASSWORD, "viewer").await;
    add_user(&server, "otto", OPERATOR_PASSWORD, "operator").await;
    server
}

fn required(access: Access) -> &'static str {
    match access {
        Access::Public => "public",
        Access::Role(Role::Viewer) => "viewer",
        Access::Role(Role::Operator) => "operator",
        Access::Role(Role::Admin) => "admin",
    }
}

#[test]
fn the_router_has_exactly_the_routes_this_test_expects() {
    let actual: BTreeSet<(String, String, String)> = route_table()
        .into_iter()
        .map(|r| {
            (
                r.method.to_string(),
                r.path.to_owned(),
                required(r.access).to_owned(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String, String)> = EXPECTED
        .iter()
        .map(|(m, p, a)| (m.to_string(), p.to_string(), a.to_string()))
        .collect();
    let missing: Vec<_> = actual.difference(&expected).collect();
    let extra: Vec<_> = expected.difference(&actual).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "routes without an expected access level here: {missing:?}; expected but not routed (or routed with another level): {extra:?}"
    );
}

/// A concrete URL for a route: parameters name things that do not exist,
/// so that an allowed caller reaches the handler without changing anything.
fn concrete(path: &str) -> String {
    path.replace("{name}", "no-such-output")
        .replace("{param}", "no-such-parameter")
        .replace("{user}", "no-such-user")
        .replace("{id}", "999999")
}

async fn probe(client: &Client, server: &Server, method: &str, path: &str) -> (StatusCode, String) {
    let method = Method::from_bytes(method.as_bytes()).unwrap();
    let response = client
        .request(method, server.url(&concrete(path)))
        .header("content-type", "application/json")
        .body("{}")
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .unwrap();
    let status = response.status();
    let location = response
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    // A live tail never ends: its status and headers are enough.
    let body = if path.ends_with("/tail") {
        String::new()
    } else {
        response.text().await.unwrap_or_default()
    };
    (status, format!("{location} {body}"))
}

#[tokio::test]
async fn every_route_refuses_anonymous_and_underprivileged_callers() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_roles(dir.path()).await;
    let anonymous = anonymous();
    let viewer = as_user("vera", VIEWER_PASSWORD);
    let operator = as_user("otto", OPERATOR_PASSWORD);
    let admin = no_redirects(admin_client_builder());
    for rule in route_table() {
        let method = rule.method.as_str();
        let needed = required(rule.access);
        let what = format!("{method} {}", rule.path);
        let (status, said) = probe(&anonymous, &server, method, rule.path).await;
        if needed == "public" {
            assert!(
                status != 401 && status != 403,
                "{what} is public but refused an anonymous caller: {status} {said}"
            );
            continue;
        }
        let api = rule.path.starts_with("/api/")
            || rule.path.starts_with("/fragments/")
            || rule.path == "/metrics";
        if api {
            assert_eq!(status, 401, "{what} anonymous: {said}");
        } else {
            assert_eq!(status, 303, "{what} anonymous: {said}");
            assert!(said.starts_with("/login?next="), "{what}: {said}");
        }
        for (client, role) in [
            (&viewer, "viewer"),
            (&operator, "operator"),
            (&admin, "admin"),
        ] {
            let (status, said) = probe(client, &server, method, rule.path).await;
            let rank = |r: &str| ["viewer", "operator", "admin"].iter().position(|x| *x == r);
            if rank(role) < rank(needed) {
                assert_eq!(status, 403, "{what} as {role}: {said}");
            } else {
                assert!(
                    status != 401 && status != 403 && status != 405,
                    "{what} as {role} must be allowed: {status} {said}"
                );
                assert!(
                    !said.contains("no such API route") && !said.contains("no such page"),
                    "{what} is in the table but not routed: {said}"
                );
            }
        }
    }
    server.stop().await;
}

/// A browser session: its cookie and the CSRF token its pages carry.
struct Session {
    cookie: String,
    csrf: String,
}

fn set_cookie(response: &reqwest::Response, name: &str) -> Option<String> {
    response
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(str::to_owned)
}

fn cookie_pair(set_cookie: &str) -> String {
    set_cookie.split(';').next().unwrap().to_owned()
}

/// Logs in through the login form, as a browser does.
async fn login(server: &Server, user: &str, password: &str) -> Result<Session, (u16, String)> {
    let client = anonymous();
    let form = client.get(server.url("/login")).send().await.unwrap();
    let login_cookie = cookie_pair(&set_cookie(&form, "brokerstream_login").unwrap());
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
    if response.status() != 303 {
        let status = response.status().as_u16();
        return Err((status, response.text().await.unwrap()));
    }
    let set = set_cookie(&response, "brokerstream_session").expect("a session cookie");
    assert!(set.contains("HttpOnly"), "{set}");
    assert!(set.contains("SameSite=Strict"), "{set}");
    let cookie = cookie_pair(&set);
    let page = client
        .get(server.url("/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let csrf = csrf_field(&page.text().await.unwrap());
    Ok(Session { cookie, csrf })
}

#[tokio::test]
async fn state_changing_requests_with_a_session_need_its_csrf_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    server
        .create_file_output("csrf", &dir.path().join("out.log"), json!({}))
        .await;
    let session = login(&server, "admin", ADMIN_PASSWORD).await.unwrap();
    let client = anonymous();
    let act = |token: Option<&str>| {
        let mut form = vec![("action", "pause".to_owned())];
        if let Some(token) = token {
            form.push(("csrf", token.to_owned()));
        }
        client
            .post(server.url("/outputs/csrf/action"))
            .header("cookie", &session.cookie)
            .form(&form)
            .send()
    };
    // A page form: no token, a wrong one, then the page's own.
    assert_eq!(act(None).await.unwrap().status(), 403);
    assert_eq!(act(Some("forged")).await.unwrap().status(), 403);
    assert_eq!(server.status("csrf").await["state"], "running");
    assert_eq!(act(Some(&session.csrf)).await.unwrap().status(), 303);
    assert_eq!(server.status("csrf").await["state"], "paused");

    // The API called with a session cookie: the token in a header.
    let resume = |token: Option<&str>| {
        let mut request = client
            .post(server.url("/api/v1/outputs/csrf/resume"))
            .header("cookie", &session.cookie);
        if let Some(token) = token {
            request = request.header("x-csrf-token", token);
        }
        request.send()
    };
    assert_eq!(resume(None).await.unwrap().status(), 403);
    assert_eq!(resume(Some("forged")).await.unwrap().status(), 403);
    assert_eq!(resume(Some(&session.csrf)).await.unwrap().status(), 200);

    // A multipart form (the output form) is checked too.
    let multipart = |token: &str| {
        let boundary = "XyZ";
        let mut body = String::new();
        for (name, value) in [("csrf", token), ("name", "new-one"), ("kind", "file")] {
            body.push_str(&format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            ));
        }
        body.push_str(&format!("--{boundary}--\r\n"));
        client
            .post(server.url("/outputs/new"))
            .header("cookie", &session.cookie)
            .header(
                "content-type",
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(body)
            .send()
    };
    assert_eq!(multipart("forged").await.unwrap().status(), 403);
    // The right token reaches the form's own validation (no path: 422).
    assert_eq!(multipart(&session.csrf).await.unwrap().status(), 422);

    // Another site's page posting with whatever credentials: refused.
    let cross = no_redirects(admin_client_builder())
        .post(server.url("/api/v1/outputs/csrf/pause"))
        .header("origin", "http://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);
    let cross = no_redirects(admin_client_builder())
        .post(server.url("/api/v1/outputs/csrf/pause"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status(), 403);

    // The login form itself: without its cookie, the post is refused.
    let response = client
        .post(server.url("/login"))
        .form(&[
            ("user", "admin"),
            ("password", ADMIN_PASSWORD),
            ("csrf", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    assert!(set_cookie(&response, "brokerstream_session").is_none());

    // Logging out ends the session on the server, not only in the browser.
    let out = client
        .post(server.url("/logout"))
        .header("cookie", &session.cookie)
        .form(&[("csrf", session.csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(out.status(), 303);
    let after = client
        .get(server.url("/api/v1/me"))
        .header("cookie", &session.cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(after.status(), 401);
    server.stop().await;
}

fn config_with(dir: &std::path::Path, auth: AuthSettings) -> Config {
    Config {
        data_dir: dir.to_owned(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        bbdo: BbdoConfig::disabled(),
        auth,
        ..Config::default()
    }
}

#[tokio::test]
async fn failed_logins_are_limited_per_user_and_per_client() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(config_with(
        dir.path(),
        AuthSettings {
            max_failures_per_user: 3,
            max_failures_per_client: 6,
            ..AuthSettings::default()
        },
    ))
    .await;
    add_user(&server, "vera", VIEWER_PASSWORD, "viewer").await;
    let me =
        |user: &str, password: &str| as_user(user, password).get(server.url("/api/v1/me")).send();
    for _ in 0..3 {
        assert_eq!(me("vera", "wrong password!").await.unwrap().status(), 401);
    }
    // vera is locked, even with her right password, and says for how long.
    let locked = me("vera", VIEWER_PASSWORD).await.unwrap();
    assert_eq!(locked.status(), 429);
    let retry: u64 = locked.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry > 0 && retry <= 900, "{retry}");
    // The login form says the same.
    let (status, page) = login(&server, "vera", VIEWER_PASSWORD).await.err().unwrap();
    assert_eq!(status, 429);
    assert!(page.contains("too many failed logins"), "{page}");
    // The client has 3 failures (plus vera's refused attempts, not counted);
    // 3 more for other names lock the client out for everyone.
    for user in ["a", "b", "c"] {
        assert_eq!(me(user, "wrong password!").await.unwrap().status(), 401);
    }
    assert_eq!(me("admin", ADMIN_PASSWORD).await.unwrap().status(), 429);
    server.stop().await;
}

/// Behind a reverse proxy every request comes from the proxy: with it in
/// `http.trusted_proxies`, each client is limited on its own, and a client
/// cannot dodge its limit by writing the header itself when no proxy is
/// trusted.
#[tokio::test]
async fn failed_logins_are_counted_per_forwarded_client_behind_a_trusted_proxy() {
    let auth = AuthSettings {
        max_failures_per_user: 100,
        max_failures_per_client: 3,
        ..AuthSettings::default()
    };
    let attempt = |server: &Server, forwarded: &str, password: &str| {
        let request = as_user("admin", password)
            .get(server.url("/api/v1/me"))
            .header("x-forwarded-for", forwarded.to_owned());
        async move { request.send().await.unwrap().status().as_u16() }
    };

    let dir = tempfile::tempdir().unwrap();
    let mut config = config_with(dir.path(), auth.clone());
    config.http.trusted_proxies = vec!["127.0.0.1".into()];
    let server = Server::start_with(config).await;
    for _ in 0..3 {
        assert_eq!(
            attempt(&server, "203.0.113.7", "wrong password!").await,
            401
        );
    }
    assert_eq!(attempt(&server, "203.0.113.7", ADMIN_PASSWORD).await, 429);
    // Another client behind the same proxy is not locked out.
    assert_eq!(attempt(&server, "203.0.113.8", ADMIN_PASSWORD).await, 200);
    server.stop().await;

    // No proxy trusted: the header changes nothing.
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(config_with(dir.path(), auth)).await;
    for i in 0..3 {
        let forged = format!("198.51.100.{i}");
        assert_eq!(attempt(&server, &forged, "wrong password!").await, 401);
    }
    assert_eq!(attempt(&server, "198.51.100.99", ADMIN_PASSWORD).await, 429);
    server.stop().await;
}

#[tokio::test]
async fn an_expired_session_sends_the_browser_back_to_the_login_page() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start_with(config_with(
        dir.path(),
        AuthSettings {
            session_ttl_secs: 1,
            ..AuthSettings::default()
        },
    ))
    .await;
    let session = login(&server, "admin", ADMIN_PASSWORD).await.unwrap();
    let get = |path: &str| {
        anonymous()
            .get(server.url(path))
            .header("cookie", &session.cookie)
            .send()
    };
    assert_eq!(get("/").await.unwrap().status(), 200);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let page = get("/outputs/new").await.unwrap();
    assert_eq!(page.status(), 303);
    let location = page.headers()["location"].to_str().unwrap().to_owned();
    assert_eq!(location, "/login?next=/outputs/new&expired=1");
    let login_page = anonymous()
        .get(server.url(&location))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        login_page.contains("Your session has expired"),
        "{login_page}"
    );
    let api = get("/api/v1/me").await.unwrap();
    assert_eq!(api.status(), 401);
    let body: Value = api.json().await.unwrap();
    assert!(
        body["error"].as_str().unwrap().contains("expired"),
        "{body}"
    );
    server.stop().await;
}

#[tokio::test]
async fn api_tokens_are_shown_once_act_as_their_user_and_can_be_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_roles(dir.path()).await;
    server
        .create_file_output("tok", &dir.path().join("out.log"), json!({}))
        .await;
    let response = server
        .post_json(
            "/api/v1/tokens",
            &json!({"name": "grafana", "user": "vera", "expires_in_days": 30}),
        )
        .await;
    assert_eq!(response.status(), 201);
    let created: Value = response.json().await.unwrap();
    let token = created["token"].as_str().unwrap().to_owned();
    assert!(token.starts_with("bst_") && token.len() > 40, "{token}");
    // Listed without its value, and not kept in clear anywhere on disk.
    let listed = server.get_json("/api/v1/tokens").await;
    assert_eq!(listed[0]["name"], "grafana");
    assert_eq!(listed[0]["user"], "vera");
    assert!(!listed.to_string().contains(&token));
    let database = std::fs::read(dir.path().join("brokerstream.db")).unwrap();
    let wal = std::fs::read(dir.path().join("brokerstream.db-wal")).unwrap_or_default();
    for bytes in [&database, &wal] {
        assert!(!bytes.windows(token.len()).any(|w| w == token.as_bytes()));
    }

    let bearer = |token: &str| no_redirects(client_as(format!("Bearer {token}").parse().unwrap()));
    let client = bearer(&token);
    let me: Value = client
        .get(server.url("/api/v1/me"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me, json!({"name": "vera", "role": "viewer"}));
    let pause = client
        .post(server.url("/api/v1/outputs/tok/pause"))
        .send()
        .await
        .unwrap();
    assert_eq!(pause.status(), 403);
    let listed = server.get_json("/api/v1/tokens").await;
    assert!(listed[0]["last_used_at"].is_string(), "{listed}");

    let wrong = bearer("bst_not-a-real-token")
        .get(server.url("/api/v1/me"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert!(wrong.headers().contains_key("www-authenticate"));

    let id = created["id"].as_i64().unwrap();
    let revoked = server
        .client
        .delete(server.url(&format!("/api/v1/tokens/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(revoked.status(), 204);
    let after = client.get(server.url("/api/v1/me")).send().await.unwrap();
    assert_eq!(after.status(), 401);
    server.stop().await;
}

#[tokio::test]
async fn users_are_managed_and_the_last_admin_stays() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    // Bad input: every field named.
    let response = server
        .post_json(
            "/api/v1/users",
            &json!({"name": "a b", "password": "short", "role": "root"}),
        )
        .await;
    assert_eq!(response.status(), 422);
    let body: Value = response.json().await.unwrap();
    for field in ["name", "password", "role"] {
        assert!(body["fields"][field].is_string(), "{field}: {body}");
    }
    assert!(!body.to_string().contains("short"), "{body}");
    add_user(&server, "otto", OPERATOR_PASSWORD, "operator").await;
    let again = server
        .post_json(
            "/api/v1/users",
            &json!({"name": "otto", "password": OPERATOR_PASSWORD, "role": "viewer"}),
        )
        .await;
    assert_eq!(again.status(), 409);
    // Users are listed without their hashes.
    let users = server.get_json("/api/v1/users").await;
    assert_eq!(users.as_array().unwrap().len(), 2);
    assert!(!users.to_string().contains("argon2"), "{users}");

    // The last admin cannot be demoted or deleted.
    let demote = server
        .send_json(
            Method::PATCH,
            "/api/v1/users/admin",
            &json!({"role": "viewer"}),
        )
        .await;
    assert_eq!(demote.status(), 409);
    let delete = server
        .client
        .delete(server.url("/api/v1/users/admin"))
        .send()
        .await
        .unwrap();
    assert_eq!(delete.status(), 409);

    // A new password works at once and the old one stops working.
    let changed = server
        .send_json(
            Method::PATCH,
            "/api/v1/users/otto",
            &json!({"password": "a brand new password"}),
        )
        .await;
    assert_eq!(changed.status(), 200);
    assert_eq!(me_status(&server, "otto", OPERATOR_PASSWORD).await, 401);
    assert_eq!(
        me_status(&server, "otto", "a brand new password").await,
        200
    );

    // Anyone changes their own password, proving the current one.
    let own = as_user("otto", "a brand new password")
        .put(server.url("/api/v1/me/password"))
        .json(&json!({"current_password": "wrong one", "new_password": "another new password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 422);
    let own = as_user("otto", "a brand new password")
        .put(server.url("/api/v1/me/password"))
        .json(&json!({"current_password": "a brand new password", "new_password": "another new password"}))
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 204);

    let gone = server
        .client
        .delete(server.url("/api/v1/users/otto"))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 204);
    assert_eq!(
        me_status(&server, "otto", "another new password").await,
        401
    );

    // Every change is in the audit log, by whom, without a password.
    let audit = server.get_json("/api/v1/audit").await;
    let actions: Vec<(String, String, String)> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["actor"].as_str().unwrap().to_owned(),
                e["action"].as_str().unwrap().to_owned(),
                e["target"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for expected in [
        ("admin", "user.create", "otto"),
        ("admin", "user.update", "otto"),
        ("otto", "user.update", "otto"),
        ("admin", "user.delete", "otto"),
        ("brokerstream", "user.create", "admin"),
    ] {
        assert!(
            actions
                .iter()
                .any(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()) == expected),
            "{expected:?} not in {actions:?}"
        );
    }
    let text = audit.to_string();
    for secret in [
        OPERATOR_PASSWORD,
        "a brand new password",
        "another new password",
    ] {
        assert!(!text.contains(secret), "{text}");
    }
    server.stop().await;
}

#[tokio::test]
async fn every_response_carries_the_security_headers_and_pages_have_no_inline_script() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    server
        .create_file_output("hdr", &dir.path().join("out.log"), json!({}))
        .await;
    let admin = no_redirects(admin_client_builder());
    for path in [
        "/",
        "/outputs/new",
        "/outputs/hdr",
        "/outputs/hdr/edit",
        "/users",
        "/tokens",
        "/audit",
        "/account",
        "/scripts",
        "/login",
        "/api/v1/outputs",
        "/no/such/page",
    ] {
        let response = admin.get(server.url(path)).send().await.unwrap();
        let headers = response.headers().clone();
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{path}: {csp}");
        assert!(!csp.contains("unsafe-inline"), "{path}: {csp}");
        assert_eq!(headers["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(headers["referrer-policy"], "same-origin", "{path}");
        assert_eq!(headers["x-frame-options"], "DENY", "{path}");
        assert_eq!(headers["cache-control"], "no-store", "{path}");
        let page = response.text().await.unwrap();
        // Scripts only from files; no inline handler or style attribute.
        let inline_script = page.match_indices("<script").any(|(at, _)| {
            let tag = &page[at..at + page[at..].find('>').unwrap()];
            !tag.contains(" src=")
        });
        assert!(!inline_script, "{path} has an inline script");
        for attribute in [" onclick=", " onload=", " onsubmit=", " style="] {
            assert!(!page.contains(attribute), "{path} has {attribute}");
        }
    }
    server.stop().await;
}

#[tokio::test]
async fn roles_shape_the_pages() {
    let dir = tempfile::tempdir().unwrap();
    let server = server_with_roles(dir.path()).await;
    server
        .create_file_output("shape", &dir.path().join("out.log"), json!({}))
        .await;
    let page = |user: &'static str, password: &'static str| {
        let url = server.url("/outputs/shape");
        async move {
            as_user(user, password)
                .get(url)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        }
    };
    let viewer = page("vera", VIEWER_PASSWORD).await;
    assert!(!viewer.contains("id=\"pause\"") && !viewer.contains("/edit\""));
    assert!(!viewer.contains("href=\"/users\""));
    let operator = page("otto", OPERATOR_PASSWORD).await;
    assert!(operator.contains("id=\"pause\"") && !operator.contains("/edit\""));
    let admin = page("admin", ADMIN_PASSWORD).await;
    assert!(admin.contains("id=\"pause\"") && admin.contains("/outputs/shape/edit\""));
    assert!(admin.contains("href=\"/users\""));
    // Anonymous probes see readiness, not the outputs.
    let ready: Value = anonymous()
        .get(server.url("/readyz"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(ready["ready"], true);
    assert!(ready.get("outputs").is_none(), "{ready}");
    let ready = server.get_json("/readyz").await;
    assert!(ready["outputs"]["shape"].is_object(), "{ready}");
    server.stop().await;
}

#[tokio::test]
async fn the_users_and_tokens_pages_work_without_scripts() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let session = login(&server, "admin", ADMIN_PASSWORD).await.unwrap();
    let client = anonymous();
    let post = |path: &'static str, form: Vec<(&'static str, String)>| {
        let mut form = form;
        form.push(("csrf", session.csrf.clone()));
        client
            .post(server.url(path))
            .header("cookie", &session.cookie)
            .form(&form)
            .send()
    };
    let created = post(
        "/users",
        vec![
            ("action", "create".into()),
            ("user", "pat".into()),
            ("password", "pat's password 1".into()),
            ("role", "operator".into()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(created.status(), 200);
    let page = created.text().await.unwrap();
    assert!(
        page.contains("Created the user `pat`") || page.contains("Created the user &#96;pat&#96;"),
        "{page}"
    );
    let bad = post(
        "/users",
        vec![
            ("action", "create".into()),
            ("user", "pal".into()),
            ("password", "short".into()),
            ("role", "viewer".into()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(bad.status(), 422);
    assert!(bad.text().await.unwrap().contains("at least 12 characters"));

    let made = post(
        "/tokens",
        vec![
            ("action", "create".into()),
            ("name", "ci".into()),
            ("user", "pat".into()),
            ("expires_in_days", "".into()),
        ],
    )
    .await
    .unwrap();
    assert_eq!(made.status(), 200);
    let page = made.text().await.unwrap();
    let marker = "id=\"token-value\" class=\"secret\">";
    let at = page.find(marker).unwrap() + marker.len();
    let token = page[at..at + page[at..].find('<').unwrap()].to_owned();
    assert!(token.starts_with("bst_"), "{token}");
    let me: Value = client_as(format!("Bearer {token}").parse().unwrap())
        .build()
        .unwrap()
        .get(server.url("/api/v1/me"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(me["name"], "pat");
    // Shown once: the list page has only its prefix.
    let list = client
        .get(server.url("/tokens"))
        .header("cookie", &session.cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!list.contains(&token));
    let audit = client
        .get(server.url("/audit"))
        .header("cookie", &session.cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(audit.contains("token.create") && audit.contains("user.create"));
    assert!(!audit.contains(&token) && !audit.contains("pat&#39;s password"));
    server.stop().await;
}

/// A secret set through the API: the script and the native output get it,
/// and it never comes back in an API response, a page, a log line, a tail
/// event or the audit log.
#[tokio::test]
async fn a_secret_set_through_the_api_never_comes_back() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let scripts = data.join("scripts");
    std::fs::create_dir_all(&scripts).unwrap();
    let secret = format!("Zq{}-hunter2", std::process::id());
    let reversed: String = secret.chars().rev().collect();
    // The script proves it got the clear value without holding it.
    std::fs::write(
        scripts.join("secret.lua"),
        format!(
            "function init(conf)\n\
             if conf.token:reverse() == \"{reversed}\" then broker_log:info(0, \"the secret arrived\") end\n\
             end\n\
             function write(e) return true end\n"
        ),
    )
    .unwrap();
    let closed = free_port();
    let port = free_port();
    let log_path = dir.path().join("service.log");
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_brokerstream"));
    command
        .args(["serve", "--http-addr", &format!("127.0.0.1:{port}")])
        .args(["--data-dir", data.to_str().unwrap()])
        .env("BROKERSTREAM_BBDO_ADDR", "none")
        .env("BROKERSTREAM_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env("BROKERSTREAM_LOG", "debug")
        // Logs go to stdout; the console (a generated password) to stderr.
        .stdout(std::fs::File::create(&log_path).unwrap())
        .stderr(std::fs::File::create(dir.path().join("console.log")).unwrap());
    let p = Process {
        child: command.spawn().unwrap(),
        base: format!("http://127.0.0.1:{port}"),
        client: admin_client(),
    };
    p.wait_ready().await;
    let mut seen = String::new();
    let send = |method: Method, path: &str, body: Value| {
        p.client
            .request(method, format!("{}{path}", p.base))
            .json(&body)
            .send()
    };
    let mut record = |what: &str, text: String| {
        seen.push_str(&format!("\n== {what}\n{text}"));
    };

    let lua = json!({
        "name": "lua-secret", "kind": "lua", "path": "secret.lua",
        "parameters": [{"name": "token", "type": "password", "value": secret}],
    });
    let response = send(Method::POST, "/api/v1/outputs", lua).await.unwrap();
    assert_eq!(response.status(), 201);
    record("create lua", response.text().await.unwrap());
    // A native output whose destination is down: its errors are logged.
    let influx = json!({
        "name": "influx-secret", "kind": "influxdb",
        "parameters": [
            {"name": "http_server_address", "type": "string", "value": "127.0.0.1"},
            {"name": "http_server_port", "type": "number", "value": closed.to_string()},
            {"name": "influx_database", "type": "string", "value": "db"},
            {"name": "influx_user", "type": "string", "value": "u"},
            {"name": "influx_password", "type": "password", "value": secret},
            {"name": "max_buffer_size", "type": "number", "value": "1"},
        ],
    });
    let response = send(Method::POST, "/api/v1/outputs", influx).await.unwrap();
    assert_eq!(response.status(), 201);
    record("create influx", response.text().await.unwrap());
    // Every way of setting it again, the failing ones included.
    for (method, path, body) in [
        (
            Method::PUT,
            "/api/v1/outputs/lua-secret/parameters/token",
            json!({"type": "password", "value": secret}),
        ),
        (
            Method::PUT,
            "/api/v1/outputs/lua-secret/parameters/other",
            json!({"type": "number", "value": secret}),
        ),
        (
            Method::PATCH,
            "/api/v1/outputs/influx-secret",
            json!({"parameters": [{"name": "influx_password", "type": "password", "value": secret}, {"name": "nonsense", "type": "password", "value": secret}]}),
        ),
        (
            Method::POST,
            "/api/v1/outputs",
            json!({"name": "bad name!", "kind": "lua", "path": "../x.lua", "parameters": [{"name": "p", "type": "password", "value": secret}]}),
        ),
    ] {
        let response = send(method.clone(), path, body).await.unwrap();
        record(&format!("{method} {path}"), response.text().await.unwrap());
    }

    // Events flow; the tail shows them.
    let mut tail = p
        .client
        .get(format!(
            "{}/api/v1/outputs/influx-secret/tail?stage=received&rate=500",
            p.base
        ))
        .send()
        .await
        .unwrap();
    let body: String = (0..5)
        .map(|i| format!("{}\n", metric(1, 1, "cpu", f64::from(i))))
        .collect();
    let response = p.post_events(body).await.unwrap();
    assert_eq!(response.status(), 200);
    // The destination is down: the output holds its first event.
    let events = read_sse(&mut tail, |t| t.contains("event: tail")).await;
    record("tail", events);
    drop(tail);

    // The influx output retries against the closed port, logging why.
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = p.get_json("/api/v1/outputs/influx-secret/status").await;
        if status["last_error"].is_string() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{status}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Every page and resource a caller can read.
    for rule in route_table() {
        if rule.method != Method::GET || rule.path.ends_with("/tail") {
            continue;
        }
        for name in ["lua-secret", "influx-secret"] {
            let path = rule
                .path
                .replace("{name}", name)
                .replace("{user}", "admin")
                .replace("{id}", "1");
            let response = p
                .client
                .get(format!("{}{path}", p.base))
                .send()
                .await
                .unwrap();
            record(&format!("GET {path}"), response.text().await.unwrap());
        }
    }
    let detail = p
        .client
        .get(format!("{}/outputs/lua-secret", p.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(detail.contains("the secret arrived"), "{detail}");
    let audit = p.get_json("/api/v1/audit?limit=1000").await;
    assert!(audit.as_array().unwrap().len() >= 4, "{audit}");
    record("audit", audit.to_string());
    let status = p.terminate().await;
    assert!(status.success());
    let log = std::fs::read_to_string(&log_path).unwrap();
    // The log did see the failing output and its error.
    assert!(
        log.contains("influx-secret") && log.contains("listening"),
        "{log}"
    );
    record("log", log);
    record(
        "console",
        std::fs::read_to_string(dir.path().join("console.log")).unwrap(),
    );
    if let Some(at) = seen.find(&secret) {
        let from = seen[..at].rfind("\n== ").unwrap_or(0);
        panic!(
            "the secret came back:\n{}",
            &seen[from..(at + 200).min(seen.len())]
        );
    }
}

/// The peak resident memory of a process (`VmHWM`), in bytes.
pub fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap();
    kib * 1024
}

#[tokio::test]
async fn parallel_wrong_passwords_are_counted_before_they_are_checked_and_hashing_memory_is_bounded(
) {
    let dir = tempfile::tempdir().unwrap();
    // The client limit out of the way: what bounds argon2 below is the
    // hashing pool, not the limiter.
    let process = Process::serve_with_config(
        dir.path(),
        "[auth]\nmax_failures_per_user = 5\nmax_failures_per_client = 100000\n",
        &[],
    )
    .await;
    let url = format!("{}/api/v1/me", process.base);
    let attempt = |user: String, password: String| {
        let url = url.clone();
        async move {
            as_user(&user, &password)
                .get(url)
                .send()
                .await
                .map(|r| {
                    let retry = r.headers().get("retry-after").is_some();
                    (r.status().as_u16(), retry)
                })
                .unwrap_or((0, false))
        }
    };

    // 64 (or BROKERSTREAM_SOAK_LOGINS, scripts/soak-listeners) wrong
    // passwords for admin at once, from one client: no more than the limit
    // (5) are checked, the others are refused unchecked.
    let parallel: usize = std::env::var("BROKERSTREAM_SOAK_LOGINS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(64);
    let answers = futures::future::join_all(
        (0..parallel).map(|n| attempt("admin".into(), format!("wrong password {n}"))),
    )
    .await;
    let checked = answers.iter().filter(|(s, _)| *s == 401).count();
    let limited = answers.iter().filter(|(s, r)| *s == 429 && *r).count();
    assert!(checked <= 5, "{checked} checked: {answers:?}");
    assert_eq!(checked + limited, parallel, "{answers:?}");
    // This client is now refused for admin, even with the right password.
    assert_eq!(attempt("admin".into(), ADMIN_PASSWORD.into()).await.0, 429);

    // 128 attempts at once for unknown users: argon2 runs in as many
    // slots as there are cores, a short queue waits, the rest get 503 with
    // Retry-After. Memory: the service (about 50 MiB in a debug build,
    // once argon2 ran) plus 19 MiB of argon2 blocks per slot, with room to
    // spare; without the pool, every attempt held its 19 MiB at once
    // (1.8 GiB for 128 in the review).
    let answers = futures::future::join_all(
        (0..128).map(|n| attempt(format!("nobody{n}"), "wrong password".into())),
    )
    .await;
    assert!(
        answers.iter().all(|(s, r)| *s == 401 || (*s == 503 && *r)),
        "{answers:?}"
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let bound = (64 + 24 * cores) * 1024 * 1024;
    let peak = peak_rss(process.child.id());
    eprintln!("peak RSS after 128 parallel attempts: {} MiB", peak >> 20);
    assert!(
        peak < bound,
        "peak RSS {} MiB, over {} MiB",
        peak >> 20,
        bound >> 20
    );
    process.terminate().await;
}

/// A client whose connections come from `ip` (any 127/8 address is the
/// loopback on Linux).
fn from(ip: &str, user: &str, password: &str) -> Client {
    no_redirects(
        client_as(basic_auth(user, password)).local_address(ip.parse::<std::net::IpAddr>().ok()),
    )
}

#[tokio::test]
async fn a_strangers_failures_do_not_lock_out_the_admin() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let me = server.url("/api/v1/me");
    // A stranger tries 10 passwords for admin: locked out after 5.
    let mut statuses = Vec::new();
    for n in 0..10 {
        let response = from("127.0.0.2", "admin", &format!("guess number {n}"))
            .get(&me)
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses[..5], [401; 5], "{statuses:?}");
    assert!(statuses[5..].iter().all(|s| *s == 429), "{statuses:?}");
    // The admin, from a client of their own, gets in with the password,
    // by Basic and by the login form.
    let admin = from("127.0.0.3", "admin", ADMIN_PASSWORD);
    assert_eq!(admin.get(&me).send().await.unwrap().status(), 200);
    let form = anonymous_from("127.0.0.4")
        .get(server.url("/login"))
        .send()
        .await
        .unwrap();
    let login_cookie = cookie_pair(&set_cookie(&form, "brokerstream_login").unwrap());
    let token = csrf_field(&form.text().await.unwrap());
    let response = anonymous_from("127.0.0.4")
        .post(server.url("/login"))
        .header("cookie", &login_cookie)
        .form(&[
            ("user", "admin"),
            ("password", ADMIN_PASSWORD),
            ("csrf", &token),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 303);
    server.stop().await;
}

#[tokio::test]
async fn parallel_wrong_passwords_run_argon2_no_more_than_the_limit() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let auth = server.app.as_ref().unwrap().context.auth.clone();
    let before = auth.hash_runs();
    let me = server.url("/api/v1/me");
    let answers = futures::future::join_all((0..64).map(|n| {
        let client = from("127.0.0.6", "admin", &format!("wrong password {n}"));
        let me = me.clone();
        async move { client.get(me).send().await.unwrap().status().as_u16() }
    }))
    .await;
    let runs = auth.hash_runs() - before;
    assert!(runs <= 5, "argon2 ran {runs} times: {answers:?}");
    assert_eq!(
        answers.iter().filter(|s| **s == 429).count(),
        64 - runs as usize
    );
    server.stop().await;
}

fn anonymous_from(ip: &str) -> Client {
    no_redirects(Client::builder().local_address(ip.parse::<std::net::IpAddr>().ok()))
}

#[tokio::test]
async fn bad_tokens_do_not_block_a_valid_token() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let created = server
        .post_json("/api/v1/tokens", &json!({"name": "producer"}))
        .await;
    assert_eq!(created.status(), 201);
    let token = created.json::<Value>().await.unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let bearer = |t: &str| {
        from_bearer("127.0.0.5", t)
            .get(server.url("/api/v1/me"))
            .send()
    };
    let mut statuses = Vec::new();
    for n in 0..30 {
        statuses.push(
            bearer(&format!("bst_not-a-token-{n}"))
                .await
                .unwrap()
                .status()
                .as_u16(),
        );
    }
    // Bad tokens are refused, and past the client's limit told to wait…
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 429),
        "{statuses:?}"
    );
    assert_eq!(*statuses.last().unwrap(), 429, "{statuses:?}");
    // …but a good token from the same address is taken.
    assert_eq!(bearer(&token).await.unwrap().status(), 200);
    // And password logins from that address are not held back by them.
    assert_eq!(me_status_from("127.0.0.5", &server).await, 200);
    server.stop().await;
}

fn from_bearer(ip: &str, token: &str) -> Client {
    let value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).unwrap();
    no_redirects(client_as(value).local_address(ip.parse::<std::net::IpAddr>().ok()))
}

async fn me_status_from(ip: &str, server: &Server) -> u16 {
    from(ip, "admin", ADMIN_PASSWORD)
        .get(server.url("/api/v1/me"))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn after_login_next_leads_only_to_a_path_of_this_site() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    // As the query string arrives (percent-encoded), and what `next` holds
    // once decoded, for the form.
    let cases = [
        ("/%09/evil.example/", "/\t/evil.example/"),
        ("//evil", "//evil"),
        ("/%5Cevil", "/\\evil"),
        ("https://evil", "https://evil"),
        ("/%0Aevil", "/\nevil"),
        ("/%0d%0aSet-Cookie:%20x=1", "/\r\nSet-Cookie: x=1"),
        ("/%2F/evil", "//evil"),
        ("%FF", "\u{ff}"),
    ];
    let signed_in = as_user("admin", ADMIN_PASSWORD);
    for (query, _) in &cases {
        let response = signed_in
            .get(server.url(&format!("/login?next={query}")))
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_redirection(),
            "{query}: {}",
            response.status()
        );
        assert_eq!(response.headers()["location"], "/", "{query}");
    }
    // A local path is kept.
    let response = signed_in
        .get(server.url("/login?next=/outputs/x%3Fy"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.headers()["location"], "/outputs/x?y");
    // The login form, with each `next`.
    for (_, next) in &cases {
        let client = anonymous();
        let form = client.get(server.url("/login")).send().await.unwrap();
        let login_cookie = cookie_pair(&set_cookie(&form, "brokerstream_login").unwrap());
        let token = csrf_field(&form.text().await.unwrap());
        let response = client
            .post(server.url("/login"))
            .header("cookie", &login_cookie)
            .form(&[
                ("user", "admin"),
                ("password", ADMIN_PASSWORD),
                ("csrf", &token),
                ("next", next),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 303, "{next:?}");
        assert_eq!(response.headers()["location"], "/", "{next:?}");
    }
    server.stop().await;
}

#[tokio::test]
async fn concurrent_admin_edits_never_fail_and_an_admin_always_stays() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    add_user(&server, "root", "root-password-for-tests", "admin").await;
    // Tokens: no argon2 before the change, so that both reach the
    // database at the same moment.
    let token_of = |user: &'static str| {
        let server = &server;
        async move {
            let created = server
                .post_json("/api/v1/tokens", &json!({"name": user, "user": user}))
                .await;
            assert_eq!(created.status(), 201);
            let token = created.json::<Value>().await.unwrap()["token"]
                .as_str()
                .unwrap()
                .to_owned();
            from_bearer("127.0.0.1", &token)
        }
    };
    let admin = token_of("admin").await;
    let root = token_of("root").await;
    let patch = |client: &Client, user: &str, role: &str| {
        client
            .patch(server.url(&format!("/api/v1/users/{user}")))
            .json(&json!({"role": role}))
            .send()
    };
    for round in 0..10 {
        // Each demotes the other at the same time.
        let (a, b) = tokio::join!(
            patch(&admin, "root", "viewer"),
            patch(&root, "admin", "viewer")
        );
        let (a, b) = (a.unwrap(), b.unwrap());
        let statuses = [a.status().as_u16(), b.status().as_u16()];
        let bodies = [a.text().await.unwrap(), b.text().await.unwrap()];
        assert!(
            statuses.iter().all(|s| [200, 403, 409].contains(s)),
            "round {round}: {statuses:?} {bodies:?}"
        );
        assert_eq!(
            statuses.iter().filter(|s| **s == 200).count(),
            1,
            "round {round}: exactly one wins: {statuses:?} {bodies:?}"
        );
        let mut users = Value::Null;
        for client in [&admin, &root] {
            let response = client
                .get(server.url("/api/v1/users"))
                .send()
                .await
                .unwrap();
            if response.status() == 200 {
                users = response.json().await.unwrap();
            }
        }
        let admins = users
            .as_array()
            .unwrap()
            .iter()
            .filter(|u| u["role"] == "admin")
            .count();
        assert_eq!(admins, 1, "round {round}: {users}");
        // The one left promotes the other back.
        let (a, b) = tokio::join!(
            patch(&admin, "root", "admin"),
            patch(&root, "admin", "admin")
        );
        let statuses = [a.unwrap().status().as_u16(), b.unwrap().status().as_u16()];
        assert!(statuses.contains(&200), "round {round}: {statuses:?}");
    }
    server.stop().await;
}

/// A raw request, so that its `Host` is the one given (reqwest sets it from
/// the URL): the status code of the answer.
async fn status_with_host(server: &Server, host: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let address = server
        .url("/")
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_owned();
    let mut stream = tokio::net::TcpStream::connect(&address).await.unwrap();
    let request = format!("GET /login HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    text.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

#[tokio::test]
async fn a_loopback_service_answers_only_to_loopback_host_names() {
    let dir = tempfile::tempdir().unwrap();
    let server = Server::start(dir.path()).await;
    let port = server
        .url("/")
        .rsplit(':')
        .next()
        .unwrap()
        .trim_end_matches('/')
        .to_owned();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "LOCALHOST".to_owned(),
        format!("[::1]:{port}"),
    ] {
        assert_eq!(status_with_host(&server, &host).await, 200, "{host}");
    }
    // A DNS-rebinding page's own name, reaching 127.0.0.1.
    for host in [
        "rebind.evil.example",
        "rebind.evil.example:8080",
        "127.0.0.1.evil.example",
    ] {
        assert_eq!(status_with_host(&server, host).await, 421, "{host}");
    }
    server.stop().await;
    // Named hosts, or any with an empty list.
    let mut config = Config {
        data_dir: dir.path().to_owned(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        bbdo: BbdoConfig::disabled(),
        ..Config::default()
    };
    config.http.allowed_hosts = Some(vec!["Central.Example".into()]);
    let server = Server::start_with(config.clone()).await;
    assert_eq!(status_with_host(&server, "central.example:8080").await, 200);
    assert_eq!(status_with_host(&server, "localhost").await, 421);
    server.stop().await;
    config.http.allowed_hosts = Some(Vec::new());
    let server = Server::start_with(config).await;
    assert_eq!(status_with_host(&server, "anything.example").await, 200);
    server.stop().await;
}
