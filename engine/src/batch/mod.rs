//! Batches: many mailboxes moved together, from the migration file's rows to the report.
//!
//! Holds the batch runner (which mailboxes a pass covers, the per-endpoint slots shared by
//! every batch), the `serve` scheduler, the status and report readers, the shard split of
//! a migration file over several machines, the notification webhook and the report
//! delivered into a mailbox.
//!
//! Must not touch: a mailbox's folders or messages (a batch hands each mailbox to
//! [`crate::pass`] and reads back its [`crate::PassSummary`]), a server's wire protocol
//! (connections come from [`crate::endpoint`]), or the control socket (it is
//! [`crate::control`] that calls in here, never the other way).

pub mod batch_merge;
pub mod dry_run;
pub mod estimate;
pub mod notification;
pub mod report;
pub mod report_delivery;
pub mod runner;
pub mod scheduler;
pub mod shard;
