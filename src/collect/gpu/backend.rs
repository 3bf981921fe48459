//! The seam between the collector and the driver: [`GpuBackend`] enumerates devices,
//! [`GpuDevice`] reads one field per method. Production uses
//! [`NvmlBackend`](super::nvml::NvmlBackend); tests use
//! [`SimulatedBackend`](super::sim::SimulatedBackend).
//!
//! Every method returns raw driver units (mW, bytes, MHz, percent); the collector alone
//! converts to dcgm-exporter's units, so a backend cannot get a unit wrong.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::thread::JoinHandle;

use parking_lot::Mutex;

use super::error::Result;

/// The labels that name a physical GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceIdentity {
    /// NVML index (dcgm-exporter's `gpu` label).
    pub index: u32,
    /// `GPU-…` UUID.
    pub uuid: String,
    /// Product name, e.g. `NVIDIA H100 80GB HBM3` (`modelName`).
    pub name: String,
    /// Minor number of `/dev/nvidia<minor>` (`device`).
    pub minor_number: u32,
    /// `00000000:3B:00.0` (`pci_bus_id`).
    pub pci_bus_id: String,
}

/// Frame-buffer occupancy in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MemoryInfo {
    pub total: u64,
    pub used: u64,
    pub free: u64,
    /// Set aside by the driver and firmware (NVML's v2 memory info); not in `used`.
    pub reserved: u64,
}

/// One MIG GPU instance of a MIG-enabled GPU: what DCGM monitors as a `GPU_I` entity
/// (its compute instances are not monitored apart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MigInstance {
    /// `GPU_I_ID`: NVML's GPU-instance ID.
    pub gpu_instance_id: u32,
    /// GPU slices of the instance (its profile's `sliceCount`).
    pub slices: u32,
    /// The instance's memory in MiB (its profile's `memorySizeMB`).
    pub memory_size_mib: u64,
    /// The `MIG-…` UUIDs of its MIG devices, one per compute instance: what the
    /// device plugin hands to pods. Labels use the parent GPU's UUID, as dcgm-exporter.
    pub device_uuids: Vec<String>,
    /// The instance's frame buffer, read when the instances are listed.
    pub memory: Result<MemoryInfo>,
}

impl MigInstance {
    /// `GPU_I_PROFILE` as DCGM names a GPU instance: `<slices>g.<memory in GiB,
    /// rounded up>gb` (`1g.10gb`, `3g.40gb`), once per GPU instance.
    pub fn profile(&self) -> String {
        format!("{}g.{}gb", self.slices, self.memory_size_mib.div_ceil(1024))
    }
}

/// A process holding a context on a GPU.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GpuProcess {
    pub pid: u32,
    /// `None` when the driver does not say (Windows WDDM, some vGPU set-ups).
    pub used_memory_bytes: Option<u64>,
    /// The MIG GPU instance the process runs in, on MIG-enabled GPUs.
    pub gpu_instance_id: Option<u32>,
}

/// One utilization sample of one process (NVML keeps a short ring of them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessUtilization {
    pub pid: u32,
    /// CPU timestamp of the sample, in microseconds.
    pub timestamp_us: u64,
    /// SM (kernel) utilization, percent.
    pub sm_percent: u32,
    /// Memory-controller utilization, percent.
    pub memory_percent: u32,
}

/// ECC counters as DCGM splits them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EccCount {
    SingleBitVolatile,
    DoubleBitVolatile,
    SingleBitAggregate,
    DoubleBitAggregate,
}

/// Page-retirement counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RetiredPages {
    SingleBit,
    DoubleBit,
    Pending,
}

/// Row-remapping counters (Ampere and later).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RemappedRows {
    Correctable,
    Uncorrectable,
    /// 1 when a remapping has failed.
    Failure,
}

/// PCIe direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PcieDirection {
    Tx,
    Rx,
}

