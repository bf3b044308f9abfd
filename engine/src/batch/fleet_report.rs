//! The fleet report (`batch report NAME --merge SOURCE...`): the reports of a batch's
//! shards, each read from its own state directory or `serve --http`, merged into one — the
//! totals, every mailbox once (sorted by address), every skipped item, which shard holds
//! each, and which shards are missing from it.
//!
//! Pure: the caller fetches the reports ([`ShardAnswer`]) and names the sources that did not
//! answer ([`MissingShard`]); [`merge`] checks that the answers are shards of one migration
//! file and adds them up. Reports that cannot belong together (another batch, another
//! shard count, a shard given twice, a mailbox in two shards) are refused: adding them up
//! would count mail twice or report a fleet that does not exist.

use std::collections::{BTreeMap, HashMap};

use serde::Serialize;

use super::report::{
    BatchReport, BatchSummary, CSV_HEADER, MailboxSummary, SkippedSummary, csv_row,
};
use crate::error::Error;

/// The report one source answered with.
#[derive(Debug, Clone)]
pub struct ShardAnswer {
    /// The URL or directory it came from, as the user should read it (no credentials).
    pub source: String,
    pub report: BatchReport,
}

/// A source that gave no report, and why (one sentence).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MissingShard {
    pub source: String,
    pub reason: String,
}

/// One shard that answered: where from, which shard, its own totals.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetShard {
    /// Its index (from 0); `None` for a batch added without `--shard`.
    pub shard: Option<u32>,
    pub source: String,
    pub batch: BatchSummary,
}

/// A mailbox row with the shard that holds it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetMailbox {
    pub shard: Option<u32>,
    #[serde(flatten)]
    pub mailbox: MailboxSummary,
}

/// A skipped item with the shard that holds its mailbox.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetSkipped {
    pub shard: Option<u32>,
    #[serde(flatten)]
    pub item: SkippedSummary,
}

/// The merged report (its JSON is `batch report --merge --format json`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FleetReport {
    /// The totals over the shards that answered; `status` is the most pressing of theirs.
    pub batch: BatchSummary,
    /// N of `--shard I/N`; `None` when the batches were added without `--shard`.
    pub shard_count: Option<u32>,
    /// The shards that answered, by index.
    pub shards: Vec<FleetShard>,
    /// The sources that did not answer, in the order given.
    pub missing_shards: Vec<MissingShard>,
    /// Indexes of 0..N that no answer came from (not given, or given and silent).
    pub shards_not_given: Vec<u32>,
    /// Every mailbox of every answer, by address.
    pub mailboxes: Vec<FleetMailbox>,
    /// Every skipped item, by mailbox address, each mailbox's in its shard's order.
    pub skipped: Vec<FleetSkipped>,
    /// What the caller should tell the user but does not stop the merge (shards that name
    /// other endpoints).
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// The key mailboxes are compared and sorted by: the shard split hashes the trimmed,
/// lower-cased address (`shard.rs`), so `Anna@x` and `anna@x` are one mailbox.
fn mailbox_key(email: &str) -> String {
    email.trim().to_lowercase()
}

/// How pressing a batch status is for the fleet's status: a failed shard makes the fleet
/// Failed, a running one Syncing, and so on; the fleet is Completed only when all are.
fn status_rank(status: &str) -> u8 {
    match status {
        "Failed" => 0,
        "Syncing" => 1,
        "Completing" => 2,
        "Stopped" => 3,
        "Created" => 4,
        "Synced" => 5,
        "Completed" => 6,
        _ => 0,
    }
}

