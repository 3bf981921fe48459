//! Which Kubernetes pod a GPU process belongs to, from what the host shows of it.
//!
//! 1. `/proc/<pid>/cgroup` gives the pod UID and the container ID, whatever the cgroup
//!    version (v1, v2), driver (systemd `kubepods-…-pod<uid>.slice`, cgroupfs
//!    `kubepods/…/pod<uid>`) and runtime (`cri-containerd-`, `crio-`, `docker-`
//!    scopes, or a bare 64-hex directory).
//! 2. The container's runtime state, when the host's files are visible, names the pod,
//!    its namespace and the container: containerd's (under `/run/containerd`, or
//!    K3s's `/run/k3s/containerd`) and CRI-O's OCI `config.json` annotations, or
//!    Docker's `config.v2.json` labels.
//! 3. Else the runtime itself, over its CRI socket ([`super::cri`]), by container ID;
//!    its answer counts only when its pod UID is the cgroup's.
//!
//! Where neither names the pod, the collector asks the kubelet which pod holds the
//! process's GPU ([`super::kubelet`]); nothing is guessed from the process's host
//! name, which is the node's on the host network and `spec.hostname` where that is set.
//!
//! Reading other processes' `/proc/<pid>` needs `CAP_SYS_PTRACE` (root) and the host
//! PID namespace (`hostPID: true` in a DaemonSet).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::cri::CriClient;

/// What the cgroup path of a process says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupInfo {
    /// Pod UID with dashes (`0b4ac0b6-…`), when the process is under `kubepods`.
    pub pod_uid: Option<String>,
    /// 64-hex container ID, when the path names one.
    pub container_id: Option<String>,
}

/// The Kubernetes identity of a process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PodInfo {
    pub pod: Option<String>,
    pub namespace: Option<String>,
    pub container: Option<String>,
}

/// Parses the contents of `/proc/<pid>/cgroup`. The v2 line (`0::…`) is preferred;
/// otherwise the first v1 line that names a pod or a container.
pub fn parse_cgroup(contents: &str) -> CgroupInfo {
    let mut best = CgroupInfo::default();
    for line in contents.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(hierarchy), Some(_controllers), Some(path)) =
            (parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let info = parse_cgroup_path(path);
        let better = (info.pod_uid.is_some() && best.pod_uid.is_none())
            || (info.container_id.is_some() && best.container_id.is_none());
        if hierarchy == "0" && (info.pod_uid.is_some() || info.container_id.is_some()) {
            return info;
        }
        if better {
            best = info;
        }
    }
    best
}

/// Parses one cgroup path (`/kubepods.slice/…/cri-containerd-<id>.scope`).
pub fn parse_cgroup_path(path: &str) -> CgroupInfo {
    let mut info = CgroupInfo::default();
    for component in path.split('/') {
        if let Some(uid) = pod_uid_of(component) {
            info.pod_uid = Some(uid);
        }
        if let Some(id) = container_id_of(component) {
            info.container_id = Some(id);
        }
    }
    info
}

/// `pod<uid>` (cgroupfs) or `kubepods-<qos>-pod<uid_with_underscores>.slice` (systemd).
fn pod_uid_of(component: &str) -> Option<String> {
    let raw = if let Some(slice) = component.strip_suffix(".slice") {
        slice.rsplit_once("-pod")?.1
    } else {
        component.strip_prefix("pod")?
    };
    let uid = raw.replace('_', "-");
    is_uid(&uid).then_some(uid)
}

/// `cri-containerd-<id>.scope`, `crio-<id>.scope`, `docker-<id>.scope`,
/// `containerd-<id>.scope`, or a bare `<id>` (cgroupfs). CRI-O's `crio-conmon-` scope
/// is the monitor, not the container.
fn container_id_of(component: &str) -> Option<String> {
    let id = match component.strip_suffix(".scope") {
        Some(scope) => {
            if scope.starts_with("crio-conmon-") {
                return None;
            }
            [
                "cri-containerd-",
                "crio-",
                "docker-",
                "containerd-",
                "libpod-",
            ]
            .iter()
            .find_map(|prefix| scope.strip_prefix(prefix))?
        }
        None => component,
    };
    is_container_id(id).then(|| id.to_string())
}

