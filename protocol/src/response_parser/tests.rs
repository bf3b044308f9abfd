use super::*;

fn parse(s: &[u8]) -> Response<'_> {
    match parse_response(s) {
        Ok(r) => r,
        Err(e) => panic!("{e}"),
    }
}

fn status(s: &[u8]) -> StatusResponse<'_> {
    match parse(s) {
        Response::Status(st) => st,
        other => panic!("not a status: {other:?}"),
    }
}

fn data(s: &[u8]) -> Data<'_> {
    match parse(s) {
        Response::Data(d) => d,
        other => panic!("not data: {other:?}"),
    }
}

#[test]
fn greetings() {
    let g = parse_greeting(b"* OK [CAPABILITY IMAP4rev1 LITERAL+ AUTH=PLAIN] Dovecot ready.\r\n")
        .unwrap();
    assert_eq!(g.kind, StatusKind::Ok);
    let Some(Code::Capability(caps)) = g.code else {
        panic!("{g:?}")
    };
    assert!(caps.contains("literal+"));
    assert!(caps.contains("AUTH=PLAIN"));
    assert_eq!(caps.iter().count(), 3);
    assert_eq!(
        parse_greeting(b"* PREAUTH ready\r\n").unwrap().kind,
        StatusKind::PreAuth
    );
    assert_eq!(
        parse_greeting(b"* BYE go away\r\n").unwrap().kind,
        StatusKind::Bye
    );
    assert!(parse_greeting(b"* NO nope\r\n").is_err());
    assert!(parse_greeting(b"A1 OK x\r\n").is_err());
}

#[test]
fn tagged_status_with_codes() {
    let s = status(b"A3 OK [APPENDUID 38505 3955] APPEND completed\r\n");
    assert_eq!(s.tag, Some(&b"A3"[..]));
    let Some(Code::AppendUid { uid_validity, uids }) = s.code else {
        panic!("{s:?}")
    };
    assert_eq!(uid_validity, 38505);
    assert_eq!(uids.iter().collect::<Vec<_>>(), [3955]);
    assert_eq!(s.text, b"APPEND completed");

    let s = status(b"A4 OK [APPENDUID 1 10:12,15] MULTIAPPEND done\r\n");
    let Some(Code::AppendUid { uids, .. }) = s.code else {
        panic!()
    };
    assert_eq!(uids.iter().collect::<Vec<_>>(), [10, 11, 12, 15]);
    assert_eq!(uids.count(), 4);

    let s = status(b"A5 OK [COPYUID 38505 304,319:320 3956:3958] Done\r\n");
    let Some(Code::CopyUid {
        uid_validity: 38505,
        source,
        dest,
    }) = s.code
    else {
        panic!()
    };
    assert_eq!(
        source.iter().zip(dest.iter()).collect::<Vec<_>>(),
        [(304, 3956), (319, 3957), (320, 3958)]
    );

    let s = status(b"A6 NO [TRYCREATE] No such mailbox\r\n");
    assert_eq!((s.kind, s.code), (StatusKind::No, Some(Code::TryCreate)));
    for (line, code) in [
        (
            &b"* OK [UIDNEXT 4392] Predicted next UID\r\n"[..],
            Code::UidNext(4392),
        ),
        (
            b"* OK [UIDVALIDITY 3857529045] UIDs valid\r\n",
            Code::UidValidity(3857529045),
        ),
        (b"* OK [UNSEEN 12] first unseen\r\n", Code::Unseen(12)),
        (
            b"* OK [HIGHESTMODSEQ 715194045007] ok\r\n",
            Code::HighestModSeq(715194045007),
        ),
        (b"* OK [NOMODSEQ] Sorry\r\n", Code::NoModSeq),
        (b"A1 OK [READ-WRITE] SELECT completed\r\n", Code::ReadWrite),
        (b"A1 OK [READ-ONLY] EXAMINE completed\r\n", Code::ReadOnly),
        (b"* OK [CLOSED] Previous mailbox closed.\r\n", Code::Closed),
        (b"A1 NO [TOOBIG] too big\r\n", Code::TooBig),
        (b"A1 NO [OVERQUOTA] quota\r\n", Code::OverQuota),
        (b"A1 NO [LIMIT] limit\r\n", Code::Limit),
        (b"A1 NO [UNAVAILABLE] later\r\n", Code::Unavailable),
        (b"A1 NO [THROTTLED] slow down\r\n", Code::Throttled),
        (
            b"A1 OK [UIDNOTSTICKY] non-persistent\r\n",
            Code::UidNotSticky,
        ),
        (b"* NO [ALERT] disk full\r\n", Code::Alert),
    ] {
        assert_eq!(
            status(line).code,
            Some(code),
            "{}",
            String::from_utf8_lossy(line)
        );
    }
    let s = status(b"* OK [PERMANENTFLAGS (\\Deleted \\Seen $Forwarded \\*)] Limited\r\n");
    let Some(Code::PermanentFlags(f)) = s.code else {
        panic!()
    };
    assert_eq!(
        f.iter().collect::<Vec<_>>(),
        [
            Flag::Deleted,
            Flag::Seen,
            Flag::Keyword(b"$Forwarded"),
            Flag::MayCreate
        ]
    );
}

