//! The mirroring engine of imapmirror: folder plans, byte-exact copy, incremental passes,
//! batches and schedules, on top of `imapmirror-protocol` and `imapmirror-storage`.
#![cfg_attr(not(test), warn(clippy::unwrap_used))]
