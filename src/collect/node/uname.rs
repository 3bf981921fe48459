//! `uname`: `node_uname_info` from `uname(2)`. This reads the running kernel, not the
//! configured paths (as node_exporter does).

use std::ffi::CStr;

use super::{NodeCollector, NodeError, Result};
use crate::exposition::family::{MetricFamily, MetricType};

pub(super) fn collect(_c: &NodeCollector, out: &mut Vec<MetricFamily>) -> Result<()> {
    // SAFETY: an all-zero `utsname` is a valid value of this plain C struct.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: `u` is a writable struct that outlives the call.
    if unsafe { libc::uname(&mut u) } != 0 {
        return Err(NodeError::Syscall {
            call: "uname",
            source: std::io::Error::last_os_error(),
        });
    }
    let field = |f: &[libc::c_char]| {
        // The kernel NUL-terminates each field; fall back to empty if not.
        let bytes: Vec<u8> = f.iter().map(|&c| c as u8).collect();
        CStr::from_bytes_until_nul(&bytes)
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let mut f = MetricFamily::new(
        "node_uname_info",
        MetricType::Gauge,
        "Labeled system information as provided by the uname system call.",
    );
    f.push(
        vec![
            ("domainname".to_string(), field(&u.domainname)),
            ("machine".to_string(), field(&u.machine)),
            ("nodename".to_string(), field(&u.nodename)),
            ("release".to_string(), field(&u.release)),
            ("sysname".to_string(), field(&u.sysname)),
            ("version".to_string(), field(&u.version)),
        ],
        1.0,
    );
    out.push(f);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::*;

    #[test]
    fn uname_has_node_exporter_labels() {
        let fams = run(&Fixture::new().collector(), collect);
        let s = &find(&fams, "node_uname_info").samples[0];
        let names: Vec<&str> = s.labels.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            [
                "domainname",
                "machine",
                "nodename",
                "release",
                "sysname",
                "version"
            ]
        );
        assert_eq!(
            value(&fams, "node_uname_info", &[("sysname", "Linux")]),
            1.0
        );
    }
}
