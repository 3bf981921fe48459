//! `netstat`: the protocol counters of `/proc/net/netstat`, `/proc/net/snmp` and
//! `/proc/net/snmp6` that match `--collector.netstat.fields`, as untyped
//! `node_netstat_<Protocol>_<Field>`.

use std::path::Path;

use super::{NodeCollector, Result, parse_error, parse_f64, read_file, single};
use crate::exposition::family::{MetricFamily, MetricType};

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let mut key = String::with_capacity(64);
    for file in ["net/netstat", "net/snmp"] {
        let path = c.proc_path(file);
        let text = read_file(&path)?;
        paired(c, &path, &text, &mut key, out)?;
    }
    // IPv6 may be disabled; node_exporter ignores a missing snmp6.
    let path = c.proc_path("net/snmp6");
    if let Ok(text) = std::fs::read_to_string(&path) {
        for line in text.lines() {
            let mut fields = line.split_ascii_whitespace();
            let (Some(stat), Some(value)) = (fields.next(), fields.next()) else {
                continue;
            };
            // "Icmp6InMsgs" -> protocol "Icmp6", field "InMsgs".
            let Some(six) = stat.find('6') else {
                continue;
            };
            let (protocol, field) = stat.split_at(six + 1);
            emit(c, &path, protocol, field, value, &mut key, out)?;
        }
    }
    Ok(())
}

/// `/proc/net/{netstat,snmp}`: a header line `Proto: F1 F2 ...` followed by a value
/// line `Proto: v1 v2 ...`.
fn paired(
    c: &NodeCollector,
    path: &Path,
    text: &str,
    key: &mut String,
    out: &mut Vec<MetricFamily>,
) -> Result<()> {
    let mut lines = text.lines();
    while let Some(header) = lines.next() {
        let Some(values) = lines.next() else {
            return Err(parse_error(path, "header without values"));
        };
        let (Some((proto, names)), Some((proto2, vals))) =
            (header.split_once(':'), values.split_once(':'))
        else {
            return Err(parse_error(path, "line without protocol"));
        };
        if proto != proto2 {
            return Err(parse_error(
                path,
                format!("{proto} header, {proto2} values"),
            ));
        }
        for (name, value) in names
            .split_ascii_whitespace()
            .zip(vals.split_ascii_whitespace())
        {
            emit(c, path, proto, name, value, key, out)?;
        }
    }
    Ok(())
}

fn emit(
    c: &NodeCollector,
    path: &Path,
    protocol: &str,
    field: &str,
    value: &str,
    key: &mut String,
    out: &mut Vec<MetricFamily>,
) -> Result<()> {
    key.clear();
    key.push_str(protocol);
    key.push('_');
    key.push_str(field);
    if !c.flags.netstat_fields.is_match(key) {
        return Ok(());
    }
    out.push(single(
        format!("node_netstat_{key}"),
        MetricType::Untyped,
        format!("Statistic {protocol}{field}."),
        parse_f64(path, value)?,
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn netstat_snmp_and_snmp6_with_default_filter() {
        let fx = Fixture::new();
        fx.write(
            "proc/net/netstat",
            "TcpExt: SyncookiesSent SyncookiesRecv ListenOverflows ListenDrops TCPTimeouts DelayedACKs\n\
TcpExt: 0 1 2 3 4 99\n\
IpExt: InNoRoutes InOctets OutOctets\n\
IpExt: 0 1000 2000\n",
        );
        fx.write(
            "proc/net/snmp",
            "Ip: Forwarding DefaultTTL InReceives\nIp: 1 64 1234\n\
Tcp: RtoAlgorithm ActiveOpens CurrEstab InErrs\nTcp: 1 5 6 7\n\
Udp: InDatagrams NoPorts InErrors IgnoredMulti\nUdp: 8 9 10 11\n",
        );
        fx.write(
            "proc/net/snmp6",
            "Ip6InReceives                   \t92\nIp6InOctets  8000\nIcmp6InMsgs 3\nUdp6InDatagrams 4\nUdpLite6InErrors 0\n",
        );
        let fams = run(&fx.collector(), collect);
        let mut names: Vec<&str> = fams.iter().map(|f| f.name.as_str()).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "node_netstat_Icmp6_InMsgs",
                "node_netstat_Ip6_InOctets",
                "node_netstat_IpExt_InOctets",
                "node_netstat_IpExt_OutOctets",
                "node_netstat_Ip_Forwarding",
                "node_netstat_TcpExt_ListenDrops",
                "node_netstat_TcpExt_ListenOverflows",
                "node_netstat_TcpExt_SyncookiesRecv",
                "node_netstat_TcpExt_SyncookiesSent",
                "node_netstat_TcpExt_TCPTimeouts",
                "node_netstat_Tcp_ActiveOpens",
                "node_netstat_Tcp_CurrEstab",
                "node_netstat_Tcp_InErrs",
                "node_netstat_Udp6_InDatagrams",
                "node_netstat_UdpLite6_InErrors",
                "node_netstat_Udp_InDatagrams",
                "node_netstat_Udp_InErrors",
                "node_netstat_Udp_NoPorts",
            ]
        );
        assert_eq!(value(&fams, "node_netstat_Ip6_InOctets", &[]), 8000.0);
        assert_eq!(value(&fams, "node_netstat_Tcp_CurrEstab", &[]), 6.0);
        let f = find(&fams, "node_netstat_Tcp_InErrs");
        assert_eq!(f.help, "Statistic TcpInErrs.");
        assert_eq!(f.kind, MetricType::Untyped);
    }

    #[test]
    fn missing_snmp6_is_fine_but_missing_snmp_is_not() {
        let fx = Fixture::new();
        fx.write("proc/net/netstat", "TcpExt: ListenDrops\nTcpExt: 1\n");
        assert!(collect(&fx.collector(), &mut Vec::new()).is_err());
        fx.write("proc/net/snmp", "Ip: Forwarding\nIp: 1\n");
        assert!(collect(&fx.collector(), &mut Vec::new()).is_ok());
    }
}
