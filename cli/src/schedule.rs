//! `schedule list|show|create|update|delete`: backup schedules (README "Scheduled backups").
//! The API names a schedule's target by id; the tables show its name when it still exists.

use crate::api::Api;
use crate::args::{ScheduleCmd, ScheduleCreate, ScheduleUpdate};
use crate::backup::values_file;
use crate::error::CliError;
use crate::output::{fields, id, items, text, Printer, View};
use reqwest::Method;
use serde_json::{json, Map, Value};
use std::collections::HashMap;

/// The order of `schedule show`; other keys follow.
const SCHEDULE_FIELDS: &[&str] = &[
    "id",
    "name",
    "target",
    "cron",
    "timezone",
    "enabled",
    "next-run",
    "last-run",
    "start_window",
    "retain",
    "local_only",
    "registry_images",
    "backup_values",
    "created-at",
    "updated-at",
];

/// Subcloud and group names by id, to name targets in tables.
#[derive(Default)]
struct Names {
    subclouds: HashMap<u64, String>,
    groups: HashMap<u64, String>,
}

impl Names {
    /// Read only when a table will show them: JSON, YAML and ids print the API's objects.
    async fn load(api: &Api, printer: &Printer) -> Result<Names, CliError> {
        if printer.quiet || printer.format != crate::args::Format::Table {
            return Ok(Names::default());
        }
        let by_id = |body: &Value, key: &str| -> HashMap<u64, String> {
            items(body, key)
                .iter()
                .filter_map(|v| Some((v["id"].as_u64()?, text(&v["name"]))))
                .collect()
        };
        Ok(Names {
            subclouds: by_id(&api.get(&["subclouds"]).await?.body, "subclouds"),
            groups: by_id(
                &api.get(&["subcloud-groups"]).await?.body,
                "subcloud_groups",
            ),
        })
    }

    /// `group edge-east`, `subcloud dc1`; the id when the name is unknown (deleted since).
    fn target(&self, schedule: &Value) -> String {
        let named = |kind: &str, key: &str, names: &HashMap<u64, String>| {
            schedule[key].as_u64().map(|id| match names.get(&id) {
                Some(name) => format!("{kind} {name}"),
                None => format!("{kind} {id}"),
            })
        };
        named("subcloud", "subcloud_id", &self.subclouds)
            .or_else(|| named("group", "group_id", &self.groups))
            .unwrap_or_default()
    }
}

/// A last run in one line: `fired <ran-at>: 2 started, 1 skipped`, `missed <ran-at> (due
/// <due-at>)`, `failed <ran-at>: <error>`.
fn last_run(run: &Value) -> String {
    if run.is_null() {
        return String::new();
    }
    let mut line = format!("{} {}", text(&run["state"]), text(&run["ran-at"]));
    if run["state"] == "missed" {
        line.push_str(&format!(" (due {})", text(&run["due-at"])));
    }
    if run["state"] == "fired" {
        let skipped = items(run, "skipped").len();
        line.push_str(&format!(
            ": {} started, {skipped} skipped",
            text(&run["accepted"])
        ));
    }
    if !run["error"].is_null() {
        line.push_str(&format!(": {}", text(&run["error"])));
    }
    line
}

fn schedule_view(printer: &Printer, names: &Names, body: Value) -> View {
    let mut shown = body.clone();
    if let Some(map) = shown.as_object_mut() {
        map.insert("target".into(), json!(names.target(&body)));
        map.remove("subcloud_id");
        map.remove("group_id");
        map.insert("last-run".into(), json!(last_run(&body["last-run"])));
    }
    let mut tables = vec![fields(printer, &shown, SCHEDULE_FIELDS)];
    // The last run's skipped subclouds and their reasons, as `subcloud-backup` prints them.
    let skipped = items(&body["last-run"], "skipped");
    if !skipped.is_empty() {
        let mut table = printer.table(["skipped subcloud", "reason"]);
        for s in skipped {
            table.add_row([text(&s["name"]), text(&s["reason"])]);
        }
        tables.push(table);
    }
    View {
        tables,
        ids: vec![id(&body)],
        data: body,
    }
}

fn put<T: Into<Value>>(map: &mut Map<String, Value>, key: &str, value: Option<T>) {
    if let Some(v) = value {
        map.insert(key.to_owned(), v.into());
    }
}

