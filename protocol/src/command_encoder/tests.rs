use super::*;
use crate::InternalDate;

fn enc(options: EncoderOptions, cmd: &Command<'_>) -> EncodedCommand {
    match CommandEncoder::new(options).encode("A1", cmd) {
        Ok(e) => e,
        Err(e) => panic!("{e}"),
    }
}

fn line(cmd: &Command<'_>) -> String {
    let e = enc(EncoderOptions::default(), cmd);
    assert_eq!(e.continuation_waits(), 0, "{e:?}");
    String::from_utf8(e.to_bytes().unwrap()).unwrap()
}

#[test]
fn simple_commands() {
    assert_eq!(line(&Command::Capability), "A1 CAPABILITY\r\n");
    assert_eq!(line(&Command::Noop), "A1 NOOP\r\n");
    assert_eq!(line(&Command::Logout), "A1 LOGOUT\r\n");
    assert_eq!(line(&Command::StartTls), "A1 STARTTLS\r\n");
    assert_eq!(line(&Command::Namespace), "A1 NAMESPACE\r\n");
    assert_eq!(line(&Command::Idle), "A1 IDLE\r\n");
    assert_eq!(&CommandEncoder::done()[..], b"DONE\r\n");
    assert_eq!(
        line(&Command::Enable(&["CONDSTORE", "UTF8=ACCEPT"])),
        "A1 ENABLE CONDSTORE UTF8=ACCEPT\r\n"
    );
    assert_eq!(
        line(&Command::Id(Some(&[
            ("name", Some("imapmirror")),
            ("version", None)
        ]))),
        "A1 ID (\"name\" \"imapmirror\" \"version\" NIL)\r\n"
    );
    assert_eq!(line(&Command::Id(None)), "A1 ID NIL\r\n");
}

#[test]
fn login_quotes_and_marks_secret() {
    let e = enc(
        EncoderOptions::default(),
        &Command::Login {
            username: "user@example.test*mailadmin",
            password: "p\"w d",
        },
    );
    assert!(e.contains_secret);
    assert_eq!(
        e.to_bytes().unwrap(),
        b"A1 LOGIN \"user@example.test*mailadmin\" \"p\\\"w d\"\r\n"
    );
    // A password with a line break needs a literal: synchronizing by default.
    let e = enc(
        EncoderOptions::default(),
        &Command::Login {
            username: "u",
            password: "a\nb",
        },
    );
    assert_eq!(
        e.segments,
        [
            Segment::Data(Bytes::from_static(b"A1 LOGIN u {3}\r\n")),
            Segment::AwaitContinuation,
            Segment::Data(Bytes::from_static(b"a\nb\r\n")),
        ]
    );
    let plus = EncoderOptions {
        literal_mode: LiteralMode::Plus,
        utf8_accept: false,
    };
    let e = enc(
        plus,
        &Command::Login {
            username: "u",
            password: "a\nb",
        },
    );
    assert_eq!(
        e.segments,
        [Segment::Data(Bytes::from_static(
            b"A1 LOGIN u {3+}\r\na\nb\r\n"
        ))]
    );
}

#[test]
fn authenticate_mechanisms() {
    let plain = SaslAuth::Plain {
        authzid: "user@example.test",
        authcid: "mailadmin",
        password: "pw",
    };
    let e = enc(
        EncoderOptions::default(),
        &Command::Authenticate {
            auth: plain.clone(),
            sasl_ir: true,
        },
    );
    let b64 = sasl::base64_encode(b"user@example.test\0mailadmin\0pw");
    assert_eq!(
        e.to_bytes().unwrap(),
        format!("A1 AUTHENTICATE PLAIN {b64}\r\n").as_bytes()
    );
    assert!(e.contains_secret);
    let e = enc(
        EncoderOptions::default(),
        &Command::Authenticate {
            auth: plain,
            sasl_ir: false,
        },
    );
    assert_eq!(e.segments.len(), 3);
    assert_eq!(
        e.segments[0],
        Segment::Data(Bytes::from_static(b"A1 AUTHENTICATE PLAIN\r\n"))
    );
    assert_eq!(e.segments[1], Segment::AwaitContinuation);

    let e = enc(
        EncoderOptions::default(),
        &Command::Authenticate {
            auth: SaslAuth::Login {
                username: "u",
                password: "p",
            },
            sasl_ir: true,
        },
    );
    assert_eq!(e.continuation_waits(), 2);
    assert_eq!(
        e.segments[2],
        Segment::Data(Bytes::from_static(b"dQ==\r\n"))
    );

    let e = enc(
        EncoderOptions::default(),
        &Command::Authenticate {
            auth: SaslAuth::XOAuth2 {
                user: "u@x",
                access_token: "t",
            },
            sasl_ir: true,
        },
    );
    assert!(
        e.to_bytes()
            .unwrap()
            .starts_with(b"A1 AUTHENTICATE XOAUTH2 dXNlcj11QHgBYXV0aD1CZWFyZXIgdAEB")
    );
    let e = enc(
        EncoderOptions::default(),
        &Command::Authenticate {
            auth: SaslAuth::OAuthBearer {
                user: "u",
                host: "h",
                port: 993,
                access_token: "t",
            },
            sasl_ir: true,
        },
    );
    assert!(
        e.to_bytes()
            .unwrap()
            .starts_with(b"A1 AUTHENTICATE OAUTHBEARER ")
    );
}

