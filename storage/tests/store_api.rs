//! The store's public API as the engine, the CLI and the proxy use it.

use std::collections::BTreeMap;
use std::path::Path;

use imapmirror_storage::*;

fn endpoint(name: &str, port: u16) -> EndpointSettings {
    EndpointSettings {
        admin_user: Some("mailadmin".into()),
        admin_format: Some(AdminFormat::Dovecot),
        ..EndpointSettings::new(name, "127.0.0.1", port, Security::None)
    }
}

fn row(email: &str, user: &str, password: &str) -> NewMailbox {
    NewMailbox {
        row: MigrationRow {
            email_address: email.into(),
            user_name: user.into(),
            user_root: None,
            target_user_name: None,
        },
        password: Secret::new(password),
        target_password: Some(Secret::new(format!("{password}-target"))),
        refresh_token: None,
    }
}

fn settings(name: &str) -> BatchSettings {
    BatchSettings {
        excluded_folders: vec!["Junk".into()],
        max_message_size: Some(35 << 20),
        bad_item_limit: Some(10),
        ..BatchSettings::new(name, "src", "dst")
    }
}

/// A store with two endpoints and one batch of two mailboxes.
fn fixture(dir: &Path) -> (Store, BatchRecord, Vec<MailboxRecord>) {
    let store = Store::open(dir).expect("open");
    let (batch, mailboxes) = store
        .call(|db| {
            db.add_endpoint(
                &endpoint("src", 143),
                Some(&Secret::new("admin-pw-source-0xA1")),
            )
            .expect("src");
            db.add_endpoint(&endpoint("dst", 144), None).expect("dst");
            let batch = db
                .create_batch(
                    &settings("wave1"),
                    &[
                        row("Anna@Example.test", "anna", "pw-anna-7f3e9c1d"),
                        row("bob@example.test", "bob@example.test", "pw-bob-2b8a6e4f"),
                    ],
                )
                .expect("batch");
            let mailboxes = db.mailboxes(batch.id).expect("mailboxes");
            Ok((batch, mailboxes))
        })
        .expect("fixture");
    (store, batch, mailboxes)
}

fn fp(n: u32) -> Fingerprint {
    let mut b = [0u8; 16];
    b[..4].copy_from_slice(&n.to_be_bytes());
    b[15] = 0xEE;
    Fingerprint(b)
}

fn group(uids: impl IntoIterator<Item = u32>, uidnext: u32) -> CopyGroup {
    CopyGroup {
        target_folder: "INBOX".into(),
        target_uidvalidity: 42,
        target_uidnext: uidnext,
        messages: uids
            .into_iter()
            .map(|u| PendingMessage {
                source_uid: u,
                fingerprint: fp(u),
                size: 1000 + u64::from(u),
            })
            .collect(),
    }
}

fn copied(uids: impl IntoIterator<Item = u32>, offset: u32) -> Vec<CopiedMessage> {
    uids.into_iter()
        .map(|u| {
            let mut flags = MessageFlags::new();
            if u % 3 == 0 {
                flags.insert(SystemFlag::Seen);
            }
            CopiedMessage {
                source_uid: u,
                target_uid: u + offset,
                flags,
            }
        })
        .collect()
}

/// Every regular file under `dir`, recursively.
fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read_dir") {
        let p = e.expect("entry").path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn any_file_contains(dir: &Path, needle: &[u8]) -> Option<std::path::PathBuf> {
    files(dir).into_iter().find(|p| {
        std::fs::read(p)
            .map(|b| b.windows(needle.len()).any(|w| w == needle))
            .unwrap_or(false)
    })
}

