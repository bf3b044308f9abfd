//! Provider profiles: what changes when an endpoint is a hosted service (Gmail, Microsoft
//! 365) rather than a self-hosted server — its limits, the role of its system folders, and
//! the identity that tells one message from another.
//!
//! The provider is the administrator's choice (`endpoint add --provider`, stored with the
//! endpoint) or, by default, the server family detected from ID, greeting and capabilities
//! ([`crate::endpoint::server_family::detect`]). A profile is pure data, so `endpoint
//! test` can print what it changes and the pass can ask it.
//!
//! Throttling and disconnect answers are not here: they are classified where responses are
//! (the protocol crate's error and the pass's retry budget).

use std::fmt;

use imapmirror_storage::Provider as ProviderChoice;
use serde::{Deserialize, Serialize};

use crate::endpoint::server_family::ServerFamily;

/// A hosted service with a profile, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Gmail,
    Microsoft365,
    Generic,
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Provider::Gmail => "Gmail",
            Provider::Microsoft365 => "Microsoft 365",
            Provider::Generic => "generic",
        })
    }
}

impl Provider {
    /// The stored choice if any, else the provider the detected family is.
    pub fn resolve(choice: Option<ProviderChoice>, detected: ServerFamily) -> Provider {
        match choice {
            Some(ProviderChoice::Gmail) => Provider::Gmail,
            Some(ProviderChoice::Microsoft365) => Provider::Microsoft365,
            Some(ProviderChoice::Generic) => Provider::Generic,
            None => match detected {
                ServerFamily::Gmail => Provider::Gmail,
                // Exchange Online and on-premises Exchange name themselves alike; the
                // profile's limits are Exchange Online's defaults, which on-premises
                // servers share unless an administrator raised them.
                ServerFamily::Exchange => Provider::Microsoft365,
                _ => Provider::Generic,
            },
        }
    }

    /// The profile of this provider.
    pub fn profile(self) -> ProviderProfile {
        match self {
            Provider::Gmail => ProviderProfile {
                provider: self,
                // "You can have up to 15 simultaneous IMAP connections per account"
                // (Google Workspace admin help, IMAP limits).
                connection_limit: Some(GMAIL_CONNECTION_LIMIT),
                // Gmail's APPENDLIMIT=35651584 capability.
                message_size_limit: Some(GMAIL_MESSAGE_SIZE_LIMIT),
                identity: MessageIdentity::GmailMessageId,
            },
            Provider::Microsoft365 => ProviderProfile {
                provider: self,
                // Exchange Online allows 20 IMAP connections per mailbox; the profile does
                // not lower the endpoint's default for it.
                connection_limit: None,
                // Exchange Online's default maximum message size (35 MB), announced by no
                // capability.
                message_size_limit: Some(MICROSOFT365_MESSAGE_SIZE_LIMIT),
                identity: MessageIdentity::ExactBytes,
            },
            Provider::Generic => ProviderProfile {
                provider: self,
                connection_limit: None,
                message_size_limit: None,
                identity: MessageIdentity::ExactBytes,
            },
        }
    }
}

/// Gmail's simultaneous IMAP connections per account.
pub const GMAIL_CONNECTION_LIMIT: u32 = 15;
/// Gmail's largest message (its `APPENDLIMIT`).
pub const GMAIL_MESSAGE_SIZE_LIMIT: u64 = 35_651_584;
/// Microsoft 365's default largest message: 35 MB.
pub const MICROSOFT365_MESSAGE_SIZE_LIMIT: u64 = 35 * 1024 * 1024;

/// What tells one message from another when the same message is seen in several folders.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageIdentity {
    /// Gmail's `X-GM-MSGID` (when `X-GM-EXT-1` is announced): one id per message in
    /// every label, All Mail included; messages without a Message-ID need nothing else.
    /// Without `X-GM-EXT-1` the exact bytes stand in: an All Mail message is archived
    /// mail when no label folder holds its fingerprint (`folder_sync/all_mail_by_bytes.rs`),
    /// identical messages counted, never merged.
    GmailMessageId,
    /// The message's exact bytes (the pass's fingerprint).
    ExactBytes,
}

