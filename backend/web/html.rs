//! What every page handler shares, below them all: rendering a template
//! into a response, and encoding a name for a redirect's path.

use askama::Template;
use axum::response::Html;

use super::error::ApiError;

pub(super) fn render(page: &impl Template) -> Result<Html<String>, ApiError> {
    page.render()
        .map(Html)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

pub(super) fn form_urlencode(text: &str) -> String {
    crate::encoding::url_encode(text.as_bytes())
}
