//! The status pages of `serve --http`: every batch at `/`, every mailbox of one batch at
//! `/batch/NAME` — server-rendered HTML with its style inline and no script or external
//! asset, readable on a phone, reloading itself every [`REFRESH_SECS`]. Pure functions of
//! the same summaries `batch status`/`users`/`report` print and of the live progress;
//! the handlers in `status_http.rs` fetch those.

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use imapmirror_engine::batch::report::{BatchSummary, MailboxSummary, SkippedSummary};

use crate::live_progress::{BatchLiveView, MailboxLive};
use crate::text_output::bytes;

/// The pages reload themselves this often.
pub const REFRESH_SECS: u32 = 10;

/// Mailbox rows per page of a batch: a 10,000-mailbox batch stays a page a phone opens.
pub const MAILBOXES_PER_PAGE: usize = 500;

/// Skipped items listed on a batch page; the CSV report has them all.
pub const SKIPPED_SHOWN: usize = 200;

/// Which mailboxes of a batch page to show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MailboxFilter {
    /// Only mailboxes in this status (`Failed`, `Syncing`, …).
    pub status: Option<String>,
    /// The page, from 0.
    pub page: usize,
}

const STATUSES: [&str; 6] = [
    "Queued",
    "Syncing",
    "Synced",
    "Failed",
    "Stopped",
    "Completed",
];

const STYLE: &str = "\
:root{color-scheme:light dark;--muted:#777;--line:#8884;--bad:#c62828;--good:#2e7d32;--busy:#1565c0}
body{font:15px/1.4 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;padding:12px;max-width:1200px}
h1{font-size:1.3em;margin:.2em 0}h2{font-size:1.1em;margin:1.2em 0 .4em}
a{color:inherit}.muted{color:var(--muted)}
.scroll{overflow-x:auto}table{border-collapse:collapse;width:100%}
th,td{padding:4px 8px;border-bottom:1px solid var(--line);text-align:left;vertical-align:top;white-space:nowrap}
td.num,th.num{text-align:right}td.wrap{white-space:normal;min-width:14em}
.s{display:inline-block;padding:0 6px;border-radius:8px;font-size:.85em;border:1px solid var(--line)}
.s-Failed{color:var(--bad);border-color:var(--bad)}.s-Synced,.s-Completed{color:var(--good);border-color:var(--good)}
.s-Syncing{color:var(--busy);border-color:var(--busy)}
.cards{display:flex;flex-wrap:wrap;gap:8px}.card{border:1px solid var(--line);border-radius:6px;padding:6px 10px;min-width:8em}
.card b{display:block;font-size:1.2em}
progress{width:8em;vertical-align:middle}
nav a{margin-right:.8em}
";

/// The page around `body`, titled `title`.
fn page(title: &str, body: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
<meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">\
<title>{} — imapmirror</title><style>{STYLE}</style></head><body>\n{body}\
<p class=\"muted\">imapmirror {} · {} · reloads every {REFRESH_SECS} s</p>\n</body></html>\n",
        esc(title),
        env!("CARGO_PKG_VERSION"),
        esc(&now_text()),
    )
}

/// Every batch: state, mailboxes per state, totals, rate, last and next pass.
pub fn overview(batches: &[BatchSummary], live: &dyn Fn(&str) -> BatchLiveView) -> String {
    let mut b = String::from("<h1>Migration batches</h1>\n");
    if batches.is_empty() {
        b.push_str("<p>No batches yet: add one with <code>imapmirror batch add</code>.</p>\n");
        return page("Batches", &b);
    }
    b.push_str(
        "<div class=\"scroll\"><table><thead><tr><th>Batch</th><th>State</th><th>Mailboxes</th>\
<th class=\"num\">Messages</th><th class=\"num\">Bytes</th><th class=\"num\">Skipped</th>\
<th class=\"num\">Throughput</th><th>Last pass</th><th>Next pass</th></tr></thead><tbody>\n",
    );
    for s in batches {
        let view = live(&s.name);
        let _ = writeln!(
            b,
            "<tr><td><a href=\"/batch/{}\">{}</a><br><span class=\"muted\">{} → {}</span></td>\
<td>{}</td><td class=\"wrap\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
<td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td></tr>",
            path_segment(&s.name),
            esc(&s.name),
            esc(&s.source),
            esc(&s.target),
            status_chip(&s.status),
            mailbox_counts(s),
            s.items_synced,
            bytes(s.bytes_synced),
            s.items_skipped,
            rate(&view),
            pass_times(
                s.last_sync_started.as_deref(),
                s.last_sync_finished.as_deref()
            ),
            opt_time(s.next_sync_due.as_deref()),
        );
    }
    b.push_str("</tbody></table></div>\n");
    page("Batches", &b)
}

