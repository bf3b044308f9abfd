//! Owned response codes: what outlives the frame they came in. Plain data below the error
//! type, which holds one in `Error::Refused`; completions are in `completion.rs`.

use std::fmt;

use crate::types::Code;

use super::capability_set::CapabilitySet;
use super::uid_ranges::UidRanges;

/// A response code (`resp-text-code`) kept after its frame is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResponseCode {
    /// `ALERT`
    Alert,
    /// `CAPABILITY ...` (already applied to the session's capabilities).
    Capability(CapabilitySet),
    /// `PERMANENTFLAGS (...)`, the raw list.
    PermanentFlags(String),
    /// `READ-ONLY`
    ReadOnly,
    /// `READ-WRITE`
    ReadWrite,
    /// `TRYCREATE`
    TryCreate,
    /// `UIDNEXT n`
    UidNext(u32),
    /// `UIDVALIDITY n`
    UidValidity(u32),
    /// `UNSEEN n`
    Unseen(u32),
    /// `HIGHESTMODSEQ n`
    HighestModSeq(u64),
    /// `NOMODSEQ`
    NoModSeq,
    /// `APPENDUID uidvalidity uid-set`
    AppendUid {
        /// UIDVALIDITY of the target mailbox.
        uid_validity: u32,
        /// The UIDs assigned, in append order.
        uids: UidRanges,
    },
    /// `COPYUID uidvalidity source dest`
    CopyUid {
        /// UIDVALIDITY of the destination.
        uid_validity: u32,
        /// Source UIDs.
        source: UidRanges,
        /// Destination UIDs, paired with `source` by order.
        dest: UidRanges,
    },
    /// `MODIFIED uid-set` (RFC 7162): a conditional STORE skipped these.
    Modified(UidRanges),
    /// `UIDNOTSTICKY`
    UidNotSticky,
    /// `CLOSED`
    Closed,
    /// `TOOBIG`
    TooBig,
    /// `OVERQUOTA`
    OverQuota,
    /// `LIMIT`
    Limit,
    /// `UNAVAILABLE`
    Unavailable,
    /// `THROTTLED`
    Throttled,
    /// Any other code: its name and argument as sent (lossy UTF-8).
    Other {
        /// The name.
        name: String,
        /// The argument.
        arg: Option<String>,
    },
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl ResponseCode {
    /// The owned form of a parsed code.
    pub fn from_code(code: &Code<'_>) -> Self {
        match *code {
            Code::Alert => ResponseCode::Alert,
            Code::Capability(c) => ResponseCode::Capability(CapabilitySet::from_list(c)),
            Code::PermanentFlags(f) => ResponseCode::PermanentFlags(lossy(f.raw())),
            Code::ReadOnly => ResponseCode::ReadOnly,
            Code::ReadWrite => ResponseCode::ReadWrite,
            Code::TryCreate => ResponseCode::TryCreate,
            Code::UidNext(n) => ResponseCode::UidNext(n),
            Code::UidValidity(n) => ResponseCode::UidValidity(n),
            Code::Unseen(n) => ResponseCode::Unseen(n),
            Code::HighestModSeq(n) => ResponseCode::HighestModSeq(n),
            Code::NoModSeq => ResponseCode::NoModSeq,
            Code::AppendUid { uid_validity, uids } => ResponseCode::AppendUid {
                uid_validity,
                uids: UidRanges::from_set(&uids),
            },
            Code::CopyUid {
                uid_validity,
                source,
                dest,
            } => ResponseCode::CopyUid {
                uid_validity,
                source: UidRanges::from_set(&source),
                dest: UidRanges::from_set(&dest),
            },
            Code::UidNotSticky => ResponseCode::UidNotSticky,
            Code::Closed => ResponseCode::Closed,
            Code::TooBig => ResponseCode::TooBig,
            Code::OverQuota => ResponseCode::OverQuota,
            Code::Limit => ResponseCode::Limit,
            Code::Unavailable => ResponseCode::Unavailable,
            Code::Throttled => ResponseCode::Throttled,
            Code::Other { name, arg } => {
                if name.eq_ignore_ascii_case(b"MODIFIED")
                    && let Some(set) = arg.and_then(UidRanges::parse)
                {
                    return ResponseCode::Modified(set);
                }
                ResponseCode::Other {
                    name: lossy(name),
                    arg: arg.map(lossy),
                }
            }
            // `Code` is non-exhaustive: a code added to the parser later stays visible.
            #[allow(unreachable_patterns)]
            _ => ResponseCode::Other {
                name: format!("{code:?}"),
                arg: None,
            },
        }
    }
}

impl fmt::Display for ResponseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ResponseCode::Alert => f.write_str("ALERT"),
            ResponseCode::Capability(_) => f.write_str("CAPABILITY"),
            ResponseCode::PermanentFlags(p) => write!(f, "PERMANENTFLAGS ({p})"),
            ResponseCode::ReadOnly => f.write_str("READ-ONLY"),
            ResponseCode::ReadWrite => f.write_str("READ-WRITE"),
            ResponseCode::TryCreate => f.write_str("TRYCREATE"),
            ResponseCode::UidNext(n) => write!(f, "UIDNEXT {n}"),
            ResponseCode::UidValidity(n) => write!(f, "UIDVALIDITY {n}"),
            ResponseCode::Unseen(n) => write!(f, "UNSEEN {n}"),
            ResponseCode::HighestModSeq(n) => write!(f, "HIGHESTMODSEQ {n}"),
            ResponseCode::NoModSeq => f.write_str("NOMODSEQ"),
            ResponseCode::AppendUid { uid_validity, uids } => {
                write!(f, "APPENDUID {uid_validity} {uids}")
            }
            ResponseCode::CopyUid {
                uid_validity,
                source,
                dest,
            } => {
                write!(f, "COPYUID {uid_validity} {source} {dest}")
            }
            ResponseCode::Modified(s) => write!(f, "MODIFIED {s}"),
            ResponseCode::UidNotSticky => f.write_str("UIDNOTSTICKY"),
            ResponseCode::Closed => f.write_str("CLOSED"),
            ResponseCode::TooBig => f.write_str("TOOBIG"),
            ResponseCode::OverQuota => f.write_str("OVERQUOTA"),
            ResponseCode::Limit => f.write_str("LIMIT"),
            ResponseCode::Unavailable => f.write_str("UNAVAILABLE"),
            ResponseCode::Throttled => f.write_str("THROTTLED"),
            ResponseCode::Other { name, arg: Some(a) } => write!(f, "{name} {a}"),
            ResponseCode::Other { name, arg: None } => f.write_str(name),
        }
    }
}
