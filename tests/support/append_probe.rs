//! The probe: what a target server stores for plain APPENDs of a source's mail, the
//! yardstick for "exact" on servers that normalise mail.
//!
//! Cyrus rewrites raw 8-bit header bytes and refuses bare-LF, NUL and malformed-header
//! messages; Courier adds a final CRLF, drops bare CRs and refuses non-BMP folder names. A
//! migrated mailbox cannot equal its source there, but it can equal what that same server
//! stores when each source message is appended, message by message, with its flags and
//! INTERNALDATE, into a second account (the probe): same folders, same bytes, flags and
//! dates; and what the target refused the probe is exactly what a migration must report as
//! skipped.

use std::collections::BTreeMap;

use super::imap_client::ImapClient;
use super::internal_date::InternalDate;
use super::kit_error::KitError;
use super::mailbox_verifier::{MailboxSnapshot, Verifier, VerifyReport};
use super::message_flag::Flag;
use super::server_family::FamilyServer;

/// One message as a server stores it.
pub struct StoredMessage {
    pub folder: String,
    pub bytes: Vec<u8>,
    pub flags: Vec<Flag>,
    pub date: InternalDate,
}

/// Every message of `user`'s mailbox on `server`, folder by folder.
pub fn read_stored(server: &FamilyServer, user: &str) -> Result<Vec<StoredMessage>, KitError> {
    let mut client = server.connect(user)?;
    let mut all = Vec::new();
    for entry in client.list("", "*")? {
        if !entry.is_selectable() {
            continue;
        }
        let status = client.examine(&entry.name)?;
        if status.exists == 0 {
            continue;
        }
        for m in client.fetch_all()? {
            let (Some(bytes), Some(date)) = (m.body, m.internal_date) else {
                return Err(KitError::Protocol {
                    server: client.server().to_owned(),
                    detail: format!(
                        "FETCH in folder {:?} lacks BODY[] or INTERNALDATE",
                        entry.name
                    ),
                    excerpt: format!("message {}", m.seq),
                });
            };
            all.push(StoredMessage {
                folder: entry.name.clone(),
                bytes,
                flags: m
                    .flags
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|f| Flag::from_imap(f))
                    .collect(),
                date,
            });
        }
    }
    client.logout()?;
    Ok(all)
}

/// `user`'s selectable folders on `server`, parents first.
pub fn selectable_folders(server: &FamilyServer, user: &str) -> Result<Vec<String>, KitError> {
    let mut client = server.connect(user)?;
    let mut names: Vec<String> = client
        .list("", "*")?
        .into_iter()
        .filter(|e| e.is_selectable())
        .map(|e| e.name)
        .collect();
    names.sort_by_key(|n| (n.matches(server.separator()).count(), n.clone()));
    client.logout()?;
    Ok(names)
}

/// The messages of `after` that `before` does not hold (as a multiset per folder).
pub fn new_messages(before: Vec<StoredMessage>, after: Vec<StoredMessage>) -> Vec<StoredMessage> {
    let mut seen: BTreeMap<(String, Vec<u8>), usize> = BTreeMap::new();
    for m in before {
        *seen.entry((m.folder, m.bytes)).or_default() += 1;
    }
    after
        .into_iter()
        .filter(
            |m| match seen.get_mut(&(m.folder.clone(), m.bytes.clone())) {
                Some(n) if *n > 0 => {
                    *n -= 1;
                    false
                }
                _ => true,
            },
        )
        .collect()
}

/// What the target refused the probe.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Refusals {
    /// Messages refused by APPEND into a folder the target holds.
    pub messages: usize,
    /// Folders the target would not create (their messages are not counted above:
    /// imapmirror reports the folder, not each message).
    pub folders: usize,
    /// Messages refused with their keywords and taken without them (a target's cap on
    /// keywords per folder): imapmirror copies them so, and says so in the report.
    pub without_keywords: usize,
}

/// Appends `messages` (read from `source`) to `probe_user`'s account on `target`, creating
/// `folders` (the source's, parents first) under the names imapmirror maps them to;
/// returns what the target refused.
pub fn append_probe(
    source: &FamilyServer,
    target: &FamilyServer,
    probe_user: &str,
    folders: &[String],
    messages: &[StoredMessage],
) -> Result<Refusals, KitError> {
    let mut client = target.connect(probe_user)?;
    // Folders made by an earlier probe are there already (Courier answers a CREATE of an
    // existing folder like any other refusal).
    let mut created: BTreeMap<String, bool> = client
        .list("", "*")?
        .into_iter()
        .map(|e| (e.name, true))
        .collect();
    let mut refused = Refusals::default();
    for name in folders {
        let path = source.path_of(name);
        if path.is_inbox() {
            continue;
        }
        // Only the folder itself, as imapmirror creates it: a parent the source does not
        // hold as a folder is the server's business (hierarchy only).
        let target_name = target.name_of(&path);
        if created.contains_key(&target_name) {
            continue;
        }
        let ok = match client.create(&target_name) {
            Ok(()) => true,
            Err(KitError::Refused { ref text, .. })
                if text.to_ascii_lowercase().contains("exist") =>
            {
                true
            }
            Err(KitError::Refused { .. }) => false,
            Err(e) => return Err(e),
        };
        if !ok {
            refused.folders += 1;
        }
        created.insert(target_name, ok);
    }
    for m in messages {
        let target_name = target.name_of(&source.path_of(&m.folder));
        if created.get(&target_name) == Some(&false) {
            continue;
        }
        append_one(&mut client, &target_name, m, &mut refused)?;
    }
    client.logout()?;
    Ok(refused)
}

fn append_one(
    client: &mut ImapClient,
    folder: &str,
    m: &StoredMessage,
    refused: &mut Refusals,
) -> Result<(), KitError> {
    match client.append(folder, &m.flags, Some(m.date), &m.bytes) {
        Ok(_) => Ok(()),
        Err(KitError::Refused { .. }) if m.flags.iter().any(|f| matches!(f, Flag::Keyword(_))) => {
            let system: Vec<Flag> = m
                .flags
                .iter()
                .filter(|f| !matches!(f, Flag::Keyword(_)))
                .cloned()
                .collect();
            match client.append(folder, &system, Some(m.date), &m.bytes) {
                Ok(_) => refused.without_keywords += 1,
                Err(KitError::Refused { .. }) => refused.messages += 1,
                Err(e) => return Err(e),
            }
            Ok(())
        }
        Err(KitError::Refused { .. }) => {
            refused.messages += 1;
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Compares `user`'s mailbox on `target` with what the probe expects (`expected`, a
/// snapshot of the probe account, which may come from another instance of the same
/// family): both live on one family, so folder names compare as they are.
pub fn compare_with_probe(
    expected: &MailboxSnapshot,
    target: &FamilyServer,
    user: &str,
) -> Result<VerifyReport, KitError> {
    let migrated = MailboxSnapshot::read(&target.user_endpoint(user)?)?;
    Ok(Verifier::new()
        .with_folder_map(|name, _, _| Some(name.to_owned()))
        .compare_snapshots(expected, &migrated))
}
