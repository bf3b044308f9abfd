//! Private Cyrus IMAP 3.6 instances (Debian's cyrus-imapd, unpacked by
//! scripts/install-mail-servers into /opt/imapmirror-kit/cyrus), one temp dir each.
//!
//! An instance has its own imapd.conf and cyrus.conf, config directory, mail partition,
//! sasldb (users made with `saslpasswd2 -f`), a sasl admin who is in `admins:` and
//! `proxyservers:` (so `AUTHENTICATE PLAIN` with authzid = a user acts as that user),
//! `virtdomains: userid`, and two loopback ports: plain (with STARTTLS) and implicit TLS, with
//! a certificate from a per-instance CA. Settings not named here are Debian's (its
//! /etc/imapd.conf): the `INBOX.` namespace with `.` as separator unless the builder asks for
//! `unixhierarchysep: yes` + `altnamespace: yes`, and `munge8bit` on unless switched off.
//!
//! The master process runs as the first child of an `unshare --pid --mount` (see
//! private_server.rs), which gives it a private `/dev/log`: Cyrus logs only to syslog, and
//! its messages land in `log/syslog.log` of the instance. Cyrus drops to the system user
//! `cyrus` (created by Debian's cyrus-common), which owns the instance's files.
//!
//! Every user's INBOX is created by the admin at start. Differences from Dovecot that tests
//! meet at once: LOGINDISABLED appears in the capabilities after login, a failed login costs
//! about 3 s, and awkward messages are refused (see TESTING.md and tests/kit_servers.rs).

use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rustls::RootCertStore;

use super::dovecot::{
    TlsMode, chown, create_dir, free_port_pair, getent, greets, passwd_ids, set_mode, write_file,
};
use super::imap_client::{Credentials, DEFAULT_TIMEOUT, Endpoint, ImapClient, Security};
use super::kit_error::KitError;
use super::private_server::{
    Sandbox, StartFailure, SyslogSink, installed, kit_prefix, log_len, log_since, log_tail,
    private_dev_script, require_root, run_with_input, says_port_taken, sh_quote,
};
use super::process_table::ProcessId;
use super::tls_material::TlsMaterial;

pub const CYRUS_DEFAULT_USER: &str = "user@example.test";
pub const CYRUS_DEFAULT_PASSWORD: &str = "user-secret";
pub const CYRUS_ADMIN: &str = "mailadmin";
pub const CYRUS_ADMIN_PASSWORD: &str = "admin-secret";

/// Set to keep instance directories (config, logs, spool) after the test, for debugging.
pub const KEEP_DIRS_ENV: &str = "IMAPMIRROR_KEEP_CYRUS";

/// The name the server gives itself; also the sasldb realm of users without a domain.
const SERVERNAME: &str = "localhost";
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

static INSTANCE_COUNTER: AtomicU32 = AtomicU32::new(0);

/// The folder namespace: Debian's default, or Unix separators with folders beside INBOX.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CyrusNamespace {
    /// `unixhierarchysep: no`, `altnamespace: no` (Debian): folders are `INBOX.a.b`,
    /// separator `.`; other users under `user.`. A user name may not contain `.` before `@`.
    Netnews,
    /// `unixhierarchysep: yes`, `altnamespace: yes`: folders are `a/b` beside `INBOX`,
    /// separator `/`; other users under `Other Users/`.
    UnixAlt,
}

impl CyrusNamespace {
    pub fn separator(self) -> char {
        match self {
            CyrusNamespace::Netnews => '.',
            CyrusNamespace::UnixAlt => '/',
        }
    }

    /// The prefix of a user's folders other than INBOX, as the user sees them.
    pub fn personal_prefix(self) -> &'static str {
        match self {
            CyrusNamespace::Netnews => "INBOX.",
            CyrusNamespace::UnixAlt => "",
        }
    }

    fn switch(self) -> &'static str {
        match self {
            CyrusNamespace::Netnews => "no",
            CyrusNamespace::UnixAlt => "yes",
        }
    }
}

#[derive(Clone)]
pub struct CyrusBuilder {
    label: String,
    namespace: CyrusNamespace,
    munge8bit: bool,
    users: Vec<(String, String)>,
    admin: (String, String),
    extra_config: Vec<String>,
}

impl CyrusBuilder {
    /// A label for logs and reports ("source", "target").
    pub fn label(mut self, label: &str) -> Self {
        self.label = label.to_owned();
        self
    }

    pub fn namespace(mut self, namespace: CyrusNamespace) -> Self {
        self.namespace = namespace;
        self
    }

