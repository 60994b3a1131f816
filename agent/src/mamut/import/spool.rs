//! The spool folder: where each order's GBAOX10 file is written before Mamut's import program
//! reads it, and where refused files are kept with their reason.
//!
//! ```text
//! <spool>/<name>.xml               written (write, flush, rename), imported next
//! <spool>/<name>.log               the program's output for that file
//! <spool>/<name>.imported          the program said it imported the file, and Mamut had no
//!                                  such order afterwards: never imported again by itself
//! <spool>/done/<name>.xml          imported (kept 30 days)
//! <spool>/failed/<name>-<UTC>.xml  refused by the program, with <name>-<UTC>.log (UTC to ms)
//! <spool>/import.lock              held by the agent and by the running program
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sha2::{Digest, Sha256};
use shared::ids::ShopId;

/// How long imported files are kept in `done/`.
const KEEP_DONE: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, Clone)]
pub struct Spool {
    dir: PathBuf,
}

fn context(what: &str, path: &Path, e: io::Error) -> String {
    format!(
        "{what} {}: {e}; check that the folder (mamut.import.spool_dir) exists and that the \
         agent's account may write in it",
        path.display()
    )
}

impl Spool {
    /// Opens (and creates) the spool folder; its path made absolute, since the import program
    /// is given the file's full path.
    pub fn open(dir: &Path) -> Result<Self, String> {
        let dir = std::path::absolute(dir).map_err(|e| context("cannot resolve", dir, e))?;
        for sub in [dir.clone(), dir.join("done"), dir.join("failed")] {
            fs::create_dir_all(&sub).map_err(|e| context("cannot create", &sub, e))?;
        }
        let spool = Self { dir };
        spool.prune_done(SystemTime::now());
        Ok(spool)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file name (without extension) of a shop order: readable, and unique even where two
    /// order ids differ only in characters a file name cannot hold.
    pub fn name(shop: &ShopId, order_id: &str) -> String {
        let readable: String = order_id
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '_'
                }
            })
            .take(60)
            .collect();
        let hash = Sha256::new()
            .chain_update(shop.as_str())
            .chain_update([0])
            .chain_update(order_id)
            .finalize();
        let hex: String = hash[..4].iter().map(|b| format!("{b:02x}")).collect();
        format!("{shop}-{readable}-{hex}")
    }

    pub fn pending(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.xml"))
    }

    pub fn log(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.log"))
    }

    pub fn imported_marker(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.imported"))
    }

    pub fn lock_file(&self) -> PathBuf {
        self.dir.join("import.lock")
    }

    /// Writes the file whole or not at all: a temporary file, flushed to disk, renamed.
    pub fn write(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, String> {
        let path = self.pending(name);
        let tmp = self.dir.join(format!("{name}.xml.tmp"));
        let written = (|| {
            let mut file = File::create(&tmp)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            fs::rename(&tmp, &path)?;
            sync_dir(&self.dir)
        })();
        written.map_err(|e| context("cannot write", &path, e))?;
        Ok(path)
    }

    /// Moves an imported file to `done/`.
    pub fn done(&self, name: &str) -> Result<(), String> {
        let from = self.pending(name);
        let to = self.dir.join("done").join(format!("{name}.xml"));
        if from.exists() {
            fs::rename(&from, &to).map_err(|e| context("cannot move", &from, e))?;
        }
        let _ = fs::remove_file(self.log(name));
        let _ = fs::remove_file(self.imported_marker(name));
        Ok(())
    }

    /// Keeps a refused file in `failed/` with its reason and the program's output; returns the
    /// kept file's path.
    pub fn refused(&self, name: &str, reason: &str) -> Result<PathBuf, String> {
        let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S%.3fZ");
        let failed = self.dir.join("failed");
        let xml = failed.join(format!("{name}-{stamp}.xml"));
        let log = failed.join(format!("{name}-{stamp}.log"));
        let from = self.pending(name);
        if from.exists() {
            fs::rename(&from, &xml).map_err(|e| context("cannot move", &from, e))?;
        }
        let output = fs::read_to_string(self.log(name)).unwrap_or_default();
        fs::write(&log, format!("{reason}\n\n{output}"))
            .map_err(|e| context("cannot write", &log, e))?;
        let _ = fs::remove_file(self.log(name));
        Ok(xml)
    }

    /// Records that the program reported success for `name` and Mamut had no such order.
    pub fn mark_imported(&self, name: &str, reason: &str) -> Result<PathBuf, String> {
        let path = self.imported_marker(name);
        let written = (|| {
            let mut file = File::create(&path)?;
            file.write_all(reason.as_bytes())?;
            file.sync_all()?;
            sync_dir(&self.dir)
        })();
        written.map_err(|e| context("cannot write", &path, e))?;
        Ok(path)
    }

    /// Whether a file can be written, renamed and removed here (for `agent check`).
    pub fn probe(&self) -> Result<(), String> {
        let name = format!("agent-check-{}", std::process::id());
        let path = self.write(&name, b"probe")?;
        fs::remove_file(&path).map_err(|e| context("cannot remove", &path, e))
    }

    fn prune_done(&self, now: SystemTime) {
        let Ok(entries) = fs::read_dir(self.dir.join("done")) else {
            return;
        };
        for entry in entries.flatten() {
            let old = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > KEEP_DONE);
            if old {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
}

/// Makes a rename durable (on Windows, a rename is durable once `MoveFileEx` returns).
fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        Ok(())
    }
}

