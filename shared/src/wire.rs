//! The dcmanager wire format. Stock dcmanager clients build their objects from these keys
//! positionally, so every key is always present (null where unknown).

use crate::domain::{
    epoch_now, timestamp_of_epoch, Group, Operation, Schedule, ScheduleTarget, Subcloud,
};
use crate::store::BackupRecord;
use serde_json::{json, Value};

pub fn subcloud(sc: &Subcloud) -> Value {
    json!({
        "id": sc.id,
        "name": sc.name,
        "description": sc.description,
        "location": sc.location,
        "software-version": sc.software_version,
        "management-state": sc.management_state,
        "availability-status": sc.availability_status,
        "deploy-status": sc.deploy_status,
        "backup-status": sc.backup_status,
        "backup-datetime": sc.backup_datetime,
        "error-description": sc.error_description,
        "region-name": sc.region_name,
        "group_id": sc.group_id,
        "management-subnet": sc.management_subnet,
        "management-start-ip": sc.management_start_ip,
        "management-end-ip": sc.management_end_ip,
        "management-gateway-ip": sc.management_gateway_ip,
        "systemcontroller-gateway-ip": sc.systemcontroller_gateway_ip,
        "created-at": sc.created_at,
        "updated-at": sc.updated_at,
        // Keys of dcmanager features dcbackup does not have, as dcmanager shows them for a
        // subcloud without them (the stock client maps every one).
        "peer_group_id": null,
        "rehome_data": null,
        "sync_status": "unknown",
        "endpoint_sync_status": [],
        "prestage-software-version": null,
        "prestage-status": null,
        "prestage-versions": null,
        "info_message": null,
        "openstack-installed": false,
        "data_install": null,
        "data_upgrade": null,
        "agent-url": sc.agent_url,
        "operation": sc.slot_holder(epoch_now()).map(|holder| json!({
            "id": holder.op_id,
            "kind": holder.kind,
            "since": holder.since,
            "lease-expires-at": timestamp_of_epoch(holder.lease_expires_at),
        })),
    })
}

/// `GET /v1.0/subclouds/{ref}/detail`: the subcloud object plus the keys dcmanager's detail
/// adds that the stock client reads (`subcloud show --detail`), null where dcbackup has no
/// value.
pub fn subcloud_detail(sc: &Subcloud) -> Value {
    let mut detail = subcloud(sc);
    detail["oam_floating_ip"] = Value::Null;
    detail["deploy_config_sync_status"] = json!("unknown");
    detail["region_name"] = json!(sc.region_name);
    detail
}

pub fn backup(b: &BackupRecord) -> Value {
    json!({
        "release": b.release,
        "location": b.location,
        "size": b.size,
        "sha256": b.sha256,
        "created-at": b.created_at,
        "operation": b.op_id,
        "schedule_id": b.schedule_id,
    })
}

pub fn operation(op: &Operation) -> Value {
    json!({
        "id": op.op_id,
        "kind": op.kind,
        "subcloud": op.subcloud_name,
        "subcloud_id": op.subcloud_id,
        "release": op.release,
        "group": op.group,
        "local_only": op.options.local_only,
        "registry_images": op.options.registry_images,
        "values": op.options.values,
        "requested-by": op.requested_by,
        "state": op.state,
        "error": op.error,
        "created-at": op.created_at,
        "updated-at": op.updated_at,
        "started-at": op.started_at,
        "finished-at": op.finished_at,
        "schedule_id": op.schedule_id,
        // A backup's progress in bytes: the data to archive (`total`), how much of it is
        // archived, the archive's size and how much of it is uploaded; null until reported.
        "bytes": op.bytes,
        "retention-removed": op.retention.iter().map(|r| json!({
            "release": r.release,
            "created-at": r.created_at,
            "object": r.s3_key,
        })).collect::<Vec<_>>(),
    })
}

pub fn group(g: &Group) -> Value {
    json!({
        "id": g.id,
        "name": g.name,
        "description": g.description,
        "update_apply_type": g.update_apply_type,
        "max_parallel_subclouds": g.max_parallel_subclouds,
        "created-at": g.created_at,
        "updated-at": g.updated_at,
    })
}

pub fn subcloud_list(subclouds: &[Subcloud]) -> Value {
    json!({ "subclouds": subclouds.iter().map(subcloud).collect::<Vec<_>>() })
}

pub fn group_list(groups: &[Group]) -> Value {
    json!({ "subcloud_groups": groups.iter().map(group).collect::<Vec<_>>() })
}

/// The keys every subcloud object carries (SPEC §1), for clients and tests to check against.
pub const SUBCLOUD_KEYS: [&str; 33] = [
    "id",
    "name",
    "description",
    "location",
    "software-version",
    "management-state",
    "availability-status",
    "deploy-status",
    "backup-status",
    "backup-datetime",
    "error-description",
    "region-name",
    "group_id",
    "management-subnet",
    "management-start-ip",
    "management-end-ip",
    "management-gateway-ip",
    "systemcontroller-gateway-ip",
    "created-at",
    "updated-at",
    "peer_group_id",
    "rehome_data",
    "sync_status",
    "endpoint_sync_status",
    "prestage-software-version",
    "prestage-status",
    "prestage-versions",
    "info_message",
    "openstack-installed",
    "data_install",
    "data_upgrade",
    "agent-url",
    "operation",
];

/// A backup schedule; times in dcmanager's timestamp form (UTC), `last-run` null until the
/// first firing.
pub fn schedule(sc: &Schedule) -> Value {
    let (subcloud_id, group_id) = match sc.target {
        ScheduleTarget::Subcloud(id) => (Some(id), None),
        ScheduleTarget::Group(id) => (None, Some(id)),
    };
    json!({
        "id": sc.id,
        "name": sc.name,
        "subcloud_id": subcloud_id,
        "group_id": group_id,
        "local_only": sc.options.local_only,
        "registry_images": sc.options.registry_images,
        "backup_values": sc.options.values,
        "cron": sc.cron,
        "timezone": sc.timezone,
        "start_window": sc.start_window,
        "retain": sc.retain,
        "enabled": sc.enabled,
        "next-run": sc.next_run.map(timestamp_of_epoch),
        "last-run": sc.last_run.as_ref().map(|run| json!({
            "due-at": timestamp_of_epoch(run.due_at),
            "ran-at": timestamp_of_epoch(run.ran_at),
            "state": run.state,
            "operations": run.op_ids,
            "accepted": run.accepted,
            "skipped": run.skipped,
            "error": run.error,
        })),
        "created-at": sc.created_at,
        "updated-at": sc.updated_at,
    })
}

/// The keys `subcloud_detail` adds to a subcloud object.
pub const SUBCLOUD_DETAIL_KEYS: [&str; 3] = [
    "oam_floating_ip",
    "deploy_config_sync_status",
    "region_name",
];
