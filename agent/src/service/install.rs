//! What `agent service install` gives the service control manager: the checked arguments
//! (configuration, account, password from the environment), the service's command line, its
//! log directory, and the recovery actions in words.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use shared::settings::Secret;

use super::{Account, FAILURE_RESET, InstallArgs, RESTART_DELAYS, display_name};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::{DEFAULT_DISPLAY_NAME, DEFAULT_NAME};

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
}
