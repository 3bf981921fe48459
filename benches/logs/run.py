#!/usr/bin/env python3
"""Log ingestion and query benchmark of a running ODIN release build (stdlib only).

Starts `odin run` on a fresh data directory (loopback ports), then:

1. Push: --clients threads push pre-built Promtail requests (logproto.PushRequest,
   protobuf, snappy-framed as literals) of --streams streams x --lines-per-stream
   lines each, as fast as the server answers, until --lines lines are in. Lines look
   like a GPU server's (logfmt, 80-200 bytes, one Xid line in 10,000), times in the
   last hour, one a millisecond per stream. Reported: lines/s, MB/s of line text,
   the server's CPU seconds per million lines (utime+stime from /proc/PID/stat), and
   its resident memory after the push.
2. Queries: each LogQL query of QUERIES over the pushed hour, --repeat times,
   through /loki/api/v1/query_range (limit 100, backward): median and max latency.

Every process it starts runs in a session of its own and is killed on exit.
"""

import argparse
import atexit
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

QUERIES = [
    ("selector", '{job="train"}'),
    ("needle (index)", '{job=~".+"} |= "fallen off the bus"'),
    ("needle (regex)", '{job=~".+"} |~ "fallen off the bus"'),
    ("logfmt + filter", '{job="serve"} | logfmt | duration > 900'),
    ("count_over_time", 'sum by (level) (count_over_time({job=~".+"}[5m]))'),
]


def log(msg):
    print(time.strftime("%H:%M:%S"), msg, file=sys.stderr, flush=True)


def varint(v):
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def field(number, payload):
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def snappy_literals(data):
    """Raw snappy of `data` as literal elements only: valid, uncompressed."""
    out = bytearray(varint(len(data)))
    step = 1 << 16
    for i in range(0, len(data), step):
        chunk = data[i:i + step]
        n = len(chunk) - 1
        # Literal with a 2-byte length (tag 61 << 2).
        out += bytes([61 << 2, n & 0xFF, n >> 8])
        out += chunk
    return bytes(out)


def line(n):
    if n % 10_000 == 4_321:
        return (f'level=error msg="NVRM: Xid (PCI:0000:3b:00): 79, pid={n}, '
                f'GPU has fallen off the bus"')
    return (f'level=info ts=2026-12-06T22:{n // 60 % 60:02}:{n % 60:02}Z caller=step.go:{n % 900} '
            f'msg="step finished" step={n} loss={1.0 / (1.0 + n):.4f} duration={n % 977}ms'
            + " tokens=4096" * (n % 8))


def stream_labels(i):
    job = ["train", "serve", "kubelet", "containerd"][i % 4]
    return f'{{host="gpu-{i // 4 % 25:02}", job="{job}", level="{["info", "warn"][i * 2 // 100 % 2]}"}}'


def build_requests(total, streams, per_stream, start_ns):
    """Requests of streams x per_stream lines; per stream, one line a millisecond."""
    reqs = []
    n = 0
    t_index = 0
    while n < total:
        body = bytearray()
        for s in range(streams):
            entries = bytearray()
            for k in range(per_stream):
                ts = start_ns + (t_index + k) * 1_000_000 + s
                stamp = (varint(1 << 3) + varint(ts // 1_000_000_000)
                         + varint(2 << 3) + varint(ts % 1_000_000_000))
                entries += field(2, field(1, stamp) + field(2, line(n + s * per_stream + k).encode()))
            body += field(1, field(1, stream_labels(s).encode()) + bytes(entries))
        reqs.append(snappy_literals(bytes(body)))
        n += streams * per_stream
        t_index += per_stream
    return reqs


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mb(pid):
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * PAGE_SIZE / 1e6


def http(url, data=None, headers=None, timeout=60):
    req = urllib.request.Request(url, data=data, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, r.read()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--odin", required=True, help="release binary")
    ap.add_argument("--lines", type=int, default=1_000_000)
    ap.add_argument("--streams", type=int, default=100)
    ap.add_argument("--lines-per-stream", type=int, default=10)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--repeat", type=int, default=20)
    args = ap.parse_args()

    data = tempfile.mkdtemp(prefix="odin-logs-bench-")
    atexit.register(shutil.rmtree, data, True)
    # No scrape jobs, no collectors: the server does only what is measured.
    config = os.path.join(data, "empty.yml")
    open(config, "w").close()
    port = free_port()
    proc = subprocess.Popen(
        [args.odin, "run", f"--storage.tsdb.path={os.path.join(data, 'db')}",
         f"--web.listen-address=127.0.0.1:{port}", "--grpc-address=",
         f"--config.file={config}",
         # Loki's default 4 MB/s per tenant would measure the limiter.
         "--logs.ingestion-rate-mb=100000", "--logs.ingestion-burst-size-mb=100000"],
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(data, "odin.log"), "wb"),
        start_new_session=True)
    atexit.register(lambda: os.killpg(proc.pid, signal.SIGKILL))
    base = f"http://127.0.0.1:{port}"
    for _ in range(300):
        try:
            if http(base + "/ready", timeout=1)[0] == 200:
                break
        except OSError:
            time.sleep(0.1)
    else:
        sys.exit("odin did not get ready")

    now_ns = time.time_ns()
    start_ns = now_ns - 3600 * 1_000_000_000
    log(f"building {args.lines} lines of requests")
    reqs = build_requests(args.lines, args.streams, args.lines_per_stream, start_ns)
    text_bytes = sum(len(line(n)) for n in range(0, args.lines, 97)) * 97
    lock = threading.Lock()
    queue = list(range(len(reqs)))
    failures = []

    def client():
        while True:
            with lock:
                if not queue:
                    return
                i = queue.pop(0)
            try:
                code, _ = http(base + "/loki/api/v1/push", reqs[i],
                               {"Content-Type": "application/x-protobuf"})
                if code != 204:
                    failures.append(code)
            except Exception as e:  # noqa: BLE001
                failures.append(str(e))

    cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(args.clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall, cpu = time.monotonic() - t0, cpu_seconds(proc.pid) - cpu0
    if failures:
        sys.exit(f"{len(failures)} pushes failed, first: {failures[0]}")
    pushed = len(reqs) * args.streams * args.lines_per_stream
    print(f"push: {pushed} lines in {wall:.2f} s: {pushed / wall:,.0f} lines/s, "
          f"{text_bytes / wall / 1e6:.1f} MB/s of text; server CPU {cpu:.2f} s "
          f"= {cpu / pushed * 1e6:.2f} s per million lines; RSS {rss_mb(proc.pid):.0f} MB")

    end_ns = now_ns + 60 * 1_000_000_000
    print("| query | median ms | max ms | lines |")
    print("|---|---:|---:|---:|")
    for name, q in QUERIES:
        params = urllib.parse.urlencode({
            "query": q, "start": start_ns, "end": end_ns, "limit": 100,
            "direction": "backward", "step": 60})
        times = []
        found = 0
        for _ in range(args.repeat):
            t = time.monotonic()
            code, body = http(f"{base}/loki/api/v1/query_range?{params}")
            times.append((time.monotonic() - t) * 1000)
            if code != 200:
                sys.exit(f"{q}: {code} {body[:200]}")
            result = json.loads(body)["data"]["result"]
            found = sum(len(r["values"]) for r in result)
        print(f"| `{q}` ({name}) | {statistics.median(times):.1f} | {max(times):.1f} | {found} |")


if __name__ == "__main__":
    main()
