//! `selinux`: whether SELinux is on (`node_selinux_enabled`) and, when it is, its
//! configured and current enforcement modes (1 enforcing, 0 permissive, -1
//! disabled), from selinuxfs and `/etc/selinux/config`.

use super::{NodeCollector, Result, parse_error, read_attr, single};
use crate::exposition::family::{MetricFamily, MetricType};

pub(super) fn collect(c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    // selinuxfs is mounted (and `enforce` readable) only where SELinux is enabled.
    let enforce_path = c.sys_path("fs/selinux/enforce");
    let Some(enforce) = read_attr(&enforce_path) else {
        out.push(single(
            "node_selinux_enabled",
            MetricType::Gauge,
            "SELinux is enabled, 1 is true, 0 is false",
            0.0,
        ));
        return Ok(());
    };
    let current = match enforce.as_str() {
        "1" => 1.0,
        "0" => 0.0,
        other => return Err(parse_error(&enforce_path, format!("enforce {other:?}"))),
    };
    // `SELINUX=` of the config file; disabled when it does not say (go-selinux's
    // `DefaultEnforceMode`, which node_exporter reports).
    let configured = std::fs::read_to_string(c.root_path("etc/selinux/config"))
        .ok()
        .and_then(|text| {
            text.lines().find_map(|line| {
                let value = line.trim().strip_prefix("SELINUX=")?;
                Some(match value.trim().trim_matches('"') {
                    "enforcing" => 1.0,
                    "permissive" => 0.0,
                    _ => -1.0,
                })
            })
        })
        .unwrap_or(-1.0);
    out.push(single(
        "node_selinux_config_mode",
        MetricType::Gauge,
        "Configured SELinux enforcement mode",
        configured,
    ));
    out.push(single(
        "node_selinux_current_mode",
        MetricType::Gauge,
        "Current SELinux enforcement mode",
        current,
    ));
    out.push(single(
        "node_selinux_enabled",
        MetricType::Gauge,
        "SELinux is enabled, 1 is true, 0 is false",
        1.0,
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn disabled_is_one_zero() {
        let fx = Fixture::new();
        let fams = run(&fx.collector(), collect);
        assert_eq!(fams.len(), 1);
        assert_eq!(value(&fams, "node_selinux_enabled", &[]), 0.0);
    }

    #[test]
    fn enforcing_as_configured_running_permissive() {
        let fx = Fixture::new();
        fx.write("sys/fs/selinux/enforce", "0");
        fx.write(
            "root/etc/selinux/config",
            "# comment\nSELINUX=enforcing\nSELINUXTYPE=targeted\n",
        );
        let fams = run(&fx.collector(), collect);
        assert_eq!(value(&fams, "node_selinux_enabled", &[]), 1.0);
        assert_eq!(value(&fams, "node_selinux_config_mode", &[]), 1.0);
        assert_eq!(value(&fams, "node_selinux_current_mode", &[]), 0.0);
    }

    #[test]
    fn a_config_that_does_not_say_is_disabled() {
        let fx = Fixture::new();
        fx.write("sys/fs/selinux/enforce", "1");
        fx.write("root/etc/selinux/config", "SELINUXTYPE=targeted\n");
        let fams = run(&fx.collector(), collect);
        assert_eq!(value(&fams, "node_selinux_config_mode", &[]), -1.0);
        assert_eq!(value(&fams, "node_selinux_current_mode", &[]), 1.0);
    }
}