/// A GPM (GPU Performance Monitoring, Hopper and later) metric: what NVML itself
/// measures of DCGM's profiling fields, over the interval between two samples.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum GpmMetric {
    /// Percent of time the graphics engine was active (DCGM's `GR_ENGINE_ACTIVE`).
    GraphicsUtil,
    /// Percent of time an SM had a warp assigned, averaged over SMs.
    SmUtil,
    /// Percent of the theoretical maximum of resident warps, averaged over SMs.
    SmOccupancy,
    /// Percent of time any tensor pipe was active.
    AnyTensorUtil,
    /// Percent of DRAM bandwidth used.
    DramBandwidthUtil,
    Fp64Util,
    Fp32Util,
    Fp16Util,
    /// MiB/s.
    PcieTxMibPerSecond,
    PcieRxMibPerSecond,
    NvlinkTxMibPerSecond,
    NvlinkRxMibPerSecond,
}

impl GpmMetric {
    pub const ALL: [GpmMetric; 12] = [
        GpmMetric::GraphicsUtil,
        GpmMetric::SmUtil,
        GpmMetric::SmOccupancy,
        GpmMetric::AnyTensorUtil,
        GpmMetric::DramBandwidthUtil,
        GpmMetric::Fp64Util,
        GpmMetric::Fp32Util,
        GpmMetric::Fp16Util,
        GpmMetric::PcieTxMibPerSecond,
        GpmMetric::PcieRxMibPerSecond,
        GpmMetric::NvlinkTxMibPerSecond,
        GpmMetric::NvlinkRxMibPerSecond,
    ];
}

/// GPM readings over the interval since the previous call, in NVML's units
/// (percent, MiB/s). Empty on the first call for a GPU or instance: a rate needs
/// two samples. A metric the GPU does not measure is absent.
pub type GpmReadings = Vec<(GpmMetric, f64)>;

/// A reading, as the errors counter names it (`odin_gpu_collector_errors_total{field}`)
/// and as the simulator injects failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    DriverVersion,
    DeviceCount,
    DeviceHandle,
    Identity,
    SmClock,
    MemoryClock,
    GpuTemperature,
    MemoryTemperature,
    PowerUsage,
    PowerLimit,
    TotalEnergy,
    PcieBytes(PcieDirection),
    PcieReplay,
    GpuUtilization,
    MemoryCopyUtilization,
    EncoderUtilization,
    DecoderUtilization,
    MemoryInfo,
    Ecc(EccCount),
    Retired(RetiredPages),
    Remapped(RemappedRows),
    ThrottleReasons,
    NvlinkBandwidth,
    Gpm,
    Mig,
    Processes,
    ProcessUtilization,
    /// The kubelet's pod-resources list (not a GPU reading, counted alike).
    PodResources,
    /// A container runtime's CRI lookup (likewise).
    Cri,
}

