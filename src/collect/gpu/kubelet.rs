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
    /// A whole GPU, by index (device-ID strategy `index`).
    GpuIndex(u32),
    /// A MIG device, by its own UUID (`MIG-…`).
    Mig(String),
    /// A MIG GPU instance by its GPU's UUID and GPU-instance ID.
    MigInstance(String, u32),
    /// A MIG GPU instance by its GPU's index and GPU-instance ID.
    MigInstanceOfIndex(u32, u32),
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
            // GKE: `nvidia<n>/gi<m>`, or `nvidia<n>`.
            return match rest.split_once("/gi") {
                Some((gpu, gi)) => Some(DeviceKey::MigInstanceOfIndex(
                    gpu.parse().ok()?,
                    gi.parse().ok()?,
                )),
                None => rest.parse().ok().map(DeviceKey::GpuIndex),
            };
        }
        id.parse().ok().map(DeviceKey::GpuIndex)
    }
}

/// The containers devices are allocated to, from one `List`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceAllocations {
    /// Each device's first holder by namespace, pod and container, and how many
    /// containers hold it.
    by_device: HashMap<DeviceKey, (PodInfo, usize)>,
}

impl DeviceAllocations {
    /// Keeps the NVIDIA devices (`nvidia.com/…` resources) of a `List` answer. A
    /// device shared by several containers (time-slicing) is labelled with one of
    /// them, the first by namespace, pod and container, as dcgm-exporter labels it
    /// with one unless told to copy series per container.
    pub fn from_response(response: proto::ListPodResourcesResponse) -> DeviceAllocations {
        let mut holders: Vec<(DeviceKey, PodInfo)> = Vec::new();
        for pod in response.pod_resources {
            for container in pod.containers {
                for devices in &container.devices {
                    if !devices.resource_name.starts_with("nvidia.com/") {
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
        let mut by_device: HashMap<DeviceKey, (PodInfo, usize)> = HashMap::new();
        for (key, holder) in holders {
            let entry = by_device.entry(key).or_insert((holder.clone(), 0));
            // A container given several replicas of one GPU holds it once.
            if entry.1 == 0 || entry.0 != holder {
                entry.1 += 1;
            }
        }
        DeviceAllocations { by_device }
    }

    /// The container holding a whole GPU, and how many hold it.
    fn gpu_holder(&self, uuid: &str, index: u32) -> Option<&(PodInfo, usize)> {
        self.by_device
            .get(&DeviceKey::Gpu(uuid.to_string()))
            .or_else(|| self.by_device.get(&DeviceKey::GpuIndex(index)))
    }

    /// The container holding a MIG GPU instance (through any of its MIG devices), and
    /// how many hold it.
    fn instance_holder(
        &self,
        uuid: &str,
        index: u32,
        gpu_instance: u32,
        device_uuids: &[String],
    ) -> Option<&(PodInfo, usize)> {
        device_uuids
            .iter()
            .find_map(|mig| self.by_device.get(&DeviceKey::Mig(mig.clone())))
            .or_else(|| {
                self.by_device
                    .get(&DeviceKey::MigInstance(uuid.to_string(), gpu_instance))
            })
            .or_else(|| {
                self.by_device
                    .get(&DeviceKey::MigInstanceOfIndex(index, gpu_instance))
            })
    }

    /// The container a whole GPU's series are labelled with.
    pub fn of_gpu(&self, uuid: &str, index: u32) -> Option<&PodInfo> {
        self.gpu_holder(uuid, index).map(|(pod, _)| pod)
    }

    /// The container a MIG GPU instance's series are labelled with.
    pub fn of_instance(
        &self,
        uuid: &str,
        index: u32,
        gpu_instance: u32,
        device_uuids: &[String],
    ) -> Option<&PodInfo> {
        self.instance_holder(uuid, index, gpu_instance, device_uuids)
            .map(|(pod, _)| pod)
    }

    /// The container holding a whole GPU when it is the only one: what a process on
    /// that GPU can be attributed to without knowing its container.
    pub fn sole_holder_of_gpu(&self, uuid: &str, index: u32) -> Option<&PodInfo> {
        self.gpu_holder(uuid, index)
            .filter(|(_, holders)| *holders == 1)
            .map(|(pod, _)| pod)
    }

    /// [`sole_holder_of_gpu`](Self::sole_holder_of_gpu) for a MIG GPU instance.
    pub fn sole_holder_of_instance(
        &self,
        uuid: &str,
        index: u32,
        gpu_instance: u32,
        device_uuids: &[String],
    ) -> Option<&PodInfo> {
        self.instance_holder(uuid, index, gpu_instance, device_uuids)
            .filter(|(_, holders)| *holders == 1)
            .map(|(pod, _)| pod)
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
            Some(DeviceKey::MigInstanceOfIndex(1, 2))
        );
        assert_eq!(DeviceKey::parse("nvidia3"), Some(DeviceKey::GpuIndex(3)));
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

    #[test]
    fn allocations_keep_nvidia_devices_and_pick_one_holder_of_a_shared_gpu() {
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
                pod("ai", "mig", "w", "nvidia.com/mig-1g.10gb", &["MIG-abc"]),
            ],
        };
        let allocations = DeviceAllocations::from_response(response);
        let holder = allocations.of_gpu(gpu, 0).unwrap();
        assert_eq!(holder.pod.as_deref(), Some("train-a"));
        assert_eq!(holder.namespace.as_deref(), Some("ml"));
        assert_eq!(holder.container.as_deref(), Some("main"));
        // The SR-IOV "0" is not GPU 0.
        assert!(allocations.of_gpu("GPU-other", 0).is_none());
        // Shared: no process on it can be attributed to one of them.
        assert!(allocations.sole_holder_of_gpu(gpu, 0).is_none());
        let mig = allocations
            .of_instance("GPU-x", 0, 5, &["MIG-zzz".into(), "MIG-abc".into()])
            .unwrap();
        assert_eq!(mig.pod.as_deref(), Some("mig"));
        assert!(allocations.of_instance("GPU-x", 0, 5, &[]).is_none());
        assert_eq!(
            allocations.sole_holder_of_instance("GPU-x", 0, 5, &["MIG-abc".into()]),
            Some(mig)
        );
    }

    #[test]
    fn a_missing_socket_is_not_a_failure() {
        let client = PodResourcesClient::new("/nonexistent/odin/kubelet.sock");
        assert!(matches!(client.list(), Err(ListError::NoSocket(_))));
    }
}
