//! The storage index: the uid map and the journal of imapmirror-storage, through its
//! public API, as the engine uses them.
//!
//! `cargo bench --bench storage` first prints the uid-map summary (the table in
//! BENCHMARKS.md): batched inserts/s, lookups/s, range-scan speed and bytes on disk per
//! entry, for 1,000,000 entries committed 100 at a time as the engine does (set
//! `UID_MAP_BENCH_ENTRIES` for another count, 0 to skip it). Two stores are measured:
//! - "engine path": `begin` (fsynced journal entry) + `commit` per group of 100, exactly
//!   the engine's sequence, so the fsync per group is included: `Store::begin` awaited
//!   (answered after the storage thread's flush), then the commit in a job of its own;
//! - "map only": `uid_map_record` per group of 100 (the same atomic batch without the
//!   journal entry and its fsync), one job per group, the store's raw insert speed.
//!
//! Then criterion measures, at 100,000 UIDs in one folder ([`CRITERION_UIDS`]):
//! - `uid_map_insert_100k`: filling a fresh store, engine path and map only;
//! - `uid_map_lookup_100k`: one storage job of [`LOOKUPS_PER_JOB`] random point gets;
//! - `resume_scan_100k`: the storage job a folder pass runs when it resumes that folder
//!   with one group pending — its state, its pending journal groups, and the whole map
//!   read into a set of copied source UIDs (as `folder_sync` and `message_copy` do).
//!
//! Every store access is a job on the storage thread. Inserts cost one job per group,
//! as in the engine; lookups run [`LOOKUPS_PER_JOB`] gets per job and the range scan is
//! one job, so the figures measure the map rather than the round trip to the thread.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, SamplingMode, Throughput, criterion_group};
use imapmirror_storage::*;
use tempfile::TempDir;
use tokio::runtime::Runtime;

const GROUP: u32 = 100;
/// Random gets per storage job: enough that the job round trip is a small share.
const LOOKUPS_PER_JOB: u32 = 1000;
/// UIDs in the folder the criterion benches measure.
const CRITERION_UIDS: u32 = 100_000;

struct Prng(u64);

impl Prng {
    fn next(&mut self, n: u32) -> u32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % u64::from(n)) as u32
    }
}

fn fingerprint(uid: u32) -> Fingerprint {
    // Distinct, incompressible-looking bytes, like a real hash.
    let mut b = [0u8; 16];
    let mut x = u64::from(uid).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for chunk in b.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    Fingerprint(b)
}

fn flags(uid: u32) -> MessageFlags {
    let mut f = MessageFlags::new();
    if !uid.is_multiple_of(10) {
        f.insert(SystemFlag::Seen);
    }
    if uid.is_multiple_of(50) {
        f.insert(SystemFlag::Flagged);
    }
    f
}

/// Realistic message sizes: 2 KB to ~200 KB.
fn size(uid: u32) -> u64 {
    2_000 + u64::from(uid.wrapping_mul(2_654_435_761) % 200_000)
}

fn setup(dir: &Path) -> (Store, MailboxId, FolderId) {
    let store = Store::open(dir).expect("open the bench store");
    let (mailbox, folder) = store.call(setup_in).expect("setup");
    (store, mailbox, folder)
}

fn setup_in(store: &Database) -> Result<(MailboxId, FolderId)> {
    let mailbox = imapmirror_storage::test_fixtures::one_mailbox(store);
    Ok((mailbox, store.folder(mailbox, "INBOX")?))
}

fn disk_bytes(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut len = 0;
    let mut allocated = 0;
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let e = e.expect("entry");
        let m = e.metadata().expect("metadata");
        if m.is_dir() {
            let (l, a) = disk_bytes(&e.path());
            len += l;
            allocated += a;
        } else {
            len += m.len();
            allocated += m.blocks() * 512;
        }
    }
    (len, allocated)
}

/// The journal group of UIDs `first..=last`, as the engine begins it.
fn copy_group(first: u32, last: u32) -> CopyGroup {
    CopyGroup {
        target_folder: "INBOX".into(),
        target_uidvalidity: 1,
        target_uidnext: first,
        messages: (first..=last)
            .map(|u| PendingMessage {
                source_uid: u,
                fingerprint: fingerprint(u),
                size: size(u),
            })
            .collect(),
    }
}