#[test]
fn endpoints_and_batches_round_trip() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (store, batch, mailboxes) = fixture(tmp.path());
    let bob = mailboxes[1].id;
    store
        .call(move |db| {
            assert_eq!(db.endpoints().expect("list").len(), 2);
            let src = db.endpoint("src").expect("read").expect("exists");
            assert!(src.has_admin_password);
            assert_eq!(src.settings, endpoint("src", 143));
            assert_eq!(
                db.endpoint_admin_password("src")
                    .expect("pw")
                    .expect("some")
                    .expose(),
                "admin-pw-source-0xA1"
            );
            assert!(db.endpoint_admin_password("dst").expect("pw").is_none());

            let err = db.add_endpoint(&endpoint("src", 1), None).expect_err("dup");
            assert_eq!(err.kind(), ErrorKind::UserInput);
            let err = db
                .create_batch(&settings("wave1"), &[])
                .expect_err("dup batch");
            assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err}");
            let mut bad = settings("wave2");
            bad.target_endpoint = "nowhere".into();
            let err = db.create_batch(&bad, &[]).expect_err("unknown endpoint");
            assert!(err.to_string().contains("nowhere"), "{err}");
            let err = db
                .create_batch(
                    &settings("wave3"),
                    &[row("a@x.test", "a", "p"), row("A@X.test", "b", "q")],
                )
                .expect_err("duplicate EmailAddress");
            assert!(
                matches!(
                    err,
                    StoreError::AlreadyExists {
                        kind: "mailbox",
                        ..
                    }
                ),
                "{err}"
            );
            assert!(matches!(
                db.batch("wave3"),
                Err(StoreError::NotFound { .. })
            ));

            assert_eq!(batch.status, BatchStatus::Created);
            assert_eq!(db.batch("wave1").expect("batch"), batch);
            let b = db
                .set_batch_status("wave1", BatchStatus::Syncing)
                .expect("status");
            assert_eq!(b.status, BatchStatus::Syncing);
            let b = db
                .update_batch("wave1", |b| {
                    b.settings.excluded_folders.push("Trash".into());
                    b.last_sync_started = Some(Timestamp::from_unix_millis(7));
                })
                .expect("update");
            assert_eq!(b.settings.excluded_folders, ["Junk", "Trash"]);
            let err = db
                .update_batch("wave1", |b| b.settings.name = "renamed".into())
                .expect_err("rename refused");
            assert_eq!(err.kind(), ErrorKind::Misuse);

            assert_eq!(mailboxes.len(), 2);
            assert_eq!(mailboxes[0].row.email_address, "Anna@Example.test");
            assert_eq!(mailboxes[0].status, MailboxStatus::Queued);
            let creds = db.mailbox_credentials(mailboxes[0].id).expect("creds");
            assert_eq!(creds.password.expose(), "pw-anna-7f3e9c1d");
            assert_eq!(
                creds.target_password.as_ref().map(Secret::expose),
                Some("pw-anna-7f3e9c1d-target")
            );
            assert_eq!(format!("{creds:?}").matches("***").count(), 2, "{creds:?}");

            let m = db
                .set_mailbox_status(
                    mailboxes[1].id,
                    MailboxStatus::Failed,
                    Some("the source refused LOGIN"),
                )
                .expect("status");
            assert_eq!(m.last_error.as_deref(), Some("the source refused LOGIN"));
            let m = db
                .set_mailbox_status(mailboxes[1].id, MailboxStatus::Synced, None)
                .expect("status");
            assert_eq!(m.last_error, None);

            let err = db.remove_endpoint("src").expect_err("in use");
            assert!(matches!(err, StoreError::EndpointInUse { .. }), "{err}");

            Ok(())
        })
        .expect("storage job");

    // Everything survives a reopen.
    drop(store);
    let store = Store::open(tmp.path()).expect("reopen");
    store
        .call(move |db| {
            assert_eq!(
                db.batch("wave1").expect("batch").status,
                BatchStatus::Syncing
            );
            assert_eq!(
                db.mailbox(bob).expect("mailbox").status,
                MailboxStatus::Synced
            );
            assert_eq!(
                db.mailbox_credentials(bob)
                    .expect("creds")
                    .password
                    .expose(),
                "pw-bob-2b8a6e4f"
            );
            Ok(())
        })
        .expect("storage job");
}

#[test]
fn logins_route_case_insensitively_by_email_or_user_name() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (store, batch, mailboxes) = fixture(tmp.path());
    store
        .call(move |db| {
            for login in ["anna@example.test", "ANNA@EXAMPLE.TEST", "Anna", " anna "] {
                let routes = db.login_routes(login).expect("routes");
                assert_eq!(routes.len(), 1, "{login}");
                let r = &routes[0];
                assert_eq!(r.batch, batch.id);
                assert_eq!(r.batch_name, "wave1");
                assert_eq!(r.batch_status, BatchStatus::Created);
                assert_eq!(r.mailbox, mailboxes[0].id);
                assert_eq!(
                    (r.source_endpoint.as_str(), r.target_endpoint.as_str()),
                    ("src", "dst")
                );
            }
            assert!(
                db.login_routes("ann").expect("routes").is_empty(),
                "no prefix matches"
            );
            assert!(
                db.login_routes("nobody@example.test")
                    .expect("routes")
                    .is_empty()
            );
            let found = db.find_mailbox(batch.id, "BOB@example.test").expect("find");
            assert_eq!(found.map(|m| m.id), Some(mailboxes[1].id));
            assert!(
                db.find_mailbox(batch.id, "anna").expect("find").is_none(),
                "UserName is not an EmailAddress"
            );

            // A second batch with the same user: newest first.
            let second = db
                .create_batch(
                    &settings("wave2"),
                    &[row("anna@example.test", "anna", "pw2")],
                )
                .expect("second");
            let routes = db.login_routes("anna").expect("routes");
            assert_eq!(routes.len(), 2);
            assert_eq!(routes[0].batch, second.id);
            db.remove_batch("wave2").expect("remove");
            assert_eq!(db.login_routes("anna").expect("routes").len(), 1);
            Ok(())
        })
        .expect("storage job");
}

