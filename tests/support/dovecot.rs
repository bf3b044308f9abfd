//! Private Dovecot instances from Debian's dovecot-imapd, one temp dir each.
//!
//! Each instance has its own base_dir, state_dir, log and loopback ports (plain with STARTTLS,
//! and implicit TLS with a certificate from a per-instance CA), users from a passwd-file and
//! a master user. The instance runs in the foreground as our child (`dovecot -F`), so it is
//! stopped by its own pid and reaped by us, also when a test panics (Drop).
//!
//! Root (CI): mail is owned by the system user `vmail`, since Dovecot refuses to access mail
//! as root. Non-root: everything runs as the current user, login chroots are off.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rustls::RootCertStore;

use super::imap_client::{Credentials, DEFAULT_TIMEOUT, Endpoint, ImapClient, Security};
use super::kit_error::KitError;
use super::process_table::{self, ProcessId};
use super::tls_material::TlsMaterial;

pub const DEFAULT_USER: &str = "user@example.test";
pub const DEFAULT_PASSWORD: &str = "user-secret";
pub const MASTER_USER: &str = "mailadmin";
pub const MASTER_PASSWORD: &str = "master-secret";

/// Set to keep instance directories (config, logs, Maildirs) after the test, for debugging.
pub const KEEP_DIRS_ENV: &str = "IMAPMIRROR_KEEP_DOVECOT";

const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
const STOP_TIMEOUT: Duration = Duration::from_secs(15);

static INSTANCE_COUNTER: AtomicU32 = AtomicU32::new(0);

/// How folders are stored, and hence the hierarchy separator the server announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `maildir:~/Maildir`, folders as `.a.b` directories; separator `.`.
    MaildirPlusPlus,
    /// `maildir:~/Maildir:LAYOUT=fs`, folders as `a/b` directories; separator `/`.
    /// INBOX is the Maildir root, so folders named `cur`, `new`, `tmp` are refused.
    Fs,
}

impl Layout {
    pub fn separator(self) -> char {
        match self {
            Layout::MaildirPlusPlus => '.',
            Layout::Fs => '/',
        }
    }

    fn mail_location(self) -> &'static str {
        match self {
            Layout::MaildirPlusPlus => "maildir:~/Maildir",
            Layout::Fs => "maildir:~/Maildir:LAYOUT=fs",
        }
    }
}

/// Dovecot's `mail_fsync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    /// Dovecot's default; benchmark with this.
    Optimized,
    Always,
    Never,
}

impl Fsync {
    fn setting(self) -> &'static str {
        match self {
            Fsync::Optimized => "optimized",
            Fsync::Always => "always",
            Fsync::Never => "never",
        }
    }
}

/// How a client reaches the instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    /// The plain port, no TLS.
    None,
    /// The plain port, upgraded with STARTTLS.
    StartTls,
    /// The `imaps` port, TLS from the first byte.
    Implicit,
}

#[derive(Clone)]
pub struct DovecotBuilder {
    label: String,
    layout: Layout,
    fsync: Fsync,
    users: Vec<(String, String)>,
    master: (String, String),
    extra_config: Vec<String>,
    max_userip_connections: u32,
    oauth2_introspection: Option<String>,
}

impl DovecotBuilder {
    /// A label for logs and reports ("source", "target").
    pub fn label(mut self, label: &str) -> Self {
        self.label = label.to_owned();
        self
    }

