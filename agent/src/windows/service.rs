//! `agent service ...` on Windows, through the service control manager (SCM), with the
//! windows-service crate: install (automatic delayed start, recovery actions, preshutdown
//! timeout, Event Log source), uninstall, start, stop, status, and `run`, what the SCM starts.
//!
//! `run`: the SCM calls [`service_main`] on a thread of its own; it reports StartPending,
//! sets up logging (rolling file in `<config dir>\logs` plus the Event Log), loads the
//! configuration, reports Running and runs [`crate::app::run`] on a tokio runtime with a
//! [`CancellationToken`]. Stop, Preshutdown (and Shutdown, the fallback when preshutdown is
//! not delivered) cancel the token and report StopPending (the session lets in-flight orders
//! finish); then Stopped, with exit code 0, or a service-specific code
//! ([`SERVICE_EXIT_FAILED`], [`SERVICE_EXIT_CONFIG`]). Such an exit is not restarted: every
//! one the agent reports is permanent (a bad configuration, CA file, proxy setting, mapping)
//! and is logged as an ERROR in the file and the Event Log, and `agent service status` shows
//! the exit code. The recovery actions restart a crash, the process ending without Stopped.
//!
//! The argument checks, the command line, the recovery actions and the error advice are
//! portable, in [`crate::service`].

// `define_windows_service!` expands to an unsafe block (the crate's argument parsing); nothing
// else here is unsafe.
#![allow(unsafe_code)]

use std::ffi::{OsStr, OsString};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;
use windows_service::service::{
    Service, ServiceAccess, ServiceAction, ServiceActionType, ServiceControl, ServiceControlAccept,
    ServiceErrorControl, ServiceExitCode, ServiceFailureActions, ServiceFailureResetPeriod,
    ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{
    self, ServiceControlHandlerResult, ServiceStatusHandle,
};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};
use windows_service::{define_windows_service, service_dispatcher};

use super::eventlog;
use crate::config::AgentConfig;
use crate::logging;
use crate::service::{
    Account, FAILURE_RESET, InstallArgs, InstallPlan, RESTART_DELAYS, RunArgs, SERVICE_EXIT_CONFIG,
    SERVICE_EXIT_FAILED, ServiceCommand, State, StatusReport, advice, log_dir, name_flag,
    recovery_summary,
};

/// How long `stop` and `uninstall` wait for Stopped (the session drains for up to 30 s).
const STOP_WAIT: Duration = Duration::from_secs(60);
/// How long `start` waits for Running.
const START_WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(250);
/// The wait hint reported with StopPending: the session's drain (30 s) and some margin.
const STOP_WAIT_HINT: Duration = Duration::from_secs(40);
/// How long Windows waits for the service after Preshutdown before shutting down anyway: the
/// drain and some margin (the default is 10 s on recent Windows; at Shutdown it gives only a
/// few seconds).
const PRESHUTDOWN_TIMEOUT: Duration = Duration::from_secs(40);
const START_WAIT_HINT: Duration = Duration::from_secs(10);
const DESCRIPTION: &str = "Mamut agent: dials out to the relay, applies the shop's orders to Mamut and pushes Mamut's changes back.";

/// Why a command failed, and the exit code that says so.
struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    fn usage(message: String) -> Self {
        Failure {
            message,
            code: crate::service::EXIT_USAGE,
        }
    }

    fn other(message: String) -> Self {
        Failure { message, code: 1 }
    }

    /// `what` failed with a windows-service error; with advice for the usual Windows codes.
    fn windows(what: &str, name: &str, e: &windows_service::Error) -> Self {
        let message = match os_code(e).and_then(|c| advice(c, name)) {
            Some(advice) => format!("{what}: {advice}"),
            None => format!("{what}: {}", error_text(e)),
        };
        Failure::other(message)
    }
}

/// The error's text; for a Windows API error the OS's message (the crate's own says only "IO
/// error in winapi call").
fn error_text(e: &windows_service::Error) -> String {
    match e {
        windows_service::Error::Winapi(io) => io.to_string(),
        other => other.to_string(),
    }
}

