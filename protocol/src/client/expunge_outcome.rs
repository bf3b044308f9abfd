//! What EXPUNGE and UID EXPUNGE reported: the messages the server removed.

use super::uid_ranges::UidRanges;

/// The untagged responses an EXPUNGE or UID EXPUNGE (RFC 4315) gathered.
///
/// A server reports each removed message either as `* n EXPUNGE` (a sequence number) or,
/// once QRESYNC is enabled, as `* VANISHED uid-set` (RFC 7162 3.2.10); one of the two
/// lists is normally empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExpungeOutcome {
    /// `* n EXPUNGE`, in the order sent. Each number counts in the mailbox as it was
    /// after the previous ones were removed (RFC 3501 7.4.1): removing messages 3, 4 and
    /// 5 may be reported as `3, 3, 3`.
    pub expunged: Vec<u32>,
    /// `* VANISHED` (not `EARLIER`): the UIDs removed, as ranges.
    pub vanished: UidRanges,
}

impl ExpungeOutcome {
    /// How many messages the server reported removed, in either form.
    pub fn count(&self) -> u64 {
        self.expunged.len() as u64 + self.vanished.len()
    }
}
