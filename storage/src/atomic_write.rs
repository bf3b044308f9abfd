//! [`WriteSet`]: several keys of one tree written all or nothing, without sled's
//! `apply_batch`.
//!
//! # Why not `sled::Batch`
//!
//! sled 0.34 makes a batch atomic by pinning its log: `apply_batch` seals the current log
//! buffer before and after it reserves the batch's manifest, and every sealed buffer is
//! written at once and ends in a `sync_file_range` that waits for the disk. So every
//! batch, however small, costs two or three page writebacks on the storage thread, and
//! a pass commits one batch per journal group: 29 MB written for a 3 MB state in the
//! 100-mailbox benchmark, 818 MB for 10 MB with 1,000 small mailboxes (BENCHMARKS.md).
//! Plain inserts and removes only append to the in-memory log buffer, which goes out
//! whole at the next flush.
//!
//! # How atomicity is kept
//!
//! sled recovers its log as a prefix: a write is recovered only if every write before it
//! is (its segment docs: a later segment is not recovered when its predecessor was
//! lost). All writes run on the storage thread, one job at a time, so a write set is:
//!
//! 1. its whole content as one value under [`REDO_KEY`] in the meta tree (one key: atomic);
//! 2. each insert and remove, one by one;
//! 3. the removal of [`REDO_KEY`].
//!
//! A crash recovers a prefix of that. Before 1 ends: nothing of the set. Between 1 and 3:
//! the redo record and some of the writes, and [`Database::open`] applies the record again
//! before anything reads the tree (every write is "set this key to this value" or
//! "remove this key", so repeating one is harmless). After 3: all of it. One record at a
//! time is enough because write sets never overlap: the storage thread runs one job at a
//! time, and a job's write set ends before the job does.

use sled::IVec;

use crate::database::Database;
use crate::error::{Result, StoreError};
use crate::record_codec::{Reader, Writer};

/// The meta-tree key of the write set being applied, if any.
pub(crate) const REDO_KEY: &[u8] = b"redo";

/// Writes to one tree that land all together or not at all
/// ([`Database::write_atomically`]).
#[derive(Debug, Default)]
pub(crate) struct WriteSet {
    ops: Vec<(IVec, Option<IVec>)>,
}

impl WriteSet {
    pub(crate) fn insert(&mut self, key: impl Into<IVec>, value: impl Into<IVec>) {
        self.ops.push((key.into(), Some(value.into())));
    }

    pub(crate) fn remove(&mut self, key: impl Into<IVec>) {
        self.ops.push((key.into(), None));
    }

    pub(crate) fn len(&self) -> usize {
        self.ops.len()
    }

    fn encode(&self, tree: &[u8]) -> Vec<u8> {
        let payload: usize = self
            .ops
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, |v| v.len()) + 12)
            .sum();
        let mut w = Writer::versioned(tree.len() + payload + 16);
        w.bytes(tree);
        w.varint(self.ops.len() as u64);
        for (key, value) in &self.ops {
            w.bytes(key);
            match value {
                Some(v) => {
                    w.u8(1);
                    w.bytes(v);
                }
                None => w.u8(0),
            }
        }
        w.finish()
    }

    fn decode(value: &[u8]) -> std::result::Result<(Vec<u8>, WriteSet), String> {
        let err = |e: crate::record_codec::DecodeError| e.0;
        let mut r = Reader::versioned(value).map_err(err)?;
        let tree = r.bytes().map_err(err)?.to_vec();
        let n = r.varint().map_err(err)?;
        let mut set = WriteSet::default();
        for _ in 0..n {
            let key = r.bytes().map_err(err)?;
            match r.u8().map_err(err)? {
                0 => set.remove(key),
                1 => set.insert(key, r.bytes().map_err(err)?),
                other => return Err(format!("unknown write kind {other}")),
            }
        }
        r.finish().map_err(err)?;
        Ok((tree, set))
    }
}

impl Database {
    /// Applies `set` to `tree` all or nothing across a crash (see the module docs), with
    /// no write to disk of its own: it is durable at the next flush. `action` names the
    /// write in errors.
    pub(crate) fn write_atomically(
        &self,
        tree: &sled::Tree,
        set: WriteSet,
        action: &'static str,
    ) -> Result<()> {
        if set.len() > 1 {
            self.inner
                .meta
                .insert(REDO_KEY, set.encode(&tree.name()))
                .map_err(self.db_err(action))?;
        }
        self.apply_ops(tree, &set, action)?;
        if set.len() > 1 {
            self.inner
                .meta
                .remove(REDO_KEY)
                .map_err(self.db_err(action))?;
        }
        Ok(())
    }

