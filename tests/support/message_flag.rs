//! IMAP message flags: the five system flags a client may set, and keywords.

/// A flag as stored with a message. `\Recent` is not here: it is session state, never copied.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Flag {
    Seen,
    Answered,
    Flagged,
    Deleted,
    Draft,
    Keyword(String),
}

impl Flag {
    pub const SYSTEM: [Flag; 5] = [
        Flag::Seen,
        Flag::Answered,
        Flag::Flagged,
        Flag::Deleted,
        Flag::Draft,
    ];

    /// The flag as written in IMAP (`\Seen`, `$Forwarded`).
    pub fn to_imap(&self) -> String {
        match self {
            Flag::Seen => "\\Seen".to_owned(),
            Flag::Answered => "\\Answered".to_owned(),
            Flag::Flagged => "\\Flagged".to_owned(),
            Flag::Deleted => "\\Deleted".to_owned(),
            Flag::Draft => "\\Draft".to_owned(),
            Flag::Keyword(k) => k.clone(),
        }
    }

    /// Reads a flag from a FETCH FLAGS list; None for `\Recent`, which is not a stored flag.
    /// System flags are case-insensitive in IMAP; keywords keep their spelling.
    pub fn from_imap(text: &str) -> Option<Flag> {
        let lower = text.to_ascii_lowercase();
        Some(match lower.as_str() {
            "\\seen" => Flag::Seen,
            "\\answered" => Flag::Answered,
            "\\flagged" => Flag::Flagged,
            "\\deleted" => Flag::Deleted,
            "\\draft" => Flag::Draft,
            "\\recent" => return None,
            _ => Flag::Keyword(text.to_owned()),
        })
    }

    /// The Maildir info letter of a system flag (cr.yp.to/proto/maildir.html); None for keywords.
    pub fn maildir_letter(&self) -> Option<char> {
        match self {
            Flag::Draft => Some('D'),
            Flag::Flagged => Some('F'),
            Flag::Answered => Some('R'),
            Flag::Seen => Some('S'),
            Flag::Deleted => Some('T'),
            Flag::Keyword(_) => None,
        }
    }

    /// A keyword must be an IMAP atom without `\`; the kit refuses others early.
    pub fn is_valid_keyword(text: &str) -> bool {
        !text.is_empty()
            && text.bytes().all(|b| {
                (0x21..=0x7e).contains(&b)
                    && !matches!(b, b'(' | b')' | b'{' | b'%' | b'*' | b'"' | b'\\' | b']')
            })
    }
}

impl std::fmt::Display for Flag {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.to_imap())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_recent() {
        for flag in Flag::SYSTEM {
            assert_eq!(Flag::from_imap(&flag.to_imap()), Some(flag.clone()));
        }
        assert_eq!(Flag::from_imap("\\SEEN"), Some(Flag::Seen));
        assert_eq!(Flag::from_imap("\\Recent"), None);
        assert_eq!(
            Flag::from_imap("$Forwarded"),
            Some(Flag::Keyword("$Forwarded".into()))
        );
    }

    #[test]
    fn keyword_validity() {
        assert!(Flag::is_valid_keyword("$label1"));
        assert!(Flag::is_valid_keyword("NonJunk"));
        assert!(!Flag::is_valid_keyword("two words"));
        assert!(!Flag::is_valid_keyword("\\Seen"));
        assert!(!Flag::is_valid_keyword(""));
    }
}
