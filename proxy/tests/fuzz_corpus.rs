//! Replays the saved fuzz corpus of the response-boundary target through the same check
//! the cargo-fuzz target runs.

#[path = "../../tests/support/fuzz_replay.rs"]
mod fuzz_replay;

#[test]
fn response_boundary_corpus() {
    fuzz_replay::replay(
        "response_boundary",
        imapmirror_proxy::fuzz_checks::check_response_boundary,
    );
}