/// One batch: its summary, the mailboxes running now, every mailbox (filtered, paged)
/// and the first skipped items.
pub fn batch_page(
    s: &BatchSummary,
    users: &[MailboxSummary],
    skipped: &[SkippedSummary],
    live: &BatchLiveView,
    filter: &MailboxFilter,
) -> String {
    let name = path_segment(&s.name);
    let mut b = format!(
        "<nav><a href=\"/\">← all batches</a><a href=\"/batches/{name}/report.csv\">report (CSV)</a>\
<a href=\"/batches/{name}/users\">JSON</a></nav>\n<h1>{} {}</h1>\n<p class=\"muted\">{} → {}{}</p>\n",
        esc(&s.name),
        status_chip(&s.status),
        esc(&s.source),
        esc(&s.target),
        if s.excluded_folders.is_empty() {
            String::new()
        } else {
            format!(" · excluded: {}", esc(&s.excluded_folders.join(", ")))
        },
    );
    let _ = writeln!(
        b,
        "<div class=\"cards\">{}{}{}{}{}{}</div>",
        card("Mailboxes", &s.mailboxes_total.to_string()),
        card("Messages", &s.items_synced.to_string()),
        card("Bytes", &bytes(s.bytes_synced)),
        card("Skipped", &s.items_skipped.to_string()),
        card("Throughput", &rate(live)),
        card(
            "Next pass",
            &s.next_sync_due
                .as_deref()
                .map_or("—".to_owned(), short_time)
        ),
    );
    let _ = writeln!(
        b,
        "<p>{} · last pass {}</p>",
        mailbox_counts(s),
        pass_times(
            s.last_sync_started.as_deref(),
            s.last_sync_finished.as_deref()
        )
    );

    if !live.running.is_empty() {
        let _ = writeln!(
            b,
            "<h2>Running now ({})</h2><div class=\"scroll\"><table><thead><tr><th>Mailbox</th>\
<th>Pass</th><th>Folders</th><th class=\"num\">Messages</th><th class=\"num\">Bytes</th>\
<th>Folder</th><th>Since</th></tr></thead><tbody>",
            live.running.len()
        );
        for (email, m) in &live.running {
            running_row(&mut b, email, m);
        }
        b.push_str("</tbody></table></div>\n");
    }

    // The filter links, with counts.
    let counts = status_counts(users);
    b.push_str("<h2>Mailboxes</h2><nav>");
    let _ = write!(
        b,
        "<a href=\"/batch/{name}\">{}all ({}){}</a>",
        if filter.status.is_none() { "<b>" } else { "" },
        users.len(),
        if filter.status.is_none() { "</b>" } else { "" },
    );
    for (status, n) in counts.iter().filter(|(_, n)| *n > 0) {
        let on = filter.status.as_deref() == Some(status);
        let _ = write!(
            b,
            "<a href=\"/batch/{name}?status={status}\">{}{status} ({n}){}</a>",
            if on { "<b>" } else { "" },
            if on { "</b>" } else { "" },
        );
    }
    b.push_str("</nav>\n");
    let shown: Vec<&MailboxSummary> = users
        .iter()
        .filter(|u| filter.status.as_ref().is_none_or(|s| &u.status == s))
        .collect();
    let pages = shown.len().div_ceil(MAILBOXES_PER_PAGE).max(1);
    let page_no = filter.page.min(pages - 1);
    b.push_str(
        "<div class=\"scroll\"><table><thead><tr><th>Mailbox</th><th>State</th>\
<th class=\"num\">Folders</th><th class=\"num\">Messages</th><th class=\"num\">Bytes</th>\
<th class=\"num\">Skipped</th><th>Last pass</th><th>Error</th></tr></thead><tbody>\n",
    );
    for u in shown
        .iter()
        .skip(page_no * MAILBOXES_PER_PAGE)
        .take(MAILBOXES_PER_PAGE)
    {
        let last = match (u.last_pass_seconds, u.last_pass_outcome.as_deref()) {
            (Some(secs), Some(outcome)) => format!(
                "{} <span class=\"muted\">({outcome}, {secs:.1} s, {} copied{})</span>",
                opt_time(u.last_sync_finished.as_deref()),
                u.last_pass_items.unwrap_or(0),
                waits(u)
            ),
            _ => opt_time(u.last_sync_finished.as_deref()),
        };
        let _ = writeln!(
            b,
            "<tr id=\"{}\"><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
<td class=\"num\">{}</td><td class=\"num\">{}</td><td>{last}</td><td class=\"wrap\">{}</td></tr>",
            esc(&u.email),
            esc(&u.email),
            status_chip(&u.status),
            u.folders,
            u.items_synced,
            bytes(u.bytes_synced),
            u.items_skipped,
            u.error.as_deref().map(esc).unwrap_or_default(),
        );
    }
    b.push_str("</tbody></table></div>\n");
    if pages > 1 {
        b.push_str("<nav>Page ");
        for p in 0..pages {
            let status = filter
                .status
                .as_deref()
                .map(|s| format!("status={}&amp;", esc(s)))
                .unwrap_or_default();
            if p == page_no {
                let _ = write!(b, "<b>{}</b> ", p + 1);
            } else {
                let _ = write!(
                    b,
                    "<a href=\"/batch/{name}?{status}page={p}\">{}</a> ",
                    p + 1
                );
            }
        }
        b.push_str("</nav>\n");
    }

    if !skipped.is_empty() {
        let without_keywords = skipped.iter().filter(|i| i.copied).count();
        let _ = writeln!(
            b,
            "<h2>Skipped items ({}), copied without keywords ({without_keywords}){}</h2><div class=\"scroll\"><table><thead><tr><th>Mailbox</th>\
<th>Folder</th><th>Subject</th><th>From</th><th>Date</th><th class=\"num\">Size</th>\
<th>Reason</th></tr></thead><tbody>",
            skipped.len() - without_keywords,
            if skipped.len() > SKIPPED_SHOWN {
                format!(", the first {SKIPPED_SHOWN} shown; all in the CSV report")
            } else {
                String::new()
            }
        );
        for item in skipped.iter().take(SKIPPED_SHOWN) {
            let reason = match (&item.detail, item.copied) {
                (Some(d), true) => format!("copied without keywords: {}", esc(d)),
                (Some(d), false) => format!("{}: {}", esc(&item.reason), esc(d)),
                (None, _) => esc(&item.reason),
            };
            let _ = writeln!(
                b,
                "<tr><td>{}</td><td>{}</td><td class=\"wrap\">{}</td><td>{}</td><td>{}</td>\
<td class=\"num\">{}</td><td class=\"wrap\">{reason}</td></tr>",
                esc(&item.email),
                esc(&item.folder),
                item.subject.as_deref().map(esc).unwrap_or_default(),
                item.from.as_deref().map(esc).unwrap_or_default(),
                opt_time(item.sent.as_deref().or(item.date.as_deref())),
                item.size.map(bytes).unwrap_or_default(),
            );
        }
        b.push_str("</tbody></table></div>\n");
    }
    page(&s.name, &b)
}

