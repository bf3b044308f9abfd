//! The uid map: for each folder, source UID → target UID, flags, size and content
//! fingerprint of every copied message.
//!
//! # Layout: runs, not one key per message
//!
//! One sled key per message costs about 150 bytes on disk and caps batched inserts near
//! 70,000/s (measured here; sled's per-key node overhead and log rewrites). The map is
//! therefore stored as *runs*: the key is `U folder:8 first-uid:4` (big-endian, so a
//! folder is one range scan in UID order) and the value packs up to [`RUN_CAPACITY`]
//! entries with delta-coded UIDs (about 22 bytes per message). A copy group of 100
//! messages above the watermark becomes one new run, written once; a run is rewritten
//! only when flags change, messages are removed, or a hole below its last UID is filled.
//!
//! Invariants: a run's key is the UID of its first entry; runs of a folder never overlap
//! (`[first, last]` ranges are disjoint); entries in a run are in strictly increasing UID
//! order. Mutations go out in one atomic write set together
//! with the folder's counters, so counters always equal the map.
//!
//! Memory: at most one run per lookup and per open iterator is decoded at a time; no
//! part of the map is cached beyond sled's bounded page cache.

use std::fmt;
use std::ops::{Bound, RangeBounds};

use crate::atomic_write::WriteSet;
use crate::database::Database;
use crate::error::{Result, StoreError};
use crate::key_layout::{FolderId, uid_run_first, uid_run_key, uid_run_prefix};
use crate::record_codec::{DecodeError, Reader, Writer};

/// Most entries one run holds. 128 × ~22 bytes keeps a run under 3 KB, cheap to rewrite.
pub const RUN_CAPACITY: usize = 128;

/// A content fingerprint of a message, computed by the engine (e.g. a truncated SHA-256
/// of the full message); the store keeps it and compares it, nothing more.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct Fingerprint(pub [u8; 16]);

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

/// The IMAP system flags a client can set (RFC 9051 §2.3.2; `\Recent` is session state).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SystemFlag {
    Seen,
    Answered,
    Flagged,
    Deleted,
    Draft,
}

impl SystemFlag {
    /// Every system flag, in bit order.
    pub const ALL: [SystemFlag; 5] = [
        SystemFlag::Seen,
        SystemFlag::Answered,
        SystemFlag::Flagged,
        SystemFlag::Deleted,
        SystemFlag::Draft,
    ];

    fn bit(self) -> u8 {
        match self {
            SystemFlag::Seen => 1,
            SystemFlag::Answered => 2,
            SystemFlag::Flagged => 4,
            SystemFlag::Deleted => 8,
            SystemFlag::Draft => 16,
        }
    }

    /// The flag as written on the wire, e.g. `\Seen`.
    pub fn imap_name(self) -> &'static str {
        match self {
            SystemFlag::Seen => "\\Seen",
            SystemFlag::Answered => "\\Answered",
            SystemFlag::Flagged => "\\Flagged",
            SystemFlag::Deleted => "\\Deleted",
            SystemFlag::Draft => "\\Draft",
        }
    }
}

const SYSTEM_BITS: u8 = 0x1f;
const HAS_KEYWORDS: u8 = 0x80;

/// The flags of a message: system flags as bits, keywords as sorted, de-duplicated text.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct MessageFlags {
    system: u8,
    keywords: Vec<String>,
}

impl MessageFlags {
    /// No flags.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets a system flag.
    pub fn insert(&mut self, flag: SystemFlag) {
        self.system |= flag.bit();
    }

    /// Clears a system flag.
    pub fn remove(&mut self, flag: SystemFlag) {
        self.system &= !flag.bit();
    }

    /// Whether a system flag is set.
    pub fn contains(&self, flag: SystemFlag) -> bool {
        self.system & flag.bit() != 0
    }

