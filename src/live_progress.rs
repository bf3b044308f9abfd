//! What the passes running in this process do right now, for the status page: fed by the
//! scheduler's batch events, read by the HTTP handlers. The store holds what finished
//! passes and folders left behind; a running mailbox's copies reach it only group by
//! group, and its folder plan and rate not at all — those are here.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use imapmirror_engine::Progress;
use imapmirror_engine::batch::runner::{BatchEvent, EventSink};

/// The throughput is what was copied over this much of the recent past.
const RATE_WINDOW: Duration = Duration::from_secs(60);

/// The running passes of every batch of this process.
#[derive(Default)]
pub struct LiveProgress {
    batches: Mutex<HashMap<String, BatchLive>>,
    /// When this process started watching: the rate of a younger window is over its age.
    since: Option<Instant>,
}

#[derive(Default)]
struct BatchLive {
    running: BTreeMap<String, MailboxLive>,
    /// Copies per second of the last [`RATE_WINDOW`]: (second since `since`, messages, bytes).
    recent: VecDeque<(u64, u64, u64)>,
}

/// A mailbox whose pass runs now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxLive {
    /// When its pass began.
    pub started: SystemTime,
    /// `Initial`, `Incremental` or `Final`.
    pub kind: String,
    /// Folders its plan holds (0 until planned).
    pub folders_planned: usize,
    /// Folders finished.
    pub folders_done: usize,
    /// Messages and bytes copied so far in this pass.
    pub messages: u64,
    pub bytes: u64,
    /// The folder it copies now, if any.
    pub folder: Option<String>,
}

/// A batch's running passes as the page shows them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BatchLiveView {
    /// Running mailboxes by address.
    pub running: Vec<(String, MailboxLive)>,
    /// Messages and bytes per second over the last minute (or since start).
    pub messages_per_sec: f64,
    pub bytes_per_sec: f64,
}

impl LiveProgress {
    pub fn new() -> Arc<LiveProgress> {
        Arc::new(LiveProgress {
            batches: Mutex::default(),
            since: Some(Instant::now()),
        })
    }

