use proptest::prelude::*;

use super::*;

fn folder(name: &str, atoms: &[&str]) -> ListedFolder {
    ListedFolder {
        name: name.to_owned(),
        attributes: FolderAttributes::from_atoms(atoms.iter().copied()),
        subscribed: false,
    }
}

fn subscribed(name: &str) -> ListedFolder {
    ListedFolder {
        subscribed: true,
        ..ListedFolder::new(name)
    }
}

fn listing(
    server: &str,
    prefix: &str,
    sep: Option<char>,
    folders: Vec<ListedFolder>,
) -> FolderListing {
    FolderListing {
        server: server.to_owned(),
        prefix: prefix.to_owned(),
        separator: sep,
        folders,
        ..FolderListing::default()
    }
}

/// `listing` with other users' and shared namespace prefixes.
fn with_foreign(mut listing: FolderListing, prefixes: &[&str]) -> FolderListing {
    listing.foreign_prefixes = prefixes.iter().map(|p| (*p).to_owned()).collect();
    listing
}

fn pattern(s: &str) -> Exclusion {
    s.parse()
        .unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

fn names(names: &[&str]) -> Vec<ListedFolder> {
    names.iter().map(|n| ListedFolder::new(*n)).collect()
}

fn run(source: &FolderListing, target: &FolderListing, options: &PlanOptions) -> FolderPlan {
    match plan(source, target, options) {
        Ok(p) => {
            check_invariants(source, &p, options);
            p
        }
        Err(e) => panic!("plan failed: {e}"),
    }
}

/// Source name → target full name, for the copies.
fn mapping(p: &FolderPlan) -> BTreeMap<String, String> {
    p.copies
        .iter()
        .map(|c| (c.source.clone(), c.target.name.clone()))
        .collect()
}

fn target_of<'p>(p: &'p FolderPlan, source: &str) -> &'p FolderCopy {
    match p.copies.iter().find(|c| c.source == source) {
        Some(c) => c,
        None => panic!("{source} is not copied: {p:#?}"),
    }
}

fn reason_of<'p>(p: &'p FolderPlan, source: &str) -> &'p ExclusionReason {
    match p.excluded.iter().find(|e| e.source == source) {
        Some(e) => &e.reason,
        None => panic!("{source} is not excluded: {p:#?}"),
    }
}

/// The promises every plan keeps, whatever the input.
fn check_invariants(source: &FolderListing, p: &FolderPlan, options: &PlanOptions) {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    for name in p
        .copies
        .iter()
        .map(|c| c.source.as_str())
        .chain(p.hierarchy_only.iter().filter_map(|h| h.source.as_deref()))
        .chain(p.excluded.iter().map(|e| e.source.as_str()))
    {
        *seen.entry(name).or_default() += 1;
    }
    let listed: BTreeSet<&str> = source.folders.iter().map(|f| f.name.as_str()).collect();
    for name in &listed {
        assert_eq!(
            seen.get(name),
            Some(&1),
            "{name:?} must be in the plan exactly once: {p:#?}"
        );
    }
    assert_eq!(
        seen.len(),
        listed.len(),
        "the plan names folders that were not listed"
    );

    // No two source folders share a target, even ignoring case.
    let mut targets: BTreeSet<String> = BTreeSet::new();
    for t in p
        .copies
        .iter()
        .map(|c| &c.target)
        .chain(p.hierarchy_only.iter().map(|h| &h.target))
    {
        let key = if options.target_case_insensitive {
            t.name.to_lowercase()
        } else {
            t.name.clone()
        };
        assert!(
            targets.insert(key),
            "two folders map to {:?}: {p:#?}",
            t.name
        );
        assert!(
            !t.path.is_empty() && t.path.iter().all(|c| !c.is_empty()),
            "{t:?}"
        );
    }
}

use std::collections::BTreeSet;

#[test]
fn dot_source_to_slash_target() {
    let source = listing(
        "src",
        "INBOX.",
        Some('.'),
        names(&["INBOX", "INBOX.Work", "INBOX.Work.2019", "INBOX.a/b"]),
    );
    let target = listing("dst", "", Some('/'), names(&["INBOX"]));
    let p = run(&source, &target, &PlanOptions::default());
    assert_eq!(
        mapping(&p),
        BTreeMap::from([
            ("INBOX".into(), "INBOX".into()),
            ("INBOX.Work".into(), "Work".into()),
            ("INBOX.Work.2019".into(), "Work/2019".into()),
            ("INBOX.a/b".into(), "a\u{2215}b".into()),
        ])
    );
    let c = target_of(&p, "INBOX.Work.2019");
    assert_eq!(c.target.path, vec!["Work", "2019"]);
    assert!(c.create);
    assert!(!target_of(&p, "INBOX").create, "INBOX is never created");
}

