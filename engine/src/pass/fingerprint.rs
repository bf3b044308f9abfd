//! Content fingerprints: how a message is recognised on the target without its UID.
//!
//! A fingerprint is SHA-256 over a domain tag, the message's size (8 bytes, big-endian)
//! and its first [`PREFIX_LEN`] bytes, truncated to the 16 bytes the store keeps.
//!
//! Why a prefix and not the whole message: the prefix holds every header (Message-ID,
//! Date, Received chain, Subject) of all but pathological messages, so together with the
//! exact size it tells messages apart in practice; and it can be computed from a partial
//! `BODY.PEEK[]<0.65536>` fetch on either side ([`PrefixAnswer`]). Reconciling a crashed
//! group or rebuilding a folder map after a UIDVALIDITY change therefore reads at most
//! 64 KiB per message instead of every byte of every message. For a message over 64 KiB
//! the size then comes from RFC822.SIZE, which must equal the length of `BODY[]`; the
//! fetch code reads whole bodies from servers whose sizes prove to be estimates. Two messages that share size and first
//! 64 KiB but differ later are indistinguishable; the worst outcome is that two such
//! messages swap mappings (both are on the target either way), never a lost or doubled
//! message. Byte-identical duplicates have equal fingerprints by design: matching counts
//! them as a multiset, so each copy is matched once.

use imapmirror_storage::Fingerprint;
use ring::digest;

/// Bytes of the message start that enter the fingerprint.
pub const PREFIX_LEN: usize = 64 * 1024;

/// Versions the definition, so that a future change cannot match old values by chance.
const DOMAIN: &[u8] = b"imapmirror-fingerprint-v1\0";

/// Fingerprint of a whole message held in memory.
pub fn of_message(bytes: &[u8]) -> Fingerprint {
    let prefix = &bytes[..bytes.len().min(PREFIX_LEN)];
    of_prefix(prefix, bytes.len() as u64)
}

/// Fingerprint from the first bytes of a message (at least `min(size, PREFIX_LEN)` of
/// them; extra bytes are ignored) and its total size.
pub fn of_prefix(prefix: &[u8], size: u64) -> Fingerprint {
    let size_usize = usize::try_from(size).unwrap_or(usize::MAX);
    let take = prefix.len().min(PREFIX_LEN).min(size_usize);
    let mut ctx = digest::Context::new(&digest::SHA256);
    ctx.update(DOMAIN);
    ctx.update(&size.to_be_bytes());
    ctx.update(&prefix[..take]);
    let d = ctx.finish();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d.as_ref()[..16]);
    Fingerprint(out)
}

/// The answer to `BODY.PEEK[]<0.PREFIX_LEN>` as fetched: at most [`PREFIX_LEN`] leading
/// bytes of it, how long the answer was, and the server's RFC822.SIZE.
#[derive(Debug, Clone, Copy)]
pub struct PrefixAnswer<'a> {
    /// The answer's first bytes (at least `min(answered_len, PREFIX_LEN)` of them).
    pub prefix: &'a [u8],
    /// The length of the literal the server sent.
    pub answered_len: u64,
    /// True when the server sent `BODY[]` (the whole message) instead of `BODY[]<0>`.
    pub whole_message: bool,
    /// RFC822.SIZE as announced.
    pub announced_size: Option<u64>,
}

impl PrefixAnswer<'_> {
    /// The message's size: exact when the answer holds the whole message (a partial
    /// answer shorter than asked ends where the message ends, RFC 3501 6.4.5), else the
    /// server's RFC822.SIZE. `None` when that is missing or smaller than what was sent.
    pub fn size(&self) -> Option<u64> {
        if self.whole_message || self.answered_len < PREFIX_LEN as u64 {
            return Some(self.answered_len);
        }
        self.announced_size.filter(|&s| s >= self.answered_len)
    }

    /// True when RFC822.SIZE could be checked against the real size (the message fit in
    /// the answer) and differs: this server's sizes are estimates.
    pub fn size_contradicted(&self) -> bool {
        (self.whole_message || self.answered_len < PREFIX_LEN as u64)
            && self.announced_size.is_some_and(|s| s != self.answered_len)
    }

    /// The fingerprint and size, the same values [`of_message`] gives for the whole
    /// message as long as RFC822.SIZE is exact (messages under [`PREFIX_LEN`] never
    /// depend on it); `None` when the size is unknown or the prefix is short.
    pub fn fingerprint(&self) -> Option<(Fingerprint, u64)> {
        let size = self.size()?;
        if !prefix_is_complete(self.prefix.len(), size) {
            return None;
        }
        Some((of_prefix(self.prefix, size), size))
    }
}

