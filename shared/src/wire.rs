//! The dcmanager wire format. Stock dcmanager clients build their objects from these keys
//! positionally, so every key is always present (null where unknown).

use crate::domain::{
    epoch_now, timestamp_of_epoch, AgentUrl, AvailabilityStatus, BackupStatus, ByteProgress,
    DeployStatus, Group, ManagementState, Name, NetworkAddress, OpId, OpKind, Operation, Release,
    Schedule, ScheduleTarget, Subcloud,
};
use crate::store::BackupRecord;
use serde::Serialize;
use serde_json::{json, Value};

/// A subcloud as dcmanager shows it, as a JSON object value.
pub fn subcloud(sc: &Subcloud) -> Value {
    serde_json::to_value(SubcloudView::of(sc)).expect("a subcloud view is plain JSON")
}

/// A subcloud as dcmanager shows it, borrowed from the stored one and serialized straight into
/// an answer: a group's answer renders thousands, and a `Value` tree per subcloud, copied again
/// into the body, was half of a request's own CPU (issue #17). Fields are declared in key
/// order, the order a `Value` object prints its keys in, so both renderings are the same bytes.
#[derive(Debug, Serialize)]
pub struct SubcloudView<'a> {
    #[serde(rename = "agent-url")]
    agent_url: &'a Option<AgentUrl>,
    #[serde(rename = "availability-status")]
    availability_status: &'a AvailabilityStatus,
    #[serde(rename = "backup-datetime")]
    backup_datetime: &'a Option<String>,
    #[serde(rename = "backup-status")]
    backup_status: &'a Option<BackupStatus>,
    #[serde(rename = "created-at")]
    created_at: &'a str,
    // Keys of dcmanager features dcbackup does not have, as dcmanager shows them for a
    // subcloud without them (the stock client maps every one).
    data_install: (),
    data_upgrade: (),
    #[serde(rename = "deploy-status")]
    deploy_status: &'a DeployStatus,
    description: &'a Option<String>,
    endpoint_sync_status: [(); 0],
    #[serde(rename = "error-description")]
    error_description: &'a str,
    group_id: u64,
    id: u64,
    info_message: (),
    location: &'a Option<String>,
    #[serde(rename = "management-end-ip")]
    management_end_ip: &'a Option<NetworkAddress>,
    #[serde(rename = "management-gateway-ip")]
    management_gateway_ip: &'a Option<NetworkAddress>,
    #[serde(rename = "management-start-ip")]
    management_start_ip: &'a Option<NetworkAddress>,
    #[serde(rename = "management-state")]
    management_state: &'a ManagementState,
    #[serde(rename = "management-subnet")]
    management_subnet: &'a Option<NetworkAddress>,
    name: &'a Name,
    #[serde(rename = "openstack-installed")]
    openstack_installed: bool,
    operation: Option<OperationView>,
    peer_group_id: (),
    #[serde(rename = "prestage-software-version")]
    prestage_software_version: (),
    #[serde(rename = "prestage-status")]
    prestage_status: (),
    #[serde(rename = "prestage-versions")]
    prestage_versions: (),
    #[serde(rename = "region-name")]
    region_name: &'a str,
    rehome_data: (),
    #[serde(rename = "software-version")]
    software_version: &'a Release,
    sync_status: &'static str,
    #[serde(rename = "systemcontroller-gateway-ip")]
    systemcontroller_gateway_ip: &'a Option<NetworkAddress>,
    #[serde(rename = "updated-at")]
    updated_at: &'a str,
}

/// The operation holding a subcloud's slot, under the subcloud's `operation` key.
#[derive(Debug, Serialize)]
struct OperationView {
    /// A running backup's progress in bytes (as on its operation record); null until its
    /// agent reports it.
    bytes: Option<ByteProgress>,
    id: OpId,
    kind: OpKind,
    #[serde(rename = "lease-expires-at")]
    lease_expires_at: String,
    since: String,
}

impl<'a> SubcloudView<'a> {
    /// `sc` as it stands now (its `operation` is the slot's holder at this moment).
    pub fn of(sc: &'a Subcloud) -> SubcloudView<'a> {
        SubcloudView {
            agent_url: &sc.agent_url,
            availability_status: &sc.availability_status,
            backup_datetime: &sc.backup_datetime,
            backup_status: &sc.backup_status,
            created_at: &sc.created_at,
            data_install: (),
            data_upgrade: (),
            deploy_status: &sc.deploy_status,
            description: &sc.description,
            endpoint_sync_status: [],
            error_description: &sc.error_description,
            group_id: sc.group_id,
            id: sc.id,
            info_message: (),
            location: &sc.location,
            management_end_ip: &sc.management_end_ip,
            management_gateway_ip: &sc.management_gateway_ip,
            management_start_ip: &sc.management_start_ip,
            management_state: &sc.management_state,
            management_subnet: &sc.management_subnet,
            name: &sc.name,
            openstack_installed: false,
            operation: sc.slot_holder(epoch_now()).map(|holder| OperationView {
                bytes: sc.op_bytes,
                id: holder.op_id,
                kind: holder.kind,
                lease_expires_at: timestamp_of_epoch(holder.lease_expires_at),
                since: holder.since,
            }),
            peer_group_id: (),
            prestage_software_version: (),
            prestage_status: (),
            prestage_versions: (),
            region_name: &sc.region_name,
            rehome_data: (),
            software_version: &sc.software_version,
            sync_status: "unknown",
            systemcontroller_gateway_ip: &sc.systemcontroller_gateway_ip,
            updated_at: &sc.updated_at,
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn claimed() -> Subcloud {
        serde_json::from_value(serde_json::json!({
            "id": 7,
            "name": "subcloud7",
            "description": "Ottawa",
            "software_version": "24.09",
            "management_state": "managed",
            "availability_status": "online",
            "deploy_status": "complete",
            "backup_status": "validating",
            "region_name": "2ec93dfb654846909efe61d1b39dd2ce",
            "group_id": 1,
            "management_subnet": "192.168.101.0/24",
            "agent_url": "https://192.168.101.2:8443",
            "created_at": "2026-11-30 09:00:00.000000",
            "updated_at": "2026-11-30 10:00:00.000000",
            "op_id": "0b1e8f0e-8a0f-4c53-9a57-5a3c1f9e2d11",
            "op_kind": "create",
            "op_since": "2026-11-30 10:00:00.000000",
            "lease_expires_at": epoch_now() + 3600,
        }))
        .expect("a stored subcloud")
    }

    #[test]
    fn a_view_is_written_as_the_subcloud_object_prints() {
        let sc = claimed();
        let direct = serde_json::to_string(&SubcloudView::of(&sc)).expect("JSON");
        let object = subcloud(&sc);
        // Same keys, same values, same order: the view's fields are declared in key order.
        assert_eq!(direct, object.to_string());
        let keys: Vec<&str> = object
            .as_object()
            .expect("an object")
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected = SUBCLOUD_KEYS.to_vec();
        expected.sort_unstable();
        assert_eq!(keys, expected);
        assert_eq!(object["operation"]["kind"], "create");
        assert_eq!(object["endpoint_sync_status"], serde_json::json!([]));
        assert_eq!(object["peer_group_id"], Value::Null);
    }
}