#[test]
fn a_message_copied_without_its_keywords_is_listed_but_not_counted_as_skipped() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (store, _, mailboxes) = fixture(tmp.path());
    store
        .call(move |db| {
            let mb = mailboxes[0].id;
            let inbox = db.folder(mb, "INBOX").expect("folder");
            let dropped = |uid: u32| SkippedItem {
                source_uid: Some(uid),
                internal_date: None,
                subject: Some("tagged".into()),
                size: Some(1000 + u64::from(uid)),
                from: None,
                sent: None,
                reason: SkipReason::KeywordsDropped,
                detail: Some("without keywords k101: NO Too many user flags in mailbox".into()),
            };
            let refused = SkippedItem {
                from: None,
                sent: None,
                reason: SkipReason::RejectedByTarget,
                detail: Some("NO Message contains NUL characters".into()),
                ..dropped(3)
            };
            let j = db.begin(inbox, &group(1..=3, 1)).expect("begin");
            db.commit(
                j,
                &GroupOutcome {
                    copied: copied(1..=2, 1000),
                    skipped: vec![dropped(2), refused.clone()],
                    highest_copied_uid: Some(3),
                    target_uidnext: Some(1003),
                    all_mail_index: Default::default(),
                },
            )
            .expect("a copied message may carry a keywords record");
            let state = db.folder_state(inbox).expect("state");
            assert_eq!((state.counters.messages, state.counters.skipped), (2, 1));
            let mut listed: Vec<_> = db
                .skipped_items(mb)
                .expect("listed")
                .into_iter()
                .map(|r| (r.item.source_uid, r.item.reason))
                .collect();
            listed.sort_by_key(|(uid, _)| *uid);
            assert_eq!(
                listed,
                [
                    (Some(2), SkipReason::KeywordsDropped),
                    (Some(3), SkipReason::RejectedByTarget)
                ]
            );
            // A message left behind cannot be reported copied as well.
            let j = db.begin(inbox, &group([4], 1003)).expect("begin");
            let err = db
                .commit(
                    j,
                    &GroupOutcome {
                        copied: copied([4], 1000),
                        skipped: vec![SkippedItem {
                            source_uid: Some(4),
                            ..refused
                        }],
                        highest_copied_uid: Some(4),
                        target_uidnext: Some(1005),
                        all_mail_index: Default::default(),
                    },
                )
                .expect_err("copied and left behind");
            assert!(matches!(err, StoreError::InvalidRequest { .. }), "{err}");
            Ok(())
        })
        .expect("storage job");
}

