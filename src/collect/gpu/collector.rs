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
    DeviceIdentity, EccCount, Field, GpuBackend, GpuDevice, PcieDirection, RemappedRows,
    RetiredPages, XidTable, XidWatch,
};
use super::error::{FieldError, Result};
use super::nvml::NvmlBackend;
use super::process::PodResolver;

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
const PCIE_TX: Spec = counter(
    "DCGM_FI_DEV_PCIE_TX_THROUGHPUT",
    "Total number of bytes transmitted through PCIe TX (in KB) via NVML.",
);
const PCIE_RX: Spec = counter(
    "DCGM_FI_DEV_PCIE_RX_THROUGHPUT",
    "Total number of bytes received through PCIe RX (in KB) via NVML.",
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
    /// Per GPU UUID, the NVLink traffic counter (KiB) at the last read, and when.
    nvlink_previous: HashMap<String, (u64, std::time::Instant)>,
    resolver: PodResolver,
}

impl State {
    fn count_error(&mut self, field: Field) {
        *self.errors.entry(field.label()).or_insert(0) += 1;
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

fn kernel_hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
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
        let node_hostname = kernel_hostname();
        let hostname = config
            .hostname
            .clone()
            .or_else(|| std::env::var("NODE_NAME").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| node_hostname.clone());
        let driver_version = backend.driver_version().unwrap_or_default();
        let xid = Arc::new(XidTable::default());
        let stop = Arc::new(AtomicBool::new(false));
        let xid_thread = backend.spawn_xid_watcher(XidWatch {
            table: Arc::clone(&xid),
            stop: Arc::clone(&stop),
        });
        let count = backend.device_count().unwrap_or(0);
        tracing::info!(gpus = count, driver = %driver_version, "gpu collector on");
        let resolver = PodResolver::new(
            config.proc_root.clone(),
            config.host_root.clone(),
            node_hostname,
        );
        GpuCollector {
            running: Some(Running {
                backend,
                config,
                hostname,
                driver_version,
                xid,
                stop,
                xid_thread,
                state: Mutex::new(State {
                    errors: BTreeMap::new(),
                    identities: HashMap::new(),
                    lost: BTreeMap::new(),
                    utilization_since: HashMap::new(),
                    nvlink_previous: HashMap::new(),
                    resolver,
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

    fn collect(&self) -> Vec<MetricFamily> {
        let mut out = Families::default();
        let mut state = self.state.lock();
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
            match self.read_device(&*device, &id, &mut state, &mut batch) {
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

    fn read_device(
        &self,
        device: &dyn GpuDevice,
        id: &DeviceIdentity,
        state: &mut State,
        batch: &mut Batch,
    ) -> std::result::Result<(), Lost> {
        let labels = self.labels(id, None);
        let mut put = |spec: &'static Spec, value: Option<f64>| {
            if let Some(v) = value {
                batch.push((spec, labels.clone(), v));
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
        for (spec, direction) in [(&PCIE_TX, PcieDirection::Tx), (&PCIE_RX, PcieDirection::Rx)] {
            put(
                spec,
                state
                    .take(
                        Field::PcieThroughput(direction),
                        device.pcie_throughput_kbps(direction),
                    )?
                    .map(f),
            );
        }
        put(
            &PCIE_REPLAY,
            state
                .take(Field::PcieReplay, device.pcie_replay_count())?
                .map(|n| n as f64),
        );
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
        // XID: the last one seen, 0 when none (as dcgm-exporter).
        let xids = self.xid.get(&id.uuid).unwrap_or_default();
        put(&XID_ERRORS, Some(xids.last as f64));
        if let Some(memory) = state.take(Field::MemoryInfo, device.memory_info())? {
            // bytes → MiB, whole MiB as DCGM reports them.
            put(&FB_FREE, Some((memory.free >> 20) as f64));
            put(&FB_USED, Some((memory.used >> 20) as f64));
        }
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
            let now = std::time::Instant::now();
            let rate = match state.nvlink_previous.insert(id.uuid.clone(), (kib, now)) {
                Some((before, at)) if kib >= before && now > at => {
                    (kib - before) as f64 * 1024.0 / 1e6 / now.duration_since(at).as_secs_f64()
                }
                _ => 0.0,
            };
            put(&NVLINK_BANDWIDTH, Some(rate));
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
        for (xid, n) in &xids.counts {
            let mut l = labels.clone();
            l.push(label("xid", xid.to_string()));
            batch.push((&XID_COUNT, l, *n as f64));
        }

        // MIG instances: frame buffer per GPU instance, labelled as dcgm-exporter does.
        let instances = state
            .take(Field::Mig, device.mig_instances())?
            .unwrap_or_default();
        for instance in &instances {
            let mig_labels = self.labels(
                id,
                Some((instance.profile.as_str(), instance.gpu_instance_id)),
            );
            if let Some(memory) = state.take(Field::MemoryInfo, instance.memory.clone())? {
                batch.push((&FB_FREE, mig_labels.clone(), (memory.free >> 20) as f64));
                batch.push((&FB_USED, mig_labels, (memory.used >> 20) as f64));
            }
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
        instances: &[super::backend::MigInstance],
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
            let mig = process.gpu_instance_id.map(|gi| {
                let profile = instances
                    .iter()
                    .find(|i| i.gpu_instance_id == gi)
                    .map(|i| i.profile.as_str())
                    .unwrap_or("");
                (profile, gi)
            });
            let mut labels = self.labels(id, mig);
            let resolved = state.resolver.resolve(process.pid);
            labels.push(label("pid", process.pid.to_string()));
            if !resolved.process_name.is_empty() {
                labels.push(label("process_name", resolved.process_name));
            }
            // dcgm-exporter's pod attributes, in its (sorted) order.
            for (name, value) in [
                ("container", resolved.pod.container),
                ("namespace", resolved.pod.namespace),
                ("pod", resolved.pod.pod),
            ] {
                if let Some(value) = value {
                    labels.push(label(name, value));
                }
            }
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
