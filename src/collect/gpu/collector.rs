//! [`GpuCollector`]: reads every device through a [`GpuBackend`] and builds
//! dcgm-exporter's families, in its units and with its labels.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;

use parking_lot::Mutex;
use serde::Deserialize;

use crate::exposition::family::{MetricFamily, MetricType};

use super::backend::{
    DeviceIdentity, EccCount, Field, GpmMetric, GpuBackend, GpuDevice, MemoryInfo, MigInstance,
    PcieDirection, RemappedRows, RetiredPages, XidTable, XidWatch,
};
use super::cri::CriClient;
use super::error::{FieldError, Result};
use super::kubelet::{DeviceAllocations, ListError, PodResourcesClient};
use super::nvml::NvmlBackend;
use super::process::{PodInfo, PodResolver};

/// `gpu:` in ODIN's configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GpuCollectorConfig {
    /// Collect GPU metrics when NVML can be loaded. Default true; on a host without
    /// the NVIDIA driver the collector turns itself off.
    pub enabled: bool,
    /// The `Hostname` label. Default: `$NODE_NAME` when set (as dcgm-exporter in
    /// Kubernetes), else the kernel hostname.
    pub hostname: Option<String>,
    /// Add dcgm-exporter's `DCGM_FI_DRIVER_VERSION` label to every GPU series.
    /// Default true.
    pub driver_version_label: bool,
    /// Export per-process GPU memory and utilization
    /// (`odin_gpu_process_*`). Default true.
    pub processes: bool,
    /// Where the host's `/proc` is (the pids NVML reports are the host's). Default
    /// `/proc`; a containerised ODIN needs `hostPID: true`.
    pub proc_root: PathBuf,
    /// Where the host's root file system is, to read container runtimes' state for pod
    /// and container names. Default `/`.
    pub host_root: PathBuf,
    /// The kubelet's pod-resources socket, to label a GPU allocated to a pod with
    /// `pod`, `namespace` and `container` as dcgm-exporter does. Default
    /// [`DEFAULT_SOCKET`](super::kubelet::DEFAULT_SOCKET); `None` turns it off. A
    /// host without the socket (no kubelet) gets no pod labels and no errors.
    pub pod_resources_socket: Option<PathBuf>,
    /// The container runtime's CRI socket, to name the pod of a GPU process whose
    /// runtime state files are not under `host_root`. `None`: the first of the
    /// runtimes' usual sockets ([`KNOWN_SOCKETS`](super::cri::KNOWN_SOCKETS)) found
    /// under `host_root`; an empty path turns it off.
    pub cri_socket: Option<PathBuf>,
}

impl Default for GpuCollectorConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            hostname: None,
            driver_version_label: true,
            processes: true,
            proc_root: PathBuf::from("/proc"),
            host_root: PathBuf::from("/"),
            pod_resources_socket: Some(PathBuf::from(super::kubelet::DEFAULT_SOCKET)),
            cri_socket: None,
        }
    }
}

/// A family's metadata.
struct Spec {
    name: &'static str,
    kind: MetricType,
    help: &'static str,
    unit: &'static str,
}

const fn gauge(name: &'static str, help: &'static str) -> Spec {
    Spec {
        name,
        kind: MetricType::Gauge,
        help,
        unit: "",
    }
}

const fn counter(name: &'static str, help: &'static str) -> Spec {
    Spec {
        name,
        kind: MetricType::Counter,
        help,
        unit: "",
    }
}

