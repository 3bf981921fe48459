//! `time`: the system clock, the local time zone's offset, and the clock sources
//! under `/sys/devices/system/clocksource`.

use std::ffi::CStr;
use std::time::{SystemTime, UNIX_EPOCH};

use super::{NodeCollector, Result, dir_entries_with_prefix, labels, read_attr, single};
use crate::exposition::family::{MetricFamily, MetricType};

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    out.push(single(
        "node_time_seconds",
        MetricType::Gauge,
        "System time in seconds since epoch (1970).",
        now,
    ));
    let (zone, offset) = local_zone(now as libc::time_t);
    let mut tz = MetricFamily::new(
        "node_time_zone_offset_seconds",
        MetricType::Gauge,
        "System time zone offset in seconds.",
    );
    tz.push(labels([("time_zone", zone.as_str())]), offset);
    out.push(tz);
    clocksources(c, out);
    Ok(())
}

/// The local zone's abbreviation and offset from UTC, as Go's `time.Now().Zone()`.
fn local_zone(t: libc::time_t) -> (String, f64) {
    // SAFETY: an all-zero `tm` is a valid value of this plain C struct.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live locals; localtime_r is the thread-safe form.
    let r = unsafe { libc::localtime_r(&t, &mut tm) };
    if r.is_null() {
        return ("UTC".to_string(), 0.0);
    }
    let zone = if tm.tm_zone.is_null() {
        String::new()
    } else {
        // SAFETY: glibc points tm_zone at a NUL-terminated string it owns for the life
        // of the process.
        unsafe { CStr::from_ptr(tm.tm_zone) }
            .to_string_lossy()
            .into_owned()
    };
    (zone, tm.tm_gmtoff as f64)
}

/// `node_time_clocksource_{available,current}_info{clocksource,device}`; absent
/// when sysfs has no clocksource directory.
fn clocksources(c: &NodeCollector, out: &mut Vec<MetricFamily>) {
    let Ok(sources) =
        dir_entries_with_prefix(&c.sys_path("devices/system/clocksource"), "clocksource")
    else {
        return;
    };
    let mut available = MetricFamily::new(
        "node_time_clocksource_available_info",
        MetricType::Gauge,
        "Available clocksources read from '/sys/devices/system/clocksource'.",
    );
    let mut current = MetricFamily::new(
        "node_time_clocksource_current_info",
        MetricType::Gauge,
        "Current clocksource read from '/sys/devices/system/clocksource'.",
    );
    for (device, dir) in sources {
        if let Some(av) = read_attr(&dir.join("available_clocksource")) {
            for source in av.split_ascii_whitespace() {
                available.push(
                    labels([("clocksource", source), ("device", device.as_str())]),
                    1.0,
                );
            }
        }
        if let Some(cur) = read_attr(&dir.join("current_clocksource")) {
            current.push(
                labels([("clocksource", cur.as_str()), ("device", device.as_str())]),
                1.0,
            );
        }
    }
    if !available.samples.is_empty() {
        out.push(available);
    }
    if !current.samples.is_empty() {
        out.push(current);
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn time_and_clocksources() {
        let fx = Fixture::new();
        fx.write(
            "sys/devices/system/clocksource/clocksource0/available_clocksource",
            "tsc hpet acpi_pm \n",
        );
        fx.write(
            "sys/devices/system/clocksource/clocksource0/current_clocksource",
            "tsc\n",
        );
        let fams = run(&fx.collector(), collect);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!((value(&fams, "node_time_seconds", &[]) - now).abs() < 5.0);
        assert_eq!(
            find(&fams, "node_time_zone_offset_seconds").samples.len(),
            1
        );
        assert_eq!(
            find(&fams, "node_time_clocksource_available_info")
                .samples
                .len(),
            3
        );
        assert_eq!(
            value(
                &fams,
                "node_time_clocksource_current_info",
                &[("clocksource", "tsc"), ("device", "0")]
            ),
            1.0
        );
    }
}
