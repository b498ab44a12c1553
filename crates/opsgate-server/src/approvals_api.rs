//! `/api/v1/approvals`: the approval queue over HTTP (JSON), for consoles and chat bots. The
//! caller is whoever the identity middleware authenticated; the store's rules decide what that
//! principal may do, exactly as for `opsgate approvals`.
//!
//! - `GET /api/v1/approvals?status=pending` — requests, newest first (arguments redacted): those
//!   the caller may read, that is requested or holds a role that may approve (`may_see`)
//! - `GET /api/v1/approvals/{id}` — one request with its decisions; 403 for anyone else
//! - `POST /api/v1/approvals/{id}/approve` and `/reject` — body `{"comment": "…"}` (optional)

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use opsgate_core::Principal;
use opsgate_store::{Approval, ApprovalError};
use serde::Deserialize;
use serde_json::json;

use crate::approvals::{may_see, shown, status_filter};
use crate::http::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/v1/approvals", get(list))
        .route("/api/v1/approvals/{id}", get(show))
        .route("/api/v1/approvals/{id}/approve", post(approve))
        .route("/api/v1/approvals/{id}/reject", post(reject))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListQuery {
    status: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    comment: Option<String>,
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (status, Json(json!({"error": message.into()}))).into_response()
}

/// Stored arguments can hold secrets the call needs; they never leave in a response.
fn redacted(state: &AppState, approval: Approval) -> Approval {
    shown(approval, state.mcp.pipeline.redactor())
}

async fn list(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Query(query): Query<ListQuery>,
) -> Response {
    let status = match status_filter(query.status.as_deref()) {
        Ok(status) => status,
        Err(message) => return error(StatusCode::BAD_REQUEST, message),
    };
    match state.store.approvals_where(status, 200, |approval| may_see(approval, &principal)).await {
        Ok(approvals) => {
            let approvals: Vec<Approval> = approvals.into_iter().map(|approval| redacted(&state, approval)).collect();
            Json(json!({ "approvals": approvals })).into_response()
        }
        Err(store_error) => error(StatusCode::SERVICE_UNAVAILABLE, store_error.to_string()),
    }
}

async fn show(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
) -> Response {
    if !opsgate_store::approvals::is_valid_approval_id(&id) {
        return error(StatusCode::BAD_REQUEST, ApprovalError::MalformedId(id).to_string());
    }
    match state.store.approval(&id).await {
        Ok(Some(approval)) if may_see(&approval, &principal) => Json(redacted(&state, approval)).into_response(),
        Ok(Some(_)) => error(
            StatusCode::FORBIDDEN,
            format!("approval {id} belongs to another principal; only its requester and its approvers may read it"),
        ),
        Ok(None) => error(StatusCode::NOT_FOUND, ApprovalError::NotFound(id).to_string()),
        Err(store_error) => error(StatusCode::SERVICE_UNAVAILABLE, store_error.to_string()),
    }
}

async fn approve(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    body: Option<Json<DecisionBody>>,
) -> Response {
    decide(state, principal, id, true, body.map(|Json(body)| body).unwrap_or_default()).await
}

async fn reject(
    State(state): State<AppState>,
    Extension(principal): Extension<Principal>,
    Path(id): Path<String>,
    body: Option<Json<DecisionBody>>,
) -> Response {
    decide(state, principal, id, false, body.map(|Json(body)| body).unwrap_or_default()).await
}

async fn decide(state: AppState, principal: Principal, id: String, approve: bool, body: DecisionBody) -> Response {
    let pipeline = &state.mcp.pipeline;
    match pipeline.decide_approval(&principal, &id, approve, body.comment.as_deref()).await {
        Ok(status) => match state.store.approval(&id).await {
            Ok(Some(approval)) => {
                Json(json!({"status": status, "approval": redacted(&state, approval)})).into_response()
            }
            _ => Json(json!({"status": status})).into_response(),
        },
        Err(refused) => {
            let status = match &refused {
                ApprovalError::MalformedId(_) => StatusCode::BAD_REQUEST,
                ApprovalError::NotFound(_) => StatusCode::NOT_FOUND,
                ApprovalError::SelfApproval { .. } | ApprovalError::MissingRole { .. } => StatusCode::FORBIDDEN,
                ApprovalError::NotPending { .. }
                | ApprovalError::Expired { .. }
                | ApprovalError::AlreadyDecided { .. } => StatusCode::CONFLICT,
                ApprovalError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            error(status, refused.to_string())
        }
    }
}