#[test]
fn slash_source_to_dot_target_with_inbox_prefix() {
    let source = listing(
        "src",
        "",
        Some('/'),
        names(&["INBOX", "Projects", "Projects/v1.2", "INBOX/Sub"]),
    );
    let target = listing(
        "dst",
        "INBOX.",
        Some('.'),
        names(&["INBOX", "INBOX.Projects"]),
    );
    let p = run(&source, &target, &PlanOptions::default());
    assert_eq!(target_of(&p, "Projects").target.name, "INBOX.Projects");
    assert!(!target_of(&p, "Projects").create, "it exists already");
    let v = target_of(&p, "Projects/v1.2");
    assert_eq!(v.target.name, "INBOX.Projects.v1\u{2024}2");
    assert_eq!(v.target.path, vec!["Projects", "v1\u{2024}2"]);
    // INBOX's children are the namespace's top level on an `INBOX.` target.
    assert_eq!(target_of(&p, "INBOX/Sub").target.name, "INBOX.Sub");
}

#[test]
fn inbox_child_and_top_level_folder_that_meet_are_kept_apart() {
    let source = listing("src", "", Some('/'), names(&["INBOX", "INBOX/Sub", "Sub"]));
    let target = listing("dst", "INBOX.", Some('.'), names(&["INBOX"]));
    let p = run(&source, &target, &PlanOptions::default());
    // Both are unchanged names; the lower source path (`INBOX` sorts first) keeps it.
    assert_eq!(target_of(&p, "INBOX/Sub").target.name, "INBOX.Sub");
    assert_eq!(target_of(&p, "Sub").target.name, "INBOX.Sub (2)");
    assert!(target_of(&p, "Sub").renamed);
}

#[test]
fn inbox_is_case_insensitive() {
    let source = listing("src", "", Some('/'), names(&["inbox", "Inbox/Sub"]));
    let target = listing("dst", "", Some('.'), names(&["INBOX"]));
    let p = run(&source, &target, &PlanOptions::default());
    assert_eq!(target_of(&p, "inbox").target.name, "INBOX");
    assert_eq!(target_of(&p, "Inbox/Sub").target.name, "INBOX.Sub");
}

#[test]
fn gmail_special_folders_map_onto_target_special_folders() {
    let source = listing(
        "imap.gmail.com",
        "",
        Some('/'),
        vec![
            folder("INBOX", &[]),
            folder("[Gmail]", &["\\Noselect", "\\HasChildren"]),
            folder("[Gmail]/All Mail", &["\\All"]),
            folder("[Gmail]/Drafts", &["\\Drafts"]),
            folder("[Gmail]/Sent Mail", &["\\Sent"]),
            folder("[Gmail]/Spam", &["\\Junk"]),
            folder("[Gmail]/Starred", &["\\Flagged"]),
            folder("[Gmail]/Trash", &["\\Trash"]),
            folder("Receipts", &[]),
        ],
    );
    let target = listing(
        "dovecot",
        "",
        Some('.'),
        vec![
            folder("INBOX", &[]),
            folder("Sent", &["\\Sent"]),
            folder("Drafts", &["\\Drafts"]),
            folder("Trash", &["\\Trash"]),
            folder("Junk", &["\\Junk"]),
        ],
    );
    let p = run(&source, &target, &PlanOptions::default());
    assert_eq!(target_of(&p, "[Gmail]/Sent Mail").target.name, "Sent");
    assert_eq!(
        target_of(&p, "[Gmail]/Sent Mail").special_use,
        Some(SpecialUse::Sent)
    );
    assert!(!target_of(&p, "[Gmail]/Sent Mail").create);
    assert_eq!(target_of(&p, "[Gmail]/Drafts").target.name, "Drafts");
    assert_eq!(target_of(&p, "[Gmail]/Trash").target.name, "Trash");
    assert_eq!(target_of(&p, "[Gmail]/Spam").target.name, "Junk");
    // Uses the target lacks keep the source's name.
    assert_eq!(
        target_of(&p, "[Gmail]/All Mail").target.name,
        "[Gmail].All Mail"
    );
    assert_eq!(
        target_of(&p, "[Gmail]/Starred").target.name,
        "[Gmail].Starred"
    );
    // `[Gmail]` holds no mail; it is only a parent, created implicitly by this target.
    assert!(
        p.hierarchy_only
            .iter()
            .any(|h| h.source.as_deref() == Some("[Gmail]") && !h.create)
    );
}

