//! `/proc/stat` read as procfs 0.8's `FS.Stat` reads it. node_exporter's `cpu` and
//! `stat` collectors both call it, so a line it refuses fails both, and a line it
//! leaves out (a missing `ctxt`, an offline CPU) reads as zero in both:
//!
//! - a line of fewer than two words is skipped;
//! - `btime`, `ctxt`, `processes`, `procs_running`, `procs_blocked` and every count
//!   of `intr` are unsigned decimal integers;
//! - `softirq` has a total and ten counts (more are ignored); the last such line wins;
//! - every line starting `cpu` is a CPU (`cpu` alone, or `cpu-1`, is the total): up
//!   to ten floats, the missing ones zero; CPUs are indexed by number, and a number
//!   missing between two present ones (an offline CPU) is a CPU of zeros.
//!
//! Where procfs would crash node_exporter (a CPU number below -1) or allocate without
//! bound (a CPU number in the billions), the file is refused instead. procfs reads the
//! cpu columns with `fmt.Sscanf`, whose rare forms (`1p4`, junk after the last
//! column) are not copied: the kernel writes plain integers.

use std::path::Path;

use super::{NodeCollector, Result, parse_error, parse_go_float, read_file};

/// The kernel's USER_HZ. node_exporter (through procfs) divides by a fixed 100 rather
/// than asking sysconf; so do we, so the numbers agree.
const USER_HZ: f64 = 100.0;

/// Linux's largest NR_CPUS is 8192; a CPU number beyond this is not a CPU.
const MAX_CPU_ID: usize = 1 << 16;

/// A CPU's times in seconds, in `/proc/stat`'s column order.
pub(super) type CpuTimes = [f64; 10];

/// The columns of [`CpuTimes`] read by name.
#[cfg(test)]
const USER: usize = 0;
pub(super) const IDLE: usize = 3;
pub(super) const GUEST: usize = 8;
pub(super) const GUEST_NICE: usize = 9;

/// What the cpu and stat collectors read from `/proc/stat`.
#[derive(Debug, Default, Clone, PartialEq)]
pub(super) struct ProcStat {
    /// Per CPU, indexed by CPU number.
    pub cpus: Vec<CpuTimes>,
    pub boot_time: u64,
    pub interrupts: u64,
    pub context_switches: u64,
    pub forks: u64,
    pub procs_running: u64,
    pub procs_blocked: u64,
    /// The ten softirq vectors' counts, in the kernel's order.
    pub softirqs: [u64; 10],
}

pub(super) fn read(c: &NodeCollector) -> Result<ProcStat> {
    let path = c.proc_path("stat");
    parse(&path, &read_file(&path)?)
}

/// Go's `strconv.ParseUint(s, 10, 64)`: ASCII digits only.
fn decimal(path: &Path, what: &str, s: &str) -> Result<u64> {
    Some(s)
        .filter(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| parse_error(path, format!("couldn't parse {s:?} ({what})")))
}

pub(super) fn parse(path: &Path, text: &str) -> Result<ProcStat> {
    let mut stat = ProcStat::default();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let [key, first, rest @ ..] = words.as_slice() else {
            continue;
        };
        match *key {
            "btime" => stat.boot_time = decimal(path, key, first)?,
            "ctxt" => stat.context_switches = decimal(path, key, first)?,
            "processes" => stat.forks = decimal(path, key, first)?,
            "procs_running" => stat.procs_running = decimal(path, key, first)?,
            "procs_blocked" => stat.procs_blocked = decimal(path, key, first)?,
            "intr" => {
                stat.interrupts = decimal(path, key, first)?;
                for count in rest {
                    decimal(path, key, count)?;
                }
            }
            "softirq" => {
                decimal(path, key, first)?;
                if rest.len() < stat.softirqs.len() {
                    return Err(parse_error(
                        path,
                        format!("couldn't parse {line:?} (softirq): too few counts"),
                    ));
                }
                for (slot, count) in stat.softirqs.iter_mut().zip(rest) {
                    *slot = decimal(path, key, count)?;
                }
            }
            cpu if cpu.starts_with("cpu") => {
                let mut times: CpuTimes = [0.0; 10];
                for (slot, word) in times.iter_mut().zip(&words[1..]) {
                    *slot = parse_go_float(word).ok_or_else(|| {
                        parse_error(path, format!("couldn't parse {line:?} (cpu)"))
                    })? / USER_HZ;
                }
                // Go's ParseInt(id, 10, 64): a sign, then digits. -1, like the bare
                // `cpu`, is the total; below that node_exporter 1.5 crashes.
                let id = &cpu[3..];
                if id.is_empty() {
                    continue;
                }
                let (negative, digits) = match id.as_bytes()[0] {
                    b'-' => (true, &id[1..]),
                    b'+' => (false, &id[1..]),
                    _ => (false, id),
                };
                let number = Some(digits)
                    .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|d| d.parse::<usize>().ok());
                let id = match (negative, number) {
                    (true, Some(1)) => continue,
                    (false, Some(id)) if id <= MAX_CPU_ID => id,
                    _ => {
                        return Err(parse_error(
                            path,
                            format!("couldn't parse {line:?} (cpu/cpuid)"),
                        ));
                    }
                };
                if stat.cpus.len() <= id {
                    stat.cpus.resize(id + 1, [0.0; 10]);
                }
                stat.cpus[id] = times;
            }
            _ => {}
        }
    }
    Ok(stat)
}