// dcgm-exporter 3.3's default-counters.csv, names, types and help verbatim.
const SM_CLOCK: Spec = gauge("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).");
const MEM_CLOCK: Spec = gauge("DCGM_FI_DEV_MEM_CLOCK", "Memory clock frequency (in MHz).");
const MEMORY_TEMP: Spec = gauge("DCGM_FI_DEV_MEMORY_TEMP", "Memory temperature (in C).");
const GPU_TEMP: Spec = gauge("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).");
const POWER_USAGE: Spec = gauge("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).");
const TOTAL_ENERGY: Spec = counter(
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
    "Total energy consumption since boot (in mJ).",
);
const PCIE_REPLAY: Spec = counter(
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
    "Total number of PCIe retries.",
);
const GPU_UTIL: Spec = gauge("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).");
const MEM_COPY_UTIL: Spec = gauge("DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %).");
const ENC_UTIL: Spec = gauge("DCGM_FI_DEV_ENC_UTIL", "Encoder utilization (in %).");
const DEC_UTIL: Spec = gauge("DCGM_FI_DEV_DEC_UTIL", "Decoder utilization (in %).");
const XID_ERRORS: Spec = gauge(
    "DCGM_FI_DEV_XID_ERRORS",
    "Value of the last XID error encountered.",
);
const FB_FREE: Spec = gauge("DCGM_FI_DEV_FB_FREE", "Framebuffer memory free (in MiB).");
const FB_USED: Spec = gauge("DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).");
const FB_RESERVED: Spec = gauge(
    "DCGM_FI_DEV_FB_RESERVED",
    "Framebuffer memory reserved (in MiB).",
);
const ECC_SBE_VOL: Spec = counter(
    "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
    "Total number of single-bit volatile ECC errors.",
);
const ECC_DBE_VOL: Spec = counter(
    "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
    "Total number of double-bit volatile ECC errors.",
);
const ECC_SBE_AGG: Spec = counter(
    "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL",
    "Total number of single-bit persistent ECC errors.",
);
const ECC_DBE_AGG: Spec = counter(
    "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL",
    "Total number of double-bit persistent ECC errors.",
);
const RETIRED_SBE: Spec = counter(
    "DCGM_FI_DEV_RETIRED_SBE",
    "Total number of retired pages due to single-bit errors.",
);
const RETIRED_DBE: Spec = counter(
    "DCGM_FI_DEV_RETIRED_DBE",
    "Total number of retired pages due to double-bit errors.",
);
const RETIRED_PENDING: Spec = counter(
    "DCGM_FI_DEV_RETIRED_PENDING",
    "Total number of pages pending retirement.",
);
/// dcgm-exporter's name, type and help; DCGM's value is a rate (MB/s).
const NVLINK_BANDWIDTH: Spec = counter(
    "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
    "Total number of NVLink bandwidth counters for all lanes",
);
const UNCORRECTABLE_REMAPPED: Spec = counter(
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
    "Number of remapped rows for uncorrectable errors",
);
const CORRECTABLE_REMAPPED: Spec = counter(
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
    "Number of remapped rows for correctable errors",
);
const ROW_REMAP_FAILURE: Spec = gauge(
    "DCGM_FI_DEV_ROW_REMAP_FAILURE",
    "Whether remapping of rows has failed",
);
// DCGM's profiling fields, from NVML's GPM (Hopper and later). dcgm-exporter 3.3's
// defaults list GR_ENGINE_ACTIVE, PIPE_TENSOR_ACTIVE, DRAM_ACTIVE and PCIE_TX/RX_BYTES;
// the others are its commented rows. Ratios are 0..1; bytes are per second.
const PROF_GR_ENGINE_ACTIVE: Spec = gauge(
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
    "Ratio of time the graphics engine is active.",
);
const PROF_SM_ACTIVE: Spec = gauge(
    "DCGM_FI_PROF_SM_ACTIVE",
    "The ratio of cycles an SM has at least 1 warp assigned.",
);
const PROF_SM_OCCUPANCY: Spec = gauge(
    "DCGM_FI_PROF_SM_OCCUPANCY",
    "The ratio of number of warps resident on an SM.",
);
const PROF_PIPE_TENSOR_ACTIVE: Spec = gauge(
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
    "Ratio of cycles the tensor (HMMA) pipe is active.",
);
const PROF_DRAM_ACTIVE: Spec = gauge(
    "DCGM_FI_PROF_DRAM_ACTIVE",
    "Ratio of cycles the device memory interface is active sending or receiving data.",
);
const PROF_PIPE_FP64_ACTIVE: Spec = gauge(
    "DCGM_FI_PROF_PIPE_FP64_ACTIVE",
    "Ratio of cycles the fp64 pipes are active.",
);
const PROF_PIPE_FP32_ACTIVE: Spec = gauge(
    "DCGM_FI_PROF_PIPE_FP32_ACTIVE",
    "Ratio of cycles the fp32 pipes are active.",
);
const PROF_PIPE_FP16_ACTIVE: Spec = gauge(
    "DCGM_FI_PROF_PIPE_FP16_ACTIVE",
    "Ratio of cycles the fp16 pipes are active.",
);
const PROF_PCIE_TX_BYTES: Spec = gauge(
    "DCGM_FI_PROF_PCIE_TX_BYTES",
    "The rate of data transmitted over the PCIe bus - including both protocol headers and data payloads - in bytes per second.",
);
const PROF_PCIE_RX_BYTES: Spec = gauge(
    "DCGM_FI_PROF_PCIE_RX_BYTES",
    "The rate of data received over the PCIe bus - including both protocol headers and data payloads - in bytes per second.",
);
const PROF_NVLINK_TX_BYTES: Spec = gauge(
    "DCGM_FI_PROF_NVLINK_TX_BYTES",
    "The rate of data transmitted over NVLink - including both protocol headers and data payloads - in bytes per second.",
);
const PROF_NVLINK_RX_BYTES: Spec = gauge(
    "DCGM_FI_PROF_NVLINK_RX_BYTES",
    "The rate of data received over NVLink - including both protocol headers and data payloads - in bytes per second.",
);

/// The DCGM field a GPM metric stands for, and the factor from NVML's unit to DCGM's
/// (percent to a ratio, MiB/s to bytes/s).
fn gpm_field(metric: GpmMetric) -> (&'static Spec, f64) {
    const MIB: f64 = 1024.0 * 1024.0;
    match metric {
        GpmMetric::GraphicsUtil => (&PROF_GR_ENGINE_ACTIVE, 0.01),
        GpmMetric::SmUtil => (&PROF_SM_ACTIVE, 0.01),
        GpmMetric::SmOccupancy => (&PROF_SM_OCCUPANCY, 0.01),
        GpmMetric::AnyTensorUtil => (&PROF_PIPE_TENSOR_ACTIVE, 0.01),
        GpmMetric::DramBandwidthUtil => (&PROF_DRAM_ACTIVE, 0.01),
        GpmMetric::Fp64Util => (&PROF_PIPE_FP64_ACTIVE, 0.01),
        GpmMetric::Fp32Util => (&PROF_PIPE_FP32_ACTIVE, 0.01),
        GpmMetric::Fp16Util => (&PROF_PIPE_FP16_ACTIVE, 0.01),
        GpmMetric::PcieTxMibPerSecond => (&PROF_PCIE_TX_BYTES, MIB),
        GpmMetric::PcieRxMibPerSecond => (&PROF_PCIE_RX_BYTES, MIB),
        GpmMetric::NvlinkTxMibPerSecond => (&PROF_NVLINK_TX_BYTES, MIB),
        GpmMetric::NvlinkRxMibPerSecond => (&PROF_NVLINK_RX_BYTES, MIB),
    }
}

