//! The collector on simulated GPUs: names, labels, units, failures, MIG, XID.

use std::sync::Arc;

use super::backend::{
    EccCount, Field, GpmMetric, GpuProcess, MemoryInfo, MigInstance, ProcessUtilization,
};
use super::error::FieldError;
use super::sim::{SimulatedBackend, SimulatedGpu};
use super::{GpuCollector, GpuCollectorConfig};
use crate::exposition::family::{FamilySample as Sample, MetricFamily, MetricType};

fn config() -> GpuCollectorConfig {
    GpuCollectorConfig {
        hostname: Some("gpu-node-1".into()),
        // A directory without pids: process labels come out empty.
        proc_root: std::env::temp_dir().join("odin-gpu-tests-no-proc"),
        host_root: std::env::temp_dir().join("odin-gpu-tests-no-host"),
        // Not this machine's kubelet or container runtime.
        pod_resources_socket: None,
        cri_socket: Some(std::path::PathBuf::new()),
        ..GpuCollectorConfig::default()
    }
}

fn start(gpus: Vec<SimulatedGpu>) -> (Arc<SimulatedBackend>, GpuCollector) {
    let backend = Arc::new(SimulatedBackend::new(gpus));
    let collector = GpuCollector::with_backend(backend.clone(), config());
    (backend, collector)
}

fn family<'a>(families: &'a [MetricFamily], name: &str) -> Option<&'a MetricFamily> {
    families.iter().find(|f| f.name == name)
}

fn label<'a>(labels: &'a [(String, String)], name: &str) -> Option<&'a str> {
    labels
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// dcgm-exporter's labels of a whole GPU's series, in its order.
const GPU_LABELS: [&str; 7] = [
    "gpu",
    "UUID",
    "pci_bus_id",
    "device",
    "modelName",
    "Hostname",
    "DCGM_FI_DRIVER_VERSION",
];

/// The label names of a series, in its order.
fn label_names(labels: &[(String, String)]) -> Vec<&str> {
    labels.iter().map(|(k, _)| k.as_str()).collect()
}

/// The value of `name` for GPU `gpu` without MIG labels.
fn value(families: &[MetricFamily], name: &str, gpu: &str) -> Option<f64> {
    family(families, name)?
        .samples
        .iter()
        .find(|s| label(&s.labels, "gpu") == Some(gpu) && label(&s.labels, "GPU_I_ID").is_none())
        .map(|s| s.value)
}

