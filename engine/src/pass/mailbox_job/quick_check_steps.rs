//! The quick check's part in a mailbox's pass (the I/O around
//! [`crate::pass::quick_check`], which decides): reading the mailbox's check before the
//! pass, ending the pass after the source's listing when that shows nothing to do, and
//! recording what a full pass planned from and when it saw the target.

use std::collections::HashMap;

use imapmirror_storage::{PassOutcome, QuickCheck, Store, StoreError, Timestamp};

use super::{Listed, MailboxJob, PassKind, status_values, stored_folder};
use crate::endpoint::pool::Connection;
use crate::endpoint::provider_profile::Provider;
use crate::error::Error;
use crate::pass::folder_check::CheckOptions;
use crate::pass::folder_plan::FolderListing;
use crate::pass::quick_check;
use crate::pass::report::{FolderSkipReason, PassTotals, Progress};

impl MailboxJob {
    /// The mailbox's quick check, if this pass may use it: not the final pass (cut-over
    /// always looks at the target), the check turned on, and the target seen within
    /// [`JobOptions::target_recheck`].
    pub(super) async fn fresh_quick_check(
        &self,
        store: &Store,
        kind: PassKind,
    ) -> Result<Option<QuickCheck>, Error> {
        if kind == PassKind::Final || self.options.target_recheck.is_zero() {
            return Ok(None);
        }
        let mailbox = self.mailbox;
        let check = store
            .run(move |db| db.quick_check(mailbox))
            .await
            .map_err(|e| Error::Store {
                mailbox: self.email.clone(),
                action: "reading the quick check".into(),
                source: Box::new(e),
            })?;
        let recheck = self.options.target_recheck;
        Ok(check.filter(|c| quick_check::is_fresh(c, Timestamp::now(), recheck)))
    }

    /// The digest of what this mailbox's pass plans from ([`quick_check::plan_digest`]).
    pub(super) fn plan_digest(&self, source: &FolderListing) -> u64 {
        quick_check::plan_digest(source, &self.options)
    }

    /// Ends the pass after the source listing if it shows nothing to do
    /// ([`quick_check::nothing_to_do`]): the folders count as unchanged and the folders
    /// the last full pass left out are reported again. `None`: go on to the target.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn unchanged_by_source(
        &self,
        store: &Store,
        src: &Connection,
        src_names: &HashMap<String, Listed>,
        digest: u64,
        check: QuickCheck,
        totals: &PassTotals,
        progress: &(dyn Fn(Progress) + Send + Sync),
    ) -> Result<Option<usize>, Error> {
        // All Mail of a Gmail source is looked at every pass (mail archived since shows
        // nothing in its STATUS).
        if Provider::resolve(self.options.source_provider, src.family) == Provider::Gmail {
            return Ok(None);
        }
        let mailbox = self.mailbox;
        let names: Vec<String> = src_names.keys().cloned().collect();
        let (stored, last_pass) = store
            .run_value(move |db| -> Result<_, (String, StoreError)> {
                let mut stored = HashMap::with_capacity(names.len());
                for name in names {
                    match stored_folder(db, mailbox, &name) {
                        Ok(Some((state, pending))) => {
                            stored.insert(name, (state, pending.len()));
                        }
                        Ok(None) => {}
                        Err((what, e)) => return Err((format!("{what} `{name}`"), e)),
                    }
                }
                let last = db
                    .last_pass(mailbox)
                    .map_err(|e| ("reading the last pass".to_owned(), e))?;
                Ok((stored, last))
            })
            .await
            .map_err(|e| ("reading the stored folders".to_owned(), e))
            .flatten()
            .map_err(|(action, e)| Error::Store {
                mailbox: self.email.clone(),
                action,
                source: Box::new(e),
            })?;
        // The folders it left out are repeated from the last pass: only from one that
        // succeeded (a failed one may not have planned them all).
        let Some(last_pass) = last_pass.filter(|p| p.outcome == PassOutcome::Succeeded) else {
            return Ok(None);
        };
        let options = CheckOptions {
            mirror_deletions: self.options.mirror_deletions,
            source_condstore: src.has("CONDSTORE"),
        };
        let listed = src_names.iter().map(|(name, l)| quick_check::ListedState {
            status: l.status.as_ref().map(status_values),
            stored: stored.get(name).map(|(state, pending)| (state, *pending)),
        });
        let Some(unchanged) = quick_check::nothing_to_do(digest, &check, listed, &options) else {
            return Ok(None);
        };
        tracing::debug!(
            folders = unchanged,
            "the source shows nothing to do and the target was seen within the recheck interval: the pass ends without it"
        );
        progress(Progress::Planned { folders: unchanged });
        for name in src_names.keys().filter(|n| stored.contains_key(*n)) {
            PassTotals::add(&totals.unchanged, 1);
            progress(Progress::FolderFinished {
                folder: name.clone(),
                copied: 0,
                skipped: 0,
                unchanged: true,
            });
        }
        *totals
            .repeated_folder_skips
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = last_pass.folders_skipped;
        Ok(Some(unchanged))
    }

    /// After a full pass without error: stores what it planned from and that the target
    /// was seen now. Not after a pass that left a folder out for a reason that may pass
    /// (the target refused to create it, it vanished): the next pass must try again.
    pub(super) async fn remember_quick_check(
        &self,
        store: &Store,
        digest: u64,
        totals: &PassTotals,
    ) -> Result<(), Error> {
        if self.options.target_recheck.is_zero() {
            return Ok(());
        }
        let retry_next_pass = totals.skipped_folders().iter().any(|f| {
            matches!(
                f.reason,
                FolderSkipReason::TargetRefusedCreate | FolderSkipReason::VanishedFromSource
            )
        });
        let check = (!retry_next_pass).then(|| QuickCheck {
            source_digest: digest,
            target_verified: Timestamp::now(),
        });
        let mailbox = self.mailbox;
        store
            .run(move |db| db.set_quick_check(mailbox, check))
            .await
            .map_err(|e| Error::Store {
                mailbox: self.email.clone(),
                action: "recording the quick check".into(),
                source: Box::new(e),
            })
    }
}