// Not in the default CSV but DCGM fields dcgm-exporter exports when listed.
const THROTTLE_REASONS: Spec = gauge(
    "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
    "Current clock throttle reasons (bitmask of nvmlClocksThrottleReasons).",
);
const POWER_MGMT_LIMIT: Spec = gauge(
    "DCGM_FI_DEV_POWER_MGMT_LIMIT",
    "Power management limit (in W).",
);
// ODIN's own.
const XID_COUNT: Spec = counter(
    "odin_gpu_xid_errors_total",
    "Critical XID errors seen since ODIN started, per XID.",
);
const PROCESS_MEMORY: Spec = Spec {
    name: "odin_gpu_process_memory_used_bytes",
    kind: MetricType::Gauge,
    help: "GPU memory used by a process.",
    unit: "bytes",
};
const PROCESS_SM: Spec = Spec {
    name: "odin_gpu_process_sm_utilization_ratio",
    kind: MetricType::Gauge,
    help: "Fraction of the last sample period in which a kernel of the process ran on the GPU.",
    unit: "ratio",
};
const PROCESS_MEMORY_UTIL: Spec = Spec {
    name: "odin_gpu_process_memory_utilization_ratio",
    kind: MetricType::Gauge,
    help: "Fraction of the last sample period in which the process read or wrote GPU memory.",
    unit: "ratio",
};
const ERRORS: Spec = counter(
    "odin_gpu_collector_errors_total",
    "Driver errors reading a GPU field; the series of that field was left out.",
);
const DEVICE_LOST: Spec = gauge(
    "odin_gpu_device_lost",
    "1 for a GPU that fell off the bus; its series stop until ODIN restarts.",
);

type Labels = Vec<(String, String)>;

fn label(name: &str, value: impl Into<String>) -> (String, String) {
    (name.to_string(), value.into())
}

/// Families under construction, in first-seen order.
#[derive(Default)]
struct Families {
    families: Vec<MetricFamily>,
    index: HashMap<&'static str, usize>,
}

impl Families {
    fn push(&mut self, spec: &Spec, labels: Labels, value: f64) {
        let i = *self.index.entry(spec.name).or_insert_with(|| {
            let mut family = MetricFamily::new(spec.name, spec.kind, spec.help);
            family.unit = spec.unit.to_string();
            self.families.push(family);
            self.families.len() - 1
        });
        if let Some(family) = self.families.get_mut(i) {
            family.push(labels, value);
        }
    }
}

/// One GPU's samples, held back until the GPU has been read to the end, so a GPU lost
/// half-way contributes nothing.
type Batch = Vec<(&'static Spec, Labels, f64)>;

/// A reading interrupted because the GPU is lost.
struct Lost;

#[derive(Debug)]
struct State {
    errors: BTreeMap<&'static str, u64>,
    /// Identities by index, to name a GPU that is lost before it can say who it is.
    identities: HashMap<u32, DeviceIdentity>,
    lost: BTreeMap<String, DeviceIdentity>,
    /// Per GPU UUID, the newest process-utilization sample seen.
    utilization_since: HashMap<String, u64>,
    /// Per GPU UUID, its MIG instances as last listed.
    mig_last: HashMap<String, Vec<MigInstance>>,
    /// Per GPU UUID and counter, the value at the last read and when: DCGM reports
    /// NVLink and PCIe traffic as rates.
    counters_previous: HashMap<(String, &'static str), (u64, std::time::Instant)>,
    resolver: PodResolver,
    /// Whether the last pod-resources list failed (a change is logged once).
    pod_resources_failing: bool,
}

impl State {
    fn count_error(&mut self, field: Field) {
        *self.errors.entry(field.label()).or_insert(0) += 1;
    }

    /// The change per second of a cumulative counter since the previous read: 0 on
    /// the first read and after the counter went back (a driver reload, a wrap).
    fn rate_since_previous(&mut self, uuid: &str, counter: &'static str, value: u64) -> f64 {
        let now = std::time::Instant::now();
        match self
            .counters_previous
            .insert((uuid.to_string(), counter), (value, now))
        {
            Some((before, at)) if value >= before && now > at => {
                (value - before) as f64 / now.duration_since(at).as_secs_f64()
            }
            _ => 0.0,
        }
    }

    /// `Ok(None)`: leave the series out. `Err(Lost)`: stop this GPU.
    fn take<T>(
        &mut self,
        field: Field,
        reading: Result<T>,
    ) -> std::result::Result<Option<T>, Lost> {
        match reading {
            Ok(value) => Ok(Some(value)),
            Err(FieldError::NotSupported) => Ok(None),
            Err(FieldError::GpuLost) => Err(Lost),
            Err(FieldError::Driver(message)) => {
                tracing::debug!(field = field.label(), %message, "gpu field read failed");
                self.count_error(field);
                Ok(None)
            }
        }
    }
}

struct Running {
    backend: Arc<dyn GpuBackend>,
    config: GpuCollectorConfig,
    hostname: String,
    driver_version: String,
    xid: Arc<XidTable>,
    stop: Arc<AtomicBool>,
    xid_thread: Option<JoinHandle<()>>,
    pod_resources: Option<PodResourcesClient>,
    state: Mutex<State>,
}

/// The GPU collector. [`GpuCollector::start`] loads NVML; where that fails (no
/// driver) the collector is *off*: it says why once in the log and
/// [`collect`](GpuCollector::collect) returns nothing.
///
/// `collect` calls the driver and may block for tens of milliseconds per GPU (PCIe
/// throughput is sampled over 20 ms): call it from `spawn_blocking` or a thread of its
/// own. Concurrent calls are serialised.
pub struct GpuCollector {
    running: Option<Running>,
    off_reason: Option<String>,
}

impl std::fmt::Debug for GpuCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpuCollector")
            .field("on", &self.running.is_some())
            .field("off_reason", &self.off_reason)
            .finish()
    }
}

