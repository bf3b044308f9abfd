//! Reports into a mailbox (`batch add --report-mailbox ADDRESS`): after every pass over a
//! batch, its report goes into ADDRESS's INBOX on the batch's target endpoint as a MIME
//! message — a text summary, and the CSV report (exactly what `batch report NAME --format
//! csv` prints) attached as `NAME-report.csv` — so that an admin gets it in a mail client
//! without any SMTP server. The message is APPENDed over IMAP, logged in with the target
//! endpoint's admin credentials (or its OAuth grant) for ADDRESS.
//!
//! A delivery that fails never fails the pass: it is logged and recorded with the batch
//! (`batch status` shows the last delivery and its error), and the next pass delivers a
//! report of its own.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use imapmirror_protocol::{AppendMessage, LiteralBody, MailboxName};
use imapmirror_storage::{
    BatchRecord, Database, EndpointRecord, ReportDelivery, ReportMailbox, Timestamp,
};
use mail_builder::MessageBuilder;
use mail_builder::headers::content_type::ContentType;
use mail_builder::headers::raw::Raw;
use tokio_util::sync::CancellationToken;

use crate::batch::report::{BatchReport, MailboxSummary, batch_report};
use crate::endpoint::connection::endpoint_access;
use crate::endpoint::credentials::{EndpointAccess, LoginMethod, admin_login};
use crate::endpoint::pool::{CommandCounters, EndpointPool, JobLabel};
use crate::error::Error;

/// How long one delivery may take, connecting and its retries included.
pub const DELIVERY_TIMEOUT: Duration = Duration::from_secs(120);

/// Failed mailboxes named in the summary; the CSV has them all.
const ERRORS_LISTED: usize = 20;

/// Checks an address given to `--report-mailbox`: it becomes a login name and a header.
pub fn check_address(address: &str) -> Result<(), Error> {
    let problem = if address.trim().is_empty() {
        Some("it is empty")
    } else if address.chars().any(|c| c.is_control() || c.is_whitespace()) {
        Some("it holds spaces or control characters")
    } else if address.contains(['<', '>', '"', ',']) {
        Some("it holds <, >, \" or ,")
    } else {
        None
    };
    match problem {
        Some(problem) => Err(Error::InvalidSetting {
            problem: format!(
                "the report mailbox `{}` is not usable because {problem} (give the address whose INBOX gets the report, e.g. admin@example.com)",
                address.escape_debug()
            ),
        }),
        None => Ok(()),
    }
}

/// The addresses `batch add --report-mailbox` gave, the report mailbox first: each once.
pub fn report_mailboxes(first: Option<String>, copies: Vec<String>) -> Result<Vec<String>, Error> {
    let all: Vec<String> = first.into_iter().chain(copies).collect();
    for (i, address) in all.iter().enumerate() {
        if all[..i].iter().any(|a| a.eq_ignore_ascii_case(address)) {
            return Err(Error::InvalidSetting {
                problem: format!(
                    "--report-mailbox {address} is given twice: give each address once"
                ),
            });
        }
    }
    Ok(all)
}

/// Makes `addresses` the batch's report mailbox and copies, in that order; an address it
/// held already keeps its last delivery.
pub fn set_report_mailboxes(batch: &mut BatchRecord, addresses: Vec<String>) {
    let mut held: Vec<ReportMailbox> = batch
        .report_mailbox
        .take()
        .into_iter()
        .chain(std::mem::take(&mut batch.report_copies))
        .collect();
    let mut mailboxes =
        addresses.into_iter().map(
            |address| match held.iter().position(|r| r.address == address) {
                Some(i) => held.swap_remove(i),
                None => ReportMailbox {
                    address,
                    last_delivery: None,
                },
            },
        );
    batch.report_mailbox = mailboxes.next();
    batch.report_copies = mailboxes.collect();
}

