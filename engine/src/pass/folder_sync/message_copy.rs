//! Copying a folder's new messages: groups fetched from the source, recorded in the
//! journal, appended with MULTIAPPEND (or pipelined single APPENDs), completed in order and
//! committed; large messages streamed alone from socket to socket.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use bytes::Bytes;
use imapmirror_protocol::client::{
    CommandTag, FetchEvent, FetchedMessage, MessageFlags as WireFlags, ResponseCode,
};
use imapmirror_protocol::{
    AppendMessage, Error as ImapError, FetchAttr, Flag, InternalDate, LiteralBody, MailboxName,
};
use imapmirror_storage::{
    CopiedMessage, CopyGroup, Database, FolderId, GmailCopy, GroupOutcome, JournalId, MailboxId,
    MessageFlags, PendingMessage, SkipReason, SkippedItem, StoreError,
};

use super::fingerprint_fetch::unclaimed_target_messages;
use super::sync_context::{FolderTask, SyncContext, store_flags};
use crate::endpoint::pool::{CommandCounters, Connection};
use crate::endpoint::provider_profile::gmail_archived_only;
use crate::endpoint::rate_budget::take_both;
use crate::endpoint::server_quirks::{APPEND_THROTTLE_RETRIES, resend_after_throttling};
use crate::error::Error;
use crate::pass::copy_plan::{CopyStep, NewMessage, plan_copies, uid_set};
use crate::pass::fingerprint::{self, PREFIX_LEN};
use crate::pass::header_text::ReportHeaders;
use crate::pass::reconcile::Wanted;
use crate::pass::report::{PassTotals, Progress};

/// Groups in flight on the target before the oldest is waited for.
const MAX_GROUPS_IN_FLIGHT: usize = 2;

/// UIDs per header FETCH for the report of too-large messages.
const HEADER_FETCH_CHUNK: usize = 500;

/// UIDs per metadata FETCH of chosen messages (short command lines when they scatter).
const META_FETCH_CHUNK: usize = 500;

/// A message on its way to the target.
#[derive(Debug, Clone)]
struct Outgoing {
    source_uid: u32,
    fingerprint: imapmirror_storage::Fingerprint,
    size: u64,
    flags: Option<WireFlags>,
    internal_date: Option<InternalDate>,
    /// Kept until the group completes, to retry one by one after a refused MULTIAPPEND;
    /// `None` for a streamed message.
    body: Option<Bytes>,
    /// Sent without its keywords: the target refused it with them.
    without_keywords: bool,
    /// How often the target throttled this message's APPEND so far.
    throttled: u8,
}

impl Outgoing {
    /// The flags the uid map records: the source's, keywords included even when the
    /// target refused them, so that the flag sync does not offer them again every pass.
    fn store_flags(&self) -> MessageFlags {
        store_flags(self.flags.as_ref())
    }

