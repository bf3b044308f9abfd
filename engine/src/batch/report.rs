//! What `batch status`, `batch users` and `batch report` show: per-batch summaries,
//! per-mailbox rows and skipped items, read from the store, serialisable as the JSON of
//! CLI.md and writable as one CSV table. The readers take the [`Database`] of a storage
//! job: call them inside one (`store.run_value(move |db| batch_summary(db, &b))`).

use std::time::Duration;

use imapmirror_storage::{
    BatchRecord, BatchShard, BatchStatus, Database, MailboxRecord, MailboxStatus, PassOutcome,
    Timestamp,
};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// One batch (`batch status --json`; the field names are CLI.md's contract).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchSummary {
    pub name: String,
    pub status: String,
    pub source: String,
    pub target: String,
    pub excluded_folders: Vec<String>,
    /// Folders of other namespaces copied by name (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub included_folders: Vec<String>,
    pub mailboxes_total: u64,
    pub mailboxes_queued: u64,
    pub mailboxes_syncing: u64,
    pub mailboxes_synced: u64,
    pub mailboxes_failed: u64,
    pub mailboxes_stopped: u64,
    pub mailboxes_completed: u64,
    pub items_synced: u64,
    pub items_skipped: u64,
    pub bytes_synced: u64,
    pub created: String,
    pub last_sync_started: Option<String>,
    pub last_sync_finished: Option<String>,
    /// When the scheduler runs the next incremental pass (Synced and Failed batches).
    pub next_sync_due: Option<String>,
    pub sync_interval_secs: u64,
    /// Seconds a pass that finds nothing new on the source may trust the target as the
    /// last full pass saw it (`batch add --target-recheck`; 0: every pass looks); absent:
    /// the engine's default, `TARGET_RECHECK`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_recheck_secs: Option<u64>,
    /// The address whose INBOX on the target gets the report after every pass (absent
    /// when none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_mailbox: Option<String>,
    /// When the last report was delivered there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_delivered: Option<String>,
    /// Why the last delivery failed (cleared by the next one that succeeds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub report_delivery_error: Option<String>,
    /// Further addresses that get a copy of every report, with how their last delivery
    /// went (absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub report_copies: Vec<ReportCopyView>,
}

/// A further address that gets a copy of the batch report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportCopyView {
    pub address: String,
    /// When the last copy was delivered (absent after a failure, or before any).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivered: Option<String>,
    /// Why the last delivery failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delivery_error: Option<String>,
}

/// One mailbox (`batch users --json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MailboxSummary {
    pub email: String,
    pub user_name: String,
    pub status: String,
    pub folders: u64,
    pub items_synced: u64,
    pub items_skipped: u64,
    pub bytes_synced: u64,
    pub last_sync_started: Option<String>,
    pub last_sync_finished: Option<String>,
    /// How long the last pass took, in seconds.
    pub last_pass_seconds: Option<f64>,
    /// `succeeded`, `failed` or `stopped`.
    pub last_pass_outcome: Option<String>,
    /// Messages copied by the last pass.
    pub last_pass_items: Option<u64>,
    /// Seconds the last pass's copy steps waited for the endpoints' rate budgets
    /// (`--max-rate`), summed over its connections: a pass that mostly waited is held
    /// back by the budget, not by the servers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pass_rate_limit_wait_seconds: Option<f64>,
    /// Seconds the last pass waited out because a server asked it to slow down
    /// (throttled APPENDs, back-off before reconnecting), summed over its connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_pass_throttle_wait_seconds: Option<f64>,
    pub error: Option<String>,
    /// Source folders the last pass left alone (a folder deleted or renamed on the
    /// source while the pass ran); they resume if they come back.
    pub folders_skipped: Vec<FolderSkipView>,
    /// Source folders the last pass found renamed and renamed on the target too, with
    /// their state (nothing copied again).
    pub folders_renamed: Vec<FolderRenameView>,
}

/// A source folder's rename that a pass followed on the target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderRenameView {
    pub from: String,
    pub to: String,
}

/// A folder a pass did not sync, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderSkipView {
    pub folder: String,
    pub reason: String,
}

/// A message that was not migrated, and why — or, with `copied`, one migrated without
/// the keywords the target refused (the keywords are in `detail`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedSummary {
    /// The message is on the target, only without its keywords.
    #[serde(default)]
    pub copied: bool,
    pub email: String,
    pub folder: String,
    /// INTERNALDATE on the source (RFC 3339).
    pub date: Option<String>,
    pub subject: Option<String>,
    /// The first From address, `Name <address>`.
    #[serde(default)]
    pub from: Option<String>,
    /// The message's Date field (RFC 3339), when it names a valid instant.
    #[serde(default)]
    pub sent: Option<String>,
    pub size: Option<u64>,
    pub reason: String,
    pub detail: Option<String>,
}

