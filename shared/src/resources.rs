//! The one definition of dcbackup's AWS resources: tables (keys and indexes), the jobs queue
//! with its dead-letter queue, and the backup bucket. `provision` creates them from this
//! definition (idempotently: a second run changes nothing); the SAM template is checked
//! against it by a test so the two cannot drift.

use crate::config::ConfigError;
use crate::store::attributes::{
    BACKUP_ID, COUNTER, CREATED_AT, DUE, EXPIRES_AT, GROUP_ID, ID, IDEM_KEY, LEASE_EXPIRES_AT,
    LEASE_HELD, NAME_KEY, NEXT_RUN, OP_ID, SUBCLOUD_ID,
};
use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, GlobalSecondaryIndex, KeySchemaElement, KeyType, Projection,
    ProjectionType, ScalarAttributeType,
};

/// Names of every resource, all derived from one prefix (a stack name in AWS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    pub subclouds_table: String,
    pub groups_table: String,
    pub names_table: String,
    pub counters_table: String,
    pub operations_table: String,
    pub idempotency_table: String,
    pub backups_table: String,
    pub schedules_table: String,
    pub jobs_queue: String,
    pub jobs_dead_letter_queue: String,
    pub backup_bucket: String,
}

/// The index of the subclouds table that lists a group's members without a scan.
pub const GROUP_MEMBERS_INDEX: &str = "group-members";

/// A sparse index of the subclouds table: only held slots have `lease_held`, so the
/// sweeper finds expired leases by lease expiry without a scan.
pub const EXPIRING_LEASES_INDEX: &str = "expiring-leases";

/// The index of the operations table that lists a subcloud's operations, newest first.
pub const SUBCLOUD_OPERATIONS_INDEX: &str = "subcloud-operations";

/// A sparse index of the schedules table: only an enabled schedule with a next run has
/// `due`, so the scheduler finds due schedules by next run without a scan.
pub const DUE_SCHEDULES_INDEX: &str = "due-schedules";

