//! `nfs`: the NFS client's RPC statistics from `/proc/net/rpc/nfs`: network packets
//! and connections, RPC calls, retransmissions and credential refreshes, and calls
//! per procedure of NFS v2, v3 and v4.
//!
//! Every procedure node_exporter 1.5 knows is reported, zero when the kernel has no
//! line for its version (modern kernels have no v2), so that the series set does
//! not depend on which version was mounted first.

use std::path::Path;

use super::{NodeCollector, Result, labels, parse_error, read_file, single};
use crate::exposition::family::{MetricFamily, MetricType};

/// Procedures in the order the kernel counts them, as node_exporter names them.
const V2: &[&str] = &[
    "Null", "GetAttr", "SetAttr", "Root", "Lookup", "ReadLink", "Read", "WrCache", "Write",
    "Create", "Remove", "Rename", "Link", "SymLink", "MkDir", "RmDir", "ReadDir", "FsStat",
];
const V3: &[&str] = &[
    "Null",
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
const V4: &[&str] = &[
    "Null",
    "Read",
    "Write",
    "Commit",
    "Open",
    "OpenConfirm",
    "OpenNoattr",
    "OpenDowngrade",
    "Close",
    "Setattr",
    "FsInfo",
    "Renew",
    "SetClientID",
    "SetClientIDConfirm",
    "Lock",
    "Lockt",
    "Locku",
    "Access",
    "Getattr",
    "Lookup",
    "LookupRoot",
    "Remove",
    "Rename",
    "Link",
    "Symlink",
    "Create",
    "Pathconf",
    "StatFs",
    "ReadLink",
    "ReadDir",
    "ServerCaps",
    "DelegReturn",
    "GetACL",
    "SetACL",
    "FsLocations",
    "ReleaseLockowner",
    "Secinfo",
    "FsidPresent",
    "ExchangeID",
    "CreateSession",
    "DestroySession",
    "Sequence",
    "GetLeaseTime",
    "ReclaimComplete",
    "LayoutGet",
    "GetDeviceInfo",
    "LayoutCommit",
    "LayoutReturn",
    "SecinfoNoName",
    "TestStateID",
    "FreeStateID",
    "GetDeviceList",
    "BindConnToSession",
    "DestroyClientID",
    "Seek",
    "Allocate",
    "DeAllocate",
    "LayoutStats",
    "Clone",
];

/// The client's counters; lines the kernel did not write stay zero.
#[derive(Default)]
struct ClientStats {
    /// `net`: packets, UDP packets, TCP packets, TCP connections.
    net: [u64; 4],
    /// `rpc`: calls, retransmissions, credential refreshes.
    rpc: [u64; 3],
    v2: Vec<u64>,
    v3: Vec<u64>,
    v4: Vec<u64>,
}

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let path = c.proc_path("net/rpc/nfs");
    let stats = parse(&path, &read_file(&path)?)?;
    let mut packets = MetricFamily::new(
        "node_nfs_packets_total",
        MetricType::Counter,
        "Total NFSd network packets (sent+received) by protocol type.",
    );
    packets.push(labels([("protocol", "udp")]), stats.net[1] as f64);
    packets.push(labels([("protocol", "tcp")]), stats.net[2] as f64);
    out.push(packets);
    out.push(single(
        "node_nfs_connections_total",
        MetricType::Counter,
        "Total number of NFSd TCP connections.",
        stats.net[3] as f64,
    ));
    for (name, help, v) in [
        (
            "node_nfs_rpcs_total",
            "Total number of RPCs performed.",
            stats.rpc[0],
        ),
        (
            "node_nfs_rpc_retransmissions_total",
            "Number of RPC transmissions performed.",
            stats.rpc[1],
        ),
        (
            "node_nfs_rpc_authentication_refreshes_total",
            "Number of RPC authentication refreshes performed.",
            stats.rpc[2],
        ),
    ] {
        out.push(single(name, MetricType::Counter, help, v as f64));
    }
    let mut requests = MetricFamily::new(
        "node_nfs_requests_total",
        MetricType::Counter,
        "Number of NFS procedures invoked.",
    );
    for (proto, methods, counts) in [
        ("2", V2, &stats.v2),
        ("3", V3, &stats.v3),
        ("4", V4, &stats.v4),
    ] {
        for (i, method) in methods.iter().enumerate() {
            let v = counts.get(i).copied().unwrap_or(0);
            requests.push(labels([("method", method), ("proto", proto)]), v as f64);
        }
    }
    out.push(requests);
    Ok(())
}

