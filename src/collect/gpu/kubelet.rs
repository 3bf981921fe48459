//! Which pod holds each GPU, from the kubelet's pod-resources API: what dcgm-exporter
//! reads to put `pod`, `namespace` and `container` on a GPU's series.
//!
//! The kubelet serves `v1.PodResourcesLister/List` on a Unix socket
//! ([`DEFAULT_SOCKET`]; K3s's embedded kubelet uses the same path). The answer lists,
//! per pod and container, the device IDs the device plugins allocated. NVIDIA's device
//! plugin names a whole GPU by its UUID (`GPU-…`), a MIG device by its UUID (`MIG-…`,
//! or `MIG-GPU-<uuid>/<gi>/<ci>` before driver R470), and, with time-slicing, a
//! replica as `<id>::<n>`; GKE's plugin uses `nvidia<n>/gi<m>`. With the `index`
//! device-ID strategy an ID is the GPU's index.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::backend::DeviceIdentity;
use super::process::PodInfo;
use super::unix_grpc;

/// The generated client (and, for tests, server) of `proto/kubelet/podresources.proto`.
pub mod proto {
    tonic::include_proto!("v1");
}

/// Where the kubelet serves the pod-resources API.
pub const DEFAULT_SOCKET: &str = "/var/lib/kubelet/pod-resources/kubelet.sock";

/// How long one `List` (connect included) may take. A scrape waits for it.
const LIST_TIMEOUT: Duration = Duration::from_secs(2);

/// A device as the collector names it, parsed from a device plugin's ID.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DeviceKey {
    /// A whole GPU, by UUID (`GPU-…`).
    Gpu(String),
    /// A whole GPU, by NVML index (NVIDIA's plugin with the `index` device-ID strategy).
    GpuIndex(u32),
    /// A whole GPU, by its `/dev/nvidia<minor>` number (GKE's `nvidia<minor>`).
    GpuMinor(u32),
    /// A MIG device, by its own UUID (`MIG-…`).
    Mig(String),
    /// A MIG GPU instance by its GPU's UUID and GPU-instance ID.
    MigInstance(String, u32),
    /// A MIG GPU instance by its GPU's minor number and GPU-instance ID (GKE).
    MigInstanceOfMinor(u32, u32),
}

impl DeviceKey {
    /// Parses a device plugin's device ID; `None` for an ID that names no NVIDIA GPU.
    pub fn parse(id: &str) -> Option<DeviceKey> {
        // Time-slicing replicas (`<id>::<n>`) and vGPU suffixes name the same device.
        let id = id.split_once("::").map_or(id, |(device, _)| device);
        let id = match id.rsplit_once("/vgpu") {
            Some((device, n)) if n.bytes().all(|b| b.is_ascii_digit()) => device,
            _ => id,
        };
        if let Some(rest) = id.strip_prefix("MIG-GPU-") {
            // `MIG-GPU-<uuid>/<gi>/<ci>`.
            let mut parts = rest.split('/');
            let (uuid, gi) = (parts.next()?, parts.next()?.parse().ok()?);
            return Some(DeviceKey::MigInstance(format!("GPU-{uuid}"), gi));
        }
        if id.starts_with("MIG-") {
            return Some(DeviceKey::Mig(id.to_string()));
        }
        if id.starts_with("GPU-") {
            return Some(DeviceKey::Gpu(id.to_string()));
        }
        if let Some(rest) = id.strip_prefix("nvidia") {
            // GKE: `nvidia<minor>/gi<m>`, or `nvidia<minor>`.
            return match rest.split_once("/gi") {
                Some((gpu, gi)) => Some(DeviceKey::MigInstanceOfMinor(
                    gpu.parse().ok()?,
                    gi.parse().ok()?,
                )),
                None => rest.parse().ok().map(DeviceKey::GpuMinor),
            };
        }
        id.parse().ok().map(DeviceKey::GpuIndex)
    }
}

/// Whether a device plugin's resource is NVIDIA's GPUs: `nvidia.com/gpu`, its
/// renamed shares (`nvidia.com/gpu.shared`) and MIG profiles (`nvidia.com/mig-…`), not
/// other `nvidia.com/` resources (network adapters).
fn is_gpu_resource(name: &str) -> bool {
    name == "nvidia.com/gpu"
        || name.starts_with("nvidia.com/gpu.")
        || name.starts_with("nvidia.com/mig-")
}

/// The containers devices are allocated to, from one `List`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceAllocations {
    by_device: HashMap<DeviceKey, PodInfo>,
}

