use bytes::BytesMut;
use tokio_util::codec::Decoder;

use super::*;
use crate::framing::{DecoderConfig, ResponseDecoder};
use crate::types::MailboxAttr;

const SERVER: &str = "imap.example.test:143";

fn state() -> ClientState {
    ClientState::new(SERVER, Duration::from_secs(30))
}

/// Feeds `input` through a decoder with a small stream threshold and returns the events.
fn feed(state: &mut ClientState, input: &[u8]) -> Result<Vec<Event>> {
    let mut decoder = ResponseDecoder::new(DecoderConfig {
        stream_threshold: 16,
        max_chunk: 8,
        ..DecoderConfig::default()
    });
    let mut buf = BytesMut::from(input);
    let mut events = Vec::new();
    while let Some(frame) = decoder.decode(&mut buf)? {
        if let Some(e) = state.handle_frame(frame)? {
            events.push(e);
        }
    }
    assert!(buf.is_empty(), "test input must end on a frame boundary");
    Ok(events)
}

fn completed(events: &[Event]) -> Vec<CommandTag> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Completed(t) => Some(*t),
            _ => None,
        })
        .collect()
}

#[test]
fn greeting_capabilities_and_preauth() {
    let mut s = state();
    s.handle_greeting(b"* PREAUTH [CAPABILITY IMAP4rev1 LITERAL+ UTF8=ACCEPT] hi\r\n")
        .expect("greeting");
    assert_eq!(s.phase(), Phase::Authenticated);
    assert!(s.capabilities().contains("LITERAL+"));
    assert!(!s.capabilities_stale());
    assert_eq!(s.encoder().options.literal_mode, crate::LiteralMode::Plus);
}

#[test]
fn greeting_bye_for_too_many_connections_is_backoff() {
    let mut s = state();
    let err = s
        .handle_greeting(b"* BYE Maximum number of connections from user+IP exceeded (mail_max_userip_connections=10)\r\n")
        .unwrap_err();
    assert!(
        matches!(err, Error::Backoff { delay, .. } if delay == Duration::from_secs(30)),
        "{err}"
    );
    let err = state()
        .handle_greeting(b"* BYE shutting down\r\n")
        .unwrap_err();
    assert!(matches!(err, Error::Bye { .. }), "{err}");
}

#[test]
fn login_ok_without_capability_code_marks_capabilities_stale() {
    let mut s = state();
    s.handle_greeting(b"* OK [CAPABILITY IMAP4rev1 AUTH=PLAIN] ready\r\n")
        .expect("greeting");
    let tag = s.begin(CommandKind::Login, "LOGIN");
    let events = feed(&mut s, b"A1 OK Logged in\r\n").expect("frames");
    assert_eq!(completed(&events), vec![tag]);
    assert_eq!(s.phase(), Phase::Authenticated);
    assert!(s.capabilities_stale());

    let tag = s.begin(CommandKind::Capability, "CAPABILITY");
    feed(
        &mut s,
        b"* CAPABILITY IMAP4rev1 MOVE CONDSTORE\r\nA2 OK done\r\n",
    )
    .expect("frames");
    assert!(s.take_completion(tag).is_some_and(|c| c.is_ok()));
    assert!(s.capabilities().contains("CONDSTORE"));
    assert!(!s.capabilities_stale());
}

#[test]
fn pipelined_completions_interleaved_with_untagged_data_are_routed() {
    let mut s = state();
    let append1 = s.begin(CommandKind::Simple, "APPEND \"INBOX\"");
    let list = s.begin(CommandKind::List, "LIST");
    let append2 = s.begin(CommandKind::Simple, "APPEND \"INBOX\"");
    let input = b"* LIST (\\HasNoChildren) \".\" INBOX\r\n\
        * 3 EXISTS\r\n\
        A3 OK [APPENDUID 7 12] Append completed\r\n\
        * STATUS INBOX (MESSAGES 3 UIDNEXT 13)\r\n\
        * LIST (\\HasNoChildren \\Sent) \".\" Sent\r\n\
        A1 OK [APPENDUID 7 11] Append completed\r\n\
        A2 OK List completed\r\n";
    let events = feed(&mut s, input).expect("frames");
    assert_eq!(completed(&events), vec![append2, append1, list]);
    assert_eq!(
        s.take_completion(append1).and_then(|c| c.append_uid()),
        Some((7, vec![11]))
    );
    assert_eq!(
        s.take_completion(append2).and_then(|c| c.append_uid()),
        Some((7, vec![12]))
    );
    let Some(Completion {
        data: CommandData::List(entries),
        ..
    }) = s.take_completion(list)
    else {
        panic!("LIST data missing")
    };
    assert_eq!(entries.len(), 2);
    assert_eq!(entries[0].status.and_then(|st| st.uid_next), Some(13));
    assert_eq!(entries[1].special_use(), Some(MailboxAttr::Sent));
    assert_eq!(s.pending_count(), 0);
}

