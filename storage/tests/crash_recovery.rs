//! Crash test: a writer process commits copy groups in a loop and is killed with SIGKILL
//! at random instants; after every kill the store is reopened and checked.
//!
//! This binary is both sides (`harness = false`): run normally it is the checker; run
//! with `IMAPMIRROR_CRASH_WRITER=DIR` it is the writer. The writer notes each group in
//! `DIR/groups.log` right after `begin` returns (the entry is then flushed: the writer
//! begins with [`Database::begin`] in a storage job of its own, which flushes before it
//! returns, and writes the line only once that job has answered), so the checker knows
//! every group whose journal entry reached the disk. It checks:
//! - the store opens;
//! - every flushed group is either still pending or fully applied (all its UIDs mapped
//!   with the right target UIDs), never partly;
//! - no uid-map entry exists outside a fully applied group, and no UID is both pending
//!   and mapped;
//! - the folder counters equal the map (count and bytes) and the watermark is exact.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use imapmirror_storage::*;

const WRITER_ENV: &str = "IMAPMIRROR_CRASH_WRITER";
const PROBE_ENV: &str = "IMAPMIRROR_LOCK_PROBE";
const FOLDERS: [&str; 2] = ["INBOX", "Archive/2024"];
const MIN_KILLS: u32 = 50;
/// A folder is reset (as after a UIDVALIDITY change) at this many UIDs, which also keeps
/// each check quick.
const RESET_AT: u32 = 4000;
const TIME_BUDGET: Duration = Duration::from_secs(45);

