//! Reading /proc to know exactly which processes a Dovecot instance consists of, so the kit
//! stops those and no others, and a test can prove none of them survived.

use std::collections::HashMap;

/// A process identified by pid and start time, so a recycled pid is never mistaken for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ProcessId {
    pub pid: u32,
    start_ticks: u64,
}

struct Stat {
    state: char,
    ppid: u32,
    start_ticks: u64,
}

fn stat(pid: u32) -> Option<Stat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may itself contain ") ", so split at the last.
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    Some(Stat {
        state: fields.first()?.chars().next()?,
        ppid: fields.get(1)?.parse().ok()?,
        start_ticks: fields.get(19)?.parse().ok()?,
    })
}

impl ProcessId {
    pub fn of(pid: u32) -> Option<ProcessId> {
        stat(pid).map(|s| ProcessId {
            pid,
            start_ticks: s.start_ticks,
        })
    }

    /// True while the very same process exists and is not a zombie.
    pub fn is_running(&self) -> bool {
        stat(self.pid)
            .is_some_and(|s| s.start_ticks == self.start_ticks && s.state != 'Z' && s.state != 'X')
    }

    /// The command line, for messages.
    pub fn command_line(&self) -> String {
        std::fs::read(format!("/proc/{}/cmdline", self.pid))
            .map(|b| {
                String::from_utf8_lossy(&b)
                    .replace('\0', " ")
                    .trim()
                    .to_owned()
            })
            .unwrap_or_default()
    }
}

/// `root` and all its descendants that are running now.
pub fn family(root: u32) -> Vec<ProcessId> {
    let Some(root_id) = ProcessId::of(root) else {
        return Vec::new();
    };
    let mut children: HashMap<u32, Vec<ProcessId>> = HashMap::new();
    if let Ok(entries) = std::fs::read_dir("/proc") {
        for entry in entries.flatten() {
            let Some(pid) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u32>().ok())
            else {
                continue;
            };
            if let Some(s) = stat(pid) {
                children.entry(s.ppid).or_default().push(ProcessId {
                    pid,
                    start_ticks: s.start_ticks,
                });
            }
        }
    }
    let mut out = vec![root_id];
    let mut i = 0;
    while i < out.len() {
        if let Some(kids) = children.get(&out[i].pid) {
            out.extend(kids.iter().copied());
        }
        i += 1;
    }
    out.retain(ProcessId::is_running);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_itself_and_a_child() {
        let me = std::process::id();
        let mut child = std::process::Command::new("sleep")
            .arg("5")
            .spawn()
            .expect("sleep runs");
        let family = family(me);
        assert!(family.iter().any(|p| p.pid == me));
        let child_id = family
            .iter()
            .copied()
            .find(|p| p.pid == child.id())
            .expect("child listed");
        assert!(child_id.is_running());
        child.kill().expect("kill sleep");
        child.wait().expect("reap sleep");
        assert!(!child_id.is_running());
    }
}
