//! Subclouds in DynamoDB: registered with their name reservation and their group's member
//! count in one transaction; changed and deleted only by writes whose condition decides
//! (SPEC §3), never by a read followed by an unguarded write.

use super::attributes::{
    AGENT_URL, AVAILABILITY_STATUS, BACKUP_STATUS, DEPLOY_STATUS, DESCRIPTION, GROUP_ID, ID,
    LOCATION, MANAGEMENT_STATE, NAME, UPDATED_AT,
};
use super::names::Kind;
use super::slot::{not_in, slot_free};
use super::{failed_conditions, n, s, to_item, Expr, InventoryError, StoreError};
use crate::domain::{
    AvailabilityStatus, DeployStatus, ManagementState, Name, NewSubcloud, Ref, Subcloud,
    SubcloudPatch, DEFAULT_GROUP_ID,
};
use crate::resources::GROUP_MEMBERS_INDEX;

/// How many times a write that lost a race with another writer is re-read and re-tried.
const ATTEMPTS: usize = 3;

impl super::Store {
    /// A subcloud by name or id.
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

    /// Every subcloud, by id.
    pub async fn subclouds(&self) -> Result<Vec<Subcloud>, InventoryError> {
        let mut all: Vec<Subcloud> = self.scan_all(&self.res.subclouds_table, "subcloud").await?;
        all.sort_by_key(|s| s.id);
        Ok(all)
    }

    /// The members of a group, through the group-members index (no table scan).
    pub async fn members(&self, group_id: u64) -> Result<Vec<Subcloud>, InventoryError> {
        let query = self
            .ddb
            .query()
            .table_name(&self.res.subclouds_table)
            .index_name(GROUP_MEMBERS_INDEX);
        let query = Expr::new().eq(GROUP_ID, n(group_id)).query(query);
        let members = self
            .query_all("subcloud", "Query group-members", query)
            .await?;
        Ok(members)
    }

    /// The ids and names of a group's members, through the group-members index: a claim
    /// returns each member whole, so the query reads no more.
    pub async fn member_names(&self, group_id: u64) -> Result<Vec<(u64, Name)>, InventoryError> {
        #[derive(serde::Deserialize)]
        struct Member {
            id: u64,
            name: Name,
        }
        let mut e = Expr::new();
        e.eq(GROUP_ID, n(group_id));
        let projection = format!("{}, {}", e.name(ID), e.name(NAME));
        let query = self
            .ddb
            .query()
            .table_name(&self.res.subclouds_table)
            .index_name(GROUP_MEMBERS_INDEX)
            .projection_expression(projection);
        let members: Vec<Member> = self
            .query_all("group member", "Query group-members", e.query(query))
            .await?;
        Ok(members.into_iter().map(|m| (m.id, m.name)).collect())
    }

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
            op_options: None,
            op_request: None,
            op_prior: None,
            fence: 0,
            central_backups: Default::default(),
            local_backups: Default::default(),
        };
        let result = self
            .ddb
            .transact_write_items()
            .transact_items(self.reserve_name(Kind::Subcloud, &subcloud.name, id)?)
            .transact_items(
                Expr::new()
                    .not_exists(ID)
                    .transact_put(&self.res.subclouds_table, to_item("subcloud", &subcloud)?)?,
            )
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
            let mut e = Expr::new();
            e.eq(GROUP_ID, n(current.group_id))
                .set(UPDATED_AT, s(&now))
                .set_opt(DESCRIPTION, patch.description.as_deref().map(s))
                .set_opt(LOCATION, patch.location.as_deref().map(s))
                .set_opt(
                    MANAGEMENT_STATE,
                    patch.management_state.map(|v| s(v.as_str())),
                )
                .set_opt(
                    AVAILABILITY_STATUS,
                    patch.availability_status.map(|v| s(v.as_str())),
                )
                .set_opt(
                    DEPLOY_STATUS,
                    patch.deploy_status.as_ref().map(|v| s(v.as_str())),
                )
                .set_opt(BACKUP_STATUS, patch.backup_status.map(|v| s(v.as_str())))
                .set_opt(AGENT_URL, agent_url.as_ref().map(|v| s(v.as_str())))
                .set_opt(GROUP_ID, new_group.map(n));
            // Changing what an operation drives is decided by the write itself: only while
            // no operation holds the slot (SPEC §3).
            if guards_slot {
                slot_free(&mut e);
            }
            let update = e.transact_update(&self.res.subclouds_table, (ID, n(current.id)))?;
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
            let mut delete = Expr::new();
            delete
                .eq(MANAGEMENT_STATE, s(ManagementState::Unmanaged.as_str()))
                .eq(GROUP_ID, n(current.group_id));
            not_in(
                &mut delete,
                DEPLOY_STATUS,
                DeployStatus::forbidding_delete(),
            );
            slot_free(&mut delete);
            let delete = delete.transact_delete(&self.res.subclouds_table, (ID, n(current.id)))?;
            let result = self
                .ddb
                .transact_write_items()
                .transact_items(delete)
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
}
