//! `infra/template.yaml` deploys to AWS what `dcbackup::resources` provisions locally and the
//! routes `dcbackup::api` serves; nothing but this test ties the two together. It reads the
//! template (each parameter at its default) and fails naming every table, queue, bucket or
//! function that drifted from the code, and every grant a function lacks or has beyond what
//! its route needs (`grants`). A function that serves no route is known by name
//! (`background`): what drives it (a queue or a schedule), what it is granted and what it is
//! given; any other is drift.
//!
//! Grants are compared action by action, on resources by logical id: SAM's policy templates
//! expanded to their actions, inline statements and a function's own role read as written.
//! The needs are declared per function here, next to the store and queue calls they come
//! from, rather than derived from the code: nothing can read a handler's call graph down to
//! each DynamoDB request reliably, and recording the calls the tests happen to make would
//! miss the rare paths (a lost race, a retry) that need a grant most.

use dcbackup::api::Route;
use dcbackup::config::Config;
use dcbackup::resources::{Key, Resources};
use serde_yaml::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::path::PathBuf;

const TEMPLATE: &str = "infra/template.yaml";
/// The queue subcloud-backup functions send jobs to, and the worker takes them from.
const JOBS_QUEUE: &str = "JobsQueue";
/// The logical id of the backup bucket (`Resources::backup_bucket`).
const BACKUP_BUCKET: &str = "BackupBucket";
/// Where a function that sends jobs finds the queue's URL (`Config::from_env`); without it
/// the function would call GetQueueUrl, which its policy does not allow.
const JOBS_QUEUE_URL_VARIABLE: &str = "DCBACKUP_JOBS_QUEUE_URL";
/// Where failed jobs land (`Resources::jobs_dead_letter_queue`), and the sweeper takes them.
const DEAD_LETTER_QUEUE: &str = "JobsDeadLetterQueue";
/// Where a function that takes dead-lettered jobs finds that queue's URL (`Config::from_env`);
/// without it the function would call GetQueueUrl, which `SQSPollerPolicy` does not allow.
const DEAD_LETTER_QUEUE_URL_VARIABLE: &str = "DCBACKUP_JOBS_DLQ_URL";
/// Where the worker finds the bucket's name, which CloudFormation makes unique.
const BACKUP_BUCKET_VARIABLE: &str = "DCBACKUP_BACKUP_BUCKET";
/// The one bucket-level S3 action a function may be granted (`Grants::backup_bucket`); the
/// others act on the bucket's objects (`<Bucket>/*`).
const LIST_BUCKET: &str = "s3:ListBucket";
/// The logical id of the HTTP API every route's event must attach to; without it SAM would
/// create a second, implicit API.
const API: &str = "Api";

/// What a route's function is granted: exactly this, no more and no less (least privilege).
/// Kept by hand from what the route's handler touches in `dcbackup::store` and `jobs`.
struct Grants {
    /// Tables read and written: `DynamoDBCrudPolicy`.
    crud: &'static [&'static str],
    /// Tables only read: `DynamoDBReadPolicy`.
    read: &'static [&'static str],
    /// Sends jobs: `SQSSendMessagePolicy` on the jobs queue, and the queue's URL in
    /// `DCBACKUP_JOBS_QUEUE_URL`.
    sends_jobs: bool,
    /// Receives and deletes dead-lettered jobs: `SQSPollerPolicy` on the dead-letter queue,
    /// and its URL in `DCBACKUP_JOBS_DLQ_URL`.
    takes_dead_letters: bool,
    /// The S3 actions it needs on the backup bucket: `s3:ListBucket` on the bucket, any other
    /// on its objects; with any, the bucket's name in `DCBACKUP_BACKUP_BUCKET`.
    backup_bucket: &'static [&'static str],
    /// Reads the agents' key: `secretsmanager:GetSecretValue` on that one secret.
    agent_secret: bool,
}

fn grants(route: Route) -> Grants {
    match route {
        // `store::Store`: items, name claims, id counters and the group-members index.
        // A write that finds an expired lease recovers it first (`Store::recover_expired`):
        // the operation's record is moved and ended (operations), its seat given back.
        Route::SubcloudsUpdate | Route::SubcloudsDelete => Grants {
            crud: &[
                "SubcloudsTable",
                "GroupsTable",
                "NamesTable",
                "CountersTable",
                "OperationsTable",
            ],
            read: &[],
            sends_jobs: false,
            takes_dead_letters: false,
            backup_bucket: &[],
            agent_secret: false,
        },
        Route::SubcloudsList
        | Route::SubcloudsRegister
        | Route::SubcloudsShow
        | Route::SubcloudsDetail
        | Route::GroupsList
        | Route::GroupsCreate
        | Route::GroupsShow
        | Route::GroupsUpdate
        | Route::GroupsDelete
        | Route::GroupsMembers => Grants {
            crud: &[
                "SubcloudsTable",
                "GroupsTable",
                "NamesTable",
                "CountersTable",
            ],
            read: &[],
            sends_jobs: false,
            takes_dead_letters: false,
            backup_bucket: &[],
            agent_secret: false,
        },
        // The slot claim, which keeps its record (subclouds); the record of a claim rolled
        // back (operations); `Idempotency-Key` replays; the target is only resolved (groups,
        // names); one job per claimed subcloud.
        Route::BackupCreate | Route::BackupDelete | Route::BackupRestore => Grants {
            crud: &["SubcloudsTable", "OperationsTable", "IdempotencyTable"],
            read: &["GroupsTable", "NamesTable"],
            sends_jobs: true,
            takes_dead_letters: false,
            backup_bucket: &[],
            agent_secret: false,
        },
        // One record by its id: in the operations table, or kept by the claim on the
        // subcloud the id names.
        Route::OperationsShow => Grants {
            crud: &[],
            read: &["OperationsTable", "SubcloudsTable"],
            sends_jobs: false,
            takes_dead_letters: false,
            backup_bucket: &[],
            agent_secret: false,
        },
        // A subcloud by name or id, then its records through the subcloud-operations index.
        Route::OperationsHistory => Grants {
            crud: &[],
            read: &["SubcloudsTable", "NamesTable", "OperationsTable"],
            sends_jobs: false,
            takes_dead_letters: false,
            backup_bucket: &[],
            agent_secret: false,
        },
        // A subcloud by name or id, then its backups' items.
        Route::BackupsList => Grants {
            crud: &[],
            read: &["SubcloudsTable", "NamesTable", "BackupsTable"],
            sends_jobs: false,
            takes_dead_letters: false,
            backup_bucket: &[],
            agent_secret: false,
        },
        // Every schedule item.
        Route::SchedulesList => Grants {
            crud: &[],
            read: &["SchedulesTable"],
            sends_jobs: false,
            takes_dead_letters: false,
            backup_bucket: &[],
            agent_secret: false,
        },
        // A schedule by name (names) or id.
        Route::SchedulesShow => Grants {
            crud: &[],
            read: &["SchedulesTable", "NamesTable"],
            sends_jobs: false,
            takes_dead_letters: false,
            backup_bucket: &[],
            agent_secret: false,
        },
        // The item, its name claim and its id (counters); the target resolved to its id.
        Route::SchedulesCreate => Grants {
            crud: &["SchedulesTable", "NamesTable", "CountersTable"],
            read: &["SubcloudsTable", "GroupsTable"],
            sends_jobs: false,
            takes_dead_letters: false,
            backup_bucket: &[],
            agent_secret: false,
        },
        // The item and, on a rename, its name claim; a new target resolved to its id.
        Route::SchedulesUpdate => Grants {
            crud: &["SchedulesTable", "NamesTable"],
            read: &["SubcloudsTable", "GroupsTable"],
            sends_jobs: false,
            takes_dead_letters: false,
            backup_bucket: &[],
            agent_secret: false,
        },
        // The item and its name claim.
        Route::SchedulesDelete => Grants {
            crud: &["SchedulesTable", "NamesTable"],
            read: &[],
            sends_jobs: false,
            takes_dead_letters: false,
            backup_bucket: &[],
            agent_secret: false,
        },
    }
}

