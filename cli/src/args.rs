//! The command line, declared with clap's derive API. Nouns and flags follow dcmanager's
//! `subcloud`, `subcloud-group` and `subcloud-backup` commands so operators' muscle memory
//! carries over; this module only declares, `main` dispatches.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// dcbackup: back up, delete and restore the backups of StarlingX subclouds through the
/// dcbackup API.
///
/// Exit codes: 0 success, 1 the API refused the request, 2 usage or configuration error,
/// 3 --wait: not every subcloud succeeded (or --timeout passed), 4 API unreachable,
/// unavailable, or the token was refused, 130 interrupted (Ctrl-C).
#[derive(Debug, Parser)]
#[command(name = "dcbackup", version, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the API is and how to talk to it; every one may come from the profile file.
#[derive(Debug, Args)]
#[command(next_help_heading = "Global options")]
pub struct Global {
    /// The API's base URL, e.g. https://dcbackup.example.com (with or without /v1.0).
    #[arg(long, global = true, env = "DCBACKUP_URL")]
    pub url: Option<String>,
    /// The token to send (else DCBACKUP_TOKEN, OS_AUTH_TOKEN, --token-file, the profile).
    #[arg(long, global = true, env = "DCBACKUP_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A file holding the token (surrounding whitespace is ignored).
    #[arg(long, global = true, env = "DCBACKUP_TOKEN_FILE", value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// PEM file of the CA certificates to trust for the API, instead of the system's.
    #[arg(long, global = true, env = "DCBACKUP_CA_BUNDLE", value_name = "FILE")]
    pub ca_bundle: Option<PathBuf>,
    /// The profile of the configuration file to use (default: its `default-profile`).
    #[arg(long, global = true, env = "DCBACKUP_PROFILE")]
    pub profile: Option<String>,
    /// The configuration file (default: $XDG_CONFIG_HOME/dcbackup/config.toml).
    #[arg(long, global = true, env = "DCBACKUP_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Format::Table)]
    pub output: Format,
    /// Print only ids (operation ids for subcloud-backup), one a line.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Subclouds of the inventory.
    #[command(subcommand)]
    Subcloud(SubcloudCmd),
    /// Subcloud groups.
    #[command(subcommand, name = "subcloud-group")]
    SubcloudGroup(GroupCmd),
    /// Create, delete and restore subcloud backups.
    #[command(subcommand, name = "subcloud-backup")]
    SubcloudBackup(BackupCmd),
    /// Operation records.
    #[command(subcommand)]
    Operation(OperationCmd),
    /// Backups kept of subclouds.
    #[command(subcommand)]
    Backup(BackupListCmd),
    /// Backup schedules: backups started by a cron expression, with retention.
    #[command(subcommand)]
    Schedule(ScheduleCmd),
    /// The fleet at a glance: per group, fresh backups, failures, what runs now.
    Status(StatusArgs),
    /// Prints a shell completion script (e.g. `dcbackup completion bash > /etc/bash_completion.d/dcbackup`).
    Completion {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

#[derive(Debug, Subcommand)]
pub enum SubcloudCmd {
    /// Lists every subcloud.
    List,
    /// Shows one subcloud.
    Show {
        /// Name or id.
        subcloud: String,
    },
    /// Registers a subcloud.
    Add(Box<SubcloudAdd>),
    /// Changes a subcloud.
    Update(SubcloudUpdate),
    /// Sets a subcloud managed.
    Manage {
        /// Name or id.
        subcloud: String,
    },
    /// Sets a subcloud unmanaged (a restore needs it).
    Unmanage {
        /// Name or id.
        subcloud: String,
    },
    /// Removes an unmanaged subcloud from the inventory.
    Delete {
        /// Name or id.
        subcloud: String,
    },
}

#[derive(Debug, Args)]
pub struct SubcloudAdd {
    #[arg(long)]
    pub name: String,
    /// Release running on the subcloud, e.g. 24.09.
    #[arg(long)]
    pub software_version: String,
    #[arg(long)]
    pub description: Option<String>,
    #[arg(long)]
    pub location: Option<String>,
    /// Group name or id (default: Default).
    #[arg(long)]
    pub group: Option<String>,
    /// managed | unmanaged (default: unmanaged).
    #[arg(long)]
    pub management_state: Option<String>,
    /// online | offline (default: offline).
    #[arg(long)]
    pub availability_status: Option<String>,
    /// Default: complete.
    #[arg(long)]
    pub deploy_status: Option<String>,
    #[arg(long)]
    pub region_name: Option<String>,
    #[arg(long)]
    pub management_subnet: Option<String>,
    #[arg(long)]
    pub management_start_ip: Option<String>,
    #[arg(long)]
    pub management_end_ip: Option<String>,
    #[arg(long)]
    pub management_gateway_ip: Option<String>,
    #[arg(long)]
    pub systemcontroller_gateway_ip: Option<String>,
    /// Where the subcloud's agent listens, e.g. https://10.10.5.2:8443.
    #[arg(long)]
    pub agent_url: Option<String>,
}

#[derive(Debug, Args)]
pub struct SubcloudUpdate {
    /// Name or id.
    pub subcloud: String,
    #[arg(long)]
    pub description: Option<String>,
    #[arg(long)]
    pub location: Option<String>,
    /// Move it to this group (name or id).
    #[arg(long)]
    pub group: Option<String>,
    #[arg(long)]
    pub availability_status: Option<String>,
    #[arg(long)]
    pub deploy_status: Option<String>,
    /// A final backup status (transitory ones belong to operations).
    #[arg(long)]
    pub backup_status: Option<String>,
    #[arg(long)]
    pub agent_url: Option<String>,
    /// A new IP for the agent, keeping its scheme and port.
    #[arg(long)]
    pub bootstrap_address: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum GroupCmd {
    /// Lists every group.
    List,
    /// Shows one group.
    Show {
        /// Name or id.
        group: String,
    },
    /// Creates a group.
    Add(GroupAdd),
    /// Changes a group.
    Update(GroupUpdate),
    /// Deletes an empty group (never Default).
    Delete {
        /// Name or id.
        group: String,
    },
    /// Lists the subclouds of a group.
    ListSubclouds {
        /// Name or id.
        group: String,
    },
}

#[derive(Debug, Args)]
pub struct GroupAdd {
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub description: Option<String>,
    /// parallel | serial (default: parallel).
    #[arg(long)]
    pub update_apply_type: Option<String>,
    /// Operations of the group running at once (default: 2).
    #[arg(long)]
    pub max_parallel_subclouds: Option<u32>,
}

#[derive(Debug, Args)]
pub struct GroupUpdate {
    /// Name or id.
    pub group: String,
    /// A new name.
    #[arg(long)]
    pub name: Option<String>,
    #[arg(long)]
    pub description: Option<String>,
    #[arg(long)]
    pub update_apply_type: Option<String>,
    #[arg(long)]
    pub max_parallel_subclouds: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum BackupCmd {
    /// Backs up a subcloud or every subcloud of a group.
    Create(CreateArgs),
    /// Deletes the backups of a release.
    Delete(DeleteArgs),
    /// Restores a subcloud or a group from its newest backup of its release.
    Restore(RestoreArgs),
}

/// The target of a subcloud-backup command: exactly one of them.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct Target {
    /// Subcloud name or id.
    #[arg(long)]
    pub subcloud: Option<String>,
    /// Group name or id.
    #[arg(long)]
    pub group: Option<String>,
}

/// Following accepted operations to their end.
#[derive(Debug, Args)]
pub struct Wait {
    /// Follow every accepted subcloud to its final state; exit 0 only if all succeeded.
    #[arg(long)]
    pub wait: bool,
    /// With --wait: stop waiting after this long (e.g. 90s, 30m, 2h); the operations go on.
    #[arg(long, value_parser = humantime::parse_duration, requires = "wait")]
    pub timeout: Option<Duration>,
    /// With --wait: time between two looks at the subclouds.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2s", hide = true)]
    pub poll_interval: Duration,
}

#[derive(Debug, Args)]
pub struct CreateArgs {
    #[command(flatten)]
    pub target: Target,
    /// Keep the backup on the subcloud instead of central storage.
    #[arg(long)]
    pub local_only: bool,
    /// Include the registry images (only with --local-only).
    #[arg(long)]
    pub registry_images: bool,
    /// YAML file of backup values (a mapping).
    #[arg(long, value_name = "FILE")]
    pub backup_values: Option<PathBuf>,
    /// The subcloud's sysadmin password; without a value it is asked for, hidden.
    #[arg(long, num_args = 0..=1, value_name = "PASSWORD")]
    pub sysadmin_password: Option<Option<String>>,
    #[command(flatten)]
    pub wait: Wait,
}

#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// The release whose backups go, e.g. 24.09.
    pub release: String,
    #[command(flatten)]
    pub target: Target,
    /// Delete the backups kept on the subclouds instead of the central ones.
    #[arg(long)]
    pub local_only: bool,
    /// The subcloud's sysadmin password; without a value it is asked for, hidden.
    #[arg(long, num_args = 0..=1, value_name = "PASSWORD")]
    pub sysadmin_password: Option<Option<String>>,
    #[command(flatten)]
    pub wait: Wait,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub target: Target,
    /// Restore from the backup kept on the subcloud.
    #[arg(long)]
    pub local_only: bool,
    /// Restore the registry images too (only with --local-only).
    #[arg(long)]
    pub registry_images: bool,
    /// YAML file of restore values (a mapping; `bootstrap_address: {name: ip}` says where
    /// to reach each subcloud).
    #[arg(long, value_name = "FILE")]
    pub restore_values: Option<PathBuf>,
    /// The subcloud's sysadmin password; without a value it is asked for, hidden.
    #[arg(long, num_args = 0..=1, value_name = "PASSWORD")]
    pub sysadmin_password: Option<Option<String>>,
    #[command(flatten)]
    pub wait: Wait,
}

#[derive(Debug, Subcommand)]
pub enum OperationCmd {
    /// Shows one operation record.
    Show {
        /// Operation id.
        operation: String,
    },
    /// Lists the operations of a subcloud, newest first.
    List {
        /// Subcloud name or id.
        #[arg(long)]
        subcloud: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum BackupListCmd {
    /// Lists the backups kept of a subcloud.
    List {
        /// Subcloud name or id.
        #[arg(long)]
        subcloud: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum ScheduleCmd {
    /// Lists every backup schedule with its next and last run.
    List,
    /// Shows one schedule.
    Show {
        /// Name or id.
        schedule: String,
    },
    /// Creates a schedule.
    Create(ScheduleCreate),
    /// Changes a schedule (only the options given).
    Update(ScheduleUpdate),
    /// Deletes a schedule (the backups it made stay).
    Delete {
        /// Name or id.
        schedule: String,
    },
}

#[derive(Debug, Args)]
pub struct ScheduleCreate {
    #[arg(long)]
    pub name: String,
    #[command(flatten)]
    pub target: Target,
    /// Cron expression, 5 fields (e.g. "0 2 * * *"), or @yearly, @monthly, @weekly, @daily,
    /// @hourly.
    #[arg(long)]
    pub cron: String,
    /// IANA time zone the cron expression is read in (default: UTC).
    #[arg(long)]
    pub timezone: Option<String>,
    /// Minutes after its due time a firing may still start; later it is recorded as missed
    /// (default: 0, always runs).
    #[arg(long, value_name = "MINUTES")]
    pub start_window: Option<u64>,
    /// Central backups kept per subcloud, older ones of this schedule deleted (default: 0,
    /// keep all).
    #[arg(long)]
    pub retain: Option<u64>,
    /// Create it disabled (it never fires until enabled).
    #[arg(long)]
    pub disabled: bool,
    /// Keep the backups on the subclouds instead of central storage.
    #[arg(long)]
    pub local_only: bool,
    /// Include the registry images (only with --local-only).
    #[arg(long)]
    pub registry_images: bool,
    /// YAML file of backup values (a mapping).
    #[arg(long, value_name = "FILE")]
    pub backup_values: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ScheduleUpdate {
    /// Name or id.
    pub schedule: String,
    /// A new name.
    #[arg(long)]
    pub name: Option<String>,
    /// A new target subcloud (name or id).
    #[arg(long, conflicts_with = "group")]
    pub subcloud: Option<String>,
    /// A new target group (name or id).
    #[arg(long)]
    pub group: Option<String>,
    #[arg(long)]
    pub cron: Option<String>,
    #[arg(long)]
    pub timezone: Option<String>,
    /// Minutes; 0 removes the window.
    #[arg(long, value_name = "MINUTES")]
    pub start_window: Option<u64>,
    /// Backups kept per subcloud; 0 keeps all.
    #[arg(long)]
    pub retain: Option<u64>,
    /// true: it fires; false: it never fires (next run cleared).
    #[arg(long, value_name = "true|false")]
    pub enabled: Option<bool>,
    #[arg(long, value_name = "true|false")]
    pub local_only: Option<bool>,
    #[arg(long, value_name = "true|false")]
    pub registry_images: Option<bool>,
    /// YAML file of backup values (a mapping), replacing the schedule's.
    #[arg(long, value_name = "FILE")]
    pub backup_values: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this group (name or id).
    #[arg(long)]
    pub group: Option<String>,
    /// A backup older than this is stale (e.g. 24h, 7d).
    #[arg(long, value_parser = humantime::parse_duration, default_value = "24h")]
    pub threshold: Duration,
}
