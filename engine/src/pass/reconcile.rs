//! Matching messages whose APPEND outcome is unknown against what the target holds.
//!
//! Used in three places, always the same way: a journal group left pending by a crash or
//! a cut connection, a group appended to a target without UIDPLUS (no APPENDUID), and a
//! folder whose UIDVALIDITY changed on either side (every source message against every
//! target message). Sans I/O: the caller fetches the target's fingerprints.
//!
//! Rules that keep "never twice, never lost":
//! - a target message is matched at most once (byte-identical duplicates are a multiset);
//! - a group's messages can only be at or above the target UIDNEXT recorded before it
//!   went out, and they were appended in order, so each takes the lowest free match;
//! - target UIDs already in the uid map are never candidates (they belong to messages
//!   committed earlier, possibly with the same bytes).
//!
//! Colliding fingerprints (byte-identical duplicates, or two messages that share their
//! size and first 64 KiB and differ later): the candidates with that fingerprint are one
//! multiset in UID order, and the wanted messages, also in UID order, take them lowest
//! first. Each target message is taken at most once and each wanted message takes at
//! most one, so a collision can neither map two messages to one copy (a loss) nor leave
//! a message unmatched while a copy waits (a second APPEND): n wanted against n
//! candidates match all n. What a collision of non-identical messages can do is pair
//! them crosswise. Copies were appended in source UID order, so order-preserving matching
//! pairs them right whenever the target kept that order; if not, later flag changes of
//! one twin land on the other, and mirroring a deletion of one removes the other's copy,
//! so the target keeps the survivor's twin: same size and first 64 KiB, other bytes
//! after that. Telling such twins apart would take reading them whole.

use std::collections::{BTreeMap, HashMap, VecDeque};

use imapmirror_storage::{Fingerprint, MessageFlags};

/// A message on the target that may be one of ours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetCandidate {
    pub uid: u32,
    pub fingerprint: Fingerprint,
    pub flags: MessageFlags,
}

/// A message whose copy is to be found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wanted {
    pub source_uid: u32,
    pub fingerprint: Fingerprint,
    /// Only target UIDs at or above this can be it.
    pub min_target_uid: u32,
}

/// A message found on the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Found {
    pub source_uid: u32,
    pub target_uid: u32,
    pub flags: MessageFlags,
}

/// A pool of target messages, each usable once.
#[derive(Debug, Default)]
pub struct CandidatePool {
    /// Fingerprint → candidates in UID order.
    by_fingerprint: HashMap<Fingerprint, VecDeque<(u32, MessageFlags)>>,
}

impl CandidatePool {
    /// A pool of `candidates`, leaving out target UIDs already mapped.
    pub fn new(
        candidates: impl IntoIterator<Item = TargetCandidate>,
        already_mapped: &dyn Fn(u32) -> bool,
    ) -> Self {
        let mut sorted: BTreeMap<u32, TargetCandidate> = BTreeMap::new();
        for c in candidates {
            if !already_mapped(c.uid) {
                sorted.insert(c.uid, c);
            }
        }
        let mut by_fingerprint: HashMap<Fingerprint, VecDeque<(u32, MessageFlags)>> =
            HashMap::new();
        for (uid, c) in sorted {
            by_fingerprint
                .entry(c.fingerprint)
                .or_default()
                .push_back((uid, c.flags));
        }
        CandidatePool { by_fingerprint }
    }

    /// Takes the lowest unused candidate for `wanted`, if any.
    pub fn take(&mut self, wanted: &Wanted) -> Option<Found> {
        let list = self.by_fingerprint.get_mut(&wanted.fingerprint)?;
        let at = list
            .iter()
            .position(|(uid, _)| *uid >= wanted.min_target_uid)?;
        let (target_uid, flags) = list.remove(at)?;
        Some(Found {
            source_uid: wanted.source_uid,
            target_uid,
            flags,
        })
    }

    /// Matches `wanted` in order; returns the found ones and the source UIDs not found.
    pub fn match_all(&mut self, wanted: &[Wanted]) -> (Vec<Found>, Vec<u32>) {
        let mut found = Vec::new();
        let mut missing = Vec::new();
        for w in wanted {
            match self.take(w) {
                Some(f) => found.push(f),
                None => missing.push(w.source_uid),
            }
        }
        (found, missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(n: u8) -> Fingerprint {
        Fingerprint([n; 16])
    }

    fn cand(uid: u32, f: u8) -> TargetCandidate {
        TargetCandidate {
            uid,
            fingerprint: fp(f),
            flags: MessageFlags::new(),
        }
    }

    fn want(source_uid: u32, f: u8, min: u32) -> Wanted {
        Wanted {
            source_uid,
            fingerprint: fp(f),
            min_target_uid: min,
        }
    }

    #[test]
    fn duplicates_are_matched_once_each_in_order() {
        let mut pool = CandidatePool::new([cand(12, 1), cand(10, 1), cand(11, 2)], &|_| false);
        let (found, missing) = pool.match_all(&[want(5, 1, 10), want(6, 1, 10), want(7, 1, 10)]);
        let pairs: Vec<(u32, u32)> = found.iter().map(|f| (f.source_uid, f.target_uid)).collect();
        assert_eq!(pairs, vec![(5, 10), (6, 12)]);
        assert_eq!(
            missing,
            vec![7],
            "a third copy was never appended: it goes again"
        );
    }

    #[test]
    fn mapped_and_too_low_uids_are_never_taken() {
        // Target UID 3 holds the same bytes but belongs to an earlier committed message.
        let mut pool = CandidatePool::new([cand(3, 9), cand(4, 9), cand(8, 9)], &|u| u == 3);
        let (found, missing) = pool.match_all(&[want(1, 9, 5)]);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].target_uid, 8, "UID 4 is below the group's UIDNEXT");
        assert!(missing.is_empty());
        let (found, missing) = pool.match_all(&[want(2, 9, 1)]);
        assert_eq!(found[0].target_uid, 4);
        assert!(missing.is_empty());
        let (found, missing) = pool.match_all(&[want(3, 9, 1)]);
        assert!(found.is_empty());
        assert_eq!(missing, vec![3]);
    }
}
