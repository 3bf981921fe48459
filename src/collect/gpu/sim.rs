//! An in-memory GPU backend: the fake of the [`GpuBackend`] seam. Unit tests and the
//! integration tests drive the collector with it; it is small, so it is compiled in
//! every build rather than behind `cfg(test)`.

use std::collections::HashMap;
use std::sync::Arc;
use std::thread::JoinHandle;

use parking_lot::Mutex;

use super::backend::{
    DeviceIdentity, EccCount, Field, GpmReadings, GpuBackend, GpuDevice, GpuProcess, MemoryInfo,
    MigInstance, PcieDirection, ProcessUtilization, RemappedRows, RetiredPages, XidTable, XidWatch,
};
use super::error::{FieldError, Result};

/// One simulated GPU: every reading is a public field; `failures` makes a reading fail
/// and `lost` makes every reading fail with `GpuLost`.
#[derive(Debug, Clone)]
pub struct SimulatedGpu {
    pub identity: DeviceIdentity,
    pub sm_clock_mhz: u32,
    pub memory_clock_mhz: u32,
    pub gpu_temperature_celsius: u32,
    pub memory_temperature_celsius: u32,
    pub power_usage_milliwatts: u32,
    pub power_limit_milliwatts: u32,
    pub total_energy_millijoules: u64,
    /// NVML's PCIe byte counters; `None`: a driver without them.
    pub pcie_tx_bytes: Option<u64>,
    pub pcie_rx_bytes: Option<u64>,
    pub pcie_replay_count: u64,
    pub gpu_utilization_percent: u32,
    pub memory_copy_utilization_percent: u32,
    pub encoder_utilization_percent: u32,
    pub decoder_utilization_percent: u32,
    pub memory: MemoryInfo,
    pub ecc: HashMap<EccCount, u64>,
    pub retired: HashMap<RetiredPages, u64>,
    pub remapped: HashMap<RemappedRows, u64>,
    pub clock_throttle_reasons: u64,
    /// `None`: no NVLink on this GPU.
    pub nvlink_bandwidth_total_kib: Option<u64>,
    /// What GPM measured since the previous read; `None`: no GPM (before Hopper).
    pub gpm: Option<GpmReadings>,
    /// GPM per MIG GPU instance ID.
    pub mig_gpm: HashMap<u32, GpmReadings>,
    pub mig: Vec<MigInstance>,
    pub processes: Vec<GpuProcess>,
    pub utilization: Vec<ProcessUtilization>,
    pub failures: HashMap<Field, FieldError>,
    pub lost: bool,
}

const GIB: u64 = 1 << 30;

impl SimulatedGpu {
    /// An idle H100 SXM at `index`, with plausible readings.
    pub fn h100(index: u32) -> Self {
        Self {
            identity: DeviceIdentity {
                index,
                uuid: format!("GPU-5f0b7c4e-1d2a-4b3c-8e9f-00000000000{index}"),
                name: "NVIDIA H100 80GB HBM3".into(),
                // Not the index: dcgm-exporter's `device` label is `nvidia<index>`.
                minor_number: index + 4,
                pci_bus_id: format!("00000000:{:02X}:00.0", 0x18 + index),
            },
            sm_clock_mhz: 1980,
            memory_clock_mhz: 2619,
            gpu_temperature_celsius: 34,
            memory_temperature_celsius: 41,
            power_usage_milliwatts: 71_234,
            power_limit_milliwatts: 700_000,
            total_energy_millijoules: 123_456_789,
            pcie_tx_bytes: Some(1 << 30),
            pcie_rx_bytes: Some(3 << 30),
            pcie_replay_count: 0,
            gpu_utilization_percent: 0,
            memory_copy_utilization_percent: 0,
            encoder_utilization_percent: 0,
            decoder_utilization_percent: 0,
            memory: MemoryInfo {
                total: 80 * GIB,
                used: 512 << 20,
                free: 80 * GIB - (512 << 20) - (551 << 20),
                reserved: 551 << 20,
            },
            ecc: HashMap::new(),
            retired: HashMap::new(),
            remapped: HashMap::new(),
            clock_throttle_reasons: 0x1,
            nvlink_bandwidth_total_kib: Some(4096),
            gpm: Some(Vec::new()),
            mig_gpm: HashMap::new(),
            mig: Vec::new(),
            processes: Vec::new(),
            utilization: Vec::new(),
            failures: HashMap::new(),
            lost: false,
        }
    }

    fn check(&self, field: Field) -> Result<()> {
        if self.lost {
            return Err(FieldError::GpuLost);
        }
        match self.failures.get(&field) {
            Some(e) => Err(e.clone()),
            None => Ok(()),
        }
    }

    fn read<T>(&self, field: Field, value: T) -> Result<T> {
        self.check(field).map(|()| value)
    }
}

