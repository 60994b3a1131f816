//! The Windows agent (`agent.exe`) under wine: where it is, a wine prefix of the test's own, the
//! environment `scripts/windows-check.sh` runs wine with, paths as wine sees them, and a `cmd`
//! session fed one command line at a time (Windows services live only as long as the wine
//! session that started them).
//!
//! `AGENT_WINDOWS_EXE` names the agent.exe, `MAMUT_IMPORT_SIM_WINDOWS_EXE` the import
//! stand-in built for Windows and `WINEPREFIX` the prefix (with the `bcryptprimitives.dll`
//! shim) that `scripts/windows-check.sh` builds; `scripts/test.sh` sets all three. A test runs in a copy of the prefix ([`Wine::private_copy`]) so that what it does
//! there (services registered, `wineserver -k` at the end) touches no other wine user of that
//! prefix, such as a `windows-check.sh` running at the same time.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

/// Where agent.exe is.
pub const EXE_VAR: &str = "AGENT_WINDOWS_EXE";
/// The wine prefix made by `scripts/windows-check.sh`.
pub const PREFIX_VAR: &str = "WINEPREFIX";
/// Where the import stand-in built for Windows (`mamut-import-sim.exe`) is.
pub const IMPORT_EXE_VAR: &str = "MAMUT_IMPORT_SIM_WINDOWS_EXE";

/// agent.exe, the import stand-in for Windows, and the wine prefix they run in.
#[derive(Debug, Clone)]
pub struct Wine {
    pub exe: PathBuf,
    /// `mamut-import-sim.exe`, the program agent.exe's import writer runs.
    pub import_exe: PathBuf,
    pub prefix: PathBuf,
}

impl Wine {
    /// agent.exe and the prefix the environment names; `Err` says what is missing (for a
    /// skip note or a CI failure).
    pub fn from_env() -> Result<Self, String> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let exe = var(EXE_VAR).map(PathBuf::from);
        let import_exe = var(IMPORT_EXE_VAR).map(PathBuf::from);
        let prefix = var(PREFIX_VAR).map(PathBuf::from);
        let mut missing = Vec::new();
        for (name, path, what) in [
            (EXE_VAR, &exe, "agent.exe"),
            (IMPORT_EXE_VAR, &import_exe, "mamut-import-sim.exe"),
        ] {
            match path {
                None => missing.push(format!("{name} (the path of {what})")),
                Some(p) if !p.is_file() => {
                    missing.push(format!("{name}={} (no such file)", p.display()))
                }
                Some(_) => {}
            }
        }
        match &prefix {
            None => missing.push(format!("{PREFIX_VAR} (the wine prefix)")),
            Some(p) if !p.join("system.reg").is_file() => missing.push(format!(
                "{PREFIX_VAR}={} (not a wine prefix: no system.reg)",
                p.display()
            )),
            Some(_) => {}
        }
        for tool in ["wine", "wineserver"] {
            let path = std::env::var_os("PATH").unwrap_or_default();
            if !std::env::split_paths(&path).any(|dir| dir.join(tool).is_file()) {
                missing.push(format!("{tool} on PATH (Debian wine)"));
            }
        }
        match (exe, import_exe, prefix) {
            (Some(exe), Some(import_exe), Some(prefix)) if missing.is_empty() => Ok(Self {
                exe: std::path::absolute(exe).unwrap_or_else(|e| panic!("{EXE_VAR}: {e}")),
                import_exe: std::path::absolute(import_exe)
                    .unwrap_or_else(|e| panic!("{IMPORT_EXE_VAR}: {e}")),
                prefix: std::path::absolute(prefix).unwrap_or_else(|e| panic!("{PREFIX_VAR}: {e}")),
            }),
            _ => Err(missing.join(", ")),
        }
    }

    /// A copy of this prefix of the test's own, removed (after `wineserver -k`) when the
    /// value is dropped.
    pub fn private_copy(&self) -> WinePrefix {
        let dir = tempfile::tempdir().expect("tempdir");
        let copy = dir.path().join("wineprefix");
        // `cp -a` keeps the prefix's symbolic links (dosdevices/z: -> /) as they are.
        let status = std::process::Command::new("cp")
            .arg("-a")
            .arg(&self.prefix)
            .arg(&copy)
            .status()
            .unwrap_or_else(|e| panic!("cp does not run: {e}"));
        assert!(
            status.success(),
            "copying the wine prefix {} to {} failed: {status}",
            self.prefix.display(),
            copy.display()
        );
        WinePrefix {
            wine: Self {
                exe: self.exe.clone(),
                import_exe: self.import_exe.clone(),
                prefix: copy,
            },
            _dir: dir,
        }
    }

    /// `path` as wine sees it: drive Z: is the Unix root.
    pub fn path(path: &Path) -> String {
        assert!(
            path.is_absolute(),
            "not an absolute path: {}",
            path.display()
        );
        format!("Z:{}", path.display().to_string().replace('/', "\\"))
    }

    /// agent.exe as wine sees it.
    pub fn exe_path(&self) -> String {
        Self::path(&self.exe)
    }

    /// `wine <program>` with the environment `scripts/windows-check.sh` uses, in a process
    /// group of its own.
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut command = Command::new("wine");
        command
            .arg(program)
            .env("WINEPREFIX", &self.prefix)
            .env("WINEDEBUG", "-all")
            .env("WINEDLLOVERRIDES", "mscoree,mshtml=")
            .env("WINEARCH", "win64")
            .env_remove("DISPLAY")
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .process_group(0)
            .kill_on_drop(true);
        command
    }

    /// Ends every process of the prefix (`wineserver -k`) and waits until they are gone:
    /// killing `wine` may leave the Windows process running under the wine server, and a
    /// service always runs there. Each step is bounded by `WINESERVER_WAIT` (a stuck prefix
    /// must not hang the test binary, which calls this from `Drop`); a step that overruns is
    /// killed and reported on stderr.
    pub fn kill_all(&self) {
        for arg in ["-k", "-w"] {
            let mut command = std::process::Command::new("wineserver");
            command
                .arg(arg)
                .env("WINEPREFIX", &self.prefix)
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            if let Err(e) = run_bounded(&mut command, WINESERVER_WAIT) {
                eprintln!(
                    "wineserver {arg} (WINEPREFIX={}): {e}",
                    self.prefix.display()
                );
            }
        }
    }
}

