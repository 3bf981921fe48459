//! Three `odin run` processes as one Raft cluster on loopback ports: a write
//! acknowledged by any node is on every node, and the leader dying under load loses
//! no acknowledged sample.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::common::{Odin, TestSeries, encode_write, free_port, now_ms, poll_until};

/// A cluster of test nodes, each with its own data directory and cluster port (kept
/// across restarts: the peers know the node by it).
struct Cluster {
    dirs: Vec<tempfile::TempDir>,
    cluster_ports: Vec<u16>,
    nodes: Vec<Option<Odin>>,
    /// More flags for every node.
    extra: Vec<String>,
}

impl Cluster {
    fn start(n: usize) -> Cluster {
        Self::start_with(n, &[])
    }

    fn start_with(n: usize, extra: &[String]) -> Cluster {
        let mut c = Cluster {
            dirs: (0..n).map(|_| tempfile::tempdir().unwrap()).collect(),
            cluster_ports: (0..n).map(|_| free_port()).collect(),
            nodes: (0..n).map(|_| None).collect(),
            extra: extra.to_vec(),
        };
        for i in 0..n {
            c.start_node(i);
        }
        c
    }

    fn peers(&self) -> String {
        self.cluster_ports
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}@127.0.0.1:{p}", i + 1))
            .collect::<Vec<_>>()
            .join(",")
    }

    fn start_node(&mut self, i: usize) {
        let args = [
            format!("--cluster.node-id={}", i + 1),
            format!(
                "--cluster.listen-address=127.0.0.1:{}",
                self.cluster_ports[i]
            ),
            format!("--cluster.peers={}", self.peers()),
            "--grpc-address=".to_string(),
            "--web.enable-admin-api".to_string(),
        ];
        let args: Vec<&str> = args.iter().chain(&self.extra).map(String::as_str).collect();
        self.nodes[i] = Some(Odin::start(self.dirs[i].path(), &args));
    }

    /// The leader, once the nodes agree on one, and a follower.
    fn leader_and_follower(&self) -> (usize, usize) {
        let leader = self.leader(Duration::from_secs(20));
        let follower = (0..self.nodes.len())
            .find(|&i| i != leader && self.nodes[i].is_some())
            .unwrap();
        (leader, follower)
    }

    fn node(&self, i: usize) -> &Odin {
        self.nodes[i].as_ref().expect("node running")
    }

    fn running(&self) -> impl Iterator<Item = (usize, &Odin)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(|(i, n)| n.as_ref().map(|n| (i, n)))
    }

    fn status(&self, i: usize) -> serde_json::Value {
        let (code, body) = self.node(i).get("/api/v1/status/cluster");
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["data"].clone()
    }

    /// The index of the node every running node names as leader, once they agree.
    fn leader(&self, timeout: Duration) -> usize {
        let mut found = None;
        let agreed = poll_until(timeout, || {
            let ids: Vec<Option<u64>> = self
                .running()
                .map(|(i, _)| self.status(i)["leaderId"].as_u64())
                .collect();
            match ids.first() {
                Some(Some(id)) if ids.iter().all(|x| *x == Some(*id)) => {
                    let i = (*id - 1) as usize;
                    if self.nodes[i].is_some() && self.status(i)["role"] == "leader" {
                        found = Some(i);
                        return true;
                    }
                    false
                }
                _ => false,
            }
        });
        assert!(agreed, "the running nodes do not agree on a leader");
        found.unwrap()
    }
}

/// What `selector` evaluates to on node `n` at every second from `from` to `to`
/// (whole seconds, one sample per second: each sample once), by series.
fn samples(n: &Odin, selector: &str, from: i64, to: i64) -> BTreeMap<String, Vec<(i64, String)>> {
    let q = format!(
        "/api/v1/query_range?query={}&start={}&end={}&step=1",
        urlencode(selector),
        from / 1000,
        to / 1000
    );
    let (code, body) = n.get(&q);
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut out = BTreeMap::new();
    for s in v["data"]["result"].as_array().unwrap() {
        let key = s["metric"].to_string();
        let values = s["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let t = (p[0].as_f64().unwrap() * 1000.0).round() as i64;
                (t, p[1].as_str().unwrap().to_string())
            })
            .collect();
        out.insert(key, values);
    }
    out
}

fn urlencode(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// The timestamps of the raw samples of `selector` on node `n` in the `window_s`
/// seconds before `at_ms` (a range selector: nothing looked back or filled in).
fn raw(n: &Odin, selector: &str, at_ms: i64, window_s: i64) -> BTreeMap<String, Vec<i64>> {
    let q = format!(
        "/api/v1/query?query={}&time={}",
        urlencode(&format!("{selector}[{window_s}s]")),
        at_ms as f64 / 1000.0
    );
    let (code, body) = n.get(&q);
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let mut out = BTreeMap::new();
    for s in v["data"]["result"].as_array().unwrap() {
        let ts: Vec<i64> = s["values"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| (p[0].as_f64().unwrap() * 1000.0).round() as i64)
            .collect();
        out.insert(s["metric"].to_string(), ts);
    }
    out
}

#[test]
fn three_nodes_answer_the_same_for_a_write_a_follower_acknowledged() {
    let cluster = Cluster::start(3);
    let (leader, follower) = cluster.leader_and_follower();

    // 50 series of 20 samples, written to a follower, which forwards to the leader
    // and answers once the quorum committed and it applied the batch itself.
    let base = (now_ms() / 1000 - 60) * 1000;
    let series: Vec<TestSeries> = (0..50)
        .map(|s| {
            let s = s.to_string();
            TestSeries::new(
                &[("__name__", "cluster_test"), ("series", &s)],
                (0..20)
                    .map(|k| (base + k * 1000, (k * 7) as f64 + 0.5))
                    .collect(),
            )
        })
        .collect();
    let (code, body) = cluster.node(follower).write(&series);
    assert!((200..300).contains(&code), "{code} {body}");
    let on = |i: usize| samples(cluster.node(i), "cluster_test", base, base + 19_000);
    let written = on(follower);
    assert_eq!(written.len(), 50, "{written:?}");
    assert!(written.values().all(|v| v.len() == 20));

    // Visible on every node within a second of the acknowledgement.
    let acked = Instant::now();
    for i in 0..3 {
        let seen = poll_until(Duration::from_secs(1), || on(i) == written);
        assert!(
            seen,
            "node {} did not show the write within 1 s of its acknowledgement",
            i + 1
        );
    }
    assert!(acked.elapsed() < Duration::from_secs(3));

    // Each node reports the cluster in Prometheus's envelope.
    for i in 0..3 {
        let s = cluster.status(i);
        assert_eq!(s["nodeId"], (i + 1) as u64);
        let role = if i == leader { "leader" } else { "follower" };
        assert_eq!(s["role"], role, "{s}");
        assert_eq!(s["leaderId"], (leader + 1) as u64);
        assert!(s["term"].as_u64().unwrap() >= 1);
        assert!(s["commitIndex"].as_u64().unwrap() >= s["appliedIndex"].as_u64().unwrap() - 1);
        let members = s["members"].as_array().unwrap();
        assert_eq!(members.len(), 3);
        assert!(members.iter().all(|m| m["voter"] == true));
        assert_eq!(
            members[0]["address"],
            format!("127.0.0.1:{}", cluster.cluster_ports[0])
        );
    }
    let s = cluster.status(leader);
    for m in s["members"].as_array().unwrap() {
        let contact = m["lastContactSeconds"].as_f64().unwrap();
        assert!(contact < 5.0, "{m}");
    }

    // The cluster's self metrics.
    let (_, metrics) = cluster.node(leader).get("/metrics");
    assert!(metrics.contains("odin_raft_is_leader 1"), "{metrics}");
    let (_, metrics) = cluster.node(follower).get("/metrics");
    assert!(metrics.contains("odin_raft_is_leader 0"));
    assert!(metrics.contains("odin_raft_forwarded_writes_total 1"));

    // A bad request is refused with a clear error on any node.
    let (code, body) =
        cluster
            .node(follower)
            .post("/api/v1/write", "application/x-protobuf", b"not snappy");
    assert_eq!(code, 400, "{body}");
}

/// Writes one sample per request with increasing timestamps, trying the nodes in
/// turn, as a remote-write client with several endpoints retries; records what was
/// acknowledged.
struct Writer {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<i64>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Writer {
    fn start(addresses: Arc<Mutex<Vec<String>>>, base: i64) -> Writer {
        let stop = Arc::new(AtomicBool::new(false));
        let acked: Arc<Mutex<Vec<i64>>> = Arc::default();
        let (s, a) = (stop.clone(), acked.clone());
        let thread = std::thread::spawn(move || {
            let agent: ureq::Agent = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(10)))
                .build()
                .into();
            let mut k = 0i64;
            let mut turn = 0usize;
            while !s.load(Ordering::Relaxed) {
                let t = base + k * 10;
                let body = encode_write(&[TestSeries::new(
                    &[("__name__", "cluster_load")],
                    vec![(t, k as f64)],
                )]);
                let targets = addresses.lock().clone();
                let url = format!("{}/api/v1/write", targets[turn % targets.len()]);
                let sent = agent
                    .post(&url)
                    .header("Content-Type", "application/x-protobuf")
                    .header("Content-Encoding", "snappy")
                    .send(&body[..]);
                match sent {
                    Ok(r) if r.status().is_success() => {
                        a.lock().push(t);
                        k += 1;
                    }
                    // Refused or unreachable: not acknowledged; the next node gets
                    // the same sample.
                    _ => {
                        turn += 1;
                        std::thread::sleep(Duration::from_millis(10));
                    }
                }
            }
        });
        Writer {
            stop,
            acked,
            thread: Some(thread),
        }
    }

    fn stop(mut self) -> Vec<i64> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.acked.lock().clone()
    }
}