#[test]
fn unknown_codes_kept_verbatim() {
    let s = status(b"* OK [X-FOO bar (baz)] hello\r\n");
    assert_eq!(
        s.code,
        Some(Code::Other {
            name: b"X-FOO",
            arg: Some(b"bar (baz)")
        })
    );
    let s = status(b"A1 NO [SERVERBUG] oops\r\n");
    assert_eq!(
        s.code,
        Some(Code::Other {
            name: b"SERVERBUG",
            arg: None
        })
    );
    // A known code with arguments that do not parse is surfaced raw, not dropped.
    let s = status(b"A1 OK [APPENDUID 0 abc] weird\r\n");
    assert_eq!(
        s.code,
        Some(Code::Other {
            name: b"APPENDUID",
            arg: Some(b"0 abc")
        })
    );
}

/// Office 365 puts a quoted string, which may contain `]`, inside a response code.
#[test]
fn quirk_office365_quoted_string_in_code() {
    let s = status(b"* BYE [ALERT \"Connection [closed] by server\"] Server shutting down\r\n");
    assert_eq!(
        s.code,
        Some(Code::Other {
            name: b"ALERT",
            arg: Some(b"\"Connection [closed] by server\"")
        })
    );
    assert_eq!(s.text, b"Server shutting down");
}

/// Office 365's throttling text carries the back-off it wants.
#[test]
fn office365_backoff_hint() {
    let s = status(b"A12 NO Request is throttled. Suggested Backoff Time: 38766 milliseconds\r\n");
    assert_eq!(
        s.backoff_hint(),
        Some(std::time::Duration::from_millis(38766))
    );
    assert!(s.is_throttled());
    assert_eq!(status(b"A1 NO nope\r\n").backoff_hint(), None);
}

/// Gmail: `* OK [HIGHESTMODSEQ n]` with neither space nor text (modern-email/defects#28).
#[test]
fn quirk_gmail_code_without_text() {
    let s = status(b"* OK [HIGHESTMODSEQ 13637]\r\n");
    assert_eq!(s.code, Some(Code::HighestModSeq(13637)));
    assert_eq!(s.text, b"");
}

/// Missing resp-text altogether (`A1 OK` CRLF).
#[test]
fn quirk_missing_resp_text() {
    let s = status(b"A1 OK\r\n");
    assert_eq!((s.kind, s.code, s.text), (StatusKind::Ok, None, &b""[..]));
    let s = status(b"* BYE\r\n");
    assert_eq!(s.kind, StatusKind::Bye);
}

