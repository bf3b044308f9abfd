//! SPECIAL-USE folders (RFC 6154): recognised by attribute first, then by the names that
//! common servers and clients give them.

use std::fmt;

/// A folder's special use, from the RFC 6154 attribute or from its well-known name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SpecialUse {
    Sent,
    Drafts,
    Trash,
    Junk,
    Archive,
    All,
    Flagged,
}

impl SpecialUse {
    /// Every use, in the order folders are assigned to them (a folder serves one use only).
    pub const ALL_USES: [SpecialUse; 7] = [
        Self::Sent,
        Self::Drafts,
        Self::Trash,
        Self::Junk,
        Self::Archive,
        Self::All,
        Self::Flagged,
    ];

    /// The attribute as the RFC spells it, e.g. `\Sent`.
    pub fn attribute(self) -> &'static str {
        match self {
            Self::Sent => "\\Sent",
            Self::Drafts => "\\Drafts",
            Self::Trash => "\\Trash",
            Self::Junk => "\\Junk",
            Self::Archive => "\\Archive",
            Self::All => "\\All",
            Self::Flagged => "\\Flagged",
        }
    }

    /// Recognises an attribute such as `\Sent` (ASCII case ignored, as IMAP atoms are).
    pub fn from_attribute(attribute: &str) -> Option<Self> {
        Self::ALL_USES
            .into_iter()
            .find(|u| u.attribute().eq_ignore_ascii_case(attribute))
    }

    /// The names servers and clients give this folder when they do not advertise
    /// SPECIAL-USE, most common first; each name is a path (Gmail's live under `[Gmail]`,
    /// or `[Google Mail]` in Germany and the UK). Matched ignoring case.
    pub fn well_known_names(self) -> &'static [&'static [&'static str]] {
        match self {
            Self::Sent => &[
                &["Sent"],
                &["Sent Items"],
                &["Sent Messages"],
                &["Sent Mail"],
                &["[Gmail]", "Sent Mail"],
                &["[Google Mail]", "Sent Mail"],
            ],
            Self::Drafts => &[
                &["Drafts"],
                &["[Gmail]", "Drafts"],
                &["[Google Mail]", "Drafts"],
            ],
            Self::Trash => &[
                &["Trash"],
                &["Deleted Items"],
                &["Deleted Messages"],
                &["[Gmail]", "Trash"],
                &["[Gmail]", "Bin"],
                &["[Google Mail]", "Trash"],
                &["[Google Mail]", "Bin"],
            ],
            Self::Junk => &[
                &["Junk"],
                &["Junk Email"],
                &["Junk E-mail"],
                &["Spam"],
                &["[Gmail]", "Spam"],
                &["[Google Mail]", "Spam"],
            ],
            Self::Archive => &[&["Archive"], &["Archives"]],
            Self::All => &[&["[Gmail]", "All Mail"], &["[Google Mail]", "All Mail"]],
            Self::Flagged => &[&["[Gmail]", "Starred"], &["[Google Mail]", "Starred"]],
        }
    }

    /// Where `path` (relative to the personal namespace) is in [`Self::well_known_names`],
    /// also directly under INBOX (servers without a namespace prefix that keep folders
    /// there, like `INBOX.Sent`).
    pub(crate) fn name_rank(self, path: &[String]) -> Option<usize> {
        let path = match path {
            [first, rest @ ..] if first == "INBOX" && !rest.is_empty() => rest,
            _ => path,
        };
        self.well_known_names().iter().position(|name| {
            name.len() == path.len()
                && name
                    .iter()
                    .zip(path)
                    .all(|(a, b)| a.to_lowercase() == b.to_lowercase())
        })
    }
}

impl fmt::Display for SpecialUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.attribute())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn path(parts: &[&str]) -> Vec<String> {
        parts.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn attributes_round_trip_ignoring_case() {
        for u in SpecialUse::ALL_USES {
            assert_eq!(SpecialUse::from_attribute(u.attribute()), Some(u));
            assert_eq!(
                SpecialUse::from_attribute(&u.attribute().to_uppercase()),
                Some(u)
            );
        }
        assert_eq!(SpecialUse::from_attribute("\\Noselect"), None);
    }

    #[test]
    fn names_match_ignoring_case_and_under_inbox() {
        assert_eq!(SpecialUse::Sent.name_rank(&path(&["sent items"])), Some(1));
        assert_eq!(
            SpecialUse::Sent.name_rank(&path(&["INBOX", "Sent"])),
            Some(0)
        );
        assert_eq!(
            SpecialUse::Sent.name_rank(&path(&["[Gmail]", "Sent Mail"])),
            Some(4)
        );
        assert_eq!(
            SpecialUse::Trash.name_rank(&path(&["Deleted Items"])),
            Some(1)
        );
        assert_eq!(SpecialUse::Junk.name_rank(&path(&["Junk Email"])), Some(1));
        assert_eq!(SpecialUse::Sent.name_rank(&path(&["Sent", "2019"])), None);
        assert_eq!(SpecialUse::Sent.name_rank(&path(&["INBOX"])), None);
    }
}
