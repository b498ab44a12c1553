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
    Machine { n_cpus, cpu_model, memory, kernel, rustc, commit, load_average }
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
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // The command name may hold spaces; the fields after it are separated by single spaces.
    let after_name = &stat[stat.rfind(')')? + 2..];
    let mut fields = after_name.split(' ').skip(11);
    let user: u64 = fields.next()?.parse().ok()?;
    let system: u64 = fields.next()?.parse().ok()?;
    Some((user + system) as f64 / 100.0)
}