fn running_row(b: &mut String, email: &str, m: &MailboxLive) {
    let folders = if m.folders_planned == 0 {
        "planning".to_owned()
    } else {
        format!(
            "<progress max=\"{}\" value=\"{}\"></progress> {}/{}",
            m.folders_planned, m.folders_done, m.folders_done, m.folders_planned
        )
    };
    let since = m
        .started
        .duration_since(UNIX_EPOCH)
        .map(|d| time_text(d.as_secs()))
        .unwrap_or_default();
    let _ = writeln!(
        b,
        "<tr><td><a href=\"#{}\">{}</a></td><td>{}</td><td>{folders}</td><td class=\"num\">{}</td>\
<td class=\"num\">{}</td><td>{}</td><td>{since}</td></tr>",
        esc(email),
        esc(email),
        esc(&m.kind),
        m.messages,
        bytes(m.bytes),
        m.folder.as_deref().map(esc).unwrap_or_default(),
    );
}

fn card(label: &str, value: &str) -> String {
    format!(
        "<div class=\"card\"><span class=\"muted\">{}</span><b>{}</b></div>",
        esc(label),
        esc(value)
    )
}

fn status_chip(status: &str) -> String {
    // The class is only ever one of ours: a status from elsewhere gets none.
    let class = STATUSES
        .iter()
        .chain(["Created", "Stopping", "Removing"].iter())
        .find(|s| **s == status)
        .copied()
        .unwrap_or("other");
    format!("<span class=\"s s-{class}\">{}</span>", esc(status))
}