/// `batch report`: the summary, every mailbox and every skipped item.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BatchReport {
    pub batch: BatchSummary,
    pub mailboxes: Vec<MailboxSummary>,
    pub skipped: Vec<SkippedSummary>,
    /// The shard of the migration file this state directory holds (`batch add --shard`),
    /// so that a fleet report (`fleet_report.rs`) can check the shards fit together.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<BatchShard>,
}

fn state_err(action: String) -> impl FnOnce(imapmirror_storage::StoreError) -> Error {
    move |source| Error::State { action, source }
}

impl BatchSummary {
    /// The totals the metrics show ([`crate::migration_metrics::record_batch`]). Its
    /// `mailboxes_synced` counts `Completed` mailboxes too (they are synced for `batch
    /// status`); there a mailbox is in one state.
    pub fn stored_totals(&self) -> crate::migration_metrics::StoredTotals {
        crate::migration_metrics::StoredTotals {
            messages: self.items_synced,
            bytes: self.bytes_synced,
            skipped: self.items_skipped,
            // In `MAILBOX_STATES` order.
            mailboxes: [
                self.mailboxes_queued,
                self.mailboxes_syncing,
                self.mailboxes_synced
                    .saturating_sub(self.mailboxes_completed),
                self.mailboxes_failed,
                self.mailboxes_stopped,
                self.mailboxes_completed,
            ],
        }
    }
}

/// The summary of one batch.
pub fn batch_summary(db: &Database, batch: &BatchRecord) -> Result<BatchSummary, Error> {
    let name = &batch.settings.name;
    let mailboxes = db
        .mailboxes(batch.id)
        .map_err(state_err(format!("reading the mailboxes of batch {name}")))?;
    let totals = db
        .batch_totals(batch.id)
        .map_err(state_err(format!("adding up batch {name}")))?;
    let count =
        |status: MailboxStatus| mailboxes.iter().filter(|m| m.status == status).count() as u64;
    let last_delivery = batch
        .report_mailbox
        .as_ref()
        .and_then(|r| r.last_delivery.as_ref());
    let next_sync_due = match batch.status {
        BatchStatus::Synced | BatchStatus::Failed => batch
            .last_sync_finished
            .map(|t| rfc3339(next_due(t, batch.settings.sync_interval_secs))),
        _ => None,
    };
    Ok(BatchSummary {
        name: name.clone(),
        status: batch.status.as_str().to_owned(),
        source: batch.settings.source_endpoint.clone(),
        target: batch.settings.target_endpoint.clone(),
        excluded_folders: batch.settings.excluded_folders.clone(),
        included_folders: batch.settings.included_folders.clone(),
        mailboxes_total: totals.mailboxes_total,
        mailboxes_queued: count(MailboxStatus::Queued),
        mailboxes_syncing: count(MailboxStatus::Syncing),
        mailboxes_synced: totals.mailboxes_synced,
        mailboxes_failed: totals.mailboxes_failed,
        mailboxes_stopped: count(MailboxStatus::Stopped),
        mailboxes_completed: count(MailboxStatus::Completed),
        items_synced: totals.items_synced,
        items_skipped: totals.items_skipped,
        bytes_synced: totals.bytes_synced,
        created: rfc3339(batch.created),
        last_sync_started: batch.last_sync_started.map(rfc3339),
        last_sync_finished: batch.last_sync_finished.map(rfc3339),
        next_sync_due,
        sync_interval_secs: batch.settings.sync_interval_secs,
        target_recheck_secs: batch.settings.target_recheck_secs,
        report_mailbox: batch.report_mailbox.as_ref().map(|r| r.address.clone()),
        report_delivered: last_delivery
            .filter(|d| d.error.is_none())
            .map(|d| rfc3339(d.at)),
        report_delivery_error: last_delivery.and_then(|d| d.error.clone()),
        report_copies: batch
            .report_copies
            .iter()
            .map(|r| ReportCopyView {
                address: r.address.clone(),
                delivered: r
                    .last_delivery
                    .as_ref()
                    .filter(|d| d.error.is_none())
                    .map(|d| rfc3339(d.at)),
                delivery_error: r.last_delivery.as_ref().and_then(|d| d.error.clone()),
            })
            .collect(),
    })
}

/// When the next incremental pass is due after a pass that finished at `finished`.
pub fn next_due(finished: Timestamp, interval_secs: u64) -> Timestamp {
    Timestamp::from_unix_millis(
        finished
            .unix_millis()
            .saturating_add(interval_secs.saturating_mul(1000)),
    )
}

