//! `infra/template.yaml` deploys to AWS what `dcbackup::resources` provisions locally and the
//! routes `dcbackup::api` serves; nothing but this test ties the two together. It reads the
//! template (each parameter at its default) and fails naming every table, queue, bucket or
//! function that drifted from the code, and every grant a function lacks or has beyond what
//! its route needs (`grants`).

use dcbackup::api::Route;
use dcbackup::config::Config;
use dcbackup::resources::{Key, Resources};
use serde_yaml::Value;
use std::collections::BTreeSet;
use std::fmt::Debug;
use std::path::PathBuf;

const TEMPLATE: &str = "infra/template.yaml";
/// The queue subcloud-backup functions send jobs to.
const JOBS_QUEUE: &str = "JobsQueue";
/// Where a function that sends jobs finds the queue's URL (`Config::from_env`); without it
/// the function would call GetQueueUrl, which its policy does not allow.
const JOBS_QUEUE_URL_VARIABLE: &str = "DCBACKUP_JOBS_QUEUE_URL";
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
}

fn grants(route: Route) -> Grants {
    match route {
        // `store::Inventory`: items, name claims, id counters and the group-members index.
        Route::SubcloudsList
        | Route::SubcloudsRegister
        | Route::SubcloudsShow
        | Route::SubcloudsUpdate
        | Route::SubcloudsDelete
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
        },
        // The slot claim (subclouds), the operation records, `Idempotency-Key` replays; the
        // target is only resolved (groups, names); one job per claimed subcloud.
        Route::BackupCreate | Route::BackupDelete | Route::BackupRestore => Grants {
            crud: &["SubcloudsTable", "OperationsTable", "IdempotencyTable"],
            read: &["GroupsTable", "NamesTable"],
            sends_jobs: true,
        },
        // One record by its id.
        Route::OperationsShow => Grants {
            crud: &[],
            read: &["OperationsTable"],
            sends_jobs: false,
        },
        // A subcloud by name or id, then its records through the subcloud-operations index.
        Route::OperationsHistory => Grants {
            crud: &[],
            read: &["SubcloudsTable", "NamesTable", "OperationsTable"],
            sends_jobs: false,
        },
    }
}
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

#[test]
fn the_bucket_matches_the_code() {
    let template = Template::load();
    let mut drift = Drift::default();
    let names: Vec<String> = template
        .ids_of_type("AWS::S3::Bucket")
        .iter()
        .map(|id| {
            let props = template
                .properties(id, "AWS::S3::Bucket")
                .unwrap_or_else(|e| panic!("{e}"));
            template.resolve(field(props, "BucketName", id), id)
        })
        .collect();
    drift.compare("S3 buckets", names, vec![code().backup_bucket]);
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
    if variables.get(JOBS_QUEUE_URL_VARIABLE).is_some() {
        drift.note(format!(
            "Globals {JOBS_QUEUE_URL_VARIABLE}: set only on the functions that send jobs"
        ));
    }
    drift.assert_none();
}

/// A function's policy as (SAM policy template, the table or queue it is scoped to). A
/// scope written any other way than the template needs (`!Ref <Table>` for a table,
/// `!GetAtt <Queue>.QueueName` for a queue), a managed policy or an inline statement comes
/// out as written, so that it never matches a grant.
fn policy_grants(policy: &Value, what: &str) -> Vec<(String, String)> {
    match policy {
        Value::String(managed) => vec![("managed policy".to_owned(), managed.clone())],
        Value::Mapping(templates) => templates
            .iter()
            .map(|(kind, parameters)| {
                let kind = text(kind, what);
                let scope = match kind {
                    "SQSSendMessagePolicy" => parameters
                        .get("QueueName")
                        .and_then(|queue| target(queue, "GetAtt", Some("QueueName"))),
                    _ => parameters
                        .get("TableName")
                        .and_then(|table| target(table, "Ref", None)),
                };
                (
                    kind.to_owned(),
                    scope.map_or_else(|| format!("{parameters:?}"), str::to_owned),
                )
            })
            .collect(),
        other => vec![("policy".to_owned(), format!("{other:?}"))],
    }
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

#[test]
fn every_route_has_its_function_and_no_other() {
    let template = Template::load();
    let mut drift = Drift::default();
    let tables: BTreeSet<&str> = code().tables().iter().map(|t| t.logical_id).collect();
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
        let what = |name: &str| format!("{id} {name}");
        drift.compare(
            &what("FunctionName"),
            template.resolve(field(props, "FunctionName", &id), &id),
            format!("{}-{function}", Resources::DEFAULT_PREFIX),
        );
        // (type, method, path, API): exactly the route, on the stack's one HTTP API.
        let events: Vec<(String, String, String, Option<String>)> = props
            .get("Events")
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
            .map(|(_, event)| {
                let properties = field(event, "Properties", &id);
                let property = |key| text(field(properties, key, &id), &id).to_owned();
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
        drift.compare(
            &what("Events"),
            events,
            vec![(
                "HttpApi".to_owned(),
                route.method().to_string(),
                route.pattern().to_owned(),
                Some(API.to_owned()),
            )],
        );
        // Prebuilt by `cargo lambda build`, which names the directory after the binary.
        drift.compare(
            &what("CodeUri"),
            template.resolve(field(props, "CodeUri", &id), &id),
            format!("../target/lambda/{function}/"),
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
        let granted: BTreeSet<(String, String)> = props
            .get("Policies")
            .map_or(&[][..], |policies| list(policies, &id))
            .iter()
            .flat_map(|policy| policy_grants(policy, &id))
            .collect();
        let grants = grants(route);
        let mut needed = BTreeSet::new();
        for (policy, needs) in [
            ("DynamoDBCrudPolicy", grants.crud),
            ("DynamoDBReadPolicy", grants.read),
        ] {
            for table in needs {
                if !tables.contains(table) {
                    drift.note(format!(
                        "the test's grants for {id} name {table}, a table resources.rs does not define"
                    ));
                }
                needed.insert((policy.to_owned(), (*table).to_owned()));
            }
        }
        if grants.sends_jobs {
            needed.insert(("SQSSendMessagePolicy".to_owned(), JOBS_QUEUE.to_owned()));
        }
        for (policy, scope) in needed.difference(&granted) {
            drift.note(format!("{id}: lacks {policy} on {scope}"));
        }
        for (policy, scope) in granted.difference(&needed) {
            drift.note(format!(
                "{id}: {policy} on {scope}, which its route does not need"
            ));
        }
        let queue_url = props
            .get("Environment")
            .and_then(|environment| environment.get("Variables"))
            .and_then(|variables| variables.get(JOBS_QUEUE_URL_VARIABLE));
        drift.compare(
            &what(&format!("Environment {JOBS_QUEUE_URL_VARIABLE}")),
            queue_url.map(|url| match target(url, "Ref", None) {
                Some(queue) => format!("!Ref {queue}"),
                None => format!("{url:?}"),
            }),
            grants.sends_jobs.then(|| format!("!Ref {JOBS_QUEUE}")),
        );
    }
    for extra in template
        .ids_of_type("AWS::Serverless::Function")
        .difference(&defined)
    {
        drift.note(format!("{extra}: a function that serves no api::Route"));
    }
    if let Err(e) = template.properties(API, "AWS::Serverless::HttpApi") {
        drift.note(e);
    }
    drift.assert_none();
}