/// Exchange 2013 answers UID MOVE with a bare `[COPYUID ...]` line (ruby/net-imap#250).
#[test]
fn quirk_exchange2013_bare_copyuid_line() {
    let s = status(b"[COPYUID 124 10 233]\r\n");
    assert_eq!(s.tag, None);
    let Some(Code::CopyUid {
        uid_validity: 124,
        source,
        dest,
    }) = s.code
    else {
        panic!("{s:?}")
    };
    assert_eq!((source.raw(), dest.raw()), (&b"10"[..], &b"233"[..]));
}

/// Trailing spaces before CRLF and before `)` (Outlook, surgemail, imap.qq.com).
#[test]
fn quirk_trailing_spaces() {
    let Data::Capability(c) = data(b"* CAPABILITY IMAP4rev1 IDLE \r\n") else {
        panic!()
    };
    assert_eq!(c.iter().collect::<Vec<_>>(), [&b"IMAP4rev1"[..], b"IDLE"]);
    let Data::Search(s) = data(b"* SEARCH 1 2 3 \r\n") else {
        panic!()
    };
    assert_eq!(s.nums.iter().collect::<Vec<_>>(), [1, 2, 3]);
    let Data::Status(st) = data(b"* STATUS INBOX (MESSAGES 2 UIDNEXT 7 ) \r\n") else {
        panic!()
    };
    assert_eq!(st.get(StatusAttr::UidNext), Some(7));
    let Data::Fetch(f) = data(b"* 11487 FETCH (UID 19436 )\r\n") else {
        panic!()
    };
    assert_eq!(f.uid(), Some(19436));
    let Data::Flags(f) = data(b"* FLAGS (\\Seen  \\Answered )  \r\n") else {
        panic!()
    };
    assert_eq!(f.iter().count(), 2);
    let Data::Id(Some(id)) = data(b"* ID (\"name\" \"x\" ) \r\n") else {
        panic!()
    };
    assert_eq!(id.iter().count(), 1);
}

#[test]
fn capability_enabled_flags_numbers() {
    let Data::Enabled(e) = data(b"* ENABLED CONDSTORE UTF8=ACCEPT\r\n") else {
        panic!()
    };
    assert!(e.contains("utf8=accept"));
    let Data::Enabled(e) = data(b"* ENABLED\r\n") else {
        panic!()
    };
    assert!(e.is_empty());
    assert_eq!(data(b"* 23 EXISTS\r\n"), Data::Exists(23));
    assert_eq!(data(b"* 0 RECENT\r\n"), Data::Recent(0));
    assert_eq!(data(b"* 4 EXPUNGE\r\n"), Data::Expunge(4));
    let Data::Flags(f) = data(b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Junk)\r\n")
    else {
        panic!()
    };
    assert!(f.contains(&Flag::Keyword(b"$junk")));
    let Data::Vanished {
        earlier: true,
        uids,
    } = data(b"* VANISHED (EARLIER) 41,43:116\r\n")
    else {
        panic!()
    };
    assert_eq!(uids.count(), 75);
    let Data::Vanished { earlier: false, .. } = data(b"* VANISHED 5\r\n") else {
        panic!()
    };
}

#[test]
fn list_with_special_use_and_extended() {
    let Data::List(l) = data(b"* LIST (\\HasNoChildren \\Sent) \"/\" \"Sent Items\"\r\n") else {
        panic!()
    };
    assert_eq!(l.delimiter, Some(b'/'));
    assert_eq!(l.mailbox.wire().as_ref(), b"Sent Items");
    assert!(l.attributes.contains(MailboxAttr::Sent));
    assert!(l.attributes.attrs().any(|a| a.is_special_use()));

    let Data::List(l) = data(
        b"* LIST (\\Subscribed \\HasChildren) \".\" INBOX (\"CHILDINFO\" (\"SUBSCRIBED\"))\r\n",
    ) else {
        panic!()
    };
    assert!(l.mailbox.is_inbox());
    let ci: Vec<_> = l.extended.childinfo().unwrap().collect();
    assert_eq!(ci, [IString::Quoted(b"SUBSCRIBED")]);

    let Data::List(l) = data(b"* LIST () NIL Flat\r\n") else {
        panic!()
    };
    assert_eq!(l.delimiter, None);
    let Data::List(l) = data(b"* LIST () \"\\\\\" \"a\\\\b\"\r\n") else {
        panic!()
    };
    assert_eq!(l.delimiter, Some(b'\\'));
    assert_eq!(l.mailbox.wire().as_ref(), b"a\\b");

    let Data::Lsub(l) = data(b"* LSUB () \".\" \"Entw&APw-rfe\"\r\n") else {
        panic!()
    };
    assert_eq!(l.mailbox.decode(false).unwrap(), "Entwürfe");

    let Data::List(l) = data(b"* LIST () \"/\" {5}\r\nab\"cd\r\n") else {
        panic!()
    };
    assert_eq!(l.mailbox.wire().as_ref(), b"ab\"cd");
}

