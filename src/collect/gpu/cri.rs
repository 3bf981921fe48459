//! A container's pod from the container runtime itself, over the CRI socket
//! (`runtime.v1.RuntimeService/ListContainers`): where the runtime's state files are
//! not visible (a containerised ODIN with only the socket mounted), this names the pod
//! of a GPU process exactly, by the container ID of its cgroup. The kubelet labels
//! every container it creates with its pod's name, namespace and UID and the
//! container's name; the UID is checked against the cgroup's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use super::process::PodInfo;
use super::unix_grpc;

/// The generated client (and, for tests, server) of `proto/kubelet/cri.proto`.
pub mod proto {
    tonic::include_proto!("runtime.v1");
}

/// Where the runtimes serve the CRI, relative to the host's root: K3s's containerd,
/// containerd, CRI-O, cri-dockerd.
pub const KNOWN_SOCKETS: [&str; 4] = [
    "run/k3s/containerd/containerd.sock",
    "run/containerd/containerd.sock",
    "var/run/crio/crio.sock",
    "run/cri-dockerd.sock",
];

/// How long one lookup (connect included) may take. A scrape waits for it, once per
/// new container.
const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// What the runtime says of a container.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CriContainer {
    pub pod: PodInfo,
    /// `io.kubernetes.pod.uid`.
    pub pod_uid: Option<String>,
}

/// A client of one runtime's CRI socket.
#[derive(Debug, Clone)]
pub struct CriClient {
    socket: PathBuf,
}

impl CriClient {
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
        }
    }

    /// The first of [`KNOWN_SOCKETS`] that exists under `host_root`.
    pub fn discover(host_root: &Path) -> Option<CriClient> {
        KNOWN_SOCKETS
            .iter()
            .map(|relative| host_root.join(relative))
            .find(|path| path.exists())
            .map(CriClient::new)
    }

    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The container `id` as the runtime knows it; `Ok(None)` when it does not (the
    /// container is gone) or the container is no pod's. Blocks the calling thread for
    /// at most [`CALL_TIMEOUT`]: call it from a blocking thread.
    pub fn container(&self, id: &str) -> Result<Option<CriContainer>, String> {
        let socket = self.socket.clone();
        let request = proto::ListContainersRequest {
            filter: Some(proto::ContainerFilter {
                id: id.to_string(),
                ..Default::default()
            }),
        };
        let response = unix_grpc::block_on(CALL_TIMEOUT, async move {
            let channel = unix_grpc::channel(socket, CALL_TIMEOUT).await?;
            proto::runtime_service_client::RuntimeServiceClient::new(channel)
                .list_containers(request)
                .await
                .map(tonic::Response::into_inner)
                .map_err(|status| format!("{}: {}", status.code(), status.message()))
        })
        .map_err(|message| format!("{}: {message}", self.socket.display()))?;
        // The filter may match by prefix: take the container with exactly this ID.
        let Some(container) = response.containers.into_iter().find(|c| c.id == id) else {
            return Ok(None);
        };
        let label = |key: &str| container.labels.get(key).filter(|v| !v.is_empty()).cloned();
        let pod = PodInfo {
            pod: label("io.kubernetes.pod.name"),
            namespace: label("io.kubernetes.pod.namespace"),
            container: label("io.kubernetes.container.name").or_else(|| {
                container
                    .metadata
                    .as_ref()
                    .map(|m| m.name.clone())
                    .filter(|n| !n.is_empty())
            }),
        };
        if pod.pod.is_none() {
            return Ok(None);
        }
        Ok(Some(CriContainer {
            pod,
            pod_uid: label("io.kubernetes.pod.uid"),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_known_socket_under_the_host_root_is_used() {
        let root = std::env::temp_dir().join(format!("odin-cri-discover-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        assert!(CriClient::discover(&root).is_none());
        for relative in ["run/containerd/containerd.sock", "var/run/crio/crio.sock"] {
            let path = root.join(relative);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, b"").unwrap();
        }
        let found = CriClient::discover(&root).unwrap();
        assert_eq!(found.socket(), root.join("run/containerd/containerd.sock"));
        let _ = std::fs::remove_dir_all(&root);
    }
}
