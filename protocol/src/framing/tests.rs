use super::*;

fn small() -> DecoderConfig {
    DecoderConfig {
        stream_threshold: 8,
        max_buffered: 1024,
        max_line: 256,
        max_literal: 1 << 32,
        max_chunk: 5,
    }
}

/// Feeds `input` in `step`-byte reads and collects every frame.
fn decode_all(mut dec: ResponseDecoder, input: &[u8], step: usize) -> Result<Vec<Frame>> {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in input.chunks(step.max(1)) {
        buf.extend_from_slice(piece);
        while let Some(f) = dec.decode(&mut buf)? {
            out.push(f);
        }
    }
    while let Some(f) = dec.decode_eof(&mut buf)? {
        out.push(f);
    }
    Ok(out)
}

/// Joins consecutive literal chunks so that frames from different read sizes compare.
fn normalize(frames: Vec<Frame>) -> Vec<Frame> {
    let mut out: Vec<Frame> = Vec::new();
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

#[test]
fn whole_frames_with_small_literals() {
    let input = b"* 1 FETCH (BODY[] {5}\r\nab\r\nc)\r\n* 2 EXISTS\r\nA1 OK done\r\n";
    for step in [1, 2, 7, 100] {
        let frames = decode_all(ResponseDecoder::new(small()), input, step).unwrap();
        assert_eq!(
            frames,
            [
                Frame::Whole(Bytes::from_static(b"* 1 FETCH (BODY[] {5}\r\nab\r\nc)\r\n")),
                Frame::Whole(Bytes::from_static(b"* 2 EXISTS\r\n")),
                Frame::Whole(Bytes::from_static(b"A1 OK done\r\n")),
            ],
            "step {step}"
        );
    }
}

#[test]
fn big_literal_is_streamed_head_chunks_tail() {
    let input = b"* 3 FETCH (UID 9 BODY[] {12}\r\nhello world! FLAGS (\\Seen))\r\nA1 OK\r\n";
    let frames = decode_all(ResponseDecoder::new(small()), input, 3).unwrap();
    let Frame::Head {
        bytes,
        literal_len: 12,
    } = &frames[0]
    else {
        panic!("{frames:?}")
    };
    assert_eq!(&bytes[..], b"* 3 FETCH (UID 9 BODY[] {12}\r\n");
    let mut body = Vec::new();
    let mut k = 1;
    while let Frame::LiteralChunk { bytes, remaining } = &frames[k] {
        assert!(bytes.len() <= 5);
        body.extend_from_slice(bytes);
        assert_eq!(*remaining as usize, 12 - body.len());
        k += 1;
    }
    assert_eq!(body, b"hello world!");
    assert_eq!(
        frames[k],
        Frame::Tail {
            bytes: Bytes::from_static(b" FLAGS (\\Seen))\r\n"),
            literal_len: None
        }
    );
    assert_eq!(
        frames[k + 1],
        Frame::Whole(Bytes::from_static(b"A1 OK\r\n"))
    );
    let n = normalize(frames.clone());
    assert_eq!(
        n,
        normalize(decode_all(ResponseDecoder::new(small()), input, 1000).unwrap())
    );
}

#[test]
fn tail_can_announce_another_streamed_literal() {
    let input = b"* 1 FETCH (BODY[1] {9}\r\n123456789 BODY[2] {10}\r\nabcdefghij)\r\n";
    let frames = normalize(decode_all(ResponseDecoder::new(small()), input, 4).unwrap());
    assert_eq!(frames.len(), 5, "{frames:?}");
    assert!(matches!(
        frames[2],
        Frame::Tail {
            literal_len: Some(10),
            ..
        }
    ));
    assert_eq!(
        frames[4],
        Frame::Tail {
            bytes: Bytes::from_static(b")\r\n"),
            literal_len: None
        }
    );
}

#[test]
fn literal_exactly_at_threshold_is_buffered() {
    let input = b"* 1 FETCH (BODY[] {8}\r\n12345678)\r\n";
    let frames = decode_all(ResponseDecoder::new(small()), input, 1).unwrap();
    assert_eq!(frames, [Frame::Whole(Bytes::from_static(input))]);
}

#[test]
fn limits_are_typed_errors_not_allocations() {
    let mut cfg = small();
    cfg.max_line = 16;
    let err = decode_all(ResponseDecoder::new(cfg), &[b'a'; 40], 40).unwrap_err();
    assert!(
        matches!(
            err,
            Error::LimitExceeded {
                what: "a response line",
                ..
            }
        ),
        "{err}"
    );

    // A buffered literal that would exceed max_buffered is refused up front.
    let mut cfg = small();
    cfg.stream_threshold = 1 << 40;
    cfg.max_buffered = 100;
    let err = decode_all(
        ResponseDecoder::new(cfg),
        b"* 1 FETCH (BODY[] {1000}\r\n",
        100,
    )
    .unwrap_err();
    assert!(
        matches!(err, Error::LimitExceeded { limit: 100, .. }),
        "{err}"
    );

    // Over the protocol's literal size.
    let err = decode_all(
        ResponseDecoder::new(small()),
        b"* 1 FETCH (BODY[] {99999999999}\r\n",
        100,
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            Error::LimitExceeded {
                what: "a literal",
                ..
            }
        ),
        "{err}"
    );
    let err = decode_all(
        ResponseDecoder::new(small()),
        b"* 1 FETCH (BODY[] {999999999999999999999999}\r\n",
        100,
    )
    .unwrap_err();
    assert!(matches!(err, Error::LimitExceeded { .. }), "{err}");
}

