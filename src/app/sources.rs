//! The built-in collectors as scrape sources, and the jobs a configuration asks for.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;

use crate::collect::gpu::{GpuCollector, GpuCollectorConfig};
use crate::collect::node::{NodeCollector, NodePaths};
use crate::config::{CollectorConfig, Config};
use crate::exposition::format::Format;
use crate::exposition::write::to_text;
use crate::scrape::client::LocalSource;
use crate::scrape::{Job, LocalJob};

struct NodeSource(NodeCollector);

impl LocalSource for NodeSource {
    fn scrape(&self) -> Result<(Vec<u8>, Format), String> {
        Ok((to_text(&self.0.collect()).into_bytes(), Format::Text))
    }
}

struct GpuSource(GpuCollector);

impl LocalSource for GpuSource {
    fn scrape(&self) -> Result<(Vec<u8>, Format), String> {
        Ok((to_text(&self.0.collect()).into_bytes(), Format::Text))
    }
}

/// ODIN's own `/metrics`, as the self-scrape job reads it.
struct SelfSource(Arc<Registry>);

impl LocalSource for SelfSource {
    fn scrape(&self) -> Result<(Vec<u8>, Format), String> {
        let mut body = String::new();
        prometheus_client::encoding::text::encode(&mut body, &self.0)
            .map_err(|e| format!("encode metrics: {e}"))?;
        Ok((body.into_bytes(), Format::OpenMetrics))
    }
}

/// The collectors, created once and kept across reloads (the GPU collector holds
/// NVML and an event thread; a reload that keeps a collector keeps its loop).
pub struct Sources {
    hostname: String,
    /// `instance` of the self-scrape: the address ODIN listens on.
    self_instance: String,
    self_metrics: Arc<dyn LocalSource>,
    node: Option<Arc<dyn LocalSource>>,
    gpu: Option<Arc<dyn LocalSource>>,
    /// The log sources (files, pod logs), told of each configuration.
    pub logs: Arc<parking_lot::Mutex<crate::logs::sources::LogSources>>,
}

impl Sources {
    /// `origin` names this node's log sources' positions (`local`, `node-<id>`).
    pub fn new(registry: Arc<Registry>, self_instance: String, origin: &str) -> Self {
        Self {
            hostname: hostname(),
            self_instance,
            self_metrics: Arc::new(SelfSource(registry)),
            node: None,
            gpu: None,
            logs: Arc::new(parking_lot::Mutex::new(
                crate::logs::sources::LogSources::new(origin, Default::default()),
            )),
        }
    }

    /// The jobs `config` asks for: its `scrape_configs`, then each enabled collector.
    /// Collectors are started the first time a configuration enables them.
    pub fn jobs(&mut self, config: &Config) -> Vec<Job> {
        self.logs
            .lock()
            .reconfigure(config.collectors.log_sources());
        let mut jobs: Vec<Job> = config
            .scrape_configs
            .iter()
            .cloned()
            .map(|c| Job::Config(Box::new(c)))
            .collect();
        let c = &config.collectors;
        if let Some(cfg) = enabled(&c.self_metrics) {
            jobs.push(local_job(
                "odin",
                &self.self_instance,
                cfg,
                config,
                self.self_metrics.clone(),
            ));
        }
        if let Some(node) = c.node.as_ref().filter(|n| n.enabled) {
            let cfg = &node.scrape();
            if self.node.is_none() {
                let defaults = NodePaths::default();
                let paths = NodePaths {
                    proc: node.procfs.clone().unwrap_or(defaults.proc),
                    sys: node.sysfs.clone().unwrap_or(defaults.sys),
                    root: node.rootfs.clone().unwrap_or(defaults.root),
                    textfile: node.textfile_directory.clone(),
                    udev_data: node.udev_data.clone(),
                };
                let built = node
                    .node_flags()
                    .and_then(|flags| NodeCollector::with_flags(paths, &flags))
                    .and_then(|n| n.without(&node.disabled_collectors));
                match built {
                    Ok(n) => self.node = Some(Arc::new(NodeSource(n))),
                    Err(e) => tracing::error!(error = %e, "node collector cannot start"),
                }
            }
            if let Some(src) = &self.node {
                jobs.push(local_job("node", &self.hostname, cfg, config, src.clone()));
            }
        }
        if let Some(section) = c.gpu.as_ref().filter(|g| g.enabled) {
            let cfg = &section.scrape();
            if self.gpu.is_none() {
                let gpu = GpuCollector::start(gpu_collector_config(section));
                // Without NVML the collector has logged why once; no job then, so
                // `up` does not report a GPU target that cannot exist.
                if gpu.is_on() {
                    self.gpu = Some(Arc::new(GpuSource(gpu)));
                }
            }
            if let Some(src) = &self.gpu {
                jobs.push(local_job("gpu", &self.hostname, cfg, config, src.clone()));
            }
        }
        jobs
    }
}

