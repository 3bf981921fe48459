//! The production backend: NVML through nvml-wrapper, which `dlopen`s
//! `libnvidia-ml.so.1` in [`Nvml::init`], so a host without the driver only fails
//! there. A few readings nvml-wrapper 0.13 does not wrap (field values with a scope,
//! the GPU-instance ID of a MIG device) go through its raw symbol table.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nvml_wrapper::bitmasks::event::EventTypes;
use nvml_wrapper::enum_wrappers::device::{Clock, EccCounter, MemoryError, TemperatureSensor};
use nvml_wrapper::enums::gpm::GpmMetricId;
use nvml_wrapper::error::{NvmlError, nvml_try};
use nvml_wrapper::gpm::{GpmSample, gpm_metrics_get};
use nvml_wrapper::sys_exports::field_id;
use nvml_wrapper::{Device, EventSet, Nvml};
use nvml_wrapper_sys::bindings as sys;
use parking_lot::Mutex;

use super::backend::{
    DeviceIdentity, EccCount, GpmMetric, GpmReadings, GpuBackend, GpuDevice, GpuProcess,
    MemoryInfo, MigInstance, PcieDirection, ProcessUtilization, RemappedRows, RetiredPages,
    XidWatch,
};
use super::error::{FieldError, Result};

/// NVML, loaded.
#[derive(Debug, Clone)]
pub struct NvmlBackend {
    nvml: Arc<Nvml>,
    gpm: Arc<GpmSamples>,
}

impl NvmlBackend {
    /// Loads the library and initialises NVML. Fails with `LibloadingError` (no
    /// `libnvidia-ml.so.1`), `DriverNotLoaded`, `NoPermission`, … on a host that
    /// cannot serve GPU metrics.
    pub fn init() -> std::result::Result<Self, NvmlError> {
        let nvml = Arc::new(Nvml::init()?);
        Ok(Self {
            gpm: Arc::new(GpmSamples {
                nvml: Arc::clone(&nvml),
                previous: Mutex::new(HashMap::new()),
            }),
            nvml,
        })
    }
}

/// GPM's metrics are differences between two samples: the previous sample of each GPU
/// (by UUID) and each MIG GPU instance (by GPU instance ID), with when it was taken.
/// The samples are NVML allocations, freed when replaced and when NVML goes.
struct GpmSamples {
    nvml: Arc<Nvml>,
    previous: Mutex<HashMap<GpmKey, (RawGpmSample, Instant)>>,
}

/// A GPU's UUID, and the MIG GPU instance for an instance's samples.
type GpmKey = (String, Option<u32>);

/// A sample's handle, owned by [`GpmSamples`].
struct RawGpmSample(sys::nvmlGpmSample_t);

// SAFETY: a GPM sample is a heap buffer NVML hands out; it is used from one thread at a
// time (under the `previous` mutex, or by the collector's one reading thread).
unsafe impl Send for RawGpmSample {}

impl std::fmt::Debug for GpmSamples {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GpmSamples")
            .field("held", &self.previous.lock().len())
            .finish()
    }
}

impl Drop for GpmSamples {
    fn drop(&mut self) {
        for (_, (sample, _)) in self.previous.get_mut().drain() {
            // SAFETY: the handle came from `into_handle` of a sample of this NVML and is
            // owned by the map alone; dropping the rebuilt sample frees it once.
            drop(unsafe { GpmSample::from_handle(&self.nvml, sample.0) });
        }
    }
}

/// GPM refreshes its counters every 100 ms; two samples closer than that read zeros.
const GPM_MIN_INTERVAL: Duration = Duration::from_millis(100);

