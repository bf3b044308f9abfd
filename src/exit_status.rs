//! Exit codes (CLI.md): 0 done; 1 the work ran but something failed; 2 the request
//! itself is wrong. And the one sentence on stderr that says why.

use imapmirror_engine::Fault;
use imapmirror_storage::{ErrorKind, StoreError};

/// A request that is wrong before any work starts (a missing file, a bad flag value):
/// exit code 2. The text is the whole sentence.
#[derive(Debug)]
pub struct BadRequest(pub String);

impl std::fmt::Display for BadRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadRequest {}

/// Work that ran but did not fully succeed (a failed mailbox, a refused test login): exit
/// code 1; the command has already printed its result.
#[derive(Debug)]
pub struct WorkFailed(pub String);

impl std::fmt::Display for WorkFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WorkFailed {}

/// The exit code for an error.
pub fn code(err: &anyhow::Error) -> i32 {
    for cause in err.chain() {
        if cause.downcast_ref::<BadRequest>().is_some() {
            return 2;
        }
        if cause.downcast_ref::<WorkFailed>().is_some() {
            return 1;
        }
        if let Some(e) = cause.downcast_ref::<imapmirror_engine::Error>() {
            return match e.fault() {
                Fault::UserInput => 2,
                Fault::Peer | Fault::Local => 1,
            };
        }
        if let Some(e) = cause.downcast_ref::<imapmirror_proxy::ProxyError>() {
            return if e.is_user_input() { 2 } else { 1 };
        }
        if let Some(e) = cause.downcast_ref::<StoreError>() {
            return match e.kind() {
                ErrorKind::UserInput => 2,
                _ => 1,
            };
        }
    }
    1
}

/// The sentence to print: errors of our crates are written as complete sentences with a
/// remedy; nested causes of a wrapper (engine → storage) are already part of the text.
pub fn sentence(err: &anyhow::Error) -> String {
    let text = err.to_string();
    let mut s = text.trim().to_owned();
    if !s.ends_with('.') && !s.ends_with('?') && !s.ends_with('!') {
        s.push('.');
    }
    // Messages from lower layers start in lower case when nested; the first word of the
    // line starts upper case.
    let mut chars = s.chars();
    match chars.next() {
        Some(first) => first.to_uppercase().chain(chars).collect(),
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_requests_exit_2_and_failed_work_exits_1() {
        assert_eq!(code(&anyhow::Error::new(BadRequest("x".into()))), 2);
        assert_eq!(code(&anyhow::Error::new(WorkFailed("x".into()))), 1);
        let user = imapmirror_engine::Error::BatchState {
            batch: "b".into(),
            status: "Completed",
            action: "started",
            remedy: "add a new batch",
        };
        assert_eq!(code(&anyhow::Error::new(user)), 2);
        assert_eq!(code(&anyhow::anyhow!("disk on fire")), 1);
    }

    #[test]
    fn sentences_start_upper_case_and_end_with_a_stop() {
        assert_eq!(
            sentence(&anyhow::anyhow!("state directory x is locked")),
            "State directory x is locked."
        );
        assert_eq!(sentence(&anyhow::anyhow!("Done.")), "Done.");
    }
}
