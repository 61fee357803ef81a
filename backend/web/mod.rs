//! The HTTP face of brokerstream: the REST API under `/api/v1` and the web
//! pages. One [`Context`] holds what handlers share.

mod error;
mod events;
mod form;
mod health;
mod inputs;
mod kinds;
mod metrics;
mod outputs;
mod pages;
mod rates;
mod scripts;
mod tail;

use std::sync::Arc;

use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use axum::Router;
use tower_http::services::ServeDir;

use crate::bbdo::Inputs;
use crate::ingest::Ingest;
use crate::journal::Journal;
use crate::output::Supervisor;
use crate::store::Store;

pub use error::ApiError;

/// Largest request body accepted (an NDJSON batch).
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

#[derive(Clone)]
pub struct Context(Arc<Shared>);

pub struct Shared {
    pub store: Store,
    pub supervisor: Arc<Supervisor>,
    pub ingest: Arc<Ingest>,
    pub journal: Arc<Journal>,
    /// BBDO listeners, connectors and their connections.
    pub inputs: Arc<Inputs>,
    /// Serializes definition changes, so the store and the running workers
    /// see them in the same order.
    pub writes: tokio::sync::Mutex<()>,
    /// Counters sampled for the pages' sparklines.
    pub rates: rates::Rates,
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
    ) -> Self {
        let shared = Arc::new(Shared {
            store,
            supervisor,
            ingest,
            journal,
            inputs,
            writes: tokio::sync::Mutex::new(()),
            rates: rates::Rates::default(),
            closing: tokio_util::sync::CancellationToken::new(),
        });
        // Holds a weak reference, so it ends when the service drops its context.
        tokio::spawn(rates::sample(Arc::downgrade(&shared)));
        Context(shared)
    }
}

pub fn router(ctx: Context) -> Router {
    let api = Router::new()
        .route("/events", post(events::ingest))
        .route("/inputs", get(inputs::list))
        .route("/kinds", get(kinds::list))
        .route("/outputs", get(outputs::list).post(outputs::create))
        .route(
            "/outputs/{name}",
            get(outputs::get)
                .put(outputs::replace)
                .patch(outputs::patch)
                .delete(outputs::delete),
        )
        .route("/outputs/{name}/parameters", get(outputs::list_parameters))
        .route(
            "/outputs/{name}/parameters/{param}",
            put(outputs::put_parameter).delete(outputs::delete_parameter),
        )
        .route("/outputs/{name}/status", get(outputs::status))
        .route("/outputs/{name}/flush", post(outputs::flush))
        .route("/outputs/{name}/replay", post(outputs::replay))
        .route("/outputs/{name}/skip", post(outputs::skip))
        .route("/outputs/{name}/pause", post(outputs::pause))
        .route("/outputs/{name}/resume", post(outputs::resume))
        .route("/outputs/{name}/restart", post(outputs::restart))
        .route("/outputs/{name}/tail", get(tail::stream))
        .route("/journal", get(journal_info))
        // viewer: the list; admin: a script's text, PUT, DELETE.
        .route("/scripts", get(scripts::list))
        .route(
            "/scripts/{name}",
            get(scripts::get).put(scripts::put).delete(scripts::delete),
        )
        .fallback(|| async { ApiError::NotFound("no such API route".into()) });
    Router::new()
        .nest("/api/v1", api)
        .route("/", get(pages::overview))
        .route("/fragments/overview", get(pages::overview_fragment))
        .route("/outputs/new", get(form::new_form).post(form::create))
        .route("/outputs/{name}", get(pages::detail))
        .route(
            "/outputs/{name}/edit",
            get(form::edit_form).post(form::update),
        )
        .route("/outputs/{name}/action", post(pages::action))
        .route("/fragments/outputs/{name}", get(pages::detail_fragment))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::metrics))
        .nest_service("/static", ServeDir::new(static_dir()))
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(ctx)
}

async fn journal_info(
    axum::extract::State(ctx): axum::extract::State<Context>,
) -> axum::Json<crate::journal::JournalInfo> {
    axum::Json(ctx.journal.info())
}

/// `static/` beside the binary's sources in development, or
/// `BROKERSTREAM_STATIC_DIR` for an installed service.
fn static_dir() -> std::path::PathBuf {
    std::env::var_os("BROKERSTREAM_STATIC_DIR")
        .map(Into::into)
        .unwrap_or_else(|| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("static"))
}
