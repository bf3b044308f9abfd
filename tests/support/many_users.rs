//! Many users on one instance, seeded fast: for load benches with hundreds or thousands of
//! mailboxes, where `Dovecot::seed` (some twenty doveadm calls per user) would take minutes.
//!
//! The folders are created once with doveadm for the first user, the template; its
//! directory skeleton (folder directories, `maildirfolder` markers, the subscriptions
//! file, but no index or uid list) is copied to every other user. Messages are written as
//! Maildir files exactly as `Dovecot::seed` writes them, then one `doveadm force-resync`
//! indexes every user and one `doveadm mailbox status` proves each folder holds what was
//! written. Works for both layouts, since the directory of each folder is asked of Dovecot.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::dovecot::{Dovecot, DovecotBuilder, chown, set_mode};
use super::folder_path::FolderPath;
use super::kit_error::KitError;
use super::maildir_seed::{SeedFolder, SeedMessage};
use super::message_flag::Flag;

static MANY_FILE_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Letters a–z: Maildir file names carry at most 26 keywords per folder.
const MAX_KEYWORDS: usize = 26;

/// Dovecot's defaults allow 100 processes per service, i.e. 100 IMAP sessions at once; a
/// migration of many mailboxes (20 mailboxes × 4 folders × 2 servers, plus a verifier)
/// comes close, and Dovecot then drops connections, which a bench would blame on the
/// client. These limits keep the server out of the way.
pub const MANY_USERS_CONFIG: &str = "default_process_limit = 1000
default_client_limit = 4000
service auth {
  client_limit = 6000
}
";