#[test]
fn journal_commit_abort_and_counters() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (store, _, mailboxes) = fixture(tmp.path());
    store
        .call(move |db| {
            let mb = mailboxes[0].id;
            let inbox = db.folder(mb, "INBOX").expect("folder");
            assert_eq!(db.folder(mb, "INBOX").expect("same id"), inbox);
            let sent = db.folder(mb, "Sent").expect("folder");
            assert_ne!(inbox, sent);

            let j1 = db.begin(inbox, &group(1..=100, 1)).expect("begin");
            let j2 = db.begin(inbox, &group(101..=150, 101)).expect("begin");
            let j3 = db.begin(sent, &group([5, 9], 1)).expect("begin");
            let pending = db.pending(mb).expect("pending");
            assert_eq!(pending.len(), 3);
            assert_eq!(db.pending_in_folder(mb, inbox).expect("pending").len(), 2);
            assert_eq!(pending[0].group, group(1..=100, 1));

            db.commit(
                j1,
                &GroupOutcome {
                    copied: copied(1..=100, 1000),
                    skipped: vec![],
                    highest_copied_uid: Some(100),
                    target_uidnext: Some(1101),
                    all_mail_index: Default::default(),
                },
            )
            .expect("commit");
            // One message too large, the rest copied.
            db.commit(
                j2,
                &GroupOutcome {
                    copied: copied(101..=149, 1000),
                    skipped: vec![SkippedItem {
                        source_uid: Some(150),
                        internal_date: Some(Timestamp::from_unix_millis(1_600_000_000_000)),
                        subject: Some("holiday photos".into()),
                        size: Some(90 << 20),
                        from: None,
                        sent: None,
                        reason: SkipReason::RejectedByTarget,
                        detail: Some("NO [LIMIT] message too large".into()),
                    }],
                    highest_copied_uid: Some(150),
                    target_uidnext: Some(1150),
                    all_mail_index: Default::default(),
                },
            )
            .expect("commit");
            db.abort(j3).expect("abort");
            assert!(matches!(
                db.abort(j3),
                Err(StoreError::JournalNotPending { .. })
            ));
            assert!(matches!(
                db.commit(j1, &GroupOutcome::default()),
                Err(StoreError::JournalNotPending { .. })
            ));
            assert!(db.pending(mb).expect("pending").is_empty());

            let state = db.folder_state(inbox).expect("state");
            assert_eq!(state.marks.highest_copied_uid, 150);
            assert_eq!(state.marks.target_uidnext_seen, Some(1150));
            assert_eq!(state.counters.messages, 149);
            assert_eq!(
                state.counters.bytes,
                (1..=149u64).map(|u| 1000 + u).sum::<u64>()
            );
            assert_eq!(state.counters.skipped, 1);
            let e = db.uid_map_get(inbox, 42).expect("get").expect("mapped");
            assert_eq!(e.target_uid, 1042);
            assert_eq!(e.fingerprint, fp(42));
            assert!(e.flags.contains(SystemFlag::Seen));
            assert!(db.uid_map_get(inbox, 150).expect("get").is_none());
            assert!(db.uid_map_get(sent, 5).expect("get").is_none(), "aborted");
            let skipped = db.skipped_items(mb).expect("skipped");
            assert_eq!(skipped.len(), 1);
            assert_eq!(skipped[0].folder_name, "INBOX");
            assert_eq!(skipped[0].item.source_uid, Some(150));
            let counters = db.mailbox_counters(mb).expect("counters");
            assert_eq!(
                (counters.folders, counters.messages, counters.skipped),
                (2, 149, 1)
            );

            // A later pass copies the once-skipped message: it leaves the skipped list.
            let j4 = db.begin(inbox, &group([150], 1150)).expect("begin");
            db.commit(
                j4,
                &GroupOutcome {
                    copied: copied([150], 1000),
                    ..GroupOutcome::default()
                },
            )
            .expect("commit");
            let state = db.folder_state(inbox).expect("state");
            assert_eq!((state.counters.messages, state.counters.skipped), (150, 0));
            assert!(db.skipped_items(mb).expect("skipped").is_empty());

            // Never twice: a group naming an already-mapped UID cannot be committed.
            let j5 = db.begin(inbox, &group([7], 1151)).expect("begin");
            let err = db
                .commit(
                    j5,
                    &GroupOutcome {
                        copied: copied([7], 5000),
                        ..GroupOutcome::default()
                    },
                )
                .expect_err("already mapped");
            assert!(
                matches!(
                    err,
                    StoreError::AlreadyMapped {
                        uid: 7,
                        existing: 1007,
                        ..
                    }
                ),
                "{err}"
            );
            assert_eq!(
                db.uid_map_get(inbox, 7).expect("get").map(|e| e.target_uid),
                Some(1007)
            );
            // A commit naming a UID outside its group is refused too.
            let err = db
                .commit(
                    j5,
                    &GroupOutcome {
                        copied: copied([8], 5000),
                        ..GroupOutcome::default()
                    },
                )
                .expect_err("mismatch");
            assert!(
                matches!(err, StoreError::JournalMismatch { uid: 8, .. }),
                "{err}"
            );
            db.abort(j5).expect("abort");
            assert_eq!(
                db.folder_state(inbox).expect("state").counters.messages,
                150
            );

            // Bad groups are refused before anything is written.
            for bad in [group([], 1), group([0], 1), group([3, 3], 1)] {
                let err = db.begin(inbox, &bad).expect_err("bad group");
                assert_eq!(err.kind(), ErrorKind::Misuse, "{err}");
            }
            Ok(())
        })
        .expect("storage job");
}

