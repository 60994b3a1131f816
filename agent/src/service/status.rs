//! A service's state as the service control manager reports it, and what `agent service
//! status` prints.

use super::EXIT_STOPPED;

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
    use super::*;

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
}