fn is_uid(s: &str) -> bool {
    s.len() == 36
        && s.char_indices().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == '-',
            _ => c.is_ascii_hexdigit(),
        })
}

fn is_container_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Reads a runtime's record of a container: the OCI `config.json` annotations of
/// containerd (`io.kubernetes.cri.*`) and CRI-O (`io.kubernetes.pod.*`,
/// `io.kubernetes.container.name`), or the labels of Docker's `config.v2.json`
/// (cri-dockerd, the same `io.kubernetes.*` keys).
pub fn pod_info_from_runtime(host_root: &Path, container_id: &str) -> Option<PodInfo> {
    let candidates = [
        (
            format!(
                "run/containerd/io.containerd.runtime.v2.task/k8s.io/{container_id}/config.json"
            ),
            "/annotations",
        ),
        // K3s runs its own containerd, with its state under /run/k3s.
        (
            format!(
                "run/k3s/containerd/io.containerd.runtime.v2.task/k8s.io/{container_id}/config.json"
            ),
            "/annotations",
        ),
        (
            format!(
                "run/containers/storage/overlay-containers/{container_id}/userdata/config.json"
            ),
            "/annotations",
        ),
        (
            format!("var/lib/docker/containers/{container_id}/config.v2.json"),
            "/Config/Labels",
        ),
    ];
    for (relative, pointer) in candidates {
        let Some(text) = read_bounded(&host_root.join(relative), 4 << 20) else {
            continue;
        };
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let Some(map) = json.pointer(pointer).and_then(|v| v.as_object()) else {
            continue;
        };
        let get = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| map.get(*k).and_then(|v| v.as_str()))
                .filter(|s| !s.is_empty())
                .map(str::to_string)
        };
        let info = PodInfo {
            pod: get(&["io.kubernetes.cri.sandbox-name", "io.kubernetes.pod.name"]),
            namespace: get(&[
                "io.kubernetes.cri.sandbox-namespace",
                "io.kubernetes.pod.namespace",
            ]),
            container: get(&[
                "io.kubernetes.cri.container-name",
                "io.kubernetes.container.name",
            ]),
        };
        if info.pod.is_some() {
            return Some(info);
        }
    }
    None
}

/// Reads a small text file, refusing one larger than `limit` bytes.
fn read_bounded(path: &Path, limit: u64) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    if meta.len() > limit {
        return None;
    }
    std::fs::read_to_string(path).ok()
}

/// The labels of one GPU process.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessLabels {
    /// `/proc/<pid>/comm`; empty when the process is gone or unreadable.
    pub process_name: String,
    pub pod: PodInfo,
}

/// Resolves pids to their labels, caching what a container ID maps to (a container's
/// pod never changes). The cache is bounded and cleared when full.
#[derive(Debug)]
pub struct PodResolver {
    proc_root: PathBuf,
    host_root: PathBuf,
    cri: Option<CriClient>,
    by_container: HashMap<String, PodInfo>,
    /// Containers the runtime did not name (gone, no pod's, another pod UID), and
    /// when it said so: not asked again for [`UNKNOWN_FOR`].
    unknown: HashMap<String, Instant>,
    /// CRI lookups that failed since the collector last asked.
    cri_failures: u64,
    /// Whether the last CRI lookup failed (a change is logged once).
    cri_failing: bool,
    /// A lookup failed in this collection: no more are tried in it, so a runtime that
    /// hangs costs a scrape one timeout, not one per process.
    cri_failed_this_round: bool,
}

const MAX_CACHED_CONTAINERS: usize = 4096;