fn main() -> ExitCode {
    if let Some(dir) = std::env::var_os(PROBE_ENV) {
        // Second-process side of the lock check: report what opening said.
        return match Store::open(Path::new(&dir)) {
            Ok(_) => {
                println!("opened");
                ExitCode::SUCCESS
            }
            Err(e) => {
                println!("{e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Some(dir) = std::env::var_os(WRITER_ENV) {
        return match writer(Path::new(&dir)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("crash writer: {e}");
                ExitCode::FAILURE
            }
        };
    }
    if let Err(e) = second_process_is_refused() {
        eprintln!("crash_recovery: FAILED: {e}");
        return ExitCode::FAILURE;
    }
    match checker() {
        Ok(summary) => {
            println!("crash_recovery: ok ({summary})");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("crash_recovery: FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

/// xorshift64*: a tiny deterministic PRNG (no rand crate).
struct Prng(u64);

impl Prng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

fn target_uid(uid: u32) -> u32 {
    uid + 1_000_000
}

fn size_of(uid: u32) -> u64 {
    100 + u64::from(uid % 1000)
}

fn fingerprint(uid: u32) -> Fingerprint {
    let mut b = [0xA5u8; 16];
    b[..4].copy_from_slice(&uid.to_be_bytes());
    Fingerprint(b)
}

fn state_dir(root: &Path) -> PathBuf {
    root.join("state")
}

/// Opens the store, waiting briefly if the killed writer's lock is still being released.
fn open(root: &Path) -> Result<Store, String> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Store::open(&state_dir(root)) {
            Ok(s) => return Ok(s),
            Err(StoreError::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(format!("the store did not open: {e}")),
        }
    }
}

fn setup(store: &Database) -> Result<MailboxId, StoreError> {
    if let Ok(batch) = store.batch("crash")
        && let Some(m) = store.mailboxes(batch.id)?.into_iter().next()
    {
        return Ok(m.id);
    }
    for name in ["src", "dst"] {
        if store.endpoint(name)?.is_none() {
            store.add_endpoint(
                &EndpointSettings {
                    max_concurrent_migrations: 1,
                    max_concurrent_syncs: 1,
                    ..EndpointSettings::new(name, "127.0.0.1", 143, Security::None)
                },
                None,
            )?;
        }
    }
    let batch = store.create_batch(
        &BatchSettings {
            sync_interval_secs: 60,
            ..BatchSettings::new("crash", "src", "dst")
        },
        &[NewMailbox {
            row: MigrationRow {
                email_address: "crash@example.test".into(),
                user_name: "crash".into(),
                user_root: None,
                target_user_name: None,
            },
            password: Secret::new("pw"),
            target_password: None,
            refresh_token: None,
        }],
    )?;
    store.flush()?;
    let m = store.mailboxes(batch.id)?;
    m.into_iter()
        .next()
        .map(|m| m.id)
        .ok_or_else(|| StoreError::NotFound {
            kind: "mailbox",
            name: "crash@example.test".into(),
            dir: store.path().to_path_buf(),
        })
}

fn outcome(uids: impl Iterator<Item = u32>, last: u32) -> GroupOutcome {
    GroupOutcome {
        copied: uids
            .map(|u| {
                let mut flags = MessageFlags::new();
                if u % 2 == 0 {
                    flags.insert(SystemFlag::Seen);
                }
                CopiedMessage {
                    source_uid: u,
                    target_uid: target_uid(u),
                    flags,
                }
            })
            .collect(),
        skipped: vec![],
        highest_copied_uid: Some(last),
        target_uidnext: Some(target_uid(last) + 1),
        all_mail_index: Default::default(),
    }
}

/// The writer: reconciles what a previous kill left pending (as if every message were
/// found on the target by fingerprint), then begins and commits groups until killed.
/// Every store call is a job on the storage thread; `begin` is a job of its own, so its
/// log line is written only once the entry is on disk.
fn writer(root: &Path) -> Result<(), String> {
    let store = open(root)?;
    let mailbox = store.call(setup).map_err(|e| e.to_string())?;
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join("groups.log"))
        .map_err(|e| e.to_string())?;
    let seed = u64::from(std::process::id()) | 1;
    let mut rng = Prng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let pending = store
        .call(move |db| db.pending(mailbox))
        .map_err(|e| e.to_string())?;
    for entry in pending {
        let uids: Vec<u32> = entry.group.messages.iter().map(|m| m.source_uid).collect();
        let first = uids.iter().copied().min().unwrap_or(0);
        let last = uids.iter().copied().max().unwrap_or(0);
        // A kill between `begin` and its log line leaves a flushed group the log does
        // not know; log it now, before it is applied.
        let folder = entry.id.folder().get();
        let name = &entry.group.target_folder;
        log.write_all(format!("{name} {folder} {} {first} {last}\n", entry.id).as_bytes())
            .map_err(|e| e.to_string())?;
        let id = entry.id;
        store
            .call(move |db| db.commit(id, &outcome(uids.into_iter(), last)))
            .map_err(|e| e.to_string())?;
    }
    let mut folders: Vec<FolderId> = store
        .call(move |db| {
            FOLDERS
                .iter()
                .map(|n| db.folder(mailbox, n))
                .collect::<Result<_, _>>()
        })
        .map_err(|e| e.to_string())?;
    for round in 0u64.. {
        let fi = (round % 2) as usize;
        let current = folders[fi];
        let (folder, state) = store
            .call(move |db| {
                let mut folder = current;
                let mut state = db.folder_state(folder)?;
                if state.marks.highest_copied_uid >= RESET_AT {
                    // As after a UIDVALIDITY change: a new id, an empty map, the old one
                    // erased.
                    folder = db.reset_folder(folder, FolderMarks::default())?;
                    state = db.folder_state(folder)?;
                }
                Ok((folder, state))
            })
            .map_err(|e| e.to_string())?;
        folders[fi] = folder;
        let first = state.marks.highest_copied_uid + 1;
        // Sizes around the run capacity exercise both new runs and extended ones.
        let len = 1 + rng.next(150) as u32;
        let last = first + len - 1;
        let group = CopyGroup {
            target_folder: FOLDERS[fi].into(),
            target_uidvalidity: 7,
            target_uidnext: target_uid(first),
            messages: (first..=last)
                .map(|u| PendingMessage {
                    source_uid: u,
                    fingerprint: fingerprint(u),
                    size: size_of(u),
                })
                .collect(),
        };
        // `Database::begin` flushes before it returns: once this job has answered, the
        // entry is on disk.
        let id = store
            .call(move |db| db.begin(folder, &group))
            .map_err(|e| e.to_string())?;
        // One write(2) per line: a SIGKILL cannot tear it.
        let line = format!("{} {} {id} {first} {last}\n", FOLDERS[fi], folder.get());
        log.write_all(line.as_bytes()).map_err(|e| e.to_string())?;
        store
            .call(move |db| db.commit(id, &outcome(first..=last, last)))
            .map_err(|e| e.to_string())?;
        if round % 5 == 4 && first > 40 {
            // Flag sync rewrites existing runs; a torn rewrite would lose entries.
            let from = 1 + rng.next(u64::from(first - 40)) as u32;
            let mut flags = MessageFlags::new();
            flags.add_keyword(format!("k{round}"));
            let updates: Vec<(u32, MessageFlags)> =
                (from..from + 30).map(|u| (u, flags.clone())).collect();
            store
                .call(move |db| db.uid_map_set_flags(folder, &updates))
                .map_err(|e| e.to_string())?;
        }
    }
    Ok(())
}

struct LoggedGroup {
    folder: String,
    folder_id: u64,
    id: String,
    first: u32,
    last: u32,
}

fn read_log(root: &Path) -> Vec<LoggedGroup> {
    let text = std::fs::read_to_string(root.join("groups.log")).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let mut parts = line.split(' ');
            let folder = parts.next()?.to_string();
            let folder_id = parts.next()?.parse().ok()?;
            let id = parts.next()?.to_string();
            let first = parts.next()?.parse().ok()?;
            let last = parts.next()?.parse().ok()?;
            parts.next().is_none().then_some(LoggedGroup {
                folder,
                folder_id,
                id,
                first,
                last,
            })
        })
        .collect()
}

/// Checks the invariants; returns how many UIDs are mapped in all.
fn verify(root: &Path) -> Result<u64, String> {
    let store = open(root)?;
    let root = root.to_path_buf();
    store
        .call(move |db| Ok(verify_in(db, &root)))
        .map_err(|e| e.to_string())?
    // The store is dropped here, releasing the directory for the next writer.
}

/// [`verify`]'s checks, in one storage job.
fn verify_in(store: &Database, root: &Path) -> Result<u64, String> {
    let Ok(batch) = store.batch("crash") else {
        // Killed before the batch was created: nothing to check yet.
        return Ok(0);
    };
    let mailbox = store
        .mailboxes(batch.id)
        .map_err(|e| e.to_string())?
        .first()
        .map(|m| m.id)
        .ok_or("the batch lost its mailbox")?;
    let pending = store.pending(mailbox).map_err(|e| e.to_string())?;
    let pending_ids: HashSet<String> = pending.iter().map(|p| p.id.to_string()).collect();
    let log = read_log(root);
    let mut total = 0;
    for name in FOLDERS {
        let Some(folder) = store
            .find_folder(mailbox, name)
            .map_err(|e| e.to_string())?
        else {
            continue;
        };
        let mut map: BTreeMap<u32, UidMapEntry> = BTreeMap::new();
        for item in store.uid_map_range(folder, ..).map_err(|e| e.to_string())? {
            let (uid, e) = item.map_err(|e| e.to_string())?;
            map.insert(uid, e);
        }
        // A reset refuses while entries are pending, so none may survive on an old id.
        let current = folder.get();
        if let Some(p) = pending
            .iter()
            .find(|p| p.group.target_folder == name && p.id.folder().get() != current)
        {
            return Err(format!(
                "{name}: {} is pending on a folder id that was reset",
                p.id
            ));
        }
        let mut covered: HashSet<u32> = HashSet::new();
        for g in log
            .iter()
            .filter(|g| g.folder == name && g.folder_id == folder.get())
        {
            let mapped = (g.first..=g.last).filter(|u| map.contains_key(u)).count();
            let len = (g.last - g.first + 1) as usize;
            let is_pending = pending_ids.contains(&g.id);
            if is_pending && mapped != 0 {
                return Err(format!(
                    "{name}: group {} is pending but {mapped} of its UIDs are mapped",
                    g.id
                ));
            }
            if !is_pending {
                if mapped != len {
                    return Err(format!(
                        "{name}: group {} ({}..={}) is neither pending nor fully applied: {mapped} of {len} mapped",
                        g.id, g.first, g.last
                    ));
                }
                for u in g.first..=g.last {
                    let e = &map[&u];
                    if e.target_uid != target_uid(u)
                        || e.fingerprint != fingerprint(u)
                        || e.size != size_of(u)
                    {
                        return Err(format!("{name}: UID {u} maps to the wrong entry {e:?}"));
                    }
                }
                covered.extend(g.first..=g.last);
            }
        }
        if let Some(stray) = map.keys().find(|u| !covered.contains(u)) {
            return Err(format!(
                "{name}: UID {stray} is mapped outside any applied group"
            ));
        }
        let state = store.folder_state(folder).map_err(|e| e.to_string())?;
        let bytes: u64 = map.values().map(|e| e.size).sum();
        if state.counters.messages != map.len() as u64 || state.counters.bytes != bytes {
            return Err(format!(
                "{name}: counters say {} messages / {} bytes, the map holds {} / {bytes}",
                state.counters.messages,
                state.counters.bytes,
                map.len()
            ));
        }
        let watermark = state.marks.highest_copied_uid;
        if map.keys().next_back().copied().unwrap_or(0) != watermark
            || map.len() as u32 != watermark
        {
            return Err(format!(
                "{name}: watermark {watermark} disagrees with the map of {} UIDs",
                map.len()
            ));
        }
        for p in pending.iter().filter(|p| p.id.folder() == folder) {
            if let Some(m) = p
                .group
                .messages
                .iter()
                .find(|m| map.contains_key(&m.source_uid))
            {
                return Err(format!(
                    "{name}: UID {} is both pending and mapped",
                    m.source_uid
                ));
            }
        }
        total += map.len() as u64;
    }
    Ok(total)
}

/// While this process holds a state directory, another process opening it gets one
/// sentence naming this pid and the directory.
fn second_process_is_refused() -> Result<(), String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let probe = || {
        Command::new(&exe)
            .env(PROBE_ENV, tmp.path())
            .stdin(Stdio::null())
            .stderr(Stdio::null())
            .output()
            .map_err(|e| format!("could not start the probe: {e}"))
    };
    let store = Store::open(tmp.path()).map_err(|e| e.to_string())?;
    let out = probe()?;
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let pid = std::process::id().to_string();
    let dir = tmp.path().display().to_string();
    if out.status.success()
        || !said.contains(&pid)
        || !said.contains(&dir)
        || said.lines().count() != 1
    {
        return Err(format!(
            "a second process was not refused with our pid {pid} and {dir}: {said:?}"
        ));
    }
    drop(store);
    let out = probe()?;
    if !out.status.success() {
        return Err(format!(
            "the probe could not open a released directory: {}",
            String::from_utf8_lossy(&out.stdout)
        ));
    }
    Ok(())
}

fn checker() -> Result<String, String> {
    let tmp = tempfile::tempdir().map_err(|e| e.to_string())?;
    let root = tmp.path();
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut rng = Prng(0x5DEE_CE66_D1CE_4E5B);
    let started = Instant::now();
    let mut kills = 0u32;
    // The most UIDs seen mapped after any kill. The last check alone says little: a
    // folder is reset at RESET_AT UIDs, so a kill just after a reset finds few mapped.
    let mut peak_mapped = 0;
    while kills < MIN_KILLS || (started.elapsed() < TIME_BUDGET / 3 && kills < 200) {
        if started.elapsed() > TIME_BUDGET {
            return Err(format!("only {kills} kills within {TIME_BUDGET:?}"));
        }
        let mut child = Command::new(&exe)
            .env(WRITER_ENV, root)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("could not start the writer: {e}"))?;
        // The first run also creates the batch; later ones recover the log first.
        let delay = if kills == 0 { 300 } else { 20 + rng.next(180) };
        std::thread::sleep(Duration::from_millis(delay));
        if let Ok(Some(status)) = child.try_wait() {
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                let _ = std::io::Read::read_to_string(&mut e, &mut err);
            }
            return Err(format!("the writer exited by itself ({status}): {err}"));
        }
        child
            .kill()
            .map_err(|e| format!("could not kill the writer: {e}"))?;
        child.wait().map_err(|e| e.to_string())?;
        kills += 1;
        let mapped = verify(root).map_err(|e| format!("after kill {kills}: {e}"))?;
        peak_mapped = peak_mapped.max(mapped);
    }
    let groups = read_log(root).len();
    if groups < 50 || peak_mapped < 1000 {
        return Err(format!(
            "the writer made too little progress to test anything: {groups} groups, at most {peak_mapped} UIDs mapped at once"
        ));
    }
    Ok(format!(
        "{kills} kills in {:.1}s, {groups} groups begun, at most {peak_mapped} UIDs mapped at once",
        started.elapsed().as_secs_f64()
    ))
}