#[test]
fn exchange_names_without_special_use_and_subfolders_follow() {
    let source = listing(
        "exchange",
        "",
        Some('/'),
        names(&[
            "INBOX",
            "Sent Items",
            "Sent Items/2019",
            "Deleted Items",
            "Junk Email",
            "Drafts",
            "Archive",
        ]),
    );
    let target = listing(
        "dovecot",
        "",
        Some('.'),
        vec![
            folder("INBOX", &[]),
            folder("Sent", &["\\Sent"]),
            folder("Trash", &["\\Trash"]),
            folder("Spam", &["\\Junk"]),
            folder("Drafts", &[]),
        ],
    );
    let p = run(&source, &target, &PlanOptions::default());
    assert_eq!(target_of(&p, "Sent Items").target.name, "Sent");
    assert_eq!(target_of(&p, "Sent Items/2019").target.name, "Sent.2019");
    assert_eq!(target_of(&p, "Deleted Items").target.name, "Trash");
    assert_eq!(target_of(&p, "Junk Email").target.name, "Spam");
    assert_eq!(
        target_of(&p, "Drafts").target.name,
        "Drafts",
        "matched by name on the target"
    );
    assert_eq!(target_of(&p, "Archive").target.name, "Archive");
    assert!(target_of(&p, "Archive").create);
    assert_eq!(
        target_of(&p, "Archive").special_use,
        Some(SpecialUse::Archive)
    );
}

#[test]
fn never_a_second_sent_folder() {
    // The source has its real Sent (by attribute) and a stray "Sent Items"; the target's
    // Sent is called "Sent Items".
    let source = listing(
        "src",
        "",
        Some('/'),
        vec![
            folder("INBOX", &[]),
            folder("Sent", &["\\Sent"]),
            folder("Sent Items", &[]),
        ],
    );
    let target = listing(
        "dst",
        "",
        Some('/'),
        vec![folder("INBOX", &[]), folder("Sent Items", &["\\Sent"])],
    );
    let p = run(&source, &target, &PlanOptions::default());
    assert_eq!(target_of(&p, "Sent").target.name, "Sent Items");
    let stray = target_of(&p, "Sent Items");
    assert_eq!(stray.target.name, "Sent Items (2)");
    assert!(stray.renamed && stray.create);
}

#[test]
fn separator_lookalike_collision_is_resolved_deterministically() {
    let source = listing(
        "src",
        "",
        Some('/'),
        names(&["INBOX", "a.b", "a\u{2024}b", "a.b/c"]),
    );
    let target = listing("dst", "", Some('.'), names(&["INBOX"]));
    let p = run(&source, &target, &PlanOptions::default());
    // The name that needed no change keeps it; the escaped one yields.
    assert_eq!(target_of(&p, "a\u{2024}b").target.name, "a\u{2024}b");
    assert_eq!(target_of(&p, "a.b").target.name, "a\u{2024}b (2)");
    assert_eq!(
        target_of(&p, "a.b/c").target.name,
        "a\u{2024}b (2).c",
        "children follow"
    );
}

#[test]
fn case_collisions_on_case_insensitive_targets() {
    let source = listing("src", "", Some('/'), names(&["INBOX", "Work", "work"]));
    let target = listing("dst", "", Some('/'), names(&["INBOX"]));
    let p = run(&source, &target, &PlanOptions::default());
    assert_eq!(target_of(&p, "Work").target.name, "Work");
    assert_eq!(target_of(&p, "work").target.name, "work (2)");
    let sensitive = PlanOptions {
        target_case_insensitive: false,
        ..PlanOptions::default()
    };
    let p = run(&source, &target, &sensitive);
    assert_eq!(target_of(&p, "work").target.name, "work");
}

#[test]
fn ampersand_and_non_ascii_names_pass_through() {
    let source = listing(
        "src",
        "INBOX.",
        Some('.'),
        names(&[
            "INBOX",
            "INBOX.R&D",
            "INBOX.Entwürfe",
            "INBOX.日本語.&-",
            "INBOX.Ω/α",
        ]),
    );
    let target = listing("dst", "", Some('/'), names(&["INBOX"]));
    let p = run(&source, &target, &PlanOptions::default());
    assert_eq!(target_of(&p, "INBOX.R&D").target.name, "R&D");
    assert_eq!(target_of(&p, "INBOX.Entwürfe").target.name, "Entwürfe");
    assert_eq!(target_of(&p, "INBOX.日本語.&-").target.name, "日本語/&-");
    assert_eq!(target_of(&p, "INBOX.Ω/α").target.name, "Ω\u{2215}α");
}