    /// `munge8bit` (Cyrus's default: yes): raw 8-bit bytes in headers become `X`.
    pub fn munge8bit(mut self, munge: bool) -> Self {
        self.munge8bit = munge;
        self
    }

    /// Adds a user (if none is added, `CYRUS_DEFAULT_USER` exists).
    pub fn user(mut self, name: &str, password: &str) -> Self {
        self.users.push((name.to_owned(), password.to_owned()));
        self
    }

    /// The sasl admin (in `admins:` and `proxyservers:`).
    pub fn admin(mut self, name: &str, password: &str) -> Self {
        self.admin = (name.to_owned(), password.to_owned());
        self
    }

    /// An imapd.conf line appended verbatim, e.g. `maxmessagesize: 1000`.
    pub fn extra_config(mut self, line: &str) -> Self {
        self.extra_config.push(line.to_owned());
        self
    }

    pub fn start(self) -> Result<Cyrus, KitError> {
        Cyrus::start_with(self)
    }
}

pub struct Cyrus {
    label: String,
    instance_name: String,
    dir: Option<tempfile::TempDir>,
    root: PathBuf,
    config_path: PathBuf,
    cyrus_conf_path: PathBuf,
    log_path: PathBuf,
    plain_addr: SocketAddr,
    tls_addr: SocketAddr,
    tls: TlsMaterial,
    namespace: CyrusNamespace,
    munge8bit: bool,
    users: Vec<(String, String)>,
    admin: (String, String),
    cyrus_ids: (u32, u32),
    sandbox: Option<Sandbox>,
    syslog: Option<SyslogSink>,
}

impl Cyrus {
    pub fn builder() -> CyrusBuilder {
        CyrusBuilder {
            label: "cyrus".to_owned(),
            namespace: CyrusNamespace::Netnews,
            munge8bit: true,
            users: Vec::new(),
            admin: (CYRUS_ADMIN.to_owned(), CYRUS_ADMIN_PASSWORD.to_owned()),
            extra_config: Vec::new(),
        }
    }

    fn start_with(mut builder: CyrusBuilder) -> Result<Cyrus, KitError> {
        if builder.users.is_empty() {
            builder.users.push((
                CYRUS_DEFAULT_USER.to_owned(),
                CYRUS_DEFAULT_PASSWORD.to_owned(),
            ));
        }
        for (name, password) in &builder.users {
            validate_user(name, password, builder.namespace)?;
        }
        validate_user(&builder.admin.0, &builder.admin.1, builder.namespace)?;
        if builder.admin.0.contains('@') {
            return Err(KitError::Usage(format!(
                "Cyrus admin {:?}: with virtdomains a global admin has no domain part",
                builder.admin.0
            )));
        }
        require_root("Cyrus")?;
        let prefix = kit_prefix().join("cyrus");
        let imapd = installed(&prefix.join("usr/lib/cyrus/bin/imapd"))?;
        let master = installed(Path::new("/usr/lib/cyrus/bin/master"))?;
        let cyrus_ids = match getent("passwd", "cyrus")? {
            Some(line) => passwd_ids(&line)?,
            None => {
                return Err(KitError::Environment {
                    what: "the system user cyrus does not exist".to_owned(),
                    remedy: "run scripts/install-mail-servers (Debian's cyrus-common creates it)"
                        .to_owned(),
                });
            }
        };

        let n = INSTANCE_COUNTER.fetch_add(1, Ordering::Relaxed);
        let instance_name = format!("imapmirror-kit-{}-cyrus{n}", std::process::id());
        let dir = tempfile::Builder::new()
            .prefix(&format!("{instance_name}-"))
            .tempdir()
            .map_err(|e| KitError::file("create a temp dir in", std::env::temp_dir(), e))?;
        let root = dir.path().to_path_buf();
        // The cyrus user must traverse the instance directory.
        set_mode(&root, 0o755)?;
        for sub in ["config", "spool", "run", "log", "tls", "dev"] {
            create_dir(&root.join(sub), 0o755)?;
        }
        // What Debian's cyrus-makedirs would create; Cyrus complains without them.
        for sub in [
            "db", "socket", "proc", "log", "msg", "ptclient", "quota", "sieve", "user", "lock",
        ] {
            create_dir(&root.join("config").join(sub), 0o750)?;
        }
        let tls = TlsMaterial::generate(&root.join("tls"), &instance_name)?;

        let sasldb = root.join("sasldb2");
        for (name, password) in builder.users.iter().chain([&builder.admin]) {
            let mut command = Command::new("saslpasswd2");
            command.arg("-f").arg(&sasldb).args(["-p", "-c"]);
            if !name.contains('@') {
                command.args(["-u", SERVERNAME]);
            }
            command.arg(name);
            run_with_input(&mut command, password.as_bytes())?;
        }

        let log_path = root.join("log").join("syslog.log");
        let mut server = Cyrus {
            label: builder.label.clone(),
            instance_name,
            dir: Some(dir),
            config_path: root.join("imapd.conf"),
            cyrus_conf_path: root.join("cyrus.conf"),
            log_path,
            plain_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            tls_addr: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            tls,
            namespace: builder.namespace,
            munge8bit: builder.munge8bit,
            users: builder.users.clone(),
            admin: builder.admin.clone(),
            cyrus_ids,
            sandbox: None,
            syslog: None,
            root,
        };
        write_file(
            &server.config_path,
            &server.render_imapd_conf(&builder),
            0o644,
        )?;
        server.chown_tree()?;
        let socket = server.root.join("log").join("syslog.sock");
        server.syslog = Some(SyslogSink::start(&socket, &server.log_path)?);
        let script = server.root.join("start.sh");
        write_file(
            &script,
            &format!(
                "# Written by the imapmirror test kit; runs in the instance's own namespaces.
set -e
{dev}
{master} -C {conf} -M {cyrus_conf} -p {pid} -L {master_log} &
wait
",
                dev = private_dev_script(&server.root.join("dev"), &socket),
                master = sh_quote(&master),
                conf = sh_quote(&server.config_path),
                cyrus_conf = sh_quote(&server.cyrus_conf_path),
                pid = sh_quote(&server.root.join("run").join("master.pid")),
                master_log = sh_quote(&server.root.join("log").join("master.log")),
            ),
            0o644,
        )?;

        // A port found free may be taken by someone else before Cyrus binds it; retry.
        let mut last_error = None;
        for _attempt in 0..5 {
            (server.plain_addr, server.tls_addr) = free_port_pair()?;
            write_file(
                &server.cyrus_conf_path,
                &server.render_cyrus_conf(&imapd),
                0o644,
            )?;
            match server.spawn_and_wait(&script) {
                Ok(()) => {
                    server.create_inboxes()?;
                    return Ok(server);
                }
                Err(failure) => {
                    server.stop_quietly();
                    if !failure.port_taken {
                        return Err(*failure.error);
                    }
                    last_error = Some(*failure.error);
                }
            }
        }
        Err(last_error.unwrap_or_else(|| server.error("start", "no attempt was made".to_owned())))
    }

