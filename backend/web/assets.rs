//! The stylesheet and scripts of `static/`, built into the binary: an
//! installed service needs no file beside it. Pages link each file with
//! its content's hash (`/static/style.css?v=3f2a…`), so a browser may keep
//! it for a year and still gets the new one after an upgrade; a request
//! without the current hash is answered with `no-cache` and an `ETag`.
//!
//! `BROKERSTREAM_STATIC_DIR` serves a directory instead, read at each
//! request, for editing the files without rebuilding.

use std::path::PathBuf;
use std::sync::OnceLock;

use axum::body::Body;
use axum::extract::{Path, Query};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use rust_embed::Embed;
use serde::Deserialize;

#[derive(Embed)]
#[folder = "static/"]
struct Files;

/// The development override, read once.
pub fn override_dir() -> Option<&'static PathBuf> {
    static DIR: OnceLock<Option<PathBuf>> = OnceLock::new();
    DIR.get_or_init(|| std::env::var_os("BROKERSTREAM_STATIC_DIR").map(PathBuf::from))
        .as_ref()
}

/// The first 64 bits of the file's SHA-256, in hex: its version.
fn version(name: &str) -> Option<String> {
    let file = Files::get(name)?;
    Some(
        file.metadata.sha256_hash()[..8]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect(),
    )
}

/// The link to a file of `static/`, with its version; templates call it.
pub fn url(name: &str) -> String {
    match (override_dir(), version(name)) {
        (None, Some(version)) => format!("/static/{name}?v={version}"),
        _ => format!("/static/{name}"),
    }
}

#[derive(Deserialize)]
pub struct Versioned {
    v: Option<String>,
}

/// `GET /static/{*name}`, from the binary (the override directory is
/// served by the router itself).
pub async fn serve(
    Path(name): Path<String>,
    Query(query): Query<Versioned>,
    headers: HeaderMap,
) -> Response {
    let Some(file) = Files::get(&name) else {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    };
    let version = version(&name).unwrap_or_default();
    let etag = format!("\"{version}\"");
    let cache = if query.v.as_deref() == Some(version.as_str()) {
        "public, max-age=31536000, immutable"
    } else {
        "no-cache"
    };
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let mut response = Body::from(file.data.into_owned()).into_response();
        if let Ok(mime) = HeaderValue::from_str(file.metadata.mimetype()) {
            response.headers_mut().insert(header::CONTENT_TYPE, mime);
        }
        response
    };
    let headers = response.headers_mut();
    if let Ok(etag) = HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, etag);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}
