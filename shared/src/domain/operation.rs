//! Backup/restore operations: what kind, which options, and the record kept of each one.

use super::{BackupStatus, DeployStatus, Invalid, Release, Subcloud};
pub use dcbackup_protocol::ByteProgress;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpKind {
    Create,
    Delete,
    Restore,
}

impl OpKind {
    pub fn as_str(self) -> &'static str {
        match self {
            OpKind::Create => "create",
            OpKind::Delete => "delete",
            OpKind::Restore => "restore",
        }
    }

    /// The in-progress state a claim sets: backup-status for create and delete,
    /// deploy-status for restore.
    pub fn claimed_state(self) -> ClaimedState {
        match self {
            OpKind::Create => ClaimedState::Backup(BackupStatus::Validating),
            OpKind::Delete => ClaimedState::Backup(BackupStatus::DeletingBackup),
            OpKind::Restore => ClaimedState::Deploy(DeployStatus::pre_restore()),
        }
    }
}

impl fmt::Display for OpKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "subcloud-backup {}", self.as_str())
    }
}

/// A state an operation holds its subcloud in while it holds the slot: a transitory
/// backup-status (create, delete) or deploy-status (restore). Only an operation sets one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimedState {
    Backup(BackupStatus),
    Deploy(DeployStatus),
}

impl ClaimedState {
    pub fn as_str(&self) -> &str {
        match self {
            ClaimedState::Backup(b) => b.as_str(),
            ClaimedState::Deploy(d) => d.as_str(),
        }
    }

    /// The state the subcloud is left in when the operation fails in this one (SPEC §1's
    /// map, from `BackupStatus::failure_state` / `DeployStatus::failure_state`).
    pub fn failed(&self) -> SlotState {
        match self {
            ClaimedState::Backup(b) => SlotState::Backup(Some(b.failure_state().unwrap_or(*b))),
            ClaimedState::Deploy(d) => {
                SlotState::Deploy(d.failure_state().unwrap_or_else(|| d.clone()))
            }
        }
    }

    /// What `sc` holds in the attribute this state is a value of.
    pub fn current(&self, sc: &Subcloud) -> SlotState {
        match self {
            ClaimedState::Backup(_) => SlotState::Backup(sc.backup_status),
            ClaimedState::Deploy(_) => SlotState::Deploy(sc.deploy_status.clone()),
        }
    }

    /// Puts `sc` in this state.
    pub fn set(&self, sc: &mut Subcloud) {
        match self {
            ClaimedState::Backup(b) => sc.backup_status = Some(*b),
            ClaimedState::Deploy(d) => sc.deploy_status = d.clone(),
        }
    }
}

/// The value of a slot's state attribute, whatever it is: a backup-status (absent on a
/// subcloud with no backup) or a deploy-status. What a claim replaced, and what an
/// operation leaves behind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SlotState {
    Backup(Option<BackupStatus>),
    Deploy(DeployStatus),
}

impl SlotState {
    /// The attribute's value; `None` when it is absent (backup-status only).
    pub fn as_str(&self) -> Option<&str> {
        match self {
            SlotState::Backup(b) => b.map(BackupStatus::as_str),
            SlotState::Deploy(d) => Some(d.as_str()),
        }
    }

    /// This state, or its failure state if it is transitory: what a slot given back
    /// without having run may show (a free slot never leaves an in-progress state behind).
    pub fn settled(&self) -> SlotState {
        match self {
            SlotState::Backup(Some(b)) => ClaimedState::Backup(*b).failed(),
            SlotState::Deploy(d) => ClaimedState::Deploy(d.clone()).failed(),
            SlotState::Backup(None) => SlotState::Backup(None),
        }
    }
}

impl From<ClaimedState> for SlotState {
    fn from(state: ClaimedState) -> Self {
        match state {
            ClaimedState::Backup(b) => SlotState::Backup(Some(b)),
            ClaimedState::Deploy(d) => SlotState::Deploy(d),
        }
    }
}

/// An operation id: a UUID, so ids never collide across function instances. An operation's
/// id carries its subcloud's id (`for_subcloud`): until a worker starts it, an operation's
/// record is kept in the claim on its subcloud's item (SPEC §3: the claim is one write), and
/// the id says which item that is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OpId(String);

/// The bits of an operation id that hold its subcloud's id (ids are allocated from 1 up).
const SUBCLOUD_ID_BITS: u32 = 48;