#[test]
fn flags_removal_ranges_and_fingerprints() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (store, _, mailboxes) = fixture(tmp.path());
    store
        .call(move |db| {
            let f = db.folder(mailboxes[0].id, "INBOX").expect("folder");
            let entry = |u: u32| UidMapEntry {
                target_uid: u * 2,
                flags: MessageFlags::new(),
                fingerprint: fp(u % 7),
                size: u64::from(u),
            };
            db.uid_map_record(f, (1..=1000).step_by(3).map(|u| (u, entry(u))).collect())
                .expect("record");
            let all: Vec<u32> = db
                .uid_map_range(f, ..)
                .expect("range")
                .map(|r| r.expect("entry").0)
                .collect();
            assert_eq!(all, (1..=1000).step_by(3).collect::<Vec<_>>());
            let window: Vec<u32> = db
                .uid_map_range(f, 10..20)
                .expect("range")
                .map(|r| r.expect("entry").0)
                .collect();
            assert_eq!(window, vec![10, 13, 16, 19]);
            assert_eq!(db.uid_map_range(f, 20..20).expect("range").count(), 0);
            assert_eq!(db.uid_map_range(f, 1001..).expect("range").count(), 0);

            let with_fp = db.uid_map_find_fingerprint(f, fp(3)).expect("find");
            assert!(!with_fp.is_empty());
            assert!(
                with_fp
                    .iter()
                    .all(|(u, e)| u % 7 == 3 && e.fingerprint == fp(3))
            );

            let mut seen = MessageFlags::new();
            seen.insert(SystemFlag::Seen);
            seen.add_keyword("$Label1");
            let changed = db
                .uid_map_set_flags(
                    f,
                    &[(4, seen.clone()), (5, seen.clone()), (997, seen.clone())],
                )
                .expect("flags");
            assert_eq!(changed, 2, "UID 5 is not mapped");
            assert_eq!(db.uid_map_get(f, 997).expect("get").expect("e").flags, seen);

            let removed = db.uid_map_remove(f, &[1, 4, 5, 1000]).expect("remove");
            assert_eq!(
                removed.iter().map(|(u, _)| *u).collect::<Vec<_>>(),
                vec![1, 4, 1000]
            );
            assert!(db.uid_map_get(f, 1).expect("get").is_none());
            assert_eq!(
                db.uid_map_get(f, 7).expect("get").map(|e| e.target_uid),
                Some(14)
            );
            let state = db.folder_state(f).expect("state");
            assert_eq!(state.counters.messages, 334 - 3);
            assert_eq!(
                state.counters.messages,
                db.uid_map_range(f, ..).expect("range").count() as u64
            );
            // Filling holes below existing runs works and keeps order.
            db.uid_map_record(f, vec![(2, entry(2)), (1, entry(1)), (999, entry(999))])
                .expect("fill");
            let first: Vec<u32> = db
                .uid_map_range(f, ..=8)
                .expect("range")
                .map(|r| r.expect("entry").0)
                .collect();
            assert_eq!(first, vec![1, 2, 7]);
            Ok(())
        })
        .expect("storage job");
}

#[test]
fn uid_map_matches_a_model_under_random_operations() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (store, _, mailboxes) = fixture(tmp.path());
    store
        .call(move |db| {
            let f = db.folder(mailboxes[0].id, "INBOX").expect("folder");
            let mut model: BTreeMap<u32, UidMapEntry> = BTreeMap::new();
            // A small deterministic PRNG (xorshift) keeps the test reproducible.
            let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
            let mut next = move |n: u32| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x % u64::from(n)) as u32
            };
            for round in 0..400 {
                match next(4) {
                    0 | 1 => {
                        let start = next(3000) + 1;
                        let len = next(150) + 1;
                        let step = next(3) + 1;
                        let batch: Vec<(u32, UidMapEntry)> = (0..len)
                            .map(|i| start + i * step)
                            .filter(|u| !model.contains_key(u))
                            .map(|u| {
                                (
                                    u,
                                    UidMapEntry {
                                        target_uid: u + round,
                                        flags: MessageFlags::new(),
                                        fingerprint: fp(u),
                                        size: u64::from(next(100_000)),
                                    },
                                )
                            })
                            .collect();
                        if batch.is_empty() {
                            continue;
                        }
                        db.uid_map_record(f, batch.clone()).expect("record");
                        model.extend(batch);
                    }
                    2 => {
                        let start = next(3000);
                        let uids: Vec<u32> = (start..start + next(200))
                            .filter(|_| next(2) == 0)
                            .collect();
                        let removed = db.uid_map_remove(f, &uids).expect("remove");
                        let expect: Vec<u32> = uids
                            .iter()
                            .copied()
                            .filter(|u| model.remove(u).is_some())
                            .collect();
                        assert_eq!(removed.iter().map(|(u, _)| *u).collect::<Vec<_>>(), expect);
                    }
                    _ => {
                        let start = next(3000);
                        let mut flags = MessageFlags::new();
                        flags.add_keyword(format!("k{round}"));
                        let updates: Vec<(u32, MessageFlags)> = (start..start + next(100))
                            .map(|u| (u, flags.clone()))
                            .collect();
                        db.uid_map_set_flags(f, &updates).expect("flags");
                        for (u, fl) in &updates {
                            if let Some(e) = model.get_mut(u) {
                                e.flags = fl.clone();
                            }
                        }
                    }
                }
                if round % 50 == 0 || round == 399 {
                    let stored: Vec<(u32, UidMapEntry)> = db
                        .uid_map_range(f, ..)
                        .expect("range")
                        .map(|r| r.expect("entry"))
                        .collect();
                    let expect: Vec<(u32, UidMapEntry)> =
                        model.iter().map(|(u, e)| (*u, e.clone())).collect();
                    assert_eq!(stored, expect, "round {round}");
                    let lo = next(3000);
                    let hi = lo + next(500);
                    let part: Vec<u32> = db
                        .uid_map_range(f, lo..=hi)
                        .expect("range")
                        .map(|r| r.expect("entry").0)
                        .collect();
                    assert_eq!(
                        part,
                        model.range(lo..=hi).map(|(u, _)| *u).collect::<Vec<_>>()
                    );
                    for probe in 0..50 {
                        let u = next(3200) + probe;
                        assert_eq!(
                            db.uid_map_get(f, u).expect("get"),
                            model.get(&u).cloned(),
                            "uid {u}"
                        );
                    }
                    let state = db.folder_state(f).expect("state");
                    assert_eq!(state.counters.messages, model.len() as u64);
                    assert_eq!(
                        state.counters.bytes,
                        model.values().map(|e| e.size).sum::<u64>()
                    );
                }
            }
            Ok(())
        })
        .expect("storage job");
}