fn mailbox_counts(s: &BatchSummary) -> String {
    let counts = [
        ("Queued", s.mailboxes_queued),
        ("Syncing", s.mailboxes_syncing),
        ("Synced", s.mailboxes_synced),
        ("Failed", s.mailboxes_failed),
        ("Stopped", s.mailboxes_stopped),
        ("Completed", s.mailboxes_completed),
    ];
    let parts: Vec<String> = counts
        .iter()
        .filter(|(_, n)| *n > 0)
        .map(|(status, n)| format!("{n} {}", status_chip(status)))
        .collect();
    if parts.is_empty() {
        "none".to_owned()
    } else {
        format!("{} of {}", parts.join(" "), s.mailboxes_total)
    }
}

/// What the last pass waited for, as a clause of its "Last pass" cell (empty when
/// nothing): the pace was set by the rate budget or a server's throttling.
fn waits(u: &MailboxSummary) -> String {
    let mut out = String::new();
    for (secs, what) in [
        (u.last_pass_rate_limit_wait_seconds, "for the rate budget"),
        (u.last_pass_throttle_wait_seconds, "throttled by a server"),
    ] {
        if let Some(s) = secs.filter(|s| *s >= 0.05) {
            let _ = write!(out, ", {s:.1} s waiting {what}");
        }
    }
    out
}

fn status_counts(users: &[MailboxSummary]) -> Vec<(&'static str, usize)> {
    STATUSES
        .iter()
        .map(|s| (*s, users.iter().filter(|u| u.status == *s).count()))
        .collect()
}

fn rate(view: &BatchLiveView) -> String {
    if view.messages_per_sec == 0.0 && view.running.is_empty() {
        return "—".to_owned();
    }
    format!(
        "{:.1} msg/s, {}/s",
        view.messages_per_sec,
        bytes(view.bytes_per_sec as u64)
    )
}

fn pass_times(started: Option<&str>, finished: Option<&str>) -> String {
    match (started, finished) {
        (_, Some(f)) => opt_time(Some(f)),
        (Some(s), None) => format!("running since {}", opt_time(Some(s))),
        (None, None) => opt_time(None),
    }
}

/// An RFC 3339 time as `2026-12-05 14:03:07Z`, or a dash.
fn opt_time(t: Option<&str>) -> String {
    match t {
        Some(t) => {
            let short = short_time(t);
            format!("<time datetime=\"{}\">{}</time>", esc(t), esc(&short))
        }
        None => "<span class=\"muted\">—</span>".to_owned(),
    }
}

/// An RFC 3339 time to the second: the fraction goes, the zone stays.
fn short_time(t: &str) -> String {
    let (main, _) = t.split_once('.').unwrap_or((t, ""));
    let zone = if t.ends_with('Z') { "Z" } else { "" };
    format!("{}{zone}", main.trim_end_matches('Z').replacen('T', " ", 1))
}

fn now_text() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    time_text(secs)
}

