//! `ipvs`: the kernel's IP Virtual Server (kube-proxy's IPVS mode, keepalived) from
//! `/proc/net/ip_vs_stats` (totals) and `/proc/net/ip_vs` (per virtual service and
//! real server: active and inactive connections, weight).
//!
//! Labelled with `--collector.ipvs.backend-labels` (default all six; real servers
//! alike in the labels kept are summed, as node_exporter does). Unlike node_exporter 1.5, an SCTP virtual service is read as one (1.5
//! skips its line and files its real servers under the service before it), and a
//! malformed line fails the collector where 1.5 would crash.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use super::{IPVS_BACKEND_LABELS, NodeCollector, Result, parse_error, read_file, single};
use crate::exposition::family::{MetricFamily, MetricType};

/// A real server's labels: local address, local port, remote address, remote port,
/// protocol, firewall mark.
type BackendKey = [String; 6];

/// Connections and weight of a real server.
#[derive(Default)]
struct Backend {
    active: u64,
    inactive: u64,
    weight: u64,
}

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let stats_path = c.proc_path("net/ip_vs_stats");
    let totals = parse_totals(&stats_path, &read_file(&stats_path)?)?;
    for (name, help, v) in [
        (
            "node_ipvs_connections_total",
            "The total number of connections made.",
            totals[0],
        ),
        (
            "node_ipvs_incoming_packets_total",
            "The total number of incoming packets.",
            totals[1],
        ),
        (
            "node_ipvs_outgoing_packets_total",
            "The total number of outgoing packets.",
            totals[2],
        ),
        (
            "node_ipvs_incoming_bytes_total",
            "The total amount of incoming data.",
            totals[3],
        ),
        (
            "node_ipvs_outgoing_bytes_total",
            "The total amount of outgoing data.",
            totals[4],
        ),
    ] {
        out.push(single(name, MetricType::Counter, help, v as f64));
    }
    // The totals stand even when the table cannot be read, as in node_exporter: the
    // collector is marked failed.
    let table_path = c.proc_path("net/ip_vs");
    let backends = parse_table(&table_path, &read_file(&table_path)?)?;
    let mut active = MetricFamily::new(
        "node_ipvs_backend_connections_active",
        MetricType::Gauge,
        "The current active connections by local and remote address.",
    );
    let mut inactive = MetricFamily::new(
        "node_ipvs_backend_connections_inactive",
        MetricType::Gauge,
        "The current inactive connections by local and remote address.",
    );
    let mut weight = MetricFamily::new(
        "node_ipvs_backend_weight",
        MetricType::Gauge,
        "The current backend weight by local and remote address.",
    );
    // `--collector.ipvs.backend-labels` keeps some of the six labels (all by
    // default); the real servers alike in those (the same one listed twice, at
    // least) are summed into one series.
    let kept: Vec<usize> = c
        .flags
        .ipvs_backend_labels
        .iter()
        .filter_map(|l| IPVS_BACKEND_LABELS.iter().position(|k| k == l))
        .collect();
    let mut sums: BTreeMap<Vec<&str>, Backend> = BTreeMap::new();
    for (key, b) in &backends {
        let sum = sums
            .entry(kept.iter().map(|&i| key[i].as_str()).collect())
            .or_default();
        // Go's unsigned sums wrap.
        sum.active = sum.active.wrapping_add(b.active);
        sum.inactive = sum.inactive.wrapping_add(b.inactive);
        sum.weight = sum.weight.wrapping_add(b.weight);
    }
    for (values, b) in &sums {
        let key_labels: Vec<(String, String)> = kept
            .iter()
            .zip(values)
            .map(|(&i, v)| (IPVS_BACKEND_LABELS[i].to_string(), (*v).to_string()))
            .collect();
        active.push(key_labels.clone(), b.active as f64);
        inactive.push(key_labels.clone(), b.inactive as f64);
        weight.push(key_labels, b.weight as f64);
    }
    out.extend([active, inactive, weight]);
    Ok(())
}