#[test]
fn killing_the_leader_under_load_ten_times_loses_no_acknowledged_sample() {
    let mut cluster = Cluster::start(3);
    let addresses: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(
        (0..3).map(|i| cluster.node(i).url("")).collect(),
    ));
    // Timestamps 10 ms apart from a minute ago: well inside the head's window.
    let base = now_ms() - 60_000;
    let writer = Writer::start(addresses.clone(), base);
    let mut elections = Vec::new();
    for round in 0..10 {
        let leader = cluster.leader(Duration::from_secs(20));
        let before = writer.acked.lock().len();
        assert!(
            poll_until(Duration::from_secs(10), || writer.acked.lock().len()
                > before + 5),
            "round {round}: writes do not go through"
        );
        cluster.nodes[leader].take().unwrap().kill9();
        let killed = Instant::now();
        let new_leader = cluster.leader(Duration::from_secs(10));
        elections.push(killed.elapsed());
        assert_ne!(new_leader, leader);
        assert!(
            killed.elapsed() < Duration::from_secs(5),
            "round {round}: no new leader within 5 s ({:?})",
            killed.elapsed()
        );
        cluster.start_node(leader);
        addresses.lock()[leader] = cluster.node(leader).url("");
    }
    let acked = writer.stop();
    assert!(acked.len() > 50, "{}", acked.len());
    let end = *acked.last().unwrap();
    // Every node holds every acknowledged sample once the restarted ones caught up.
    let window = (end - base) / 1000 + 2;
    for (i, n) in cluster.running() {
        let mut missing = Vec::new();
        poll_until(Duration::from_secs(20), || {
            let got = raw(n, "cluster_load", end + 1, window);
            let ts: std::collections::HashSet<i64> = got.values().flatten().copied().collect();
            missing = acked.iter().filter(|t| !ts.contains(t)).copied().collect();
            missing.is_empty()
        });
        assert!(
            missing.is_empty(),
            "node {}: {} of {} acknowledged samples missing, e.g. {:?}",
            i + 1,
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(5)]
        );
    }
    eprintln!("elections after a leader kill: {elections:?}");
}