#[test]
fn reserved_characters_are_replaced_like_the_separator() {
    let source = listing("src", "", Some('.'), names(&["INBOX", "a/b"]));
    let target = listing("dst", "", Some('.'), names(&["INBOX"]));
    let options = PlanOptions {
        target_reserved_chars: vec!['/'],
        ..PlanOptions::default()
    };
    let p = run(&source, &target, &options);
    assert_eq!(target_of(&p, "a/b").target.name, "a\u{2215}b");
}

#[test]
fn exclusions_by_name_glob_and_special_use_include_subfolders() {
    let source = listing(
        "src",
        "",
        Some('/'),
        vec![
            folder("INBOX", &[]),
            folder("Shared", &[]),
            folder("Shared/Team", &[]),
            folder("Old 2018", &[]),
            folder("Old 2019", &[]),
            folder("Work", &[]),
            folder("Work/Old 2019", &[]),
            folder("Junk", &[]),
            folder("Junk/Sub", &[]),
            folder("Bin", &["\\Trash"]),
        ],
    );
    let target = listing("dst", "", Some('/'), names(&["INBOX"]));
    let options = PlanOptions {
        exclusions: ["Shared", "Old*", "\\Junk", "\\Trash"]
            .iter()
            .map(|s| s.parse().expect("valid"))
            .collect(),
        ..PlanOptions::default()
    };
    let p = run(&source, &target, &options);
    assert_eq!(
        reason_of(&p, "Shared"),
        &ExclusionReason::Excluded(Exclusion::Name("Shared".into()))
    );
    assert_eq!(
        reason_of(&p, "Shared/Team"),
        &ExclusionReason::Excluded(Exclusion::Name("Shared".into()))
    );
    assert_eq!(
        reason_of(&p, "Old 2019"),
        &ExclusionReason::Excluded(Exclusion::Glob("Old*".into()))
    );
    assert_eq!(
        reason_of(&p, "Junk/Sub"),
        &ExclusionReason::ExcludedSpecialUse(SpecialUse::Junk)
    );
    assert_eq!(
        reason_of(&p, "Bin"),
        &ExclusionReason::ExcludedSpecialUse(SpecialUse::Trash)
    );
    // `*` does not cross the separator.
    assert_eq!(target_of(&p, "Work/Old 2019").target.name, "Work/Old 2019");
}

#[test]
fn user_root_selects_and_strips() {
    let source = listing(
        "courier",
        "INBOX.",
        Some('.'),
        names(&[
            "INBOX",
            "INBOX.Sent",
            "shared.users.alberta",
            "shared.users.alberta.Sent",
            "shared.users.alberta.Work",
            "shared.users.bobby.Work",
        ]),
    );
    let target = listing(
        "dst",
        "",
        Some('/'),
        vec![folder("INBOX", &[]), folder("Sent", &["\\Sent"])],
    );
    let options = PlanOptions {
        user_root: Some("shared.users.alberta".into()),
        ..PlanOptions::default()
    };
    let p = run(&source, &target, &options);
    assert_eq!(target_of(&p, "shared.users.alberta").target.name, "INBOX");
    assert_eq!(
        target_of(&p, "shared.users.alberta.Sent").target.name,
        "Sent"
    );
    assert_eq!(
        target_of(&p, "shared.users.alberta.Work").target.name,
        "Work"
    );
    assert_eq!(
        reason_of(&p, "shared.users.bobby.Work"),
        &ExclusionReason::OutsideUserRoot
    );
    assert_eq!(
        reason_of(&p, "INBOX.Sent"),
        &ExclusionReason::OutsideUserRoot
    );
    // A trailing separator on UserRoot is tolerated.
    let options = PlanOptions {
        user_root: Some("shared.users.alberta.".into()),
        ..PlanOptions::default()
    };
    assert_eq!(mapping(&run(&source, &target, &options)), mapping(&p));
}

#[test]
fn noselect_folders_are_hierarchy_only_when_needed() {
    let source = listing(
        "src",
        "",
        Some('/'),
        vec![
            folder("INBOX", &[]),
            folder("Lists", &["\\Noselect"]),
            folder("Lists/rust", &[]),
            folder("Empty", &["\\Noselect"]),
            folder("Deep/er/est", &[]),
        ],
    );
    let target = listing("dst", "", Some('.'), names(&["INBOX"]));
    let explicit = PlanOptions {
        target_needs_explicit_parents: true,
        ..PlanOptions::default()
    };
    let p = run(&source, &target, &explicit);
    assert_eq!(
        reason_of(&p, "Empty"),
        &ExclusionReason::NoSelectWithoutCopiedChildren
    );
    let created: Vec<&str> = p.creations().iter().map(|t| t.name.as_str()).collect();
    assert_eq!(
        created,
        vec!["Deep", "Lists", "Deep.er", "Lists.rust", "Deep.er.est"]
    );
    assert!(
        p.hierarchy_only
            .iter()
            .any(|h| h.source.as_deref() == Some("Lists") && h.create)
    );
    assert!(
        p.hierarchy_only
            .iter()
            .any(|h| h.source.is_none() && h.target.name == "Deep.er")
    );

    let implicit = run(&source, &target, &PlanOptions::default());
    let created: Vec<&str> = implicit
        .creations()
        .iter()
        .map(|t| t.name.as_str())
        .collect();
    assert_eq!(created, vec!["Lists.rust", "Deep.er.est"]);
    assert!(implicit.hierarchy_only.iter().all(|h| !h.create));
}

