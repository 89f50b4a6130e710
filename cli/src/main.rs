//! `dcbackup`, the operator's command line for the dcbackup API.
//!
//! `args` declares the commands; `config` finds the URL, token and CA bundle; `api` talks
//! HTTP; `inventory`, `backup` (with `follow` for `--wait`), `schedule` and `status` run the
//! commands; `output` prints tables, JSON, YAML or ids; `error` holds the exit codes.

mod api;
mod args;
mod backup;
mod config;
mod error;
mod follow;
mod inventory;
mod output;
mod schedule;
mod status;

use api::Api;
use args::{Cli, Command};
use clap::{CommandFactory, Parser};
use config::Settings;
use error::CliError;
use output::Printer;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Completion { shell } = cli.command {
        clap_complete::generate(
            shell,
            &mut Cli::command(),
            "dcbackup",
            &mut std::io::stdout(),
        );
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", e.report());
            ExitCode::from(e.exit_code())
        }
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    let printer = Printer::new(cli.global.output, cli.global.quiet);
    let api = Api::new(Settings::resolve(&cli.global)?)?;
    let view = match cli.command {
        Command::Subcloud(cmd) => Some(inventory::subcloud(&api, &printer, cmd).await?),
        Command::SubcloudGroup(cmd) => Some(inventory::group(&api, &printer, cmd).await?),
        Command::Operation(cmd) => Some(inventory::operation(&api, &printer, cmd).await?),
        Command::Backup(cmd) => Some(inventory::backups(&api, &printer, cmd).await?),
        Command::SubcloudBackup(cmd) => backup::run(&api, &printer, cmd).await?,
        Command::Schedule(cmd) => Some(schedule::run(&api, &printer, cmd).await?),
        Command::Status(args) => Some(status::run(&api, &printer, args).await?),
        Command::Completion { .. } => None,
    };
    match view {
        Some(view) => printer.print(view),
        None => Ok(()),
    }
}