/// The login that opens `address`'s mailbox on the target: the endpoint's admin
/// credentials, or its XOAUTH2 grant (an app token acting for `address`).
pub fn report_login(address: &str, target: &EndpointAccess) -> Result<LoginMethod, Error> {
    if let Some(admin) = &target.admin {
        return admin_login(admin.format, &admin.user, &admin.password, address);
    }
    if target.xoauth2 {
        return Ok(LoginMethod::XOAuth2 {
            user: address.to_owned(),
            refresh_token: None,
        });
    }
    Err(Error::InvalidSetting {
        problem: format!(
            "the report mailbox {address} can only be reached with the admin credentials of the target endpoint {}, and it has none (add it with --admin-user, --admin-password-file and --admin-format)",
            target.name
        ),
    })
}

/// What delivering one pass's report needs, read from the store at the end of the pass.
pub struct ReportJob {
    pub address: String,
    pub pass: u64,
    pub report: BatchReport,
    /// From the pass's start to its end.
    pub duration: Option<Duration>,
    pub target: EndpointRecord,
    pub login: LoginMethod,
}

/// A report that could not be prepared for one of the batch's report mailboxes.
#[derive(Debug)]
pub struct Unprepared {
    pub address: String,
    /// The pass it was to report, so that the failure is recorded against it.
    pub pass: u64,
    /// Why, as a sentence for the log and `batch status`.
    pub error: String,
}

/// Reads what the report of the pass that just ended over `batch` needs, for each of its
/// report mailboxes (none: nothing to deliver); runs inside a storage job.
pub fn prepare(db: &Database, batch: &BatchRecord) -> Vec<Result<ReportJob, Unprepared>> {
    let pass = batch.passes_finished;
    let addresses: Vec<String> = batch
        .report_mailboxes()
        .map(|m| m.address.clone())
        .collect();
    if addresses.is_empty() {
        return Vec::new();
    }
    // The report and the target are the same for every address.
    let common = (|| -> Result<_, Error> {
        let name = &batch.settings.target_endpoint;
        let target = db
            .endpoint(name)
            .map_err(|source| Error::State {
                action: format!("reading the target endpoint {name}"),
                source,
            })?
            .ok_or_else(|| Error::InvalidSetting {
                problem: format!("the target endpoint {name} no longer exists"),
            })?;
        let access = endpoint_access(db, &target)?;
        Ok((target, access, batch_report(db, batch)?))
    })()
    .map_err(|e| e.to_string());
    let duration = match (batch.last_sync_started, batch.last_sync_finished) {
        (Some(a), Some(b)) if b >= a => {
            Some(Duration::from_millis(b.unix_millis() - a.unix_millis()))
        }
        _ => None,
    };
    addresses
        .into_iter()
        .map(|address| {
            let (target, access, report) = match &common {
                Ok(c) => c,
                Err(error) => {
                    return Err(Unprepared {
                        address,
                        pass,
                        error: error.clone(),
                    });
                }
            };
            match report_login(&address, access) {
                Ok(login) => Ok(ReportJob {
                    address,
                    pass,
                    report: report.clone(),
                    duration,
                    target: target.clone(),
                    login,
                }),
                Err(e) => Err(Unprepared {
                    address,
                    pass,
                    error: e.to_string(),
                }),
            }
        })
        .collect()
}

impl ReportJob {
    /// The message, dated `now`, from `imapmirror@host`.
    pub fn message(&self, now: Timestamp, host: &str) -> Vec<u8> {
        compose(
            &self.report,
            self.pass,
            self.duration,
            &self.address,
            now,
            host,
        )
    }