/// Maps UIDs 1..=n in groups of [`GROUP`]: `begin` + `commit` per group on the engine
/// path, `uid_map_record` per group otherwise.
fn fill(store: &Store, rt: &Runtime, folder: FolderId, n: u32, engine_path: bool) {
    let mut uid = 1;
    while uid <= n {
        let last = (uid + GROUP - 1).min(n);
        if engine_path {
            let group = copy_group(uid, last);
            let outcome = GroupOutcome {
                copied: (uid..=last)
                    .map(|u| CopiedMessage {
                        source_uid: u,
                        target_uid: u,
                        flags: flags(u),
                    })
                    .collect(),
                skipped: vec![],
                highest_copied_uid: Some(last),
                target_uidnext: Some(last + 1),
                all_mail_index: Default::default(),
            };
            rt.block_on(async {
                let id = store.begin(folder, group).await.expect("begin");
                store
                    .run(move |db| db.commit(id, &outcome))
                    .await
                    .expect("commit");
            });
        } else {
            let entries = (uid..=last)
                .map(|u| {
                    (
                        u,
                        UidMapEntry {
                            target_uid: u,
                            flags: flags(u),
                            fingerprint: fingerprint(u),
                            size: size(u),
                        },
                    )
                })
                .collect();
            store
                .call(move |db| db.uid_map_record(folder, entries))
                .expect("record");
        }
        uid = last + 1;
    }
}

/// The engine's `begin` is async; a current-thread runtime awaits it here.
fn runtime() -> Runtime {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
}

fn measure(label: &str, n: u32, engine_path: bool) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (store, _, folder) = setup(tmp.path());
    let db_dir = tmp.path().join("db");
    let (base_len, _) = disk_bytes(&db_dir);
    let rt = runtime();

    let started = Instant::now();
    fill(&store, &rt, folder, n, engine_path);
    let insert_s = started.elapsed().as_secs_f64();

    let mut rng = Prng(0x1234_5678_9ABC_DEF1);
    let lookups = n.min(1_000_000);
    let started = Instant::now();
    let mut looked_up = 0;
    while looked_up < lookups {
        let chunk = LOOKUPS_PER_JOB.min(lookups - looked_up);
        let uids: Vec<u32> = (0..chunk).map(|_| 1 + rng.next(n)).collect();
        store
            .call(move |db| {
                for u in uids {
                    let e = db.uid_map_get(folder, u)?.expect("present");
                    assert_eq!(e.target_uid, u);
                }
                Ok(())
            })
            .expect("get");
        looked_up += chunk;
    }
    let lookup_s = started.elapsed().as_secs_f64();

    let started = Instant::now();
    let scanned = store
        .call(move |db| {
            let mut scanned = 0u64;
            for item in db.uid_map_range(folder, ..)? {
                let (_, e) = item?;
                scanned += u64::from(e.target_uid > 0);
            }
            Ok(scanned)
        })
        .expect("range");
    let scan_s = started.elapsed().as_secs_f64();
    assert_eq!(scanned, u64::from(n));

    store.call(|db| db.flush()).expect("flush");
    let (len, allocated) = disk_bytes(&db_dir);
    let per_entry = (len - base_len) as f64 / f64::from(n);
    let state = store
        .call(move |db| db.folder_state(folder))
        .expect("state");
    assert_eq!(state.counters.messages, u64::from(n));

    println!("{label}: {n} entries in groups of {GROUP}");
    println!(
        "  inserts:   {:>12.0} entries/s ({insert_s:.2} s)",
        f64::from(n) / insert_s
    );
    println!(
        "  lookups:   {:>12.0} random gets/s ({lookup_s:.2} s)",
        f64::from(lookups) / lookup_s
    );
    println!(
        "  range scan:{:>12.0} entries/s ({scan_s:.2} s)",
        scanned as f64 / scan_s
    );
    println!("  disk after flush: {len} bytes ({allocated} allocated), {per_entry:.1} bytes/entry");
    drop(store);
    let store = Store::open(tmp.path()).expect("reopen");
    store.call(|db| db.flush()).expect("flush");
    let (len, _) = disk_bytes(&db_dir);
    println!(
        "  disk after reopen: {len} bytes, {:.1} bytes/entry",
        (len - base_len) as f64 / f64::from(n)
    );
}