/// Merges the answers of a batch's shards. `answers` in any order; `missing` in the order
/// given. Fails with [`Error::ShardsDisagree`] when the answers cannot be shards of one
/// migration file, and when there is no answer at all.
pub fn merge(
    name: &str,
    answers: Vec<ShardAnswer>,
    missing: Vec<MissingShard>,
) -> Result<FleetReport, Error> {
    let disagree = |problem: String| Error::ShardsDisagree {
        batch: name.to_owned(),
        problem,
    };
    if answers.is_empty() {
        return Err(disagree("no source answered".to_owned()));
    }
    for a in &answers {
        if a.report.batch.name != name {
            return Err(disagree(format!(
                "{} holds batch {}, not {name}",
                a.source, a.report.batch.name
            )));
        }
    }

    // One shard count for all, distinct indexes.
    let first = &answers[0];
    let count = first.report.shard.map(|s| s.count);
    let mut by_index: BTreeMap<u32, &ShardAnswer> = BTreeMap::new();
    for a in &answers {
        let this = a.report.shard.map(|s| s.count);
        if this != count {
            return Err(disagree(format!(
                "{} holds {} but {} holds {}: every shard must be added with the same --shard count",
                first.source,
                shard_label(first),
                a.source,
                shard_label(a)
            )));
        }
        if let Some(s) = a.report.shard
            && let Some(other) = by_index.insert(s.index, a)
        {
            return Err(disagree(format!(
                "shard {}/{} is given twice ({} and {}): give each shard once",
                s.index, s.count, other.source, a.source
            )));
        }
    }

    // No mailbox in two shards: that mail would be counted (and was migrated) twice.
    let mut owner: HashMap<String, &ShardAnswer> = HashMap::new();
    for a in &answers {
        for m in &a.report.mailboxes {
            if let Some(other) = owner.insert(mailbox_key(&m.email), a) {
                return Err(disagree(format!(
                    "the mailbox {} is in {} ({}) and in {} ({}): the shards overlap, so their totals cannot be added",
                    m.email,
                    shard_label(other),
                    other.source,
                    shard_label(a),
                    a.source
                )));
            }
        }
    }

    let shards_not_given = match count {
        Some(n) => (0..n).filter(|i| !by_index.contains_key(i)).collect(),
        None => Vec::new(),
    };

    let mut answers = answers;
    // By shard index; unsharded batches keep the order given (a stable sort).
    answers.sort_by_key(|a| a.report.shard.map(|s| s.index));
    let mut warnings = Vec::new();
    for a in &answers[1..] {
        let (b, f) = (&a.report.batch, &answers[0].report.batch);
        if b.source != f.source || b.target != f.target {
            warnings.push(format!(
                "{} migrates from endpoint {} to {}, but {} from {} to {}: check that the shards were set up alike",
                a.source, b.source, b.target, answers[0].source, f.source, f.target
            ));
        }
    }

    let batch = totals(
        &answers[0].report.batch,
        answers[1..].iter().map(|a| &a.report.batch),
    );
    let mut mailboxes = Vec::new();
    let mut skipped = Vec::new();
    let mut shards = Vec::new();
    for a in answers {
        let index = a.report.shard.map(|s| s.index);
        mailboxes.extend(a.report.mailboxes.into_iter().map(|mailbox| FleetMailbox {
            shard: index,
            mailbox,
        }));
        skipped.extend(
            a.report
                .skipped
                .into_iter()
                .map(|item| FleetSkipped { shard: index, item }),
        );
        shards.push(FleetShard {
            shard: index,
            source: a.source,
            batch: a.report.batch,
        });
    }
    // Stable sorts: the same input gives the same file, and a mailbox's skipped items stay
    // in the order its shard listed them.
    mailboxes.sort_by(|a, b| {
        mailbox_key(&a.mailbox.email)
            .cmp(&mailbox_key(&b.mailbox.email))
            .then_with(|| a.mailbox.email.cmp(&b.mailbox.email))
    });
    skipped.sort_by_key(|s| mailbox_key(&s.item.email));

    Ok(FleetReport {
        batch,
        shard_count: count,
        shards,
        missing_shards: missing,
        shards_not_given,
        mailboxes,
        skipped,
        warnings,
    })
}

fn shard_label(a: &ShardAnswer) -> String {
    match a.report.shard {
        Some(s) => format!("shard {}/{}", s.index, s.count),
        None => "a batch added without --shard".to_owned(),
    }
}

