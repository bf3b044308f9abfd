//! Where a run's CPU time went, process by process: the client, and each Dovecot's imap,
//! imap-login (its TLS proxy), auth and the rest.
//!
//! Short-lived processes — one imap and one imap-login per connection, doveadm, mbsync,
//! imapmirror itself — are read from BSD process accounting (`accton FILE`, package
//! `acct`): the kernel appends a record with the command name, parent and CPU time of
//! every process as it exits, threads included. A run's processes are those whose pid was
//! handed out while it ran: the kernel's last pid (`/proc/sys/kernel/ns_last_pid`) is read
//! when the run starts and when it ends (pids grow until they wrap at `pid_max`, once at
//! most in a window; after a wrap, processes older than the window are told apart by their
//! start time). One still alive when the window closes is read from `/proc/PID/stat`
//! instead. The servers' long-lived processes (master, auth, config, log, anvil, stats),
//! started before the run, are read from `/proc/PID/stat` at both ends; /proc/stat gives
//! the whole machine's busy time. Without root or `accton` the bench runs without this
//! table.
//!
//! The accounting file undercounts short processes: the kernel writes each process's user
//! and system time in whole 1/100 s (`nsec_to_AHZ` truncates), so an imap-login that used
//! 7 ms is recorded as 0. A pass over 1,000 small mailboxes starts 4,000 such processes;
//! the file then shows a tenth to a quarter of a server's time. So each role's total is taken
//! from where the kernel keeps it exactly: a parent's `cutime`/`cstime` (/proc/PID/stat)
//! sum every child it has reaped, added at nanosecond precision. Every process of a
//! Dovecot is its master's child, and everything the run started is the bench's own
//! descendant: a server's total is what its master reaped meanwhile plus its processes
//! still alive, the client's what the bench reaped. The file's split by command is then a
//! lower bound within the role, and the rest of the role is printed as such.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::process_table;

/// `USER_HZ`: /proc times and the accounting file's `comp_t` times are both in 1/100 s on
/// Linux, whatever the kernel's own tick.
const TICKS_PER_SECOND: f64 = 100.0;
/// `struct acct_v3` (linux/acct.h): 64 bytes a record.
const RECORD: usize = 64;
const ACCTON: &str = "/usr/sbin/accton";

/// Process accounting switched on into one file, for the bench's lifetime.
pub struct Accounting {
    file: PathBuf,
}

impl Accounting {
    /// Switches accounting on into `dir/pacct`; `Err` says why it cannot (not root, no
    /// `accton`), which the bench prints and runs on without CPU figures.
    pub fn start(dir: &Path) -> Result<Accounting, String> {
        let file = dir.join("pacct");
        if !Path::new(ACCTON).exists() {
            return Err(format!(
                "{ACCTON} missing (scripts/install-deps --bench installs package acct)"
            ));
        }
        std::fs::File::create(&file)
            .map_err(|e| format!("cannot create {}: {e}", file.display()))?;
        let status = Command::new(ACCTON)
            .arg(&file)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .output()
            .map_err(|e| format!("cannot run {ACCTON}: {e}"))?;
        if !status.status.success() {
            return Err(format!(
                "{ACCTON} {} failed ({}): {}",
                file.display(),
                status.status,
                String::from_utf8_lossy(&status.stderr).trim()
            ));
        }
        Ok(Accounting { file })
    }

    /// Opens a window over one run; `servers` are the Dovecots it talks to, by label.
    pub fn open(&self, servers: &[(&str, u32)]) -> Window {
        let reaped_before = ServerTotals::read(servers);
        let masters: Vec<(String, u32)> = servers
            .iter()
            .map(|(label, pid)| ((*label).to_owned(), *pid))
            .collect();
        let long_lived = masters
            .iter()
            .flat_map(|(label, master)| {
                process_table::family(*master)
                    .into_iter()
                    .map(move |p| (p.pid, label.clone()))
            })
            .filter_map(|(pid, label)| read_stat(pid).map(|s| (pid, (label, s))))
            .collect();
        Window {
            file: self.file.clone(),
            masters,
            long_lived,
            first_pid: last_pid().map(|p| p + 1),
            opened_ticks: uptime_ticks().unwrap_or(0),
            opened_epoch: epoch_seconds(),
            machine_busy: machine_busy_ticks(),
            reaped_before,
            client_before: read_stat(std::process::id()).map(|s| s.reaped_ticks),
        }
    }
}

