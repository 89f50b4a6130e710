//! Subclouds and groups in DynamoDB.
//!
//! Names are unique through reservation items in the names table (`subcloud#<name>`,
//! `group#<name>`) written in the same transaction as the thing they name; ids come from
//! atomic counters; a group's member count is kept by the transactions that add, move and
//! remove members, so "delete only an empty group" is a condition, not a racy read.

use super::{
    all_pages, failed_conditions, from_item, n, s, to_item, Item, StoreError, Updates, SLOT_FREE,
};
use crate::domain::{
    AvailabilityStatus, DeployStatus, Group, GroupPatch, ManagementState, Name, NewGroup,
    NewSubcloud, Ref, SlotHolder, Subcloud, SubcloudPatch, DEFAULT_GROUP_ID, DEFAULT_GROUP_NAME,
};
use crate::resources::{Resources, GROUP_MEMBERS_INDEX};
use aws_sdk_dynamodb::types::{AttributeValue, Delete, Put, ReturnValue, TransactWriteItem};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// What can go wrong with an inventory request, each variant something the caller can act on.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// dcmanager's words, verbatim (SPEC §2).
    #[error("Subcloud not found")]
    SubcloudNotFound(Ref),
    #[error("Subcloud group not found: {0}")]
    GroupNotFound(Ref),
    #[error("Backup schedule not found: {0}")]
    ScheduleNotFound(Ref),
    #[error("A backup schedule named {0} already exists")]
    ScheduleExists(Name),
    #[error("Invalid group_id: there is no subcloud group {0}")]
    UnknownGroup(Ref),
    #[error("A subcloud named {0} already exists")]
    SubcloudExists(Name),
    #[error("A subcloud group named {0} already exists")]
    GroupExists(Name),
    #[error("Subcloud group {name} still has {members} subcloud(s); move or delete them first")]
    GroupNotEmpty { name: Name, members: u64 },
    #[error("The Default subcloud group cannot be {0}")]
    DefaultGroupProtected(&'static str),
    #[error("Cannot delete subcloud {0} while it is managed; unmanage it first")]
    SubcloudManaged(Name),
    /// dcmanager refuses to delete a subcloud in a deploy state of an active deployment.
    #[error(
        "Cannot delete subcloud {name} during an active operation: its deploy-status is '{state}'"
    )]
    SubcloudDeploying { name: Name, state: DeployStatus },
    #[error("bootstrap-address needs the subcloud's agent-url (for its scheme and port); set agent-url instead")]
    NoAgentUrl,
    #[error("Subcloud {name} is busy: {} operation {} in progress since {}", holder.kind, holder.op_id, holder.since)]
    Busy {
        id: u64,
        name: Name,
        holder: SlotHolder,
    },
    #[error("{0} changed while it was being updated; try again")]
    Contended(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Subcloud,
    Group,
    Schedule,
}

impl Kind {
    fn name_key(self, name: &Name) -> AttributeValue {
        s(self.cache_key(name))
    }

    fn cache_key(self, name: &Name) -> String {
        let kind = match self {
            Kind::Subcloud => "subcloud",
            Kind::Group => "group",
            Kind::Schedule => "schedule",
        };
        format!("{kind}#{name}")
    }
}

const SECONDS_PER_DAY: u64 = 24 * 3600;

/// How many times a write that lost a race with another writer is re-read and re-tried.
const ATTEMPTS: usize = 3;

#[derive(Debug, Clone)]
pub struct Inventory {
    pub(super) ddb: aws_sdk_dynamodb::Client,
    pub(super) res: Resources,
    /// Shared by the clones of this instance's inventory.
    names: Arc<NameCache>,
    /// How long an operation record is kept after it is written: its `expires_at`, which
    /// the operations table's TTL acts on.
    pub(super) operation_history: std::time::Duration,
}

/// The ids this instance resolved names to, so a request naming a subcloud or group it saw
/// before reads the item at once instead of the name reservation first. An entry is only a
/// hint: the item read by it must still carry the name (ids are never reused; a group can be
/// renamed, a subcloud deleted and its name registered again), else the name is resolved
/// again — a stale entry costs one read and is never acted on.
#[derive(Debug, Default)]
struct NameCache(Mutex<HashMap<String, u64>>);