/// The fleet's summary: counts added up, the most pressing status, the earliest creation
/// and next pass due, the latest pass started and finished; names and settings from the
/// first shard (by index).
fn totals<'a>(
    first: &BatchSummary,
    others: impl Iterator<Item = &'a BatchSummary>,
) -> BatchSummary {
    let mut t = first.clone();
    for s in others {
        if status_rank(&s.status) < status_rank(&t.status) {
            t.status = s.status.clone();
        }
        t.mailboxes_total += s.mailboxes_total;
        t.mailboxes_queued += s.mailboxes_queued;
        t.mailboxes_syncing += s.mailboxes_syncing;
        t.mailboxes_synced += s.mailboxes_synced;
        t.mailboxes_failed += s.mailboxes_failed;
        t.mailboxes_stopped += s.mailboxes_stopped;
        t.mailboxes_completed += s.mailboxes_completed;
        t.items_synced += s.items_synced;
        t.items_skipped += s.items_skipped;
        t.bytes_synced += s.bytes_synced;
        // RFC 3339 in UTC to the second (report.rs): the text orders as the time does.
        t.created = t.created.clone().min(s.created.clone());
        t.last_sync_started = t.last_sync_started.clone().max(s.last_sync_started.clone());
        t.last_sync_finished = t
            .last_sync_finished
            .clone()
            .max(s.last_sync_finished.clone());
        t.next_sync_due = match (t.next_sync_due.take(), s.next_sync_due.clone()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // Each shard delivers its own report; a failed delivery anywhere is shown.
        if t.report_delivery_error.is_none() {
            t.report_delivery_error = s.report_delivery_error.clone();
        }
        t.report_mailbox = t.report_mailbox.take().or(s.report_mailbox.clone());
        for copy in &s.report_copies {
            match t
                .report_copies
                .iter_mut()
                .find(|c| c.address == copy.address)
            {
                None => t.report_copies.push(copy.clone()),
                Some(c) if c.delivery_error.is_none() && copy.delivery_error.is_some() => {
                    c.delivery_error = copy.delivery_error.clone();
                    c.delivered = None;
                }
                Some(_) => {}
            }
        }
    }
    t
}

/// The header of the merged CSV: a single report's columns, then the shard.
const SHARD_COLUMN: &str = "Shard";

impl FleetReport {
    /// The merged report as one CSV table with the columns of `batch report` and a `Shard`
    /// column: the `batch` row (the totals; `Detail` says how many shards they cover), a
    /// `shard` row per shard that answered (its totals; `Detail` is its source), a
    /// `missing_shard` row per source that did not answer and per shard no answer came
    /// from, then the mailbox, skipped-item and folder rows of every shard, by address.
    pub fn to_csv(&self) -> Vec<u8> {
        let opt = |v: &Option<String>| v.clone().unwrap_or_default();
        let shard = |index: Option<u32>| match (index, self.shard_count) {
            (Some(i), Some(n)) => format!("{i}/{n}"),
            _ => String::new(),
        };
        let with_shard = |mut row: Vec<String>, shard: String| {
            row.push(shard);
            row
        };
        let b = &self.batch;
        let mut rows = Vec::new();
        let expected = self
            .shard_count
            .map(|n| n.to_string())
            .unwrap_or_else(|| self.shards.len().to_string());
        rows.push(with_shard(
            csv_row(&[
                ("Record", "batch".into()),
                ("Batch", b.name.clone()),
                ("Status", b.status.clone()),
                ("ItemsSynced", b.items_synced.to_string()),
                ("ItemsSkipped", b.items_skipped.to_string()),
                ("BytesSynced", b.bytes_synced.to_string()),
                ("LastSyncStarted", opt(&b.last_sync_started)),
                ("LastSyncFinished", opt(&b.last_sync_finished)),
                (
                    "Detail",
                    format!(
                        "totals of {} of {expected} shards, {} mailboxes",
                        self.shards.len(),
                        b.mailboxes_total
                    ),
                ),
            ]),
            String::new(),
        ));
        for s in &self.shards {
            let t = &s.batch;
            rows.push(with_shard(
                csv_row(&[
                    ("Record", "shard".into()),
                    ("Batch", t.name.clone()),
                    ("Status", t.status.clone()),
                    ("ItemsSynced", t.items_synced.to_string()),
                    ("ItemsSkipped", t.items_skipped.to_string()),
                    ("BytesSynced", t.bytes_synced.to_string()),
                    ("LastSyncStarted", opt(&t.last_sync_started)),
                    ("LastSyncFinished", opt(&t.last_sync_finished)),
                    ("Detail", s.source.clone()),
                ]),
                shard(s.shard),
            ));
        }
        for m in &self.missing_shards {
            rows.push(with_shard(
                csv_row(&[
                    ("Record", "missing_shard".into()),
                    ("Batch", b.name.clone()),
                    ("Reason", m.reason.clone()),
                    ("Detail", m.source.clone()),
                ]),
                String::new(),
            ));
        }
        for &i in &self.shards_not_given {
            rows.push(with_shard(
                csv_row(&[
                    ("Record", "missing_shard".into()),
                    ("Batch", b.name.clone()),
                    ("Reason", "no source answered for this shard".into()),
                ]),
                shard(Some(i)),
            ));
        }
        // The single-report rows of all mailboxes at once (already sorted), each given the
        // shard of the mailbox it names.
        let holder: HashMap<String, Option<u32>> = self
            .mailboxes
            .iter()
            .map(|m| (mailbox_key(&m.mailbox.email), m.shard))
            .collect();
        let merged = BatchReport {
            batch: self.batch.clone(),
            mailboxes: self.mailboxes.iter().map(|m| m.mailbox.clone()).collect(),
            skipped: self.skipped.iter().map(|s| s.item.clone()).collect(),
            shard: None,
        };
        let email_column = CSV_HEADER.iter().position(|h| *h == "EmailAddress");
        for row in merged.csv_records().into_iter().skip(1) {
            let email = email_column
                .and_then(|i| row.get(i))
                .map(|e| mailbox_key(e));
            let index = email.and_then(|e| holder.get(&e).copied()).flatten();
            rows.push(with_shard(row, shard(index)));
        }
        let mut w = csv::Writer::from_writer(Vec::new());
        // Writing to a Vec cannot fail; the csv crate still returns Results.
        let _ = w.write_record(CSV_HEADER.iter().copied().chain([SHARD_COLUMN]));
        for row in rows {
            let _ = w.write_record(row);
        }
        w.into_inner().unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use imapmirror_storage::BatchShard;

    fn summary(status: &str, mailboxes: u64, items: u64) -> BatchSummary {
        BatchSummary {
            name: "wave".into(),
            status: status.into(),
            source: "old".into(),
            target: "new".into(),
            excluded_folders: vec![],
            included_folders: vec![],
            mailboxes_total: mailboxes,
            mailboxes_queued: 0,
            mailboxes_syncing: 0,
            mailboxes_synced: mailboxes,
            mailboxes_failed: 0,
            mailboxes_stopped: 0,
            mailboxes_completed: 0,
            items_synced: items,
            items_skipped: 1,
            bytes_synced: items * 100,
            created: "2026-01-02T00:00:00Z".into(),
            last_sync_started: Some("2026-01-03T00:00:00Z".into()),
            last_sync_finished: Some("2026-01-03T01:00:00Z".into()),
            next_sync_due: Some("2026-01-04T01:00:00Z".into()),
            sync_interval_secs: 86_400,
            target_recheck_secs: None,
            report_mailbox: None,
            report_delivered: None,
            report_delivery_error: None,
            report_copies: vec![],
        }
    }

    fn mailbox(email: &str, items: u64) -> MailboxSummary {
        MailboxSummary {
            email: email.into(),
            user_name: email.into(),
            status: "Synced".into(),
            folders: 2,
            items_synced: items,
            items_skipped: 0,
            bytes_synced: items * 100,
            last_sync_started: None,
            last_sync_finished: None,
            last_pass_seconds: None,
            last_pass_outcome: None,
            last_pass_items: None,
            last_pass_rate_limit_wait_seconds: None,
            last_pass_throttle_wait_seconds: None,
            error: None,
            folders_skipped: vec![],
            folders_renamed: vec![],
        }
    }

    fn skipped(email: &str, subject: &str) -> SkippedSummary {
        SkippedSummary {
            copied: false,
            email: email.into(),
            folder: "INBOX".into(),
            date: None,
            subject: Some(subject.into()),
            from: None,
            sent: None,
            size: Some(9),
            reason: "too large".into(),
            detail: None,
        }
    }

    fn answer(source: &str, shard: Option<(u32, u32)>, emails: &[&str]) -> ShardAnswer {
        ShardAnswer {
            source: source.into(),
            report: BatchReport {
                batch: summary("Synced", emails.len() as u64, 10 * emails.len() as u64),
                mailboxes: emails.iter().map(|e| mailbox(e, 10)).collect(),
                skipped: emails
                    .iter()
                    .flat_map(|e| [skipped(e, "first"), skipped(e, "second")])
                    .collect(),
                shard: shard.map(|(index, count)| BatchShard { index, count }),
            },
        }
    }

    fn problem(r: Result<FleetReport, Error>) -> String {
        match r {
            Err(e @ Error::ShardsDisagree { .. }) => e.to_string(),
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn shards_add_up_and_mailboxes_sort_by_address() {
        let fleet = merge(
            "wave",
            vec![
                answer("http://s2", Some((2, 3)), &["carol@x.test", "Bob@x.test"]),
                answer("http://s0", Some((0, 3)), &["dave@x.test", "alice@x.test"]),
                answer("http://s1", Some((1, 3)), &["erin@x.test"]),
            ],
            vec![],
        )
        .expect("merges");
        assert_eq!(fleet.shard_count, Some(3));
        assert!(fleet.shards_not_given.is_empty());
        assert!(fleet.missing_shards.is_empty());
        let order: Vec<(&str, Option<u32>)> = fleet
            .mailboxes
            .iter()
            .map(|m| (m.mailbox.email.as_str(), m.shard))
            .collect();
        assert_eq!(
            order,
            [
                ("alice@x.test", Some(0)),
                ("Bob@x.test", Some(2)),
                ("carol@x.test", Some(2)),
                ("dave@x.test", Some(0)),
                ("erin@x.test", Some(1)),
            ]
        );
        assert_eq!(fleet.batch.mailboxes_total, 5);
        assert_eq!(fleet.batch.items_synced, 50);
        assert_eq!(fleet.batch.items_skipped, 3);
        assert_eq!(fleet.batch.bytes_synced, 5000);
        let shards: Vec<Option<u32>> = fleet.shards.iter().map(|s| s.shard).collect();
        assert_eq!(shards, [Some(0), Some(1), Some(2)]);
        // A mailbox's skipped items stay in their shard's order.
        let alice: Vec<&str> = fleet
            .skipped
            .iter()
            .filter(|s| s.item.email == "alice@x.test")
            .filter_map(|s| s.item.subject.as_deref())
            .collect();
        assert_eq!(alice, ["first", "second"]);
        assert_eq!(fleet.skipped.len(), 10);
        assert_eq!(fleet.skipped[0].item.email, "alice@x.test");
        assert_eq!(fleet.skipped[9].item.email, "erin@x.test");
    }

    #[test]
    fn the_fleet_status_is_the_most_pressing_and_times_span_the_shards() {
        let mut a = answer("a", Some((0, 2)), &["a@x.test"]);
        let mut b = answer("b", Some((1, 2)), &["b@x.test"]);
        a.report.batch.status = "Synced".into();
        b.report.batch.status = "Syncing".into();
        b.report.batch.created = "2025-12-31T00:00:00Z".into();
        b.report.batch.last_sync_started = Some("2026-01-05T00:00:00Z".into());
        b.report.batch.last_sync_finished = None;
        b.report.batch.next_sync_due = None;
        let fleet = merge("wave", vec![a.clone(), b.clone()], vec![]).expect("merges");
        assert_eq!(fleet.batch.status, "Syncing");
        assert_eq!(fleet.batch.created, "2025-12-31T00:00:00Z");
        assert_eq!(
            fleet.batch.last_sync_started.as_deref(),
            Some("2026-01-05T00:00:00Z")
        );
        assert_eq!(
            fleet.batch.last_sync_finished.as_deref(),
            Some("2026-01-03T01:00:00Z")
        );
        assert_eq!(
            fleet.batch.next_sync_due.as_deref(),
            Some("2026-01-04T01:00:00Z")
        );
        b.report.batch.status = "Failed".into();
        let fleet = merge("wave", vec![a, b], vec![]).expect("merges");
        assert_eq!(fleet.batch.status, "Failed");
    }

    #[test]
    fn missing_and_silent_shards_are_named() {
        let missing = vec![MissingShard {
            source: "http://s3".into(),
            reason: "the connection was refused".into(),
        }];
        let fleet = merge(
            "wave",
            vec![
                answer("http://s0", Some((0, 4)), &["a@x.test"]),
                answer("http://s2", Some((2, 4)), &["b@x.test"]),
            ],
            missing.clone(),
        )
        .expect("merges");
        assert_eq!(fleet.missing_shards, missing);
        assert_eq!(fleet.shards_not_given, [1, 3]);
        let json = serde_json::to_value(&fleet).expect("json");
        assert_eq!(json["missing_shards"][0]["source"], "http://s3");
        assert_eq!(json["shards_not_given"], serde_json::json!([1, 3]));
        assert_eq!(json["mailboxes"][0]["shard"], 0);
        assert_eq!(json["mailboxes"][0]["email"], "a@x.test");
        assert_eq!(json["skipped"][0]["reason"], "too large");
        assert_eq!(json["shard_count"], 4);
    }

    #[test]
    fn reports_that_are_not_shards_of_one_file_are_refused() {
        let p = problem(merge(
            "wave",
            vec![
                answer("s0", Some((0, 4)), &["a@x.test"]),
                answer("s1", Some((1, 3)), &["b@x.test"]),
            ],
            vec![],
        ));
        assert!(
            p.contains("s0 holds shard 0/4 but s1 holds shard 1/3"),
            "{p}"
        );
        let p = problem(merge(
            "wave",
            vec![
                answer("s0", Some((0, 2)), &["a@x.test"]),
                answer("all", None, &["b@x.test"]),
            ],
            vec![],
        ));
        assert!(
            p.contains("s0 holds shard 0/2 but all holds a batch added without --shard"),
            "{p}"
        );
        let p = problem(merge(
            "wave",
            vec![
                answer("one", Some((1, 2)), &["a@x.test"]),
                answer("again", Some((1, 2)), &["b@x.test"]),
            ],
            vec![],
        ));
        assert!(
            p.contains("shard 1/2 is given twice (one and again)"),
            "{p}"
        );
        let p = problem(merge(
            "wave",
            vec![
                answer("s0", Some((0, 2)), &["a@x.test"]),
                answer("s1", Some((1, 2)), &[" A@X.test"]),
            ],
            vec![],
        ));
        assert!(
            p.contains("is in shard 0/2 (s0) and in shard 1/2 (s1)"),
            "{p}"
        );
        let mut other = answer("s1", Some((1, 2)), &["b@x.test"]);
        other.report.batch.name = "wave-2".into();
        let p = problem(merge(
            "wave",
            vec![answer("s0", Some((0, 2)), &["a@x.test"]), other],
            vec![],
        ));
        assert!(p.contains("s1 holds batch wave-2, not wave"), "{p}");
        let p = problem(merge("wave", vec![], vec![]));
        assert!(p.contains("no source answered"), "{p}");
    }

    #[test]
    fn batches_without_shards_merge_when_their_mailboxes_do_not_overlap() {
        let fleet = merge(
            "wave",
            vec![
                answer("east", None, &["b@x.test"]),
                answer("west", None, &["a@x.test"]),
            ],
            vec![],
        )
        .expect("merges");
        assert_eq!(fleet.shard_count, None);
        assert!(fleet.shards_not_given.is_empty());
        let sources: Vec<&str> = fleet.shards.iter().map(|s| s.source.as_str()).collect();
        assert_eq!(sources, ["east", "west"]);
        assert_eq!(fleet.mailboxes[0].mailbox.email, "a@x.test");
    }

    #[test]
    fn shards_set_up_with_other_endpoints_are_warned_about() {
        let a = answer("s0", Some((0, 2)), &["a@x.test"]);
        let mut b = answer("s1", Some((1, 2)), &["b@x.test"]);
        b.report.batch.target = "elsewhere".into();
        let fleet = merge("wave", vec![b, a], vec![]).expect("merges");
        assert_eq!(fleet.warnings.len(), 1, "{:?}", fleet.warnings);
        assert!(fleet.warnings[0].contains("s1 migrates from endpoint old to elsewhere"));
    }

    #[test]
    fn the_csv_has_the_report_columns_a_shard_column_and_the_missing_shards() {
        let fleet = merge(
            "wave",
            vec![
                answer("http://s1", Some((1, 3)), &["b@x.test"]),
                answer("http://s0", Some((0, 3)), &["a@x.test", "c@x.test"]),
            ],
            vec![MissingShard {
                source: "http://s9".into(),
                reason: "no answer within 30 s".into(),
            }],
        )
        .expect("merges");
        let text = String::from_utf8(fleet.to_csv()).expect("utf-8");
        let mut reader = csv::Reader::from_reader(text.as_bytes());
        let header = reader.headers().expect("header").clone();
        assert_eq!(header.len(), CSV_HEADER.len() + 1);
        assert_eq!(&header[CSV_HEADER.len()], "Shard");
        let rows: Vec<csv::StringRecord> = reader.records().map(|r| r.expect("row")).collect();
        let col = |name: &str| header.iter().position(|h| h == name).expect(name);
        let (record, email, shard, items, detail, reason) = (
            col("Record"),
            col("EmailAddress"),
            col("Shard"),
            col("ItemsSynced"),
            col("Detail"),
            col("Reason"),
        );
        assert_eq!(&rows[0][record], "batch");
        assert_eq!(&rows[0][items], "30");
        assert_eq!(&rows[0][detail], "totals of 2 of 3 shards, 3 mailboxes");
        assert_eq!(
            (&rows[1][record], &rows[1][shard], &rows[1][detail]),
            ("shard", "0/3", "http://s0")
        );
        assert_eq!(&rows[1][items], "20");
        assert_eq!(&rows[2][shard], "1/3");
        assert_eq!(
            (&rows[3][record], &rows[3][detail], &rows[3][reason]),
            ("missing_shard", "http://s9", "no answer within 30 s")
        );
        assert_eq!(
            (&rows[4][record], &rows[4][shard]),
            ("missing_shard", "2/3")
        );
        let mailboxes: Vec<(&str, &str)> = rows
            .iter()
            .filter(|r| &r[record] == "mailbox")
            .map(|r| (r.get(email).unwrap_or(""), r.get(shard).unwrap_or("")))
            .collect();
        assert_eq!(
            mailboxes,
            [
                ("a@x.test", "0/3"),
                ("b@x.test", "1/3"),
                ("c@x.test", "0/3")
            ]
        );
        let skipped: Vec<&str> = rows
            .iter()
            .filter(|r| &r[record] == "skipped")
            .map(|r| r.get(shard).unwrap_or(""))
            .collect();
        assert_eq!(skipped, ["0/3", "0/3", "1/3", "1/3", "0/3", "0/3"]);
        assert!(rows.iter().all(|r| r.len() == header.len()));
    }
}
