//! `dcbackup status`: the fleet at a glance. Per group: how many subclouds have a
//! successful backup newer than the threshold (`backup-datetime` is only set by a backup
//! that succeeded), how many failed their last operation, and which are running now.

use crate::api::Api;
use crate::args::StatusArgs;
use crate::error::CliError;
use crate::output::{items, text, Printer, View};
use comfy_table::Color;
use serde_json::{json, Value};
use std::time::Duration;
use time::{OffsetDateTime, PrimitiveDateTime};

/// Final states that mean the last operation failed (SPEC §1 States).
const FAILED_BACKUP: &[&str] = &[
    "failed",
    "validate-failed",
    "backup-prep-failed",
    "delete-failed",
];
const FAILED_DEPLOY: &[&str] = &["restore-prep-failed", "restore-failed"];

const DCMANAGER_TIME: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second].[subsecond]");
const DCMANAGER_TIME_WHOLE: &[time::format_description::FormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");

/// A dcmanager timestamp (UTC, `2024-05-01 12:00:00.123456`) or RFC 3339.
fn parse_time(value: &str) -> Option<OffsetDateTime> {
    PrimitiveDateTime::parse(value, DCMANAGER_TIME)
        .or_else(|_| PrimitiveDateTime::parse(value, DCMANAGER_TIME_WHOLE))
        .map(PrimitiveDateTime::assume_utc)
        .ok()
        .or_else(|| {
            OffsetDateTime::parse(value, &time::format_description::well_known::Rfc3339).ok()
        })
}

/// Whether the subcloud's last successful backup is newer than `threshold`.
fn fresh(sc: &Value, now: OffsetDateTime, threshold: Duration) -> bool {
    sc["backup-datetime"]
        .as_str()
        .and_then(parse_time)
        .is_some_and(|at| (now - at) <= threshold)
}

fn failed(sc: &Value) -> bool {
    let is = |key: &str, states: &[&str]| sc[key].as_str().is_some_and(|s| states.contains(&s));
    is("backup-status", FAILED_BACKUP) || is("deploy-status", FAILED_DEPLOY)
}

fn running(sc: &Value) -> bool {
    !sc["operation"].is_null()
}

/// What a running subcloud is doing, e.g. `subcloud1 (create: backing-up)`.
fn doing(sc: &Value) -> String {
    let kind = text(&sc["operation"]["kind"]);
    let state = if kind == "restore" {
        text(&sc["deploy-status"])
    } else {
        text(&sc["backup-status"])
    };
    format!("{} ({kind}: {state})", text(&sc["name"]))
}

/// `status`: one row per group (only `--group` when given), then the failed subclouds.
pub async fn run(api: &Api, printer: &Printer, args: StatusArgs) -> Result<View, CliError> {
    let (groups, subclouds) = match &args.group {
        Some(g) => {
            let group = api.get(&["subcloud-groups", g]).await?.body;
            let members = api.get(&["subcloud-groups", g, "subclouds"]).await?.body;
            (vec![group], items(&members, "subclouds").to_vec())
        }
        None => {
            let groups = api.get(&["subcloud-groups"]).await?.body;
            let all = api.get(&["subclouds"]).await?.body;
            (
                items(&groups, "subcloud_groups").to_vec(),
                items(&all, "subclouds").to_vec(),
            )
        }
    };
    let now = OffsetDateTime::now_utc();
    let label = threshold_label(args.threshold);
    let mut table = printer.table([
        "group".to_owned(),
        "subclouds".to_owned(),
        format!("backed up < {label}"),
        "stale or never".to_owned(),
        "failed last".to_owned(),
        "running now".to_owned(),
    ]);
    let mut rows = Vec::new();
    let mut attention = printer.table(["subcloud", "group", "state", "error-description"]);
    let mut any_attention = false;
    for group in &groups {
        let members: Vec<&Value> = subclouds
            .iter()
            .filter(|sc| sc["group_id"] == group["id"])
            .collect();
        let total = members.len();
        let backed_up = members
            .iter()
            .filter(|sc| fresh(sc, now, args.threshold))
            .count();
        let failures: Vec<&&Value> = members.iter().filter(|sc| failed(sc)).collect();
        let busy: Vec<String> = members
            .iter()
            .filter(|sc| running(sc))
            .map(|sc| doing(sc))
            .collect();
        let fresh_color = if backed_up == total {
            Color::Green
        } else {
            Color::Yellow
        };
        table.add_row(vec![
            printer.cell(text(&group["name"]), None),
            printer.cell(total, None),
            printer.cell(backed_up, Some(fresh_color)),
            printer.cell(
                total - backed_up,
                (total > backed_up).then_some(Color::Yellow),
            ),
            printer.cell(failures.len(), (!failures.is_empty()).then_some(Color::Red)),
            printer.cell(busy.join("\n"), (!busy.is_empty()).then_some(Color::Cyan)),
        ]);
        for sc in &failures {
            any_attention = true;
            let state = if failed_deploy(sc) {
                text(&sc["deploy-status"])
            } else {
                text(&sc["backup-status"])
            };
            attention.add_row(vec![
                printer.cell(text(&sc["name"]), None),
                printer.cell(text(&group["name"]), None),
                printer.cell(state, Some(Color::Red)),
                printer.cell(text(&sc["error-description"]), None),
            ]);
        }
        rows.push(json!({
            "id": group["id"],
            "name": group["name"],
            "subclouds": total,
            "backed-up": backed_up,
            "stale": total - backed_up,
            "failed": failures.iter().map(|sc| &sc["name"]).collect::<Vec<_>>(),
            "running": members.iter().filter(|sc| running(sc)).map(|sc| &sc["name"]).collect::<Vec<_>>(),
        }));
    }
    let mut tables = vec![table];
    if any_attention {
        tables.push(attention);
    }
    Ok(View {
        data: json!({ "threshold-seconds": args.threshold.as_secs(), "groups": rows }),
        tables,
        ids: groups.iter().map(crate::output::id).collect(),
    })
}

/// `24h` rather than humantime's `1day`: hours when whole, else humantime's form.
fn threshold_label(threshold: Duration) -> String {
    match threshold.as_secs() {
        secs if secs > 0 && secs % 3600 == 0 && threshold.subsec_nanos() == 0 => {
            format!("{}h", secs / 3600)
        }
        _ => humantime::format_duration(threshold).to_string(),
    }
}

fn failed_deploy(sc: &Value) -> bool {
    sc["deploy-status"]
        .as_str()
        .is_some_and(|s| FAILED_DEPLOY.contains(&s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freshness_reads_dcmanager_timestamps() {
        let now = parse_time("2026-11-30 12:00:00.000000").unwrap();
        let day = Duration::from_secs(86_400);
        let sc = |at: &str| json!({ "backup-datetime": at });
        assert!(fresh(&sc("2026-11-30 01:00:00.123456"), now, day));
        assert!(fresh(&sc("2026-11-29T13:00:00Z"), now, day));
        assert!(!fresh(&sc("2026-11-29 11:59:59"), now, day));
        assert!(!fresh(&json!({ "backup-datetime": null }), now, day));
    }

    #[test]
    fn thresholds_read_in_hours() {
        assert_eq!(threshold_label(Duration::from_secs(86_400)), "24h");
        assert_eq!(threshold_label(Duration::from_secs(7 * 86_400)), "168h");
        assert_eq!(threshold_label(Duration::from_secs(90)), "1m 30s");
    }

    #[test]
    fn failures_are_final_failure_states() {
        assert!(failed(
            &json!({"backup-status": "backup-prep-failed", "deploy-status": "complete"})
        ));
        assert!(failed(
            &json!({"backup-status": "complete-central", "deploy-status": "restore-failed"})
        ));
        assert!(!failed(
            &json!({"backup-status": "backing-up", "deploy-status": "complete"})
        ));
        assert!(!failed(
            &json!({"backup-status": null, "deploy-status": "complete"})
        ));
    }
}
