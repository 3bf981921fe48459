//! Three `odin run` processes as one Raft cluster on loopback ports: a write
//! acknowledged by any node is on every node, and the leader dying under load loses
//! no acknowledged sample.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::common::{Odin, TestSeries, encode_write, free_port, poll_until};

/// A cluster of test nodes, each with its own data directory and cluster port (kept
/// across restarts: the peers know the node by it).
struct Cluster {
    dirs: Vec<tempfile::TempDir>,
    cluster_ports: Vec<u16>,
    nodes: Vec<Option<Odin>>,
}

impl Cluster {
    fn start(n: usize) -> Cluster {
        let mut c = Cluster {
            dirs: (0..n).map(|_| tempfile::tempdir().unwrap()).collect(),
            cluster_ports: (0..n).map(|_| free_port()).collect(),
            nodes: (0..n).map(|_| None).collect(),
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
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.nodes[i] = Some(Odin::start(self.dirs[i].path(), &args));
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

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[test]
fn three_nodes_answer_the_same_for_a_write_a_follower_acknowledged() {
    let cluster = Cluster::start(3);
    let leader = cluster.leader(Duration::from_secs(20));
    let follower = (0..3).find(|&i| i != leader).unwrap();

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
    let leader = cluster.leader(Duration::from_secs(20));
    let follower = (0..3).find(|&i| i != leader).unwrap();
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