#[test]
fn mailbox_names_mutf7_and_utf8() {
    let name = MailboxName::Unicode("Entwürfe");
    assert_eq!(
        line(&Command::Select {
            mailbox: name,
            condstore: true
        }),
        "A1 SELECT Entw&APw-rfe (CONDSTORE)\r\n"
    );
    let utf8 = EncoderOptions {
        literal_mode: LiteralMode::Sync,
        utf8_accept: true,
    };
    let e = enc(
        utf8,
        &Command::Examine {
            mailbox: name,
            condstore: false,
        },
    );
    assert_eq!(
        e.to_bytes().unwrap(),
        "A1 EXAMINE \"Entwürfe\"\r\n".as_bytes()
    );
    assert_eq!(
        line(&Command::Subscribe {
            mailbox: MailboxName::Unicode("Sent Items")
        }),
        "A1 SUBSCRIBE \"Sent Items\"\r\n"
    );
    assert_eq!(
        line(&Command::Delete {
            mailbox: MailboxName::Unicode("imapmirror-estimate-1f")
        }),
        "A1 DELETE imapmirror-estimate-1f\r\n"
    );
    assert_eq!(
        line(&Command::Rename {
            from: MailboxName::Unicode("Projects/Old"),
            to: MailboxName::Unicode("Archiv/Entwürfe 2024")
        }),
        "A1 RENAME Projects/Old \"Archiv/Entw&APw-rfe 2024\"\r\n"
    );
    assert_eq!(
        line(&Command::Create {
            mailbox: MailboxName::Wire(b"2024:Q1"),
            special_use: &[]
        }),
        "A1 CREATE 2024:Q1\r\n"
    );
    assert_eq!(
        line(&Command::Create {
            mailbox: MailboxName::Unicode("Sent"),
            special_use: &[MailboxAttr::Sent]
        }),
        "A1 CREATE Sent (USE (\\Sent))\r\n"
    );
    assert_eq!(
        line(&Command::Select {
            mailbox: MailboxName::Unicode(""),
            condstore: false
        }),
        "A1 SELECT \"\"\r\n"
    );
    let err = CommandEncoder::default().encode(
        "A1",
        &Command::Select {
            mailbox: MailboxName::Wire(b"a\0b"),
            condstore: false,
        },
    );
    assert!(err.unwrap_err().is_invalid_input());
}

#[test]
fn list_lsub_status() {
    let l = ListCommand {
        reference: MailboxName::Unicode(""),
        pattern: MailboxName::Unicode("*"),
        select_special_use: false,
        return_special_use: true,
        return_subscribed: false,
        return_status: &[
            StatusAttr::Messages,
            StatusAttr::UidNext,
            StatusAttr::UidValidity,
            StatusAttr::HighestModSeq,
        ],
    };
    assert_eq!(
        line(&Command::List(l)),
        "A1 LIST \"\" * RETURN (SPECIAL-USE STATUS (MESSAGES UIDNEXT UIDVALIDITY HIGHESTMODSEQ))\r\n"
    );
    let l = ListCommand {
        select_special_use: true,
        return_special_use: false,
        return_status: &[],
        ..l
    };
    assert_eq!(line(&Command::List(l)), "A1 LIST (SPECIAL-USE) \"\" *\r\n");
    assert_eq!(
        line(&Command::Lsub {
            reference: MailboxName::Unicode(""),
            pattern: MailboxName::Unicode("INBOX.%")
        }),
        "A1 LSUB \"\" INBOX.%\r\n"
    );
    assert_eq!(
        line(&Command::Status {
            mailbox: MailboxName::Unicode("INBOX"),
            attrs: &[StatusAttr::Size, StatusAttr::AppendLimit]
        }),
        "A1 STATUS INBOX (SIZE APPENDLIMIT)\r\n"
    );
}