fn os_code(e: &windows_service::Error) -> Option<i32> {
    match e {
        windows_service::Error::Winapi(io) => io.raw_os_error(),
        _ => None,
    }
}

/// Runs one `agent service` command.
pub fn main(command: ServiceCommand) -> ExitCode {
    let (verb, result) = match command {
        ServiceCommand::Install(args) => ("install", install(&args)),
        ServiceCommand::Uninstall(args) => ("uninstall", uninstall(&args.name)),
        ServiceCommand::Start(args) => ("start", start(&args.name)),
        ServiceCommand::Stop(args) => ("stop", stop(&args.name)),
        ServiceCommand::Status(args) => ("status", status(&args.name)),
        ServiceCommand::Run(args) => ("run", run(args)),
    };
    result.unwrap_or_else(|failure| {
        eprintln!("agent service {verb}: {}", failure.message);
        ExitCode::from(failure.code)
    })
}

fn manager(name: &str, access: ServiceManagerAccess) -> Result<ServiceManager, Failure> {
    ServiceManager::local_computer(None::<&str>, access)
        .map_err(|e| Failure::windows("cannot open the service control manager", name, &e))
}

fn open(name: &str, access: ServiceAccess) -> Result<Service, Failure> {
    manager(name, ServiceManagerAccess::CONNECT)?
        .open_service(name, access)
        .map_err(|e| Failure::windows(&format!("cannot open service {name}"), name, &e))
}