impl Drop for Accounting {
    fn drop(&mut self) {
        // `accton off`: the kernel stops writing the file.
        let _ = Command::new(ACCTON)
            .arg("off")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// One run's window, from `Accounting::open` to `Window::close`.
pub struct Window {
    file: PathBuf,
    masters: Vec<(String, u32)>,
    long_lived: HashMap<u32, (String, Stat)>,
    first_pid: Option<u32>,
    /// When the window opened, in clock ticks since boot (/proc's start times) and in
    /// whole seconds since the epoch (the accounting file's): after a pid wrap, a pid in
    /// range may belong to a process older than the window.
    opened_ticks: u64,
    opened_epoch: u64,
    /// All CPUs' busy time (/proc/stat) when the window opened.
    machine_busy: Option<u64>,
    /// Each server's exact total so far (see [`ServerTotals`]).
    reaped_before: ServerTotals,
    /// What the bench had reaped of its children when the window opened.
    client_before: Option<u64>,
}

/// A server's CPU time so far, exactly: its master's own time and what it reaped of its
/// children (all of a Dovecot's processes are the master's children), plus every child
/// still alive, by pid and start time (a child alive at both ends counts its difference).
#[derive(Debug)]
struct ServerTotals<K = process_table::ProcessId> {
    /// label → (master's own + reaped ticks, live child → its own + reaped ticks).
    by_label: BTreeMap<String, (u64, HashMap<K, u64>)>,
}

impl ServerTotals {
    fn read(servers: &[(&str, u32)]) -> ServerTotals {
        let mut by_label = BTreeMap::new();
        for (label, master) in servers {
            let Some(m) = read_stat(*master) else {
                continue;
            };
            let children = process_table::family(*master)
                .into_iter()
                .filter(|p| p.pid != *master)
                .filter_map(|p| {
                    let s = read_stat(p.pid)?;
                    Some((p, s.ticks + s.reaped_ticks))
                })
                .collect();
            by_label.insert((*label).to_owned(), (m.ticks + m.reaped_ticks, children));
        }
        ServerTotals { by_label }
    }
}

impl<K: Eq + std::hash::Hash> ServerTotals<K> {
    /// Core-seconds each server used since `before`: what its master used and reaped, and
    /// what its children alive now used (all of it for those started since). A child alive
    /// at `before` and reaped since came into the master's reaped time with its whole
    /// life: what it had used by `before` is taken off again.
    fn since(&self, before: &ServerTotals<K>) -> BTreeMap<String, f64> {
        let mut out = BTreeMap::new();
        for (label, (master_now, children_now)) in &self.by_label {
            let Some((master_then, children_then)) = before.by_label.get(label) else {
                continue;
            };
            let alive: u64 = children_now
                .iter()
                .map(|(id, now)| now - children_then.get(id).copied().unwrap_or(0).min(*now))
                .sum();
            let reaped_earlier: u64 = children_then
                .iter()
                .filter(|(id, _)| !children_now.contains_key(*id))
                .map(|(_, then)| then)
                .sum();
            let ticks =
                (master_now.saturating_sub(*master_then) + alive).saturating_sub(reaped_earlier);
            out.insert(label.clone(), ticks as f64 / TICKS_PER_SECOND);
        }
        out
    }
}

/// Core-seconds by (role, command): role is a server's label for its processes, "client"
/// for the run's own process tree, "other" for anything else started in the window.
#[derive(Debug, Clone, Default)]
pub struct CpuUse {
    pub by_process: BTreeMap<(String, String), f64>,
    /// Processes started in the window.
    pub processes: usize,
    /// Every CPU's busy time over the window (/proc/stat: user, nice, system, irq,
    /// softirq, steal), processes or not: beyond the roles' exact totals, kernel work no
    /// process is charged with and other programs' time.
    pub machine: Option<f64>,
    /// Each role's exact total ("source", "target", …, "client"): what the parents reaped
    /// (see the module's header). `by_process` is within it, a lower bound.
    pub roles: BTreeMap<String, f64>,
}

impl CpuUse {
    pub fn total(&self) -> f64 {
        self.by_process.values().sum()
    }

    /// The core-seconds of one role, one command (`None`: every command of the role).
    pub fn of(&self, role: &str, command: Option<&str>) -> f64 {
        self.by_process
            .iter()
            .filter(|((r, c), _)| r == role && command.is_none_or(|want| c == want))
            .map(|(_, s)| s)
            .sum()
    }

    /// The exact total of a role, when known (else what the accounting file shows).
    pub fn role(&self, role: &str) -> f64 {
        self.roles
            .get(role)
            .copied()
            .unwrap_or_else(|| self.of(role, None))
    }

    /// The exact totals of every role.
    pub fn roles_total(&self) -> f64 {
        self.roles.values().sum()
    }

    /// `source 9.8 core-s (imap 4.1, imap-login 1.9, …), …, total 17.3 core-s`.
    pub fn describe(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        let mut roles: Vec<&String> = self.roles.keys().collect();
        for (role, _) in self.by_process.keys() {
            if !roles.contains(&role) {
                roles.push(role);
            }
        }
        for role in roles {
            let split: Vec<String> = self
                .by_process
                .iter()
                .filter(|((r, _), s)| r == role && **s >= 0.05)
                .map(|((_, command), s)| format!("{command} {s:.1}"))
                .collect();
            let total = self.role(role);
            let unseen = total - self.of(role, None);
            let mut split = split.join(", ");
            if self.roles.contains_key(role) && unseen >= 0.05 {
                split.push_str(&format!(", below the file's 10 ms a process {unseen:.1}"));
            }
            parts.push(format!("{role} {total:.1} ({split})"));
        }
        parts.push(format!(
            "total {:.1} core-s ({} processes started)",
            self.roles_total().max(self.total()),
            self.processes
        ));
        if let Some(machine) = self.machine {
            parts.push(format!("machine busy {machine:.1} core-s"));
        }
        parts.join(", ")
    }
}

impl Window {
    /// Closes the window over a run whose process tree starts at `root` (GNU time), which
    /// ran `program`: what every process started in the window used (exited ones from the
    /// accounting file, running ones from /proc), plus what the servers' long-lived
    /// processes used meanwhile. Roles: a server's label for its processes, "client" for
    /// the run's own tree (the direct child named `program`: a process's accounting name
    /// is the name of whichever thread exited last, a worker thread's for imapmirror), and
    /// "other" for whatever else the machine started meanwhile.
    pub fn close(self, root: u32, program: &str) -> CpuUse {
        let Some(first) = self.first_pid else {
            return CpuUse::default();
        };
        let servers: Vec<(&str, u32)> = self
            .masters
            .iter()
            .map(|(label, pid)| (label.as_str(), *pid))
            .collect();
        let mut roles = ServerTotals::read(&servers).since(&self.reaped_before);
        if let (Some(before), Some(now)) = (
            self.client_before,
            read_stat(std::process::id()).map(|s| s.reaped_ticks),
        ) {
            roles.insert(
                "client".to_owned(),
                now.saturating_sub(before) as f64 / TICKS_PER_SECOND,
            );
        }
        let last = last_pid().unwrap_or(u32::MAX);
        // Pids wrap at pid_max (32,768 by default on a small machine; a pass over 1,000
        // mailboxes starts 2,000 server processes), then start again low.
        let wrapped = last < first;
        let in_window = |pid: u32| {
            if wrapped {
                pid >= first || pid <= last
            } else {
                pid >= first && pid <= last
            }
        };
        // The order pids were handed out in, across a wrap.
        let order = |pid: u32| {
            if wrapped && pid < first {
                u64::from(pid) + u64::from(u32::MAX)
            } else {
                u64::from(pid)
            }
        };
        // (order, pid) → (ppid, command, ticks). Running ones first, then the file: a
        // process that exits in between is in both, and the file's record (its whole life)
        // wins.
        let mut found: BTreeMap<(u64, u32), (u32, String, u64)> = BTreeMap::new();
        for pid in all_pids().into_iter().filter(|p| in_window(*p)) {
            if let Some(s) = read_stat(pid).filter(|s| s.start_ticks >= self.opened_ticks) {
                found.insert((order(pid), pid), (s.ppid, s.command, s.ticks));
            }
        }
        for r in read_records(&self.file) {
            if in_window(r.pid) && u64::from(r.started) >= self.opened_epoch {
                found.insert((order(r.pid), r.pid), (r.ppid, r.command, r.ticks));
            }
        }
        // A child's pid comes after its parent's within the window, so one pass in that
        // order finds the whole tree below `root`.
        let mut tree = vec![root];
        let mut cpu = CpuUse {
            processes: found.len(),
            machine: self
                .machine_busy
                .zip(machine_busy_ticks())
                .map(|(before, now)| now.saturating_sub(before) as f64 / TICKS_PER_SECOND),
            roles,
            ..CpuUse::default()
        };
        for ((_, pid), (ppid, command, ticks)) in found {
            let server = self
                .masters
                .iter()
                .find(|(_, master)| *master == ppid || *master == pid);
            let (role, command) = match server {
                Some((label, _)) => (label.clone(), command),
                None if tree.contains(&ppid) || pid == root => {
                    tree.push(pid);
                    let name = if ppid == root {
                        program.to_owned()
                    } else {
                        command
                    };
                    ("client".to_owned(), name)
                }
                None => ("other".to_owned(), command),
            };
            *cpu.by_process.entry((role, command)).or_default() += ticks as f64 / TICKS_PER_SECOND;
        }
        for (pid, (label, before)) in &self.long_lived {
            let used = match read_stat(*pid) {
                Some(now) if now.start_ticks == before.start_ticks => now.ticks - before.ticks,
                // Exited meanwhile: its record is in the file but covers its whole life.
                _ => continue,
            };
            *cpu.by_process
                .entry((label.clone(), before.command.clone()))
                .or_default() += used as f64 / TICKS_PER_SECOND;
        }
        cpu
    }
}

#[derive(Debug, Clone)]
struct Stat {
    command: String,
    ppid: u32,
    /// utime + stime.
    ticks: u64,
    /// cutime + cstime: every child reaped so far, with what they reaped.
    reaped_ticks: u64,
    start_ticks: u64,
}

fn read_stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let command = text.get(open + 1..close)?.to_owned();
    let fields: Vec<&str> = text.get(close + 1..)?.split_whitespace().collect();
    // Fields after the command: state(0) ppid(1) … utime(11) stime(12) cutime(13)
    // cstime(14) … starttime(19).
    let number = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    Some(Stat {
        command,
        ppid: u32::try_from(number(1)?).ok()?,
        ticks: number(11)? + number(12)?,
        reaped_ticks: number(13)? + number(14)?,
        start_ticks: number(19)?,
    })
}

/// All CPUs' busy ticks since boot: /proc/stat's first line without idle and iowait.
fn machine_busy_ticks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    let fields: Vec<u64> = text
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq steal …
    Some(
        [0, 1, 2, 5, 6, 7]
            .iter()
            .filter_map(|i| fields.get(*i))
            .sum(),
    )
}

