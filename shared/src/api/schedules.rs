//! The backup-schedule routes (SPEC §5): create, list, show, update, delete. A schedule's
//! target is resolved to an id when it is written (an unknown one is a 400 naming the
//! field), its cron and zone are parsed then too, and `next-run` is computed from them;
//! `next-run` and `last-run` are read-only.

use super::{json_response, ApiError, App, Fields};
use crate::domain::{
    epoch_now, timestamp_now, without_secrets, CronSpec, Invalid, Name, OpOptions, Ref, Schedule,
    ScheduleTarget,
};
use crate::store::InventoryError;
use crate::wire;
use http::StatusCode;
use lambda_http::{Body, Response};

/// `backup_values` larger than this (as JSON) are refused, as on subcloud-backup create.
const VALUES_MAX_BYTES: usize = 16 * 1024;

pub(super) async fn list(app: &App) -> Result<Response<Body>, ApiError> {
    let all = app.inventory.schedules().await?;
    Ok(json_response(
        StatusCode::OK,
        &serde_json::json!({ "backup_schedules": all.iter().map(wire::schedule).collect::<Vec<_>>() }),
    ))
}

pub(super) async fn show(app: &App, r: &Ref) -> Result<Response<Body>, ApiError> {
    let schedule = app.inventory.schedule(r).await?;
    Ok(json_response(StatusCode::OK, &wire::schedule(&schedule)))
}

pub(super) async fn delete(app: &App, r: &Ref) -> Result<Response<Body>, ApiError> {
    let schedule = app.inventory.delete_schedule(r).await?;
    Ok(json_response(StatusCode::OK, &wire::schedule(&schedule)))
}

/// What a create or update request says; absent fields are `None`.
#[derive(Debug, Default)]
struct Given {
    name: Option<Name>,
    target: Option<ScheduleTarget>,
    local_only: Option<bool>,
    registry_images: Option<bool>,
    backup_values: Option<serde_json::Map<String, serde_json::Value>>,
    cron: Option<String>,
    timezone: Option<String>,
    start_window: Option<Option<u64>>,
    retain: Option<u64>,
    enabled: Option<bool>,
}

impl Given {
    async fn parse(app: &App, body: &[u8]) -> Result<Given, ApiError> {
        let mut f = Fields::from_json(body)?;
        let name = f.parsed("name", Name::parse)?;
        let subcloud = f.reference("subcloud")?;
        let group = f.reference("group")?;
        let local_only = f.boolean("local_only")?;
        let registry_images = f.boolean("registry_images")?;
        let backup_values = f.mapping("backup_values")?.map(without_secrets);
        let cron = f.string("cron")?;
        let timezone = f.string("timezone")?;
        let start_window = match f.integer("start_window")? {
            None => None,
            // 0 removes the window: a late firing always runs.
            Some(0) => Some(None),
            Some(minutes) => Some(Some(
                u64::try_from(minutes)
                    .ok()
                    .filter(|m| *m <= Schedule::MAX_START_WINDOW)
                    .ok_or_else(|| {
                        Invalid::field(
                            "start_window",
                            format!("must be 0 to {} minutes", Schedule::MAX_START_WINDOW),
                        )
                    })?,
            )),
        };
        let retain = f
            .integer("retain")?
            .map(|v| {
                u64::try_from(v)
                    .ok()
                    .filter(|v| *v <= Schedule::MAX_RETAIN)
                    .ok_or_else(|| {
                        Invalid::field("retain", format!("must be 0 to {}", Schedule::MAX_RETAIN))
                    })
            })
            .transpose()?;
        let enabled = f.boolean("enabled")?;
        f.finish()?;
        if let Some(values) = &backup_values {
            if serde_json::Value::Object(values.clone()).to_string().len() > VALUES_MAX_BYTES {
                return Err(ApiError::BadRequest(format!(
                    "backup_values is too large; keep it under {VALUES_MAX_BYTES} bytes"
                )));
            }
        }
        let target = match (subcloud, group) {
            (Some(_), Some(_)) => {
                return Err(ApiError::BadRequest(
                    "'subcloud' and 'group' parameters should not be given at the same time".into(),
                ))
            }
            (Some(r), None) => Some(ScheduleTarget::Subcloud(resolved(
                app.inventory.subcloud(&r).await.map(|s| s.id),
                "subcloud",
            )?)),
            (None, Some(r)) => Some(ScheduleTarget::Group(resolved(
                app.inventory.group(&r).await.map(|g| g.id),
                "group",
            )?)),
            (None, None) => None,
        };
        Ok(Given {
            name,
            target,
            local_only,
            registry_images,
            backup_values,
            cron,
            timezone,
            start_window,
            retain,
            enabled,
        })
    }

