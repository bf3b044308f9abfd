//! Following a source folder's rename on the target, so that a folder a user renamed
//! between two passes is renamed on the target with its state, not copied a second time
//! under the new name beside the old copy.
//!
//! A rename shows as a stored folder the source no longer lists ("gone") and a listed
//! folder with no stored state ("appeared"). Servers keep a folder's UIDVALIDITY and UIDs
//! across RENAME (Dovecot, Cyrus, Courier do), so a pair is taken for a rename only when:
//! - its UIDVALIDITY is the gone folder's, and no other gone or appeared folder has that
//!   value (servers that give every folder UIDVALIDITY 1 get no renames followed);
//! - the appeared folder holds, at up to three UIDs spread over the gone folder's map,
//!   the very messages copied from there (same size and fingerprint);
//! - neither side is INBOX or a special-use folder (renaming the target's Sent away
//!   would leave its clients without one), and the gone folder has no journal group
//!   pending (those name the old target folder);
//! - no folder the source still has lies under the old target name: RENAME would move
//!   it away from its source folder.
//!
//! On the target, the old folder is RENAMEd to the new name (its subfolders move with
//! it), unless a parent's rename in this pass already moved it there. Anything else (the
//! old target folder gone, the new name taken, a refused RENAME) leaves the pair to the
//! usual copy: no worse than not following renames at all.

use std::collections::{BTreeMap, HashMap, HashSet};

use imapmirror_protocol::MailboxName;
use imapmirror_protocol::StatusAttr;
use imapmirror_storage::{FolderId, FolderState};

use crate::endpoint::pool::{CommandCounters, Connection};
use crate::error::Error;
use crate::pass::copy_plan::uid_set;
use crate::pass::folder_plan::{FolderListing, FolderPlan};
use crate::pass::folder_sync::{SyncContext, fetch_fingerprints};
use crate::pass::report::RenamedFolder;

/// A stored folder the source no longer lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Gone {
    pub folder: FolderId,
    pub source_name: String,
    pub target_name: String,
    pub uid_validity: u32,
}

/// A listed source folder with no stored state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Appeared {
    pub source_name: String,
    pub source_wire: Vec<u8>,
    pub target_name: String,
    /// Components of the target name: parents are followed before their children.
    pub depth: usize,
    pub uid_validity: u32,
}

/// The (gone, appeared) index pairs whose UIDVALIDITY is theirs alone, parents first;
/// `gone` holds the UIDVALIDITY of each gone folder.
pub(crate) fn pair_by_uid_validity(gone: &[u32], appeared: &[Appeared]) -> Vec<(usize, usize)> {
    let mut gone_by: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, v) in gone.iter().enumerate() {
        gone_by.entry(*v).or_default().push(i);
    }
    let mut appeared_by: HashMap<u32, Vec<usize>> = HashMap::new();
    for (i, a) in appeared.iter().enumerate() {
        appeared_by.entry(a.uid_validity).or_default().push(i);
    }
    let mut pairs: Vec<(usize, usize)> = gone_by
        .iter()
        .filter_map(
            |(v, g)| match (g.as_slice(), appeared_by.get(v).map(Vec::as_slice)) {
                ([g], Some([a])) => Some((*g, *a)),
                _ => None,
            },
        )
        .collect();
    pairs.sort_by(|x, y| {
        (appeared[x.1].depth, &appeared[x.1].target_name)
            .cmp(&(appeared[y.1].depth, &appeared[y.1].target_name))
    });
    pairs
}

/// The names `existing` holds after `from` (and everything under it) became `to`:
/// the renamed names, old and new.
pub(crate) fn move_subtree(
    existing: &mut HashSet<String>,
    from: &str,
    to: &str,
    separator: Option<char>,
) -> Vec<String> {
    let under = |name: &str| -> Option<String> {
        if name == from {
            return Some(to.to_owned());
        }
        let sep = separator?;
        let rest = name.strip_prefix(from)?.strip_prefix(sep)?;
        Some(format!("{to}{sep}{rest}"))
    };
    let moves: Vec<(String, String)> = existing
        .iter()
        .filter_map(|n| under(n).map(|new| (n.clone(), new)))
        .collect();
    let mut moved = Vec::with_capacity(moves.len());
    for (old, new) in moves {
        existing.remove(&old);
        existing.insert(new.clone());
        moved.push(new);
    }
    moved
}