fn gpm_metric_id(metric: GpmMetric) -> GpmMetricId {
    match metric {
        GpmMetric::GraphicsUtil => GpmMetricId::GraphicsUtil,
        GpmMetric::SmUtil => GpmMetricId::SmUtil,
        GpmMetric::SmOccupancy => GpmMetricId::SmOccupancy,
        GpmMetric::AnyTensorUtil => GpmMetricId::AnyTensorUtil,
        GpmMetric::DramBandwidthUtil => GpmMetricId::DramBwUtil,
        GpmMetric::Fp64Util => GpmMetricId::Fp64Util,
        GpmMetric::Fp32Util => GpmMetricId::Fp32Util,
        GpmMetric::Fp16Util => GpmMetricId::Fp16Util,
        GpmMetric::PcieTxMibPerSecond => GpmMetricId::PcieTxPerSec,
        GpmMetric::PcieRxMibPerSecond => GpmMetricId::PcieRxPerSec,
        GpmMetric::NvlinkTxMibPerSecond => GpmMetricId::NvlinkTotalTxPerSec,
        GpmMetric::NvlinkRxMibPerSecond => GpmMetricId::NvlinkTotalRxPerSec,
    }
}

fn field_error(e: NvmlError) -> FieldError {
    match e {
        NvmlError::NotSupported
        | NvmlError::FunctionNotFound
        | NvmlError::FailedToLoadSymbol(_) => FieldError::NotSupported,
        NvmlError::GpuLost => FieldError::GpuLost,
        other => FieldError::Driver(other.to_string()),
    }
}

trait OrField<T> {
    fn field(self) -> Result<T>;
}

impl<T> OrField<T> for std::result::Result<T, NvmlError> {
    fn field(self) -> Result<T> {
        self.map_err(field_error)
    }
}

/// `nvmlFieldValue_t.scopeId` meaning "all NVLinks summed".
const ALL_LINKS: u32 = u32::MAX;

struct NvmlDevice<'nvml> {
    nvml: &'nvml Nvml,
    device: Device<'nvml>,
    gpm: &'nvml GpmSamples,
}

impl NvmlDevice<'_> {
    /// One field value, read with `nvmlDeviceGetFieldValues`. The IDs used here are
    /// below 251, so the v12/v13U1 renumbering nvml-wrapper handles does not apply.
    fn field_value(&self, field: u32, scope: u32) -> Result<u64> {
        let sym = self
            .nvml
            .lib()
            .nvmlDeviceGetFieldValues
            .as_ref()
            .map_err(|_| FieldError::NotSupported)?;
        // SAFETY: nvmlFieldValue_t is a C struct of integers and a union of numbers, for
        // which all-zero bytes are a valid value.
        let mut value: sys::nvmlFieldValue_t = unsafe { std::mem::zeroed() };
        value.fieldId = field;
        value.scopeId = scope;
        // SAFETY: the handle is valid while `self.device` lives (it borrows `Nvml`), and
        // we pass a count of 1 with a pointer to one element.
        let code = unsafe { sym(self.device.handle(), 1, &mut value) };
        nvml_try(code).field()?;
        // A field ID this driver does not know is answered "invalid argument".
        match nvml_try(value.nvmlReturn) {
            Err(NvmlError::InvalidArg) => return Err(FieldError::NotSupported),
            other => other.field()?,
        }
        // SAFETY: `valueType` says which union member the driver wrote.
        let number = unsafe {
            match value.valueType {
                sys::nvmlValueType_enum_NVML_VALUE_TYPE_DOUBLE => value.value.dVal.max(0.0) as u64,
                sys::nvmlValueType_enum_NVML_VALUE_TYPE_UNSIGNED_INT => {
                    u64::from(value.value.uiVal)
                }
                sys::nvmlValueType_enum_NVML_VALUE_TYPE_UNSIGNED_LONG => value.value.ulVal,
                sys::nvmlValueType_enum_NVML_VALUE_TYPE_UNSIGNED_LONG_LONG => value.value.ullVal,
                sys::nvmlValueType_enum_NVML_VALUE_TYPE_SIGNED_LONG_LONG => {
                    u64::try_from(value.value.sllVal).unwrap_or(0)
                }
                sys::nvmlValueType_enum_NVML_VALUE_TYPE_SIGNED_INT => {
                    u64::try_from(value.value.siVal).unwrap_or(0)
                }
                sys::nvmlValueType_enum_NVML_VALUE_TYPE_UNSIGNED_SHORT => {
                    u64::from(value.value.usVal)
                }
                other => {
                    return Err(FieldError::Driver(format!("unknown value type {other}")));
                }
            }
        };
        Ok(number)
    }

    /// `nvmlDeviceGetGpuInstanceId`, which nvml-wrapper 0.13 does not wrap.
    fn gpu_instance_id(device: &Device<'_>, nvml: &Nvml) -> Result<u32> {
        let sym = nvml
            .lib()
            .nvmlDeviceGetGpuInstanceId
            .as_ref()
            .map_err(|_| FieldError::NotSupported)?;
        let mut id: std::os::raw::c_uint = 0;
        // SAFETY: a valid MIG device handle and a pointer to a live c_uint.
        let code = unsafe { sym(device.handle(), &mut id) };
        nvml_try(code).field()?;
        Ok(id)
    }
}

