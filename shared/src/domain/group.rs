//! Subcloud groups. Group 1, `Default`, always exists and holds every subcloud registered
//! without a group; it can be neither renamed nor deleted.

use super::{state::parse_choice, Invalid, Name};
use serde::{Deserialize, Serialize};

pub const DEFAULT_GROUP_ID: u64 = 1;
pub const DEFAULT_GROUP_NAME: &str = "Default";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ApplyType {
    Parallel,
    Serial,
}

impl ApplyType {
    pub fn parse(field: &str, value: &str) -> Result<ApplyType, Invalid> {
        parse_choice(field, value, &["parallel", "serial"])
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ApplyType::Parallel => "parallel",
            ApplyType::Serial => "serial",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub id: u64,
    pub name: Name,
    pub description: String,
    pub update_apply_type: ApplyType,
    pub max_parallel_subclouds: u32,
    /// Kept by the same transactions that add, move and remove members, so a group can be
    /// deleted only when it is really empty.
    pub subcloud_count: u64,
    pub created_at: String,
    pub updated_at: String,
}

impl Group {
    pub const MAX_PARALLEL_LIMIT: u32 = 5000;

    pub fn parse_max_parallel(field: &str, value: i64) -> Result<u32, Invalid> {
        u32::try_from(value)
            .ok()
            .filter(|v| (1..=Self::MAX_PARALLEL_LIMIT).contains(v))
            .ok_or_else(|| {
                Invalid::field(
                    field,
                    format!("must be between 1 and {}", Self::MAX_PARALLEL_LIMIT),
                )
            })
    }

    pub fn is_default(&self) -> bool {
        self.id == DEFAULT_GROUP_ID
    }
}

#[derive(Debug, Clone)]
pub struct NewGroup {
    pub name: Name,
    pub description: String,
    pub update_apply_type: ApplyType,
    pub max_parallel_subclouds: u32,
}

#[derive(Debug, Clone, Default)]
pub struct GroupPatch {
    pub name: Option<Name>,
    pub description: Option<String>,
    pub update_apply_type: Option<ApplyType>,
    pub max_parallel_subclouds: Option<u32>,
}

impl GroupPatch {
    pub fn is_empty(&self) -> bool {
        self.name.is_none()
            && self.description.is_none()
            && self.update_apply_type.is_none()
            && self.max_parallel_subclouds.is_none()
    }
}