/// The five totals: the third line of `ip_vs_stats`, hexadecimal.
fn parse_totals(path: &Path, text: &str) -> Result<[u64; 5]> {
    if text.matches('\n').count() < 3 {
        return Err(parse_error(path, "too short"));
    }
    let line = text.split('\n').nth(2).unwrap_or_default();
    let values: Vec<u64> = line
        .split_whitespace()
        .map(hex_u64)
        .collect::<Option<_>>()
        .ok_or_else(|| parse_error(path, format!("bad totals {line:?}")))?;
    values
        .try_into()
        .map_err(|_| parse_error(path, format!("bad totals {line:?}")))
}

/// The real servers of `/proc/net/ip_vs`, each under the virtual service line before
/// it, as listed (the collector sums those alike).
fn parse_table(path: &Path, text: &str) -> Result<Vec<(BackendKey, Backend)>> {
    let bad = |what: &str, line: &str| parse_error(path, format!("{what}: {line:?}"));
    let mut backends = Vec::new();
    // Protocol, local address, local port, firewall mark of the current service.
    let mut service = (String::new(), String::new(), 0u16, String::new());
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        match fields[..] {
            [] | ["IP", ..] | ["Prot", ..] | [_, "RemoteAddress:Port", ..] => {}
            [_] => return Err(bad("line with one field", line)),
            [proto @ ("TCP" | "UDP" | "SCTP"), address, ..] => {
                let (ip, port) =
                    parse_ip_port(address).ok_or_else(|| bad("bad service address", line))?;
                service = (proto.to_string(), ip, port, String::new());
            }
            ["FWM", mark, ..] => {
                service = ("FWM".to_string(), String::new(), 0, mark.to_string());
            }
            ["->", address, _, weight, active, inactive, ..] => {
                let (ip, port) =
                    parse_ip_port(address).ok_or_else(|| bad("bad server address", line))?;
                let number = |s: &str| s.parse::<u64>().map_err(|_| bad("bad number", line));
                let (weight, active, inactive) =
                    (number(weight)?, number(active)?, number(inactive)?);
                let (proto, local_ip, local_port, mark) = &service;
                let key = [
                    local_ip.clone(),
                    local_port.to_string(),
                    ip,
                    port.to_string(),
                    proto.clone(),
                    mark.clone(),
                ];
                backends.push((
                    key,
                    Backend {
                        active,
                        inactive,
                        weight,
                    },
                ));
            }
            // A short server line, or a line the kernel may add later.
            _ => {}
        }
    }
    Ok(backends)
}

/// `0A2B0001:01BB` or `[2001:0db8:…:0001]:0050` as the kernel prints them (always in
/// full): the address as text and the port.
fn parse_ip_port(s: &str) -> Option<(String, u16)> {
    if !s.is_ascii() {
        return None;
    }
    let port = u16::try_from(hex_u64(s.get(s.len().checked_sub(4)?..)?)?).ok()?;
    let ip = match s.len() {
        13 => IpAddr::V4(Ipv4Addr::from(u32::try_from(hex_u64(&s[..8])?).ok()?)),
        46 => {
            let v6: Ipv6Addr = s[1..40].parse().ok()?;
            // As Go prints an IPv4-mapped address: the IPv4 part alone.
            v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4)
        }
        _ => return None,
    };
    Some((ip.to_string(), port))
}

