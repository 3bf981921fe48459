//! `bonding`: per bonded interface, how many slaves it has and how many of them have
//! link (MII status `up`), from `/sys/class/net/bonding_masters` and each master's
//! `bonding/slaves`.

use std::io::ErrorKind;

use super::{NodeCollector, NodeError, Result, labels, read_file};
use crate::exposition::family::{MetricFamily, MetricType};

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    let net = c.sys_path("class/net");
    let mut slaves = MetricFamily::new(
        "node_bonding_slaves",
        MetricType::Gauge,
        "Number of configured slaves per bonding interface.",
    );
    let mut active = MetricFamily::new(
        "node_bonding_active",
        MetricType::Gauge,
        "Number of active slaves per bonding interface.",
    );
    for master in read_file(&net.join("bonding_masters"))?.split_whitespace() {
        let members = read_file(&net.join(master).join("bonding/slaves"))?;
        let mut up = 0;
        let mut total = 0;
        for slave in members.split_whitespace() {
            // Kernels since 4.13 link a slave as `lower_<slave>`, older ones as
            // `slave_<slave>`.
            let lower = net
                .join(master)
                .join(format!("lower_{slave}/bonding_slave/mii_status"));
            let status = match std::fs::read_to_string(&lower) {
                Err(e) if e.kind() == ErrorKind::NotFound => read_file(
                    &net.join(master)
                        .join(format!("slave_{slave}/bonding_slave/mii_status")),
                )?,
                other => other.map_err(|source| NodeError::Io {
                    path: lower,
                    source,
                })?,
            };
            total += 1;
            if status.trim() == "up" {
                up += 1;
            }
        }
        slaves.push(labels([("master", master)]), f64::from(total));
        active.push(labels([("master", master)]), f64::from(up));
    }
    out.extend([slaves, active]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn slaves_and_active_slaves_per_master() {
        let fx = Fixture::new();
        fx.write("sys/class/net/bonding_masters", "bond0 bond1\n")
            .write("sys/class/net/bond0/bonding/slaves", "eth0 eth1\n")
            .write(
                "sys/class/net/bond0/lower_eth0/bonding_slave/mii_status",
                "up\n",
            )
            .write(
                "sys/class/net/bond0/lower_eth1/bonding_slave/mii_status",
                "down\n",
            )
            .write("sys/class/net/bond1/bonding/slaves", "eth2\n")
            .write(
                "sys/class/net/bond1/slave_eth2/bonding_slave/mii_status",
                "up\n",
            );
        let fams = run(&fx.collector(), collect);
        assert_eq!(
            value(&fams, "node_bonding_slaves", &[("master", "bond0")]),
            2.0
        );
        assert_eq!(
            value(&fams, "node_bonding_active", &[("master", "bond0")]),
            1.0
        );
        assert_eq!(
            value(&fams, "node_bonding_active", &[("master", "bond1")]),
            1.0
        );
    }

    #[test]
    fn a_slave_without_status_fails_the_collector() {
        let fx = Fixture::new();
        fx.write("sys/class/net/bonding_masters", "bond0\n")
            .write("sys/class/net/bond0/bonding/slaves", "eth0\n");
        assert!(collect(&fx.collector(), &mut Vec::new()).is_err());
    }
}