/// A variable a function is given from a parameter of the template, beyond `Globals`.
struct Setting {
    variable: &'static str,
    parameter: &'static str,
    /// The parameter's default, the code's; `None` when it must have none (it must be given).
    default: Option<String>,
}

/// A function that serves no route, driven by a queue or a schedule instead. Kept by hand,
/// like `grants`, from what its handler touches; a function in the template that neither
/// serves a route nor is named here is drift.
struct Background {
    /// The package under `functions/`, the binary cargo-lambda builds and the name's suffix.
    function: &'static str,
    /// What its package's `main` runs: `dcbackup::runtime::<handler>()`.
    handler: &'static str,
    /// What invokes it: its one event.
    trigger: Trigger,
    grants: Grants,
    /// Its own variables besides the queues' URLs (which `grants` implies).
    settings: Vec<Setting>,
}

enum Trigger {
    /// The queue's messages: `Type: SQS`.
    Queue {
        queue: &'static str,
        batch_size: u64,
        /// `FunctionResponseTypes: [ReportBatchItemFailures]`: a message to retry is
        /// reported alone, so the rest of its batch is not delivered again.
        reports_item_failures: bool,
    },
    /// An EventBridge Scheduler schedule: `Type: ScheduleV2`, enabled, named
    /// `<prefix>-<function>` (schedule names are unique per account, not per stack), its
    /// `ScheduleExpression` from `parameter`, whose default is every `every_seconds`.
    Schedule {
        parameter: &'static str,
        every_seconds: u64,
    },
    /// The HTTP API's `$default` route, any method: what no `api::Route` serves.
    DefaultRoute,
}

impl Trigger {
    fn describe(&self) -> String {
        match self {
            Trigger::Queue { queue, .. } => format!("on {queue}"),
            Trigger::Schedule { parameter, .. } => format!("on the {parameter} schedule"),
            Trigger::DefaultRoute => "on the $default route".to_owned(),
        }
    }
}

/// A function's event as the test compares it: what the template says of what matters.
#[derive(Debug, PartialEq)]
enum Event {
    Queue {
        /// The logical id of `!GetAtt <Queue>.Arn`.
        queue: Option<String>,
        batch_size: Option<u64>,
        response_types: Vec<String>,
    },
    Schedule {
        /// With every parameter at its default.
        name: Option<String>,
        /// `!Ref <Parameter>` as "!Ref <Parameter>", anything else as written.
        expression: Option<String>,
        /// `State` unset or `ENABLED`.
        enabled: bool,
    },
    /// An HTTP API route: (method, path, the `!Ref` of its API).
    HttpApi(Option<String>, Option<String>, Option<String>),
    /// Any other type, by its type.
    Other(String),
}

/// An EventBridge Scheduler rate expression: `rate(<n> minute[s]|hour[s]|day[s])`.
fn rate_expression(seconds: u64) -> String {
    let (value, unit) = [(86_400, "day"), (3_600, "hour"), (60, "minute")]
        .into_iter()
        .find(|(length, _)| seconds.is_multiple_of(*length))
        .map(|(length, unit)| (seconds / length, unit))
        .unwrap_or_else(|| panic!("the test's background table: {seconds} s is no rate"));
    let plural = if value == 1 { "" } else { "s" };
    format!("rate({value} {unit}{plural})")
}

/// Lambda asks an SQS event source's queue for a visibility timeout of at least this many
/// times the function's timeout.
const VISIBILITY_TIMEOUT_PER_FUNCTION_TIMEOUT: u64 = 6;

fn background() -> Vec<Background> {
    vec![
        // `api::default_route`: answers from the request alone.
        Background {
            function: "default-route",
            handler: "serve_default_route",
            trigger: Trigger::DefaultRoute,
            grants: Grants {
                crud: &[],
                read: &[],
                sends_jobs: false,
                takes_dead_letters: false,
                backup_bucket: &[],
                agent_secret: false,
            },
            settings: vec![],
        },
        // `worker::Worker`: a job's subcloud by id and its slot (subclouds), the operation's
        // state (operations), the backups made and deleted (backups); delayed polls to the
        // jobs queue; pre-signed PUT and GET URLs, and a release's objects listed and deleted
        // (the bucket); agent tokens signed with the agents' key.
        // Seats (`store::seats`): taken and given back in transactions on the group's count
        // (groups, conditional on its `max_parallel_subclouds`) and the system's (counters),
        // the latter with the operation's end (operations).
        Background {
            function: "worker",
            handler: "serve_worker",
            trigger: Trigger::Queue {
                queue: JOBS_QUEUE,
                batch_size: 10,
                reports_item_failures: true,
            },
            grants: Grants {
                crud: &[
                    "SubcloudsTable",
                    "OperationsTable",
                    "BackupsTable",
                    "GroupsTable",
                    "CountersTable",
                ],
                // The schedule of a scheduled backup, for its retention.
                read: &["SchedulesTable"],
                sends_jobs: true,
                takes_dead_letters: false,
                // Pre-signed GET and part-upload URLs act with the worker's own grants
                // (PutObject covers creating, uploading and completing a multipart upload);
                // a failed backup's upload is aborted; a release's objects are listed and
                // deleted (`CentralStore::delete_release`).
                backup_bucket: &[
                    "s3:GetObject",
                    "s3:PutObject",
                    "s3:DeleteObject",
                    "s3:AbortMultipartUpload",
                    LIST_BUCKET,
                ],
                agent_secret: true,
            },
            settings: vec![
                // `runtime::agent_secret`; no default: the secret is the deployer's.
                Setting {
                    variable: AGENT_SECRET_VARIABLE,
                    parameter: AGENT_SECRET_PARAMETER,
                    default: None,
                },
                Setting {
                    variable: "DCBACKUP_POLL_MAX_SECONDS",
                    parameter: "PollMaxSeconds",
                    default: Some(Config::DEFAULT_POLL_MAX_SECONDS.to_string()),
                },
                Setting {
                    variable: "DCBACKUP_MAX_RUNNING",
                    parameter: "MaxRunning",
                    default: Some(Config::DEFAULT_MAX_RUNNING.to_string()),
                },
            ],
        },
        // `sweeper::Sweeper`: expired leases through the expiring-leases index and a
        // dead-lettered job's subcloud by id (subclouds); each such operation ended as
        // failed in one transaction: the slot (subclouds), the record (operations) and its
        // seat given back (groups, counters); dead-lettered jobs received and deleted; a
        // recovered create's record read (operations), its upload aborted and its archive
        // deleted (the bucket).
        Background {
            function: "sweeper",
            handler: "serve_sweeper",
            trigger: Trigger::Schedule {
                parameter: "SweepSchedule",
                every_seconds: 60,
            },
            grants: Grants {
                crud: &[
                    "SubcloudsTable",
                    "OperationsTable",
                    "GroupsTable",
                    "CountersTable",
                ],
                read: &[],
                sends_jobs: false,
                takes_dead_letters: true,
                // `CentralStore::delete_object` of a recovered create's archive, and the
                // abort of its multipart upload (`Sweeper::discard_upload`).
                backup_bucket: &["s3:DeleteObject", "s3:AbortMultipartUpload"],
                agent_secret: false,
            },
            settings: vec![],
        },
        // `scheduler::Scheduler`: due schedules through the due-schedules index, each firing
        // claimed and recorded (schedules); then `operations::start`, as subcloud-backup
        // create: the target resolved (groups, names), the slots claimed (subclouds), the
        // records (operations), the jobs; inline events keyed by id (idempotency).
        Background {
            function: "scheduler",
            handler: "serve_scheduler",
            trigger: Trigger::Schedule {
                parameter: "SchedulerSchedule",
                every_seconds: 60,
            },
            grants: Grants {
                crud: &[
                    "SchedulesTable",
                    "SubcloudsTable",
                    "OperationsTable",
                    "IdempotencyTable",
                ],
                read: &["GroupsTable", "NamesTable"],
                sends_jobs: true,
                takes_dead_letters: false,
                backup_bucket: &[],
                agent_secret: false,
            },
            settings: vec![],
        },
    ]
}

