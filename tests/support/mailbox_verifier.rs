//! Compares one user's mail on two servers exactly, reading both over IMAP.
//!
//! Exact means, for every selectable source folder and the target folder its name maps to:
//! the same number of messages, the same multiset of SHA-256 over the full bytes as served
//! (`BODY.PEEK[]`), the same flags with keywords (`\Recent` ignored) and the same
//! INTERNALDATE instant per message. Dovecot serves a stored bare LF as CRLF, so it is the
//! bytes as served that are compared; and Maildir keeps no zone, so instants are compared.
//!
//! The verifier has its own client and parser: it must not trust the code under test.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;

use ring::digest;

use super::dovecot::Dovecot;
use super::folder_path::FolderPath;
use super::imap_client::{Endpoint, ImapClient};
use super::internal_date::InternalDate;
use super::kit_error::KitError;
use super::message_flag::Flag;

/// How many differences Display spells out before summarising the rest.
const SHOWN_DIFFERENCES: usize = 60;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageFacts {
    pub uid: u32,
    pub sha256: [u8; 32],
    pub size: usize,
    /// Canonical spellings (`\Seen`), keywords as served, `\Recent` dropped.
    pub flags: BTreeSet<String>,
    pub internal_date: InternalDate,
    /// The Subject header, unfolded and shortened, for reports.
    pub subject: String,
}

impl MessageFacts {
    pub fn from_bytes(
        uid: u32,
        bytes: &[u8],
        flags: &[String],
        internal_date: InternalDate,
    ) -> Self {
        let mut sha256 = [0u8; 32];
        sha256.copy_from_slice(digest::digest(&digest::SHA256, bytes).as_ref());
        MessageFacts {
            uid,
            sha256,
            size: bytes.len(),
            flags: flags
                .iter()
                .filter_map(|f| Flag::from_imap(f))
                .map(|f| f.to_imap())
                .collect(),
            internal_date,
            subject: subject_of(bytes),
        }
    }

