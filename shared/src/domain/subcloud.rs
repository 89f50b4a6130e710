//! A subcloud as dcbackup stores it, and the commands that create and change one.

use super::{
    AgentUrl, AvailabilityStatus, BackupStatus, DeployStatus, Invalid, ManagementState, Name, OpId,
    OpKind, OpOptions, OpRequest, Ref, Release,
};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::net::IpAddr;

/// The stored subcloud. Attribute names are snake_case; `wire` renders dcmanager's keys.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Subcloud {
    pub id: u64,
    pub name: Name,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    pub software_version: Release,
    pub management_state: ManagementState,
    pub availability_status: AvailabilityStatus,
    pub deploy_status: DeployStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_status: Option<BackupStatus>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_datetime: Option<String>,
    /// Never empty: [`NO_ERRORS`] until an operation fails, and again once a new one
    /// claims the slot (dcmanager's `ERROR_DESC_EMPTY`; its client fails on null).
    #[serde(default = "no_errors")]
    pub error_description: String,
    pub region_name: String,
    pub group_id: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management_subnet: Option<NetworkAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management_start_ip: Option<NetworkAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management_end_ip: Option<NetworkAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub management_gateway_ip: Option<NetworkAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemcontroller_gateway_ip: Option<NetworkAddress>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_url: Option<AgentUrl>,
    pub created_at: String,
    pub updated_at: String,
    /// The operation slot (SPEC §3): held while `op_id` is set and its lease has not expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op_id: Option<OpId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op_kind: Option<OpKind>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op_since: Option<String>,
    /// Unix seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lease_expires_at: Option<u64>,
    /// The group whose seat the operation holds while it runs on the agent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seat: Option<u64>,
    /// The `attempt` of the operation's one live poll message (absent: the API's job), and
    /// the token it carries; see `JobMessage::attempt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_seq: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub poll_token: Option<String>,
    /// The (scoped, hashed) `Idempotency-Key` of the request that claimed the slot, if it
    /// had one: a retry with the same key may take over a claim its dead first attempt left
    /// behind before any worker started it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op_key: Option<String>,
    /// A create recovered after its lease expired whose upload (or archive) may still be in
    /// central storage: the sweeper or the next worker on this subcloud discards it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orphan_upload: Option<OpId>,
    /// The claim's record of its request (`Operation::queued`), part of the slot: the
    /// options, and who asked, from where, and when the record expires.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op_options: Option<OpOptions>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op_request: Option<OpRequest>,
    /// The value the claim replaced in its state's attribute, "" for none (part of the slot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op_prior: Option<String>,
    /// The running backup's progress in bytes, as its last poll found it (part of the slot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub op_bytes: Option<crate::domain::ByteProgress>,
    /// Raised by every claim; every later write of an operation is conditional on it.
    #[serde(default)]
    pub fence: u64,
    /// Releases with a backup in central storage, and on the subcloud itself.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub central_backups: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub local_backups: BTreeSet<String>,
}

/// dcmanager's `error-description` of a subcloud without a failure.
pub const NO_ERRORS: &str = "No errors present";

fn no_errors() -> String {
    NO_ERRORS.to_owned()
}

/// The operation holding a subcloud's slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlotHolder {
    pub op_id: OpId,
    pub kind: OpKind,
    pub since: String,
    pub lease_expires_at: u64,
}

impl Subcloud {
    /// The operation holding the slot at `now` (Unix seconds), if any: an expired lease
    /// holds nothing.
    pub fn slot_holder(&self, now: u64) -> Option<SlotHolder> {
        match (&self.op_id, self.op_kind, self.lease_expires_at) {
            (Some(op_id), Some(kind), Some(lease)) if lease > now => Some(SlotHolder {
                op_id: op_id.clone(),
                kind,
                since: self.op_since.clone().unwrap_or_default(),
                lease_expires_at: lease,
            }),
            _ => None,
        }
    }
}

/// An IP address or, for `management-subnet`, a CIDR block, checked on the way in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NetworkAddress(String);

impl NetworkAddress {
    pub fn parse_ip(field: &str, value: &str) -> Result<NetworkAddress, Invalid> {
        value
            .parse::<IpAddr>()
            .map(|ip| NetworkAddress(ip.to_string()))
            .map_err(|_| Invalid::field(field, format!("'{value}' is not an IPv4 or IPv6 address")))
    }