    pub fn layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }

    pub fn fsync(mut self, fsync: Fsync) -> Self {
        self.fsync = fsync;
        self
    }

    /// Adds a user (if none is added, `DEFAULT_USER` exists).
    pub fn user(mut self, name: &str, password: &str) -> Self {
        self.users.push((name.to_owned(), password.to_owned()));
        self
    }

    pub fn master(mut self, name: &str, password: &str) -> Self {
        self.master = (name.to_owned(), password.to_owned());
        self
    }

    /// A configuration line (or block) appended verbatim, e.g. `mail_plugins = listescape`.
    pub fn extra_config(mut self, text: &str) -> Self {
        self.extra_config.push(text.to_owned());
        self
    }

    /// Accepts XOAUTH2 and OAUTHBEARER logins whose token `url` says is `active` for
    /// `username`, through Dovecot's `passdb oauth2`: a GET of `url` with the token
    /// appended (`tokeninfo_url`), since Dovecot 2.3.19's `introspection_mode = post`
    /// panics (http_client_request_set_payload). Passwords keep working.
    pub fn oauth2_introspection(mut self, url: &str) -> Self {
        self.oauth2_introspection = Some(url.to_owned());
        self
    }

    /// Dovecot's default of 10 is too few for parallel tests from 127.0.0.1.
    pub fn max_userip_connections(mut self, n: u32) -> Self {
        self.max_userip_connections = n;
        self
    }

    pub fn start(self) -> Result<Dovecot, KitError> {
        Dovecot::start_with(self)
    }
}

/// The user Dovecot stores mail as, and the users its own processes run as.
#[derive(Debug, Clone)]
struct RunAs {
    mail_uid: u32,
    mail_gid: u32,
    /// None when running as root: Dovecot's packaged defaults (dovenull, dovecot) apply.
    unprivileged_user: Option<(String, String)>,
}

pub struct Dovecot {
    label: String,
    instance_name: String,
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    config_path: PathBuf,
    log_path: PathBuf,
    stderr_path: PathBuf,
    plain_addr: SocketAddr,
    tls_addr: SocketAddr,
    tls: TlsMaterial,
    layout: Layout,
    users: Vec<(String, String)>,
    master: (String, String),
    run_as: RunAs,
    doveadm: PathBuf,
    child: Option<Child>,
    master_process: Option<ProcessId>,
}

impl Dovecot {
    pub fn builder() -> DovecotBuilder {
        DovecotBuilder {
            label: "dovecot".to_owned(),
            layout: Layout::MaildirPlusPlus,
            fsync: Fsync::Optimized,
            users: Vec::new(),
            master: (MASTER_USER.to_owned(), MASTER_PASSWORD.to_owned()),
            extra_config: Vec::new(),
            max_userip_connections: 200,
            oauth2_introspection: None,
        }
    }

    /// An instance with the default user and master user.
    pub fn start(layout: Layout) -> Result<Dovecot, KitError> {
        Dovecot::builder().layout(layout).start()
    }