    /// The system flags set.
    pub fn system_flags(&self) -> impl Iterator<Item = SystemFlag> + '_ {
        SystemFlag::ALL.into_iter().filter(|f| self.contains(*f))
    }

    /// Adds a keyword (e.g. `$Forwarded`, `NonJunk`); keeps them sorted and unique so
    /// that equal flag sets compare equal.
    pub fn add_keyword(&mut self, keyword: impl Into<String>) {
        let keyword = keyword.into();
        if let Err(pos) = self.keywords.binary_search(&keyword) {
            self.keywords.insert(pos, keyword);
        }
    }

    /// Removes a keyword.
    pub fn remove_keyword(&mut self, keyword: &str) {
        self.keywords.retain(|k| k != keyword);
    }

    /// The keywords, sorted.
    pub fn keywords(&self) -> &[String] {
        &self.keywords
    }

    /// From flags as a server lists them (`\Seen`, `$Forwarded`, ...). System flags
    /// match case-insensitively (RFC 9051 §2.3.2); `\Recent` and other unknown
    /// backslash flags are session state, not message state, and are dropped.
    pub fn from_imap<'a>(flags: impl IntoIterator<Item = &'a str>) -> Self {
        let mut out = MessageFlags::new();
        for flag in flags {
            if let Some(sys) = SystemFlag::ALL
                .into_iter()
                .find(|f| f.imap_name().eq_ignore_ascii_case(flag))
            {
                out.insert(sys);
            } else if !flag.starts_with('\\') && !flag.is_empty() {
                out.add_keyword(flag);
            }
        }
        out
    }

    /// The flags as IMAP flag names: system flags first, then keywords.
    pub fn to_imap(&self) -> Vec<String> {
        self.system_flags()
            .map(|f| f.imap_name().to_string())
            .chain(self.keywords.iter().cloned())
            .collect()
    }

    fn encode(&self, w: &mut Writer) {
        if self.keywords.is_empty() {
            w.u8(self.system);
        } else {
            w.u8(self.system | HAS_KEYWORDS);
            w.varint(self.keywords.len() as u64);
            for k in &self.keywords {
                w.str(k);
            }
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let byte = r.u8()?;
        if byte & !(SYSTEM_BITS | HAS_KEYWORDS) != 0 {
            return Err(DecodeError(format!("unknown flag bits {byte:#04x}")));
        }
        let mut flags = MessageFlags {
            system: byte & SYSTEM_BITS,
            keywords: Vec::new(),
        };
        if byte & HAS_KEYWORDS != 0 {
            let n = r.varint()?;
            for _ in 0..n {
                flags.keywords.push(r.string()?);
            }
            if flags.keywords.windows(2).any(|w| w[0] >= w[1]) {
                return Err(DecodeError("keywords not sorted and unique".into()));
            }
        }
        Ok(flags)
    }
}

/// What the map knows about one copied message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidMapEntry {
    /// Its UID in the target folder (from APPENDUID or fingerprint matching).
    pub target_uid: u32,
    /// Its flags as last synchronised.
    pub flags: MessageFlags,
    /// Its content fingerprint.
    pub fingerprint: Fingerprint,
    /// Its size in bytes (RFC822.SIZE).
    pub size: u64,
}

type Entries = Vec<(u32, UidMapEntry)>;

fn encode_run(entries: &[(u32, UidMapEntry)]) -> Vec<u8> {
    let mut w = Writer::versioned(entries.len() * 24 + 2);
    w.varint(entries.len() as u64);
    let mut prev_uid = entries.first().map_or(0, |(u, _)| *u);
    let mut prev_target: i64 = 0;
    for (uid, e) in entries {
        w.varint(u64::from(uid - prev_uid));
        w.zigzag(i64::from(e.target_uid) - prev_target);
        w.varint(e.size);
        e.flags.encode(&mut w);
        w.raw(&e.fingerprint.0);
        prev_uid = *uid;
        prev_target = i64::from(e.target_uid);
    }
    w.finish()
}

fn decode_run(first_uid: u32, value: &[u8]) -> Result<Entries, DecodeError> {
    let mut r = Reader::versioned(value)?;
    let n = r.varint()?;
    if n == 0 {
        return Err(DecodeError("empty run".into()));
    }
    let mut entries =
        Vec::with_capacity(usize::try_from(n.min(RUN_CAPACITY as u64 * 2)).unwrap_or(0));
    let mut uid = first_uid;
    let mut target: i64 = 0;
    for i in 0..n {
        let delta = r.varint_u32()?;
        if i == 0 && delta != 0 || i > 0 && delta == 0 {
            return Err(DecodeError(
                "UIDs of a run are not strictly increasing from its key".into(),
            ));
        }
        uid = uid
            .checked_add(delta)
            .ok_or_else(|| DecodeError("UID overflows 32 bits".into()))?;
        target += r.zigzag()?;
        let target_uid = u32::try_from(target)
            .map_err(|_| DecodeError(format!("target UID {target} out of range")))?;
        let size = r.varint()?;
        let flags = MessageFlags::decode(&mut r)?;
        let mut fp = [0u8; 16];
        fp.copy_from_slice(r.raw(16)?);
        entries.push((
            uid,
            UidMapEntry {
                target_uid,
                flags,
                fingerprint: Fingerprint(fp),
                size,
            },
        ));
    }
    r.finish()?;
    Ok(entries)
}