/// The file's lines: `net`, `rpc`, and `proc<N> <count> <value>…` per NFS version.
/// Any other line, and a line with the wrong number of values, is an error.
fn parse(path: &Path, text: &str) -> Result<ClientStats> {
    let mut stats = ClientStats::default();
    for line in text.lines() {
        let bad = |what: &str| parse_error(path, format!("{what}: {line:?}"));
        let (name, values) = stat_line(path, line, usize::MAX)?;
        match name {
            "net" => stats.net = values.try_into().map_err(|_| bad("net needs 4 values"))?,
            "rpc" => stats.rpc = values.try_into().map_err(|_| bad("rpc needs 3 values"))?,
            "proc2" => {
                stats.v2 = counted(&values, V2.len(), None).ok_or_else(|| bad("bad proc2"))?
            }
            "proc3" => {
                stats.v3 = counted(&values, V3.len(), None).ok_or_else(|| bad("bad proc3"))?
            }
            // Kernels add v4 operations over time: fewer are padded, more ignored.
            "proc4" => {
                let mut v4 = counted(&values, 0, None).ok_or_else(|| bad("bad proc4"))?;
                v4.resize(V4.len(), 0);
                stats.v4 = v4;
            }
            _ => return Err(bad("unknown line")),
        }
    }
    Ok(stats)
}

/// A line of the RPC statistics files (the NFS client's and server's): its name and
/// its first `max_values` values. A line without values, or with a value that is not
/// an unsigned integer, is an error.
pub(super) fn stat_line<'a>(
    path: &Path,
    line: &'a str,
    max_values: usize,
) -> Result<(&'a str, Vec<u64>)> {
    let bad = |what: &str| parse_error(path, format!("{what}: {line:?}"));
    let mut fields = line.split_whitespace();
    let name = fields.next().ok_or_else(|| bad("empty line"))?;
    let values = fields
        .take(max_values)
        .map(|v| v.parse::<u64>().map_err(|_| bad("bad number")))
        .collect::<Result<Vec<u64>>>()?;
    if values.is_empty() {
        return Err(bad("line without values"));
    }
    Ok((name, values))
}

/// A `proc…` line's counts (the NFS client's and server's files): the first value
/// says how many follow, at least `minimum` (and exactly `only` when given).
pub(super) fn counted(values: &[u64], minimum: usize, only: Option<usize>) -> Option<Vec<u64>> {
    let (&count, counts) = values.split_first()?;
    let count = usize::try_from(count).ok()?;
    (count == counts.len() && count >= minimum && only.is_none_or(|n| n == count))
        .then(|| counts.to_vec())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn v3_and_v4_client() {
        let fx = Fixture::new();
        fx.write(
            "proc/net/rpc/nfs",
            "net 10 0 10 3\nrpc 9993431 17 9993431\n\
             proc3 22 0 81231 1322 40112 61230 12 918331 412003 3311 120 7 0 2912 88 410 3 1210 6021 311 2 1 41022\n\
             proc4 3 7 8 9\n",
        );
        let fams = run(&fx.collector(), collect);
        let req = |proto: &str, method: &str| {
            value(
                &fams,
                "node_nfs_requests_total",
                &[("proto", proto), ("method", method)],
            )
        };
        assert_eq!(req("3", "GetAttr"), 81231.0);
        assert_eq!(req("3", "Commit"), 41022.0);
        assert_eq!(req("4", "Write"), 9.0);
        assert_eq!(req("4", "Clone"), 0.0);
        assert_eq!(req("2", "FsStat"), 0.0);
        assert_eq!(find(&fams, "node_nfs_requests_total").samples.len(), 99);
        assert_eq!(value(&fams, "node_nfs_connections_total", &[]), 3.0);
        assert_eq!(
            value(&fams, "node_nfs_packets_total", &[("protocol", "tcp")]),
            10.0
        );
        assert_eq!(
            value(&fams, "node_nfs_rpc_retransmissions_total", &[]),
            17.0
        );
    }

    #[test]
    fn malformed_files_fail() {
        for text in [
            "\n",
            "proc9 1 1\n",
            "rpc 1 2\n",
            "proc3 3 1 2 3\n",
            "proc4 3 1 2\n",
            "net 1 2 x 4\n",
        ] {
            let fx = Fixture::new();
            fx.write("proc/net/rpc/nfs", text);
            assert!(
                collect(&fx.collector(), &mut Vec::new()).is_err(),
                "{text:?}"
            );
        }
    }
}