/// How long a container the runtime did not name is not asked about again.
const UNKNOWN_FOR: Duration = Duration::from_secs(300);

impl PodResolver {
    pub fn new(proc_root: PathBuf, host_root: PathBuf, cri: Option<CriClient>) -> Self {
        Self {
            proc_root,
            host_root,
            cri,
            by_container: HashMap::new(),
            unknown: HashMap::new(),
            cri_failures: 0,
            cri_failing: false,
            cri_failed_this_round: false,
        }
    }

    /// Starts a collection: the runtime may be asked again.
    pub fn begin_collection(&mut self) {
        self.cri_failed_this_round = false;
    }

    /// How many CRI lookups failed since the last call.
    pub fn take_cri_failures(&mut self) -> u64 {
        std::mem::take(&mut self.cri_failures)
    }

    /// The pod of container `id` from the runtime's CRI socket, when its pod UID is
    /// `pod_uid` (the cgroup's).
    fn ask_runtime(&mut self, id: &str, pod_uid: &str) -> Option<PodInfo> {
        let cri = self.cri.as_ref()?;
        let recently_unknown = self
            .unknown
            .get(id)
            .is_some_and(|since| since.elapsed() < UNKNOWN_FOR);
        if self.cri_failed_this_round || recently_unknown {
            return None;
        }
        match cri.container(id) {
            Ok(found) => {
                if self.cri_failing {
                    tracing::info!(socket = %cri.socket().display(), "gpu collector: the container runtime answers again");
                    self.cri_failing = false;
                }
                let named = found.and_then(|found| match found.pod_uid.as_deref() {
                    Some(uid) if uid != pod_uid => {
                        tracing::debug!(
                            container = id,
                            cgroup_uid = pod_uid,
                            runtime_uid = uid,
                            "the runtime's pod for a container is not its cgroup's; not used"
                        );
                        None
                    }
                    _ => Some(found.pod),
                });
                if named.is_none() {
                    if self.unknown.len() >= MAX_CACHED_CONTAINERS {
                        self.unknown.clear();
                    }
                    self.unknown.insert(id.to_string(), Instant::now());
                }
                named
            }
            Err(error) => {
                if !self.cri_failing {
                    tracing::warn!(%error, "gpu collector: cannot ask the container runtime which pod a GPU process is in");
                    self.cri_failing = true;
                }
                self.cri_failures += 1;
                self.cri_failed_this_round = true;
                None
            }
        }
    }

