//! Facts about this machine and this build, and the CPU clocks figures are made from:
//! what every report records beside its figures (provenance) and what `load`, the
//! workbench and `serve` measure CPU time with. One place, below everything that
//! reports, so `run`, `load --json` and `bench-report` say the same thing the same way.

use serde::{Deserialize, Serialize};

/// Cores this process may use (its affinity mask, not the machine's total).
/// Seconds since the Unix epoch (0 for a clock set before it).
pub fn unix_seconds() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

/// Microseconds since the Unix epoch (0 for a clock set before it).
pub fn unix_micros() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_micros() as i64)
}

/// Stops a child process the way every process here is stopped: SIGTERM, so it can
/// drain and close its links, then SIGKILL if it is still running after `grace`.
/// Reaps it; false when it had to be killed.
pub fn stop_child(child: &mut std::process::Child, grace: std::time::Duration) -> bool {
    if let Ok(Some(_)) = child.try_wait() {
        return true;
    }
    // SAFETY: kill only sends a signal to the child's pid, which has not been reaped.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = std::time::Instant::now() + grace;
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

pub fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The ids of the cores this process may run on, for pinning.
pub fn core_ids() -> Vec<usize> {
    core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|c| c.id).collect()
}

/// Pins the calling thread to core `id`; false if the system refused.
pub fn pin_current_thread(id: usize) -> bool {
    core_affinity::set_for_current(core_affinity::CoreId { id })
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

    /// Another process's CPU time so far, from `/proc/<pid>/stat` (Linux); `None`
    /// where there is no such file or it does not parse.
    pub fn of_pid(pid: u32) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name, in parentheses, may hold spaces: count fields after it.
        let fields: Vec<&str> = stat.get(stat.rfind(')')? + 2..)?.split_whitespace().collect();
        let ticks = |i: usize| fields.get(i)?.parse::<f64>().ok();
        // SAFETY: sysconf only reads a configuration value.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
        if per_second <= 0.0 {
            return None;
        }
        // utime and stime: the 14th and 15th fields, 12th and 13th after the name.
        Some(Self { user_s: ticks(11)? / per_second, system_s: ticks(12)? / per_second })
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

    pub fn plus(self, other: Self) -> Self {
        Self { user_s: self.user_s + other.user_s, system_s: self.system_s + other.system_s }
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

/// The whole machine's CPU time so far, from `/proc/stat`'s first line: what every
/// process spent, and what the hypervisor took (steal), in seconds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MachineCpu {
    /// user, nice, system, irq and softirq: every process's work, this one's included.
    pub busy_s: f64,
    /// Time a virtual CPU waited while the hypervisor ran something else.
    pub steal_s: f64,
    /// Every state, idle included: elapsed time × CPUs.
    pub total_s: f64,
}

impl MachineCpu {
    /// `None` where `/proc/stat` is not readable (not Linux).
    pub fn now() -> Option<Self> {
        Self::parse(&std::fs::read_to_string("/proc/stat").ok()?)
    }

    fn parse(stat: &str) -> Option<Self> {
        let line = stat.lines().find(|l| l.starts_with("cpu "))?;
        let ticks: Vec<f64> = line.split_whitespace().skip(1).map_while(|v| v.parse().ok()).collect();
        let tick = |i: usize| ticks.get(i).copied().unwrap_or(0.0);
        // user nice system idle iowait irq softirq steal (guest time is inside user).
        let hz = user_hz();
        let (busy, steal) = (tick(0) + tick(1) + tick(2) + tick(5) + tick(6), tick(7));
        let total = busy + tick(3) + tick(4) + steal;
        (total > 0.0).then(|| Self { busy_s: busy / hz, steal_s: steal / hz, total_s: total / hz })
    }
}

fn user_hz() -> f64 {
    // SAFETY: sysconf has no memory arguments.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if hz > 0 { hz as f64 } else { 100.0 }
}

/// What else the machine did while something of this process was measured.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Disturbance {
    /// CPU time other processes took, as a share of the whole machine's capacity.
    pub others_share: f64,
    /// CPU time the hypervisor took, likewise.
    pub steal_share: f64,
}

impl Disturbance {
    /// Between two readings of the machine and of this process.
    pub fn between(machine: (MachineCpu, MachineCpu), process: (CpuTime, CpuTime)) -> Option<Self> {
        let total = machine.1.total_s - machine.0.total_s;
        if total <= 0.0 {
            return None;
        }
        let ours = (process.1 - process.0).total_s();
        let others = (machine.1.busy_s - machine.0.busy_s - ours).max(0.0);
        let steal = (machine.1.steal_s - machine.0.steal_s).max(0.0);
        Some(Self { others_share: others / total, steal_share: steal / total })
    }

    /// More than `share` of the machine went elsewhere.
    pub fn exceeds(&self, share: f64) -> bool {
        self.others_share > share || self.steal_share > share
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
    fn proc_stat_is_read_into_busy_steal_and_total() {
        let stat = "cpu  1000 10 500 8000 100 20 30 40 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\n";
        let cpu = MachineCpu::parse(stat).unwrap();
        let hz = user_hz();
        assert_eq!(cpu.busy_s, 1_560.0 / hz);
        assert_eq!(cpu.steal_s, 40.0 / hz);
        assert_eq!(cpu.total_s, 9_700.0 / hz);
        assert!(MachineCpu::parse("intr 1 2 3").is_none());
        assert!(MachineCpu::now().is_some(), "this is Linux");
    }

    #[test]
    fn disturbance_is_the_others_share() {
        let machine = |busy: f64, steal: f64, total: f64| MachineCpu { busy_s: busy, steal_s: steal, total_s: total };
        let process = |s: f64| CpuTime { user_s: s, system_s: 0.0 };
        // 8 s of machine (2 CPUs × 4 s): 5 s busy, of which this process 4 s.
        let d = Disturbance::between((machine(0.0, 0.0, 0.0), machine(5.0, 0.4, 8.0)), (process(1.0), process(5.0)))
            .unwrap();
        assert_eq!(d.others_share, 1.0 / 8.0);
        assert_eq!(d.steal_share, 0.4 / 8.0);
        assert!(d.exceeds(0.10) && !d.exceeds(0.2));
    }

    #[test]
    fn facts_are_filled() {
        let host = host();
        assert!(host.cores >= 1 && !host.cpu.is_empty() && !host.host.is_empty());
        assert!(!build().commit.is_empty());
    }
}