impl fmt::Display for MessageIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            MessageIdentity::GmailMessageId => "X-GM-MSGID (exact bytes without X-GM-EXT-1)",
            MessageIdentity::ExactBytes => "exact bytes",
        })
    }
}

/// What a source folder of a provider stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FolderRole {
    /// A folder (a Gmail label, INBOX, a system folder with a special use): copied.
    Folder,
    /// Gmail's All Mail: every message of the account, each also in its labels; only the
    /// messages in no other folder (archived mail) are copied, to the target's archive.
    GmailAllMail,
    /// Gmail's Starred: the `\Flagged` messages of the other folders; not a folder on the
    /// target, the flag is carried on the copies.
    GmailStarred,
    /// Gmail's Important: a ranking Gmail computes; not copied (said in the report).
    GmailImportant,
}

/// Whether a message of Gmail's All Mail, by its `X-GM-LABELS`, is in no other folder
/// (archived mail), so that the All Mail pass copies it to the target's archive.
///
/// The labels say it exactly and without state: INBOX (`\Inbox`), Sent (`\Sent`),
/// Drafts (`\Draft`) and any user label are folders the message is copied from already;
/// `\Starred` and `\Important` are not folders on the target. Spam and Trash are not in
/// All Mail at all. A message archived later (its `\Inbox` removed) has no label left and
/// is copied to the archive on the next pass — where Gmail shows it then.
pub fn gmail_archived_only<'a>(labels: impl IntoIterator<Item = &'a str>) -> bool {
    labels
        .into_iter()
        .all(|l| l.eq_ignore_ascii_case("\\Starred") || l.eq_ignore_ascii_case("\\Important"))
}

/// What changes for one provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderProfile {
    pub provider: Provider,
    /// Simultaneous connections per account the service allows, if it limits them below
    /// the engine's defaults.
    pub connection_limit: Option<u32>,
    /// The largest message the service accepts, when no capability says so.
    pub message_size_limit: Option<u64>,
    /// The identity used against duplicates.
    pub identity: MessageIdentity,
}

impl ProviderProfile {
    /// The role of a source folder with these special-use attributes (as listed, e.g.
    /// `\All`, `\Important`) and this name (components relative to the namespace).
    pub fn folder_role(&self, attributes: &[&str], path: &[&str]) -> FolderRole {
        if self.provider != Provider::Gmail {
            return FolderRole::Folder;
        }
        let has = |a: &str| attributes.iter().any(|x| x.eq_ignore_ascii_case(a));
        let system = |name: &str| {
            matches!(path, [parent, last]
                if (parent.eq_ignore_ascii_case("[Gmail]") || parent.eq_ignore_ascii_case("[Google Mail]"))
                    && last.eq_ignore_ascii_case(name))
        };
        if has("\\All") || system("All Mail") {
            FolderRole::GmailAllMail
        } else if has("\\Flagged") || system("Starred") {
            FolderRole::GmailStarred
        } else if has("\\Important") || system("Important") {
            FolderRole::GmailImportant
        } else {
            FolderRole::Folder
        }
    }

    /// The connections to use per account: the lower of the endpoint's and the profile's.
    pub fn connections(&self, configured: u32) -> u32 {
        self.connection_limit
            .map_or(configured, |limit| configured.min(limit))
    }

