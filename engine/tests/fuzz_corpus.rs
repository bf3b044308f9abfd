//! Replays the saved fuzz corpus of the migration-file target through the same check the
//! cargo-fuzz target runs.

#[path = "../../tests/support/fuzz_replay.rs"]
mod fuzz_replay;

#[test]
fn migration_file_corpus() {
    fuzz_replay::replay(
        "migration_file",
        imapmirror_engine::fuzz_checks::check_migration_file,
    );
}
