//! Which new messages of a folder go out in which APPEND group (sans I/O).
//!
//! Small messages travel in groups (one journal entry, one MULTIAPPEND, one target
//! commit and fsync per group: the target's fsync is the cost to amortise). A message
//! over the streaming threshold travels alone, streamed from the source socket to the
//! target socket in chunks. Messages over the size limit are skipped with the reason.
//! Steps are in UID order, which keeps the folder's watermark meaningful.

/// What the metadata pass learnt about a new message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewMessage {
    pub uid: u32,
    pub size: u64,
}

/// Limits of one group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupLimits {
    /// Messages per group (MULTIAPPEND); at most the journal's group size.
    pub max_messages: usize,
    /// Bytes held in memory for one group.
    pub max_bytes: u64,
    /// Messages larger than this are streamed alone.
    pub stream_threshold: u64,
}

impl Default for GroupLimits {
    fn default() -> Self {
        GroupLimits {
            max_messages: 100,
            max_bytes: 8 * 1024 * 1024,
            stream_threshold: 256 * 1024,
        }
    }
}

/// Why a message is not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeLimit {
    /// The batch's `--max-message-size`.
    Batch(u64),
    /// The target's APPENDLIMIT.
    Target(u64),
}

impl std::fmt::Display for SizeLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SizeLimit::Batch(n) => write!(
                f,
                "larger than the batch's maximum message size of {n} bytes"
            ),
            SizeLimit::Target(n) => write!(f, "larger than the target's APPENDLIMIT of {n} bytes"),
        }
    }
}

/// One step of copying a folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyStep {
    /// Too large: record as skipped.
    Skip {
        message: NewMessage,
        limit: SizeLimit,
    },
    /// Fetch these in one UID FETCH, append them in one group.
    Group(Vec<NewMessage>),
    /// Stream this one alone.
    Large(NewMessage),
}

/// The steps for `messages` (any order; output in UID order).
pub fn plan_copies(
    messages: &[NewMessage],
    limits: &GroupLimits,
    max_message_size: Option<u64>,
    append_limit: Option<u64>,
) -> Vec<CopyStep> {
    let mut sorted = messages.to_vec();
    sorted.sort_by_key(|m| m.uid);
    sorted.dedup_by_key(|m| m.uid);
    let max_messages = limits.max_messages.max(1);
    let mut steps = Vec::new();
    let mut group: Vec<NewMessage> = Vec::new();
    let mut group_bytes = 0u64;
    let flush = |group: &mut Vec<NewMessage>, bytes: &mut u64, steps: &mut Vec<CopyStep>| {
        if !group.is_empty() {
            steps.push(CopyStep::Group(std::mem::take(group)));
        }
        *bytes = 0;
    };
    for m in sorted {
        let limit = match (max_message_size, append_limit) {
            (Some(b), _) if m.size > b => Some(SizeLimit::Batch(b)),
            (_, Some(t)) if m.size > t => Some(SizeLimit::Target(t)),
            _ => None,
        };
        if let Some(limit) = limit {
            flush(&mut group, &mut group_bytes, &mut steps);
            steps.push(CopyStep::Skip { message: m, limit });
            continue;
        }
        if m.size > limits.stream_threshold {
            flush(&mut group, &mut group_bytes, &mut steps);
            steps.push(CopyStep::Large(m));
            continue;
        }
        if group.len() >= max_messages
            || (group_bytes + m.size > limits.max_bytes && !group.is_empty())
        {
            flush(&mut group, &mut group_bytes, &mut steps);
        }
        group_bytes += m.size;
        group.push(m);
    }
    flush(&mut group, &mut group_bytes, &mut steps);
    steps
}

/// A compact UID set (`1:5,9`) for a command.
pub fn uid_set(uids: impl IntoIterator<Item = u32>) -> String {
    let mut sorted: Vec<u32> = uids.into_iter().collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && end.checked_add(1) == Some(sorted[i + 1]) {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}:{end}"));
        }
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(uid: u32, size: u64) -> NewMessage {
        NewMessage { uid, size }
    }

    #[test]
    fn groups_by_count_and_bytes_large_alone_oversized_skipped() {
        let limits = GroupLimits {
            max_messages: 2,
            max_bytes: 100,
            stream_threshold: 60,
        };
        let steps = plan_copies(
            &[
                m(5, 10),
                m(1, 10),
                m(2, 10),
                m(3, 70),
                m(4, 500),
                m(6, 50),
                m(7, 50),
            ],
            &limits,
            Some(400),
            None,
        );
        assert_eq!(
            steps,
            vec![
                CopyStep::Group(vec![m(1, 10), m(2, 10)]),
                CopyStep::Large(m(3, 70)),
                CopyStep::Skip {
                    message: m(4, 500),
                    limit: SizeLimit::Batch(400)
                },
                CopyStep::Group(vec![m(5, 10), m(6, 50)]),
                CopyStep::Group(vec![m(7, 50)]),
            ]
        );
    }

    #[test]
    fn target_append_limit_applies_too() {
        let steps = plan_copies(
            &[m(1, 10), m(2, 30)],
            &GroupLimits::default(),
            None,
            Some(20),
        );
        assert_eq!(
            steps[1],
            CopyStep::Skip {
                message: m(2, 30),
                limit: SizeLimit::Target(20)
            }
        );
        assert!(SizeLimit::Target(20).to_string().contains("APPENDLIMIT"));
    }

    #[test]
    fn uid_sets_are_compact() {
        assert_eq!(uid_set([5, 1, 2, 3, 9, 10, 3]), "1:3,5,9:10");
        assert_eq!(uid_set([]), "");
        assert_eq!(uid_set([7]), "7");
        // The highest UID a server may send does not overflow the range arithmetic.
        assert_eq!(
            uid_set([u32::MAX, u32::MAX - 1, 1]),
            "1,4294967294:4294967295"
        );
    }
}
