#!/usr/bin/env python3
"""Replication cost, failover time and commit latency of an ODIN cluster (issue 15).

Three measurements, on this machine, with the release binary:

1. ingest: the shared harness's remote-write workload (a tsbench dataset, replayed by
   tsbench as the harness does) into one node, then into a three-node cluster on
   loopback ports (written to the leader). Throughput, and server CPU seconds per
   million samples summed over the nodes (from /proc/PID/stat, ingest plus settle).
   Commit latency under that load: the leader's odin_raft_proposal_duration_seconds
   (proposal to applied on the leader, a majority's fsyncs included), p50 and p99
   interpolated in its buckets.
2. failover: a writer sends a small batch every 10 ms, round robin over the nodes it
   believes alive; the leader gets SIGKILL; the time from the kill to the first 2xx
   answered by another node, over --kills kills (the killed node restarts and catches
   up between kills).

Usage:
  benches/cluster/run.py --odin target/release/odin --tsbench TSBENCH --dataset DIR \
      [--kills 20] [--out results.json]
"""

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

CLK = os.sysconf("SC_CLK_TCK")


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def get(url, timeout=5):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


# A remote-write 1.0 request with one series and one sample, snappy-compressed by hand
# (a snappy stream of literals is valid), so that the script needs no packages.
def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def field(num, wire, payload):
    key = varint((num << 3) | wire)
    if wire == 2:
        return key + varint(len(payload)) + payload
    return key + payload


def write_request(name, labels, t_ms, value):
    lbls = [("__name__", name)] + sorted(labels.items())
    ts = b""
    for k, v in lbls:
        ts += field(1, 2, field(1, 2, k.encode()) + field(2, 2, v.encode()))
    sample = field(1, 1, struct.pack("<d", value)) + field(2, 0, varint(t_ms))
    ts += field(2, 2, sample)
    req = field(1, 2, ts)
    return snappy_literals(req)


def snappy_literals(data):
    out = bytearray(varint(len(data)))
    i = 0
    while i < len(data):
        chunk = data[i:i + 60]
        out.append((len(chunk) - 1) << 2)
        out += chunk
        i += len(chunk)
    return bytes(out)