/// Unix seconds as `YYYY-MM-DD HH:MM:SSZ`.
fn time_text(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Days to civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// `text` safe in HTML text and in a double-quoted attribute.
pub fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A batch name as one URL path segment (percent-encoded where it must be), escaped for
/// an attribute.
fn path_segment(name: &str) -> String {
    let mut out = String::new();
    for b in name.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(name: &str) -> BatchSummary {
        BatchSummary {
            name: name.into(),
            status: "Syncing".into(),
            source: "src".into(),
            target: "tgt".into(),
            excluded_folders: vec![],
            included_folders: vec![],
            mailboxes_total: 3,
            mailboxes_queued: 1,
            mailboxes_syncing: 1,
            mailboxes_synced: 0,
            mailboxes_failed: 1,
            mailboxes_stopped: 0,
            mailboxes_completed: 0,
            items_synced: 1234,
            items_skipped: 2,
            bytes_synced: 5 << 20,
            created: "2026-12-05T10:00:00Z".into(),
            last_sync_started: Some("2026-12-05T10:00:01.123Z".into()),
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

    fn user(email: &str, status: &str) -> MailboxSummary {
        MailboxSummary {
            email: email.into(),
            user_name: email.into(),
            status: status.into(),
            folders: 4,
            items_synced: 10,
            items_skipped: 0,
            bytes_synced: 1000,
            last_sync_started: None,
            last_sync_finished: None,
            last_pass_seconds: None,
            last_pass_outcome: None,
            last_pass_items: None,
            last_pass_rate_limit_wait_seconds: None,
            last_pass_throttle_wait_seconds: None,
            error: (status == "Failed").then(|| "login <refused> & \"gone\"".into()),
            folders_skipped: vec![],
            folders_renamed: vec![],
        }
    }

    #[test]
    fn the_overview_lists_every_batch_with_its_counts() {
        let html = overview(&[batch("wave 1"), batch("<b>")], &|_| {
            BatchLiveView::default()
        });
        assert!(html.contains("href=\"/batch/wave%201\""), "{html}");
        assert!(
            html.contains("&lt;b&gt;") && !html.contains("<b>"),
            "{html}"
        );
        assert!(html.contains("1234") && html.contains("5.2 MB"), "{html}");
        assert!(html.contains("running since"), "{html}");
        assert!(html.contains(&format!("content=\"{REFRESH_SECS}\"")));
        assert!(
            !html.contains("<script") && !html.contains("http://") && !html.contains("https://")
        );
    }

    #[test]
    fn a_batch_page_shows_running_mailboxes_filters_and_skipped_items() {
        let waited = MailboxSummary {
            last_sync_finished: Some("2021-03-14T09:00:00Z".into()),
            last_pass_seconds: Some(95.0),
            last_pass_outcome: Some("succeeded".into()),
            last_pass_items: Some(900),
            last_pass_rate_limit_wait_seconds: Some(61.25),
            last_pass_throttle_wait_seconds: Some(0.0),
            ..user("d@x", "Synced")
        };
        let users = vec![
            waited,
            user("a@x", "Synced"),
            user("b@x", "Failed"),
            user("c@x", "Syncing"),
        ];
        let live = BatchLiveView {
            running: vec![(
                "c@x".into(),
                MailboxLive {
                    started: UNIX_EPOCH,
                    kind: "Initial".into(),
                    folders_planned: 4,
                    folders_done: 1,
                    messages: 7,
                    bytes: 700,
                    folder: Some("Sent".into()),
                },
            )],
            messages_per_sec: 2.5,
            bytes_per_sec: 2048.0,
        };
        let skipped = vec![SkippedSummary {
            copied: false,
            email: "a@x".into(),
            folder: "INBOX".into(),
            date: Some("2021-03-14T08:26:53Z".into()),
            subject: Some("too <big>".into()),
            from: Some("J <j@x>".into()),
            sent: None,
            size: Some(60 << 20),
            reason: "too large".into(),
            detail: None,
        }];
        let all = batch_page(
            &batch("b1"),
            &users,
            &skipped,
            &live,
            &MailboxFilter::default(),
        );
        for needle in [
            "a@x",
            "b@x",
            "c@x",
            "Running now (1)",
            "<progress max=\"4\" value=\"1\"></progress> 1/4",
            "2.5 msg/s, 2.0 kB/s",
            "login &lt;refused&gt; &amp; &quot;gone&quot;",
            "too &lt;big&gt;",
            "J &lt;j@x&gt;",
            "2021-03-14 08:26:53Z",
            "?status=Failed\">Failed (1)",
            "/batches/b1/report.csv",
            "(succeeded, 95.0 s, 900 copied, 61.2 s waiting for the rate budget)",
        ] {
            assert!(all.contains(needle), "{needle} in {all}");
        }
        let failed = batch_page(
            &batch("b1"),
            &users,
            &[],
            &BatchLiveView::default(),
            &MailboxFilter {
                status: Some("Failed".into()),
                page: 0,
            },
        );
        assert!(failed.contains("id=\"b@x\"") && !failed.contains("id=\"a@x\""));
        assert!(!failed.contains("Running now") && !failed.contains("Skipped items"));
    }

    #[test]
    fn a_large_batch_is_paged() {
        let users: Vec<MailboxSummary> = (0..1200)
            .map(|i| user(&format!("u{i}@x"), "Synced"))
            .collect();
        let filter = MailboxFilter {
            status: None,
            page: 2,
        };
        let html = batch_page(&batch("b"), &users, &[], &BatchLiveView::default(), &filter);
        assert!(html.contains("id=\"u1000@x\"") && html.contains("id=\"u1199@x\""));
        assert!(!html.contains("id=\"u999@x\""));
        assert!(html.contains("<b>3</b>") && html.contains("page=0\">1</a>"));
    }

    #[test]
    fn times_read_as_utc() {
        assert_eq!(time_text(0), "1970-01-01 00:00:00Z");
        assert_eq!(time_text(1_709_208_000), "2024-02-29 12:00:00Z");
        assert!(opt_time(Some("2026-12-05T10:00:01.123Z")).contains(">2026-12-05 10:00:01Z<"));
        assert!(opt_time(Some("2026-12-05T10:00:01Z")).contains(">2026-12-05 10:00:01Z<"));
    }
}