    /// The schedule with these fields applied, checked as a whole, its next run recomputed
    /// from `now` when its timing changed.
    fn apply(&self, mut s: Schedule, now: u64) -> Result<Schedule, ApiError> {
        let timing_before = (s.cron.clone(), s.timezone.clone(), s.enabled);
        if let Some(name) = &self.name {
            s.name = name.clone();
        }
        if let Some(target) = self.target {
            s.target = target;
        }
        if let Some(v) = self.local_only {
            s.options.local_only = v;
        }
        if let Some(v) = self.registry_images {
            s.options.registry_images = v;
        }
        if let Some(values) = &self.backup_values {
            s.options.values = Some(values.clone());
        }
        if let Some(cron) = &self.cron {
            s.cron = cron.trim().to_owned();
        }
        if let Some(zone) = &self.timezone {
            s.timezone = zone.trim().to_owned();
        }
        if let Some(window) = self.start_window {
            s.start_window = window;
        }
        if let Some(retain) = self.retain {
            s.retain = retain;
        }
        if let Some(enabled) = self.enabled {
            s.enabled = enabled;
        }
        if s.options.registry_images && !s.options.local_only {
            return Err(ApiError::BadRequest(
                "Option registry_images cannot be used without local_only option.".into(),
            ));
        }
        let spec: CronSpec = s.spec()?;
        if (s.cron.clone(), s.timezone.clone(), s.enabled) != timing_before || s.next_run.is_none()
        {
            s.next_run = if s.enabled {
                spec.next_after(now)
            } else {
                None
            };
        }
        s.updated_at = timestamp_now();
        Ok(s)
    }
}

/// A target lookup: not found is a bad field of this request (400), not a missing resource.
fn resolved(found: Result<u64, InventoryError>, field: &str) -> Result<u64, ApiError> {
    match found {
        Ok(id) => Ok(id),
        Err(e @ (InventoryError::SubcloudNotFound(_) | InventoryError::GroupNotFound(_))) => {
            Err(Invalid::field(field, e).into())
        }
        Err(e) => Err(e.into()),
    }
}

pub(super) async fn create(app: &App, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let given = Given::parse(app, body).await?;
    let name = given
        .name
        .clone()
        .ok_or_else(|| ApiError::BadRequest("'name' is required".into()))?;
    let target = given.target.ok_or_else(|| {
        ApiError::BadRequest("'subcloud' or 'group' parameter is required".into())
    })?;
    if given.cron.is_none() {
        return Err(ApiError::BadRequest("'cron' is required".into()));
    }
    let now = timestamp_now();
    let blank = Schedule {
        id: 0,
        name,
        target,
        options: OpOptions::default(),
        cron: String::new(),
        timezone: "UTC".into(),
        start_window: None,
        retain: 0,
        enabled: true,
        next_run: None,
        last_run: None,
        created_at: now.clone(),
        updated_at: now,
    };
    let schedule = given.apply(blank, epoch_now())?;
    let schedule = app.inventory.create_schedule(schedule).await?;
    Ok(json_response(StatusCode::OK, &wire::schedule(&schedule)))
}

pub(super) async fn update(app: &App, r: &Ref, body: &[u8]) -> Result<Response<Body>, ApiError> {
    let given = Given::parse(app, body).await?;
    let now = epoch_now();
    let updated = app
        .inventory
        .update_schedule(r, |current| given.apply(current, now))
        .await?;
    Ok(json_response(StatusCode::OK, &wire::schedule(&updated)))
}