/// Adds MIG device `mig` (one compute instance) to the GPU instance it belongs to.
fn mig_device(mig: &Device<'_>, nvml: &Nvml, instances: &mut Vec<MigInstance>) -> Result<()> {
    // One MIG device per compute instance: the GPU instance is what DCGM reports, once
    // however many compute instances split it.
    let gpu_instance_id = NvmlDevice::gpu_instance_id(mig, nvml)?;
    let uuid = mig.uuid().field()?;
    if let Some(known) = instances
        .iter_mut()
        .find(|i| i.gpu_instance_id == gpu_instance_id)
    {
        known.device_uuids.push(uuid);
        return Ok(());
    }
    // The instance's slices and memory, as its profile gives them; from the device's
    // name (`… MIG 1c.3g.40gb`) where the driver does not say.
    let (slices, memory_size_mib) = match mig.attributes() {
        Ok(a) => (a.gpu_instance_slice_count, a.memory_size_mb),
        Err(_) => profile_from_name(&mig.name().field()?)
            .ok_or_else(|| FieldError::Driver("MIG profile unknown".into()))?,
    };
    instances.push(MigInstance {
        gpu_instance_id,
        slices,
        memory_size_mib,
        device_uuids: vec![uuid],
        memory: memory_of(mig),
    });
    Ok(())
}

/// Slices and memory (MiB) of a MIG device's GPU instance from the device's name:
/// `NVIDIA A100-SXM4-40GB MIG 1g.5gb` → (1, 5120); a compute instance's name carries
/// its own slices first (`MIG 1c.3g.20gb` → 3 slices).
fn profile_from_name(name: &str) -> Option<(u32, u64)> {
    let (_, profile) = name.rsplit_once("MIG ")?;
    let gpu_part = profile.trim().rsplit('.').nth(1)?;
    let memory_part = profile.trim().rsplit('.').next()?;
    let slices = gpu_part.strip_suffix('g')?.parse().ok()?;
    let gib: u64 = memory_part.strip_suffix("gb")?.parse().ok()?;
    Some((slices, gib * 1024))
}

fn memory_of(device: &Device<'_>) -> Result<MemoryInfo> {
    let m = device.memory_info().field()?;
    Ok(MemoryInfo {
        total: m.total,
        used: m.used,
        free: m.free,
        reserved: m.reserved,
    })
}