def post_write(base, body, timeout=10):
    req = urllib.request.Request(base + "/api/v1/write", data=body, method="POST", headers={
        "Content-Type": "application/x-protobuf", "Content-Encoding": "snappy",
        "X-Prometheus-Remote-Write-Version": "0.1.0"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code
    except Exception:  # noqa: BLE001 (refused, reset, timeout: not acknowledged)
        return 0


class Node:
    def __init__(self, odin, root, i, peers, cluster_ports, config):
        self.odin, self.i = odin, i
        self.dir = os.path.join(root, f"n{i + 1}")
        self.port = free_port()
        self.cluster_ports, self.peers, self.config = cluster_ports, peers, config
        self.proc = None

    @property
    def base(self):
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        cmd = [self.odin, "run", f"--storage.tsdb.path={self.dir}",
               f"--web.listen-address=127.0.0.1:{self.port}", "--grpc-address=",
               f"--config.file={self.config}", "--web.enable-admin-api"]
        if self.peers:
            cmd += [f"--cluster.node-id={self.i + 1}",
                    f"--cluster.listen-address=127.0.0.1:{self.cluster_ports[self.i]}",
                    f"--cluster.peers={self.peers}"]
        self.log = open(self.dir + ".log", "ab")
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if get(self.base + "/-/ready")[0] == 200:
                    return
            except Exception:  # noqa: BLE001
                pass
            time.sleep(0.05)
        raise SystemExit(f"node {self.i + 1} not ready")

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()
        self.proc = None

    def stop(self):
        if self.proc:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=120)
            self.proc = None

    def status(self):
        try:
            return json.loads(get(self.base + "/api/v1/status/cluster", 2)[1])["data"]
        except Exception:  # noqa: BLE001
            return None

    def metrics(self):
        return get(self.base + "/metrics")[1].decode()


def leader_of(nodes, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        alive = [n for n in nodes if n.proc]
        st = [n.status() for n in alive]
        ids = {s and s["leaderId"] for s in st}
        if len(ids) == 1 and None not in ids:
            lid = ids.pop()
            lead = nodes[lid - 1]
            if lead.proc and (lead.status() or {}).get("role") == "leader":
                return lead
        time.sleep(0.02)
    raise SystemExit("no leader")


def start_set(odin, n, config):
    root = tempfile.mkdtemp(prefix="odin-cluster-bench-")
    ports = [free_port() for _ in range(n)]
    peers = ",".join(f"{i + 1}@127.0.0.1:{p}" for i, p in enumerate(ports)) if n > 1 else ""
    nodes = [Node(odin, root, i, peers, ports, config) for i in range(n)]
    for x in nodes:
        x.start()
    return root, nodes


def histogram(node, name):
    """Cumulative bucket counts of a histogram on node's /metrics, by upper bound."""
    out = {}
    for line in node.metrics().splitlines():
        if line.startswith(name + "_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[float("inf") if le == "+Inf" else float(le)] = float(line.rsplit(" ", 1)[1])
    return out


def histogram_quantiles(before, after):
    """p50 and p99 of what was observed between two readings, interpolated in the
    bucket as Prometheus's histogram_quantile does."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    total = counts[-1] if counts else 0
    res = {"n": int(total)}
    for q in (0.5, 0.99):
        rank = q * total
        lo, prev = 0.0, 0.0
        for b, c in zip(bounds, counts):
            if c >= rank:
                hi = b if b != float("inf") else lo
                frac = (rank - prev) / (c - prev) if c > prev else 0
                res[f"p{int(q * 100)}_ms"] = round((lo + (hi - lo) * frac) * 1000, 2)
                break
            lo, prev = b, c
    return res


def quantiles(xs):
    xs = sorted(xs)
    if not xs:
        return {}
    q = lambda p: xs[min(len(xs) - 1, int(p * len(xs)))]  # noqa: E731
    return {"n": len(xs), "p50_ms": round(q(0.5) * 1000, 2), "p99_ms": round(q(0.99) * 1000, 2),
            "max_ms": round(xs[-1] * 1000, 2)}


def ingest(args, n, config):
    root, nodes = start_set(args.odin, n, config)
    try:
        target = leader_of(nodes) if n > 1 else nodes[0]
        pids = [x.proc.pid for x in nodes]
        before = histogram(target, "odin_raft_proposal_duration_seconds") if n > 1 else None
        c0 = sum(cpu_s(p) for p in pids)
        rp = subprocess.run([args.tsbench, "replay", "--dir", args.dataset, "--url",
                             target.base + "/api/v1/write", "--timeout-s", "1800"],
                            stdout=subprocess.PIPE, check=True)
        rep = json.loads(rp.stdout)
        # Settle: until the nodes' CPU drops (appliers catching up, images).
        prev = sum(cpu_s(p) for p in pids)
        for _ in range(60):
            time.sleep(2)
            c = sum(cpu_s(p) for p in pids)
            if c - prev < 0.1 * n:
                break
            prev = c
        c1 = sum(cpu_s(p) for p in pids)
        acc = rep["samples_accepted"]
        out = {"nodes": n, "samples_accepted": acc, "samples_per_s": rep["samples_per_s"],
               "wall_s": rep["wall_s"], "error_requests": rep["error_requests"],
               "cpu_s_total": round(c1 - c0, 2),
               "cpu_s_per_1M_samples": round((c1 - c0) / acc * 1e6, 3),
               "cpu_s_per_1M_samples_per_replica": round((c1 - c0) / acc * 1e6 / n, 3)}
        if before is not None:
            after = histogram(target, "odin_raft_proposal_duration_seconds")
            out["commit_latency_on_leader"] = histogram_quantiles(before, after)
        log(json.dumps(out))
        return out
    finally:
        for x in nodes:
            x.stop()
        shutil.rmtree(root, ignore_errors=True)


def failover(args, config):
    root, nodes = start_set(args.odin, 3, config)
    try:
        results = []
        acked = [0]
        last_ok = {"t": 0.0, "by": None}
        stop = threading.Event()

        def writer():
            k = 0
            while not stop.is_set():
                alive = [x for x in nodes if x.proc]
                node = alive[k % len(alive)] if alive else None
                k += 1
                if node is None:
                    time.sleep(0.01)
                    continue
                body = write_request("failover", {}, int(time.time() * 1000), k)
                if 200 <= post_write(node.base, body, timeout=6) < 300:
                    acked[0] += 1
                    last_ok["t"], last_ok["by"] = time.time(), node
                time.sleep(0.01)

        th = threading.Thread(target=writer, daemon=True)
        th.start()
        for kill in range(args.kills):
            lead = leader_of(nodes)
            before = acked[0]
            while acked[0] < before + 10:
                time.sleep(0.01)
            t_kill = time.time()
            lead.kill()
            while not (last_ok["t"] > t_kill and last_ok["by"] is not lead):
                if time.time() - t_kill > 30:
                    raise SystemExit("no write acknowledged 30 s after a kill")
                time.sleep(0.002)
            results.append(last_ok["t"] - t_kill)
            log(f"kill {kill + 1}: first 2xx after {results[-1]:.3f} s")
            lead.start()
        stop.set()
        th.join()
        return {"kills": len(results), "p50_s": round(statistics.median(results), 3),
                "max_s": round(max(results), 3), "all_s": [round(x, 3) for x in results]}
    finally:
        for x in nodes:
            x.stop()
        shutil.rmtree(root, ignore_errors=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--odin", required=True)
    p.add_argument("--tsbench", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--kills", type=int, default=20)
    p.add_argument("--skip-ingest", action="store_true")
    p.add_argument("--out")
    args = p.parse_args()
    cfg = tempfile.NamedTemporaryFile("w", suffix=".yml", delete=False)
    cfg.write("global: {}\n")
    cfg.close()
    res = {}
    if not args.skip_ingest:
        res["single"] = ingest(args, 1, cfg.name)
        res["cluster"] = ingest(args, 3, cfg.name)
        res["ratio"] = {
            "throughput_cluster_vs_single": round(res["cluster"]["samples_per_s"] / res["single"]["samples_per_s"], 3),
            "cpu_per_sample_per_replica_vs_single": round(
                res["cluster"]["cpu_s_per_1M_samples_per_replica"] / res["single"]["cpu_s_per_1M_samples"], 3),
        }
    if args.kills:
        res["failover"] = failover(args, cfg.name)
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