#[test]
fn select_builds_the_mailbox_and_updates_follow() {
    let mut s = state();
    let tag = s.begin(
        CommandKind::Select {
            wire_name: b"INBOX".to_vec(),
            read_only: false,
        },
        "SELECT \"INBOX\"",
    );
    let input = b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)\r\n\
        * OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)] Flags permitted.\r\n\
        * 172 EXISTS\r\n\
        * 1 RECENT\r\n\
        * OK [UIDVALIDITY 3857529045] UIDs valid\r\n\
        * OK [UIDNEXT 4392] Predicted next UID\r\n\
        * OK [HIGHESTMODSEQ 715194045007] Highest\r\n\
        A1 OK [READ-WRITE] SELECT completed\r\n";
    feed(&mut s, input).expect("frames");
    assert!(s.take_completion(tag).is_some_and(|c| c.is_ok()));
    assert_eq!(s.phase(), Phase::Selected);
    let m = s.selected().expect("selected");
    assert_eq!(
        (m.exists, m.recent, m.uid_validity, m.uid_next),
        (172, 1, Some(3_857_529_045), Some(4392))
    );
    assert_eq!(m.highest_modseq, Some(715_194_045_007));
    assert!(!m.read_only);
    assert!(
        m.permanent_flags
            .as_deref()
            .is_some_and(|p| p.contains("\\*"))
    );

    feed(&mut s, b"* 3 EXPUNGE\r\n* VANISHED 5:7\r\n").expect("frames");
    assert_eq!(s.selected().map(|m| m.exists), Some(168));

    let tag = s.begin(
        CommandKind::Select {
            wire_name: b"Nope".to_vec(),
            read_only: true,
        },
        "EXAMINE \"Nope\"",
    );
    feed(&mut s, b"A2 NO Mailbox doesn't exist: Nope\r\n").expect("frames");
    assert!(
        s.take_completion(tag)
            .is_some_and(|c| c.kind == StatusKind::No)
    );
    assert_eq!(s.phase(), Phase::Authenticated);
    assert!(s.selected().is_none());
}

