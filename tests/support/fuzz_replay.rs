//! Replays a saved fuzz corpus (`fuzz/corpus/TARGET/*`) through the check its cargo-fuzz
//! target runs, so CI catches regressions without a fuzzer. Included by path from the
//! `fuzz_corpus` test of each crate that has fuzz targets (protocol, engine, proxy).

use std::path::{Path, PathBuf};

fn corpus_files(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read the fuzz corpus {}: {e}", dir.display()))
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "the fuzz corpus {} is empty",
        dir.display()
    );
    files
}

/// Runs `check` on every file of the corpus of `target`; a panic names the file.
pub fn replay(target: &str, check: fn(&[u8])) {
    for path in corpus_files(target) {
        let data =
            std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(
            outcome.is_ok(),
            "{target}: the check failed for {}",
            path.display()
        );
    }
}
