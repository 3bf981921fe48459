#!/usr/bin/env python3
"""Restart benchmark: time from a SIGKILL to ready and to every series queryable.

For each server given: start it on an empty data dir, remote-write the shared harness
dataset into it (`tsbench replay`, as ../shared/bench/run.sh does), note the answer of
`count({__name__=~".+"})` at the dataset's end, SIGKILL it (right after the last write
was acknowledged, or --kill-after seconds later), start it again on the same dir and
measure, from the new process's start:

  ready_s   first HTTP 200 from /-/ready (polled every 20 ms)
  full_s    first time the count query returns the full count again

Usage (from the repository root):

  benches/restart/run.py --dataset /tmp/odin-bench/datasets/s100000_h2_b2000_c4_j2_seed42 \\
      --server prometheus --server odin=target/release/odin --repeat 3 --out results.json

`--server odin=PATH` runs an ODIN binary (label it: `--server before=/path/odin`);
`--server prometheus` runs Prometheus 2.42 (`prometheus` on $PATH) with the harness's
flags. Generate a 1M-series dataset with
`../shared/bench/run.sh --target custom --series 1000000 --hours 0.5 ...` (or
`tsbench gen`, see ../shared/bench/README.md).
"""

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request

TSBENCH = os.environ.get("TSBENCH", "/tmp/odin-bench/target/release/tsbench")
QUERY = 'count({__name__=~".+"})'


def log(*a):
    print(time.strftime("%H:%M:%S"), *a, file=sys.stderr, flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url, timeout=5):
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except Exception:  # noqa: connection refused while starting
        return 0, b""


def du(path):
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.path.getsize(os.path.join(root, f))
            except OSError:
                pass
    return total


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")


def command(kind, binary, datadir, port, work):
    if kind == "prometheus":
        cfg = os.path.join(work, "prometheus.yml")
        with open(cfg, "w") as f:
            f.write("global:\n  scrape_interval: 15s\nscrape_configs: []\n")
        return [binary, f"--config.file={cfg}", f"--storage.tsdb.path={datadir}",
                f"--web.listen-address=127.0.0.1:{port}", "--web.enable-remote-write-receiver",
                "--storage.tsdb.retention.time=30d", "--log.level=info"]
    cfg = os.path.join(work, "odin.yml")
    with open(cfg, "w") as f:
        f.write("global: {}\n")
    return [binary, "run", f"--storage.tsdb.path={datadir}", f"--web.listen-address=127.0.0.1:{port}",
            f"--config.file={cfg}"]


def count(base, at_s):
    q = urllib.parse.urlencode({"query": QUERY, "time": f"{at_s:.3f}"})
    code, body = get(f"{base}/api/v1/query?{q}", timeout=60)
    if code != 200:
        return None
    res = json.loads(body)["data"]["result"]
    return int(float(res[0]["value"][1])) if res else 0


def run_one(name, kind, binary, dataset, meta, args):
    work = tempfile.mkdtemp(prefix=f"restart-{name}-", dir=args.work_dir)
    datadir = os.path.join(work, "data")
    os.makedirs(datadir)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = command(kind, binary, datadir, port, work)
    out = {"server": name, "cmd": cmd}
    logf = open(os.path.join(work, "server.log"), "w")

    def start():
        p = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             start_new_session=True, cwd=work)
        return p, time.time()

    try:
        proc, t0 = start()
        while get(base + "/-/ready")[0] != 200:
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited; see {work}/server.log")
            time.sleep(0.2)
        log(f"[{name}] ingesting {dataset}")
        c0, t_ing = cpu_s(proc.pid), time.time()
        rp = subprocess.run([TSBENCH, "replay", "--dir", dataset, "--url", base + "/api/v1/write",
                             "--timeout-s", "3000", "--max-lag-ms", "300000"],
                            stdout=subprocess.PIPE, check=True)
        rep = json.loads(rp.stdout)
        out["ingest_s"] = round(time.time() - t_ing, 1)
        out["ingest_cpu_s"] = round(cpu_s(proc.pid) - c0, 1)
        out["samples_accepted"] = rep.get("samples_accepted")
        at_s = meta["end_ms"] / 1000
        expected = count(base, at_s)
        out["expected_count"] = expected
        if args.kill_after:
            time.sleep(args.kill_after)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        out["data_dir_bytes"] = du(datadir)
        out["wal_bytes"] = du(os.path.join(datadir, "wal"))
        out["chunks_head_bytes"] = du(os.path.join(datadir, "chunks_head"))
        log(f"[{name}] killed after ingest; count was {expected}; restarting")

        proc, t0 = start()
        ready = full = None
        deadline = t0 + args.timeout
        while time.time() < deadline and (ready is None or full is None):
            if proc.poll() is not None:
                raise RuntimeError(f"{name} exited on restart; see {work}/server.log")
            if ready is None and get(base + "/-/ready", timeout=1)[0] == 200:
                ready = time.time() - t0
            if ready is not None and full is None:
                n = count(base, at_s)
                if n is not None and n >= expected:
                    full = time.time() - t0
                    break
            time.sleep(0.02)
        out["ready_s"] = round(ready, 3) if ready is not None else None
        out["full_s"] = round(full, 3) if full is not None else None
        out["restart_cpu_s"] = round(cpu_s(proc.pid), 2)
        log(f"[{name}] ready {out['ready_s']} s, all {expected} series queryable {out['full_s']} s")
        os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=300)
        except subprocess.TimeoutExpired:
            proc.kill()
    finally:
        logf.close()
        if not args.keep_data:
            shutil.rmtree(work, ignore_errors=True)
        else:
            out["work_dir"] = work
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--server", action="append", required=True,
                    help="prometheus[=BIN] or NAME=PATH-TO-ODIN (repeatable)")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--kill-after", type=float, default=0, help="seconds between the last write and SIGKILL")
    ap.add_argument("--timeout", type=float, default=900, help="give up on a restart after this many seconds")
    ap.add_argument("--work-dir", default=None)
    ap.add_argument("--keep-data", action="store_true")
    ap.add_argument("--out", default=None, help="append JSON lines here")
    args = ap.parse_args()
    with open(os.path.join(args.dataset, "meta.json")) as f:
        meta = json.load(f)
    results = []
    for rep in range(args.repeat):
        for spec in args.server:
            name, _, binary = spec.partition("=")
            kind = "prometheus" if name == "prometheus" else "odin"
            binary = binary or shutil.which("prometheus") or "/usr/bin/prometheus"
            r = run_one(name, kind, binary, args.dataset, meta, args)
            r.update({"repeat": rep + 1, "series": meta["series"], "hours": meta["hours"],
                      "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")})
            results.append(r)
            print(json.dumps(r), flush=True)
            if args.out:
                with open(args.out, "a") as f:
                    f.write(json.dumps(r) + "\n")
    print("\n| server | repeat | ready s | all series queryable s | WAL at kill MiB |", file=sys.stderr)
    print("| --- | ---: | ---: | ---: | ---: |", file=sys.stderr)
    for r in results:
        print(f"| {r['server']} | {r['repeat']} | {r['ready_s']} | {r['full_s']} | "
              f"{r['wal_bytes'] / 2**20:.0f} |", file=sys.stderr)


if __name__ == "__main__":
    main()