    fn render_imapd_conf(&self, builder: &CyrusBuilder) -> String {
        let root = &self.root;
        let config = root.join("config");
        let run = root.join("run");
        let mut c = format!(
            "# Written by the imapmirror test kit for one test; see tests/support/cyrus.rs.
# Debian's /etc/imapd.conf, with this instance's paths, users and TLS.
configdirectory: {config}
proc_path: {proc}
mboxname_lockpath: {lock}
defaultpartition: default
partition-default: {spool}
servername: {SERVERNAME}
syslog_prefix: {name}
altnamespace: {alt}
unixhierarchysep: {alt}
munge8bit: {munge}
lmtp_downcase_rcpt: yes
allowanonymouslogin: no
autocreate_quota: 0
umask: 077
hashimapspool: true
allowplaintext: yes
virtdomains: userid
admins: {admin}
proxyservers: {admin}
sasl_pwcheck_method: auxprop
sasl_auxprop_plugin: sasldb
sasl_sasldb_path: {sasldb}
sasl_auto_transition: no
tls_server_cert: {cert}
tls_server_key: {key}
tls_session_timeout: 1440
lmtpsocket: {run}/lmtp
idlesocket: {run}/idle
notifysocket: {run}/notify
",
            config = config.display(),
            proc = config.join("proc").display(),
            lock = config.join("lock").display(),
            spool = root.join("spool").display(),
            name = self.instance_name,
            alt = self.namespace.switch(),
            munge = if self.munge8bit { "yes" } else { "no" },
            admin = self.admin.0,
            sasldb = root.join("sasldb2").display(),
            cert = self.tls.server_cert_file.display(),
            key = self.tls.server_key_file.display(),
            run = run.display(),
        );
        for line in &builder.extra_config {
            c.push_str(line);
            c.push('\n');
        }
        c
    }

