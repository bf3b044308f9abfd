//! Replays the saved fuzz corpora of the protocol targets through the same checks the
//! cargo-fuzz targets run.

#[path = "../../tests/support/fuzz_replay.rs"]
mod fuzz_replay;

use fuzz_replay::replay;
use imapmirror_protocol::fuzz_checks;

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