/// `\Sent\HasNoChildren` with no space between the attributes.
#[test]
fn quirk_list_attributes_without_space() {
    let Data::List(l) = data(b"* LIST (\\Sent\\HasNoChildren) \"/\" Sent\r\n") else {
        panic!()
    };
    assert_eq!(
        l.attributes.attrs().collect::<Vec<_>>(),
        [MailboxAttr::Sent, MailboxAttr::HasNoChildren]
    );
}

/// Unquoted mailbox names that look like other tokens, e.g. `2024:Q1`.
#[test]
fn quirk_unquoted_mailbox_like_a_sequence() {
    let Data::List(l) = data(b"* LIST (\\HasNoChildren) \"/\" 2024:Q1\r\n") else {
        panic!()
    };
    assert_eq!(l.mailbox.wire().as_ref(), b"2024:Q1");
    let Data::Status(s) = data(b"* STATUS 2024:Q1 (MESSAGES 3)\r\n") else {
        panic!()
    };
    assert_eq!(s.mailbox.wire().as_ref(), b"2024:Q1");
}

/// 8-bit bytes in quoted strings (servers sending raw UTF-8 names without UTF8=ACCEPT).
#[test]
fn quirk_8bit_in_quoted_strings() {
    let Data::List(l) = data("* LIST () \"/\" \"Entwürfe\"\r\n".as_bytes()) else {
        panic!()
    };
    assert_eq!(l.mailbox.decode(false).unwrap(), "Entwürfe");
    assert_eq!(l.mailbox.decode(true).unwrap(), "Entwürfe");
}

#[test]
fn status_response() {
    let Data::Status(s) = data(
        b"* STATUS \"INBOX\" (MESSAGES 231 UIDNEXT 44292 UIDVALIDITY 1 UNSEEN 3 HIGHESTMODSEQ 9 SIZE 123456 APPENDLIMIT NIL)\r\n",
    ) else {
        panic!()
    };
    assert_eq!(s.get(StatusAttr::Messages), Some(231));
    assert_eq!(s.get(StatusAttr::Size), Some(123456));
    assert_eq!(s.get(StatusAttr::HighestModSeq), Some(9));
    let al = s
        .items
        .iter()
        .find(|i| i.attr == StatusAttr::AppendLimit)
        .unwrap();
    assert_eq!(al.value, None);
}

#[test]
fn fetch_engine_path() {
    let frame = b"* 12 FETCH (UID 4827 FLAGS (\\Seen $Forwarded NonJunk) INTERNALDATE \"17-Jul-1996 02:44:25 -0700\" RFC822.SIZE 44827 MODSEQ (12121231000) BODY[] {12}\r\nHello\r\nWorld)\r\n";
    let Data::Fetch(f) = data(frame) else {
        panic!()
    };
    assert_eq!(f.seq, 12);
    let items: Vec<_> = f.attrs.iter().collect();
    assert_eq!(items.len(), 6);
    assert_eq!(items[0], FetchItem::Uid(4827));
    let FetchItem::Flags(fl) = items[1] else {
        panic!()
    };
    assert_eq!(
        fl.iter().collect::<Vec<_>>(),
        [
            Flag::Seen,
            Flag::Keyword(b"$Forwarded"),
            Flag::Keyword(b"NonJunk")
        ]
    );
    assert_eq!(
        items[2],
        FetchItem::InternalDate(b"17-Jul-1996 02:44:25 -0700")
    );
    assert_eq!(items[3], FetchItem::Rfc822Size(44827));
    assert_eq!(items[4], FetchItem::ModSeq(12121231000));
    let FetchItem::Body {
        section,
        data: Some(body),
    } = items[5]
    else {
        panic!()
    };
    assert_eq!(
        section,
        Section {
            spec: b"",
            origin: None
        }
    );
    assert_eq!(body.raw(), b"Hello\r\nWorld");
}