impl GpuDevice for NvmlDevice<'_> {
    fn identity(&self) -> Result<DeviceIdentity> {
        Ok(DeviceIdentity {
            index: self.device.index().field()?,
            uuid: self.device.uuid().field()?,
            name: self.device.name().field()?,
            minor_number: self.device.minor_number().field()?,
            pci_bus_id: self.device.pci_info().field()?.bus_id,
        })
    }
    fn sm_clock_mhz(&self) -> Result<u32> {
        self.device.clock_info(Clock::SM).field()
    }
    fn memory_clock_mhz(&self) -> Result<u32> {
        self.device.clock_info(Clock::Memory).field()
    }
    fn gpu_temperature_celsius(&self) -> Result<u32> {
        self.device.temperature(TemperatureSensor::Gpu).field()
    }
    fn memory_temperature_celsius(&self) -> Result<u32> {
        // Cards without an HBM sensor report 0 rather than NOT_SUPPORTED; DCGM (and so
        // dcgm-exporter) reports that 0, and so does ODIN.
        let value = self.field_value(field_id::NVML_FI_DEV_MEMORY_TEMP, 0)?;
        Ok(u32::try_from(value).unwrap_or(u32::MAX))
    }
    fn power_usage_milliwatts(&self) -> Result<u32> {
        self.device.power_usage().field()
    }
    fn power_limit_milliwatts(&self) -> Result<u32> {
        self.device.power_management_limit().field()
    }
    fn total_energy_millijoules(&self) -> Result<u64> {
        self.device.total_energy_consumption().field()
    }
    fn pcie_bytes_total(&self, direction: PcieDirection) -> Result<u64> {
        let id = match direction {
            PcieDirection::Tx => field_id::NVML_FI_DEV_PCIE_COUNT_TX_BYTES,
            PcieDirection::Rx => field_id::NVML_FI_DEV_PCIE_COUNT_RX_BYTES,
        };
        self.field_value(id, 0)
    }
    fn pcie_replay_count(&self) -> Result<u64> {
        self.device.pcie_replay_counter().field().map(u64::from)
    }
    fn gpu_utilization_percent(&self) -> Result<u32> {
        self.device.utilization_rates().field().map(|u| u.gpu)
    }
    fn memory_copy_utilization_percent(&self) -> Result<u32> {
        self.device.utilization_rates().field().map(|u| u.memory)
    }
    fn encoder_utilization_percent(&self) -> Result<u32> {
        self.device
            .encoder_utilization()
            .field()
            .map(|u| u.utilization)
    }
    fn decoder_utilization_percent(&self) -> Result<u32> {
        self.device
            .decoder_utilization()
            .field()
            .map(|u| u.utilization)
    }
    fn memory_info(&self) -> Result<MemoryInfo> {
        memory_of(&self.device)
    }
    fn ecc_errors(&self, count: EccCount) -> Result<u64> {
        let (error, counter) = match count {
            EccCount::SingleBitVolatile => (MemoryError::Corrected, EccCounter::Volatile),
            EccCount::DoubleBitVolatile => (MemoryError::Uncorrected, EccCounter::Volatile),
            EccCount::SingleBitAggregate => (MemoryError::Corrected, EccCounter::Aggregate),
            EccCount::DoubleBitAggregate => (MemoryError::Uncorrected, EccCounter::Aggregate),
        };
        self.device.total_ecc_errors(error, counter).field()
    }
    fn retired_pages(&self, kind: RetiredPages) -> Result<u64> {
        let id = match kind {
            RetiredPages::SingleBit => field_id::NVML_FI_DEV_RETIRED_SBE,
            RetiredPages::DoubleBit => field_id::NVML_FI_DEV_RETIRED_DBE,
            RetiredPages::Pending => field_id::NVML_FI_DEV_RETIRED_PENDING,
        };
        self.field_value(id, 0)
    }
    fn remapped_rows(&self, kind: RemappedRows) -> Result<u64> {
        let id = match kind {
            RemappedRows::Correctable => field_id::NVML_FI_DEV_REMAPPED_COR,
            RemappedRows::Uncorrectable => field_id::NVML_FI_DEV_REMAPPED_UNC,
            RemappedRows::Failure => field_id::NVML_FI_DEV_REMAPPED_FAILURE,
        };
        self.field_value(id, 0)
    }
    fn clock_throttle_reasons(&self) -> Result<u64> {
        self.device
            .current_throttle_reasons()
            .field()
            .map(|r| r.bits())
    }
    fn nvlink_bandwidth_total_kib(&self) -> Result<u64> {
        let links = self.field_value(field_id::NVML_FI_DEV_NVLINK_LINK_COUNT, 0)?;
        if links == 0 {
            return Err(FieldError::NotSupported);
        }
        let tx = self.field_value(field_id::NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, ALL_LINKS)?;
        let rx = self.field_value(field_id::NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, ALL_LINKS)?;
        Ok(tx.saturating_add(rx))
    }
    fn gpm(&self, gpu_instance: Option<u32>) -> Result<GpmReadings> {
        if !self.device.gpm_support().field()? {
            return Err(FieldError::NotSupported);
        }
        let current = match gpu_instance {
            None => self.device.gpm_sample(),
            Some(id) => self.device.gpm_mig_sample(id),
        }
        .field()?;
        let now = Instant::now();
        let key = (self.device.uuid().field()?, gpu_instance);
        let mut previous = self.gpm.previous.lock();
        let earlier = match previous.remove(&key) {
            Some((sample, taken)) if now.duration_since(taken) < GPM_MIN_INTERVAL => {
                // Too close to the held sample to measure anything: keep that one.
                previous.insert(key, (sample, taken));
                return Ok(Vec::new());
            }
            // SAFETY: the handle came from `into_handle` of a sample of this NVML and
            // was just taken out of the map, so this is its only owner.
            Some((sample, _)) => Some(unsafe { GpmSample::from_handle(self.nvml, sample.0) }),
            None => None,
        };
        let readings = match &earlier {
            None => Ok(Vec::new()),
            Some(earlier) => {
                let ids: Vec<GpmMetricId> =
                    GpmMetric::ALL.iter().map(|&m| gpm_metric_id(m)).collect();
                gpm_metrics_get(self.nvml, earlier, &current, &ids)
                    .field()
                    .map(|results| {
                        GpmMetric::ALL
                            .iter()
                            .zip(results)
                            // A metric this GPU does not measure fails alone.
                            .filter_map(|(&metric, result)| Some((metric, result.ok()?.value)))
                            .filter(|(_, value)| value.is_finite())
                            .collect()
                    })
            }
        };
        previous.insert(key, (RawGpmSample(current.into_handle()), now));
        readings
    }
    fn mig_instances(&self) -> Result<Vec<MigInstance>> {
        match self.device.mig_mode() {
            Ok(mode) if mode.current == sys::NVML_DEVICE_MIG_ENABLE => {}
            Ok(_) | Err(NvmlError::NotSupported) | Err(NvmlError::FunctionNotFound) => {
                return Ok(Vec::new());
            }
            Err(e) => return Err(field_error(e)),
        }
        let slots = self.device.mig_device_count().field()?;
        let mut instances: Vec<MigInstance> = Vec::new();
        let mut unreadable: Option<FieldError> = None;
        for slot in 0..slots {
            let mig = match self.device.mig_device_by_index(slot) {
                Ok(mig) => mig,
                // An empty slot.
                Err(NvmlError::NotFound) | Err(NvmlError::InvalidArg) => continue,
                Err(e) => {
                    unreadable.get_or_insert(field_error(e));
                    continue;
                }
            };
            match mig_device(&mig, self.nvml, &mut instances) {
                Ok(()) => {}
                Err(FieldError::GpuLost) => return Err(FieldError::GpuLost),
                // One unreadable MIG device leaves out its instance, not the others.
                Err(e) => {
                    tracing::debug!(slot, error = ?e, "a MIG device could not be read");
                    unreadable.get_or_insert(e);
                }
            }
        }
        match unreadable {
            // MIG is on but nothing could be read: an error, so that the GPU is not
            // taken for a whole one.
            Some(e) if instances.is_empty() => Err(e),
            _ => Ok(instances),
        }
    }
    fn processes(&self) -> Result<Vec<GpuProcess>> {
        let compute = self.device.running_compute_processes().field()?;
        let graphics = match self.device.running_graphics_processes() {
            Ok(list) => list,
            Err(NvmlError::NotSupported) => Vec::new(),
            Err(e) => return Err(field_error(e)),
        };
        let mut out: Vec<GpuProcess> = Vec::new();
        for p in compute.into_iter().chain(graphics) {
            let used = match p.used_gpu_memory {
                nvml_wrapper::enums::device::UsedGpuMemory::Used(bytes) => Some(bytes),
                nvml_wrapper::enums::device::UsedGpuMemory::Unavailable => None,
            };
            // A process with both a compute and a graphics context is listed twice.
            if let Some(seen) = out
                .iter_mut()
                .find(|q| q.pid == p.pid && q.gpu_instance_id == p.gpu_instance_id)
            {
                seen.used_memory_bytes = seen.used_memory_bytes.max(used);
                continue;
            }
            out.push(GpuProcess {
                pid: p.pid,
                used_memory_bytes: used,
                gpu_instance_id: p.gpu_instance_id,
            });
        }
        Ok(out)
    }
    fn process_utilization(&self, since_us: u64) -> Result<Vec<ProcessUtilization>> {
        match self.device.process_utilization_stats(since_us) {
            Ok(samples) => Ok(samples
                .into_iter()
                .map(|s| ProcessUtilization {
                    pid: s.pid,
                    timestamp_us: s.timestamp,
                    sm_percent: s.sm_util,
                    memory_percent: s.mem_util,
                })
                .collect()),
            // No sample newer than `since_us`.
            Err(NvmlError::NotFound) => Ok(Vec::new()),
            Err(e) => Err(field_error(e)),
        }
    }
}