#[test]
fn streamed_fetch_yields_start_chunks_and_end_with_tail_attributes() {
    let mut s = state();
    let tag = s.begin(CommandKind::Fetch { deliver: true }, "UID FETCH");
    let body = b"0123456789abcdefghijKLMNOP";
    let mut input = b"* 1 FETCH (UID 5 RFC822.SIZE 26 BODY[] {26}\r\n".to_vec();
    input.extend_from_slice(body);
    input.extend_from_slice(
        b" FLAGS (\\Seen))\r\n* 2 FETCH (UID 6 BODY[] {3}\r\nabc)\r\nA1 OK Fetch completed\r\n",
    );
    let events = feed(&mut s, &input).expect("frames");
    let mut got = Vec::new();
    let mut iter = events.into_iter();
    match iter.next() {
        Some(Event::Fetch(FetchEvent::StreamStart {
            meta,
            section,
            origin,
            len,
        })) => {
            assert_eq!(
                (meta.uid, meta.size, section.as_str(), origin, len),
                (Some(5), Some(26), "", None, 26)
            );
        }
        other => panic!("{other:?}"),
    }
    let mut end = None;
    let mut small = None;
    for e in iter.by_ref() {
        match e {
            Event::Fetch(FetchEvent::Chunk { bytes, .. }) => got.extend_from_slice(&bytes),
            Event::Fetch(FetchEvent::StreamEnd(m)) => end = Some(m),
            Event::Fetch(FetchEvent::Message(m)) => small = Some(m),
            Event::Completed(t) => assert_eq!(t, tag),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(got, body);
    let end = end.expect("stream end");
    assert_eq!(end.meta.uid, Some(5));
    assert!(
        end.meta.flags.is_some(),
        "FLAGS after the literal reach the end event"
    );
    assert_eq!(
        small.and_then(|m| m.body().cloned()).as_deref(),
        Some(&b"abc"[..])
    );
}

#[test]
fn abandoned_fetch_output_is_dropped_not_misrouted() {
    let mut s = state();
    let tag = s.begin(CommandKind::Fetch { deliver: true }, "UID FETCH");
    s.stop_delivering(tag);
    let input = b"* 1 FETCH (UID 5 BODY[] {20}\r\n01234567890123456789)\r\n* 2 FETCH (UID 6 FLAGS ())\r\nA1 OK done\r\n";
    let events = feed(&mut s, input).expect("frames");
    assert_eq!(events.len(), 1);
    assert_eq!(completed(&events), vec![tag]);
}

#[test]
fn store_collects_flag_updates_and_modified() {
    let mut s = state();
    let tag = s.begin(CommandKind::Store, "UID STORE");
    feed(&mut s, b"* 4 FETCH (UID 9 MODSEQ (12) FLAGS (\\Seen $Junk))\r\nA1 OK [MODIFIED 7] Conditional STORE failed\r\n")
        .expect("frames");
    let c = s.take_completion(tag).expect("completion");
    let CommandData::FlagUpdates(updates) = &c.data else {
        panic!("{:?}", c.data)
    };
    assert_eq!((updates[0].uid, updates[0].modseq), (Some(9), Some(12)));
    assert!(matches!(
        c.code,
        Some(super::super::ResponseCode::Modified(_))
    ));
}

#[test]
fn continuation_without_a_waiter_is_a_peer_violation() {
    let mut s = state();
    s.begin(CommandKind::Simple, "NOOP");
    let err = feed(&mut s, b"+ go ahead\r\n").unwrap_err();
    assert!(matches!(err, Error::PeerViolation { .. }), "{err}");
    assert!(err.to_string().contains(SERVER));

    let mut s = state();
    let tag = s.begin(CommandKind::Simple, "APPEND");
    s.expect_continuation(tag).expect("first waiter");
    let events = feed(&mut s, b"+ Ready for literal data\r\n").expect("frames");
    assert!(matches!(&events[..], [Event::Continuation(t)] if &t[..] == b"Ready for literal data"));
    // Taken: a second `+` is not expected.
    assert!(feed(&mut s, b"+ again\r\n").is_err());
}

#[test]
fn unknown_tag_is_a_peer_violation_with_excerpt() {
    let mut s = state();
    let err = feed(&mut s, b"X9 OK what\r\n").unwrap_err();
    let Error::PeerViolation { excerpt, .. } = &err else {
        panic!("{err}")
    };
    assert!(excerpt.as_str().contains("X9 OK"));
}

#[test]
fn untagged_bye_and_throttle_hint() {
    let mut s = state();
    let events = feed(
        &mut s,
        b"* BAD Request is throttled. Suggested Backoff Time: 2500 milliseconds\r\n",
    )
    .expect("frames");
    assert!(events.is_empty());
    assert_eq!(s.take_throttle_hint(), Some(Duration::from_millis(2500)));
    let events = feed(&mut s, b"* BYE Autologout; idle for too long\r\n").expect("frames");
    assert!(
        matches!(&events[..], [Event::Bye(Error::Bye { .. })]),
        "{events:?}"
    );
    assert!(s.closed_by_server());
}

#[test]
fn garbage_is_a_typed_error_not_a_panic() {
    let mut s = state();
    s.begin(CommandKind::Fetch { deliver: true }, "UID FETCH");
    for garbage in [
        &b"* 1 FETCH (UID x)\r\n"[..],
        b"\x01\x02\x03\r\n",
        b"* 1 FETCH (INTERNALDATE \"99-Xyz-2024 00:00:00 +0000\")\r\n",
    ] {
        let err = feed(&mut s, garbage).unwrap_err();
        assert!(err.is_peer_fault(), "{err}");
    }
}

#[test]
fn enable_utf8_switches_the_encoder() {
    let mut s = state();
    let tag = s.begin(CommandKind::Enable, "ENABLE");
    feed(
        &mut s,
        b"* ENABLED CONDSTORE UTF8=ACCEPT\r\nA1 OK Enabled\r\n",
    )
    .expect("frames");
    let c = s.take_completion(tag).expect("completion");
    assert_eq!(
        c.data,
        CommandData::Enabled(vec!["CONDSTORE".into(), "UTF8=ACCEPT".into()])
    );
    assert!(s.encoder().options.utf8_accept);
}

#[test]
fn starttls_ok_forgets_capabilities() {
    let mut s = state();
    s.handle_greeting(b"* OK [CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED] ready\r\n")
        .expect("greeting");
    s.begin(CommandKind::StartTls, "STARTTLS");
    feed(&mut s, b"A1 OK Begin TLS negotiation now\r\n").expect("frames");
    assert!(s.capabilities().is_empty());
    assert!(s.capabilities_stale());
    // Kept apart for reports: what the plaintext side offered (Courier shows no
    // AUTH=PLAIN before STARTTLS and offers it after).
    let before = s.capabilities_before_starttls().expect("kept");
    assert!(before.contains("LOGINDISABLED") && before.contains("STARTTLS"));
    assert_eq!(s.greeting_text(), "ready");
}

fn selected_with(exists: u32) -> ClientState {
    let mut s = state();
    let tag = s.begin(
        CommandKind::Select {
            wire_name: b"INBOX".to_vec(),
            read_only: false,
        },
        "SELECT \"INBOX\"",
    );
    let input =
        format!("* {exists} EXISTS\r\n* OK [UIDVALIDITY 7] ok\r\nA1 OK [READ-WRITE] done\r\n");
    feed(&mut s, input.as_bytes()).expect("frames");
    assert!(s.take_completion(tag).is_some_and(|c| c.is_ok()));
    s
}

#[test]
fn expunge_collects_sequence_numbers_and_vanished_uids() {
    let mut s = selected_with(10);
    // An expunge before ours (another client's, reported by NOOP) is not ours.
    let noop = s.begin(CommandKind::Simple, "NOOP");
    feed(&mut s, b"* 9 EXPUNGE\r\nA2 OK NOOP done\r\n").expect("frames");
    assert!(s.take_completion(noop).is_some());
    assert_eq!(s.selected().map(|m| m.exists), Some(9));

    let tag = s.begin(CommandKind::Expunge, "UID EXPUNGE 3:5");
    feed(
        &mut s,
        b"* 3 EXPUNGE\r\n* 3 EXPUNGE\r\n* 3 EXPUNGE\r\nA3 OK Expunge completed.\r\n",
    )
    .expect("frames");
    let c = s.take_completion(tag).expect("completed");
    let CommandData::Expunged(e) = c.data else {
        panic!("{:?}", c.data)
    };
    assert_eq!(e.expunged, vec![3, 3, 3]);
    assert!(e.vanished.is_empty());
    assert_eq!(e.count(), 3);
    assert_eq!(s.selected().map(|m| m.exists), Some(6));

    // With QRESYNC on, the same removal comes as VANISHED; EARLIER belongs to FETCH.
    let tag = s.begin(CommandKind::Expunge, "UID EXPUNGE 1:*");
    feed(
        &mut s,
        b"* VANISHED 20:21,30\r\n* VANISHED (EARLIER) 2\r\n* VANISHED 40\r\nA4 OK done\r\n",
    )
    .expect("frames");
    let c = s.take_completion(tag).expect("completed");
    let CommandData::Expunged(e) = c.data else {
        panic!("{:?}", c.data)
    };
    assert!(e.expunged.is_empty());
    assert_eq!(e.vanished.iter().collect::<Vec<_>>(), vec![20, 21, 30, 40]);
    assert_eq!(e.count(), 4);
    assert_eq!(s.selected().map(|m| m.exists), Some(2));
}

#[test]
fn a_refused_expunge_is_a_no_with_nothing_gathered() {
    let mut s = selected_with(2);
    let tag = s.begin(CommandKind::Expunge, "EXPUNGE");
    feed(&mut s, b"A2 NO [CANNOT] Mailbox is read-only\r\n").expect("frames");
    let c = s.take_completion(tag).expect("completed");
    assert_eq!(c.kind, StatusKind::No);
    assert_eq!(c.data, CommandData::Expunged(ExpungeOutcome::default()));
    assert_eq!(s.selected().map(|m| m.exists), Some(2));
}

#[test]
fn header_fields_and_a_streamed_partial_body_keep_section_and_origin() {
    let mut s = selected_with(1);
    let tag = s.begin(CommandKind::Fetch { deliver: true }, "UID FETCH 4");
    let mut input = b"* 1 FETCH (UID 4 RFC822.SIZE 900 BODY[HEADER.FIELDS (SUBJECT DATE)] {14}\r\nSubject: x\r\n\r\n BODY[]<0> {20}\r\n".to_vec();
    input.extend_from_slice(b"01234567890123456789)\r\nA2 OK Fetch completed.\r\n");
    let events = feed(&mut s, &input).expect("frames");
    let mut start = None;
    let mut end = None;
    for e in events {
        match e {
            Event::Fetch(FetchEvent::StreamStart {
                section,
                origin,
                len,
                meta,
            }) => start = Some((section, origin, len, meta)),
            Event::Fetch(FetchEvent::StreamEnd(m)) => end = Some(m),
            _ => {}
        }
    }
    let (section, origin, len, meta) = start.expect("the 20-byte prefix is streamed");
    assert_eq!((section.as_str(), origin, len), ("", Some(0), 20));
    assert_eq!((meta.uid, meta.size), (Some(4), Some(900)));
    let m = end.expect("end");
    assert_eq!(
        m.header_fields().map(|b| &b[..]),
        Some(&b"Subject: x\r\n\r\n"[..])
    );
    assert_eq!(
        m.section("header.fields (subject date)", None)
            .map(|b| b.len()),
        Some(14)
    );
    assert!(
        m.body().is_none(),
        "a partial body is not the whole message"
    );
    assert!(s.take_completion(tag).is_some());
}

#[test]
fn what_a_given_up_session_leaves_undecided() {
    // Every command answered: nothing can still happen.
    let mut s = state();
    let a = s.begin(CommandKind::Simple, "APPEND \"INBOX\"");
    feed(&mut s, b"A1 OK [APPENDUID 7 11] Append completed\r\n").expect("frames");
    assert_eq!(s.take_completion(a).map(|c| c.is_ok()), Some(true));
    assert_eq!(s.unanswered_commands(), UnansweredCommands::None);
    // The link breaks with an APPEND unanswered and no word from the server.
    s.begin(CommandKind::Simple, "APPEND \"INBOX\"");
    assert_eq!(s.unanswered_commands(), UnansweredCommands::Unknown);

    // Exchange Online: the second APPEND is refused "not connected", then BYE; the third
    // was sent after it and never started.
    let mut s = state();
    for _ in 0..3 {
        s.begin(CommandKind::Simple, "APPEND \"INBOX\"");
    }
    feed(
        &mut s,
        b"A1 OK [APPENDUID 7 11] Append completed\r\n\
          A2 BAD User is authenticated but not connected.\r\n\
          * BYE Connection closed. 14\r\n",
    )
    .expect("frames");
    assert_eq!(s.pending_count(), 1);
    assert_eq!(s.unanswered_commands(), UnansweredCommands::None);

    // The refusal overtook the answer to an earlier APPEND: that one is in doubt.
    let mut s = state();
    for _ in 0..3 {
        s.begin(CommandKind::Simple, "APPEND \"INBOX\"");
    }
    feed(
        &mut s,
        b"A2 BAD User is authenticated but not connected.\r\n* BYE Connection closed. 14\r\n",
    )
    .expect("frames");
    assert_eq!(s.unanswered_commands(), UnansweredCommands::AfterBye);

    // An ordinary refusal, then a BYE while the next APPEND is unanswered: the server
    // may have been storing that one when it closed.
    let mut s = state();
    for _ in 0..2 {
        s.begin(CommandKind::Simple, "APPEND \"INBOX\"");
    }
    feed(
        &mut s,
        b"A1 NO Keyword length too long\r\n* BYE Server shutting down\r\n",
    )
    .expect("frames");
    assert_eq!(s.unanswered_commands(), UnansweredCommands::AfterBye);

    // A bare BYE while an APPEND is unanswered: the server may have been storing it.
    let mut s = state();
    s.begin(CommandKind::Simple, "APPEND \"INBOX\"");
    feed(&mut s, b"* BYE Server shutting down\r\n").expect("frames");
    assert_eq!(s.unanswered_commands(), UnansweredCommands::AfterBye);
}