impl Field {
    /// The `field` label: the DCGM field name where the reading is one.
    pub fn label(self) -> &'static str {
        match self {
            Field::DriverVersion => "driver_version",
            Field::DeviceCount => "device_count",
            Field::DeviceHandle => "device_handle",
            Field::Identity => "identity",
            Field::SmClock => "DCGM_FI_DEV_SM_CLOCK",
            Field::MemoryClock => "DCGM_FI_DEV_MEM_CLOCK",
            Field::GpuTemperature => "DCGM_FI_DEV_GPU_TEMP",
            Field::MemoryTemperature => "DCGM_FI_DEV_MEMORY_TEMP",
            Field::PowerUsage => "DCGM_FI_DEV_POWER_USAGE",
            Field::PowerLimit => "DCGM_FI_DEV_POWER_MGMT_LIMIT",
            Field::TotalEnergy => "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
            Field::PcieBytes(PcieDirection::Tx) => "DCGM_FI_PROF_PCIE_TX_BYTES",
            Field::PcieBytes(PcieDirection::Rx) => "DCGM_FI_PROF_PCIE_RX_BYTES",
            Field::PcieReplay => "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
            Field::GpuUtilization => "DCGM_FI_DEV_GPU_UTIL",
            Field::MemoryCopyUtilization => "DCGM_FI_DEV_MEM_COPY_UTIL",
            Field::EncoderUtilization => "DCGM_FI_DEV_ENC_UTIL",
            Field::DecoderUtilization => "DCGM_FI_DEV_DEC_UTIL",
            Field::MemoryInfo => "DCGM_FI_DEV_FB_USED",
            Field::Ecc(EccCount::SingleBitVolatile) => "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
            Field::Ecc(EccCount::DoubleBitVolatile) => "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
            Field::Ecc(EccCount::SingleBitAggregate) => "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL",
            Field::Ecc(EccCount::DoubleBitAggregate) => "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL",
            Field::Retired(RetiredPages::SingleBit) => "DCGM_FI_DEV_RETIRED_SBE",
            Field::Retired(RetiredPages::DoubleBit) => "DCGM_FI_DEV_RETIRED_DBE",
            Field::Retired(RetiredPages::Pending) => "DCGM_FI_DEV_RETIRED_PENDING",
            Field::Remapped(RemappedRows::Correctable) => "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
            Field::Remapped(RemappedRows::Uncorrectable) => {
                "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS"
            }
            Field::Remapped(RemappedRows::Failure) => "DCGM_FI_DEV_ROW_REMAP_FAILURE",
            Field::ThrottleReasons => "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
            Field::NvlinkBandwidth => "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
            Field::Gpm => "gpm",
            Field::Mig => "mig_instances",
            Field::Processes => "processes",
            Field::ProcessUtilization => "process_utilization",
            Field::PodResources => "pod_resources",
            Field::Cri => "cri",
        }
    }
}

/// One physical GPU. Each method is one reading; an error leaves out that series only,
/// except [`FieldError::GpuLost`](super::error::FieldError::GpuLost), which stops the GPU.
///
/// Threading: the collector calls these from one thread at a time, at scrape time; a
/// method may block for a few milliseconds in the driver.
pub trait GpuDevice {
    fn identity(&self) -> Result<DeviceIdentity>;
    fn sm_clock_mhz(&self) -> Result<u32>;
    fn memory_clock_mhz(&self) -> Result<u32>;
    fn gpu_temperature_celsius(&self) -> Result<u32>;
    fn memory_temperature_celsius(&self) -> Result<u32>;
    fn power_usage_milliwatts(&self) -> Result<u32>;
    /// The power management limit (what `nvidia-smi` calls the power limit).
    fn power_limit_milliwatts(&self) -> Result<u32>;
    fn total_energy_millijoules(&self) -> Result<u64>;
    /// Bytes through PCIe since the driver loaded (NVML's `PCIE_COUNT_*_BYTES`
    /// counters); `NotSupported` where the driver has no such counter.
    fn pcie_bytes_total(&self, direction: PcieDirection) -> Result<u64>;
    fn pcie_replay_count(&self) -> Result<u64>;
    fn gpu_utilization_percent(&self) -> Result<u32>;
    fn memory_copy_utilization_percent(&self) -> Result<u32>;
    fn encoder_utilization_percent(&self) -> Result<u32>;
    fn decoder_utilization_percent(&self) -> Result<u32>;
    fn memory_info(&self) -> Result<MemoryInfo>;
    fn ecc_errors(&self, count: EccCount) -> Result<u64>;
    fn retired_pages(&self, kind: RetiredPages) -> Result<u64>;
    fn remapped_rows(&self, kind: RemappedRows) -> Result<u64>;
    /// `nvmlClocksThrottleReasons` bitmask.
    fn clock_throttle_reasons(&self) -> Result<u64>;
    /// NVLink data bytes sent and received over all links, in KiB. `NotSupported` on
    /// GPUs without NVLink.
    fn nvlink_bandwidth_total_kib(&self) -> Result<u64>;
    /// GPM metrics since the previous call for this GPU (`gpu_instance`: for one of
    /// its MIG GPU instances); `NotSupported` on GPUs before Hopper.
    fn gpm(&self, gpu_instance: Option<u32>) -> Result<GpmReadings>;
    /// The MIG instances; empty when MIG is off or unsupported.
    fn mig_instances(&self) -> Result<Vec<MigInstance>>;
    /// Compute and graphics processes, one entry per pid.
    fn processes(&self) -> Result<Vec<GpuProcess>>;
    /// Utilization samples newer than `since_us` (0: all the driver holds).
    fn process_utilization(&self, since_us: u64) -> Result<Vec<ProcessUtilization>>;
}

