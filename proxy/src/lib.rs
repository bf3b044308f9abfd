//! The routing IMAP proxy of imapmirror: users keep one server name while their mailbox
//! moves, and are sent to the source or the target by the state of their migration.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]