    fn render_cyrus_conf(&self, imapd: &Path) -> String {
        let conf = self.config_path.display();
        let imapd = imapd.display();
        format!(
            "# Written by the imapmirror test kit for one test; see tests/support/cyrus.rs.
# Debian's imap and imaps services on this instance's loopback ports; no START or EVENTS
# (a fresh instance needs no recovery, and tests are shorter than any checkpoint period).
START {{
}}
SERVICES {{
  imap cmd=\"{imapd} -U 30 -C {conf}\" listen=\"{plain}\" prefork=0 maxchild=100
  imaps cmd=\"{imapd} -s -U 30 -C {conf}\" listen=\"{tls}\" prefork=0 maxchild=100
}}
EVENTS {{
}}
",
            plain = self.plain_addr,
            tls = self.tls_addr,
        )
    }

    /// Gives the instance's files to the cyrus user (its processes run as that user).
    fn chown_tree(&self) -> Result<(), KitError> {
        let (uid, gid) = self.cyrus_ids;
        for entry in walk(&self.root)? {
            chown(&entry, uid, gid)?;
        }
        set_mode(&self.root.join("sasldb2"), 0o600)?;
        Ok(())
    }

    fn spawn_and_wait(&mut self, script: &Path) -> Result<(), StartFailure> {
        let output = self.root.join("log").join("stderr.log");
        let (output_start, log_start) = (log_len(&output), log_len(&self.log_path));
        let failed = |server: &Cyrus, detail: String| {
            let logs = format!(
                "{}{}",
                log_since(&output, output_start),
                log_since(&server.log_path, log_start)
            );
            StartFailure {
                error: Box::new(
                    server.error("start", format!("{detail}; output: {}", logs.trim())),
                ),
                port_taken: says_port_taken(&logs),
            }
        };
        match Sandbox::spawn(script, &output) {
            Ok(sandbox) => self.sandbox = Some(sandbox),
            Err(error) => {
                return Err(StartFailure {
                    error: Box::new(error),
                    port_taken: false,
                });
            }
        }
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        loop {
            if let Some(status) = self.sandbox.as_mut().and_then(Sandbox::exited) {
                return Err(failed(
                    self,
                    format!("the master exited with {status} before listening"),
                ));
            }
            if greets(self.plain_addr) && TcpStream::connect(self.tls_addr).is_ok() {
                return Ok(());
            }
            if says_port_taken(&log_since(&self.log_path, log_start)) {
                return Err(failed(self, "a port was taken".to_owned()));
            }
            if Instant::now() > deadline {
                return Err(failed(
                    self,
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

    /// The admin creates `user.NAME` (or `user/NAME`) for every user.
    fn create_inboxes(&self) -> Result<(), KitError> {
        let mut admin = self.admin_endpoint().connect()?;
        for (name, _) in &self.users {
            admin.create(&self.admin_mailbox(name, ""))?;
        }
        admin.logout()
    }

    /// Stops the instance: kills its namespace and waits until every process is gone.
    pub fn stop(&mut self) -> Result<(), KitError> {
        let Some(mut sandbox) = self.sandbox.take() else {
            return Ok(());
        };
        sandbox.stop().map_err(|detail| self.error("stop", detail))
    }

    fn stop_quietly(&mut self) {
        if let Err(e) = self.stop() {
            eprintln!("imapmirror test kit: {e}");
        }
    }

    /// Every process of the instance (`unshare`, the shell, master, imapd...), as running now.
    pub fn processes(&self) -> Vec<ProcessId> {
        self.sandbox
            .as_ref()
            .map(Sandbox::processes)
            .unwrap_or_default()
    }

    pub fn is_running(&self) -> bool {
        self.sandbox.as_ref().is_some_and(Sandbox::is_running)
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn instance_name(&self) -> &str {
        &self.instance_name
    }

    pub fn namespace(&self) -> CyrusNamespace {
        self.namespace
    }

    pub fn separator(&self) -> char {
        self.namespace.separator()
    }

    /// The name a user gives a personal folder: `INBOX.a.b` or `a/b`.
    pub fn personal_folder(&self, path: &[&str]) -> String {
        let sep = self.separator().to_string();
        format!("{}{}", self.namespace.personal_prefix(), path.join(&sep))
    }

    /// The name the (global) admin gives `user`'s folder `path` (`""` for INBOX, otherwise
    /// with this instance's separator). With `virtdomains` the domain goes last:
    /// `user.alice@example.test`, `user.alice.Sent@example.test`, `user/alice/a/b@example.test`.
    pub fn admin_mailbox(&self, user: &str, path: &str) -> String {
        let sep = self.separator();
        let (local, domain) = match user.split_once('@') {
            Some((local, domain)) => (local, format!("@{domain}")),
            None => (user, String::new()),
        };
        if path.is_empty() {
            format!("user{sep}{local}{domain}")
        } else {
            format!("user{sep}{local}{sep}{path}{domain}")
        }
    }

    pub fn munge8bit(&self) -> bool {
        self.munge8bit
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

    /// Cyrus's syslog messages, one a line.
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

    /// (admin, password).
    pub fn admin(&self) -> (&str, &str) {
        (&self.admin.0, &self.admin.1)
    }

    pub fn password(&self, user: &str) -> Result<&str, KitError> {
        self.users
            .iter()
            .find(|(name, _)| name == user)
            .map(|(_, password)| password.as_str())
            .ok_or_else(|| {
                KitError::Usage(format!(
                    "user {user} does not exist on Cyrus instance {}; add it with CyrusBuilder::user",
                    self.instance_name
                ))
            })
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

    /// `user`'s own LOGIN, over the plain port.
    pub fn user_endpoint(&self, user: &str) -> Result<Endpoint, KitError> {
        let password = self.password(user)?;
        Ok(self.endpoint(TlsMode::None, Credentials::login(user, password)))
    }

    /// The admin as itself (LOGIN), over the plain port: sees every user's tree.
    pub fn admin_endpoint(&self) -> Endpoint {
        self.endpoint(
            TlsMode::None,
            Credentials::login(&self.admin.0, &self.admin.1),
        )
    }

    /// The admin acting as `user` (`AUTHENTICATE PLAIN`, authzid = user), over the plain
    /// port; the session is `user`'s. Cyrus has no `user*admin` LOGIN form.
    pub fn master_endpoint(&self, user: &str) -> Result<Endpoint, KitError> {
        self.password(user)?;
        Ok(self.endpoint(
            TlsMode::None,
            Credentials::master_plain(user, &self.admin.0, &self.admin.1),
        ))
    }

    pub fn connect_master(&self, user: &str) -> Result<ImapClient, KitError> {
        self.master_endpoint(user)?.connect()
    }

    /// The last `lines` lines of the instance's syslog.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_path, lines)
    }

    fn error(&self, action: &str, detail: String) -> KitError {
        KitError::Server {
            instance: format!("Cyrus instance {} ({})", self.instance_name, self.label),
            action: action.to_owned(),
            detail,
            log_path: self.log_path.clone(),
            log_tail: self.log_tail(15),
        }
    }
}

impl Drop for Cyrus {
    fn drop(&mut self) {
        self.stop_quietly();
        // The syslog thread ends after the last process that could write to it.
        self.syslog = None;
        if std::env::var_os(KEEP_DIRS_ENV).is_some()
            && let Some(dir) = self.dir.take()
        {
            eprintln!(
                "imapmirror test kit: kept Cyrus instance {} in {}",
                self.instance_name,
                dir.keep().display()
            );
        }
    }
}

fn validate_user(name: &str, password: &str, namespace: CyrusNamespace) -> Result<(), KitError> {
    let bad = |what: &str| {
        Err(KitError::Usage(format!(
            "Cyrus user {name:?}: {what}; use another name"
        )))
    };
    if name.is_empty()
        || name
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || "\"\\%*/".contains(c))
    {
        return bad("empty, or has a space, control character, quote, \\, %, * or /");
    }
    if namespace == CyrusNamespace::Netnews
        && name.split('@').next().is_some_and(|l| l.contains('.'))
    {
        return bad("with `.` as separator the part before @ may not contain `.`");
    }
    if password.is_empty() || password.contains(['\n', '\r', '\0']) {
        return Err(KitError::Usage(format!(
            "the password of Cyrus user {name:?} is empty or has a line break"
        )));
    }
    Ok(())
}

/// `dir` and everything below it.
fn walk(dir: &Path) -> Result<Vec<PathBuf>, KitError> {
    let mut out = vec![dir.to_path_buf()];
    let mut i = 0;
    while i < out.len() {
        let path = out[i].clone();
        i += 1;
        if path.is_dir() && !path.is_symlink() {
            for entry in std::fs::read_dir(&path).map_err(|e| KitError::file("list", &path, e))? {
                out.push(entry.map_err(|e| KitError::file("list", &path, e))?.path());
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_names_are_checked() {
        assert!(validate_user("a.b@example.test", "pw", CyrusNamespace::Netnews).is_err());
        assert!(validate_user("a.b@example.test", "pw", CyrusNamespace::UnixAlt).is_ok());
        assert!(validate_user("ab@example.test", "pw", CyrusNamespace::Netnews).is_ok());
        assert!(validate_user("a b", "pw", CyrusNamespace::Netnews).is_err());
        assert!(validate_user("ab", "", CyrusNamespace::Netnews).is_err());
    }
}
