//! The checks behind the engine's cargo-fuzz targets, kept in the crate so the fuzz target
//! and the corpus replay in `tests/fuzz_corpus.rs` run the same code. Each check panics
//! when a promise of the code under test is broken.

use std::collections::HashSet;

use crate::migration_file::{MAX_ROWS, MigrationFile};

const NAME: &str = "fuzz.csv";

/// Any bytes give rows that keep the migration file's promises, or an error whose message
/// is one sentence naming the file — never a panic.
pub fn check_migration_file(data: &[u8]) {
    match MigrationFile::parse(data, NAME) {
        Ok(file) => {
            assert!(!file.rows.is_empty() && file.rows.len() <= MAX_ROWS);
            let mut seen = HashSet::new();
            let mut last_line = 0;
            for row in &file.rows {
                assert!(
                    seen.insert(row.email.to_lowercase()),
                    "duplicate address accepted"
                );
                assert!(row.email.contains('@') && row.email.trim() == row.email);
                assert!(!row.user_name.is_empty() && !row.user_name.contains(['\r', '\n', '\0']));
                assert!(!row.password.expose().contains('\0'));
                assert!(row.line > last_line, "rows out of line order");
                last_line = row.line;
            }
        }
        Err(e) => {
            let message = e.to_string();
            assert!(message.contains(NAME), "no file name in: {message}");
            assert!(message.ends_with('.'), "not a sentence: {message}");
        }
    }
}