/// Clock ticks since boot, as /proc's start times count them.
fn uptime_ticks() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/uptime").ok()?;
    let seconds: f64 = text.split_whitespace().next()?.parse().ok()?;
    Some((seconds * TICKS_PER_SECOND) as u64)
}

/// Whole seconds since the epoch, rounded down like the accounting file's start times.
fn epoch_seconds() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn last_pid() -> Option<u32> {
    std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .ok()?
        .trim()
        .parse()
        .ok()
}

fn all_pids() -> Vec<u32> {
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.parse().ok())
                .collect()
        })
        .unwrap_or_default()
}

struct Record {
    pid: u32,
    ppid: u32,
    /// `ac_btime`: seconds since the epoch.
    started: u32,
    command: String,
    ticks: u64,
}

/// The file's `acct_v3` records; anything else (a torn last record) is skipped.
fn read_records(file: &Path) -> Vec<Record> {
    let Ok(bytes) = std::fs::read(file) else {
        return Vec::new();
    };
    bytes
        .chunks_exact(RECORD)
        .filter(|r| r[1] & 0x7f == 3)
        .map(|r| {
            let u32_at = |o: usize| u32::from_ne_bytes([r[o], r[o + 1], r[o + 2], r[o + 3]]);
            let comp_at = |o: usize| comp_t(u16::from_ne_bytes([r[o], r[o + 1]]));
            let name = &r[48..64];
            let end = name.iter().position(|b| *b == 0).unwrap_or(name.len());
            Record {
                pid: u32_at(16),
                ppid: u32_at(20),
                started: u32_at(24),
                command: String::from_utf8_lossy(&name[..end]).into_owned(),
                ticks: comp_at(32) + comp_at(34),
            }
        })
        .collect()
}

