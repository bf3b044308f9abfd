//! A plan's missing target folders created and its subscriptions mirrored, each set
//! pipelined: every CREATE is sent before the first answer is read, then every SUBSCRIBE.
//!
//! A first pass over a typical mailbox creates and subscribes about twenty folders; one
//! round trip each made them the longest serial stretch of a small mailbox's pass (41 round
//! trips, each waiting on the target's directory, index and subscriptions-file writes),
//! and with many mailboxes at once the per-mailbox fixed costs are what decide the wall
//! time. Pipelined, they cost two round trips. The server still runs them in the order
//! sent (RFC 3501 5.5: a server may run commands concurrently only where the result cannot
//! differ; no server we know runs CREATEs concurrently), so parents are still created
//! before their children — and a server that did create a child first would have created
//! its parents with it (RFC 3501 6.3.3), answering the parent's CREATE "already exists".

use std::collections::HashSet;

use imapmirror_protocol::client::{CommandKind, CommandTag, Completion};
use imapmirror_protocol::{Command, Error as ImapError, MailboxAttr, MailboxName};

use crate::endpoint::pool::{CommandCounters, Connection};
use crate::error::Error;
use crate::pass::folder_plan::{FolderCopy, FolderPlan, SpecialUse};
use crate::pass::report::{FolderSkipReason, PassTotals, SkippedFolder};

