//! The mirroring engine of imapmirror: folder plans, byte-exact copy, incremental passes,
//! batches and schedules, on top of `imapmirror-protocol` and `imapmirror-storage`.
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
//! A pass lists both sides with LIST-STATUS, plans the folders ([`folder_plan`]), creates
//! missing target folders, mirrors subscriptions, decides per folder from the stored state
//! ([`folder_check`]: an unchanged folder costs nothing beyond its LIST-STATUS line) and
//! syncs the changed folders over `JobOptions::connections` connection pairs: reconcile
//! pending journal groups, rebuild the map by fingerprint after a UIDVALIDITY change,
//! copy new messages (groups of MULTIAPPEND, pipelined; large messages streamed socket to
//! socket), carry flag changes (CHANGEDSINCE or a FLAGS fetch) and optionally deletions.
//! The mailbox's status and pass history are recorded in the store. Cancelling the token
//! stops the pass between groups; the journal makes any stop, crash or cut connection
//! resumable without losing or doubling a message (see `folder_sync.rs`).
//!
//! [`PassSummary`] counts what moved and the commands each side received, so that callers
//! and tests can check that an unchanged mailbox costs one LIST-STATUS per side.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod batch_report;
pub mod batch_runner;
pub mod batch_shard;
pub mod control_request;
pub mod control_socket;
pub mod copy_plan;
pub mod credentials;
pub mod endpoint_connection;
pub mod endpoint_pool;
pub mod endpoint_probe;
pub mod error;
pub mod fingerprint;
pub mod folder_check;
pub mod folder_plan;
mod folder_rename;
mod folder_sync;
#[doc(hidden)]
pub mod fuzz_checks;
pub mod header_text;
pub mod mailbox_job;
pub mod migration_file;
pub mod notification;
pub mod oauth_token;
pub mod pass_report;
pub mod reconcile;
pub mod reconnect_policy;
pub mod scheduler;
pub mod server_family;
pub mod server_quirks;

pub use credentials::{AdminCredentials, AdminFormat, EndpointAccess, LoginMethod, Secret};
pub use endpoint_pool::{CommandCounts, EndpointConfig, EndpointPool, Role};
pub use error::{Error, Fault};
pub use folder_plan::{FolderPlan, PlanOptions, plan};
pub use mailbox_job::{JobOptions, MailboxJob, PassKind};
pub use migration_file::{MailboxRow, MigrationFile};
pub use pass_report::{PassSummary, Progress};
pub use reconnect_policy::ReconnectPolicy;
pub use tokio_util::sync::CancellationToken;
