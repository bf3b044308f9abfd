//! Fuzzes the migration-file reader: any bytes give rows that keep the file's promises or
//! an error whose message is one sentence naming the file, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| imapmirror_engine::fuzz_checks::check_migration_file(data));