    /// APPENDs the report into the INBOX of the report mailbox over a connection of `pool`
    /// (the target's). The error is a sentence for the log and `batch status`.
    pub async fn deliver(
        &self,
        pool: &EndpointPool,
        cancel: &CancellationToken,
    ) -> Result<(), String> {
        let message = Bytes::from(self.message(Timestamp::now(), &local_host()));
        let attempt = async {
            let counters = Arc::new(CommandCounters::default());
            let who = JobLabel {
                batch: &self.report.batch.name,
                mailbox: &self.address,
            };
            let mut conn = pool
                .connect(&self.login, &counters, &who, cancel)
                .await
                .map_err(|e| e.to_string())?;
            CommandCounters::bump(&counters.appends);
            let appended = conn
                .session
                .append(
                    MailboxName::Unicode("INBOX"),
                    &[AppendMessage {
                        flags: &[],
                        internal_date: None,
                        body: LiteralBody::Bytes(message),
                    }],
                )
                .await
                .map_err(|e| {
                    Error::Imap {
                        mailbox: self.address.clone(),
                        action: "appending the batch report to INBOX".to_owned(),
                        source: Box::new(e),
                    }
                    .to_string()
                });
            conn.close().await;
            appended.map(drop)
        };
        match tokio::time::timeout(DELIVERY_TIMEOUT, attempt).await {
            Ok(result) => result,
            Err(_) => Err(format!(
                "delivering the report to {} took longer than {} s",
                self.address,
                DELIVERY_TIMEOUT.as_secs()
            )),
        }
    }
}

/// Records how the delivery of pass `pass`'s report to `address` went; runs inside a
/// storage job. An address no longer among the batch's (changed meanwhile) is not
/// recorded.
pub fn record(
    db: &Database,
    batch: &str,
    address: &str,
    pass: u64,
    error: Option<String>,
) -> Result<(), Error> {
    db.update_batch(batch, |b| {
        if let Some(mailbox) = b.report_mailbox_mut(address) {
            mailbox.last_delivery = Some(ReportDelivery {
                pass,
                at: Timestamp::now(),
                error,
            });
        }
    })
    .map(drop)
    .map_err(|source| Error::State {
        action: format!("recording the report delivery of batch {batch}"),
        source,
    })
}

/// This host's name as a mail domain (`localhost` when it is not usable as one).
pub fn local_host() -> String {
    let name = gethostname::gethostname().to_string_lossy().into_owned();
    let usable = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        && !name.starts_with(['.', '-']);
    if usable { name } else { "localhost".to_owned() }
}

/// `imapmirror: batch NAME pass N — 98 synced, 2 failed`.
pub fn subject(report: &BatchReport, pass: u64) -> String {
    let b = &report.batch;
    let mut counts = vec![
        format!("{} synced", b.mailboxes_synced),
        format!("{} failed", b.mailboxes_failed),
    ];
    if b.mailboxes_stopped > 0 {
        counts.push(format!("{} stopped", b.mailboxes_stopped));
    }
    format!(
        "imapmirror: batch {} pass {pass} \u{2014} {}",
        b.name,
        counts.join(", ")
    )
}

