//! `agent service ...` on Windows, through the service control manager (SCM), with the
//! windows-service crate: install (automatic delayed start, recovery actions, preshutdown
//! timeout, Event Log source), uninstall, start, stop, status, and `run`, what the SCM starts.
//!
//! `run`: the SCM calls `service_main` on a thread of its own; it reports StartPending,
//! sets up logging (rolling file in `<config dir>\logs` plus the Event Log), loads the
//! configuration, reports Running and runs [`crate::app::run`] on a tokio runtime with a
//! `CancellationToken`. Stop, Preshutdown (and Shutdown, the fallback when preshutdown is
//! not delivered) cancel the token and report StopPending (the session lets in-flight orders
//! finish); then Stopped, with exit code 0, or a service-specific code
//! ([`crate::service::SERVICE_EXIT_FAILED`], [`crate::service::SERVICE_EXIT_CONFIG`]). Such
//! an exit is not restarted: every one the agent reports is permanent (a bad configuration,
//! CA file, proxy setting, mapping) and is logged as an ERROR in the file and the Event Log,
//! and `agent service status` shows the exit code. The recovery actions restart a crash, the
//! process ending without Stopped.
//!
//! The argument checks, the command line, the recovery actions and the error advice are
//! portable, in [`crate::service`].
//!
//! - this file: dispatching the commands, and the errors they fail with;
//! - `install`: creating the service with its recovery actions and Event Log source;
//! - `control`: uninstall, start, stop and status;
//! - `run`: what the SCM starts, reporting the service's state around [`crate::app::run`].

mod control;
mod install;
mod run;

use std::process::ExitCode;

use windows_service::service::{Service, ServiceAccess};
use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};

use crate::service::{ServiceCommand, advice};

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
        ServiceCommand::Install(args) => ("install", install::install(&args)),
        ServiceCommand::Uninstall(args) => ("uninstall", control::uninstall(&args.name)),
        ServiceCommand::Start(args) => ("start", control::start(&args.name)),
        ServiceCommand::Stop(args) => ("stop", control::stop(&args.name)),
        ServiceCommand::Status(args) => ("status", control::status(&args.name)),
        ServiceCommand::Run(args) => ("run", run::run(args)),
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