    /// The event sink that keeps this up to date.
    pub fn sink(self: &Arc<Self>) -> EventSink {
        let live = self.clone();
        Arc::new(move |e: &BatchEvent| live.record(e))
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, BatchLive>> {
        // A panic while holding the lock left plain counters behind: still usable.
        self.batches.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn second(&self) -> u64 {
        self.since.map_or(0, |s| s.elapsed().as_secs())
    }

    fn record(&self, event: &BatchEvent) {
        let now = self.second();
        let mut batches = self.lock();
        match event {
            BatchEvent::Planned { .. } => {}
            BatchEvent::MailboxStarted { batch, email, kind } => {
                batches.entry(batch.clone()).or_default().running.insert(
                    email.clone(),
                    MailboxLive {
                        started: SystemTime::now(),
                        kind: format!("{kind:?}"),
                        folders_planned: 0,
                        folders_done: 0,
                        messages: 0,
                        bytes: 0,
                        folder: None,
                    },
                );
            }
            BatchEvent::Progress {
                batch,
                email,
                progress,
            } => {
                let b = batches.entry(batch.clone()).or_default();
                if let Progress::Copied {
                    messages, bytes, ..
                } = progress
                {
                    b.add_recent(now, *messages, *bytes);
                }
                let Some(m) = b.running.get_mut(email) else {
                    return;
                };
                match progress {
                    Progress::Planned { folders } => m.folders_planned = *folders,
                    Progress::FolderStarted { folder } => m.folder = Some(folder.clone()),
                    Progress::Copied {
                        messages, bytes, ..
                    } => {
                        m.messages += messages;
                        m.bytes += bytes;
                    }
                    Progress::FolderFinished { folder, .. } => {
                        m.folders_done += 1;
                        if m.folder.as_ref() == Some(folder) {
                            m.folder = None;
                        }
                    }
                }
            }
            BatchEvent::MailboxFinished { batch, email, .. } => {
                if let Some(b) = batches.get_mut(batch) {
                    b.running.remove(email);
                }
            }
        }
    }

    /// The running passes and the recent rate of `batch`.
    pub fn batch(&self, batch: &str) -> BatchLiveView {
        let now = self.second();
        let mut batches = self.lock();
        let Some(b) = batches.get_mut(batch) else {
            return BatchLiveView::default();
        };
        b.expire(now);
        let (messages, bytes) = b
            .recent
            .iter()
            .fold((0, 0), |(m, by), &(_, dm, db)| (m + dm, by + db));
        // Over the window, or over the time watched when that is shorter (at least 1 s).
        let span = (now + 1).min(RATE_WINDOW.as_secs()).max(1) as f64;
        BatchLiveView {
            running: b
                .running
                .iter()
                .map(|(e, m)| (e.clone(), m.clone()))
                .collect(),
            messages_per_sec: messages as f64 / span,
            bytes_per_sec: bytes as f64 / span,
        }
    }
}

impl BatchLive {
    fn add_recent(&mut self, second: u64, messages: u64, bytes: u64) {
        match self.recent.back_mut() {
            Some(last) if last.0 == second => {
                last.1 += messages;
                last.2 += bytes;
            }
            _ => self.recent.push_back((second, messages, bytes)),
        }
        self.expire(second);
    }

    fn expire(&mut self, now: u64) {
        while self
            .recent
            .front()
            .is_some_and(|&(s, _, _)| s + RATE_WINDOW.as_secs() <= now)
        {
            self.recent.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imapmirror_engine::PassKind;
    use imapmirror_storage::MailboxStatus;

    fn progress(email: &str, progress: Progress) -> BatchEvent {
        BatchEvent::Progress {
            batch: "b".into(),
            email: email.into(),
            progress,
        }
    }

    #[test]
    fn a_running_pass_is_followed_until_it_ends() {
        let live = LiveProgress::new();
        let sink = live.sink();
        sink(&BatchEvent::MailboxStarted {
            batch: "b".into(),
            email: "a@x".into(),
            kind: PassKind::Initial,
        });
        sink(&progress("a@x", Progress::Planned { folders: 3 }));
        sink(&progress(
            "a@x",
            Progress::FolderStarted {
                folder: "INBOX".into(),
            },
        ));
        for _ in 0..2 {
            sink(&progress(
                "a@x",
                Progress::Copied {
                    folder: "INBOX".into(),
                    messages: 10,
                    bytes: 1000,
                },
            ));
        }
        let view = live.batch("b");
        let (email, m) = &view.running[0];
        assert_eq!(email, "a@x");
        assert_eq!((m.folders_planned, m.messages, m.bytes), (3, 20, 2000));
        assert_eq!(m.folder.as_deref(), Some("INBOX"));
        assert_eq!(m.kind, "Initial");
        // Watched for under a second: the rate is over one second.
        assert_eq!(view.messages_per_sec, 20.0);
        sink(&progress(
            "a@x",
            Progress::FolderFinished {
                folder: "INBOX".into(),
                copied: 20,
                skipped: 0,
                unchanged: false,
            },
        ));
        assert_eq!(live.batch("b").running[0].1.folders_done, 1);
        assert_eq!(live.batch("b").running[0].1.folder, None);
        sink(&BatchEvent::MailboxFinished {
            batch: "b".into(),
            email: "a@x".into(),
            status: MailboxStatus::Synced,
            copied: 20,
            bytes: 2000,
            skipped: 0,
            folders_renamed: 0,
            error: None,
        });
        assert!(live.batch("b").running.is_empty());
        assert_eq!(live.batch("other"), BatchLiveView::default());
    }

    #[test]
    fn the_rate_forgets_what_is_older_than_its_window() {
        let mut b = BatchLive::default();
        b.add_recent(0, 600, 6000);
        b.add_recent(0, 0, 0);
        b.add_recent(30, 60, 600);
        assert_eq!(b.recent.len(), 2);
        b.expire(61);
        assert_eq!(b.recent.iter().map(|r| r.1).collect::<Vec<_>>(), vec![60]);
        b.expire(91);
        assert!(b.recent.is_empty());
    }
}