    pub fn sha256_hex(&self) -> String {
        self.sha256.iter().map(|b| format!("{b:02x}")).collect()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FolderSnapshot {
    /// Unicode name as on this server.
    pub name: String,
    pub separator: Option<char>,
    pub selectable: bool,
    pub uidvalidity: Option<u32>,
    pub messages: Vec<MessageFacts>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailboxSnapshot {
    pub label: String,
    pub server: String,
    pub login: String,
    pub folders: Vec<FolderSnapshot>,
}

impl MailboxSnapshot {
    /// Reads every folder of the logged-in user: LIST, then EXAMINE and
    /// `UID FETCH 1:* (UID FLAGS INTERNALDATE BODY.PEEK[])` per selectable folder.
    pub fn read(endpoint: &Endpoint) -> Result<Self, KitError> {
        let mut client = endpoint.connect()?;
        let snapshot = MailboxSnapshot::read_with(&mut client, endpoint)?;
        client.logout()?;
        Ok(snapshot)
    }

    fn read_with(client: &mut ImapClient, endpoint: &Endpoint) -> Result<Self, KitError> {
        let mut folders = Vec::new();
        for entry in client.list("", "*")? {
            let mut folder = FolderSnapshot {
                selectable: entry.is_selectable(),
                name: entry.name,
                separator: entry.separator,
                uidvalidity: None,
                messages: Vec::new(),
            };
            if folder.selectable {
                let status = client.examine(&folder.name)?;
                folder.uidvalidity = status.uidvalidity;
                if status.exists > 0 {
                    let server = client.server().to_owned();
                    let name = folder.name.clone();
                    let messages = &mut folder.messages;
                    client.uid_fetch_each("1:*", "(UID FLAGS INTERNALDATE BODY.PEEK[])", |m| {
                        let missing = |what: &str| KitError::Protocol {
                            server: server.clone(),
                            detail: format!("FETCH in folder {name:?} lacks {what}"),
                            excerpt: format!("message {}", m.seq),
                        };
                        let uid = m.uid.ok_or_else(|| missing("UID"))?;
                        let body = m.body.as_deref().ok_or_else(|| missing("BODY[]"))?;
                        let flags = m.flags.as_deref().ok_or_else(|| missing("FLAGS"))?;
                        let date = m.internal_date.ok_or_else(|| missing("INTERNALDATE"))?;
                        messages.push(MessageFacts::from_bytes(uid, body, flags, date));
                        Ok(())
                    })?;
                    if folder.messages.len() != status.exists as usize {
                        return Err(KitError::Protocol {
                            server: client.server().to_owned(),
                            detail: format!(
                                "folder {:?} announced {} messages but FETCH 1:* returned {}",
                                folder.name,
                                status.exists,
                                folder.messages.len()
                            ),
                            excerpt: String::new(),
                        });
                    }
                }
            }
            folders.push(folder);
        }
        Ok(MailboxSnapshot {
            label: endpoint.label.clone(),
            server: endpoint.addr.to_string(),
            login: endpoint.credentials.describe(),
            folders,
        })
    }

    pub fn message_count(&self) -> usize {
        self.folders.iter().map(|f| f.messages.len()).sum()
    }

    pub fn folder(&self, name: &str) -> Option<&FolderSnapshot> {
        self.folders.iter().find(|f| same_name(&f.name, name))
    }
}

/// INBOX is case-insensitive; every other name is exact.
fn same_name(a: &str, b: &str) -> bool {
    if a.eq_ignore_ascii_case("INBOX") && b.eq_ignore_ascii_case("INBOX") {
        return true;
    }
    a == b
}

/// A message as named in a report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageLabel {
    pub sha256_hex: String,
    pub subject: String,
    pub size: usize,
    pub uid: u32,
}

impl MessageLabel {
    fn of(m: &MessageFacts) -> Self {
        MessageLabel {
            sha256_hex: m.sha256_hex(),
            subject: m.subject.clone(),
            size: m.size,
            uid: m.uid,
        }
    }
}

impl std::fmt::Display for MessageLabel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "message sha256 {}… Subject {:?} ({} bytes)",
            &self.sha256_hex[..16],
            self.subject,
            self.size
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    FolderMissing {
        source_folder: String,
        expected_target: String,
        source_messages: usize,
    },
    FolderExtra {
        target_folder: String,
        target_messages: usize,
    },
    CountDiffers {
        source_folder: String,
        target_folder: String,
        source: usize,
        target: usize,
    },
    MessageMissing {
        source_folder: String,
        message: MessageLabel,
    },
    MessageExtra {
        target_folder: String,
        message: MessageLabel,
    },
    /// `added`: on the target only; `removed`: on the source only.
    FlagsDiffer {
        source_folder: String,
        message: MessageLabel,
        added: Vec<String>,
        removed: Vec<String>,
    },
    InternalDateDiffers {
        source_folder: String,
        message: MessageLabel,
        source: InternalDate,
        target: InternalDate,
    },
}

impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::FolderMissing {
                source_folder,
                expected_target,
                source_messages,
            } => write!(
                f,
                "folder {source_folder:?} ({source_messages} messages) is missing on the target, expected as {expected_target:?}"
            ),
            Difference::FolderExtra {
                target_folder,
                target_messages,
            } => write!(
                f,
                "extra folder {target_folder:?} ({target_messages} messages) on the target has no source folder"
            ),
            Difference::CountDiffers {
                source_folder,
                target_folder,
                source,
                target,
            } => write!(
                f,
                "folder {source_folder:?}: count differs: {source} on the source, {target} in target folder {target_folder:?}"
            ),
            Difference::MessageMissing {
                source_folder,
                message,
            } => write!(
                f,
                "folder {source_folder:?}: {message} (source UID {}) is missing on the target",
                message.uid
            ),
            Difference::MessageExtra {
                target_folder,
                message,
            } => write!(
                f,
                "target folder {target_folder:?}: extra {message} (target UID {}) is not on the source",
                message.uid
            ),
            Difference::FlagsDiffer {
                source_folder,
                message,
                added,
                removed,
            } => {
                let changes: Vec<String> = added
                    .iter()
                    .map(|a| format!("+{a}"))
                    .chain(removed.iter().map(|r| format!("-{r}")))
                    .collect();
                write!(
                    f,
                    "folder {source_folder:?}: {message}: flags differ {{{}}} (+ only on the target, - only on the source)",
                    changes.join(" ")
                )
            }
            Difference::InternalDateDiffers {
                source_folder,
                message,
                source,
                target,
            } => write!(
                f,
                "folder {source_folder:?}: {message}: internal date differs: source {source}, target {target}"
            ),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    pub source: String,
    pub target: String,
    pub folders_compared: usize,
    pub messages_compared: usize,
    pub differences: Vec<Difference>,
}

impl VerifyReport {
    pub fn is_equal(&self) -> bool {
        self.differences.is_empty()
    }

