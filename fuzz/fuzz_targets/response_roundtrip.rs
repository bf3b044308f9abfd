//! Response parse -> encode -> parse is stable.
//! The check lives in `imapmirror_protocol::fuzz_checks` so the corpus replay test runs it too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    imapmirror_protocol::fuzz_checks::check_response_roundtrip(data);
});
