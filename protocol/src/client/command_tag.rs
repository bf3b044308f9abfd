//! Command tags: `A1`, `A2`, ... numbered per session.

use std::fmt;

/// The tag of a command this session sent; the handle for matching its completion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CommandTag(pub(crate) u32);

impl CommandTag {
    /// The tag as written on the wire.
    pub fn wire(&self) -> String {
        format!("A{}", self.0)
    }

    /// The tag for the bytes a server echoed, if they are one of ours.
    pub fn from_wire(bytes: &[u8]) -> Option<CommandTag> {
        let digits = bytes.strip_prefix(b"A")?;
        if digits.is_empty()
            || digits.len() > 10
            || !digits.iter().all(u8::is_ascii_digit)
            || digits[0] == b'0'
        {
            return None;
        }
        std::str::from_utf8(digits)
            .ok()?
            .parse()
            .ok()
            .map(CommandTag)
    }
}

impl fmt::Display for CommandTag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "A{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_foreign_tags() {
        assert_eq!(
            CommandTag::from_wire(CommandTag(42).wire().as_bytes()),
            Some(CommandTag(42))
        );
        for foreign in [&b"B1"[..], b"A", b"A01", b"A1x", b"A99999999999", b"a1"] {
            assert_eq!(CommandTag::from_wire(foreign), None, "{foreign:?}");
        }
    }
}
