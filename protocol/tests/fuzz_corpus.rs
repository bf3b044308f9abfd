//! Replays the saved fuzz corpora (`fuzz/corpus/TARGET/*`) through the same checks the
//! cargo-fuzz targets run, so CI catches regressions without a fuzzer.

use std::path::{Path, PathBuf};

use imapmirror_protocol::fuzz_checks;

fn corpus_files(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok())
            .map(|e| e.path())
            .filter(|p| p.is_file())
            .collect(),
        Err(e) => panic!("cannot read the fuzz corpus {}: {e}", dir.display()),
    };
    files.sort();
    assert!(
        !files.is_empty(),
        "the fuzz corpus {} is empty",
        dir.display()
    );
    files
}

fn replay(target: &str, check: fn(&[u8])) {
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

#[test]
fn decoder_chunking_corpus() {
    replay("decoder_chunking", fuzz_checks::check_decoder_chunking);
}

#[test]
fn response_roundtrip_corpus() {
    replay("response_roundtrip", fuzz_checks::check_response_roundtrip);
}

#[test]
fn command_roundtrip_corpus() {
    replay("command_roundtrip", fuzz_checks::check_command_roundtrip);
}

#[test]
fn mutf7_roundtrip_corpus() {
    replay("mutf7_roundtrip", fuzz_checks::check_mutf7_roundtrip);
}
