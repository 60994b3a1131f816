//! `agent service uninstall|start|stop|status`: each waits, bounded, for the state it asked
//! for, and says what to do when it does not come.

use std::ffi::OsStr;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use windows_service::service::{
    Service, ServiceAccess, ServiceExitCode, ServiceStartType, ServiceState, ServiceStatus,
};
use windows_service::service_manager::ServiceManagerAccess;

use super::{Failure, manager, open, os_code};
use crate::service::{SERVICE_EXIT_CONFIG, State, StatusReport, name_flag};
use crate::windows::eventlog;

/// How long `stop` and `uninstall` wait for Stopped (the session drains for up to 30 s).
const STOP_WAIT: Duration = Duration::from_secs(60);
/// How long `start` waits for Running.
const START_WAIT: Duration = Duration::from_secs(30);
const POLL: Duration = Duration::from_millis(250);

pub(super) fn uninstall(name: &str) -> Result<ExitCode, Failure> {
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

pub(super) fn start(name: &str) -> Result<ExitCode, Failure> {
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

pub(super) fn stop(name: &str) -> Result<ExitCode, Failure> {
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

pub(super) fn status(name: &str) -> Result<ExitCode, Failure> {
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