/// Whether a folder this pass copies lies under `from` on the target: RENAME would move
/// it away from where its source folder still is.
pub(crate) fn has_children_left_behind<'n>(
    plan_targets: impl IntoIterator<Item = &'n str>,
    from: &str,
    separator: Option<char>,
) -> bool {
    let Some(sep) = separator else {
        return false;
    };
    plan_targets.into_iter().any(|name| {
        name.strip_prefix(from)
            .is_some_and(|rest| rest.starts_with(sep))
    })
}

/// Up to three UIDs spread over a sorted list: first, middle, last.
fn spread(uids: &[u32]) -> Vec<u32> {
    let mut out: Vec<u32> = match uids {
        [] => Vec::new(),
        [only] => vec![*only],
        _ => vec![uids[0], uids[uids.len() / 2], uids[uids.len() - 1]],
    };
    out.dedup();
    out
}

fn is_inbox(name: &str) -> bool {
    name.eq_ignore_ascii_case("INBOX")
}

/// A source folder as listed: its name's bytes, and its UIDVALIDITY if LIST-STATUS gave it.
pub(crate) struct ListedSource<'l> {
    pub wire: &'l [u8],
    pub uid_validity: Option<u32>,
}

/// Follows this pass's source renames on the target and in the store. Returns the
/// target names that now exist because of it, which need no CREATE.
pub(crate) async fn follow_source_renames(
    ctx: &SyncContext<'_>,
    src: &mut Connection,
    tgt: &mut Connection,
    plan: &FolderPlan,
    sources: &HashMap<String, ListedSource<'_>>,
    target: &FolderListing,
    stored: &[(FolderId, FolderState)],
) -> Result<HashSet<String>, Error> {
    let store_err = |action: &str| ctx.store_err(action.to_owned());
    let special_on_target: HashSet<&str> = target
        .folders
        .iter()
        .filter(|f| !f.attributes.special_use.is_empty())
        .map(|f| f.name.as_str())
        .collect();
    // Folders the source no longer lists; those with a pending journal group are left
    // out below, in one storage job.
    let mut candidates = Vec::new();
    for (folder, state) in stored {
        let (Some(uid_validity), Some(target_name)) = (
            state.marks.source_uidvalidity,
            state.marks.target_name.clone(),
        ) else {
            continue;
        };
        if sources.contains_key(&state.source_name)
            || state.counters.messages == 0
            || is_inbox(&state.source_name)
            || is_inbox(&target_name)
            || special_on_target.contains(target_name.as_str())
        {
            continue;
        }
        candidates.push(Gone {
            folder: *folder,
            source_name: state.source_name.clone(),
            target_name,
            uid_validity,
        });
    }
    let gone = if candidates.is_empty() {
        Vec::new()
    } else {
        let mailbox = ctx.mailbox;
        ctx.store
            .run(move |db| {
                let mut gone = Vec::with_capacity(candidates.len());
                for g in candidates {
                    if db.pending_in_folder(mailbox, g.folder)?.is_empty() {
                        gone.push(g);
                    }
                }
                Ok(gone)
            })
            .await
            .map_err(store_err("reading the journal"))?
    };
    if gone.is_empty() {
        // The usual pass: nothing vanished from the source, nothing to look at.
        return Ok(HashSet::new());
    }

    let mut appeared = Vec::new();
    for copy in &plan.copies {
        let Some(listed) = sources.get(&copy.source) else {
            continue;
        };
        if copy.special_use.is_some() || is_inbox(&copy.source) || is_inbox(&copy.target.name) {
            continue;
        }
        let (mailbox, source) = (ctx.mailbox, copy.source.clone());
        if ctx
            .store
            .run(move |db| db.find_folder(mailbox, &source))
            .await
            .map_err(store_err("looking up a folder"))?
            .is_some()
        {
            continue;
        }
        let uid_validity = match listed.uid_validity {
            Some(v) => v,
            None => {
                // No LIST-STATUS: one STATUS, only for a new folder in a pass where a
                // stored one vanished.
                CommandCounters::bump(&src.counters.statuses);
                let status = match src
                    .session
                    .status(MailboxName::Wire(listed.wire), &[StatusAttr::UidValidity])
                    .await
                {
                    Ok(status) => status,
                    // Gone again, or not readable: not a rename; the copy deals with it.
                    Err(imapmirror_protocol::Error::Refused { .. }) => continue,
                    Err(e) => {
                        return Err(ctx.imap_err(format!(
                            "reading the UIDVALIDITY of the source folder `{}`",
                            copy.source
                        ))(e));
                    }
                };
                let Some(v) = status.uid_validity else {
                    continue;
                };
                v
            }
        };
        appeared.push(Appeared {
            source_name: copy.source.clone(),
            source_wire: listed.wire.to_vec(),
            target_name: copy.target.name.clone(),
            depth: copy.target.path.len(),
            uid_validity,
        });
    }

    let mut existing: HashSet<String> = target.folders.iter().map(|f| f.name.clone()).collect();
    let mut moved: HashSet<String> = HashSet::new();
    let validities: Vec<u32> = gone.iter().map(|g| g.uid_validity).collect();
    for (g, a) in pair_by_uid_validity(&validities, &appeared) {
        let (gone, appeared) = (&gone[g], &appeared[a]);
        if !holds_the_copied_messages(ctx, src, gone, appeared).await? {
            tracing::debug!(
                from = %gone.source_name,
                to = %appeared.source_name,
                "same UIDVALIDITY, other messages: not a rename"
            );
            continue;
        }
        let (from, to) = (gone.target_name.as_str(), appeared.target_name.as_str());
        let moved_by_a_parent = moved.contains(to) && !existing.contains(from);
        let plan_targets = plan.copies.iter().map(|c| c.target.name.as_str());
        if has_children_left_behind(plan_targets, from, target.separator) {
            // RENAME would take along subfolders the source still has at the old name.
            tracing::info!(
                from = %gone.source_name,
                to = %appeared.source_name,
                "a renamed folder's subfolders stayed on the source; it is copied under the new name"
            );
            continue;
        }
        let rename_on_target = existing.contains(from) && !existing.contains(to);
        if !rename_on_target && !moved_by_a_parent {
            // The old folder is gone from the target, or the new name is taken: copy as
            // a new folder.
            continue;
        }
        // The store first. A crash before the RENAME leaves state under a target name
        // that does not exist yet: the next pass creates it and refills it by
        // fingerprint, a second copy beside the old folder, as if renames were not
        // followed. The other order could leave a renamed folder with no state, which
        // the next pass would fill again on top of its messages.
        let record = async |source: &str, target_name: &str| {
            let (folder, source, target_name) =
                (gone.folder, source.to_owned(), target_name.to_owned());
            ctx.store
                .run(move |db| db.rename_folder(folder, &source, &target_name))
                .await
                .map_err(ctx.store_err(format!(
                    "recording the rename of `{}` to `{}`",
                    gone.source_name, appeared.source_name
                )))
        };
        record(&appeared.source_name, to).await?;
        if rename_on_target {
            CommandCounters::bump(&tgt.counters.other);
            match tgt
                .session
                .rename(MailboxName::Unicode(from), MailboxName::Unicode(to))
                .await
            {
                Ok(()) => moved.extend(move_subtree(&mut existing, from, to, target.separator)),
                Err(e @ imapmirror_protocol::Error::Refused { .. }) => {
                    record(&gone.source_name, from).await?;
                    tracing::warn!(
                        from,
                        to,
                        error = %e,
                        "the target refused to rename a folder the source renamed; it is copied under the new name"
                    );
                    continue;
                }
                Err(e) => {
                    return Err(ctx
                        .imap_err(format!("renaming the target folder `{from}` to `{to}`"))(
                        e,
                    ));
                }
            }
        }
        ctx.totals.rename_folder(RenamedFolder {
            from: gone.source_name.clone(),
            to: appeared.source_name.clone(),
        });
        tracing::info!(
            from = %gone.source_name,
            to = %appeared.source_name,
            target = to,
            "followed a source folder rename on the target"
        );
    }
    Ok(moved)
}

