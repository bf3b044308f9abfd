//! [`Store`]: one open state directory, and the storage thread that owns its database.
//!
//! # Why one thread
//!
//! sled 0.34 takes a process-wide reader/writer lock around its operations: a batch
//! write takes it exclusively, a flush holds it shared while it waits for the log to
//! become stable, and sled's log flusher needs it shared to make the log stable. When a
//! batch write queues between the two, the lock (writer-preferring) lets neither reader
//! in, and the process stops for good (sled issue 1308; a batch of 100 mailboxes hung in
//! 4 of 19 runs that way). Here a [`Database`] is opened on, used on and dropped on one
//! thread, and reached only through jobs sent to it:
//!
//! - every sled call of the process runs on that thread, one at a time, so a write can
//!   never be queued while a flush waits: the writer would be the flushing thread itself;
//! - sled's own background flusher is off; this thread flushes on its schedule instead;
//! - no tokio worker ever blocks in sled: async callers await a reply ([`Store::run`]);
//!   plain threads (tests, tools) block on one ([`Store::call`]).
//!
//! # Group commit
//!
//! A journal entry must be on disk before its APPENDs go out. [`Store::begin`] stages the
//! entry and is answered after the next flush. The thread runs every job already queued
//! (up to [`JOBS_PER_FLUSH`]) before it flushes, so one fsync makes every entry staged
//! before it durable, however many folders of however many mailboxes are in flight.
//! Everything else (commits, statuses) is flushed within `flush_every_ms` of being
//! written, or at [`Store::flush`].

use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, TryRecvError};
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, ThreadId};
use std::time::{Duration, Instant};

use crate::database::{Database, StoreOptions};
use crate::error::{Result, StoreError};
use crate::journal::CopyGroup;
use crate::key_layout::{FolderId, JournalId};
use crate::timestamp::Timestamp;

/// Most jobs the storage thread runs before a flush that a [`Store::begin`] waits for:
/// bounds how long a stream of other work can hold a journal entry back.
pub const JOBS_PER_FLUSH: usize = 1024;

/// An open state directory. Cheap to clone; every clone reaches the same storage thread.
/// Dropping the last clone flushes, closes the database and releases the lock before it
/// returns.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("dir", &self.shared.path)
            .finish_non_exhaustive()
    }
}

struct Shared {
    /// `None` once the store is shutting down.
    jobs: Mutex<Option<Sender<Job>>>,
    thread: Mutex<Option<JoinHandle<()>>>,
    thread_id: ThreadId,
    path: PathBuf,
    opened_at: Timestamp,
}

/// Sends a durable job's result once the flush after it has ended (with that flush's
/// error, if it failed).
type Completion = Box<dyn FnOnce(Option<&StoreError>) + Send>;

enum Job {
    /// Runs and answers at once.
    Run(Box<dyn FnOnce(&Database) + Send>),
    /// Runs now; answered after the next flush.
    Durable(Box<dyn FnOnce(&Database) -> Completion + Send>),
}

impl Store {
    /// Opens (creating if needed) the state directory with default options.
    pub fn open(dir: &Path) -> Result<Store> {
        Self::open_with_options(dir, &StoreOptions::default())
    }

    /// Opens (creating if needed) the state directory on a new storage thread. Fails
    /// with [`StoreError::Locked`] if another process has it open, and with a schema
    /// error if it was written by an incompatible imapmirror.
    pub fn open_with_options(dir: &Path, options: &StoreOptions) -> Result<Store> {
        let (opened_tx, opened_rx) = mpsc::sync_channel(1);
        let (jobs_tx, jobs_rx) = mpsc::channel();
        let dir_owned = dir.to_path_buf();
        let options = options.clone();
        let thread = std::thread::Builder::new()
            .name("imapmirror-store".into())
            .spawn(move || {
                let database = match Database::open(&dir_owned, &options) {
                    Ok(db) => db,
                    Err(e) => {
                        let _ = opened_tx.send(Err(e));
                        return;
                    }
                };
                let _ = opened_tx.send(Ok((database.path().to_path_buf(), database.opened_at())));
                serve(
                    database,
                    jobs_rx,
                    options.flush_every_ms.map(Duration::from_millis),
                );
            })
            .map_err(|source| StoreError::Io {
                action: "start the storage thread for",
                path: dir.to_path_buf(),
                source,
            })?;
        let thread_id = thread.thread().id();
        let opened = opened_rx.recv().unwrap_or_else(|_| {
            Err(StoreError::StorageThreadGone {
                dir: dir.to_path_buf(),
            })
        });
        let (path, opened_at) = match opened {
            Ok(v) => v,
            Err(e) => {
                let _ = thread.join();
                return Err(e);
            }
        };
        Ok(Store {
            shared: Arc::new(Shared {
                jobs: Mutex::new(Some(jobs_tx)),
                thread: Mutex::new(Some(thread)),
                thread_id,
                path,
                opened_at,
            }),
        })
    }