    /// Panics with the whole explanation unless both sides hold the same mail.
    #[track_caller]
    pub fn assert_equal(&self) {
        if !self.is_equal() {
            panic!("{self}");
        }
    }

    /// The differences that mention `needle` (for tests that expect a particular one).
    pub fn mentioning(&self, needle: &str) -> Vec<&Difference> {
        self.differences
            .iter()
            .filter(|d| d.to_string().contains(needle))
            .collect()
    }
}

impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_equal() {
            return write!(
                f,
                "{} and {} hold the same mail: {} folders, {} messages",
                self.source, self.target, self.folders_compared, self.messages_compared
            );
        }
        writeln!(
            f,
            "mail differs between {} and {}: {} difference(s) over {} folders and {} source messages",
            self.source,
            self.target,
            self.differences.len(),
            self.folders_compared,
            self.messages_compared
        )?;
        for d in self.differences.iter().take(SHOWN_DIFFERENCES) {
            writeln!(f, "  - {d}")?;
        }
        if self.differences.len() > SHOWN_DIFFERENCES {
            writeln!(
                f,
                "  … and {} more",
                self.differences.len() - SHOWN_DIFFERENCES
            )?;
        }
        Ok(())
    }
}

/// Maps a source folder name (Unicode) to the name expected on the target, given both
/// separators; None means the folder is not expected on the target.
pub type FolderMap = Box<dyn Fn(&str, Option<char>, Option<char>) -> Option<String> + Send + Sync>;

/// Split by the source separator, join with the target's; INBOX stays INBOX.
pub fn separator_mapping(name: &str, source: Option<char>, target: Option<char>) -> Option<String> {
    if name.eq_ignore_ascii_case("INBOX") {
        return Some("INBOX".to_owned());
    }
    match (source, target) {
        (Some(s), Some(t)) => Some(FolderPath::parse(name, Some(s)).join(t)),
        _ => Some(name.to_owned()),
    }
}

pub struct Verifier {
    folder_map: FolderMap,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier {
            folder_map: Box::new(separator_mapping),
        }
    }
}

impl Verifier {
    pub fn new() -> Self {
        Verifier::default()
    }

    /// Replaces the default separator mapping (for special-use renames and escapes).
    pub fn with_folder_map(
        mut self,
        map: impl Fn(&str, Option<char>, Option<char>) -> Option<String> + Send + Sync + 'static,
    ) -> Self {
        self.folder_map = Box::new(map);
        self
    }

    /// Reads both sides and compares them.
    pub fn compare(&self, source: &Endpoint, target: &Endpoint) -> Result<VerifyReport, KitError> {
        let source = MailboxSnapshot::read(source)?;
        let target = MailboxSnapshot::read(target)?;
        Ok(self.compare_snapshots(&source, &target))
    }

    pub fn compare_snapshots(
        &self,
        source: &MailboxSnapshot,
        target: &MailboxSnapshot,
    ) -> VerifyReport {
        let target_sep = target.folders.iter().find_map(|f| f.separator);
        let mut differences = Vec::new();
        let mut matched_targets: BTreeSet<String> = BTreeSet::new();
        let mut folders_compared = 0;
        let mut messages_compared = 0;

        for folder in source.folders.iter().filter(|f| f.selectable) {
            let Some(expected) = (self.folder_map)(&folder.name, folder.separator, target_sep)
            else {
                continue;
            };
            folders_compared += 1;
            messages_compared += folder.messages.len();
            let Some(target_folder) = target
                .folders
                .iter()
                .find(|t| t.selectable && same_name(&t.name, &expected))
            else {
                differences.push(Difference::FolderMissing {
                    source_folder: folder.name.clone(),
                    expected_target: expected,
                    source_messages: folder.messages.len(),
                });
                continue;
            };
            matched_targets.insert(target_folder.name.clone());
            compare_folder(folder, target_folder, &mut differences);
        }

        // An empty, unmatched parent of a matched folder is how some layouts spell a
        // hierarchy (`CREATE a/b` may make `a` selectable); it holds no mail, so no report.
        for folder in target.folders.iter().filter(|f| f.selectable) {
            if matched_targets.contains(&folder.name) {
                continue;
            }
            let is_empty_parent = folder.messages.is_empty()
                && folder.separator.is_some_and(|sep| {
                    let prefix = format!("{}{sep}", folder.name);
                    matched_targets.iter().any(|m| m.starts_with(&prefix))
                });
            if !is_empty_parent {
                differences.push(Difference::FolderExtra {
                    target_folder: folder.name.clone(),
                    target_messages: folder.messages.len(),
                });
            }
        }

        VerifyReport {
            source: format!("{} ({} {})", source.label, source.server, source.login),
            target: format!("{} ({} {})", target.label, target.server, target.login),
            folders_compared,
            messages_compared,
            differences,
        }
    }
}