/// Entries kept before the cache starts over (a few hundred KiB at most).
const NAME_CACHE_ENTRIES: usize = 16_384;

impl NameCache {
    fn get(&self, kind: Kind, name: &Name) -> Option<u64> {
        let key = kind.cache_key(name);
        self.0.lock().ok()?.get(&key).copied()
    }

    fn put(&self, kind: Kind, name: &Name, id: u64) {
        if let Ok(mut names) = self.0.lock() {
            if names.len() >= NAME_CACHE_ENTRIES {
                names.clear();
            }
            names.insert(kind.cache_key(name), id);
        }
    }

    fn forget(&self, kind: Kind, name: &Name) {
        if let Ok(mut names) = self.0.lock() {
            names.remove(&kind.cache_key(name));
        }
    }
}

impl Inventory {
    /// Keeps operation records for `Config::DEFAULT_OPERATION_HISTORY_DAYS`.
    pub fn new(ddb: aws_sdk_dynamodb::Client, res: Resources) -> Self {
        Inventory {
            ddb,
            res,
            names: Arc::default(),
            operation_history: std::time::Duration::from_secs(
                crate::config::Config::DEFAULT_OPERATION_HISTORY_DAYS * SECONDS_PER_DAY,
            ),
        }
    }

    /// Keeps operation records for `days` days after they are written (`Config::from_env`'s
    /// `DCBACKUP_OPERATION_HISTORY_DAYS`).
    pub fn with_operation_history_days(mut self, days: u64) -> Self {
        self.operation_history =
            std::time::Duration::from_secs(days.saturating_mul(SECONDS_PER_DAY));
        self
    }

    // ---- reads -------------------------------------------------------------------------

