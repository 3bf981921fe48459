#!/usr/bin/env python3
"""Rule evaluation cost, ODIN against Prometheus 2.42, side by side (issue 18).

Both servers get the same rule file (by default 1,000 rules in 10 groups: 800
recording rules aggregating rates and increases, 200 alerting rules with `for`) and
the same remote-written data (by default 100,000 counter series, a sample every 15 s
from 6 minutes back to several minutes ahead, all written before the measurement, so
that nothing but rule evaluation runs while it is measured). Then, over the same
window, each server's CPU seconds (utime + stime from /proc/PID/stat) and rule
evaluations (prometheus_rule_evaluations_total) are read: the figure is CPU seconds
per evaluation round of all rules, and ODIN's over Prometheus's.

Both run at once on this machine, so their evaluations meet the same clock and the
same noise; with more work than cores, evaluations fall behind (counted as missed
iterations), which the per-round figure does not hide.

Usage:
  benches/rules/run.py --odin target/release/odin [--prometheus /usr/bin/prometheus] \
      [--series 100000] [--rules 1000] [--interval 15] [--measure 180] [--out results.json]
"""

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
# The remote-write encoding, /proc readers and HTTP helpers of the cluster bench.
_spec = importlib.util.spec_from_file_location(
    "cluster_bench", os.path.join(HERE, "..", "cluster", "run.py"))
cb = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cb)

METRICS = 100  # counter names; series are spread over them evenly


