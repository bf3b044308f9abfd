//! Adding a migration file to a batch that exists already (`batch add --if-exists
//! update`), so that a worker which starts over — a Kubernetes pod restarted, a cron job
//! run again — can repeat its `batch add` safely.
//!
//! What may change: rows the batch does not hold yet are added (queued), passwords and
//! tokens of rows it holds are replaced, and the settings that only steer later passes
//! (exclusions, size limit, bad-item limit, interval) take the new values. What may not,
//! because the state already recorded would then describe other mail: the endpoints, the
//! shard, and the accounts a row names (UserName, UserRoot, TargetUserName). Rows of the
//! batch that are no longer in the file are kept, with all they recorded, and counted:
//! removing a mailbox is `batch remove`'s decision, never a side effect of a shorter file.

use std::collections::HashMap;

use imapmirror_storage::{
    BatchRecord, BatchSettings, BatchShard, BatchStatus, MailboxCredentials, MailboxId,
    MailboxRecord, NewMailbox, Secret,
};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// What merging a file into an existing batch changed, for the CLI's sentence and `--json`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MergeSummary {
    /// Rows of the file the batch did not hold: added, queued.
    pub added: usize,
    /// Rows the batch held whose credentials differed: replaced.
    pub credentials_updated: usize,
    /// Rows the batch held as they are.
    pub unchanged: usize,
    /// Mailboxes of the batch that the file no longer lists: kept.
    pub not_in_file: usize,
    /// Whether exclusions, size limit, bad-item limit or interval changed.
    pub settings_changed: bool,
}

/// The writes a merge needs, decided before any is made.
#[derive(Debug)]
pub struct MergePlan {
    pub new_rows: Vec<NewMailbox>,
    pub credential_updates: Vec<(MailboxId, MailboxCredentials)>,
    /// The batch's settings after the merge.
    pub settings: BatchSettings,
    pub summary: MergeSummary,
}

/// Decides what adding `rows` (with `settings` and `shard`) to the existing `batch` does, or
/// why it is refused. `stored_credentials` reads a held mailbox's credentials.
pub fn plan_merge(
    batch: &BatchRecord,
    held: &[MailboxRecord],
    mut stored_credentials: impl FnMut(MailboxId) -> Result<MailboxCredentials, Error>,
    settings: BatchSettings,
    shard: Option<BatchShard>,
    rows: Vec<NewMailbox>,
) -> Result<MergePlan, Error> {
    let name = &batch.settings.name;
    let differs = |detail: String| Error::BatchDiffers {
        batch: name.clone(),
        detail,
    };
    if matches!(
        batch.status,
        BatchStatus::Completed | BatchStatus::Completing
    ) {
        return Err(differs(format!(
            "is {}, so its users already use (or are moving to) the target: add the new rows as a new batch",
            batch.status.as_str()
        )));
    }
    let old = &batch.settings;
    if (old.source_endpoint.as_str(), old.target_endpoint.as_str())
        != (
            settings.source_endpoint.as_str(),
            settings.target_endpoint.as_str(),
        )
    {
        return Err(differs(format!(
            "migrates from {} to {}, not from {} to {}: its recorded state is about those servers, so give the same endpoints or use another batch name",
            old.source_endpoint,
            old.target_endpoint,
            settings.source_endpoint,
            settings.target_endpoint
        )));
    }
    if batch.shard != shard {
        return Err(differs(format!(
            "holds {} of the migration file, not {}: with another shard split its mailboxes would move to workers with no record of what was copied (and be copied again), so keep the shard count of a running migration",
            shard_text(batch.shard),
            shard_text(shard)
        )));
    }
    let by_email: HashMap<String, &MailboxRecord> = held
        .iter()
        .map(|m| (m.row.email_address.trim().to_lowercase(), m))
        .collect();
    let mut summary = MergeSummary::default();
    let mut new_rows = Vec::new();
    let mut credential_updates = Vec::new();
    let mut listed = 0usize;
    for row in rows {
        let Some(record) = by_email.get(&row.row.email_address.trim().to_lowercase()) else {
            new_rows.push(row);
            continue;
        };
        listed += 1;
        let (was, now) = (&record.row, &row.row);
        for (column, a, b) in [
            (
                "UserName",
                Some(was.user_name.as_str()),
                Some(now.user_name.as_str()),
            ),
            (
                "UserRoot",
                was.user_root.as_deref(),
                now.user_root.as_deref(),
            ),
            (
                "TargetUserName",
                was.target_user_name.as_deref(),
                now.target_user_name.as_deref(),
            ),
        ] {
            if a.map(str::trim) != b.map(str::trim) {
                return Err(differs(format!(
                    "holds {} with {column} `{}`, but the file gives `{}`: the migrated state is about the other account, so remove the mailbox with its batch or give the row as it was",
                    now.email_address,
                    a.unwrap_or(""),
                    b.unwrap_or("")
                )));
            }
        }
        let stored = stored_credentials(record.id)?;
        let given = MailboxCredentials {
            password: row.password,
            target_password: row.target_password,
            refresh_token: row.refresh_token,
        };
        if same_credentials(&stored, &given) {
            summary.unchanged += 1;
        } else {
            summary.credentials_updated += 1;
            credential_updates.push((record.id, given));
        }
    }
    summary.added = new_rows.len();
    summary.not_in_file = held.len() - listed;
    summary.settings_changed = steering(old) != steering(&settings);
    Ok(MergePlan {
        new_rows,
        credential_updates,
        settings,
        summary,
    })
}

