//! The IMAP wire format for imapmirror: a zero-copy, streaming response parser, a client
//! command parser (for the proxy), encoders for both directions, and an async client
//! session. The crate holds no migration policy.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]