/// Where the worker finds the key it signs agent tokens with (`runtime::agent_secret`).
const AGENT_SECRET_VARIABLE: &str = dcbackup::runtime::AGENT_SECRET_ARN_VARIABLE;
const AGENT_SECRET_PARAMETER: &str = "AgentSecretArn";

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn code() -> Resources {
    Resources::with_prefix(Resources::DEFAULT_PREFIX).expect("the default prefix is valid")
}

/// Collects every difference, so that one run names them all.
#[derive(Default)]
struct Drift(Vec<String>);

impl Drift {
    fn compare<T: PartialEq + Debug>(&mut self, what: &str, template: T, code: T) {
        if template != code {
            self.0.push(format!(
                "{what}: the template has {template:?}, the code {code:?}"
            ));
        }
    }

    fn note(&mut self, message: String) {
        self.0.push(message);
    }

    fn assert_none(self) {
        assert!(
            self.0.is_empty(),
            "{TEMPLATE} has drifted from the code:\n- {}",
            self.0.join("\n- ")
        );
    }
}

struct Template(Value);

impl Template {
    fn load() -> Template {
        let path = repo_root().join(TEMPLATE);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        Template(
            serde_yaml::from_str(&text)
                .unwrap_or_else(|e| panic!("{} is not YAML: {e}", path.display())),
        )
    }

    fn resources(&self) -> impl Iterator<Item = (&str, &Value)> {
        let resources = field(&self.0, "Resources", TEMPLATE);
        resources
            .as_mapping()
            .unwrap_or_else(|| panic!("{TEMPLATE}: Resources is not a mapping"))
            .iter()
            .map(|(id, resource)| (text(id, "a logical id"), resource))
    }

    fn ids_of_type(&self, kind: &str) -> BTreeSet<String> {
        self.resources()
            .filter(|(_, resource)| resource.get("Type") == Some(&Value::from(kind)))
            .map(|(id, _)| id.to_owned())
            .collect()
    }

    /// The properties of resource `id`, which must be of type `kind`.
    fn properties(&self, id: &str, kind: &str) -> Result<&Value, String> {
        let (_, resource) = self
            .resources()
            .find(|(found, _)| *found == id)
            .ok_or_else(|| format!("{id}: no such resource (expected {kind})"))?;
        let found = text(field(resource, "Type", id), id);
        if found != kind {
            return Err(format!("{id}: of type {found}, expected {kind}"));
        }
        Ok(field(resource, "Properties", id))
    }

    /// A name as CloudFormation resolves it with every parameter at its default: plain or
    /// `!Sub "…${Parameter}…"`.
    fn resolve(&self, value: &Value, what: &str) -> String {
        match value {
            Value::Tagged(tagged) if tagged.tag == "Sub" => {
                let mut rest = text(&tagged.value, what);
                let mut resolved = String::new();
                while let Some(start) = rest.find("${") {
                    let end = rest[start..]
                        .find('}')
                        .unwrap_or_else(|| panic!("{what}: unclosed ${{ in !Sub"))
                        + start;
                    resolved.push_str(&rest[..start]);
                    resolved.push_str(&self.parameter_default(&rest[start + 2..end], what));
                    rest = &rest[end + 1..];
                }
                resolved + rest
            }
            other => text(other, what).to_owned(),
        }
    }

    fn has_parameter(&self, name: &str) -> bool {
        self.0
            .get("Parameters")
            .and_then(|parameters| parameters.get(name))
            .is_some()
    }

    /// A parameter's default as CloudFormation passes it on: a string, numbers included.
    fn parameter_default(&self, name: &str, what: &str) -> String {
        let parameter = self
            .0
            .get("Parameters")
            .and_then(|parameters| parameters.get(name))
            .unwrap_or_else(|| panic!("{what}: {name} is not a parameter of the template"));
        match field(parameter, "Default", name) {
            Value::Number(number) => number.to_string(),
            other => text(other, name).to_owned(),
        }
    }
}

fn field<'a>(value: &'a Value, key: &str, what: &str) -> &'a Value {
    value
        .get(key)
        .unwrap_or_else(|| panic!("{what} has no {key}"))
}

/// A plain string; a tagged value (an unexpected intrinsic function) is refused.
fn text<'a>(value: &'a Value, what: &str) -> &'a str {
    match value {
        Value::String(s) => s,
        other => panic!("{what}: expected a string, found {other:?}"),
    }
}

/// CloudFormation takes numbers written either way.
fn number(value: &Value, what: &str) -> u64 {
    match value {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
    .unwrap_or_else(|| panic!("{what}: expected a whole number, found {value:?}"))
}

fn list<'a>(value: &'a Value, what: &str) -> &'a [Value] {
    value
        .as_sequence()
        .unwrap_or_else(|| panic!("{what}: expected a list, found {value:?}"))
}

/// The logical id of `!Ref Id`, or `!GetAtt Id.<attribute>`.
fn target<'a>(value: &'a Value, tag: &str, attribute: Option<&str>) -> Option<&'a str> {
    match value {
        Value::Tagged(tagged) if tagged.tag == tag => {
            let target = tagged.value.as_str()?;
            match attribute {
                Some(attribute) => target.strip_suffix(&format!(".{attribute}")),
                None => Some(target),
            }
        }
        _ => None,
    }
}

/// (attribute, HASH | RANGE), in order.
fn template_key_schema(value: &Value, what: &str) -> Vec<(String, String)> {
    list(value, what)
        .iter()
        .map(|element| {
            (
                text(field(element, "AttributeName", what), what).to_owned(),
                text(field(element, "KeyType", what), what).to_owned(),
            )
        })
        .collect()
}

fn code_key_schema(key: &Key) -> Vec<(String, String)> {
    std::iter::once((key.hash.0, "HASH"))
        .chain(key.range.map(|(name, _)| (name, "RANGE")))
        .map(|(name, kind)| (name.to_owned(), kind.to_owned()))
        .collect()
}

#[test]
fn tables_match_the_code() {
    let template = Template::load();
    let mut drift = Drift::default();
    let tables = code().tables();
    for table in &tables {
        let id = table.logical_id;
        let props = match template.properties(id, "AWS::DynamoDB::Table") {
            Ok(props) => props,
            Err(e) => {
                drift.note(e);
                continue;
            }
        };
        let what = |name: &str| format!("{id} {name}");
        drift.compare(
            &what("TableName"),
            template.resolve(field(props, "TableName", id), id),
            table.name.clone(),
        );
        drift.compare(
            &what("BillingMode"),
            text(field(props, "BillingMode", id), id),
            table.billing_mode().as_str(),
        );
        let definitions: BTreeSet<(String, String)> =
            list(field(props, "AttributeDefinitions", id), id)
                .iter()
                .map(|d| {
                    (
                        text(field(d, "AttributeName", id), id).to_owned(),
                        text(field(d, "AttributeType", id), id).to_owned(),
                    )
                })
                .collect();
        drift.compare(
            &what("AttributeDefinitions"),
            definitions,
            table
                .attribute_definitions()
                .iter()
                .map(|d| {
                    (
                        d.attribute_name().to_owned(),
                        d.attribute_type().as_str().to_owned(),
                    )
                })
                .collect(),
        );
        drift.compare(
            &what("KeySchema"),
            template_key_schema(field(props, "KeySchema", id), id),
            code_key_schema(&table.key),
        );
        // (name, key schema, projection), by name; the code projects every attribute.
        let mut indexes: Vec<_> = props
            .get("GlobalSecondaryIndexes")
            .map_or(&[][..], |indexes| list(indexes, id))
            .iter()
            .map(|index| {
                let projection = field(field(index, "Projection", id), "ProjectionType", id);
                (
                    text(field(index, "IndexName", id), id).to_owned(),
                    template_key_schema(field(index, "KeySchema", id), id),
                    text(projection, id).to_owned(),
                )
            })
            .collect();
        indexes.sort();
        let mut expected: Vec<_> = table
            .indexes
            .iter()
            .map(|index| {
                (
                    index.name.to_owned(),
                    code_key_schema(&index.key),
                    "ALL".to_owned(),
                )
            })
            .collect();
        expected.sort();
        drift.compare(&what("GlobalSecondaryIndexes"), indexes, expected);
        let ttl = props.get("TimeToLiveSpecification").map(|spec| {
            (
                text(field(spec, "AttributeName", id), id).to_owned(),
                field(spec, "Enabled", id) == &Value::Bool(true),
            )
        });
        drift.compare(
            &what("TimeToLiveSpecification (attribute, enabled)"),
            ttl,
            table
                .ttl_attribute
                .map(|attribute| (attribute.to_owned(), true)),
        );
    }
    let defined: BTreeSet<String> = tables.iter().map(|t| t.logical_id.to_owned()).collect();
    for extra in template
        .ids_of_type("AWS::DynamoDB::Table")
        .difference(&defined)
    {
        drift.note(format!(
            "{extra}: a table that resources.rs does not define"
        ));
    }
    drift.assert_none();
}