/// How long `wineserver -k` and `wineserver -w` may take each.
const WINESERVER_WAIT: Duration = Duration::from_secs(20);

/// Runs `command` to its end, or kills it once `limit` has passed.
fn run_bounded(command: &mut std::process::Command, limit: Duration) -> Result<(), String> {
    let mut child = command.spawn().map_err(|e| format!("does not run: {e}"))?;
    let pid = child.id();
    // The child's end is waited for on a thread of its own; this one waits for that, bounded.
    let (ended, end) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = ended.send(child.wait());
    });
    match end.recv_timeout(limit) {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(format!("cannot wait for it: {e}")),
        Err(_) => {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            let _ = end.recv_timeout(WINESERVER_WAIT);
            Err(format!("still running after {limit:?}, killed"))
        }
    }
}

/// A wine prefix of a test's own: a copy, so that what the test does there (services
/// registered, `wineserver -k`) touches no other user of the original. Dropping it ends its
/// processes and removes it.
pub struct WinePrefix {
    pub wine: Wine,
    _dir: tempfile::TempDir,
}

impl Drop for WinePrefix {
    fn drop(&mut self) {
        self.wine.kill_all();
    }
}

/// One `wine cmd` session: each [`WineShell::run`] writes one command line and reads its
/// output up to a marker carrying the line's exit code. Everything it printed is kept in
/// [`WineShell::transcript`].
///
/// wine 8's cmd loses what follows the first line of a read from a pipe (it seeks back in its
/// input, which a pipe cannot), so the marker goes on the same line, with delayed expansion
/// (`cmd /V:ON`, `!ERRORLEVEL!` read after the command ran), and the next line is written
/// only after the marker came back.
pub struct WineShell {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
    stderr_log: PathBuf,
    commands: u32,
    pub transcript: String,
}

