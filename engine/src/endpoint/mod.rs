//! Endpoints: the IMAP servers at either end, and how to reach them.
//!
//! Holds the per-endpoint connection pool (limit, connect and login with back-off, command
//! counts), the translation of a stored endpoint into the protocol crate's settings,
//! `endpoint test`, the login methods and admin credentials, the rate budget
//! (`--max-rate`), OAuth tokens, the reconnect back-off, and what is known of each server
//! family and its quirks.
//!
//! Must not touch: batches, passes, folders or the control socket. It reads the store's
//! endpoint records only (`connection.rs`), never a batch's or a mailbox's state, and a
//! migration-file row only to choose its login (`credentials.rs`); the rooms above take
//! connections from here, and nothing here calls back up.

pub mod connection;
pub mod credentials;
pub mod oauth;
pub mod oauth_token;
pub mod pool;
pub mod probe;
pub mod provider_profile;
pub mod rate_budget;
pub mod reconnect_policy;
pub mod server_family;
pub mod server_quirks;
