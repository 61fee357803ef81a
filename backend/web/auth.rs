//! Authentication and authorization at the HTTP edge.
//!
//! Every request passes [`authenticate`], which finds who is calling: an
//! API token (`Authorization: Bearer`), HTTP Basic with a user's password,
//! or a session cookie. Every route then passes [`guard`] with the access
//! level the route table gives it, which refuses anonymous and
//! under-privileged callers and checks the CSRF token of state-changing
//! requests made with a session cookie.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use axum::body::Body;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};
use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use cookie::{Cookie, SameSite};
use serde::Deserialize;
use serde_json::json;

use super::Context;
use crate::auth::{crypto, LoginError, NewSession, Role};

pub const SESSION_COOKIE: &str = "brokerstream_session";
/// A login form's CSRF token, before there is a session to hold one.
pub const LOGIN_COOKIE: &str = "brokerstream_login";
pub const CSRF_HEADER: &str = "x-csrf-token";
pub const CSRF_FIELD: &str = "csrf";

/// Who may reach a route.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Anyone: the login page, health probes, static files.
    Public,
    /// At least this role.
    Role(Role),
}

impl std::fmt::Display for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Access::Public => f.write_str("public"),
            Access::Role(role) => role.fmt(f),
        }
    }
}

/// The authenticated caller of a request.
#[derive(Clone, Debug)]
pub struct Caller {
    pub name: String,
    pub user_id: i64,
    pub role: Role,
    /// Set when the caller came with a session cookie (a browser).
    pub session: Option<BrowserSession>,
}

#[derive(Clone, Debug)]
pub struct BrowserSession {
    pub cookie: String,
    pub csrf: String,
}

impl Caller {
    pub fn csrf(&self) -> &str {
        self.session.as_ref().map_or("", |s| s.csrf.as_str())
    }
}

/// `limits.max_body_bytes`, for the CSRF check that reads a form's body
/// before its handler does.
#[derive(Clone, Copy)]
struct BodyLimit(usize);

/// Set on a request whose session cookie had expired.
#[derive(Clone, Copy)]
struct SessionExpired;

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts
            .extensions
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| refuse(StatusCode::UNAUTHORIZED, parts.uri.path(), "log in first"))
    }
}

/// The caller, when a public route wants to know whether there is one.
pub struct MaybeCaller(pub Option<Caller>);

impl<S: Send + Sync> FromRequestParts<S> for MaybeCaller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(MaybeCaller(parts.extensions.get::<Caller>().cloned()))
    }
}

pub fn client_ip(request: &Request) -> IpAddr {
    request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED), |c| c.0.ip())
}

fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == name)
        .map(|c| c.value().to_owned())
}

fn is_api(path: &str) -> bool {
    path.starts_with("/api/") || path == "/metrics"
}

/// A refusal in the form the caller reads: JSON for the API, a redirect to
/// the login page for a page, a short text for a page's fragment.
fn refuse(status: StatusCode, path: &str, message: &str) -> Response {
    if is_api(path) {
        let mut response = (status, axum::Json(json!({ "error": message }))).into_response();
        if status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(r#"Basic realm="brokerstream", charset="UTF-8""#),
            );
        }
        return response;
    }
    (status, message.to_owned()).into_response()
}

fn too_many(path: &str, error: &LoginError, retry_after: std::time::Duration) -> Response {
    let mut response = refuse(StatusCode::TOO_MANY_REQUESTS, path, &error.to_string());
    response.headers_mut().insert(
        header::RETRY_AFTER,
        HeaderValue::from(retry_after.as_secs().max(1)),
    );
    response
}

/// Every password-hashing slot is taken: 503, come back in a second.
fn busy(path: &str, error: &LoginError) -> Response {
    let mut response = refuse(StatusCode::SERVICE_UNAVAILABLE, path, &error.to_string());
    response
        .headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from(1));
    response
}

