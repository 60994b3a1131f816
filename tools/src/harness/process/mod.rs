//! The real `relay` and `agent` binaries as child processes: started on random ports, killed
//! with SIGKILL, restarted on the same port and data. Their logs go to files that are printed
//! when a test fails. The agent may also be the Windows build, run under wine
//! ([`AgentOptions::wine`]).
//!
//! - `relay`: [`RelayProcess`] and its [`RelayOptions`].
//! - `agent`: [`AgentProcess`], its [`AgentOptions`] with the Mamut side ([`SqlServerOptions`],
//!   [`ImportOptions`]), and the recorder's [`AppliedRow`].

mod agent;
mod relay;

use std::path::PathBuf;

pub use self::agent::{AgentOptions, AgentProcess, AppliedRow, ImportOptions, SqlServerOptions};
pub use self::relay::{RelayOptions, RelayProcess};

/// A binary of this workspace: beside the running executable (a binary such as `bench`), or
/// one directory up (a test executable in `deps/`), as `cargo build`/`cargo test` put them.
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("executable path");
    let file = format!("{name}{}", std::env::consts::EXE_SUFFIX);
    let here = exe.parent().expect("executable directory");
    let candidates = [Some(here), here.parent()];
    let found = candidates
        .into_iter()
        .flatten()
        .map(|dir| dir.join(&file))
        .find(|path| path.exists());
    found.unwrap_or_else(|| {
        panic!(
            "{file} is missing next to {}: run `cargo build --workspace --bins` first",
            exe.display()
        )
    })
}

/// One sample of a `/metrics` page (see [`RelayProcess::metric`]); 0 when it is not there.
pub fn metric_in(page: &str, name: &str) -> u64 {
    page.lines()
        .find_map(|line| {
            line.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}
