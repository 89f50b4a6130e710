//! Developer commands for the local stack:
//!   dcbackup-dev provision    create the tables, queues and bucket where missing
//!   dcbackup-dev seed-demo [--agent-base-port N]
//!                             provision, then add the demo groups and subclouds (idempotent);
//!                             subcloud1-3 get agent-url https://127.0.0.1:N..N+2 (N from the
//!                             flag, else $AGENT_BASE_PORT, else 18001)
//!   dcbackup-dev certs DIR    a throwaway local CA and the certificates of make run, as PEM
//!                             files in DIR: ca.pem; agent.pem/.key (127.0.0.1 and localhost),
//!                             the demo agents' server certificate; worker.pem/.key, the
//!                             worker's client certificate for the agents' mutual TLS
//!   dcbackup-dev poll [--api URL] [--sweep-every SECONDS] [--schedule-every SECONDS]
//!                             the jobs queue's event source mapping: long-polls the queue
//!                             and invokes the worker (and every few seconds the sweeper and
//!                             the scheduler) through cargo lambda watch's Invoke API
//!   dcbackup-dev gate --listen ADDR --upstream HOST:PORT [--max-in-flight N]
//!                             make run's admission in front of cargo lambda watch: at most N
//!                             requests in flight (default 32), the rest wait their turn
//!   dcbackup-dev mint-token [--sub S] [--roles r1,r2] [--project P] [--ttl-seconds N]
//!                             an HS256 token from the local secret (refused unless the
//!                             configured algorithm is HS256)
//! Resource names, endpoints and token settings come from the same environment the
//! functions read.

use anyhow::{bail, Context};
use dcbackup::auth::AuthConfig;
use dcbackup::config::Config;
use dcbackup::domain::{
    AgentUrl, ApplyType, AvailabilityStatus, ManagementState, Name, NewGroup, NewSubcloud, Ref,
    Release,
};
use dcbackup::runtime::Clients;
use dcbackup::store::{InventoryError, Store};

mod gate;
mod poll;

const USAGE: &str = "usage: dcbackup-dev provision | seed-demo [--agent-base-port N] | certs DIR | poll [--api URL] [--sweep-every SECONDS] [--schedule-every SECONDS] | gate --listen ADDR --upstream HOST:PORT [--max-in-flight N] | mint-token [--sub S] [--roles r1,r2] [--project P] [--ttl-seconds N]";

/// Where the demo agents listen unless told otherwise: subcloud1 on this port, and up.
const DEFAULT_AGENT_BASE_PORT: u16 = 18001;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let command = args.next().unwrap_or_default();
    match command.as_str() {
        "mint-token" => return mint_token(args),
        "poll" => return poll::run(args).await,
        "certs" => return certs(args),
        "gate" => return gate::run(args).await,
        _ => {}
    }
    let config = Config::from_env()?;
    let clients = Clients::from_env().await;
    match command.as_str() {
        "provision" => provision(&clients, &config).await,
        "seed-demo" => {
            let base_port = agent_base_port(args)?;
            provision(&clients, &config).await?;
            seed_demo(
                Store::new(clients.dynamodb.clone(), config.resources.clone()),
                base_port,
            )
            .await
        }
        _ => bail!(USAGE),
    }
}

/// `certs DIR`: a CA made for this run only (its key is never written), a server certificate
/// for the demo agents and a client certificate for the worker, both signed by it.
fn certs(mut args: impl Iterator<Item = String>) -> anyhow::Result<()> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair, KeyUsagePurpose,
    };
    let (Some(dir), None) = (args.next(), args.next()) else {
        bail!(USAGE);
    };
    let dir = std::path::Path::new(&dir);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let write = |file: &str, pem: String| {
        let path = dir.join(file);
        std::fs::write(&path, pem).with_context(|| format!("writing {}", path.display()))
    };
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.distinguished_name
        .push(DnType::CommonName, "dcbackup make run CA");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate()?)?;
    write("ca.pem", ca.pem())?;
    let leaves: [(&str, Vec<String>, ExtendedKeyUsagePurpose); 2] = [
        (
            "agent",
            vec!["127.0.0.1".into(), "localhost".into()],
            ExtendedKeyUsagePurpose::ServerAuth,
        ),
        ("worker", Vec::new(), ExtendedKeyUsagePurpose::ClientAuth),
    ];
    for (file, names, usage) in leaves {
        let mut params = CertificateParams::new(names)?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("dcbackup make run {file}"));
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate()?;
        write(&format!("{file}.pem"), params.signed_by(&key, &ca)?.pem())?;
        write(&format!("{file}.key"), key.serialize_pem())?;
    }
    Ok(())
}

/// `--agent-base-port N` (or `--agent-base-port=N`), else `$AGENT_BASE_PORT`, else 18001.
fn agent_base_port(mut args: impl Iterator<Item = String>) -> anyhow::Result<u16> {
    let mut port = match std::env::var("AGENT_BASE_PORT") {
        Ok(v) if !v.is_empty() => Some(v),
        _ => None,
    };
    while let Some(flag) = args.next() {
        match flag.split_once('=') {
            Some(("--agent-base-port", v)) => port = Some(v.to_owned()),
            None if flag == "--agent-base-port" => {
                port = Some(
                    args.next()
                        .with_context(|| format!("{flag} needs a value"))?,
                )
            }
            _ => bail!("unknown option {flag}; {USAGE}"),
        }
    }
    match port {
        None => Ok(DEFAULT_AGENT_BASE_PORT),
        Some(v) => v
            .parse::<u16>()
            .ok()
            .filter(|p| (1..=65533).contains(p))
            .with_context(|| format!("the agents' base port must be 1-65533, not {v:?}")),
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
/// subcloud1-3 have agents on 127.0.0.1 from `agent_base_port` up (`make run` starts them);
/// subcloud4 has none. A subcloud that exists already is left as it is.
async fn seed_demo(inventory: Store, agent_base_port: u16) -> anyhow::Result<()> {
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
    let agent = |n: u16| {
        let url = format!("https://127.0.0.1:{}", agent_base_port + n);
        Some(AgentUrl::parse("agent-url", &url).expect("a loopback agent URL is valid"))
    };
    let subclouds = [
        (
            "subcloud1",
            "edge-east",
            "Ottawa",
            ManagementState::Managed,
            AvailabilityStatus::Online,
            agent(0),
        ),
        (
            "subcloud2",
            "edge-east",
            "Montreal",
            ManagementState::Managed,
            AvailabilityStatus::Online,
            agent(1),
        ),
        (
            "subcloud3",
            "edge-west",
            "Vancouver",
            ManagementState::Managed,
            AvailabilityStatus::Online,
            agent(2),
        ),
        (
            "subcloud4",
            "edge-west",
            "Calgary",
            ManagementState::Unmanaged,
            AvailabilityStatus::Offline,
            None,
        ),
    ];
    for (sc, group, location, management, availability, agent_url) in subclouds {
        let new = NewSubcloud {
            description: Some(format!("Demo subcloud in {location}")),
            location: Some(location.to_owned()),
            group: Some(Ref::Name(name(group))),
            management_state: Some(management),
            availability_status: Some(availability),
            agent_url,
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
    println!(
        "demo inventory ready: groups edge-east, edge-west; subclouds subcloud1-4 \
         (agents of subcloud1-3 expected on 127.0.0.1:{}-{})",
        agent_base_port,
        agent_base_port + 2
    );
    Ok(())
}