#[test]
fn fetch_other_attributes() {
    let frame = b"* 1 FETCH (X-GM-MSGID 1278455344230334865 X-GM-THRID 1 X-GM-LABELS (\\Inbox \\Sent Important \"Muy Importante\") EMAILID (M6d99ac3275bb4e) THREADID NIL BINARY[] ~{3}\r\n\x00\x01\x02 BINARY.SIZE[1] 77 BODY[HEADER.FIELDS (FROM TO)]<0> {2}\r\nab RFC822.HEADER NIL ENVELOPE (\"d\" \"s\" NIL NIL NIL NIL NIL NIL NIL NIL) X-UNKNOWN[1] (a b))\r\n";
    let Data::Fetch(f) = data(frame) else {
        panic!()
    };
    let items: Vec<_> = f.attrs.iter().collect();
    assert_eq!(items[0], FetchItem::GmMsgId(1278455344230334865));
    assert_eq!(items[1], FetchItem::GmThrId(1));
    let FetchItem::GmLabels(l) = items[2] else {
        panic!()
    };
    let labels: Vec<_> = l.iter().map(|s| s.to_bytes().into_owned()).collect();
    assert_eq!(
        labels,
        [&b"\\Inbox"[..], b"\\Sent", b"Important", b"Muy Importante"]
    );
    assert_eq!(items[3], FetchItem::EmailId(b"M6d99ac3275bb4e"));
    assert_eq!(items[4], FetchItem::ThreadId(None));
    let FetchItem::Binary { data: Some(d), .. } = items[5] else {
        panic!()
    };
    assert_eq!(d.raw(), b"\x00\x01\x02");
    assert_eq!(
        items[6],
        FetchItem::BinarySize {
            section: b"1",
            size: 77
        }
    );
    let FetchItem::Body { section, .. } = items[7] else {
        panic!()
    };
    assert_eq!(
        section,
        Section {
            spec: b"HEADER.FIELDS (FROM TO)",
            origin: Some(0)
        }
    );
    assert_eq!(
        items[8],
        FetchItem::Rfc822 {
            name: b"RFC822.HEADER",
            data: None
        }
    );
    assert!(matches!(items[9], FetchItem::Envelope(_)));
    assert_eq!(
        items[10],
        FetchItem::Other {
            name: b"X-UNKNOWN[1]",
            value: b"(a b)"
        }
    );
}

/// Dovecot sends `-1` octet counts and servers send 8-bit bytes in BODYSTRUCTURE; the span
/// is kept raw.
#[test]
fn quirk_bodystructure_8bit_and_dovecot_minus_one() {
    let frame = "* 3 FETCH (UID 9 BODYSTRUCTURE (\"text\" \"plain\" (\"name\" \"Grüße.txt\") NIL NIL \"7bit\" -1 0 NIL NIL NIL NIL))\r\n";
    let Data::Fetch(f) = data(frame.as_bytes()) else {
        panic!()
    };
    let items: Vec<_> = f.attrs.iter().collect();
    let FetchItem::BodyStructure(b) = items[1] else {
        panic!()
    };
    assert!(b.ends_with(b"NIL NIL NIL NIL)"));
}

