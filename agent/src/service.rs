//! `agent service install|uninstall|start|stop|status|run`: the agent as a Windows service.
//!
//! This file is portable: the command-line types, their validation (service name, account,
//! password from the environment), the service's command line and its recovery actions as
//! plain data, the status report, and the advice for the Windows errors a consultant meets.
//! The calls to the service control manager are in `crate::windows::service` (Windows only);
//! elsewhere every `agent service` command prints [`NOT_WINDOWS`] and exits 64.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Subcommand};
use shared::settings::Secret;

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

/// Runs an `agent service` command: on Windows through the service control manager, elsewhere
/// it prints [`NOT_WINDOWS`] and exits 64.
pub fn main(command: ServiceCommand) -> ExitCode {
    #[cfg(windows)]
    {
        crate::windows::service::main(command)
    }
    #[cfg(not(windows))]
    {
        let _ = command;
        eprintln!("{NOT_WINDOWS}");
        ExitCode::from(EXIT_USAGE)
    }
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

/// The account a service runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Account {
    /// `NT SERVICE\<service name>`: made by Windows for the service, no password; grant it
    /// rights on the configuration directory and (with Windows authentication) in SQL Server.
    Virtual,
    LocalSystem,
    LocalService,
    NetworkService,
    /// A domain or local user (`DOMAIN\user`, `.\user`, `user@domain`); a group managed
    /// service account (`DOMAIN\name$`) has no password.
    User {
        name: String,
    },
}

impl Account {
    /// Parses `--account` (absent: the virtual account of `service`).
    pub fn parse(text: Option<&str>, service: &str) -> Result<Self, String> {
        let Some(text) = text.map(str::trim) else {
            return Ok(Account::Virtual);
        };
        let lower = text.to_ascii_lowercase();
        let lower = lower.as_str();
        Ok(match lower {
            "localsystem" | ".\\localsystem" | "system" | "nt authority\\system" => {
                Account::LocalSystem
            }
            "localservice" | "nt authority\\localservice" | "nt authority\\local service" => {
                Account::LocalService
            }
            "networkservice" | "nt authority\\networkservice" | "nt authority\\network service" => {
                Account::NetworkService
            }
            _ if lower.starts_with("nt service\\") => {
                if lower["nt service\\".len()..] == service.to_ascii_lowercase() {
                    Account::Virtual
                } else {
                    return Err(format!(
                        "--account {text}: a virtual account is the service's own name; use NT SERVICE\\{service} (or leave --account out)"
                    ));
                }
            }
            _ if (text.contains('\\') || text.contains('@')) && !text.ends_with('\\') => {
                Account::User {
                    name: text.to_owned(),
                }
            }
            _ => {
                return Err(format!(
                    "--account {text}: write a user as DOMAIN\\user (.\\user for a local one), or use LocalSystem, NT AUTHORITY\\LocalService, NT AUTHORITY\\NetworkService, or leave it out for NT SERVICE\\{service}"
                ));
            }
        })
    }

    /// The account name for the service control manager; `None` is LocalSystem.
    pub fn account_name(&self, service: &str) -> Option<String> {
        match self {
            Account::Virtual => Some(format!("NT SERVICE\\{service}")),
            Account::LocalSystem => None,
            Account::LocalService => Some("NT AUTHORITY\\LocalService".to_owned()),
            Account::NetworkService => Some("NT AUTHORITY\\NetworkService".to_owned()),
            Account::User { name } => Some(name.clone()),
        }
    }

    /// How the account is shown to the user.
    pub fn describe(&self, service: &str) -> String {
        self.account_name(service)
            .unwrap_or_else(|| "LocalSystem".to_owned())
    }

    /// The account as icacls takes it: the well-known SID for the built-in accounts (their
    /// names are translated on non-English Windows), as deploy/windows/install.ps1 does.
    pub fn icacls_principal(&self, service: &str) -> String {
        match self {
            Account::LocalSystem => "*S-1-5-18".to_owned(),
            Account::LocalService => "*S-1-5-19".to_owned(),
            Account::NetworkService => "*S-1-5-20".to_owned(),
            Account::Virtual | Account::User { .. } => self.describe(service),
        }
    }