    pub fn parse_subnet(field: &str, value: &str) -> Result<NetworkAddress, Invalid> {
        let bad = || {
            Invalid::field(
                field,
                format!("'{value}' is not a subnet; expected a form like 192.168.101.0/24"),
            )
        };
        let (ip, prefix) = value.split_once('/').ok_or_else(bad)?;
        let ip: IpAddr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let max = if ip.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad());
        }
        Ok(NetworkAddress(format!("{ip}/{prefix}")))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The register command: what a caller gave, parsed; defaults are applied by the store.
#[derive(Debug, Clone)]
pub struct NewSubcloud {
    pub name: Name,
    pub software_version: Release,
    pub description: Option<String>,
    pub location: Option<String>,
    pub group: Option<Ref>,
    pub management_state: Option<ManagementState>,
    pub availability_status: Option<AvailabilityStatus>,
    pub deploy_status: Option<DeployStatus>,
    pub region_name: Option<String>,
    pub management_subnet: Option<NetworkAddress>,
    pub management_start_ip: Option<NetworkAddress>,
    pub management_end_ip: Option<NetworkAddress>,
    pub management_gateway_ip: Option<NetworkAddress>,
    pub systemcontroller_gateway_ip: Option<NetworkAddress>,
    pub agent_url: Option<AgentUrl>,
}

impl NewSubcloud {
    /// A register command with only the required fields; the rest take their defaults.
    pub fn new(name: Name, software_version: Release) -> NewSubcloud {
        NewSubcloud {
            name,
            software_version,
            description: None,
            location: None,
            group: None,
            management_state: None,
            availability_status: None,
            deploy_status: None,
            region_name: None,
            management_subnet: None,
            management_start_ip: None,
            management_end_ip: None,
            management_gateway_ip: None,
            systemcontroller_gateway_ip: None,
            agent_url: None,
        }
    }
}

/// The update command (PATCH): only what the caller gave is changed.
#[derive(Debug, Clone, Default)]
pub struct SubcloudPatch {
    pub description: Option<String>,
    pub location: Option<String>,
    pub management_state: Option<ManagementState>,
    pub availability_status: Option<AvailabilityStatus>,
    pub deploy_status: Option<DeployStatus>,
    pub backup_status: Option<BackupStatus>,
    pub group: Option<Ref>,
    pub agent_url: Option<AgentUrl>,
    /// A new address for the agent on its registered port (dcmanager's bootstrap address).
    pub bootstrap_address: Option<IpAddr>,
}

impl SubcloudPatch {
    /// Changes what an operation drives or depends on: allowed only while no operation holds
    /// the slot (SPEC §3). The operation drives backup-status and deploy-status; it was
    /// validated against management-state and availability-status; the worker reaches the
    /// agent at agent-url (which bootstrap-address moves) on every poll; its seat is counted
    /// in its group. Description and location stay writable: nothing reads them.
    pub fn touches_operation_state(&self) -> bool {
        self.management_state.is_some()
            || self.availability_status.is_some()
            || self.deploy_status.is_some()
            || self.backup_status.is_some()
            || self.group.is_some()
            || self.agent_url.is_some()
            || self.bootstrap_address.is_some()
    }

    /// Only manages or unmanages (dcmanager's `manage_unmanage` rule covers that alone).
    pub fn only_manages(&self) -> bool {
        self.management_state.is_some()
            && SubcloudPatch {
                management_state: None,
                ..self.clone()
            }
            .is_empty()
    }

    pub fn is_empty(&self) -> bool {
        self.description.is_none()
            && self.location.is_none()
            && self.management_state.is_none()
            && self.availability_status.is_none()
            && self.deploy_status.is_none()
            && self.backup_status.is_none()
            && self.group.is_none()
            && self.agent_url.is_none()
            && self.bootstrap_address.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalised() {
        assert_eq!(
            NetworkAddress::parse_subnet("s", "192.168.101.0/24")
                .unwrap()
                .as_str(),
            "192.168.101.0/24"
        );
        assert_eq!(
            NetworkAddress::parse_ip("ip", "FD01:0::1")
                .unwrap()
                .as_str(),
            "fd01::1"
        );
        for bad in ["192.168.1.0", "192.168.1.0/33", "x/24", "fd00::/129"] {
            assert!(NetworkAddress::parse_subnet("s", bad).is_err(), "{bad}");
        }
        assert!(NetworkAddress::parse_ip("ip", "300.1.1.1").is_err());
    }
}