fn install(args: &InstallArgs) -> Result<ExitCode, Failure> {
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

fn uninstall(name: &str) -> Result<ExitCode, Failure> {
    let access = ServiceAccess::STOP | ServiceAccess::QUERY_STATUS | ServiceAccess::DELETE;
    let service = match manager(name, ServiceManagerAccess::CONNECT)?.open_service(name, access) {
        Ok(service) => service,
        Err(e) if os_code(&e) == Some(1060) => {
            let _ = eventlog::remove_source(name);
            println!("service {name} is not installed; nothing to remove");
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => {
            return Err(Failure::windows(
                &format!("cannot open service {name}"),
                name,
                &e,
            ));
        }
    };
    stop_and_wait(&service, name)?;
    service
        .delete()
        .map_err(|e| Failure::windows(&format!("cannot remove service {name}"), name, &e))?;
    drop(service); // the SCM deletes it once the last handle is closed
    match eventlog::remove_source(name) {
        Ok(()) => println!("removed service {name} and its Event Log source"),
        Err(e) => println!(
            "removed service {name}; warning: could not remove its Event Log source ({e}): delete HKLM\\SYSTEM\\CurrentControlSet\\Services\\EventLog\\Application\\{name} by hand"
        ),
    }
    println!("its configuration and logs stay where they are");
    Ok(ExitCode::SUCCESS)
}

fn start(name: &str) -> Result<ExitCode, Failure> {
    let service = open(name, ServiceAccess::START | ServiceAccess::QUERY_STATUS)?;
    match service.start::<&OsStr>(&[]) {
        Ok(()) => {}
        Err(e) if os_code(&e) == Some(1056) => {
            println!("service {name} is already running");
            return Ok(ExitCode::SUCCESS);
        }
        Err(e) => {
            return Err(Failure::windows(
                &format!("cannot start service {name}"),
                name,
                &e,
            ));
        }
    }
    let status = wait_while(&service, name, ServiceState::StartPending, START_WAIT)?;
    match status.current_state {
        ServiceState::Running => {
            let pid = status
                .process_id
                .map(|p| format!(" (pid {p})"))
                .unwrap_or_default();
            println!("service {name} is running{pid}");
            Ok(ExitCode::SUCCESS)
        }
        ServiceState::StartPending => Err(Failure::other(format!(
            "service {name} is still starting after {} s: see agent service status{} and its log",
            START_WAIT.as_secs(),
            name_flag(name)
        ))),
        state => Err(Failure::other(format!(
            "service {name} is {} right after starting{}: see agent.<UTC date>.log in the logs directory next to its agent.toml (agent service status{} shows where) and the Application event log",
            state_of(state).as_str(),
            exit_text(&status)
                .map(|e| format!(" ({e})"))
                .unwrap_or_default(),
            name_flag(name)
        ))),
    }
}

fn stop(name: &str) -> Result<ExitCode, Failure> {
    let service = open(name, ServiceAccess::STOP | ServiceAccess::QUERY_STATUS)?;
    if stop_and_wait(&service, name)? {
        println!("service {name} stopped");
    } else {
        println!("service {name} is not running");
    }
    Ok(ExitCode::SUCCESS)
}

/// Stops the service unless stopped and waits, bounded, for Stopped; `false` when it was not
/// running. A service already stopping is waited for; one still starting cannot take the Stop
/// control yet (1061), so it is asked again until it can.
fn stop_and_wait(service: &Service, name: &str) -> Result<bool, Failure> {
    let query = |e| Failure::windows(&format!("cannot query service {name}"), name, &e);
    let deadline = Instant::now() + STOP_WAIT;
    let mut first = true;
    let mut asked = false;
    loop {
        let status = service.query_status().map_err(query)?;
        match status.current_state {
            ServiceState::Stopped => return Ok(!first),
            ServiceState::StopPending => {}
            state if !asked => match service.stop() {
                Ok(_) => asked = true,
                Err(e) if os_code(&e) == Some(1062) => return Ok(!first),
                // Not accepting Stop yet (still starting: Windows says 1061, wine 1052): ask
                // again on the next poll.
                Err(e)
                    if os_code(&e) == Some(1061)
                        || (os_code(&e) == Some(1052) && state == ServiceState::StartPending) => {}
                Err(e) => {
                    return Err(Failure::windows(
                        &format!("cannot stop service {name}"),
                        name,
                        &e,
                    ));
                }
            },
            _ => {}
        }
        first = false;
        if Instant::now() >= deadline {
            return Err(Failure::other(format!(
                "service {name} is still {} after {} s: it may still be finishing orders; see its log, and as a last resort end it with taskkill /F /PID {}",
                state_of(status.current_state).as_str(),
                STOP_WAIT.as_secs(),
                status
                    .process_id
                    .map_or_else(|| "<pid>".to_owned(), |p| p.to_string())
            )));
        }
        std::thread::sleep(POLL);
    }
}

/// Polls until the state is no longer `pending` or `limit` has passed.
fn wait_while(
    service: &Service,
    name: &str,
    pending: ServiceState,
    limit: Duration,
) -> Result<ServiceStatus, Failure> {
    let deadline = Instant::now() + limit;
    loop {
        let status = service
            .query_status()
            .map_err(|e| Failure::windows(&format!("cannot query service {name}"), name, &e))?;
        if status.current_state != pending || Instant::now() >= deadline {
            return Ok(status);
        }
        std::thread::sleep(POLL);
    }
}

fn status(name: &str) -> Result<ExitCode, Failure> {
    let service = open(
        name,
        ServiceAccess::QUERY_STATUS | ServiceAccess::QUERY_CONFIG,
    )?;
    let query = |e| Failure::windows(&format!("cannot query service {name}"), name, &e);
    let status = service.query_status().map_err(query)?;
    let config = service.query_config().map_err(query)?;
    let state = state_of(status.current_state);
    let report = StatusReport {
        name: name.to_owned(),
        display_name: config.display_name.to_string_lossy().into_owned(),
        state,
        pid: status.process_id,
        last_error: if state == State::Stopped {
            exit_text(&status)
        } else {
            None
        },
        account: config.account_name.map_or_else(
            || "LocalSystem".to_owned(),
            |a| a.to_string_lossy().into_owned(),
        ),
        command_line: config.executable_path.display().to_string(),
        start: match config.start_type {
            ServiceStartType::AutoStart => "automatic".to_owned(),
            ServiceStartType::OnDemand => "manual".to_owned(),
            ServiceStartType::Disabled => "disabled".to_owned(),
            other => format!("{other:?}"),
        },
    };
    println!("{report}");
    Ok(ExitCode::from(state.exit_code()))
}

fn state_of(state: ServiceState) -> State {
    match state {
        ServiceState::Stopped => State::Stopped,
        ServiceState::StartPending => State::StartPending,
        ServiceState::StopPending => State::StopPending,
        ServiceState::Running => State::Running,
        ServiceState::ContinuePending => State::ContinuePending,
        ServiceState::PausePending => State::PausePending,
        ServiceState::Paused => State::Paused,
    }
}

fn exit_text(status: &ServiceStatus) -> Option<String> {
    match status.exit_code {
        ServiceExitCode::Win32(0) => None,
        ServiceExitCode::Win32(code) => Some(format!("Windows error {code}")),
        ServiceExitCode::ServiceSpecific(code) => Some(format!(
            "exit code {code}: {}",
            if code == SERVICE_EXIT_CONFIG {
                "configuration or log directory unusable"
            } else {
                "the agent failed"
            }
        )),
    }
}

// ---- run: what the service control manager starts ------------------------------------------

/// `service run`'s arguments, for [`service_main`] (the SCM passes it none of ours).
static RUN_ARGS: OnceLock<RunArgs> = OnceLock::new();

define_windows_service!(ffi_service_main, service_main);

fn run(args: RunArgs) -> Result<ExitCode, Failure> {
    let name = args.name.clone();
    let _ = RUN_ARGS.set(args);
    // Blocks until the service has stopped.
    service_dispatcher::start(&name, ffi_service_main).map_err(|e| {
        Failure::windows("cannot connect to the service control manager", &name, &e)
    })?;
    Ok(ExitCode::SUCCESS)
}

fn service_main(_arguments: Vec<OsString>) {
    let Some(args) = RUN_ARGS.get() else {
        return;
    };
    // Without a status handle nothing can be reported to the SCM, which then times out the
    // start; the Event Log says why.
    let Err(e) = run_service(args) else {
        return;
    };
    if let Ok(log) = eventlog::EventLog::open(&args.name) {
        log.report(
            tracing::Level::ERROR,
            &format!("service {}: {e}", args.name),
        );
    }
}

fn run_service(args: &RunArgs) -> windows_service::Result<()> {
    let cancel = CancellationToken::new();
    let handle: Arc<OnceLock<ServiceStatusHandle>> = Arc::default();
    let on_control = {
        let cancel = cancel.clone();
        let handle = Arc::clone(&handle);
        move |control| match control {
            // Preshutdown comes first at shutdown, with the timeout install sets; Shutdown
            // (a few seconds only) when Windows does not send it.
            ServiceControl::Stop | ServiceControl::Preshutdown | ServiceControl::Shutdown => {
                if let Some(handle) = handle.get() {
                    let _ = handle.set_service_status(reported(
                        ServiceState::StopPending,
                        ServiceExitCode::NO_ERROR,
                        STOP_WAIT_HINT,
                    ));
                }
                cancel.cancel();
                ServiceControlHandlerResult::NoError
            }
            ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
            _ => ServiceControlHandlerResult::NotImplemented,
        }
    };
    let status_handle = service_control_handler::register(&args.name, on_control)?;
    let _ = handle.set(status_handle);
    status_handle.set_service_status(reported(
        ServiceState::StartPending,
        ServiceExitCode::NO_ERROR,
        START_WAIT_HINT,
    ))?;
    let exit_code = serve(args, &status_handle, &cancel);
    status_handle.set_service_status(reported(ServiceState::Stopped, exit_code, Duration::ZERO))
}

/// Logging, configuration, then the agent until cancelled; the exit code for Stopped.
fn serve(
    args: &RunArgs,
    handle: &ServiceStatusHandle,
    cancel: &CancellationToken,
) -> ServiceExitCode {
    let name = args.name.as_str();
    let config_dir = args.config.parent().map(PathBuf::from);
    // Services start in System32; relative paths in agent.toml (state file, recorder file)
    // mean the configuration's directory, as they do for `agent run` started there.
    let cd = config_dir.as_ref().map(std::env::set_current_dir);
    let (event_log, event_log_error) = match eventlog::layer(name) {
        Ok(layer) => (Some(layer), None),
        Err(e) => (None, Some(e)),
    };
    let options = logging::Options {
        output: logging::Output::Dir(log_dir(&args.config)),
        json: false,
    };
    let _log = match logging::init(&options, event_log) {
        Ok(guard) => guard,
        Err(e) => {
            if let Ok(log) = eventlog::EventLog::open(name) {
                log.report(
                    tracing::Level::ERROR,
                    &format!("service {name} cannot start: {e}"),
                );
            }
            return ServiceExitCode::ServiceSpecific(SERVICE_EXIT_CONFIG);
        }
    };
    if let Some(e) = event_log_error {
        tracing::warn!(
            "cannot write to the Event Log (source {name}): {e}; logging to the file only"
        );
    }
    if let Some(Err(e)) = cd {
        tracing::warn!(dir = ?config_dir, "cannot change to the configuration's directory: {e}; relative paths in it are relative to {}", std::env::current_dir().map(|d| d.display().to_string()).unwrap_or_default());
    }
    let env = |key: &str| std::env::var(key).ok();
    let config = match AgentConfig::load(Some(&args.config), &env) {
        Ok(config) => config,
        Err(e) => {
            tracing::error!(
                "service {name} cannot start: configuration error: {e}; fix {} (agent check --config \"{}\"), then agent service start{}",
                args.config.display(),
                args.config.display(),
                name_flag(name)
            );
            return ServiceExitCode::ServiceSpecific(SERVICE_EXIT_CONFIG);
        }
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("service {name} cannot start the async runtime: {e}");
            return ServiceExitCode::ServiceSpecific(SERVICE_EXIT_FAILED);
        }
    };
    if !cancel.is_cancelled() {
        let running = ServiceStatus {
            controls_accepted: ServiceControlAccept::STOP
                | ServiceControlAccept::PRESHUTDOWN
                | ServiceControlAccept::SHUTDOWN,
            ..reported(
                ServiceState::Running,
                ServiceExitCode::NO_ERROR,
                Duration::ZERO,
            )
        };
        if let Err(e) = handle.set_service_status(running) {
            tracing::warn!("cannot report Running to the service control manager: {e}");
        }
    }
    tracing::info!(event_log = true, name, config = %args.config.display(), pid = std::process::id(), "service started");
    let result = runtime.block_on(crate::app::run(config, &env, cancel.clone()));
    runtime.shutdown_timeout(Duration::from_secs(5));
    let exit_code = match result {
        Ok(()) if cancel.is_cancelled() => ServiceExitCode::NO_ERROR,
        Ok(()) => {
            tracing::error!("the agent stopped without being asked to");
            ServiceExitCode::ServiceSpecific(SERVICE_EXIT_FAILED)
        }
        Err(e) => {
            tracing::error!("agent failed: {e:#}");
            ServiceExitCode::ServiceSpecific(SERVICE_EXIT_FAILED)
        }
    };
    tracing::info!(event_log = true, name, "service stopped");
    exit_code
}

/// A status to report; controls are accepted only while running.
fn reported(state: ServiceState, exit_code: ServiceExitCode, wait_hint: Duration) -> ServiceStatus {
    ServiceStatus {
        service_type: ServiceType::OWN_PROCESS,
        current_state: state,
        controls_accepted: ServiceControlAccept::empty(),
        exit_code,
        checkpoint: u32::from(matches!(
            state,
            ServiceState::StartPending | ServiceState::StopPending
        )),
        wait_hint,
        process_id: None,
    }
}
