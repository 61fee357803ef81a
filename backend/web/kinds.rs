//! `GET /api/v1/kinds`: the output kinds and their parameter schemas.

use axum::Json;

use crate::output::kinds::{Kind, KINDS};

pub async fn list() -> Json<&'static [&'static Kind]> {
    Json(KINDS)
}