    /// What the profile changes, one sentence each, for `endpoint test`.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        if let Some(n) = self.connection_limit {
            notes.push(format!(
                "{} allows {n} simultaneous connections per account: a mailbox never uses more.",
                self.provider
            ));
        }
        if let Some(n) = self.message_size_limit {
            notes.push(format!(
                "{} accepts messages up to {n} bytes: larger ones are skipped items with the reason.",
                self.provider
            ));
        }
        match self.provider {
            Provider::Gmail => {
                notes.push("Labels and INBOX are folders (separator /); [Gmail]/Sent Mail, Drafts, Spam and Trash map to the other side's \\Sent, \\Drafts, \\Junk and \\Trash.".to_owned());
                notes.push("As a source: All Mail gives only the messages in no label (archived mail), into the target's \\Archive; Starred becomes \\Flagged on the copies; Important is skipped.".to_owned());
                notes.push("Without X-GM-EXT-1, archived mail is told by its bytes: All Mail is synced after the label folders and gives what none of them holds.".to_owned());
                notes.push("As a target: labels are created as folders; nothing is appended to All Mail, Starred or Important.".to_owned());
            }
            Provider::Microsoft365 => {
                notes.push("Sent Items, Deleted Items, Junk Email, Drafts and Archive are recognised by name (no SPECIAL-USE).".to_owned());
            }
            Provider::Generic => {}
        }
        notes.push(format!("Identity against duplicates: {}.", self.identity));
        notes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_choice_wins_over_detection() {
        assert_eq!(
            Provider::resolve(None, ServerFamily::Gmail),
            Provider::Gmail
        );
        assert_eq!(
            Provider::resolve(None, ServerFamily::Exchange),
            Provider::Microsoft365
        );
        assert_eq!(
            Provider::resolve(None, ServerFamily::Dovecot),
            Provider::Generic
        );
        assert_eq!(
            Provider::resolve(Some(ProviderChoice::Generic), ServerFamily::Gmail),
            Provider::Generic
        );
        assert_eq!(
            Provider::resolve(Some(ProviderChoice::Gmail), ServerFamily::Unknown),
            Provider::Gmail
        );
    }

    #[test]
    fn gmail_limits_connections_and_message_size() {
        let gmail = Provider::Gmail.profile();
        assert_eq!(gmail.connections(20), 15);
        assert_eq!(gmail.connections(4), 4);
        assert_eq!(gmail.message_size_limit, Some(35_651_584));
        assert_eq!(gmail.identity, MessageIdentity::GmailMessageId);
        let m365 = Provider::Microsoft365.profile();
        assert_eq!(m365.message_size_limit, Some(36_700_160));
        assert_eq!(m365.connections(20), 20);
        assert_eq!(Provider::Generic.profile().message_size_limit, None);
    }

    #[test]
    fn gmail_folder_roles_by_attribute_or_name() {
        let gmail = Provider::Gmail.profile();
        assert_eq!(
            gmail.folder_role(&["\\HasNoChildren", "\\All"], &["[Gmail]", "All Mail"]),
            FolderRole::GmailAllMail
        );
        // Localised names: the attribute tells.
        assert_eq!(
            gmail.folder_role(&["\\All"], &["[Gmail]", "Alle Nachrichten"]),
            FolderRole::GmailAllMail
        );
        assert_eq!(
            gmail.folder_role(&["\\Flagged"], &["[Gmail]", "Starred"]),
            FolderRole::GmailStarred
        );
        assert_eq!(
            gmail.folder_role(&[], &["[Google Mail]", "Important"]),
            FolderRole::GmailImportant
        );
        for (attrs, path) in [
            (&["\\Sent"][..], &["[Gmail]", "Sent Mail"][..]),
            (&[], &["INBOX"]),
            (&[], &["Work", "2024"]),
            // A user label named like a system folder, not under [Gmail].
            (&[], &["Important"]),
        ] {
            assert_eq!(
                gmail.folder_role(attrs, path),
                FolderRole::Folder,
                "{path:?}"
            );
        }
        // Another provider's \All folder is an ordinary folder.
        assert_eq!(
            Provider::Generic
                .profile()
                .folder_role(&["\\All"], &["All Mail"]),
            FolderRole::Folder
        );
    }

    #[test]
    fn archived_only_is_told_by_the_labels() {
        assert!(gmail_archived_only([]));
        assert!(gmail_archived_only(["\\Important", "\\Starred"]));
        assert!(!gmail_archived_only(["\\Inbox"]));
        assert!(!gmail_archived_only(["\\Important", "\\Sent"]));
        assert!(!gmail_archived_only(["\\Draft"]));
        assert!(!gmail_archived_only(["Work/2024"]));
        // A user label spelled like a system one but without the backslash is a label.
        assert!(!gmail_archived_only(["Important"]));
    }

    #[test]
    fn notes_say_what_changes() {
        let notes = Provider::Gmail.profile().notes().join("\n");
        assert!(notes.contains("15 simultaneous connections"), "{notes}");
        assert!(notes.contains("35651584 bytes"), "{notes}");
        assert!(notes.contains("X-GM-MSGID"), "{notes}");
        let generic = Provider::Generic.profile().notes();
        assert_eq!(generic, ["Identity against duplicates: exact bytes."]);
    }
}