    /// The state directory.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// When this process took the directory's lock; see [`Database::opened_at`].
    pub fn opened_at(&self) -> Timestamp {
        self.shared.opened_at
    }

    /// Runs `f` on the storage thread and awaits its result. `f` runs after every job
    /// sent before it, and nothing else touches the database while it runs, so a job is
    /// atomic with respect to every other job. Keep jobs short: the thread serves every
    /// folder of every mailbox in flight. A panic in `f` is raised again here.
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Database) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        self.run_value(f).await?
    }

    /// [`Store::run`] for a job whose result is not a store `Result` (an engine type,
    /// a summary); the outer error says only that the storage thread is gone.
    pub async fn run_value<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce(&Database) -> R + Send + 'static,
        R: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Job::Run(Box::new(move |db| {
            let _ = tx.send(catch_unwind(AssertUnwindSafe(|| f(db))));
        })))?;
        self.answer(rx.await.ok())
    }

    /// Runs `f` on the storage thread and answers once a flush after it has made what it
    /// wrote durable. Jobs queued meanwhile share that flush.
    pub async fn run_durable<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Database) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Job::Durable(Box::new(move |db| {
            let result = catch_unwind(AssertUnwindSafe(|| f(db)));
            let dir = db.path().to_path_buf();
            Box::new(move |flush_error: Option<&StoreError>| {
                let result = match (result, flush_error) {
                    (Ok(Ok(_)), Some(e)) => Ok(Err(StoreError::FlushFailed {
                        dir,
                        detail: e.to_string(),
                    })),
                    (r, _) => r,
                };
                let _ = tx.send(result);
            })
        })))?;
        self.answer(rx.await.ok())?
    }

    /// Records a group of APPENDs about to go out, and answers once the entry is on
    /// disk. Send nothing of the group until this returns `Ok`. Many folders' groups
    /// share one fsync (see the module docs).
    pub async fn begin(&self, folder: FolderId, group: CopyGroup) -> Result<JournalId> {
        self.run_durable(move |db| db.stage_begin(folder, &group))
            .await
    }

    /// Writes everything to disk (fsync) and makes every file in the state directory
    /// 0600. Returns the number of bytes flushed.
    pub async fn flush(&self) -> Result<usize> {
        self.run(|db| db.flush()).await
    }

    /// [`Store::run`] for plain threads: blocks until the storage thread has run `f`.
    /// Never call it from async code (it would block a runtime worker for the queue and
    /// an fsync): tokio panics if it is called on a runtime thread, and so does calling
    /// it from inside a job (the thread would wait for itself).
    pub fn call<T, F>(&self, f: F) -> Result<T>
    where
        F: FnOnce(&Database) -> Result<T> + Send + 'static,
        T: Send + 'static,
    {
        assert!(
            std::thread::current().id() != self.shared.thread_id,
            "Store::call from a storage job: use the &Database the job was given"
        );
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.send(Job::Run(Box::new(move |db| {
            let _ = tx.send(catch_unwind(AssertUnwindSafe(|| f(db))));
        })))?;
        self.answer(rx.blocking_recv().ok())?
    }

    fn send(&self, job: Job) -> Result<()> {
        let jobs = self
            .shared
            .jobs
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        match jobs.as_ref().map(|tx| tx.send(job)) {
            Some(Ok(())) => Ok(()),
            _ => Err(self.gone()),
        }
    }

    fn answer<R>(&self, reply: Option<std::thread::Result<R>>) -> Result<R> {
        match reply {
            Some(Ok(r)) => Ok(r),
            Some(Err(panic)) => resume_unwind(panic),
            None => Err(self.gone()),
        }
    }

    fn gone(&self) -> StoreError {
        StoreError::StorageThreadGone {
            dir: self.shared.path.clone(),
        }
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let jobs = self
            .jobs
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Closing the channel tells the thread to flush, close the database and end.
        drop(jobs.take());
        // The last handle may be dropped by a job on the storage thread itself; it
        // cannot wait for itself, and the thread ends on its own after that job.
        if std::thread::current().id() == self.thread_id {
            return;
        }
        let thread = self
            .thread
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(t) = thread.take() {
            let _ = t.join();
        }
    }
}

