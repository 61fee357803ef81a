//! The HTTP face of brokerstream: the REST API under `/api/v1` and the web
//! pages. One [`Context`] holds what handlers share.

pub mod assets;
mod auth;
mod deadletters;
mod drafts;
mod error;
mod events;
mod flash;
mod form;
mod health;
mod html;
mod inputs;
mod kinds;
mod metrics;
mod outputs;
mod pages;
mod rates;
mod script_pages;
mod scripts;
pub mod server;
mod tail;
mod users;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::handler::Handler;
use axum::http::{header, Method, StatusCode};
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{on, MethodFilter};
use axum::Router;
use tower_http::services::ServeDir;

use crate::auth::{Auth, Role};
use crate::bbdo::Inputs;
use crate::config::Limits;
use crate::control::OutputAdmin;
use crate::ingest::{Feed, Ingest, SourceKind};
use crate::journal::Journal;
use crate::output::Supervisor;
use crate::store::Store;

pub use auth::{Access, Caller};
pub use error::ApiError;
pub use events::SMALL_INGEST_BODY;

/// What the web layer takes from the configuration.
#[derive(Clone, Debug, Default)]
pub struct WebSettings {
    pub limits: Limits,
    /// The server speaks HTTPS (`http.tls_cert`): cookies may be `Secure`.
    pub tls: bool,
    /// The HTTP server's connection counters, for `/metrics`.
    pub http_stats: Arc<server::HttpStats>,
    /// The `Host` names requests may carry; `None`: any.
    pub allowed_hosts: Option<Vec<String>>,
}

#[derive(Clone)]
pub struct Context(Arc<Shared>);

pub struct Shared {
    pub store: Store,
    pub supervisor: Arc<Supervisor>,
    pub ingest: Arc<Ingest>,
    /// `POST /api/v1/events`, as a source of its own.
    pub http_events: Arc<Feed>,
    pub journal: Arc<Journal>,
    /// BBDO listeners, connectors and their connections.
    pub inputs: Arc<Inputs>,
    pub auth: Arc<Auth>,
    /// Every change to an output goes through it (it holds the lock that
    /// orders them); handlers only translate HTTP to it and back.
    pub admin: Arc<OutputAdmin>,
    /// Counters sampled for the pages' sparklines.
    pub rates: rates::Rates,
    /// Messages waiting for a browser session's next page.
    pub flashes: flash::Flashes,
    /// Passwords typed into output forms not saved yet.
    pub drafts: drafts::Drafts,
    /// `[limits]`: body and NDJSON line sizes, outputs and parameters.
    pub limits: Limits,
    /// `limits.max_concurrent_ingest` permits: large NDJSON bodies read at
    /// once.
    pub ingest_bodies: Arc<tokio::sync::Semaphore>,
    /// The server speaks HTTPS: cookies get `Secure`, responses HSTS.
    pub tls: bool,
    pub http_stats: Arc<server::HttpStats>,
    pub allowed_hosts: Option<Vec<String>>,
    /// Cancelled when the service stops: long-lived responses (the live
    /// tail) end then, or the HTTP server's graceful shutdown would wait
    /// for every watching browser.
    pub closing: tokio_util::sync::CancellationToken,
}

impl std::ops::Deref for Context {
    type Target = Shared;
    fn deref(&self) -> &Shared {
        &self.0
    }
}

impl Context {
    pub fn new(
        store: Store,
        supervisor: Arc<Supervisor>,
        ingest: Arc<Ingest>,
        journal: Arc<Journal>,
        inputs: Arc<Inputs>,
        auth: Arc<Auth>,
        settings: WebSettings,
    ) -> Self {
        // The service's one admin: every route that changes an output shares
        // it, and with it the lock that orders the changes.
        let admin = Arc::new(OutputAdmin::new(
            store.clone(),
            settings.limits.clone(),
            Arc::clone(&supervisor),
        ));
        let http_events = ingest.feed(SourceKind::Http, "POST /api/v1/events".into());
        let shared = Arc::new(Shared {
            store,
            supervisor,
            ingest,
            http_events,
            journal,
            inputs,
            auth,
            admin,
            rates: rates::Rates::default(),
            flashes: flash::Flashes::default(),
            drafts: drafts::Drafts::default(),
            ingest_bodies: Arc::new(tokio::sync::Semaphore::new(
                settings.limits.max_concurrent_ingest.max(1),
            )),
            limits: settings.limits,
            tls: settings.tls,
            http_stats: settings.http_stats,
            allowed_hosts: settings.allowed_hosts,
            closing: tokio_util::sync::CancellationToken::new(),
        });
        // Holds a weak reference, so it ends when the service drops its context.
        tokio::spawn(rates::sample(Arc::downgrade(&shared)));
        Context(shared)
    }
}