    pub fn resolve(&mut self, pid: u32) -> ProcessLabels {
        let base = self.proc_root.join(pid.to_string());
        let process_name = read_bounded(&base.join("comm"), 4096)
            .map(|s| s.trim_end().to_string())
            .unwrap_or_default();
        let cgroup = read_bounded(&base.join("cgroup"), 1 << 20)
            .map(|s| parse_cgroup(&s))
            .unwrap_or_default();
        let pod = match (&cgroup.pod_uid, &cgroup.container_id) {
            (Some(uid), Some(id)) => match self.by_container.get(id) {
                Some(info) => info.clone(),
                None => {
                    let info = pod_info_from_runtime(&self.host_root, id)
                        .or_else(|| self.ask_runtime(id, uid))
                        .unwrap_or_default();
                    if self.by_container.len() >= MAX_CACHED_CONTAINERS {
                        self.by_container.clear();
                    }
                    // Cache only a complete answer; a half one may be a pod still starting.
                    if info.pod.is_some() && info.namespace.is_some() {
                        self.by_container.insert(id.clone(), info.clone());
                    }
                    info
                }
            },
            _ => PodInfo::default(),
        };
        ProcessLabels { process_name, pod }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UID: &str = "0b4ac0b6-8b2a-4c8e-9a57-3f1a2c9d7e11";
    const CID: &str = "4f3c2b1a0e9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6e5d4c3b";

    #[test]
    fn cgroup_v2_systemd_containerd() {
        let line = format!(
            "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{}.slice/cri-containerd-{CID}.scope\n",
            UID.replace('-', "_")
        );
        let info = parse_cgroup(&line);
        assert_eq!(info.pod_uid.as_deref(), Some(UID));
        assert_eq!(info.container_id.as_deref(), Some(CID));
    }

    #[test]
    fn cgroup_v2_systemd_guaranteed_crio_with_nested_container_dir() {
        let line = format!(
            "0::/kubepods.slice/kubepods-pod{}.slice/crio-{CID}.scope/container\n",
            UID.replace('-', "_")
        );
        let info = parse_cgroup(&line);
        assert_eq!(info.pod_uid.as_deref(), Some(UID));
        assert_eq!(info.container_id.as_deref(), Some(CID));
    }

    #[test]
    fn cgroup_v2_cgroupfs_besteffort() {
        let info = parse_cgroup(&format!("0::/kubepods/besteffort/pod{UID}/{CID}\n"));
        assert_eq!(info.pod_uid.as_deref(), Some(UID));
        assert_eq!(info.container_id.as_deref(), Some(CID));
    }

    #[test]
    fn cgroup_v2_seen_from_a_private_cgroup_namespace() {
        let line = format!(
            "0::/../../kubepods-besteffort-pod{}.slice/cri-containerd-{CID}.scope\n",
            UID.replace('-', "_")
        );
        let info = parse_cgroup(&line);
        assert_eq!(info.pod_uid.as_deref(), Some(UID));
        assert_eq!(info.container_id.as_deref(), Some(CID));
    }

    #[test]
    fn cgroup_v1_cgroupfs_docker() {
        let contents = format!(
            "12:pids:/kubepods/burstable/pod{UID}/{CID}\n\
             11:hugetlb:/kubepods/burstable/pod{UID}/{CID}\n\
             5:cpu,cpuacct:/kubepods/burstable/pod{UID}/{CID}\n\
             1:name=systemd:/kubepods/burstable/pod{UID}/{CID}\n\
             0::/\n"
        );
        let info = parse_cgroup(&contents);
        assert_eq!(info.pod_uid.as_deref(), Some(UID));
        assert_eq!(info.container_id.as_deref(), Some(CID));
    }

    #[test]
    fn cgroup_v1_systemd_docker_scope() {
        let u = UID.replace('-', "_");
        let contents = format!(
            "11:memory:/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice/docker-{CID}.scope\n\
             1:name=systemd:/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{u}.slice/docker-{CID}.scope\n"
        );
        let info = parse_cgroup(&contents);
        assert_eq!(info.pod_uid.as_deref(), Some(UID));
        assert_eq!(info.container_id.as_deref(), Some(CID));
    }

    #[test]
    fn crio_conmon_scope_is_not_the_container() {
        let line = format!(
            "0::/kubepods.slice/kubepods-pod{}.slice/crio-conmon-{CID}.scope\n",
            UID.replace('-', "_")
        );
        let info = parse_cgroup(&line);
        assert_eq!(info.pod_uid.as_deref(), Some(UID));
        assert_eq!(info.container_id, None);
    }

    #[test]
    fn plain_docker_container_has_an_id_but_no_pod() {
        let info = parse_cgroup(&format!("0::/system.slice/docker-{CID}.scope\n"));
        assert_eq!(info.pod_uid, None);
        assert_eq!(info.container_id.as_deref(), Some(CID));
    }

    #[test]
    fn host_process_has_neither() {
        let info = parse_cgroup("0::/user.slice/user-1000.slice/session-3.scope\n");
        assert_eq!(info, CgroupInfo::default());
        let info = parse_cgroup("0::/system.slice/kubelet.service\n");
        assert_eq!(info, CgroupInfo::default());
    }

    #[test]
    fn malformed_lines_are_skipped() {
        assert_eq!(parse_cgroup("garbage\n\n::\n"), CgroupInfo::default());
        // A pod-like name that is not a UID.
        assert_eq!(
            parse_cgroup("0::/kubepods/podnot-a-uid/abc\n"),
            CgroupInfo::default()
        );
    }

    fn write(path: &Path, contents: &[u8]) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, contents).unwrap();
    }

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("odin-gpu-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn resolver_reads_containerd_annotations() {
        let root = temp_dir("containerd");
        let proc_root = root.join("proc");
        let host_root = root.join("host");
        write(&proc_root.join("42/comm"), b"python3\n");
        write(
            &proc_root.join("42/cgroup"),
            format!("0::/kubepods/burstable/pod{UID}/{CID}\n").as_bytes(),
        );
        write(
            &host_root.join(format!(
                "run/containerd/io.containerd.runtime.v2.task/k8s.io/{CID}/config.json"
            )),
            br#"{"ociVersion":"1.1.0","annotations":{
                "io.kubernetes.cri.container-name":"trainer",
                "io.kubernetes.cri.sandbox-name":"train-7d9f",
                "io.kubernetes.cri.sandbox-namespace":"ml"}}"#,
        );
        let mut resolver = PodResolver::new(proc_root, host_root, None);
        let labels = resolver.resolve(42);
        assert_eq!(labels.process_name, "python3");
        assert_eq!(labels.pod.pod.as_deref(), Some("train-7d9f"));
        assert_eq!(labels.pod.namespace.as_deref(), Some("ml"));
        assert_eq!(labels.pod.container.as_deref(), Some("trainer"));
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn resolver_reads_k3s_containerd_under_run_k3s() {
        let root = temp_dir("k3s");
        let proc_root = root.join("proc");
        let host_root = root.join("host");
        write(
            &proc_root.join("43/cgroup"),
            format!("0::/kubepods/besteffort/pod{UID}/{CID}\n").as_bytes(),
        );
        write(
            &host_root.join(format!(
                "run/k3s/containerd/io.containerd.runtime.v2.task/k8s.io/{CID}/config.json"
            )),
            br#"{"annotations":{
                "io.kubernetes.cri.container-name":"infer",
                "io.kubernetes.cri.sandbox-name":"vllm-0",
                "io.kubernetes.cri.sandbox-namespace":"serving"}}"#,
        );
        let mut resolver = PodResolver::new(proc_root, host_root, None);
        let labels = resolver.resolve(43);
        assert_eq!(labels.pod.pod.as_deref(), Some("vllm-0"));
        assert_eq!(labels.pod.namespace.as_deref(), Some("serving"));
        assert_eq!(labels.pod.container.as_deref(), Some("infer"));
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn a_pod_the_runtime_does_not_name_is_not_named_from_its_hostname() {
        let root = temp_dir("view");
        let proc_root = root.join("proc");
        write(&proc_root.join("7/comm"), b"infer\n");
        write(
            &proc_root.join("7/cgroup"),
            format!("0::/kubepods/pod{UID}/{CID}\n").as_bytes(),
        );
        // A `spec.hostname` or the node's name on the host network: not the pod's.
        write(
            &proc_root.join("7/environ"),
            b"PATH=/bin\0HOSTNAME=infer-0\0",
        );
        write(&proc_root.join("7/root/etc/hostname"), b"node-1\n");
        let mut resolver = PodResolver::new(proc_root, root.join("nohost"), None);
        let labels = resolver.resolve(7);
        assert_eq!(labels.process_name, "infer");
        assert_eq!(labels.pod, PodInfo::default());
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn vanished_process_resolves_to_nothing() {
        let root = temp_dir("gone");
        let mut resolver = PodResolver::new(root.join("proc"), root.clone(), None);
        assert_eq!(resolver.resolve(123_456), ProcessLabels::default());
        let _ = std::fs::remove_dir_all(&root);
    }
}