impl OpId {
    /// A random id (version 4 UUID) that names no subcloud: for what is not an operation on
    /// one (tests, examples).
    pub fn new() -> OpId {
        OpId(uuid::Uuid::new_v4().to_string())
    }

    /// A new id for an operation on subcloud `subcloud_id`: a version 8 UUID (RFC 9562)
    /// whose first 48 bits are the subcloud's id and whose other 74 free bits are random.
    pub fn for_subcloud(subcloud_id: u64) -> OpId {
        // A version 4 UUID's bytes are random but for its version and variant bits, which
        // `new_v8` sets again.
        let mut bytes = uuid::Uuid::new_v4().into_bytes();
        let id = subcloud_id & ((1 << SUBCLOUD_ID_BITS) - 1);
        bytes[..6].copy_from_slice(&id.to_be_bytes()[2..]);
        OpId(uuid::Uuid::new_v8(bytes).to_string())
    }

    /// The subcloud an id made by `for_subcloud` names; `None` for any other id.
    pub fn subcloud_id(&self) -> Option<u64> {
        let uuid = uuid::Uuid::parse_str(&self.0).ok()?;
        (uuid.get_version_num() == 8).then(|| {
            let mut id = [0; 8];
            id[2..].copy_from_slice(&uuid.as_bytes()[..6]);
            u64::from_be_bytes(id)
        })
    }

