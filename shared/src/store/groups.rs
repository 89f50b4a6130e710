//! Subcloud groups in DynamoDB. Group 1 `Default` always exists for the API and is made on
//! its first need; a group's member count is kept by the transactions that add, move and
//! remove members, so "delete only an empty group" is a condition, not a racy read.

use super::attributes::{
    DESCRIPTION, ID, MAX_PARALLEL_SUBCLOUDS, NAME, NAME_KEY, RUNNING, SUBCLOUD_COUNT, UPDATED_AT,
    UPDATE_APPLY_TYPE,
};
use super::names::Kind;
use super::{failed_conditions, n, s, to_item, Expr, InventoryError, Item, StoreError};
use crate::domain::{Group, GroupPatch, Name, NewGroup, Ref, DEFAULT_GROUP_ID, DEFAULT_GROUP_NAME};
use aws_sdk_dynamodb::types::TransactWriteItem;

impl super::Store {
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
    pub(super) async fn group_for_field(&self, r: &Ref) -> Result<Group, InventoryError> {
        self.group(r).await.map_err(|e| match e {
            InventoryError::GroupNotFound(r) => InventoryError::UnknownGroup(r),
            other => other,
        })
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
        let name_item = Item::from([
            (NAME_KEY.to_owned(), Kind::Group.name_key(&default.name)),
            (ID.to_owned(), n(DEFAULT_GROUP_ID)),
        ]);
        let puts = [
            (&self.res.groups_table, to_item("group", &default)?, ID),
            (&self.res.names_table, name_item, NAME_KEY),
        ];
        for (table, item, key) in puts {
            let put = Expr::new()
                .not_exists(key)
                .put_item(self.ddb.put_item().table_name(table).set_item(Some(item)))
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
            .transact_items(
                Expr::new()
                    .not_exists(ID)
                    .transact_put(&self.res.groups_table, to_item("group", &group)?)?,
            )
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
        let update = Expr::new()
            .eq(NAME, s(current.name.as_str()))
            .set(UPDATED_AT, s(&now))
            .set_opt(NAME, rename.map(|v| s(v.as_str())))
            .set_opt(DESCRIPTION, patch.description.as_deref().map(s))
            .set_opt(
                UPDATE_APPLY_TYPE,
                patch.update_apply_type.map(|v| s(v.as_str())),
            )
            .set_opt(MAX_PARALLEL_SUBCLOUDS, patch.max_parallel_subclouds.map(n))
            .transact_update(&self.res.groups_table, (ID, n(current.id)))?;
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
        let delete = Expr::new()
            .eq(SUBCLOUD_COUNT, n(0))
            // A seat still held in the group must be given back to it before it goes.
            .absent_or(RUNNING, |e| e.compared(RUNNING, "=", n(0)))
            .transact_delete(&self.res.groups_table, (ID, n(current.id)))?;
        let result = self
            .ddb
            .transact_write_items()
            .transact_items(delete)
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

    /// Adds `delta` members to a group that must exist.
    pub(super) fn count_member(
        &self,
        group_id: u64,
        delta: i64,
        now: &str,
    ) -> Result<TransactWriteItem, StoreError> {
        Expr::new()
            .exists(ID)
            .increment(SUBCLOUD_COUNT, delta)
            .set(UPDATED_AT, s(now))
            .transact_update(&self.res.groups_table, (ID, n(group_id)))
    }
}

/// Whether `r` names group 1 `Default`, by id or by name.
pub(super) fn names_default(r: &Ref) -> bool {
    match r {
        Ref::Id(id) => *id == DEFAULT_GROUP_ID,
        Ref::Name(name) => name.as_str() == DEFAULT_GROUP_NAME,
    }
}
