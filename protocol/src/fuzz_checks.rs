//! The properties the fuzz targets check, kept in the crate so that the targets and the
//! corpus replay test (`tests/fuzz_corpus.rs`) run exactly the same code. Each function
//! panics when its property does not hold.

use bytes::BytesMut;
use tokio_util::codec::Decoder;

use crate::framing::{DecoderConfig, Frame, ResponseDecoder};
use crate::{
    CommandDecoder, CommandDecoderConfig, CommandFrame, Error, encode_parsed_command,
    encode_response, mutf7, parse_command, parse_fetch_head, parse_fetch_tail, parse_response,
};

/// Small limits so that short inputs reach streaming and every limit.
fn fuzz_config() -> DecoderConfig {
    DecoderConfig {
        stream_threshold: 16,
        max_buffered: 4096,
        max_line: 1024,
        max_literal: 1 << 20,
        max_chunk: 7,
    }
}

fn decode_in_reads(
    input: &[u8],
    reads: &mut dyn Iterator<Item = usize>,
) -> (Vec<Frame>, Option<Error>) {
    let mut dec = ResponseDecoder::new(fuzz_config());
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    let mut fed = 0;
    while fed < input.len() {
        let n = reads
            .next()
            .unwrap_or(input.len())
            .clamp(1, input.len() - fed);
        buf.extend_from_slice(&input[fed..fed + n]);
        fed += n;
        loop {
            match dec.decode(&mut buf) {
                Ok(Some(f)) => frames.push(f),
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
    }
    loop {
        match dec.decode_eof(&mut buf) {
            Ok(Some(f)) => frames.push(f),
            Ok(None) => return (frames, None),
            Err(e) => return (frames, Some(e)),
        }
    }
}

/// Joins consecutive literal chunks: read sizes may only change where chunks split.
fn join_chunks(frames: Vec<Frame>) -> Vec<Frame> {
    let mut out: Vec<Frame> = Vec::with_capacity(frames.len());
    for f in frames {
        if let (
            Some(Frame::LiteralChunk {
                bytes: prev,
                remaining: pr,
            }),
            Frame::LiteralChunk { bytes, remaining },
        ) = (out.last_mut(), &f)
        {
            let mut joined = BytesMut::from(&prev[..]);
            joined.extend_from_slice(bytes);
            *prev = joined.freeze();
            *pr = *remaining;
            continue;
        }
        out.push(f);
    }
    out
}

/// The frame decoder fed `data` in the read sizes `data` itself describes must give the
/// same frames (chunks joined) and the same verdict as when fed in one buffer; each chunk
/// respects the chunk limit; frames handed out parse or fail without panicking.
pub fn check_decoder_chunking(data: &[u8]) {
    let Some((&seed, input)) = data.split_first() else {
        return;
    };
    let (whole, whole_err) = decode_in_reads(input, &mut std::iter::once(input.len()));
    // Read sizes 1..=16 derived from the seed and the input bytes.
    let mut k = 0usize;
    let mut sizes = std::iter::from_fn(|| {
        k += 1;
        let b = input
            .get(k.wrapping_mul(7) % input.len().max(1))
            .copied()
            .unwrap_or(0);
        Some(usize::from((b ^ seed) % 16) + 1)
    });
    let (pieces, pieces_err) = decode_in_reads(input, &mut sizes);
    for f in &pieces {
        if let Frame::LiteralChunk { bytes, .. } = f {
            assert!(
                bytes.len() <= fuzz_config().max_chunk,
                "chunk over max_chunk"
            );
        }
    }
    assert_eq!(
        whole_err.is_some(),
        pieces_err.is_some(),
        "verdicts differ: {whole_err:?} vs {pieces_err:?}"
    );
    assert_eq!(
        join_chunks(whole.clone()),
        join_chunks(pieces),
        "frames differ with read sizes"
    );
    for f in &whole {
        match f {
            Frame::Whole(b) => {
                let _ = parse_response(b);
            }
            Frame::Head { bytes, .. } => {
                let _ = parse_fetch_head(bytes);
            }
            Frame::Tail { bytes, .. } => {
                let _ = parse_fetch_tail(bytes);
            }
            Frame::LiteralChunk { .. } => {}
        }
    }
}

/// Every response frame in `data` that parses must encode to bytes that parse again to a
/// value with the same encoding (parse → encode → parse is stable).
pub fn check_response_roundtrip(data: &[u8]) {
    let mut dec = ResponseDecoder::new(DecoderConfig {
        stream_threshold: u64::MAX,
        ..DecoderConfig::default()
    });
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = dec.decode(&mut buf) {
        let Frame::Whole(frame) = frame else { continue };
        let Ok(first) = parse_response(&frame) else {
            continue;
        };
        let mut once = BytesMut::new();
        encode_response(&first, &mut once);
        let second = match parse_response(&once) {
            Ok(r) => r,
            Err(e) => panic!(
                "re-encoded response does not parse: {e}\n{:?}",
                String::from_utf8_lossy(&once)
            ),
        };
        let mut twice = BytesMut::new();
        encode_response(&second, &mut twice);
        assert_eq!(once, twice, "encoding is not stable");
        // The canonical bytes also decode as exactly one frame.
        let mut d2 = ResponseDecoder::new(DecoderConfig {
            stream_threshold: u64::MAX,
            ..DecoderConfig::default()
        });
        let mut b2 = once.clone();
        assert_eq!(
            d2.decode(&mut b2).ok().flatten(),
            Some(Frame::Whole(once.freeze())),
            "re-encoded frame splits"
        );
    }
}

/// Every command frame in `data` that parses must encode canonically to bytes that parse
/// to a value with the same encoding.
pub fn check_command_roundtrip(data: &[u8]) {
    let mut dec = CommandDecoder::new(CommandDecoderConfig {
        max_non_sync_literal: u64::MAX,
        ..Default::default()
    });
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = dec.decode(&mut buf) {
        let CommandFrame::Whole(frame) = frame else {
            continue;
        };
        let Ok(first) = parse_command(&frame) else {
            continue;
        };
        let mut once = BytesMut::new();
        encode_parsed_command(&first, &mut once);
        let second = match parse_command(&once) {
            Ok(c) => c,
            Err(e) => panic!(
                "re-encoded command does not parse: {e}\n{:?}",
                String::from_utf8_lossy(&once)
            ),
        };
        let mut twice = BytesMut::new();
        encode_parsed_command(&second, &mut twice);
        assert_eq!(once, twice, "command encoding is not stable");
    }
}

/// Modified UTF-7: Unicode → mUTF-7 → Unicode is the identity, and bytes that decode
/// re-encode to themselves.
pub fn check_mutf7_roundtrip(data: &[u8]) {
    if let Ok(s) = std::str::from_utf8(data) {
        let wire = mutf7::encode(s);
        assert!(
            wire.bytes().all(|b| (0x20..0x7f).contains(&b)),
            "encoding is not printable ASCII"
        );
        assert_eq!(
            mutf7::decode(wire.as_bytes()).ok().as_deref(),
            Some(s),
            "round trip failed for {s:?}"
        );
    }
    if let Ok(s) = mutf7::decode(data) {
        assert_eq!(
            mutf7::encode(&s).as_bytes(),
            data,
            "decode is not canonical"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_hold_on_typical_input() {
        let stream = b"\x05* OK [CAPABILITY IMAP4rev1] hi\r\n* 1 FETCH (UID 1 BODY[] {20}\r\n01234567890123456789 FLAGS (\\Seen))\r\nA1 OK done\r\n";
        check_decoder_chunking(stream);
        check_response_roundtrip(&stream[1..]);
        check_command_roundtrip(b"a1 LOGIN {4}\r\nfred pw\r\na2 ID NIL\r\n");
        check_mutf7_roundtrip("Entwürfe & Co".as_bytes());
        check_mutf7_roundtrip(b"&U,BTFw-");
        check_decoder_chunking(b"");
        check_decoder_chunking(b"\x00{99999999}\r\n");
    }

    proptest::proptest! {
        #[test]
        fn decoder_chunking_holds_for_random_streams(
            seed in proptest::prelude::any::<u8>(),
            parts in proptest::collection::vec(
                proptest::prop_oneof![
                    proptest::strategy::Just(b"* 1 FETCH (UID 1 BODY[] {20}\r\n".to_vec()),
                    proptest::strategy::Just(b"A1 OK done\r\n".to_vec()),
                    proptest::strategy::Just(b"\r\n".to_vec()),
                    proptest::strategy::Just(b"\0".to_vec()),
                    proptest::collection::vec(proptest::prelude::any::<u8>(), 0..24),
                ],
                0..12,
            ),
        ) {
            let mut data = vec![seed];
            for p in parts {
                data.extend_from_slice(&p);
            }
            check_decoder_chunking(&data);
            check_response_roundtrip(&data[1..]);
            check_command_roundtrip(&data[1..]);
        }

        #[test]
        fn mutf7_round_trips(s in "\\PC{0,24}") {
            check_mutf7_roundtrip(s.as_bytes());
        }
    }
}
