//! How replies look on a terminal: short sentences and aligned tables. (`--json` prints
//! the engine's serialisable replies as they are.)

use std::fmt::Write as _;
use std::io::Write as _;

use imapmirror_engine::batch::batch_merge::MergeSummary;
use imapmirror_engine::batch::report::{BatchSummary, MailboxSummary};
use imapmirror_engine::control::request::EndpointView;
use imapmirror_engine::endpoint::probe::{CertificateStatus, LoginCheck, ProbeReport};
use imapmirror_engine::endpoint::rate_budget::RateShare;
use imapmirror_storage::Security;

/// Writes to stdout. A reader that went away (`imapmirror batch users X | head`) ends
/// the process with 0: the command's work is done and saved before anything is printed.
pub fn emit(text: &str) {
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        && e.kind() == std::io::ErrorKind::BrokenPipe
    {
        std::process::exit(0);
    }
}

/// Writes a line to stderr; a closed stderr loses it rather than panic.
pub fn note(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{text}");
}

/// `1.5 MB`, decimal units as mail servers and quotas count them.
pub fn bytes(n: u64) -> String {
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

/// Left-aligned columns, two spaces apart.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let mut l = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                let pad = widths[i].saturating_sub(cell.chars().count());
                l.push_str(cell);
                l.push_str(&" ".repeat(pad + 2));
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

fn security_name(s: Security) -> &'static str {
    match s {
        Security::Ssl => "ssl",
        Security::Starttls => "starttls",
        Security::None => "none",
    }
}

pub fn endpoint_line(e: &EndpointView) -> String {
    let s = &e.settings;
    format!(
        "{}:{} (security {}, at most {} initial and {} incremental passes at once{}{})",
        s.host,
        s.port,
        security_name(s.security),
        s.max_concurrent_migrations,
        s.max_concurrent_syncs,
        match &s.admin_user {
            Some(u) => format!(", admin {u}"),
            None => String::new(),
        },
        match (&s.oauth, &s.oauth_token_command) {
            (Some(o), _) => format!(", OAuth tokens from {}", o.provider.as_str()),
            (None, Some(_)) => ", OAuth tokens from a command".to_owned(),
            (None, None) => String::new(),
        }
    ) + &rate_budget_clause(e.rate_budget.as_deref())
}

/// `, at most RATE` for an endpoint with `--max-rate`, else nothing.
fn rate_budget_clause(share: Option<&RateShare>) -> String {
    share.map_or_else(String::new, |s| format!(", at most {s}"))
}