/// The text part: the batch's state after the pass, in a few lines a phone shows whole.
pub fn summary_text(report: &BatchReport, pass: u64, duration: Option<Duration>) -> String {
    let b = &report.batch;
    let mut t = String::new();
    let mut line = |s: String| {
        t.push_str(&s);
        t.push('\n');
    };
    line(format!("Batch {}, pass {pass}: {}", b.name, b.status));
    line(format!("From {} to {}.", b.source, b.target));
    match (&b.last_sync_started, &b.last_sync_finished) {
        (Some(start), Some(end)) => line(format!(
            "The pass started {start} and ended {end}{}.",
            duration.map_or(String::new(), |d| format!(" ({})", seconds(d)))
        )),
        (_, Some(end)) => line(format!("The pass ended {end}.")),
        _ => {}
    }
    line(String::new());
    line(format!("Mailboxes: {}", b.mailboxes_total));
    for (label, n) in [
        ("synced", b.mailboxes_synced),
        ("failed", b.mailboxes_failed),
        ("completed", b.mailboxes_completed),
        ("stopped", b.mailboxes_stopped),
        ("queued", b.mailboxes_queued),
        ("syncing", b.mailboxes_syncing),
    ] {
        if n > 0 || matches!(label, "synced" | "failed") {
            line(format!("  {label:<10} {n}"));
        }
    }
    let this_pass: u64 = report
        .mailboxes
        .iter()
        .filter_map(|m| m.last_pass_items)
        .sum();
    line(format!(
        "Messages copied: {} ({}) in all passes, {this_pass} in this pass",
        b.items_synced,
        bytes_text(b.bytes_synced)
    ));
    line(format!("Skipped items: {}", b.items_skipped));
    // Only when something waited: the line tells an administrator whether --max-rate or
    // a server's throttling, rather than the servers' speed, set the pass's pace.
    let waited = |f: fn(&MailboxSummary) -> Option<f64>| -> f64 {
        report.mailboxes.iter().filter_map(f).sum()
    };
    let (budget, throttled) = (
        waited(|m| m.last_pass_rate_limit_wait_seconds),
        waited(|m| m.last_pass_throttle_wait_seconds),
    );
    if budget > 0.0 || throttled > 0.0 {
        line(format!(
            "Waiting in this pass, summed over connections: {} for the rate budget (--max-rate), {} for servers that asked to slow down",
            seconds(Duration::from_secs_f64(budget)),
            seconds(Duration::from_secs_f64(throttled))
        ));
    }
    let failed: Vec<_> = report
        .mailboxes
        .iter()
        .filter_map(|m| m.error.as_ref().map(|e| (&m.email, e)))
        .collect();
    if failed.is_empty() {
        line("Errors: none".to_owned());
    } else {
        line(format!("Errors: {}", failed.len()));
        for (email, error) in failed.iter().take(ERRORS_LISTED) {
            line(format!("  {email}: {error}"));
        }
        if failed.len() > ERRORS_LISTED {
            line(format!(
                "  and {} more (see the attached report)",
                failed.len() - ERRORS_LISTED
            ));
        }
    }
    line(String::new());
    line(format!(
        "The attached {}-report.csv is the full report, as `imapmirror batch report {} --format csv` prints it.",
        b.name, b.name
    ));
    t
}

fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 120.0 {
        format!("{s:.1} s")
    } else {
        let total = d.as_secs();
        format!("{}h{:02}m{:02}s", total / 3600, total / 60 % 60, total % 60)
    }
}

