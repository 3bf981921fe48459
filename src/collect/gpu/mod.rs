//! The GPU collector: dcgm-exporter's default metric families, read from NVML, plus
//! per-process GPU memory and utilization labelled with the Kubernetes pod.
//!
//! * [`GpuCollector`] — [`start`](GpuCollector::start) loads NVML at run time (one
//!   binary serves hosts with and without GPUs: without the driver the collector is
//!   off and says why once); [`collect`](GpuCollector::collect) returns
//!   `Vec<MetricFamily>`.
//! * [`backend`] — the seam: [`GpuBackend`] enumerates devices, [`GpuDevice`] reads one
//!   field per method in driver units. [`nvml::NvmlBackend`] in production,
//!   [`sim::SimulatedBackend`] in tests.
//! * [`process`] — pod, namespace and container of a pid, from `/proc` and the
//!   container runtimes' state.
//! * [`kubelet`] — which pod holds each GPU, from the kubelet's pod-resources socket:
//!   `pod`, `namespace`, `container` on every series of a GPU a pod was given.
//! * [`cri`] — a container's pod from the runtime's CRI socket, for processes whose
//!   runtime state files are not visible.
//! * [`xid`] — the text of each XID (`err_msg`).
//!
//! Names, types, help and labels follow dcgm-exporter 3.3 (`etc/default-counters.csv`
//! and its exposition template): `gpu, UUID, pci_bus_id, device, modelName`,
//! `GPU_I_PROFILE, GPU_I_ID` on MIG instances, `Hostname`, the
//! `DCGM_FI_DRIVER_VERSION` label row, then the attributes `container`, `err_code`,
//! `err_msg`, `namespace`, `pod`. A MIG-enabled GPU is reported as its GPU
//! instances (dcgm-exporter's default mode). DCGM's profiling fields
//! (`DCGM_FI_PROF_*`) come from NVML's GPM on Hopper and later. Failures are values: a field error leaves out one
//! series and is counted in `odin_gpu_collector_errors_total{field}`; a GPU that falls
//! off the bus stops only its own series (`odin_gpu_device_lost`).
//!
//! Critical XID events come from an NVML event set on a thread of their own
//! (the wait blocks); `DCGM_FI_DEV_XID_ERRORS` is the last XID seen, filed under the
//! MIG instance the driver names.
//!
//! Must not import the TSDB or the API: it only produces families.

pub mod backend;
mod collector;
pub mod cri;
pub mod error;
pub mod kubelet;
pub mod nvml;
pub mod process;
pub mod sim;
mod unix_grpc;
pub mod xid;

#[cfg(test)]
mod tests;

pub use backend::{GpuBackend, GpuDevice};
pub use collector::{GpuCollector, GpuCollectorConfig};
pub use error::FieldError;
