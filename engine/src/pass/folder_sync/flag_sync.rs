//! Carrying flag changes and (optionally) deletions of copied messages to the target.

use std::collections::{BTreeMap, HashMap, HashSet};

use imapmirror_protocol::client::MessageMeta;
use imapmirror_protocol::{Error as ImapError, FetchAttr, Flag, StoreMode};
use imapmirror_storage::{FolderId, MessageFlags, SkipReason, SkippedItem};

use super::sync_context::{FolderTask, SyncContext, store_flags};
use crate::endpoint::pool::{CommandCounters, Connection};
use crate::error::Error;
use crate::pass::copy_plan::uid_set;
use crate::pass::folder_check::FlagSync;
use crate::pass::report::PassTotals;

/// The flags to send for a storage flag set.
fn wire_flag_names(flags: &MessageFlags) -> Vec<String> {
    flags.to_imap()
}

fn flags_from_names(names: &[String]) -> Vec<Flag<'_>> {
    names
        .iter()
        .map(|n| match n.strip_prefix('\\') {
            Some(system) => match system.to_ascii_lowercase().as_str() {
                "seen" => Flag::Seen,
                "answered" => Flag::Answered,
                "flagged" => Flag::Flagged,
                "deleted" => Flag::Deleted,
                "draft" => Flag::Draft,
                _ => Flag::Extension(system.as_bytes()),
            },
            None => Flag::Keyword(n.as_bytes()),
        })
        .collect()
}

/// One message whose flags changed: source UID, target UID, the flags the map had.
type FlagChange = (u32, u32, Vec<String>);