#[test]
fn reset_folder_after_uidvalidity_change() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (store, _, mailboxes) = fixture(tmp.path());
    store
        .call(move |db| {
            let mb = mailboxes[0].id;
            let old = db.folder(mb, "INBOX").expect("folder");
            db.update_folder_marks(old, |m| {
                m.source_uidvalidity = Some(1);
                m.target_name = Some("INBOX".into());
            })
            .expect("marks");
            let j = db.begin(old, &group(1..=300, 1)).expect("begin");
            let err = db
                .reset_folder(old, FolderMarks::default())
                .expect_err("pending");
            assert!(
                matches!(err, StoreError::PendingJournal { count: 1, .. }),
                "{err}"
            );
            db.commit(
                j,
                &GroupOutcome {
                    copied: copied(1..=300, 0),
                    highest_copied_uid: Some(300),
                    ..GroupOutcome::default()
                },
            )
            .expect("commit");
            let new = db
                .reset_folder(
                    old,
                    FolderMarks {
                        source_uidvalidity: Some(2),
                        ..FolderMarks::default()
                    },
                )
                .expect("reset");
            assert_ne!(new, old);
            assert_eq!(db.folder(mb, "INBOX").expect("folder"), new);
            let state = db.folder_state(new).expect("state");
            assert_eq!(state.marks.source_uidvalidity, Some(2));
            assert_eq!(state.marks.highest_copied_uid, 0);
            assert_eq!(state.counters, FolderCounters::default());
            assert_eq!(db.uid_map_range(new, ..).expect("range").count(), 0);
            assert_eq!(
                db.uid_map_range(old, ..).expect("range").count(),
                0,
                "old map erased"
            );
            assert!(matches!(
                db.folder_state(old),
                Err(StoreError::UnknownFolder { .. })
            ));
            assert!(matches!(
                db.begin(old, &group([1], 1)),
                Err(StoreError::UnknownFolder { .. })
            ));
            db.remove_folder(new).expect("remove");
            assert!(db.find_folder(mb, "INBOX").expect("find").is_none());
            assert_eq!(db.folders(mb).expect("folders").len(), 0);
            Ok(())
        })
        .expect("storage job");
}