#[test]
fn subscriptions_are_mirrored_once() {
    let source = listing(
        "src",
        "",
        Some('/'),
        vec![
            subscribed("INBOX"),
            subscribed("A"),
            subscribed("B"),
            ListedFolder::new("C"),
        ],
    );
    let target = listing(
        "dst",
        "",
        Some('/'),
        vec![subscribed("INBOX"), subscribed("A")],
    );
    let p = run(&source, &target, &PlanOptions::default());
    assert!(!target_of(&p, "INBOX").subscribe);
    assert!(!target_of(&p, "A").subscribe, "already subscribed");
    assert!(target_of(&p, "B").subscribe);
    assert!(!target_of(&p, "C").subscribe);
}

#[test]
fn folders_outside_the_personal_namespace_are_excluded() {
    let source = listing(
        "src",
        "INBOX.",
        Some('.'),
        names(&["INBOX", "INBOX.Work", "#shared.team", "Public"]),
    );
    let target = listing("dst", "", Some('/'), names(&["INBOX"]));
    let p = run(&source, &target, &PlanOptions::default());
    assert_eq!(
        reason_of(&p, "#shared.team"),
        &ExclusionReason::OutsidePersonalNamespace
    );
    assert_eq!(
        reason_of(&p, "Public"),
        &ExclusionReason::OutsidePersonalNamespace
    );
    let source = listing(
        "src",
        "Mail/",
        Some('/'),
        names(&["INBOX", "Mail", "Mail/Work"]),
    );
    let p = run(&source, &target, &PlanOptions::default());
    assert_eq!(reason_of(&p, "Mail"), &ExclusionReason::NamespaceRoot);
    assert_eq!(target_of(&p, "Mail/Work").target.name, "Work");
}

#[test]
fn foreign_namespaces_are_skipped_unless_included() {
    // Cyrus with altnamespace: personal "" beside shared and other users' prefixes.
    let source = with_foreign(
        listing(
            "cyrus",
            "",
            Some('/'),
            vec![
                folder("INBOX", &[]),
                folder("Work", &[]),
                folder("Other Users", &["\\Noselect"]),
                folder("Other Users/bob", &["\\Noselect"]),
                folder("Other Users/bob/Projects", &[]),
                folder("Other Users/bob/Projects/2024", &[]),
                folder("Shared Folders", &["\\Noselect"]),
                folder("Shared Folders/Announcements", &[]),
                folder("Shared Folders/Sent", &[]),
            ],
        ),
        &["Other Users/", "Shared Folders/"],
    );
    let target = listing(
        "dst",
        "",
        Some('.'),
        vec![folder("INBOX", &[]), folder("Sent", &["\\Sent"])],
    );
    let p = run(&source, &target, &PlanOptions::default());
    assert_eq!(
        mapping(&p),
        BTreeMap::from([
            ("INBOX".to_owned(), "INBOX".to_owned()),
            ("Work".to_owned(), "Work".to_owned()),
        ])
    );
    for name in [
        "Other Users",
        "Other Users/bob/Projects",
        "Other Users/bob/Projects/2024",
        "Shared Folders/Announcements",
        "Shared Folders/Sent",
    ] {
        assert_eq!(
            reason_of(&p, name),
            &ExclusionReason::OutsidePersonalNamespace,
            "{name}"
        );
    }

    // Included by name: the folder and its subfolders, under their full names; a shared
    // folder called Sent is not taken for the user's Sent.
    let options = PlanOptions {
        inclusions: vec![
            pattern("Other Users/bob/Projects"),
            pattern("Shared Folders/*"),
        ],
        ..PlanOptions::default()
    };
    let p = run(&source, &target, &options);
    assert_eq!(
        target_of(&p, "Other Users/bob/Projects").target.name,
        "Other Users.bob.Projects"
    );
    assert_eq!(
        target_of(&p, "Other Users/bob/Projects/2024").target.name,
        "Other Users.bob.Projects.2024"
    );
    assert_eq!(
        target_of(&p, "Shared Folders/Announcements").target.name,
        "Shared Folders.Announcements"
    );
    let sent = target_of(&p, "Shared Folders/Sent");
    assert_eq!(sent.target.name, "Shared Folders.Sent");
    assert_eq!(sent.special_use, None);
    assert_eq!(
        reason_of(&p, "Other Users"),
        &ExclusionReason::OutsidePersonalNamespace
    );
}