fn bytes_text(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "kB", "MB", "GB", "TB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1000.0 && unit < UNITS.len() - 1 {
        value /= 1000.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// The whole message: headers, the summary and the CSV report attached.
pub fn compose(
    report: &BatchReport,
    pass: u64,
    duration: Option<Duration>,
    address: &str,
    now: Timestamp,
    host: &str,
) -> Vec<u8> {
    let name = &report.batch.name;
    let millis = now.unix_millis();
    MessageBuilder::new()
        .from(("imapmirror".to_owned(), format!("imapmirror@{host}")))
        .to(address.to_owned())
        .subject(subject(report, pass))
        .date((millis / 1000) as i64)
        .message_id(format!("imapmirror.{name}.{pass}.{millis}@{host}"))
        // RFC 3834: no vacation or out-of-office answer to a machine's report.
        .header("Auto-Submitted", Raw::new("auto-generated"))
        .text_body(summary_text(report, pass, duration))
        .attachment(
            ContentType::new("text/csv").attribute("charset", "utf-8"),
            format!("{name}-report.csv"),
            report.to_csv(),
        )
        .write_to_vec()
        // Writing into a Vec cannot fail.
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::report::{BatchSummary, MailboxSummary, SkippedSummary};
    use crate::endpoint::credentials::{AdminCredentials, AdminFormat, Secret};
    use mail_parser::{MessageParser, MimeHeaders};

    fn report() -> BatchReport {
        let mailbox = |email: &str, error: Option<&str>| MailboxSummary {
            email: email.into(),
            user_name: email.into(),
            status: if error.is_some() { "Failed" } else { "Synced" }.into(),
            folders: 4,
            items_synced: 120,
            items_skipped: 1,
            bytes_synced: 1_500_000,
            last_sync_started: Some("2026-05-01T10:00:00Z".into()),
            last_sync_finished: Some("2026-05-01T10:00:09Z".into()),
            last_pass_seconds: Some(9.0),
            last_pass_outcome: Some("succeeded".into()),
            last_pass_items: Some(20),
            last_pass_rate_limit_wait_seconds: None,
            last_pass_throttle_wait_seconds: None,
            error: error.map(str::to_owned),
            folders_skipped: vec![],
            folders_renamed: vec![],
        };
        BatchReport {
            batch: BatchSummary {
                name: "wave-1".into(),
                status: "Failed".into(),
                source: "old".into(),
                target: "new".into(),
                excluded_folders: vec![],
                included_folders: vec![],
                mailboxes_total: 3,
                mailboxes_queued: 0,
                mailboxes_syncing: 0,
                mailboxes_synced: 2,
                mailboxes_failed: 1,
                mailboxes_stopped: 0,
                mailboxes_completed: 0,
                items_synced: 360,
                items_skipped: 3,
                bytes_synced: 4_500_000,
                created: "2026-05-01T09:00:00Z".into(),
                last_sync_started: Some("2026-05-01T10:00:00Z".into()),
                last_sync_finished: Some("2026-05-01T10:00:12Z".into()),
                next_sync_due: None,
                sync_interval_secs: 86_400,
                target_recheck_secs: None,
                report_mailbox: Some("admin@example.test".into()),
                report_delivered: None,
                report_delivery_error: None,
                report_copies: vec![],
            },
            shard: None,
            mailboxes: vec![
                mailbox("a@example.test", None),
                mailbox("b@example.test", None),
                mailbox(
                    "c@example.test",
                    Some("The source refused the login of c@example.test"),
                ),
            ],
            skipped: vec![SkippedSummary {
                copied: false,
                email: "a@example.test".into(),
                folder: "INBOX".into(),
                date: None,
                subject: Some("Été, \"quoted\", line\nbreak".into()),
                from: None,
                sent: None,
                size: Some(40_000_000),
                reason: "too_large".into(),
                detail: None,
            }],
        }
    }

    #[test]
    fn the_message_parses_with_its_summary_and_the_csv_attached_byte_for_byte() {
        let r = report();
        let now = Timestamp::from_unix_millis(1_777_777_777_000);
        let bytes = compose(
            &r,
            3,
            Some(Duration::from_secs(12)),
            "admin@example.test",
            now,
            "mirror.example.test",
        );
        let parsed = MessageParser::default()
            .parse(&bytes)
            .expect("the report parses");
        assert_eq!(
            parsed.subject(),
            Some("imapmirror: batch wave-1 pass 3 \u{2014} 2 synced, 1 failed")
        );
        let from = parsed.from().and_then(|a| a.first()).expect("from");
        assert_eq!(from.address(), Some("imapmirror@mirror.example.test"));
        assert_eq!(from.name(), Some("imapmirror"));
        assert_eq!(
            parsed
                .to()
                .and_then(|a| a.first())
                .and_then(|a| a.address()),
            Some("admin@example.test")
        );
        assert_eq!(parsed.date().map(|d| d.to_timestamp()), Some(1_777_777_777));
        assert_eq!(
            parsed.message_id(),
            Some("imapmirror.wave-1.3.1777777777000@mirror.example.test")
        );
        let text = parsed.body_text(0).expect("text part");
        for needle in [
            "Batch wave-1, pass 3: Failed",
            "synced     2",
            "failed     1",
            "Messages copied: 360 (4.5 MB) in all passes, 60 in this pass",
            "Skipped items: 3",
            "c@example.test: The source refused the login",
            "(12.0 s)",
        ] {
            assert!(text.contains(needle), "{needle:?} not in\n{text}");
        }
        assert_eq!(parsed.attachment_count(), 1);
        let csv = parsed.attachment(0).expect("attachment");
        assert_eq!(csv.attachment_name(), Some("wave-1-report.csv"));
        assert_eq!(csv.contents(), r.to_csv().as_slice());
        // Every line of the raw message ends in CRLF, as IMAP wants it.
        assert!(
            !bytes.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r'),
            "bare LF in the message"
        );
    }

    #[test]
    fn the_summary_says_what_the_pass_waited_for_only_when_it_waited() {
        let mut r = report();
        let text = summary_text(&r, 3, None);
        assert!(!text.contains("Waiting"), "{text}");
        r.mailboxes[0].last_pass_rate_limit_wait_seconds = Some(30.0);
        r.mailboxes[1].last_pass_rate_limit_wait_seconds = Some(15.5);
        r.mailboxes[1].last_pass_throttle_wait_seconds = Some(2.0);
        let text = summary_text(&r, 3, None);
        assert!(
            text.contains(
                "Waiting in this pass, summed over connections: 45.5 s for the rate budget (--max-rate), 2.0 s for servers that asked to slow down"
            ),
            "{text}"
        );
    }

    #[test]
    fn report_mailboxes_are_replaced_keeping_what_an_address_kept_went_through() {
        let err = report_mailboxes(Some("a@x".into()), vec!["b@x".into(), "A@X".into()])
            .expect_err("twice");
        assert!(err.to_string().contains("given twice"), "{err}");
        let mut batch = BatchRecord {
            report_mailbox: Some(ReportMailbox {
                address: "a@x".into(),
                last_delivery: Some(ReportDelivery {
                    pass: 4,
                    at: Timestamp::from_unix_millis(1),
                    error: Some("refused".into()),
                }),
            }),
            id: serde_json::from_str("1").expect("a batch id"),
            settings: imapmirror_storage::BatchSettings::new("b", "src", "tgt"),
            status: imapmirror_storage::BatchStatus::Synced,
            created: Timestamp::from_unix_millis(1),
            status_changed: Timestamp::from_unix_millis(1),
            last_sync_started: None,
            last_sync_finished: None,
            shard: None,
            passes_finished: 4,
            report_copies: Vec::new(),
        };
        let given = report_mailboxes(Some("b@x".into()), vec!["a@x".into()]).expect("once each");
        set_report_mailboxes(&mut batch, given);
        let addresses: Vec<&str> = batch
            .report_mailboxes()
            .map(|r| r.address.as_str())
            .collect();
        assert_eq!(addresses, ["b@x", "a@x"]);
        assert_eq!(
            batch
                .report_mailbox
                .as_ref()
                .and_then(|r| r.last_delivery.as_ref()),
            None
        );
        assert_eq!(
            batch.report_copies[0]
                .last_delivery
                .as_ref()
                .map(|d| d.pass),
            Some(4),
            "a@x keeps its failed delivery"
        );
    }

    #[test]
    fn addresses_are_checked() {
        assert!(check_address("admin@example.test").is_ok());
        for bad in ["", " ", "a b@x", "a\r\n@x", "<a@x>", "a,b@x"] {
            assert!(check_address(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_report_logs_in_with_the_admin_credentials() {
        let mut access = EndpointAccess {
            name: "new".into(),
            admin: Some(AdminCredentials {
                format: AdminFormat::Dovecot { separator: '*' },
                user: "mailadmin".into(),
                password: Secret::new("pw"),
            }),
            xoauth2: false,
        };
        assert!(matches!(
            report_login("admin@example.test", &access),
            Ok(LoginMethod::Login { user, .. }) if user == "admin@example.test*mailadmin"
        ));
        access.admin = None;
        let err = report_login("admin@example.test", &access).expect_err("no admin");
        assert!(err.to_string().contains("target endpoint new"), "{err}");
        access.xoauth2 = true;
        assert!(matches!(
            report_login("admin@example.test", &access),
            Ok(LoginMethod::XOAuth2 { .. })
        ));
    }

    #[test]
    fn the_host_is_a_usable_domain() {
        let host = local_host();
        assert!(!host.is_empty() && !host.contains(' '), "{host}");
    }
}