/// `odin cluster …` against a node; returns the exit status's success and the output.
fn cluster_cli(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(crate::common::BIN)
        .arg("cluster")
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn a_fourth_node_joins_as_learner_becomes_a_voter_and_a_node_is_removed() {
    let mut cluster = Cluster::start(3);
    let (leader, follower) = cluster.leader_and_follower();
    let base = (now_ms() / 1000 - 30) * 1000;
    let before = vec![TestSeries::new(
        &[("__name__", "membership_test"), ("phase", "before")],
        (0..10).map(|k| (base + k * 1000, k as f64)).collect(),
    )];
    let (code, body) = cluster.node(leader).write(&before);
    assert!((200..300).contains(&code), "{code} {body}");

    // The fourth node starts knowing the cluster; it is not a member until added.
    cluster.dirs.push(tempfile::tempdir().unwrap());
    cluster.cluster_ports.push(free_port());
    cluster.nodes.push(None);
    cluster.start_node(3);
    let leader_url = cluster.node(leader).url("");
    let address = format!("127.0.0.1:{}", cluster.cluster_ports[3]);

    // Changes go to the leader; a follower says who leads.
    let (ok, out) = cluster_cli(&[
        "add",
        "--url",
        &cluster.node(follower).url(""),
        "--id",
        "4",
        "--address",
        &address,
    ]);
    assert!(!ok && out.contains("does not lead"), "{out}");
    let (ok, out) = cluster_cli(&[
        "add",
        "--url",
        &leader_url,
        "--id",
        "4",
        "--address",
        "nohost",
    ]);
    assert!(!ok && out.contains("no port"), "{out}");

    let (ok, out) = cluster_cli(&[
        "add",
        "--url",
        &leader_url,
        "--id",
        "4",
        "--address",
        &address,
    ]);
    assert!(ok, "{out}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    let members = status["members"].as_array().unwrap();
    assert_eq!(members.len(), 4, "{status}");
    assert!(members.iter().all(|m| m["voter"] == true), "{status}");
    // It caught up with what was written before it joined, and takes writes.
    let on_new = || samples(cluster.node(3), "membership_test", base, base + 9_000);
    assert!(poll_until(Duration::from_secs(5), || on_new().len() == 1));
    let after = vec![TestSeries::new(
        &[("__name__", "membership_test"), ("phase", "after")],
        (0..10).map(|k| (base + k * 1000, k as f64)).collect(),
    )];
    let (code, body) = cluster.node(3).write(&after);
    assert!((200..300).contains(&code), "{code} {body}");
    for i in 0..4 {
        let n = cluster.node(i);
        assert!(poll_until(Duration::from_secs(2), || samples(
            n,
            "membership_test",
            base,
            base + 9_000
        )
        .len()
            == 2));
    }
    let (ok, out) = cluster_cli(&["status", "--url", &cluster.node(3).url("")]);
    assert!(ok, "{out}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(status["nodeId"], 4);
    assert_eq!(status["role"], "follower");

    // A node that is not the leader leaves; an unknown one is refused by name.
    let (ok, out) = cluster_cli(&["remove", "--url", &leader_url, "--id", "9"]);
    assert!(!ok && out.contains("node 9 is not a member"), "{out}");
    let gone = (0..3).find(|&i| i != leader).unwrap();
    let (ok, out) = cluster_cli(&[
        "remove",
        "--url",
        &leader_url,
        "--id",
        &(gone + 1).to_string(),
    ]);
    assert!(ok, "{out}");
    let status: serde_json::Value = serde_json::from_str(&out).unwrap();
    let ids: Vec<u64> = status["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_u64().unwrap())
        .collect();
    assert_eq!(ids.len(), 3, "{status}");
    assert!(!ids.contains(&((gone + 1) as u64)), "{status}");
    // The three members go on committing without it.
    cluster.nodes[gone].take().unwrap().kill9();
    let (code, body) = cluster.node(3).write(&[TestSeries::new(
        &[("__name__", "membership_test"), ("phase", "removed")],
        vec![(base, 1.0)],
    )]);
    assert!((200..300).contains(&code), "{code} {body}");
}

#[test]
fn membership_changes_need_the_admin_api() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let n = Odin::start(
        dir.path(),
        &[
            "--cluster.node-id=1",
            &format!("--cluster.listen-address=127.0.0.1:{port}"),
            &format!("--cluster.peers=1@127.0.0.1:{port}"),
            "--grpc-address=",
        ],
    );
    let (code, body) = n.post(
        "/api/v1/admin/cluster/add?id=2&address=127.0.0.1:1",
        "",
        b"",
    );
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("admin APIs disabled"), "{body}");
    // A single-node cluster leads itself.
    assert!(poll_until(Duration::from_secs(10), || n
        .get("/api/v1/status/cluster")
        .1
        .contains(r#""role":"leader""#)));

    // Without --cluster.* there is no cluster to report.
    let single = tempfile::tempdir().unwrap();
    let n = Odin::start(single.path(), &["--grpc-address="]);
    let (code, body) = n.get("/api/v1/status/cluster");
    assert_eq!(code, 404, "{body}");
    assert!(body.contains("no cluster is configured"), "{body}");
}

#[test]
fn cluster_flags_that_do_not_fit_are_refused_at_start() {
    for (args, says) in [
        (vec!["--cluster.node-id=1"], "listen address"),
        (
            vec![
                "--cluster.node-id=2",
                "--cluster.listen-address=127.0.0.1:1",
                "--cluster.peers=1@127.0.0.1:1",
            ],
            "not among the peers",
        ),
        (
            vec![
                "--cluster.node-id=1",
                "--cluster.listen-address=127.0.0.1:1",
                "--cluster.peers=1@127.0.0.1",
            ],
            "no port",
        ),
        (vec!["--cluster.peers=1@127.0.0.1:1"], "node id"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let out = std::process::Command::new(crate::common::BIN)
            .arg("run")
            .arg(format!("--storage.tsdb.path={}", dir.path().display()))
            .arg("--web.listen-address=127.0.0.1:0")
            .args(&args)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} started");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// A network made outside ODIN for partition tests: each node in its own network
/// namespace, its peer link a veth pair to a bridge in a hub namespace, so taking a
/// node's bridge port down cuts it off from its peers for real. The test reaches each
/// node through a second veth pair from its own namespace (a management link, on
/// another subnet), which a partition leaves up. Deleting the namespaces (on drop)
/// deletes every link with them.
struct Net {
    tag: String,
    nodes: usize,
}

fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .expect("run ip (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Net {
    fn create(nodes: usize) -> Net {
        let tag = format!("{}", std::process::id() % 100_000);
        let net = Net { tag, nodes };
        let hub = net.hub();
        ip(&["netns", "add", &hub]);
        ip(&["-n", &hub, "link", "add", "br0", "type", "bridge"]);
        ip(&["-n", &hub, "link", "set", "br0", "up"]);
        for i in 0..nodes {
            let ns = net.ns(i);
            ip(&["netns", "add", &ns]);
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            // The peer link: node side in the node's namespace, bridge side in the hub.
            let (to_hub, at_hub) = (net.link("p", i), net.link("h", i));
            ip(&[
                "link", "add", &to_hub, "type", "veth", "peer", "name", &at_hub,
            ]);
            ip(&["link", "set", &to_hub, "netns", &ns]);
            ip(&["link", "set", &at_hub, "netns", &hub]);
            ip(&["-n", &hub, "link", "set", &at_hub, "master", "br0"]);
            ip(&["-n", &hub, "link", "set", &at_hub, "up"]);
            let peer_cidr = format!("{}/24", net.peer_ip(i));
            ip(&["-n", &ns, "addr", "add", &peer_cidr, "dev", &to_hub]);
            ip(&["-n", &ns, "link", "set", &to_hub, "up"]);
            // The management link: the test's side stays in its own namespace.
            let (mine, theirs) = (net.link("m", i), net.link("n", i));
            ip(&[
                "link", "add", &mine, "type", "veth", "peer", "name", &theirs,
            ]);
            ip(&["link", "set", &theirs, "netns", &ns]);
            ip(&[
                "addr",
                "add",
                &format!("10.232.{}.1/30", i + 1),
                "dev",
                &mine,
            ]);
            ip(&["link", "set", &mine, "up"]);
            let mgmt_cidr = format!("{}/30", net.mgmt_ip(i));
            ip(&["-n", &ns, "addr", "add", &mgmt_cidr, "dev", &theirs]);
            ip(&["-n", &ns, "link", "set", &theirs, "up"]);
        }
        net
    }

    fn hub(&self) -> String {
        format!("odin-{}-hub", self.tag)
    }

    fn ns(&self, i: usize) -> String {
        format!("odin-{}-n{}", self.tag, i + 1)
    }

    /// An interface name (at most 15 characters).
    fn link(&self, kind: &str, i: usize) -> String {
        format!("o{kind}{}x{}", self.tag, i + 1)
    }

    fn peer_ip(&self, i: usize) -> String {
        format!("10.231.0.{}", i + 1)
    }

    fn mgmt_ip(&self, i: usize) -> String {
        format!("10.232.{}.2", i + 1)
    }

    /// Cuts node `i` off from every peer (its bridge port down), or heals it.
    fn set_cut(&self, i: usize, cut: bool) {
        let state = if cut { "down" } else { "up" };
        ip(&["-n", &self.hub(), "link", "set", &self.link("h", i), state]);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for i in 0..self.nodes {
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", &self.ns(i)])
                .status();
        }
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.hub()])
            .status();
    }
}

/// The node every node in `among` names as leader (and that says it leads), once
/// they agree.
fn agreed_leader(nodes: &[Odin], among: &[usize], timeout: Duration) -> Option<usize> {
    let status = |i: usize| -> serde_json::Value {
        let (_, body) = nodes[i].get("/api/v1/status/cluster");
        serde_json::from_str::<serde_json::Value>(&body).unwrap_or_default()["data"].clone()
    };
    let mut found = None;
    poll_until(timeout, || {
        let ids: Vec<Option<u64>> = among
            .iter()
            .map(|&i| status(i)["leaderId"].as_u64())
            .collect();
        match ids.first() {
            Some(Some(id)) if ids.iter().all(|x| *x == Some(*id)) => {
                let l = (*id - 1) as usize;
                let leads = status(l)["role"] == "leader";
                found = leads.then_some(l);
                leads
            }
            _ => false,
        }
    });
    found
}

#[test]
fn a_partitioned_leader_steps_down_the_majority_goes_on_and_all_agree_after_healing() {
    let net = Net::create(3);
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let peers = (0..3)
        .map(|i| format!("{}@{}:9095", i + 1, net.peer_ip(i)))
        .collect::<Vec<_>>()
        .join(",");
    let nodes: Vec<Odin> = (0..3)
        .map(|i| {
            let bare = dirs[i].path().join("bare.yml");
            std::fs::write(&bare, "global: {}\n").unwrap();
            let args = vec![
                format!(
                    "--storage.tsdb.path={}",
                    dirs[i].path().join("data").display()
                ),
                format!("--config.file={}", bare.display()),
                "--web.listen-address=0.0.0.0:9090".to_string(),
                "--grpc-address=".to_string(),
                format!("--cluster.node-id={}", i + 1),
                format!("--cluster.listen-address={}:9095", net.peer_ip(i)),
                format!("--cluster.peers={peers}"),
            ];
            let ns = net.ns(i);
            let addr = format!("{}:9090", net.mgmt_ip(i)).parse().unwrap();
            Odin::start_under(&["ip", "netns", "exec", &ns], &args, addr)
        })
        .collect();
    let all = [0, 1, 2];
    let old = agreed_leader(&nodes, &all, Duration::from_secs(20)).expect("a leader");
    let base = (now_ms() / 1000 - 120) * 1000;
    let batch = |phase: &str, k: i64| {
        vec![TestSeries::new(
            &[("__name__", "partition_test"), ("phase", phase)],
            vec![(base + k * 1000, k as f64)],
        )]
    };
    let mut acked: Vec<(String, i64)> = Vec::new();
    for k in 0..5 {
        let (code, body) = nodes[old].write(&batch("before", k));
        assert!((200..300).contains(&code), "{code} {body}");
        acked.push(("before".into(), k));
    }

    // Cut the leader off. It can no longer commit: every write it gets is refused
    // (503, saying why), never acknowledged.
    net.set_cut(old, true);
    let cut_at = Instant::now();
    let (code, body) = nodes[old].write(&batch("old_leader", 0));
    assert_eq!(code, 503, "{body}");
    assert!(
        cut_at.elapsed() < Duration::from_secs(8),
        "{:?}",
        cut_at.elapsed()
    );

    // The other two elect a leader among themselves and go on taking writes.
    let rest: Vec<usize> = all.iter().copied().filter(|&i| i != old).collect();
    let new = agreed_leader(&nodes, &rest, Duration::from_secs(10)).expect("a new leader");
    assert_ne!(new, old);
    let follower = rest.iter().copied().find(|&i| i != new).unwrap();
    for (k, to) in (0..5).zip([new, follower].iter().cycle()) {
        let (code, body) = nodes[*to].write(&batch("during", k));
        assert!((200..300).contains(&code), "{code} {body}");
        acked.push(("during".into(), k));
    }
    // The old leader still refuses, and no longer calls itself leader: never two
    // nodes acknowledging writes at once.
    for k in 1..3 {
        let (code, body) = nodes[old].write(&batch("old_leader", k));
        assert_eq!(code, 503, "{body}");
    }
    let (_, body) = nodes[old].get("/api/v1/status/cluster");
    let s: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(s["data"]["role"], "follower", "{s}");
    assert!(s["data"]["leaderId"].is_null(), "{s}");
    let (_, metrics) = nodes[old].get("/metrics");
    assert!(metrics.contains("odin_raft_is_leader 0"));
    let (_, body) = nodes[new].get("/api/v1/status/cluster");
    let t: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        t["data"]["term"].as_u64() > s["data"]["term"].as_u64(),
        "{t} {s}"
    );

    // Healed: all three follow one leader and hold the same data, every
    // acknowledged sample included.
    net.set_cut(old, false);
    agreed_leader(&nodes, &all, Duration::from_secs(20)).expect("one leader after healing");
    let window = 200;
    let at = base + 10_000;
    let want: BTreeMap<String, Vec<i64>> = {
        let mut m: BTreeMap<String, Vec<i64>> = BTreeMap::new();
        for (phase, k) in &acked {
            let key = format!(r#"{{"__name__":"partition_test","phase":"{phase}"}}"#);
            m.entry(key).or_default().push(base + k * 1000);
        }
        m
    };
    let reference = raw(&nodes[new], "partition_test", at, window);
    for (key, ts) in &want {
        let got = reference.get(key).cloned().unwrap_or_default();
        for t in ts {
            assert!(
                got.contains(t),
                "acknowledged sample {key}@{t} missing: {got:?}"
            );
        }
    }
    for i in all {
        let same = poll_until(Duration::from_secs(10), || {
            raw(&nodes[i], "partition_test", at, window) == reference
        });
        assert!(
            same,
            "node {} differs after healing: {:?} vs {:?}",
            i + 1,
            raw(&nodes[i], "partition_test", at, window),
            reference
        );
    }
}

/// The files of every block in `dir`, by block name and file path, with their bytes.
fn block_files(dir: &std::path::Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    for block in crate::common::block_dirs(dir) {
        let name = block.file_name().unwrap().to_string_lossy().to_string();
        let mut stack = vec![block.clone()];
        while let Some(d) = stack.pop() {
            for e in std::fs::read_dir(&d).unwrap().flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else {
                    let rel = p.strip_prefix(&block).unwrap().display().to_string();
                    out.insert(format!("{name}/{rel}"), std::fs::read(&p).unwrap());
                }
            }
        }
    }
    out
}

#[test]
fn every_replica_cuts_byte_identical_blocks() {
    let cluster = Cluster::start(3);
    let (leader, follower) = cluster.leader_and_follower();
    // Seven hours of samples, a minute apart, written to a follower: the leader's
    // maintenance cuts the head into two-hour blocks until it spans no more than
    // three hours (at least two cuts, wherever the hour falls), and every replica
    // writes them from the same entries.
    let now = now_ms();
    let series: Vec<TestSeries> = (0..20)
        .map(|s| {
            let s = s.to_string();
            TestSeries::new(
                &[("__name__", "block_test"), ("series", &s)],
                (0..420)
                    .map(|k| (now - 7 * 3_600_000 + k * 60_000, (k % 17) as f64))
                    .collect(),
            )
        })
        .collect();
    let (code, body) = cluster.node(follower).write(&series);
    assert!((200..300).contains(&code), "{code} {body}");
    let files = |i: usize| block_files(cluster.dirs[i].path());
    let mut reference = BTreeMap::new();
    let settled = poll_until(Duration::from_secs(60), || {
        reference = files(leader);
        let blocks: std::collections::BTreeSet<&str> = reference
            .keys()
            .map(|k| k.split('/').next().unwrap())
            .collect();
        blocks.len() >= 2 && (0..3).all(|i| files(i) == reference)
    });
    let names: Vec<&String> = reference.keys().collect();
    assert!(
        settled,
        "the replicas' blocks differ or were not cut: leader {names:?}, others {:?}",
        (0..3)
            .map(|i| files(i).keys().cloned().collect::<Vec<_>>())
            .collect::<Vec<_>>()
    );
    // Queries on each replica read those blocks and agree.
    let from = (now - 7 * 3_600_000) / 60_000 * 60_000;
    let q = format!(
        "/api/v1/query?query={}&time={}",
        urlencode("count_over_time(block_test[8h])"),
        now / 1000
    );
    let answers: Vec<String> = (0..3).map(|i| cluster.node(i).get(&q).1).collect();
    assert!(
        answers[0].contains(r#""420""#),
        "{} (from {from})",
        answers[0]
    );
    assert!(answers.iter().all(|a| a == &answers[0]), "{answers:?}");
}

/// An exporter on 127.0.0.1 that counts the scrapes it answers.
fn counting_exporter() -> (u16, Arc<std::sync::atomic::AtomicU64>) {
    use std::io::{BufRead, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let scrapes = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = scrapes.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = std::io::BufReader::new(conn.try_clone().unwrap());
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                line.clear();
            }
            let n = counted.fetch_add(1, Ordering::Relaxed) + 1;
            let body = format!("ext_scrapes_total {n}\n");
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (port, scrapes)
}

#[test]
fn only_the_leader_scrapes_targets_and_a_new_leader_takes_them_over() {
    let (port, scrapes) = counting_exporter();
    let config = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        config.path(),
        format!(
            "global:\n  scrape_interval: 500ms\n  scrape_timeout: 400ms\n\
             scrape_configs:\n- job_name: ext\n  static_configs:\n  - targets: ['127.0.0.1:{port}']\n"
        ),
    )
    .unwrap();
    let mut cluster =
        Cluster::start_with(3, &[format!("--config.file={}", config.path().display())]);
    let leader = cluster.leader(Duration::from_secs(20));
    let up = |c: &Cluster, i: usize| -> Vec<i64> {
        raw(c.node(i), "up{job=\"ext\"}", now_ms(), 60)
            .into_values()
            .next()
            .unwrap_or_default()
    };
    assert!(poll_until(Duration::from_secs(10), || up(&cluster, leader)
        .len()
        >= 6));
    // One scraper: every scrape the exporter answered is one `up` sample, and
    // samples are an interval apart, not three scrapers' interleaved.
    let seen = up(&cluster, leader);
    let answered = scrapes.load(Ordering::Relaxed) as usize;
    assert!(
        answered <= seen.len() + 2,
        "{answered} scrapes, {} samples",
        seen.len()
    );
    assert!(
        seen.windows(2).all(|w| w[1] - w[0] >= 400),
        "samples closer than the interval: {seen:?}"
    );
    for i in 0..3 {
        assert!(poll_until(Duration::from_secs(2), || up(&cluster, i).len()
            >= seen.len()));
    }

    // The leader dies; the new one scrapes within an interval of taking over.
    cluster.nodes[leader].take().unwrap().kill9();
    let new = cluster.leader(Duration::from_secs(10));
    let elected = now_ms();
    let resumed = poll_until(Duration::from_secs(3), || {
        up(&cluster, new).last().is_some_and(|&t| t >= elected)
    });
    assert!(
        resumed,
        "the new leader does not scrape: {:?}",
        up(&cluster, new)
    );
    let after: Vec<i64> = up(&cluster, new)
        .into_iter()
        .filter(|&t| t >= elected)
        .collect();
    assert!(
        after[0] - elected <= 1_000,
        "first scrape {} ms after the election",
        after[0] - elected
    );
    assert!(poll_until(Duration::from_secs(5), || up(&cluster, new)
        .iter()
        .filter(|&&t| t >= elected)
        .count()
        >= 3));
    let later = up(&cluster, new);
    assert!(
        later.windows(2).all(|w| w[1] - w[0] >= 400),
        "two scrapers after the leader change: {later:?}"
    );
}

/// A value of node `n`'s `/metrics` (first sample of `name`).
fn metric(n: &Odin, name: &str) -> f64 {
    let (_, text) = n.get("/metrics");
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN)
}

#[test]
fn a_node_away_longer_than_the_log_keeps_catches_up_from_a_snapshot() {
    // No log kept behind an image: whatever an image covers is purged.
    let mut cluster = Cluster::start_with(3, &["--cluster.log-entries-kept=0".to_string()]);
    let leader = cluster.leader(Duration::from_secs(20));
    let away = (0..3).find(|&i| i != leader).unwrap();
    let stayed = (0..3).find(|&i| i != leader && i != away).unwrap();
    let away_applied = cluster.status(away)["appliedIndex"].as_u64().unwrap_or(0);
    cluster.nodes[away].take().unwrap().stop();

    // Five hours of data (the leader cuts blocks from it), then two more bursts of
    // over a megabyte each: each burst's end is followed by a head image, and the
    // second image lets Raft purge the log the first one covers.
    let now = now_ms();
    // `minutes` of samples `step_s` apart, ending now, for 200 series.
    // (One request: a head cut between two would refuse the older samples.)
    let burst = |c: &Cluster, name: &str, minutes: i64, step_s: i64| {
        let series: Vec<TestSeries> = (0..200)
            .map(|s| {
                let s = s.to_string();
                TestSeries::new(
                    &[("__name__", name), ("series", &s)],
                    (0..minutes * 60 / step_s)
                        .map(|k| (now - minutes * 60_000 + k * step_s * 1000, (k % 13) as f64))
                        .collect(),
                )
            })
            .collect();
        let (code, body) = c.node(leader).write(&series);
        assert!((200..300).contains(&code), "{code} {body}");
    };
    burst(&cluster, "snap_blocks", 300, 60);
    // The names written: the loop below stops as soon as the log is purged.
    let mut names = vec!["snap_blocks".to_string()];
    let purged = |c: &Cluster| metric(c.node(leader), "odin_raft_purged_index");
    for round in 0..3 {
        if purged(&cluster) > away_applied as f64 {
            break;
        }
        // The end of a burst: an image once the log has been idle for a while.
        std::thread::sleep(Duration::from_secs(3));
        // The head's bound is at least an hour old after the cuts: these fit.
        let name = format!("snap_more_{round}");
        burst(&cluster, &name, 30, 1);
        names.push(name);
    }
    assert!(
        poll_until(Duration::from_secs(30), || purged(&cluster)
            > away_applied as f64),
        "the leader did not purge its log past node {}'s position ({away_applied}): purged {}",
        away + 1,
        purged(&cluster)
    );

    // Back: the leader no longer has the entries it lacks, so it sends a snapshot:
    // the blocks and the head.
    cluster.start_node(away);
    // Per series: how many samples, their sum, first and last timestamp.
    let at = now + 1;
    let summary = |n: &Odin| {
        let mut all = BTreeMap::new();
        for (f, name) in ["count_over_time", "sum_over_time", "timestamp"]
            .into_iter()
            .flat_map(|f| names.iter().map(move |n| (f, n)))
        {
            let q = match f {
                "timestamp" => format!("timestamp({name})"),
                f => format!("{f}({name}[6h])"),
            };
            let path = format!(
                "/api/v1/query?query={}&time={}",
                urlencode(&q),
                at as f64 / 1000.0
            );
            let (code, body) = n.get(&path);
            assert_eq!(code, 200, "{body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            for r in v["data"]["result"].as_array().unwrap() {
                all.insert(
                    format!("{f} {name} {}", r["metric"]),
                    r["value"][1].to_string(),
                );
            }
        }
        all
    };
    let reference = summary(cluster.node(stayed));
    // Three figures for each of the 200 series of every burst.
    assert_eq!(reference.len(), 3 * 200 * names.len(), "{names:?}");
    let caught_up = poll_until(Duration::from_secs(30), || {
        summary(cluster.node(away)) == reference
    });
    if !caught_up {
        let got = summary(cluster.node(away));
        let differ: Vec<(&String, &String, Option<&String>)> = reference
            .iter()
            .filter(|(k, v)| got.get(*k) != Some(*v))
            .map(|(k, v)| (k, v, got.get(k)))
            .take(5)
            .collect();
        let probe = |n: &Odin| {
            let mut out = Vec::new();
            for m in [
                "odin_tsdb_head_series",
                "odin_tsdb_head_min_time",
                "odin_tsdb_head_max_time",
                "odin_tsdb_blocks_loaded",
            ] {
                out.push(format!("{m}={}", metric(n, m)));
            }
            for w in ["1h", "2h", "3h", "4h", "5h", "6h"] {
                let q = format!("count_over_time(snap_blocks{{series=\"0\"}}[{w}])");
                let path = format!(
                    "/api/v1/query?query={}&time={}",
                    urlencode(&q),
                    at as f64 / 1000.0
                );
                out.push(format!("{w}: {}", n.get(&path).1));
            }
            out
        };
        panic!(
            "node {} did not catch up: {} answers of {}; differ: {differ:?}\naway {:?}\nstayed {:?}",
            away + 1,
            got.len(),
            reference.len(),
            probe(cluster.node(away)),
            probe(cluster.node(stayed))
        );
    }
    assert!(metric(cluster.node(away), "odin_raft_snapshot_index") > away_applied as f64);
    // It holds the leader's blocks, byte for byte.
    let blocks = |i: usize| block_files(cluster.dirs[i].path());
    assert!(poll_until(Duration::from_secs(20), || {
        let b = blocks(leader);
        !b.is_empty() && blocks(away) == b
    }));
    // And it goes on applying what comes next.
    let (code, body) = cluster.node(stayed).write(&[TestSeries::new(
        &[("__name__", "snap_after")],
        vec![(now, 1.0)],
    )]);
    assert!((200..300).contains(&code), "{code} {body}");
    assert!(poll_until(Duration::from_secs(2), || {
        raw(cluster.node(away), "snap_after", at, 60).len() == 1
    }));
}

#[test]
fn only_the_leader_uploads_and_a_new_leader_neither_uploads_twice_nor_skips() {
    let tmp = tempfile::tempdir().unwrap();
    let bucket = tmp.path().join("bucket");
    let config = tmp.path().join("odin.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  external_labels: {{cluster: c1}}\n\
             storage:\n  object_store:\n    type: FILESYSTEM\n    config:\n      directory: {}\n",
            bucket.display()
        ),
    )
    .unwrap();
    let mut cluster = Cluster::start_with(
        3,
        &[
            format!("--config.file={}", config.display()),
            "--shipper.upload-interval=200ms".to_string(),
        ],
    );
    let leader = cluster.leader(Duration::from_secs(20));
    let now = now_ms();
    // Nine hours: the leader cuts the head into blocks, which every replica writes.
    let write = |c: &Cluster, to: usize, from_h: i64, to_h: i64| {
        let series: Vec<TestSeries> = (0..20)
            .map(|s| {
                let s = s.to_string();
                TestSeries::new(
                    &[("__name__", "ship_test"), ("series", &s)],
                    (from_h * 60..to_h * 60)
                        .map(|k| (now - 9 * 3_600_000 + k * 60_000, k as f64))
                        .collect(),
                )
            })
            .collect();
        let (code, body) = c.node(to).write(&series);
        assert!((200..300).contains(&code), "{code} {body}");
    };
    write(&cluster, leader, 0, 5);
    let bucket_blocks = || crate::shipper::fs_bucket_blocks(&bucket);
    assert!(
        poll_until(Duration::from_secs(30), || !bucket_blocks().is_empty()),
        "nothing shipped"
    );

    // The leader dies; the new one ships what the first had not.
    cluster.nodes[leader].take().unwrap().kill9();
    let new = cluster.leader(Duration::from_secs(10));
    write(&cluster, new, 5, 9);
    // Each local block with the blocks it holds: itself, or for a block compaction
    // merged locally, the level-1 blocks it came from (those are what ships, as the
    // Thanos sidecar ships; the bucket's own compactor merges there).
    let local = |i: usize| -> Vec<(String, Vec<String>)> {
        crate::common::block_dirs(cluster.dirs[i].path())
            .iter()
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().to_string();
                let meta: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(p.join("meta.json")).unwrap()).unwrap();
                let sources = meta["compaction"]["sources"]
                    .as_array()
                    .map(|a| a.iter().map(|s| s.as_str().unwrap().to_string()).collect())
                    .unwrap_or_default();
                (name, sources)
            })
            .collect()
    };
    let shipped = |blocks: &[(String, Vec<String>)]| {
        let bucket = bucket_blocks();
        blocks.iter().all(|(name, sources)| {
            bucket.contains(name)
                || (!sources.is_empty() && sources.iter().all(|s| bucket.contains(s)))
        })
    };
    let shipped_all = poll_until(Duration::from_secs(30), || {
        let l = local(new);
        let held: usize = l.iter().map(|(_, s)| s.len().max(1)).sum();
        held >= 3 && shipped(&l)
    });
    assert!(
        shipped_all,
        "local {:?}, bucket {:?}",
        local(new),
        bucket_blocks()
    );
    // Nothing in the bucket twice: one block per time range.
    let metas: Vec<(i64, i64)> = bucket_blocks()
        .iter()
        .map(|id| {
            let m: serde_json::Value =
                serde_json::from_slice(&std::fs::read(bucket.join(id).join("meta.json")).unwrap())
                    .unwrap();
            (
                m["minTime"].as_i64().unwrap(),
                m["maxTime"].as_i64().unwrap(),
            )
        })
        .collect();
    let mut ranges = metas.clone();
    ranges.sort();
    ranges.dedup();
    assert_eq!(
        ranges.len(),
        metas.len(),
        "a range twice in the bucket: {metas:?}"
    );
    // Each block once (names are derived from the content, so a second upload would
    // be the same name), every replica with the same blocks.
    let survivors: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    for &i in &survivors {
        assert!(poll_until(Duration::from_secs(10), || block_files(
            cluster.dirs[i].path()
        ) == block_files(
            cluster.dirs[new].path()
        )));
    }
    // Followers never upload: they find the blocks in the bucket.
    let follower = survivors.iter().copied().find(|&i| i != new).unwrap();
    assert_eq!(
        metric(cluster.node(follower), "odin_shipper_uploads_total"),
        0.0
    );
    assert!(poll_until(Duration::from_secs(10), || metric(
        cluster.node(follower),
        "odin_shipper_blocks_pending"
    ) == 0.0));
    let uploads = metric(cluster.node(new), "odin_shipper_uploads_total");
    assert!(uploads >= 1.0, "{uploads}");

    // Log segments ship the same way: a window of lines five days ago, sealed by a
    // line three hours later, is written out by every replica and uploaded once, by
    // the leader; the follower finds it in the bucket and counts it shipped.
    const S: i64 = 1_000_000_000;
    const WINDOW: i64 = 2 * 3600 * S;
    let base = (now * 1_000_000 - 5 * 24 * 3600 * S).div_euclid(WINDOW) * WINDOW;
    let entries: Vec<crate::loki::Entry<'_>> = (0..50)
        .map(|i| (base + i * S, format!("line {i}"), Vec::new()))
        .collect();
    let sealing = vec![(base + 3 * 3600 * S, "later".to_string(), Vec::new())];
    for body in [
        crate::loki::promtail_request(&[("{job=\"x\"}", entries)]),
        crate::loki::promtail_request(&[("{job=\"x\"}", sealing)]),
    ] {
        let (code, text) = crate::loki::push(
            cluster.node(follower),
            None,
            "application/x-protobuf",
            None,
            &body,
        );
        assert_eq!(code, 204, "{text}");
    }
    // A tenant's folder of segments lists as the bucket's top level of blocks does.
    let segments = || -> Vec<String> {
        crate::shipper::fs_bucket_blocks(&bucket.join("logs/fake"))
            .into_iter()
            .collect()
    };
    assert!(
        poll_until(Duration::from_secs(30), || segments().len() == 1),
        "{:?}",
        segments()
    );
    let state_has = |i: usize, ulid: &str| {
        std::fs::read_to_string(cluster.dirs[i].path().join("thanos.shipper.json"))
            .is_ok_and(|s| s.contains(ulid))
    };
    let ulid = segments()[0].clone();
    for &i in &survivors {
        assert!(
            poll_until(Duration::from_secs(30), || state_has(i, &ulid)),
            "node {i} does not count {ulid} shipped"
        );
    }
    assert!(
        cluster.dirs[follower]
            .path()
            .join("logs/fake")
            .join(&ulid)
            .exists()
    );
    assert_eq!(
        metric(cluster.node(new), "odin_shipper_log_segment_uploads_total"),
        1.0
    );
    assert_eq!(
        metric(
            cluster.node(follower),
            "odin_shipper_log_segment_uploads_total"
        ),
        0.0
    );
}

