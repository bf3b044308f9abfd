//! Report files: `batch report --output` and the fleet report's. They name mailboxes and
//! subjects, so they are written readable by the owner only.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::Context;

use crate::exit_status::BadRequest;

/// Reports name mailboxes and subjects: readable by the owner only.
pub fn write_private(path: &PathBuf, bytes: &[u8]) -> anyhow::Result<()> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| {
            BadRequest(format!(
                "The report file {} cannot be written ({e}): check the directory exists and is writable.",
                path.display()
            ))
        })?;
    f.write_all(bytes)
        .and_then(|()| f.sync_all())
        .with_context(|| {
            format!(
                "The report file {} could not be written completely; check the disk.",
                path.display()
            )
        })
}
