//! `nfsd`: the NFS server's statistics from `/proc/net/rpc/nfsd`: reply cache, file
//! handles, disk I/O, threads, read-ahead cache, network, RPC errors, and calls per
//! procedure of NFS v2, v3 and per operation of v4.
//!
//! Two deliberate differences from node_exporter 1.5 (procfs 0.8): v4's `Verify`,
//! `Write` and `RelLockOwner` are the kernel's VERIFY, WRITE and RELEASE_LOCKOWNER
//! counts (procfs 0.8 skipped SETCLIENTID and SETCLIENTID_CONFIRM and so reported
//! each under the next name), and the `wdeleg_getattr` line of kernels since 6.5 is
//! read past instead of failing the collector.

use std::path::Path;

use super::nfs::{counted, stat_line};
use super::{NodeCollector, Result, labels, parse_error, read_file, single};
use crate::exposition::family::{MetricFamily, MetricType};

/// v2 and v3 procedures after NULL (not reported), in the kernel's order.
const V2: &[&str] = &[
    "GetAttr", "SetAttr", "Root", "Lookup", "ReadLink", "Read", "WrCache", "Write", "Create",
    "Remove", "Rename", "Link", "SymLink", "MkDir", "RmDir", "ReadDir", "FsStat",
];
const V3: &[&str] = &[
    "GetAttr",
    "SetAttr",
    "Lookup",
    "Access",
    "ReadLink",
    "Read",
    "Write",
    "Create",
    "MkDir",
    "SymLink",
    "MkNod",
    "Remove",
    "RmDir",
    "Rename",
    "Link",
    "ReadDir",
    "ReadDirPlus",
    "FsStat",
    "FsInfo",
    "PathConf",
    "Commit",
];
/// v4 operations reported, with the kernel's operation number (RFC 7530's
/// `nfs_opnum4`, the position on the `proc4ops` line after the count).
const V4: &[(&str, usize)] = &[
    ("Access", 3),
    ("Close", 4),
    ("Commit", 5),
    ("Create", 6),
    ("DelegPurge", 7),
    ("DelegReturn", 8),
    ("GetAttr", 9),
    ("GetFH", 10),
    ("Link", 11),
    ("Lock", 12),
    ("Lockt", 13),
    ("Locku", 14),
    ("Lookup", 15),
    ("LookupRoot", 16),
    ("Nverify", 17),
    ("Open", 18),
    ("OpenAttr", 19),
    ("OpenConfirm", 20),
    ("OpenDgrd", 21),
    ("PutFH", 22),
    ("Read", 25),
    ("ReadDir", 26),
    ("ReadLink", 27),
    ("Remove", 28),
    ("Rename", 29),
    ("Renew", 30),
    ("RestoreFH", 31),
    ("SaveFH", 32),
    ("SecInfo", 33),
    ("SetAttr", 34),
    ("Verify", 37),
    ("Write", 38),
    ("RelLockOwner", 39),
];