/// A driver: the devices of this host.
pub trait GpuBackend: Send + Sync {
    fn driver_version(&self) -> Result<String>;
    fn device_count(&self) -> Result<u32>;
    fn device(&self, index: u32) -> Result<Box<dyn GpuDevice + '_>>;
    /// Starts watching for critical XID events, recording them into `watch.table`
    /// until `watch.stop` is set. `None` when the backend cannot watch (no event
    /// support); the XID gauge then stays at 0.
    fn spawn_xid_watcher(&self, watch: XidWatch) -> Option<JoinHandle<()>>;
}

/// What the XID watcher needs: where to record, when to stop.
#[derive(Debug, Clone)]
pub struct XidWatch {
    pub table: Arc<XidTable>,
    pub stop: Arc<AtomicBool>,
}

/// XID events seen per GPU UUID, written by the watcher thread and read at scrape time.
#[derive(Debug, Default)]
pub struct XidTable {
    by_uuid: Mutex<HashMap<String, XidHistory>>,
    /// Orders events across GPUs and instances, to tell which came last.
    sequence: std::sync::atomic::AtomicU64,
}

/// One XID event: its code and when it came, as a sequence number.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct XidEvent {
    pub xid: u64,
    pub sequence: u64,
}

/// The XIDs of one GPU.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XidHistory {
    /// The last XID the driver did not attribute to a MIG GPU instance.
    pub last_unattributed: Option<XidEvent>,
    /// The last XID per MIG GPU instance it was filed under.
    pub last_by_instance: BTreeMap<u32, XidEvent>,
    /// How many times each XID was seen.
    pub counts: BTreeMap<u64, u64>,
}

impl XidHistory {
    /// The last XID seen on the GPU, wherever the driver filed it (dcgm-exporter's
    /// `DCGM_FI_DEV_XID_ERRORS` of a whole GPU).
    pub fn last(&self) -> Option<XidEvent> {
        self.last_by_instance
            .values()
            .copied()
            .chain(self.last_unattributed)
            .max_by_key(|event| event.sequence)
    }

    /// The XID a MIG GPU instance reports: the later of its own and the GPU's
    /// unattributed ones (a GPU-wide fault concerns every instance).
    pub fn last_for_instance(&self, gpu_instance: u32) -> Option<XidEvent> {
        let own = self.last_by_instance.get(&gpu_instance).copied();
        match (own, self.last_unattributed) {
            (Some(a), Some(b)) => Some(if a.sequence > b.sequence { a } else { b }),
            (a, b) => a.or(b),
        }
    }
}

/// Bounds the per-GPU maps: XIDs are a few dozen documented values, but a driver bug
/// must not grow memory without end.
const MAX_DISTINCT_XIDS: usize = 256;

impl XidTable {
    /// Records XID `xid` on the GPU `uuid`, filed under MIG GPU instance
    /// `gpu_instance` when the driver attributed it to one.
    pub fn record(&self, uuid: &str, gpu_instance: Option<u32>, xid: u64) {
        let event = XidEvent {
            xid,
            sequence: self
                .sequence
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        };
        let mut map = self.by_uuid.lock();
        let history = map.entry(uuid.to_string()).or_default();
        match gpu_instance {
            Some(id) => {
                if history.last_by_instance.len() < MAX_DISTINCT_XIDS
                    || history.last_by_instance.contains_key(&id)
                {
                    history.last_by_instance.insert(id, event);
                }
            }
            None => history.last_unattributed = Some(event),
        }
        if history.counts.len() < MAX_DISTINCT_XIDS || history.counts.contains_key(&xid) {
            *history.counts.entry(xid).or_insert(0) += 1;
        }
    }

    pub fn get(&self, uuid: &str) -> Option<XidHistory> {
        self.by_uuid.lock().get(uuid).cloned()
    }
}