/// Whether `prefix` holds enough of a `size`-byte message to fingerprint it.
pub fn prefix_is_complete(prefix_len: usize, size: u64) -> bool {
    prefix_len as u64 >= size.min(PREFIX_LEN as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_and_prefix_agree() {
        let small = b"Subject: hi\r\n\r\nbody\r\n".to_vec();
        assert_eq!(of_message(&small), of_prefix(&small, small.len() as u64));
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        assert_eq!(
            of_message(&big),
            of_prefix(&big[..PREFIX_LEN], big.len() as u64)
        );
        assert!(prefix_is_complete(PREFIX_LEN, big.len() as u64));
        assert!(!prefix_is_complete(PREFIX_LEN - 1, big.len() as u64));
        assert!(prefix_is_complete(small.len(), small.len() as u64));
    }

    #[test]
    fn a_prefix_answer_gives_the_whole_message_fingerprint() {
        let small = b"Subject: hi\r\n\r\nbody\r\n".to_vec();
        // RFC822.SIZE plays no part for a message that fits in the answer.
        for announced in [None, Some(small.len() as u64), Some(3)] {
            let a = PrefixAnswer {
                prefix: &small,
                answered_len: small.len() as u64,
                whole_message: false,
                announced_size: announced,
            };
            assert_eq!(
                a.fingerprint(),
                Some((of_message(&small), small.len() as u64))
            );
            assert_eq!(a.size_contradicted(), announced == Some(3));
        }
        let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let partial = PrefixAnswer {
            prefix: &big[..PREFIX_LEN],
            answered_len: PREFIX_LEN as u64,
            whole_message: false,
            announced_size: Some(big.len() as u64),
        };
        assert_eq!(
            partial.fingerprint(),
            Some((of_message(&big), big.len() as u64)),
            "stored fingerprints of whole-body reads stay valid"
        );
        assert!(!partial.size_contradicted());
        // A large message whose size is unknown or impossible is not guessed at.
        for announced in [None, Some(100)] {
            let a = PrefixAnswer {
                announced_size: announced,
                ..partial
            };
            assert_eq!(a.fingerprint(), None);
        }
        // A server that ignores the partial and sends BODY[] whole is read as sent.
        let whole = PrefixAnswer {
            prefix: &big[..PREFIX_LEN],
            answered_len: big.len() as u64,
            whole_message: true,
            announced_size: None,
        };
        assert_eq!(
            whole.fingerprint(),
            Some((of_message(&big), big.len() as u64))
        );
        // Fewer prefix bytes than the message's first 64 KiB: no fingerprint.
        let short = PrefixAnswer {
            prefix: &big[..10],
            ..partial
        };
        assert_eq!(short.fingerprint(), None);
    }

    #[test]
    fn size_and_content_both_matter() {
        let a = b"Message-ID: <a@x>\r\n\r\nx".to_vec();
        let mut b = a.clone();
        b.push(b'y');
        assert_ne!(of_message(&a), of_message(&b));
        // Same prefix, different size (a change beyond the first 64 KiB that changes size).
        let long = vec![b'a'; PREFIX_LEN + 10];
        let longer = vec![b'a'; PREFIX_LEN + 11];
        assert_ne!(of_message(&long), of_message(&longer));
        // Identical bytes, identical fingerprint: duplicates are matched as a multiset.
        assert_eq!(of_message(&a), of_message(&a.clone()));
    }
}
