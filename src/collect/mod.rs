//! Built-in collectors: ODIN's own `process_*` metrics, the node collector
//! (node_exporter's metrics from /proc and /sys) and the GPU collector (dcgm-exporter's
//! metrics from NVML). The app runs node and GPU as in-process scrape targets.

pub mod gpu;
pub mod node;
pub mod process;

/// The kernel's host name: the node and GPU jobs' `instance`, the GPU series'
/// `Hostname` (as node_exporter and dcgm-exporter take it); `localhost` where it
/// cannot be read.
pub fn kernel_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_string())
}
