//! The profiler of `--profile`, attached to the service for one phase.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};

use crate::options::Profiler;
use crate::service::signal;

/// A profiler attached to the service for one phase (`--profile`).
pub struct Profile(Option<Child>);

impl Profile {
    pub fn attach(
        which: Option<Profiler>,
        pid: u32,
        run: usize,
        phase: &str,
    ) -> anyhow::Result<Profile> {
        let Some(which) = which else {
            return Ok(Profile(None));
        };
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-profile");
        std::fs::create_dir_all(&dir)?;
        let pid = pid.to_string();
        let mut cmd = match which {
            Profiler::Strace => {
                let mut c = Command::new("strace");
                let out = dir.join(format!("strace-{phase}-run{run}.txt"));
                c.args(["-c", "-f", "-o"]).arg(&out).args(["-p", &pid]);
                eprintln!("   profiling with strace into {}", out.display());
                c
            }
            Profiler::Perf => {
                let mut c = Command::new("perf");
                let out = dir.join(format!("perf-{phase}-run{run}.data"));
                // DWARF unwinding: release builds keep no frame pointers, so
                // `-g` would stop every stack at the first Rust frame.
                c.args(["record", "-F", "999", "--call-graph", "dwarf", "-o"])
                    .arg(&out)
                    .args(["-p", &pid]);
                eprintln!("   profiling with perf into {}", out.display());
                c
            }
        };
        let child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("cannot start the profiler")?;
        // Give it time to attach to every thread.
        std::thread::sleep(Duration::from_millis(500));
        Ok(Profile(Some(child)))
    }

    pub fn finish(mut self) -> anyhow::Result<()> {
        if let Some(child) = self.0.as_mut() {
            signal(child.id(), nix::sys::signal::Signal::SIGINT);
            let deadline = Instant::now() + Duration::from_secs(60);
            while child.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    let _ = child.kill();
                    bail!("the profiler did not stop");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            self.0 = None;
        }
        Ok(())
    }
}

impl Drop for Profile {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
