//! The watcher's state file: the last acknowledged rowversion per kind, a JSON object keyed by
//! each kind's spelling (`{"price": 7, "stock": 42}`), written atomically.

use std::collections::BTreeMap;
use std::path::Path;

use shared::domain::ChangeKind;

use crate::mamut::changes::Cursors;

/// The cursors as saved. A key this agent does not know (written by a newer agent) is kept
/// and written back as it was, so going back to an older agent and forward again loses
/// nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SavedCursors {
    pub cursors: Cursors,
    unknown: BTreeMap<String, i64>,
}

impl SavedCursors {
    /// Reads the state file; a missing file means nothing was pushed yet.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let entries: BTreeMap<String, i64> =
            serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut saved = Self::default();
        for (key, rv) in entries {
            match key.parse::<ChangeKind>() {
                Ok(kind) => saved.cursors.set(kind, rv),
                Err(_) => {
                    saved.unknown.insert(key, rv);
                }
            }
        }
        Ok(saved)
    }

    /// Writes the state file atomically: a temporary file, flushed, then renamed over it.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        use std::io::Write;
        let mut entries = self.unknown.clone();
        entries.extend(
            self.cursors
                .iter()
                .map(|(kind, rv)| (kind.as_str().to_owned(), rv)),
        );
        let tmp = path.with_extension("tmp");
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(&serde_json::to_vec_pretty(&entries).map_err(std::io::Error::other)?)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_survive_a_save_and_load() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        assert_eq!(
            SavedCursors::load(&path).expect("missing is empty"),
            SavedCursors::default()
        );
        let mut saved = SavedCursors::default();
        saved.cursors.set(ChangeKind::Stock, 42);
        saved.save(&path).expect("saved");
        let loaded = SavedCursors::load(&path).expect("loads");
        assert_eq!(loaded.cursors.get(ChangeKind::Stock), 42);
        assert_eq!(loaded.cursors.get(ChangeKind::Price), 0);
        assert!(!path.with_extension("tmp").exists());
    }

    /// A file as agents before the typed kinds wrote it: keys in alphabetical order, pretty
    /// printed.
    const EXISTING: &str = "{\n  \"order_status\": 5,\n  \"price\": 2,\n  \"price_list\": 3,\n  \"product\": 4,\n  \"stock\": 1\n}";

    #[test]
    fn an_existing_cursor_file_loads_and_is_written_back_byte_for_byte() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        std::fs::write(&path, EXISTING).expect("written");
        let loaded = SavedCursors::load(&path).expect("loads");
        let kinds: Vec<(ChangeKind, i64)> = loaded.cursors.iter().collect();
        assert_eq!(
            kinds,
            [
                (ChangeKind::Stock, 1),
                (ChangeKind::Price, 2),
                (ChangeKind::PriceList, 3),
                (ChangeKind::Product, 4),
                (ChangeKind::OrderStatus, 5),
            ]
        );
        loaded.save(&path).expect("saved");
        assert_eq!(std::fs::read_to_string(&path).expect("readable"), EXISTING);
    }

    #[test]
    fn a_kind_this_agent_does_not_know_is_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        std::fs::write(&path, r#"{"stock": 9, "warehouse_move": 12}"#).expect("written");
        let mut loaded = SavedCursors::load(&path).expect("loads");
        assert_eq!(loaded.cursors.get(ChangeKind::Stock), 9);
        loaded.cursors.set(ChangeKind::Stock, 10);
        loaded.save(&path).expect("saved");
        let text = std::fs::read_to_string(&path).expect("readable");
        let value: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        assert_eq!(
            value,
            serde_json::json!({"stock": 10, "warehouse_move": 12})
        );
    }

    #[test]
    fn a_corrupt_cursor_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("state.json");
        std::fs::write(&path, r#"{"stock": "x"}"#).expect("written");
        let e = SavedCursors::load(&path).expect_err("refused");
        assert!(e.contains("state.json"), "{e}");
    }
}