/// What a staged change did to the folder's counters.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct MapDelta {
    pub(crate) messages: u64,
    pub(crate) bytes: u64,
}

impl Database {
    /// The entry of `source_uid`, if it was copied.
    pub fn uid_map_get(&self, folder: FolderId, source_uid: u32) -> Result<Option<UidMapEntry>> {
        let Some((_, run)) = self.run_at_or_before(folder, source_uid)? else {
            return Ok(None);
        };
        Ok(run
            .binary_search_by_key(&source_uid, |(u, _)| *u)
            .ok()
            .and_then(|i| run.into_iter().nth(i))
            .map(|(_, e)| e))
    }

    /// The entries of `folder` whose source UIDs lie in `uids`, in UID order. The scan
    /// reads one run at a time; runs changed while it is open may be seen in either state.
    pub fn uid_map_range(
        &self,
        folder: FolderId,
        uids: impl RangeBounds<u32>,
    ) -> Result<UidMapIter<'_>> {
        let lo = match uids.start_bound() {
            Bound::Included(&u) => Some(u),
            Bound::Excluded(&u) => u.checked_add(1),
            Bound::Unbounded => Some(0),
        };
        let hi = match uids.end_bound() {
            Bound::Included(&u) => Some(u),
            Bound::Excluded(&u) => u.checked_sub(1),
            Bound::Unbounded => Some(u32::MAX),
        };
        let (lo, hi) = match (lo, hi) {
            (Some(lo), Some(hi)) if lo <= hi => (lo, hi),
            _ => (1, 0),
        };
        // Start at the run that may cover `lo`, else at the first run after it.
        let start = match self.run_at_or_before(folder, lo)? {
            Some((first, _)) => first,
            None => lo,
        };
        let iter = self
            .inner
            .folder_sync
            .range(uid_run_key(folder, start)..=uid_run_key(folder, hi));
        Ok(UidMapIter {
            store: self,
            folder,
            runs: iter,
            current: Vec::new().into_iter(),
            lo,
            hi,
            done: lo > hi,
        })
    }

    /// The source UIDs and entries of `folder` that carry `fingerprint` (for reconciling
    /// a pending journal entry or rebuilding after a UIDVALIDITY change). Scans the
    /// folder's map: the store keeps no fingerprint index, which would double the bytes
    /// per message for an operation that runs only after crashes and resets.
    pub fn uid_map_find_fingerprint(
        &self,
        folder: FolderId,
        fingerprint: Fingerprint,
    ) -> Result<Vec<(u32, UidMapEntry)>> {
        let mut found = Vec::new();
        for item in self.uid_map_range(folder, ..)? {
            let (uid, e) = item?;
            if e.fingerprint == fingerprint {
                found.push((uid, e));
            }
        }
        Ok(found)
    }

    /// Records mappings found without a journal entry (a rebuild by fingerprint after a
    /// UIDVALIDITY change, or a group reconciled on resume). Fails, recording nothing, if
    /// any source UID is already mapped.
    pub fn uid_map_record(&self, folder: FolderId, entries: Vec<(u32, UidMapEntry)>) -> Result<()> {
        self.uid_map_record_indexed(folder, entries, false)
    }

    /// [`Database::uid_map_record`] for a label folder of a Gmail source judged by bytes
    /// when `label_fingerprints`: the entries' fingerprints enter its All Mail
    /// fingerprints in the same write.
    pub fn uid_map_record_indexed(
        &self,
        folder: FolderId,
        entries: Vec<(u32, UidMapEntry)>,
        label_fingerprints: bool,
    ) -> Result<()> {
        let mut state = self.load_folder_state(folder)?;
        let mut batch = WriteSet::default();
        if label_fingerprints {
            let added: Vec<_> = entries.iter().map(|(u, e)| (*u, e.fingerprint)).collect();
            self.stage_all_mail_changes(&mut batch, folder, &added, &[])?;
        }
        let delta = self.stage_map_inserts(folder, &state.source_name, entries, &mut batch)?;
        state.counters.messages += delta.messages;
        state.counters.bytes += delta.bytes;
        self.stage_folder_state(&mut batch, folder, &state);
        self.write_atomically(&self.inner.folder_sync, batch, "record uid-map entries")
    }

    /// Replaces the flags of mapped messages (flag sync). UIDs not in the map are
    /// ignored; returns how many entries changed.
    pub fn uid_map_set_flags(
        &self,
        folder: FolderId,
        updates: &[(u32, MessageFlags)],
    ) -> Result<usize> {
        let mut updates: Vec<&(u32, MessageFlags)> = updates.iter().collect();
        updates.sort_by_key(|(u, _)| *u);
        // Checks the folder still exists, so a stale id cannot write into nowhere.
        self.load_folder_state(folder)?;
        let mut batch = WriteSet::default();
        let mut changed = 0;
        let mut i = 0;
        while i < updates.len() {
            let uid = updates[i].0;
            let Some((first, mut run)) = self.run_at_or_before(folder, uid)? else {
                i += 1;
                continue;
            };
            let last = run.last().map_or(first, |(u, _)| *u);
            let end = i + updates[i..].partition_point(|(u, _)| *u <= last);
            let mut dirty = false;
            for (u, flags) in &updates[i..end] {
                if let Ok(pos) = run.binary_search_by_key(u, |(x, _)| *x)
                    && run[pos].1.flags != *flags
                {
                    run[pos].1.flags = flags.clone();
                    dirty = true;
                    changed += 1;
                }
            }
            if dirty {
                batch.insert(&uid_run_key(folder, first), encode_run(&run));
            }
            i = end.max(i + 1);
        }
        self.write_atomically(
            &self.inner.folder_sync,
            batch,
            "update flags in the uid map",
        )?;
        Ok(changed)
    }

    /// Removes mapped messages (deletion mirroring) and returns the entries removed.
    pub fn uid_map_remove(
        &self,
        folder: FolderId,
        source_uids: &[u32],
    ) -> Result<Vec<(u32, UidMapEntry)>> {
        let mut uids = source_uids.to_vec();
        uids.sort_unstable();
        uids.dedup();
        let mut state = self.load_folder_state(folder)?;
        let mut batch = WriteSet::default();
        let mut removed = Vec::new();
        let mut i = 0;
        while i < uids.len() {
            let Some((first, mut run)) = self.run_at_or_before(folder, uids[i])? else {
                i += 1;
                continue;
            };
            let last = run.last().map_or(first, |(u, _)| *u);
            let end = i + uids[i..].partition_point(|u| *u <= last);
            let before = removed.len();
            for u in &uids[i..end] {
                if let Ok(pos) = run.binary_search_by_key(u, |(x, _)| *x) {
                    removed.push(run.remove(pos));
                }
            }
            if removed.len() > before {
                batch.remove(&uid_run_key(folder, first));
                if let Some((new_first, _)) = run.first() {
                    batch.insert(&uid_run_key(folder, *new_first), encode_run(&run));
                }
            }
            i = end.max(i + 1);
        }
        let bytes: u64 = removed.iter().map(|(_, e)| e.size).sum();
        // A label folder's All Mail fingerprints stay a subset of its map.
        let removed_uids: Vec<u32> = removed.iter().map(|(u, _)| *u).collect();
        self.stage_all_mail_changes(&mut batch, folder, &[], &removed_uids)?;
        state.counters.messages = state.counters.messages.saturating_sub(removed.len() as u64);
        state.counters.bytes = state.counters.bytes.saturating_sub(bytes);
        self.stage_folder_state(&mut batch, folder, &state);
        self.write_atomically(&self.inner.folder_sync, batch, "remove uid-map entries")?;
        Ok(removed)
    }

    /// Stages new entries into `batch`; the caller holds the folder lock and applies the
    /// batch. Fails if a UID is zero, repeated, or already mapped.
    pub(crate) fn stage_map_inserts(
        &self,
        folder: FolderId,
        folder_label: &str,
        mut entries: Entries,
        batch: &mut WriteSet,
    ) -> Result<MapDelta> {
        entries.sort_by_key(|(u, _)| *u);
        for w in entries.windows(2) {
            if w[0].0 == w[1].0 {
                return Err(StoreError::InvalidRequest {
                    folder: folder_label.to_string(),
                    detail: format!("source UID {} appears twice in one request", w[0].0),
                });
            }
        }
        if entries.first().is_some_and(|(u, _)| *u == 0) {
            return Err(StoreError::InvalidRequest {
                folder: folder_label.to_string(),
                detail: "source UID 0 does not exist in IMAP".into(),
            });
        }
        let delta = MapDelta {
            messages: entries.len() as u64,
            bytes: entries.iter().map(|(_, e)| e.size).sum(),
        };
        let mut rest = entries.into_iter().peekable();
        while let Some(uid) = rest.peek().map(|(u, _)| *u) {
            let prev = self.run_at_or_before(folder, uid)?;
            let next_first = self.next_run_first_after(folder, uid)?;
            let mut chunk: Entries = Vec::new();
            while let Some((u, _)) = rest.peek() {
                if next_first.is_some_and(|nf| *u >= nf) {
                    break;
                }
                if let Some(item) = rest.next() {
                    chunk.push(item);
                }
            }
            let gap = match prev {
                None => chunk,
                Some((first, mut run)) => {
                    let last = run.last().map_or(first, |(u, _)| *u);
                    let split = chunk.partition_point(|(u, _)| *u <= last);
                    let mut gap = chunk.split_off(split);
                    let touched = !chunk.is_empty();
                    for (u, e) in chunk {
                        match run.binary_search_by_key(&u, |(x, _)| *x) {
                            Ok(pos) => {
                                return Err(StoreError::AlreadyMapped {
                                    folder: folder_label.to_string(),
                                    uid: u,
                                    existing: run[pos].1.target_uid,
                                });
                            }
                            Err(pos) => run.insert(pos, (u, e)),
                        }
                    }
                    // Extend the previous run only if the whole gap fits: copy groups of
                    // ~100 then each become one run written once, while single-message
                    // commits still pack into full runs.
                    let extend = !gap.is_empty() && run.len() + gap.len() <= RUN_CAPACITY;
                    if extend {
                        run.append(&mut gap);
                    }
                    if touched || extend {
                        stage_runs(batch, folder, run);
                    }
                    gap
                }
            };
            if !gap.is_empty() {
                stage_runs(batch, folder, gap);
            }
        }
        Ok(delta)
    }

    /// The run whose first UID is the greatest at or below `uid`.
    fn run_at_or_before(&self, folder: FolderId, uid: u32) -> Result<Option<(u32, Entries)>> {
        let found = self
            .inner
            .folder_sync
            .range(uid_run_key(folder, 0)..=uid_run_key(folder, uid))
            .next_back();
        match found {
            None => Ok(None),
            Some(item) => {
                let (k, v) = item.map_err(self.db_err("read the uid map"))?;
                let first = uid_run_first(folder, &k).ok_or_else(|| {
                    self.corrupt(
                        format!("uid map of {folder}"),
                        DecodeError("run key of the wrong shape".into()),
                    )
                })?;
                let run = decode_run(first, &v)
                    .map_err(|e| self.corrupt(format!("uid map of {folder} at UID {first}"), e))?;
                Ok(Some((first, run)))
            }
        }
    }

    fn next_run_first_after(&self, folder: FolderId, uid: u32) -> Result<Option<u32>> {
        let Some(from) = uid.checked_add(1) else {
            return Ok(None);
        };
        let found = self
            .inner
            .folder_sync
            .range(uid_run_key(folder, from)..=uid_run_key(folder, u32::MAX))
            .keys()
            .next();
        match found {
            None => Ok(None),
            Some(k) => {
                let k = k.map_err(self.db_err("read the uid map"))?;
                Ok(uid_run_first(folder, &k))
            }
        }
    }

    /// Deletes every run of `folder` (used when a folder is dropped).
    pub(crate) fn erase_uid_map(&self, folder: FolderId) -> Result<usize> {
        self.delete_prefix(&self.inner.folder_sync, &uid_run_prefix(folder))
    }
}