impl GpuCollector {
    /// Starts the collector on NVML, or returns one that is off (and logs why, once).
    pub fn start(config: GpuCollectorConfig) -> GpuCollector {
        if !config.enabled {
            tracing::info!("gpu collector off: disabled in configuration");
            return Self::off("disabled in configuration");
        }
        match NvmlBackend::init() {
            Ok(backend) => Self::with_backend(Arc::new(backend), config),
            Err(error) => {
                let reason = format!("nvml unavailable: {error}");
                tracing::info!(%error, "gpu collector off: NVML could not be loaded (no NVIDIA driver on this host?)");
                Self::off(&reason)
            }
        }
    }

    /// A collector that yields nothing.
    pub fn off(reason: &str) -> GpuCollector {
        GpuCollector {
            running: None,
            off_reason: Some(reason.to_string()),
        }
    }

    /// Starts the collector on any backend (the simulator in tests).
    pub fn with_backend(backend: Arc<dyn GpuBackend>, config: GpuCollectorConfig) -> GpuCollector {
        let hostname = config
            .hostname
            .clone()
            .or_else(|| std::env::var("NODE_NAME").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(crate::collect::kernel_hostname);
        let driver_version = backend.driver_version().unwrap_or_default();
        let xid = Arc::new(XidTable::default());
        let stop = Arc::new(AtomicBool::new(false));
        let xid_thread = backend.spawn_xid_watcher(XidWatch {
            table: Arc::clone(&xid),
            stop: Arc::clone(&stop),
        });
        let count = backend.device_count().unwrap_or(0);
        tracing::info!(gpus = count, driver = %driver_version, "gpu collector on");
        let cri = match &config.cri_socket {
            Some(path) if path.as_os_str().is_empty() => None,
            Some(path) => Some(CriClient::new(path.clone())),
            None => CriClient::discover(&config.host_root),
        };
        if let Some(cri) = &cri {
            tracing::info!(socket = %cri.socket().display(), "gpu collector: processes' pods from the container runtime");
        }
        let resolver = PodResolver::new(config.proc_root.clone(), config.host_root.clone(), cri);
        let pod_resources = config
            .pod_resources_socket
            .as_ref()
            .filter(|path| !path.as_os_str().is_empty())
            .map(PodResourcesClient::new);
        GpuCollector {
            running: Some(Running {
                backend,
                config,
                hostname,
                driver_version,
                xid,
                stop,
                xid_thread,
                pod_resources,
                state: Mutex::new(State {
                    errors: BTreeMap::new(),
                    identities: HashMap::new(),
                    lost: BTreeMap::new(),
                    utilization_since: HashMap::new(),
                    counters_previous: HashMap::new(),
                    mig_last: HashMap::new(),
                    resolver,
                    pod_resources_failing: false,
                }),
            }),
            off_reason: None,
        }
    }

    pub fn is_on(&self) -> bool {
        self.running.is_some()
    }

    /// Why the collector is off; `None` when it is on.
    pub fn off_reason(&self) -> Option<&str> {
        self.off_reason.as_deref()
    }

    /// Reads every GPU. Empty when the collector is off.
    pub fn collect(&self) -> Vec<MetricFamily> {
        match &self.running {
            Some(running) => running.collect(),
            None => Vec::new(),
        }
    }
}

impl Drop for GpuCollector {
    fn drop(&mut self) {
        if let Some(running) = &mut self.running {
            running.stop.store(true, Ordering::Relaxed);
            if let Some(handle) = running.xid_thread.take() {
                // The watcher wakes at least once a second to see the flag.
                let _ = handle.join();
            }
        }
    }
}

impl Running {
    /// `gpu, UUID, pci_bus_id, device, modelName[, GPU_I_PROFILE, GPU_I_ID], Hostname,
    /// DCGM_FI_DRIVER_VERSION`: dcgm-exporter's order.
    fn labels(&self, id: &DeviceIdentity, mig: Option<(&str, u32)>) -> Labels {
        let mut labels = vec![
            label("gpu", id.index.to_string()),
            label("UUID", id.uuid.clone()),
            label("pci_bus_id", id.pci_bus_id.clone()),
            // dcgm-exporter names the device by the GPU's index, not its /dev minor.
            label("device", format!("nvidia{}", id.index)),
            label("modelName", id.name.clone()),
        ];
        if let Some((profile, instance)) = mig {
            labels.push(label("GPU_I_PROFILE", profile));
            labels.push(label("GPU_I_ID", instance.to_string()));
        }
        if !self.hostname.is_empty() {
            labels.push(label("Hostname", self.hostname.clone()));
        }
        if self.config.driver_version_label && !self.driver_version.is_empty() {
            labels.push(label("DCGM_FI_DRIVER_VERSION", self.driver_version.clone()));
        }
        labels
    }

