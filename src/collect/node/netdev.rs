//! `netdev`: the sixteen per-interface counters of `/proc/net/dev` as
//! `node_network_<direction>_<field>_total{device}`.
//!
//! node_exporter 1.5 reads these over netlink by default, which adds
//! `receive_nohandler` and differs slightly for `receive_drop` (netlink omits
//! `rx_missed_errors`), `receive_frame` (netlink reports only `rx_frame_errors`) and
//! `transmit_carrier` (only `tx_carrier_errors`); `/proc/net/dev` is what node_exporter
//! reads with `--no-collector.netdev.netlink` and needs no socket.
//!
//! With `--collector.netdev.address-info` (off by default) also every interface
//! address, `node_network_address_info`; `--collector.netdev.enable-detailed-metrics`
//! (off) names four counters as node_exporter does then (`receive_errors`,
//! `receive_dropped`, `transmit_errors`, `transmit_dropped`).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::{NodeCollector, NodeError, Result, labels, parse_error, parse_f64, read_file};
use crate::exposition::family::{MetricFamily, MetricType};

/// The columns of `/proc/net/dev` after the interface name, in order.
const FIELDS: [&str; 16] = [
    "receive_bytes",
    "receive_packets",
    "receive_errs",
    "receive_drop",
    "receive_fifo",
    "receive_frame",
    "receive_compressed",
    "receive_multicast",
    "transmit_bytes",
    "transmit_packets",
    "transmit_errs",
    "transmit_drop",
    "transmit_fifo",
    "transmit_colls",
    "transmit_carrier",
    "transmit_compressed",
];

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let path = c.proc_path("net/dev");
    let text = read_file(&path)?;
    let mut fams: Vec<MetricFamily> = FIELDS
        .iter()
        .map(|&f| {
            // `--collector.netdev.enable-detailed-metrics`: the names node_exporter
            // gives the statistics before folding them into the legacy ones (over
            // /proc/net/dev only these four differ).
            let f = match f {
                "receive_errs" if c.flags.netdev_detailed => "receive_errors",
                "receive_drop" if c.flags.netdev_detailed => "receive_dropped",
                "transmit_errs" if c.flags.netdev_detailed => "transmit_errors",
                "transmit_drop" if c.flags.netdev_detailed => "transmit_dropped",
                f => f,
            };
            MetricFamily::new(
                format!("node_network_{f}_total"),
                MetricType::Counter,
                format!("Network device statistic {f}."),
            )
        })
        .collect();
    // Two header lines, then "  name: v1 v2 ...".
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let device = name.trim();
        if c.flags.netdev_devices.ignored(device) {
            continue;
        }
        let mut n = 0;
        for (fam, field) in fams.iter_mut().zip(rest.split_ascii_whitespace()) {
            fam.push(labels([("device", device)]), parse_f64(&path, field)?);
            n += 1;
        }
        if n != FIELDS.len() {
            return Err(parse_error(&path, format!("{device}: {n} fields, want 16")));
        }
    }
    out.extend(fams.into_iter().filter(|f| !f.samples.is_empty()));
    if c.flags.netdev_address_info {
        out.push(address_info()?);
    }
    Ok(())
}

/// `node_network_address_info{device,address,netmask,scope}` 1
/// (`--collector.netdev.address-info`): every IPv4 and IPv6 address of the network
/// namespace ODIN runs in (as node_exporter, whatever `--path.procfs` says), for every
/// interface (node_exporter's device filters do not apply to it either).
fn address_info() -> Result<MetricFamily> {
    let mut f = MetricFamily::new(
        "node_network_address_info",
        MetricType::Gauge,
        "node network address by device",
    );
    for a in interface_addresses()? {
        let address = match a.address {
            // Go prints an IPv4-mapped IPv6 address as IPv4.
            IpAddr::V6(v6) => v6
                .to_ipv4_mapped()
                .map_or_else(|| v6.to_string(), |v4| v4.to_string()),
            IpAddr::V4(v4) => v4.to_string(),
        };
        f.push(
            labels([
                ("device", a.device.as_str()),
                ("address", &address),
                ("netmask", &a.prefix_len.to_string()),
                ("scope", scope(&a.address)),
            ]),
            1.0,
        );
    }
    Ok(f)
}