/// `odin certs ARGS --dir=DIR`, which must succeed.
fn odin_certs(dir: &std::path::Path, args: &[&str]) {
    let out = std::process::Command::new(crate::common::BIN)
        .args(["certs"])
        .args(args)
        .arg(format!("--dir={}", dir.display()))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "odin certs {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Peers talk mutual TLS (`odin.cluster_tls`) with certificates from `odin certs`:
/// two nodes with certificates from the cluster's CA form the cluster; a third with
/// a certificate from another CA is refused by both, so it never hears of a leader
/// nor receives a write.
#[test]
fn peers_need_a_certificate_from_the_cluster_ca() {
    let dir = tempfile::tempdir().unwrap();
    let certs = |folder: &str, args: &[&str]| odin_certs(&dir.path().join(folder), args);
    certs("cluster", &["ca"]);
    certs("cluster", &["node", "--name=peer", "--host=127.0.0.1"]);
    certs("elsewhere", &["ca"]);
    certs("elsewhere", &["node", "--name=peer", "--host=127.0.0.1"]);
    let web = |folder: &str| {
        let path = dir.path().join(folder).join("web.yml");
        std::fs::write(
            &path,
            "odin:\n  cluster_tls:\n    cert_file: peer.crt\n    key_file: peer.key\n    ca_file: ca.crt\n",
        )
        .unwrap();
        format!("--web.config.file={}", path.display())
    };
    let member = web("cluster");
    let stranger = web("elsewhere");
    let mut c = Cluster {
        dirs: (0..3).map(|_| tempfile::tempdir().unwrap()).collect(),
        cluster_ports: (0..3).map(|_| free_port()).collect(),
        nodes: (0..3).map(|_| None).collect(),
        extra: vec![member.clone()],
    };
    c.start_node(0);
    c.start_node(1);
    c.extra = vec![stranger];
    c.start_node(2);
    // The members agree on a leader among themselves and commit a write.
    let members = Cluster {
        dirs: Vec::new(),
        cluster_ports: Vec::new(),
        nodes: vec![c.nodes[0].take(), c.nodes[1].take()],
        extra: Vec::new(),
    };
    let leader = members.leader(Duration::from_secs(20));
    let now = now_ms();
    let (status, body) = members
        .node(leader)
        .write(&[TestSeries::new(&[("__name__", "mtls")], vec![(now, 1.0)])]);
    assert_eq!(status, 204, "{body}");
    // The stranger knows no leader and holds nothing, however long it waits.
    std::thread::sleep(Duration::from_secs(2));
    let stranger_status = c.status(2);
    assert!(stranger_status["leaderId"].is_null(), "{stranger_status}");
    assert!(raw(c.node(2), "mtls", now_ms(), 60).is_empty());
    let seen = raw(members.node(1 - leader), "mtls", now_ms(), 60);
    assert_eq!(seen.len(), 1, "the other member holds the write");
}

/// The cluster's certificates rotate without a restart: the CA is replaced (first
/// both CAs trusted, then the new one's certificates, then the new CA alone), and a
/// follower that restarts afterwards (it trusts the new CA only) catches up from
/// the leader, which could not reach it with its old client certificate.
#[test]
fn cluster_certificates_rotate_without_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let certs = |folder: &str, args: &[&str]| odin_certs(&dir.path().join(folder), args);
    for folder in ["old", "new"] {
        certs(folder, &["ca"]);
        certs(folder, &["node", "--name=peer", "--host=127.0.0.1"]);
    }
    let live = dir.path().join("live");
    std::fs::create_dir(&live).unwrap();
    let file =
        |folder: &str, name: &str| std::fs::read(dir.path().join(folder).join(name)).unwrap();
    // Replaced as a tool would: a new file renamed over the old one.
    let put = |name: &str, bytes: &[u8]| {
        let tmp = live.join(format!("{name}.tmp"));
        std::fs::write(&tmp, bytes).unwrap();
        std::fs::rename(&tmp, live.join(name)).unwrap();
    };
    put("ca.crt", &file("old", "ca.crt"));
    put("peer.crt", &file("old", "peer.crt"));
    put("peer.key", &file("old", "peer.key"));
    let web = live.join("web.yml");
    std::fs::write(
        &web,
        "odin:\n  cluster_tls:\n    cert_file: peer.crt\n    key_file: peer.key\n    ca_file: ca.crt\n",
    )
    .unwrap();
    let mut c = Cluster::start_with(3, &[format!("--web.config.file={}", web.display())]);
    let leader = c.leader(Duration::from_secs(20));
    let write = |c: &Cluster, name: &str| {
        let (status, body) = c.node(leader).write(&[TestSeries::new(
            &[("__name__", name)],
            vec![(now_ms(), 1.0)],
        )]);
        assert_eq!(status, 204, "{name}: {body}");
    };
    write(&c, "before_rotation");
    // Files are checked every second; each step waits a little more than that.
    let settle = || std::thread::sleep(Duration::from_millis(2500));
    let mut both = file("old", "ca.crt");
    both.extend(file("new", "ca.crt"));
    put("ca.crt", &both);
    settle();
    put("peer.key", &file("new", "peer.key"));
    put("peer.crt", &file("new", "peer.crt"));
    settle();
    put("ca.crt", &file("new", "ca.crt"));
    settle();
    write(&c, "after_rotation");
    // A follower restarts: it knows only the new CA, so the leader reaches it only
    // with its new certificate.
    let follower = (0..3).find(|&i| i != leader).unwrap();
    c.nodes[follower].take().unwrap().stop();
    write(&c, "while_away");
    c.start_node(follower);
    assert!(
        poll_until(Duration::from_secs(20), || raw(
            c.node(follower),
            "while_away",
            now_ms(),
            120
        )
        .len()
            == 1),
        "the restarted follower never caught up: the leader did not reconnect with its new certificate"
    );
}

