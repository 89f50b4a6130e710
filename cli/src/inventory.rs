//! The read-mostly commands: subclouds, groups, operation records and backups.

use crate::api::Api;
use crate::args::{
    BackupListCmd, GroupAdd, GroupCmd, GroupUpdate, OperationCmd, SubcloudAdd, SubcloudCmd,
    SubcloudUpdate,
};
use crate::error::CliError;
use crate::output::{fields, id, items, text, Printer, View};
use reqwest::Method;
use serde_json::{json, Map, Value};

/// dcmanager's `subcloud show` order; other keys follow.
const SUBCLOUD_FIELDS: &[&str] = &[
    "id",
    "name",
    "description",
    "location",
    "software-version",
    "management-state",
    "availability-status",
    "deploy-status",
    "backup-status",
    "backup-datetime",
    "error-description",
    "group_id",
    "region-name",
    "management-subnet",
    "management-start-ip",
    "management-end-ip",
    "management-gateway-ip",
    "systemcontroller-gateway-ip",
    "agent-url",
    "operation",
    "created-at",
    "updated-at",
];

const GROUP_FIELDS: &[&str] = &[
    "id",
    "name",
    "description",
    "update_apply_type",
    "max_parallel_subclouds",
    "created-at",
    "updated-at",
];

const OPERATION_FIELDS: &[&str] = &[
    "id",
    "kind",
    "subcloud",
    "subcloud_id",
    "release",
    "group",
    "state",
    "error",
    "local_only",
    "registry_images",
    "requested-by",
    "created-at",
    "started-at",
    "finished-at",
    "updated-at",
];

/// Sets `key` when the flag was given.
fn put(map: &mut Map<String, Value>, key: &str, value: &Option<String>) {
    if let Some(v) = value {
        map.insert(key.to_owned(), Value::String(v.clone()));
    }
}

fn subcloud_list(printer: &Printer, body: Value, key: &str) -> View {
    let mut table = printer.table([
        "id",
        "name",
        "management",
        "availability",
        "deploy status",
        "backup status",
        "backup datetime",
    ]);
    let list = items(&body, key);
    for sc in list {
        table.add_row([
            id(sc),
            text(&sc["name"]),
            text(&sc["management-state"]),
            text(&sc["availability-status"]),
            text(&sc["deploy-status"]),
            text(&sc["backup-status"]),
            text(&sc["backup-datetime"]),
        ]);
    }
    let ids = list.iter().map(id).collect();
    View {
        data: body,
        tables: vec![table],
        ids,
    }
}

fn subcloud_view(printer: &Printer, body: Value) -> View {
    View {
        tables: vec![fields(printer, &body, SUBCLOUD_FIELDS)],
        ids: vec![id(&body)],
        data: body,
    }
}

fn group_view(printer: &Printer, body: Value) -> View {
    View {
        tables: vec![fields(printer, &body, GROUP_FIELDS)],
        ids: vec![id(&body)],
        data: body,
    }
}

/// A view of an answer with no body (e.g. a delete): nothing to print.
fn done(body: Value, id: String) -> View {
    View {
        data: body,
        tables: Vec::new(),
        ids: vec![id],
    }
}

/// `subcloud …`.
pub async fn subcloud(api: &Api, printer: &Printer, cmd: SubcloudCmd) -> Result<View, CliError> {
    Ok(match cmd {
        SubcloudCmd::List => {
            subcloud_list(printer, api.get(&["subclouds"]).await?.body, "subclouds")
        }
        SubcloudCmd::Show { subcloud } => {
            subcloud_view(printer, api.get(&["subclouds", &subcloud]).await?.body)
        }
        SubcloudCmd::Add(add) => {
            let body = register_body(&add);
            let reply = api.send(Method::POST, &["subclouds"], Some(&body)).await?;
            subcloud_view(printer, reply.body)
        }
        SubcloudCmd::Update(update) => {
            let body = update_body(&update);
            if body.as_object().is_some_and(Map::is_empty) {
                return Err(CliError::Usage(
                    "nothing to update: give at least one of --description, --location, --group, \
                     --availability-status, --deploy-status, --backup-status, --agent-url, \
                     --bootstrap-address"
                        .into(),
                ));
            }
            patch_subcloud(api, printer, &update.subcloud, body).await?
        }
        SubcloudCmd::Manage { subcloud } => {
            patch_subcloud(
                api,
                printer,
                &subcloud,
                json!({"management-state": "managed"}),
            )
            .await?
        }
        SubcloudCmd::Unmanage { subcloud } => {
            let body = json!({"management-state": "unmanaged"});
            patch_subcloud(api, printer, &subcloud, body).await?
        }
        SubcloudCmd::Delete { subcloud } => {
            let reply = api
                .send(Method::DELETE, &["subclouds", &subcloud], None)
                .await?;
            done(reply.body, subcloud)
        }
    })
}

async fn patch_subcloud(
    api: &Api,
    printer: &Printer,
    subcloud: &str,
    body: Value,
) -> Result<View, CliError> {
    let reply = api
        .send(Method::PATCH, &["subclouds", subcloud], Some(&body))
        .await?;
    Ok(subcloud_view(printer, reply.body))
}

fn register_body(add: &SubcloudAdd) -> Value {
    let mut map = Map::new();
    put(&mut map, "name", &Some(add.name.clone()));
    put(
        &mut map,
        "software-version",
        &Some(add.software_version.clone()),
    );
    put(&mut map, "description", &add.description);
    put(&mut map, "location", &add.location);
    put(&mut map, "group_id", &add.group);
    put(&mut map, "management-state", &add.management_state);
    put(&mut map, "availability-status", &add.availability_status);
    put(&mut map, "deploy-status", &add.deploy_status);
    put(&mut map, "region-name", &add.region_name);
    put(&mut map, "management-subnet", &add.management_subnet);
    put(&mut map, "management-start-ip", &add.management_start_ip);
    put(&mut map, "management-end-ip", &add.management_end_ip);
    put(
        &mut map,
        "management-gateway-ip",
        &add.management_gateway_ip,
    );
    put(
        &mut map,
        "systemcontroller-gateway-ip",
        &add.systemcontroller_gateway_ip,
    );
    put(&mut map, "agent-url", &add.agent_url);
    Value::Object(map)
}