/// Hexadecimal digits only (`from_str_radix` would also take a sign).
fn hex_u64(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    const STATS: &str = "   Total Incoming Outgoing         Incoming         Outgoing\n   \
        Conns  Packets  Packets            Bytes            Bytes\n  \
        2AFDB6  BC33EFD  AFAD9A4        E64F71758       6004E1D855\n\n";

    const TABLE: &str = "IP Virtual Server version 1.2.1 (size=4096)\n\
        Prot LocalAddress:Port Scheduler Flags\n  \
        -> RemoteAddress:Port Forward Weight ActiveConn InActConn\n\
        TCP  0A2B0001:01BB rr  \n  \
        -> C0A80A15:192B      Masq    1      3          41        \n\
        SCTP  0A2B3709:26AB rr  \n  \
        -> 0A2A0109:26AB      Masq    1      1          0         \n\
        TCP  [2001:cafe:0043:0000:0000:0000:0000:01f4]:0050 rr  \n  \
        -> [0000:0000:0000:0000:0000:ffff:c0a8:0a15]:1F40      Masq    1      4          37        \n\
        FWM  00000064 wlc \n  \
        -> C0A80A1F:0050      Route   100    17         240       \n  \
        -> C0A80A1F:0050      Route   100    1         2       \n";

    #[test]
    fn totals_and_backends() {
        let fx = Fixture::new();
        fx.write("proc/net/ip_vs_stats", STATS)
            .write("proc/net/ip_vs", TABLE);
        let fams = run(&fx.collector(), collect);
        assert_eq!(value(&fams, "node_ipvs_connections_total", &[]), 2817462.0);
        assert_eq!(
            value(&fams, "node_ipvs_outgoing_bytes_total", &[]),
            412_398_770_261.0
        );
        let active =
            |want: &[(&str, &str)]| value(&fams, "node_ipvs_backend_connections_active", want);
        assert_eq!(
            active(&[
                ("local_address", "10.43.0.1"),
                ("local_port", "443"),
                ("remote_address", "192.168.10.21"),
                ("remote_port", "6443"),
                ("proto", "TCP"),
                ("local_mark", ""),
            ]),
            3.0
        );
        assert_eq!(active(&[("proto", "SCTP"), ("remote_port", "9899")]), 1.0);
        assert_eq!(
            active(&[
                ("local_address", "2001:cafe:43::1f4"),
                ("remote_address", "192.168.10.21")
            ]),
            4.0
        );
        // The same server listed twice under one service is summed.
        assert_eq!(
            active(&[("proto", "FWM"), ("local_mark", "00000064")]),
            18.0
        );
        assert_eq!(
            value(&fams, "node_ipvs_backend_weight", &[("proto", "FWM")]),
            200.0
        );
    }

    #[test]
    fn backends_alike_in_the_kept_labels_are_summed() {
        let fx = Fixture::new();
        fx.write("proc/net/ip_vs_stats", STATS)
            .write("proc/net/ip_vs", TABLE);
        let c = fx.collector_with(&[("collector.ipvs.backend-labels", "proto,remote_address")]);
        let fams = run(&c, collect);
        let active = find(&fams, "node_ipvs_backend_connections_active");
        // node_exporter's order, whatever order the flag names them in.
        let names: Vec<&str> = active.samples[0]
            .labels
            .iter()
            .map(|(k, _)| k.as_str())
            .collect();
        assert_eq!(names, ["remote_address", "proto"]);
        let all = run(&fx.collector(), collect);
        let total = |fams: &[MetricFamily]| -> f64 {
            find(fams, "node_ipvs_backend_connections_active")
                .samples
                .iter()
                .map(|s| s.value)
                .sum()
        };
        assert_eq!(total(&fams), total(&all), "nothing lost in the sums");
        assert!(
            active.samples.len()
                < find(&all, "node_ipvs_backend_connections_active")
                    .samples
                    .len()
        );
        // The IPv4 and the IPv6 service's server, both 192.168.10.21.
        let tcp = [("remote_address", "192.168.10.21"), ("proto", "TCP")];
        assert_eq!(
            value(&fams, "node_ipvs_backend_connections_active", &tcp),
            7.0
        );
        assert_eq!(
            value(&fams, "node_ipvs_backend_connections_inactive", &tcp),
            78.0
        );
        // No labels at all: one series with every server's sum.
        let fams = run(
            &fx.collector_with(&[("collector.ipvs.backend-labels", "")]),
            collect,
        );
        let weight = find(&fams, "node_ipvs_backend_weight");
        assert_eq!(weight.samples.len(), 1);
        assert!(weight.samples[0].labels.is_empty());
    }

    #[test]
    fn a_bad_table_keeps_the_totals_and_fails() {
        for table in [
            "TCP\n",
            "TCP  [2001:cafe:43::1f4]:0050 rr\n",
            "  -> 0A2A0109:26AB Masq x 1 0\n",
        ] {
            let fx = Fixture::new();
            fx.write("proc/net/ip_vs_stats", STATS)
                .write("proc/net/ip_vs", table);
            let mut out = Vec::new();
            assert!(collect(&fx.collector(), &mut out).is_err(), "{table:?}");
            assert_eq!(out.len(), 5, "{table:?}");
        }
    }

    #[test]
    fn no_ipvs_fails() {
        let fx = Fixture::new();
        assert!(collect(&fx.collector(), &mut Vec::new()).is_err());
    }
}
