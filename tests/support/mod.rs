//! The real-Dovecot test kit: private Dovecot instances, fast seeding, a deterministic
//! corpus with the awkward cases, a small blocking IMAP client and an exact verifier.
//!
//! It uses none of the project's own crates: it is the independent yardstick that the
//! code under test is measured against. Include it with `mod support;` from a test, or
//! `#[path = "../tests/support/mod.rs"] mod support;` from a bench or example.
//!
//! ```ignore
//! let source = Dovecot::builder().label("source").layout(Layout::MaildirPlusPlus).start()?;
//! let target = Dovecot::builder().label("target").layout(Layout::Fs).start()?;
//! let corpus = Corpus::generate(CorpusSpec::small(42));
//! source.seed(DEFAULT_USER, corpus.folders(), corpus.messages())?;
//! // ... run the migration from source.master_endpoint(DEFAULT_USER) to target ...
//! verify_user(&source, &target, DEFAULT_USER)?.assert_equal();
//! ```

// Each test binary uses only part of the kit.
#![allow(dead_code, unused_imports)]

pub mod append_probe;
pub mod base64_codec;
pub mod corpus;
pub mod courier;
pub mod cyrus;
pub mod dovecot;
pub mod exchange_like;
pub mod folder_path;
pub mod gmail_like;
pub mod imap_client;
pub mod imap_response;
pub mod internal_date;
pub mod kit_error;
pub mod mailbox_verifier;
pub mod maildir_seed;
pub mod many_users;
pub mod message_flag;
pub mod mutf7;
pub mod private_server;
pub mod process_table;
pub mod server_family;
pub mod tls_material;

pub use append_probe::{
    Refusals, StoredMessage, append_probe, compare_with_probe, new_messages, read_stored,
    selectable_folders,
};
pub use corpus::{Corpus, CorpusSpec, KEYWORDS, SizeProfile, SplitMix64};
pub use courier::{
    COURIER_ADMIN, COURIER_ADMIN_PASSWORD, COURIER_DEFAULT_PASSWORD, COURIER_DEFAULT_USER, Courier,
    CourierBuilder,
};
pub use cyrus::{
    CYRUS_ADMIN, CYRUS_ADMIN_PASSWORD, CYRUS_DEFAULT_PASSWORD, CYRUS_DEFAULT_USER, Cyrus,
    CyrusBuilder, CyrusNamespace,
};
pub use dovecot::{
    DEFAULT_PASSWORD, DEFAULT_USER, Dovecot, DovecotBuilder, Fsync, Layout, MASTER_PASSWORD,
    MASTER_USER, TlsMode,
};
pub use folder_path::FolderPath;
pub use imap_client::{Credentials, Endpoint, ImapClient, Security};
pub use internal_date::InternalDate;
pub use kit_error::KitError;
pub use mailbox_verifier::{
    Difference, MailboxSnapshot, Verifier, VerifyReport, separator_mapping, verify_user,
    verify_users,
};
pub use maildir_seed::{SeedFolder, SeedMessage, SeedReport};
pub use many_users::{MANY_USERS_CONFIG, ManySeedReport};
pub use message_flag::Flag;
pub use process_table::ProcessId;
pub use server_family::{DOVECOT_LONG_KEYWORDS, Family, FamilyServer};