/// Finds the caller. Bad credentials are refused here (401, or 429 while
/// the client is over its failure limit); no credentials pass on, for the
/// route's guard to judge.
pub async fn authenticate(
    State(ctx): State<Context>,
    mut request: Request,
    next: Next,
) -> Response {
    let path = request.uri().path().to_owned();
    // Public files of every page: no credential to look up (a page load
    // would otherwise query the sessions once per stylesheet and script).
    if path.starts_with("/static/") && is_safe(request.method()) {
        return next.run(request).await;
    }
    let client = client_ip(&request);
    request
        .extensions_mut()
        .insert(BodyLimit(ctx.limits.max_body_bytes));
    if let Some(refusal) = cross_site(&request) {
        return refusal;
    }
    let authorization = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|v| v.to_str().unwrap_or("").to_owned());
    if let Some(authorization) = authorization {
        let (scheme, credentials) = authorization
            .split_once(' ')
            .unwrap_or((authorization.as_str(), ""));
        let principal = if scheme.eq_ignore_ascii_case("bearer") {
            // A token that verifies is always taken: bad tokens from the
            // same address (behind a proxy, everyone) must not shut out
            // good ones. Only the failures are limited.
            match ctx.auth.token(credentials.trim()).await {
                Ok(Some(principal)) => principal,
                Ok(None) => {
                    tracing::warn!("unknown or expired API token from {client}");
                    if let Some(retry_after) = ctx.auth.token_failed(client) {
                        return too_many(&path, &LoginError::Limited { retry_after }, retry_after);
                    }
                    return refuse(
                        StatusCode::UNAUTHORIZED,
                        &path,
                        "unknown, revoked or expired API token",
                    );
                }
                Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, &path, &e.to_string()),
            }
        } else if scheme.eq_ignore_ascii_case("basic") {
            let decoded = STANDARD
                .decode(credentials.trim())
                .ok()
                .and_then(|bytes| String::from_utf8(bytes).ok());
            let Some((name, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    &path,
                    "malformed Basic credentials",
                );
            };
            match ctx.auth.basic(client, name, password).await {
                Ok(principal) => principal,
                Err(e @ LoginError::Limited { retry_after }) => {
                    return too_many(&path, &e, retry_after)
                }
                Err(e @ LoginError::Busy) => return busy(&path, &e),
                Err(e) => return refuse(StatusCode::UNAUTHORIZED, &path, &e.to_string()),
            }
        } else {
            return refuse(
                StatusCode::UNAUTHORIZED,
                &path,
                "unsupported authorization scheme (use Bearer or Basic)",
            );
        };
        request.extensions_mut().insert(Caller {
            name: principal.name,
            user_id: principal.user_id,
            role: principal.role,
            session: None,
        });
    } else if let Some(cookie) = cookie_value(request.headers(), SESSION_COOKIE) {
        match ctx.auth.session(&cookie).await {
            Ok(Ok(row)) => {
                request.extensions_mut().insert(Caller {
                    name: row.principal.name,
                    user_id: row.principal.user_id,
                    role: row.principal.role,
                    session: Some(BrowserSession {
                        cookie,
                        csrf: row.csrf,
                    }),
                });
            }
            Ok(Err(true)) => {
                request.extensions_mut().insert(SessionExpired);
            }
            Ok(Err(false)) => {}
            Err(e) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, &path, &e.to_string()),
        }
    }
    next.run(request).await
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Browsers say where a request comes from; a state-changing request from
/// another site is refused whatever credentials it carries (a browser may
/// hold Basic credentials as well as a cookie).
fn cross_site(request: &Request) -> Option<Response> {
    if is_safe(request.method()) {
        return None;
    }
    let headers = request.headers();
    let fetch_site = headers
        .get("sec-fetch-site")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = headers
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .filter(|o| *o != "null")
        .map(|o| o.split_once("://").map_or(o, |(_, rest)| rest));
    let foreign_origin = matches!((origin_host, host), (Some(o), Some(h)) if o != h);
    (fetch_site == "cross-site" || foreign_origin).then(|| {
        refuse(
            StatusCode::FORBIDDEN,
            request.uri().path(),
            "cross-site request refused",
        )
    })
}

