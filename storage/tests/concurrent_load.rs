//! The store under the real shape of a batch: many mailboxes at once, each with several
//! folders, beginning and committing journal groups on a multi-threaded tokio runtime
//! while new folders are still being registered.
//!
//! sled 0.34 deadlocks when a `flush_async` holds its global read lock waiting for the
//! log to become stable while a batch write queues for the write lock (sled issue 1308):
//! the log flusher then waits behind the writer, and nothing moves again. Before the
//! store owned its database on one thread (when the engine registered folders with a
//! blocking write on a tokio worker and began groups with `flush_async`), this test hung
//! on every run and failed after its two minutes.

use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use imapmirror_storage::*;

const MAILBOXES: usize = 40;
const FOLDERS_PER_MAILBOX: usize = 8;
const GROUPS_PER_FOLDER: u32 = 12;
/// Far more than the work needs (about a second); only a hang gets near it.
const HANG_AFTER: Duration = Duration::from_secs(120);

fn fixture(dir: &Path) -> (Store, Vec<MailboxId>) {
    let store = Store::open(dir).expect("open");
    let ids = store
        .call(|store| {
            add_batch(store)?;
            let batch = store.batch("load")?;
            Ok(store
                .mailboxes(batch.id)?
                .into_iter()
                .map(|m| m.id)
                .collect())
        })
        .expect("fixture");
    (store, ids)
}

fn add_batch(store: &Database) -> Result<()> {
    store.add_endpoint(
        &EndpointSettings::new("src", "127.0.0.1", 143, Security::None),
        None,
    )?;
    store.add_endpoint(
        &EndpointSettings::new("dst", "127.0.0.1", 144, Security::None),
        None,
    )?;
    let rows: Vec<NewMailbox> = (0..MAILBOXES)
        .map(|i| NewMailbox {
            row: MigrationRow {
                email_address: format!("user{i}@example.test"),
                user_name: format!("user{i}"),
                user_root: None,
                target_user_name: None,
            },
            password: Secret::new("pw"),
            target_password: None,
            refresh_token: None,
        })
        .collect();
    let settings = BatchSettings::new("load", "src", "dst");
    store.create_batch(&settings, &rows)?;
    Ok(())
}

fn group(first_uid: u32, uidnext: u32) -> CopyGroup {
    CopyGroup {
        target_folder: "INBOX".into(),
        target_uidvalidity: 7,
        target_uidnext: uidnext,
        messages: (first_uid..first_uid + 4)
            .map(|u| PendingMessage {
                source_uid: u,
                fingerprint: Fingerprint([u as u8; 16]),
                size: 2048,
            })
            .collect(),
    }
}

/// One folder's life in a pass: registered, then groups begun and committed in turn.
async fn copy_folder(store: Store, mailbox: MailboxId, name: String) {
    let folder = store
        .run(move |db| db.folder(mailbox, &name))
        .await
        .expect("register folder");
    for g in 0..GROUPS_PER_FOLDER {
        let first = 1 + g * 4;
        let id = store
            .begin(folder, group(first, first))
            .await
            .expect("begin");
        let outcome = GroupOutcome {
            copied: (first..first + 4)
                .map(|u| CopiedMessage {
                    source_uid: u,
                    target_uid: u,
                    flags: MessageFlags::new(),
                })
                .collect(),
            skipped: vec![],
            highest_copied_uid: Some(first + 3),
            target_uidnext: Some(first + 4),
            all_mail_index: Default::default(),
        };
        store
            .run(move |db| db.commit(id, &outcome))
            .await
            .expect("commit");
        tokio::task::yield_now().await;
    }
}

#[test]
fn many_folders_begin_groups_while_new_folders_register() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (store, mailboxes) = fixture(tmp.path());
    let (done_tx, done_rx) = mpsc::channel();
    let worker_store = store.clone();
    // The runtime lives on its own thread so that a hang fails this test instead of
    // blocking it forever.
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let mut tasks = Vec::new();
            for m in &mailboxes {
                for f in 0..FOLDERS_PER_MAILBOX {
                    tasks.push(tokio::spawn(copy_folder(
                        worker_store.clone(),
                        *m,
                        format!("Folder{f}"),
                    )));
                }
            }
            for t in tasks {
                t.await.expect("task");
            }
        });
        let _ = done_tx.send(());
    });
    if done_rx.recv_timeout(HANG_AFTER).is_err() {
        panic!(
            "{} folders copying at once made no progress for {HANG_AFTER:?}: the store deadlocked",
            MAILBOXES * FOLDERS_PER_MAILBOX
        );
    }
    let per_folder = u64::from(GROUPS_PER_FOLDER * 4);
    store
        .call(move |db| {
            let batch = db.batch("load")?;
            for m in db.mailboxes(batch.id)? {
                let folders = db.folders(m.id)?;
                assert_eq!(folders.len(), FOLDERS_PER_MAILBOX);
                for (_, state) in folders {
                    assert_eq!(state.counters.messages, per_folder, "{}", state.source_name);
                }
            }
            Ok(())
        })
        .expect("check");
    let fsyncs = store
        .call(|db| Ok(db.flush_counters().fsyncs))
        .expect("counters");
    let groups = (MAILBOXES * FOLDERS_PER_MAILBOX) as u64 * u64::from(GROUPS_PER_FOLDER);
    eprintln!("{groups} journal groups, {fsyncs} fsyncs");
    // Group commit: journal begins in flight at once share flushes.
    assert!(
        fsyncs < groups,
        "{fsyncs} fsyncs for {groups} journal groups: begins did not share flushes"
    );
}
