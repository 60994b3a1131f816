//! Every committed fuzz input through its target's check, on the stable toolchain: the seed
//! corpora (`fuzz/corpus/<target>/`) and the inputs that once failed
//! (`fuzz/regressions/<target>/`). The checks are the fuzz targets' own (`fuzz/src/lib.rs`),
//! so an input that failed once fails here again without nightly or cargo-fuzz.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

#[path = "../../fuzz/src/lib.rs"]
mod checks;

fn files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|entry| entry.expect("a readable directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_saved_fuzz_input_passes_its_targets_check() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz");
    let mut failed = Vec::new();
    let mut checked = 0;
    for (target, check) in checks::TARGETS {
        let seeds = files(&fuzz.join("corpus").join(target));
        assert!(!seeds.is_empty(), "the seed corpus of {target} is missing");
        let regressions = files(&fuzz.join("regressions").join(target));
        for path in seeds.iter().chain(&regressions) {
            let input = std::fs::read(path).expect("a readable input");
            if catch_unwind(AssertUnwindSafe(|| check(&input))).is_err() {
                failed.push(path.display().to_string());
            }
            checked += 1;
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {checked} inputs fail: {failed:#?}",
        failed.len()
    );
}