/// Enforces a route's access level, and the CSRF token of a state-changing
/// request made with a session cookie.
pub async fn guard(access: Access, request: Request, next: Next) -> Response {
    let Access::Role(needed) = access else {
        return next.run(request).await;
    };
    let path = request.uri().path().to_owned();
    let Some(caller) = request.extensions().get::<Caller>().cloned() else {
        let expired = request.extensions().get::<SessionExpired>().is_some();
        if is_api(&path) || path.starts_with("/fragments/") {
            let message = if expired {
                "your session has expired; log in again"
            } else {
                "authentication required: a session, an API token (Bearer) or Basic credentials"
            };
            return refuse(StatusCode::UNAUTHORIZED, &path, message);
        }
        let target = request
            .uri()
            .path_and_query()
            .map_or(path.as_str(), |p| p.as_str());
        let mut login = format!("/login?next={}", crate::encoding::url_encode_path(target));
        if expired {
            login.push_str("&expired=1");
        }
        return Redirect::to(&login).into_response();
    };
    if caller.role < needed {
        let message = format!(
            "forbidden: this needs the {needed} role; `{}` is {}",
            caller.name, caller.role
        );
        if is_api(&path) || path.starts_with("/fragments/") {
            return refuse(StatusCode::FORBIDDEN, &path, &message);
        }
        return (StatusCode::FORBIDDEN, forbidden_page(&message)).into_response();
    }
    if let (Some(session), false) = (&caller.session, is_safe(request.method())) {
        return match csrf_checked(request, &session.csrf).await {
            Ok(request) => next.run(request).await,
            Err(refusal) => refusal,
        };
    }
    next.run(request).await
}

/// Where to go after logging in: only a path of this site, anything else
/// is `/`. A browser resolving `Location` skips tabs and newlines and
/// takes `\\` for `/` (`/\t/evil.example/` is `//evil.example/`, another
/// site), and a control character cannot go in a header at all: so the
/// path must start with one `/` not followed by another or by `\\`, and
/// hold visible ASCII only, no `\\`. The same holds once percent-decoded
/// (twice, for a double encoding), in case something on the way decodes
/// it.
pub fn safe_next(next: Option<&str>) -> String {
    fn local_path(bytes: &[u8]) -> bool {
        bytes.first() == Some(&b'/')
            && !matches!(bytes.get(1), Some(b'/' | b'\\'))
            && bytes.iter().all(|b| b.is_ascii_graphic() && *b != b'\\')
    }
    let Some(next) = next else {
        return "/".to_owned();
    };
    let mut form = next.as_bytes().to_vec();
    for _ in 0..3 {
        if !local_path(&form) {
            return "/".to_owned();
        }
        form = crate::encoding::url_decode(&form);
    }
    if local_path(&form) {
        next.to_owned()
    } else {
        "/".to_owned()
    }
}

#[derive(Deserialize)]
struct CsrfField {
    csrf: Option<String>,
}

/// Checks the token in the `X-CSRF-Token` header or the form's `csrf`
/// field, and gives the request back whole.
async fn csrf_checked(request: Request, expected: &str) -> Result<Request, Response> {
    let path = request.uri().path().to_owned();
    let refusal = || {
        refuse(
            StatusCode::FORBIDDEN,
            &path,
            "missing or wrong CSRF token: reload the page and try again",
        )
    };
    if let Some(token) = request.headers().get(CSRF_HEADER) {
        return if crypto::same(token.to_str().unwrap_or(""), expected) {
            Ok(request)
        } else {
            Err(refusal())
        };
    }
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let limit = request
        .extensions()
        .get::<BodyLimit>()
        .map_or(crate::config::Limits::default().max_body_bytes, |l| l.0);
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|_| {
        refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            &path,
            "request body too large",
        )
    })?;
    let reparse = || {
        // The method matters: a GET form is read from the query string.
        Request::builder()
            .method(Method::POST)
            .header(header::CONTENT_TYPE, &content_type)
            .body(Body::from(bytes.clone()))
            .unwrap_or_default()
    };
    let token = if content_type.starts_with("application/x-www-form-urlencoded") {
        axum::Form::<CsrfField>::from_request(reparse(), &())
            .await
            .ok()
            .and_then(|f| f.0.csrf)
    } else if content_type.starts_with("multipart/form-data") {
        let mut found = None;
        if let Ok(mut multipart) = axum::extract::Multipart::from_request(reparse(), &()).await {
            while let Ok(Some(field)) = multipart.next_field().await {
                if field.name() == Some(CSRF_FIELD) {
                    found = field.text().await.ok();
                    break;
                }
            }
        }
        found
    } else {
        None
    };
    match token {
        Some(token) if crypto::same(&token, expected) => {
            Ok(Request::from_parts(parts, Body::from(bytes)))
        }
        _ => Err(refusal()),
    }
}