/// The storage thread's loop: runs jobs in order, flushes for the durable ones once the
/// queue is empty (or after [`JOBS_PER_FLUSH`]), and within `flush_every` of any other
/// write; flushes and closes the database when the last handle is gone.
fn serve(db: Database, jobs: Receiver<Job>, flush_every: Option<Duration>) {
    let mut waiting: Vec<Completion> = Vec::new();
    // When the oldest job not yet covered by a flush ran.
    let mut unflushed_since: Option<Instant> = None;
    let mut open = true;
    while open {
        let due = unflushed_since.and_then(|t| flush_every.map(|every| t + every));
        let first = match due {
            None => jobs.recv().map_err(|_| RecvTimeoutError::Disconnected),
            Some(due) => jobs.recv_timeout(due.saturating_duration_since(Instant::now())),
        };
        match first {
            Ok(job) => {
                run_job(&db, job, &mut waiting);
                unflushed_since.get_or_insert_with(Instant::now);
                open = drain(&db, &jobs, &mut waiting);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => open = false,
        }
        let periodic_due = due.is_some_and(|d| Instant::now() >= d);
        if !waiting.is_empty() || periodic_due || (!open && unflushed_since.is_some()) {
            let flushed = db.flush_log("flush to disk").err();
            for done in waiting.drain(..) {
                done(flushed.as_ref());
            }
            unflushed_since = None;
            if let Some(e) = flushed {
                tracing::error!(error = %e, "the state database could not be flushed");
            }
        }
    }
    if let Err(e) = db.flush() {
        tracing::error!(error = %e, "the state database could not be flushed at close");
    }
    // `db` drops here, on its own thread: sled closes, then the directory's lock goes.
}

/// Runs the jobs already queued, at most [`JOBS_PER_FLUSH`]. False when the last handle
/// is gone.
fn drain(db: &Database, jobs: &Receiver<Job>, waiting: &mut Vec<Completion>) -> bool {
    for _ in 1..JOBS_PER_FLUSH {
        match jobs.try_recv() {
            Ok(job) => run_job(db, job, waiting),
            Err(TryRecvError::Empty) => return true,
            Err(TryRecvError::Disconnected) => return false,
        }
    }
    true
}

fn run_job(db: &Database, job: Job, waiting: &mut Vec<Completion>) {
    match job {
        Job::Run(f) => f(db),
        Job::Durable(f) => waiting.push(f(db)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropping_the_last_handle_releases_the_lock_before_returning() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = Store::open(tmp.path()).expect("open");
        let err = Store::open(tmp.path()).expect_err("locked");
        assert!(matches!(err, StoreError::Locked { .. }), "{err}");
        let clone = store.clone();
        drop(store);
        assert!(Store::open(tmp.path()).is_err(), "a clone still holds it");
        drop(clone);
        let again = Store::open(tmp.path()).expect("reopen");
        again.call(|db| db.flush()).expect("flush");
    }

    #[test]
    fn a_panic_in_a_job_reaches_its_caller_and_the_thread_survives() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = Store::open(tmp.path()).expect("open");
        let caught = std::panic::catch_unwind(AssertUnwindSafe(|| {
            store.call(|_| -> Result<()> { panic!("job failed") })
        }));
        assert!(caught.is_err());
        assert_eq!(
            store.call(|db| Ok(db.path().to_path_buf())).expect("alive"),
            tmp.path()
        );
    }

    #[test]
    fn durable_jobs_are_answered_after_a_flush_that_covers_them() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let options = StoreOptions {
            flush_every_ms: None,
            ..StoreOptions::default()
        };
        let store = Store::open_with_options(tmp.path(), &options).expect("open");
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .expect("runtime");
        let before = store.call(|db| Ok(db.flush_counters())).expect("counters");
        let writes: Vec<_> = (0..50u32)
            .map(|i| {
                let store = store.clone();
                rt.spawn(async move {
                    store
                        .run_durable(move |db| {
                            db.inner
                                .meta
                                .insert(format!("k{i}"), &i.to_be_bytes()[..])
                                .map_err(db.db_err("write"))?;
                            Ok(())
                        })
                        .await
                })
            })
            .collect();
        rt.block_on(async {
            for w in writes {
                w.await.expect("task").expect("durable write");
            }
        });
        let after = store.call(|db| Ok(db.flush_counters())).expect("counters");
        // Every write waited for a flush, and they shared them.
        assert!(after.fsyncs > before.fsyncs);
        assert!(after.fsyncs - before.fsyncs <= 50);
    }

    #[test]
    #[should_panic(expected = "from a storage job")]
    fn a_job_cannot_wait_for_another_job() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = Store::open(tmp.path()).expect("open");
        let inner = store.clone();
        store
            .call(move |_| inner.call(|_| Ok(())))
            .expect("never returns");
    }
}