#[test]
fn eof_mid_frame_is_an_error_eof_between_frames_is_not() {
    let err = decode_all(
        ResponseDecoder::default(),
        b"* 1 FETCH (BODY[] {5}\r\nab",
        3,
    )
    .unwrap_err();
    assert!(matches!(err, Error::UnexpectedEof { .. }), "{err}");
    assert!(decode_all(ResponseDecoder::default(), b"* OK\r\n", 3).is_ok());
}

/// NUL padding between responses is dropped; NULs inside a literal are data.
#[test]
fn quirk_nul_padding_between_responses() {
    let input = b"\0\0* OK hi\r\n\0\0\0* 1 FETCH (BODY[] {2}\r\n\0\0)\r\n\0";
    let frames = decode_all(ResponseDecoder::new(small()), input, 2).unwrap();
    assert_eq!(
        frames,
        [
            Frame::Whole(Bytes::from_static(b"* OK hi\r\n")),
            Frame::Whole(Bytes::from_static(b"* 1 FETCH (BODY[] {2}\r\n\0\0)\r\n")),
        ]
    );
}

/// A 40 MB body arriving in 16 KiB reads: the buffer never holds more than one read plus
/// a line, and the decoder's work is linear (each byte is scanned once).
#[test]
fn forty_megabytes_stay_within_the_cap() {
    let cfg = DecoderConfig {
        max_buffered: 1024 * 1024,
        ..DecoderConfig::default()
    };
    let mut dec = ResponseDecoder::new(cfg);
    let size = 40 * 1024 * 1024;
    let mut buf = BytesMut::new();
    let head = format!("* 1 FETCH (UID 7 BODY[] {{{size}}}\r\n");
    buf.extend_from_slice(head.as_bytes());
    let block = vec![b'x'; 16 * 1024];
    let mut got = 0usize;
    let mut frames = 0usize;
    let mut sent = 0usize;
    let started = std::time::Instant::now();
    while sent < size {
        let n = block.len().min(size - sent);
        buf.extend_from_slice(&block[..n]);
        sent += n;
        while let Some(f) = dec.decode(&mut buf).unwrap() {
            frames += 1;
            if let Frame::LiteralChunk { bytes, .. } = f {
                got += bytes.len();
            }
        }
    }
    buf.extend_from_slice(b")\r\n");
    let tail = dec.decode(&mut buf).unwrap();
    assert_eq!(
        tail,
        Some(Frame::Tail {
            bytes: Bytes::from_static(b")\r\n"),
            literal_len: None
        })
    );
    assert_eq!(got, size);
    assert!(frames > 2);
    assert!(
        dec.high_water_mark() <= 16 * 1024 + head.len(),
        "{}",
        dec.high_water_mark()
    );
    assert!(dec.high_water_mark() <= cfg.max_buffered);
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

/// A large buffered frame arriving in small reads is scanned once, not from the start
/// on every read.
#[test]
fn scanning_resumes_where_it_stopped() {
    let mut dec = ResponseDecoder::new(DecoderConfig {
        max_line: 4 << 20,
        max_buffered: 8 << 20,
        ..Default::default()
    });
    let mut buf = BytesMut::new();
    let line = vec![b'a'; 2 << 20];
    buf.extend_from_slice(b"* OK ");
    let started = std::time::Instant::now();
    for piece in line.chunks(64) {
        buf.extend_from_slice(piece);
        assert_eq!(dec.decode(&mut buf).unwrap(), None);
    }
    buf.extend_from_slice(b"\r\n");
    assert!(matches!(
        dec.decode(&mut buf).unwrap(),
        Some(Frame::Whole(_))
    ));
    // 32768 reads of a 2 MB line: quadratic rescanning would take minutes in debug builds.
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

#[test]
fn trailing_literal_forms() {
    assert_eq!(
        trailing_literal(b"A1 LOGIN {5}").unwrap(),
        Some(LiteralAnnouncement {
            len: 5,
            non_sync: false
        })
    );
    assert_eq!(
        trailing_literal(b"A1 APPEND x {5+}").unwrap(),
        Some(LiteralAnnouncement {
            len: 5,
            non_sync: true
        })
    );
    assert_eq!(
        trailing_literal(b"* 1 FETCH (BINARY[] ~{5}")
            .unwrap()
            .map(|l| l.len),
        Some(5)
    );
    assert_eq!(trailing_literal(b"* OK {}").unwrap(), None);
    assert_eq!(trailing_literal(b"* OK {a}").unwrap(), None);
    assert_eq!(trailing_literal(b"* OK }").unwrap(), None);
}

#[test]
fn command_decoder_sync_and_non_sync_literals() {
    let mut dec = CommandDecoder::default();
    let mut buf = BytesMut::from(&b"a1 LOGIN {4}\r\n"[..]);
    assert_eq!(
        dec.decode(&mut buf).unwrap(),
        Some(CommandFrame::NeedContinuation { literal_len: 4 })
    );
    assert_eq!(dec.decode(&mut buf).unwrap(), None);
    buf.extend_from_slice(b"fred {3+}\r\npw!\r\na2 NOOP\r\n");
    assert_eq!(
        dec.decode(&mut buf).unwrap(),
        Some(CommandFrame::Whole(Bytes::from_static(
            b"a1 LOGIN {4}\r\nfred {3+}\r\npw!\r\n"
        )))
    );
    assert_eq!(
        dec.decode(&mut buf).unwrap(),
        Some(CommandFrame::Whole(Bytes::from_static(b"a2 NOOP\r\n")))
    );

    // LITERAL-: non-synchronizing literals over 4096 bytes are refused.
    let mut buf = BytesMut::from(&b"a3 LOGIN {5000+}\r\n"[..]);
    let err = CommandDecoder::default().decode(&mut buf).unwrap_err();
    assert!(
        matches!(err, Error::LimitExceeded { limit: 4096, .. }),
        "{err}"
    );

    // A refused synchronizing literal drops the partial command.
    let mut dec = CommandDecoder::default();
    let mut buf = BytesMut::from(&b"a4 LOGIN {4}\r\n"[..]);
    assert!(matches!(
        dec.decode(&mut buf).unwrap(),
        Some(CommandFrame::NeedContinuation { .. })
    ));
    dec.reject_pending_literal(&mut buf);
    buf.extend_from_slice(b"a5 LOGOUT\r\n");
    assert_eq!(
        dec.decode(&mut buf).unwrap(),
        Some(CommandFrame::Whole(Bytes::from_static(b"a5 LOGOUT\r\n")))
    );
}

/// The decoder as the session uses it: `FramedRead` over an async stream that delivers
/// a big literal in small pieces.
#[tokio::test]
async fn framed_read_over_an_async_stream() {
    use futures::StreamExt;
    use tokio::io::AsyncWriteExt;
    use tokio_util::codec::FramedRead;

    let (mut server, client) = tokio::io::duplex(1024);
    let writer = tokio::spawn(async move {
        server
            .write_all(b"* 1 FETCH (UID 5 BODY[] {100000}\r\n")
            .await?;
        for _ in 0..100 {
            server.write_all(&[b'm'; 1000]).await?;
        }
        server.write_all(b")\r\nA1 OK done\r\n").await?;
        server.shutdown().await
    });
    let mut frames = FramedRead::new(
        client,
        ResponseDecoder::new(DecoderConfig {
            stream_threshold: 4096,
            ..Default::default()
        }),
    );
    let Some(Ok(Frame::Head {
        literal_len: 100_000,
        ..
    })) = frames.next().await
    else {
        panic!("no head")
    };
    let mut body = 0;
    loop {
        match frames.next().await {
            Some(Ok(Frame::LiteralChunk { bytes, .. })) => body += bytes.len(),
            Some(Ok(Frame::Tail {
                bytes,
                literal_len: None,
            })) => {
                assert_eq!(&bytes[..], b")\r\n");
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(body, 100_000);
    let Some(Ok(Frame::Whole(done))) = frames.next().await else {
        panic!("no completion")
    };
    assert_eq!(&done[..], b"A1 OK done\r\n");
    assert!(frames.next().await.is_none());
    writer.await.unwrap().unwrap();
    assert!(frames.decoder().high_water_mark() <= 4096 + 1024);
}

#[test]
fn find_lf_matches_a_byte_loop() {
    let mut data = vec![b'a'; 40];
    assert_eq!(find_lf(&data), None);
    for at in 0..40 {
        data[at] = b'\n';
        assert_eq!(find_lf(&data), Some(at));
        assert_eq!(find_lf(&data[..at]), None);
        data[at] = 0x0b;
    }
    assert_eq!(find_lf(b"\x00\x0a\x0a"), Some(1));
    assert_eq!(find_lf(&[0x8a, 0x0b, 0x09, 0x0a]), Some(3));
}
