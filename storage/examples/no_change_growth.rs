//! How the state directory grows under passes that change nothing (issue 17, point 4),
//! without any IMAP server: a batch of N mailboxes, then P rounds in which every mailbox
//! ends a pass that copied nothing — exactly the store writes of an engine pass over an
//! unchanged mailbox (one mailbox record with its status and times, one history entry
//! that replaces the previous no-change one). The store is closed and reopened between
//! rounds, as `batch sync --wait` does, and the directory's size printed after each.
//!
//! Usage: `cargo run --release -p imapmirror-storage --example no_change_growth [N=1000] [P=40]`

use std::path::Path;

use imapmirror_storage::{
    BatchSettings, EndpointSettings, MailboxStatus, MigrationRow, NewMailbox, PassOutcome,
    PassRecord, Secret, Security, Store, Timestamp,
};

fn dir_size(path: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    for entry in std::fs::read_dir(path)? {
        let entry = entry?;
        let meta = entry.metadata()?;
        total += if meta.is_dir() {
            dir_size(&entry.path())?
        } else {
            meta.len()
        };
    }
    Ok(total)
}

fn arg(index: usize, default: usize) -> usize {
    std::env::args()
        .nth(index)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mailboxes = arg(1, 1000);
    let passes = arg(2, 40);
    let tmp = tempfile::tempdir()?;
    let store = Store::open(tmp.path())?;
    let ids = store.call(move |db| {
        for (name, port) in [("src", 143u16), ("dst", 144)] {
            let settings =
                EndpointSettings::new(name, String::from("127.0.0.1"), port, Security::None);
            db.add_endpoint(&settings, None)?;
        }
        let settings = BatchSettings::new("growth", "src", "dst");
        let rows: Vec<NewMailbox> = (0..mailboxes)
            .map(|i| NewMailbox {
                row: MigrationRow {
                    email_address: format!("user{i}@example.test"),
                    user_name: format!("user{i}@example.test"),
                    user_root: None,
                    target_user_name: None,
                },
                password: Secret::new("unused"),
                target_password: None,
                refresh_token: None,
            })
            .collect();
        let batch = db.create_batch(&settings, &rows)?;
        Ok(db
            .mailboxes(batch.id)?
            .into_iter()
            .map(|m| m.id)
            .collect::<Vec<_>>())
    })?;
    drop(store);
    println!(
        "mailboxes {mailboxes}: after the batch was added: {} B",
        dir_size(tmp.path())?
    );
    for pass in 1..=passes {
        let store = Store::open(tmp.path())?;
        let ids = ids.clone();
        store.call(move |db| {
            for id in ids {
                let now = Timestamp::now();
                let record = PassRecord {
                    started: now,
                    finished: now,
                    items_copied: 0,
                    bytes_copied: 0,
                    items_skipped: 0,
                    flags_updated: 0,
                    items_deleted: 0,
                    outcome: PassOutcome::Succeeded,
                    error: None,
                    folders_skipped: vec![],
                    folders_renamed: vec![],
                    unchanged_repeats: 0,
                    rate_limit_wait_ms: 0,
                    throttle_wait_ms: 0,
                };
                db.finish_pass(id, &record, Some((MailboxStatus::Synced, None)))?;
            }
            Ok(())
        })?;
        drop(store);
        // sled's I/O threads let go of the directory a moment after the drop.
        std::thread::sleep(std::time::Duration::from_millis(300));
        println!("pass {pass}: {} B", dir_size(tmp.path())?);
    }
    Ok(())
}