#[test]
fn uid_fetch_search_store() {
    let attrs = [
        FetchAttr::Uid,
        FetchAttr::Flags,
        FetchAttr::InternalDate,
        FetchAttr::Rfc822Size,
        FetchAttr::BodyPeek(""),
    ];
    assert_eq!(
        line(&Command::UidFetch {
            uids: "1:*",
            attrs: &attrs,
            changed_since: None,
            vanished: false
        }),
        "A1 UID FETCH 1:* (UID FLAGS INTERNALDATE RFC822.SIZE BODY.PEEK[])\r\n"
    );
    assert_eq!(
        line(&Command::UidFetch {
            uids: "4,7:9",
            attrs: &[FetchAttr::Flags, FetchAttr::ModSeq],
            changed_since: Some(12345),
            vanished: true
        }),
        "A1 UID FETCH 4,7:9 (FLAGS MODSEQ) (CHANGEDSINCE 12345 VANISHED)\r\n"
    );
    assert_eq!(
        line(&Command::UidSearch {
            return_options: &["ALL", "COUNT"],
            criteria: "UID 1:* NOT DELETED"
        }),
        "A1 UID SEARCH RETURN (ALL COUNT) UID 1:* NOT DELETED\r\n"
    );
    assert_eq!(
        line(&Command::UidStore {
            uids: "5",
            mode: StoreMode::Add,
            silent: true,
            flags: &[Flag::Seen, Flag::Keyword(b"$Forwarded")],
            unchanged_since: Some(7),
        }),
        "A1 UID STORE 5 (UNCHANGEDSINCE 7) +FLAGS.SILENT (\\Seen $Forwarded)\r\n"
    );
    let e = CommandEncoder::default();
    for bad in ["", "0", "1:", "a", "1,,2", "1 2"] {
        let r = e.encode(
            "A1",
            &Command::UidFetch {
                uids: bad,
                attrs: &attrs,
                changed_since: None,
                vanished: false,
            },
        );
        assert!(r.is_err(), "{bad}");
    }
    assert!(
        e.encode(
            "A1",
            &Command::UidSearch {
                return_options: &[],
                criteria: "SUBJECT {5}"
            }
        )
        .is_err()
    );
    assert!(
        e.encode(
            "A1",
            &Command::UidStore {
                uids: "1",
                mode: StoreMode::Replace,
                silent: false,
                flags: &[Flag::Recent],
                unchanged_since: None
            }
        )
        .is_err()
    );
    assert!(
        e.encode(
            "A1",
            &Command::UidStore {
                uids: "1",
                mode: StoreMode::Replace,
                silent: false,
                flags: &[Flag::Keyword(b"a b")],
                unchanged_since: None
            }
        )
        .is_err()
    );
    assert!(e.encode("bad tag", &Command::Noop).is_err());
    assert!(e.encode("A+1", &Command::Noop).is_err());
}

#[test]
fn append_sync_literal_waits_for_continuation() {
    let date = InternalDate::parse(b"17-Jul-1996 02:44:25 -0700").unwrap();
    let msg = AppendMessage {
        flags: &[Flag::Seen],
        internal_date: Some(date),
        body: LiteralBody::Bytes(Bytes::from_static(b"Subject: x\r\n\r\nhi\r\n")),
    };
    let e = enc(
        EncoderOptions::default(),
        &Command::Append {
            mailbox: MailboxName::Unicode("INBOX"),
            messages: std::slice::from_ref(&msg),
        },
    );
    assert_eq!(
        e.segments,
        [
            Segment::Data(Bytes::from_static(
                b"A1 APPEND INBOX (\\Seen) \"17-Jul-1996 02:44:25 -0700\" {18}\r\n"
            )),
            Segment::AwaitContinuation,
            Segment::Data(Bytes::from_static(b"Subject: x\r\n\r\nhi\r\n")),
            Segment::Data(Bytes::from_static(b"\r\n")),
        ]
    );
}

