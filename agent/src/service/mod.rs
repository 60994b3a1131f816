//! `agent service install|uninstall|start|stop|status|run`: the agent as a Windows service.
//!
//! This file is portable: the command-line types, their validation (service name, account,
//! password from the environment), the service's command line and its recovery actions as
//! plain data, the status report, and the advice for the Windows errors a consultant meets.
//! The calls to the service control manager are in `crate::windows::service` (Windows only),
//! which uses this module and which the agent binary calls; elsewhere every `agent service`
//! command prints [`NOT_WINDOWS`] and exits 64.
//!
//! - this file: the commands and their arguments, names, and the advice for Windows errors;
//! - `account`: the account a service runs as, in its usual spellings;
//! - `install`: what `agent service install` gives the service control manager;
//! - `status`: what `agent service status` prints.

mod account;
mod install;
mod status;

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};

pub use self::account::Account;
pub use self::install::{InstallPlan, log_dir, recovery_summary};
pub use self::status::{State, StatusReport};

/// The service's name when `--name` is not given.
pub const DEFAULT_NAME: &str = "MamutAgent";
/// The display name of the default service ([`display_name`]).
pub const DEFAULT_DISPLAY_NAME: &str = "Mamut Agent";
/// What `agent service ...` prints on a system without Windows services.
pub const NOT_WINDOWS: &str = "agent service: Windows services exist on Windows only; on Linux install deploy/systemd/agent.service";
/// Exit code for a usage or configuration error (EX_USAGE).
pub const EXIT_USAGE: u8 = 64;
/// `agent service status` when the service is installed and not running (as LSB status).
pub const EXIT_STOPPED: u8 = 3;
/// The recovery actions: restart after each of these delays (first, second, later crashes).
/// They apply to crashes only, the process ending without reporting Stopped: an exit with a
/// service-specific code is one the agent found permanent (configuration, CA file, proxy,
/// mapping), so it stays stopped with that code rather than failing again every minute.
pub const RESTART_DELAYS: [Duration; 3] = [
    Duration::from_secs(10),
    Duration::from_secs(30),
    Duration::from_secs(60),
];
/// The failure count goes back to zero after a day without failures.
pub const FAILURE_RESET: Duration = Duration::from_secs(24 * 60 * 60);
/// Service-specific exit code (seen in `sc query` and `agent service status`) when the agent
/// failed while running.
pub const SERVICE_EXIT_FAILED: u32 = 1;
/// Service-specific exit code when the configuration or the log directory is unusable.
pub const SERVICE_EXIT_CONFIG: u32 = 64;

#[derive(Debug, Subcommand)]
pub enum ServiceCommand {
    /// Install the agent as a service: automatic (delayed) start, restart after a crash, 40 s
    /// to finish in-flight orders at shutdown, and an Event Log source of the same name. Needs
    /// an elevated (Administrator) prompt.
    Install(InstallArgs),
    /// Stop the service if it runs, remove it and its Event Log source.
    Uninstall(NameArgs),
    /// Start the service and wait until it runs.
    Start(NameArgs),
    /// Stop the service and wait (bounded) until it has stopped.
    Stop(NameArgs),
    /// Print the service's state (with the last exit code when stopped after a failure),
    /// account and command line. Exit 0 running, 3 stopped, 1 error.
    Status(NameArgs),
    /// What the service control manager starts; not for a console (use `agent run` there).
    #[command(hide = true)]
    Run(RunArgs),
}

#[derive(Debug, Args)]
pub struct NameArgs {
    /// The service's name.
    #[arg(long, default_value = DEFAULT_NAME, value_parser = parse_name)]
    pub name: String,
}

#[derive(Debug, Args)]
pub struct InstallArgs {
    /// The agent's configuration (agent.toml); its absolute path goes into the service's
    /// command line, and the service logs to the `logs` directory next to it (a file a day,
    /// `agent.<date>.log`, the date in UTC).
    #[arg(long)]
    pub config: PathBuf,
    /// The service's name (also its Event Log source and virtual account).
    #[arg(long, default_value = DEFAULT_NAME, value_parser = parse_name)]
    pub name: String,
    /// The name shown in the Services console; "Mamut Agent" (plus the name when not the default).
    #[arg(long)]
    pub display_name: Option<String>,
    /// The account the service runs as: `NT SERVICE\<name>` (the default, a virtual account),
    /// `LocalSystem`, `NT AUTHORITY\LocalService`, `NT AUTHORITY\NetworkService`, or
    /// `DOMAIN\user` / `.\user` (with --password-env; a managed account `DOMAIN\name$` needs none).
    #[arg(long)]
    pub account: Option<String>,
    /// The environment variable holding the password of a DOMAIN\user account (never on the
    /// command line).
    #[arg(long, value_name = "VAR")]
    pub password_env: Option<String>,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The configuration, an absolute path (install writes it).
    #[arg(long)]
    pub config: PathBuf,
    #[arg(long, default_value = DEFAULT_NAME, value_parser = parse_name)]
    pub name: String,
}

