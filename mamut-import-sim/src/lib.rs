//! A stand-in for Mamut's import program (`Mamut ImportExport.exe`) importing orders in the
//! GBAOX10 format, for tests (the `mamut-import-sim` binary). **It is not Mamut**: it does what
//! Mamut's documentation says the program does (the field table `deploy/mamut/import/
//! gbaox10.toml` and the help pages it names as sources), decides where that is silent (each
//! module lists its decisions), and writes into the tables of a mamut-sim schema in PostgreSQL,
//! which the agent reads over TDS.
//!
//! Command line, as the parameter page documents it (six arguments):
//! `mamut-import-sim IO <client> <file> <CompareKey> <UserID> .F.`
//!
//! Environment:
//! - `MAMUT_IMPORT_SIM_POSTGRES_URL` (default `postgres://postgres@127.0.0.1:5432/test`);
//! - `MAMUT_IMPORT_SIM_PG_SCHEMA` (required): the mamut-sim schema holding the tables;
//! - `MAMUT_IMPORT_SIM_CLIENTS`: comma list of the company databases that exist (default `001`);
//! - `MAMUT_IMPORT_SIM_CURRENCY`: the orders' currency (default `SEK`);
//! - `MAMUT_IMPORT_SIM_FORMAT`: the field table (default: the repository's
//!   `deploy/mamut/import/gbaox10.toml`, found from the build);
//! - `MAMUT_IMPORT_SIM_LOCK_TIMEOUT_MS`: how long to wait for the table locks (default 60000);
//! - `MAMUT_IMPORT_SIM_EXTERNAL`: `EXTERNALID` (default) keeps the external order number tag
//!   as the order's external number, `ORDERID` the file's order number (the documentation's
//!   two readings);
//! - test hooks: `MAMUT_IMPORT_SIM_STARTED=<path>` (written once the file is checked and the
//!   transaction holds its locks), `MAMUT_IMPORT_SIM_DELAY_MS` (the transaction is held open
//!   that long after the first order head, before the lines and the commit).
//!
//! Exit codes (Mamut's are not documented; these are the stand-in's): 0 imported, one stdout
//! line per order `imported order <no> (external <ext>) for customer <no>`; 1 the file refused,
//! nothing written, one stderr line `GBAOX10 <file>: <reason>`; 2 usage, client, format table,
//! file not readable or database errors, one stderr line.
//!
//! Decisions on the command line, where the documentation is silent or cut off: the first
//! argument must be exactly `IO` (the only operation simulated); CompareKey must be 1 or 2 (its
//! documented values, though it means nothing for orders); UserID must be a number; the last
//! argument must be `.F.`; the file is read relative to the current directory.
//!
//! - [`format`]: the field table; [`file`]: reading and checking a file; [`db`]: the import.

pub mod db;
pub mod file;
pub mod format;

use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// What the program prints and returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub code: i32,
    pub stdout: Vec<String>,
    pub stderr: Vec<String>,
}

impl Outcome {
    fn fail(code: i32, message: String) -> Outcome {
        Outcome {
            code,
            stdout: Vec::new(),
            stderr: vec![message],
        }
    }
}

/// The settings read from the environment (`var` looks one up).
#[derive(Debug, Clone)]
pub struct Settings {
    pub postgres_url: String,
    pub schema: Option<String>,
    pub clients: Vec<String>,
    pub currency: String,
    pub format: PathBuf,
    pub lock_timeout: Duration,
    pub started: Option<PathBuf>,
    pub delay: Duration,
    /// `MAMUT_IMPORT_SIM_EXTERNAL=ORDERID`: keep ORDERID as the external order number, as the
    /// import rules read ("the existing order number is saved in the field for external order
    /// numbers"), not the external order number tag.
    pub external_from_orderid: bool,
}

