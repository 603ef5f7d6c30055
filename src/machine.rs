//! Facts about this machine and this build, and the CPU clocks figures are made from:
//! what every report records beside its figures (provenance) and what `load`, the
//! workbench and `serve` measure CPU time with. One place, below everything that
//! reports, so `run`, `load --json` and `bench-report` say the same thing the same way.

use serde::{Deserialize, Serialize};

/// Cores this process may use (its affinity mask, not the machine's total).
pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The build: taken when the binary was compiled (`scripts/build.rs`), so figures name
/// the code and compiler that produced them, not the checkout's state at run time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Build {
    pub version: String,
    /// Short commit, with "(with uncommitted changes)" when the tree was dirty.
    pub commit: String,
    /// `rustc -V` of the compiler cargo built with.
    pub toolchain: String,
    /// "release" or "debug": debug figures are not worth comparing.
    pub profile: String,
}

pub fn build() -> Build {
    Build {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        commit: env!("FLIGHTBENCH_COMMIT").to_owned(),
        toolchain: env!("FLIGHTBENCH_RUSTC").to_owned(),
        profile: if cfg!(debug_assertions) { "debug" } else { "release" }.to_owned(),
    }
}

/// The machine: CPU model, cores, OS and kernel, host name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Host {
    pub cpu: String,
    pub cores: usize,
    pub os: String,
    pub host: String,
}

pub fn host() -> Host {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    let cpu = read("/proc/cpuinfo")
        .lines()
        .find_map(|l| l.strip_prefix("model name").map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned()))
        .unwrap_or_else(|| std::env::consts::ARCH.to_owned());
    let host = read("/proc/sys/kernel/hostname").trim().to_owned();
    let kernel = read("/proc/sys/kernel/osrelease").trim().to_owned();
    Host {
        cpu,
        cores: cores(),
        os: format!("{} {kernel}", std::env::consts::OS).trim().to_owned(),
        host: if host.is_empty() { "unknown".to_owned() } else { host },
    }
}

/// CPU time, user and system, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CpuTime {
    pub user_s: f64,
    pub system_s: f64,
}

impl CpuTime {
    pub const ZERO: CpuTime = CpuTime { user_s: 0.0, system_s: 0.0 };

    /// This process's CPU time so far (every thread, living or ended).
    pub fn of_process() -> Option<Self> {
        Self::rusage(libc::RUSAGE_SELF)
    }

    /// The calling thread's CPU time so far.
    pub fn of_thread() -> Option<Self> {
        Self::rusage(libc::RUSAGE_THREAD)
    }

    fn rusage(who: libc::c_int) -> Option<Self> {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::uninit();
        // SAFETY: getrusage writes a whole rusage into the pointer on success (returns 0).
        let usage = unsafe {
            if libc::getrusage(who, usage.as_mut_ptr()) != 0 {
                return None;
            }
            usage.assume_init()
        };
        let seconds = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
        Some(Self { user_s: seconds(usage.ru_utime), system_s: seconds(usage.ru_stime) })
    }

    pub fn total_s(self) -> f64 {
        self.user_s + self.system_s
    }

    /// Microseconds per event (`None` for no events).
    pub fn micros_per(self, events: u64) -> Option<f64> {
        (events > 0).then(|| self.total_s() * 1e6 / events as f64)
    }
}

impl std::ops::Sub for CpuTime {
    type Output = CpuTime;
    fn sub(self, rhs: CpuTime) -> CpuTime {
        CpuTime { user_s: (self.user_s - rhs.user_s).max(0.0), system_s: (self.system_s - rhs.system_s).max(0.0) }
    }
}

impl std::ops::Add for CpuTime {
    type Output = CpuTime;
    fn add(self, rhs: CpuTime) -> CpuTime {
        CpuTime { user_s: self.user_s + rhs.user_s, system_s: self.system_s + rhs.system_s }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_clocks_move_with_work_and_never_go_negative() {
        let (process, thread) = (CpuTime::of_process().unwrap(), CpuTime::of_thread().unwrap());
        let mut x = 0u64;
        let until = std::time::Instant::now() + std::time::Duration::from_millis(30);
        while std::time::Instant::now() < until {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let spent = CpuTime::of_thread().unwrap() - thread;
        assert!(spent.total_s() > 0.01, "{spent:?}");
        assert!((CpuTime::of_process().unwrap() - process).total_s() >= spent.total_s() * 0.9);
        assert_eq!((thread - CpuTime::of_process().unwrap()).total_s(), 0.0, "differences clamp at zero");
        assert_eq!(CpuTime { user_s: 1.0, system_s: 1.0 }.micros_per(4), Some(500_000.0));
        assert_eq!(CpuTime::ZERO.micros_per(0), None);
    }

    #[test]
    fn facts_are_filled() {
        let host = host();
        assert!(host.cores >= 1 && !host.cpu.is_empty() && !host.host.is_empty());
        assert!(!build().commit.is_empty());
    }
}
