//! The capabilities a server announced, and the extensions enabled on this session.

use crate::types::Capabilities;

/// A set of capability names, compared ASCII case-insensitively (kept upper-case).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapabilitySet(Vec<String>);

impl CapabilitySet {
    /// The set a server's CAPABILITY list names.
    pub fn from_list(list: Capabilities<'_>) -> Self {
        let mut set = CapabilitySet::default();
        for c in list.iter() {
            set.insert(&String::from_utf8_lossy(c));
        }
        set
    }

    /// Adds `name` unless present.
    pub fn insert(&mut self, name: &str) {
        let upper = name.to_ascii_uppercase();
        if !self.0.contains(&upper) {
            self.0.push(upper);
        }
    }

    /// True when `name` is in the set.
    pub fn contains(&self, name: &str) -> bool {
        self.0.iter().any(|c| c.eq_ignore_ascii_case(name))
    }

    /// True when `AUTH=mechanism` is in the set.
    pub fn has_auth(&self, mechanism: &str) -> bool {
        self.0.iter().any(|c| {
            c.strip_prefix("AUTH=")
                .is_some_and(|m| m.eq_ignore_ascii_case(mechanism))
        })
    }

    /// The names, upper-case, in the order announced.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }

    /// True when nothing is known.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Forgets everything (after STARTTLS, RFC 3501 section 6.2.1).
    pub fn clear(&mut self) {
        self.0.clear();
    }

    /// How literals may be sent: LITERAL+ beats LITERAL-; IMAP4rev2 implies LITERAL-
    /// (RFC 9051 section 4.3).
    pub fn literal_mode(&self) -> crate::literal_mode::LiteralMode {
        if self.contains("LITERAL+") {
            crate::literal_mode::LiteralMode::Plus
        } else if self.contains("LITERAL-") || self.contains("IMAP4rev2") {
            crate::literal_mode::LiteralMode::Minus
        } else {
            crate::literal_mode::LiteralMode::Sync
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Code, Response, StatusResponse, parse_response};

    #[test]
    fn reads_a_greeting_capability_code() {
        let frame = b"* OK [CAPABILITY IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE LITERAL+ AUTH=PLAIN auth=login] ready\r\n";
        let Ok(Response::Status(StatusResponse {
            code: Some(Code::Capability(list)),
            ..
        })) = parse_response(frame)
        else {
            panic!("greeting not parsed");
        };
        let caps = CapabilitySet::from_list(list);
        assert!(caps.contains("sasl-ir"));
        assert!(caps.has_auth("LOGIN"));
        assert!(caps.has_auth("plain"));
        assert!(!caps.has_auth("XOAUTH2"));
        assert_eq!(caps.literal_mode(), crate::literal_mode::LiteralMode::Plus);
    }

    #[test]
    fn literal_mode_follows_capabilities() {
        let mut caps = CapabilitySet::default();
        assert_eq!(caps.literal_mode(), crate::literal_mode::LiteralMode::Sync);
        caps.insert("IMAP4rev2");
        assert_eq!(caps.literal_mode(), crate::literal_mode::LiteralMode::Minus);
        caps.clear();
        assert!(caps.is_empty());
    }
}