/// The server's counters; lines the kernel did not write stay zero.
#[derive(Default)]
struct ServerStats {
    rc: [u64; 3],
    fh: [u64; 5],
    io: [u64; 2],
    th: [u64; 2],
    ra: [u64; 12],
    net: [u64; 4],
    rpc: [u64; 5],
    /// Counts per procedure, NULL first.
    v2: Vec<u64>,
    v3: Vec<u64>,
    /// Counts per operation number.
    v4_ops: Vec<u64>,
}

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let path = c.proc_path("net/rpc/nfsd");
    let s = parse(&path, &read_file(&path)?)?;
    let counter =
        |name: &str, help: &str, v: u64| single(name, MetricType::Counter, help, v as f64);
    out.push(counter(
        "node_nfsd_reply_cache_hits_total",
        "Total number of NFSd Reply Cache hits (client lost server response).",
        s.rc[0],
    ));
    out.push(counter(
        "node_nfsd_reply_cache_misses_total",
        "Total number of NFSd Reply Cache an operation that requires caching (idempotent).",
        s.rc[1],
    ));
    out.push(counter(
        "node_nfsd_reply_cache_nocache_total",
        "Total number of NFSd Reply Cache non-idempotent operations (rename/delete/\u{2026}).",
        s.rc[2],
    ));
    out.push(counter(
        "node_nfsd_file_handles_stale_total",
        "Total number of NFSd stale file handles",
        s.fh[0],
    ));
    out.push(counter(
        "node_nfsd_disk_bytes_read_total",
        "Total NFSd bytes read.",
        s.io[0],
    ));
    out.push(counter(
        "node_nfsd_disk_bytes_written_total",
        "Total NFSd bytes written.",
        s.io[1],
    ));
    out.push(single(
        "node_nfsd_server_threads",
        MetricType::Gauge,
        "Total number of NFSd kernel threads that are running.",
        s.th[0] as f64,
    ));
    out.push(single(
        "node_nfsd_read_ahead_cache_size_blocks",
        MetricType::Gauge,
        "How large the read ahead cache is in blocks.",
        s.ra[0] as f64,
    ));
    out.push(counter(
        "node_nfsd_read_ahead_cache_not_found_total",
        "Total number of NFSd read ahead cache not found.",
        s.ra[11],
    ));
    let mut packets = MetricFamily::new(
        "node_nfsd_packets_total",
        MetricType::Counter,
        "Total NFSd network packets (sent+received) by protocol type.",
    );
    packets.push(labels([("proto", "udp")]), s.net[1] as f64);
    packets.push(labels([("proto", "tcp")]), s.net[2] as f64);
    out.push(packets);
    out.push(counter(
        "node_nfsd_connections_total",
        "Total number of NFSd TCP connections.",
        s.net[3],
    ));
    let mut errors = MetricFamily::new(
        "node_nfsd_rpc_errors_total",
        MetricType::Counter,
        "Total number of NFSd RPC errors by error type.",
    );
    // The second field is the kernel's sum of the three.
    for (error, v) in [("fmt", s.rpc[2]), ("auth", s.rpc[3]), ("cInt", s.rpc[4])] {
        errors.push(labels([("error", error)]), v as f64);
    }
    out.push(errors);
    out.push(counter(
        "node_nfsd_server_rpcs_total",
        "Total number of NFSd RPCs.",
        s.rpc[0],
    ));
    let mut requests = MetricFamily::new(
        "node_nfsd_requests_total",
        MetricType::Counter,
        "Total number NFSd Requests by method and protocol.",
    );
    let count = |counts: &[u64], i: usize| counts.get(i).copied().unwrap_or(0) as f64;
    for (proto, methods, counts) in [("2", V2, &s.v2), ("3", V3, &s.v3)] {
        for (i, method) in methods.iter().enumerate() {
            // Position 0 is NULL.
            requests.push(
                labels([("method", method), ("proto", proto)]),
                count(counts, i + 1),
            );
        }
    }
    for (method, op) in V4 {
        requests.push(
            labels([("method", method), ("proto", "4")]),
            count(&s.v4_ops, *op),
        );
    }
    out.push(requests);
    Ok(())
}