    pub fn parse(field: &str, value: &str) -> Result<OpId, Invalid> {
        uuid::Uuid::parse_str(value)
            .map(|u| OpId(u.to_string()))
            .map_err(|_| Invalid::field(field, "is not an operation id"))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for OpId {
    fn default() -> Self {
        OpId::new()
    }
}

impl fmt::Display for OpId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a caller asked for besides the target, secrets removed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OpOptions {
    pub local_only: bool,
    pub registry_images: bool,
    /// `backup_values` (create) or `restore_values` (restore), with secret-looking keys
    /// removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub values: Option<Map<String, Value>>,
}

/// `backup_values` / `restore_values` larger than this (as JSON) are refused, so ten jobs
/// always fit one SQS batch (256 KiB).
pub const VALUES_MAX_BYTES: usize = 16 * 1024;
/// DynamoDB nests maps and lists at most 32 levels deep; the values sit two levels down in the
/// operation record (`options.values`), so they keep 30 for themselves.
pub const VALUES_MAX_DEPTH: usize = 30;
/// DynamoDB numbers: at most 38 significant digits, magnitudes from 1E-130 to below 1E+126.
const NUMBER_MAGNITUDE_BOUND: f64 = 1e126;
const NUMBER_MIN_MAGNITUDE: f64 = 1e-130;

/// Checks that `values` (the request's `field`) can be kept where an operation keeps it: in
/// the operation record (DynamoDB: nesting depth, number range, non-empty attribute names) and
/// in the job message (SQS: size, and only the characters SQS accepts — XML 1.0's). Called
/// while parsing, before anything is claimed, so a request that could never be stored is a
/// 400 naming the limit rather than a claim rolled back.
pub fn check_values_fit(field: &str, values: &Map<String, Value>) -> Result<(), Invalid> {
    fn walk(field: &str, path: &str, value: &Value, depth: usize) -> Result<(), Invalid> {
        let too_deep = || {
            Invalid::field(
                field,
                format!(
                    "is nested more than {VALUES_MAX_DEPTH} levels deep (at {path}); the store keeps at most {VALUES_MAX_DEPTH}"
                ),
            )
        };
        match value {
            Value::Object(map) => {
                if depth > VALUES_MAX_DEPTH {
                    return Err(too_deep());
                }
                for (key, inner) in map {
                    let at = format!("{path}.{key}");
                    if key.is_empty() {
                        return Err(Invalid::field(
                            field,
                            format!("has an empty key at {path}; every key needs at least one character"),
                        ));
                    }
                    storable_text(field, &at, key)?;
                    walk(field, &at, inner, depth + 1)?;
                }
            }
            Value::Array(items) => {
                if depth > VALUES_MAX_DEPTH {
                    return Err(too_deep());
                }
                for (i, inner) in items.iter().enumerate() {
                    walk(field, &format!("{path}[{i}]"), inner, depth + 1)?;
                }
            }
            Value::String(text) => storable_text(field, path, text)?,
            Value::Number(number) => {
                let magnitude = number.as_f64().map_or(0.0, f64::abs);
                if magnitude != 0.0
                    && !(NUMBER_MIN_MAGNITUDE..NUMBER_MAGNITUDE_BOUND).contains(&magnitude)
                {
                    return Err(Invalid::field(
                        field,
                        format!("has the number {number} at {path}, outside what the store keeps (1E-130 to 9.99E+125); quote it as a string"),
                    ));
                }
            }
            Value::Bool(_) | Value::Null => {}
        }
        Ok(())
    }
    fn storable_text(field: &str, path: &str, text: &str) -> Result<(), Invalid> {
        // SQS accepts #x9 | #xA | #xD | #x20-#xD7FF | #xE000-#xFFFD | #x10000-#x10FFFF; JSON
        // escapes the control characters, so only U+FFFE and U+FFFF remain to refuse.
        match text.chars().find(|c| matches!(c, '\u{FFFE}' | '\u{FFFF}')) {
            Some(c) => Err(Invalid::field(
                field,
                format!(
                    "has the non-character U+{:04X} at {path}, which the job queue cannot carry",
                    c as u32
                ),
            )),
            None => Ok(()),
        }
    }
    for (key, value) in values {
        if key.is_empty() {
            return Err(Invalid::field(
                field,
                "has an empty key; every key needs at least one character",
            ));
        }
        storable_text(field, key, key)?;
        walk(field, key, value, 2)?;
    }
    let size = serde_json::to_vec(values).map_or(usize::MAX, |json| json.len());
    if size > VALUES_MAX_BYTES {
        return Err(Invalid::field(
            field,
            format!("is too large ({size} bytes as JSON); keep it under {VALUES_MAX_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Words that mark a key as holding a secret (keys are split on `_`, `-`, `.` and case).
const SECRET_WORDS: [&str; 12] = [
    "pass",
    "passwd",
    "password",
    "pw",
    "pwd",
    "secret",
    "token",
    "key",
    "private",
    "credential",
    "credentials",
    "auth",
];

fn looks_secret(key: &str) -> bool {
    let lower = key.to_ascii_lowercase();
    let mut words = Vec::new();
    let mut word = String::new();
    let mut previous_lower = false;
    for c in key.chars() {
        let boundary =
            matches!(c, '_' | '-' | '.' | ' ') || (c.is_ascii_uppercase() && previous_lower);
        if boundary && !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
        if c.is_ascii_alphanumeric() {
            word.push(c.to_ascii_lowercase());
        }
        previous_lower = c.is_ascii_lowercase();
    }
    words.push(word);
    words.iter().any(|w| SECRET_WORDS.contains(&w.as_str()))
        || ["password", "passwd", "secret", "token", "credential"]
            .iter()
            .any(|part| lower.contains(part))
}

/// Removes, at any depth, every entry whose key looks like it holds a secret.
pub fn without_secrets(values: Map<String, Value>) -> Map<String, Value> {
    fn clean(value: Value) -> Value {
        match value {
            Value::Object(map) => Value::Object(without_secrets(map)),
            Value::Array(items) => Value::Array(items.into_iter().map(clean).collect()),
            other => other,
        }
    }
    values
        .into_iter()
        .filter(|(key, _)| !looks_secret(key))
        .map(|(key, value)| (key, clean(value)))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum OpState {
    /// Claimed and on the jobs queue.
    Queued,
    /// A worker has started it on the subcloud's agent.
    Running,
    Succeeded,
    /// It failed, or never ran (its job could not be queued, or its lease expired).
    Failed,
}

/// The record kept of every claimed operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Operation {
    pub op_id: OpId,
    pub kind: OpKind,
    pub subcloud_id: u64,
    pub subcloud_name: String,
    pub release: Release,
    pub fence: u64,
    pub options: OpOptions,
    /// The `sub` of the caller (or the schedule) that asked for it.
    pub requested_by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// The backup schedule that started it, if any (SPEC §5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<u64>,
    pub state: OpState,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// When it started on the agent (it then held a seat), and when it ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished_at: Option<String>,
    /// The older central backups its schedule's retention removed when it finished.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub retention: Vec<Retired>,
    /// A backup's progress in bytes, as the agent last reported it (written by the worker's
    /// polls while the backup runs, and once more when it succeeds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bytes: Option<ByteProgress>,
    /// A central backup's S3 multipart upload, recorded by the worker when it creates it, so
    /// whoever ends the operation (worker or sweeper) can complete or abort it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_id: Option<String>,
}

impl Operation {
    /// The record of the operation holding `sc`'s slot as its claim keeps it on the item
    /// (queued: no worker has started it); `None` if no claim's record is there. The claim
    /// keeps only what the item does not already say; the release is the subcloud's
    /// software-version unless the request named one (`software_version` and `name` are
    /// never written after registration).
    pub fn queued(sc: &Subcloud) -> Option<Operation> {
        let op_id = sc.op_id.clone()?;
        let kind = sc.op_kind?;
        let since = sc.op_since.clone()?;
        let request = sc.op_request.as_ref()?;
        Some(Operation {
            op_id,
            kind,
            subcloud_id: sc.id,
            subcloud_name: sc.name.to_string(),
            release: request
                .release
                .clone()
                .unwrap_or_else(|| sc.software_version.clone()),
            fence: sc.fence,
            options: sc.op_options.clone().unwrap_or_default(),
            requested_by: request.requested_by.clone(),
            group: request.group.clone(),
            schedule_id: request.schedule_id,
            state: OpState::Queued,
            error: None,
            created_at: since.clone(),
            updated_at: since,
            started_at: None,
            finished_at: None,
            retention: Vec::new(),
            bytes: None,
            upload_id: None,
        })
    }
}

/// What a claim keeps of its request on the subcloud's item, beside the options
/// (`Subcloud::op_options`): with the item's own attributes, the operation's record
/// (`Operation::queued`), written in the claim's one write (SPEC §3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpRequest {
    /// The `sub` of the caller (or `schedule:<name>`).
    pub requested_by: String,
    /// The group the request targeted, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule_id: Option<u64>,
    /// The release the request named (a delete's); otherwise it is the subcloud's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release: Option<Release>,
    /// Unix seconds: when the record expires, the operation history period after the claim.
    pub expires_at: u64,
}

/// A central backup removed by a schedule's retention: its record id and S3 object.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retired {
    pub backup_id: String,
    pub release: Release,
    pub s3_key: Option<String>,
    pub created_at: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn an_operation_id_names_its_subcloud() {
        for id in [1, 42, 1 << 40, (1 << 48) - 1] {
            let op = OpId::for_subcloud(id);
            assert_eq!(op.subcloud_id(), Some(id), "{op}");
            // Still a UUID to every caller, and a different one each time.
            assert_eq!(OpId::parse("op_id", op.as_str()).unwrap(), op);
            assert_ne!(OpId::for_subcloud(id), op);
        }
        assert_eq!(OpId::new().subcloud_id(), None);
    }

    #[test]
    fn claimed_states_fall_to_their_failure_states() {
        let restoring = ClaimedState::Deploy(DeployStatus::restoring());
        assert_eq!(restoring.failed().as_str(), Some("restore-failed"));
        let pre_restore = ClaimedState::Deploy(DeployStatus::pre_restore());
        assert_eq!(pre_restore.failed().as_str(), Some("restore-prep-failed"));
        assert_eq!(
            ClaimedState::Backup(BackupStatus::PreBackup).failed(),
            SlotState::Backup(Some(BackupStatus::BackupPrepFailed))
        );
        // A final state stays as it is; no backup stays none.
        let local = SlotState::Backup(Some(BackupStatus::CompleteLocal));
        assert_eq!(local.settled(), local);
        assert_eq!(SlotState::Backup(None).settled(), SlotState::Backup(None));
        assert_eq!(
            SlotState::from(restoring).settled().as_str(),
            Some("restore-failed")
        );
    }

    #[test]
    fn secrets_are_removed_at_any_depth() {
        let values = json!({
            "bootstrap_address": {"sc1": "10.0.0.1"},
            "ansible_ssh_pass": "x",
            "sysadmin_password": "x",
            "nested": {"api_token": "x", "keep": 1, "list": [{"Client_Secret": "x", "ok": 2}]},
            "ssh_key": "x",
            "apiKey": "x",
            "admin_pw": "x",
            "bypass_proxy": true,
            "monkey": 1,
        });
        let cleaned = without_secrets(values.as_object().unwrap().clone());
        assert_eq!(
            Value::Object(cleaned),
            json!({
                "bootstrap_address": {"sc1": "10.0.0.1"},
                "nested": {"keep": 1, "list": [{"ok": 2}]},
                "bypass_proxy": true,
                "monkey": 1,
            })
        );
    }
}