/// Issue 17: log lines go through the same Raft log as samples. Lines pushed to a
/// follower are readable on every node, sealed windows are written out on every
/// replica, and killing the leader loses no acknowledged line.
#[test]
fn logs_pushed_to_a_follower_are_on_every_node_and_survive_a_leader_kill() {
    use crate::loki::{lines, promtail_request, push, texts};
    let mut cluster = Cluster::start(3);
    let (leader, follower) = cluster.leader_and_follower();
    let old = (now_ms() - 5 * 3_600_000) * 1_000_000;
    let now = (now_ms() - 60_000) * 1_000_000;
    // An old window (sealed once the new line arrives) and a new one.
    let body = promtail_request(&[(r#"{job="old"}"#, vec![(old, "old line".into(), vec![])])]);
    assert_eq!(
        push(
            cluster.node(follower),
            None,
            "application/x-protobuf",
            None,
            &body
        )
        .0,
        204
    );
    let body = promtail_request(&[(
        r#"{job="new"}"#,
        (0..20)
            .map(|i| (now + i, format!("new line {i}"), vec![]))
            .collect(),
    )]);
    assert_eq!(
        push(
            cluster.node(follower),
            None,
            "application/x-protobuf",
            None,
            &body
        )
        .0,
        204
    );
    let all = |n: &Odin| {
        let start = ((now_ms() - 6 * 3_600_000) * 1_000_000).to_string();
        let mut t: Vec<String> = texts(&lines(
            n,
            None,
            r#"{job=~".+"}"#,
            &[("start", start.as_str()), ("limit", "1000")],
        ))
        .into_iter()
        .map(str::to_string)
        .collect();
        t.sort();
        t
    };
    let want = all(cluster.node(follower));
    assert_eq!(want.len(), 21, "{want:?}");
    for i in 0..3 {
        assert!(
            poll_until(Duration::from_secs(2), || all(cluster.node(i)) == want),
            "node {} lacks lines",
            i + 1
        );
        // Every replica writes the sealed window out itself.
        let tenant_dir = cluster.dirs[i].path().join("logs").join("fake");
        assert!(
            poll_until(Duration::from_secs(20), || std::fs::read_dir(&tenant_dir)
                .map(|d| d.flatten().any(|e| e.path().join("meta.json").exists()))
                .unwrap_or(false)),
            "node {} wrote no segment",
            i + 1
        );
    }
    // The leader dies; what was acknowledged stays, and pushes go on.
    cluster.nodes[leader].take().unwrap().kill9();
    let new_leader = cluster.leader(Duration::from_secs(20));
    let body = promtail_request(&[(
        r#"{job="new"}"#,
        vec![(now + 100, "after the kill".into(), vec![])],
    )]);
    let survivor = (0..3).find(|&i| i != leader && i != new_leader).unwrap();
    assert_eq!(
        push(
            cluster.node(survivor),
            None,
            "application/x-protobuf",
            None,
            &body
        )
        .0,
        204
    );
    let mut want = want;
    want.push("after the kill".into());
    want.sort();
    for i in [new_leader, survivor] {
        assert!(
            poll_until(Duration::from_secs(2), || all(cluster.node(i)) == want),
            "node {} lost lines: {:?}",
            i + 1,
            all(cluster.node(i))
        );
    }
}

/// Summed over its label sets: a counter of node `n`'s `/metrics`.
fn counter_sum(n: &Odin, name: &str) -> f64 {
    let (_, text) = n.get("/metrics");
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[test]
fn only_the_leader_evaluates_rules_and_a_new_leader_takes_over() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(
        tmp.path().join("rules.yml"),
        "groups:\n  - name: c\n    interval: 1s\n    rules:\n      - record: cluster:rule_input:sum\n        expr: sum(rule_input)\n",
    )
    .unwrap();
    let config = tmp.path().join("odin.yml");
    std::fs::write(&config, "rule_files: [rules.yml]\n").unwrap();
    let mut cluster = Cluster::start_with(3, &[format!("--config.file={}", config.display())]);
    let leader = cluster.leader(Duration::from_secs(20));
    let (code, body) = cluster.node(leader).write(&[TestSeries::new(
        &[("__name__", "rule_input"), ("i", "1")],
        vec![(now_ms(), 3.0)],
    )]);
    assert!((200..300).contains(&code), "{code} {body}");
    let recorded = |n: &Odin| {
        let (_, body) = n.get("/api/v1/query?query=cluster:rule_input:sum");
        body.contains(r#""value":["#) && body.contains(r#","3"]"#)
    };
    for (i, n) in cluster.running() {
        assert!(
            poll_until(Duration::from_secs(20), || recorded(n)),
            "node {i} has no recorded series"
        );
    }
    let evaluations = |n: &Odin| counter_sum(n, "prometheus_rule_evaluations_total");
    assert!(evaluations(cluster.node(leader)) > 0.0);
    for (i, n) in cluster.running() {
        if i != leader {
            assert_eq!(evaluations(n), 0.0, "follower {i} evaluated");
        }
    }
    // The leader dies: the new one evaluates from then on.
    cluster.nodes[leader].take().unwrap().kill9();
    let new = cluster.leader(Duration::from_secs(10));
    assert!(
        poll_until(Duration::from_secs(20), || evaluations(cluster.node(new))
            > 0.0),
        "the new leader does not evaluate"
    );
    let other = (0..3).find(|&i| i != leader && i != new).unwrap();
    assert_eq!(evaluations(cluster.node(other)), 0.0);
}

/// The leader dies while an alert is pending: the new leader takes the alert's
/// `for` clock from the replicated ALERTS_FOR_STATE series, so the alert fires at
/// the time it would have fired on the old leader, and Alertmanager hears of it once.
#[test]
fn a_pending_alert_keeps_its_for_clock_across_a_leader_failover() {
    use crate::alerting::{Webhook, require_alertmanager, start_alertmanager};
    require_alertmanager();
    let tmp = tempfile::tempdir().unwrap();
    let webhook = Webhook::start();
    let am_port = free_port();
    let _am = start_alertmanager(tmp.path(), am_port, &webhook);
    const FOR_S: i64 = 15;
    std::fs::write(
        tmp.path().join("alerts.yml"),
        format!("groups:\n  - name: c\n    interval: 1s\n    rules:\n      - alert: Pressure\n        expr: pressure > 5\n        for: {FOR_S}s\n"),
    )
    .unwrap();
    let config = tmp.path().join("odin.yml");
    std::fs::write(
        &config,
        format!("rule_files: [alerts.yml]\nalerting:\n  alertmanagers:\n    - static_configs: [{{targets: ['127.0.0.1:{am_port}']}}]\n"),
    )
    .unwrap();
    let mut cluster = Cluster::start_with(
        3,
        &[
            format!("--config.file={}", config.display()),
            "--rules.alert.resend-delay=1s".to_string(),
        ],
    );
    let leader = cluster.leader(Duration::from_secs(20));
    let (code, body) = cluster.node(leader).write(&[TestSeries::new(
        &[("__name__", "pressure"), ("tank", "1")],
        vec![(now_ms(), 9.0)],
    )]);
    assert!((200..300).contains(&code), "{code} {body}");
    // The alert as a node lists it: (state, activeAt in Unix seconds).
    let listed = |n: &Odin| -> Option<(String, i64)> {
        let (_, body) = n.get("/api/v1/alerts");
        let v: serde_json::Value = serde_json::from_str(&body).ok()?;
        let a = v["data"]["alerts"].get(0)?;
        let at = chrono::DateTime::parse_from_rfc3339(a["activeAt"].as_str()?).ok()?;
        Some((a["state"].as_str()?.to_string(), at.timestamp()))
    };
    let mut pending = None;
    assert!(
        poll_until(Duration::from_secs(20), || {
            pending = listed(cluster.node(leader)).filter(|(s, _)| s == "pending");
            pending.is_some()
        }),
        "the alert never became pending on the leader"
    );
    let (_, active_at) = pending.unwrap();
    // The pending state is replicated (ALERTS_FOR_STATE) before the leader goes.
    let for_state = |n: &Odin| {
        n.get("/api/v1/query?query=ALERTS_FOR_STATE")
            .1
            .contains(&format!(",\"{active_at}\"]"))
    };
    for (i, n) in cluster.running() {
        assert!(
            poll_until(Duration::from_secs(10), || for_state(n)),
            "node {i} has no ALERTS_FOR_STATE"
        );
    }
    let killed_at = now_ms() / 1000;
    assert!(
        killed_at < active_at + FOR_S,
        "too slow: the alert already fired"
    );
    cluster.nodes[leader].take().unwrap().kill9();
    let new = cluster.leader(Duration::from_secs(20));
    let elected_at = now_ms() / 1000;
    // The new leader holds the alert with the old activeAt, and it fires.
    assert!(
        poll_until(Duration::from_secs(30), || listed(cluster.node(new))
            .is_some_and(|(s, _)| s == "firing")),
        "the alert never fired on the new leader: {:?}",
        listed(cluster.node(new))
    );
    assert_eq!(listed(cluster.node(new)).unwrap().1, active_at);
    assert!(
        poll_until(Duration::from_secs(30), || !webhook
            .with_status("firing")
            .is_empty()),
        "Alertmanager was not notified"
    );
    let firing = webhook.with_status("firing");
    let starts_at =
        chrono::DateTime::parse_from_rfc3339(firing[0]["alerts"][0]["startsAt"].as_str().unwrap())
            .unwrap()
            .timestamp();
    // It fired when its `for` ran out (or, had the election taken longer, once the
    // new leader restored it, after its second evaluation), not `for` after the
    // takeover.
    assert!(starts_at >= active_at + FOR_S, "fired early: {starts_at}");
    assert!(
        starts_at <= (active_at + FOR_S).max(elected_at + 2) + 5,
        "fired late: activeAt {active_at}, fired {starts_at}, leader killed at {killed_at}, new one seen at {elected_at}"
    );
    // Once: no second notification while the new leader re-sends it every second.
    assert!(!poll_until(Duration::from_secs(3), || webhook
        .with_status("firing")
        .len()
        > 1));
}
