//! CPU accounting from `/proc`: the service's, this process's, the PostgreSQL server's, and
//! the machine's, to tell what a phase cost and whether other processes disturbed it.

use std::time::{Duration, Instant};

use crate::cores;
use crate::figures::Figures;

/// CPU seconds (user + system) of the service, of its waited-for children, of this process and
/// its children, and of the whole machine (`/proc/stat`), with the wall-clock time.
pub struct Cpu {
    /// Of the service processes (every replica).
    pub service: f64,
    pub service_children: f64,
    pub bench: f64,
    pub bench_children: f64,
    /// Of the PostgreSQL server's processes (the postmaster counts its ended backends).
    pub db: f64,
    machine: f64,
    wall: Duration,
    at: Instant,
}

impl Cpu {
    /// (own, waited-for children) CPU seconds from `/proc/<pid>/stat` (USER_HZ is 100 on Linux).
    fn of(pid: &str) -> (f64, f64) {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<f64> = after
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0.0))
            .collect();
        let get = |i: usize| fields.get(i).copied().unwrap_or(0.0) / 100.0;
        // After the command: state is field 3, utime 14, stime 15, cutime 16, cstime 17.
        (get(11) + get(12), get(13) + get(14))
    }

    /// Busy CPU seconds of all CPUs: user, nice, system, irq, softirq, steal.
    fn machine() -> f64 {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let line = stat.lines().next().unwrap_or_default();
        let v: Vec<f64> = line
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse().unwrap_or(0.0))
            .collect();
        [0, 1, 2, 5, 6, 7]
            .iter()
            .map(|&i| v.get(i).copied().unwrap_or(0.0))
            .sum::<f64>()
            / 100.0
    }

    /// CPU seconds of every `postgres` process, its ended children included.
    fn postgres() -> f64 {
        let Ok(dir) = std::fs::read_dir("/proc") else {
            return 0.0;
        };
        dir.filter_map(Result::ok)
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .bytes()
                    .all(|b| b.is_ascii_digit())
            })
            .filter(|e| {
                std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.trim() == "postgres")
            })
            .map(|e| {
                let (own, children) = Cpu::of(&e.file_name().to_string_lossy());
                own + children
            })
            .sum()
    }

    pub fn sample(pids: &[u32]) -> Cpu {
        let (mut service, mut service_children) = (0.0, 0.0);
        for pid in pids {
            let (own, children) = Cpu::of(&pid.to_string());
            service += own;
            service_children += children;
        }
        let (bench, bench_children) = Cpu::of("self");
        Cpu {
            service,
            service_children,
            bench,
            bench_children,
            db: Cpu::postgres(),
            machine: Cpu::machine(),
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
            machine: self.machine - before.machine,
            wall: self.at - before.at,
            at: self.at,
        }
    }

    /// Share of the machine's CPU capacity used by anything but the service, this benchmark
    /// and their children (other processes, kernel threads such as the journal), in %.
    fn other_pct(&self) -> f64 {
        let ours =
            self.service + self.service_children + self.bench + self.bench_children + self.db;
        let capacity = self.wall.as_secs_f64() * cores() as f64;
        (100.0 * (self.machine - ours) / capacity).max(0.0)
    }
}

/// Records the CPU used by other processes during a phase; warns when the machine was not quiet.
pub fn note_noise(f: &mut Figures, phase: &str, cpu: &Cpu) {
    let pct = cpu.other_pct();
    f.other_cpu_pct = f.other_cpu_pct.max(pct);
    if pct > 10.0 {
        eprintln!(
            "     warning: {pct:.0}% of the machine's CPU went to other processes during {phase}: \
             the figures are not trustworthy"
        );
    }
}
