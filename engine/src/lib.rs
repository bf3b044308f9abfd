//! The mirroring engine of imapmirror: folder plans, byte-exact copy, incremental passes,
//! batches and schedules, on top of `imapmirror-protocol` and `imapmirror-storage`.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]

pub mod credentials;
pub mod error;
pub mod folder_plan;
pub mod migration_file;

pub use credentials::{AdminCredentials, AdminFormat, EndpointAccess, LoginMethod, Secret};
pub use error::{Error, Fault};
pub use folder_plan::{FolderPlan, PlanOptions, plan};
pub use migration_file::{MailboxRow, MigrationFile};
