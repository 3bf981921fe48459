//! Built-in collectors: ODIN's own `process_*` metrics, the node collector
//! (node_exporter's metrics from /proc and /sys) and the GPU collector (dcgm-exporter's
//! metrics from NVML). The app runs node and GPU as in-process scrape targets.

pub mod gpu;
pub mod node;
pub mod process;