impl GpuBackend for NvmlBackend {
    fn driver_version(&self) -> Result<String> {
        self.nvml.sys_driver_version().field()
    }
    fn device_count(&self) -> Result<u32> {
        self.nvml.device_count().field()
    }
    fn device(&self, index: u32) -> Result<Box<dyn GpuDevice + '_>> {
        let device = self.nvml.device_by_index(index).field()?;
        Ok(Box::new(NvmlDevice {
            nvml: &self.nvml,
            device,
            gpm: &self.gpm,
        }))
    }
    fn spawn_xid_watcher(&self, watch: XidWatch) -> Option<JoinHandle<()>> {
        let nvml = Arc::clone(&self.nvml);
        let spawned = std::thread::Builder::new()
            .name("odin-gpu-xid".into())
            .spawn(move || watch_xids(&nvml, &watch));
        match spawned {
            Ok(handle) => Some(handle),
            Err(error) => {
                tracing::warn!(%error, "gpu collector: cannot start the xid watcher thread");
                None
            }
        }
    }
}

/// How long one `EventSet::wait` blocks; bounds how long stopping takes.
const XID_WAIT_MS: u32 = 1000;

/// Registers every GPU that supports critical-XID events and records each event until
/// told to stop. Runs on its own thread: `EventSet::wait` blocks.
fn watch_xids(nvml: &Nvml, watch: &XidWatch) {
    let Some(set) = xid_event_set(nvml) else {
        return;
    };
    let mut warned = false;
    while !watch.stop.load(Ordering::Relaxed) {
        match wait_for_xid(nvml, &set, XID_WAIT_MS) {
            Ok(Some(event)) => {
                tracing::warn!(uuid = %event.uuid, xid = event.xid, gpu_instance = ?event.gpu_instance,
                    "gpu reported a critical xid error");
                watch
                    .table
                    .record(&event.uuid, event.gpu_instance, event.xid);
            }
            Ok(None) | Err(NvmlError::Timeout) => {}
            Err(error) => {
                if !warned {
                    tracing::warn!(%error, "gpu collector: waiting for xid events failed");
                    warned = true;
                }
                std::thread::sleep(Duration::from_millis(u64::from(XID_WAIT_MS)));
            }
        }
    }
}