/// A service name: what the SCM, the registry (Event Log source) and the virtual account
/// `NT SERVICE\<name>` all accept, and what needs no quoting on a command line.
pub fn parse_name(name: &str) -> Result<String, String> {
    let valid = !name.is_empty()
        && name.len() <= 80
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "{name:?} is not a service name: use 1 to 80 letters, digits, '-', '_' or '.' (e.g. {DEFAULT_NAME})"
        ))
    }
}

/// The display name: the one given, else [`DEFAULT_DISPLAY_NAME`] (with the service name when
/// it is not the default one, so two installations are told apart).
pub fn display_name(given: Option<&str>, name: &str) -> String {
    match given {
        Some(given) => given.to_owned(),
        None if name == DEFAULT_NAME => DEFAULT_DISPLAY_NAME.to_owned(),
        None => format!("{DEFAULT_DISPLAY_NAME} ({name})"),
    }
}

/// ` --name <name>` when `name` is not the default, for the commands the messages suggest.
pub fn name_flag(name: &str) -> String {
    if name == DEFAULT_NAME {
        String::new()
    } else {
        format!(" --name {name}")
    }
}

/// What to do about a Windows error code the service control manager returned, or `None`
/// for codes without specific advice.
pub fn advice(code: i32, name: &str) -> Option<String> {
    let flag = name_flag(name);
    Some(match code {
        5 => "access denied: run the command from an elevated (Administrator) prompt".to_owned(),
        1053 => format!(
            "service {name} did not answer the service control manager in time: see its log in the logs directory next to agent.toml and the Application event log (source {name})"
        ),
        1057 => "the account name is invalid or does not exist: write it as DOMAIN\\user (.\\user for a local account)".to_owned(),
        1058 => format!("service {name} is disabled: enable it with sc config {name} start= delayed-auto"),
        1060 => format!(
            "service {name} is not installed: run agent service install --config <path of agent.toml>{flag}"
        ),
        1063 => "agent service run is started by the service control manager only: use agent service start, or agent run --config <agent.toml> in a console".to_owned(),
        1069 => format!(
            "service {name} could not log on: check its account's password and that the account has the 'Log on as a service' right"
        ),
        1072 => format!(
            "service {name} is marked for deletion: close the Services console and Event Viewer (they hold it open), then try again"
        ),
        1073 => format!(
            "service {name} is already installed: run agent service uninstall{flag} first, or pick another --name"
        ),
        1078 => "another service has this display name: pass another --display-name".to_owned(),
        1326 => "the account's user name or password is wrong: check the password in the --password-env variable".to_owned(),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(subcommand)]
        command: ServiceCommand,
    }

    fn parse(args: &[&str]) -> Result<ServiceCommand, clap::Error> {
        Cli::try_parse_from(std::iter::once("service").chain(args.iter().copied()))
            .map(|cli| cli.command)
    }

    #[test]
    fn every_subcommand_defaults_to_the_mamut_agent_name() {
        for sub in ["uninstall", "start", "stop", "status"] {
            match parse(&[sub]).unwrap() {
                ServiceCommand::Uninstall(a)
                | ServiceCommand::Start(a)
                | ServiceCommand::Stop(a)
                | ServiceCommand::Status(a) => assert_eq!(a.name, DEFAULT_NAME),
                other => panic!("{sub}: {other:?}"),
            }
        }
        let ServiceCommand::Install(args) = parse(&["install", "--config", "a.toml"]).unwrap()
        else {
            panic!("not install");
        };
        assert_eq!(args.name, DEFAULT_NAME);
        let ServiceCommand::Run(args) =
            parse(&["run", "--config", "C:\\a.toml", "--name", "X"]).unwrap()
        else {
            panic!("not run");
        };
        assert_eq!(args.name, "X");
    }

    #[test]
    fn install_needs_a_config_and_a_valid_name() {
        assert!(parse(&["install"]).is_err());
        let e = parse(&["start", "--name", "Mamut Agent"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not a service name"), "{e}");
        assert!(parse(&["start", "--name", "a\\b"]).is_err());
        assert!(parse(&["start", "--name", ""]).is_err());
        assert!(parse(&["start", "--name", "MamutAgent-2.test_x"]).is_ok());
    }

    #[test]
    fn windows_errors_come_with_what_to_do() {
        let denied = advice(5, DEFAULT_NAME).unwrap();
        assert!(
            denied.contains("elevated (Administrator) prompt"),
            "{denied}"
        );
        let missing = advice(1060, "MamutAgentTest").unwrap();
        assert_eq!(
            missing,
            "service MamutAgentTest is not installed: run agent service install --config <path of agent.toml> --name MamutAgentTest"
        );
        assert!(
            advice(1073, DEFAULT_NAME)
                .unwrap()
                .contains("agent service uninstall first")
        );
        assert_eq!(advice(1234, DEFAULT_NAME), None);
    }

    #[test]
    fn display_names_tell_installations_apart() {
        assert_eq!(display_name(None, DEFAULT_NAME), "Mamut Agent");
        assert_eq!(
            display_name(None, "MamutAgent2"),
            "Mamut Agent (MamutAgent2)"
        );
        assert_eq!(display_name(Some("Mamut (shop B)"), "X"), "Mamut (shop B)");
    }
}