/// Creates the plan's missing target folders (parents first; `renamed` ones exist
/// already under their new names) and subscribes the folders the plan subscribes.
/// Returns the target names the server refused to create: their source folders are
/// reported as skipped and must not be synced; the rest of the mailbox goes on.
pub(crate) async fn create_and_subscribe(
    tgt: &mut Connection,
    plan: &FolderPlan,
    renamed: &HashSet<String>,
    totals: &PassTotals,
    mailbox: &str,
) -> Result<Vec<String>, Error> {
    // A special folder the target lacks is created with its use where the target takes
    // one (RFC 6154 CREATE-SPECIAL-USE), so that its clients recognise it.
    let create_use = tgt.has("CREATE-SPECIAL-USE");
    let creations: Vec<(&str, Vec<MailboxAttr<'static>>)> = plan
        .creations()
        .into_iter()
        .filter(|name| !renamed.contains(&name.name))
        .map(|name| {
            let special = plan
                .copies
                .iter()
                .find(|c| c.create && c.target == *name)
                .and_then(|c| c.special_use)
                .filter(|_| create_use)
                .map(mailbox_attr);
            (name.name.as_str(), special.into_iter().collect())
        })
        .collect();

    let mut sent = Vec::with_capacity(creations.len());
    for (name, uses) in &creations {
        CommandCounters::bump(&tgt.counters.creates);
        let tag = send_create(tgt, name, uses)
            .await
            .map_err(create_err(mailbox, name))?;
        sent.push(tag);
    }
    let mut refused_names: Vec<String> = Vec::new();
    for ((name, uses), tag) in creations.iter().zip(sent) {
        let answer = tgt
            .session
            .wait(tag)
            .await
            .map_err(create_err(mailbox, name))?;
        let mut created = if answer.backoff_hint.is_some() && !answer.is_ok() {
            // Throttled (Gmail, Exchange Online): once more alone, where the session waits
            // out the back-off the server asked for.
            tgt.session.create(MailboxName::Unicode(name), uses).await
        } else {
            into_result(tgt, answer)
        };
        if !uses.is_empty() && matches!(created, Err(ImapError::Refused { .. })) {
            // The use is a courtesy: a target that refuses it (`[USEATTR]`) gets the
            // folder without it.
            CommandCounters::bump(&tgt.counters.creates);
            created = tgt.session.create(MailboxName::Unicode(name), &[]).await;
        }
        match created {
            Ok(()) => {
                PassTotals::add(&totals.created, 1);
            }
            Err(ImapError::Refused {
                ref text, ref code, ..
            }) if code
                .as_ref()
                .is_some_and(|c| c.to_string().eq_ignore_ascii_case("ALREADYEXISTS"))
                || text.to_ascii_lowercase().contains("exists") => {}
            Err(ImapError::Refused { ref text, .. }) => {
                for copy in plan.copies.iter().filter(|c| c.target.name == *name) {
                    tracing::warn!(folder = %copy.source, target = %name, server_said = %text, "the target refused to create the folder; its mail stays on the source");
                    totals.skip_folder(SkippedFolder {
                        folder: copy.source.clone(),
                        reason: FolderSkipReason::TargetRefusedCreate,
                        detail: Some(text.clone()),
                    });
                }
                refused_names.push((*name).to_owned());
            }
            Err(e) => return Err(create_err(mailbox, name)(e)),
        }
    }

    let refused = |copy: &&FolderCopy| refused_names.contains(&copy.target.name);
    let subscriptions: Vec<&str> = plan
        .copies
        .iter()
        .filter(|c| c.subscribe)
        .filter(|c| !refused(c))
        .map(|c| c.target.name.as_str())
        .collect();
    let mut sent = Vec::with_capacity(subscriptions.len());
    for name in &subscriptions {
        CommandCounters::bump(&tgt.counters.other);
        let command = Command::Subscribe {
            mailbox: MailboxName::Unicode(name),
        };
        let tag = tgt
            .session
            .send(CommandKind::Simple, format!("SUBSCRIBE {name:?}"), &command)
            .await
            .map_err(subscribe_err(mailbox, name))?;
        sent.push(tag);
    }
    for (name, tag) in subscriptions.iter().zip(sent) {
        let answer = tgt
            .session
            .wait(tag)
            .await
            .map_err(subscribe_err(mailbox, name))?;
        if answer.backoff_hint.is_some() && !answer.is_ok() {
            tgt.session.subscribe(MailboxName::Unicode(name)).await
        } else {
            into_result(tgt, answer)
        }
        .map_err(subscribe_err(mailbox, name))?;
    }
    Ok(refused_names)
}

async fn send_create(
    tgt: &mut Connection,
    name: &str,
    uses: &[MailboxAttr<'_>],
) -> Result<CommandTag, ImapError> {
    let command = Command::Create {
        mailbox: MailboxName::Unicode(name),
        special_use: uses,
    };
    tgt.session
        .send(CommandKind::Simple, format!("CREATE {name:?}"), &command)
        .await
}

/// A pipelined command's answer as the sequential command would have returned it.
fn into_result(tgt: &Connection, answer: Completion) -> Result<(), ImapError> {
    let backoff = tgt.session.config().default_backoff;
    answer.into_result(tgt.server(), backoff).map(drop)
}

fn create_err<'a>(mailbox: &'a str, name: &'a str) -> impl FnOnce(ImapError) -> Error + 'a {
    move |e| Error::Imap {
        mailbox: mailbox.to_owned(),
        action: format!("creating the target folder `{name}`"),
        source: Box::new(e),
    }
}

fn subscribe_err<'a>(mailbox: &'a str, name: &'a str) -> impl FnOnce(ImapError) -> Error + 'a {
    move |e| Error::Imap {
        mailbox: mailbox.to_owned(),
        action: format!("subscribing the target folder `{name}`"),
        source: Box::new(e),
    }
}

/// The LIST/CREATE attribute of a special use.
fn mailbox_attr(use_: SpecialUse) -> MailboxAttr<'static> {
    match use_ {
        SpecialUse::Sent => MailboxAttr::Sent,
        SpecialUse::Drafts => MailboxAttr::Drafts,
        SpecialUse::Trash => MailboxAttr::Trash,
        SpecialUse::Junk => MailboxAttr::Junk,
        SpecialUse::Archive => MailboxAttr::Archive,
        SpecialUse::All => MailboxAttr::All,
        SpecialUse::Flagged => MailboxAttr::Flagged,
    }
}