impl DeviceAllocations {
    /// Keeps the GPUs of a `List` answer. A device shared by several containers
    /// (time-slicing) is labelled with one of them, the first by namespace, pod and
    /// container, as dcgm-exporter labels it with one unless told to copy series per
    /// container.
    pub fn from_response(response: proto::ListPodResourcesResponse) -> DeviceAllocations {
        let mut holders: Vec<(DeviceKey, PodInfo)> = Vec::new();
        for pod in response.pod_resources {
            for container in pod.containers {
                for devices in &container.devices {
                    if !is_gpu_resource(&devices.resource_name) {
                        continue;
                    }
                    for id in &devices.device_ids {
                        if let Some(key) = DeviceKey::parse(id) {
                            holders.push((
                                key,
                                PodInfo {
                                    pod: Some(pod.name.clone()),
                                    namespace: Some(pod.namespace.clone()),
                                    container: Some(container.name.clone()),
                                },
                            ));
                        }
                    }
                }
            }
        }
        holders.sort_by(|a, b| {
            (&a.1.namespace, &a.1.pod, &a.1.container).cmp(&(
                &b.1.namespace,
                &b.1.pod,
                &b.1.container,
            ))
        });
        let mut by_device = HashMap::new();
        for (key, holder) in holders {
            by_device.entry(key).or_insert(holder);
        }
        DeviceAllocations { by_device }
    }

    /// The container a whole GPU's series are labelled with.
    pub fn of_gpu(&self, gpu: &DeviceIdentity) -> Option<&PodInfo> {
        [
            DeviceKey::Gpu(gpu.uuid.clone()),
            DeviceKey::GpuIndex(gpu.index),
            DeviceKey::GpuMinor(gpu.minor_number),
        ]
        .iter()
        .find_map(|key| self.by_device.get(key))
    }

    /// The container a MIG GPU instance's series are labelled with (found through
    /// any of its MIG devices).
    pub fn of_instance(
        &self,
        gpu: &DeviceIdentity,
        gpu_instance: u32,
        device_uuids: &[String],
    ) -> Option<&PodInfo> {
        device_uuids
            .iter()
            .map(|mig| DeviceKey::Mig(mig.clone()))
            .chain([
                DeviceKey::MigInstance(gpu.uuid.clone(), gpu_instance),
                DeviceKey::MigInstanceOfMinor(gpu.minor_number, gpu_instance),
            ])
            .find_map(|key| self.by_device.get(&key))
    }

    pub fn is_empty(&self) -> bool {
        self.by_device.is_empty()
    }
}

/// Why the allocations could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ListError {
    /// No socket at the path: not a Kubernetes node (or the kubelet's directory is
    /// not mounted). Not an error worth counting.
    #[error("no pod-resources socket at {0}")]
    NoSocket(PathBuf),
    #[error("pod-resources list from {socket}: {message}")]
    Failed { socket: PathBuf, message: String },
}

/// A client of one kubelet's pod-resources socket. Each [`list`](Self::list) makes a
/// new connection, as dcgm-exporter does: the kubelet may have restarted between
/// scrapes.
#[derive(Debug, Clone)]
pub struct PodResourcesClient {
    socket: PathBuf,
}

