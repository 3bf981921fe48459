//! `meminfo`: every field of `/proc/meminfo` as `node_memory_<Field>[_bytes]`, named
//! as node_exporter names them: `Active(anon)` becomes `Active_anon`, and fields with
//! a `kB` unit are multiplied by 1024 and get `_bytes` (so `HugePages_Total`, a count,
//! keeps its name while `Hugepagesize` becomes `Hugepagesize_bytes`).

use super::{NodeCollector, Result, parse_error, parse_f64, read_file, single};
use crate::exposition::family::{MetricFamily, MetricType};

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let path = c.proc_path("meminfo");
    let text = read_file(&path)?;
    let before = out.len();
    let mut key = String::with_capacity(32);
    for line in text.lines() {
        let mut fields = line.split_ascii_whitespace();
        let (Some(raw), Some(value)) = (fields.next(), fields.next()) else {
            continue;
        };
        let unit = fields.next();
        let mut v = parse_f64(&path, value)?;
        key.clear();
        // "Active(anon):" -> "Active_anon"
        for ch in raw.trim_end_matches(':').chars() {
            match ch {
                '(' => key.push('_'),
                ')' => {}
                _ => key.push(ch),
            }
        }
        if unit.is_some() {
            v *= 1024.0;
            key.push_str("_bytes");
        }
        out.push(single(
            format!("node_memory_{key}"),
            MetricType::Gauge,
            format!("Memory information field {key}."),
            v,
        ));
    }
    if out.len() == before {
        return Err(parse_error(&path, "no fields"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn meminfo_names_and_units_follow_node_exporter() {
        let fx = Fixture::new();
        fx.write(
            "proc/meminfo",
            "MemTotal:        3831959 kB\nActive(anon):     123 kB\nHugePages_Total:       2\n\
Hugepagesize:       2048 kB\nNFS_Unstable:          0 kB\n",
        );
        let fams = run(&fx.collector(), collect);
        assert_eq!(
            value(&fams, "node_memory_MemTotal_bytes", &[]),
            3831959.0 * 1024.0
        );
        assert_eq!(
            value(&fams, "node_memory_Active_anon_bytes", &[]),
            123.0 * 1024.0
        );
        assert_eq!(value(&fams, "node_memory_HugePages_Total", &[]), 2.0);
        assert_eq!(
            value(&fams, "node_memory_Hugepagesize_bytes", &[]),
            2097152.0
        );
        let f = find(&fams, "node_memory_MemTotal_bytes");
        assert_eq!(f.help, "Memory information field MemTotal_bytes.");
        assert_eq!(f.kind, MetricType::Gauge);
        assert_eq!(fams.len(), 5);
    }
}