#[test]
fn append_streamed_with_literal_plus_and_minus() {
    let big = AppendMessage {
        flags: &[],
        internal_date: None,
        body: LiteralBody::Streamed { len: 50_000_000 },
    };
    let plus = EncoderOptions {
        literal_mode: LiteralMode::Plus,
        utf8_accept: false,
    };
    let e = enc(
        plus,
        &Command::Append {
            mailbox: MailboxName::Unicode("Archive"),
            messages: std::slice::from_ref(&big),
        },
    );
    assert_eq!(
        e.segments,
        [
            Segment::Data(Bytes::from_static(b"A1 APPEND Archive {50000000+}\r\n")),
            Segment::StreamedBody { len: 50_000_000 },
            Segment::Data(Bytes::from_static(b"\r\n")),
        ]
    );
    // LITERAL-: only up to 4096 bytes without waiting.
    let minus = EncoderOptions {
        literal_mode: LiteralMode::Minus,
        utf8_accept: false,
    };
    let e = enc(
        minus,
        &Command::Append {
            mailbox: MailboxName::Unicode("Archive"),
            messages: std::slice::from_ref(&big),
        },
    );
    assert_eq!(e.continuation_waits(), 1);
    assert_eq!(
        e.segments[0],
        Segment::Data(Bytes::from_static(b"A1 APPEND Archive {50000000}\r\n"))
    );
    let small = AppendMessage {
        flags: &[],
        internal_date: None,
        body: LiteralBody::Bytes(Bytes::from(vec![b'x'; 4096])),
    };
    let e = enc(
        minus,
        &Command::Append {
            mailbox: MailboxName::Unicode("Archive"),
            messages: std::slice::from_ref(&small),
        },
    );
    assert_eq!(e.continuation_waits(), 0);
    assert!(
        e.to_bytes()
            .unwrap()
            .starts_with(b"A1 APPEND Archive {4096+}\r\n")
    );
}

#[test]
fn multiappend() {
    let m1 = AppendMessage {
        flags: &[Flag::Seen, Flag::Flagged],
        internal_date: None,
        body: LiteralBody::Bytes(Bytes::from_static(b"a")),
    };
    let m2 = AppendMessage {
        flags: &[],
        internal_date: None,
        body: LiteralBody::Streamed { len: 2 },
    };
    let msgs = [m1, m2];
    let e = enc(
        EncoderOptions::default(),
        &Command::Append {
            mailbox: MailboxName::Unicode("INBOX"),
            messages: &msgs,
        },
    );
    assert_eq!(
        e.segments,
        [
            Segment::Data(Bytes::from_static(
                b"A1 APPEND INBOX (\\Seen \\Flagged) {1}\r\n"
            )),
            Segment::AwaitContinuation,
            Segment::Data(Bytes::from_static(b"a")),
            Segment::Data(Bytes::from_static(b" {2}\r\n")),
            Segment::AwaitContinuation,
            Segment::StreamedBody { len: 2 },
            Segment::Data(Bytes::from_static(b"\r\n")),
        ]
    );
    assert!(
        CommandEncoder::default()
            .encode(
                "A1",
                &Command::Append {
                    mailbox: MailboxName::Unicode("x"),
                    messages: &[]
                }
            )
            .is_err()
    );
}

#[test]
fn expunge_and_uid_expunge() {
    assert_eq!(line(&Command::Expunge), "A1 EXPUNGE\r\n");
    assert_eq!(
        line(&Command::UidExpunge("3,7:9")),
        "A1 UID EXPUNGE 3,7:9\r\n"
    );
    let e = CommandEncoder::default();
    // A UID EXPUNGE with a broken set must never reach the server: some servers read an
    // empty or unparsable set as "nothing", others refuse, none should guess.
    for bad in ["", "0", "1:", "x", "1 2", "1,,2"] {
        assert!(e.encode("A1", &Command::UidExpunge(bad)).is_err(), "{bad}");
    }
}

#[test]
fn header_fields_and_partial_body_fetch() {
    let attrs = [
        FetchAttr::Uid,
        FetchAttr::BodyPeek("HEADER.FIELDS (SUBJECT DATE)"),
        FetchAttr::BodyPeekPartial {
            section: "",
            offset: 0,
            len: 65536,
        },
        FetchAttr::BodyPeekPartial {
            section: "1.MIME",
            offset: 100,
            len: 1,
        },
    ];
    assert_eq!(
        line(&Command::UidFetch {
            uids: "4",
            attrs: &attrs,
            changed_since: None,
            vanished: false
        }),
        "A1 UID FETCH 4 (UID BODY.PEEK[HEADER.FIELDS (SUBJECT DATE)] BODY.PEEK[]<0.65536> BODY.PEEK[1.MIME]<100.1>)\r\n"
    );
    let e = CommandEncoder::default();
    let fetch = |attr| Command::UidFetch {
        uids: "1",
        attrs: std::slice::from_ref(attr),
        changed_since: None,
        vanished: false,
    };
    let zero = FetchAttr::BodyPeekPartial {
        section: "",
        offset: 0,
        len: 0,
    };
    assert!(e.encode("A1", &fetch(&zero)).is_err(), "<0.0> is not IMAP");
    let bracket = FetchAttr::BodyPeekPartial {
        section: "HEADER]",
        offset: 0,
        len: 1,
    };
    assert!(e.encode("A1", &fetch(&bracket)).is_err());
}