    /// The message's keywords, as the report lists them.
    fn keywords(&self) -> Vec<String> {
        self.flags
            .as_ref()
            .map(|f| {
                f.list()
                    .iter()
                    .filter_map(|flag| match flag {
                        Flag::Keyword(k) => Some(String::from_utf8_lossy(k).into_owned()),
                        _ => None,
                    })
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// What the target answered to one message sent alone.
enum SingleAnswer {
    /// Accepted; the target UID if APPENDUID named it.
    Accepted(Option<u32>),
    /// Refused with the server's words.
    Refused(String),
    /// Throttled with a suggested back-off: not stored, to send again after that wait.
    Throttled(imapmirror_protocol::client::Completion),
}

/// A group sent and not yet completed.
struct InFlight {
    journal: JournalId,
    /// The APPEND commands and the messages each carries, in order.
    parts: Vec<(CommandTag, Vec<Outgoing>)>,
    uidnext_before: u32,
}

/// What the metadata pass learnt.
#[derive(Debug, Clone)]
struct SourceMeta {
    size: u64,
    flags: Option<WireFlags>,
    internal_date: Option<InternalDate>,
    /// Gmail's labels, asked in All Mail only.
    gm_labels: Option<Vec<String>>,
    /// Gmail's X-GM-MSGID, asked of a Gmail source.
    gm_msgid: Option<u64>,
}

pub(super) struct Copier<'c, 'a> {
    ctx: &'c SyncContext<'a>,
    folder: FolderId,
    task: &'c FolderTask,
    t_validity: u32,
    /// A lower bound of the target's UIDNEXT before any group still in flight.
    t_next_known: u32,
    in_flight: VecDeque<InFlight>,
    pub(super) copied: u64,
    pub(super) skipped: u64,
    /// The mailbox went over its bad-item limit: no new group is sent, the pass fails
    /// with this once the groups in flight are settled.
    limit_reached: Option<Error>,
    /// Source UID → X-GM-MSGID of the messages to copy (a Gmail source), recorded with
    /// each copy.
    gm_ids: HashMap<u32, u64>,
}

impl<'c, 'a> Copier<'c, 'a> {
    pub(super) fn new(
        ctx: &'c SyncContext<'a>,
        folder: FolderId,
        task: &'c FolderTask,
        t_validity: u32,
        t_next_known: u32,
    ) -> Self {
        Copier {
            ctx,
            folder,
            task,
            t_validity,
            t_next_known,
            in_flight: VecDeque::new(),
            copied: 0,
            skipped: 0,
            limit_reached: None,
            gm_ids: HashMap::new(),
        }
    }

    pub(super) async fn copy_new(
        &mut self,
        src: &mut Connection,
        tgt: &mut Connection,
        s_next: Option<u32>,
    ) -> Result<(), Error> {
        let ctx = self.ctx;
        let folder = self.folder;
        let state = ctx
            .store
            .run(move |db| db.folder_state(folder))
            .await
            .map_err(ctx.store_err("reading the folder state"))?;
        let watermark = state.marks.highest_copied_uid;
        let all_mail = self.task.gmail_all_mail;
        if s_next.is_some_and(|n| n <= watermark.saturating_add(1)) && !all_mail {
            return Ok(());
        }
        // All Mail: a message below the watermark may have lost its last label since.
        let from = if all_mail {
            1
        } else {
            watermark.saturating_add(1)
        };
        let mut metas = self
            .fetch_meta(src, &format!("{from}:*"), &|uid| uid >= from)
            .await?;
        if all_mail {
            // Only archived mail: a message with a label is copied from that label's folder.
            metas.retain(|_, m| {
                m.gm_labels
                    .as_ref()
                    .is_some_and(|labels| gmail_archived_only(labels.iter().map(String::as_str)))
            });
        }
        self.gm_ids = metas
            .iter()
            .filter_map(|(uid, m)| m.gm_msgid.map(|id| (*uid, id)))
            .collect();
        let archived: Vec<(u32, u64)> = if all_mail {
            self.gm_ids.iter().map(|(u, id)| (*u, *id)).collect()
        } else {
            Vec::new()
        };
        self.copy_metas(src, tgt, &metas, from).await?;
        // Archived since their earlier copies were made: those leave the label folders.
        super::gmail_archive::move_archived(ctx, tgt, folder, self.task, archived).await
    }

    /// Copies the messages of `uids` (source UIDs of the folder) that are not copied yet,
    /// as [`Copier::copy_new`] copies new ones. Returns the UIDs the source still has.
    pub(super) async fn copy_uids(
        &mut self,
        src: &mut Connection,
        tgt: &mut Connection,
        uids: &[u32],
    ) -> Result<HashSet<u32>, Error> {
        let mut uids = uids.to_vec();
        uids.sort_unstable();
        uids.dedup();
        let Some(&min) = uids.first() else {
            return Ok(HashSet::new());
        };
        let mut metas = BTreeMap::new();
        for chunk in uids.chunks(META_FETCH_CHUNK) {
            let wanted: HashSet<u32> = chunk.iter().copied().collect();
            let set = uid_set(chunk.iter().copied());
            metas.extend(self.fetch_meta(src, &set, &|u| wanted.contains(&u)).await?);
        }
        let found = metas.keys().copied().collect();
        self.copy_metas(src, tgt, &metas, min).await?;
        Ok(found)
    }

    /// Copies the messages of `metas` (all at or above source UID `from`) that the uid
    /// map does not hold yet.
    async fn copy_metas(
        &mut self,
        src: &mut Connection,
        tgt: &mut Connection,
        metas: &BTreeMap<u32, SourceMeta>,
        from: u32,
    ) -> Result<(), Error> {
        let ctx = self.ctx;
        let folder = self.folder;
        if metas.is_empty() {
            return Ok(());
        }
        let mapped: HashSet<u32> = ctx
            .store
            .run(move |db| {
                let mut mapped = HashSet::new();
                for item in db.uid_map_range(folder, from..)? {
                    let (uid, _) = item?;
                    mapped.insert(uid);
                }
                Ok(mapped)
            })
            .await
            .map_err(ctx.store_err("reading the uid map"))?;
        let new: Vec<NewMessage> = metas
            .iter()
            .filter(|(uid, _)| !mapped.contains(uid))
            .map(|(uid, m)| NewMessage {
                uid: *uid,
                size: m.size,
            })
            .collect();
        let append_limit = match (self.task.append_limit, tgt.append_limit()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let steps = plan_copies(
            &new,
            &ctx.settings.limits,
            ctx.settings.max_message_size,
            append_limit,
        );
        let too_large: Vec<u32> = steps
            .iter()
            .filter_map(|s| match s {
                CopyStep::Skip { message, .. } => Some(message.uid),
                _ => None,
            })
            .collect();
        let mut headers = self.fetch_skip_headers(src, &too_large).await?;
        for step in steps {
            if self.limit_reached.is_some() {
                break;
            }
            if ctx.cancel.is_cancelled() {
                // Stop between groups, but settle what is already in flight so that the
                // next pass has nothing to reconcile.
                while !self.in_flight.is_empty() {
                    self.complete_oldest(tgt).await?;
                }
                ctx.check_cancel()?;
            }
            // The endpoints' rate budgets (`--max-rate`), charged once per message moved,
            // before its body is fetched: the FETCH and the APPEND both wait here.
            let (messages, bytes) = match &step {
                CopyStep::Group(m) => (m.len() as u64, m.iter().map(|m| m.size).sum()),
                CopyStep::Large(m) => (1, m.size),
                CopyStep::Skip { .. } => (0, 0),
            };
            if messages > 0 {
                let budgets = take_both(&src.budget, &tgt.budget, messages, bytes);
                let stopped = tokio::select! {
                    waited = budgets => {
                        PassTotals::add_wait(&ctx.totals.rate_limit_wait_ns, waited);
                        false
                    }
                    () = ctx.cancel.cancelled() => true,
                };
                if stopped {
                    while !self.in_flight.is_empty() {
                        self.complete_oldest(tgt).await?;
                    }
                    ctx.check_cancel()?;
                }
            }
            match step {
                CopyStep::Skip { message, limit } => {
                    let meta = metas.get(&message.uid);
                    let internal_date = meta
                        .and_then(|m| m.internal_date)
                        .and_then(|d| timestamp_of(&d));
                    let head = headers.remove(&message.uid).unwrap_or_default();
                    let detail = format!("{} bytes, {limit}", message.size);
                    let item = SkippedItem {
                        source_uid: Some(message.uid),
                        internal_date,
                        subject: head.subject,
                        size: Some(message.size),
                        from: head.from,
                        sent: head.date,
                        reason: SkipReason::TooLarge,
                        detail: Some(detail),
                    };
                    ctx.store
                        .run(move |db| db.record_skipped(folder, &[item]))
                        .await
                        .map_err(ctx.store_err("recording a skipped message"))?;
                    self.skipped += 1;
                    PassTotals::add(&ctx.totals.skipped, 1);
                }
                CopyStep::Group(messages) => {
                    self.send_group(src, tgt, &messages).await?;
                }
                CopyStep::Large(message) => {
                    let meta = metas.get(&message.uid).cloned();
                    self.send_large(src, tgt, message, meta).await?;
                }
            }
            while self.in_flight.len() > MAX_GROUPS_IN_FLIGHT {
                self.complete_oldest(tgt).await?;
            }
        }
        while !self.in_flight.is_empty() {
            self.complete_oldest(tgt).await?;
        }
        if let Some(e) = self.limit_reached.take() {
            return Err(e);
        }
        Ok(())
    }

    /// Size, flags, date (and Gmail's items where asked) of the messages of the UID set
    /// `set` that `keep` takes.
    async fn fetch_meta(
        &mut self,
        src: &mut Connection,
        set: &str,
        keep: &(dyn Fn(u32) -> bool + Sync),
    ) -> Result<BTreeMap<u32, SourceMeta>, Error> {
        let ctx = self.ctx;
        let action = format!(
            "listing new messages of the source folder `{}`",
            self.task.source_name
        );
        CommandCounters::bump(&src.counters.fetches);
        let mut attrs = vec![
            FetchAttr::Uid,
            FetchAttr::Rfc822Size,
            FetchAttr::Flags,
            FetchAttr::InternalDate,
        ];
        if self.task.gmail_all_mail {
            attrs.push(FetchAttr::GmLabels);
        }
        if self.task.gmail_ids {
            attrs.push(FetchAttr::GmMsgId);
        }
        let mut stream = src
            .session
            .uid_fetch(set, &attrs, None, false)
            .await
            .map_err(ctx.imap_err(action.clone()))?;
        let mut out = BTreeMap::new();
        while let Some(m) = stream
            .next_message()
            .await
            .map_err(ctx.imap_err(action.clone()))?
        {
            let (Some(uid), Some(size)) = (m.meta.uid, m.meta.size) else {
                continue;
            };
            // `N:*` also returns the highest message when it is below N.
            if !keep(uid) {
                continue;
            }
            out.insert(
                uid,
                SourceMeta {
                    size,
                    flags: m.meta.flags,
                    internal_date: m.meta.internal_date,
                    gm_labels: m.meta.gm_labels,
                    gm_msgid: m.meta.gm_msgid,
                },
            );
        }
        Ok(out)
    }

    /// Subject, From and Date of the messages skipped as too large, for the report: only
    /// those header fields, never the bodies that were too large to copy. Best effort: a
    /// server that refuses the FETCH leaves the items without them.
    async fn fetch_skip_headers(
        &mut self,
        src: &mut Connection,
        uids: &[u32],
    ) -> Result<HashMap<u32, ReportHeaders>, Error> {
        let ctx = self.ctx;
        let mut out = HashMap::new();
        let action = format!(
            "reading the headers of too-large messages in the source folder `{}`",
            self.task.source_name
        );
        let attrs = [
            FetchAttr::Uid,
            FetchAttr::BodyPeek("HEADER.FIELDS (SUBJECT FROM DATE)"),
        ];
        // Chunks keep the command line short when the skipped UIDs are scattered.
        for chunk in uids.chunks(HEADER_FETCH_CHUNK) {
            CommandCounters::bump(&src.counters.fetches);
            let set = uid_set(chunk.iter().copied());
            let wanted: HashSet<u32> = chunk.iter().copied().collect();
            let mut stream = src
                .session
                .uid_fetch(&set, &attrs, None, false)
                .await
                .map_err(ctx.imap_err(action.clone()))?;
            loop {
                let m = match stream.next_message().await {
                    Ok(Some(m)) => m,
                    Ok(None) => break,
                    Err(e @ ImapError::Refused { .. }) => {
                        tracing::info!(error = %e, "the source refused the headers of too-large messages; they are reported without subject");
                        break;
                    }
                    Err(e) => return Err(ctx.imap_err(action.clone())(e)),
                };
                let Some(uid) = m.meta.uid.filter(|u| wanted.contains(u)) else {
                    continue;
                };
                if let Some(head) = m.header_fields() {
                    out.insert(uid, ReportHeaders::of_message(head));
                }
            }
        }
        Ok(out)
    }

    /// Fetches a group's bodies, records the group in the journal, sends it.
    async fn send_group(
        &mut self,
        src: &mut Connection,
        tgt: &mut Connection,
        messages: &[NewMessage],
    ) -> Result<(), Error> {
        let ctx = self.ctx;
        let action = format!("copying from the source folder `{}`", self.task.source_name);
        let set = uid_set(messages.iter().map(|m| m.uid));
        let wanted: HashSet<u32> = messages.iter().map(|m| m.uid).collect();
        CommandCounters::bump(&src.counters.fetches);
        let attrs = [
            FetchAttr::Uid,
            FetchAttr::Flags,
            FetchAttr::InternalDate,
            FetchAttr::BodyPeek(""),
        ];
        let mut stream = src
            .session
            .uid_fetch(&set, &attrs, None, false)
            .await
            .map_err(ctx.imap_err(action.clone()))?;
        let mut outgoing: Vec<Outgoing> = Vec::with_capacity(messages.len());
        // `next_message` gathers a body that crossed the stream threshold after all
        // (its size changed since the metadata pass); groups are bounded in bytes.
        while let Some(m) = stream
            .next_message()
            .await
            .map_err(ctx.imap_err(action.clone()))?
        {
            let Some(uid) = m.meta.uid else { continue };
            if !wanted.contains(&uid) {
                continue;
            }
            let Some(body) = whole_body(&m) else { continue };
            outgoing.push(Outgoing {
                source_uid: uid,
                fingerprint: fingerprint::of_message(&body),
                size: body.len() as u64,
                flags: m.meta.flags.clone(),
                internal_date: m.meta.internal_date,
                body: Some(body),
                without_keywords: false,
                throttled: 0,
            });
        }
        drop(stream);
        // Messages expunged on the source meanwhile are simply gone.
        if outgoing.is_empty() {
            return Ok(());
        }
        outgoing.sort_by_key(|o| o.source_uid);
        outgoing.dedup_by_key(|o| o.source_uid);
        let journal = self.begin(&outgoing).await?;
        let parts = self.send_appends(tgt, outgoing).await?;
        self.in_flight.push_back(InFlight {
            journal,
            parts,
            uidnext_before: self.t_next_known,
        });
        Ok(())
    }

    async fn begin(&self, outgoing: &[Outgoing]) -> Result<JournalId, Error> {
        let ctx = self.ctx;
        let group = CopyGroup {
            target_folder: self.task.target_name.clone(),
            target_uidvalidity: self.t_validity,
            target_uidnext: self.t_next_known,
            messages: outgoing
                .iter()
                .map(|o| PendingMessage {
                    source_uid: o.source_uid,
                    fingerprint: o.fingerprint,
                    size: o.size,
                })
                .collect(),
        };
        ctx.store
            .begin(self.folder, group)
            .await
            .map_err(ctx.store_err("recording a copy group in the journal"))
    }

    /// One MULTIAPPEND where offered, else pipelined single APPENDs.
    async fn send_appends(
        &self,
        tgt: &mut Connection,
        outgoing: Vec<Outgoing>,
    ) -> Result<Vec<(CommandTag, Vec<Outgoing>)>, Error> {
        let multi = tgt.has("MULTIAPPEND");
        let chunks: Vec<Vec<Outgoing>> = if multi {
            vec![outgoing]
        } else {
            outgoing.into_iter().map(|o| vec![o]).collect()
        };
        let mut parts = Vec::with_capacity(chunks.len());
        let one_at_a_time = appends_one_at_a_time(tgt);
        for chunk in chunks {
            let tag = self.send_append(tgt, &chunk).await?;
            if one_at_a_time {
                self.settle(tgt, tag).await?;
            }
            parts.push((tag, chunk));
        }
        Ok(parts)
    }

    async fn send_append(
        &self,
        tgt: &mut Connection,
        chunk: &[Outgoing],
    ) -> Result<CommandTag, Error> {
        let ctx = self.ctx;
        let flag_lists: Vec<Vec<Flag<'_>>> = chunk
            .iter()
            .map(|o| {
                let mut flags = o
                    .flags
                    .as_ref()
                    .map(WireFlags::storable)
                    .unwrap_or_default();
                if o.without_keywords {
                    flags.retain(|f| !matches!(f, Flag::Keyword(_)));
                }
                flags
            })
            .collect();
        let mut messages = Vec::with_capacity(chunk.len());
        for (o, flags) in chunk.iter().zip(&flag_lists) {
            let Some(body) = &o.body else {
                return Err(Error::Imap {
                    mailbox: ctx.mailbox_label.to_owned(),
                    action: "re-sending a streamed message".into(),
                    source: Box::new(ImapError::Misuse(
                        "a streamed message cannot be re-sent from memory",
                    )),
                });
            };
            messages.push(AppendMessage {
                flags,
                internal_date: o.internal_date,
                body: LiteralBody::Bytes(body.clone()),
            });
        }
        CommandCounters::bump(&tgt.counters.appends);
        tgt.session
            .send_append(MailboxName::Unicode(&self.task.target_name), &messages)
            .await
            .map_err(ctx.imap_err(format!(
                "appending to the target folder `{}`",
                self.task.target_name
            )))
    }

    /// Streams one large message: the journal entry is written once its first 64 KiB
    /// (its fingerprint) arrived and before its first byte goes to the target.
    async fn send_large(
        &mut self,
        src: &mut Connection,
        tgt: &mut Connection,
        message: NewMessage,
        meta: Option<SourceMeta>,
    ) -> Result<(), Error> {
        let ctx = self.ctx;
        let action = format!(
            "streaming a message of the source folder `{}`",
            self.task.source_name
        );
        let target_action = format!(
            "streaming a message to the target folder `{}`",
            self.task.target_name
        );
        CommandCounters::bump(&src.counters.fetches);
        let attrs = [
            FetchAttr::Uid,
            FetchAttr::Flags,
            FetchAttr::InternalDate,
            FetchAttr::BodyPeek(""),
        ];
        let uid_text = message.uid.to_string();
        let mut stream = src
            .session
            .uid_fetch(&uid_text, &attrs, None, false)
            .await
            .map_err(ctx.imap_err(action.clone()))?;
        let mut prefix: Vec<Bytes> = Vec::new();
        let mut prefix_len = 0usize;
        let mut announced: Option<(u64, Option<WireFlags>, Option<InternalDate>)> = None;
        let mut upload = None;
        let mut journal = None;
        let mut whole: Option<FetchedMessage> = None;
        let mut fp = None;
        loop {
            let event = stream.next().await.map_err(ctx.imap_err(action.clone()))?;
            let Some(event) = event else { break };
            match event {
                FetchEvent::Message(m) => {
                    // Smaller than the threshold after all: sent like a group of one.
                    if m.meta.uid == Some(message.uid) {
                        whole = Some(m);
                    }
                }
                FetchEvent::StreamStart { meta: m, len, .. } => {
                    let flags = m
                        .flags
                        .or_else(|| meta.as_ref().and_then(|x| x.flags.clone()));
                    let date = m
                        .internal_date
                        .or_else(|| meta.as_ref().and_then(|x| x.internal_date));
                    announced = Some((len, flags, date));
                    if len == 0 {
                        fp = Some(fingerprint::of_message(&[]));
                    }
                }
                FetchEvent::Chunk { bytes, .. } => {
                    if let Some(up) = upload.as_mut() {
                        let up: &mut imapmirror_protocol::client::AppendUpload<'_, _> = up;
                        up.write_chunk(bytes)
                            .await
                            .map_err(ctx.imap_err(target_action.clone()))?;
                        continue;
                    }
                    prefix_len += bytes.len();
                    prefix.push(bytes);
                    let Some((len, _, _)) = &announced else {
                        continue;
                    };
                    if fingerprint::prefix_is_complete(prefix_len, *len) {
                        let mut joined = Vec::with_capacity(prefix_len.min(PREFIX_LEN));
                        for p in &prefix {
                            let take = p.len().min(PREFIX_LEN - joined.len().min(PREFIX_LEN));
                            joined.extend_from_slice(&p[..take]);
                            if joined.len() >= PREFIX_LEN {
                                break;
                            }
                        }
                        fp = Some(fingerprint::of_prefix(&joined, *len));
                    }
                }
                FetchEvent::StreamEnd(_) => {}
            }
            // Once the fingerprint is known: journal, then open the APPEND and write
            // what was held back.
            if upload.is_none()
                && let (Some(f), Some((len, flags, date))) = (fp, announced.as_ref())
            {
                let out = Outgoing {
                    source_uid: message.uid,
                    fingerprint: f,
                    size: *len,
                    flags: flags.clone(),
                    internal_date: *date,
                    body: None,
                    without_keywords: false,
                    throttled: 0,
                };
                let id = self.begin(std::slice::from_ref(&out)).await?;
                journal = Some((id, out));
                let flag_list: Vec<Flag<'_>> =
                    flags.as_ref().map(WireFlags::storable).unwrap_or_default();
                let msg = [AppendMessage {
                    flags: &flag_list,
                    internal_date: *date,
                    body: LiteralBody::Streamed { len: *len },
                }];
                CommandCounters::bump(&tgt.counters.appends);
                let mut up = tgt
                    .session
                    .start_append(MailboxName::Unicode(&self.task.target_name), &msg)
                    .await
                    .map_err(ctx.imap_err(target_action.clone()))?;
                for piece in prefix.drain(..) {
                    up.write_chunk(piece)
                        .await
                        .map_err(ctx.imap_err(target_action.clone()))?;
                }
                upload = Some(up);
            }
        }
        drop(stream);
        if let Some(m) = whole {
            let Some(body) = whole_body(&m) else {
                return Ok(());
            };
            let out = Outgoing {
                source_uid: message.uid,
                fingerprint: fingerprint::of_message(&body),
                size: body.len() as u64,
                flags: m.meta.flags.clone(),
                internal_date: m.meta.internal_date,
                body: Some(body),
                without_keywords: false,
                throttled: 0,
            };
            let journal = self.begin(std::slice::from_ref(&out)).await?;
            let parts = self.send_appends(tgt, vec![out]).await?;
            self.in_flight.push_back(InFlight {
                journal,
                parts,
                uidnext_before: self.t_next_known,
            });
            return Ok(());
        }
        let (Some(up), Some((id, out))) = (upload, journal) else {
            // The message vanished from the source before it could be read.
            return Ok(());
        };
        let tag = up
            .finish()
            .await
            .map_err(ctx.imap_err(target_action.clone()))?;
        self.in_flight.push_back(InFlight {
            journal: id,
            parts: vec![(tag, vec![out])],
            uidnext_before: self.t_next_known,
        });
        Ok(())
    }

    /// The server's words for a refused APPEND that may be the message's fault; a
    /// throttling answer or a refusal of the whole folder (quota, folder gone) is the
    /// pass's error instead: every message would be refused alike.
    fn message_refusal(
        &self,
        tgt: &Connection,
        c: imapmirror_protocol::client::Completion,
        action: &str,
    ) -> Result<String, Error> {
        let server = tgt.server().to_owned();
        let text = c.text.clone();
        match c.into_result(&server, tgt.session.config().default_backoff) {
            // Throttling or a lost connection (Exchange's tagged BAD before its BYE):
            // the message was not refused, the attempt failed.
            Err(e) if crate::endpoint::pool::is_transient(&e) => {
                Err(self.ctx.imap_err(action.to_owned())(e))
            }
            Err(e) if refuses_the_folder(&e) => Err(self.ctx.imap_err(action.to_owned())(e)),
            _ => Ok(text),
        }
    }

    /// Waits a back-off the target suggested before APPENDs go out again.
    async fn wait_out_throttling(&self, wait: std::time::Duration) -> Result<(), Error> {
        let ctx = self.ctx;
        tracing::debug!(
            folder = %self.task.target_name,
            wait_ms = wait.as_millis() as u64,
            "the target throttled APPENDs; sending them again after its suggested back-off"
        );
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = ctx.cancel.cancelled() => {
                return Err(Error::Stopped {
                    mailbox: ctx.mailbox_label.to_owned(),
                });
            }
        }
        // A wait the server asked for, though no error: the APPENDs go on.
        crate::migration_metrics::throttle_wait(ctx.batch, wait);
        PassTotals::add_wait(&ctx.totals.throttle_wait_ns, wait);
        Ok(())
    }

    /// Waits until the APPEND `tag` has completed; its answer stays for `wait`.
    async fn settle(&self, tgt: &mut Connection, tag: CommandTag) -> Result<(), Error> {
        tgt.session
            .settle(tag)
            .await
            .map_err(self.ctx.imap_err(format!(
                "appending to the target folder `{}`",
                self.task.target_name
            )))
    }

    /// Sends each message in its own APPEND, pipelined where the target takes it, then
    /// reads the answers in order.
    async fn append_singles(
        &self,
        tgt: &mut Connection,
        messages: impl Iterator<Item = &Outgoing>,
        action: &str,
    ) -> Result<Vec<SingleAnswer>, Error> {
        let one_at_a_time = appends_one_at_a_time(tgt);
        let mut tags = Vec::new();
        for m in messages {
            let tag = self.send_append(tgt, std::slice::from_ref(m)).await?;
            if one_at_a_time {
                self.settle(tgt, tag).await?;
            }
            tags.push(tag);
        }
        let mut answers = Vec::with_capacity(tags.len());
        for tag in tags {
            let c = tgt
                .session
                .wait(tag)
                .await
                .map_err(self.ctx.imap_err(action.to_owned()))?;
            if c.is_ok() {
                let uid = match c.append_uid() {
                    Some((v, uids)) if v == self.t_validity && uids.len() == 1 => Some(uids[0]),
                    _ => None,
                };
                answers.push(SingleAnswer::Accepted(uid));
            } else if resend_after_throttling(&c).is_some() {
                answers.push(SingleAnswer::Throttled(c));
            } else {
                answers.push(SingleAnswer::Refused(self.message_refusal(tgt, c, action)?));
            }
        }
        Ok(answers)
    }

    /// Waits for the oldest group's APPENDs and commits it.
    async fn complete_oldest(&mut self, tgt: &mut Connection) -> Result<(), Error> {
        let ctx = self.ctx;
        let Some(group) = self.in_flight.pop_front() else {
            return Ok(());
        };
        let target_action = format!("appending to the target folder `{}`", self.task.target_name);
        let mut copied: Vec<CopiedMessage> = Vec::new();
        let mut skipped: Vec<SkippedItem> = Vec::new();
        let mut unknown: Vec<Outgoing> = Vec::new();
        // Messages to send again alone, with the refusal that sent each back (none for a
        // message of a refused MULTIAPPEND: it may be innocent).
        let mut retry: Vec<(Outgoing, Option<String>)> = Vec::new();
        let mut all_uids: Vec<u32> = Vec::new();
        let mut bytes = 0u64;
        let mut last_refusal = String::new();
        // Source UID → fingerprint, for the Gmail ids recorded with the copies.
        let mut fingerprints: HashMap<u32, imapmirror_storage::Fingerprint> = HashMap::new();
        // The longest back-off the target suggested for APPENDs to send again.
        let mut throttle_wait: Option<std::time::Duration> = None;
        for (tag, msgs) in group.parts {
            all_uids.extend(msgs.iter().map(|m| m.source_uid));
            fingerprints.extend(msgs.iter().map(|m| (m.source_uid, m.fingerprint)));
            let c = tgt
                .session
                .wait(tag)
                .await
                .map_err(ctx.imap_err(target_action.clone()))?;
            if c.is_ok() {
                match c.append_uid() {
                    Some((v, uids)) if v == self.t_validity && uids.len() == msgs.len() => {
                        for (m, t) in msgs.iter().zip(uids) {
                            self.t_next_known = self.t_next_known.max(t.saturating_add(1));
                            bytes += m.size;
                            copied.push(CopiedMessage {
                                source_uid: m.source_uid,
                                target_uid: t,
                                flags: m.store_flags(),
                            });
                        }
                    }
                    Some((v, uids)) => {
                        return Err(Error::InconsistentTarget {
                            server: tgt.server().to_owned(),
                            mailbox: ctx.mailbox_label.to_owned(),
                            folder: self.task.target_name.clone(),
                            problem: format!(
                                "APPENDUID names UIDVALIDITY {v} and {} UIDs for {} messages (the folder has UIDVALIDITY {})",
                                uids.len(),
                                msgs.len(),
                                self.t_validity
                            ),
                        });
                    }
                    None => unknown.extend(msgs),
                }
                continue;
            }
            // Throttled (Exchange Online): nothing of it was stored; it goes out again
            // on this connection after the suggested back-off.
            if let Some(wait) = resend_after_throttling(&c)
                && msgs.iter().all(may_resend_after_throttling)
            {
                throttle_wait = throttle_wait.max(Some(wait));
                retry.extend(msgs.into_iter().map(|m| (once_more_throttled(m), None)));
                continue;
            }
            let text = self.message_refusal(tgt, c, &target_action)?;
            if msgs.len() > 1 {
                // MULTIAPPEND is all or nothing (RFC 3502): find the culprits alone.
                retry.extend(msgs.into_iter().map(|m| (m, None)));
            } else {
                for m in msgs {
                    retry_or_skip(m, text.clone(), &mut retry, &mut skipped, &mut last_refusal);
                }
            }
        }
        // Each round is pipelined: one round trip for all the suspects, not one each.
        while !retry.is_empty() {
            if let Some(wait) = throttle_wait.take() {
                self.wait_out_throttling(wait).await?;
            }
            let round = std::mem::take(&mut retry);
            let answers = self
                .append_singles(tgt, round.iter().map(|(m, _)| m), &target_action)
                .await?;
            for ((m, earlier), answer) in round.into_iter().zip(answers) {
                match answer {
                    SingleAnswer::Accepted(target_uid) => {
                        if m.without_keywords {
                            skipped.push(keywords_dropped(&m, earlier.as_deref()));
                        }
                        match target_uid {
                            Some(t) => {
                                self.t_next_known = self.t_next_known.max(t.saturating_add(1));
                                bytes += m.size;
                                copied.push(CopiedMessage {
                                    source_uid: m.source_uid,
                                    target_uid: t,
                                    flags: m.store_flags(),
                                });
                            }
                            None => unknown.push(m),
                        }
                    }
                    SingleAnswer::Refused(text) => {
                        retry_or_skip(m, text, &mut retry, &mut skipped, &mut last_refusal);
                    }
                    SingleAnswer::Throttled(c) => match resend_after_throttling(&c) {
                        Some(wait) if may_resend_after_throttling(&m) => {
                            throttle_wait = throttle_wait.max(Some(wait));
                            retry.push((once_more_throttled(m), earlier));
                        }
                        // Throttled too often: the attempt ends as for any transient
                        // error (`message_refusal` says so).
                        _ => {
                            let text = self.message_refusal(tgt, c, &target_action)?;
                            retry_or_skip(m, text, &mut retry, &mut skipped, &mut last_refusal);
                        }
                    },
                }
            }
        }
        if !unknown.is_empty() {
            // No APPENDUID (no UIDPLUS): find the messages by fingerprint.
            PassTotals::add(&ctx.totals.reconciled, unknown.len() as u64);
            let min = group.uidnext_before.max(1);
            let taken: Vec<u32> = copied.iter().map(|c| c.target_uid).collect();
            let what = format!("the target folder `{}` (no UIDPLUS)", self.task.target_name);
            let mut pool =
                unclaimed_target_messages(ctx, tgt, self.folder, min, &taken, &what).await?;
            for m in &unknown {
                let w = Wanted {
                    source_uid: m.source_uid,
                    fingerprint: m.fingerprint,
                    min_target_uid: min,
                };
                let Some(found) = pool.take(&w) else {
                    return Err(Error::InconsistentTarget {
                        server: tgt.server().to_owned(),
                        mailbox: ctx.mailbox_label.to_owned(),
                        folder: self.task.target_name.clone(),
                        problem: format!(
                            "it accepted source message {} but it cannot be found there",
                            m.source_uid
                        ),
                    });
                };
                self.t_next_known = self.t_next_known.max(found.target_uid.saturating_add(1));
                bytes += m.size;
                copied.push(CopiedMessage {
                    source_uid: m.source_uid,
                    target_uid: found.target_uid,
                    flags: m.store_flags(),
                });
            }
        }
        let n = copied.len() as u64;
        let gmail_ids: Vec<(u64, GmailCopy)> = copied
            .iter()
            .filter_map(|c| {
                let msgid = self.gm_ids.get(&c.source_uid)?;
                let fingerprint = *fingerprints.get(&c.source_uid)?;
                Some((
                    *msgid,
                    GmailCopy {
                        folder: self.folder,
                        source_uid: c.source_uid,
                        fingerprint,
                    },
                ))
            })
            .collect();
        let n_skipped = skipped.iter().filter(|i| i.reason.left_behind()).count() as u64;
        let n_dropped = skipped.len() as u64 - n_skipped;
        let outcome = GroupOutcome {
            highest_copied_uid: all_uids.iter().copied().max(),
            target_uidnext: Some(self.t_next_known),
            copied,
            skipped,
            all_mail_index: self.task.all_mail_index(),
        };
        let journal = group.journal;
        ctx.store
            .run(move |db| db.commit(journal, &outcome))
            .await
            .map_err(ctx.store_err("committing a copy group"))?;
        if !gmail_ids.is_empty() {
            let mailbox = ctx.mailbox;
            ctx.store
                .run(move |db| db.record_gmail_ids(mailbox, &gmail_ids))
                .await
                .map_err(ctx.store_err("recording Gmail message ids"))?;
        }
        self.copied += n;
        self.skipped += n_skipped;
        PassTotals::add(&ctx.totals.copied, n);
        PassTotals::add(&ctx.totals.bytes, bytes);
        PassTotals::add(&ctx.totals.skipped, n_skipped);
        PassTotals::add(&ctx.totals.keywords_dropped, n_dropped);
        (ctx.progress)(Progress::Copied {
            folder: self.task.source_name.clone(),
            messages: n,
            bytes,
        });
        if n_skipped > 0 {
            PassTotals::add(&ctx.totals.bad_items, n_skipped);
            let mailbox = ctx.mailbox;
            let bad = ctx
                .store
                .run(move |db| mailbox_bad_items(db, mailbox))
                .await
                .map_err(ctx.store_err("counting the mailbox's bad items"))?;
            if bad > ctx.settings.bad_item_limit && self.limit_reached.is_none() {
                // Not returned at once: the groups still in flight are settled first, so
                // that the next pass has nothing to reconcile and runs at full speed.
                self.limit_reached = Some(Error::BadItemLimit {
                    server: tgt.server().to_owned(),
                    mailbox: ctx.mailbox_label.to_owned(),
                    folder: self.task.target_name.clone(),
                    count: bad,
                    limit: ctx.settings.bad_item_limit,
                    text: last_refusal,
                });
            }
        }
        Ok(())
    }
}

/// The mailbox's bad items so far, over all folders and passes, as Exchange's
/// BadItemLimit counts them: the distinct messages recorded as skipped for any reason but
/// size (too-large ones have their own limit, `--max-message-size`). The store keeps one
/// record per folder and source UID, so a message refused again in a later pass, or
/// twice in one, counts once; a message copied after all loses its record. Called after
/// the group's commit, so this pass's new items are already among them. Runs in a
/// storage job, which counts the records there instead of sending them back.
fn mailbox_bad_items(db: &Database, mailbox: MailboxId) -> Result<u64, StoreError> {
    let records = db.skipped_items(mailbox)?;
    Ok(records
        .iter()
        .filter(|r| r.item.reason != SkipReason::TooLarge && r.item.reason.left_behind())
        .count() as u64)
}

/// A refusal that concerns the folder or the account, not the message: the folder is
/// gone (`TRYCREATE`) or the account is full (`OVERQUOTA`). Recording each message as a
/// bad item would only hide the cause.
fn refuses_the_folder(e: &ImapError) -> bool {
    match e {
        ImapError::Refused {
            code: Some(code), ..
        } => matches!(**code, ResponseCode::TryCreate | ResponseCode::OverQuota),
        _ => false,
    }
}

fn refused(m: &Outgoing, text: &str) -> SkippedItem {
    let head = m
        .body
        .as_deref()
        .map(ReportHeaders::of_message)
        .unwrap_or_default();
    SkippedItem {
        source_uid: Some(m.source_uid),
        internal_date: m.internal_date.as_ref().and_then(timestamp_of),
        subject: head.subject,
        size: Some(m.size),
        from: head.from,
        sent: head.date,
        reason: SkipReason::RejectedByTarget,
        detail: Some(text.to_owned()),
    }
}

/// Whether APPENDs go to the target one at a time, each answered before the next is
/// sent. Without LITERAL+ every literal waits for the server's `+`, which it sends only
/// once the APPEND before is done, so pipelining saves next to nothing — and Courier,
/// which has no LITERAL+, crawls when the next APPEND is already waiting in its input
/// ([`Quirk::CourierStallsOnPipelinedAppend`]: 600 realistic messages took 8.9 s
/// pipelined, 1.9 s one at a time).
///
/// [`Quirk::CourierStallsOnPipelinedAppend`]: crate::endpoint::server_quirks::Quirk::CourierStallsOnPipelinedAppend
fn appends_one_at_a_time(tgt: &Connection) -> bool {
    !tgt.has("LITERAL+")
}

/// Whether a throttled message may go out again on this connection: kept in memory (a
/// streamed one is not) and not throttled too often already.
fn may_resend_after_throttling(m: &Outgoing) -> bool {
    m.body.is_some() && m.throttled < APPEND_THROTTLE_RETRIES
}

fn once_more_throttled(m: Outgoing) -> Outgoing {
    Outgoing {
        throttled: m.throttled.saturating_add(1),
        ..m
    }
}

/// After a refusal of `m` alone: once more without its keywords if it has any (a target
/// that caps or limits keywords refuses the message for them), else it is skipped with
/// the server's words.
fn retry_or_skip(
    m: Outgoing,
    text: String,
    retry: &mut Vec<(Outgoing, Option<String>)>,
    skipped: &mut Vec<SkippedItem>,
    last_refusal: &mut String,
) {
    // A streamed message is not kept in memory and cannot be sent again.
    if !m.without_keywords && m.body.is_some() && !m.keywords().is_empty() {
        retry.push((
            Outgoing {
                without_keywords: true,
                ..m
            },
            Some(text),
        ));
        return;
    }
    skipped.push(refused(&m, &text));
    *last_refusal = text;
}

/// The report's record of a message the target took only without its keywords.
fn keywords_dropped(m: &Outgoing, refusal: Option<&str>) -> SkippedItem {
    let mut detail = format!("copied without keywords {}", m.keywords().join(" "));
    if let Some(text) = refusal {
        detail.push_str(&format!("; with them the target said: {text}"));
    }
    SkippedItem {
        reason: SkipReason::KeywordsDropped,
        detail: Some(detail),
        ..refused(m, "")
    }
}

/// The whole-message body of a fetched message.
fn whole_body(m: &FetchedMessage) -> Option<Bytes> {
    m.parts
        .iter()
        .find(|p| {
            p.origin.is_none() && (p.section.is_empty() || p.section.eq_ignore_ascii_case("RFC822"))
        })
        .and_then(|p| p.data.clone())
}

/// INTERNALDATE as a store timestamp.
fn timestamp_of(d: &InternalDate) -> Option<imapmirror_storage::Timestamp> {
    let days = days_from_civil(i64::from(d.year), u32::from(d.month), u32::from(d.day));
    let secs =
        days * 86_400 + i64::from(d.hour) * 3600 + i64::from(d.minute) * 60 + i64::from(d.second)
            - i64::from(d.zone_minutes) * 60;
    u64::try_from(secs)
        .ok()
        .map(|s| imapmirror_storage::Timestamp::from_unix_millis(s * 1000))
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = i64::from(m);
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_dates_become_instants() {
        let d = InternalDate::parse(b"01-Jan-1970 01:00:00 +0100").expect("valid date");
        assert_eq!(timestamp_of(&d).map(|t| t.unix_millis()), Some(0));
        let d = InternalDate::parse(b"29-Feb-2024 12:00:00 +0000").expect("valid date");
        assert_eq!(
            timestamp_of(&d).map(|t| t.unix_millis()),
            Some(1_709_208_000_000)
        );
    }

    #[test]
    fn quota_and_missing_folder_fail_the_folder_not_the_message() {
        let refusal = |code: Option<ResponseCode>| ImapError::Refused {
            server: "t:143".into(),
            command: "APPEND".into(),
            status: imapmirror_protocol::StatusKind::No,
            code: code.map(Box::new),
            text: "no".into(),
        };
        assert!(refuses_the_folder(&refusal(Some(ResponseCode::OverQuota))));
        assert!(refuses_the_folder(&refusal(Some(ResponseCode::TryCreate))));
        assert!(!refuses_the_folder(&refusal(None)));
        assert!(!refuses_the_folder(&refusal(Some(ResponseCode::Limit))));
    }
}
