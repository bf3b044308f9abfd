//! One handle over the kit's three server families (Dovecot 2.3, Cyrus 3.6, Courier-IMAP
//! 5.0), for the tests and benches that run one scenario against each: start a server with
//! its accounts, open a user's mailbox, and name a personal folder the way imapmirror's
//! folder plan names it on that server.

use std::net::SocketAddr;

use super::courier::Courier;
use super::cyrus::Cyrus;
use super::dovecot::{Dovecot, Layout, MASTER_PASSWORD, MASTER_USER};
use super::folder_path::FolderPath;
use super::imap_client::{Endpoint, ImapClient};
use super::kit_error::KitError;

/// Dovecot refuses keywords over 50 bytes by default; the corpus has a longer one.
pub const DOVECOT_LONG_KEYWORDS: &str = "mail_max_keyword_length = 200";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Dovecot,
    Cyrus,
    Courier,
}

impl Family {
    pub const ALL: [Family; 3] = [Family::Dovecot, Family::Cyrus, Family::Courier];

    /// `dovecot`, `cyrus` or `courier` (any case).
    pub fn parse(name: &str) -> Option<Family> {
        Family::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::Dovecot => "dovecot",
            Family::Cyrus => "cyrus",
            Family::Courier => "courier",
        }
    }
}

pub enum FamilyServer {
    Dovecot(Dovecot),
    Cyrus(Cyrus),
    Courier(Courier),
}

impl FamilyServer {
    /// A server of `family` holding `users` (name, password). A Dovecot labelled `source`
    /// is Maildir++ (`.`), any other Dovecot `LAYOUT=fs` (`/`), so names between two
    /// Dovecots are always mapped.
    pub fn start(
        family: Family,
        label: &str,
        users: &[(&str, &str)],
    ) -> Result<FamilyServer, KitError> {
        match family {
            Family::Dovecot => {
                let mut builder = Dovecot::builder()
                    .label(label)
                    .layout(if label == "source" {
                        Layout::MaildirPlusPlus
                    } else {
                        Layout::Fs
                    });
                for (user, password) in users {
                    builder = builder.user(user, password);
                }
                builder
                    .extra_config(DOVECOT_LONG_KEYWORDS)
                    .start()
                    .map(FamilyServer::Dovecot)
            }
            Family::Cyrus => {
                let mut builder = Cyrus::builder().label(label);
                for (user, password) in users {
                    builder = builder.user(user, password);
                }
                builder.start().map(FamilyServer::Cyrus)
            }
            // Debian's `IMAP_EMPTYTRASH=Trash:7` purges Trash messages whose file is older
            // than a week at every login, and a migrated message keeps its old date: a
            // Courier target would delete migrated Trash mail at the user's next login
            // (README's server table says so). The admin switches it off for the move.
            Family::Courier => {
                let mut builder = Courier::builder().label(label);
                for (user, password) in users {
                    builder = builder.user(user, password);
                }
                builder
                    .extra_config("IMAP_EMPTYTRASH=")
                    .start()
                    .map(FamilyServer::Courier)
            }
        }
    }

    pub fn family(&self) -> Family {
        match self {
            FamilyServer::Dovecot(_) => Family::Dovecot,
            FamilyServer::Cyrus(_) => Family::Cyrus,
            FamilyServer::Courier(_) => Family::Courier,
        }
    }

    /// `user`'s own login over the plain port.
    pub fn user_endpoint(&self, user: &str) -> Result<Endpoint, KitError> {
        match self {
            FamilyServer::Dovecot(s) => s.user_endpoint(user),
            FamilyServer::Cyrus(s) => s.user_endpoint(user),
            FamilyServer::Courier(s) => s.user_endpoint(user),
        }
    }

    pub fn connect(&self, user: &str) -> Result<ImapClient, KitError> {
        self.user_endpoint(user)?.connect()
    }

    pub fn plain_addr(&self) -> SocketAddr {
        match self {
            FamilyServer::Dovecot(s) => s.plain_addr(),
            FamilyServer::Cyrus(s) => s.plain_addr(),
            FamilyServer::Courier(s) => s.plain_addr(),
        }
    }

    /// The login that opens any user's mailbox, with imapmirror's `--admin-format` for it:
    /// Dovecot's master user (`user*master`), Cyrus's SASL admin (AUTHENTICATE PLAIN with
    /// the user as authzid); None for Courier, which has no login as another user (its
    /// mailboxes open with the user's own credentials).
    pub fn admin_login(&self) -> Option<(&str, &str, &'static str)> {
        match self {
            FamilyServer::Dovecot(_) => Some((MASTER_USER, MASTER_PASSWORD, "dovecot")),
            FamilyServer::Cyrus(s) => {
                let (admin, password) = s.admin();
                Some((admin, password, "sasl"))
            }
            FamilyServer::Courier(_) => None,
        }
    }

    pub fn separator(&self) -> char {
        match self {
            FamilyServer::Dovecot(s) => s.separator(),
            FamilyServer::Cyrus(s) => s.separator(),
            FamilyServer::Courier(s) => s.separator(),
        }
    }

    /// The personal namespace's prefix (`INBOX.` on Cyrus in Debian's namespace and on
    /// Courier).
    pub fn prefix(&self) -> String {
        match self {
            FamilyServer::Dovecot(_) => String::new(),
            FamilyServer::Cyrus(s) => s.namespace().personal_prefix().to_owned(),
            FamilyServer::Courier(_) => "INBOX.".to_owned(),
        }
    }

    /// The full name of a personal folder, as imapmirror's folder plan joins it: INBOX's
    /// children under an `INBOX.` prefix are not prefixed twice.
    pub fn name_of(&self, path: &FolderPath) -> String {
        let sep = self.separator().to_string();
        let prefix = self.prefix();
        if path.is_inbox() {
            return "INBOX".to_owned();
        }
        if path.0.first().is_some_and(|c| c == "INBOX")
            && prefix.eq_ignore_ascii_case(&format!("INBOX{sep}"))
        {
            return path.0.join(&sep);
        }
        format!("{prefix}{}", path.0.join(&sep))
    }

    /// The path of a personal folder's full name: the prefix stripped, split at the
    /// separator.
    pub fn path_of(&self, name: &str) -> FolderPath {
        if name.eq_ignore_ascii_case("INBOX") {
            return FolderPath::inbox();
        }
        let prefix = self.prefix();
        let rest = match name.get(..prefix.len()) {
            Some(head) if !prefix.is_empty() && head.eq_ignore_ascii_case(&prefix) => {
                &name[prefix.len()..]
            }
            _ => name,
        };
        FolderPath::parse(rest, Some(self.separator()))
    }
}
