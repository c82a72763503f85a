//! Signalling and cleaning up the child's process group (the child was spawned with
//! `process_group(0)`, so its pid is also its process group id).

use std::time::Duration;

use nix::errno::Errno;
use nix::sys::signal::{Signal, killpg};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;
use tokio::process::Child;

/// How long to wait for the leader to be reaped after SIGKILL. Only a process stuck in the kernel
/// (e.g. on a dead NFS mount) takes longer; tokio then reaps it in the background.
const REAP_LIMIT: Duration = Duration::from_secs(5);

/// The child's process group. Dropping it SIGKILLs the group unless [`ProcessGroup::kill`] already
/// did, so that no process survives `run` being cancelled by dropping its future.
#[derive(Debug)]
pub(crate) struct ProcessGroup {
    pgid: Pid,
    killed: bool,
}

impl ProcessGroup {
    pub(crate) fn new(pgid: Pid) -> Self {
        Self {
            pgid,
            killed: false,
        }
    }

    fn signal(&self, signal: Signal) {
        match killpg(self.pgid, signal) {
            // ESRCH: every process of the group is already gone.
            Ok(()) | Err(Errno::ESRCH) => {}
            Err(err) => tracing::warn!(pgid = self.pgid.as_raw(), %signal, %err, "killpg failed"),
        }
    }

    /// Stops the group on timeout or cancellation: SIGTERM, up to `grace` for the leader to exit,
    /// then SIGKILL. Returns whether the leader was reaped.
    pub(crate) async fn terminate(&mut self, child: &mut Child, grace: Duration) -> bool {
        self.signal(Signal::SIGTERM);
        let _ = tokio::time::timeout(grace, child.wait()).await;
        self.signal(Signal::SIGKILL);
        matches!(
            tokio::time::timeout(REAP_LIMIT, child.wait()).await,
            Ok(Ok(_))
        )
    }

    /// SIGKILLs whatever is left of the group (e.g. a grandchild that outlived the leader).
    ///
    /// When `leader_reaped`, also reaps group members that were re-parented to us (which happens
    /// when this service runs as PID 1 or as a subreaper); otherwise they would stay zombies.
    pub(crate) async fn kill(&mut self, leader_reaped: bool) {
        self.signal(Signal::SIGKILL);
        self.killed = true;
        if !leader_reaped {
            return; // tokio still owns the leader: do not race its reaping.
        }
        let group = Pid::from_raw(-self.pgid.as_raw());
        for _ in 0..50 {
            match waitpid(group, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) => tokio::time::sleep(Duration::from_millis(10)).await,
                Ok(_) => {}
                // ECHILD: no member of the group is our child (the usual case).
                Err(_) => return,
            }
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if !self.killed {
            self.signal(Signal::SIGKILL);
        }
    }
}