#[test]
fn the_closest_namespace_prefix_decides() {
    // Cyrus's default namespace: personal `INBOX.`, other users `user.`, shared `""`.
    let source = with_foreign(
        listing(
            "cyrus",
            "INBOX.",
            Some('.'),
            names(&[
                "INBOX",
                "INBOX.Sent",
                "user.bob",
                "user.bob.Work",
                "Announcements",
            ]),
        ),
        &["user.", ""],
    );
    let target = listing("dst", "", Some('/'), names(&["INBOX"]));
    let p = run(&source, &target, &PlanOptions::default());
    assert_eq!(target_of(&p, "INBOX.Sent").target.name, "Sent");
    for name in ["user.bob", "user.bob.Work", "Announcements"] {
        assert_eq!(
            reason_of(&p, name),
            &ExclusionReason::OutsidePersonalNamespace,
            "{name}"
        );
    }
    // Included, a shared folder that shares a personal folder's name gets its own target.
    let source = with_foreign(
        listing(
            "cyrus",
            "INBOX.",
            Some('.'),
            names(&["INBOX", "INBOX.Announcements", "Announcements"]),
        ),
        &["user.", ""],
    );
    let options = PlanOptions {
        inclusions: vec![pattern("Announcements")],
        ..PlanOptions::default()
    };
    let p = run(&source, &target, &options);
    assert_eq!(
        target_of(&p, "INBOX.Announcements").target.name,
        "Announcements"
    );
    assert_eq!(
        target_of(&p, "Announcements").target.name,
        "Announcements (2)"
    );

    // Dovecot: personal `""`, shared `shared/`, and `#shared` as a namespace root itself.
    let source = with_foreign(
        listing(
            "dovecot",
            "",
            Some('/'),
            names(&["INBOX", "Work", "shared", "shared/bob/INBOX", "sharedstuff"]),
        ),
        &["shared/"],
    );
    let p = run(&source, &target, &PlanOptions::default());
    assert_eq!(target_of(&p, "sharedstuff").target.name, "sharedstuff");
    assert_eq!(
        reason_of(&p, "shared"),
        &ExclusionReason::OutsidePersonalNamespace
    );
    assert_eq!(
        reason_of(&p, "shared/bob/INBOX"),
        &ExclusionReason::OutsidePersonalNamespace
    );
}

#[test]
fn without_namespace_everything_listed_is_personal() {
    let source = listing(
        "old",
        "",
        Some('.'),
        names(&["INBOX", "Public", "#shared.team"]),
    );
    let target = listing("dst", "", Some('/'), names(&["INBOX"]));
    let p = run(&source, &target, &PlanOptions::default());
    assert_eq!(target_of(&p, "Public").target.name, "Public");
    assert_eq!(target_of(&p, "#shared.team").target.name, "#shared/team");
}

#[test]
fn a_user_root_that_matches_nothing_fails_naming_the_root_and_the_listing() {
    let mut source = listing(
        "courier.example:143",
        "INBOX.",
        Some('.'),
        names(&["#shared.bob@example test", "#shared.bob@example test.Work"]),
    );
    source.listed_with = "LIST \"\" \"#shared.alice@example test\"".to_owned();
    let target = listing("dst", "", Some('/'), names(&["INBOX"]));
    let options = PlanOptions {
        user_root: Some("#shared.alice@example test".into()),
        ..PlanOptions::default()
    };
    let e = plan(&source, &target, &options).expect_err("no folder under the root");
    let text = e.to_string();
    assert!(matches!(e, Error::UserRootMatchesNothing { .. }), "{e:?}");
    for part in [
        "`#shared.alice@example test`",
        "courier.example:143",
        "LIST \"\" \"#shared.alice@example test\"",
        "UserRoot",
    ] {
        assert!(text.contains(part), "{part} not in: {text}");
    }
    assert_eq!(text.matches(". ").count(), 0, "one sentence: {text}");
    // A root with only a child (its INBOX not listed) is still this user's mailbox.
    let source = listing(
        "courier",
        "INBOX.",
        Some('.'),
        names(&["#shared.alice@example test.Work"]),
    );
    let p = run(&source, &target, &options);
    assert_eq!(
        target_of(&p, "#shared.alice@example test.Work").target.name,
        "Work"
    );
}