#[test]
fn rename_folder_keeps_the_map_under_the_new_name() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (store, _, mailboxes) = fixture(tmp.path());
    let mb = mailboxes[0].id;
    let folder = store
        .call(move |db| {
            let folder = db.folder(mb, "Projects.2024").expect("folder");
            db.update_folder_marks(folder, |m| {
                m.source_uidvalidity = Some(7);
                m.target_name = Some("Projects/2024".into());
            })
            .expect("marks");
            let j = db.begin(folder, &group(1..=40, 1)).expect("begin");
            let err = db
                .rename_folder(folder, "Work.2024", "Work/2024")
                .expect_err("pending");
            assert!(
                matches!(err, StoreError::PendingJournal { count: 1, .. }),
                "{err}"
            );
            db.commit(
                j,
                &GroupOutcome {
                    copied: copied(1..=40, 0),
                    highest_copied_uid: Some(40),
                    ..GroupOutcome::default()
                },
            )
            .expect("commit");
            db.folder(mb, "Taken").expect("another folder");
            let err = db
                .rename_folder(folder, "Taken", "Taken")
                .expect_err("name in use");
            assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err}");

            db.rename_folder(folder, "Work.2024", "Work/2024")
                .expect("rename");
            assert!(db.find_folder(mb, "Projects.2024").expect("find").is_none());
            assert_eq!(db.folder(mb, "Work.2024").expect("folder"), folder);
            let state = db.folder_state(folder).expect("state");
            assert_eq!(state.source_name, "Work.2024");
            assert_eq!(state.marks.target_name.as_deref(), Some("Work/2024"));
            assert_eq!(state.marks.source_uidvalidity, Some(7));
            assert_eq!(state.marks.highest_copied_uid, 40);
            assert_eq!(state.counters.messages, 40);
            assert_eq!(db.uid_map_range(folder, ..).expect("range").count(), 40);
            Ok(folder)
        })
        .expect("storage job");
    // It survives a reopen like any other write.
    drop(store);
    let store = Store::open(tmp.path()).expect("reopen");
    store
        .call(move |db| {
            assert_eq!(db.find_folder(mb, "Work.2024").expect("find"), Some(folder));
            Ok(())
        })
        .expect("storage job");
}

#[test]
fn pass_history_and_mailbox_times() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (store, _, mailboxes) = fixture(tmp.path());
    store
        .call(move |db| {
            let mb = mailboxes[0].id;
            for i in 0..3u64 {
                db.record_pass(
                    mb,
                    &PassRecord {
                        started: Timestamp::from_unix_millis(1000 * i),
                        finished: Timestamp::from_unix_millis(1000 * i + 500),
                        items_copied: i,
                        bytes_copied: i * 10,
                        items_skipped: 0,
                        flags_updated: 0,
                        items_deleted: 0,
                        outcome: if i == 1 {
                            PassOutcome::Failed
                        } else {
                            PassOutcome::Succeeded
                        },
                        error: (i == 1).then(|| "connection reset by the source".into()),
                        folders_skipped: if i == 2 {
                            vec![FolderSkip {
                                folder: "Projects".into(),
                                reason: "vanished from the source".into(),
                            }]
                        } else {
                            Vec::new()
                        },
                        folders_renamed: if i == 2 {
                            vec![FolderRename {
                                from: "Projects".into(),
                                to: "Work".into(),
                            }]
                        } else {
                            Vec::new()
                        },
                        unchanged_repeats: 0,
                        rate_limit_wait_ms: 0,
                        throttle_wait_ms: 0,
                    },
                )
                .expect("record");
            }
            let h = db.pass_history(mb).expect("history");
            assert_eq!(
                h.iter().map(|p| p.items_copied).collect::<Vec<_>>(),
                vec![0, 1, 2]
            );
            assert_eq!(h[1].outcome, PassOutcome::Failed);
            assert!(h[0].folders_skipped.is_empty());
            assert_eq!(h[2].folders_skipped[0].folder, "Projects");
            assert!(h[0].folders_renamed.is_empty());
            assert_eq!(h[2].folders_renamed[0].to, "Work");
            let m = db.mailbox(mb).expect("mailbox");
            assert_eq!(m.last_pass_started, Some(Timestamp::from_unix_millis(2000)));
            assert_eq!(
                m.last_pass_finished,
                Some(Timestamp::from_unix_millis(2500))
            );
            assert!(
                db.pass_history(mailboxes[1].id)
                    .expect("history")
                    .is_empty()
            );
            Ok(())
        })
        .expect("storage job");
}

#[test]
fn batch_totals_sum_mailboxes() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (store, batch, mailboxes) = fixture(tmp.path());
    store
        .call(move |db| {
            for (i, m) in mailboxes.iter().enumerate() {
                let f = db.folder(m.id, "INBOX").expect("folder");
                let n = 10 * (i as u32 + 1);
                let j = db.begin(f, &group(1..=n, 1)).expect("begin");
                db.commit(
                    j,
                    &GroupOutcome {
                        copied: copied(1..=n, 0),
                        ..GroupOutcome::default()
                    },
                )
                .expect("commit");
            }
            db.set_mailbox_status(mailboxes[0].id, MailboxStatus::Synced, None)
                .expect("status");
            let t = db.batch_totals(batch.id).expect("totals");
            assert_eq!(t.mailboxes_total, 2);
            assert_eq!(t.mailboxes_synced, 1);
            assert_eq!(t.items_synced, 30);
            assert_eq!(
                t.bytes_synced,
                (1..=10u64).map(|u| 1000 + u).sum::<u64>()
                    + (1..=20u64).map(|u| 1000 + u).sum::<u64>()
            );
            Ok(())
        })
        .expect("storage job");
}

