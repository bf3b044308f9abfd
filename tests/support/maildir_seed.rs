//! Seeding a user's mail fast, by writing Maildir files directly, and adding mail to a
//! running server over IMAP (APPEND).
//!
//! Direct writes follow Maildir (cr.yp.to/proto/maildir.html) as Dovecot reads it: each file
//! is written in `tmp/`, given its INTERNALDATE as mtime and the mail owner, then renamed
//! into `cur/` with its flags after `:2,`; keywords are letters a–z indexed by the folder's
//! `dovecot-keywords` file. `doveadm force-resync` then indexes everything at once.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::dovecot::{Dovecot, Layout, chown, set_mode};
use super::folder_path::FolderPath;
use super::imap_client::AppendUid;
use super::internal_date::InternalDate;
use super::kit_error::KitError;
use super::message_flag::Flag;

static FILE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Maildir file names carry at most 26 keywords per folder (letters a–z).
const MAX_KEYWORDS_PER_FOLDER: usize = 26;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedFolder {
    pub path: FolderPath,
    pub subscribed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeedMessage {
    pub folder: FolderPath,
    pub bytes: Vec<u8>,
    pub flags: Vec<Flag>,
    pub internal_date: InternalDate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeedReport {
    pub folders: usize,
    pub messages: usize,
    pub bytes: u64,
    /// Writing the files.
    pub write_time: Duration,
    /// `doveadm force-resync`.
    pub index_time: Duration,
}

struct FolderState {
    dir: PathBuf,
    keywords: Vec<String>,
    expected_messages: usize,
}

impl Dovecot {
    /// Creates `folders` (and subscribes those marked so) for `user`, writes `messages`
    /// straight into their Maildirs and has Dovecot index them. Works on a running
    /// instance; messages are added to whatever the folders already hold.
    pub fn seed(
        &self,
        user: &str,
        folders: &[SeedFolder],
        messages: impl IntoIterator<Item = SeedMessage>,
    ) -> Result<SeedReport, KitError> {
        let start = Instant::now();
        self.password(user)?;
        for folder in folders {
            self.check_storable(&folder.path)?;
        }
        let existing: HashSet<String> = self
            .doveadm(&["mailbox", "list", "-u", user])?
            .lines()
            .map(str::to_owned)
            .collect();
        let sep = self.separator();
        let to_create: Vec<String> = folders
            .iter()
            .filter(|f| !f.path.is_inbox())
            .map(|f| f.path.join(sep))
            .filter(|name| !existing.contains(name))
            .collect();
        if !to_create.is_empty() {
            let mut args = vec!["mailbox", "create", "-u", user, "--"];
            args.extend(to_create.iter().map(String::as_str));
            self.doveadm(&args)?;
        }
        let to_subscribe: Vec<String> = folders
            .iter()
            .filter(|f| f.subscribed)
            .map(|f| f.path.join(sep))
            .collect();
        if !to_subscribe.is_empty() {
            let mut args = vec!["mailbox", "subscribe", "-u", user, "--"];
            args.extend(to_subscribe.iter().map(String::as_str));
            self.doveadm(&args)?;
        }

        let mut states: HashMap<FolderPath, FolderState> = HashMap::new();
        let mut inbox_listed = false;
        for folder in folders {
            inbox_listed |= folder.path.is_inbox();
            self.add_folder_state(user, &folder.path, &mut states)?;
        }
        if !inbox_listed {
            self.add_folder_state(user, &FolderPath::inbox(), &mut states)?;
        }

        let (uid, gid) = self.mail_owner();
        let mut report = SeedReport {
            folders: folders.len(),
            messages: 0,
            bytes: 0,
            write_time: Duration::ZERO,
            index_time: Duration::ZERO,
        };
        for message in messages {
            let key = if message.folder.is_inbox() {
                FolderPath::inbox()
            } else {
                message.folder.clone()
            };
            let Some(state) = states.get_mut(&key) else {
                return Err(KitError::Usage(format!(
                    "a seed message is for folder {} which is not among the folders to seed; add it to the folder list",
                    message.folder
                )));
            };
            let info = maildir_info(&message.flags, state, &message.folder, uid, gid)?;
            write_message(&state.dir, &message, &info, uid, gid)?;
            state.expected_messages += 1;
            report.messages += 1;
            report.bytes += message.bytes.len() as u64;
        }
        report.write_time = start.elapsed();

        let index_start = Instant::now();
        self.doveadm(&["force-resync", "-u", user, "*"])?;
        report.index_time = index_start.elapsed();
        self.check_counts(user, &states)?;
        Ok(report)
    }

    /// Refuses names this instance cannot store, with the reason.
    pub fn check_storable(&self, path: &FolderPath) -> Result<(), KitError> {
        let sep = self.separator();
        if path.0.is_empty() || path.0.iter().any(String::is_empty) {
            return Err(KitError::Usage(format!(
                "folder {path} has an empty name component"
            )));
        }
        if let Some(component) = path.component_containing(sep) {
            return Err(KitError::Usage(format!(
                "folder {path}: component {component:?} contains this server's separator {sep:?}; \
                 a {:?} server cannot store it (use an fs-layout server, or the listescape plugin)",
                self.layout()
            )));
        }
        if path.0.iter().any(|c| c.chars().any(char::is_control)) {
            return Err(KitError::Usage(format!(
                "folder {path} contains a control character"
            )));
        }
        if self.layout() == Layout::Fs
            && let Some(reserved) = path
                .0
                .iter()
                .find(|c| ["cur", "new", "tmp"].contains(&c.as_str()))
        {
            return Err(KitError::Usage(format!(
                "folder {path}: Dovecot's LAYOUT=fs keeps INBOX in the Maildir root and refuses the reserved name {reserved:?}"
            )));
        }
        Ok(())
    }

    fn add_folder_state(
        &self,
        user: &str,
        path: &FolderPath,
        states: &mut HashMap<FolderPath, FolderState>,
    ) -> Result<(), KitError> {
        let key = if path.is_inbox() {
            FolderPath::inbox()
        } else {
            path.clone()
        };
        if states.contains_key(&key) {
            return Ok(());
        }
        let name = path.join(self.separator());
        let dir = PathBuf::from(
            self.doveadm(&["mailbox", "path", "-u", user, "--", &name])?
                .trim_end_matches('\n'),
        );
        for sub in ["cur", "new", "tmp"] {
            let d = dir.join(sub);
            if !d.is_dir() {
                // doveadm creates these lazily for some layouts; create them as the owner.
                std::fs::create_dir_all(&d).map_err(|e| KitError::file("create", &d, e))?;
                set_mode(&d, 0o700)?;
                let (uid, gid) = self.mail_owner();
                chown(&d, uid, gid)?;
            }
        }
        let keywords = read_keywords(&dir.join("dovecot-keywords"))?;
        let already = std::fs::read_dir(dir.join("cur"))
            .map_err(|e| KitError::file("list", dir.join("cur"), e))?
            .count()
            + std::fs::read_dir(dir.join("new"))
                .map_err(|e| KitError::file("list", dir.join("new"), e))?
                .count();
        states.insert(
            key,
            FolderState {
                dir,
                keywords,
                expected_messages: already,
            },
        );
        Ok(())
    }

    /// Proves Dovecot indexed every file written: a file it could not read would otherwise
    /// only show up later as a confusing verifier difference.
    fn check_counts(
        &self,
        user: &str,
        states: &HashMap<FolderPath, FolderState>,
    ) -> Result<(), KitError> {
        let mut names: Vec<(String, usize)> = states
            .iter()
            .map(|(path, s)| (path.join(self.separator()), s.expected_messages))
            .collect();
        names.sort();
        let mut args = vec![
            "-f", "tab", "mailbox", "status", "-u", user, "messages", "--",
        ];
        args.extend(names.iter().map(|(n, _)| n.as_str()));
        let output = self.doveadm(&args)?;
        let counts: HashMap<&str, usize> = output
            .lines()
            .skip(1)
            .filter_map(|line| {
                let (name, count) = line.rsplit_once('\t')?;
                Some((name, count.trim().parse().ok()?))
            })
            .collect();
        for (name, expected) in &names {
            let found = counts.get(name.as_str()).copied();
            if found != Some(*expected) {
                return Err(self.error(
                    "index seeded mail",
                    format!(
                        "folder {name:?} of {user} holds {found:?} messages after force-resync, expected {expected}"
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Adds messages to a running server over IMAP (`APPEND` with flags and INTERNALDATE),
    /// as the master user acting for `user`; creates missing folders. Returns APPENDUIDs.
    pub fn append_messages(
        &self,
        user: &str,
        messages: impl IntoIterator<Item = SeedMessage>,
    ) -> Result<Vec<Option<AppendUid>>, KitError> {
        let mut client = self.connect_master(user)?;
        let mut created: HashSet<FolderPath> = HashSet::new();
        let mut uids = Vec::new();
        for message in messages {
            self.check_storable(&message.folder)?;
            let name = message.folder.join(self.separator());
            let first = client.append(
                &name,
                &message.flags,
                Some(message.internal_date),
                &message.bytes,
            );
            let uid = match first {
                Err(KitError::Refused { ref text, .. })
                    if text.starts_with("[TRYCREATE]") && !created.contains(&message.folder) =>
                {
                    client.create(&name)?;
                    created.insert(message.folder.clone());
                    client.append(
                        &name,
                        &message.flags,
                        Some(message.internal_date),
                        &message.bytes,
                    )?
                }
                other => other?,
            };
            uids.push(uid);
        }
        client.logout()?;
        Ok(uids)
    }
}

/// The `:2,` info: system flag letters then keyword letters, in ASCII order as Maildir wants.
fn maildir_info(
    flags: &[Flag],
    state: &mut FolderState,
    folder: &FolderPath,
    uid: u32,
    gid: u32,
) -> Result<String, KitError> {
    let mut letters: Vec<char> = Vec::new();
    for flag in flags {
        if let Some(letter) = flag.maildir_letter() {
            letters.push(letter);
            continue;
        }
        let Flag::Keyword(keyword) = flag else {
            continue;
        };
        if !Flag::is_valid_keyword(keyword) {
            return Err(KitError::Usage(format!(
                "keyword {keyword:?} for folder {folder} is not an IMAP atom"
            )));
        }
        let index = match state.keywords.iter().position(|k| k == keyword) {
            Some(i) => i,
            None => {
                if state.keywords.len() == MAX_KEYWORDS_PER_FOLDER {
                    return Err(KitError::Usage(format!(
                        "folder {folder} would need a 27th keyword ({keyword}); Maildir file names hold 26 at most"
                    )));
                }
                state.keywords.push(keyword.clone());
                // Written before the message that uses it, so Dovecot never sees an
                // unknown letter.
                write_keywords(
                    &state.dir.join("dovecot-keywords"),
                    &state.keywords,
                    uid,
                    gid,
                )?;
                state.keywords.len() - 1
            }
        };
        letters.push(char::from(b'a' + index as u8));
    }
    letters.sort_unstable();
    letters.dedup();
    Ok(letters.into_iter().collect())
}

fn write_message(
    dir: &Path,
    message: &SeedMessage,
    info: &str,
    uid: u32,
    gid: u32,
) -> Result<(), KitError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    let base = format!(
        "{}.M{}P{}Q{}.imapmirror-kit,S={}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        FILE_COUNTER.fetch_add(1, Ordering::Relaxed),
        message.bytes.len()
    );
    let tmp = dir.join("tmp").join(&base);
    let mut file = File::create(&tmp).map_err(|e| KitError::file("create", &tmp, e))?;
    file.write_all(&message.bytes)
        .map_err(|e| KitError::file("write", &tmp, e))?;
    // The mtime is the INTERNALDATE Dovecot will report.
    file.set_modified(message.internal_date.to_system_time())
        .map_err(|e| KitError::file("set the mtime of", &tmp, e))?;
    drop(file);
    set_mode(&tmp, 0o600)?;
    chown(&tmp, uid, gid)?;
    let cur = dir.join("cur").join(format!("{base}:2,{info}"));
    std::fs::rename(&tmp, &cur).map_err(|e| KitError::file("rename into cur/", &tmp, e))
}

/// `dovecot-keywords`: one `index name` per line.
fn read_keywords(path: &Path) -> Result<Vec<String>, KitError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(KitError::file("read", path, e)),
    };
    let mut keywords: Vec<String> = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let parsed = line
            .split_once(' ')
            .and_then(|(i, name)| Some((i.parse::<usize>().ok()?, name)));
        match parsed {
            Some((i, name)) if i < MAX_KEYWORDS_PER_FOLDER => {
                if keywords.len() <= i {
                    keywords.resize(i + 1, String::new());
                }
                keywords[i] = name.to_owned();
            }
            _ => {
                return Err(KitError::file(
                    "read",
                    path,
                    std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("unexpected line {line:?}, expected `index keyword`"),
                    ),
                ));
            }
        }
    }
    Ok(keywords)
}

fn write_keywords(path: &Path, keywords: &[String], uid: u32, gid: u32) -> Result<(), KitError> {
    let text: String = keywords
        .iter()
        .enumerate()
        .filter(|(_, k)| !k.is_empty())
        .map(|(i, k)| format!("{i} {k}\n"))
        .collect();
    let tmp = path.with_extension("imapmirror-kit.tmp");
    std::fs::write(&tmp, text).map_err(|e| KitError::file("write", &tmp, e))?;
    set_mode(&tmp, 0o600)?;
    chown(&tmp, uid, gid)?;
    std::fs::rename(&tmp, path).map_err(|e| KitError::file("rename", &tmp, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keywords_file_round_trip() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("dovecot-keywords");
        assert_eq!(read_keywords(&path).ok(), Some(Vec::new()));
        let me = std::fs::metadata(dir.path()).expect("stat");
        use std::os::unix::fs::MetadataExt;
        let words = vec!["$Forwarded".to_owned(), "NonJunk".to_owned()];
        write_keywords(&path, &words, me.uid(), me.gid()).expect("write");
        assert_eq!(
            std::fs::read_to_string(&path).ok().as_deref(),
            Some("0 $Forwarded\n1 NonJunk\n")
        );
        assert_eq!(read_keywords(&path).ok(), Some(words));
        std::fs::write(&path, "x y\n").expect("write garbage");
        assert!(read_keywords(&path).is_err());
    }

    #[test]
    fn info_letters_are_sorted() {
        let dir = tempfile::tempdir().expect("temp dir");
        let me = std::fs::metadata(dir.path()).expect("stat");
        use std::os::unix::fs::MetadataExt;
        let mut state = FolderState {
            dir: dir.path().to_path_buf(),
            keywords: vec!["$Junk".to_owned()],
            expected_messages: 0,
        };
        let flags = [
            Flag::Seen,
            Flag::Keyword("NonJunk".into()),
            Flag::Draft,
            Flag::Keyword("$Junk".into()),
            Flag::Answered,
        ];
        let info = maildir_info(&flags, &mut state, &FolderPath::inbox(), me.uid(), me.gid())
            .expect("info");
        assert_eq!(info, "DRSab");
        assert_eq!(state.keywords, ["$Junk", "NonJunk"]);
    }
}
