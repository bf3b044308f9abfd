//! The control surface: the requests every CLI command makes, their one set of handlers,
//! and the socket that carries them to the process owning a state directory.
//!
//! Holds no migration logic of its own: a handler checks its request, then calls
//! [`crate::batch`] (start, stop, status, report) or [`crate::endpoint`] (add, test) and
//! returns data for the CLI to render. Nothing else in the engine calls in here.

pub mod request;
pub mod socket;