/// node_exporter's guard against CPU counters that go backwards (the kernel's iowait,
/// for one, can): each column keeps the largest value seen, and a CPU whose idle time
/// drops by [`JUMP_BACK_SECONDS`] or more (unplugged and back) starts again from what
/// it reads now. All CPUs start again when their number changes.
#[derive(Debug, Default)]
pub(super) struct MonotonicCpus(std::sync::Mutex<Vec<CpuTimes>>);

/// node_exporter's `jumpBackSeconds`.
const JUMP_BACK_SECONDS: f64 = 3.0;

impl MonotonicCpus {
    pub(super) fn update(&self, read: &[CpuTimes]) -> Vec<CpuTimes> {
        let mut kept = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if kept.len() != read.len() {
            *kept = vec![[0.0; 10]; read.len()];
        }
        for (old, new) in kept.iter_mut().zip(read) {
            if old[IDLE] - new[IDLE] >= JUMP_BACK_SECONDS {
                *old = [0.0; 10];
            }
            for (o, n) in old.iter_mut().zip(new) {
                // A NaN never replaces a value, as in Go.
                if *n >= *o {
                    *o = *n;
                }
            }
        }
        kept.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<ProcStat> {
        parse(Path::new("/proc/stat"), text)
    }

    #[test]
    fn fields_and_cpus_as_procfs_reads_them() {
        let s = parsed(
            "cpu  1 2 3 4 5 6 7 8 9 10\n\
             cpu0\t100 5 0 0 0 0 0 0 7 1\n\
             cpu+2 200 1e2 0x10p0 1_0\n\
             cpu-1 7 7 7\n\
             intr 9 1 0 2\n\
             ctxt 38\n\
             ctxt\n\
             btime 1418183276\n\
             processes 26442\n\
             procs_running 2\n\
             softirq 1 1 1 1 1 1 1 1 1 1 1\n\
             softirq 55 0 1 2 3 4 5 6 7 8 9 10\n",
        )
        .unwrap();
        assert_eq!(s.cpus.len(), 3, "cpu1 is offline: zeros");
        assert_eq!(
            s.cpus[0],
            [1.0, 0.05, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.07, 0.01]
        );
        assert_eq!(s.cpus[1], [0.0; 10]);
        assert_eq!(s.cpus[2][..4], [2.0, 1.0, 0.16, 0.1]);
        assert_eq!(s.cpus[2][GUEST], 0.0, "missing columns are zero");
        assert_eq!(
            (s.interrupts, s.context_switches, s.boot_time, s.forks),
            (9, 38, 1418183276, 26442)
        );
        assert_eq!((s.procs_running, s.procs_blocked), (2, 0));
        assert_eq!(
            s.softirqs,
            [0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
            "the last line wins"
        );
        assert_eq!(parsed("").unwrap(), ProcStat::default());
    }

    #[test]
    fn lines_procfs_refuses_refuse_the_file() {
        for bad in [
            "ctxt +5\n",
            "ctxt x\n",
            "intr 5 1 x\n",
            "btime -1\n",
            "softirq 5 1 2 3\n",
            "softirq x 1 2 3 4 5 6 7 8 9 10\n",
            "softirq 5 +1 2 3 4 5 6 7 8 9 10\n",
            "cpux 1 2\n",
            "cpu0 1 two 3\n",
            "cpu-2 1 2\n",
            "cpu--1 1 2\n",
            "cpu99999999999 1 2\n",
            "procs_blocked 18446744073709551616\n",
        ] {
            assert!(parsed(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn counters_do_not_go_backwards() {
        let m = MonotonicCpus::default();
        let mut t = [0.0; 10];
        t[USER] = 5.0;
        t[IDLE] = 100.0;
        assert_eq!(m.update(&[t])[0][USER], 5.0);
        t[USER] = 3.0;
        t[IDLE] = 99.0;
        let kept = m.update(&[t])[0];
        assert_eq!((kept[USER], kept[IDLE]), (5.0, 100.0));
        t[USER] = f64::NAN;
        assert_eq!(m.update(&[t])[0][USER], 5.0);
        // Idle 3 s back or more: the CPU was unplugged; start again.
        t[USER] = 1.0;
        t[IDLE] = 96.5;
        let kept = m.update(&[t])[0];
        assert_eq!((kept[USER], kept[IDLE]), (1.0, 96.5));
        // Another number of CPUs: all start again.
        let both = m.update(&[[0.5; 10], [0.5; 10]]);
        assert_eq!(both, vec![[0.5; 10], [0.5; 10]]);
    }
}
