//! `POST /api/v1/reload`: the SIGHUP reload, asked for over HTTP (token required). The supervisor loop does the
//! work (see [`crate::reload`]); this answers its summary, or 400 with the located error when the file is refused.

use axum::extract::State as Extract;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;

use super::{ApiResult, AppState, error};

pub(super) async fn reload(Extract(state): Extract<AppState>, headers: HeaderMap) -> ApiResult {
    state.authorize(&headers)?;
    let answer = state.shared.reload.request().await;
    state.changed();
    match answer {
        Ok(summary) => Ok(axum::Json(summary).into_response()),
        Err(Some(refused)) => Err(error(StatusCode::BAD_REQUEST, format!("reload refused: {refused}"))),
        Err(None) => Err(error(StatusCode::SERVICE_UNAVAILABLE, "the supervisor is busy or stopping; try again")),
    }
}
