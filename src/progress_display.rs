//! Progress of a foreground pass (`--wait`): on a terminal, indicatif bars — one line per
//! active mailbox and an overall line with rate and ETA; otherwise a plain line every few
//! seconds (a heartbeat, even when nothing moves) and one per finished mailbox, fit for a
//! log file. When no mailbox has made progress for [`STALL_AFTER`], a warning says where
//! each active mailbox is and since when, so a stuck pass explains itself.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use imapmirror_engine::Progress;
use imapmirror_engine::batch::runner::{BatchEvent, EventSink};
use imapmirror_storage::MailboxStatus;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::text_output::bytes;

/// How often a plain progress line is written without a terminal.
const LINE_EVERY: Duration = Duration::from_secs(5);

/// No progress of any mailbox for this long is worth a warning naming each one's step.
pub const STALL_AFTER: Duration = Duration::from_secs(60);

struct Totals {
    planned: u64,
    done: u64,
    failed: u64,
    messages: u64,
    bytes: u64,
    active: HashMap<String, MailboxLine>,
    last_line: Instant,
    /// When any mailbox last moved (started, planned, copied, finished a folder or ended).
    last_progress: Instant,
    /// When the last stall warning was written (one per stall period).
    last_stall_warning: Option<Instant>,
}

struct MailboxLine {
    bar: Option<ProgressBar>,
    /// The step the mailbox is at: logging in, a folder, the plan.
    folder: String,
    messages: u64,
    bytes: u64,
    since: Instant,
}

/// Shows the progress of one batch's foreground pass.
pub struct ProgressDisplay {
    batch: String,
    quiet: bool,
    started: Instant,
    bars: Option<(MultiProgress, ProgressBar)>,
    totals: Mutex<Totals>,
}