    /// The pods holding this host's GPUs, from the kubelet's answer `listed` (`None`
    /// when no kubelet is configured). A failure is logged when it starts and when it
    /// ends, and counted; the series go out without pod labels meanwhile.
    fn allocations(
        &self,
        state: &mut State,
        listed: Option<std::result::Result<DeviceAllocations, ListError>>,
    ) -> DeviceAllocations {
        let (Some(client), Some(listed)) = (&self.pod_resources, listed) else {
            return DeviceAllocations::default();
        };
        match listed {
            Ok(allocations) => {
                if state.pod_resources_failing {
                    tracing::info!(socket = %client.socket().display(),
                        "gpu collector: the kubelet's pod-resources list answers again");
                    state.pod_resources_failing = false;
                }
                allocations
            }
            Err(ListError::NoSocket(_)) => DeviceAllocations::default(),
            Err(error) => {
                if !state.pod_resources_failing {
                    tracing::warn!(%error,
                        "gpu collector: cannot list the kubelet's pod resources; GPU series go out without pod labels");
                    state.pod_resources_failing = true;
                }
                state.count_error(Field::PodResources);
                DeviceAllocations::default()
            }
        }
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let mut out = Families::default();
        // Asked before the state is locked: the kubelet may take its full time limit.
        let listed = self.pod_resources.as_ref().map(PodResourcesClient::list);
        let mut state = self.state.lock();
        state.resolver.begin_collection();
        let allocations = self.allocations(&mut state, listed);
        let count = match self.backend.device_count() {
            Ok(n) => n,
            Err(_) => {
                state.count_error(Field::DeviceCount);
                0
            }
        };
        for index in 0..count {
            let identity = self
                .backend
                .device(index)
                .map_err(|e| (Field::DeviceHandle, e))
                .and_then(|device| {
                    let id = device.identity().map_err(|e| (Field::Identity, e))?;
                    Ok((device, id))
                });
            let (device, id) = match identity {
                Ok(pair) => pair,
                Err((field, FieldError::GpuLost)) => {
                    if let Some(known) = state.identities.get(&index).cloned() {
                        self.mark_lost(&mut state, known);
                    } else {
                        state.count_error(field);
                    }
                    continue;
                }
                Err((field, FieldError::NotSupported | FieldError::Driver(_))) => {
                    state.count_error(field);
                    continue;
                }
            };
            if state.lost.contains_key(&id.uuid) {
                continue;
            }
            state.identities.insert(index, id.clone());
            let mut batch = Batch::new();
            match self.read_device(&*device, &id, &mut state, &allocations, &mut batch) {
                Ok(()) => {
                    for (spec, labels, value) in batch {
                        out.push(spec, labels, value);
                    }
                }
                Err(Lost) => self.mark_lost(&mut state, id),
            }
        }
        for id in state.lost.values() {
            let labels = vec![
                label("gpu", id.index.to_string()),
                label("UUID", id.uuid.clone()),
                label("pci_bus_id", id.pci_bus_id.clone()),
            ];
            out.push(&DEVICE_LOST, labels, 1.0);
        }
        let cri_failures = state.resolver.take_cri_failures();
        if cri_failures > 0 {
            *state.errors.entry(Field::Cri.label()).or_insert(0) += cri_failures;
        }
        for (field, n) in &state.errors {
            out.push(&ERRORS, vec![label("field", *field)], *n as f64);
        }
        out.families
    }

    fn mark_lost(&self, state: &mut State, id: DeviceIdentity) {
        if !state.lost.contains_key(&id.uuid) {
            tracing::warn!(gpu = id.index, uuid = %id.uuid, pci_bus_id = %id.pci_bus_id,
                "gpu fell off the bus; its metrics stop, the other gpus keep reporting");
            state.lost.insert(id.uuid.clone(), id);
        }
    }