/// Every line of the file; an unknown line, or one with the wrong number of values,
/// is an error (as in node_exporter) but for `wdeleg_getattr`.
fn parse(path: &Path, text: &str) -> Result<ServerStats> {
    let mut s = ServerStats::default();
    for line in text.lines() {
        let bad = |what: &str| parse_error(path, format!("{what}: {line:?}"));
        // The thread line ends in a histogram of floats that is not reported.
        let max_values = if line.split_whitespace().next() == Some("th") {
            2
        } else {
            usize::MAX
        };
        let (name, values) = stat_line(path, line, max_values)?;
        let exact = |n: &str| bad(&format!("{n}: wrong number of values"));
        match name {
            "rc" => s.rc = values.try_into().map_err(|_| exact("rc"))?,
            "fh" => s.fh = values.try_into().map_err(|_| exact("fh"))?,
            "io" => s.io = values.try_into().map_err(|_| exact("io"))?,
            "th" => s.th = values.try_into().map_err(|_| exact("th"))?,
            "ra" => s.ra = values.try_into().map_err(|_| exact("ra"))?,
            "net" => s.net = values.try_into().map_err(|_| exact("net"))?,
            "rpc" => s.rpc = values.try_into().map_err(|_| exact("rpc"))?,
            "proc2" => s.v2 = counted(&values, 18, None).ok_or_else(|| exact("proc2"))?,
            "proc3" => s.v3 = counted(&values, 22, None).ok_or_else(|| exact("proc3"))?,
            // NULL and COMPOUND: checked, not reported.
            "proc4" => {
                counted(&values, 2, Some(2)).ok_or_else(|| exact("proc4"))?;
            }
            "proc4ops" => s.v4_ops = counted(&values, 39, None).ok_or_else(|| exact("proc4ops"))?,
            // Kernels since 6.5: GETATTRs answered from a write delegation.
            "wdeleg_getattr" => {}
            _ => return Err(bad("unknown line")),
        }
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    fn ops(n: usize) -> String {
        let values: Vec<String> = (0..n).map(|op| op.to_string()).collect();
        format!("proc4ops {n} {}", values.join(" "))
    }

    #[test]
    fn server_counters_and_v4_operations_by_number() {
        let fx = Fixture::new();
        fx.write(
            "proc/net/rpc/nfsd",
            &format!(
                "rc 0 418237 2915480\nfh 3 0 0 0 0\nio 2867340183552 1124918267904\n\
                 th 16 0 0.000 0.000 0.000 0.000 0.000 0.000 0.000 0.000 0.000 0.000\n\
                 ra 64 4012 311 120 55 31 17 9 4 2 1 733\nnet 3333759 42 3333717 1624\n\
                 rpc 3333717 9 2 7 0\n\
                 proc3 22 14 1802231 40122 1120034 2200117 311 9876543 5432198 61024 3120 88 0 52011 2045 7722 41 33012 120944 8812 14 7 401233\n\
                 proc4 2 31 1554112\n{}\nwdeleg_getattr 0\n",
                ops(76)
            ),
        );
        let fams = run(&fx.collector(), collect);
        let req = |proto: &str, method: &str| {
            value(
                &fams,
                "node_nfsd_requests_total",
                &[("proto", proto), ("method", method)],
            )
        };
        // Each v4 operation reports its own number's count.
        assert_eq!(req("4", "Access"), 3.0);
        assert_eq!(req("4", "SetAttr"), 34.0);
        assert_eq!(req("4", "Verify"), 37.0);
        assert_eq!(req("4", "Write"), 38.0);
        assert_eq!(req("4", "RelLockOwner"), 39.0);
        assert_eq!(req("3", "GetAttr"), 1802231.0);
        assert_eq!(req("3", "Commit"), 401233.0);
        assert_eq!(req("2", "FsStat"), 0.0);
        assert_eq!(find(&fams, "node_nfsd_requests_total").samples.len(), 71);
        assert_eq!(value(&fams, "node_nfsd_server_threads", &[]), 16.0);
        assert_eq!(
            value(&fams, "node_nfsd_rpc_errors_total", &[("error", "auth")]),
            7.0
        );
        assert_eq!(
            value(&fams, "node_nfsd_read_ahead_cache_not_found_total", &[]),
            733.0
        );
    }

    #[test]
    fn malformed_files_fail() {
        for text in [
            "\n",
            "rc 1 2\n",
            "proc4 3 1 2 3\n",
            "xyz 1\n",
            "io 1 x\n",
            &ops(38),
        ] {
            let fx = Fixture::new();
            fx.write("proc/net/rpc/nfsd", text);
            assert!(
                collect(&fx.collector(), &mut Vec::new()).is_err(),
                "{text:?}"
            );
        }
    }
}