    fn start_with(mut builder: DovecotBuilder) -> Result<Dovecot, KitError> {
        if builder.users.is_empty() {
            builder
                .users
                .push((DEFAULT_USER.to_owned(), DEFAULT_PASSWORD.to_owned()));
        }
        for (name, password) in builder.users.iter().chain([&builder.master]) {
            validate_passwd_field(name, "user name")?;
            validate_passwd_field(password, "password")?;
        }
        let dovecot_bin = binary("IMAPMIRROR_DOVECOT", "/usr/sbin/dovecot")?;
        let doveadm = binary("IMAPMIRROR_DOVEADM", "/usr/bin/doveadm")?;
        let run_as = run_as()?;

        let n = INSTANCE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let instance_name = format!("imapmirror-kit-{}-{n}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix(&format!("{instance_name}-"))
            .tempdir()
            .map_err(|e| KitError::file("create a temp dir in", std::env::temp_dir(), e))?;
        let root = dir.path().to_path_buf();
        // The mail user must traverse the instance directory to reach its home.
        set_mode(&root, 0o755)?;
        for sub in ["run", "state", "log", "tls", "home"] {
            create_dir(&root.join(sub), 0o755)?;
        }
        let tls = TlsMaterial::generate(&root.join("tls"), &instance_name)?;

        let mut users = Vec::new();
        let mut passwd = String::new();
        for (name, password) in &builder.users {
            let home = root.join("home").join(home_dir_name(name));
            create_dir(&home, 0o700)?;
            chown(&home, run_as.mail_uid, run_as.mail_gid)?;
            passwd.push_str(&format!(
                "{name}:{{PLAIN}}{password}:{}:{}::{}::\n",
                run_as.mail_uid,
                run_as.mail_gid,
                home.display()
            ));
            users.push((name.clone(), password.clone()));
        }
        write_file(&root.join("passwd"), &passwd, 0o644)?;
        if let Some(url) = &builder.oauth2_introspection {
            write_file(
                &root.join("dovecot-oauth2.conf.ext"),
                &format!(
                    "tokeninfo_url = {url}\ntimeout_msecs = 0\nusername_attribute = username\nactive_attribute = active\nactive_value = true\n"
                ),
                0o644,
            )?;
        }
        write_file(
            &root.join("master-users"),
            &format!("{}:{{PLAIN}}{}::::::\n", builder.master.0, builder.master.1),
            0o644,
        )?;

        let config_path = root.join("dovecot.conf");
        let log_path = root.join("log").join("dovecot.log");
        let stderr_path = root.join("log").join("stderr.log");
        let mut server = Dovecot {
            label: builder.label.clone(),
            instance_name,
            dir: Some(dir),
            root,
            config_path,
            log_path,
            stderr_path,
            plain_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            tls_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            tls,
            layout: builder.layout,
            users,
            master: builder.master.clone(),
            run_as,
            doveadm,
            child: None,
            master_process: None,
        };

        // A port found free may be taken by someone else before Dovecot binds it; retry.
        let mut last_error = None;
        for _attempt in 0..5 {
            (server.plain_addr, server.tls_addr) = free_port_pair()?;
            write_file(&server.config_path, &server.render_config(&builder), 0o644)?;
            match server.spawn_and_wait(&dovecot_bin) {
                Ok(()) => return Ok(server),
                Err(e) => {
                    server.stop_quietly();
                    let tail = server.log_tail(20);
                    if !tail.contains("Address already in use")
                        && !e.to_string().contains("duplicate listener")
                    {
                        return Err(e);
                    }
                    last_error = Some(e);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| server.error("start", "no attempt was made".to_owned())))
    }

    fn render_config(&self, builder: &DovecotBuilder) -> String {
        let root = self.root.display();
        let mut c = String::new();
        c.push_str(&format!(
            "# Written by the imapmirror test kit for one test; see tests/support/dovecot.rs.
instance_name = {name}
base_dir = {root}/run
state_dir = {root}/state
log_path = {log}
info_log_path = {log}
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_master_user_separator = *
# A refused password is answered at the next 0.5 s tick instead of after 2 s.
auth_failure_delay = 0
mail_uid = {uid}
mail_gid = {gid}
first_valid_uid = 1
first_valid_gid = 1
mail_location = {location}
mail_fsync = {fsync}
mail_max_userip_connections = {max_conn}
namespace inbox {{
  inbox = yes
  prefix =
  separator = {sep}
}}
{oauth2}passdb {{
  driver = passwd-file
  args = {root}/master-users
  master = yes
  result_success = continue
}}
passdb {{
  driver = passwd-file
  args = {root}/passwd
}}
userdb {{
  driver = passwd-file
  args = {root}/passwd
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {plain_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
  # No penalty socket, so auth keeps no per-IP penalty: after one refused password,
  # Dovecot 2.3 would otherwise delay every login from 127.0.0.1 by seconds.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
",
            name = self.instance_name,
            log = self.log_path.display(),
            cert = self.tls.server_cert_file.display(),
            key = self.tls.server_key_file.display(),
            uid = self.run_as.mail_uid,
            gid = self.run_as.mail_gid,
            location = self.layout.mail_location(),
            fsync = builder.fsync.setting(),
            max_conn = builder.max_userip_connections,
            sep = self.layout.separator(),
            plain_port = self.plain_addr.port(),
            tls_port = self.tls_addr.port(),
            oauth2 = match builder.oauth2_introspection {
                Some(_) => format!(
                    "auth_mechanisms = plain login xoauth2 oauthbearer\npassdb {{\n  driver = oauth2\n  mechanisms = xoauth2 oauthbearer\n  args = {root}/dovecot-oauth2.conf.ext\n}}\n"
                ),
                None => String::new(),
            },
        ));
        match &self.run_as.unprivileged_user {
            None => c.push_str("default_login_user = dovenull\ndefault_internal_user = dovecot\n"),
            Some((user, group)) => c.push_str(&format!(
                "# Not root: every process runs as {user}, and nothing can chroot.
default_login_user = {user}
default_internal_user = {user}
default_internal_group = {group}
service imap-login {{
  chroot =
}}
service auth-worker {{
  user = {user}
}}
"
            )),
        }
        for extra in &builder.extra_config {
            c.push_str(extra);
            c.push('\n');
        }
        c
    }

    fn spawn_and_wait(&mut self, dovecot_bin: &Path) -> Result<(), KitError> {
        let stderr = File::create(&self.stderr_path)
            .map_err(|e| KitError::file("create", &self.stderr_path, e))?;
        // stdio detached: `dovecot` keeps stderr open, so a pipe would never reach EOF.
        let child = Command::new(dovecot_bin)
            .arg("-F")
            .arg("-c")
            .arg(&self.config_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .map_err(|e| KitError::Environment {
                what: format!("could not run {}: {e}", dovecot_bin.display()),
                remedy: "install Debian's dovecot-imapd (scripts/install-deps)".to_owned(),
            })?;
        self.master_process = ProcessId::of(child.id());
        self.child = Some(child);

        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                let stderr = std::fs::read_to_string(&self.stderr_path).unwrap_or_default();
                return Err(self.error(
                    "start",
                    format!(
                        "dovecot exited with {status} before listening; stderr: {}",
                        stderr.trim()
                    ),
                ));
            }
            if greets(self.plain_addr) && TcpStream::connect(self.tls_addr).is_ok() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(self.error(
                    "start",
                    format!(
                        "not listening on {} and {} after {} s",
                        self.plain_addr,
                        self.tls_addr,
                        STARTUP_TIMEOUT.as_secs()
                    ),
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the instance: SIGTERM to its master, then SIGKILL to any of its processes still
    /// there after a grace period. Only processes this instance started are signalled.
    pub fn stop(&mut self) -> Result<(), KitError> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let family = process_table::family(child.id());
        if let Err(e) = signal(child.id(), "TERM") {
            // Fine if it had already exited (crashed, or stopped by a test): reap it.
            if !matches!(child.try_wait(), Ok(Some(_))) {
                self.child = Some(child);
                return Err(e);
            }
        }
        let deadline = Instant::now() + STOP_TIMEOUT;
        let mut exited = false;
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                exited = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if !exited {
            // Kill and reap the master; its children are killed below by pid.
            let _ = child.kill();
            let _ = child.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let running: Vec<ProcessId> = family
                .iter()
                .copied()
                .filter(ProcessId::is_running)
                .collect();
            if running.is_empty() {
                break;
            }
            if Instant::now() > deadline {
                return Err(self.error(
                    "stop",
                    format!(
                        "processes still running after SIGKILL: {}",
                        running
                            .iter()
                            .map(|p| format!("{} ({})", p.pid, p.command_line()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                ));
            }
            if !exited {
                for p in &running {
                    // A process may exit between the check and the signal; that is fine.
                    let _ = signal(p.pid, "KILL");
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if exited {
            Ok(())
        } else {
            Err(self.error(
                "stop",
                format!(
                    "master did not exit within {} s of SIGTERM and was killed",
                    STOP_TIMEOUT.as_secs()
                ),
            ))
        }
    }

    fn stop_quietly(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("imapmirror test kit: {e}");
        }
    }

    /// The master process and its children, as running now.
    pub fn processes(&self) -> Vec<ProcessId> {
        match &self.master_process {
            Some(master) if master.is_running() => process_table::family(master.pid),
            _ => Vec::new(),
        }
    }

    pub fn master_pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&self) -> bool {
        self.master_process.is_some_and(|p| p.is_running())
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn instance_name(&self) -> &str {
        &self.instance_name
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    pub fn separator(&self) -> char {
        self.layout.separator()
    }

    pub fn plain_addr(&self) -> SocketAddr {
        self.plain_addr
    }

    pub fn tls_addr(&self) -> SocketAddr {
        self.tls_addr
    }

    /// PEM of the CA that signed this instance's certificate.
    pub fn ca_pem(&self) -> &str {
        &self.tls.ca_pem
    }

    /// A file holding `ca_pem()`, for a `--ca-file` option.
    pub fn ca_file(&self) -> &Path {
        &self.tls.ca_file
    }

    /// Trusts this instance's CA only.
    pub fn root_store(&self) -> Arc<RootCertStore> {
        self.tls.root_store()
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    pub fn dir(&self) -> &Path {
        &self.root
    }

    /// (user, password) pairs.
    pub fn users(&self) -> &[(String, String)] {
        &self.users
    }

    /// (master user, master password).
    pub fn master(&self) -> (&str, &str) {
        (&self.master.0, &self.master.1)
    }

    /// The uid and gid that own the mail files.
    pub fn mail_owner(&self) -> (u32, u32) {
        (self.run_as.mail_uid, self.run_as.mail_gid)
    }

    pub fn password(&self, user: &str) -> Result<&str, KitError> {
        self.users
            .iter()
            .find(|(name, _)| name == user)
            .map(|(_, password)| password.as_str())
            .ok_or_else(|| {
                KitError::Usage(format!(
                    "user {user} does not exist on Dovecot instance {}; add it with DovecotBuilder::user",
                    self.instance_name
                ))
            })
    }

    pub fn home(&self, user: &str) -> Result<PathBuf, KitError> {
        self.password(user)?;
        Ok(self.root.join("home").join(home_dir_name(user)))
    }

    /// Address and security for one of the three ways in.
    pub fn endpoint(&self, mode: TlsMode, credentials: Credentials) -> Endpoint {
        let (addr, security) = match mode {
            TlsMode::None => (self.plain_addr, Security::Plain),
            TlsMode::StartTls => (self.plain_addr, Security::StartTls(self.root_store())),
            TlsMode::Implicit => (self.tls_addr, Security::Tls(self.root_store())),
        };
        Endpoint {
            label: self.label.clone(),
            addr,
            security,
            credentials,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// `user`'s own login, over the plain port.
    pub fn user_endpoint(&self, user: &str) -> Result<Endpoint, KitError> {
        let password = self.password(user)?;
        Ok(self.endpoint(TlsMode::None, Credentials::login(user, password)))
    }

    /// The master user acting as `user` (`LOGIN "user*master"`), over the plain port.
    pub fn master_endpoint(&self, user: &str) -> Result<Endpoint, KitError> {
        self.password(user)?;
        Ok(self.endpoint(
            TlsMode::None,
            Credentials::master_login(user, &self.master.0, &self.master.1),
        ))
    }

    pub fn connect_master(&self, user: &str) -> Result<ImapClient, KitError> {
        self.master_endpoint(user)?.connect()
    }

    /// Runs `doveadm -c CONFIG args...` and returns its standard output.
    pub fn doveadm(&self, args: &[&str]) -> Result<String, KitError> {
        let output = Command::new(&self.doveadm)
            .arg("-c")
            .arg(&self.config_path)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| KitError::Command {
                command: format!("{} {}", self.doveadm.display(), args.join(" ")),
                detail: e.to_string(),
            })?;
        if !output.status.success() {
            return Err(KitError::Command {
                command: format!(
                    "doveadm -c {} {}",
                    self.config_path.display(),
                    args.join(" ")
                ),
                detail: format!(
                    "{}: {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr).trim()
                ),
            });
        }
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// The last `lines` lines of the instance's log.
    pub fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log_path).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    pub(crate) fn error(&self, action: &str, detail: String) -> KitError {
        KitError::Dovecot {
            instance: format!("{} ({})", self.instance_name, self.label),
            action: action.to_owned(),
            detail,
            log_path: self.log_path.clone(),
            log_tail: self.log_tail(15),
        }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        self.stop_quietly();
        if std::env::var_os(KEEP_DIRS_ENV).is_some()
            && let Some(dir) = self.dir.take()
        {
            eprintln!(
                "imapmirror test kit: kept Dovecot instance {} in {}",
                self.instance_name,
                dir.keep().display()
            );
        }
    }
}

fn validate_passwd_field(value: &str, what: &str) -> Result<(), KitError> {
    if value.is_empty() || value.contains([':', '\n', '\r', '\0']) {
        return Err(KitError::Usage(format!(
            "{what} {value:?} cannot go into a Dovecot passwd-file; use one without ':' or line breaks"
        )));
    }
    Ok(())
}

fn home_dir_name(user: &str) -> String {
    user.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-@".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn binary(env: &str, default: &str) -> Result<PathBuf, KitError> {
    let path = std::env::var_os(env).map_or_else(|| PathBuf::from(default), PathBuf::from);
    if path.is_file() {
        Ok(path)
    } else {
        Err(KitError::Environment {
            what: format!("{} does not exist", path.display()),
            remedy: format!(
                "install Debian's dovecot-imapd (scripts/install-deps) or point {env} at the binary"
            ),
        })
    }
}

fn run_as() -> Result<RunAs, KitError> {
    // /proc/self belongs to the effective uid and gid of this process.
    let me = std::fs::metadata("/proc/self")
        .map_err(|e| KitError::file("read the owner of", "/proc/self", e))?;
    if me.uid() == 0 {
        let vmail = getent("passwd", "vmail")?.ok_or_else(|| KitError::Environment {
            what: "the system user vmail does not exist (Dovecot refuses to store mail as root)"
                .to_owned(),
            remedy: "run scripts/install-deps, or `useradd --system --no-create-home --shell /usr/sbin/nologin vmail`"
                .to_owned(),
        })?;
        let (uid, gid) = passwd_ids(&vmail)?;
        return Ok(RunAs {
            mail_uid: uid,
            mail_gid: gid,
            unprivileged_user: None,
        });
    }
    let user = getent("passwd", &me.uid().to_string())?
        .and_then(|line| line.split(':').next().map(str::to_owned))
        .ok_or_else(|| KitError::Environment {
            what: format!("uid {} has no passwd entry", me.uid()),
            remedy: "run the tests as a user with a name".to_owned(),
        })?;
    let group = getent("group", &me.gid().to_string())?
        .and_then(|line| line.split(':').next().map(str::to_owned))
        .ok_or_else(|| KitError::Environment {
            what: format!("gid {} has no group entry", me.gid()),
            remedy: "run the tests with a named primary group".to_owned(),
        })?;
    Ok(RunAs {
        mail_uid: me.uid(),
        mail_gid: me.gid(),
        unprivileged_user: Some((user, group)),
    })
}

pub(crate) fn getent(database: &str, key: &str) -> Result<Option<String>, KitError> {
    let output = Command::new("getent")
        .args([database, key])
        .output()
        .map_err(|e| KitError::Command {
            command: format!("getent {database} {key}"),
            detail: e.to_string(),
        })?;
    // Exit code 2 means "no such entry".
    if !output.status.success() {
        return Ok(None);
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .next()
        .map(str::to_owned))
}

pub(crate) fn passwd_ids(line: &str) -> Result<(u32, u32), KitError> {
    let fields: Vec<&str> = line.split(':').collect();
    match (
        fields.get(2).and_then(|f| f.parse().ok()),
        fields.get(3).and_then(|f| f.parse().ok()),
    ) {
        (Some(uid), Some(gid)) => Ok((uid, gid)),
        _ => Err(KitError::Environment {
            what: format!("getent printed a passwd line without uid and gid: {line:?}"),
            remedy: "check /etc/passwd".to_owned(),
        }),
    }
}

/// Two different free loopback ports, for a server's plain and TLS listeners. Both
/// sockets are held until both are known: two separate binds to port 0 can return the
/// same port (the first socket is closed before the second binds), and Dovecot then
/// refuses its configuration (`duplicate listener`).
pub(crate) fn free_port_pair() -> Result<(SocketAddr, SocketAddr), KitError> {
    let bind = || {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).map_err(|e| KitError::Io {
            server: "127.0.0.1:0".to_owned(),
            action: "finding a free loopback port".to_owned(),
            source: e,
        })?;
        let addr = listener.local_addr().map_err(|e| KitError::Io {
            server: "127.0.0.1:0".to_owned(),
            action: "finding a free loopback port".to_owned(),
            source: e,
        })?;
        Ok::<_, KitError>((listener, addr))
    };
    let (_first, a) = bind()?;
    let (_second, b) = bind()?;
    Ok((a, b))
}

/// True once the address answers with an IMAP greeting.
pub(crate) fn greets(addr: SocketAddr) -> bool {
    use std::io::Read;
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    if stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .is_err()
    {
        return false;
    }
    let mut greeting = [0u8; 4];
    stream.read_exact(&mut greeting).is_ok() && &greeting == b"* OK"
}

/// Sends a signal by pid with kill(1): std offers only SIGKILL, and unsafe code is forbidden.
fn signal(pid: u32, name: &str) -> Result<(), KitError> {
    let status = Command::new("kill")
        .args(["-s", name, &pid.to_string()])
        .stderr(Stdio::null())
        .status()
        .map_err(|e| KitError::Command {
            command: format!("kill -s {name} {pid}"),
            detail: e.to_string(),
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(KitError::Command {
            command: format!("kill -s {name} {pid}"),
            detail: format!("{status} (the process may already have exited)"),
        })
    }
}

pub(crate) fn set_mode(path: &Path, mode: u32) -> Result<(), KitError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| KitError::file("set permissions of", path, e))
}

pub(crate) fn create_dir(path: &Path, mode: u32) -> Result<(), KitError> {
    std::fs::create_dir_all(path).map_err(|e| KitError::file("create directory", path, e))?;
    set_mode(path, mode)
}

pub(crate) fn chown(path: &Path, uid: u32, gid: u32) -> Result<(), KitError> {
    // Only root may give files away; as another user they are already ours.
    let me = std::fs::metadata(path).map_err(|e| KitError::file("stat", path, e))?;
    if me.uid() == uid && me.gid() == gid {
        return Ok(());
    }
    std::os::unix::fs::chown(path, Some(uid), Some(gid))
        .map_err(|e| KitError::file("change the owner of", path, e))
}

pub(crate) fn write_file(path: &Path, contents: &str, mode: u32) -> Result<(), KitError> {
    std::fs::write(path, contents).map_err(|e| KitError::file("write", path, e))?;
    set_mode(path, mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_names_are_safe_paths() {
        assert_eq!(home_dir_name("user@example.test"), "user@example.test");
        assert_eq!(home_dir_name("../x y"), ".._x_y");
    }

    #[test]
    fn passwd_fields_are_checked() {
        assert!(validate_passwd_field("a:b", "password").is_err());
        assert!(validate_passwd_field("", "user name").is_err());
        assert!(validate_passwd_field("pw with spaces", "password").is_ok());
        assert_eq!(
            passwd_ids("vmail:x:999:995::/home/vmail:/bin/false").ok(),
            Some((999, 995))
        );
        assert!(passwd_ids("broken").is_err());
    }
}