/// The row of one mailbox.
pub fn mailbox_summary(db: &Database, m: &MailboxRecord) -> Result<MailboxSummary, Error> {
    let email = &m.row.email_address;
    let counters = db
        .mailbox_counters(m.id)
        .map_err(state_err(format!("reading the counters of {email}")))?;
    let last = db
        .last_pass(m.id)
        .map_err(state_err(format!("reading the pass history of {email}")))?;
    Ok(MailboxSummary {
        email: email.clone(),
        user_name: m.row.user_name.clone(),
        status: m.status.as_str().to_owned(),
        folders: counters.folders,
        items_synced: counters.messages,
        items_skipped: counters.skipped,
        bytes_synced: counters.bytes,
        last_sync_started: m.last_pass_started.map(rfc3339),
        last_sync_finished: m.last_pass_finished.map(rfc3339),
        last_pass_seconds: last.as_ref().map(|p| {
            Duration::from_millis(
                p.finished
                    .unix_millis()
                    .saturating_sub(p.started.unix_millis()),
            )
            .as_secs_f64()
        }),
        last_pass_outcome: last.as_ref().map(|p| {
            match p.outcome {
                PassOutcome::Succeeded => "succeeded",
                PassOutcome::Failed => "failed",
                PassOutcome::Stopped => "stopped",
            }
            .to_owned()
        }),
        last_pass_items: last.as_ref().map(|p| p.items_copied),
        last_pass_rate_limit_wait_seconds: last
            .as_ref()
            .map(|p| Duration::from_millis(p.rate_limit_wait_ms).as_secs_f64()),
        last_pass_throttle_wait_seconds: last
            .as_ref()
            .map(|p| Duration::from_millis(p.throttle_wait_ms).as_secs_f64()),
        error: m.last_error.clone(),
        folders_skipped: last
            .as_ref()
            .map(|p| {
                p.folders_skipped
                    .iter()
                    .map(|f| FolderSkipView {
                        folder: f.folder.clone(),
                        reason: f.reason.clone(),
                    })
                    .collect()
            })
            .unwrap_or_default(),
        folders_renamed: last
            .map(|p| {
                p.folders_renamed
                    .into_iter()
                    .map(|f| FolderRenameView {
                        from: f.from,
                        to: f.to,
                    })
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// Every mailbox of a batch, in migration-file order.
pub fn mailbox_summaries(db: &Database, batch: &BatchRecord) -> Result<Vec<MailboxSummary>, Error> {
    db.mailboxes(batch.id)
        .map_err(state_err(format!(
            "reading the mailboxes of batch {}",
            batch.settings.name
        )))?
        .iter()
        .map(|m| mailbox_summary(db, m))
        .collect()
}

/// The full report of a batch.
pub fn batch_report(db: &Database, batch: &BatchRecord) -> Result<BatchReport, Error> {
    let mut skipped = Vec::new();
    let records = db.mailboxes(batch.id).map_err(state_err(format!(
        "reading the mailboxes of batch {}",
        batch.settings.name
    )))?;
    for m in &records {
        let email = &m.row.email_address;
        for s in db
            .skipped_items(m.id)
            .map_err(state_err(format!("reading the skipped items of {email}")))?
        {
            skipped.push(SkippedSummary {
                copied: !s.item.reason.left_behind(),
                email: email.clone(),
                folder: s.folder_name,
                date: s.item.internal_date.map(rfc3339),
                subject: s.item.subject,
                from: s.item.from,
                sent: s.item.sent.map(rfc3339),
                size: s.item.size,
                reason: s.item.reason.as_str().to_owned(),
                detail: s.item.detail,
            });
        }
    }
    Ok(BatchReport {
        batch: batch_summary(db, batch)?,
        mailboxes: records
            .iter()
            .map(|m| mailbox_summary(db, m))
            .collect::<Result<_, _>>()?,
        skipped,
        shard: batch.shard,
    })
}

pub(crate) const CSV_HEADER: [&str; 22] = [
    "Record",
    "Batch",
    "Status",
    "EmailAddress",
    "Folders",
    "ItemsSynced",
    "ItemsSkipped",
    "BytesSynced",
    "LastSyncStarted",
    "LastSyncFinished",
    "LastPassSeconds",
    "Error",
    "Folder",
    "Date",
    "Subject",
    "From",
    "SentDate",
    "Size",
    "Reason",
    "Detail",
    // Added after the others, so that a script reading columns by position still works.
    "LastPassRateLimitWaitSeconds",
    "LastPassThrottleWaitSeconds",
];

/// One CSV row: the named columns filled, the others empty.
pub(crate) fn csv_row(cells: &[(&str, String)]) -> Vec<String> {
    let mut row = vec![String::new(); CSV_HEADER.len()];
    for (name, value) in cells {
        let column = CSV_HEADER.iter().position(|h| h == name);
        debug_assert!(column.is_some(), "{name} is not a report column");
        if let Some(i) = column {
            row[i] = value.clone();
        }
    }
    row
}

impl BatchReport {
    /// The report as one CSV table: a `batch` row, one `mailbox` row per mailbox, one
    /// `skipped` row per skipped item (`copied_without_keywords` for a message the
    /// target took only without its keywords), one `skipped_folder` row per folder the last pass
    /// left alone and one `renamed_folder` row per source rename it followed (the `Record`
    /// column says which), so that a spreadsheet filter separates
    /// them and no second file is needed.
    pub fn to_csv(&self) -> Vec<u8> {
        let mut w = csv::Writer::from_writer(Vec::new());
        // Writing to a Vec cannot fail; the csv crate still returns Results.
        let _ = w.write_record(CSV_HEADER);
        for row in self.csv_records() {
            let _ = w.write_record(row);
        }
        w.into_inner().unwrap_or_default()
    }

    /// The rows of [`BatchReport::to_csv`] below its header, the `batch` row first; every
    /// other row names its mailbox in `EmailAddress`.
    pub(crate) fn csv_records(&self) -> Vec<Vec<String>> {
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        let num = |v: Option<u64>| v.map(|n| n.to_string()).unwrap_or_default();
        let b = &self.batch;
        let mut rows = vec![csv_row(&[
            ("Record", "batch".into()),
            ("Batch", b.name.clone()),
            ("Status", b.status.clone()),
            ("ItemsSynced", b.items_synced.to_string()),
            ("ItemsSkipped", b.items_skipped.to_string()),
            ("BytesSynced", b.bytes_synced.to_string()),
            ("LastSyncStarted", opt(&b.last_sync_started)),
            ("LastSyncFinished", opt(&b.last_sync_finished)),
        ])];
        for m in &self.mailboxes {
            rows.push(csv_row(&[
                ("Record", "mailbox".into()),
                ("Batch", b.name.clone()),
                ("Status", m.status.clone()),
                ("EmailAddress", m.email.clone()),
                ("Folders", m.folders.to_string()),
                ("ItemsSynced", m.items_synced.to_string()),
                ("ItemsSkipped", m.items_skipped.to_string()),
                ("BytesSynced", m.bytes_synced.to_string()),
                ("LastSyncStarted", opt(&m.last_sync_started)),
                ("LastSyncFinished", opt(&m.last_sync_finished)),
                (
                    "LastPassSeconds",
                    m.last_pass_seconds
                        .map(|s| format!("{s:.1}"))
                        .unwrap_or_default(),
                ),
                ("Error", opt(&m.error)),
                (
                    "LastPassRateLimitWaitSeconds",
                    m.last_pass_rate_limit_wait_seconds
                        .map(|s| format!("{s:.1}"))
                        .unwrap_or_default(),
                ),
                (
                    "LastPassThrottleWaitSeconds",
                    m.last_pass_throttle_wait_seconds
                        .map(|s| format!("{s:.1}"))
                        .unwrap_or_default(),
                ),
            ]));
        }
        for s in &self.skipped {
            let record = if s.copied {
                "copied_without_keywords"
            } else {
                "skipped"
            };
            rows.push(csv_row(&[
                ("Record", record.into()),
                ("Batch", b.name.clone()),
                ("EmailAddress", s.email.clone()),
                ("Folder", s.folder.clone()),
                ("Date", opt(&s.date)),
                ("Subject", opt(&s.subject)),
                ("From", opt(&s.from)),
                ("SentDate", opt(&s.sent)),
                ("Size", num(s.size)),
                ("Reason", s.reason.clone()),
                ("Detail", opt(&s.detail)),
            ]));
        }
        for m in &self.mailboxes {
            for f in &m.folders_skipped {
                rows.push(csv_row(&[
                    ("Record", "skipped_folder".into()),
                    ("Batch", b.name.clone()),
                    ("EmailAddress", m.email.clone()),
                    ("Folder", f.folder.clone()),
                    ("Reason", f.reason.clone()),
                ]));
            }
            for f in &m.folders_renamed {
                rows.push(csv_row(&[
                    ("Record", "renamed_folder".into()),
                    ("Batch", b.name.clone()),
                    ("EmailAddress", m.email.clone()),
                    ("Folder", f.to.clone()),
                    (
                        "Reason",
                        "renamed on the source; renamed on the target too".into(),
                    ),
                    ("Detail", format!("was {}", f.from)),
                ]));
            }
        }
        rows
    }
}

/// `2024-05-01T12:34:56Z`: RFC 3339 in UTC, to the second.
pub fn rfc3339(t: Timestamp) -> String {
    let secs = t.unix_millis() / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian, days since 1970-01-01).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_print_as_rfc3339_utc() {
        assert_eq!(
            rfc3339(Timestamp::from_unix_millis(0)),
            "1970-01-01T00:00:00Z"
        );
        assert_eq!(
            rfc3339(Timestamp::from_unix_millis(951_827_696_000)),
            "2000-02-29T12:34:56Z"
        );
        assert_eq!(
            rfc3339(Timestamp::from_unix_millis(1_735_689_599_999)),
            "2024-12-31T23:59:59Z"
        );
    }

    #[test]
    fn next_due_adds_the_interval() {
        let t = next_due(Timestamp::from_unix_millis(1_000), 86_400);
        assert_eq!(t.unix_millis(), 1_000 + 86_400_000);
    }

    fn summary() -> BatchSummary {
        BatchSummary {
            name: "wave-1".into(),
            status: "Synced".into(),
            source: "src".into(),
            target: "tgt".into(),
            excluded_folders: vec![],
            included_folders: vec![],
            mailboxes_total: 1,
            mailboxes_queued: 0,
            mailboxes_syncing: 0,
            mailboxes_synced: 1,
            mailboxes_failed: 0,
            mailboxes_stopped: 0,
            mailboxes_completed: 0,
            items_synced: 3,
            items_skipped: 1,
            bytes_synced: 300,
            created: "2024-01-01T00:00:00Z".into(),
            last_sync_started: None,
            last_sync_finished: None,
            next_sync_due: None,
            sync_interval_secs: 86_400,
            target_recheck_secs: None,
            report_mailbox: None,
            report_delivered: None,
            report_delivery_error: None,
            report_copies: vec![],
        }
    }

    #[test]
    fn csv_report_is_one_table_with_a_record_column() {
        let report = BatchReport {
            batch: summary(),
            mailboxes: vec![MailboxSummary {
                email: "a@example.test".into(),
                user_name: "a".into(),
                status: "Synced".into(),
                folders: 2,
                items_synced: 3,
                items_skipped: 1,
                bytes_synced: 300,
                last_sync_started: None,
                last_sync_finished: None,
                last_pass_seconds: Some(1.25),
                last_pass_outcome: Some("succeeded".into()),
                last_pass_items: Some(3),
                last_pass_rate_limit_wait_seconds: None,
                last_pass_throttle_wait_seconds: None,
                error: None,
                folders_skipped: vec![FolderSkipView {
                    folder: "Projects".into(),
                    reason: "vanished from the source during the pass".into(),
                }],
                folders_renamed: vec![FolderRenameView {
                    from: "Old.Reports".into(),
                    to: "Reports".into(),
                }],
            }],
            skipped: vec![SkippedSummary {
                copied: false,
                email: "a@example.test".into(),
                folder: "INBOX".into(),
                date: None,
                subject: Some("Big, \"quoted\"".into()),
                from: Some("Jürgen <j@example.org>".into()),
                sent: Some("2021-03-14T08:26:53Z".into()),
                size: Some(99_000_000),
                reason: "too large".into(),
                detail: None,
            }],
            shard: None,
        };
        let text = String::from_utf8(report.to_csv()).expect("utf-8");
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
        assert_eq!(rows.len(), 5, "{text}");
        assert_eq!(&rows[0][0], "batch");
        assert_eq!(&rows[1][0], "mailbox");
        assert_eq!(&rows[1][3], "a@example.test");
        assert_eq!(&rows[2][0], "skipped");
        assert_eq!(&rows[2][14], "Big, \"quoted\"");
        assert_eq!(&rows[2][15], "Jürgen <j@example.org>");
        assert_eq!(&rows[2][16], "2021-03-14T08:26:53Z");
        assert_eq!(&rows[2][18], "too large");
        assert_eq!(&rows[3][0], "skipped_folder");
        assert_eq!(&rows[3][3], "a@example.test");
        assert_eq!(&rows[3][12], "Projects");
        assert_eq!(&rows[3][18], "vanished from the source during the pass");
        assert_eq!(&rows[4][0], "renamed_folder");
        assert_eq!(&rows[4][12], "Reports");
        assert_eq!(&rows[4][19], "was Old.Reports");
        assert!(rows.iter().all(|r| r.len() == CSV_HEADER.len()));
    }
}