/// Reads changed flags from the source and applies them on the target.
pub(super) async fn sync_flags(
    ctx: &SyncContext<'_>,
    src: &mut Connection,
    tgt: &mut Connection,
    folder: FolderId,
    task: &FolderTask,
    mode: FlagSync,
) -> Result<(), Error> {
    let changed_since = match mode {
        FlagSync::Skip => return Ok(()),
        FlagSync::ChangedSince(m) => Some(m),
        FlagSync::AllFlags => None,
    };
    let action = format!("reading flags of the source folder `{}`", task.source_name);
    CommandCounters::bump(&src.counters.fetches);
    let attrs = [FetchAttr::Uid, FetchAttr::Flags];
    let mut stream = src
        .session
        .uid_fetch("1:*", &attrs, changed_since, false)
        .await
        .map_err(ctx.imap_err(action.clone()))?;
    let mut source_flags: Vec<(u32, MessageFlags)> = Vec::new();
    while let Some(m) = stream
        .next_message()
        .await
        .map_err(ctx.imap_err(action.clone()))?
    {
        let MessageMeta {
            uid: Some(uid),
            flags,
            ..
        } = m.meta
        else {
            continue;
        };
        source_flags.push((uid, store_flags(flags.as_ref())));
    }
    drop(stream);
    source_flags.sort_by_key(|(u, _)| *u);
    // Compare against the map, reading it in UID order alongside (in one storage job).
    let mut lookup: HashMap<u32, MessageFlags> = source_flags.into_iter().collect();
    let by_flags = ctx
        .store
        .run(move |db| {
            let mut by_flags: BTreeMap<Vec<String>, Vec<FlagChange>> = BTreeMap::new();
            for item in db.uid_map_range(folder, ..)? {
                let (uid, entry) = item?;
                if let Some(now) = lookup.remove(&uid)
                    && now != entry.flags
                {
                    by_flags.entry(wire_flag_names(&now)).or_default().push((
                        uid,
                        entry.target_uid,
                        wire_flag_names(&entry.flags),
                    ));
                }
            }
            Ok(by_flags)
        })
        .await
        .map_err(ctx.store_err("reading the uid map"))?;
    let target_action = format!("setting flags in the target folder `{}`", task.target_name);
    for (names, pairs) in by_flags {
        let flags = flags_from_names(&names);
        let set = uid_set(pairs.iter().map(|(_, t, _)| *t));
        CommandCounters::bump(&tgt.counters.stores);
        match tgt
            .session
            .uid_store(&set, StoreMode::Replace, true, &flags, None)
            .await
        {
            Ok(_) => {}
            // A target that caps keywords (Cyrus: 100 per folder) refuses the STORE for
            // them: the change goes as a difference instead — what was removed, and the
            // system flags added — so the keywords the target already holds stay; the
            // new keywords are reported. The map keeps the source's flags, so the same
            // refusal is not provoked every pass.
            Err(ImapError::Refused { text, .. })
                if flags.iter().any(|f| matches!(f, Flag::Keyword(_))) =>
            {
                let mut by_before: BTreeMap<&[String], Vec<u32>> = BTreeMap::new();
                for (_, target_uid, before) in &pairs {
                    by_before.entry(before).or_default().push(*target_uid);
                }
                let mut dropped: Vec<String> = Vec::new();
                for (before, targets) in by_before {
                    let set = uid_set(targets.iter().copied());
                    let removed: Vec<String> = before
                        .iter()
                        .filter(|b| !names.contains(b))
                        .cloned()
                        .collect();
                    let added: Vec<String> = names
                        .iter()
                        .filter(|n| !before.contains(n))
                        .cloned()
                        .collect();
                    for n in &added {
                        if !n.starts_with('\\') && !dropped.contains(n) {
                            dropped.push(n.clone());
                        }
                    }
                    let added_system: Vec<String> =
                        added.into_iter().filter(|n| n.starts_with('\\')).collect();
                    for (mode, list) in
                        [(StoreMode::Remove, removed), (StoreMode::Add, added_system)]
                    {
                        if list.is_empty() {
                            continue;
                        }
                        CommandCounters::bump(&tgt.counters.stores);
                        tgt.session
                            .uid_store(&set, mode, true, &flags_from_names(&list), None)
                            .await
                            .map_err(ctx.imap_err(target_action.clone()))?;
                    }
                }
                tracing::warn!(folder = %task.target_name, messages = pairs.len(), keywords = ?dropped, server_said = %text, "the target refused keywords in a flag update; the rest of the change was made");
                let detail = format!(
                    "flags updated without keywords {}; with them the target said: {text}",
                    dropped.join(" ")
                );
                let items: Vec<SkippedItem> = pairs
                    .iter()
                    .map(|(source_uid, _, _)| SkippedItem {
                        source_uid: Some(*source_uid),
                        internal_date: None,
                        subject: None,
                        size: None,
                        from: None,
                        sent: None,
                        reason: SkipReason::KeywordsDropped,
                        detail: Some(detail.clone()),
                    })
                    .collect();
                PassTotals::add(&ctx.totals.keywords_dropped, items.len() as u64);
                ctx.store
                    .run(move |db| db.record_skipped(folder, &items))
                    .await
                    .map_err(ctx.store_err("recording keywords the target refused"))?;
            }
            Err(e) => return Err(ctx.imap_err(target_action.clone())(e)),
        }
        let stored = MessageFlags::from_imap(names.iter().map(String::as_str));
        let updates: Vec<(u32, MessageFlags)> =
            pairs.iter().map(|(s, _, _)| (*s, stored.clone())).collect();
        let n = ctx
            .store
            .run(move |db| db.uid_map_set_flags(folder, &updates))
            .await
            .map_err(ctx.store_err("recording flag changes"))?;
        PassTotals::add(&ctx.totals.flags_updated, n as u64);
    }
    Ok(())
}

/// Target UIDs per STORE / UID EXPUNGE: keeps command lines far below servers' line
/// limits (Dovecot's default is 64 KiB) when deletions are scattered.
const DELETION_CHUNK: usize = 500;