/// The spool's lock, held while a file is imported. The running program holds it too (it is
/// the program's standard input), so an agent that restarts while an earlier agent's import is
/// still running waits for that import to end instead of importing the order a second time.
pub struct ImportLock {
    file: File,
}

impl ImportLock {
    /// Takes the lock, or says that someone holds it.
    pub fn try_take(path: &Path) -> io::Result<Option<Self>> {
        #[cfg(windows)]
        {
            use std::os::windows::fs::OpenOptionsExt;
            // No sharing: refused while any handle is open, also one the program inherited.
            const ERROR_SHARING_VIOLATION: i32 = 32;
            match OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .share_mode(0)
                .open(path)
            {
                Ok(file) => Ok(Some(Self { file })),
                Err(e) if e.raw_os_error() == Some(ERROR_SHARING_VIOLATION) => Ok(None),
                Err(e) => Err(e),
            }
        }
        #[cfg(not(windows))]
        {
            // flock: held by the open file, which the program shares as its standard input.
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(path)?;
            match file.try_lock() {
                Ok(()) => Ok(Some(Self { file })),
                Err(fs::TryLockError::WouldBlock) => Ok(None),
                Err(fs::TryLockError::Error(e)) => Err(e),
            }
        }
    }

    /// The lock's file for the program's standard input.
    pub fn for_child(&self) -> io::Result<File> {
        self.file.try_clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shop() -> ShopId {
        ShopId::new("shop-se").expect("shop")
    }

    #[test]
    fn names_are_readable_and_tell_apart_ids_that_differ_only_in_odd_characters() {
        let a = Spool::name(&shop(), "gid://shopify/Order/1");
        let b = Spool::name(&shop(), "gid:__shopify_Order_1");
        assert!(a.starts_with("shop-se-gid___shopify_Order_1-"), "{a}");
        assert_ne!(a, b);
        assert_eq!(a, Spool::name(&shop(), "gid://shopify/Order/1"), "stable");
        let long = Spool::name(&shop(), &"9".repeat(500));
        assert!(long.len() < 100, "{long}");
    }

    #[test]
    fn a_file_is_written_whole_then_moved_to_done_or_kept_with_its_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(&dir.path().join("spool")).expect("open");
        let name = Spool::name(&shop(), "1");
        let path = spool.write(&name, b"<GBAOX10/>").expect("write");
        assert_eq!(fs::read(&path).expect("read"), b"<GBAOX10/>");
        assert!(!spool.dir().join(format!("{name}.xml.tmp")).exists());
        spool.done(&name).expect("done");
        assert!(!path.exists());
        assert!(
            spool
                .dir()
                .join("done")
                .join(format!("{name}.xml"))
                .exists()
        );

        spool.write(&name, b"again").expect("write");
        fs::write(spool.log(&name), "line 3: CONTNAME too long\n").expect("log");
        let kept = spool.refused(&name, "exit code 1").expect("refused");
        assert_eq!(fs::read(&kept).expect("kept"), b"again");
        let log = fs::read_to_string(kept.with_extension("log")).expect("log kept");
        assert!(
            log.starts_with("exit code 1\n") && log.contains("CONTNAME too long"),
            "{log}"
        );
        assert!(!spool.log(&name).exists());
        spool.probe().expect("writable");
    }

    #[test]
    fn imported_files_older_than_thirty_days_are_removed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let spool = Spool::open(dir.path()).expect("open");
        let old = spool.dir().join("done").join("old.xml");
        fs::write(&old, "x").expect("write");
        spool.prune_done(SystemTime::now() + KEEP_DONE + Duration::from_secs(60));
        assert!(!old.exists());
    }

    #[test]
    fn the_lock_is_held_by_whoever_has_the_file_open_also_a_child() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("import.lock");
        let lock = ImportLock::try_take(&path).expect("take").expect("free");
        assert!(ImportLock::try_take(&path).expect("try").is_none(), "held");
        // What the program gets as standard input keeps it held after the agent let go.
        let child = lock.for_child().expect("clone");
        drop(lock);
        assert!(
            ImportLock::try_take(&path).expect("try").is_none(),
            "still held"
        );
        drop(child);
        assert!(
            ImportLock::try_take(&path).expect("try").is_some(),
            "free again"
        );
    }
}
