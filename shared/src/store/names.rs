//! Names: a subcloud's, group's or schedule's name is unique through a reservation item in
//! the names table (`<kind>#<name>` → id), written in the same transaction as the thing it
//! names; and the ids this instance resolved names to, cached as hints.

use super::attributes::{ID, NAME_KEY};
use super::{n, s, Expr, Item, StoreError};
use crate::domain::{Name, Ref};
use aws_sdk_dynamodb::types::{AttributeValue, TransactWriteItem};
use std::collections::HashMap;
use std::sync::Mutex;

/// What a name names.
#[derive(Debug, Clone, Copy)]
pub(super) enum Kind {
    Subcloud,
    Group,
    Schedule,
}

impl Kind {
    pub(super) fn name_key(self, name: &Name) -> AttributeValue {
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

/// The ids this instance resolved names to, so a request naming a subcloud or group it saw
/// before reads the item at once instead of the name reservation first. An entry is only a
/// hint: the item read by it must still carry the name (ids are never reused; a group can be
/// renamed, a subcloud deleted and its name registered again), else the name is resolved
/// again — a stale entry costs one read and is never acted on.
#[derive(Debug, Default)]
pub(super) struct NameCache(Mutex<HashMap<String, u64>>);

/// Entries kept before the cache starts over (a few hundred KiB at most).
const NAME_CACHE_ENTRIES: usize = 16_384;

impl NameCache {
    pub(super) fn get(&self, kind: Kind, name: &Name) -> Option<u64> {
        let key = kind.cache_key(name);
        self.0.lock().ok()?.get(&key).copied()
    }

    pub(super) fn put(&self, kind: Kind, name: &Name, id: u64) {
        if let Ok(mut names) = self.0.lock() {
            if names.len() >= NAME_CACHE_ENTRIES {
                names.clear();
            }
            names.insert(kind.cache_key(name), id);
        }
    }

    pub(super) fn forget(&self, kind: Kind, name: &Name) {
        if let Ok(mut names) = self.0.lock() {
            names.remove(&kind.cache_key(name));
        }
    }
}

impl super::Store {
    async fn name_id(&self, kind: Kind, name: &Name) -> Result<Option<u64>, StoreError> {
        let out = self
            .ddb
            .get_item()
            .table_name(&self.res.names_table)
            .key(NAME_KEY, kind.name_key(name))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| StoreError::from_sdk("GetItem names", e))?;
        out.item
            .and_then(|item| item.get(ID).cloned())
            .map(|id| {
                id.as_n()
                    .ok()
                    .and_then(|v| v.parse().ok())
                    .ok_or_else(|| StoreError::decode("name reservation", "id is not a number"))
            })
            .transpose()
    }

    /// The id of the subcloud `r` names, from the name reservation (and cached), without
    /// reading the subcloud; `None` if no subcloud has that name.
    pub async fn subcloud_id(&self, r: &Ref) -> Result<Option<u64>, StoreError> {
        let id = self.resolve(Kind::Subcloud, r).await?;
        if let (Ref::Name(name), Some(id)) = (r, id) {
            self.names.put(Kind::Subcloud, name, id);
        }
        Ok(id)
    }

    /// The id this instance last resolved the subcloud name to: only a hint (see
    /// `NameCache`), for a write whose condition checks the name.
    pub fn cached_subcloud_id(&self, name: &Name) -> Option<u64> {
        self.names.get(Kind::Subcloud, name)
    }

    /// Drops a hint that named the wrong subcloud.
    pub fn forget_subcloud_name(&self, name: &Name) {
        self.names.forget(Kind::Subcloud, name);
    }

    pub(super) async fn resolve(&self, kind: Kind, r: &Ref) -> Result<Option<u64>, StoreError> {
        match r {
            Ref::Id(id) => Ok(Some(*id)),
            Ref::Name(name) => self.name_id(kind, name).await,
        }
    }

    /// The item `r` names in `table`: by the cached id of a name when the item read still
    /// carries that name, else through the name reservation (whose id is then cached).
    pub(super) async fn by_ref<T: serde::de::DeserializeOwned>(
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

    pub(super) fn reserve_name(
        &self,
        kind: Kind,
        name: &Name,
        id: u64,
    ) -> Result<TransactWriteItem, StoreError> {
        let item = Item::from([
            (NAME_KEY.to_owned(), kind.name_key(name)),
            (ID.to_owned(), n(id)),
        ]);
        Expr::new()
            .not_exists(NAME_KEY)
            .transact_put(&self.res.names_table, item)
    }

    pub(super) fn release_name(
        &self,
        kind: Kind,
        name: &Name,
        id: u64,
    ) -> Result<TransactWriteItem, StoreError> {
        Expr::new()
            .eq(ID, n(id))
            .transact_delete(&self.res.names_table, (NAME_KEY, kind.name_key(name)))
    }
}
