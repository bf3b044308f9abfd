//! The mirroring engine of imapmirror: folder plans, byte-exact copy, incremental passes,
//! batches and schedules, on top of `imapmirror-protocol` and `imapmirror-storage`.
//!
//! # Rooms
//!
//! ```text
//! control/    the CLI's requests, their one set of handlers, the control socket
//! batch/      batches in motion, the `serve` scheduler, status and reports, shards,
//!             the notification webhook, the dry run and the estimate
//! pass/       one pass over one mailbox: folder plan, folder check, renames,
//!             folder sync, APPEND groups, reconciliation, the pass's report
//! endpoint/   the servers at either end: connection pool, `endpoint test`, login
//!             methods and admin credentials, OAuth tokens, back-off, server quirks
//! ```
//!
//! Between rooms, calls go down this list and never back up: an endpoint knows nothing of
//! passes, a pass nothing of batches, a batch nothing of the control socket. Beside the
//! rooms, used by all of them, sit the migration file (`migration_file.rs`, the CSV a
//! batch is made of), the engine's one error type (`error.rs`) and the names of the metrics
//! every room records (`migration_metrics.rs`). Each room's module
//! doc says what it holds and what it must not touch.
//!
//! # Mirroring one mailbox
//!
//! ```text
//! EndpointPool::new(EndpointConfig, Role)      one per endpoint, in an Arc, shared by all
//!                                              jobs: the connection limit and the
//!                                              connect/login back-off
//! MailboxJob { mailbox, email, batch, source, target, source_login, target_login,
//!              options: JobOptions }           one user's mailbox
//! job.run_pass(&store, PassKind, &cancel, &|p: Progress| ...) -> Result<PassSummary, Error>
//! ```
//!
//! A pass ([`pass::mailbox_job`]) lists both sides with LIST-STATUS, plans the folders
//! ([`pass::folder_plan`]), creates missing target folders, mirrors subscriptions, decides
//! per folder from the stored state ([`pass::folder_check`]: an unchanged folder costs
//! nothing beyond its LIST-STATUS line) and syncs the changed folders over
//! `JobOptions::connections` connection pairs: reconcile pending journal groups, rebuild
//! the map by fingerprint after a UIDVALIDITY change, copy new messages (groups of
//! MULTIAPPEND, pipelined; large messages streamed socket to socket), carry flag changes
//! (CHANGEDSINCE or a FLAGS fetch) and optionally deletions. The mailbox's status and pass
//! history are recorded in the store. Cancelling the token stops the pass between groups;
//! the journal makes any stop, crash or cut connection resumable without losing or
//! doubling a message (see `pass/folder_sync.rs`).
//!
//! [`PassSummary`] counts what moved and the commands each side received, so that callers
//! and tests can check that an unchanged mailbox costs one LIST-STATUS per side.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod batch;
pub mod control;
pub mod endpoint;
pub mod error;
#[doc(hidden)]
pub mod fuzz_checks;
pub mod migration_file;
pub mod migration_metrics;
pub mod pass;
pub mod secret;

pub use endpoint::credentials::{AdminCredentials, AdminFormat, EndpointAccess, LoginMethod};
pub use endpoint::pool::{CommandCounts, EndpointConfig, EndpointPool, Role};
pub use endpoint::reconnect_policy::ReconnectPolicy;
pub use error::{Error, FailureKind, Fault};
pub use migration_file::{MailboxRow, MigrationFile};
pub use pass::folder_plan::{FolderPlan, PlanOptions, plan};
pub use pass::mailbox_job::{JobOptions, MailboxJob, PassKind};
pub use pass::report::{PassSummary, Progress};
pub use secret::Secret;
pub use tokio_util::sync::CancellationToken;