/// A critical XID event, with the MIG GPU instance the driver filed it under.
struct XidEvent {
    uuid: String,
    gpu_instance: Option<u32>,
    xid: u64,
}

/// `nvmlEventData_t.gpuInstanceId` when the event concerns no MIG instance.
const NO_INSTANCE: u32 = u32::MAX;

/// Waits for one event with `nvmlEventSetWait_v2`, which nvml-wrapper's `wait` calls
/// too but without handing back the GPU-instance ID. `Ok(None)`: an event that is no
/// XID the collector reports.
fn wait_for_xid(
    nvml: &Nvml,
    set: &EventSet<'_>,
    timeout_ms: u32,
) -> std::result::Result<Option<XidEvent>, NvmlError> {
    let sym = nvml
        .lib()
        .nvmlEventSetWait_v2
        .as_ref()
        .map_err(|_| NvmlError::FunctionNotFound)?;
    // SAFETY: nvmlEventData_t is a C struct of a pointer and integers; all-zero bytes
    // are a valid value for it.
    let mut data: sys::nvmlEventData_t = unsafe { std::mem::zeroed() };
    // SAFETY: the set's handle is valid while `set` lives, and `data` is a live,
    // writable nvmlEventData_t.
    nvml_try(unsafe { sym(set.handle(), &mut data, timeout_ms) })?;
    // XID 999 ("the driver could not say which") is recorded as such, as DCGM does.
    if data.eventType & EventTypes::CRITICAL_XID_ERROR.bits() == 0 {
        return Ok(None);
    }
    // SAFETY: the driver filled `device` with the handle of a device registered in
    // the set, valid while NVML is loaded; the `Device` does not outlive this call.
    let device = unsafe { Device::new(data.device, nvml) };
    let uuid = match device.uuid() {
        Ok(uuid) => uuid,
        Err(error) => {
            tracing::debug!(%error, xid = data.eventData, "xid event for an unnamed gpu");
            return Ok(None);
        }
    };
    Ok(Some(XidEvent {
        uuid,
        gpu_instance: (data.gpuInstanceId != NO_INSTANCE).then_some(data.gpuInstanceId),
        xid: data.eventData,
    }))
}