fn create_body(c: ScheduleCreate) -> Result<Value, CliError> {
    let mut map = Map::new();
    put(&mut map, "name", Some(c.name));
    put(&mut map, "subcloud", c.target.subcloud);
    put(&mut map, "group", c.target.group);
    put(&mut map, "cron", Some(c.cron));
    put(&mut map, "timezone", c.timezone);
    put(&mut map, "start_window", c.start_window);
    put(&mut map, "retain", c.retain);
    put(&mut map, "enabled", Some(!c.disabled));
    put(&mut map, "local_only", Some(c.local_only));
    put(&mut map, "registry_images", Some(c.registry_images));
    if let Some(path) = &c.backup_values {
        put(
            &mut map,
            "backup_values",
            Some(values_file("--backup-values", path)?),
        );
    }
    Ok(Value::Object(map))
}

fn update_body(u: ScheduleUpdate) -> Result<Value, CliError> {
    let mut map = Map::new();
    put(&mut map, "name", u.name);
    put(&mut map, "subcloud", u.subcloud);
    put(&mut map, "group", u.group);
    put(&mut map, "cron", u.cron);
    put(&mut map, "timezone", u.timezone);
    put(&mut map, "start_window", u.start_window);
    put(&mut map, "retain", u.retain);
    put(&mut map, "enabled", u.enabled);
    put(&mut map, "local_only", u.local_only);
    put(&mut map, "registry_images", u.registry_images);
    if let Some(path) = &u.backup_values {
        put(
            &mut map,
            "backup_values",
            Some(values_file("--backup-values", path)?),
        );
    }
    if map.is_empty() {
        return Err(CliError::Usage(
            "nothing to update: give at least one of --name, --subcloud, --group, --cron, \
             --timezone, --start-window, --retain, --enabled, --local-only, --registry-images, \
             --backup-values"
                .into(),
        ));
    }
    Ok(Value::Object(map))
}

/// `schedule …`.
pub async fn run(api: &Api, printer: &Printer, cmd: ScheduleCmd) -> Result<View, CliError> {
    let path = ["backup-schedules"];
    let body = match cmd {
        ScheduleCmd::List => {
            let body = api.get(&path).await?.body;
            let names = Names::load(api, printer).await?;
            let mut table = printer.table([
                "id", "name", "target", "cron", "timezone", "enabled", "retain", "next run",
                "last run",
            ]);
            let list = items(&body, "backup_schedules");
            for s in list {
                table.add_row([
                    id(s),
                    text(&s["name"]),
                    names.target(s),
                    text(&s["cron"]),
                    text(&s["timezone"]),
                    text(&s["enabled"]),
                    text(&s["retain"]),
                    text(&s["next-run"]),
                    last_run(&s["last-run"]),
                ]);
            }
            let ids = list.iter().map(id).collect();
            return Ok(View {
                data: body,
                tables: vec![table],
                ids,
            });
        }
        ScheduleCmd::Show { schedule } => api.get(&["backup-schedules", &schedule]).await?.body,
        ScheduleCmd::Create(c) => {
            let body = create_body(c)?;
            api.send(Method::POST, &path, Some(&body)).await?.body
        }
        ScheduleCmd::Update(u) => {
            let schedule = u.schedule.clone();
            let body = update_body(u)?;
            api.send(Method::PATCH, &["backup-schedules", &schedule], Some(&body))
                .await?
                .body
        }
        ScheduleCmd::Delete { schedule } => {
            api.send(Method::DELETE, &["backup-schedules", &schedule], None)
                .await?
                .body
        }
    };
    let names = Names::load(api, printer).await?;
    Ok(schedule_view(printer, &names, body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_last_run_reads_as_one_line() {
        let run = json!({"state": "fired", "ran-at": "2026-11-30 01:00:04.000000", "accepted": 2,
            "skipped": [{"name": "dc3", "reason": "busy"}], "error": null});
        assert_eq!(
            last_run(&run),
            "fired 2026-11-30 01:00:04.000000: 2 started, 1 skipped"
        );
        let run = json!({"state": "missed", "ran-at": "2026-11-30 01:40:00.000000",
            "due-at": "2026-11-30 01:00:00.000000", "accepted": 0, "skipped": [], "error": null});
        assert_eq!(
            last_run(&run),
            "missed 2026-11-30 01:40:00.000000 (due 2026-11-30 01:00:00.000000)"
        );
        let run = json!({"state": "failed", "ran-at": "2026-11-30 01:00:02.000000",
            "accepted": 0, "skipped": [], "error": "Group not found: 7"});
        assert_eq!(
            last_run(&run),
            "failed 2026-11-30 01:00:02.000000: Group not found: 7"
        );
        assert_eq!(last_run(&Value::Null), "");
    }
}