/// Removes from the target what no longer exists on the source, and forgets it.
///
/// Each chunk is flagged `\Deleted` and then removed with `UID EXPUNGE` of exactly those
/// UIDs (RFC 4315), so a message the user flagged `\Deleted` on the target and kept is
/// never touched; a plain EXPUNGE would remove it, so without UIDPLUS the copies stay
/// flagged `\Deleted` for the user's client to purge.
///
/// The map entries go only after the target answered: a crash in between leaves them in
/// the map, and the next pass sends the same STORE and UID EXPUNGE again, which for UIDs
/// already gone is a harmless no-op. Nothing is forgotten that is still on the target.
pub(super) async fn mirror_deletions(
    ctx: &SyncContext<'_>,
    src: &mut Connection,
    tgt: &mut Connection,
    folder: FolderId,
    task: &FolderTask,
) -> Result<(), Error> {
    let action = format!(
        "listing messages of the source folder `{}`",
        task.source_name
    );
    CommandCounters::bump(&src.counters.other);
    let present = src
        .session
        .uid_search(&[], "UID 1:*")
        .await
        .map_err(ctx.imap_err(action))?;
    let present: HashSet<u32> = present.uids.into_iter().collect();
    let gone: Vec<(u32, u32)> = ctx
        .store
        .run(move |db| {
            let mut gone = Vec::new();
            for item in db.uid_map_range(folder, ..)? {
                let (uid, entry) = item?;
                if !present.contains(&uid) {
                    gone.push((uid, entry.target_uid));
                }
            }
            Ok(gone)
        })
        .await
        .map_err(ctx.store_err("reading the uid map"))?;
    if gone.is_empty() {
        return Ok(());
    }
    let uidplus = tgt.has("UIDPLUS");
    if !uidplus {
        tracing::info!(
            folder = %task.target_name,
            messages = gone.len(),
            "the target has no UIDPLUS: messages deleted on the source stay flagged \\Deleted \
             on the target instead of being expunged (a plain EXPUNGE would also remove \
             messages the user flagged \\Deleted there)"
        );
    }
    let mut expunged = 0u64;
    for chunk in gone.chunks(DELETION_CHUNK) {
        // `uid_set` joins only consecutive UIDs of the chunk, so a range never names a
        // target message that is not one of ours.
        let set = uid_set(chunk.iter().map(|(_, t)| *t));
        CommandCounters::bump(&tgt.counters.stores);
        tgt.session
            .uid_store(&set, StoreMode::Add, true, &[Flag::Deleted], None)
            .await
            .map_err(ctx.imap_err(format!(
                "marking deleted messages in the target folder `{}`",
                task.target_name
            )))?;
        if uidplus {
            CommandCounters::bump(&tgt.counters.other);
            let outcome = tgt
                .session
                .uid_expunge(&set)
                .await
                .map_err(ctx.imap_err(format!(
                    "expunging deleted messages in the target folder `{}`",
                    task.target_name
                )))?;
            expunged += outcome.count();
        }
        let uids: Vec<u32> = chunk.iter().map(|(s, _)| *s).collect();
        let removed = ctx
            .store
            .run(move |db| db.uid_map_remove(folder, &uids))
            .await
            .map_err(ctx.store_err("forgetting deleted messages"))?;
        PassTotals::add(&ctx.totals.deleted, removed.len() as u64);
    }
    if uidplus {
        // Fewer than asked when the user already removed some on the target.
        tracing::debug!(
            folder = %task.target_name,
            asked = gone.len(),
            expunged,
            "expunged on the target what the source deleted"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_names_round_trip_to_wire_flags() {
        let names = vec![
            "\\Seen".to_owned(),
            "$Forwarded".to_owned(),
            "\\Draft".to_owned(),
        ];
        let flags = flags_from_names(&names);
        assert_eq!(
            flags,
            vec![Flag::Seen, Flag::Keyword(b"$Forwarded"), Flag::Draft]
        );
    }
}
