//! The state directory: its layout, its permissions and the lock that gives one process
//! ownership of it.
//!
//! ```text
//! STATE_DIR/          0700
//!   lock              0600  pid of the owning process; held with an exclusive file lock
//!   db/               0700  the sled database
//!   keys/             0700  one 0600 key file per batch and per endpoint (secret_vault.rs)
//! ```

use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::error::{Result, StoreError};

/// An owned state directory; the lock is released when this is dropped.
#[derive(Debug)]
pub(crate) struct StateDir {
    root: PathBuf,
    // Held for its lock only: dropping the File releases the lock.
    _lock: fs::File,
}

impl StateDir {
    /// Creates the directory if needed, tightens its permissions and takes the lock.
    pub(crate) fn open(root: &Path) -> Result<Self> {
        let io = |action: &'static str, path: &Path| {
            let path = path.to_path_buf();
            move |source| StoreError::Io {
                action,
                path,
                source,
            }
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(root)
            .map_err(io("create the state directory", root))?;
        // A directory made earlier by hand may be wider; credentials live here.
        fs::set_permissions(root, fs::Permissions::from_mode(0o700))
            .map_err(io("restrict permissions of", root))?;

        let lock_path = root.join("lock");
        let mut lock = fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io("open the lock file", &lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                let mut text = String::new();
                let _ = lock.read_to_string(&mut text);
                let pid = text.trim();
                let pid = if !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()) {
                    pid.to_string()
                } else {
                    "(pid not yet recorded)".to_string()
                };
                return Err(StoreError::Locked {
                    dir: root.to_path_buf(),
                    pid,
                });
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(io("lock", &lock_path)(e));
            }
        }
        lock.set_len(0)
            .and_then(|()| lock.seek(SeekFrom::Start(0)).map(|_| ()))
            .and_then(|()| writeln!(lock, "{}", std::process::id()))
            .and_then(|()| lock.sync_data())
            .map_err(io("write the pid into", &lock_path))?;

        for sub in ["db", "keys"] {
            let path = root.join(sub);
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&path)
                .map_err(io("create", &path))?;
        }
        let dir = StateDir {
            root: root.to_path_buf(),
            _lock: lock,
        };
        Ok(dir)
    }

    pub(crate) fn root(&self) -> &Path {
        &self.root
    }

    pub(crate) fn db_path(&self) -> PathBuf {
        self.root.join("db")
    }

    pub(crate) fn keys_path(&self) -> PathBuf {
        self.root.join("keys")
    }

    /// Makes every directory 0700 and every file 0600. sled creates its files with the
    /// process umask and offers no mode option, so this runs after opening and after each
    /// explicit flush; the 0700 root keeps other users out in between.
    pub(crate) fn tighten_permissions(&self) -> Result<()> {
        tighten(&self.root)
    }
}

fn tighten(dir: &Path) -> Result<()> {
    let io = |action: &'static str, path: &Path| {
        let path = path.to_path_buf();
        move |source| StoreError::Io {
            action,
            path,
            source,
        }
    };
    let entries = fs::read_dir(dir).map_err(io("list", dir))?;
    for entry in entries {
        let entry = entry.map_err(io("list", dir))?;
        let path = entry.path();
        let meta = match fs::symlink_metadata(&path) {
            Ok(m) => m,
            // sled may delete a snapshot between listing and stat.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io("inspect", &path)(e)),
        };
        let want = if meta.is_dir() {
            0o700
        } else if meta.is_file() {
            0o600
        } else {
            continue;
        };
        if meta.permissions().mode() & 0o777 != want {
            match fs::set_permissions(&path, fs::Permissions::from_mode(want)) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io("restrict permissions of", &path)(e)),
            }
        }
        if meta.is_dir() {
            tighten(&path)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_open_is_refused_naming_the_pid() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("state");
        let first = StateDir::open(&root).expect("first open");
        let err = StateDir::open(&root).expect_err("second open must fail");
        let text = err.to_string();
        assert!(text.contains(&std::process::id().to_string()), "{text}");
        assert!(text.contains(&root.display().to_string()), "{text}");
        drop(first);
        StateDir::open(&root).expect("open after release");
    }

    #[test]
    fn directory_and_files_are_private() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path().join("state");
        fs::create_dir(&root).expect("mkdir");
        fs::set_permissions(&root, fs::Permissions::from_mode(0o755)).expect("chmod");
        let dir = StateDir::open(&root).expect("open");
        let loose = dir.db_path().join("loose");
        fs::write(&loose, b"x").expect("write");
        fs::set_permissions(&loose, fs::Permissions::from_mode(0o644)).expect("chmod");
        dir.tighten_permissions().expect("tighten");
        let mode = |p: &Path| fs::metadata(p).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode(&root), 0o700);
        assert_eq!(mode(&dir.db_path()), 0o700);
        assert_eq!(mode(&dir.keys_path()), 0o700);
        assert_eq!(mode(&root.join("lock")), 0o600);
        assert_eq!(mode(&loose), 0o600);
    }
}