pub fn endpoints(list: &[EndpointView]) -> String {
    if list.is_empty() {
        return "No endpoints yet: add one with `imapmirror endpoint add NAME --host HOST`.\n"
            .to_owned();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|e| {
            let s = &e.settings;
            vec![
                s.name.clone(),
                s.host.clone(),
                s.port.to_string(),
                security_name(s.security).to_owned(),
                match (&s.oauth, &s.oauth_token_command) {
                    (Some(o), _) => format!("xoauth2 ({})", o.provider.as_str()),
                    (None, Some(_)) => "xoauth2 (command)".to_owned(),
                    (None, None) => format!("{:?}", s.auth).to_lowercase(),
                },
                match (&s.admin_user, s.admin_format) {
                    (Some(u), Some(f)) => {
                        let format = imapmirror_engine::endpoint::connection::admin_format(
                            f,
                            s.admin_separator,
                        );
                        format!("{u} ({format})")
                    }
                    _ => "-".to_owned(),
                },
                s.max_concurrent_migrations.to_string(),
                s.max_concurrent_syncs.to_string(),
                match &e.rate_budget {
                    None => "-".to_owned(),
                    Some(r) if r.shard_count > 1 => format!(
                        "{} ({} over {} shards)",
                        r.per_process.join(", "),
                        r.max_rate.join(", "),
                        r.shard_count
                    ),
                    Some(r) => r.max_rate.join(", "),
                },
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "HOST",
            "PORT",
            "SECURITY",
            "AUTH",
            "ADMIN",
            "MIGRATIONS",
            "SYNCS",
            "MAX RATE",
        ],
        &rows,
    )
}

pub fn probe(p: &ProbeReport) -> String {
    let mut out = String::new();
    let protection = match &p.certificate {
        CertificateStatus::NoTls => ", without TLS".to_owned(),
        CertificateStatus::Verified => {
            ", TLS negotiated and the certificate verified against the trusted roots".to_owned()
        }
        CertificateStatus::Pinned { pin } => format!(
            ", TLS negotiated and the certificate is the pinned one ({pin}), its key proven"
        ),
        CertificateStatus::NotVerified => ", TLS negotiated but the certificate NOT verified (--insecure-skip-verify: anyone in the path can read the passwords)".to_owned(),
    };
    let _ = writeln!(
        out,
        "Connected to {} ({}){protection}.",
        p.server, p.security
    );
    let id: Vec<String> = p
        .server_id
        .iter()
        .filter(|(k, _)| ["name", "version", "vendor"].contains(&k.to_ascii_lowercase().as_str()))
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k} {v:?}")))
        .collect();
    let _ = writeln!(
        out,
        "Server: {} (greeting {:?}{}).",
        p.server_family,
        p.greeting,
        if id.is_empty() {
            String::new()
        } else {
            format!("; ID {}", id.join(", "))
        }
    );
    let _ = writeln!(out, "Provider profile: {}.", p.provider);
    for note in &p.provider_notes {
        let _ = writeln!(out, "  - {note}");
    }
    if let Some(before) = &p.capabilities_before_starttls {
        let _ = writeln!(out, "Capabilities before STARTTLS: {}", before.join(" "));
    }
    let _ = writeln!(
        out,
        "Capabilities before login: {}",
        p.capabilities.join(" ")
    );
    if let Some(after) = &p.capabilities_after_login {
        let _ = writeln!(out, "Capabilities after login: {}", after.join(" "));
    }
    let with = if p.login_with.is_empty() {
        "the admin credentials"
    } else {
        p.login_with.as_str()
    };
    let check = if with == "the admin credentials" {
        "check --admin-user, the password file and --admin-format"
    } else {
        "check that the app may open this mailbox with IMAP"
    };
    let _ = match &p.login {
        LoginCheck::Succeeded { user } => {
            writeln!(out, "Login as {user} with {with}: succeeded.")
        }
        LoginCheck::Refused { user, text } => writeln!(
            out,
            "Login as {user} with {with}: REFUSED ({text:?}); {check}."
        ),
        LoginCheck::NotTried { reason } => writeln!(out, "Login not tried: {reason}."),
    };
    let _ = writeln!(out, "What this means for a migration:");
    for note in &p.notes {
        let _ = writeln!(out, "  - {note}");
    }
    if let Some(share) = &p.rate_budget {
        let _ = writeln!(out, "Rate budget (--max-rate): at most {share}.");
    }
    out
}

fn or_dash(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".to_owned())
}

pub fn batch_detail(b: &BatchSummary) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "Batch {}: {}", b.name, b.status);
    let _ = writeln!(out, "  from {} to {}", b.source, b.target);
    if !b.excluded_folders.is_empty() {
        let _ = writeln!(out, "  excluded folders: {}", b.excluded_folders.join(", "));
    }
    if !b.included_folders.is_empty() {
        let _ = writeln!(out, "  included folders: {}", b.included_folders.join(", "));
    }
    let _ = writeln!(
        out,
        "  mailboxes: {} total, {} synced, {} failed, {} queued, {} syncing, {} stopped, {} completed",
        b.mailboxes_total,
        b.mailboxes_synced,
        b.mailboxes_failed,
        b.mailboxes_queued,
        b.mailboxes_syncing,
        b.mailboxes_stopped,
        b.mailboxes_completed
    );
    let _ = writeln!(
        out,
        "  items: {} synced ({}), {} skipped",
        b.items_synced,
        bytes(b.bytes_synced),
        b.items_skipped
    );
    let _ = writeln!(
        out,
        "  last sync: started {}, finished {}",
        or_dash(&b.last_sync_started),
        or_dash(&b.last_sync_finished)
    );
    if let Some(next) = &b.next_sync_due {
        let _ = writeln!(
            out,
            "  next incremental pass: {next} (every {} s)",
            b.sync_interval_secs
        );
    }
    let _ = writeln!(
        out,
        "  target recheck: {}",
        target_recheck(b.target_recheck_secs)
    );
    if let Some(mailbox) = &b.report_mailbox {
        let last = last_delivery(&b.report_delivery_error, &b.report_delivered);
        let _ = writeln!(out, "  report mailbox: {mailbox} ({last})");
    }
    for copy in &b.report_copies {
        let last = last_delivery(&copy.delivery_error, &copy.delivered);
        let _ = writeln!(out, "  report copy: {} ({last})", copy.address);
    }
    out
}