/// Whether the appeared source folder holds, at up to three UIDs of the gone folder's
/// map, the messages copied from there.
async fn holds_the_copied_messages(
    ctx: &SyncContext<'_>,
    src: &mut Connection,
    gone: &Gone,
    appeared: &Appeared,
) -> Result<bool, Error> {
    let folder = gone.folder;
    let expected = ctx
        .store
        .run(move |db| {
            let mut uids = Vec::new();
            for item in db.uid_map_range(folder, ..)? {
                uids.push(item?.0);
            }
            let mut expected = BTreeMap::new();
            for uid in spread(&uids) {
                if let Some(entry) = db.uid_map_get(folder, uid)? {
                    expected.insert(uid, (entry.fingerprint, entry.size));
                }
            }
            Ok(expected)
        })
        .await
        .map_err(ctx.store_err(format!("reading the map of `{}`", gone.source_name)))?;
    if expected.is_empty() {
        return Ok(false);
    }
    CommandCounters::bump(&src.counters.selects);
    match src
        .session
        .examine(MailboxName::Wire(&appeared.source_wire), false)
        .await
    {
        Ok(_) => {}
        // Gone again, or not readable: not a rename; the copy deals with it.
        Err(imapmirror_protocol::Error::Refused { .. }) => return Ok(false),
        Err(e) => {
            let action = format!("opening the source folder `{}`", appeared.source_name);
            return Err(ctx.imap_err(action)(e));
        }
    }
    let what = format!("the source folder `{}`", appeared.source_name);
    let found = fetch_fingerprints(ctx, src, &uid_set(expected.keys().copied()), 1, &what).await?;
    Ok(expected.iter().all(|(uid, want)| {
        found
            .iter()
            .any(|(c, size)| c.uid == *uid && (c.fingerprint, *size) == *want)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn appeared(name: &str, v: u32) -> Appeared {
        Appeared {
            source_name: name.into(),
            source_wire: name.as_bytes().to_vec(),
            target_name: name.replace('.', "/"),
            depth: name.split('.').count(),
            uid_validity: v,
        }
    }

    #[test]
    fn pairs_only_unique_uid_validities_and_parents_first() {
        // Projects.A, Projects, Twin1, Twin2, Lonely.
        let g = [11, 10, 50, 50, 60];
        let a = [
            appeared("Work.A", 11),
            appeared("Work", 10),
            appeared("Twins", 50),
            appeared("Other", 70),
        ];
        // Twin1/Twin2 share 50: ambiguous, copied as new. Lonely has no partner.
        assert_eq!(pair_by_uid_validity(&g, &a), vec![(1, 1), (0, 0)]);
        // A server that gives every folder the same UIDVALIDITY follows nothing.
        let g = [1, 1];
        let a = [appeared("C", 1), appeared("D", 1)];
        assert!(pair_by_uid_validity(&g, &a).is_empty());
    }

    #[test]
    fn a_rename_moves_the_subtree_and_nothing_beside_it() {
        let mut existing: HashSet<String> = [
            "INBOX",
            "Projects",
            "Projects/A",
            "Projects/A/B",
            "ProjectsX",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        let mut moved = move_subtree(&mut existing, "Projects", "Work", Some('/'));
        moved.sort();
        assert_eq!(moved, ["Work", "Work/A", "Work/A/B"]);
        let mut now: Vec<&str> = existing.iter().map(String::as_str).collect();
        now.sort();
        assert_eq!(now, ["INBOX", "ProjectsX", "Work", "Work/A", "Work/A/B"]);
        // A flat server renames the one name.
        let mut flat: HashSet<String> = ["Projects", "Projects/A"]
            .into_iter()
            .map(String::from)
            .collect();
        assert_eq!(move_subtree(&mut flat, "Projects", "Work", None), ["Work"]);
    }

    #[test]
    fn subfolders_still_on_the_source_stop_a_rename() {
        let plan = ["INBOX", "Work", "Work/A", "ProjectsX", "Projects/Left"];
        assert!(has_children_left_behind(plan, "Projects", Some('/')));
        assert!(!has_children_left_behind(
            ["INBOX", "Work", "Work/A", "ProjectsX"],
            "Projects",
            Some('/')
        ));
        assert!(!has_children_left_behind(plan, "Projects", None));
    }

    #[test]
    fn samples_spread_over_the_map() {
        assert!(spread(&[]).is_empty());
        assert_eq!(spread(&[7]), [7]);
        assert_eq!(spread(&[3, 9]), [3, 9]);
        assert_eq!(spread(&[1, 2, 3, 4, 5, 6, 7]), [1, 4, 7]);
    }
}
