//! The parser: two realistic UID FETCH streams parsed with imapmirror-protocol,
//! imap-codec 2.0.0-alpha and imap-proto 0.17, counting heap allocations per response.
//!
//! - with bodies: 10,000 responses of mixed sizes, each with UID, FLAGS, INTERNALDATE,
//!   RFC822.SIZE and a literal body — what the engine reads while it copies;
//! - metadata: 100,000 responses with UID, FLAGS, INTERNALDATE and RFC822.SIZE only —
//!   what the engine reads when it lists a folder's new messages (`fetch_meta`).
//!
//! Run: `cargo bench --bench parser` (criterion's arguments after `--`, e.g. `-- bodies`).
//! A summary table per stream (best of several passes: messages/s, MB/s, allocations per
//! response) is printed first, then criterion's statistics.

// Why unsafe is allowed here and nowhere else in the crate: counting allocations needs a
// `#[global_allocator]`, i.e. an `unsafe impl GlobalAlloc`. It only forwards to `System`.
#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use imapmirror_protocol::{
    Data, FetchItem, Flag, Frame, Response, ResponseDecoder, parse_response,
};
use tokio_util::codec::Decoder;

struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards its arguments unchanged to `System`, which upholds the
// `GlobalAlloc` contract; the counter is a relaxed atomic with no other effect.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

/// Responses in the stream with bodies.
const BODY_RESPONSES: usize = 10_000;
/// Responses in the metadata-only stream: a large folder's listing.
const META_RESPONSES: usize = 100_000;

/// One of the two streams: its bytes and how many responses it holds.
struct Stream {
    name: &'static str,
    bytes: Vec<u8>,
    responses: usize,
}

/// A deterministic stream of `responses` FETCH responses. With bodies: 70% of bodies
/// 1–4 KiB, 25% 4–32 KiB, 5% 32–128 KiB. Without: the same attributes minus `BODY[]`.
fn fetch_stream(responses: usize, with_bodies: bool) -> Vec<u8> {
    let mut text = Vec::with_capacity(128 * 1024 + 200);
    text.extend_from_slice(
        b"Return-Path: <alice@example.test>\r\nReceived: from mx.example.test by imap.example.test\r\n\
          From: Alice <alice@example.test>\r\nTo: Bob <bob@example.test>\r\nSubject: Quarterly numbers\r\n\
          Date: Tue, 2 Jul 2024 09:05:00 +0200\r\nMessage-ID: <1234@example.test>\r\nMIME-Version: 1.0\r\n\
          Content-Type: text/plain; charset=utf-8\r\n\r\n",
    );
    let mut line = 0u32;
    while text.len() < 128 * 1024 {
        text.extend_from_slice(
            format!("Line {line}: the figures for the quarter are attached below.\r\n").as_bytes(),
        );
        line += 1;
    }
    let flags = [
        "\\Seen",
        "\\Seen \\Answered",
        "\\Seen $Forwarded NonJunk",
        "",
        "\\Flagged \\Seen $label1",
    ];
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let mut out = Vec::new();
    for k in 0..responses {
        let r = next();
        let size = match r % 100 {
            0..70 => 1024 + (r >> 8) as usize % 3072,
            70..95 => 4096 + (r >> 8) as usize % 28672,
            _ => 32768 + (r >> 8) as usize % 98304,
        };
        let f = flags[(r >> 40) as usize % flags.len()];
        let day = 1 + (r >> 20) % 28;
        let head = format!(
            "* {} FETCH (UID {} FLAGS ({f}) INTERNALDATE \"{day:02}-Jul-2024 09:05:00 +0200\" RFC822.SIZE {size}",
            k + 1,
            k + 1001
        );
        out.extend_from_slice(head.as_bytes());
        if with_bodies {
            out.extend_from_slice(format!(" BODY[] {{{size}}}\r\n").as_bytes());
            out.extend_from_slice(&text[..size]);
        }
        out.extend_from_slice(b")\r\n");
    }
    out
}

/// The engine's path: frame, parse, and read every attribute (flags included) lazily.
fn ours(stream: &mut BytesMut) -> usize {
    let mut dec = ResponseDecoder::default();
    let mut n = 0;
    let mut acc = 0u64;
    while let Ok(Some(frame)) = dec.decode(stream) {
        let Frame::Whole(frame) = frame else {
            panic!("unexpected streamed frame")
        };
        let Ok(Response::Data(Data::Fetch(fetch))) = parse_response(&frame) else {
            panic!("not a FETCH")
        };
        for item in fetch.attrs.iter() {
            match item {
                FetchItem::Uid(u) => acc += u64::from(u),
                FetchItem::Flags(flags) => {
                    for f in flags.iter() {
                        acc += matches!(f, Flag::Seen) as u64;
                    }
                }
                FetchItem::InternalDate(d) => acc += d.len() as u64,
                FetchItem::Rfc822Size(s) => acc += s,
                FetchItem::Body {
                    data: Some(body), ..
                } => acc += body.raw().len() as u64,
                _ => {}
            }
        }
        n += 1;
    }
    black_box(acc);
    n
}