#[test]
fn passwords_never_reach_the_disk_and_removal_shreds_them() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("state");
    let (store, _, mailboxes) = fixture(&dir);
    store
        .call(move |db| {
            let f = db.folder(mailboxes[0].id, "INBOX").expect("folder");
            let hook = "https://hooks.example.test/T0/B1?token=hook-token-5d1c";
            db.set_batch_notify_url("wave1", Some(&Secret::new(hook)))
                .expect("notify url");
            assert_eq!(
                db.batch_notify_url("wave1")
                    .expect("read")
                    .as_ref()
                    .map(Secret::expose),
                Some(hook)
            );
            let j = db.begin(f, &group(1..=10, 1)).expect("begin");
            db.commit(
                j,
                &GroupOutcome {
                    copied: copied(1..=10, 0),
                    ..GroupOutcome::default()
                },
            )
            .expect("commit");
            db.flush().expect("flush");

            let secrets: [&[u8]; 5] = [
                b"hook-token-5d1c",
                b"pw-anna-7f3e9c1d",
                b"pw-bob-2b8a6e4f",
                b"pw-anna-7f3e9c1d-target",
                b"admin-pw-source-0xA1",
            ];
            for s in secrets {
                assert_eq!(
                    any_file_contains(&dir, s),
                    None,
                    "plaintext {:?} on disk",
                    String::from_utf8_lossy(s)
                );
            }
            let key_files = || files(&dir.join("keys"));
            assert_eq!(key_files().len(), 3, "one key per batch and per endpoint");
            for p in files(&dir) {
                let mode = std::fs::metadata(&p).expect("meta").permissions().mode() & 0o777;
                assert_eq!(mode, 0o600, "{}", p.display());
            }
            assert_eq!(
                std::fs::metadata(&dir).expect("meta").permissions().mode() & 0o777,
                0o700
            );

            db.remove_batch("wave1").expect("remove");
            db.remove_endpoint("src").expect("remove endpoint");
            db.flush().expect("flush");
            for s in secrets {
                assert_eq!(any_file_contains(&dir, s), None);
            }
            assert_eq!(key_files().len(), 1, "only dst's key remains");
            assert!(matches!(
                db.batch("wave1"),
                Err(StoreError::NotFound { .. })
            ));
            assert!(matches!(
                db.mailbox_credentials(mailboxes[0].id),
                Err(StoreError::SecretUnavailable { .. })
            ));
            assert!(matches!(
                db.mailbox(mailboxes[0].id),
                Err(StoreError::NotFound { .. })
            ));
            assert!(db.login_routes("anna").expect("routes").is_empty());
            assert!(matches!(
                db.folder_state(f),
                Err(StoreError::UnknownFolder { .. })
            ));
            assert_eq!(db.uid_map_range(f, ..).expect("range").count(), 0);
            assert!(
                db.pass_history(mailboxes[0].id)
                    .expect("history")
                    .is_empty()
            );
            // The name is free again, and the new batch has no webhook of the old one.
            db.add_endpoint(&endpoint("src", 143), None)
                .expect("re-add endpoint");
            db.create_batch(&settings("wave1"), &[row("c@x.test", "c", "p")])
                .expect("re-create");
            assert_eq!(db.batch_notify_url("wave1").expect("read"), None);
            Ok(())
        })
        .expect("storage job");
}

#[test]
fn many_tasks_commit_concurrently() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let (store, _, mailboxes) = fixture(tmp.path());
    let mb = mailboxes[0].id;
    // Each thread begins and commits in its own jobs, as the engine's tasks do, so the
    // threads' begins and commits interleave on the storage thread.
    let threads: Vec<_> = (0..8u32)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let name = format!("F{}", t % 4);
                let f = store.call(move |db| db.folder(mb, &name)).expect("folder");
                for g in 0..20u32 {
                    let base = t * 100_000 + g * 50 + 1;
                    let uids = base..base + 50;
                    let begun = group(uids.clone(), 1);
                    let j = store.call(move |db| db.begin(f, &begun)).expect("begin");
                    store
                        .call(move |db| {
                            db.commit(
                                j,
                                &GroupOutcome {
                                    copied: copied(uids, 7),
                                    ..GroupOutcome::default()
                                },
                            )
                        })
                        .expect("commit");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("thread");
    }
    store
        .call(move |db| {
            let folders = db.folders(mb).expect("folders");
            assert_eq!(folders.len(), 4);
            for (f, state) in folders {
                let count = db.uid_map_range(f, ..).expect("range").count() as u64;
                assert_eq!(state.counters.messages, count);
                assert_eq!(count, 2 * 20 * 50);
            }
            Ok(())
        })
        .expect("storage job");
}