    /// Whether the service control manager needs a password for it.
    fn needs_password(&self) -> bool {
        matches!(self, Account::User { name } if !name.ends_with('$'))
    }
}

/// Everything `agent service install` gives the service control manager.
#[derive(Debug)]
pub struct InstallPlan {
    pub name: String,
    pub display_name: String,
    /// agent.exe, absolute.
    pub exe: PathBuf,
    /// agent.toml, absolute.
    pub config: PathBuf,
    pub account: Account,
    /// The user account's password, from the environment variable `--password-env` named.
    pub password: Option<Secret>,
}

impl InstallPlan {
    /// Checks `args`: the configuration exists (made absolute), the account is one of the known
    /// forms, a user's password is in the named environment variable (looked up with `env`).
    pub fn new(
        args: &InstallArgs,
        exe: PathBuf,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let config = std::path::absolute(&args.config)
            .map_err(|e| format!("--config {}: {e}", args.config.display()))?;
        if !config.is_file() {
            return Err(format!(
                "--config {}: no such file; give the path of the agent's agent.toml (check it first with agent check --config {})",
                config.display(),
                config.display()
            ));
        }
        let account = Account::parse(args.account.as_deref(), &args.name)?;
        let password = match (&args.password_env, account.needs_password()) {
            (Some(var), true) => match env(var) {
                Some(value) if !value.is_empty() => Some(Secret::new(value)),
                _ => {
                    return Err(format!(
                        "--password-env {var}: the environment variable {var} is not set or empty; set it to the password of {} in this prompt (e.g. $env:{var} = Read-Host -AsSecureString ... in PowerShell), then run the install again",
                        account.describe(&args.name)
                    ));
                }
            },
            (None, true) => {
                return Err(format!(
                    "--account {}: a user account needs its password: put it in an environment variable and name it with --password-env VAR (never on the command line)",
                    account.describe(&args.name)
                ));
            }
            (Some(var), false) => {
                return Err(format!(
                    "--password-env {var}: {} has no password; leave --password-env out",
                    account.describe(&args.name)
                ));
            }
            (None, false) => None,
        };
        Ok(InstallPlan {
            display_name: display_name(args.display_name.as_deref(), &args.name),
            name: args.name.clone(),
            exe,
            config,
            account,
            password,
        })
    }

    /// The arguments after agent.exe in the service's command line.
    pub fn launch_arguments(&self) -> Vec<OsString> {
        vec![
            "service".into(),
            "run".into(),
            "--config".into(),
            self.config.clone().into_os_string(),
            "--name".into(),
            self.name.clone().into(),
        ]
    }

    /// The directory the service logs to.
    pub fn log_dir(&self) -> PathBuf {
        log_dir(&self.config)
    }
}

/// The service's log directory: `logs` next to the configuration file.
pub fn log_dir(config: &Path) -> PathBuf {
    config
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("logs")
}

/// The recovery actions in words, e.g. for the install summary (crashes only; see
/// [`RESTART_DELAYS`]).
pub fn recovery_summary() -> String {
    let delays: Vec<String> = RESTART_DELAYS
        .iter()
        .map(|d| format!("{} s", d.as_secs()))
        .collect();
    format!(
        "restart after a crash after {}; crash count reset after {} h; an exit with an error code stays stopped (see agent service status)",
        delays.join(", "),
        FAILURE_RESET.as_secs() / 3600
    )
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

/// A service's state, as the service control manager reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Stopped,
    StartPending,
    StopPending,
    Running,
    ContinuePending,
    PausePending,
    Paused,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Stopped => "stopped",
            State::StartPending => "starting",
            State::StopPending => "stopping",
            State::Running => "running",
            State::ContinuePending => "continuing",
            State::PausePending => "pausing",
            State::Paused => "paused",
        }
    }

    /// `agent service status`'s exit code: 3 when stopped, else 0 (the process exists).
    pub fn exit_code(self) -> u8 {
        if self == State::Stopped {
            EXIT_STOPPED
        } else {
            0
        }
    }
}