/// Jobs are retried this many times before they land on the dead-letter queue.
pub const JOBS_MAX_RECEIVE_COUNT: u32 = 5;
/// Longer than a worker invocation may run, so a job in flight is not delivered twice.
pub const JOBS_VISIBILITY_TIMEOUT_SECONDS: u32 = 120;
pub const JOBS_RETENTION_SECONDS: u32 = 4 * 24 * 3600;
pub const DEAD_LETTER_RETENTION_SECONDS: u32 = 14 * 24 * 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttrType {
    S,
    N,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key {
    pub hash: (&'static str, AttrType),
    pub range: Option<(&'static str, AttrType)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Index {
    pub name: &'static str,
    pub key: Key,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Table {
    /// The name of the table's logical resource in the SAM template.
    pub logical_id: &'static str,
    pub name: String,
    pub key: Key,
    /// Global secondary indexes, each projecting every attribute.
    pub indexes: Vec<Index>,
    /// The attribute holding each item's expiry (Unix seconds), if items expire.
    pub ttl_attribute: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queue {
    pub logical_id: &'static str,
    pub name: String,
    pub visibility_timeout_seconds: u32,
    pub retention_seconds: u32,
    /// The dead-letter queue (its name) and how many receives send a message there.
    pub redrive: Option<(String, u32)>,
}

impl Resources {
    pub const DEFAULT_PREFIX: &'static str = "dcbackup";

    /// Every name is `<prefix>-<what>`; the prefix must suit both table and bucket naming.
    pub fn with_prefix(prefix: &str) -> Result<Resources, ConfigError> {
        let valid = (3..=40).contains(&prefix.len())
            && prefix
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !prefix.starts_with('-')
            && !prefix.ends_with('-');
        if !valid {
            return Err(ConfigError(format!(
                "resource prefix {prefix:?} must be 3-40 characters of a-z, 0-9 and '-', not starting or ending with '-'"
            )));
        }
        Ok(Resources {
            subclouds_table: format!("{prefix}-subclouds"),
            groups_table: format!("{prefix}-groups"),
            names_table: format!("{prefix}-names"),
            counters_table: format!("{prefix}-counters"),
            operations_table: format!("{prefix}-operations"),
            idempotency_table: format!("{prefix}-idempotency"),
            backups_table: format!("{prefix}-backups"),
            schedules_table: format!("{prefix}-schedules"),
            jobs_queue: format!("{prefix}-jobs"),
            jobs_dead_letter_queue: format!("{prefix}-jobs-dlq"),
            backup_bucket: format!("{prefix}-backups"),
        })
    }

    pub fn tables(&self) -> Vec<Table> {
        use AttrType::{N, S};
        vec![
            Table {
                logical_id: "SubcloudsTable",
                name: self.subclouds_table.clone(),
                key: Key {
                    hash: (ID, N),
                    range: None,
                },
                indexes: vec![
                    Index {
                        name: GROUP_MEMBERS_INDEX,
                        key: Key {
                            hash: (GROUP_ID, N),
                            range: Some((ID, N)),
                        },
                    },
                    Index {
                        name: EXPIRING_LEASES_INDEX,
                        key: Key {
                            hash: (LEASE_HELD, S),
                            range: Some((LEASE_EXPIRES_AT, N)),
                        },
                    },
                ],
                ttl_attribute: None,
            },
            Table {
                logical_id: "GroupsTable",
                name: self.groups_table.clone(),
                key: Key {
                    hash: (ID, N),
                    range: None,
                },
                indexes: vec![],
                ttl_attribute: None,
            },
            Table {
                logical_id: "NamesTable",
                name: self.names_table.clone(),
                key: Key {
                    hash: (NAME_KEY, S),
                    range: None,
                },
                indexes: vec![],
                ttl_attribute: None,
            },
            Table {
                logical_id: "CountersTable",
                name: self.counters_table.clone(),
                key: Key {
                    hash: (COUNTER, S),
                    range: None,
                },
                indexes: vec![],
                ttl_attribute: None,
            },
            Table {
                logical_id: "OperationsTable",
                name: self.operations_table.clone(),
                key: Key {
                    hash: (OP_ID, S),
                    range: None,
                },
                indexes: vec![Index {
                    name: SUBCLOUD_OPERATIONS_INDEX,
                    key: Key {
                        hash: (SUBCLOUD_ID, N),
                        range: Some((CREATED_AT, S)),
                    },
                }],
                ttl_attribute: Some(EXPIRES_AT),
            },
            Table {
                logical_id: "IdempotencyTable",
                name: self.idempotency_table.clone(),
                key: Key {
                    hash: (IDEM_KEY, S),
                    range: None,
                },
                indexes: vec![],
                ttl_attribute: Some(EXPIRES_AT),
            },
            Table {
                logical_id: "BackupsTable",
                name: self.backups_table.clone(),
                key: Key {
                    hash: (SUBCLOUD_ID, N),
                    range: Some((BACKUP_ID, S)),
                },
                indexes: vec![],
                ttl_attribute: None,
            },
            Table {
                logical_id: "SchedulesTable",
                name: self.schedules_table.clone(),
                key: Key {
                    hash: (ID, N),
                    range: None,
                },
                indexes: vec![Index {
                    name: DUE_SCHEDULES_INDEX,
                    key: Key {
                        hash: (DUE, S),
                        range: Some((NEXT_RUN, N)),
                    },
                }],
                ttl_attribute: None,
            },
        ]
    }

    pub fn queues(&self) -> Vec<Queue> {
        vec![
            Queue {
                logical_id: "JobsDeadLetterQueue",
                name: self.jobs_dead_letter_queue.clone(),
                visibility_timeout_seconds: JOBS_VISIBILITY_TIMEOUT_SECONDS,
                retention_seconds: DEAD_LETTER_RETENTION_SECONDS,
                redrive: None,
            },
            Queue {
                logical_id: "JobsQueue",
                name: self.jobs_queue.clone(),
                visibility_timeout_seconds: JOBS_VISIBILITY_TIMEOUT_SECONDS,
                retention_seconds: JOBS_RETENTION_SECONDS,
                redrive: Some((self.jobs_dead_letter_queue.clone(), JOBS_MAX_RECEIVE_COUNT)),
            },
        ]
    }
}

impl AttrType {
    fn scalar(self) -> ScalarAttributeType {
        match self {
            AttrType::S => ScalarAttributeType::S,
            AttrType::N => ScalarAttributeType::N,
        }
    }
}

impl Key {
    fn schema(&self) -> Vec<KeySchemaElement> {
        let element = |name: &str, key_type| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(key_type)
                .build()
                .expect("name and key type are set")
        };
        let mut schema = vec![element(self.hash.0, KeyType::Hash)];
        if let Some((name, _)) = self.range {
            schema.push(element(name, KeyType::Range));
        }
        schema
    }

    fn attributes(&self) -> impl Iterator<Item = (&'static str, AttrType)> {
        std::iter::once(self.hash).chain(self.range)
    }
}

impl Table {
    /// The attribute definitions of the table's keys and its indexes' keys, each once.
    pub fn attribute_definitions(&self) -> Vec<AttributeDefinition> {
        let mut seen: Vec<(&str, AttrType)> = Vec::new();
        for attr in self
            .key
            .attributes()
            .chain(self.indexes.iter().flat_map(|i| i.key.attributes()))
        {
            if !seen.iter().any(|(name, _)| *name == attr.0) {
                seen.push(attr);
            }
        }
        seen.into_iter()
            .map(|(name, ty)| {
                AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(ty.scalar())
                    .build()
                    .expect("name and type are set")
            })
            .collect()
    }

    pub fn key_schema(&self) -> Vec<KeySchemaElement> {
        self.key.schema()
    }

    pub fn global_secondary_indexes(&self) -> Option<Vec<GlobalSecondaryIndex>> {
        if self.indexes.is_empty() {
            return None;
        }
        Some(
            self.indexes
                .iter()
                .map(|index| {
                    GlobalSecondaryIndex::builder()
                        .index_name(index.name)
                        .set_key_schema(Some(index.key.schema()))
                        .projection(
                            Projection::builder()
                                .projection_type(ProjectionType::All)
                                .build(),
                        )
                        .build()
                        .expect("name, key schema and projection are set")
                })
                .collect(),
        )
    }

    pub fn billing_mode(&self) -> BillingMode {
        BillingMode::PayPerRequest
    }
}