#[test]
fn search_esearch_namespace_id() {
    let Data::Search(s) = data(b"* SEARCH 2 5 6 (MODSEQ 917162500)\r\n") else {
        panic!()
    };
    assert_eq!(s.nums.iter().collect::<Vec<_>>(), [2, 5, 6]);
    assert_eq!(s.modseq, Some(917162500));
    let Data::Search(s) = data(b"* SEARCH\r\n") else {
        panic!()
    };
    assert!(s.nums.is_empty());

    let Data::Esearch(e) =
        data(b"* ESEARCH (TAG \"A285\") UID MIN 7 MAX 3800 COUNT 4 ALL 7,10:11,3800\r\n")
    else {
        panic!()
    };
    assert_eq!(e.tag, Some(IString::Quoted(b"A285")));
    assert!(e.uid);
    assert_eq!(
        (e.min(), e.max(), e.count()),
        (Some(7), Some(3800), Some(4))
    );
    assert_eq!(
        e.all().unwrap().iter().collect::<Vec<_>>(),
        [7, 10, 11, 3800]
    );
    let Data::Esearch(e) = data(b"* ESEARCH (TAG \"A1\") UID\r\n") else {
        panic!()
    };
    assert_eq!(e.count(), None);

    let Data::Namespace(n) = data(b"* NAMESPACE ((\"\" \"/\")(\"#mh/\" \"/\" \"X-PARAM\" (\"FLAG1\"))) NIL ((\"#shared/\" \".\"))\r\n")
    else {
        panic!()
    };
    let personal: Vec<_> = n.personal.unwrap().iter().collect();
    assert_eq!(personal.len(), 2);
    assert_eq!(personal[0].delimiter, Some(b'/'));
    assert_eq!(personal[1].prefix, IString::Quoted(b"#mh/"));
    assert!(n.other_users.is_none());
    assert_eq!(
        n.shared.unwrap().iter().next().unwrap().delimiter,
        Some(b'.')
    );

    let Data::Id(Some(id)) = data(b"* ID (\"name\" \"Dovecot\" \"version\" NIL)\r\n") else {
        panic!()
    };
    let pairs: Vec<_> = id.iter().collect();
    assert_eq!(
        pairs[0],
        (IString::Quoted(b"name"), Some(IString::Quoted(b"Dovecot")))
    );
    assert_eq!(pairs[1].1, None);
}

/// `* ID NIL` from servers that share nothing.
#[test]
fn quirk_id_nil() {
    assert_eq!(data(b"* ID NIL\r\n"), Data::Id(None));
}

#[test]
fn continuation_requests() {
    assert_eq!(
        parse(b"+ Ready for literal data\r\n"),
        Response::Continuation(Continuation {
            text: b"Ready for literal data"
        })
    );
    assert_eq!(
        parse(b"+ \r\n"),
        Response::Continuation(Continuation { text: b"" })
    );
    // Quirk: `+` CRLF without a space.
    assert_eq!(
        parse(b"+\r\n"),
        Response::Continuation(Continuation { text: b"" })
    );
}

#[test]
fn other_untagged_kept_raw() {
    assert_eq!(
        data(b"* QUOTA \"\" (STORAGE 10 512)\r\n"),
        Data::Other {
            name: b"QUOTA",
            rest: b" \"\" (STORAGE 10 512)"
        }
    );
    assert_eq!(
        data(b"* 5 XFOO bar\r\n"),
        Data::Other {
            name: b"5 XFOO",
            rest: b" bar"
        }
    );
}