fn compare_folder(source: &FolderSnapshot, target: &FolderSnapshot, out: &mut Vec<Difference>) {
    if source.messages.len() != target.messages.len() {
        out.push(Difference::CountDiffers {
            source_folder: source.name.clone(),
            target_folder: target.name.clone(),
            source: source.messages.len(),
            target: target.messages.len(),
        });
    }
    let mut by_hash: BTreeMap<[u8; 32], (Vec<&MessageFacts>, Vec<&MessageFacts>)> = BTreeMap::new();
    for m in &source.messages {
        by_hash.entry(m.sha256).or_default().0.push(m);
    }
    for m in &target.messages {
        by_hash.entry(m.sha256).or_default().1.push(m);
    }
    for (_, (mut src, mut tgt)) in by_hash {
        // Byte-identical duplicates may carry different flags: pair the exact matches
        // first so that only real differences are reported.
        let mut i = 0;
        while i < src.len() {
            if let Some(j) = tgt.iter().position(|t| {
                t.flags == src[i].flags && t.internal_date.same_instant(&src[i].internal_date)
            }) {
                src.remove(i);
                tgt.remove(j);
            } else {
                i += 1;
            }
        }
        let pairs = src.len().min(tgt.len());
        for (s, t) in src.iter().zip(tgt.iter()) {
            if s.flags != t.flags {
                out.push(Difference::FlagsDiffer {
                    source_folder: source.name.clone(),
                    message: MessageLabel::of(s),
                    added: t.flags.difference(&s.flags).cloned().collect(),
                    removed: s.flags.difference(&t.flags).cloned().collect(),
                });
            }
            if !s.internal_date.same_instant(&t.internal_date) {
                out.push(Difference::InternalDateDiffers {
                    source_folder: source.name.clone(),
                    message: MessageLabel::of(s),
                    source: s.internal_date,
                    target: t.internal_date,
                });
            }
        }
        for s in &src[pairs..] {
            out.push(Difference::MessageMissing {
                source_folder: source.name.clone(),
                message: MessageLabel::of(s),
            });
        }
        for t in &tgt[pairs..] {
            out.push(Difference::MessageExtra {
                target_folder: target.name.clone(),
                message: MessageLabel::of(t),
            });
        }
    }
}