impl Settings {
    pub fn from_env() -> Result<Settings, String> {
        Settings::from_vars(|name| std::env::var(name).ok().filter(|v| !v.is_empty()))
    }

    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Settings, String> {
        let millis = |name: &str, default: u64| -> Result<Duration, String> {
            match var(name) {
                None => Ok(Duration::from_millis(default)),
                Some(v) => v
                    .trim()
                    .parse()
                    .map(Duration::from_millis)
                    .map_err(|_| format!("{name}={v:?} is not a number of milliseconds")),
            }
        };
        Ok(Settings {
            postgres_url: var("MAMUT_IMPORT_SIM_POSTGRES_URL")
                .unwrap_or_else(|| DEFAULT_POSTGRES_URL.to_owned()),
            schema: var("MAMUT_IMPORT_SIM_PG_SCHEMA"),
            clients: var("MAMUT_IMPORT_SIM_CLIENTS")
                .unwrap_or_else(|| "001".to_owned())
                .split(',')
                .map(|c| c.trim().to_owned())
                .filter(|c| !c.is_empty())
                .collect(),
            currency: var("MAMUT_IMPORT_SIM_CURRENCY").unwrap_or_else(|| "SEK".to_owned()),
            format: var("MAMUT_IMPORT_SIM_FORMAT")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from(format::DEFAULT_PATH)),
            lock_timeout: millis("MAMUT_IMPORT_SIM_LOCK_TIMEOUT_MS", 60_000)?,
            started: var("MAMUT_IMPORT_SIM_STARTED").map(PathBuf::from),
            delay: millis("MAMUT_IMPORT_SIM_DELAY_MS", 0)?,
            external_from_orderid: match var("MAMUT_IMPORT_SIM_EXTERNAL").as_deref() {
                None | Some("EXTERNALID") => false,
                Some("ORDERID") => true,
                Some(other) => {
                    return Err(format!(
                        "MAMUT_IMPORT_SIM_EXTERNAL={other:?}: ORDERID or EXTERNALID"
                    ));
                }
            },
        })
    }
}

/// Runs the program: `args` without the program name.
pub fn run(args: &[String], settings: Result<Settings, String>) -> Outcome {
    let usage = "usage: mamut-import-sim IO <client> <file> <CompareKey> <UserID> .F.";
    let [operation, client, file, compare_key, user_id, last] = args else {
        return Outcome::fail(2, format!("{usage} (six arguments, {} given)", args.len()));
    };
    if operation != "IO" {
        return Outcome::fail(
            2,
            format!("{usage}: operation {operation:?} is not simulated (only IO, order import)"),
        );
    }
    if last != ".F." {
        return Outcome::fail(
            2,
            format!("{usage}: the last argument is {last:?}, not .F."),
        );
    }
    if compare_key != "1" && compare_key != "2" {
        return Outcome::fail(
            2,
            format!("{usage}: CompareKey {compare_key:?} is not 1 (number) or 2 (name)"),
        );
    }
    if user_id.is_empty() || !user_id.bytes().all(|b| b.is_ascii_digit()) {
        return Outcome::fail(2, format!("{usage}: UserID {user_id:?} is not a number"));
    }
    let settings = match settings {
        Ok(s) => s,
        Err(e) => return Outcome::fail(2, e),
    };
    if !settings.clients.iter().any(|c| c == client) {
        return Outcome::fail(2, format!("client {client} not found"));
    }
    let Some(schema) = settings.schema.clone() else {
        return Outcome::fail(
            2,
            "MAMUT_IMPORT_SIM_PG_SCHEMA is not set (the mamut-sim schema to import into)".into(),
        );
    };
    let format = match format::Format::load(&settings.format) {
        Ok(f) => f,
        Err(e) => return Outcome::fail(2, e),
    };
    let bytes = match read_limited(Path::new(file)) {
        Ok(Ok(b)) => b,
        Ok(Err(refused)) => return Outcome::fail(1, format!("GBAOX10 {file}: {refused}")),
        Err(e) => return Outcome::fail(2, format!("cannot read {file}: {e}")),
    };
    let mut orders = match file::read(&bytes, &format) {
        Ok(o) => o,
        Err(refused) => return Outcome::fail(1, format!("GBAOX10 {file}: {refused}")),
    };
    if settings.external_from_orderid {
        // The other reading of the documentation: the file's order number is what Mamut keeps.
        for order in &mut orders {
            order.external_no.clear();
        }
    }
    let target = db::Target {
        postgres_url: settings.postgres_url,
        schema,
        currency: settings.currency,
        lock_timeout: settings.lock_timeout,
        started: settings.started,
        delay: settings.delay,
    };
    match db::import(&target, &orders) {
        Ok(imported) => Outcome {
            code: 0,
            stdout: imported
                .iter()
                .map(|i| {
                    format!(
                        "imported order {} (external {}) for customer {}",
                        i.order_no, i.external_no, i.customer_no
                    )
                })
                .collect(),
            stderr: Vec::new(),
        },
        Err(e) => Outcome::fail(2, format!("import of {file} failed, nothing imported: {e}")),
    }
}

/// The file's bytes, or a refusal when it is larger than the stand-in reads.
fn read_limited(path: &Path) -> std::io::Result<Result<Vec<u8>, String>> {
    use std::io::Read;
    let f = std::fs::File::open(path)?;
    let mut bytes = Vec::new();
    f.take(file::MAX_FILE_BYTES as u64 + 1)
        .read_to_end(&mut bytes)?;
    if bytes.len() > file::MAX_FILE_BYTES {
        return Ok(Err(format!(
            "the file is larger than {} bytes, the stand-in's limit",
            file::MAX_FILE_BYTES
        )));
    }
    Ok(Ok(bytes))
}

#[cfg(test)]
mod tests;
