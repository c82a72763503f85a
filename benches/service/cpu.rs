//! CPU accounting from `/proc`: the service's, this process's, the PostgreSQL server's, and
//! the machine's, to tell what a phase cost and whether other processes disturbed it.
//!
//! What is ours is found by process tree, not by name: this process and its descendants (the
//! services of every replica, their CLIs, a profiler), and the PostgreSQL server of
//! `--backend postgres` (its postmaster, daemonized, is not our descendant) and its backends.
//! A process's CPU is its own and that of its ended children it waited for (`cutime`), so the
//! CPU of a process that ends within a phase stays counted, in its parent's figure. Other
//! processes of the same name (another PostgreSQL cluster on the machine) are not ours: they
//! are the noise.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::figures::Figures;
use crate::pg;
use crate::report::NOISE_LIMIT_PCT;

/// CPU seconds (user + system) of the given service processes, of their waited-for children,
/// of this process and its waited-for children, of the PostgreSQL server, of everything of
/// ours, and of the whole machine (`/proc/stat`), with the wall-clock time.
pub struct Cpu {
    /// Of the service processes (every replica).
    pub service: f64,
    pub service_children: f64,
    pub bench: f64,
    pub bench_children: f64,
    /// Of the PostgreSQL server's processes (the postmaster counts its ended backends).
    pub db: f64,
    /// Of this process, its descendants and the PostgreSQL server's processes, with their
    /// ended children.
    ours: f64,
    machine: f64,
    /// The machine's CPUs (those `/proc/stat` counts).
    cpus: usize,
    wall: Duration,
    at: Instant,
}

/// One process of `/proc/<pid>/stat`.
struct Proc {
    ppid: u32,
    /// Own CPU seconds, all threads.
    own: f64,
    /// CPU seconds of the ended children it waited for.
    children: f64,
}

impl Proc {
    /// `/proc/<pid>/stat` (USER_HZ is 100 on Linux).
    fn read(pid: &str) -> Option<Proc> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // After the command (in parentheses, which may hold anything): state is field 3,
        // ppid 4, utime 14, stime 15, cutime 16, cstime 17.
        let (_, after) = stat.rsplit_once(')')?;
        let fields: Vec<&str> = after.split_whitespace().collect();
        let secs = |i: usize| -> f64 {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
                / 100.0
        };
        Some(Proc {
            ppid: fields.get(1)?.parse().ok()?,
            own: secs(11) + secs(12),
            children: secs(13) + secs(14),
        })
    }

    /// Every process of the machine by pid.
    fn all() -> HashMap<u32, Proc> {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return HashMap::new();
        };
        dir.filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name();
                let pid: u32 = name.to_str()?.parse().ok()?;
                Some((pid, Proc::read(&pid.to_string())?))
            })
            .collect()
    }
}

/// CPU seconds of `roots` and all their descendants, with their ended children.
fn tree_cpu(procs: &HashMap<u32, Proc>, roots: &[u32]) -> f64 {
    let mut children: HashMap<u32, Vec<u32>> = HashMap::new();
    for (&pid, p) in procs {
        children.entry(p.ppid).or_default().push(pid);
    }
    let mut total = 0.0;
    let mut todo: Vec<u32> = roots.to_vec();
    while let Some(pid) = todo.pop() {
        if let Some(p) = procs.get(&pid) {
            total += p.own + p.children;
        }
        todo.extend(children.get(&pid).into_iter().flatten());
    }
    total
}

impl Cpu {
    /// Busy CPU seconds of all CPUs (user, nice, system, irq, softirq, steal), and the number of
    /// CPUs.
    fn machine() -> (f64, usize) {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let line = stat.lines().next().unwrap_or_default();
        let v: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse().unwrap_or(0.0))
            .collect();
        let busy = [0, 1, 2, 5, 6, 7]
            .iter()
            .map(|&i| v.get(i).copied().unwrap_or(0.0))
            .sum::<f64>()
            / 100.0;
        let cpus = stat
            .lines()
            .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
            .count();
        (busy, cpus.max(1))
    }

    /// A sample; `pids` are the service processes whose CPU the phase is about.
    pub fn sample(pids: &[u32]) -> Cpu {
        let procs = Proc::all();
        let of = |pid: u32| procs.get(&pid).map_or((0.0, 0.0), |p| (p.own, p.children));
        let (mut service, mut service_children) = (0.0, 0.0);
        for &pid in pids {
            let (own, children) = of(pid);
            service += own;
            service_children += children;
        }
        let me = std::process::id();
        let (bench, bench_children) = of(me);
        let server: Vec<u32> = pg::server_pid().into_iter().collect();
        let db = tree_cpu(&procs, &server);
        let (machine, cpus) = Cpu::machine();
        Cpu {
            service,
            service_children,
            bench,
            bench_children,
            db,
            ours: tree_cpu(&procs, &[me]) + db,
            machine,
            cpus,
            wall: Duration::ZERO,
            at: Instant::now(),
        }
    }

    pub fn since(&self, before: &Cpu) -> Cpu {
        Cpu {
            service: self.service - before.service,
            service_children: self.service_children - before.service_children,
            bench: self.bench - before.bench,
            bench_children: self.bench_children - before.bench_children,
            db: self.db - before.db,
            ours: self.ours - before.ours,
            machine: self.machine - before.machine,
            cpus: self.cpus,
            wall: self.at - before.at,
            at: self.at,
        }
    }

    /// Share of the machine's CPU capacity over the phase (CPUs × wall time) that went to
    /// anything but ours (other processes, kernel threads such as the journal's), in %.
    fn other_pct(&self) -> f64 {
        let capacity = self.wall.as_secs_f64() * self.cpus as f64;
        (100.0 * (self.machine - self.ours) / capacity).max(0.0)
    }
}

/// Records the CPU used by other processes during a phase; warns when the machine was not quiet.
pub fn note_noise(f: &mut Figures, phase: &str, cpu: &Cpu) {
    let pct = cpu.other_pct();
    f.other_cpu_pct = f.other_cpu_pct.max(pct);
    if pct > NOISE_LIMIT_PCT {
        eprintln!(
            "     warning: {pct:.0}% of the machine's CPU went to other processes during {phase}: \
             the figures are not trustworthy"
        );
    }
}