impl GpuDevice for SimulatedGpu {
    fn identity(&self) -> Result<DeviceIdentity> {
        self.read(Field::Identity, self.identity.clone())
    }
    fn sm_clock_mhz(&self) -> Result<u32> {
        self.read(Field::SmClock, self.sm_clock_mhz)
    }
    fn memory_clock_mhz(&self) -> Result<u32> {
        self.read(Field::MemoryClock, self.memory_clock_mhz)
    }
    fn gpu_temperature_celsius(&self) -> Result<u32> {
        self.read(Field::GpuTemperature, self.gpu_temperature_celsius)
    }
    fn memory_temperature_celsius(&self) -> Result<u32> {
        self.read(Field::MemoryTemperature, self.memory_temperature_celsius)
    }
    fn power_usage_milliwatts(&self) -> Result<u32> {
        self.read(Field::PowerUsage, self.power_usage_milliwatts)
    }
    fn power_limit_milliwatts(&self) -> Result<u32> {
        self.read(Field::PowerLimit, self.power_limit_milliwatts)
    }
    fn total_energy_millijoules(&self) -> Result<u64> {
        self.read(Field::TotalEnergy, self.total_energy_millijoules)
    }
    fn pcie_bytes_total(&self, direction: PcieDirection) -> Result<u64> {
        self.check(Field::PcieBytes(direction))?;
        match direction {
            PcieDirection::Tx => self.pcie_tx_bytes,
            PcieDirection::Rx => self.pcie_rx_bytes,
        }
        .ok_or(FieldError::NotSupported)
    }
    fn pcie_replay_count(&self) -> Result<u64> {
        self.read(Field::PcieReplay, self.pcie_replay_count)
    }
    fn gpu_utilization_percent(&self) -> Result<u32> {
        self.read(Field::GpuUtilization, self.gpu_utilization_percent)
    }
    fn memory_copy_utilization_percent(&self) -> Result<u32> {
        self.read(
            Field::MemoryCopyUtilization,
            self.memory_copy_utilization_percent,
        )
    }
    fn encoder_utilization_percent(&self) -> Result<u32> {
        self.read(Field::EncoderUtilization, self.encoder_utilization_percent)
    }
    fn decoder_utilization_percent(&self) -> Result<u32> {
        self.read(Field::DecoderUtilization, self.decoder_utilization_percent)
    }
    fn memory_info(&self) -> Result<MemoryInfo> {
        self.read(Field::MemoryInfo, self.memory)
    }
    fn ecc_errors(&self, count: EccCount) -> Result<u64> {
        self.read(
            Field::Ecc(count),
            self.ecc.get(&count).copied().unwrap_or(0),
        )
    }
    fn retired_pages(&self, kind: RetiredPages) -> Result<u64> {
        self.read(
            Field::Retired(kind),
            self.retired.get(&kind).copied().unwrap_or(0),
        )
    }
    fn remapped_rows(&self, kind: RemappedRows) -> Result<u64> {
        self.read(
            Field::Remapped(kind),
            self.remapped.get(&kind).copied().unwrap_or(0),
        )
    }
    fn clock_throttle_reasons(&self) -> Result<u64> {
        self.read(Field::ThrottleReasons, self.clock_throttle_reasons)
    }
    fn nvlink_bandwidth_total_kib(&self) -> Result<u64> {
        self.check(Field::NvlinkBandwidth)?;
        self.nvlink_bandwidth_total_kib
            .ok_or(FieldError::NotSupported)
    }
    fn gpm(&self, gpu_instance: Option<u32>) -> Result<GpmReadings> {
        self.check(Field::Gpm)?;
        match gpu_instance {
            None => self.gpm.clone(),
            Some(id) => self.mig_gpm.get(&id).cloned(),
        }
        .ok_or(FieldError::NotSupported)
    }
    fn mig_instances(&self) -> Result<Vec<MigInstance>> {
        self.read(Field::Mig, self.mig.clone())
    }
    fn processes(&self) -> Result<Vec<GpuProcess>> {
        self.read(Field::Processes, self.processes.clone())
    }
    fn process_utilization(&self, since_us: u64) -> Result<Vec<ProcessUtilization>> {
        self.check(Field::ProcessUtilization)?;
        Ok(self
            .utilization
            .iter()
            .filter(|u| u.timestamp_us > since_us)
            .copied()
            .collect())
    }
}

/// A host of simulated GPUs. Keep an `Arc` to change readings between collections.
#[derive(Debug)]
pub struct SimulatedBackend {
    gpus: Mutex<Vec<SimulatedGpu>>,
    driver_version: String,
    xid_table: Mutex<Option<Arc<XidTable>>>,
}

impl SimulatedBackend {
    pub fn new(gpus: Vec<SimulatedGpu>) -> Self {
        Self {
            gpus: Mutex::new(gpus),
            driver_version: "550.54.15".into(),
            xid_table: Mutex::new(None),
        }
    }

    /// Changes GPU `index` in place (no-op when there is none).
    pub fn update(&self, index: usize, change: impl FnOnce(&mut SimulatedGpu)) {
        if let Some(gpu) = self.gpus.lock().get_mut(index) {
            change(gpu);
        }
    }

    /// Delivers a critical XID event as the driver would; false when no watcher runs.
    pub fn inject_xid(&self, uuid: &str, xid: u64) -> bool {
        self.inject_xid_on(uuid, None, xid)
    }

    /// Delivers an XID event the driver filed under MIG GPU instance `gpu_instance`.
    pub fn inject_xid_on(&self, uuid: &str, gpu_instance: Option<u32>, xid: u64) -> bool {
        match self.xid_table.lock().as_ref() {
            Some(table) => {
                table.record(uuid, gpu_instance, xid);
                true
            }
            None => false,
        }
    }
}

impl GpuBackend for SimulatedBackend {
    fn driver_version(&self) -> Result<String> {
        Ok(self.driver_version.clone())
    }
    fn device_count(&self) -> Result<u32> {
        Ok(u32::try_from(self.gpus.lock().len()).unwrap_or(u32::MAX))
    }
    fn device(&self, index: u32) -> Result<Box<dyn GpuDevice + '_>> {
        let gpus = self.gpus.lock();
        let gpu = gpus
            .get(index as usize)
            .ok_or_else(|| FieldError::Driver("invalid argument".into()))?;
        Ok(Box::new(gpu.clone()))
    }
    fn spawn_xid_watcher(&self, watch: XidWatch) -> Option<JoinHandle<()>> {
        // Events arrive through `inject_xid`; no thread is needed.
        *self.xid_table.lock() = Some(watch.table);
        None
    }
}