/// A route and who may reach it. The router is built from these rules
/// only, so a route cannot exist without an access level, and the test of
/// the access table walks every one of them.
#[derive(Clone, Debug)]
pub struct RouteRule {
    pub method: Method,
    pub path: &'static str,
    pub access: Access,
}

struct Routes {
    router: Router<Context>,
    rules: Vec<RouteRule>,
}

impl Routes {
    fn add<H, T>(mut self, method: Method, path: &'static str, access: Access, handler: H) -> Self
    where
        H: Handler<T, Context>,
        T: 'static,
    {
        let filter = MethodFilter::try_from(method.clone()).expect("a method axum routes");
        let route = on(filter, handler).route_layer(middleware::from_fn(
            move |request: axum::extract::Request, next: middleware::Next| {
                auth::guard(access, request, next)
            },
        ));
        self.router = self.router.route(path, route);
        self.rules.push(RouteRule {
            method,
            path,
            access,
        });
        self
    }
}

fn routes() -> Routes {
    use Method as M;
    const PUBLIC: Access = Access::Public;
    const VIEWER: Access = Access::Role(Role::Viewer);
    const OPERATOR: Access = Access::Role(Role::Operator);
    const ADMIN: Access = Access::Role(Role::Admin);
    Routes {
        router: Router::new(),
        rules: Vec::new(),
    }
    // Events come from producers that also operate outputs; a read-only
    // viewer must not inject events.
    .add(M::POST, "/api/v1/events", OPERATOR, events::ingest)
    .add(M::GET, "/api/v1/inputs", VIEWER, inputs::list)
    .add(M::GET, "/api/v1/kinds", VIEWER, kinds::list)
    .add(M::GET, "/api/v1/journal", VIEWER, journal_info)
    .add(M::GET, "/api/v1/outputs", VIEWER, outputs::list)
    .add(M::POST, "/api/v1/outputs", ADMIN, outputs::create)
    .add(M::GET, "/api/v1/outputs/{name}", VIEWER, outputs::get)
    .add(M::PUT, "/api/v1/outputs/{name}", ADMIN, outputs::replace)
    .add(M::PATCH, "/api/v1/outputs/{name}", ADMIN, outputs::patch)
    .add(M::DELETE, "/api/v1/outputs/{name}", ADMIN, outputs::delete)
    .add(
        M::POST,
        "/api/v1/outputs/{name}/rename",
        ADMIN,
        outputs::rename,
    )
    .add(
        M::POST,
        "/api/v1/outputs/{name}/clone",
        ADMIN,
        outputs::clone,
    )
    .add(
        M::GET,
        "/api/v1/outputs/{name}/parameters",
        VIEWER,
        outputs::list_parameters,
    )
    .add(
        M::PUT,
        "/api/v1/outputs/{name}/parameters/{param}",
        ADMIN,
        outputs::put_parameter,
    )
    .add(
        M::DELETE,
        "/api/v1/outputs/{name}/parameters/{param}",
        ADMIN,
        outputs::delete_parameter,
    )
    .add(
        M::GET,
        "/api/v1/outputs/{name}/status",
        VIEWER,
        outputs::status,
    )
    .add(M::GET, "/api/v1/outputs/{name}/logs", VIEWER, outputs::logs)
    .add(
        M::GET,
        "/api/v1/outputs/{name}/rates",
        VIEWER,
        outputs::rates,
    )
    .add(
        M::GET,
        "/api/v1/outputs/{name}/deadletters",
        VIEWER,
        deadletters::list,
    )
    // Replaying sends data to a destination and discarding deletes it for
    // good: admins only, like the definition itself.
    .add(
        M::POST,
        "/api/v1/outputs/{name}/deadletters/replay",
        ADMIN,
        deadletters::replay,
    )
    .add(
        M::DELETE,
        "/api/v1/outputs/{name}/deadletters",
        ADMIN,
        deadletters::discard,
    )
    .add(M::GET, "/api/v1/outputs/{name}/tail", VIEWER, tail::stream)
    .add(
        M::POST,
        "/api/v1/outputs/{name}/flush",
        OPERATOR,
        outputs::flush,
    )
    .add(
        M::POST,
        "/api/v1/outputs/{name}/replay",
        OPERATOR,
        outputs::replay,
    )
    .add(
        M::POST,
        "/api/v1/outputs/{name}/skip",
        OPERATOR,
        outputs::skip,
    )
    .add(
        M::POST,
        "/api/v1/outputs/{name}/pause",
        OPERATOR,
        outputs::pause,
    )
    .add(
        M::POST,
        "/api/v1/outputs/{name}/resume",
        OPERATOR,
        outputs::resume,
    )
    .add(
        M::POST,
        "/api/v1/outputs/{name}/restart",
        OPERATOR,
        outputs::restart,
    )
    .add(M::GET, "/api/v1/scripts", VIEWER, scripts::list)
    // A script's text may hold credentials: admins only.
    .add(M::GET, "/api/v1/scripts/{name}", ADMIN, scripts::get)
    .add(M::PUT, "/api/v1/scripts/{name}", ADMIN, scripts::put)
    .add(M::DELETE, "/api/v1/scripts/{name}", ADMIN, scripts::delete)
    .add(M::GET, "/api/v1/me", VIEWER, users::me)
    .add(
        M::PUT,
        "/api/v1/me/password",
        VIEWER,
        users::change_own_password_api,
    )
    .add(M::GET, "/api/v1/users", ADMIN, users::list)
    .add(M::POST, "/api/v1/users", ADMIN, users::create)
    .add(M::GET, "/api/v1/users/{user}", ADMIN, users::get)
    .add(M::PATCH, "/api/v1/users/{user}", ADMIN, users::update)
    .add(M::DELETE, "/api/v1/users/{user}", ADMIN, users::delete)
    .add(M::GET, "/api/v1/tokens", ADMIN, users::list_tokens)
    .add(M::POST, "/api/v1/tokens", ADMIN, users::create_token_api)
    .add(M::DELETE, "/api/v1/tokens/{id}", ADMIN, users::revoke)
    .add(M::GET, "/api/v1/audit", ADMIN, users::audit_log)
    .add(M::GET, "/", VIEWER, pages::overview)
    .add(
        M::GET,
        "/fragments/overview",
        VIEWER,
        pages::overview_fragment,
    )
    .add(
        M::GET,
        "/fragments/outputs/{name}",
        VIEWER,
        pages::detail_fragment,
    )
    .add(M::GET, "/outputs/new", ADMIN, form::new_form)
    .add(M::POST, "/outputs/new", ADMIN, form::create)
    .add(M::GET, "/outputs/{name}", VIEWER, pages::detail)
    .add(M::GET, "/outputs/{name}/edit", ADMIN, form::edit_form)
    .add(M::POST, "/outputs/{name}/edit", ADMIN, form::update)
    .add(M::POST, "/outputs/{name}/action", OPERATOR, pages::action)
    .add(M::GET, "/outputs/{name}/delete", ADMIN, pages::delete_page)
    .add(M::POST, "/outputs/{name}/delete", ADMIN, pages::delete)
    .add(M::POST, "/outputs/{name}/rename", ADMIN, pages::rename)
    .add(M::POST, "/outputs/{name}/clone", ADMIN, pages::clone)
    .add(
        M::POST,
        "/outputs/{name}/deadletters",
        ADMIN,
        deadletters::action,
    )
    .add(M::GET, "/scripts", VIEWER, script_pages::list_page)
    // A script's text may hold credentials: admins only, as in the API.
    .add(M::GET, "/scripts/{name}", ADMIN, script_pages::script)
    .add(M::POST, "/scripts/{name}", ADMIN, script_pages::edit)
    .add(
        M::POST,
        "/scripts/{name}/upload",
        ADMIN,
        script_pages::upload,
    )
    .add(
        M::POST,
        "/scripts/{name}/delete",
        ADMIN,
        script_pages::delete,
    )
    .add(M::GET, "/account", VIEWER, users::account_page)
    .add(M::POST, "/account", VIEWER, users::account_submit)
    .add(M::GET, "/users", ADMIN, users::users_page)
    .add(M::POST, "/users", ADMIN, users::users_submit)
    .add(M::GET, "/tokens", ADMIN, users::tokens_page)
    .add(M::POST, "/tokens", ADMIN, users::tokens_submit)
    .add(M::GET, "/audit", ADMIN, users::audit_page)
    .add(M::GET, "/login", PUBLIC, auth::login_page)
    .add(M::POST, "/login", PUBLIC, auth::login)
    .add(M::POST, "/logout", VIEWER, auth::logout)
    // Probes are anonymous; /readyz details outputs only to a caller.
    .add(M::GET, "/healthz", PUBLIC, health::healthz)
    .add(M::GET, "/readyz", PUBLIC, health::readyz)
    .add(M::GET, "/metrics", VIEWER, metrics::metrics)
}

/// Every route with its access level, for tests and documentation.
pub fn route_table() -> Vec<RouteRule> {
    routes().rules
}

pub fn router(ctx: Context) -> Router {
    let max_body = ctx.limits.max_body_bytes;
    // Stylesheets and scripts, for everyone: the login page needs them too.
    let statics = match assets::override_dir() {
        Some(dir) => Router::new().nest_service("/static", ServeDir::new(dir)),
        None => Router::new().route("/static/{*name}", axum::routing::get(assets::serve)),
    };
    routes()
        .router
        .merge(statics)
        .fallback(|uri: axum::http::Uri| async move {
            if uri.path().starts_with("/api/") {
                ApiError::NotFound("no such API route".into()).into_response()
            } else {
                (axum::http::StatusCode::NOT_FOUND, "no such page").into_response()
            }
        })
        .layer(middleware::from_fn_with_state(
            ctx.clone(),
            auth::authenticate,
        ))
        .layer(middleware::from_fn_with_state(ctx.clone(), check_host))
        .layer(middleware::from_fn_with_state(
            ctx.clone(),
            auth::security_headers,
        ))
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::map_response_with_state(
            max_body,
            body_limit_as_json,
        ))
        .with_state(ctx)
}

