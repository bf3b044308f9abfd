//! Content fingerprints: how a message is recognised on the target without its UID.
//!
//! A fingerprint is SHA-256 over a domain tag, the message's size (8 bytes, big-endian)
//! and its first [`PREFIX_LEN`] bytes, truncated to the 16 bytes the store keeps.
//!
//! Why a prefix and not the whole message: the prefix holds every header (Message-ID,
//! Date, Received chain, Subject) of all but pathological messages, so together with the
//! exact size it tells messages apart in practice; and it can be computed from a partial
//! `BODY.PEEK[]<0.65536>` fetch on either side. Reconciling a crashed group or rebuilding
//! a folder map after a UIDVALIDITY change therefore reads at most 64 KiB per message
//! instead of every byte of every message. Two messages that share size and first
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
