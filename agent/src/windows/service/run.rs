//! `agent service run`, what the service control manager starts: it reports StartPending,
//! sets up logging, loads the configuration, reports Running and runs the agent until Stop,
//! Preshutdown or Shutdown, then reports Stopped with the exit code.

// `define_windows_service!` expands to an unsafe block (the crate's argument parsing); nothing
// else here is unsafe.
#![allow(unsafe_code)]

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use windows_service::service::{
    ServiceControl, ServiceControlAccept, ServiceExitCode, ServiceState, ServiceStatus, ServiceType,
};
use windows_service::service_control_handler::{
    self, ServiceControlHandlerResult, ServiceStatusHandle,
};
use windows_service::{define_windows_service, service_dispatcher};

use super::Failure;
use crate::config::AgentConfig;
use crate::logging;
use crate::service::{RunArgs, SERVICE_EXIT_CONFIG, SERVICE_EXIT_FAILED, log_dir, name_flag};
use crate::windows::eventlog;

/// The wait hint reported with StopPending: the session's drain (30 s) and some margin.
const STOP_WAIT_HINT: Duration = Duration::from_secs(40);
const START_WAIT_HINT: Duration = Duration::from_secs(10);

/// `service run`'s arguments, for [`service_main`] (the SCM passes it none of ours).
static RUN_ARGS: OnceLock<RunArgs> = OnceLock::new();

define_windows_service!(ffi_service_main, service_main);

pub(super) fn run(args: RunArgs) -> Result<ExitCode, Failure> {
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
