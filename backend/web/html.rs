//! What every page handler shares, below them all: rendering a template
//! into a response, and encoding a name for a redirect's path.

use askama::Template;
use axum::response::Html;
use serde::Deserialize;

use super::error::ApiError;

pub(super) fn render(page: &impl Template) -> Result<Html<String>, ApiError> {
    page.render()
        .map(Html)
        .map_err(|e| ApiError::Internal(e.to_string()))
}

pub(super) fn form_urlencode(text: &str) -> String {
    crate::encoding::url_encode(text.as_bytes())
}

/// A destructive action's checkbox, `<input type="checkbox" name="confirm"
/// value="yes" required>` in the templates: the browser refuses the form
/// unticked, and the server checks again, so the confirmation holds
/// without JavaScript.
#[derive(Debug, Default, Deserialize)]
#[serde(transparent)]
pub struct Confirm(String);

impl Confirm {
    pub fn ticked(&self) -> bool {
        self.0 == "yes"
    }
}

/// A form whose only field is that checkbox.
#[derive(Deserialize)]
pub struct ConfirmForm {
    #[serde(default)]
    pub confirm: Confirm,
}