#[test]
fn queues_match_the_code() {
    let template = Template::load();
    let mut drift = Drift::default();
    let queues = code().queues();
    for queue in &queues {
        let id = queue.logical_id;
        let props = match template.properties(id, "AWS::SQS::Queue") {
            Ok(props) => props,
            Err(e) => {
                drift.note(e);
                continue;
            }
        };
        let what = |name: &str| format!("{id} {name}");
        drift.compare(
            &what("QueueName"),
            template.resolve(field(props, "QueueName", id), id),
            queue.name.clone(),
        );
        drift.compare(
            &what("VisibilityTimeout"),
            number(field(props, "VisibilityTimeout", id), id),
            u64::from(queue.visibility_timeout_seconds),
        );
        drift.compare(
            &what("MessageRetentionPeriod"),
            number(field(props, "MessageRetentionPeriod", id), id),
            u64::from(queue.retention_seconds),
        );
        // The dead-letter queue as its logical id, so that `!GetAtt <Id>.Arn` compares.
        let redrive = props.get("RedrivePolicy").map(|policy| {
            let arn = field(policy, "deadLetterTargetArn", id);
            let dead_letter = target(arn, "GetAtt", Some("Arn"))
                .unwrap_or_else(|| panic!("{id}: deadLetterTargetArn is not !GetAtt <Id>.Arn"));
            let receives = number(field(policy, "maxReceiveCount", id), id);
            (dead_letter.to_owned(), receives)
        });
        let expected = queue.redrive.as_ref().map(|(name, receives)| {
            let dead_letter = queues
                .iter()
                .find(|q| q.name == *name)
                .unwrap_or_else(|| panic!("resources.rs: {id} redrives to unknown queue {name}"));
            (dead_letter.logical_id.to_owned(), u64::from(*receives))
        });
        drift.compare(&what("RedrivePolicy"), redrive, expected);
    }
    let defined: BTreeSet<String> = queues.iter().map(|q| q.logical_id.to_owned()).collect();
    for extra in template.ids_of_type("AWS::SQS::Queue").difference(&defined) {
        drift.note(format!(
            "{extra}: a queue that resources.rs does not define"
        ));
    }
    drift.assert_none();
}

/// One bucket, the one the policies name. Bucket names are global across AWS, so its name
/// is CloudFormation's (unique) unless the deployer gives one (`BackupBucketName`); the
/// worker learns it from `DCBACKUP_BACKUP_BUCKET` (checked with its grants).
#[test]
fn the_bucket_matches_the_code() {
    let template = Template::load();
    let mut drift = Drift::default();
    drift.compare(
        "S3 buckets (logical ids)",
        template.ids_of_type("AWS::S3::Bucket"),
        BTreeSet::from([BACKUP_BUCKET.to_owned()]),
    );
    if let Ok(props) = template.properties(BACKUP_BUCKET, "AWS::S3::Bucket") {
        let name = props.get("BucketName").map(|name| format!("{name:?}"));
        let conditional = |value: &Value| match value {
            Value::Tagged(tagged) if tagged.tag == "If" => {
                let branches = list(&tagged.value, BACKUP_BUCKET);
                branches.len() == 3
                    && target(&branches[1], "Ref", None) == Some("BackupBucketName")
                    && target(&branches[2], "Ref", None) == Some("AWS::NoValue")
            }
            _ => false,
        };
        if !props.get("BucketName").is_none_or(conditional) {
            drift.note(format!(
                "{BACKUP_BUCKET} BucketName: {name:?}, a fixed name that may be taken; \
                 expected none, or !If [.., !Ref BackupBucketName, !Ref AWS::NoValue]"
            ));
        }
        check_parameter(
            &template,
            &mut drift,
            BACKUP_BUCKET,
            "BackupBucketName",
            Some(String::new()),
        );
        // Central backups go up as multipart uploads: one a crash leaves incomplete is aborted by
        // a lifecycle rule within a day rather than billed for ever.
        let aborts_after: Vec<u64> = props
            .get("LifecycleConfiguration")
            .and_then(|c| c.get("Rules"))
            .and_then(Value::as_sequence)
            .map(|rules| {
                rules
                    .iter()
                    .filter(|rule| {
                        rule.get("Status").and_then(Value::as_str) == Some("Enabled")
                            && rule.get("Prefix").is_none()
                            && rule.get("Filter").is_none()
                    })
                    .filter_map(|rule| {
                        rule.get("AbortIncompleteMultipartUpload")?
                            .get("DaysAfterInitiation")?
                            .as_u64()
                    })
                    .collect()
            })
            .unwrap_or_default();
        drift.compare(
            "the bucket's lifecycle rules aborting incomplete multipart uploads (days after initiation)",
            aborts_after,
            vec![1],
        );
    }
    drift.assert_none();
}

/// Tables and the bucket hold the data: a first create that fails rolls back clean, and a
/// delete or a replacement later keeps them; a table also refuses deletion itself.
#[test]
fn stored_data_outlives_the_stack() {
    let template = Template::load();
    let mut drift = Drift::default();
    let kept = template
        .ids_of_type("AWS::DynamoDB::Table")
        .into_iter()
        .chain(template.ids_of_type("AWS::S3::Bucket"));
    for id in kept {
        let (_, resource) = template
            .resources()
            .find(|(found, _)| *found == id)
            .expect("listed");
        for (attribute, policy) in [
            ("DeletionPolicy", "RetainExceptOnCreate"),
            ("UpdateReplacePolicy", "Retain"),
        ] {
            drift.compare(
                &format!("{id} {attribute}"),
                resource.get(attribute).and_then(Value::as_str),
                Some(policy),
            );
        }
        if let Ok(props) = template.properties(&id, "AWS::DynamoDB::Table") {
            drift.compare(
                &format!("{id} DeletionProtectionEnabled"),
                props.get("DeletionProtectionEnabled"),
                Some(&Value::Bool(true)),
            );
        }
    }
    drift.assert_none();
}