/// node_exporter's `scope`, with Go's `net.IP` predicates.
fn scope(ip: &IpAddr) -> &'static str {
    let (loopback, link_local_unicast, link_local_multicast, interface_local_multicast) = match ip {
        IpAddr::V4(v4) => (
            v4.is_loopback(),
            v4.is_link_local(),
            v4.octets()[..3] == [224, 0, 0],
            false,
        ),
        // Go looks at a multicast address's scope nibble only (ff02::, ff12::,
        // ff32:: are all link-local).
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => return scope(&IpAddr::V4(v4)),
            None => {
                let [first, second, ..] = v6.octets();
                (
                    v6.is_loopback(),
                    v6.segments()[0] & 0xffc0 == 0xfe80,
                    first == 0xff && second & 0x0f == 0x02,
                    first == 0xff && second & 0x0f == 0x01,
                )
            }
        },
    };
    if loopback || link_local_unicast || link_local_multicast {
        return "link-local";
    }
    if interface_local_multicast {
        return "interface-local";
    }
    // Go's IsGlobalUnicast: neither broadcast, unspecified, loopback, multicast nor
    // link-local unicast (private ranges are global).
    let global = match ip {
        IpAddr::V4(v4) => !v4.is_broadcast() && !v4.is_unspecified() && !v4.is_multicast(),
        IpAddr::V6(v6) => !v6.is_unspecified() && !v6.is_multicast(),
    };
    if global { "global" } else { "" }
}

/// One address of an interface.
#[derive(Debug, Clone, PartialEq, Eq)]
struct InterfaceAddress {
    device: String,
    address: IpAddr,
    /// The netmask's prefix length.
    prefix_len: u32,
}

/// The IPv4 and IPv6 addresses of this network namespace's interfaces, from
/// `getifaddrs(3)` (the netlink address table Go's `net.Interfaces` reads).
fn interface_addresses() -> Result<Vec<InterfaceAddress>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs stores a list it allocated in `head`; it is freed below.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(NodeError::Syscall {
            call: "getifaddrs",
            source: std::io::Error::last_os_error(),
        });
    }
    let mut out = Vec::new();
    let mut cursor = head;
    while !cursor.is_null() {
        // SAFETY: `cursor` is a node of the list getifaddrs returned, which stays
        // valid until freeifaddrs; its pointers are null or point into the list.
        let entry = unsafe { &*cursor };
        cursor = entry.ifa_next;
        // SAFETY: as above; each sockaddr is read by the length its family implies.
        let (address, mask) = unsafe { (ip_of(entry.ifa_addr), ip_of(entry.ifa_netmask)) };
        let Some(address) = address else {
            continue;
        };
        if entry.ifa_name.is_null() {
            continue;
        }
        // Go reads a netmask that is not a prefix as no address at all.
        let Some(prefix_len) = mask.as_ref().map_or(Some(0), prefix_len) else {
            continue;
        };
        // SAFETY: ifa_name is a NUL-terminated interface name inside the list.
        let name = unsafe { std::ffi::CStr::from_ptr(entry.ifa_name) }.to_string_lossy();
        out.push(InterfaceAddress {
            device: interface_of_label(&name).to_string(),
            address,
            prefix_len,
        });
    }
    // SAFETY: `head` came from a successful getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

/// The interface an address label names: an IPv4 address added with a label (`ip addr
/// add … label eth0:1`) comes out of getifaddrs under it, where Go (and so
/// node_exporter) files it under its interface. Interface names cannot hold a `:`.
fn interface_of_label(label: &str) -> &str {
    label.split(':').next().unwrap_or(label)
}

/// The address in a `sockaddr` of family AF_INET or AF_INET6; `None` for another
/// family (the AF_PACKET link entries) or a null pointer.
///
/// # Safety
/// `sa` is null or points to a sockaddr as large as its family's.
unsafe fn ip_of(sa: *const libc::sockaddr) -> Option<IpAddr> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: the caller's contract.
    match i32::from(unsafe { (*sa).sa_family }) {
        libc::AF_INET => {
            // SAFETY: an AF_INET sockaddr is a sockaddr_in (read unaligned: the
            // contract does not promise its alignment).
            let sin = unsafe { std::ptr::read_unaligned(sa as *const libc::sockaddr_in) };
            Some(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                sin.sin_addr.s_addr,
            ))))
        }
        libc::AF_INET6 => {
            // SAFETY: an AF_INET6 sockaddr is a sockaddr_in6, read as above.
            let sin6 = unsafe { std::ptr::read_unaligned(sa as *const libc::sockaddr_in6) };
            Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
        }
        _ => None,
    }
}