    /// The readings of one GPU that are the same for the whole GPU and for each of its
    /// MIG GPU instances, in DCGM's units (the engine utilizations apart).
    fn read_gpu_fields(
        &self,
        device: &dyn GpuDevice,
        id: &DeviceIdentity,
        state: &mut State,
    ) -> std::result::Result<Vec<(&'static Spec, f64)>, Lost> {
        let mut readings: Vec<(&'static Spec, f64)> = Vec::new();
        let mut put = |spec: &'static Spec, value: Option<f64>| {
            if let Some(v) = value {
                readings.push((spec, v));
            }
        };
        let f = f64::from;
        put(
            &SM_CLOCK,
            state.take(Field::SmClock, device.sm_clock_mhz())?.map(f),
        );
        put(
            &MEM_CLOCK,
            state
                .take(Field::MemoryClock, device.memory_clock_mhz())?
                .map(f),
        );
        // As DCGM reads it: 0 (no HBM sensor) is reported, and a value above 200 °C
        // is not a temperature.
        put(
            &MEMORY_TEMP,
            state
                .take(
                    Field::MemoryTemperature,
                    device.memory_temperature_celsius(),
                )?
                .filter(|&c| c <= 200)
                .map(f),
        );
        put(
            &GPU_TEMP,
            state
                .take(Field::GpuTemperature, device.gpu_temperature_celsius())?
                .map(f),
        );
        // mW → W.
        put(
            &POWER_USAGE,
            state
                .take(Field::PowerUsage, device.power_usage_milliwatts())?
                .map(|mw| f64::from(mw) / 1000.0),
        );
        put(
            &POWER_MGMT_LIMIT,
            state
                .take(Field::PowerLimit, device.power_limit_milliwatts())?
                .map(|mw| f64::from(mw) / 1000.0),
        );
        put(
            &TOTAL_ENERGY,
            state
                .take(Field::TotalEnergy, device.total_energy_millijoules())?
                .map(|mj| mj as f64),
        );
        put(
            &PCIE_REPLAY,
            state
                .take(Field::PcieReplay, device.pcie_replay_count())?
                .map(|n| n as f64),
        );
        for (spec, count) in [
            (&ECC_SBE_VOL, EccCount::SingleBitVolatile),
            (&ECC_DBE_VOL, EccCount::DoubleBitVolatile),
            (&ECC_SBE_AGG, EccCount::SingleBitAggregate),
            (&ECC_DBE_AGG, EccCount::DoubleBitAggregate),
        ] {
            put(
                spec,
                state
                    .take(Field::Ecc(count), device.ecc_errors(count))?
                    .map(|n| n as f64),
            );
        }
        for (spec, kind) in [
            (&RETIRED_SBE, RetiredPages::SingleBit),
            (&RETIRED_DBE, RetiredPages::DoubleBit),
            (&RETIRED_PENDING, RetiredPages::Pending),
        ] {
            put(
                spec,
                state
                    .take(Field::Retired(kind), device.retired_pages(kind))?
                    .map(|n| n as f64),
            );
        }
        // DCGM reports NVLink traffic as a rate: MB/s since the previous read, 0 on
        // the first (and after the driver's counter went back).
        if let Some(kib) =
            state.take(Field::NvlinkBandwidth, device.nvlink_bandwidth_total_kib())?
        {
            let kib_per_second = state.rate_since_previous(&id.uuid, NVLINK_BANDWIDTH.name, kib);
            put(&NVLINK_BANDWIDTH, Some(kib_per_second * 1024.0 / 1e6));
        }
        for (spec, kind) in [
            (&UNCORRECTABLE_REMAPPED, RemappedRows::Uncorrectable),
            (&CORRECTABLE_REMAPPED, RemappedRows::Correctable),
            (&ROW_REMAP_FAILURE, RemappedRows::Failure),
        ] {
            put(
                spec,
                state
                    .take(Field::Remapped(kind), device.remapped_rows(kind))?
                    .map(|n| n as f64),
            );
        }
        put(
            &THROTTLE_REASONS,
            state
                .take(Field::ThrottleReasons, device.clock_throttle_reasons())?
                .map(|bits| bits as f64),
        );
        Ok(readings)
    }

    /// The engine utilizations, which NVML measures for the whole GPU only: DCGM
    /// leaves them blank for a MIG instance, so they are read for a whole GPU alone.
    fn read_engine_utilization(
        &self,
        device: &dyn GpuDevice,
        state: &mut State,
        readings: &mut Vec<(&'static Spec, f64)>,
    ) -> std::result::Result<(), Lost> {
        let mut put = |spec: &'static Spec, value: Option<f64>| {
            if let Some(v) = value {
                readings.push((spec, v));
            }
        };
        let f = f64::from;
        put(
            &GPU_UTIL,
            state
                .take(Field::GpuUtilization, device.gpu_utilization_percent())?
                .map(f),
        );
        put(
            &MEM_COPY_UTIL,
            state
                .take(
                    Field::MemoryCopyUtilization,
                    device.memory_copy_utilization_percent(),
                )?
                .map(f),
        );
        put(
            &ENC_UTIL,
            state
                .take(
                    Field::EncoderUtilization,
                    device.encoder_utilization_percent(),
                )?
                .map(f),
        );
        put(
            &DEC_UTIL,
            state
                .take(
                    Field::DecoderUtilization,
                    device.decoder_utilization_percent(),
                )?
                .map(f),
        );
        Ok(())
    }