#[test]
fn flat_target_keeps_the_whole_path_in_one_name() {
    let source = listing("src", "", Some('/'), names(&["INBOX", "a", "a/b"]));
    let target = listing("dst", "", None, names(&["INBOX"]));
    let p = run(&source, &target, &PlanOptions::default());
    assert_eq!(target_of(&p, "a/b").target.path, vec!["a/b"]);
    assert_eq!(target_of(&p, "a/b").target.name, "a/b");
    assert!(p.hierarchy_only.is_empty());
}

#[test]
fn pins_keep_targets_stable_when_the_source_changes() {
    let target = listing("dst", "", Some('.'), names(&["INBOX"]));
    let day1 = listing("src", "", Some('/'), names(&["INBOX", "a.b"]));
    let p1 = run(&day1, &target, &PlanOptions::default());
    assert_eq!(target_of(&p1, "a.b").target.name, "a\u{2024}b");
    // Day 2: a folder appears that would win the name without the pin.
    let day2 = listing("src", "", Some('/'), names(&["INBOX", "a.b", "a\u{2024}b"]));
    let unpinned = run(&day2, &target, &PlanOptions::default());
    assert_eq!(target_of(&unpinned, "a.b").target.name, "a\u{2024}b (2)");
    let pinned = PlanOptions {
        pinned: p1.pins(),
        ..PlanOptions::default()
    };
    let p2 = run(&day2, &target, &pinned);
    assert_eq!(target_of(&p2, "a.b").target.name, "a\u{2024}b");
    assert_eq!(target_of(&p2, "a\u{2024}b").target.name, "a\u{2024}b (2)");
}

#[test]
fn invalid_pins_are_ignored() {
    let source = listing("src", "", Some('/'), names(&["INBOX", "A"]));
    let target = listing("dst", "", Some('.'), names(&["INBOX"]));
    let options = PlanOptions {
        pinned: BTreeMap::from([
            ("A".to_owned(), vec!["x.y".to_owned()]),
            ("INBOX".to_owned(), vec!["Other".to_owned()]),
        ]),
        ..PlanOptions::default()
    };
    let p = run(&source, &target, &options);
    assert_eq!(target_of(&p, "A").target.name, "A");
    assert_eq!(target_of(&p, "INBOX").target.name, "INBOX");
}

#[test]
fn duplicate_listings_merge_and_garbage_is_a_peer_error() {
    let source = listing(
        "src",
        "",
        Some('/'),
        vec![
            folder("A", &["\\Noselect"]),
            subscribed("A"),
            folder("INBOX", &[]),
        ],
    );
    let target = listing("dst", "", Some('/'), names(&["INBOX"]));
    let p = run(&source, &target, &PlanOptions::default());
    assert!(target_of(&p, "A").subscribe);

    let bad = listing("imap.example.test", "", Some('/'), names(&["INBOX", ""]));
    let e = plan(&bad, &target, &PlanOptions::default()).expect_err("empty name");
    assert_eq!(e.fault(), crate::Fault::Peer);
    assert!(e.to_string().contains("imap.example.test"), "{e}");
}

#[test]
fn second_pass_without_pins_gives_the_same_plan() {
    let source = listing(
        "src",
        "INBOX.",
        Some('.'),
        vec![
            folder("INBOX", &[]),
            folder("INBOX.Sent Items", &[]),
            folder("INBOX.Sent Items.2019", &[]),
            folder("INBOX.x/y", &[]),
            folder("INBOX.Drafts", &["\\Drafts"]),
        ],
    );
    let target = listing("dst", "", Some('/'), names(&["INBOX"]));
    let p1 = run(&source, &target, &PlanOptions::default());
    let after = listing(
        "dst",
        "",
        Some('/'),
        names(&["INBOX"])
            .into_iter()
            .chain(
                p1.creations()
                    .iter()
                    .map(|t| ListedFolder::new(t.name.clone())),
            )
            .collect(),
    );
    let p2 = run(&source, &after, &PlanOptions::default());
    assert_eq!(mapping(&p1), mapping(&p2));
    assert!(p2.copies.iter().all(|c| !c.create));
}

// ---- Properties ----

fn component() -> impl Strategy<Value = String> {
    prop::sample::select(vec![
        "Sent",
        "sent",
        "Sent Items",
        "Trash",
        "Junk",
        "Spam",
        "Drafts",
        "Archive",
        "INBOX",
        "inbox",
        "[Gmail]",
        "Sent Mail",
        "a",
        "A",
        "a.b",
        "a/b",
        "a\u{2024}b",
        "a\u{2215}b",
        "a (2)",
        "R&D",
        "Entwürfe",
        "日本",
        "x*y",
        "",
    ])
    .prop_map(str::to_owned)
}

