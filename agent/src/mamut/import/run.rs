//! Runs Mamut's import program on one file, as its documentation gives the command line:
//! `"…\Mamut ImportExport.exe" "IO" "<client>" "<file>" "<CompareKey>" "<UserID>" ".F."`.
//!
//! One run at a time, with a time limit (then it is killed); the program's output goes to a log file in the spool
//! (not a pipe, so a program that outlives a killed agent is not killed by a closed pipe), and
//! the spool's lock is its standard input, so the lock stays held for as long as it runs.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::config::ImportConfig;
use super::spool::ImportLock;

/// How a run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// The program's exit code (`None`: ended by a signal).
    Exited(Option<i32>),
    /// Killed after the time limit.
    TimedOut,
}

/// The command line of one import: the program and its six parameters.
pub fn arguments(config: &ImportConfig, file: &Path) -> Vec<std::ffi::OsString> {
    vec![
        "IO".into(),
        config.client.clone().into(),
        file.as_os_str().to_owned(),
        config.compare_key.clone().into(),
        config.user_id.clone().into(),
        ".F.".into(),
    ]
}

/// On Windows each parameter in double quotes, as the documentation writes the command line
/// (`"IO" "001" "c:\temp\abc.txt" …`); a Windows path holds no `"`, so nothing needs escaping.
#[cfg(windows)]
fn add_arguments(command: &mut Command, args: Vec<std::ffi::OsString>) -> Result<(), String> {
    for arg in args {
        if arg.to_string_lossy().contains('"') {
            return Err(format!(
                "the import's parameter {} holds a \", which the command line cannot carry",
                arg.to_string_lossy()
            ));
        }
        let mut quoted = std::ffi::OsString::from("\"");
        quoted.push(&arg);
        quoted.push("\"");
        command.raw_arg(quoted);
    }
    Ok(())
}

#[cfg(not(windows))]
fn add_arguments(command: &mut Command, args: Vec<std::ffi::OsString>) -> Result<(), String> {
    command.args(args);
    Ok(())
}

/// Runs the program on `file`, appending its output to `log`, holding `lock` as its standard
/// input.
pub async fn run(
    config: &ImportConfig,
    file: &Path,
    log: &Path,
    lock: &ImportLock,
) -> Result<Ended, String> {
    let program = &config.program;
    let open_log = || {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|e| format!("cannot open the import's log {}: {e}", log.display()))
    };
    let (out, err) = (open_log()?, open_log()?);
    let stdin = lock
        .for_child()
        .map_err(|e| format!("cannot hand the spool's lock to the import program: {e}"))?;
    let mut command = Command::new(program);
    add_arguments(&mut command, arguments(config, file))?;
    command
        .current_dir(file.parent().unwrap_or(Path::new(".")))
        .stdin(Stdio::from(stdin))
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err))
        // A run whose apply is abandoned (the relay connection dropped) is left to finish: a
        // killed import may leave half an order. It keeps the spool's lock while it runs, so
        // the order's next delivery waits for it and then finds the order.
        .kill_on_drop(false);
    let mut child = command.spawn().map_err(|e| {
        format!(
            "cannot start the import program {}: {e}; check mamut.import.program (agent check \
             says whether it is there)",
            program.display()
        )
    })?;
    let limit = Duration::from_secs(config.timeout_secs);
    match tokio::time::timeout(limit, child.wait()).await {
        Ok(Ok(status)) => Ok(Ended::Exited(status.code())),
        Ok(Err(e)) => Err(format!("waiting for the import program: {e}")),
        Err(_) => {
            let _ = child.kill().await;
            Ok(Ended::TimedOut)
        }
    }
}

/// The last `max` bytes of a log file, as text (the program may write any code page).
pub fn tail(path: &Path, max: u64) -> String {
    let read = || -> std::io::Result<Vec<u8>> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        file.seek(SeekFrom::Start(len.saturating_sub(max)))?;
        let mut bytes = Vec::new();
        file.take(max).read_to_end(&mut bytes)?;
        Ok(bytes)
    };
    match read() {
        Ok(bytes) => String::from_utf8(bytes.clone())
            .unwrap_or_else(|_| bytes.iter().map(|&b| char::from(b)).collect()),
        Err(_) => String::new(),
    }
}

/// The program's reason: the last non-empty line of its output, else of its own log file.
pub fn reason(output: &Path, program_log: Option<&PathBuf>) -> Option<String> {
    let last = |text: String| {
        text.lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .map(|l| l.chars().take(500).collect::<String>())
    };
    last(tail(output, 4096)).or_else(|| program_log.and_then(|p| last(tail(p, 4096))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_the_documented_six_parameters() {
        let config = ImportConfig {
            client: "002".to_owned(),
            user_id: "7".to_owned(),
            ..ImportConfig::default()
        };
        let args = arguments(&config, Path::new("/spool/a b.xml"));
        assert_eq!(args, ["IO", "002", "/spool/a b.xml", "1", "7", ".F."]);
    }

    #[test]
    fn the_reason_is_the_last_line_written() {
        let dir = tempfile::tempdir().expect("tempdir");
        let out = dir.path().join("out.log");
        std::fs::write(
            &out,
            "starting\nGBAOX10 x.xml: CONTNAME is 51 characters\n\n",
        )
        .expect("write");
        assert_eq!(
            reason(&out, None).as_deref(),
            Some("GBAOX10 x.xml: CONTNAME is 51 characters")
        );
        let empty = dir.path().join("empty.log");
        std::fs::write(&empty, "").expect("write");
        let own = dir.path().join("mamut.log");
        std::fs::write(&own, b"Fel: kund saknas \xE5\n").expect("write");
        assert_eq!(
            reason(&empty, Some(&own)).as_deref(),
            Some("Fel: kund saknas å"),
            "Latin-1 text read as Latin-1"
        );
        assert_eq!(reason(&dir.path().join("none"), None), None);
    }
}