    /// DCGM's profiling fields for the whole GPU (`gpu_instance` `None`) or one MIG
    /// GPU instance, from GPM; `None` when the GPU has no GPM (before Hopper).
    fn read_profiling(
        &self,
        device: &dyn GpuDevice,
        gpu_instance: Option<u32>,
        state: &mut State,
    ) -> std::result::Result<Option<Vec<(&'static Spec, f64)>>, Lost> {
        let readings = match device.gpm(gpu_instance) {
            Ok(readings) => readings,
            Err(FieldError::NotSupported) => return Ok(None),
            // A failed read leaves the series out this once; GPM is still there.
            failed => state.take(Field::Gpm, failed)?.unwrap_or_default(),
        };
        Ok(Some(
            readings
                .into_iter()
                .map(|(metric, value)| {
                    let (spec, factor) = gpm_field(metric);
                    let value = value * factor;
                    // Ratios stay within 0..1 whatever the driver's rounding.
                    let value = if factor < 1.0 {
                        value.clamp(0.0, 1.0)
                    } else {
                        value.max(0.0)
                    };
                    (spec, value)
                })
                .collect(),
        ))
    }

    /// PCIe traffic where GPM does not measure it: the rate of NVML's byte counters
    /// since the previous read, under DCGM's profiling names.
    fn read_pcie_counters(
        &self,
        device: &dyn GpuDevice,
        id: &DeviceIdentity,
        state: &mut State,
    ) -> std::result::Result<Vec<(&'static Spec, f64)>, Lost> {
        let mut readings = Vec::new();
        for (spec, direction) in [
            (&PROF_PCIE_TX_BYTES, PcieDirection::Tx),
            (&PROF_PCIE_RX_BYTES, PcieDirection::Rx),
        ] {
            if let Some(bytes) = state.take(
                Field::PcieBytes(direction),
                device.pcie_bytes_total(direction),
            )? {
                readings.push((spec, state.rate_since_previous(&id.uuid, spec.name, bytes)));
            }
        }
        Ok(readings)
    }

    fn read_device(
        &self,
        device: &dyn GpuDevice,
        id: &DeviceIdentity,
        state: &mut State,
        allocations: &DeviceAllocations,
        batch: &mut Batch,
    ) -> std::result::Result<(), Lost> {
        let gpu_fields = self.read_gpu_fields(device, id, state)?;
        let xids = self.xid.get(&id.uuid).unwrap_or_default();
        // A MIG-enabled GPU is reported as its GPU instances, as dcgm-exporter's
        // default (flex) mode reports it: each instance's series carry the GPU's
        // readings under its own labels; the GPU has no series of its own.
        let instances = match device.mig_instances() {
            Ok(instances) => {
                state.mig_last.insert(id.uuid.clone(), instances.clone());
                instances
            }
            Err(FieldError::NotSupported) => Vec::new(),
            Err(FieldError::GpuLost) => return Err(Lost),
            // MIG is on but its instances cannot be listed: the last list read, whose
            // frame buffers are not known now; without one, nothing this time rather
            // than the GPU taken for a whole one.
            Err(FieldError::Driver(message)) => {
                tracing::debug!(%message, gpu = id.index, "MIG instances could not be listed");
                state.count_error(Field::Mig);
                match state.mig_last.get(&id.uuid) {
                    Some(last) => last
                        .iter()
                        .map(|i| MigInstance {
                            memory: Err(FieldError::NotSupported),
                            ..i.clone()
                        })
                        .collect(),
                    None => return Ok(()),
                }
            }
        };
        if instances.is_empty() {
            let mut readings = gpu_fields;
            self.read_engine_utilization(device, state, &mut readings)?;
            if let Some(memory) = state.take(Field::MemoryInfo, device.memory_info())? {
                push_frame_buffer(&mut readings, memory);
            }
            // PCIe traffic from GPM where the GPU has it, else from the byte counters.
            match self.read_profiling(device, None, state)? {
                Some(profiling) => readings.extend(profiling),
                None => readings.extend(self.read_pcie_counters(device, id, state)?),
            }
            let xid = xids.last().map_or(0, |event| event.xid);
            let target = (self.labels(id, None), allocations.of_gpu(id));
            push_target(batch, target, readings, xid);
        } else {
            for instance in &instances {
                let gi = instance.gpu_instance_id;
                let mut readings = gpu_fields.clone();
                if let Some(memory) = state.take(Field::MemoryInfo, instance.memory.clone())? {
                    push_frame_buffer(&mut readings, memory);
                }
                readings.extend(
                    self.read_profiling(device, Some(gi), state)?
                        .unwrap_or_default(),
                );
                let xid = xids.last_for_instance(gi).map_or(0, |event| event.xid);
                let target = (
                    self.labels(id, Some((&instance.profile(), gi))),
                    allocations.of_instance(id, gi, &instance.device_uuids),
                );
                push_target(batch, target, readings, xid);
            }
        }
        let gpu_labels = self.labels(id, None);
        for (xid, n) in &xids.counts {
            let mut l = gpu_labels.clone();
            l.push(label("xid", xid.to_string()));
            batch.push((&XID_COUNT, l, *n as f64));
        }
        if self.config.processes {
            self.read_processes(device, id, &instances, state, batch)?;
        }
        Ok(())
    }