/// Answers 421 to a request whose `Host` is not one of
/// `http.allowed_hosts`, before anything else looks at it.
async fn check_host(
    State(ctx): State<Context>,
    request: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    if let (Some(allowed), Some(host)) = (&ctx.allowed_hosts, request.headers().get(header::HOST)) {
        let name = host_name(host.as_bytes());
        if !allowed.iter().any(|a| name.as_deref() == Some(a.as_str())) {
            return (
                StatusCode::MISDIRECTED_REQUEST,
                "this service does not answer to that host name (http.allowed_hosts)",
            )
                .into_response();
        }
    }
    next.run(request).await
}

/// The name of a `Host` header, lower-case, without its port or the
/// brackets of an IPv6 address.
fn host_name(host: &[u8]) -> Option<String> {
    let host = std::str::from_utf8(host).ok()?.trim().to_ascii_lowercase();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split_once(']').map(|(name, _)| name.to_owned());
    }
    Some(match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name.to_owned(),
        _ => host,
    })
}

/// axum's extractors answer a body over the limit with a plain-text 413;
/// every error of this service is JSON and names the limit.
async fn body_limit_as_json(State(limit): State<usize>, response: Response) -> Response {
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_json {
        return ApiError::PayloadTooLarge(body_limit_message(limit)).into_response();
    }
    response
}

pub(crate) fn body_limit_message(limit: usize) -> String {
    format!("the request body is larger than the {limit}-byte limit (limits.max_body_bytes)")
}

async fn journal_info(
    axum::extract::State(ctx): axum::extract::State<Context>,
) -> axum::Json<crate::journal::JournalInfo> {
    axum::Json(ctx.journal.info())
}

#[cfg(test)]
mod tests {
    use super::host_name;

    #[test]
    fn host_names_lose_their_port_and_brackets() {
        assert_eq!(host_name(b"127.0.0.1:8080").as_deref(), Some("127.0.0.1"));
        assert_eq!(host_name(b"LocalHost").as_deref(), Some("localhost"));
        assert_eq!(host_name(b"[::1]:8080").as_deref(), Some("::1"));
        assert_eq!(
            host_name(b"evil.example:80").as_deref(),
            Some("evil.example")
        );
        assert_eq!(host_name(b"\xff"), None);
    }
}
