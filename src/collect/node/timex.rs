//! `timex`: the kernel clock's discipline as `adjtimex(2)` reports it (offset,
//! frequency, errors, PPS counters, and whether the clock is synchronised), the
//! families alerts such as "clock not synchronising" read. The clock is the kernel's,
//! so the paths of a containerised collector do not change it.

use super::{NodeCollector, NodeError, Result, single};
use crate::exposition::family::{MetricFamily, MetricType};

/// `adjtimex`'s answer, as plain integers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Timex {
    /// The return value: the clock state; `TIME_ERROR` when unsynchronised.
    state: i64,
    offset: i64,
    freq: i64,
    maxerror: i64,
    esterror: i64,
    status: i64,
    constant: i64,
    tick: i64,
    ppsfreq: i64,
    jitter: i64,
    shift: i64,
    stabil: i64,
    jitcnt: i64,
    calcnt: i64,
    errcnt: i64,
    stbcnt: i64,
    tai: i64,
}

/// The clock state that means "not synchronised".
const TIME_ERROR: i64 = 5;
/// `STA_NANO`: `offset` and `jitter` are in nanoseconds, not microseconds.
const STA_NANO: i64 = 0x2000;
/// Frequencies are parts per million with a 16-bit binary fraction.
const PPM16FRAC: f64 = 1_000_000.0 * 65_536.0;
const MICRO: f64 = 1e6;
const NANO: f64 = 1e9;

