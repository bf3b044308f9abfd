//! The estimate's sample copy of one mailbox: a scratch folder on the target, a few
//! seconds of real APPEND groups of the mailbox's own messages into it from up to its
//! connections' worth of folders at once, and the folder deleted again whatever happened
//! (on the connection that made it, else on a fresh one; one left by an interrupted
//! estimate is deleted by the next). Nothing is written to the store: the copy is timed,
//! not recorded. [`crate::batch::estimate`] turns the timings into rates.

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
    pub create_seconds: f64,
    pub streams: Vec<StreamSample>,
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

/// Samples one mailbox: creates its scratch folder, copies into it from up to `k` of its
/// folders at once, and deletes it again whatever happened.
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
    let scratch = scratch_name(&plan.target_prefix);
    let started = Instant::now();
    CommandCounters::bump(&tgt.counters.creates);
    if let Err(e) = tgt
        .session
        .create(MailboxName::Unicode(&scratch), &[])
        .await
    {
        close_pair(src, tgt).await;
        return Err(imap_err(format!(
            "creating the estimate's scratch folder `{scratch}` on the target"
        ))(e));
    }
    out.create_seconds = started.elapsed().as_secs_f64();

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

    // The scratch folder goes, whatever the streams did: on the connection that made it,
    // else on a fresh one.
    let deleted = match delete_scratch(&mut tgt, &scratch).await {
        Ok(()) => Ok(()),
        Err(first) => {
            tracing::warn!(mailbox = %job.email, folder = %scratch, error = %first, "deleting the scratch folder failed; trying on a new connection");
            match job
                .connect_pair(&src_counters, &tgt_counters, &CancellationToken::new())
                .await
            {
                Ok((s2, mut t2)) => {
                    let again = delete_scratch(&mut t2, &scratch).await;
                    close_pair(s2, t2).await;
                    again
                }
                Err(_) => Err(first),
            }
        }
    };
    close_pair(src, tgt).await;
    deleted.map_err(imap_err(format!(
        "deleting the estimate's scratch folder `{scratch}` on the target (delete it by hand; the next estimate also deletes it)"
    )))?;
    out.deleted += 1;
    for s in streams {
        out.streams.extend(s?);
    }
    Ok(out)
}

async fn delete_scratch(
    tgt: &mut Connection,
    scratch: &str,
) -> Result<(), imapmirror_protocol::Error> {
    CommandCounters::bump(&tgt.counters.other);
    tgt.session.delete(MailboxName::Unicode(scratch)).await
}

/// One copy stream of the sample: on one connection pair, folder after folder from
/// `queue`, each folder's messages in the pass's APPEND groups into the scratch folder,
/// until `deadline`. One [`StreamSample`] per folder it copied from.
async fn sample_stream(
    store: &Store,
    job: &MailboxJob,
    queue: &std::sync::Mutex<VecDeque<&FolderPlanRow>>,
    scratch: &str,
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
        match copy_sample(
            store, job, &mut src, &mut tgt, folder, scratch, deadline, cancel,
        )
        .await
        {
            Ok(sample) => samples.push(sample),
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
