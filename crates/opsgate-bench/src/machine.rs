//! What the benchmark ran on, for the header of BENCHMARKS.md: figures mean little without the
//! machine, the toolchain, the commit and how busy the machine already was.

use std::process::Command;

pub struct Machine {
    pub n_cpus: usize,
    pub cpu_model: String,
    pub memory: String,
    pub kernel: String,
    pub rustc: String,
    pub commit: String,
    /// /proc/loadavg when the run started: other work on a shared machine skews every figure.
    pub load_average: String,
    /// The share of CPU time the hypervisor gave to other guests (steal) while a section ran,
    /// by section: on a shared virtual machine it slows every figure of that section.
    pub stolen: Vec<(&'static str, f64)>,
}

pub fn describe() -> Machine {
    let n_cpus = std::thread::available_parallelism().map(usize::from).unwrap_or(1);
    let cpuinfo = read("/proc/cpuinfo");
    let cpu_model = cpuinfo
        .lines()
        .find(|line| line.starts_with("model name"))
        .and_then(|line| line.split_once(':'))
        .map(|(_, model)| model.trim().to_string())
        .unwrap_or_else(|| "unknown".to_string());
    let meminfo = read("/proc/meminfo");
    let memory = meminfo
        .lines()
        .find(|line| line.starts_with("MemTotal:"))
        .and_then(|line| line.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map(|kib| format!("{:.1} GiB", kib / (1024.0 * 1024.0)))
        .unwrap_or_else(|| "unknown".to_string());
    let kernel = non_empty(read("/proc/sys/kernel/osrelease").trim().to_string());
    let load_average = non_empty(read("/proc/loadavg").split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    let rustc = non_empty(output("rustc", &["--version"]));
    let commit = match output("git", &["rev-parse", "--short", "HEAD"]).as_str() {
        "" => "unknown".to_string(),
        commit => {
            let dirty = !output("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty();
            if dirty { format!("{commit} with uncommitted changes") } else { commit.to_string() }
        }
    };
    Machine { n_cpus, cpu_model, memory, kernel, rustc, commit, load_average, stolen: Vec::new() }
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

/// A command's trimmed stdout, or empty if it could not run or failed.
fn output(program: &str, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(output) if output.status.success() => String::from_utf8_lossy(&output.stdout).trim().to_string(),
        _ => String::new(),
    }
}

fn non_empty(text: String) -> String {
    if text.is_empty() { "unknown".to_string() } else { text }
}

/// User plus system CPU time of this whole process so far, from /proc/self/stat (fields 14 and
/// 15, in clock ticks of 1/100 s on Linux).
pub fn process_cpu_seconds() -> Option<f64> {
    cpu_seconds_in("/proc/self/stat")
}

/// The same for process `pid` (an opsgate the benchmark started).
pub fn pid_cpu_seconds(pid: u32) -> Option<f64> {
    cpu_seconds_in(&format!("/proc/{pid}/stat"))
}

/// CPU time the whole machine has spent busy, and waiting for IO, since boot, summed over its
/// CPUs, from the first line of /proc/stat (user nice system idle iowait irq softirq steal …, in
/// ticks of 1/100 s). Busy is everything but idle and iowait.
pub fn machine_cpu_seconds() -> Option<(f64, f64)> {
    machine_cpu_in(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// The first eight figures of /proc/stat's first line (all CPUs): user, nice, system, idle,
/// iowait, irq, softirq, steal, in ticks since boot.
fn all_cpu_ticks(stat: &str) -> Option<[u64; 8]> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let ticks: Vec<u64> = line.split_whitespace().take(8).map(str::parse).collect::<Result<_, _>>().ok()?;
    ticks.try_into().ok()
}

/// All CPU time and stolen CPU time since boot, in ticks, from the first line of /proc/stat.
pub fn cpu_and_steal_ticks() -> Option<(u64, u64)> {
    cpu_and_steal_in(&std::fs::read_to_string("/proc/stat").ok()?)
}

/// The share of CPU time stolen between two `cpu_and_steal_ticks` readings.
pub fn stolen_share(start: (u64, u64), end: (u64, u64)) -> Option<f64> {
    let total = end.0.checked_sub(start.0)?;
    let steal = end.1.checked_sub(start.1)?;
    (total > 0).then(|| steal as f64 / total as f64)
}

fn cpu_and_steal_in(stat: &str) -> Option<(u64, u64)> {
    let ticks = all_cpu_ticks(stat)?;
    Some((ticks.iter().sum(), ticks[7]))
}

fn machine_cpu_in(stat: &str) -> Option<(f64, f64)> {
    let [user, nice, system, _idle, iowait, irq, softirq, steal] = all_cpu_ticks(stat)?;
    let busy = user + nice + system + irq + softirq + steal;
    Some((busy as f64 / 100.0, iowait as f64 / 100.0))
}

fn cpu_seconds_in(path: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(path).ok()?;
    // The command name may hold spaces; the fields after it are separated by single spaces.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let mut fields = after_name.split(' ').skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) as f64 / 100.0)
}

#[cfg(test)]
mod tests {
    use super::{cpu_and_steal_in, machine_cpu_in, stolen_share};

    #[test]
    fn machine_cpu_is_busy_and_iowait_from_the_first_line() {
        let stat = "cpu  100 20 30 5000 40 1 2 3 0 0\ncpu0 50 10 15 2500 20 0 1 1 0 0\n";
        assert_eq!(machine_cpu_in(stat), Some((1.56, 0.4)));
        assert_eq!(machine_cpu_in("cpu0 1 2 3\n"), None);
        assert_eq!(machine_cpu_in("cpu  1 2 x 4 5 6 7 8\n"), None);
    }

    #[test]
    fn steal_is_the_eighth_figure_of_the_first_line() {
        let stat = "cpu  100 20 30 5000 40 1 2 3 0 0\ncpu0 50 10 15 2500 20 0 1 1 0 0\n";
        assert_eq!(cpu_and_steal_in(stat), Some((5196, 3)));
        assert_eq!(cpu_and_steal_in("cpu  1 2 3\n"), None);
        assert_eq!(stolen_share((1000, 10), (1400, 110)), Some(0.25));
        assert_eq!(stolen_share((1000, 10), (1000, 10)), None);
    }
}