/// Headers on every response: a CSP that allows no inline script, no
/// framing, no MIME sniffing, no referrer to other sites, and no caching
/// of pages that may show tokens.
pub async fn security_headers(
    State(ctx): State<Context>,
    request: Request,
    next: Next,
) -> Response {
    let is_static = request.uri().path().starts_with("/static/");
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; \
             object-src 'none'",
        ),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    headers.insert(
        "cross-origin-opener-policy",
        HeaderValue::from_static("same-origin"),
    );
    if ctx.tls {
        headers.insert(
            header::STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static("max-age=31536000"),
        );
    }
    if !is_static && !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

/// Every cookie of the service: out of scripts' reach, never sent by
/// another site, and only over TLS when the server speaks it.
fn cookie(
    ctx: &Context,
    name: &'static str,
    value: String,
    path: &'static str,
    max_age_secs: Option<i64>,
) -> HeaderValue {
    let mut cookie = Cookie::build((name, value))
        .http_only(true)
        .same_site(SameSite::Strict)
        .secure(ctx.tls)
        .path(path);
    if let Some(secs) = max_age_secs {
        cookie = cookie.max_age(cookie::time::Duration::seconds(secs));
    }
    HeaderValue::from_str(&cookie.build().to_string()).unwrap_or(HeaderValue::from_static(""))
}

/// The cookie of a session just started, lasting as long as the session.
pub fn session_cookie(ctx: &Context, session: NewSession) -> HeaderValue {
    let ttl = ctx.auth.settings.session_seconds();
    cookie(ctx, SESSION_COOKIE, session.cookie, "/", Some(ttl))
}

/// Tells the browser to forget its session cookie.
fn ended_session_cookie(ctx: &Context) -> HeaderValue {
    cookie(ctx, SESSION_COOKIE, String::new(), "/", Some(0))
}

fn login_cookie(ctx: &Context, value: &str) -> HeaderValue {
    cookie(ctx, LOGIN_COOKIE, value.to_owned(), "/login", None)
}

#[derive(askama::Template)]
#[template(path = "login.html")]
struct LoginPage {
    csrf: String,
    next: String,
    user: String,
    error: String,
    notice: String,
}

#[derive(Deserialize)]
pub struct LoginQuery {
    next: Option<String>,
    expired: Option<String>,
}

pub async fn login_page(
    State(ctx): State<Context>,
    MaybeCaller(caller): MaybeCaller,
    query: Result<axum::extract::Query<LoginQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    // A query that does not decode (`%FF`) is no reason to refuse the page.
    let query = query.map_or(
        LoginQuery {
            next: None,
            expired: None,
        },
        |q| q.0,
    );
    let next = safe_next(query.next.as_deref());
    if caller.is_some() {
        return Redirect::to(&next).into_response();
    }
    let notice = if query.expired.is_some() {
        "Your session has expired. Log in again."
    } else {
        ""
    };
    login_form(&ctx, StatusCode::OK, next, String::new(), "", notice)
}

fn login_form(
    ctx: &Context,
    status: StatusCode,
    next: String,
    user: String,
    error: &str,
    notice: &str,
) -> Response {
    let csrf = crypto::random_token();
    let page = LoginPage {
        csrf: csrf.clone(),
        next,
        user,
        error: error.to_owned(),
        notice: notice.to_owned(),
    };
    match super::html::render(&page) {
        Ok(html) => {
            let mut response = (status, html).into_response();
            response
                .headers_mut()
                .insert(header::SET_COOKIE, login_cookie(ctx, &csrf));
            response
        }
        Err(e) => e.into_response(),
    }
}

#[derive(Deserialize)]
pub struct LoginForm {
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    csrf: String,
    next: Option<String>,
}