impl PodResourcesClient {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
        }
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// Lists the allocations, blocking the calling thread for at most
    /// [`LIST_TIMEOUT`]. Call it from a blocking thread (`spawn_blocking`), never
    /// from a runtime worker.
    pub fn list(&self) -> Result<DeviceAllocations, ListError> {
        if !self.socket.exists() {
            return Err(ListError::NoSocket(self.socket.clone()));
        }
        let socket = self.socket.clone();
        unix_grpc::block_on(LIST_TIMEOUT, async move {
            let channel = unix_grpc::channel(socket, LIST_TIMEOUT).await?;
            proto::pod_resources_lister_client::PodResourcesListerClient::new(channel)
                .list(proto::ListPodResourcesRequest {})
                .await
                .map(tonic::Response::into_inner)
                .map_err(|status| format!("{}: {}", status.code(), status.message()))
        })
        .map(DeviceAllocations::from_response)
        .map_err(|message| ListError::Failed {
            socket: self.socket.clone(),
            message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::proto::{ContainerDevices, ContainerResources, PodResources};
    use super::*;

    #[test]
    fn device_ids_of_every_plugin_form_parse() {
        let gpu = "GPU-5f0b7c4e-1d2a-4b3c-8e9f-000000000000";
        assert_eq!(DeviceKey::parse(gpu), Some(DeviceKey::Gpu(gpu.into())));
        assert_eq!(
            DeviceKey::parse(&format!("{gpu}::3")),
            Some(DeviceKey::Gpu(gpu.into()))
        );
        let mig = "MIG-0b4ac0b6-8b2a-4c8e-9a57-3f1a2c9d7e11";
        assert_eq!(DeviceKey::parse(mig), Some(DeviceKey::Mig(mig.into())));
        assert_eq!(
            DeviceKey::parse("MIG-GPU-5f0b7c4e-1d2a-4b3c-8e9f-000000000000/7/0"),
            Some(DeviceKey::MigInstance(gpu.into(), 7))
        );
        assert_eq!(
            DeviceKey::parse("nvidia1/gi2"),
            Some(DeviceKey::MigInstanceOfMinor(1, 2))
        );
        assert_eq!(DeviceKey::parse("nvidia3"), Some(DeviceKey::GpuMinor(3)));
        assert_eq!(DeviceKey::parse("2"), Some(DeviceKey::GpuIndex(2)));
        assert_eq!(
            DeviceKey::parse(&format!("{gpu}/vgpu1")),
            Some(DeviceKey::Gpu(gpu.into()))
        );
        for junk in [
            "",
            "MIG-GPU-x",
            "MIG-GPU-x/y/z",
            "nvidiaX",
            "/dev/nvidia0",
            "0000:3b:00.0",
        ] {
            assert_eq!(DeviceKey::parse(junk), None, "{junk}");
        }
    }

    fn pod(
        namespace: &str,
        name: &str,
        container: &str,
        resource: &str,
        ids: &[&str],
    ) -> PodResources {
        PodResources {
            name: name.into(),
            namespace: namespace.into(),
            containers: vec![ContainerResources {
                name: container.into(),
                devices: vec![ContainerDevices {
                    resource_name: resource.into(),
                    device_ids: ids.iter().map(|s| s.to_string()).collect(),
                    topology: None,
                }],
            }],
        }
    }

    fn identity(uuid: &str, index: u32, minor: u32) -> DeviceIdentity {
        DeviceIdentity {
            index,
            uuid: uuid.into(),
            name: "NVIDIA H100 80GB HBM3".into(),
            minor_number: minor,
            pci_bus_id: "00000000:18:00.0".into(),
        }
    }

    #[test]
    fn allocations_keep_gpus_and_pick_one_holder_of_a_shared_gpu() {
        let gpu = "GPU-5f0b7c4e-1d2a-4b3c-8e9f-000000000000";
        let response = proto::ListPodResourcesResponse {
            pod_resources: vec![
                pod(
                    "ml",
                    "train-b",
                    "main",
                    "nvidia.com/gpu",
                    &[&format!("{gpu}::1")],
                ),
                pod(
                    "ml",
                    "train-a",
                    "main",
                    "nvidia.com/gpu",
                    &[&format!("{gpu}::0")],
                ),
                pod("ml", "sriov", "net", "intel.com/sriov", &["0"]),
                // NVIDIA's network operator: not a GPU, whatever its IDs look like.
                pod(
                    "ml",
                    "rdma",
                    "net",
                    "nvidia.com/rdma_shared_device_a",
                    &["1"],
                ),
                pod("ai", "mig", "w", "nvidia.com/mig-1g.10gb", &["MIG-abc"]),
                pod("gke", "g", "c", "nvidia.com/gpu", &["nvidia4"]),
            ],
        };
        let allocations = DeviceAllocations::from_response(response);
        let holder = allocations.of_gpu(&identity(gpu, 0, 0)).unwrap();
        assert_eq!(holder.pod.as_deref(), Some("train-a"));
        assert_eq!(holder.namespace.as_deref(), Some("ml"));
        assert_eq!(holder.container.as_deref(), Some("main"));
        // Neither the SR-IOV "0" nor the RDMA "1" is a GPU.
        assert!(allocations.of_gpu(&identity("GPU-other", 0, 9)).is_none());
        assert!(allocations.of_gpu(&identity("GPU-other", 1, 9)).is_none());
        // GKE names the GPU by its minor number, not its index.
        let gke = allocations.of_gpu(&identity("GPU-gke", 0, 4)).unwrap();
        assert_eq!(gke.pod.as_deref(), Some("g"));
        assert!(allocations.of_gpu(&identity("GPU-gke", 4, 0)).is_none());
        let mig = allocations
            .of_instance(
                &identity("GPU-x", 0, 0),
                5,
                &["MIG-zzz".into(), "MIG-abc".into()],
            )
            .unwrap();
        assert_eq!(mig.pod.as_deref(), Some("mig"));
        assert!(
            allocations
                .of_instance(&identity("GPU-x", 0, 0), 5, &[])
                .is_none()
        );
    }

    #[test]
    fn a_missing_socket_is_not_a_failure() {
        let client = PodResourcesClient::new("/nonexistent/odin/kubelet.sock");
        assert!(matches!(client.list(), Err(ListError::NoSocket(_))));
    }
}