/// What one command line printed and its exit code.
#[derive(Debug, Clone)]
pub struct Ran {
    pub code: i32,
    pub output: String,
}

impl WineShell {
    /// Starts `wine cmd` (echo off, delayed expansion) in `dir`; its stderr, which is that of
    /// the programs it runs too, goes to `stderr_log`.
    pub fn start(wine: &Wine, dir: &Path, stderr_log: &Path) -> Self {
        let stderr = std::fs::File::create(stderr_log)
            .unwrap_or_else(|e| panic!("creating {}: {e}", stderr_log.display()));
        let mut child = wine
            .command("cmd")
            .args(["/Q", "/V:ON"])
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap_or_else(|e| panic!("wine cmd does not start: {e}"));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Self {
            child,
            stdin,
            stdout,
            stderr_log: stderr_log.to_path_buf(),
            commands: 0,
            transcript: String::new(),
        }
    }

    /// The transcript and what went to stderr, for a failure message.
    pub fn report(&self) -> String {
        let stderr = std::fs::read_to_string(&self.stderr_log).unwrap_or_default();
        format!(
            "{}--- stderr ({}) ---\n{stderr}",
            self.transcript,
            self.stderr_log.display()
        )
    }

    /// Runs `line` (one command line, without `!`, which delayed expansion would take) and
    /// returns its output and exit code; panics with the transcript when it has not finished
    /// within `timeout`.
    pub async fn run(&mut self, line: &str, timeout: Duration) -> Ran {
        assert!(
            !line.contains(['!', '\n', '\r']),
            "not one command line: {line:?}"
        );
        self.commands += 1;
        let marker = format!("__ran_{}__", self.commands);
        self.transcript.push_str(&format!("> {line}\n"));
        let input = format!("{line} & echo {marker} !ERRORLEVEL!\n");
        if let Err(e) = self.stdin.write_all(input.as_bytes()).await {
            panic!(
                "writing to wine cmd failed ({e}); so far:\n{}",
                self.report()
            );
        }
        let _ = self.stdin.flush().await;
        let read = tokio::time::timeout(timeout, async {
            let mut output = String::new();
            let mut raw = Vec::new();
            loop {
                raw.clear();
                match self.stdout.read_until(b'\n', &mut raw).await {
                    Ok(0) => return Err(output),
                    Ok(_) => {}
                    Err(e) => return Err(format!("{output}(reading failed: {e})")),
                }
                let text = String::from_utf8_lossy(&raw);
                let text = text.trim_end_matches(['\r', '\n']);
                // A program's last line without a line break has the marker after it.
                if let Some((before, code)) = text.split_once(&marker) {
                    if !before.is_empty() {
                        output.push_str(before);
                        output.push('\n');
                    }
                    let code = code.trim().parse::<i32>().unwrap_or(i32::MIN);
                    return Ok(Ran { code, output });
                }
                output.push_str(text);
                output.push('\n');
            }
        })
        .await;
        match read {
            Ok(Ok(ran)) => {
                self.transcript.push_str(&ran.output);
                self.transcript
                    .push_str(&format!("(exit code {})\n", ran.code));
                ran
            }
            Ok(Err(output)) => panic!(
                "wine cmd ended while running {line:?}; so far:\n{output}\n{}",
                self.report()
            ),
            Err(_) => panic!(
                "{line:?} did not finish within {timeout:?} under wine; so far:\n{}",
                self.report()
            ),
        }
    }

    /// Runs `line` and panics unless it exits with `code`.
    pub async fn expect(&mut self, line: &str, code: i32, timeout: Duration) -> String {
        let ran = self.run(line, timeout).await;
        assert_eq!(
            ran.code,
            code,
            "{line:?} exited with {} under wine, expected {code}; transcript:\n{}",
            ran.code,
            self.report()
        );
        ran.output
    }

    /// Leaves cmd (`exit`) and waits, bounded, for it to end; killed otherwise.
    pub async fn exit(mut self, timeout: Duration) {
        let _ = self.stdin.write_all(b"exit\n").await;
        let _ = self.stdin.flush().await;
        if tokio::time::timeout(timeout, self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}