#[test]
fn errors_are_typed_and_name_the_byte() {
    assert!(matches!(
        parse_response(b"* 1 FETCH (UID 5"),
        Err(Error::Incomplete { .. })
    ));
    let e = parse_response(b"* 1 FETCH (UID x)\r\n").unwrap_err();
    let Error::Malformed { what, offset, .. } = &e else {
        panic!("{e:?}")
    };
    assert_eq!(*what, "FETCH response");
    assert!(*offset >= 11, "{offset}");
    assert!(parse_response(b"\r\n").is_err());
    assert!(parse_response(b"A1 BYE x\r\n").is_err());
    assert!(parse_response(b"* 0 FETCH (UID 1)\r\n").is_err());
    assert!(parse_response(b"* 1 FETCH (UID 1)\r\nextra").is_err());
    assert!(parse_response(b"* 1 FETCH (BODY[] {99}\r\nshort)\r\n").is_err());
    assert!(parse_response(b"* 1 FETCH (FLAGS (\\Seen)UID 3)\r\n").is_err());
}

#[test]
fn streamed_fetch_head_and_tail() {
    let head = parse_fetch_head(b"* 3 FETCH (UID 9 FLAGS (\\Seen) BODY[] {50000000}\r\n").unwrap();
    assert_eq!(head.seq, 3);
    assert_eq!(head.attrs.iter().collect::<Vec<_>>()[0], FetchItem::Uid(9));
    assert_eq!(head.attrs.iter().count(), 2);
    assert_eq!(
        head.streamed,
        StreamedItem {
            kind: StreamedKind::Body(Section {
                spec: b"",
                origin: None
            }),
            len: 50_000_000
        }
    );

    let head = parse_fetch_head(b"* 4 FETCH (BINARY[1]<0> ~{70000}\r\n").unwrap();
    assert_eq!(head.attrs.iter().count(), 0);
    assert!(matches!(head.streamed.kind, StreamedKind::Binary(_)));

    let tail = parse_fetch_tail(b")\r\n").unwrap();
    assert!(tail.attrs.is_empty() && tail.streamed.is_none());
    let tail = parse_fetch_tail(b" UID 9 BODY[HEADER] {3}\r\nabc RFC822.SIZE 5 )\r\n").unwrap();
    assert_eq!(tail.attrs.iter().count(), 3);
    let tail = parse_fetch_tail(b" BODY[TEXT] {900000}\r\n").unwrap();
    assert_eq!(tail.streamed.unwrap().len, 900000);

    assert!(parse_fetch_head(b"* 3 FETCH (UID 9)\r\n").is_err());
    assert!(parse_fetch_head(b"* LIST () \"/\" {99999}\r\n").is_err());
    assert!(
        parse_fetch_tail(b"UID 9)\r\n").is_err(),
        "attribute glued to the literal"
    );
    assert!(parse_fetch_tail(b")\r\nmore").is_err());
}

#[test]
fn header_fields_and_partial_body_as_dovecot_echoes_them() {
    // Dovecot's answer to `UID FETCH 9 (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (DATE
    // SUBJECT)] BODY.PEEK[]<0.8>)`: the field list echoed, the partial's origin only.
    let frame = b"* 3 FETCH (UID 9 RFC822.SIZE 70000 BODY[HEADER.FIELDS (DATE SUBJECT)] {24}\r\nSubject: a ] b\r\nDate: \r\n BODY[]<0> {8}\r\nReturn-P)\r\n";
    let Data::Fetch(f) = data(frame) else {
        panic!()
    };
    let items: Vec<_> = f.attrs.iter().collect();
    assert_eq!(items[1], FetchItem::Rfc822Size(70000));
    let FetchItem::Body {
        section,
        data: Some(headers),
    } = items[2]
    else {
        panic!("{:?}", items[2])
    };
    assert_eq!(
        section,
        Section {
            spec: b"HEADER.FIELDS (DATE SUBJECT)",
            origin: None
        }
    );
    // A `]` inside the literal is data, not the end of a section.
    assert_eq!(headers.raw(), b"Subject: a ] b\r\nDate: \r\n");
    let FetchItem::Body {
        section,
        data: Some(prefix),
    } = items[3]
    else {
        panic!("{:?}", items[3])
    };
    assert_eq!(
        section,
        Section {
            spec: b"",
            origin: Some(0)
        }
    );
    assert_eq!(prefix.raw(), b"Return-P");
    crate::fuzz_checks::check_response_roundtrip(frame);
}