impl ProgressDisplay {
    /// Bars when stderr is a terminal and `quiet` is off; plain lines otherwise (none at
    /// all when quiet).
    pub fn new(batch: &str, quiet: bool) -> Arc<Self> {
        let bars = (!quiet && std::io::stderr().is_terminal()).then(|| {
            let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr());
            let overall = multi.add(ProgressBar::new(0));
            overall.set_style(
                ProgressStyle::with_template(
                    "{prefix:.bold} [{bar:30.cyan/blue}] {pos}/{len} mailboxes  {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            overall.set_prefix(batch.to_owned());
            overall.enable_steady_tick(Duration::from_millis(250));
            (multi, overall)
        });
        Arc::new(ProgressDisplay {
            batch: batch.to_owned(),
            quiet,
            started: Instant::now(),
            bars,
            totals: Mutex::new(Totals {
                planned: 0,
                done: 0,
                failed: 0,
                messages: 0,
                bytes: 0,
                active: HashMap::new(),
                last_line: Instant::now(),
                last_progress: Instant::now(),
                last_stall_warning: None,
            }),
        })
    }

    /// The event sink to hand to the runtime.
    pub fn sink(self: &Arc<Self>) -> EventSink {
        let me = self.clone();
        Arc::new(move |e: &BatchEvent| me.on_event(e))
    }

    fn rate(&self, t: &Totals) -> String {
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        format!(
            "{} messages, {}, {:.0} msg/s",
            t.messages,
            bytes(t.bytes),
            t.messages as f64 / secs
        )
    }

    fn on_event(&self, event: &BatchEvent) {
        let mut t = lock(&self.totals);
        let now = Instant::now();
        t.last_progress = now;
        t.last_stall_warning = None;
        match event {
            BatchEvent::Planned { mailboxes, .. } => {
                t.planned += *mailboxes as u64;
                if let Some((_, overall)) = &self.bars {
                    overall.set_length(t.planned);
                }
            }
            BatchEvent::MailboxStarted { email, kind, .. } => {
                let bar = self.bars.as_ref().map(|(multi, _)| {
                    let bar = multi.add(ProgressBar::new_spinner());
                    bar.set_style(
                        ProgressStyle::with_template("  {spinner} {prefix:40} {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    bar.set_prefix(email.clone());
                    bar.set_message(format!("{kind:?} pass: logging in"));
                    bar.enable_steady_tick(Duration::from_millis(200));
                    bar
                });
                t.active.insert(
                    email.clone(),
                    MailboxLine {
                        bar,
                        folder: "logging in".to_owned(),
                        messages: 0,
                        bytes: 0,
                        since: now,
                    },
                );
            }
            BatchEvent::Progress {
                email, progress, ..
            } => {
                let (mut add_messages, mut add_bytes) = (0, 0);
                if let Some(line) = t.active.get_mut(email) {
                    line.since = now;
                    match progress {
                        Progress::Planned { folders } => {
                            line.folder = format!("{folders} folders planned");
                        }
                        Progress::FolderStarted { folder } => line.folder = folder.clone(),
                        Progress::Copied {
                            folder,
                            messages,
                            bytes,
                        } => {
                            line.folder = folder.clone();
                            line.messages += messages;
                            line.bytes += bytes;
                            add_messages = *messages;
                            add_bytes = *bytes;
                        }
                        Progress::FolderFinished { .. } => {}
                    }
                    if let Some(bar) = &line.bar {
                        bar.set_message(format!(
                            "{}: {} messages, {}",
                            line.folder,
                            line.messages,
                            bytes(line.bytes)
                        ));
                    }
                }
                t.messages += add_messages;
                t.bytes += add_bytes;
            }
            BatchEvent::MailboxFinished {
                email,
                status,
                copied,
                bytes: size,
                skipped,
                folders_renamed,
                error,
                ..
            } => {
                t.done += 1;
                if *status == MailboxStatus::Failed {
                    t.failed += 1;
                }
                if let Some(bar) = t.active.remove(email).and_then(|line| line.bar) {
                    bar.finish_and_clear();
                }
                let text = match error {
                    Some(e) if *status != MailboxStatus::Stopped => {
                        format!("{email}: {} — {e}", status.as_str())
                    }
                    _ => {
                        let renamed = match folders_renamed {
                            0 => String::new(),
                            1 => ", 1 folder renamed as on the source".to_owned(),
                            n => format!(", {n} folders renamed as on the source"),
                        };
                        format!(
                            "{email}: {} — {copied} messages ({}) copied, {skipped} skipped{renamed}",
                            status.as_str(),
                            bytes(*size)
                        )
                    }
                };
                match &self.bars {
                    Some((multi, overall)) => {
                        overall.set_position(t.done);
                        let _ = multi.println(text);
                    }
                    None if !self.quiet => {
                        note!("imapmirror: batch {}: {text}", self.batch);
                    }
                    None => {}
                }
            }
        }
        self.write_status(&mut t, false);
    }

    /// Called every few seconds whatever happens: the plain progress line when one is
    /// due (so a log shows the pass is alive at least every [`LINE_EVERY`]), and the
    /// stall warning when nothing has moved for [`STALL_AFTER`].
    pub fn heartbeat(&self) {
        let mut t = lock(&self.totals);
        self.write_status(&mut t, true);
        if let Some((stalled, waiting)) = stall_report(&mut t, Instant::now()) {
            tracing::warn!(
                batch = %self.batch,
                stalled_secs = stalled.as_secs(),
                waiting = %waiting,
                "no mailbox has made progress for {} s; each active mailbox is at the step named (servers that stopped answering are given up after their timeouts)",
                stalled.as_secs()
            );
        }
    }

    fn write_status(&self, t: &mut Totals, heartbeat: bool) {
        match &self.bars {
            Some((_, overall)) => {
                if !heartbeat {
                    overall.set_message(format!(
                        "{}{}",
                        self.rate(t),
                        self.eta(t)
                            .map(|e| format!(", ETA {e}"))
                            .unwrap_or_default()
                    ))
                }
            }
            None if self.quiet => {}
            None => {
                let now = Instant::now();
                if now.duration_since(t.last_line) >= LINE_EVERY {
                    t.last_line = now;
                    let line = format!(
                        "imapmirror: batch {}: {}/{} mailboxes done ({} failed), {} active, {}{}",
                        self.batch,
                        t.done,
                        t.planned,
                        t.failed,
                        t.active.len(),
                        self.rate(t),
                        self.eta(t)
                            .map(|e| format!(", about {e} left"))
                            .unwrap_or_default()
                    );
                    let mut err = std::io::stderr().lock();
                    let _ = writeln!(err, "{line}");
                }
            }
        }
    }

    /// What the pass cost the state store: fsyncs and bytes written to its log, per
    /// message copied (the figures of the store's group commit).
    pub fn state_writes(&self, fsyncs: u64, bytes_written: u64) {
        if self.quiet {
            return;
        }
        let t = lock(&self.totals);
        let per_message = match t.messages {
            0 => String::new(),
            n => format!(", {} per message copied", bytes(bytes_written / n)),
        };
        let plural = if fsyncs == 1 { "" } else { "s" };
        note!(
            "imapmirror: batch {}: the state store made {fsyncs} fsync{plural} and wrote {}{per_message}",
            self.batch,
            bytes(bytes_written)
        );
    }

    fn eta(&self, t: &Totals) -> Option<String> {
        if t.done == 0 || t.done >= t.planned {
            return None;
        }
        let per = self.started.elapsed().as_secs_f64() / t.done as f64;
        let left = per * (t.planned - t.done) as f64;
        Some(format!("{:.0} s", left))
    }

    /// Clears the bars before the final output is printed.
    pub fn finish(&self) {
        if let Some((multi, overall)) = &self.bars {
            overall.finish_and_clear();
            let _ = multi.clear();
        }
    }
}

/// When nothing has moved for [`STALL_AFTER`] (and no warning was given for this stall
/// in the last [`STALL_AFTER`]): how long, and each active mailbox's step and since when.
fn stall_report(t: &mut Totals, now: Instant) -> Option<(Duration, String)> {
    let stalled = now.duration_since(t.last_progress);
    let warned_recently = t
        .last_stall_warning
        .is_some_and(|w| now.duration_since(w) < STALL_AFTER);
    if stalled < STALL_AFTER || t.active.is_empty() || warned_recently {
        return None;
    }
    t.last_stall_warning = Some(now);
    let mut steps: Vec<String> = t
        .active
        .iter()
        .map(|(email, line)| {
            format!(
                "{email}: {} for {} s ({} messages copied)",
                line.folder,
                now.duration_since(line.since).as_secs(),
                line.messages
            )
        })
        .collect();
    steps.sort();
    Some((stalled, steps.join("; ")))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;
    use imapmirror_engine::PassKind;

    #[test]
    fn a_stall_names_each_active_mailbox_once_per_minute() {
        let display = ProgressDisplay::new("wave-1", true);
        let sink = display.sink();
        for email in ["b@example.test", "a@example.test"] {
            sink(&BatchEvent::MailboxStarted {
                batch: "wave-1".into(),
                email: email.into(),
                kind: PassKind::Initial,
            });
        }
        sink(&BatchEvent::Progress {
            batch: "wave-1".into(),
            email: "a@example.test".into(),
            progress: Progress::FolderStarted {
                folder: "Archive".into(),
            },
        });
        let mut t = lock(&display.totals);
        let start = t.last_progress;
        assert_eq!(stall_report(&mut t, start + Duration::from_secs(59)), None);
        let (stalled, waiting) =
            stall_report(&mut t, start + Duration::from_secs(61)).expect("a stall");
        assert_eq!(stalled.as_secs(), 61);
        assert!(
            waiting.starts_with("a@example.test: Archive for 61 s")
                && waiting.contains("; b@example.test: logging in for 61 s"),
            "{waiting}"
        );
        // Once per stall minute, not every heartbeat.
        assert_eq!(stall_report(&mut t, start + Duration::from_secs(62)), None);
        assert!(stall_report(&mut t, start + Duration::from_secs(122)).is_some());
    }
}