/// The kernel's `comp_t`: a 13-bit mantissa and a 3-bit base-8 exponent.
fn comp_t(c: u16) -> u64 {
    u64::from(c & 0x1fff) << (3 * u32::from(c >> 13))
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashMap};

    use super::{ServerTotals, comp_t};

    fn totals(master: u64, children: &[(u32, u64)]) -> ServerTotals<u32> {
        let children: HashMap<u32, u64> = children.iter().copied().collect();
        ServerTotals {
            by_label: BTreeMap::from([("source".to_owned(), (master, children))]),
        }
    }

    #[test]
    fn a_server_counts_what_its_master_reaped_and_its_children_alive_once() {
        // Before: the master at 100 ticks (its own and reaped), child 1 (long-lived) at
        // 10, child 2 at 5. Meanwhile the master used 5 itself and reaped child 2 (8 in
        // all, 3 of them in the window) and short children worth 17; child 1 used 4 more,
        // and child 3, started in the window, 6 so far.
        let before = totals(100, &[(1, 10), (2, 5)]);
        let now = totals(100 + 5 + 8 + 17, &[(1, 14), (3, 6)]);
        let used = now.since(&before);
        let want = (5 + 3 + 17 + 4 + 6) as f64 / 100.0;
        assert!((used["source"] - want).abs() < 1e-9, "{used:?}");
    }

    #[test]
    fn comp_t_decodes_mantissa_and_exponent() {
        assert_eq!(comp_t(0), 0);
        assert_eq!(comp_t(1234), 1234);
        assert_eq!(comp_t((1 << 13) | 1000), 8000);
        assert_eq!(comp_t((2 << 13) | 3), 192);
    }
}