/// How a report mailbox's last delivery went, in words.
fn last_delivery(error: &Option<String>, delivered: &Option<String>) -> String {
    match (error, delivered) {
        (Some(error), _) => format!("the last delivery failed: {error}"),
        (None, Some(at)) => format!("last delivered {at}"),
        (None, None) => "none delivered yet".to_owned(),
    }
}

/// How long a pass with nothing new on the source trusts the target (`batch add
/// --target-recheck`), in words.
fn target_recheck(secs: Option<u64>) -> String {
    let (value, whose) = match secs {
        Some(s) => (s, "set by `batch add --target-recheck`"),
        None => (
            imapmirror_engine::pass::mailbox_job::TARGET_RECHECK.as_secs(),
            "the default; `batch add --target-recheck` changes it",
        ),
    };
    if value == 0 {
        return format!("every pass looks at the target ({whose})");
    }
    let interval = match value {
        v if v % 3600 == 0 => format!("{} h", v / 3600),
        v if v % 60 == 0 => format!("{} min", v / 60),
        v => format!("{v} s"),
    };
    format!(
        "a pass that finds nothing new on the source leaves the target alone for {interval} after the last look ({whose})"
    )
}

pub fn batches(list: &[BatchSummary]) -> String {
    if list.is_empty() {
        return "No batches yet: add one with `imapmirror batch add NAME --csv FILE --source EP --target EP`.\n".to_owned();
    }
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|b| {
            vec![
                b.name.clone(),
                b.status.clone(),
                b.source.clone(),
                b.target.clone(),
                b.mailboxes_total.to_string(),
                b.mailboxes_synced.to_string(),
                b.mailboxes_failed.to_string(),
                b.items_synced.to_string(),
                bytes(b.bytes_synced),
                or_dash(&b.last_sync_finished),
            ]
        })
        .collect();
    table(
        &[
            "NAME",
            "STATUS",
            "SOURCE",
            "TARGET",
            "MAILBOXES",
            "SYNCED",
            "FAILED",
            "ITEMS",
            "BYTES",
            "LAST SYNC",
        ],
        &rows,
    )
}

pub fn users(list: &[MailboxSummary]) -> String {
    let rows: Vec<Vec<String>> = list
        .iter()
        .map(|m| {
            vec![
                m.email.clone(),
                m.status.clone(),
                m.folders.to_string(),
                m.items_synced.to_string(),
                m.items_skipped.to_string(),
                bytes(m.bytes_synced),
                or_dash(&m.last_sync_finished),
                m.error.clone().unwrap_or_default(),
            ]
        })
        .collect();
    table(
        &[
            "EMAIL",
            "STATUS",
            "FOLDERS",
            "ITEMS",
            "SKIPPED",
            "BYTES",
            "LAST SYNC",
            "ERROR",
        ],
        &rows,
    )
}

/// What `batch add --if-exists update` changed in an existing batch, as a clause.
pub fn merge_summary(m: &MergeSummary) -> String {
    let mut parts = vec![format!(
        "{} new mailbox{} added",
        m.added,
        if m.added == 1 { "" } else { "es" }
    )];
    if m.credentials_updated > 0 {
        parts.push(format!("credentials of {} replaced", m.credentials_updated));
    }
    parts.push(format!("{} unchanged", m.unchanged));
    if m.not_in_file > 0 {
        parts.push(format!(
            "{} no longer in the file (kept with their state; `batch remove` removes the whole batch)",
            m.not_in_file
        ));
    }
    if m.settings_changed {
        parts.push("its exclusions, limits and interval set to the new values".to_owned());
    }
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_use_decimal_units() {
        assert_eq!(bytes(999), "999 B");
        assert_eq!(bytes(1_500), "1.5 kB");
        assert_eq!(bytes(63_000_000), "63.0 MB");
    }

    #[test]
    fn target_recheck_says_the_interval_and_whose_it_is() {
        assert_eq!(
            target_recheck(None),
            "a pass that finds nothing new on the source leaves the target alone for 12 h after \
             the last look (the default; `batch add --target-recheck` changes it)"
        );
        assert!(target_recheck(Some(90 * 60)).contains("for 90 min after"));
        assert!(target_recheck(Some(45)).contains("for 45 s after"));
        assert_eq!(
            target_recheck(Some(0)),
            "every pass looks at the target (set by `batch add --target-recheck`)"
        );
    }

    #[test]
    fn tables_align_columns() {
        let t = table(&["A", "LONG"], &[vec!["xyz".into(), "1".into()]]);
        assert_eq!(t, "A    LONG\nxyz  1\n");
    }
}
