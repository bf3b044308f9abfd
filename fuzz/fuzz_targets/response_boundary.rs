//! The proxy's response-boundary scanner agrees with itself whatever the chunking.
//! The check lives in `imapmirror_proxy::fuzz_checks` so the corpus replay test runs it too.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    imapmirror_proxy::fuzz_checks::check_response_boundary(data);
});