fn update_body(update: &SubcloudUpdate) -> Value {
    let mut map = Map::new();
    put(&mut map, "description", &update.description);
    put(&mut map, "location", &update.location);
    put(&mut map, "group_id", &update.group);
    put(&mut map, "availability-status", &update.availability_status);
    put(&mut map, "deploy-status", &update.deploy_status);
    put(&mut map, "backup-status", &update.backup_status);
    put(&mut map, "agent-url", &update.agent_url);
    put(&mut map, "bootstrap-address", &update.bootstrap_address);
    Value::Object(map)
}

fn group_body(
    name: &Option<String>,
    description: &Option<String>,
    apply: &Option<String>,
    max_parallel: Option<u32>,
) -> Value {
    let mut map = Map::new();
    put(&mut map, "name", name);
    put(&mut map, "description", description);
    put(&mut map, "update_apply_type", apply);
    if let Some(n) = max_parallel {
        map.insert("max_parallel_subclouds".into(), json!(n));
    }
    Value::Object(map)
}

/// `subcloud-group …`.
pub async fn group(api: &Api, printer: &Printer, cmd: GroupCmd) -> Result<View, CliError> {
    Ok(match cmd {
        GroupCmd::List => {
            let body = api.get(&["subcloud-groups"]).await?.body;
            let mut table = printer.table(["id", "name", "description"]);
            let list = items(&body, "subcloud_groups");
            for g in list {
                table.add_row([id(g), text(&g["name"]), text(&g["description"])]);
            }
            let ids = list.iter().map(id).collect();
            View {
                data: body,
                tables: vec![table],
                ids,
            }
        }
        GroupCmd::Show { group } => {
            group_view(printer, api.get(&["subcloud-groups", &group]).await?.body)
        }
        GroupCmd::Add(GroupAdd {
            name,
            description,
            update_apply_type,
            max_parallel_subclouds,
        }) => {
            let body = group_body(
                &Some(name),
                &description,
                &update_apply_type,
                max_parallel_subclouds,
            );
            let reply = api
                .send(Method::POST, &["subcloud-groups"], Some(&body))
                .await?;
            group_view(printer, reply.body)
        }
        GroupCmd::Update(GroupUpdate {
            group,
            name,
            description,
            update_apply_type,
            max_parallel_subclouds,
        }) => {
            let body = group_body(
                &name,
                &description,
                &update_apply_type,
                max_parallel_subclouds,
            );
            if body.as_object().is_some_and(Map::is_empty) {
                return Err(CliError::Usage(
                    "nothing to update: give at least one of --name, --description, \
                     --update-apply-type, --max-parallel-subclouds"
                        .into(),
                ));
            }
            let reply = api
                .send(Method::PATCH, &["subcloud-groups", &group], Some(&body))
                .await?;
            group_view(printer, reply.body)
        }
        GroupCmd::Delete { group } => {
            let reply = api
                .send(Method::DELETE, &["subcloud-groups", &group], None)
                .await?;
            done(reply.body, group)
        }
        GroupCmd::ListSubclouds { group } => {
            let body = api
                .get(&["subcloud-groups", &group, "subclouds"])
                .await?
                .body;
            subcloud_list(printer, body, "subclouds")
        }
    })
}

/// `operation show|list`.
pub async fn operation(api: &Api, printer: &Printer, cmd: OperationCmd) -> Result<View, CliError> {
    Ok(match cmd {
        OperationCmd::Show { operation } => {
            let body = api
                .get(&["subcloud-backup", "operations", &operation])
                .await?
                .body;
            View {
                tables: vec![fields(printer, &body, OPERATION_FIELDS)],
                ids: vec![id(&body)],
                data: body,
            }
        }
        OperationCmd::List { subcloud } => {
            let body = api.get(&["subclouds", &subcloud, "operations"]).await?.body;
            let mut table = printer.table([
                "id", "kind", "release", "state", "created", "finished", "error",
            ]);
            let list = items(&body, "operations");
            for op in list {
                table.add_row([
                    id(op),
                    text(&op["kind"]),
                    text(&op["release"]),
                    text(&op["state"]),
                    text(&op["created-at"]),
                    text(&op["finished-at"]),
                    text(&op["error"]),
                ]);
            }
            let ids = list.iter().map(id).collect();
            View {
                data: body,
                tables: vec![table],
                ids,
            }
        }
    })
}

/// `backup list`.
pub async fn backups(api: &Api, printer: &Printer, cmd: BackupListCmd) -> Result<View, CliError> {
    let BackupListCmd::List { subcloud } = cmd;
    let body = api.get(&["subclouds", &subcloud, "backups"]).await?.body;
    let mut table = printer.table([
        "release",
        "location",
        "size",
        "created",
        "operation",
        "sha256",
    ]);
    let list = items(&body, "backups");
    for b in list {
        table.add_row([
            text(&b["release"]),
            text(&b["location"]),
            text(&b["size"]),
            text(&b["created-at"]),
            text(&b["operation"]),
            text(&b["sha256"]),
        ]);
    }
    let ids = list.iter().map(|b| text(&b["operation"])).collect();
    Ok(View {
        data: body,
        tables: vec![table],
        ids,
    })
}