def rule_file(rules):
    """Groups of 100 rules; rule i reads counter i % METRICS."""
    lines = ["groups:"]
    per_group = 100
    for g in range((rules + per_group - 1) // per_group):
        lines += [f"  - name: bench-{g}", "    rules:"]
        for i in range(g * per_group, min(rules, (g + 1) * per_group)):
            k = i % METRICS
            c = f"bench_counter_{k}_total"
            kind = i % 5
            if kind == 0:
                lines += [f"      - record: job:bench_{i}:rate5m",
                          f"        expr: sum by (job) (rate({c}[5m]))"]
            elif kind == 1:
                lines += [f"      - record: job:bench_{i}:rate1m",
                          f"        expr: sum by (job) (rate({c}[1m]))"]
            elif kind == 2:
                lines += [f"      - record: job:bench_{i}:increase5m_max",
                          f"        expr: max by (job) (increase({c}[5m]))"]
            elif kind == 3:
                lines += [f"      - record: job:bench_{i}:busy",
                          f"        expr: count by (job) (rate({c}[5m]) > 1)"]
            else:
                lines += [f"      - alert: BenchHot{i}",
                          f"        expr: rate({c}[5m]) > 1.9",
                          "        for: 1m",
                          "        labels: {severity: warning}",
                          "        annotations:",
                          "          summary: '{{ $labels.instance }} at {{ $value | humanize }}/s'"]
    return "\n".join(lines) + "\n"


def series_rate(k, j):
    """Each series' constant rate, 0.5 to 2.0 per second (about 5% above 1.9)."""
    return 0.5 + ((k * 7919 + j * 104729) % 1000) / 666.0


def write_request(series_samples):
    """One remote-write request: [(metric, labels, [(t_ms, v), …]), …]."""
    body = b""
    for name, labels, samples in series_samples:
        ts = b""
        for key, val in [("__name__", name)] + sorted(labels.items()):
            ts += cb.field(1, 2, cb.field(1, 2, key.encode()) + cb.field(2, 2, val.encode()))
        for t, v in samples:
            ts += cb.field(2, 2, cb.field(1, 1, cb.struct.pack("<d", v)) + cb.field(2, 0, cb.varint(t)))
        body += cb.field(1, 2, ts)
    return cb.snappy_literals(body)


def ingest(bases, series, start_ms, end_ms, step_ms=15_000, per_request=200):
    per_metric = series // METRICS
    batch = []
    sent = 0
    for k in range(METRICS):
        for j in range(per_metric):
            rate = series_rate(k, j)
            samples = [(t, rate * (t - start_ms) / 1000.0) for t in range(start_ms, end_ms, step_ms)]
            batch.append((f"bench_counter_{k}_total",
                          {"instance": f"host-{j}", "job": f"job-{j % 10}"}, samples))
            if len(batch) == per_request:
                body = write_request(batch)
                for base in bases:
                    status = cb.post_write(base, body, timeout=120)
                    if status // 100 != 2:
                        sys.exit(f"remote write to {base} answered {status}")
                sent += len(batch)
                batch = []
        if k % 10 == 9:
            cb.log(f"ingested {sent} series")
    if batch:
        body = write_request(batch)
        for base in bases:
            cb.post_write(base, body, timeout=120)


def metric_sum(base, name):
    _, text = cb.get(base + "/metrics", timeout=30)
    total = 0.0
    for line in text.decode().splitlines():
        if line.startswith(name) and (len(line) == len(name) or line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def wait_ready(base, proc, what):
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"{what} exited with {proc.returncode}")
        try:
            if cb.get(base + "/-/ready", timeout=2)[0] == 200:
                return
        except Exception:  # noqa: BLE001 (not listening yet)
            pass
        time.sleep(0.2)
    sys.exit(f"{what} not ready")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--odin", required=True)
    ap.add_argument("--prometheus", default="/usr/bin/prometheus")
    ap.add_argument("--series", type=int, default=100_000)
    ap.add_argument("--rules", type=int, default=1000)
    ap.add_argument("--interval", type=int, default=15, help="evaluation interval, s")
    ap.add_argument("--measure", type=int, default=180, help="measured window, s")
    ap.add_argument("--out")
    args = ap.parse_args()

    root = tempfile.mkdtemp(prefix="odin-rules-bench-")
    try:
        with open(os.path.join(root, "rules.yml"), "w") as f:
            f.write(rule_file(args.rules))
        config = os.path.join(root, "config.yml")
        with open(config, "w") as f:
            f.write(f"global:\n  evaluation_interval: {args.interval}s\n"
                    f"rule_files: ['{os.path.join(root, 'rules.yml')}']\n")
        ports = {"prometheus": cb.free_port(), "odin": cb.free_port()}
        procs = {
            "prometheus": subprocess.Popen(
                [args.prometheus, f"--config.file={config}",
                 f"--storage.tsdb.path={root}/prom", f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
                 "--web.enable-remote-write-receiver", "--log.level=warn"],
                stdout=subprocess.DEVNULL, stderr=open(os.path.join(root, "prom.log"), "w")),
            "odin": subprocess.Popen(
                [args.odin, "run", f"--config.file={config}", f"--storage.tsdb.path={root}/odin",
                 f"--web.listen-address=127.0.0.1:{ports['odin']}", "--grpc-address=",
                 "--log.level=warn"],
                stdout=subprocess.DEVNULL, stderr=open(os.path.join(root, "odin.log"), "w")),
        }
        bases = {k: f"http://127.0.0.1:{p}" for k, p in ports.items()}
        for k in procs:
            wait_ready(bases[k], procs[k], k)
        now = int(time.time() * 1000) // 15_000 * 15_000
        # Ahead far enough for the whole measurement (ODIN takes samples up to 10
        # minutes in the future by default).
        end = now + min(9 * 60_000, (args.measure + 4 * args.interval + 120) * 1000)
        cb.log(f"writing {args.series} series, {(end - now + 360_000) // 15_000} samples each, to both")
        ingest(list(bases.values()), args.series, now - 360_000, end)
        # One whole interval after the writes, so that the window holds evaluations only.
        time.sleep(args.interval + 2)
        before = {k: (cb.cpu_s(procs[k].pid), metric_sum(bases[k], "prometheus_rule_evaluations_total"),
                      metric_sum(bases[k], "prometheus_rule_group_iterations_missed_total")) for k in procs}
        cb.log(f"measuring {args.measure} s of evaluations")
        time.sleep(args.measure)
        after = {k: (cb.cpu_s(procs[k].pid), metric_sum(bases[k], "prometheus_rule_evaluations_total"),
                     metric_sum(bases[k], "prometheus_rule_group_iterations_missed_total")) for k in procs}
        result = {"series": args.series, "rules": args.rules, "interval_s": args.interval,
                  "measured_s": args.measure}
        for k in procs:
            cpu = after[k][0] - before[k][0]
            evaluations = after[k][1] - before[k][1]
            rounds = evaluations / args.rules
            result[k] = {
                "cpu_s": round(cpu, 2),
                "rule_evaluations": int(evaluations),
                "rounds": round(rounds, 2),
                "cpu_s_per_round": round(cpu / rounds, 4) if rounds else None,
                "iterations_missed": int(after[k][2] - before[k][2]),
                "rss_mb": round(rss_mb(procs[k].pid), 1),
                "recorded_series": None,
                "alerts_firing": None,
            }
            _, body = cb.get(bases[k] + "/api/v1/query?query=count(%7B__name__%3D~%22job%3Abench_.*%22%7D)", timeout=60)
            v = json.loads(body)["data"]["result"]
            result[k]["recorded_series"] = int(float(v[0]["value"][1])) if v else 0
            _, body = cb.get(bases[k] + "/api/v1/query?query=count(ALERTS%7Balertstate%3D%22firing%22%7D)", timeout=60)
            v = json.loads(body)["data"]["result"]
            result[k]["alerts_firing"] = int(float(v[0]["value"][1])) if v else 0
        p, o = result["prometheus"]["cpu_s_per_round"], result["odin"]["cpu_s_per_round"]
        result["odin_over_prometheus"] = round(o / p, 3) if p and o else None
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(timeout=60)
        print(json.dumps(result, indent=2))
        if args.out:
            with open(args.out, "w") as f:
                json.dump(result, f, indent=2)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
