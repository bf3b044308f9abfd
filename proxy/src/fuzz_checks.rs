//! Properties the fuzz targets check (`fuzz/`), kept here so that `cargo test` replays the
//! committed corpus through the same code (`proxy/tests/fuzz_corpus.rs`).

use crate::response_boundary::ResponseBoundary;

/// The response-boundary scanner finds the same boundaries whatever the chunking, and
/// `bytes_to_boundary` names exactly the next one within a chunk. The first input byte
/// picks the chunk size; the rest is the server's byte stream.
pub fn check_response_boundary(data: &[u8]) {
    let Some((&first, stream)) = data.split_first() else {
        return;
    };
    let stream = &stream[..stream.len().min(8192)];
    let chunk = usize::from(first % 64) + 1;
    // Byte at a time: the reference. `at[i]`: at a boundary after `i` bytes.
    let mut one = ResponseBoundary::default();
    let mut at = vec![one.at_boundary()];
    for b in stream {
        one.feed(std::slice::from_ref(b));
        at.push(one.at_boundary());
    }
    let mut chunked = ResponseBoundary::default();
    let mut pos = 0;
    while pos < stream.len() {
        let end = (pos + chunk).min(stream.len());
        let expected = (pos..=end).find(|&i| at[i]).map(|i| i - pos);
        assert_eq!(
            chunked.bytes_to_boundary(&stream[pos..end]),
            expected,
            "bytes_to_boundary at {pos} (chunk {chunk})"
        );
        chunked.feed(&stream[pos..end]);
        pos = end;
        assert_eq!(
            chunked.at_boundary(),
            at[pos],
            "after {pos} bytes (chunk {chunk})"
        );
    }
}