/// The unfolded Subject header, lossy UTF-8, at most 60 characters.
pub fn subject_of(message: &[u8]) -> String {
    let header_end = find(message, b"\r\n\r\n")
        .or_else(|| find(message, b"\n\n"))
        .unwrap_or(message.len());
    let header = &message[..header_end];
    let mut subject: Option<Vec<u8>> = None;
    for line in header.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        match &mut subject {
            Some(s) if line.first().is_some_and(|b| *b == b' ' || *b == b'\t') => {
                s.extend_from_slice(line);
            }
            Some(_) => break,
            None if line.len() >= 8 && line[..8].eq_ignore_ascii_case(b"subject:") => {
                subject = Some(line[8..].to_vec());
            }
            None => {}
        }
    }
    let text = String::from_utf8_lossy(&subject.unwrap_or_default()).into_owned();
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() > 60 {
        let mut short: String = text.chars().take(59).collect();
        short.push('…');
        short
    } else {
        text
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Compares `user`'s mail on two kit instances, reading both as the master user.
pub fn verify_user(
    source: &Dovecot,
    target: &Dovecot,
    user: &str,
) -> Result<VerifyReport, KitError> {
    verify_users(source, user, target, user, &Verifier::new())
}

/// Compares `source_user` on `source` with `target_user` on `target`, as the master user.
pub fn verify_users(
    source: &Dovecot,
    source_user: &str,
    target: &Dovecot,
    target_user: &str,
    verifier: &Verifier,
) -> Result<VerifyReport, KitError> {
    verifier.compare(
        &source.master_endpoint(source_user)?,
        &target.master_endpoint(target_user)?,
    )
}

/// A short per-folder summary, handy in a failing test's message.
pub fn describe_snapshot(snapshot: &MailboxSnapshot) -> String {
    let mut out = String::new();
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for f in &snapshot.folders {
        counts.insert(&f.name, f.messages.len());
    }
    let mut names: Vec<_> = counts.into_iter().collect();
    names.sort();
    for (name, count) in names {
        let _ = writeln!(out, "{name:?}: {count}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(uid: u32, body: &str, flags: &[&str], unix: i64) -> MessageFacts {
        let flags: Vec<String> = flags.iter().map(|f| (*f).to_owned()).collect();
        MessageFacts::from_bytes(uid, body.as_bytes(), &flags, InternalDate::new(unix, 0))
    }

    fn snapshot(
        label: &str,
        sep: char,
        folders: Vec<(&str, Vec<MessageFacts>)>,
    ) -> MailboxSnapshot {
        MailboxSnapshot {
            label: label.to_owned(),
            server: "127.0.0.1:1".to_owned(),
            login: "LOGIN u".to_owned(),
            folders: folders
                .into_iter()
                .map(|(name, messages)| FolderSnapshot {
                    name: name.to_owned(),
                    separator: Some(sep),
                    selectable: true,
                    uidvalidity: Some(1),
                    messages,
                })
                .collect(),
        }
    }

    #[test]
    fn equal_across_separators_and_duplicates() {
        let a = "Subject: a\r\n\r\nx";
        let source = snapshot(
            "source",
            '.',
            vec![
                (
                    "INBOX",
                    vec![facts(1, a, &["\\Seen", "\\Recent"], 5), facts(2, a, &[], 5)],
                ),
                ("Archive.2024", vec![]),
            ],
        );
        let target = snapshot(
            "target",
            '/',
            vec![
                (
                    "INBOX",
                    vec![facts(7, a, &[], 5), facts(8, a, &["\\SEEN"], 5)],
                ),
                ("Archive", vec![]),
                ("Archive/2024", vec![]),
            ],
        );
        let report = Verifier::new().compare_snapshots(&source, &target);
        assert!(report.is_equal(), "{report}");
    }

    #[test]
    fn each_difference_is_named() {
        let source = snapshot(
            "source",
            '.',
            vec![
                (
                    "INBOX",
                    vec![
                        facts(1, "Subject: one\r\n\r\n1", &["\\Seen"], 5),
                        facts(2, "Subject: two\r\n\r\n2", &["\\Seen", "$label1"], 5),
                        facts(3, "Subject: three\r\n\r\n3", &[], 5),
                    ],
                ),
                ("Gone", vec![]),
            ],
        );
        let target = snapshot(
            "target",
            '.',
            vec![
                (
                    "INBOX",
                    vec![
                        facts(1, "Subject: one\r\n\r\n1", &["\\Seen"], 6),
                        facts(2, "Subject: two\r\n\r\n2", &["\\Flagged", "$label1"], 5),
                    ],
                ),
                ("New", vec![]),
            ],
        );
        let report = Verifier::new().compare_snapshots(&source, &target);
        let text = report.to_string();
        assert_eq!(report.differences.len(), 6, "{text}");
        assert!(text.contains("count differs: 3 on the source, 2"), "{text}");
        assert!(
            text.contains("Subject \"three\" (19 bytes) (source UID 3) is missing"),
            "{text}"
        );
        assert!(text.contains("flags differ {+\\Flagged -\\Seen}"), "{text}");
        assert!(text.contains("internal date differs"), "{text}");
        assert!(
            text.contains("folder \"Gone\" (0 messages) is missing"),
            "{text}"
        );
        assert!(text.contains("extra folder \"New\""), "{text}");
    }

    #[test]
    fn custom_mapping_and_exclusion() {
        let source = snapshot("s", '/', vec![("Sent Items", vec![]), ("Junk", vec![])]);
        let target = snapshot("t", '.', vec![("Sent", vec![])]);
        let verifier = Verifier::new().with_folder_map(|name, _, _| match name {
            "Sent Items" => Some("Sent".to_owned()),
            "Junk" => None,
            other => Some(other.to_owned()),
        });
        assert!(verifier.compare_snapshots(&source, &target).is_equal());
    }

    #[test]
    fn subject_unfolding() {
        assert_eq!(
            subject_of(b"From: a\r\nSubject: Hello\r\n  world\r\nTo: b\r\n\r\nSubject: body"),
            "Hello world"
        );
        assert_eq!(subject_of(b"From: a\n\nSubject: x"), "");
        assert_eq!(subject_of(b"subject: bare\nX: y\n\nbody"), "bare");
    }
}
