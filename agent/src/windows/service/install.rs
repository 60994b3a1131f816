//! `agent service install`: the service with automatic delayed start, recovery actions for
//! crashes, a preshutdown timeout long enough for in-flight orders, and an Event Log source;
//! what it could not set is printed as a warning with the manual fix.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use windows_service::service::{
    ServiceAccess, ServiceAction, ServiceActionType, ServiceErrorControl, ServiceFailureActions,
    ServiceFailureResetPeriod, ServiceInfo, ServiceStartType, ServiceType,
};
use windows_service::service_manager::ServiceManagerAccess;

use super::{Failure, error_text, manager};
use crate::service::{
    Account, FAILURE_RESET, InstallArgs, InstallPlan, RESTART_DELAYS, name_flag, recovery_summary,
};
use crate::windows::eventlog;

/// How long Windows waits for the service after Preshutdown before shutting down anyway: the
/// drain and some margin (the default is 10 s on recent Windows; at Shutdown it gives only a
/// few seconds).
const PRESHUTDOWN_TIMEOUT: Duration = Duration::from_secs(40);
const DESCRIPTION: &str = "Mamut agent: dials out to the relay, applies the shop's orders to Mamut and pushes Mamut's changes back.";

pub(super) fn install(args: &InstallArgs) -> Result<ExitCode, Failure> {
    let exe = std::env::current_exe()
        .map_err(|e| Failure::other(format!("cannot find agent.exe's own path: {e}")))?;
    let env = |key: &str| std::env::var(key).ok();
    let plan = InstallPlan::new(args, exe, &env).map_err(Failure::usage)?;
    let name = plan.name.as_str();
    let manager = manager(
        name,
        ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE,
    )?;
    let info = ServiceInfo {
        name: name.into(),
        display_name: plan.display_name.clone().into(),
        service_type: ServiceType::OWN_PROCESS,
        start_type: ServiceStartType::AutoStart,
        error_control: ServiceErrorControl::Normal,
        executable_path: plan.exe.clone(),
        launch_arguments: plan.launch_arguments(),
        dependencies: Vec::new(),
        account_name: plan.account.account_name(name).map(OsString::from),
        account_password: plan.password.as_ref().map(|p| OsString::from(p.expose())),
    };
    let service = manager
        .create_service(
            &info,
            ServiceAccess::CHANGE_CONFIG | ServiceAccess::QUERY_CONFIG,
        )
        .map_err(|e| Failure::windows(&format!("cannot install service {name}"), name, &e))?;

    // The service exists now; what follows is reported as a warning with the manual fix.
    let mut warnings = Vec::new();
    let mut warn = |what: &str, fix: String, e: &windows_service::Error| {
        warnings.push(format!(
            "warning: could not {what} ({}); {fix}",
            error_text(e)
        ));
    };
    if let Err(e) = service.set_description(DESCRIPTION) {
        warn("set the description", "it is cosmetic".into(), &e);
    }
    let actions = ServiceFailureActions {
        reset_period: ServiceFailureResetPeriod::After(FAILURE_RESET),
        reboot_msg: None,
        command: None,
        actions: Some(
            RESTART_DELAYS
                .iter()
                .map(|&delay| ServiceAction {
                    action_type: ServiceActionType::Restart,
                    delay,
                })
                .collect(),
        ),
    };
    let restarts: Vec<String> = RESTART_DELAYS
        .iter()
        .map(|d| format!("restart/{}", d.as_millis()))
        .collect();
    if let Err(e) = service.update_failure_actions(actions) {
        let fix = format!(
            "set them with: sc failure {name} reset= {} actions= {}",
            FAILURE_RESET.as_secs(),
            restarts.join("/")
        );
        warn("set the recovery actions", fix, &e);
    }
    // The recovery actions apply to crashes only (the "failure flag" stays off): an exit the
    // agent reports with an error code is permanent, and restarting it would only log the
    // same ERROR every minute.
    if let Err(e) = service.set_delayed_auto_start(true) {
        warn(
            "set the delayed start",
            format!("set it with: sc config {name} start= delayed-auto"),
            &e,
        );
    }
    if let Err(e) = service.set_preshutdown_timeout(PRESHUTDOWN_TIMEOUT) {
        warn(
            "set the preshutdown timeout",
            format!(
                "at shutdown in-flight orders may be cut short; set it with: reg add HKLM\\SYSTEM\\CurrentControlSet\\Services\\{name} /v PreshutdownTimeout /t REG_DWORD /d {}",
                PRESHUTDOWN_TIMEOUT.as_millis()
            ),
            &e,
        );
    }
    if let Err(e) = eventlog::register_source(name) {
        warnings.push(format!(
            "warning: could not register the Event Log source {name} ({e}); its entries will say \"description not found\" around the text"
        ));
    }
    let command_line = service
        .query_config()
        .map(|c| c.executable_path.display().to_string())
        .unwrap_or_else(|_| plan.exe.display().to_string());

    println!("installed service {name} ({})", plan.display_name);
    println!("  command line: {command_line}");
    println!("  account:      {}", plan.account.describe(name));
    // Not "(delayed)": `status` cannot show it (windows-service does not query it), and the
    // two should agree; a failure to set it is among the warnings.
    println!("  start:        automatic");
    println!("  recovery:     {}", recovery_summary());
    println!(
        "  logs:         {}\\agent.<UTC date>.log, and warnings and errors in the Application event log (source {name})",
        plan.log_dir().display()
    );
    for warning in &warnings {
        println!("{warning}");
    }
    if plan.account != Account::LocalSystem {
        let dir = plan
            .config
            .parent()
            .map_or_else(|| plan.config.clone(), PathBuf::from);
        // As deploy/windows/install.ps1: read the folder (so not rewrite agent.toml), write
        // only its logs and state folders.
        let account = plan.account.icacls_principal(name);
        let (logs, state) = (dir.join("logs"), dir.join("state"));
        println!(
            "the account must read {} and write only in its logs and state folders (set state_file = 'state\\agent-state.json' in agent.toml), e.g.:",
            dir.display()
        );
        println!(
            "  icacls \"{}\" /grant \"{account}:(OI)(CI)RX\"",
            dir.display()
        );
        for sub in [&logs, &state] {
            println!("  mkdir \"{}\"", sub.display());
            println!(
                "  icacls \"{}\" /grant \"{account}:(OI)(CI)M\"",
                sub.display()
            );
        }
    }
    println!("next: agent service start{}", name_flag(name));
    Ok(ExitCode::SUCCESS)
}