/// What `agent service status` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusReport {
    pub name: String,
    pub display_name: String,
    pub state: State,
    pub pid: Option<u32>,
    /// The last exit, when stopped with an error (e.g. "exit code 64: configuration or log
    /// directory unusable").
    pub last_error: Option<String>,
    pub account: String,
    pub command_line: String,
    pub start: String,
}

impl std::fmt::Display for StatusReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "service {} ({}): {}",
            self.name,
            self.display_name,
            self.state.as_str()
        )?;
        if let Some(pid) = self.pid {
            write!(f, " (pid {pid})")?;
        }
        writeln!(f)?;
        if let Some(error) = &self.last_error {
            writeln!(f, "  last exit:    {error}")?;
        }
        writeln!(f, "  account:      {}", self.account)?;
        writeln!(f, "  start:        {}", self.start)?;
        write!(f, "  command line: {}", self.command_line)
    }
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

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn install_args(
        config: &Path,
        account: Option<&str>,
        password_env: Option<&str>,
    ) -> InstallArgs {
        InstallArgs {
            config: config.to_owned(),
            name: DEFAULT_NAME.to_owned(),
            display_name: None,
            account: account.map(str::to_owned),
            password_env: password_env.map(str::to_owned),
        }
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
    fn the_service_command_line_runs_the_absolute_config_under_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("agent.toml");
        std::fs::write(&config, "").unwrap();
        let plan = InstallPlan::new(
            &install_args(&config, None, None),
            PathBuf::from("/opt/agent.exe"),
            &no_env,
        )
        .unwrap();
        assert!(plan.config.is_absolute());
        let args: Vec<String> = plan
            .launch_arguments()
            .into_iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "service",
                "run",
                "--config",
                &config.display().to_string(),
                "--name",
                DEFAULT_NAME
            ]
        );
        assert_eq!(plan.log_dir(), dir.path().join("logs"));
        assert_eq!(plan.display_name, DEFAULT_DISPLAY_NAME);
        assert_eq!(plan.account, Account::Virtual);
        assert_eq!(plan.password.map(|p| p.expose().to_owned()), None);
    }

    #[test]
    fn a_missing_config_is_refused_with_its_path() {
        let e = InstallPlan::new(
            &install_args(Path::new("/nonexistent/agent.toml"), None, None),
            PathBuf::from("agent.exe"),
            &no_env,
        )
        .unwrap_err();
        assert!(e.contains("nonexistent"), "{e}");
        assert!(e.contains("agent.toml: no such file"), "{e}");
    }

    #[test]
    fn accounts_are_recognised_in_their_usual_spellings() {
        let name = DEFAULT_NAME;
        let parsed = |text: &str| Account::parse(Some(text), name).unwrap();
        assert_eq!(Account::parse(None, name).unwrap(), Account::Virtual);
        assert_eq!(parsed("NT SERVICE\\mamutagent"), Account::Virtual);
        assert_eq!(parsed("LocalSystem"), Account::LocalSystem);
        assert_eq!(parsed("NT AUTHORITY\\SYSTEM"), Account::LocalSystem);
        assert_eq!(parsed("nt authority\\localservice"), Account::LocalService);
        assert_eq!(parsed("NetworkService"), Account::NetworkService);
        assert_eq!(
            parsed("CORP\\svc-mamut"),
            Account::User {
                name: "CORP\\svc-mamut".into()
            }
        );
        assert_eq!(
            Account::Virtual.account_name(name).as_deref(),
            Some("NT SERVICE\\MamutAgent")
        );
        assert_eq!(Account::LocalSystem.account_name(name), None);
        assert_eq!(Account::LocalSystem.describe(name), "LocalSystem");
        assert_eq!(
            Account::NetworkService.account_name(name).as_deref(),
            Some("NT AUTHORITY\\NetworkService")
        );
        assert_eq!(Account::LocalService.icacls_principal(name), "*S-1-5-19");
        assert_eq!(
            Account::Virtual.icacls_principal(name),
            "NT SERVICE\\MamutAgent"
        );
        let e = Account::parse(Some("NT SERVICE\\Other"), name).unwrap_err();
        assert!(e.contains("NT SERVICE\\MamutAgent"), "{e}");
        let e = Account::parse(Some("bob"), name).unwrap_err();
        assert!(e.contains("DOMAIN\\user"), "{e}");
    }

    #[test]
    fn a_user_account_takes_its_password_from_the_named_environment_variable() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("agent.toml");
        std::fs::write(&config, "").unwrap();
        let exe = PathBuf::from("agent.exe");
        let env = |key: &str| (key == "SVC_PW").then(|| "s3cret".to_owned());

        let plan = InstallPlan::new(
            &install_args(&config, Some("CORP\\svc"), Some("SVC_PW")),
            exe.clone(),
            &env,
        )
        .unwrap();
        assert_eq!(plan.password.as_ref().map(Secret::expose), Some("s3cret"));
        assert!(
            !format!("{plan:?}").contains("s3cret"),
            "the password is not in Debug"
        );

        let e = InstallPlan::new(
            &install_args(&config, Some("CORP\\svc"), None),
            exe.clone(),
            &env,
        )
        .unwrap_err();
        assert!(e.contains("--password-env"), "{e}");
        let e = InstallPlan::new(
            &install_args(&config, Some("CORP\\svc"), Some("UNSET")),
            exe.clone(),
            &env,
        )
        .unwrap_err();
        assert!(e.contains("UNSET is not set"), "{e}");
        let e = InstallPlan::new(
            &install_args(&config, None, Some("SVC_PW")),
            exe.clone(),
            &env,
        )
        .unwrap_err();
        assert!(e.contains("has no password"), "{e}");

        // A group managed service account has no password.
        let plan =
            InstallPlan::new(&install_args(&config, Some("CORP\\gmsa$"), None), exe, &env).unwrap();
        assert!(plan.password.is_none());
    }

    #[test]
    fn recovery_restarts_after_10_30_and_60_seconds_and_resets_after_a_day() {
        assert_eq!(RESTART_DELAYS.map(|d| d.as_secs()), [10, 30, 60]);
        assert_eq!(FAILURE_RESET.as_secs(), 86_400);
        assert_eq!(
            recovery_summary(),
            "restart after a crash after 10 s, 30 s, 60 s; crash count reset after 24 h; an exit with an error code stays stopped (see agent service status)"
        );
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
    fn status_exits_3_when_stopped_and_prints_account_and_command_line() {
        assert_eq!(State::Stopped.exit_code(), 3);
        assert_eq!(State::Running.exit_code(), 0);
        let report = StatusReport {
            name: "MamutAgent".into(),
            display_name: "Mamut Agent".into(),
            state: State::Running,
            pid: Some(42),
            last_error: None,
            account: "NT SERVICE\\MamutAgent".into(),
            command_line: "C:\\agent.exe service run --config C:\\agent.toml --name MamutAgent"
                .into(),
            start: "automatic".into(),
        };
        let text = report.to_string();
        assert!(
            text.starts_with("service MamutAgent (Mamut Agent): running (pid 42)\n"),
            "{text}"
        );
        assert!(
            text.contains("account:      NT SERVICE\\MamutAgent"),
            "{text}"
        );
        assert!(
            text.contains("command line: C:\\agent.exe service run"),
            "{text}"
        );
        assert!(text.contains("start:        automatic\n"), "{text}");
        assert!(!text.contains("last exit"), "{text}");

        let stopped = StatusReport {
            state: State::Stopped,
            pid: None,
            last_error: Some("exit code 64: configuration or log directory unusable".into()),
            ..report
        };
        let text = stopped.to_string();
        assert!(
            text.starts_with("service MamutAgent (Mamut Agent): stopped\n"),
            "{text}"
        );
        assert!(
            text.contains("last exit:    exit code 64: configuration or log directory unusable"),
            "{text}"
        );
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