#[test]
fn default_families_have_dcgm_names_types_and_help() {
    let (_, collector) = start(vec![SimulatedGpu::h100(0)]);
    let families = collector.collect();
    for (name, kind) in [
        ("DCGM_FI_DEV_SM_CLOCK", MetricType::Gauge),
        ("DCGM_FI_DEV_MEM_CLOCK", MetricType::Gauge),
        ("DCGM_FI_DEV_MEMORY_TEMP", MetricType::Gauge),
        ("DCGM_FI_DEV_GPU_TEMP", MetricType::Gauge),
        ("DCGM_FI_DEV_POWER_USAGE", MetricType::Gauge),
        ("DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", MetricType::Counter),
        ("DCGM_FI_DEV_PCIE_REPLAY_COUNTER", MetricType::Counter),
        ("DCGM_FI_DEV_GPU_UTIL", MetricType::Gauge),
        ("DCGM_FI_DEV_MEM_COPY_UTIL", MetricType::Gauge),
        ("DCGM_FI_DEV_ENC_UTIL", MetricType::Gauge),
        ("DCGM_FI_DEV_DEC_UTIL", MetricType::Gauge),
        ("DCGM_FI_DEV_XID_ERRORS", MetricType::Gauge),
        ("DCGM_FI_DEV_FB_FREE", MetricType::Gauge),
        ("DCGM_FI_DEV_FB_USED", MetricType::Gauge),
        ("DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", MetricType::Counter),
        ("DCGM_FI_DEV_ECC_DBE_VOL_TOTAL", MetricType::Counter),
        ("DCGM_FI_DEV_ECC_SBE_AGG_TOTAL", MetricType::Counter),
        ("DCGM_FI_DEV_ECC_DBE_AGG_TOTAL", MetricType::Counter),
        ("DCGM_FI_DEV_RETIRED_SBE", MetricType::Counter),
        ("DCGM_FI_DEV_RETIRED_DBE", MetricType::Counter),
        ("DCGM_FI_DEV_RETIRED_PENDING", MetricType::Counter),
        ("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", MetricType::Counter),
        (
            "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
            MetricType::Counter,
        ),
        ("DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS", MetricType::Counter),
        ("DCGM_FI_DEV_ROW_REMAP_FAILURE", MetricType::Gauge),
        ("DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", MetricType::Gauge),
        ("DCGM_FI_DEV_POWER_MGMT_LIMIT", MetricType::Gauge),
    ] {
        let f = family(&families, name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(f.kind, kind, "{name}");
        assert_eq!(f.samples.len(), 1, "{name}");
        assert_eq!(f.samples[0].name, name);
        assert!(!f.help.is_empty());
    }
    assert_eq!(
        family(&families, "DCGM_FI_DEV_GPU_TEMP").unwrap().help,
        "GPU temperature (in C)."
    );
    // GPM has no interval on its first read, and a GPU with GPM does not fall back
    // to the PCIe byte counters: no profiling series yet.
    assert!(family(&families, "DCGM_FI_PROF_PCIE_TX_BYTES").is_none());
    assert!(family(&families, "DCGM_FI_PROF_GR_ENGINE_ACTIVE").is_none());
    // No errors, no lost GPU: no self-metrics.
    assert!(family(&families, "odin_gpu_collector_errors_total").is_none());
    assert!(family(&families, "odin_gpu_device_lost").is_none());
}

#[test]
fn every_gpu_series_has_dcgm_exporter_labels_in_its_order() {
    let (_, collector) = start(vec![SimulatedGpu::h100(0), SimulatedGpu::h100(1)]);
    let families = collector.collect();
    let temp = family(&families, "DCGM_FI_DEV_GPU_TEMP").unwrap();
    assert_eq!(temp.samples.len(), 2);
    let labels = &temp.samples[1].labels;
    assert_eq!(label_names(labels), GPU_LABELS);
    assert_eq!(label(labels, "gpu"), Some("1"));
    assert_eq!(
        label(labels, "UUID"),
        Some("GPU-5f0b7c4e-1d2a-4b3c-8e9f-000000000001")
    );
    assert_eq!(label(labels, "pci_bus_id"), Some("00000000:19:00.0"));
    assert_eq!(label(labels, "device"), Some("nvidia1"));
    assert_eq!(label(labels, "modelName"), Some("NVIDIA H100 80GB HBM3"));
    assert_eq!(label(labels, "Hostname"), Some("gpu-node-1"));
    assert_eq!(label(labels, "DCGM_FI_DRIVER_VERSION"), Some("550.54.15"));
}

#[test]
fn driver_version_label_can_be_turned_off() {
    let backend = Arc::new(SimulatedBackend::new(vec![SimulatedGpu::h100(0)]));
    let collector = GpuCollector::with_backend(
        backend,
        GpuCollectorConfig {
            driver_version_label: false,
            ..config()
        },
    );
    let families = collector.collect();
    let labels = &family(&families, "DCGM_FI_DEV_SM_CLOCK").unwrap().samples[0].labels;
    assert_eq!(label(labels, "DCGM_FI_DRIVER_VERSION"), None);
}

#[test]
fn values_are_converted_to_dcgm_units() {
    let mut gpu = SimulatedGpu::h100(0);
    gpu.power_usage_milliwatts = 312_500;
    gpu.power_limit_milliwatts = 700_000;
    gpu.memory = MemoryInfo {
        total: 80 << 30,
        used: (1536 << 20) + 123,
        free: (80 << 30) - (1536 << 20) - 123,
        reserved: 0,
    };
    gpu.total_energy_millijoules = 9_000_000_000;
    gpu.gpu_utilization_percent = 87;
    gpu.ecc.insert(EccCount::DoubleBitAggregate, 3);
    gpu.clock_throttle_reasons = 0x4 | 0x20;
    let (_, collector) = start(vec![gpu]);
    let families = collector.collect();
    assert_eq!(
        value(&families, "DCGM_FI_DEV_POWER_USAGE", "0"),
        Some(312.5)
    );
    assert_eq!(
        value(&families, "DCGM_FI_DEV_POWER_MGMT_LIMIT", "0"),
        Some(700.0)
    );
    // Whole MiB, as DCGM.
    assert_eq!(value(&families, "DCGM_FI_DEV_FB_USED", "0"), Some(1536.0));
    assert_eq!(
        value(&families, "DCGM_FI_DEV_FB_FREE", "0"),
        Some((80 * 1024 - 1536 - 1) as f64)
    );
    assert_eq!(
        value(&families, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION", "0"),
        Some(9e9)
    );
    assert_eq!(value(&families, "DCGM_FI_DEV_GPU_UTIL", "0"), Some(87.0));
    assert_eq!(value(&families, "DCGM_FI_DEV_SM_CLOCK", "0"), Some(1980.0));
    assert_eq!(value(&families, "DCGM_FI_DEV_GPU_TEMP", "0"), Some(34.0));
    assert_eq!(
        value(&families, "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL", "0"),
        Some(3.0)
    );
    assert_eq!(
        value(&families, "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL", "0"),
        Some(0.0)
    );
    assert_eq!(
        value(&families, "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS", "0"),
        Some(36.0)
    );
    // A rate, as DCGM reports it: nothing to compare with on the first read.
    assert_eq!(
        value(&families, "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "0"),
        Some(0.0)
    );
}

#[test]
fn nvlink_bandwidth_is_a_rate_in_mb_per_second() {
    let (backend, collector) = start(vec![SimulatedGpu::h100(0)]);
    let started = std::time::Instant::now();
    collector.collect();
    std::thread::sleep(std::time::Duration::from_millis(50));
    // 1,000,000 KiB more since the first read.
    backend.update(0, |gpu| {
        gpu.nvlink_bandwidth_total_kib = gpu.nvlink_bandwidth_total_kib.map(|k| k + 1_000_000);
    });
    let families = collector.collect();
    let elapsed = started.elapsed().as_secs_f64();
    let rate = value(&families, "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "0").unwrap();
    let mb = 1_000_000.0 * 1024.0 / 1e6;
    assert!(
        rate >= mb / elapsed && rate <= mb / 0.05,
        "{rate} MB/s for {mb} MB in at most {elapsed} s"
    );
    // A counter that went back (a driver reload) is no traffic, not a negative rate.
    backend.update(0, |gpu| gpu.nvlink_bandwidth_total_kib = Some(1));
    let families = collector.collect();
    assert_eq!(
        value(&families, "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", "0"),
        Some(0.0)
    );
}

#[test]
fn a_field_error_omits_only_that_series_and_is_counted() {
    let mut gpu = SimulatedGpu::h100(0);
    gpu.failures.insert(
        Field::PowerUsage,
        FieldError::Driver("insufficient permissions".into()),
    );
    let (_, collector) = start(vec![gpu, SimulatedGpu::h100(1)]);
    let families = collector.collect();
    assert_eq!(value(&families, "DCGM_FI_DEV_POWER_USAGE", "0"), None);
    assert_eq!(
        value(&families, "DCGM_FI_DEV_POWER_USAGE", "1"),
        Some(71.234)
    );
    assert_eq!(value(&families, "DCGM_FI_DEV_GPU_TEMP", "0"), Some(34.0));
    let errors = family(&families, "odin_gpu_collector_errors_total").unwrap();
    assert_eq!(errors.kind, MetricType::Counter);
    assert_eq!(errors.samples.len(), 1);
    assert_eq!(
        label(&errors.samples[0].labels, "field"),
        Some("DCGM_FI_DEV_POWER_USAGE")
    );
    assert_eq!(errors.samples[0].value, 1.0);
    // The counter accumulates across collections.
    let families = collector.collect();
    let errors = family(&families, "odin_gpu_collector_errors_total").unwrap();
    assert_eq!(errors.samples[0].value, 2.0);
}

#[test]
fn an_unsupported_field_is_left_out_without_counting() {
    let mut gpu = SimulatedGpu::h100(0);
    gpu.failures
        .insert(Field::MemoryTemperature, FieldError::NotSupported);
    gpu.nvlink_bandwidth_total_kib = None;
    let (_, collector) = start(vec![gpu]);
    let families = collector.collect();
    assert!(family(&families, "DCGM_FI_DEV_MEMORY_TEMP").is_none());
    assert!(family(&families, "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL").is_none());
    assert!(family(&families, "odin_gpu_collector_errors_total").is_none());
}

#[test]
fn a_lost_gpu_stops_its_series_and_the_others_keep_reporting() {
    let (backend, collector) = start(vec![SimulatedGpu::h100(0), SimulatedGpu::h100(1)]);
    let before = collector.collect();
    assert_eq!(
        family(&before, "DCGM_FI_DEV_GPU_TEMP")
            .unwrap()
            .samples
            .len(),
        2
    );

    // Lost half-way through a read: nothing of GPU 0 in this collection.
    backend.update(0, |gpu| {
        gpu.failures.insert(Field::PowerUsage, FieldError::GpuLost);
    });
    let families = collector.collect();
    for f in &families {
        if f.name.starts_with("DCGM_") {
            assert!(
                f.samples
                    .iter()
                    .all(|s| label(&s.labels, "gpu") == Some("1")),
                "{} still has GPU 0",
                f.name
            );
        }
    }
    assert_eq!(value(&families, "DCGM_FI_DEV_GPU_TEMP", "1"), Some(34.0));
    let lost = family(&families, "odin_gpu_device_lost").unwrap();
    assert_eq!(lost.samples.len(), 1);
    assert_eq!(label(&lost.samples[0].labels, "gpu"), Some("0"));

    // Entirely gone afterwards, even its identity: still named by its last identity.
    backend.update(0, |gpu| gpu.lost = true);
    let families = collector.collect();
    assert_eq!(
        family(&families, "DCGM_FI_DEV_GPU_TEMP")
            .unwrap()
            .samples
            .len(),
        1
    );
    assert_eq!(
        family(&families, "odin_gpu_device_lost")
            .unwrap()
            .samples
            .len(),
        1
    );
    assert!(family(&families, "odin_gpu_collector_errors_total").is_none());
}

const GPU0: &str = "GPU-5f0b7c4e-1d2a-4b3c-8e9f-000000000000";

/// An H100 split into a 3-slice GPU instance (two compute instances) and a 1-slice one
/// whose memory cannot be read.
fn mig_h100() -> SimulatedGpu {
    let mut gpu = SimulatedGpu::h100(0);
    gpu.mig = vec![
        MigInstance {
            gpu_instance_id: 1,
            slices: 3,
            // 39.25 GiB: DCGM rounds up.
            memory_size_mib: 40_192,
            device_uuids: vec!["MIG-aaaa".into(), "MIG-aaab".into()],
            memory: Ok(MemoryInfo {
                total: 40 << 30,
                used: 10 << 30,
                free: 30 << 30,
                reserved: 0,
            }),
        },
        MigInstance {
            gpu_instance_id: 2,
            slices: 1,
            memory_size_mib: 9_856,
            device_uuids: vec!["MIG-bbbb".into()],
            memory: Err(FieldError::Driver("unknown".into())),
        },
    ];
    gpu.gpu_utilization_percent = 55;
    gpu.mig_gpm.insert(1, vec![(GpmMetric::GraphicsUtil, 40.0)]);
    gpu.mig_gpm.insert(2, vec![(GpmMetric::GraphicsUtil, 5.0)]);
    gpu
}

fn of_instance<'a>(family: &'a MetricFamily, gpu_instance: &str) -> Vec<&'a Sample> {
    family
        .samples
        .iter()
        .filter(|s| label(&s.labels, "GPU_I_ID") == Some(gpu_instance))
        .collect()
}

#[test]
fn a_mig_gpu_is_reported_as_its_gpu_instances_as_dcgm_exporter_does() {
    let mut gpu = mig_h100();
    gpu.processes = vec![GpuProcess {
        pid: 4242,
        used_memory_bytes: Some(2 << 30),
        gpu_instance_id: Some(1),
    }];
    let (_, collector) = start(vec![gpu]);
    let families = collector.collect();

    // The GPU's readings, once per GPU instance and never for the GPU itself.
    let temp = family(&families, "DCGM_FI_DEV_GPU_TEMP").unwrap();
    assert_eq!(temp.samples.len(), 2);
    assert_eq!(value(&families, "DCGM_FI_DEV_GPU_TEMP", "0"), None);
    for gi in ["1", "2"] {
        assert_eq!(of_instance(temp, gi)[0].value, 34.0, "GPU instance {gi}");
    }
    // Engine utilizations DCGM leaves blank on MIG: no series.
    for name in [
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_MEM_COPY_UTIL",
        "DCGM_FI_DEV_ENC_UTIL",
        "DCGM_FI_DEV_DEC_UTIL",
    ] {
        assert!(family(&families, name).is_none(), "{name}");
    }

    // One GPU instance split in two compute instances is one set of series, with the
    // profile DCGM builds: <slices>g.<GiB rounded up>gb.
    let used = family(&families, "DCGM_FI_DEV_FB_USED").unwrap();
    assert_eq!(used.samples.len(), 1, "instance 2's memory is unreadable");
    let mig = of_instance(used, "1")[0];
    assert_eq!(mig.value, 10.0 * 1024.0);
    let mut expected = GPU_LABELS.to_vec();
    expected.splice(5..5, ["GPU_I_PROFILE", "GPU_I_ID"]);
    assert_eq!(label_names(&mig.labels), expected);
    assert_eq!(label(&mig.labels, "GPU_I_PROFILE"), Some("3g.40gb"));
    assert_eq!(
        label(&of_instance(temp, "2")[0].labels, "GPU_I_PROFILE"),
        Some("1g.10gb")
    );
    // The parent's UUID, as dcgm-exporter.
    assert_eq!(label(&mig.labels, "UUID"), Some(GPU0));

    // Profiling per GPU instance, from GPM's per-instance samples.
    let active = family(&families, "DCGM_FI_PROF_GR_ENGINE_ACTIVE").unwrap();
    assert_eq!(of_instance(active, "1")[0].value, 0.4);
    assert_eq!(of_instance(active, "2")[0].value, 0.05);

    // The failed instance is counted.
    let errors = family(&families, "odin_gpu_collector_errors_total").unwrap();
    assert_eq!(
        label(&errors.samples[0].labels, "field"),
        Some("DCGM_FI_DEV_FB_USED")
    );
    // Processes carry their instance.
    let process = &family(&families, "odin_gpu_process_memory_used_bytes")
        .unwrap()
        .samples[0];
    assert_eq!(label(&process.labels, "GPU_I_ID"), Some("1"));
    assert_eq!(label(&process.labels, "GPU_I_PROFILE"), Some("3g.40gb"));
}

#[test]
fn a_mig_gpu_whose_instances_cannot_be_listed_is_never_taken_for_a_whole_gpu() {
    // Unreadable from the start: no series of that GPU this time, and counted.
    let mut broken = mig_h100();
    broken
        .failures
        .insert(Field::Mig, FieldError::Driver("unknown error".into()));
    let (_, collector) = start(vec![broken, SimulatedGpu::h100(1)]);
    let families = collector.collect();
    let temp = family(&families, "DCGM_FI_DEV_GPU_TEMP").unwrap();
    assert_eq!(temp.samples.len(), 1);
    assert_eq!(label(&temp.samples[0].labels, "gpu"), Some("1"));

    // Listed once, then unreadable: the last list, without frame buffers.
    let (backend, collector) = start(vec![mig_h100()]);
    collector.collect();
    backend.update(0, |gpu| {
        gpu.failures
            .insert(Field::Mig, FieldError::Driver("unknown error".into()));
    });
    let families = collector.collect();
    let temp = family(&families, "DCGM_FI_DEV_GPU_TEMP").unwrap();
    assert_eq!(temp.samples.len(), 2);
    assert!(
        temp.samples
            .iter()
            .all(|s| label(&s.labels, "GPU_I_ID").is_some())
    );
    assert!(family(&families, "DCGM_FI_DEV_FB_USED").is_none());
    let errors = family(&families, "odin_gpu_collector_errors_total").unwrap();
    assert!(
        errors
            .samples
            .iter()
            .any(|s| label(&s.labels, "field") == Some("mig_instances"))
    );
}

#[test]
fn an_xid_is_filed_under_the_mig_instance_the_driver_names() {
    let (backend, collector) = start(vec![mig_h100()]);
    assert!(backend.inject_xid_on(GPU0, Some(2), 31));
    let families = collector.collect();
    let xid = family(&families, "DCGM_FI_DEV_XID_ERRORS").unwrap();
    assert_eq!(of_instance(xid, "1")[0].value, 0.0);
    let faulted = of_instance(xid, "2")[0];
    assert_eq!(faulted.value, 31.0);
    assert_eq!(label(&faulted.labels, "err_code"), Some("31"));
    assert_eq!(
        label(&faulted.labels, "err_msg"),
        Some("GPU memory page fault")
    );
    // A later fault of the whole GPU concerns every instance.
    assert!(backend.inject_xid_on(GPU0, None, 79));
    let families = collector.collect();
    let xid = family(&families, "DCGM_FI_DEV_XID_ERRORS").unwrap();
    assert_eq!(of_instance(xid, "1")[0].value, 79.0);
    assert_eq!(of_instance(xid, "2")[0].value, 79.0);
    // ODIN's counter is per GPU.
    let counts = family(&families, "odin_gpu_xid_errors_total").unwrap();
    assert_eq!(counts.samples.len(), 2);
    assert!(
        counts
            .samples
            .iter()
            .all(|s| label(&s.labels, "GPU_I_ID").is_none())
    );
}

#[test]
fn xid_gauge_is_the_last_xid_and_starts_at_zero() {
    let (backend, collector) = start(vec![SimulatedGpu::h100(0), SimulatedGpu::h100(1)]);
    let families = collector.collect();
    assert_eq!(value(&families, "DCGM_FI_DEV_XID_ERRORS", "0"), Some(0.0));
    assert!(family(&families, "odin_gpu_xid_errors_total").is_none());
    let none = &family(&families, "DCGM_FI_DEV_XID_ERRORS").unwrap().samples[0];
    assert_eq!(label(&none.labels, "err_code"), Some("0"));
    assert_eq!(label(&none.labels, "err_msg"), Some("No Error"));

    let uuid = "GPU-5f0b7c4e-1d2a-4b3c-8e9f-000000000001";
    assert!(backend.inject_xid(uuid, 79));
    assert!(backend.inject_xid(uuid, 48));
    assert!(backend.inject_xid(uuid, 48));
    let families = collector.collect();
    assert_eq!(value(&families, "DCGM_FI_DEV_XID_ERRORS", "0"), Some(0.0));
    assert_eq!(value(&families, "DCGM_FI_DEV_XID_ERRORS", "1"), Some(48.0));
    let last = family(&families, "DCGM_FI_DEV_XID_ERRORS")
        .unwrap()
        .samples
        .iter()
        .find(|s| label(&s.labels, "gpu") == Some("1"))
        .unwrap();
    let names = label_names(&last.labels);
    assert_eq!(names[..7], GPU_LABELS);
    assert_eq!(names[7..], ["err_code", "err_msg"]);
    assert_eq!(label(&last.labels, "err_msg"), Some("Double Bit ECC Error"));
    let counts = family(&families, "odin_gpu_xid_errors_total").unwrap();
    let by_xid: Vec<(&str, f64)> = counts
        .samples
        .iter()
        .map(|s| (label(&s.labels, "xid").unwrap(), s.value))
        .collect();
    assert_eq!(by_xid, [("48", 2.0), ("79", 1.0)]);
}

#[test]
fn profiling_fields_come_from_gpm_in_dcgm_units() {
    let mut gpu = SimulatedGpu::h100(0);
    gpu.gpm = Some(vec![
        (GpmMetric::GraphicsUtil, 62.5),
        (GpmMetric::SmUtil, 50.0),
        (GpmMetric::SmOccupancy, 25.0),
        (GpmMetric::AnyTensorUtil, 12.0),
        (GpmMetric::DramBandwidthUtil, 101.0),
        (GpmMetric::Fp64Util, 0.0),
        (GpmMetric::Fp32Util, 30.0),
        (GpmMetric::Fp16Util, 2.0),
        (GpmMetric::PcieTxMibPerSecond, 100.0),
        (GpmMetric::PcieRxMibPerSecond, 0.5),
        (GpmMetric::NvlinkTxMibPerSecond, 2048.0),
        (GpmMetric::NvlinkRxMibPerSecond, 1.0),
    ]);
    let (_, collector) = start(vec![gpu]);
    let families = collector.collect();
    for (name, expected) in [
        ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", 0.625),
        ("DCGM_FI_PROF_SM_ACTIVE", 0.5),
        ("DCGM_FI_PROF_SM_OCCUPANCY", 0.25),
        ("DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", 0.12),
        // A ratio stays a ratio whatever the driver's rounding.
        ("DCGM_FI_PROF_DRAM_ACTIVE", 1.0),
        ("DCGM_FI_PROF_PIPE_FP64_ACTIVE", 0.0),
        ("DCGM_FI_PROF_PIPE_FP32_ACTIVE", 0.3),
        ("DCGM_FI_PROF_PIPE_FP16_ACTIVE", 0.02),
        ("DCGM_FI_PROF_PCIE_TX_BYTES", 100.0 * 1048576.0),
        ("DCGM_FI_PROF_PCIE_RX_BYTES", 524288.0),
        ("DCGM_FI_PROF_NVLINK_TX_BYTES", 2048.0 * 1048576.0),
        ("DCGM_FI_PROF_NVLINK_RX_BYTES", 1048576.0),
    ] {
        let got = value(&families, name, "0").unwrap_or_else(|| panic!("{name} missing"));
        assert!((got - expected).abs() < 1e-9, "{name}: {got} != {expected}");
        assert_eq!(family(&families, name).unwrap().kind, MetricType::Gauge);
    }
    // The PCIe rates came from GPM, not from the byte counters as well.
    assert_eq!(
        family(&families, "DCGM_FI_PROF_PCIE_TX_BYTES")
            .unwrap()
            .samples
            .len(),
        1
    );
    // NVML's 20 ms PCIe throughput, which DCGM never reports, is gone.
    assert!(family(&families, "DCGM_FI_DEV_PCIE_TX_THROUGHPUT").is_none());
    assert!(family(&families, "DCGM_FI_DEV_PCIE_RX_THROUGHPUT").is_none());
}

#[test]
fn without_gpm_pcie_traffic_is_the_rate_of_the_byte_counters() {
    let mut gpu = SimulatedGpu::h100(0);
    gpu.gpm = None;
    let (backend, collector) = start(vec![gpu]);
    let started = std::time::Instant::now();
    let families = collector.collect();
    assert!(family(&families, "DCGM_FI_PROF_GR_ENGINE_ACTIVE").is_none());
    // A rate needs two reads.
    assert_eq!(
        value(&families, "DCGM_FI_PROF_PCIE_TX_BYTES", "0"),
        Some(0.0)
    );
    std::thread::sleep(std::time::Duration::from_millis(50));
    backend.update(0, |gpu| {
        gpu.pcie_tx_bytes = gpu.pcie_tx_bytes.map(|b| b + 10_000_000);
    });
    let families = collector.collect();
    let elapsed = started.elapsed().as_secs_f64();
    let rate = value(&families, "DCGM_FI_PROF_PCIE_TX_BYTES", "0").unwrap();
    assert!(
        rate >= 1e7 / elapsed && rate <= 1e7 / 0.05,
        "{rate} B/s for 10 MB in at most {elapsed} s"
    );
    assert_eq!(
        value(&families, "DCGM_FI_PROF_PCIE_RX_BYTES", "0"),
        Some(0.0)
    );
    // A driver without the counters: no PCIe series, no error.
    backend.update(0, |gpu| {
        gpu.pcie_tx_bytes = None;
        gpu.pcie_rx_bytes = None;
    });
    let families = collector.collect();
    assert!(family(&families, "DCGM_FI_PROF_PCIE_TX_BYTES").is_none());
    assert!(family(&families, "odin_gpu_collector_errors_total").is_none());
}

#[test]
fn process_memory_and_utilization_use_the_newest_sample() {
    let mut gpu = SimulatedGpu::h100(0);
    gpu.processes = vec![
        GpuProcess {
            pid: 100,
            used_memory_bytes: Some(3 << 30),
            gpu_instance_id: None,
        },
        GpuProcess {
            pid: 200,
            used_memory_bytes: None,
            gpu_instance_id: None,
        },
    ];
    gpu.utilization = vec![
        ProcessUtilization {
            pid: 100,
            timestamp_us: 10,
            sm_percent: 20,
            memory_percent: 5,
        },
        ProcessUtilization {
            pid: 100,
            timestamp_us: 20,
            sm_percent: 75,
            memory_percent: 30,
        },
    ];
    let (backend, collector) = start(vec![gpu]);
    let families = collector.collect();
    let memory = family(&families, "odin_gpu_process_memory_used_bytes").unwrap();
    assert_eq!(memory.unit, "bytes");
    assert_eq!(memory.samples.len(), 1, "pid 200 has no memory reading");
    assert_eq!(memory.samples[0].value, (3u64 << 30) as f64);
    assert_eq!(label(&memory.samples[0].labels, "pid"), Some("100"));
    let sm = family(&families, "odin_gpu_process_sm_utilization_ratio").unwrap();
    let of = |pid: &str| {
        sm.samples
            .iter()
            .find(|s| label(&s.labels, "pid") == Some(pid))
            .map(|s| s.value)
    };
    assert_eq!(of("100"), Some(0.75));
    assert_eq!(of("200"), Some(0.0));

    // Only samples newer than the last one seen count: none new means idle.
    let families = collector.collect();
    let sm = family(&families, "odin_gpu_process_sm_utilization_ratio").unwrap();
    assert!(sm.samples.iter().all(|s| s.value == 0.0));
    backend.update(0, |gpu| {
        gpu.utilization.push(ProcessUtilization {
            pid: 100,
            timestamp_us: 30,
            sm_percent: 50,
            memory_percent: 10,
        })
    });
    let families = collector.collect();
    let mem = family(&families, "odin_gpu_process_memory_utilization_ratio").unwrap();
    let v = mem
        .samples
        .iter()
        .find(|s| label(&s.labels, "pid") == Some("100"))
        .unwrap()
        .value;
    assert_eq!(v, 0.1);
}

#[test]
fn processes_can_be_turned_off() {
    let mut gpu = SimulatedGpu::h100(0);
    gpu.processes = vec![GpuProcess {
        pid: 1,
        used_memory_bytes: Some(1),
        gpu_instance_id: None,
    }];
    let backend = Arc::new(SimulatedBackend::new(vec![gpu]));
    let collector = GpuCollector::with_backend(
        backend,
        GpuCollectorConfig {
            processes: false,
            ..config()
        },
    );
    let families = collector.collect();
    assert!(family(&families, "odin_gpu_process_memory_used_bytes").is_none());
}

#[test]
fn off_collector_yields_nothing() {
    let collector = GpuCollector::off("test");
    assert!(!collector.is_on());
    assert_eq!(collector.off_reason(), Some("test"));
    assert!(collector.collect().is_empty());
}

#[test]
fn disabled_in_configuration_is_off() {
    let collector = GpuCollector::start(GpuCollectorConfig {
        enabled: false,
        ..GpuCollectorConfig::default()
    });
    assert!(!collector.is_on());
    assert!(collector.collect().is_empty());
}

/// On a host without the NVIDIA driver, `start` returns an off collector instead of
/// failing. On a GPU host it is on and reports every GPU.
#[test]
fn start_on_this_host_is_off_without_a_driver_or_reports_gpus() {
    let collector = GpuCollector::start(GpuCollectorConfig::default());
    let has_driver = std::path::Path::new("/proc/driver/nvidia/version").exists();
    if has_driver {
        // A driver may still refuse (containers without devices): either is fine here,
        // but an on collector must produce the GPU temperature.
        if collector.is_on() {
            let families = collector.collect();
            assert!(family(&families, "DCGM_FI_DEV_GPU_TEMP").is_some());
        }
    } else {
        assert!(!collector.is_on());
        assert!(
            collector
                .off_reason()
                .unwrap()
                .starts_with("nvml unavailable")
        );
        assert!(collector.collect().is_empty());
    }
}

#[test]
fn config_rejects_unknown_fields_and_defaults_the_rest() {
    let config: GpuCollectorConfig = serde_json::from_str(r#"{"processes": false}"#).unwrap();
    assert!(config.enabled);
    assert!(!config.processes);
    assert_eq!(config.proc_root, std::path::PathBuf::from("/proc"));
    assert!(serde_json::from_str::<GpuCollectorConfig>(r#"{"bogus": 1}"#).is_err());
}

#[test]
fn memory_temperature_is_read_as_dcgm_reads_it() {
    // No HBM sensor: NVML says 0, and DCGM (dcgm-exporter) reports 0.
    let mut cold = SimulatedGpu::h100(0);
    cold.memory_temperature_celsius = 0;
    // Above 200 °C is not a temperature: DCGM drops it.
    let mut absurd = SimulatedGpu::h100(1);
    absurd.memory_temperature_celsius = 250;
    let (_, collector) = start(vec![cold, absurd]);
    let families = collector.collect();
    let temp = family(&families, "DCGM_FI_DEV_MEMORY_TEMP").unwrap();
    assert_eq!(temp.samples.len(), 1);
    assert_eq!(label(&temp.samples[0].labels, "gpu"), Some("0"));
    assert_eq!(temp.samples[0].value, 0.0);
}

#[test]
fn process_utilization_nvml_cannot_read_is_left_out_not_zero() {
    let mut gpu = SimulatedGpu::h100(0);
    gpu.processes = vec![GpuProcess {
        pid: 100,
        used_memory_bytes: Some(1 << 30),
        gpu_instance_id: None,
    }];
    gpu.failures.insert(
        Field::ProcessUtilization,
        FieldError::Driver("timeout".into()),
    );
    let (_, collector) = start(vec![gpu]);
    let families = collector.collect();
    assert!(family(&families, "odin_gpu_process_memory_used_bytes").is_some());
    assert!(family(&families, "odin_gpu_process_sm_utilization_ratio").is_none());
    assert!(family(&families, "odin_gpu_process_memory_utilization_ratio").is_none());
    // The failure is counted, by field.
    assert!(family(&families, "odin_gpu_collector_errors_total").is_some());
}

mod kubelet {
    //! Pod labels from a fake kubelet serving the pod-resources API on a Unix socket.

    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use parking_lot::Mutex;
    use tonic::{Request, Response, Status};

    use super::super::kubelet::proto::pod_resources_lister_server::{
        PodResourcesLister, PodResourcesListerServer,
    };
    use super::super::kubelet::proto::{
        ContainerDevices, ContainerResources, ListPodResourcesRequest, ListPodResourcesResponse,
        PodResources,
    };
    use super::*;

    /// What the fake kubelet answers; `Err` makes `List` fail with that status.
    type Answer = Arc<Mutex<std::result::Result<ListPodResourcesResponse, Status>>>;

    struct FakeKubelet(Answer);

    #[tonic::async_trait]
    impl PodResourcesLister for FakeKubelet {
        async fn list(
            &self,
            _: Request<ListPodResourcesRequest>,
        ) -> std::result::Result<Response<ListPodResourcesResponse>, Status> {
            self.0.lock().clone().map(Response::new)
        }
    }

    /// Serves `router` on a Unix socket at `socket`, until the task is aborted.
    fn serve_on(
        socket: &Path,
        router: tonic::transport::server::Router,
    ) -> tokio::task::JoinHandle<()> {
        let listener = tokio::net::UnixListener::bind(socket).unwrap();
        let incoming = futures_util::stream::unfold(listener, |listener| async move {
            let accepted = listener.accept().await.map(|(stream, _)| stream);
            Some((accepted, listener))
        });
        tokio::spawn(async move { router.serve_with_incoming(incoming).await.unwrap() })
    }

    fn serve(socket: &Path, answer: Answer) -> tokio::task::JoinHandle<()> {
        serve_on(
            socket,
            tonic::transport::Server::builder()
                .add_service(PodResourcesListerServer::new(FakeKubelet(answer))),
        )
    }

    fn held(namespace: &str, pod: &str, container: &str, resource: &str, id: &str) -> PodResources {
        PodResources {
            name: pod.into(),
            namespace: namespace.into(),
            containers: vec![ContainerResources {
                name: container.into(),
                devices: vec![ContainerDevices {
                    resource_name: resource.into(),
                    device_ids: vec![id.into()],
                    topology: None,
                }],
            }],
        }
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("odin-kubelet-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    async fn collect(collector: &Arc<GpuCollector>) -> Vec<MetricFamily> {
        let collector = Arc::clone(collector);
        tokio::task::spawn_blocking(move || collector.collect())
            .await
            .unwrap()
    }

    /// `odin_gpu_collector_errors_total{field}`, when counted.
    fn field_errors(families: &[MetricFamily], field: &str) -> Option<f64> {
        family(families, "odin_gpu_collector_errors_total")?
            .samples
            .iter()
            .find(|s| label(&s.labels, "field") == Some(field))
            .map(|s| s.value)
    }

    fn pod_of(sample: &Sample) -> (Option<&str>, Option<&str>, Option<&str>) {
        (
            label(&sample.labels, "pod"),
            label(&sample.labels, "namespace"),
            label(&sample.labels, "container"),
        )
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_series_of_a_gpu_a_pod_holds_carries_the_pod() {
        let dir = temp_dir("labels");
        let socket = dir.join("kubelet.sock");
        let gpu1 = "GPU-5f0b7c4e-1d2a-4b3c-8e9f-000000000001";
        let answer: Answer = Arc::new(Mutex::new(Ok(ListPodResourcesResponse {
            pod_resources: vec![
                // GPU 0 through one of its GPU instance's MIG devices; GPU 1 whole.
                held(
                    "ml",
                    "trainer-0",
                    "pytorch",
                    "nvidia.com/mig-3g.40gb",
                    "MIG-aaab",
                ),
                held("serving", "vllm-7f9", "server", "nvidia.com/gpu", gpu1),
                // Not a GPU.
                held("net", "router", "c", "example.com/nic", "0"),
            ],
        })));
        let server = serve(&socket, Arc::clone(&answer));

        // A process in a pod whose runtime files are not visible.
        let proc_root = dir.join("proc");
        std::fs::create_dir_all(proc_root.join("4242")).unwrap();
        std::fs::write(
            proc_root.join("4242/cgroup"),
            "0::/kubepods/burstable/pod0b4ac0b6-8b2a-4c8e-9a57-3f1a2c9d7e11/4f3c2b1a0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b\n",
        )
        .unwrap();
        let mut gpu1_sim = SimulatedGpu::h100(1);
        gpu1_sim.processes = vec![GpuProcess {
            pid: 4242,
            used_memory_bytes: Some(1 << 30),
            gpu_instance_id: None,
        }];
        let backend = Arc::new(SimulatedBackend::new(vec![mig_h100(), gpu1_sim]));
        let collector = Arc::new(GpuCollector::with_backend(
            backend,
            GpuCollectorConfig {
                pod_resources_socket: Some(socket.clone()),
                proc_root,
                ..config()
            },
        ));
        let families = collect(&collector).await;
        let mut checked = 0;
        for f in families.iter().filter(|f| f.name.starts_with("DCGM_FI_")) {
            for s in &f.samples {
                let expected = match (label(&s.labels, "gpu"), label(&s.labels, "GPU_I_ID")) {
                    (Some("0"), Some("1")) => (Some("trainer-0"), Some("ml"), Some("pytorch")),
                    (Some("1"), None) => (Some("vllm-7f9"), Some("serving"), Some("server")),
                    _ => (None, None, None),
                };
                assert_eq!(pod_of(s), expected, "{} {:?}", f.name, s.labels);
                checked += 1;
            }
        }
        assert!(checked > 40, "{checked} series checked");
        // dcgm-exporter's order: labels, then the attributes sorted by name.
        let xid = family(&families, "DCGM_FI_DEV_XID_ERRORS")
            .unwrap()
            .samples
            .iter()
            .find(|s| label(&s.labels, "gpu") == Some("1"))
            .unwrap();
        let names = label_names(&xid.labels);
        assert_eq!(names[..7], GPU_LABELS);
        assert_eq!(
            names[7..],
            ["container", "err_code", "err_msg", "namespace", "pod"]
        );
        // A process whose container neither the runtime's files nor its socket name
        // is not given the GPU's holder: it may be another pod's that sees every GPU.
        let process = &family(&families, "odin_gpu_process_memory_used_bytes")
            .unwrap()
            .samples[0];
        assert_eq!(pod_of(process), (None, None, None));
        assert_eq!(field_errors(&families, "pod_resources"), None);

        // The kubelet refuses: the series go on without pod labels, and it is counted.
        *answer.lock() = Err(Status::unavailable("kubelet restarting"));
        let families = collect(&collector).await;
        let temp = family(&families, "DCGM_FI_DEV_GPU_TEMP").unwrap();
        assert_eq!(temp.samples.len(), 3);
        assert!(temp.samples.iter().all(|s| pod_of(s) == (None, None, None)));
        assert_eq!(field_errors(&families, "pod_resources"), Some(1.0));

        // Gone altogether (a socket nobody serves): still counted, never a crash.
        server.abort();
        let _ = server.await;
        let families = collect(&collector).await;
        assert_eq!(field_errors(&families, "pod_resources"), Some(2.0));
        assert!(family(&families, "DCGM_FI_DEV_GPU_TEMP").is_some());
        let _ = std::fs::remove_dir_all(&dir);
    }

    use super::super::cri::proto::runtime_service_server::{RuntimeService, RuntimeServiceServer};
    use super::super::cri::proto::{
        Container, ContainerMetadata, ListContainersRequest, ListContainersResponse,
    };

    /// The containers the fake runtime knows; `Err` makes every call fail.
    type Containers = Arc<Mutex<std::result::Result<Vec<Container>, Status>>>;

    struct FakeRuntime(Containers);

    #[tonic::async_trait]
    impl RuntimeService for FakeRuntime {
        async fn list_containers(
            &self,
            request: Request<ListContainersRequest>,
        ) -> std::result::Result<Response<ListContainersResponse>, Status> {
            let wanted = request
                .into_inner()
                .filter
                .map(|f| f.id)
                .unwrap_or_default();
            let containers = self.0.lock().clone()?;
            // As containerd: the filter's ID matches by prefix.
            Ok(Response::new(ListContainersResponse {
                containers: containers
                    .into_iter()
                    .filter(|c| c.id.starts_with(&wanted))
                    .collect(),
            }))
        }
    }

    fn serve_runtime(socket: &Path, containers: Containers) -> tokio::task::JoinHandle<()> {
        serve_on(
            socket,
            tonic::transport::Server::builder()
                .add_service(RuntimeServiceServer::new(FakeRuntime(containers))),
        )
    }

    const UID: &str = "0b4ac0b6-8b2a-4c8e-9a57-3f1a2c9d7e11";
    const CID: &str = "4f3c2b1a0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b";

    fn container(id: &str, pod: &str, uid: &str) -> Container {
        Container {
            id: id.into(),
            pod_sandbox_id: "sandbox".into(),
            metadata: Some(ContainerMetadata {
                name: "server".into(),
                attempt: 0,
            }),
            state: 1,
            labels: [
                ("io.kubernetes.pod.name", pod),
                ("io.kubernetes.pod.namespace", "serving"),
                ("io.kubernetes.pod.uid", uid),
                ("io.kubernetes.container.name", "server"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_runtime_names_the_pod_of_a_process_on_a_shared_gpu() {
        let dir = temp_dir("cri");
        let kubelet_socket = dir.join("kubelet.sock");
        let runtime_socket = dir.join("containerd.sock");
        // A time-sliced GPU: the kubelet cannot say which holder a process is.
        let gpu0 = "GPU-5f0b7c4e-1d2a-4b3c-8e9f-000000000000";
        let kubelet = serve(
            &kubelet_socket,
            Arc::new(Mutex::new(Ok(ListPodResourcesResponse {
                pod_resources: vec![
                    held(
                        "serving",
                        "vllm-a",
                        "server",
                        "nvidia.com/gpu",
                        &format!("{gpu0}::0"),
                    ),
                    held(
                        "serving",
                        "vllm-b",
                        "server",
                        "nvidia.com/gpu",
                        &format!("{gpu0}::1"),
                    ),
                ],
            }))),
        );
        let containers: Containers = Arc::new(Mutex::new(Ok(vec![
            container(&format!("{CID}ff"), "someone-else", UID),
            container(CID, "vllm-b", UID),
        ])));
        let runtime = serve_runtime(&runtime_socket, Arc::clone(&containers));

        let proc_root = dir.join("proc");
        std::fs::create_dir_all(proc_root.join("4242")).unwrap();
        std::fs::write(
            proc_root.join("4242/comm"),
            "python3
",
        )
        .unwrap();
        std::fs::write(
            proc_root.join("4242/cgroup"),
            format!(
                "0::/kubepods/burstable/pod{UID}/{CID}
"
            ),
        )
        .unwrap();
        let mut gpu = SimulatedGpu::h100(0);
        gpu.processes = vec![GpuProcess {
            pid: 4242,
            used_memory_bytes: Some(1 << 30),
            gpu_instance_id: None,
        }];
        let start_collector = |gpu: SimulatedGpu| {
            Arc::new(GpuCollector::with_backend(
                Arc::new(SimulatedBackend::new(vec![gpu])),
                GpuCollectorConfig {
                    pod_resources_socket: Some(kubelet_socket.clone()),
                    cri_socket: Some(runtime_socket.clone()),
                    proc_root: proc_root.clone(),
                    ..config()
                },
            ))
        };
        let collector = start_collector(gpu.clone());
        let families = collect(&collector).await;
        let process = &family(&families, "odin_gpu_process_memory_used_bytes")
            .unwrap()
            .samples[0];
        assert_eq!(
            pod_of(process),
            (Some("vllm-b"), Some("serving"), Some("server"))
        );
        assert_eq!(label(&process.labels, "process_name"), Some("python3"));

        // A runtime whose pod UID is not the cgroup's is not believed: the process
        // stays unnamed.
        *containers.lock() = Ok(vec![container(
            CID,
            "vllm-b",
            "11111111-2222-3333-4444-555555555555",
        )]);
        let collector = start_collector(gpu.clone());
        let families = collect(&collector).await;
        let process = &family(&families, "odin_gpu_process_memory_used_bytes")
            .unwrap()
            .samples[0];
        assert_eq!(pod_of(process), (None, None, None));

        // The runtime refuses, then is gone: counted once per collection however
        // many processes wait for it, never a crash.
        *containers.lock() = Err(Status::unavailable("restarting"));
        let other = "0b4ac0b6-8b2a-4c8e-9a57-3f1a2c9d7e12";
        std::fs::create_dir_all(proc_root.join("4243")).unwrap();
        std::fs::write(
            proc_root.join("4243/cgroup"),
            format!("0::/kubepods/burstable/pod{other}/{}\n", "a".repeat(64)),
        )
        .unwrap();
        let mut gpu = gpu.clone();
        gpu.processes.push(GpuProcess {
            pid: 4243,
            used_memory_bytes: Some(1 << 20),
            gpu_instance_id: None,
        });
        let collector = start_collector(gpu.clone());
        let families = collect(&collector).await;
        assert_eq!(field_errors(&families, "cri"), Some(1.0));
        runtime.abort();
        let _ = runtime.await;
        // Not cached while failing: asked again, and counted again.
        let families = collect(&collector).await;
        assert_eq!(field_errors(&families, "cri"), Some(2.0));
        kubelet.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// A kubelet that accepts the call and never answers.
    struct HungKubelet;

    #[tonic::async_trait]
    impl PodResourcesLister for HungKubelet {
        async fn list(
            &self,
            _: Request<ListPodResourcesRequest>,
        ) -> std::result::Result<Response<ListPodResourcesResponse>, Status> {
            tokio::time::sleep(std::time::Duration::from_secs(3600)).await;
            Err(Status::deadline_exceeded("never"))
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_kubelet_that_never_answers_costs_a_scrape_its_timeout_only() {
        let dir = temp_dir("hung");
        let socket = dir.join("kubelet.sock");
        let server = serve_on(
            &socket,
            tonic::transport::Server::builder()
                .add_service(PodResourcesListerServer::new(HungKubelet)),
        );
        let collector = Arc::new(GpuCollector::with_backend(
            Arc::new(SimulatedBackend::new(vec![SimulatedGpu::h100(0)])),
            GpuCollectorConfig {
                pod_resources_socket: Some(socket),
                ..config()
            },
        ));
        let started = std::time::Instant::now();
        let families = collect(&collector).await;
        let took = started.elapsed();
        assert!(
            took < std::time::Duration::from_secs(5),
            "a scrape waited {took:?} for a hung kubelet"
        );
        assert!(family(&families, "DCGM_FI_DEV_GPU_TEMP").is_some());
        assert_eq!(field_errors(&families, "pod_resources"), Some(1.0));
        server.abort();
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn no_kubelet_socket_means_no_pod_labels_and_no_errors() {
        let backend = Arc::new(SimulatedBackend::new(vec![SimulatedGpu::h100(0)]));
        let collector = GpuCollector::with_backend(
            backend,
            GpuCollectorConfig {
                pod_resources_socket: Some("/nonexistent/odin/kubelet.sock".into()),
                ..config()
            },
        );
        let families = collector.collect();
        let temp = &family(&families, "DCGM_FI_DEV_GPU_TEMP").unwrap().samples[0];
        assert_eq!(label(&temp.labels, "pod"), None);
        assert!(family(&families, "odin_gpu_collector_errors_total").is_none());
    }
}

mod dcgm_exporter_defaults {
    //! ODIN's GPU families held against dcgm-exporter 3.3's default list
    //! (`tests/fixtures/dcgm-exporter/default-counters.csv`): names, types, help and
    //! label names.

    use std::collections::BTreeMap;

    use super::*;

    /// One row of dcgm-exporter's csv.
    #[derive(Debug)]
    struct Row {
        kind: String,
        help: String,
        /// Uncommented: in dcgm-exporter's default output.
        default: bool,
    }

    fn rows() -> BTreeMap<String, Row> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/dcgm-exporter/default-counters.csv"
        );
        let text = std::fs::read_to_string(path).unwrap();
        let mut rows: BTreeMap<String, Row> = BTreeMap::new();
        for line in text.lines() {
            let (default, line) = match line.strip_prefix('#') {
                Some(rest) => (false, rest.trim()),
                None => (true, line.trim()),
            };
            if !line.starts_with("DCGM_FI_") {
                continue;
            }
            let mut fields = line.splitn(3, ',').map(str::trim);
            let (Some(name), Some(kind), Some(help)) =
                (fields.next(), fields.next(), fields.next())
            else {
                panic!("malformed row {line:?}");
            };
            // A default row wins over a commented one of the same field.
            if rows.get(name).is_some_and(|r| r.default) {
                continue;
            }
            rows.insert(
                name.to_string(),
                Row {
                    kind: kind.to_string(),
                    help: help.to_string(),
                    default,
                },
            );
        }
        rows
    }

    /// Families ODIN emits that dcgm-exporter 3.3's list does not name, and why.
    const BEYOND_THE_LIST: [(&str, &str); 5] = [
        (
            "DCGM_FI_DEV_FB_RESERVED",
            "a row of dcgm-exporter's dcp-metrics-included.csv since 3.3.x",
        ),
        (
            "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
            "a DCGM field dcgm-exporter exports when listed",
        ),
        (
            "DCGM_FI_DEV_POWER_MGMT_LIMIT",
            "a DCGM field dcgm-exporter exports when listed",
        ),
        (
            "DCGM_FI_PROF_NVLINK_TX_BYTES",
            "a DCGM profiling field dcgm-exporter exports when listed",
        ),
        (
            "DCGM_FI_PROF_NVLINK_RX_BYTES",
            "a DCGM profiling field dcgm-exporter exports when listed",
        ),
    ];

    /// Default rows a bare-metal GPU has no value for, so dcgm-exporter emits no
    /// series for them there either.
    const NOT_ON_BARE_METAL: [&str; 1] = ["DCGM_FI_DEV_VGPU_LICENSE_STATUS"];

    /// An H100 on which GPM measures everything it can.
    fn full_h100(index: u32) -> SimulatedGpu {
        let mut gpu = SimulatedGpu::h100(index);
        gpu.gpm = Some(GpmMetric::ALL.iter().map(|&m| (m, 10.0)).collect());
        gpu
    }

    #[test]
    fn every_default_family_comes_out_with_dcgm_exporters_name_type_and_help() {
        let rows = rows();
        assert!(rows.len() > 40, "{} rows read", rows.len());
        let (_, collector) = start(vec![full_h100(0), full_h100(1)]);
        let families = collector.collect();
        for (name, row) in rows.iter().filter(|(_, r)| r.default && r.kind != "label") {
            if NOT_ON_BARE_METAL.contains(&name.as_str()) {
                continue;
            }
            let f = family(&families, name).unwrap_or_else(|| panic!("{name} is missing"));
            let kind = match f.kind {
                MetricType::Counter => "counter",
                MetricType::Gauge => "gauge",
                _ => "other",
            };
            assert_eq!(kind, row.kind, "{name}: type");
            assert_eq!(f.help, row.help, "{name}: help");
            assert_eq!(f.samples.len(), 2, "{name}: one series per GPU");
        }
        for f in families.iter().filter(|f| f.name.starts_with("DCGM_FI_")) {
            match rows.get(&f.name) {
                Some(row) => {
                    assert_eq!(f.help, row.help, "{}: help", f.name);
                }
                None => assert!(
                    BEYOND_THE_LIST.iter().any(|(name, _)| *name == f.name),
                    "{} is neither in dcgm-exporter's list nor among ODIN's documented additions",
                    f.name
                ),
            }
        }
    }

    #[test]
    fn every_series_has_dcgm_exporters_label_names() {
        let (_, collector) = start(vec![full_h100(0)]);
        let families = collector.collect();
        for f in families.iter().filter(|f| f.name.starts_with("DCGM_FI_")) {
            for s in &f.samples {
                let names = label_names(&s.labels);
                if f.name == "DCGM_FI_DEV_XID_ERRORS" {
                    assert_eq!(names[..7], GPU_LABELS, "{}", f.name);
                    assert_eq!(names[7..], ["err_code", "err_msg"], "{}", f.name);
                } else {
                    assert_eq!(names, GPU_LABELS, "{}", f.name);
                }
            }
        }
    }
}