/// Writes `entries` (sorted, non-empty) as runs of at most [`RUN_CAPACITY`], each keyed
/// by its first UID.
fn stage_runs(batch: &mut WriteSet, folder: FolderId, entries: Entries) {
    for piece in entries.chunks(RUN_CAPACITY) {
        if let Some((first, _)) = piece.first() {
            batch.insert(&uid_run_key(folder, *first), encode_run(piece));
        }
    }
}

/// Entries of a folder's map in UID order; see [`Database::uid_map_range`]. It borrows
/// the database, so it lives inside one storage job.
pub struct UidMapIter<'a> {
    store: &'a Database,
    folder: FolderId,
    runs: sled::Iter,
    current: std::vec::IntoIter<(u32, UidMapEntry)>,
    lo: u32,
    hi: u32,
    done: bool,
}

impl fmt::Debug for UidMapIter<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UidMapIter")
            .field("folder", &self.folder)
            .field("lo", &self.lo)
            .field("hi", &self.hi)
            .finish_non_exhaustive()
    }
}

impl Iterator for UidMapIter<'_> {
    type Item = Result<(u32, UidMapEntry)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if self.done {
                return None;
            }
            for (uid, e) in self.current.by_ref() {
                if uid > self.hi {
                    self.done = true;
                    return None;
                }
                if uid >= self.lo {
                    return Some(Ok((uid, e)));
                }
            }
            let (k, v) = match self.runs.next()? {
                Ok(kv) => kv,
                Err(e) => {
                    self.done = true;
                    return Some(Err(self.store.db_err("scan the uid map")(e)));
                }
            };
            let decoded = uid_run_first(self.folder, &k)
                .ok_or_else(|| DecodeError("run key of the wrong shape".into()))
                .and_then(|first| decode_run(first, &v));
            match decoded {
                Ok(entries) => self.current = entries.into_iter(),
                Err(e) => {
                    self.done = true;
                    return Some(Err(self
                        .store
                        .corrupt(format!("uid map of {}", self.folder), e)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entry(target: u32, size: u64, seen: bool, kw: &[&str]) -> UidMapEntry {
        let mut flags = MessageFlags::new();
        if seen {
            flags.insert(SystemFlag::Seen);
        }
        for k in kw {
            flags.add_keyword(*k);
        }
        UidMapEntry {
            target_uid: target,
            flags,
            fingerprint: Fingerprint([target as u8; 16]),
            size,
        }
    }

    #[test]
    fn run_encoding_round_trips_and_is_compact() {
        let entries: Entries = (1..=100u32)
            .map(|u| (u + 10, entry(u + 500, 40_000 + u as u64, u % 2 == 0, &[])))
            .collect();
        let bytes = encode_run(&entries);
        assert!(bytes.len() <= 100 * 23 + 4, "{} bytes", bytes.len());
        assert_eq!(decode_run(11, &bytes), Ok(entries));
    }

    #[test]
    fn run_encoding_handles_keywords_and_backwards_targets() {
        let entries: Entries = vec![
            (5, entry(900, 1, true, &["$Forwarded", "NonJunk"])),
            (9, entry(3, u64::MAX, false, &[])),
            (u32::MAX, entry(u32::MAX, 0, false, &["x"])),
        ];
        let bytes = encode_run(&entries);
        assert_eq!(decode_run(5, &bytes), Ok(entries));
        let shifted = decode_run(4, &bytes);
        assert!(shifted.is_ok(), "key offset shifts all UIDs: {shifted:?}");
        assert!(decode_run(6, &bytes).is_err(), "UID overflow is caught");
    }

    #[test]
    fn flags_are_canonical() {
        let mut a = MessageFlags::new();
        a.add_keyword("b");
        a.add_keyword("a");
        a.add_keyword("b");
        a.insert(SystemFlag::Draft);
        let mut b = MessageFlags::new();
        b.insert(SystemFlag::Draft);
        b.add_keyword("a");
        b.add_keyword("b");
        assert_eq!(a, b);
        assert_eq!(a.keywords(), ["a", "b"]);
        assert_eq!(
            a.system_flags().collect::<Vec<_>>(),
            vec![SystemFlag::Draft]
        );
        a.remove(SystemFlag::Draft);
        a.remove_keyword("a");
        assert!(!a.contains(SystemFlag::Draft));
        assert_eq!(a.keywords(), ["b"]);
    }

    #[test]
    fn flags_from_and_to_imap() {
        let f = MessageFlags::from_imap([
            "\\seen",
            "\\Recent",
            "$Forwarded",
            "\\Draft",
            "NonJunk",
            "\\X-Unknown",
        ]);
        assert!(f.contains(SystemFlag::Seen) && f.contains(SystemFlag::Draft));
        assert_eq!(f.keywords(), ["$Forwarded", "NonJunk"]);
        assert_eq!(f.to_imap(), ["\\Seen", "\\Draft", "$Forwarded", "NonJunk"]);
        assert_eq!(
            MessageFlags::from_imap(f.to_imap().iter().map(String::as_str)),
            f
        );
    }

    proptest! {
        #[test]
        fn corrupt_runs_never_panic(data in proptest::collection::vec(any::<u8>(), 0..200), first in any::<u32>()) {
            let _ = decode_run(first, &data);
        }
    }
}
