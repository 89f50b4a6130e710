//! What the operations left: their records (one by id, a subcloud's history, newest first)
//! and the backups kept of a subcloud, newest first.

use super::{json_response, ApiError, App};
use crate::domain::{OpId, Ref};
use crate::wire;
use http::StatusCode;
use lambda_http::{Body, Response};

pub(super) async fn show(app: &App, op_id: &OpId) -> Result<Response<Body>, ApiError> {
    let op = app
        .inventory
        .operation(op_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Operation not found: {op_id}")))?;
    Ok(json_response(StatusCode::OK, &wire::operation(&op)))
}

pub(super) async fn history(app: &App, r: &Ref) -> Result<Response<Body>, ApiError> {
    let subcloud = app.inventory.subcloud(r).await?;
    let ops = app.inventory.operation_history(&subcloud).await?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "operations": ops.iter().map(wire::operation).collect::<Vec<_>>() }),
    ))
}

pub(super) async fn backups(app: &App, r: &Ref) -> Result<Response<Body>, ApiError> {
    let subcloud = app.inventory.subcloud(r).await?;
    let mut backups = app.inventory.backups(subcloud.id).await?;
    // Newest first, like the history (dcmanager timestamps sort as text).
    backups.sort_by(|a, b| b.created_at.cmp(&a.created_at));
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "backups": backups.iter().map(wire::backup).collect::<Vec<_>>() }),
    ))
}