fn arb_folder(sep: char) -> impl Strategy<Value = ListedFolder> {
    (
        prop::collection::vec(component(), 1..4),
        prop::sample::select(vec![
            vec![],
            vec!["\\Noselect"],
            vec!["\\Sent"],
            vec!["\\Trash"],
            vec!["\\Junk"],
            vec!["\\All"],
            vec!["\\NoInferiors", "\\Drafts"],
        ]),
        any::<bool>(),
    )
        .prop_map(move |(parts, atoms, subscribed)| ListedFolder {
            name: parts.join(&sep.to_string()),
            attributes: FolderAttributes::from_atoms(atoms),
            subscribed,
        })
        .prop_filter("a name", |f| !f.name.is_empty())
}

fn arb_listing(server: &'static str) -> impl Strategy<Value = FolderListing> {
    (
        prop::sample::select(vec![Some('.'), Some('/'), None]),
        prop::sample::select(vec!["", "INBOX."]),
        any::<bool>(),
    )
        .prop_flat_map(move |(sep, prefix, foreign)| {
            let prefix = match sep {
                Some('.') => prefix.to_owned(),
                _ => String::new(),
            };
            // Another namespace under a component the generator also uses for folders.
            let foreign: Vec<String> = match sep {
                Some(sep) if foreign => vec![format!("a{sep}")],
                _ => Vec::new(),
            };
            (
                Just(sep),
                Just(prefix),
                Just(foreign),
                prop::collection::vec(arb_folder(sep.unwrap_or('/')), 0..14),
            )
        })
        .prop_map(move |(sep, prefix, foreign, folders)| {
            let folders = folders
                .into_iter()
                .map(|mut f| {
                    if !f.name.eq_ignore_ascii_case("INBOX") {
                        f.name = format!("{prefix}{}", f.name);
                    }
                    f
                })
                .chain([ListedFolder::new("INBOX")])
                .collect();
            FolderListing {
                foreign_prefixes: foreign,
                ..listing(server, &prefix, sep, folders)
            }
        })
}

fn arb_options() -> impl Strategy<Value = PlanOptions> {
    (
        prop::sample::subsequence(vec!["\\Junk", "Arch*", "a", "[Gmail]", "*/a"], 0..3),
        prop::sample::subsequence(vec!["a", "*", "INBOX"], 0..2),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(ex, inc, explicit, insensitive)| PlanOptions {
            exclusions: ex.iter().filter_map(|s| s.parse().ok()).collect(),
            inclusions: inc.iter().filter_map(|s| s.parse().ok()).collect(),
            target_needs_explicit_parents: explicit,
            target_case_insensitive: insensitive,
            ..PlanOptions::default()
        })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn every_folder_once_and_no_shared_targets(
        source in arb_listing("src"),
        target in arb_listing("dst"),
        options in arb_options(),
    ) {
        // `run` checks the partition and the uniqueness of targets.
        let p = run(&source, &target, &options);
        for c in &p.copies {
            if let Some(sep) = target.separator {
                prop_assert!(c.target.path.iter().all(|part| !part.contains(sep)), "{c:?}");
            } else {
                prop_assert_eq!(c.target.path.len(), 1);
            }
        }
    }

    #[test]
    fn plans_are_deterministic(
        source in arb_listing("src"),
        target in arb_listing("dst"),
        options in arb_options(),
        seed in any::<u64>(),
    ) {
        let p = run(&source, &target, &options);
        let mut shuffled = source.clone();
        let mut t2 = target.clone();
        // A cheap deterministic shuffle: rotate and reverse by the seed.
        let n = shuffled.folders.len().max(1);
        shuffled.folders.rotate_left(usize::try_from(seed % n as u64).unwrap_or(0));
        if seed % 2 == 0 {
            shuffled.folders.reverse();
            t2.folders.reverse();
        }
        prop_assert_eq!(&p, &run(&shuffled, &t2, &options));
        prop_assert_eq!(&p, &run(&source, &target, &options));
    }

    #[test]
    fn pins_reproduce_the_plan_after_it_ran(
        source in arb_listing("src"),
        target in arb_listing("dst"),
        options in arb_options(),
    ) {
        let p1 = run(&source, &target, &options);
        let mut after = target.clone();
        after.folders.extend(p1.creations().iter().map(|t| ListedFolder::new(t.name.clone())));
        let pinned = PlanOptions { pinned: p1.pins(), ..options.clone() };
        let p2 = run(&source, &after, &pinned);
        prop_assert_eq!(mapping(&p1), mapping(&p2));
    }
}