/// The settings a merge may change: they steer only later passes.
fn steering(s: &BatchSettings) -> impl PartialEq + '_ {
    (
        &s.excluded_folders,
        &s.included_folders,
        s.max_message_size,
        s.bad_item_limit,
        s.sync_interval_secs,
        &s.gmail_archive_folder,
        s.target_recheck_secs,
    )
}

fn same_credentials(a: &MailboxCredentials, b: &MailboxCredentials) -> bool {
    let same =
        |x: Option<&Secret>, y: Option<&Secret>| x.map(Secret::expose) == y.map(Secret::expose);
    same(Some(&a.password), Some(&b.password))
        && same(a.target_password.as_ref(), b.target_password.as_ref())
        && same(a.refresh_token.as_ref(), b.refresh_token.as_ref())
}

fn shard_text(shard: Option<BatchShard>) -> String {
    match shard {
        Some(s) => format!("shard {}/{}", s.index, s.count),
        None => "the whole file (no --shard)".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use imapmirror_storage::{BatchId, MailboxStatus, MigrationRow, Timestamp};

    use super::*;

    // Ids are the store's to make; a test makes them the way they travel.
    fn batch_id() -> BatchId {
        serde_json::from_str("1").expect("batch id")
    }

    fn mailbox_id(id: u64) -> MailboxId {
        serde_json::from_str(&format!(r#"{{"batch":1,"id":{id}}}"#)).expect("mailbox id")
    }

    fn settings() -> BatchSettings {
        BatchSettings::new("b", "old", "new")
    }

    fn batch(shard: Option<BatchShard>) -> BatchRecord {
        let now = Timestamp::now();
        BatchRecord {
            id: batch_id(),
            settings: settings(),
            status: BatchStatus::Synced,
            created: now,
            status_changed: now,
            last_sync_started: None,
            last_sync_finished: None,
            shard,
            passes_finished: 0,
            report_mailbox: None,
            report_copies: Vec::new(),
        }
    }

    fn row(email: &str, user: &str, password: &str) -> NewMailbox {
        NewMailbox {
            row: MigrationRow {
                email_address: email.into(),
                user_name: user.into(),
                user_root: None,
                target_user_name: None,
            },
            password: Secret::new(password),
            target_password: None,
            refresh_token: None,
        }
    }

    fn held(email: &str, user: &str, id: u64) -> MailboxRecord {
        MailboxRecord {
            id: mailbox_id(id),
            row: row(email, user, "").row,
            status: MailboxStatus::Synced,
            status_changed: Timestamp::now(),
            last_error: None,
            last_pass_started: None,
            last_pass_finished: None,
        }
    }

    fn stored(
        password: &'static str,
    ) -> impl FnMut(MailboxId) -> Result<MailboxCredentials, Error> {
        move |_| {
            Ok(MailboxCredentials {
                password: Secret::new(password),
                target_password: None,
                refresh_token: None,
            })
        }
    }

    #[test]
    fn the_same_file_again_changes_nothing() {
        let plan = plan_merge(
            &batch(None),
            &[held("a@x", "a", 1)],
            stored("pw"),
            settings(),
            None,
            vec![row("A@x", "a", "pw")],
        )
        .expect("merge");
        assert!(plan.new_rows.is_empty() && plan.credential_updates.is_empty());
        assert_eq!(
            plan.summary,
            MergeSummary {
                unchanged: 1,
                ..MergeSummary::default()
            }
        );
    }

    #[test]
    fn new_rows_are_added_changed_passwords_replaced_missing_rows_kept() {
        let mut s = settings();
        s.excluded_folders = vec!["Junk".into()];
        let plan = plan_merge(
            &batch(None),
            &[held("a@x", "a", 1), held("gone@x", "gone", 2)],
            stored("old"),
            s,
            None,
            vec![row("a@x", "a", "new"), row("b@x", "b", "pw")],
        )
        .expect("merge");
        assert_eq!(plan.new_rows.len(), 1);
        assert_eq!(plan.credential_updates.len(), 1);
        assert_eq!(plan.credential_updates[0].1.password.expose(), "new");
        assert_eq!(
            plan.summary,
            MergeSummary {
                added: 1,
                credentials_updated: 1,
                unchanged: 0,
                not_in_file: 1,
                settings_changed: true,
            }
        );
    }

    #[test]
    fn a_new_target_recheck_is_a_settings_change() {
        let mut s = settings();
        s.target_recheck_secs = Some(0);
        let plan = plan_merge(&batch(None), &[], stored(""), s, None, vec![]).expect("merge");
        assert!(plan.summary.settings_changed, "{:?}", plan.summary);
        assert_eq!(plan.settings.target_recheck_secs, Some(0));
        let same =
            plan_merge(&batch(None), &[], stored(""), settings(), None, vec![]).expect("merge");
        assert!(!same.summary.settings_changed, "{:?}", same.summary);
    }

    #[test]
    fn other_endpoints_shard_or_account_are_refused() {
        let mut s = settings();
        s.target_endpoint = "elsewhere".into();
        let e = plan_merge(&batch(None), &[], stored(""), s, None, vec![]).unwrap_err();
        assert!(e.to_string().contains("from old to new"), "{e}");

        let quarter = Some(BatchShard { index: 1, count: 4 });
        let eighth = Some(BatchShard { index: 1, count: 8 });
        let e =
            plan_merge(&batch(quarter), &[], stored(""), settings(), eighth, vec![]).unwrap_err();
        assert!(
            e.to_string().contains("shard 1/4") && e.to_string().contains("shard 1/8"),
            "{e}"
        );

        let e = plan_merge(
            &batch(None),
            &[held("a@x", "a", 1)],
            stored("pw"),
            settings(),
            None,
            vec![row("a@x", "someone-else", "pw")],
        )
        .unwrap_err();
        assert!(e.to_string().contains("UserName `a`"), "{e}");
    }

    #[test]
    fn a_completed_batch_takes_no_rows() {
        let mut b = batch(None);
        b.status = BatchStatus::Completed;
        let e = plan_merge(&b, &[], stored(""), settings(), None, vec![]).unwrap_err();
        assert!(e.to_string().contains("is Completed"), "{e}");
    }
}