    async fn name_id(&self, kind: Kind, name: &Name) -> Result<Option<u64>, StoreError> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.res.names_table)
            .key("name_key", kind.name_key(name))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("GetItem names", e))?;
        out.item
            .and_then(|item| item.get("id").cloned())
            .map(|id| {
                id.as_n()
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| StoreError::decode("name reservation", "id is not a number"))
            })
            .transpose()
    }

    pub(super) async fn get<T: serde::de::DeserializeOwned>(
        &self,
        table: &str,
        what: &str,
        id: u64,
    ) -> Result<Option<T>, StoreError> {
        let out = self
            .ddb
            .get_item()
            .table_name(table)
            .key("id", n(id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("GetItem", e))?;
        out.item.map(|item| from_item(what, item)).transpose()
    }

    pub(super) async fn resolve(&self, kind: Kind, r: &Ref) -> Result<Option<u64>, StoreError> {
        match r {
            Ref::Id(id) => Ok(Some(*id)),
            Ref::Name(name) => self.name_id(kind, name).await,
        }
    }

    /// The item `r` names in `table`: by the cached id of a name when the item read still
    /// carries that name, else through the name reservation (whose id is then cached).
    async fn by_ref<T: serde::de::DeserializeOwned>(
        &self,
        kind: Kind,
        table: &str,
        what: &str,
        r: &Ref,
        name_of: fn(&T) -> &Name,
    ) -> Result<Option<T>, StoreError> {
        if let Ref::Name(name) = r {
            if let Some(id) = self.names.get(kind, name) {
                match self.get::<T>(table, what, id).await? {
                    Some(item) if name_of(&item) == name => return Ok(Some(item)),
                    _ => self.names.forget(kind, name),
                }
            }
        }
        match self.resolve(kind, r).await? {
            Some(id) => {
                let found = self.get::<T>(table, what, id).await?;
                // The reservation and the item are written in one transaction: they agree.
                if let (Ref::Name(name), Some(_)) = (r, &found) {
                    self.names.put(kind, name, id);
                }
                Ok(found)
            }
            None => Ok(None),
        }
    }

    pub async fn subcloud(&self, r: &Ref) -> Result<Subcloud, InventoryError> {
        let found = self
            .by_ref(
                Kind::Subcloud,
                &self.res.subclouds_table,
                "subcloud",
                r,
                |sc: &Subcloud| &sc.name,
            )
            .await?;
        found.ok_or_else(|| InventoryError::SubcloudNotFound(r.clone()))
    }

    /// A group by name or id. Group 1 `Default` is created here if it does not exist yet (a
    /// fresh deployment holds no items): it always exists for the API (SPEC §1).
    pub async fn group(&self, r: &Ref) -> Result<Group, InventoryError> {
        for _ in 0..2 {
            let found = self
                .by_ref(
                    Kind::Group,
                    &self.res.groups_table,
                    "group",
                    r,
                    |g: &Group| &g.name,
                )
                .await?;
            match found {
                Some(group) => return Ok(group),
                None if names_default(r) => self.ensure_default_group().await?,
                None => break,
            }
        }
        Err(InventoryError::GroupNotFound(r.clone()))
    }

    /// A group named in a request body: an unknown one is a bad field (400), not a
    /// missing resource (404).
    async fn group_for_field(&self, r: &Ref) -> Result<Group, InventoryError> {
        self.group(r).await.map_err(|e| match e {
            InventoryError::GroupNotFound(r) => InventoryError::UnknownGroup(r),
            other => other,
        })
    }

    async fn scan_all<T: serde::de::DeserializeOwned>(
        &self,
        table: &str,
        what: &str,
    ) -> Result<Vec<T>, StoreError> {
        all_pages(what, |start| async move {
            let out = self
                .ddb
                .scan()
                .table_name(table)
                .consistent_read(true)
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| StoreError::from_sdk("Scan", e))?;
            Ok((out.items.unwrap_or_default(), out.last_evaluated_key))
        })
        .await
    }

    pub async fn subclouds(&self) -> Result<Vec<Subcloud>, InventoryError> {
        let mut all: Vec<Subcloud> = self.scan_all(&self.res.subclouds_table, "subcloud").await?;
        all.sort_by_key(|s| s.id);
        Ok(all)
    }

    pub async fn groups(&self) -> Result<Vec<Group>, InventoryError> {
        let mut all: Vec<Group> = self.scan_all(&self.res.groups_table, "group").await?;
        if !all.iter().any(Group::is_default) {
            self.ensure_default_group().await?;
            all = self.scan_all(&self.res.groups_table, "group").await?;
        }
        all.sort_by_key(|g| g.id);
        Ok(all)
    }

    /// The members of a group, through the group-members index (no table scan).
    pub async fn members(&self, group_id: u64) -> Result<Vec<Subcloud>, InventoryError> {
        let members = all_pages("subcloud", |start| async move {
            let out = self
                .ddb
                .query()
                .table_name(&self.res.subclouds_table)
                .index_name(GROUP_MEMBERS_INDEX)
                .key_condition_expression("group_id = :g")
                .expression_attribute_values(":g", n(group_id))
                .set_exclusive_start_key(start)
                .send()
                .await
                .map_err(|e| StoreError::from_sdk("Query group-members", e))?;
            Ok((out.items.unwrap_or_default(), out.last_evaluated_key))
        })
        .await?;
        Ok(members)
    }

    // ---- ids and seeding ---------------------------------------------------------------

    /// The next id of `counter`, from an atomic counter (ids are never reused): subclouds
    /// from 1, groups from 2 (1 is always `Default`'s, whether or not it was created yet).
    pub(super) async fn allocate_id(&self, counter: &str) -> Result<u64, StoreError> {
        let base = if counter == "group" {
            DEFAULT_GROUP_ID
        } else {
            0
        };
        let out = self
            .ddb
            .update_item()
            .table_name(&self.res.counters_table)
            .key("counter", s(counter))
            .update_expression("SET #v = if_not_exists(#v, :base) + :one")
            .expression_attribute_names("#v", "value")
            .expression_attribute_values(":base", n(base))
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("UpdateItem counters", e))?;
        out.attributes
            .and_then(|a| a.get("value").and_then(|v| v.as_n().ok()?.parse().ok()))
            .ok_or_else(|| StoreError::decode("counter", "value is not a number"))
    }

    /// Makes sure group 1 `Default` exists: conditional puts, so any number of instances may
    /// race here. Called where Default is first needed, not at deployment: a fresh stack
    /// holds no items.
    pub async fn ensure_default_group(&self) -> Result<(), StoreError> {
        let now = crate::domain::timestamp_now();
        let default = Group {
            id: DEFAULT_GROUP_ID,
            name: Name::parse("name", DEFAULT_GROUP_NAME).expect("the default name is valid"),
            description: "Default Subcloud Group".to_owned(),
            update_apply_type: crate::domain::ApplyType::Parallel,
            max_parallel_subclouds: 2,
            subcloud_count: 0,
            created_at: now.clone(),
            updated_at: now,
        };
        let mut name_item = Item::new();
        name_item.insert("name_key".into(), Kind::Group.name_key(&default.name));
        name_item.insert("id".into(), n(DEFAULT_GROUP_ID));
        let puts = [
            (&self.res.groups_table, to_item("group", &default)?, "id"),
            (&self.res.names_table, name_item, "name_key"),
        ];
        for (table, item, key) in puts {
            let put = self
                .ddb
                .put_item()
                .table_name(table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(#k)")
                .expression_attribute_names("#k", key)
                .send()
                .await;
            match put {
                Ok(_) => {}
                Err(e)
                    if e.as_service_error()
                        .is_some_and(|e| e.is_conditional_check_failed_exception()) => {}
                Err(e) => return Err(StoreError::from_sdk("PutItem", e)),
            }
        }
        Ok(())
    }

    // ---- subclouds ---------------------------------------------------------------------

    pub async fn register(&self, new: NewSubcloud) -> Result<Subcloud, InventoryError> {
        let group_id = match &new.group {
            Some(r) => self.group_for_field(r).await?.id,
            None => DEFAULT_GROUP_ID,
        };
        let id = self.allocate_id("subcloud").await?;
        match self.put_subcloud(new.clone(), id, group_id).await {
            // The first subcloud of a fresh stack: Default is made on this first need.
            Err(InventoryError::UnknownGroup(_)) if group_id == DEFAULT_GROUP_ID => {
                self.ensure_default_group().await?;
                self.put_subcloud(new, id, group_id).await
            }
            other => other,
        }
    }

    async fn put_subcloud(
        &self,
        new: NewSubcloud,
        id: u64,
        group_id: u64,
    ) -> Result<Subcloud, InventoryError> {
        let now = crate::domain::timestamp_now();
        let subcloud = Subcloud {
            id,
            name: new.name,
            description: new.description,
            location: new.location,
            software_version: new.software_version,
            management_state: new.management_state.unwrap_or(ManagementState::Unmanaged),
            availability_status: new
                .availability_status
                .unwrap_or(AvailabilityStatus::Offline),
            deploy_status: new.deploy_status.unwrap_or_else(DeployStatus::complete),
            backup_status: None,
            backup_datetime: None,
            error_description: crate::domain::NO_ERRORS.to_owned(),
            region_name: new
                .region_name
                .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string()),
            group_id,
            management_subnet: new.management_subnet,
            management_start_ip: new.management_start_ip,
            management_end_ip: new.management_end_ip,
            management_gateway_ip: new.management_gateway_ip,
            systemcontroller_gateway_ip: new.systemcontroller_gateway_ip,
            agent_url: new.agent_url,
            created_at: now.clone(),
            updated_at: now.clone(),
            op_id: None,
            op_kind: None,
            op_since: None,
            lease_expires_at: None,
            seat: None,
            poll_seq: None,
            poll_token: None,
            op_key: None,
            orphan_upload: None,
            op_bytes: None,
            fence: 0,
            central_backups: Default::default(),
            local_backups: Default::default(),
        };
        let result = self
            .ddb
            .transact_write_items()
            .transact_items(self.reserve_name(Kind::Subcloud, &subcloud.name, id)?)
            .transact_items(put_new(
                &self.res.subclouds_table,
                to_item("subcloud", &subcloud)?,
                "id",
            )?)
            .transact_items(self.count_member(group_id, 1, &now)?)
            .send()
            .await;
        match failed_conditions(result)? {
            None => Ok(subcloud),
            Some(failed) if failed[0] => Err(InventoryError::SubcloudExists(subcloud.name)),
            Some(_) => Err(InventoryError::UnknownGroup(Ref::Id(group_id))),
        }
    }

    pub async fn update_subcloud(
        &self,
        r: &Ref,
        patch: SubcloudPatch,
    ) -> Result<Subcloud, InventoryError> {
        let new_group = match &patch.group {
            Some(g) => Some(self.group_for_field(g).await?.id),
            None => None,
        };
        let guards_slot = patch.touches_operation_state();
        for attempt in 0..ATTEMPTS {
            let current = self.subcloud(r).await?;
            let epoch = crate::domain::epoch_now();
            if guards_slot && !self.slot_is_free(&current, epoch).await? {
                continue;
            }
            let agent_url = match (&patch.agent_url, patch.bootstrap_address) {
                (Some(url), None) => Some(url.clone()),
                (given, Some(ip)) => {
                    let base = given.as_ref().or(current.agent_url.as_ref());
                    let base = base.ok_or(InventoryError::NoAgentUrl)?;
                    Some(base.with_host(ip).map_err(|_| InventoryError::NoAgentUrl)?)
                }
                (None, None) => None,
            };
            let now = crate::domain::timestamp_now();
            let mut updates = Updates::new()
                .set("updated_at", s(&now))
                .set_opt("description", patch.description.as_deref().map(s))
                .set_opt("location", patch.location.as_deref().map(s))
                .set_opt(
                    "management_state",
                    patch.management_state.map(|v| s(v.as_str())),
                )
                .set_opt(
                    "availability_status",
                    patch.availability_status.map(|v| s(v.as_str())),
                )
                .set_opt(
                    "deploy_status",
                    patch.deploy_status.as_ref().map(|v| s(v.as_str())),
                )
                .set_opt("backup_status", patch.backup_status.map(|v| s(v.as_str())))
                .set_opt("agent_url", agent_url.as_ref().map(|v| s(v.as_str())))
                .set_opt("group_id", new_group.map(n));
            // Changing what an operation drives is decided by the write itself: only while
            // no operation holds the slot (SPEC §3).
            let condition = if guards_slot {
                updates.condition(
                    &format!("{{a0}} = {{v0}} AND {SLOT_FREE}"),
                    &["group_id"],
                    vec![n(current.group_id)],
                )
            } else {
                updates.condition("{a0} = {v0}", &["group_id"], vec![n(current.group_id)])
            };
            let update = updates.transact(&self.res.subclouds_table, current.id, condition)?;
            let mut tx = self.ddb.transact_write_items().transact_items(update);
            if let Some(to) = new_group.filter(|g| *g != current.group_id) {
                tx = tx
                    .transact_items(self.count_member(current.group_id, -1, &now)?)
                    .transact_items(self.count_member(to, 1, &now)?);
            }
            let failed = match failed_conditions(tx.send().await) {
                Err(StoreError::Conflict(_)) => {
                    super::conflict_backoff(attempt).await;
                    continue;
                }
                other => other?,
            };
            match failed {
                None => return self.subcloud(&Ref::Id(current.id)).await,
                Some(failed) if failed.get(2).copied().unwrap_or(false) => {
                    return Err(InventoryError::UnknownGroup(Ref::Id(
                        new_group.unwrap_or_default(),
                    )))
                }
                // Deleted or moved by someone else meanwhile: read again and retry.
                Some(_) => continue,
            }
        }
        Err(InventoryError::Contended(format!("Subcloud {r}")))
    }

    /// Whether `sc`'s slot is free for an inventory write: busy while an operation holds it;
    /// an expired lease is recovered first (then `false`: read the subcloud again).
    async fn slot_is_free(&self, sc: &Subcloud, now: u64) -> Result<bool, InventoryError> {
        if let Some(holder) = sc.slot_holder(now) {
            return Err(InventoryError::Busy {
                id: sc.id,
                name: sc.name.clone(),
                holder,
            });
        }
        if sc.op_id.is_some() {
            // Recovered here or by a racing writer: either way, read it again.
            match self.recover_expired(sc, now).await {
                Ok(_) | Err(StoreError::Conflict(_)) => return Ok(false),
                Err(e) => return Err(e.into()),
            }
        }
        Ok(true)
    }

    pub async fn delete_subcloud(&self, r: &Ref) -> Result<Subcloud, InventoryError> {
        for attempt in 0..ATTEMPTS {
            let current = self.subcloud(r).await?;
            let epoch = crate::domain::epoch_now();
            if !self.slot_is_free(&current, epoch).await? {
                continue;
            }
            if current.management_state == ManagementState::Managed {
                return Err(InventoryError::SubcloudManaged(current.name));
            }
            if current.deploy_status.forbids_delete() {
                return Err(InventoryError::SubcloudDeploying {
                    name: current.name,
                    state: current.deploy_status,
                });
            }
            let now = crate::domain::timestamp_now();
            // The read above only words the refusal; the write decides (SPEC §3).
            let mut delete = Delete::builder()
                .table_name(&self.res.subclouds_table)
                .key("id", n(current.id))
                .expression_attribute_values(":unmanaged", s("unmanaged"))
                .expression_attribute_values(":g", n(current.group_id));
            let mut forbidden = Vec::new();
            for (i, state) in DeployStatus::forbidding_delete().enumerate() {
                delete = delete.expression_attribute_values(format!(":f{i}"), s(state));
                forbidden.push(format!(":f{i}"));
            }
            let delete = delete
                .condition_expression(format!(
                    "management_state = :unmanaged AND group_id = :g AND NOT deploy_status IN ({}) AND {SLOT_FREE}",
                    forbidden.join(", ")
                ))
                .build()
                .map_err(|e| StoreError::Failed(e.to_string()))?;
            let result = self
                .ddb
                .transact_write_items()
                .transact_items(TransactWriteItem::builder().delete(delete).build())
                .transact_items(self.release_name(Kind::Subcloud, &current.name, current.id)?)
                .transact_items(self.count_member(current.group_id, -1, &now)?)
                .send()
                .await;
            match failed_conditions(result) {
                Ok(None) => return Ok(current),
                Ok(Some(_)) => continue,
                Err(StoreError::Conflict(_)) => super::conflict_backoff(attempt).await,
                Err(e) => return Err(e.into()),
            }
        }
        Err(InventoryError::Contended(format!("Subcloud {r}")))
    }

    // ---- groups ------------------------------------------------------------------------

    pub async fn create_group(&self, new: NewGroup) -> Result<Group, InventoryError> {
        // Default's name is taken even before Default is created on its first need.
        if names_default(&Ref::Name(new.name.clone())) {
            return Err(InventoryError::GroupExists(new.name));
        }
        let id = self.allocate_id("group").await?;
        let now = crate::domain::timestamp_now();
        let group = Group {
            id,
            name: new.name,
            description: new.description,
            update_apply_type: new.update_apply_type,
            max_parallel_subclouds: new.max_parallel_subclouds,
            subcloud_count: 0,
            created_at: now.clone(),
            updated_at: now,
        };
        let result = self
            .ddb
            .transact_write_items()
            .transact_items(self.reserve_name(Kind::Group, &group.name, id)?)
            .transact_items(put_new(
                &self.res.groups_table,
                to_item("group", &group)?,
                "id",
            )?)
            .send()
            .await;
        match failed_conditions(result)? {
            None => Ok(group),
            Some(_) => Err(InventoryError::GroupExists(group.name)),
        }
    }

    pub async fn update_group(&self, r: &Ref, patch: GroupPatch) -> Result<Group, InventoryError> {
        let current = self.group(r).await?;
        let rename = patch.name.as_ref().filter(|name| **name != current.name);
        if rename.is_some() && current.is_default() {
            return Err(InventoryError::DefaultGroupProtected("renamed"));
        }
        if let Some(name) = rename.filter(|name| names_default(&Ref::Name((*name).clone()))) {
            return Err(InventoryError::GroupExists(name.clone()));
        }
        let now = crate::domain::timestamp_now();
        let mut updates = Updates::new()
            .set("updated_at", s(&now))
            .set_opt("name", rename.map(|v| s(v.as_str())))
            .set_opt("description", patch.description.as_deref().map(s))
            .set_opt(
                "update_apply_type",
                patch.update_apply_type.map(|v| s(v.as_str())),
            )
            .set_opt(
                "max_parallel_subclouds",
                patch.max_parallel_subclouds.map(n),
            );
        let condition = updates.condition("{a0} = {v0}", &["name"], vec![s(current.name.as_str())]);
        let update = updates.transact(&self.res.groups_table, current.id, condition)?;
        let mut tx = self.ddb.transact_write_items().transact_items(update);
        if let Some(new_name) = rename {
            tx = tx
                .transact_items(self.release_name(Kind::Group, &current.name, current.id)?)
                .transact_items(self.reserve_name(Kind::Group, new_name, current.id)?);
        }
        match failed_conditions(tx.send().await)? {
            None => self.group(&Ref::Id(current.id)).await,
            Some(failed) if failed.get(2).copied().unwrap_or(false) => {
                Err(InventoryError::GroupExists(
                    rename.cloned().expect("only a rename has a third item"),
                ))
            }
            Some(_) => Err(InventoryError::Contended(format!("Subcloud group {r}"))),
        }
    }

    pub async fn delete_group(&self, r: &Ref) -> Result<Group, InventoryError> {
        let current = self.group(r).await?;
        if current.is_default() {
            return Err(InventoryError::DefaultGroupProtected("deleted"));
        }
        let delete = Delete::builder()
            .table_name(&self.res.groups_table)
            .key("id", n(current.id))
            // A seat still held in the group must be given back to it before it goes.
            .condition_expression(
                "subcloud_count = :zero AND (attribute_not_exists(running) OR running = :zero)",
            )
            .expression_attribute_values(":zero", n(0))
            .build()
            .map_err(|e| StoreError::Failed(e.to_string()))?;
        let result = self
            .ddb
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().delete(delete).build())
            .transact_items(self.release_name(Kind::Group, &current.name, current.id)?)
            .send()
            .await;
        match failed_conditions(result)? {
            None => Ok(current),
            Some(_) => match self.group(&Ref::Id(current.id)).await {
                Ok(now) if now.subcloud_count > 0 => Err(InventoryError::GroupNotEmpty {
                    name: now.name,
                    members: now.subcloud_count,
                }),
                Ok(_) => Err(InventoryError::Contended(format!("Subcloud group {r}"))),
                Err(e) => Err(e),
            },
        }
    }

    // ---- transaction items -------------------------------------------------------------

    pub(super) fn reserve_name(
        &self,
        kind: Kind,
        name: &Name,
        id: u64,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut item = Item::new();
        item.insert("name_key".into(), kind.name_key(name));
        item.insert("id".into(), n(id));
        put_new(&self.res.names_table, item, "name_key")
    }

    pub(super) fn release_name(
        &self,
        kind: Kind,
        name: &Name,
        id: u64,
    ) -> Result<TransactWriteItem, StoreError> {
        let delete = Delete::builder()
            .table_name(&self.res.names_table)
            .key("name_key", kind.name_key(name))
            .condition_expression("id = :id")
            .expression_attribute_values(":id", n(id))
            .build()
            .map_err(|e| StoreError::Failed(e.to_string()))?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// Adds `delta` members to a group that must exist.
    fn count_member(
        &self,
        group_id: u64,
        delta: i64,
        now: &str,
    ) -> Result<TransactWriteItem, StoreError> {
        let mut updates = Updates::new()
            .increment("subcloud_count", delta)
            .set("updated_at", s(now));
        let condition = updates.condition("attribute_exists({a0})", &["id"], vec![]);
        updates.transact(&self.res.groups_table, group_id, condition)
    }
}

pub(super) fn put_new(table: &str, item: Item, key: &str) -> Result<TransactWriteItem, StoreError> {
    let put = Put::builder()
        .table_name(table)
        .set_item(Some(item))
        .condition_expression("attribute_not_exists(#k)")
        .expression_attribute_names("#k", key)
        .build()
        .map_err(|e| StoreError::Failed(e.to_string()))?;
    Ok(TransactWriteItem::builder().put(put).build())
}

/// Whether `r` names group 1 `Default`, by id or by name.
fn names_default(r: &Ref) -> bool {
    match r {
        Ref::Id(id) => *id == DEFAULT_GROUP_ID,
        Ref::Name(name) => name.as_str() == DEFAULT_GROUP_NAME,
    }
}