    /// Applies again the write set a crash interrupted, if any. Runs at open, before
    /// anything reads the database.
    pub(crate) fn finish_interrupted_write(&self) -> Result<()> {
        let action = "finish a write interrupted by a crash";
        let Some(record) = self.inner.meta.get(REDO_KEY).map_err(self.db_err(action))? else {
            return Ok(());
        };
        let (tree_name, set) = WriteSet::decode(&record).map_err(|detail| StoreError::Corrupt {
            dir: self.path().to_path_buf(),
            what: "the record of an interrupted write".into(),
            detail,
        })?;
        let tree = self
            .inner
            .db
            .open_tree(tree_name)
            .map_err(self.db_err(action))?;
        tracing::info!(
            writes = set.len(),
            tree = %String::from_utf8_lossy(&tree.name()),
            "finishing a state write that a crash interrupted"
        );
        self.apply_ops(&tree, &set, action)?;
        self.inner
            .meta
            .remove(REDO_KEY)
            .map_err(self.db_err(action))?;
        self.flush_log(action)?;
        Ok(())
    }

    /// Deletes keys of `tree` that start with `prefix`, in atomic write sets of bounded size
    /// so memory does not grow with a large uid map. Returns how many were deleted.
    pub(crate) fn delete_prefix(&self, tree: &sled::Tree, prefix: &[u8]) -> Result<usize> {
        const CHUNK: usize = 1024;
        let mut total = 0;
        loop {
            let mut batch = WriteSet::default();
            let mut n = 0;
            for item in tree.scan_prefix(prefix).keys().take(CHUNK) {
                batch.remove(item.map_err(self.db_err("scan records to delete"))?);
                n += 1;
            }
            if n == 0 {
                return Ok(total);
            }
            self.write_atomically(tree, batch, "delete records")?;
            total += n;
        }
    }

    fn apply_ops(&self, tree: &sled::Tree, set: &WriteSet, action: &'static str) -> Result<()> {
        for (key, value) in &set.ops {
            match value {
                Some(v) => tree.insert(key, v.clone()),
                None => tree.remove(key),
            }
            .map_err(self.db_err(action))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::database::StoreOptions;

    fn open(dir: &std::path::Path) -> Database {
        Database::open(dir, &StoreOptions::default()).expect("open")
    }

    #[test]
    fn a_write_set_lands_whole_and_leaves_no_record() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let db = open(tmp.path());
        let tree = db.inner.batches.clone();
        tree.insert(b"gone", &b"x"[..]).expect("insert");
        let mut set = WriteSet::default();
        set.insert(&b"a"[..], &b"1"[..]);
        set.insert(&b"b"[..], &b"2"[..]);
        set.remove(&b"gone"[..]);
        db.write_atomically(&tree, set, "test").expect("write");
        assert_eq!(tree.get(b"a").expect("get").as_deref(), Some(&b"1"[..]));
        assert_eq!(tree.get(b"b").expect("get").as_deref(), Some(&b"2"[..]));
        assert!(tree.get(b"gone").expect("get").is_none());
        assert!(db.inner.meta.get(REDO_KEY).expect("get").is_none());
    }

    /// What a crash between the redo record and the end of the writes leaves behind is
    /// finished by the next open, before anything reads it.
    #[test]
    fn an_open_finishes_a_write_set_a_crash_interrupted() {
        let tmp = tempfile::tempdir().expect("tempdir");
        {
            let db = open(tmp.path());
            let tree = &db.inner.folder_sync;
            tree.insert(b"old", &b"x"[..]).expect("insert");
            let mut set = WriteSet::default();
            set.insert(&b"k1"[..], &b"v1"[..]);
            set.insert(&b"k2"[..], &b"v2"[..]);
            set.remove(&b"old"[..]);
            // The crash: the record and the first write are in the log, the rest not.
            db.inner
                .meta
                .insert(REDO_KEY, set.encode(&tree.name()))
                .expect("record");
            tree.insert(b"k1", &b"v1"[..]).expect("first write");
            db.flush().expect("flush");
        }
        let db = open(tmp.path());
        let tree = &db.inner.folder_sync;
        assert_eq!(tree.get(b"k1").expect("get").as_deref(), Some(&b"v1"[..]));
        assert_eq!(tree.get(b"k2").expect("get").as_deref(), Some(&b"v2"[..]));
        assert!(tree.get(b"old").expect("get").is_none());
        assert!(db.inner.meta.get(REDO_KEY).expect("get").is_none());
    }

    #[test]
    fn a_damaged_record_is_a_corruption_error_naming_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        {
            let db = open(tmp.path());
            db.inner
                .meta
                .insert(REDO_KEY, &b"\x01garbage"[..])
                .expect("record");
            db.flush().expect("flush");
        }
        let err = Database::open(tmp.path(), &StoreOptions::default()).expect_err("corrupt");
        assert!(
            err.to_string().contains("interrupted write"),
            "unexpected error: {err}"
        );
    }
}