/// A netmask's prefix length; `None` when its ones are not contiguous.
fn prefix_len(mask: &IpAddr) -> Option<u32> {
    let bits = match mask {
        IpAddr::V4(m) => u128::from(u32::from(*m)) << 96,
        IpAddr::V6(m) => u128::from(*m),
    };
    let ones = bits.leading_ones();
    (bits.count_ones() == ones).then_some(ones)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    const DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo:  435303  245    0    0    0     0          0         0   435303    245    0    0    0     0       0          0
  eth0: 874354587 1036395 1 2 3 4 5 6 563352563 732147 7 8 9 10 11 12
";

    #[test]
    fn netdev_sixteen_counters_per_device() {
        let fx = Fixture::new();
        fx.write("proc/net/dev", DEV);
        let fams = run(&fx.collector(), collect);
        assert_eq!(fams.len(), 16);
        assert_eq!(
            value(
                &fams,
                "node_network_receive_bytes_total",
                &[("device", "eth0")]
            ),
            874354587.0
        );
        assert_eq!(
            value(
                &fams,
                "node_network_transmit_compressed_total",
                &[("device", "eth0")]
            ),
            12.0
        );
        assert_eq!(
            value(
                &fams,
                "node_network_transmit_colls_total",
                &[("device", "eth0")]
            ),
            10.0
        );
        assert_eq!(
            value(
                &fams,
                "node_network_receive_packets_total",
                &[("device", "lo")]
            ),
            245.0
        );
        let f = find(&fams, "node_network_receive_frame_total");
        assert_eq!(f.help, "Network device statistic receive_frame.");
    }

    #[test]
    fn netdev_exclude_filter() {
        let fx = Fixture::new();
        fx.write("proc/net/dev", DEV);
        let c = fx.collector_with(&[("collector.netdev.device-exclude", "^lo$")]);
        let fams = run(&c, collect);
        assert_eq!(
            find(&fams, "node_network_receive_bytes_total")
                .samples
                .len(),
            1
        );
    }

    #[test]
    fn scopes_as_node_exporter_names_them() {
        for (ip, want) in [
            ("127.0.0.1", "link-local"),
            ("::1", "link-local"),
            ("169.254.3.4", "link-local"),
            ("fe80::fc:ff:fe00:1", "link-local"),
            ("224.0.0.251", "link-local"),
            ("ff02::1", "link-local"),
            ("ff01::1", "interface-local"),
            ("ff12::1", "link-local"),
            ("ff32::1", "link-local"),
            ("10.42.0.7", "global"),
            ("192.0.2.2", "global"),
            ("fd00::2", "global"),
            ("2001:db8::1", "global"),
            ("0.0.0.0", ""),
            ("255.255.255.255", ""),
            ("239.1.2.3", ""),
            ("::ffff:127.0.0.1", "link-local"),
        ] {
            let ip: IpAddr = ip.parse().unwrap();
            assert_eq!(scope(&ip), want, "{ip}");
        }
    }

    #[test]
    fn labelled_addresses_belong_to_their_interface() {
        assert_eq!(interface_of_label("eth0:1"), "eth0");
        assert_eq!(interface_of_label("lo:alias"), "lo");
        assert_eq!(interface_of_label("bond0"), "bond0");
    }

    #[test]
    fn netmasks_as_prefix_lengths() {
        let len = |m: &str| prefix_len(&m.parse().unwrap());
        assert_eq!(len("255.255.255.0"), Some(24));
        assert_eq!(len("255.0.0.0"), Some(8));
        assert_eq!(len("0.0.0.0"), Some(0));
        assert_eq!(len("ffff:ffff:ffff:ffff::"), Some(64));
        assert_eq!(len("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"), Some(128));
        assert_eq!(len("255.0.255.0"), None, "not contiguous");
    }

    #[test]
    fn address_info_lists_this_namespaces_addresses() {
        let fx = Fixture::new();
        fx.write("proc/net/dev", DEV);
        let fams = run(
            &fx.collector_with(&[
                ("collector.netdev.address-info", "true"),
                ("collector.netdev.device-include", "^nothing$"),
            ]),
            collect,
        );
        // Loopback is up in every namespace the tests run in; the device filter does
        // not apply to addresses.
        assert_eq!(
            value(
                &fams,
                "node_network_address_info",
                &[
                    ("device", "lo"),
                    ("address", "127.0.0.1"),
                    ("netmask", "8"),
                    ("scope", "link-local")
                ]
            ),
            1.0
        );
        assert!(
            !fams
                .iter()
                .any(|f| f.name == "node_network_receive_bytes_total")
        );
    }

    #[test]
    fn detailed_names_when_asked_for() {
        let fx = Fixture::new();
        fx.write("proc/net/dev", DEV);
        let c = fx.collector_with(&[("collector.netdev.enable-detailed-metrics", "true")]);
        let fams = run(&c, collect);
        let names: Vec<&str> = fams.iter().map(|f| f.name.as_str()).collect();
        for renamed in [
            "node_network_receive_errors_total",
            "node_network_receive_dropped_total",
            "node_network_transmit_errors_total",
            "node_network_transmit_dropped_total",
        ] {
            assert!(names.contains(&renamed), "{renamed}: {names:?}");
        }
        assert!(!names.contains(&"node_network_receive_errs_total"));
        assert_eq!(names.len(), 16);
        let f = find(&fams, "node_network_transmit_dropped_total");
        assert_eq!(f.help, "Network device statistic transmit_dropped.");
    }
}