/// The policy override reaches every function: `DCBACKUP_POLICY_FILE` is a file of the layer
/// every function has (Lambda mounts layers under /opt), and the file as shipped loads.
#[test]
fn the_policy_override_reaches_the_functions() {
    let template = Template::load();
    let mut drift = Drift::default();
    let globals = ["Globals", "Function"]
        .iter()
        .fold(&template.0, |value, key| field(value, key, "the template"));
    let layers: Vec<Option<&str>> = globals
        .get("Layers")
        .map_or(&[][..], |layers| list(layers, "Globals Layers"))
        .iter()
        .map(|layer| target(layer, "Ref", None))
        .collect();
    drift.compare("Globals Layers", layers, vec![Some("PolicyLayer")]);
    for id in template.ids_of_type("AWS::Serverless::Function") {
        let props = template
            .properties(&id, "AWS::Serverless::Function")
            .expect("listed");
        if props.get("Layers").is_some() {
            drift.note(format!("{id}: Layers of its own replace the policy layer"));
        }
    }
    let path = field(globals, "Environment", "Globals")
        .get("Variables")
        .and_then(|variables| variables.get("DCBACKUP_POLICY_FILE"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    match template.properties("PolicyLayer", "AWS::Serverless::LayerVersion") {
        Err(e) => drift.note(e),
        Ok(props) => {
            let content = text(field(props, "ContentUri", "PolicyLayer"), "PolicyLayer");
            match path.strip_prefix("/opt/") {
                None => drift.note(format!(
                    "Globals DCBACKUP_POLICY_FILE: {path:?}, not a file of a layer (/opt/...)"
                )),
                Some(inside) => {
                    let file = repo_root().join("infra").join(content).join(inside);
                    if let Err(e) = dcbackup::auth::Policy::with_overrides_file(&file) {
                        drift.note(format!("{}: {e}", file.display()));
                    }
                }
            }
        }
    }
    drift.assert_none();
}

/// What an operator needs: traces, alarms on what fails silently (dead letters, background
/// functions' errors and throttles, the API's 5xx), the API's throttling, and a cap on the
/// worker's concurrency so a large group's jobs leave Lambda concurrency to the API.
#[test]
fn the_stack_is_operable() {
    let template = Template::load();
    let mut drift = Drift::default();
    let globals = ["Globals", "Function"]
        .iter()
        .fold(&template.0, |value, key| field(value, key, "the template"));
    drift.compare(
        "Globals Tracing",
        globals.get("Tracing").and_then(Value::as_str),
        Some("Active"),
    );
    if let Ok(props) = template.properties(API, "AWS::Serverless::HttpApi") {
        // Throttled requests (429) reach no function: only the access log shows them.
        let destination = props
            .get("AccessLogSettings")
            .and_then(|settings| settings.get("DestinationArn"))
            .and_then(|arn| target(arn, "GetAtt", Some("Arn")));
        match destination {
            None => drift.note(format!(
                "{API}: no AccessLogSettings DestinationArn (!GetAtt <LogGroup>.Arn)"
            )),
            Some(group) => {
                if let Err(e) = template.properties(group, "AWS::Logs::LogGroup") {
                    drift.note(e);
                }
            }
        }
        let settings = props.get("DefaultRouteSettings");
        for (limit, parameter) in [
            ("ThrottlingRateLimit", "ApiThrottlingRateLimit"),
            ("ThrottlingBurstLimit", "ApiThrottlingBurstLimit"),
        ] {
            drift.compare(
                &format!("{API} DefaultRouteSettings {limit}"),
                settings
                    .and_then(|settings| settings.get(limit))
                    .and_then(|value| target(value, "Ref", None)),
                Some(parameter),
            );
        }
    }
    let worker = function_logical_id("worker");
    if let Ok(props) = template.properties(&worker, "AWS::Serverless::Function") {
        let caps: Vec<Option<&str>> = props
            .get("Events")
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
            .map(|(_, event)| {
                event
                    .get("Properties")
                    .and_then(|properties| properties.get("ScalingConfig"))
                    .and_then(|scaling| scaling.get("MaximumConcurrency"))
                    .and_then(|cap| target(cap, "Ref", None))
            })
            .collect();
        drift.compare(
            &format!("{worker} Events ScalingConfig MaximumConcurrency"),
            caps,
            vec![Some("WorkerMaxConcurrency")],
        );
    }
    // (namespace, metric, the resource its dimension names) of every alarm.
    let alarms: BTreeSet<(String, String, String)> = template
        .ids_of_type("AWS::CloudWatch::Alarm")
        .iter()
        .map(|id| {
            let props = template
                .properties(id, "AWS::CloudWatch::Alarm")
                .expect("listed");
            let dimension = props
                .get("Dimensions")
                .map_or(&[][..], |dimensions| list(dimensions, id))
                .first()
                .and_then(|dimension| dimension.get("Value"))
                .and_then(|value| {
                    target(value, "Ref", None)
                        .or_else(|| target(value, "GetAtt", Some("QueueName")))
                })
                .unwrap_or_default()
                .to_owned();
            (
                text(field(props, "Namespace", id), id).to_owned(),
                text(field(props, "MetricName", id), id).to_owned(),
                dimension,
            )
        })
        .collect();
    let mut expected = BTreeSet::from([
        (
            "AWS/SQS".to_owned(),
            "ApproximateNumberOfMessagesVisible".to_owned(),
            DEAD_LETTER_QUEUE.to_owned(),
        ),
        (
            "AWS/ApiGateway".to_owned(),
            "5xx".to_owned(),
            API.to_owned(),
        ),
    ]);
    for known in background() {
        if matches!(known.trigger, Trigger::DefaultRoute) {
            continue;
        }
        for metric in ["Errors", "Throttles"] {
            expected.insert((
                "AWS/Lambda".to_owned(),
                metric.to_owned(),
                function_logical_id(known.function),
            ));
        }
    }
    for missing in expected.difference(&alarms) {
        drift.note(format!("no alarm on {missing:?}"));
    }
    drift.assert_none();
}

/// The names the code derives and the names the stack creates meet only through the prefix
/// every function is given; the other settings are the code's defaults unless overridden.
#[test]
fn functions_get_the_stack_settings() {
    let template = Template::load();
    let mut drift = Drift::default();
    let variables = ["Globals", "Function", "Environment", "Variables"]
        .iter()
        .fold(&template.0, |value, key| field(value, key, "the template"));
    for (variable, parameter, default) in [
        (
            "DCBACKUP_RESOURCE_PREFIX",
            "ResourcePrefix",
            Resources::DEFAULT_PREFIX.to_owned(),
        ),
        (
            "DCBACKUP_MAX_BODY_BYTES",
            "MaxBodyBytes",
            Config::DEFAULT_MAX_BODY_BYTES.to_string(),
        ),
        (
            "DCBACKUP_LEASE_SECONDS",
            "LeaseSeconds",
            Config::DEFAULT_LEASE_SECONDS.to_string(),
        ),
        (
            "DCBACKUP_CLAIM_CONCURRENCY",
            "ClaimConcurrency",
            Config::DEFAULT_CLAIM_CONCURRENCY.to_string(),
        ),
        (
            "DCBACKUP_OPERATION_HISTORY_DAYS",
            "OperationHistoryDays",
            Config::DEFAULT_OPERATION_HISTORY_DAYS.to_string(),
        ),
    ] {
        drift.compare(
            &format!("Globals {variable}"),
            variables.get(variable).and_then(|v| target(v, "Ref", None)),
            Some(parameter),
        );
        if template.has_parameter(parameter) {
            drift.compare(
                &format!("parameter {parameter}'s default"),
                template.parameter_default(parameter, TEMPLATE),
                default,
            );
        } else {
            drift.note(format!("{parameter}: no such parameter"));
        }
    }
    // An Idempotency-Key is held for the API functions' own timeout (and a margin).
    let globals = ["Globals", "Function"]
        .iter()
        .fold(&template.0, |value, key| field(value, key, "the template"));
    let timeout = globals.get("Timeout").map(|t| number(t, "Globals"));
    drift.compare(
        "Globals DCBACKUP_FUNCTION_TIMEOUT_SECONDS",
        variables
            .get("DCBACKUP_FUNCTION_TIMEOUT_SECONDS")
            .map(|t| number(t, "Globals")),
        timeout,
    );
    drift.compare(
        "Globals Timeout",
        timeout,
        Some(Config::DEFAULT_FUNCTION_TIMEOUT_SECONDS),
    );
    // Set on the functions that need them only: the secret above all.
    let own = background()
        .into_iter()
        .flat_map(|function| function.settings)
        .map(|setting| setting.variable)
        .chain([
            JOBS_QUEUE_URL_VARIABLE,
            DEAD_LETTER_QUEUE_URL_VARIABLE,
            BACKUP_BUCKET_VARIABLE,
        ]);
    for variable in own {
        if variables.get(variable).is_some() {
            drift.note(format!(
                "Globals {variable}: set only on the functions that need it"
            ));
        }
    }
    drift.assert_none();
}

/// The agents' key never passes through CloudFormation: the template takes the ARN of a
/// Secrets Manager secret (no default), refuses anything else, and gives it to the worker
/// only (the environment check above: no function has the key itself).
#[test]
fn the_agent_key_is_a_secrets_manager_secret_named_by_arn() {
    let template = Template::load();
    let mut drift = Drift::default();
    match template
        .0
        .get("Parameters")
        .and_then(|parameters| parameters.get(AGENT_SECRET_PARAMETER))
    {
        None => drift.note(format!("{AGENT_SECRET_PARAMETER}: no such parameter")),
        Some(parameter) => {
            let what = |name: &str| format!("parameter {AGENT_SECRET_PARAMETER} {name}");
            drift.compare(
                &what("Type"),
                parameter.get("Type").and_then(Value::as_str),
                Some("String"),
            );
            drift.compare(&what("Default"), parameter.get("Default"), None);
            let pattern = parameter.get("AllowedPattern").and_then(Value::as_str);
            if !pattern.is_some_and(|p| p.starts_with("^arn:") && p.contains(":secretsmanager:")) {
                drift.note(format!(
                    "{}: {pattern:?}, not a Secrets Manager ARN",
                    what("AllowedPattern")
                ));
            }
        }
    }
    drift.assert_none();
}

/// A function's policy as (SAM policy template, the table, queue or bucket it is scoped to),
/// or for an inline statement (action, resource): `<Bucket>` for `!GetAtt <Bucket>.Arn` and
/// `<Bucket>/*` for `!Sub "${<Bucket>.Arn}/*"`. A scope written any other way than the
/// template needs (`!Ref <Table>` for a table, `!GetAtt <Queue>.QueueName` for a queue), a
/// managed policy, a `Deny` or a condition comes out as written, so that it never matches.
fn policy_grants(policy: &Value, what: &str) -> Vec<(String, String)> {
    match policy {
        Value::String(managed) => vec![("managed policy".to_owned(), managed.clone())],
        Value::Mapping(inline) if inline.contains_key("Statement") => {
            list(field(policy, "Statement", what), what)
                .iter()
                .flat_map(|statement| statement_grants(statement, what))
                .collect()
        }
        Value::Mapping(templates) => templates
            .iter()
            .flat_map(|(kind, parameters)| {
                let kind = text(kind, what);
                if kind == "Statement" {
                    return statement_grants(parameters, what);
                }
                let scope = match kind {
                    "SQSSendMessagePolicy" | "SQSPollerPolicy" => parameters
                        .get("QueueName")
                        .and_then(|queue| target(queue, "GetAtt", Some("QueueName"))),
                    "AWSSecretsManagerGetSecretValuePolicy" => parameters
                        .get("SecretArn")
                        .and_then(|arn| target(arn, "Ref", None)),
                    _ if kind.starts_with("S3") => parameters
                        .get("BucketName")
                        .and_then(|bucket| target(bucket, "Ref", None)),
                    _ => parameters
                        .get("TableName")
                        .and_then(|table| target(table, "Ref", None)),
                };
                vec![(
                    kind.to_owned(),
                    scope.map_or_else(|| format!("{parameters:?}"), str::to_owned),
                )]
            })
            .collect(),
        other => vec![("policy".to_owned(), format!("{other:?}"))],
    }
}

/// SAM's policy templates (its `policy_templates.json`) as the actions they grant; a table's
/// are granted on the table and its indexes.
const CRUD_ACTIONS: &[&str] = &[
    "dynamodb:GetItem",
    "dynamodb:DeleteItem",
    "dynamodb:PutItem",
    "dynamodb:Scan",
    "dynamodb:Query",
    "dynamodb:UpdateItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:BatchGetItem",
    "dynamodb:DescribeTable",
    "dynamodb:ConditionCheckItem",
];
const READ_ACTIONS: &[&str] = &[
    "dynamodb:GetItem",
    "dynamodb:Scan",
    "dynamodb:Query",
    "dynamodb:BatchGetItem",
    "dynamodb:DescribeTable",
];
const SEND_ACTIONS: &[&str] = &["sqs:SendMessage*"];
const POLLER_ACTIONS: &[&str] = &[
    "sqs:ChangeMessageVisibility",
    "sqs:ChangeMessageVisibilityBatch",
    "sqs:DeleteMessage",
    "sqs:DeleteMessageBatch",
    "sqs:GetQueueAttributes",
    "sqs:ReceiveMessage",
];
/// What Lambda's poller needs of a queue that drives a function (an SQS event source).
const EVENT_SOURCE_ACTIONS: &[&str] = &[
    "sqs:ReceiveMessage",
    "sqs:DeleteMessage",
    "sqs:GetQueueAttributes",
];
/// The one log group of every function, and what a function with its own role may do there.
const LOG_GROUP: &str = "FunctionLogGroup";
const LOG_ACTIONS: &[&str] = &["logs:CreateLogStream", "logs:PutLogEvents"];
const TRACE_ACTIONS: &[&str] = &["xray:PutTraceSegments", "xray:PutTelemetryRecords"];
/// `AWSSecretsManagerGetSecretValuePolicy`, on the secret its ARN parameter names.
const SECRET_ACTIONS: &[&str] = &["secretsmanager:GetSecretValue"];

/// A SAM policy template scoped to a table or a queue, as (action, resource) pairs; anything
/// else (an inline statement's pair, a managed policy) as it is.
fn expand_policy_template(policy: &str, scope: &str) -> Vec<(String, String)> {
    let (actions, resources) = match policy {
        "DynamoDBCrudPolicy" => (
            CRUD_ACTIONS,
            vec![scope.to_owned(), format!("{scope}/index/*")],
        ),
        "DynamoDBReadPolicy" => (
            READ_ACTIONS,
            vec![scope.to_owned(), format!("{scope}/index/*")],
        ),
        "SQSSendMessagePolicy" => (SEND_ACTIONS, vec![scope.to_owned()]),
        "SQSPollerPolicy" => (POLLER_ACTIONS, vec![scope.to_owned()]),
        "AWSSecretsManagerGetSecretValuePolicy" => (SECRET_ACTIONS, vec![scope.to_owned()]),
        _ => return vec![(policy.to_owned(), scope.to_owned())],
    };
    actions
        .iter()
        .flat_map(|action| {
            resources
                .iter()
                .map(move |resource| ((*action).to_owned(), resource.clone()))
        })
        .collect()
}

/// The (action, resource) pairs of a function's own role (`Role: !GetAtt <Role>.Arn`): an
/// `AWS::IAM::Role` that only Lambda may assume, with inline policies and no managed one.
fn role_grants(
    template: &Template,
    drift: &mut Drift,
    id: &str,
    role: &Value,
) -> BTreeSet<(String, String)> {
    let Some(role_id) = target(role, "GetAtt", Some("Arn")) else {
        drift.note(format!(
            "{id} Role: {role:?}, not !GetAtt <Role>.Arn of this stack"
        ));
        return BTreeSet::new();
    };
    let props = match template.properties(role_id, "AWS::IAM::Role") {
        Ok(props) => props,
        Err(e) => {
            drift.note(e);
            return BTreeSet::new();
        }
    };
    for extra in ["ManagedPolicyArns", "PermissionsBoundary"] {
        if props.get(extra).is_some() {
            drift.note(format!("{role_id}: {extra}, beyond its inline policies"));
        }
    }
    let principals: Vec<String> = list(
        field(
            field(props, "AssumeRolePolicyDocument", role_id),
            "Statement",
            role_id,
        ),
        role_id,
    )
    .iter()
    .map(|statement| format!("{:?}", statement.get("Principal")))
    .collect();
    drift.compare(
        &format!("{role_id} AssumeRolePolicyDocument principals"),
        principals,
        vec![format!(
            "{:?}",
            serde_yaml::from_str::<Value>("{Service: lambda.amazonaws.com}")
                .ok()
                .as_ref()
        )],
    );
    props
        .get("Policies")
        .map_or(&[][..], |policies| list(policies, role_id))
        .iter()
        .flat_map(|policy| {
            list(
                field(
                    field(policy, "PolicyDocument", role_id),
                    "Statement",
                    role_id,
                ),
                role_id,
            )
        })
        .flat_map(|statement| statement_grants(statement, role_id))
        .collect()
}

/// One inline statement's (action, resource) pairs; see `policy_grants`.
fn statement_grants(statement: &Value, what: &str) -> Vec<(String, String)> {
    let plain = statement.get("Effect").and_then(Value::as_str) == Some("Allow")
        && statement.get("Condition").is_none()
        && statement.get("NotAction").is_none()
        && statement.get("NotResource").is_none();
    if !plain {
        return vec![("statement".to_owned(), format!("{statement:?}"))];
    }
    let one_or_many = |value: &Value| -> Vec<Value> {
        match value {
            Value::Sequence(many) => many.clone(),
            one => vec![one.clone()],
        }
    };
    let resources: Vec<String> = one_or_many(field(statement, "Resource", what))
        .iter()
        .map(|resource| {
            if let Some(id) =
                target(resource, "GetAtt", Some("Arn")).or_else(|| target(resource, "Ref", None))
            {
                return id.to_owned();
            }
            match resource {
                // `${<Id>.Arn}<rest>` as `<Id><rest>`.
                Value::Tagged(tagged) if tagged.tag == "Sub" => tagged
                    .value
                    .as_str()
                    .and_then(|sub| sub.strip_prefix("${"))
                    .and_then(|sub| sub.split_once(".Arn}"))
                    .map_or_else(
                        || format!("{resource:?}"),
                        |(id, rest)| format!("{id}{rest}"),
                    ),
                Value::String(any) if any == "*" => any.clone(),
                other => format!("{other:?}"),
            }
        })
        .collect();
    one_or_many(field(statement, "Action", what))
        .iter()
        .flat_map(|action| {
            let action = text(action, what).to_owned();
            resources
                .iter()
                .map(move |resource| (action.clone(), resource.clone()))
        })
        .collect()
}

/// `subclouds-list` → `SubcloudsListFunction`.
fn function_logical_id(function: &str) -> String {
    let mut id: String = function
        .split('-')
        .flat_map(|word| {
            let mut chars = word.chars();
            chars
                .next()
                .map(|first| first.to_ascii_uppercase())
                .into_iter()
                .chain(chars)
        })
        .collect();
    id.push_str("Function");
    id
}

/// `!Ref X` as "!Ref X"; anything else as written.
fn show_ref(value: &Value) -> String {
    match target(value, "Ref", None) {
        Some(id) => format!("!Ref {id}"),
        None => format!("{value:?}"),
    }
}

/// What every function is checked for, whether it serves a route or not: its name, its code,
/// exactly its grants, and exactly the variables it is given beyond `Globals`.
/// `consumes`: the queue whose event source drives it.
#[allow(clippy::too_many_arguments)]
fn check_function(
    template: &Template,
    drift: &mut Drift,
    id: &str,
    props: &Value,
    function: &str,
    grants: &Grants,
    settings: &[Setting],
    consumes: Option<&str>,
) {
    let what = |name: &str| format!("{id} {name}");
    drift.compare(
        &what("FunctionName"),
        template.resolve(field(props, "FunctionName", id), id),
        format!("{}-{function}", Resources::DEFAULT_PREFIX),
    );
    // Where `make package` (cargo lambda build --output-format zip) puts it.
    drift.compare(
        &what("CodeUri"),
        template.resolve(field(props, "CodeUri", id), id),
        format!("../target/lambda/{function}/bootstrap.zip"),
    );
    let manifest = repo_root()
        .join("functions")
        .join(function)
        .join("Cargo.toml");
    let package = std::fs::read_to_string(&manifest).unwrap_or_default();
    if !package
        .lines()
        .any(|line| line.trim() == format!("name = \"{function}\""))
    {
        drift.note(format!(
            "{id}: {} does not define the package {function}",
            manifest.display()
        ));
    }
    let tables: BTreeSet<&str> = code().tables().iter().map(|t| t.logical_id).collect();
    // (action, resource) pairs, resources by logical id (`<Table>/index/*` for its indexes,
    // `<Bucket>/*` for its objects).
    let granted: BTreeSet<(String, String)> = match props.get("Role") {
        // A role of its own: SAM adds nothing to it.
        Some(role) => role_grants(template, drift, id, role),
        None => {
            if let Some(queue) = consumes {
                drift.note(format!(
                    "{id}: consumes {queue} with a role SAM makes, to which SAM adds the \
                     account-wide AWSLambdaSQSQueueExecutionRole; give it a Role of its own"
                ));
            }
            props
                .get("Policies")
                .map_or(&[][..], |policies| list(policies, id))
                .iter()
                .flat_map(|policy| policy_grants(policy, id))
                .flat_map(|(policy, scope)| expand_policy_template(&policy, &scope))
                .collect()
        }
    };
    let mut needed = BTreeSet::new();
    let mut grant = |actions: &[&str], resources: &[String]| {
        for action in actions {
            for resource in resources {
                needed.insert(((*action).to_owned(), resource.clone()));
            }
        }
    };
    for (actions, needs) in [(CRUD_ACTIONS, grants.crud), (READ_ACTIONS, grants.read)] {
        for table in needs {
            if !tables.contains(table) {
                drift.note(format!(
                    "the test's grants for {id} name {table}, a table resources.rs does not define"
                ));
            }
            grant(actions, &[(*table).to_owned(), format!("{table}/index/*")]);
        }
    }
    if grants.sends_jobs {
        grant(SEND_ACTIONS, &[JOBS_QUEUE.to_owned()]);
    }
    if grants.takes_dead_letters {
        grant(POLLER_ACTIONS, &[DEAD_LETTER_QUEUE.to_owned()]);
    }
    for action in grants.backup_bucket {
        let resource = if *action == LIST_BUCKET {
            BACKUP_BUCKET.to_owned()
        } else {
            format!("{BACKUP_BUCKET}/*")
        };
        grant(&[action], &[resource]);
    }
    if grants.agent_secret {
        grant(SECRET_ACTIONS, &[AGENT_SECRET_PARAMETER.to_owned()]);
    }
    if props.get("Role").is_some() {
        // What SAM's basic execution and X-Ray policies would give, scoped: its logs into
        // the one log group, its traces (X-Ray's actions take no resource).
        grant(LOG_ACTIONS, &[LOG_GROUP.to_owned()]);
        grant(TRACE_ACTIONS, &["*".to_owned()]);
    }
    if let Some(queue) = consumes {
        grant(EVENT_SOURCE_ACTIONS, &[queue.to_owned()]);
    }
    for (action, resource) in needed.difference(&granted) {
        drift.note(format!("{id}: lacks {action} on {resource}"));
    }
    for (action, resource) in granted.difference(&needed) {
        drift.note(format!(
            "{id}: {action} on {resource}, which it does not need"
        ));
    }
    // Variable → value, each a `!Ref`: the jobs queue's URL to a function that sends jobs,
    // the dead-letter queue's to one that takes dead letters, its settings' parameters, and
    // nothing else (the agents' key above all).
    let environment: BTreeMap<String, String> = props
        .get("Environment")
        .and_then(|environment| environment.get("Variables"))
        .and_then(Value::as_mapping)
        .into_iter()
        .flatten()
        .map(|(variable, value)| (text(variable, id).to_owned(), show_ref(value)))
        .collect();
    let expected: BTreeMap<String, String> = grants
        .sends_jobs
        .then_some((JOBS_QUEUE_URL_VARIABLE, JOBS_QUEUE))
        .into_iter()
        .chain(
            grants
                .takes_dead_letters
                .then_some((DEAD_LETTER_QUEUE_URL_VARIABLE, DEAD_LETTER_QUEUE)),
        )
        .chain(
            (!grants.backup_bucket.is_empty()).then_some((BACKUP_BUCKET_VARIABLE, BACKUP_BUCKET)),
        )
        .chain(settings.iter().map(|s| (s.variable, s.parameter)))
        .map(|(variable, target)| (variable.to_owned(), format!("!Ref {target}")))
        .collect();
    drift.compare(&what("Environment Variables"), environment, expected);
    for setting in settings {
        check_parameter(
            template,
            drift,
            id,
            setting.parameter,
            setting.default.clone(),
        );
    }
}

/// Parameter `parameter`, which `id` needs, exists and defaults to `default` (`None`: has no
/// default, it must be given).
fn check_parameter(
    template: &Template,
    drift: &mut Drift,
    id: &str,
    parameter: &str,
    default: Option<String>,
) {
    match template
        .0
        .get("Parameters")
        .and_then(|parameters| parameters.get(parameter))
    {
        None => drift.note(format!("{parameter}: no such parameter ({id} needs it)")),
        Some(declared) => drift.compare(
            &format!("parameter {parameter}'s default"),
            declared
                .get("Default")
                .map(|_| template.parameter_default(parameter, TEMPLATE)),
            default,
        ),
    }
}

#[test]
fn every_function_serves_a_route_or_is_known_and_no_other_exists() {
    let template = Template::load();
    let mut drift = Drift::default();
    let mut defined = BTreeSet::new();
    for route in Route::ALL {
        let function = route.function();
        let id = function_logical_id(function);
        defined.insert(id.clone());
        let props = match template.properties(&id, "AWS::Serverless::Function") {
            Ok(props) => props,
            Err(e) => {
                drift.note(format!("route {} {}: {e}", route.method(), route.pattern()));
                continue;
            }
        };
        check_function(
            &template,
            &mut drift,
            &id,
            props,
            function,
            &grants(route),
            &[],
            None,
        );
        // (type, method, path, API): exactly the route, with and without a trailing slash
        // (HTTP API routes match paths exactly), on the stack's one HTTP API.
        type HttpEvent = (String, Option<String>, Option<String>, Option<String>);
        let mut events: Vec<HttpEvent> = props
            .get("Events")
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
            .map(|(_, event)| {
                let properties = field(event, "Properties", &id);
                let property = |key| {
                    properties
                        .get(key)
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                };
                (
                    text(field(event, "Type", &id), &id).to_owned(),
                    property("Method"),
                    property("Path"),
                    properties
                        .get("ApiId")
                        .and_then(|api| target(api, "Ref", None))
                        .map(str::to_owned),
                )
            })
            .collect();
        events.sort();
        let event = |path: String| {
            (
                "HttpApi".to_owned(),
                Some(route.method().to_string()),
                Some(path),
                Some(API.to_owned()),
            )
        };
        drift.compare(
            &format!("{id} Events"),
            events,
            vec![
                event(route.pattern().to_owned()),
                event(format!("{}/", route.pattern())),
            ],
        );
    }
    let queues = code().queues();
    let globals = ["Globals", "Function"]
        .iter()
        .fold(&template.0, |value, key| field(value, key, "the template"));
    for known in background() {
        let id = function_logical_id(known.function);
        defined.insert(id.clone());
        let props = match template.properties(&id, "AWS::Serverless::Function") {
            Ok(props) => props,
            Err(e) => {
                drift.note(format!(
                    "{} {}: {e}",
                    known.function,
                    known.trigger.describe()
                ));
                continue;
            }
        };
        check_function(
            &template,
            &mut drift,
            &id,
            props,
            known.function,
            &known.grants,
            &known.settings,
            match &known.trigger {
                Trigger::Queue { queue, .. } => Some(queue),
                _ => None,
            },
        );
        let main = repo_root()
            .join("functions")
            .join(known.function)
            .join("src")
            .join("main.rs");
        let call = format!("dcbackup::runtime::{}()", known.handler);
        if !std::fs::read_to_string(&main)
            .unwrap_or_default()
            .contains(&call)
        {
            drift.note(format!("{id}: {} does not call {call}", main.display()));
        }
        // Exactly the one trigger.
        let events: Vec<Event> = props
            .get("Events")
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
            .map(|(_, event)| {
                let properties = field(event, "Properties", &id);
                match text(field(event, "Type", &id), &id) {
                    "SQS" => Event::Queue {
                        queue: properties
                            .get("Queue")
                            .and_then(|queue| target(queue, "GetAtt", Some("Arn")))
                            .map(str::to_owned),
                        batch_size: properties.get("BatchSize").map(|size| number(size, &id)),
                        response_types: properties
                            .get("FunctionResponseTypes")
                            .map_or(&[][..], |types| list(types, &id))
                            .iter()
                            .map(|kind| text(kind, &id).to_owned())
                            .collect(),
                    },
                    "ScheduleV2" => Event::Schedule {
                        name: properties
                            .get("Name")
                            .map(|name| template.resolve(name, &id)),
                        expression: properties.get("ScheduleExpression").map(|expression| {
                            match target(expression, "Ref", None) {
                                Some(parameter) => format!("!Ref {parameter}"),
                                None => expression
                                    .as_str()
                                    .map_or_else(|| format!("{expression:?}"), str::to_owned),
                            }
                        }),
                        enabled: properties
                            .get("State")
                            .is_none_or(|state| state.as_str() == Some("ENABLED")),
                    },
                    "HttpApi" => {
                        let property = |key| {
                            properties
                                .get(key)
                                .and_then(Value::as_str)
                                .map(str::to_owned)
                        };
                        Event::HttpApi(
                            property("Method"),
                            property("Path"),
                            properties
                                .get("ApiId")
                                .and_then(|api| target(api, "Ref", None))
                                .map(str::to_owned),
                        )
                    }
                    other => Event::Other(other.to_owned()),
                }
            })
            .collect();
        let expected = match &known.trigger {
            Trigger::DefaultRoute => Event::HttpApi(
                Some("ANY".to_owned()),
                Some("$default".to_owned()),
                Some(API.to_owned()),
            ),
            Trigger::Queue {
                queue,
                batch_size,
                reports_item_failures,
            } => Event::Queue {
                queue: Some((*queue).to_owned()),
                batch_size: Some(*batch_size),
                response_types: reports_item_failures
                    .then(|| "ReportBatchItemFailures".to_owned())
                    .into_iter()
                    .collect(),
            },
            Trigger::Schedule {
                parameter,
                every_seconds,
            } => {
                check_parameter(
                    &template,
                    &mut drift,
                    &id,
                    parameter,
                    Some(rate_expression(*every_seconds)),
                );
                Event::Schedule {
                    name: Some(format!("{}-{}", Resources::DEFAULT_PREFIX, known.function)),
                    expression: Some(format!("!Ref {parameter}")),
                    enabled: true,
                }
            }
        };
        drift.compare(&format!("{id} Events"), events, vec![expected]);
        // (the longest Timeout allowed, what it is): a message must stay hidden while the
        // function may still be working on it, and a scheduled run must end before the next.
        let mut limits: Vec<(u64, String)> = Vec::new();
        let mut visibility = |queue: &str, why: &str| match queues
            .iter()
            .find(|q| q.logical_id == queue)
        {
            Some(found) => Some(u64::from(found.visibility_timeout_seconds)),
            None => {
                drift.note(format!(
                    "the test's background table {why} {queue}, a queue resources.rs does not define"
                ));
                None
            }
        };
        if let Trigger::Queue { queue, .. } = &known.trigger {
            if let Some(seconds) = visibility(queue, &format!("drives {id} from")) {
                limits.push((
                    seconds / VISIBILITY_TIMEOUT_PER_FUNCTION_TIMEOUT,
                    format!(
                        "1/{VISIBILITY_TIMEOUT_PER_FUNCTION_TIMEOUT} of {queue}'s visibility timeout ({seconds} s)"
                    ),
                ));
            }
        }
        if known.grants.takes_dead_letters {
            let why = format!("has {id} take dead letters from");
            if let Some(seconds) = visibility(DEAD_LETTER_QUEUE, &why) {
                limits.push((
                    seconds,
                    format!("{DEAD_LETTER_QUEUE}'s visibility timeout ({seconds} s)"),
                ));
            }
        }
        if let Trigger::Schedule { every_seconds, .. } = &known.trigger {
            limits.push((
                *every_seconds,
                format!("the period of its schedule ({every_seconds} s)"),
            ));
        }
        match props
            .get("Timeout")
            .or_else(|| globals.get("Timeout"))
            .map(|timeout| number(timeout, &id))
        {
            None => drift.note(format!("{id}: no Timeout, here or in Globals")),
            Some(timeout) => {
                for (limit, what) in limits {
                    if timeout > limit {
                        drift.note(format!("{id} Timeout: {timeout} s, more than {what}"));
                    }
                }
            }
        }
    }
    for extra in template
        .ids_of_type("AWS::Serverless::Function")
        .difference(&defined)
    {
        drift.note(format!(
            "{extra}: a function that serves no api::Route and is not in the test's background table"
        ));
    }
    if let Err(e) = template.properties(API, "AWS::Serverless::HttpApi") {
        drift.note(e);
    }
    drift.assert_none();
}
