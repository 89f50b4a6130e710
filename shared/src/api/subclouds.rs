//! The subcloud inventory routes: register, list, show (and its detail), update, delete.

use super::{empty_response, json_response, ApiError, App, Fields};
use crate::auth::{policy::rules, Principal};
use crate::domain::{
    AgentUrl, AvailabilityStatus, BackupStatus, DeployStatus, Invalid, ManagementState, Name,
    NetworkAddress, NewSubcloud, Ref, Release, SubcloudPatch,
};
use crate::wire;
use http::StatusCode;
use lambda_http::{Body, Response};

/// dcmanager's limit on description and location.
const TEXT_MAX: usize = 255;

pub(super) async fn list(app: &App) -> Result<Response<Body>, ApiError> {
    let all = app.inventory.subclouds().await?;
    Ok(json_response(StatusCode::OK, &wire::subcloud_list(&all)))
}

pub(super) async fn show(app: &App, r: &Ref) -> Result<Response<Body>, ApiError> {
    let subcloud = app.inventory.subcloud(r).await?;
    Ok(json_response(StatusCode::OK, &wire::subcloud(&subcloud)))
}

/// dcmanager's `subcloud show --detail`: the subcloud with its detail keys.
pub(super) async fn detail(app: &App, r: &Ref) -> Result<Response<Body>, ApiError> {
    let subcloud = app.inventory.subcloud(r).await?;
    Ok(json_response(
        StatusCode::OK,
        &wire::subcloud_detail(&subcloud),
    ))
}

pub(super) async fn register(app: &App, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let new = parse_new(Fields::from_json(body)?)?;
    let subcloud = app.inventory.register(new).await?;
    Ok(json_response(StatusCode::OK, &wire::subcloud(&subcloud)))
}

pub(super) async fn update(
    app: &App,
    principal: &Principal,
    r: &Ref,
    body: &[u8],
) -> Result<Response<Body>, ApiError> {
    let patch = parse_patch(Fields::from_json(body)?)?;
    let rule = if patch.only_manages() {
        rules::SUBCLOUDS_MANAGE_UNMANAGE
    } else {
        rules::SUBCLOUDS_MODIFY
    };
    app.auth
        .authorize(rule, principal)
        .map_err(ApiError::Forbidden)?;
    let subcloud = app.inventory.update_subcloud(r, patch).await?;
    Ok(json_response(StatusCode::OK, &wire::subcloud(&subcloud)))
}

pub(super) async fn delete(app: &App, r: &Ref) -> Result<Response<Body>, ApiError> {
    app.inventory.delete_subcloud(r).await?;
    Ok(empty_response(StatusCode::OK))
}

fn parse_new(mut f: Fields) -> Result<NewSubcloud, ApiError> {
    let new = NewSubcloud {
        name: f.required("name", Name::parse)?,
        software_version: f.required("software-version", |field, value| {
            Ok(Release::parse(field, value)?)
        })?,
        description: f.text("description", TEXT_MAX)?,
        location: f.text("location", TEXT_MAX)?,
        group: f.reference("group_id")?,
        management_state: f.parsed("management-state", ManagementState::parse)?,
        availability_status: f.parsed("availability-status", AvailabilityStatus::parse)?,
        deploy_status: f.parsed("deploy-status", DeployStatus::parse_settable)?,
        region_name: f.parsed("region-name", parse_region_name)?,
        management_subnet: f.parsed("management-subnet", NetworkAddress::parse_subnet)?,
        management_start_ip: f.parsed("management-start-ip", NetworkAddress::parse_ip)?,
        management_end_ip: f.parsed("management-end-ip", NetworkAddress::parse_ip)?,
        management_gateway_ip: f.parsed("management-gateway-ip", NetworkAddress::parse_ip)?,
        systemcontroller_gateway_ip: f
            .parsed("systemcontroller-gateway-ip", NetworkAddress::parse_ip)?,
        agent_url: f.parsed("agent-url", AgentUrl::parse)?,
    };
    f.finish()?;
    Ok(new)
}

fn parse_patch(mut f: Fields) -> Result<SubcloudPatch, ApiError> {
    let patch = SubcloudPatch {
        description: f.text("description", TEXT_MAX)?,
        location: f.text("location", TEXT_MAX)?,
        management_state: f.parsed("management-state", ManagementState::parse)?,
        availability_status: f.parsed("availability-status", AvailabilityStatus::parse)?,
        deploy_status: f.parsed("deploy-status", DeployStatus::parse_settable)?,
        backup_status: f.parsed("backup-status", BackupStatus::parse_final)?,
        group: f.reference("group_id")?,
        agent_url: f.parsed("agent-url", AgentUrl::parse)?,
        bootstrap_address: f.parsed("bootstrap-address", |field, v| {
            v.parse()
                .map_err(|_| Invalid::field(field, format!("'{v}' is not an IPv4 or IPv6 address")))
        })?,
    };
    f.finish()?;
    if patch.is_empty() {
        return Err(ApiError::BadRequest(
            "Nothing to update; give at least one of description, location, management-state, \
             availability-status, deploy-status, backup-status, group_id, agent-url, bootstrap-address"
                .to_owned(),
        ));
    }
    Ok(patch)
}

fn parse_region_name(field: &str, value: &str) -> Result<String, Invalid> {
    let ok = !value.is_empty()
        && value.len() <= 255
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(value.to_owned())
    } else {
        Err(Invalid::field(
            field,
            "use 1-255 letters, digits, '-' and '_'",
        ))
    }
}
