//! Fingerprinting a folder's messages on either side, for reconciling interrupted groups,
//! targets without UIDPLUS and UIDVALIDITY rebuilds (see `reconcile.rs`).
//!
//! Only `BODY.PEEK[]<0.65536>` and RFC822.SIZE are read, so rebuilding a folder of large
//! messages costs at most 64 KiB per message instead of every byte. The fingerprint is the
//! one the copy path computes from whole bodies (`fingerprint::of_message`): for a message
//! under 64 KiB the answer *is* the message; for a larger one the size comes from
//! RFC822.SIZE, which RFC 3501 defines as the exact length of `BODY[]`. Servers that
//! report estimates instead (some groupware gateways) are caught when a message that fit
//! in the answer shows a different RFC822.SIZE: the large messages of that fetch are then
//! read whole, as before. A large message whose size cannot be trusted or is missing is
//! read whole too, so a candidate is never dropped for want of a size.
//!
//! Also here: the target's messages that no uid-map entry claims, fingerprinted, where
//! both the reconciliation of a crashed group and a copy without APPENDUID look.

use std::collections::HashSet;

use bytes::{Bytes, BytesMut};
use imapmirror_protocol::FetchAttr;
use imapmirror_protocol::client::{FetchEvent, MessageMeta};
use imapmirror_storage::{Database, FolderId, StoreError};

use super::sync_context::{SyncContext, store_flags};
use crate::endpoint::pool::{CommandCounters, Connection};
use crate::error::Error;
use crate::pass::copy_plan::uid_set;
use crate::pass::fingerprint::{self, PREFIX_LEN, PrefixAnswer};
use crate::pass::reconcile::{CandidatePool, TargetCandidate};

/// UIDs per whole-body fallback FETCH (short command lines).
const FALLBACK_CHUNK: usize = 500;

/// One fetched message before its fingerprint is known.
struct Answer {
    meta: MessageMeta,
    /// The first (up to) 64 KiB of the body item.
    prefix: Bytes,
    /// The body item's full length as sent.
    answered_len: u64,
    /// The item was `BODY[]` (whole), not `BODY[]<0>`.
    whole_message: bool,
}

impl Answer {
    fn prefix_answer(&self) -> PrefixAnswer<'_> {
        PrefixAnswer {
            prefix: &self.prefix,
            answered_len: self.answered_len,
            whole_message: self.whole_message,
            announced_size: self.meta.size,
        }
    }
}