/// The GPU collector's settings: the `collectors.gpu` section over the defaults.
fn gpu_collector_config(section: &crate::config::GpuCollectorConfig) -> GpuCollectorConfig {
    let defaults = GpuCollectorConfig::default();
    GpuCollectorConfig {
        enabled: true,
        hostname: section.hostname.clone().or(defaults.hostname),
        driver_version_label: section
            .driver_version_label
            .unwrap_or(defaults.driver_version_label),
        processes: section.processes.unwrap_or(defaults.processes),
        proc_root: section.proc_root.clone().unwrap_or(defaults.proc_root),
        host_root: section.host_root.clone().unwrap_or(defaults.host_root),
        // `""` turns the kubelet's pod labels off.
        pod_resources_socket: match &section.pod_resources_socket {
            Some(path) if path.as_os_str().is_empty() => None,
            Some(path) => Some(path.clone()),
            None => defaults.pod_resources_socket,
        },
        // `None` finds the runtime's socket; `""` is kept, and turns it off.
        cri_socket: section.cri_socket.clone().or(defaults.cri_socket),
    }
}

fn enabled(c: &Option<CollectorConfig>) -> Option<&CollectorConfig> {
    c.as_ref().filter(|c| c.enabled)
}

fn local_job(
    name: &str,
    instance: &str,
    cfg: &CollectorConfig,
    config: &Config,
    source: Arc<dyn LocalSource>,
) -> Job {
    let (interval, timeout) = cfg.timing_ms(&config.global);
    Job::Local(LocalJob {
        job_name: name.to_string(),
        instance: instance.to_string(),
        interval: Duration::from_millis(interval.max(1) as u64),
        timeout: Duration::from_millis(timeout.max(1) as u64),
        source,
    })
}

/// The kernel's host name (node_exporter's `instance` in most setups).
pub use crate::collect::kernel_hostname as hostname;

#[cfg(test)]
mod tests {
    use super::*;

    fn gpu_section(yaml: &str) -> crate::config::GpuCollectorConfig {
        let config = Config::parse(&format!("collectors:\n  gpu:\n{yaml}"), "x.yml").unwrap();
        config.collectors.gpu.unwrap()
    }

    #[test]
    fn the_gpu_section_overrides_the_collectors_defaults() {
        let defaults = gpu_collector_config(&gpu_section("    processes: true\n"));
        assert_eq!(
            defaults.pod_resources_socket.as_deref(),
            Some(std::path::Path::new(
                crate::collect::gpu::kubelet::DEFAULT_SOCKET
            ))
        );
        assert_eq!(defaults.proc_root, std::path::PathBuf::from("/proc"));
        let set = gpu_collector_config(&gpu_section(
            "    pod_resources_socket: /host/kubelet.sock\n    proc_root: /host/proc\n    driver_version_label: false\n",
        ));
        assert_eq!(
            set.pod_resources_socket.as_deref(),
            Some(std::path::Path::new("/host/kubelet.sock"))
        );
        assert_eq!(set.proc_root, std::path::PathBuf::from("/host/proc"));
        assert!(!set.driver_version_label);
        let off = gpu_collector_config(&gpu_section(
            "    pod_resources_socket: \"\"\n    cri_socket: \"\"\n",
        ));
        assert_eq!(off.pod_resources_socket, None);
        assert_eq!(off.cri_socket, Some(std::path::PathBuf::new()));
        assert_eq!(defaults.cri_socket, None);
    }
}
