//! The estimate's sample copy of one mailbox: a few seconds of real APPEND groups of the
//! mailbox's own messages from up to its connections' worth of folders at once, each
//! source folder into a scratch folder of its own created for it on the target — as the
//! pass copies each folder into a folder it created, whose first SELECT and APPENDs cost
//! a new folder's index files (measured on the kit's Dovecot: a fresh folder's SELECT
//! 5–7 ms against 0.4 ms for one used before, CREATE 8–10 ms). The scratch folders are
//! deleted again whatever happened (on the connection that made them, else on a fresh
//! one; those an interrupted estimate left are deleted by the next). Nothing is written
//! to the store: the copy is timed, not recorded. [`crate::batch::estimate`] turns the
//! timings into rates.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::join_all;
use imapmirror_protocol::client::CommandTag;
use imapmirror_protocol::{AppendMessage, FetchAttr, Flag, InternalDate, LiteralBody, MailboxName};
use imapmirror_storage::Store;
use tokio_util::sync::CancellationToken;

use crate::endpoint::pool::{CommandCounters, Connection};
use crate::error::Error;
use crate::pass::copy_plan::{CopyStep, NewMessage, plan_copies, uid_set};
use crate::pass::mailbox_job::{MailboxJob, close_pair};
use crate::pass::mailbox_plan::{FolderPlanRow, MailboxPlan, SCRATCH_PREFIX};

/// How long the streams of a mailbox's sample copy.
const SAMPLE_COPY: Duration = Duration::from_secs(3);

/// What one copy stream of the sample measured.
#[derive(Debug, Default, Clone, Copy)]
pub struct StreamSample {
    /// The CREATE of the folder's scratch folder.
    pub create_seconds: f64,
    /// EXAMINE of the source folder, SELECT of the new scratch folder, the sizes listed.
    pub open_seconds: f64,
    pub copy_seconds: f64,
    pub messages: u64,
    pub bytes: u64,
    /// APPEND groups the target took.
    pub groups: u64,
}

/// What one sampled mailbox measured.
#[derive(Debug, Default)]
pub struct MailboxSample {
    pub streams: Vec<StreamSample>,
    /// Scratch folders deleted (this sample's and any an interrupted estimate left).
    pub deleted: usize,
}

/// A scratch folder name no user folder has: the prefix and 48 random bits.
fn scratch_name(prefix: &str) -> String {
    use ring::rand::SecureRandom;
    let mut bytes = [0u8; 6];
    // Without the system's randomness the clock is unique enough for a folder name.
    if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        bytes.copy_from_slice(&nanos.to_be_bytes()[10..16]);
    }
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("{prefix}{SCRATCH_PREFIX}{hex}")
}

/// The scratch folders of one mailbox's sample: one name with 48 random bits, and a
/// numbered sibling of it for every further folder copied.
struct ScratchFolders {
    base: String,
    made: std::sync::Mutex<Vec<String>>,
}

impl ScratchFolders {
    fn new(prefix: &str) -> Self {
        ScratchFolders {
            base: scratch_name(prefix),
            made: std::sync::Mutex::new(Vec::new()),
        }
    }

    /// Names the next folder and counts it as made before its CREATE is sent: a CREATE
    /// whose answer is lost may still have made it (deleting one that is not there is
    /// taken as done), and one the server refused is taken off again.
    fn next(&self) -> String {
        let mut made = self
            .made
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let name = match made.len() {
            0 => self.base.clone(),
            n => format!("{}-{n}", self.base),
        };
        made.push(name.clone());
        name
    }

    fn refused(&self, name: &str) {
        self.made
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .retain(|n| n != name);
    }

