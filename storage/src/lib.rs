//! The state store of imapmirror. It is the only crate that imports sled and the source of
//! truth for what has been migrated: endpoints, batches, mailboxes, folder state, the uid
//! map and the exactly-once journal.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]
