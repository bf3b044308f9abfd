//! Replays the saved fuzz corpus of the migration-file target (`fuzz/corpus/migration_file`)
//! through the same check the cargo-fuzz target runs, so CI catches regressions without a
//! fuzzer.

use std::path::Path;

use imapmirror_engine::fuzz_checks::check_migration_file;

#[test]
fn migration_file_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/migration_file");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
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
    for path in files {
        let data =
            std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let outcome = std::panic::catch_unwind(|| check_migration_file(&data));
        assert!(
            outcome.is_ok(),
            "migration_file: the check failed for {}",
            path.display()
        );
    }
}