/// Reads the FETCH output of `uids`: each message's attributes and the first 64 KiB of
/// its body item (streamed items are cut while they pass, never held whole).
async fn read_answers(
    ctx: &SyncContext<'_>,
    conn: &mut Connection,
    uids: &str,
    attrs: &[FetchAttr<'_>],
    action: &str,
) -> Result<Vec<Answer>, Error> {
    CommandCounters::bump(&conn.counters.fetches);
    let mut stream = conn
        .session
        .uid_fetch(uids, attrs, None, false)
        .await
        .map_err(ctx.imap_err(action))?;
    let mut out = Vec::new();
    let mut prefix = BytesMut::new();
    let mut streamed: Option<(u64, bool)> = None;
    loop {
        let event = stream.next().await.map_err(ctx.imap_err(action))?;
        let Some(event) = event else { break };
        match event {
            FetchEvent::Message(m) => {
                // The partial answer, or BODY[] from a server that ignored `<0.N>`.
                let (data, whole_message) = match m.section("", Some(0)) {
                    Some(d) => (d.clone(), false),
                    None => match m.body() {
                        Some(d) => (d.clone(), true),
                        None => continue,
                    },
                };
                out.push(Answer {
                    answered_len: data.len() as u64,
                    prefix: data.slice(..data.len().min(PREFIX_LEN)),
                    whole_message,
                    meta: m.meta,
                });
            }
            FetchEvent::StreamStart {
                section,
                origin,
                len,
                ..
            } => {
                prefix.clear();
                // Only the message's body from its start counts.
                streamed = (section.is_empty() && matches!(origin, None | Some(0)))
                    .then_some((len, origin.is_none()));
            }
            FetchEvent::Chunk { bytes, .. } => {
                if streamed.is_some() && prefix.len() < PREFIX_LEN {
                    let take = bytes.len().min(PREFIX_LEN - prefix.len());
                    prefix.extend_from_slice(&bytes[..take]);
                }
            }
            FetchEvent::StreamEnd(m) => {
                if let Some((answered_len, whole_message)) = streamed.take() {
                    out.push(Answer {
                        meta: m.meta,
                        prefix: prefix.split().freeze(),
                        answered_len,
                        whole_message,
                    });
                }
            }
        }
    }
    Ok(out)
}

/// Fingerprints (and flags, and sizes) of the selected folder's messages in `uids` at or
/// above `min_uid`, reading at most the first 64 KiB of each (see the module comment for
/// when a message is read whole instead).
pub(crate) async fn fetch_fingerprints(
    ctx: &SyncContext<'_>,
    conn: &mut Connection,
    uids: &str,
    min_uid: u32,
    what: &str,
) -> Result<Vec<(TargetCandidate, u64)>, Error> {
    let action = format!("fingerprinting {what}");
    let attrs = [
        FetchAttr::Uid,
        FetchAttr::Flags,
        FetchAttr::Rfc822Size,
        FetchAttr::BodyPeekPartial {
            section: "",
            offset: 0,
            len: PREFIX_LEN as u32,
        },
    ];
    let answers = read_answers(ctx, conn, uids, &attrs, &action).await?;
    let estimates = answers
        .iter()
        .any(|a| a.prefix_answer().size_contradicted());
    if estimates {
        tracing::info!(
            server = %conn.server(),
            "RFC822.SIZE differs from the real size here: large messages are read whole to fingerprint them"
        );
    }
    let mut out = Vec::with_capacity(answers.len());
    let mut read_whole: Vec<u32> = Vec::new();
    for a in &answers {
        let Some(uid) = a.meta.uid.filter(|u| *u >= min_uid) else {
            continue;
        };
        let exact = a.whole_message || a.answered_len < PREFIX_LEN as u64;
        match a.prefix_answer().fingerprint() {
            Some((fp, size)) if exact || !estimates => out.push(candidate(uid, a, fp, size)),
            _ => read_whole.push(uid),
        }
    }
    for chunk in read_whole.chunks(FALLBACK_CHUNK) {
        let attrs = [FetchAttr::Uid, FetchAttr::Flags, FetchAttr::BodyPeek("")];
        let set = uid_set(chunk.iter().copied());
        for a in read_answers(ctx, conn, &set, &attrs, &action).await? {
            let Some(uid) = a.meta.uid.filter(|u| *u >= min_uid && a.whole_message) else {
                continue;
            };
            let size = a.answered_len;
            out.push(candidate(
                uid,
                &a,
                fingerprint::of_prefix(&a.prefix, size),
                size,
            ));
        }
    }
    Ok(out)
}

fn candidate(
    uid: u32,
    a: &Answer,
    fingerprint: imapmirror_storage::Fingerprint,
    size: u64,
) -> (TargetCandidate, u64) {
    (
        TargetCandidate {
            uid,
            fingerprint,
            flags: store_flags(a.meta.flags.as_ref()),
        },
        size,
    )
}

/// The target's messages at or above UID `min` that no uid-map entry claims, nor any of
/// `also_taken`: where the copies of a group that went out at that UIDNEXT can be.
pub(super) async fn unclaimed_target_messages(
    ctx: &SyncContext<'_>,
    tgt: &mut Connection,
    folder: FolderId,
    min: u32,
    also_taken: &[u32],
    what: &str,
) -> Result<CandidatePool, Error> {
    let candidates = fetch_fingerprints(ctx, tgt, &format!("{min}:*"), min, what).await?;
    let mut taken = ctx
        .store
        .run(move |db| mapped_target_uids(db, folder, min))
        .await
        .map_err(ctx.store_err("reading the uid map"))?;
    taken.extend(also_taken);
    Ok(CandidatePool::new(
        candidates.into_iter().map(|(c, _)| c),
        &|u| taken.contains(&u),
    ))
}

/// Target UIDs already in the folder's map, at or above `min`. Runs in a storage job:
/// it reads the whole map.
fn mapped_target_uids(
    db: &Database,
    folder: FolderId,
    min: u32,
) -> Result<HashSet<u32>, StoreError> {
    let mut out = HashSet::new();
    for item in db.uid_map_range(folder, ..)? {
        let (_, e) = item?;
        if e.target_uid >= min {
            out.insert(e.target_uid);
        }
    }
    Ok(out)
}