/// A store whose folder maps UIDs 1..=[`CRITERION_UIDS`] (engine path), and has the next
/// group begun but not committed: the state a crash in the middle of a copy leaves.
struct Filled {
    _dir: TempDir,
    store: Store,
    mailbox: MailboxId,
    folder: FolderId,
}

fn filled() -> Filled {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, mailbox, folder) = setup(dir.path());
    let rt = runtime();
    fill(&store, &rt, folder, CRITERION_UIDS, true);
    let pending = copy_group(CRITERION_UIDS + 1, CRITERION_UIDS + GROUP);
    rt.block_on(store.begin(folder, pending)).expect("begin");
    Filled {
        _dir: dir,
        store,
        mailbox,
        folder,
    }
}

fn bench_insert(c: &mut Criterion) {
    let mut group = c.benchmark_group("uid_map_insert_100k");
    group.throughput(Throughput::Elements(u64::from(CRITERION_UIDS)));
    // One iteration fills a store (up to a second): equal, small sample counts.
    group.sampling_mode(SamplingMode::Flat);
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    for (name, engine_path) in [("engine_path", true), ("map_only", false)] {
        group.bench_function(name, |b| {
            let rt = runtime();
            b.iter_batched(
                || {
                    let dir = tempfile::tempdir().expect("tempdir");
                    let (store, _, folder) = setup(dir.path());
                    (dir, store, folder)
                },
                // Returning the store keeps its shutdown out of the measurement.
                |(dir, store, folder)| {
                    fill(&store, &rt, folder, CRITERION_UIDS, engine_path);
                    (dir, store)
                },
                BatchSize::PerIteration,
            )
        });
    }
    group.finish();
}

fn bench_read(c: &mut Criterion) {
    let mut group = c.benchmark_group("uid_map_lookup_100k");
    group.throughput(Throughput::Elements(u64::from(LOOKUPS_PER_JOB)));
    // Filled once, on first use: criterion calls the closure for every sample.
    let mut store: Option<Filled> = None;
    group.bench_function("1000_gets_one_job", |b| {
        let f = store.get_or_insert_with(filled);
        let folder = f.folder;
        let mut rng = Prng(0x1234_5678_9ABC_DEF1);
        b.iter_batched(
            || {
                (0..LOOKUPS_PER_JOB)
                    .map(|_| 1 + rng.next(CRITERION_UIDS))
                    .collect::<Vec<u32>>()
            },
            |uids| {
                f.store
                    .call(move |db| {
                        for u in uids {
                            let e = db.uid_map_get(folder, u)?.expect("present");
                            assert_eq!(e.target_uid, u);
                        }
                        Ok(())
                    })
                    .expect("get")
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let mut group = c.benchmark_group("resume_scan_100k");
    group.throughput(Throughput::Elements(u64::from(CRITERION_UIDS)));
    group.bench_function("state_journal_whole_map", |b| {
        let f = store.get_or_insert_with(filled);
        let (mailbox, folder) = (f.mailbox, f.folder);
        b.iter(|| {
            let (pending, copied) = f
                .store
                .call(move |db| {
                    let state = db.folder_state(folder)?;
                    let pending = db.pending_in_folder(mailbox, folder)?;
                    let mut copied = HashSet::new();
                    for item in db.uid_map_range(folder, ..)? {
                        let (uid, _) = item?;
                        copied.insert(uid);
                    }
                    assert_eq!(state.marks.highest_copied_uid, CRITERION_UIDS);
                    Ok((pending.len(), copied.len()))
                })
                .expect("scan");
            assert_eq!((pending, copied), (1, CRITERION_UIDS as usize));
        })
    });
    group.finish();
}

criterion_group!(benches, bench_insert, bench_read);

fn main() {
    // `cargo test --benches` runs benches with `--bench` absent: keep that quick.
    let quick = !std::env::args().any(|a| a == "--bench");
    let n: u32 = std::env::var("UID_MAP_BENCH_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 10_000 } else { 1_000_000 });
    if n > 0 {
        measure("map only (uid_map_record)", n, false);
        measure("engine path (begin+fsync, commit)", n, true);
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