fn imap_codec(stream: &[u8]) -> usize {
    use imap_codec::ResponseCodec;
    use imap_codec::decode::Decoder as _;
    let codec = ResponseCodec::default();
    let mut rest = stream;
    let mut n = 0;
    while !rest.is_empty() {
        match codec.decode(rest) {
            Ok((r, response)) => {
                black_box(&response);
                rest = r;
                n += 1;
            }
            Err(e) => panic!("imap-codec failed: {e:?}"),
        }
    }
    n
}

fn imap_proto(stream: &[u8]) -> usize {
    let mut rest = stream;
    let mut n = 0;
    while !rest.is_empty() {
        match imap_proto::Response::parse(rest) {
            Ok((r, response)) => {
                black_box(&response);
                rest = r;
                n += 1;
            }
            Err(e) => panic!("imap-proto failed: {e:?}"),
        }
    }
    n
}

const ROUNDS: usize = 25;
const PARSERS: [&str; 3] = [
    "imapmirror-protocol",
    "imap-codec 2.0.0-alpha.10",
    "imap-proto 0.17",
];

/// One pass over the stream: (seconds, allocations).
fn measure_once(stream: &Stream, which: &str) -> (Duration, u64) {
    // Every parser reads a freshly copied buffer, so all see the same cache and TLB state.
    let mut buf = BytesMut::from(&stream.bytes[..]);
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    let start = Instant::now();
    let n = match which {
        "imapmirror-protocol" => ours(&mut buf),
        "imap-codec 2.0.0-alpha.10" => imap_codec(&buf),
        _ => imap_proto(&buf),
    };
    let took = start.elapsed();
    let allocs = ALLOCATIONS.load(Ordering::Relaxed) - before;
    assert_eq!(n, stream.responses, "{which} parsed {n} responses");
    drop(buf);
    (took, allocs)
}

/// Best of several passes per parser, taken in turns so that every parser sees the same
/// share of a busy machine's quiet moments.
fn summary(stream: &Stream) {
    let responses = stream.responses;
    let len = stream.bytes.len() as f64;
    println!(
        "\nUID FETCH stream {}: {responses} responses, {:.1} MB, {:.2} KB per response on average",
        stream.name,
        len / 1e6,
        len / responses as f64 / 1e3
    );
    let mut best = [Duration::MAX; 3];
    let mut allocs = [0u64; 3];
    for _round in 0..ROUNDS {
        for (k, which) in PARSERS.iter().enumerate() {
            let (took, a) = measure_once(stream, which);
            best[k] = best[k].min(took);
            allocs[k] = a;
        }
    }
    println!(
        "{:<28} {:>12} {:>10} {:>16}",
        "parser (best of 25)", "messages/s", "MB/s", "allocs/response"
    );
    for (k, which) in PARSERS.iter().enumerate() {
        let secs = best[k].as_secs_f64();
        println!(
            "{:<28} {:>12.0} {:>10.0} {:>16.4}",
            which,
            responses as f64 / secs,
            len / secs / 1e6,
            allocs[k] as f64 / responses as f64
        );
    }
    println!(
        "(imapmirror-protocol: {} allocations per pass of {responses} responses, from sharing the read buffer once)\n",
        allocs[0]
    );
}

fn bench(c: &mut Criterion) {
    let streams = [
        Stream {
            name: "with bodies",
            bytes: fetch_stream(BODY_RESPONSES, true),
            responses: BODY_RESPONSES,
        },
        Stream {
            name: "metadata",
            bytes: fetch_stream(META_RESPONSES, false),
            responses: META_RESPONSES,
        },
    ];
    for stream in &streams {
        summary(stream);
    }
    bench_stream(c, "fetch_bodies_10k", &streams[0]);
    bench_stream(c, "fetch_metadata_100k", &streams[1]);
}

fn bench_stream(c: &mut Criterion, group_name: &str, stream: &Stream) {
    let bytes = &stream.bytes[..];
    let mut group = c.benchmark_group(group_name);
    group.throughput(Throughput::Elements(stream.responses as u64));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(4));
    group.warm_up_time(Duration::from_secs(1));
    group.bench_function("imapmirror-protocol", |b| {
        b.iter_batched(
            || BytesMut::from(bytes),
            // Returning the buffer keeps its deallocation out of the measurement.
            |mut buf| {
                ours(&mut buf);
                buf
            },
            BatchSize::LargeInput,
        )
    });
    // The peers parse a fresh copy too, so that all three read memory in the same state.
    group.bench_function("imap-codec", |b| {
        b.iter_batched(
            || BytesMut::from(bytes),
            |buf| {
                imap_codec(&buf);
                buf
            },
            BatchSize::LargeInput,
        )
    });
    group.bench_function("imap-proto", |b| {
        b.iter_batched(
            || BytesMut::from(bytes),
            |buf| {
                imap_proto(&buf);
                buf
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
