//! Replays the saved fuzz corpus of the response-boundary target (`fuzz/corpus/response_boundary`)
//! through the same check the cargo-fuzz target runs, so CI catches regressions without a
//! fuzzer.

use std::path::Path;

use imapmirror_proxy::fuzz_checks::check_response_boundary;

#[test]
fn response_boundary_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/corpus/response_boundary");
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
        let outcome = std::panic::catch_unwind(|| check_response_boundary(&data));
        assert!(
            outcome.is_ok(),
            "response_boundary: the check failed for {}",
            path.display()
        );
    }
}
