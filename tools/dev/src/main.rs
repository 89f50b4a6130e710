//! Developer commands for the local stack:
//!   dcbackup-dev provision    create the tables, queues and bucket where missing
//!   dcbackup-dev seed-demo    provision, then add the demo groups and subclouds (idempotent)
//!   dcbackup-dev mint-token [--sub S] [--roles r1,r2] [--project P] [--ttl-seconds N]
//!                             an HS256 token from the local secret (refused unless the
//!                             configured algorithm is HS256)
//! Resource names, endpoints and token settings come from the same environment the
//! functions read.

use anyhow::{bail, Context};
use dcbackup::auth::AuthConfig;
use dcbackup::config::Config;
use dcbackup::domain::{
    ApplyType, AvailabilityStatus, ManagementState, Name, NewGroup, NewSubcloud, Ref, Release,
};
use dcbackup::runtime::Clients;
use dcbackup::store::{Inventory, InventoryError};

const USAGE: &str = "usage: dcbackup-dev provision | seed-demo | mint-token [--sub S] [--roles r1,r2] [--project P] [--ttl-seconds N]";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    if command == "mint-token" {
        return mint_token(args);
    }
    let config = Config::from_env()?;
    let clients = Clients::from_env().await;
    match command.as_str() {
        "provision" => provision(&clients, &config).await,
        "seed-demo" => {
            provision(&clients, &config).await?;
            seed_demo(Inventory::new(
                clients.dynamodb.clone(),
                config.resources.clone(),
            ))
            .await
        }
        _ => bail!(USAGE),
    }
}

fn mint_token(mut args: impl Iterator<Item = String>) -> anyhow::Result<()> {
    let (mut subject, mut roles, mut project, mut ttl) = (
        "admin".to_owned(),
        "admin".to_owned(),
        "admin".to_owned(),
        3600u64,
    );
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value; {USAGE}"))?;
        match flag.as_str() {
            "--sub" => subject = value,
            "--roles" => roles = value,
            "--project" => project = value,
            "--ttl-seconds" => ttl = value.parse().context("--ttl-seconds takes a number")?,
            _ => bail!("unknown option {flag}; {USAGE}"),
        }
    }
    let roles: Vec<String> = roles.split(',').map(|r| r.trim().to_owned()).collect();
    let token = AuthConfig::from_env()?.mint_local_token(
        &subject,
        &roles,
        &project,
        std::time::Duration::from_secs(ttl),
    )?;
    println!("{token}");
    Ok(())
}

async fn provision(clients: &Clients, config: &Config) -> anyhow::Result<()> {
    dcbackup::provision::provision(clients, &config.resources)
        .await
        .context("provisioning the local resources")?;
    let r = &config.resources;
    println!(
        "resources ready: tables {}, {}, {}, {}; queues {}, {}; bucket {}",
        r.subclouds_table,
        r.groups_table,
        r.names_table,
        r.counters_table,
        r.jobs_queue,
        r.jobs_dead_letter_queue,
        r.backup_bucket
    );
    Ok(())
}

fn name(value: &str) -> Name {
    Name::parse("name", value).expect("demo names are valid")
}

/// Two groups and four subclouds: enough to try every inventory and group route.
async fn seed_demo(inventory: Inventory) -> anyhow::Result<()> {
    for (group, description) in [
        ("edge-east", "Eastern edge sites"),
        ("edge-west", "Western edge sites"),
    ] {
        let new = NewGroup {
            name: name(group),
            description: description.to_owned(),
            update_apply_type: ApplyType::Parallel,
            max_parallel_subclouds: 2,
        };
        match inventory.create_group(new).await {
            Ok(_) | Err(InventoryError::GroupExists(_)) => {}
            Err(e) => return Err(e).context(format!("creating group {group}")),
        }
    }
    let subclouds = [
        (
            "subcloud1",
            "edge-east",
            "Ottawa",
            ManagementState::Managed,
            AvailabilityStatus::Online,
        ),
        (
            "subcloud2",
            "edge-east",
            "Montreal",
            ManagementState::Managed,
            AvailabilityStatus::Online,
        ),
        (
            "subcloud3",
            "edge-west",
            "Vancouver",
            ManagementState::Managed,
            AvailabilityStatus::Online,
        ),
        (
            "subcloud4",
            "edge-west",
            "Calgary",
            ManagementState::Unmanaged,
            AvailabilityStatus::Offline,
        ),
    ];
    for (sc, group, location, management, availability) in subclouds {
        let new = NewSubcloud {
            description: Some(format!("Demo subcloud in {location}")),
            location: Some(location.to_owned()),
            group: Some(Ref::Name(name(group))),
            management_state: Some(management),
            availability_status: Some(availability),
            ..NewSubcloud::new(
                name(sc),
                Release::parse("software-version", "24.09").expect("valid release"),
            )
        };
        match inventory.register(new).await {
            Ok(_) | Err(InventoryError::SubcloudExists(_)) => {}
            Err(e) => return Err(e).context(format!("registering subcloud {sc}")),
        }
    }
    println!("demo inventory ready: groups edge-east, edge-west; subclouds subcloud1-4");
    Ok(())
}