pub async fn login(State(ctx): State<Context>, request: Request) -> Response {
    let client = client_ip(&request);
    let expected = cookie_value(request.headers(), LOGIN_COOKIE);
    let form = match axum::Form::<LoginForm>::from_request(request, &()).await {
        Ok(axum::Form(form)) => form,
        Err(e) => return (StatusCode::BAD_REQUEST, e.body_text()).into_response(),
    };
    let next = safe_next(form.next.as_deref());
    if !expected.is_some_and(|e| crypto::same(&e, &form.csrf)) {
        return login_form(
            &ctx,
            StatusCode::FORBIDDEN,
            next,
            form.user,
            "The form had expired. Try again.",
            "",
        );
    }
    match ctx
        .auth
        .check_password(client, &form.user, &form.password)
        .await
    {
        Ok(principal) => match ctx.auth.start_session(&principal).await {
            Ok(session) => {
                audit(&ctx, &principal.name, "login", &principal.name, json!({})).await;
                let mut response = Redirect::to(&next).into_response();
                response
                    .headers_mut()
                    .insert(header::SET_COOKIE, session_cookie(&ctx, session));
                response
            }
            Err(e) => super::ApiError::from(e).into_response(),
        },
        Err(e @ LoginError::Limited { retry_after }) => {
            let mut response = login_form(
                &ctx,
                StatusCode::TOO_MANY_REQUESTS,
                next,
                form.user,
                &e.to_string(),
                "",
            );
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after.as_secs().max(1)),
            );
            response
        }
        Err(e @ LoginError::Busy) => {
            let mut response = login_form(
                &ctx,
                StatusCode::SERVICE_UNAVAILABLE,
                next,
                form.user,
                &e.to_string(),
                "",
            );
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(1));
            response
        }
        Err(LoginError::Refused) => login_form(
            &ctx,
            StatusCode::UNAUTHORIZED,
            next,
            form.user,
            "Wrong user name or password.",
            "",
        ),
        Err(LoginError::Store(e)) => super::ApiError::from(e).into_response(),
    }
}

pub async fn logout(State(ctx): State<Context>, caller: Caller) -> Response {
    if let Some(session) = &caller.session {
        if let Err(e) = ctx.auth.end_session(&session.cookie).await {
            return super::ApiError::from(e).into_response();
        }
        audit(&ctx, &caller.name, "logout", &caller.name, json!({})).await;
    }
    let mut response = Redirect::to("/login").into_response();
    response
        .headers_mut()
        .insert(header::SET_COOKIE, ended_session_cookie(&ctx));
    response
}

/// Records a change in the audit log. A failure to record is logged, not
/// returned: the change itself is done.
pub async fn audit(
    ctx: &Context,
    actor: &str,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) {
    if let Err(e) = ctx.store.audit(actor, action, target, &detail).await {
        tracing::error!(
            "cannot record `{action}` on `{target}` by `{actor}` in the audit log: {e}"
        );
    }
}

#[derive(askama::Template)]
#[template(path = "forbidden.html")]
struct Forbidden<'a> {
    message: &'a str,
}

fn forbidden_page(message: &str) -> Response {
    match super::html::render(&Forbidden { message }) {
        Ok(html) => html.into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn after_login_only_a_path_of_this_site_is_followed() {
        assert_eq!(safe_next(Some("/outputs/a?x=1")), "/outputs/a?x=1");
        assert_eq!(safe_next(Some("/outputs/a%2Fb")), "/outputs/a%2Fb");
        for foreign in [
            "//evil.example/",
            "https://evil.example/",
            "/\\evil.example",
            "evil",
            "",
            "/%09/evil.example/",
            "/\t/evil.example/",
            "/%2F/evil.example/",
            "/%5Cevil.example",
            "/%252F/evil.example/",
            "/a\nb",
            "/a%0d%0aSet-Cookie:x=1",
            "/ /evil",
            "/caf\u{e9}",
        ] {
            assert_eq!(safe_next(Some(foreign)), "/", "{foreign}");
        }
        assert_eq!(safe_next(None), "/");
        assert_eq!(
            crate::encoding::url_encode_path("/outputs/new?kind=lua&x"),
            "/outputs/new%3Fkind%3Dlua%26x"
        );
    }

    #[test]
    fn cross_site_requests_are_told_apart() {
        let request = |method: Method, headers: &[(&str, &str)]| {
            let mut builder = Request::builder().method(method).uri("/api/v1/outputs");
            for (k, v) in headers {
                builder = builder.header(*k, *v);
            }
            builder.body(Body::empty()).unwrap()
        };
        let host = ("host", "brokerstream.example:8080");
        assert!(cross_site(&request(Method::POST, &[host])).is_none());
        assert!(cross_site(&request(
            Method::POST,
            &[host, ("origin", "https://brokerstream.example:8080")]
        ))
        .is_none());
        assert!(cross_site(&request(
            Method::POST,
            &[host, ("origin", "https://evil.example")]
        ))
        .is_some());
        assert!(cross_site(&request(
            Method::POST,
            &[host, ("sec-fetch-site", "cross-site")]
        ))
        .is_some());
        // Reading is never refused on these grounds.
        assert!(cross_site(&request(
            Method::GET,
            &[host, ("origin", "https://evil.example")]
        ))
        .is_none());
    }
}