impl DovecotBuilder {
    /// Adds every (user, password) of `users`, e.g. a thousand generated accounts.
    pub fn users<U, P>(self, users: impl IntoIterator<Item = (U, P)>) -> Self
    where
        U: AsRef<str>,
        P: AsRef<str>,
    {
        users
            .into_iter()
            .fold(self, |builder, (u, p)| builder.user(u.as_ref(), p.as_ref()))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ManySeedReport {
    pub users: usize,
    pub folders_per_user: usize,
    pub messages: usize,
    pub bytes: u64,
    /// Folders, skeletons and message files.
    pub write_time: Duration,
    /// One `doveadm force-resync` over all users.
    pub index_time: Duration,
}

impl Dovecot {
    /// Seeds `users` (all of them users of this instance, whose Maildirs are still empty)
    /// with the same `folders` and each with its own messages, `messages_of(index, user)`.
    /// The first user is the template the folders are created for.
    pub fn seed_many<I>(
        &self,
        users: &[&str],
        folders: &[SeedFolder],
        mut messages_of: impl FnMut(usize, &str) -> I,
    ) -> Result<ManySeedReport, KitError>
    where
        I: IntoIterator<Item = SeedMessage>,
    {
        let start = Instant::now();
        let Some(template) = users.first().copied() else {
            return Ok(ManySeedReport {
                users: 0,
                folders_per_user: folders.len(),
                messages: 0,
                bytes: 0,
                write_time: Duration::ZERO,
                index_time: Duration::ZERO,
            });
        };
        for user in users {
            self.password(user)?;
        }
        let sep = self.separator();
        let mut paths: Vec<FolderPath> = vec![FolderPath::inbox()];
        for folder in folders {
            self.check_storable(&folder.path)?;
            if !folder.path.is_inbox() {
                paths.push(folder.path.clone());
            }
        }
        let to_create: Vec<String> = paths[1..].iter().map(|p| p.join(sep)).collect();
        if !to_create.is_empty() {
            let mut args = vec!["mailbox", "create", "-u", template, "--"];
            args.extend(to_create.iter().map(String::as_str));
            self.doveadm(&args)?;
        }
        let subscribed: Vec<String> = folders
            .iter()
            .filter(|f| f.subscribed)
            .map(|f| f.path.join(sep))
            .collect();
        if !subscribed.is_empty() {
            let mut args = vec!["mailbox", "subscribe", "-u", template, "--"];
            args.extend(subscribed.iter().map(String::as_str));
            self.doveadm(&args)?;
        }

        // Each folder's directory relative to the home, the same for every user.
        let template_home = self.home(template)?;
        let mut relative: HashMap<FolderPath, PathBuf> = HashMap::new();
        for path in &paths {
            let out = self.doveadm(&["mailbox", "path", "-u", template, "--", &path.join(sep)])?;
            let dir = PathBuf::from(out.trim_end_matches('\n'));
            let rel = dir
                .strip_prefix(&template_home)
                .map_err(|_| {
                    self.error(
                        "seed many users",
                        format!(
                            "folder {path} of {template} is stored at {}, outside its home {}",
                            dir.display(),
                            template_home.display()
                        ),
                    )
                })?
                .to_path_buf();
            relative.insert(path.clone(), rel);
        }
        for rel in relative.values() {
            for sub in ["cur", "new", "tmp"] {
                self.make_owned_dirs(&template_home, &rel.join(sub))?;
            }
        }
        let skeleton = skeleton_of(&template_home)?;

        let (uid, gid) = self.mail_owner();
        let mut report = ManySeedReport {
            users: users.len(),
            folders_per_user: paths.len(),
            messages: 0,
            bytes: 0,
            write_time: Duration::ZERO,
            index_time: Duration::ZERO,
        };
        // (user, folder name as doveadm prints it) -> messages written
        let mut expected: BTreeMap<(String, String), usize> = BTreeMap::new();
        for (index, user) in users.iter().enumerate() {
            let home = self.home(user)?;
            if index > 0 {
                self.copy_skeleton(&template_home, &home, &skeleton)?;
            }
            for path in &paths {
                expected.insert((user.to_string(), path.join(sep)), 0);
            }
            let mut keywords: HashMap<FolderPath, Vec<String>> = HashMap::new();
            for message in messages_of(index, user) {
                let key = if message.folder.is_inbox() {
                    FolderPath::inbox()
                } else {
                    message.folder.clone()
                };
                let Some(rel) = relative.get(&key) else {
                    return Err(KitError::Usage(format!(
                        "a seed message for {user} is for folder {} which is not among the folders to seed",
                        message.folder
                    )));
                };
                let dir = home.join(rel);
                let words = keywords.entry(key.clone()).or_default();
                let info = info_letters(&message.flags, words, &message.folder)?;
                write_maildir_file(&dir, &message, &info, uid, gid)?;
                *expected
                    .entry((user.to_string(), key.join(sep)))
                    .or_default() += 1;
                report.messages += 1;
                report.bytes += message.bytes.len() as u64;
            }
            for (folder, words) in &keywords {
                let dir = home.join(&relative[folder]);
                write_owned(
                    &dir.join("dovecot-keywords"),
                    words
                        .iter()
                        .enumerate()
                        .map(|(i, k)| format!("{i} {k}\n"))
                        .collect::<String>()
                        .as_bytes(),
                    uid,
                    gid,
                )?;
            }
        }
        report.write_time = start.elapsed();

        let list = self.dir().join(format!(
            "seed-many-{}.users",
            MANY_FILE_COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let names: String = users.iter().map(|u| format!("{u}\n")).collect();
        std::fs::write(&list, names).map_err(|e| KitError::file("write", &list, e))?;
        set_mode(&list, 0o644)?;
        let list_arg = list.display().to_string();
        let index_start = Instant::now();
        self.doveadm(&["force-resync", "-F", &list_arg, "*"])?;
        report.index_time = index_start.elapsed();

        let output = self.doveadm(&[
            "-f", "tab", "mailbox", "status", "-F", &list_arg, "messages", "*",
        ])?;
        let mut found: HashMap<(String, String), usize> = HashMap::new();
        for line in output.lines().skip(1) {
            let fields: Vec<&str> = line.split('\t').collect();
            if let [user, name, count] = fields[..]
                && let Ok(count) = count.trim().parse()
            {
                found.insert((user.to_owned(), name.to_owned()), count);
            }
        }
        for ((user, name), count) in &expected {
            let got = found.get(&(user.clone(), name.clone())).copied();
            if got != Some(*count) {
                return Err(self.error(
                    "index seeded mail",
                    format!(
                        "folder {name:?} of {user} holds {got:?} messages after force-resync, expected {count}"
                    ),
                ));
            }
        }
        Ok(report)
    }

    fn make_owned_dirs(&self, home: &Path, rel: &Path) -> Result<(), KitError> {
        let (uid, gid) = self.mail_owner();
        let mut dir = home.to_path_buf();
        for part in rel.components() {
            dir.push(part);
            if !dir.is_dir() {
                std::fs::create_dir(&dir).map_err(|e| KitError::file("create", &dir, e))?;
                set_mode(&dir, 0o700)?;
                chown(&dir, uid, gid)?;
            }
        }
        Ok(())
    }

    fn copy_skeleton(&self, from: &Path, to: &Path, skeleton: &Skeleton) -> Result<(), KitError> {
        let (uid, gid) = self.mail_owner();
        for rel in &skeleton.dirs {
            self.make_owned_dirs(to, rel)?;
        }
        for rel in &skeleton.files {
            let bytes = std::fs::read(from.join(rel))
                .map_err(|e| KitError::file("read", from.join(rel), e))?;
            write_owned(&to.join(rel), &bytes, uid, gid)?;
        }
        Ok(())
    }
}

/// What every user's home gets: directories and the small files that are neither mail nor
/// Dovecot's indexes (which carry the template's mailbox GUIDs and UIDVALIDITYs).
struct Skeleton {
    dirs: Vec<PathBuf>,
    files: Vec<PathBuf>,
}

fn skeleton_of(home: &Path) -> Result<Skeleton, KitError> {
    let mut skeleton = Skeleton {
        dirs: Vec::new(),
        files: Vec::new(),
    };
    let mut pending = vec![PathBuf::new()];
    while let Some(rel) = pending.pop() {
        let dir = home.join(&rel);
        let entries = std::fs::read_dir(&dir).map_err(|e| KitError::file("list", &dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| KitError::file("list", &dir, e))?;
            let name = entry.file_name();
            let child = rel.join(&name);
            let kind = entry
                .file_type()
                .map_err(|e| KitError::file("stat", entry.path(), e))?;
            if kind.is_dir() {
                skeleton.dirs.push(child.clone());
                // Mail files live in cur/ and new/; only the directories are copied.
                if !matches!(name.to_str(), Some("cur" | "new" | "tmp")) {
                    pending.push(child);
                }
            } else if kind.is_file()
                && !name.to_string_lossy().starts_with("dovecot")
                && !matches!(
                    rel.file_name().and_then(|n| n.to_str()),
                    Some("cur" | "new" | "tmp")
                )
            {
                skeleton.files.push(child);
            }
        }
    }
    skeleton.dirs.sort();
    skeleton.files.sort();
    Ok(skeleton)
}

/// The `:2,` info letters (system flags, then keyword letters, in ASCII order); keywords
/// new to the folder are added to `keywords`.
fn info_letters(
    flags: &[Flag],
    keywords: &mut Vec<String>,
    folder: &FolderPath,
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
        let index = match keywords.iter().position(|k| k == keyword) {
            Some(i) => i,
            None if keywords.len() == MAX_KEYWORDS => {
                return Err(KitError::Usage(format!(
                    "folder {folder} would need a 27th keyword ({keyword}); Maildir file names hold 26 at most"
                )));
            }
            None => {
                keywords.push(keyword.clone());
                keywords.len() - 1
            }
        };
        letters.push(char::from(b'a' + index as u8));
    }
    letters.sort_unstable();
    letters.dedup();
    Ok(letters.into_iter().collect())
}

fn write_maildir_file(
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
        "{}.M{}P{}Q{}.imapmirror-kit-many,S={}",
        now.as_secs(),
        now.subsec_micros(),
        std::process::id(),
        MANY_FILE_COUNTER.fetch_add(1, Ordering::Relaxed),
        message.bytes.len()
    );
    let tmp = dir.join("tmp").join(&base);
    let mut file = std::fs::File::create(&tmp).map_err(|e| KitError::file("create", &tmp, e))?;
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

fn write_owned(path: &Path, bytes: &[u8], uid: u32, gid: u32) -> Result<(), KitError> {
    std::fs::write(path, bytes).map_err(|e| KitError::file("write", path, e))?;
    set_mode(path, 0o600)?;
    chown(path, uid, gid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyword_letters_follow_first_use() {
        let mut words = vec!["$Junk".to_owned()];
        let flags = [
            Flag::Seen,
            Flag::Keyword("NonJunk".into()),
            Flag::Draft,
            Flag::Keyword("$Junk".into()),
        ];
        let info = info_letters(&flags, &mut words, &FolderPath::inbox()).expect("letters");
        assert_eq!(info, "DSab");
        assert_eq!(words, ["$Junk", "NonJunk"]);
    }

    #[test]
    fn skeleton_leaves_out_mail_and_indexes() {
        let home = tempfile::tempdir().expect("temp dir");
        let root = home.path();
        for dir in ["Maildir/cur", "Maildir/.Sent/cur", "Maildir/.Sent/tmp"] {
            std::fs::create_dir_all(root.join(dir)).expect("mkdir");
        }
        for file in [
            "Maildir/subscriptions",
            "Maildir/dovecot-uidlist",
            "Maildir/.Sent/maildirfolder",
            "Maildir/.Sent/dovecot.index.log",
            "Maildir/cur/1.M1:2,S",
        ] {
            std::fs::write(root.join(file), b"x").expect("write");
        }
        let s = skeleton_of(root).expect("skeleton");
        assert_eq!(
            s.files,
            [
                PathBuf::from("Maildir/.Sent/maildirfolder"),
                PathBuf::from("Maildir/subscriptions")
            ]
        );
        assert!(s.dirs.contains(&PathBuf::from("Maildir/.Sent/tmp")));
    }
}