    fn made(&self) -> Vec<String> {
        self.made
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Samples one mailbox: copies from up to `k` of its folders at once, each into a new
/// scratch folder, and deletes the scratch folders again whatever happened.
pub async fn sample_mailbox(
    store: &Store,
    job: &MailboxJob,
    plan: &MailboxPlan,
    k: usize,
    cancel: &CancellationToken,
) -> Result<MailboxSample, Error> {
    let src_counters = Arc::new(CommandCounters::default());
    let tgt_counters = Arc::new(CommandCounters::default());
    let imap_err = |action: String| {
        let mailbox = job.email.clone();
        move |e| Error::Imap {
            mailbox,
            action,
            source: Box::new(e),
        }
    };
    let (src, mut tgt) = job
        .connect_pair(&src_counters, &tgt_counters, cancel)
        .await?;
    let mut out = MailboxSample::default();
    for leftover in &plan.leftover_scratch {
        match tgt.session.delete(MailboxName::Unicode(leftover)).await {
            Ok(()) => {
                tracing::info!(mailbox = %job.email, folder = %leftover, "deleted the scratch folder an interrupted estimate left");
                out.deleted += 1;
            }
            Err(e) => {
                tracing::warn!(mailbox = %job.email, folder = %leftover, error = %e, "could not delete an interrupted estimate's scratch folder")
            }
        }
    }
    let scratch = ScratchFolders::new(&plan.target_prefix);

    // Up to `k` streams work through the mailbox's folders, largest first, as the pass's
    // connections do, until the sample's time is up: a mailbox of many small folders is
    // sampled opening folder after folder under the pass's whole load, not one folder
    // per stream.
    let mut folders: Vec<&FolderPlanRow> = plan.folders.iter().filter(|f| f.messages > 0).collect();
    folders.sort_by_key(|f| std::cmp::Reverse(f.bytes));
    let streams_at_once = k.max(1).min(folders.len());
    let queue = std::sync::Mutex::new(folders.into_iter().collect::<VecDeque<_>>());
    let deadline = Instant::now() + SAMPLE_COPY;
    let streams = join_all(
        (0..streams_at_once).map(|_| sample_stream(store, job, &queue, &scratch, deadline, cancel)),
    )
    .await;

    // The scratch folders go, whatever the streams did: on the connection that made the
    // sample, else on a fresh one.
    let made = scratch.made();
    let mut left = delete_scratch(&mut tgt, &made).await;
    if let Some((failed, first)) = left.take() {
        tracing::warn!(mailbox = %job.email, error = %first, "deleting the scratch folders failed; trying on a new connection");
        left = match job
            .connect_pair(&src_counters, &tgt_counters, &CancellationToken::new())
            .await
        {
            Ok((s2, mut t2)) => {
                let again = delete_scratch(&mut t2, &failed).await;
                close_pair(s2, t2).await;
                again
            }
            Err(_) => Some((failed, first)),
        };
    }
    close_pair(src, tgt).await;
    if let Some((failed, e)) = left {
        return Err(imap_err(format!(
            "deleting the estimate's scratch folders {} on the target (delete them by hand; the next estimate also deletes them)",
            failed
                .iter()
                .map(|f| format!("`{f}`"))
                .collect::<Vec<_>>()
                .join(", ")
        ))(e));
    }
    out.deleted += made.len();
    for s in streams {
        out.streams.extend(s?);
    }
    Ok(out)
}

/// Deletes `names`; on the first failure returns the names not deleted (that one and
/// the rest) with the error. A folder already gone (its CREATE never reached the
/// server) counts as deleted.
async fn delete_scratch(
    tgt: &mut Connection,
    names: &[String],
) -> Option<(Vec<String>, imapmirror_protocol::Error)> {
    for (i, name) in names.iter().enumerate() {
        CommandCounters::bump(&tgt.counters.other);
        match tgt.session.delete(MailboxName::Unicode(name)).await {
            Ok(()) => {}
            Err(imapmirror_protocol::Error::Refused {
                ref code, ref text, ..
            }) if code
                .as_ref()
                .is_some_and(|c| c.to_string().eq_ignore_ascii_case("NONEXISTENT"))
                || text.to_ascii_lowercase().contains("exist") => {}
            Err(e) => return Some((names[i..].to_vec(), e)),
        }
    }
    None
}

/// One copy stream of the sample: on one connection pair, folder after folder from
/// `queue`, each folder's messages in the pass's APPEND groups into the scratch folder,
/// until `deadline`. One [`StreamSample`] per folder it copied from.
async fn sample_stream(
    store: &Store,
    job: &MailboxJob,
    queue: &std::sync::Mutex<VecDeque<&FolderPlanRow>>,
    scratch: &ScratchFolders,
    deadline: Instant,
    cancel: &CancellationToken,
) -> Result<Vec<StreamSample>, Error> {
    let src_counters = Arc::new(CommandCounters::default());
    let tgt_counters = Arc::new(CommandCounters::default());
    let (mut src, mut tgt) = job
        .connect_pair(&src_counters, &tgt_counters, cancel)
        .await?;
    let mut samples = Vec::new();
    let result = loop {
        if Instant::now() >= deadline || cancel.is_cancelled() {
            break Ok(());
        }
        // The guard is dropped before the copy awaits.
        let next = queue.lock().map(|mut q| q.pop_front()).unwrap_or(None);
        let Some(folder) = next else {
            break Ok(());
        };
        // Each source folder into a new folder, as the pass copies it.
        let name = scratch.next();
        let started = Instant::now();
        CommandCounters::bump(&tgt.counters.creates);
        match tgt.session.create(MailboxName::Unicode(&name), &[]).await {
            Ok(()) => {}
            Err(e) => {
                if matches!(e, imapmirror_protocol::Error::Refused { .. }) {
                    scratch.refused(&name);
                }
                break Err(Error::Imap {
                    mailbox: job.email.clone(),
                    action: format!(
                        "creating the estimate's scratch folder `{name}` on the target"
                    ),
                    source: Box::new(e),
                });
            }
        }
        let create_seconds = started.elapsed().as_secs_f64();
        match copy_sample(
            store, job, &mut src, &mut tgt, folder, &name, deadline, cancel,
        )
        .await
        {
            Ok(sample) => samples.push(StreamSample {
                create_seconds,
                ..sample
            }),
            Err(e) => break Err(e),
        }
    };
    close_pair(src, tgt).await;
    result.map(|()| samples)
}

/// A group fetched from the source, ready to append.
struct FetchedGroup {
    bodies: Vec<(Bytes, Vec<Flag<'static>>, Option<InternalDate>)>,
}

#[allow(clippy::too_many_arguments)] // one folder of one stream: all of it is needed
async fn copy_sample(
    store: &Store,
    job: &MailboxJob,
    src: &mut Connection,
    tgt: &mut Connection,
    folder: &FolderPlanRow,
    scratch: &str,
    deadline: Instant,
    cancel: &CancellationToken,
) -> Result<StreamSample, Error> {
    let imap_err = |action: String| {
        let mailbox = job.email.clone();
        move |e| Error::Imap {
            mailbox,
            action,
            source: Box::new(e),
        }
    };
    let source_name = folder.source.as_str();
    let opened = Instant::now();
    CommandCounters::bump(&src.counters.selects);
    src.session
        .examine(MailboxName::Unicode(source_name), false)
        .await
        .map_err(imap_err(format!(
            "opening the source folder `{source_name}`"
        )))?;
    CommandCounters::bump(&tgt.counters.selects);
    tgt.session
        .select(MailboxName::Unicode(scratch), false)
        .await
        .map_err(imap_err(format!("opening the scratch folder `{scratch}`")))?;
    let action = format!("listing the messages of the source folder `{source_name}`");
    let mut sizes = Vec::new();
    {
        let mut stream = src
            .session
            .uid_fetch("1:*", &[FetchAttr::Uid, FetchAttr::Rfc822Size], None, false)
            .await
            .map_err(imap_err(action.clone()))?;
        while let Some(m) = stream
            .next_message()
            .await
            .map_err(imap_err(action.clone()))?
        {
            if let (Some(uid), Some(size)) = (m.meta.uid, m.meta.size) {
                sizes.push(NewMessage { uid, size });
            }
        }
    }
    let mut out = StreamSample {
        open_seconds: opened.elapsed().as_secs_f64(),
        ..StreamSample::default()
    };
    let steps = plan_copies(
        &sizes,
        &job.options.groups,
        job.options.max_message_size,
        tgt.append_limit(),
    );
    let multi = tgt.has("MULTIAPPEND");
    let copy_started = Instant::now();
    let mut in_flight: Option<(Vec<CommandTag>, u64, u64)> = None;
    for step in steps {
        if Instant::now() >= deadline || cancel.is_cancelled() {
            break;
        }
        let uids: Vec<u32> = match step {
            CopyStep::Group(ms) => ms.iter().map(|m| m.uid).collect(),
            CopyStep::Large(m) => vec![m.uid],
            CopyStep::Skip { .. } => continue,
        };
        // The source reads the next group while the target stores the last, as in the pass.
        let group = fetch_group(src, &uids).await.map_err(imap_err(format!(
            "copying from the source folder `{source_name}`"
        )))?;
        if let Some((tags, messages, bytes)) = in_flight.take() {
            settle(tgt, tags, messages, bytes, &mut out)
                .await
                .map_err(imap_err(format!(
                    "appending to the scratch folder `{scratch}`"
                )))?;
        }
        if group.bodies.is_empty() {
            continue;
        }
        let messages: Vec<AppendMessage<'_>> = group
            .bodies
            .iter()
            .map(|(body, flags, date)| AppendMessage {
                flags,
                internal_date: *date,
                body: LiteralBody::Bytes(body.clone()),
            })
            .collect();
        let bytes: u64 = group.bodies.iter().map(|(b, _, _)| b.len() as u64).sum();
        // The pass sends a group only once its journal entry is on disk, and records it
        // after: the sample waits for a durable write of the same size class and takes
        // a turn on the storage thread, so the store's share of the time is in the rate.
        store
            .run_durable(|db| db.write_timing_probe())
            .await
            .map_err(|e| Error::Store {
                mailbox: job.email.clone(),
                action: "timing a durable write for the estimate".into(),
                source: Box::new(e),
            })?;
        let mut tags = Vec::new();
        let chunks: Vec<&[AppendMessage<'_>]> = if multi {
            vec![&messages[..]]
        } else {
            messages.chunks(1).collect()
        };
        for chunk in chunks {
            CommandCounters::bump(&tgt.counters.appends);
            let tag = tgt
                .session
                .send_append(MailboxName::Unicode(scratch), chunk)
                .await
                .map_err(imap_err(format!(
                    "appending to the scratch folder `{scratch}`"
                )))?;
            tags.push(tag);
        }
        in_flight = Some((tags, messages.len() as u64, bytes));
    }
    if let Some((tags, messages, bytes)) = in_flight.take() {
        settle(tgt, tags, messages, bytes, &mut out)
            .await
            .map_err(imap_err(format!(
                "appending to the scratch folder `{scratch}`"
            )))?;
    }
    out.copy_seconds = copy_started.elapsed().as_secs_f64();
    Ok(out)
}

/// Waits for a group's APPENDs; counts it when the target took it (a refusal costs the
/// sample that group, not the estimate).
async fn settle(
    tgt: &mut Connection,
    tags: Vec<CommandTag>,
    messages: u64,
    bytes: u64,
    out: &mut StreamSample,
) -> Result<(), imapmirror_protocol::Error> {
    let mut accepted = true;
    for tag in tags {
        accepted &= tgt.session.wait(tag).await?.is_ok();
    }
    if accepted {
        out.groups += 1;
        out.messages += messages;
        out.bytes += bytes;
    }
    Ok(())
}

/// The bodies of `uids` with their system flags (keywords are left out: a target that
/// limits them would refuse the group, and they change nothing in the timing).
async fn fetch_group(
    src: &mut Connection,
    uids: &[u32],
) -> Result<FetchedGroup, imapmirror_protocol::Error> {
    CommandCounters::bump(&src.counters.fetches);
    let attrs = [
        FetchAttr::Uid,
        FetchAttr::Flags,
        FetchAttr::InternalDate,
        FetchAttr::BodyPeek(""),
    ];
    let mut stream = src
        .session
        .uid_fetch(&uid_set(uids.iter().copied()), &attrs, None, false)
        .await?;
    let mut bodies = Vec::with_capacity(uids.len());
    while let Some(m) = stream.next_message().await? {
        let Some(body) = m.body().cloned() else {
            continue;
        };
        // The copier fingerprints every message for its journal: the sample pays it too.
        std::hint::black_box(crate::pass::fingerprint::of_message(&body));
        let flags: Vec<Flag<'static>> = m
            .meta
            .flags
            .as_ref()
            .map(|f| {
                f.storable()
                    .into_iter()
                    .filter_map(|f| match f {
                        Flag::Seen => Some(Flag::Seen),
                        Flag::Answered => Some(Flag::Answered),
                        Flag::Flagged => Some(Flag::Flagged),
                        Flag::Deleted => Some(Flag::Deleted),
                        Flag::Draft => Some(Flag::Draft),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default();
        bodies.push((body, flags, m.meta.internal_date));
    }
    Ok(FetchedGroup { bodies })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_names_are_unmistakable_and_differ() {
        let a = scratch_name("INBOX.");
        let b = scratch_name("INBOX.");
        assert!(a.starts_with("INBOX.imapmirror-estimate-"), "{a}");
        assert_eq!(a.len(), "INBOX.imapmirror-estimate-".len() + 12);
        assert_ne!(a, b);
    }
}