fn xid_event_set(nvml: &Nvml) -> Option<EventSet<'_>> {
    let count = nvml.device_count().ok()?;
    let mut registered: Vec<u32> = Vec::new();
    let mut set = nvml.create_event_set().ok()?;
    for index in 0..count {
        let Ok(device) = nvml.device_by_index(index) else {
            continue;
        };
        let supported = device
            .supported_event_types()
            .map(|t| t.contains(EventTypes::CRITICAL_XID_ERROR))
            .unwrap_or(false);
        if !supported {
            continue;
        }
        match device.register_events(EventTypes::CRITICAL_XID_ERROR, set) {
            Ok(s) => {
                set = s;
                registered.push(index);
            }
            Err(error) => {
                tracing::warn!(gpu = index, error = %error.error, "gpu collector: cannot watch xid events");
                // nvml-wrapper consumes the set on failure: build it again.
                set = rebuild_event_set(nvml, &registered)?;
            }
        }
    }
    if registered.is_empty() {
        tracing::info!("gpu collector: no gpu supports xid events; DCGM_FI_DEV_XID_ERRORS stays 0");
        return None;
    }
    Some(set)
}

fn rebuild_event_set<'n>(nvml: &'n Nvml, indices: &[u32]) -> Option<EventSet<'n>> {
    let mut set = nvml.create_event_set().ok()?;
    for &index in indices {
        let device = nvml.device_by_index(index).ok()?;
        set = device
            .register_events(EventTypes::CRITICAL_XID_ERROR, set)
            .ok()?;
    }
    Some(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mig_profile_falls_back_to_the_mig_device_name() {
        assert_eq!(
            profile_from_name("NVIDIA A100-SXM4-40GB MIG 1g.5gb"),
            Some((1, 5120))
        );
        assert_eq!(
            profile_from_name("NVIDIA H100 80GB HBM3 MIG 3g.40gb"),
            Some((3, 40 * 1024))
        );
        assert_eq!(
            profile_from_name("NVIDIA H100 80GB HBM3 MIG 1c.3g.40gb"),
            Some((3, 40 * 1024))
        );
        assert_eq!(profile_from_name("odd"), None);
        assert_eq!(profile_from_name("x MIG g.gb"), None);
    }

    #[test]
    fn gpu_lost_and_not_supported_are_told_apart() {
        assert_eq!(field_error(NvmlError::GpuLost), FieldError::GpuLost);
        assert_eq!(
            field_error(NvmlError::NotSupported),
            FieldError::NotSupported
        );
        assert!(matches!(
            field_error(NvmlError::NoPermission),
            FieldError::Driver(_)
        ));
    }
}