fn read() -> Result<Timex> {
    // SAFETY: an all-zero timex is valid, and `modes == 0` makes adjtimex only read.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: a pointer to a live, writable timex.
    let state = unsafe { libc::adjtimex(&mut tx) };
    if state < 0 {
        return Err(NodeError::Syscall {
            call: "adjtimex",
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(Timex {
        state: i64::from(state),
        offset: tx.offset as i64,
        freq: tx.freq as i64,
        maxerror: tx.maxerror as i64,
        esterror: tx.esterror as i64,
        status: i64::from(tx.status),
        constant: tx.constant as i64,
        tick: tx.tick as i64,
        ppsfreq: tx.ppsfreq as i64,
        jitter: tx.jitter as i64,
        shift: i64::from(tx.shift),
        stabil: tx.stabil as i64,
        jitcnt: tx.jitcnt as i64,
        calcnt: tx.calcnt as i64,
        errcnt: tx.errcnt as i64,
        stbcnt: tx.stbcnt as i64,
        tai: i64::from(tx.tai),
    })
}

fn families(t: &Timex) -> Vec<MetricFamily> {
    let divisor = if t.status & STA_NANO != 0 {
        NANO
    } else {
        MICRO
    };
    let g = MetricType::Gauge;
    let c = MetricType::Counter;
    let sync = if t.state == TIME_ERROR { 0.0 } else { 1.0 };
    [
        (
            "node_timex_sync_status",
            g,
            "Is clock synchronized to a reliable server (1 = yes, 0 = no).",
            sync,
        ),
        (
            "node_timex_offset_seconds",
            g,
            "Time offset in between local system and reference clock.",
            t.offset as f64 / divisor,
        ),
        (
            "node_timex_frequency_adjustment_ratio",
            g,
            "Local clock frequency adjustment.",
            1.0 + t.freq as f64 / PPM16FRAC,
        ),
        (
            "node_timex_maxerror_seconds",
            g,
            "Maximum error in seconds.",
            t.maxerror as f64 / MICRO,
        ),
        (
            "node_timex_estimated_error_seconds",
            g,
            "Estimated error in seconds.",
            t.esterror as f64 / MICRO,
        ),
        (
            "node_timex_status",
            g,
            "Value of the status array bits.",
            t.status as f64,
        ),
        (
            "node_timex_loop_time_constant",
            g,
            "Phase-locked loop time constant.",
            t.constant as f64,
        ),
        (
            "node_timex_tick_seconds",
            g,
            "Seconds between clock ticks.",
            t.tick as f64 / MICRO,
        ),
        (
            "node_timex_pps_frequency_hertz",
            g,
            "Pulse per second frequency.",
            t.ppsfreq as f64 / PPM16FRAC,
        ),
        (
            "node_timex_pps_jitter_seconds",
            g,
            "Pulse per second jitter.",
            t.jitter as f64 / divisor,
        ),
        (
            "node_timex_pps_shift_seconds",
            g,
            "Pulse per second interval duration.",
            t.shift as f64,
        ),
        (
            "node_timex_pps_stability_hertz",
            g,
            "Pulse per second stability, average of recent frequency changes.",
            t.stabil as f64 / PPM16FRAC,
        ),
        (
            "node_timex_pps_jitter_total",
            c,
            "Pulse per second count of jitter limit exceeded events.",
            t.jitcnt as f64,
        ),
        (
            "node_timex_pps_calibration_total",
            c,
            "Pulse per second count of calibration intervals.",
            t.calcnt as f64,
        ),
        (
            "node_timex_pps_error_total",
            c,
            "Pulse per second count of calibration errors.",
            t.errcnt as f64,
        ),
        (
            "node_timex_pps_stability_exceeded_total",
            c,
            "Pulse per second count of stability limit exceeded events.",
            t.stbcnt as f64,
        ),
        (
            "node_timex_tai_offset_seconds",
            g,
            "International Atomic Time (TAI) offset.",
            t.tai as f64,
        ),
    ]
    .into_iter()
    .map(|(name, kind, help, value)| single(name, kind, help, value))
    .collect()
}

pub(super) fn collect(_: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    out.extend(families(&read()?));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn units_as_node_exporter_converts_them() {
        let fams = families(&Timex {
            state: 0,
            offset: -1500,
            freq: 65_536 * 10,
            maxerror: 16_000,
            esterror: 250,
            status: 0x2001 & !STA_NANO,
            constant: 7,
            tick: 10_000,
            ppsfreq: 65_536,
            jitter: 40,
            shift: 2,
            stabil: 0,
            jitcnt: 3,
            calcnt: 4,
            errcnt: 5,
            stbcnt: 6,
            tai: 37,
        });
        assert_eq!(value(&fams, "node_timex_sync_status", &[]), 1.0);
        assert_eq!(value(&fams, "node_timex_offset_seconds", &[]), -0.0015);
        assert!(
            (value(&fams, "node_timex_frequency_adjustment_ratio", &[]) - 1.00001).abs() < 1e-12
        );
        assert_eq!(value(&fams, "node_timex_maxerror_seconds", &[]), 0.016);
        assert_eq!(value(&fams, "node_timex_tick_seconds", &[]), 0.01);
        assert_eq!(value(&fams, "node_timex_pps_frequency_hertz", &[]), 1e-6);
        assert_eq!(value(&fams, "node_timex_pps_jitter_seconds", &[]), 4e-5);
        assert_eq!(value(&fams, "node_timex_tai_offset_seconds", &[]), 37.0);
        assert_eq!(
            find(&fams, "node_timex_pps_calibration_total").kind,
            MetricType::Counter
        );
        assert_eq!(fams.len(), 17);
    }

    #[test]
    fn nanosecond_resolution_and_an_unsynchronised_clock() {
        let fams = families(&Timex {
            state: TIME_ERROR,
            offset: 2_000_000,
            status: STA_NANO,
            ..Timex::default()
        });
        assert_eq!(value(&fams, "node_timex_sync_status", &[]), 0.0);
        assert_eq!(value(&fams, "node_timex_offset_seconds", &[]), 0.002);
    }

    #[test]
    fn this_kernel_answers() {
        let fx = Fixture::new();
        let fams = run(&fx.collector(), collect);
        let tick = value(&fams, "node_timex_tick_seconds", &[]);
        assert!(tick > 0.0 && tick < 1.0, "tick {tick}");
    }
}
