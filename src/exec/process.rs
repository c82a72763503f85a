//! Identifying a started command across a restart of this process, and stopping one that an
//! earlier process left running.
//!
//! A pid alone is not an identity: once the process ends, the kernel may give its pid to an
//! unrelated process. The pair (pid, start time), the start time being field 22 of
//! `/proc/<pid>/stat` (clock ticks since boot, fixed for the life of a process), is unique for as
//! long as the machine runs, so a process is only ever signalled when both match.

use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;

/// How often a stop checks whether the group has ended.
const POLL: Duration = Duration::from_millis(20);

/// How long a group may take to end after SIGKILL before a stop gives up on it (only a process
/// stuck in the kernel takes that long).
const KILL_LIMIT: Duration = Duration::from_secs(5);

/// A started command: its pid (which is also its process group id, see `run`) and its start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessId {
    pub pid: i32,
    /// Field 22 of `/proc/<pid>/stat`: clock ticks from boot to the start of the process.
    pub start_time: u64,
}

impl ProcessId {
    /// The identity of the live process `pid`, read from `/proc`; `None` when it cannot be read
    /// (no such process, or no `/proc`).
    pub fn of(pid: i32) -> Option<ProcessId> {
        let stat = read_stat(pid)?;
        Some(ProcessId {
            pid,
            start_time: stat.start_time,
        })
    }
}

/// What [`stop_leftover`] found and did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leftover {
    /// No process has this pid any more (or only a zombie, which runs nothing): nothing signalled.
    Gone,
    /// The pid belongs to another process (its start time differs): nothing signalled.
    Reused,
    /// It was running and ended after SIGTERM (`forced`: only after SIGKILL).
    Stopped { forced: bool },
    /// It was signalled but some process of its group still ran when the stop gave up.
    Survived,
}

/// Stops a command an earlier process left running, with everything in its process group:
/// SIGTERM, up to `grace` for the group to end, then SIGKILL, and waits (bounded) until no
/// process of the group runs any more. Signals nothing unless `/proc/<pid>/stat` still shows the
/// recorded start time, so a pid reused by another process is left alone.
pub async fn stop_leftover(id: ProcessId, grace: Duration) -> Leftover {
    match read_stat(id.pid) {
        None => return Leftover::Gone,
        Some(stat) if stat.start_time != id.start_time => return Leftover::Reused,
        // A zombie leader is only a record waiting to be reaped, but its group may still run.
        Some(stat) if stat.state == 'Z' && !group_runs(id.pid) => return Leftover::Gone,
        Some(_) => {}
    }
    let pgid = Pid::from_raw(id.pid);
    signal(pgid, Signal::SIGTERM);
    if wait_group_end(id.pid, grace).await {
        return Leftover::Stopped { forced: false };
    }
    signal(pgid, Signal::SIGKILL);
    if wait_group_end(id.pid, KILL_LIMIT).await {
        Leftover::Stopped { forced: true }
    } else {
        Leftover::Survived
    }
}

fn signal(pgid: Pid, signal: Signal) {
    match killpg(pgid, signal) {
        // ESRCH: the group ended in the meantime.
        Ok(()) | Err(Errno::ESRCH) => {}
        Err(err) => tracing::warn!(pgid = pgid.as_raw(), %signal, %err, "killpg failed"),
    }
}

/// Waits up to `bound` until no process of group `pgid` runs; `true` when none does.
async fn wait_group_end(pgid: i32, bound: Duration) -> bool {
    let deadline = Instant::now() + bound;
    loop {
        if !group_runs(pgid) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Whether a process of group `pgid` runs (zombies do not count: their parent, no longer this
/// service, reaps them when it will).
fn group_runs(pgid: i32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(read_stat)
        .any(|s| s.pgrp == pgid && !matches!(s.state, 'Z' | 'X'))
}

/// The fields of `/proc/<pid>/stat` used here.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    state: char,
    pgrp: i32,
    start_time: u64,
}

fn read_stat(pid: i32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// Parses `pid (comm) state ppid pgrp … starttime …`. The command name may contain spaces and
/// parentheses, so fields are counted from the last `)`.
fn parse_stat(text: &str) -> Option<Stat> {
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // fields[0] is field 3 (state), so field N is fields[N - 3].
    Some(Stat {
        state: fields.first()?.chars().next()?,
        pgrp: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use std::process::{Command, Stdio};

    use super::*;

    #[test]
    fn parses_a_stat_line_whose_name_has_spaces_and_parentheses() {
        let line =
            "4242 (a (b) c) S 1 4242 4242 0 -1 4194560 100 0 0 0 1 2 0 0 20 0 1 0 987654 1000 50";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                state: 'S',
                pgrp: 4242,
                start_time: 987_654
            })
        );
        assert_eq!(parse_stat("4242 (x) S 1 2"), None);
        assert_eq!(parse_stat("garbage"), None);
    }

    /// A `sleep` in a process group of its own, as `run` starts commands.
    fn sleeper() -> std::process::Child {
        use std::os::unix::process::CommandExt;
        Command::new("sleep")
            .arg("30")
            .process_group(0)
            .stdin(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn pid_of(child: &std::process::Child) -> i32 {
        i32::try_from(child.id()).unwrap()
    }

    #[tokio::test]
    async fn a_mismatching_start_time_is_never_signalled() {
        let mut child = sleeper();
        let id = ProcessId::of(pid_of(&child)).unwrap();
        // The same pid, as if it had been given to another process since it was recorded.
        let other = ProcessId {
            start_time: id.start_time + 1,
            ..id
        };
        assert_eq!(stop_leftover(other, Duration::ZERO).await, Leftover::Reused);
        assert_eq!(child.try_wait().unwrap(), None, "the process still runs");
        assert_eq!(ProcessId::of(id.pid), Some(id));
        child.kill().unwrap();
        child.wait().unwrap();
    }

    #[tokio::test]
    async fn a_matching_process_is_stopped_with_its_group() {
        let mut child = sleeper();
        let id = ProcessId::of(pid_of(&child)).unwrap();
        // Reap it as its parent would, so that the stop can see it end.
        let reaper = std::thread::spawn(move || child.wait().unwrap());
        let stopped = stop_leftover(id, Duration::from_secs(5)).await;
        assert_eq!(stopped, Leftover::Stopped { forced: false });
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(reaper.join().unwrap().signal(), Some(15));
    }

    #[tokio::test]
    async fn a_process_that_ended_is_gone() {
        let mut child = sleeper();
        let id = ProcessId::of(pid_of(&child)).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        assert_eq!(stop_leftover(id, Duration::ZERO).await, Leftover::Gone);
    }
}
