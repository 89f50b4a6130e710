//! The subcloud group routes: create, list, show, update, delete, and a group's members.

use super::{empty_response, json_response, ApiError, App, Fields};
use crate::domain::{ApplyType, Group, GroupPatch, Name, NewGroup, Ref};
use crate::wire;
use http::StatusCode;
use lambda_http::{Body, Response};

const DESCRIPTION_MAX: usize = 255;
/// dcmanager's default for a new group.
const DEFAULT_MAX_PARALLEL: u32 = 2;

pub(super) async fn list(app: &App) -> Result<Response<Body>, ApiError> {
    let all = app.inventory.groups().await?;
    Ok(json_response(StatusCode::OK, &wire::group_list(&all)))
}

pub(super) async fn show(app: &App, r: &Ref) -> Result<Response<Body>, ApiError> {
    let group = app.inventory.group(r).await?;
    Ok(json_response(StatusCode::OK, &wire::group(&group)))
}

pub(super) async fn members(app: &App, r: &Ref) -> Result<Response<Body>, ApiError> {
    let group = app.inventory.group(r).await?;
    let mut members = app.inventory.members(group.id).await?;
    members.sort_by_key(|s| s.id);
    Ok(json_response(
        StatusCode::OK,
        &wire::subcloud_list(&members),
    ))
}

pub(super) async fn create(app: &App, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let mut f = Fields::from_json(body)?;
    let new = NewGroup {
        name: f.required("name", Name::parse)?,
        description: f.text("description", DESCRIPTION_MAX)?.unwrap_or_default(),
        update_apply_type: f
            .parsed("update_apply_type", ApplyType::parse)?
            .unwrap_or(ApplyType::Parallel),
        max_parallel_subclouds: max_parallel(&mut f)?.unwrap_or(DEFAULT_MAX_PARALLEL),
    };
    f.finish()?;
    let group = app.inventory.create_group(new).await?;
    Ok(json_response(StatusCode::OK, &wire::group(&group)))
}

pub(super) async fn update(app: &App, r: &Ref, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let mut f = Fields::from_json(body)?;
    let patch = GroupPatch {
        name: f.parsed("name", Name::parse)?,
        description: f.text("description", DESCRIPTION_MAX)?,
        update_apply_type: f.parsed("update_apply_type", ApplyType::parse)?,
        max_parallel_subclouds: max_parallel(&mut f)?,
    };
    f.finish()?;
    if patch.is_empty() {
        return Err(ApiError::BadRequest(
            "Nothing to update; give at least one of name, description, update_apply_type, \
             max_parallel_subclouds"
                .to_owned(),
        ));
    }
    let group = app.inventory.update_group(r, patch).await?;
    Ok(json_response(StatusCode::OK, &wire::group(&group)))
}

pub(super) async fn delete(app: &App, r: &Ref) -> Result<Response<Body>, ApiError> {
    app.inventory.delete_group(r).await?;
    Ok(empty_response(StatusCode::OK))
}

fn max_parallel(f: &mut Fields) -> Result<Option<u32>, ApiError> {
    let key = "max_parallel_subclouds";
    Ok(f.integer(key)?
        .map(|v| Group::parse_max_parallel(key, v))
        .transpose()?)
}