    fn read_processes(
        &self,
        device: &dyn GpuDevice,
        id: &DeviceIdentity,
        instances: &[MigInstance],
        state: &mut State,
        batch: &mut Batch,
    ) -> std::result::Result<(), Lost> {
        let Some(processes) = state.take(Field::Processes, device.processes())? else {
            return Ok(());
        };
        let since = state.utilization_since.get(&id.uuid).copied().unwrap_or(0);
        // `None`: NVML could not say (counted as a field error); the processes'
        // utilization is then left out, not reported as idle.
        let samples = state.take(Field::ProcessUtilization, device.process_utilization(since))?;
        let readable = samples.is_some();
        let samples = samples.unwrap_or_default();
        // The newest sample per pid.
        let mut latest: HashMap<u32, super::backend::ProcessUtilization> = HashMap::new();
        for sample in samples {
            let newer = latest
                .get(&sample.pid)
                .is_none_or(|seen| sample.timestamp_us > seen.timestamp_us);
            if newer {
                latest.insert(sample.pid, sample);
            }
        }
        if let Some(newest) = latest.values().map(|s| s.timestamp_us).max() {
            state
                .utilization_since
                .insert(id.uuid.clone(), newest.max(since));
        }
        for process in processes {
            let instance = process
                .gpu_instance_id
                .and_then(|gi| instances.iter().find(|i| i.gpu_instance_id == gi));
            let profile = instance.map(MigInstance::profile);
            let mig = process
                .gpu_instance_id
                .map(|gi| (profile.as_deref().unwrap_or(""), gi));
            let mut labels = self.labels(id, mig);
            let resolved = state.resolver.resolve(process.pid);
            labels.push(label("pid", process.pid.to_string()));
            if !resolved.process_name.is_empty() {
                labels.push(label("process_name", resolved.process_name));
            }
            let pod = resolved.pod;
            labels.extend(
                pod_attributes(Some(&pod))
                    .into_iter()
                    .map(|(name, value)| label(name, value)),
            );
            if let Some(bytes) = process.used_memory_bytes {
                batch.push((&PROCESS_MEMORY, labels.clone(), bytes as f64));
            }
            if !readable {
                continue;
            }
            // NVML only keeps samples of processes that used the GPU: none means idle.
            let sample = latest.get(&process.pid);
            let sm = sample.map_or(0.0, |s| f64::from(s.sm_percent.min(100)) / 100.0);
            let mem = sample.map_or(0.0, |s| f64::from(s.memory_percent.min(100)) / 100.0);
            batch.push((&PROCESS_SM, labels.clone(), sm));
            batch.push((&PROCESS_MEMORY_UTIL, labels, mem));
        }
        Ok(())
    }
}

/// The frame buffer in DCGM's whole MiB.
fn push_frame_buffer(readings: &mut Vec<(&'static Spec, f64)>, memory: MemoryInfo) {
    readings.push((&FB_FREE, (memory.free >> 20) as f64));
    readings.push((&FB_USED, (memory.used >> 20) as f64));
    readings.push((&FB_RESERVED, (memory.reserved >> 20) as f64));
}

/// The series of one target (a whole GPU or a MIG instance: its labels and the pod
/// holding it): its readings and its last XID, with dcgm-exporter's attributes.
fn push_target(
    batch: &mut Batch,
    (labels, pod): (Labels, Option<&PodInfo>),
    readings: Vec<(&'static Spec, f64)>,
    xid: u64,
) {
    let pod = pod_attributes(pod);
    let series = with_attributes(&labels, &pod);
    for (spec, value) in readings {
        batch.push((spec, series.clone(), value));
    }
    batch.push((
        &XID_ERRORS,
        with_attributes(&labels, &xid_attributes(xid, &pod)),
        xid as f64,
    ));
}

/// dcgm-exporter's attributes after the labels, sorted by name as its template writes
/// them: `container`, `err_code`, `err_msg`, `namespace`, `pod`.
fn with_attributes(labels: &Labels, attributes: &[(&'static str, String)]) -> Labels {
    let mut sorted: Vec<&(&'static str, String)> = attributes.iter().collect();
    sorted.sort_by_key(|(name, _)| *name);
    let mut out = labels.clone();
    out.extend(
        sorted
            .into_iter()
            .map(|(name, value)| label(name, value.clone())),
    );
    out
}

/// dcgm-exporter's pod attributes, in its (sorted) order; none for a GPU no pod holds.
fn pod_attributes(pod: Option<&PodInfo>) -> Vec<(&'static str, String)> {
    let Some(pod) = pod else {
        return Vec::new();
    };
    [
        ("container", &pod.container),
        ("namespace", &pod.namespace),
        ("pod", &pod.pod),
    ]
    .into_iter()
    .filter_map(|(name, value)| value.clone().map(|v| (name, v)))
    .collect()
}

/// `err_code` and `err_msg` of `DCGM_FI_DEV_XID_ERRORS` (dcgm-exporter 3.3.6 and
/// later), with the pod's attributes.
fn xid_attributes(xid: u64, pod: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
    let mut attributes = pod.to_vec();
    attributes.push(("err_code", xid.to_string()));
    attributes.push(("err_msg", super::xid::description(xid).to_string()));
    attributes
}
