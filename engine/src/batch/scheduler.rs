//! `imapmirror serve`: runs started batches — the initial pass, then an incremental pass
//! every sync interval — until asked to stop.
//!
//! Everything the scheduler decides is read from the store on every round, so a restarted
//! `serve` picks up where the last one was: batches marked `Syncing` or `Completing` run
//! (their interrupted mailboxes resume from the journal), and a `Synced` or `Failed` batch
//! gets its next pass once `last_sync_finished + sync interval` has passed (a failed
//! mailbox is retried then, as Exchange retries at the next incremental sync).

use std::sync::Arc;
use std::time::Duration;

use imapmirror_storage::{BatchStatus, Timestamp};
use tokio::sync::Notify;
use tokio::task::JoinSet;

use crate::batch::report::next_due;
use crate::batch::runner::{BatchRuntime, EventSink, PassIntent, mark_for_pass};
use crate::error::Error;

/// The longest sleep between two looks at the store (a safety net: marks wake it at once).
const MAX_IDLE: Duration = Duration::from_secs(60);

/// Runs batches on a [`BatchRuntime`].
#[derive(Debug)]
pub struct Scheduler {
    runtime: Arc<BatchRuntime>,
    wake: Arc<Notify>,
}

impl Scheduler {
    pub fn new(runtime: Arc<BatchRuntime>) -> Self {
        Scheduler {
            runtime,
            wake: Arc::new(Notify::new()),
        }
    }

    /// Notified when a request marks a batch, so that it runs without waiting.
    pub fn waker(&self) -> Arc<Notify> {
        self.wake.clone()
    }

    /// Runs until the runtime shuts down ([`BatchRuntime::shut_down`]), then waits for
    /// the passes in flight to journal what they had begun and stop.
    pub async fn run(&self, events: EventSink) -> Result<(), Error> {
        let shutdown = self.runtime.shutdown_token().clone();
        let mut running: JoinSet<(String, Result<crate::batch::runner::BatchOutcome, Error>)> =
            JoinSet::new();
        loop {
            let sleep = match self.start_due(&mut running, &events).await {
                Ok(sleep) => sleep,
                Err(e) => {
                    // The store failed us (disk, corruption): say so and try again later
                    // rather than exit and leave every batch unattended.
                    tracing::error!(error = %e, "the scheduler could not read the batches");
                    MAX_IDLE
                }
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(sleep) => {}
                Some(joined) = running.join_next(), if !running.is_empty() => log_end(joined),
            }
        }
        tracing::info!(
            running = running.len(),
            "stopping: waiting for passes in flight to stop"
        );
        while let Some(joined) = running.join_next().await {
            log_end(joined);
        }
        Ok(())
    }

    /// Starts every batch that should run now; returns how long to sleep until the next
    /// incremental pass is due.
    async fn start_due(
        &self,
        running: &mut JoinSet<(String, Result<crate::batch::runner::BatchOutcome, Error>)>,
        events: &EventSink,
    ) -> Result<Duration, Error> {
        let store = self.runtime.store();
        let now = Timestamp::now();
        let mut sleep = MAX_IDLE;
        let batches = store
            .run(|db| db.batches())
            .await
            .map_err(|source| Error::State {
                action: "listing batches".to_owned(),
                source,
            })?;
        for b in batches {
            let name = b.settings.name.clone();
            if self.runtime.is_active(&name)
                || self.runtime.is_held(&name)
                || self.runtime.shutdown_token().is_cancelled()
            {
                continue;
            }
            let run = match b.status {
                BatchStatus::Syncing | BatchStatus::Completing => true,
                BatchStatus::Synced | BatchStatus::Failed => match b.last_sync_finished {
                    Some(finished) => {
                        let due = next_due(finished, b.settings.sync_interval_secs);
                        if due <= now {
                            let owned = name.clone();
                            let marked = store
                                .run_value(move |db| mark_for_pass(db, &owned, PassIntent::Sync))
                                .await
                                .map_err(|source| Error::State {
                                    action: format!("marking batch {name}"),
                                    source,
                                })
                                .flatten();
                            match marked {
                                Ok(_) => {
                                    tracing::info!(batch = %name, "incremental pass due");
                                    true
                                }
                                Err(e) => {
                                    tracing::warn!(batch = %name, error = %e, "could not start the incremental pass");
                                    false
                                }
                            }
                        } else {
                            let wait = Duration::from_millis(due.unix_millis() - now.unix_millis());
                            sleep = sleep.min(wait);
                            false
                        }
                    }
                    None => false,
                },
                BatchStatus::Created | BatchStatus::Stopped | BatchStatus::Completed => false,
            };
            if run {
                let runtime = self.runtime.clone();
                let events = events.clone();
                running.spawn(async move {
                    let result = runtime.run_batch(&name, events).await;
                    (name, result)
                });
            }
        }
        Ok(sleep)
    }
}

fn log_end(
    joined: Result<
        (String, Result<crate::batch::runner::BatchOutcome, Error>),
        tokio::task::JoinError,
    >,
) {
    match joined {
        Ok((name, Ok(outcome))) => tracing::info!(
            batch = %name,
            status = outcome.status.as_str(),
            failed = outcome.mailboxes_failed,
            interrupted = outcome.interrupted,
            "batch run ended"
        ),
        Ok((name, Err(e))) => tracing::warn!(batch = %name, error = %e, "batch run failed"),
        Err(e) => tracing::error!(error = %e, "a batch task ended abnormally"),
    }
}
