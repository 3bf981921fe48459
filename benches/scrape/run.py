#!/usr/bin/env python3
"""Scrape benchmarks: ODIN against Prometheus 2.42 (stdlib only).

Part (a), "1,000 targets": a fake exporter (a child process of this script, one
asyncio loop listening on N loopback ports) serves N node_exporter-sized pages; the
same scrape config (one job, N static targets, 15 s) is run by Prometheus, then by
ODIN, one after the other. For each: warm-up, then a measured window of --minutes;
CPU seconds from /proc/PID/stat (utime+stime, all threads), RSS sampled from
/proc/PID/status, samples appended from the server's own TSDB counter, series stored
from `count({__name__=~".+"})`.

Part (b), "embedded default": ODIN with no --config.file (self + node + GPU when
NVML loads) beside Prometheus scraping itself and a node_exporter at 15 s, all
concurrently for --default-minutes; RSS and CPU % of a core (CPU s / wall s) of
ODIN against Prometheus + node_exporter (the sum of both processes).

Every process it starts runs in a session of its own and is killed (by its id) on
exit, on Ctrl-C and on SIGTERM. See README.md next to this file.
"""

import argparse
import asyncio
import atexit
import gzip
import json
import math
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
import zlib

CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")

# --------------------------------------------------------------------------------------
# Process bookkeeping
# --------------------------------------------------------------------------------------

_STARTED = []  # Popen objects, each the leader of its own session


def log(msg):
    print(time.strftime("%H:%M:%S"), msg, file=sys.stderr, flush=True)


def start(cmd, logfile, env=None):
    """Starts cmd in a new session (so its group id is its pid), logs to logfile."""
    out = open(logfile, "ab")
    p = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                         stdin=subprocess.DEVNULL, start_new_session=True, env=env)
    out.close()
    _STARTED.append(p)
    log(f"started pid {p.pid}: {' '.join(cmd[:3])}{' ...' if len(cmd) > 3 else ''}")
    return p


def stop(p, grace=120):
    """SIGTERM to the process's own group, SIGKILL after `grace` seconds."""
    if p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            p.wait(grace)
        except subprocess.TimeoutExpired:
            log(f"pid {p.pid} ignored SIGTERM for {grace}s: SIGKILL")
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait()
    # Anything left in its group (it had none of ours, but be thorough).
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if p in _STARTED:
        _STARTED.remove(p)


def cleanup():
    for p in list(_STARTED):
        stop(p, grace=20)


def _on_signal(signum, _frame):
    log(f"signal {signum}: cleaning up")
    cleanup()
    sys.exit(128 + signum)


# --------------------------------------------------------------------------------------
# /proc measurements
# --------------------------------------------------------------------------------------

def cpu_seconds(pid):
    """utime + stime of the whole process (all threads, living and exited)."""
    with open(f"/proc/{pid}/stat") as f:
        s = f.read()
    fields = s[s.rindex(")") + 2:].split()
    # fields[0] is field 3 (state); utime is field 14, stime field 15.
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def mem_kib(pid):
    """(VmRSS, VmHWM) in KiB."""
    rss = hwm = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm = int(line.split()[1])
    return rss, hwm


def machine_busy():
    """(busy jiffies, total jiffies) over all CPUs, from /proc/stat."""
    with open("/proc/stat") as f:
        parts = f.readline().split()[1:]
    v = [int(x) for x in parts[:8]]
    idle = v[3] + v[4]
    return sum(v) - idle, sum(v)


def loadavg():
    with open("/proc/loadavg") as f:
        return " ".join(f.read().split()[:3])


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------------------
# HTTP helpers
# --------------------------------------------------------------------------------------

def http_get(url, timeout=30):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.status, r.read()


def wait_ready(base, proc, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{base}: process exited with {proc.returncode}")
        try:
            st, _ = http_get(base + "/-/ready", timeout=5)
            if st == 200:
                return
        except Exception:
            pass
        time.sleep(1)
    raise RuntimeError(f"{base} not ready after {timeout}s")


def query(base, q, timeout=600):
    url = base + "/api/v1/query?" + urllib.parse.urlencode({"query": q})
    st, body = http_get(url, timeout=timeout)
    doc = json.loads(body)
    if doc.get("status") != "success":
        raise RuntimeError(f"query {q!r}: {doc}")
    return doc["data"]


def query_scalar(base, q, timeout=600):
    """The value of a one-element vector (None when empty or on error)."""
    try:
        d = query(base, q, timeout)
    except Exception as e:  # noqa: BLE001 - report, do not abort the run
        log(f"query {q!r} on {base} failed: {e}")
        return None
    r = d.get("result")
    if d.get("resultType") == "scalar":
        return float(r[1])
    if not r:
        return None
    return float(r[0]["value"][1])


def query_vector(base, q, timeout=600):
    try:
        d = query(base, q, timeout)
    except Exception as e:  # noqa: BLE001
        log(f"query {q!r} on {base} failed: {e}")
        return []
    return [(x["metric"], float(x["value"][1])) for x in d.get("result", [])]


_APPENDED_RE = re.compile(
    r"^(prometheus|odin)_tsdb_head_samples_appended(_total)?(\{[^}]*\})?\s+(\S+)", re.M)


def samples_appended(base):
    """The server's own counter of samples appended to its head (all types summed)."""
    try:
        _, body = http_get(base + "/metrics", timeout=30)
    except Exception as e:  # noqa: BLE001
        log(f"{base}/metrics failed: {e}")
        return None
    vals = [float(m.group(4)) for m in _APPENDED_RE.finditer(body.decode("utf-8", "replace"))]
    return sum(vals) if vals else None


# --------------------------------------------------------------------------------------
# The fake exporter
# --------------------------------------------------------------------------------------

_SUFFIXES = ("_total", "_sum", "_count", "_bucket", "_created", "_info")


def _family(name, types):
    if name in types:
        return name
    for suf in _SUFFIXES:
        if name.endswith(suf) and name[: -len(suf)] in types:
            return name[: -len(suf)]
    return name


def _h(s):
    return zlib.crc32(s.encode())


def amplify(page, series_target):
    """Widens a real node_exporter page to about `series_target` series, the way a
    bigger machine widens it: more CPUs (copies of the cpu="0" lines), more disks and
    NICs (copies of the lines of the first block device and first non-loopback
    interface). Each copy sits next to its template, so families stay contiguous."""
    lines = page.splitlines()
    samples = [l for l in lines if l and not l.startswith("#")]
    cpu_lines = [l for l in samples if 'cpu="0"' in l]
    n_cpu_now = len({m for l in samples for m in re.findall(r'cpu="(\d+)"', l)}) or 1
    devs = {}
    for l in samples:
        m = re.search(r'device="([^"]+)"', l)
        if m:
            devs.setdefault(m.group(1), 0)
            devs[m.group(1)] += 1
    disk = next((d for d in ("nvme0n1", "sda", "vda", "xvda") if d in devs), None)
    nic = next((d for d in sorted(devs) if re.match(r"^(eth|en|ens|eno|enp)\w*$", d)), None)
    extra_disks = 3 if disk else 0
    extra_nics = 3 if nic else 0
    base = len(samples) - len(cpu_lines) * n_cpu_now
    base += extra_disks * devs.get(disk, 0) + extra_nics * devs.get(nic, 0)
    n_cpu = max(n_cpu_now, round((series_target - base) / max(len(cpu_lines), 1)))
    out = []
    for l in lines:
        if l.startswith("#") or not l:
            out.append(l)
            continue
        m = re.search(r'cpu="(\d+)"', l)
        if m and cpu_lines:
            if m.group(1) == "0":
                out.extend(l.replace('cpu="0"', f'cpu="{c}"') for c in range(n_cpu))
            continue
        out.append(l)
        if disk and f'device="{disk}"' in l:
            out.extend(l.replace(f'device="{disk}"', f'device="{disk}x{k}"')
                       for k in range(extra_disks))
        if nic and f'device="{nic}"' in l:
            out.extend(l.replace(f'device="{nic}"', f'device="{nic}x{k}"')
                       for k in range(extra_nics))
    text = "\n".join(out) + "\n"
    info = {"cpus": n_cpu, "disks": 1 + extra_disks if disk else 0,
            "nics": 1 + extra_nics if nic else 0,
            "series": sum(1 for l in out if l and not l.startswith("#"))}
    return text, info


class PageModel:
    """A page as literal text plus value slots. Counters rise with time, about 40% of
    the non-trivial gauges move, the rest (info metrics, sizes, 0/1 flags) stay put;
    each of `groups` value streams starts from its own offset."""

    def __init__(self, text, groups):
        self.groups = groups
        types = {}
        for l in text.splitlines():
            if l.startswith("# TYPE "):
                _, _, name, kind = l.split(None, 3)
                types[name] = kind.strip()
        self.parts = []  # bytes, or tuple(prefix, v0, mode, rate, amp, phase, is_int)
        lit = []
        for l in text.splitlines():
            if l.startswith("#") or not l:
                lit.append(l + "\n")
                continue
            i = l.rindex(" ")
            prefix, vs = l[: i + 1], l[i + 1:]
            name = re.match(r"[a-zA-Z_:][a-zA-Z0-9_:]*", l).group(0)
            kind = types.get(_family(name, types), "untyped")
            try:
                v0 = float(vs)
            except ValueError:
                lit.append(l + "\n")
                continue
            h = _h(prefix)
            is_int = math.isfinite(v0) and v0 == int(v0) and abs(v0) < 2 ** 53
            counter = kind == "counter" or (kind in ("summary", "histogram") and not
                                            'quantile="' in prefix)
            if not math.isfinite(v0):
                mode = "const"
            elif counter:
                # Real hosts: most error/drop counters sit at zero.
                mode = "counter" if (v0 != 0 or h % 5 == 0) else "const"
            elif v0 in (0.0, 1.0) or name.endswith("_info") or h % 10 >= 4:
                mode = "const"
            else:
                mode = "gauge"
            if mode == "const":
                lit.append(l + "\n")
                continue
            if lit:
                self.parts.append("".join(lit).encode())
                lit = []
            rate = (abs(v0) * 2e-5 * (1 + (h % 97) / 30.0)) if v0 else 1 + h % 7
            if is_int:
                rate = max(1.0, round(rate))
            amp = abs(v0) * 0.02 * (1 + (h % 13) / 13.0)
            self.parts.append((prefix.encode(), v0, mode, rate, amp, (h % 628) / 100.0, is_int))
        if lit:
            self.parts.append("".join(lit).encode())

    def render(self, group, step):
        out = []
        g = 1.0 + 0.031 * group
        for p in self.parts:
            if isinstance(p, bytes):
                out.append(p)
                continue
            prefix, v0, mode, rate, amp, phase, is_int = p
            if mode == "counter":
                v = v0 * g + rate * (step + 37 * group)
            else:
                v = v0 * g + amp * math.sin(step * 0.05 + phase + group)
            out.append(prefix)
            out.append((str(int(round(v))) if is_int else repr(round(v, 6))).encode())
            out.append(b"\n")
        return b"".join(out)


def fake_exporter_main(args):
    """`run.py fake-exporter`: serves the page on ports base..base+n-1 until killed."""
    with open(args.page) as f:
        model = PageModel(f.read(), args.groups)
    cache = {}
    stats = {"requests": 0, "gzip": 0, "bytes": 0}
    t_origin = time.time()  # counters start near the real page's values

    def body(idx, gz):
        step = int((time.time() - t_origin) // args.step_seconds)
        key = (idx % args.groups, step, gz)
        b = cache.get(key)
        if b is None:
            if len(cache) > 8 * args.groups:
                cache.clear()
            raw = cache.get((key[0], step, False))
            if raw is None:
                raw = model.render(key[0], step)
                cache[(key[0], step, False)] = raw
            b = gzip.compress(raw, 6) if gz else raw
            cache[key] = b
        return b

    async def handle(reader, writer, idx):
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                first, _, rest = head.partition(b"\r\n")
                hl = rest.lower()
                gz = b"accept-encoding:" in hl and b"gzip" in hl.split(b"accept-encoding:", 1)[1].split(b"\r\n", 1)[0]
                close = b"connection: close" in hl
                if first.split(b" ")[1].split(b"?")[0] != b"/metrics":
                    msg = b"not found\n"
                    writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: %d\r\n\r\n%s" % (len(msg), msg))
                else:
                    b = body(idx, gz)
                    stats["requests"] += 1
                    stats["gzip"] += gz
                    stats["bytes"] += len(b)
                    writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; "
                                 b"charset=utf-8\r\n" + (b"Content-Encoding: gzip\r\n" if gz else b"") +
                                 b"Content-Length: %d\r\n\r\n" % len(b))
                    writer.write(b)
                await writer.drain()
                if close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError,
                IndexError):
            pass
        finally:
            writer.close()

    async def report():
        while True:
            await asyncio.sleep(60)
            print(time.strftime("%H:%M:%S"), json.dumps(stats), flush=True)

    async def main():
        servers = []
        for i in range(args.targets):
            servers.append(await asyncio.start_server(
                lambda r, w, i=i: handle(r, w, i), "127.0.0.1", args.base_port + i,
                reuse_address=True, backlog=64))
        print(f"listening on 127.0.0.1:{args.base_port}..{args.base_port + args.targets - 1}",
              flush=True)
        await report()

    asyncio.run(main())


# --------------------------------------------------------------------------------------
# Part (a): N targets, Prometheus then ODIN
# --------------------------------------------------------------------------------------

def capture_node_page(ne_bin, workdir):
    port = free_port()
    p = start([ne_bin, f"--web.listen-address=127.0.0.1:{port}"],
              os.path.join(workdir, "node_exporter-capture.log"))
    try:
        for _ in range(60):
            try:
                st, body = http_get(f"http://127.0.0.1:{port}/metrics", timeout=10)
                if st == 200:
                    return body.decode()
            except Exception:
                time.sleep(0.5)
        raise RuntimeError("node_exporter did not answer")
    finally:
        stop(p, grace=10)


def scrape_config(targets, base_port, interval="15s", timeout="10s"):
    lines = ["global:", f"  scrape_interval: {interval}", f"  scrape_timeout: {timeout}",
             "scrape_configs:", "  - job_name: node", "    static_configs:", "      - targets:"]
    lines += [f"          - 127.0.0.1:{base_port + i}" for i in range(targets)]
    return "\n".join(lines) + "\n"


def server_cmd(kind, args, cfg, data, port):
    if kind == "prometheus":
        return [args.prometheus, f"--config.file={cfg}", f"--storage.tsdb.path={data}",
                f"--web.listen-address=127.0.0.1:{port}", "--log.level=info"]
    cmd = [args.odin, "run", f"--storage.tsdb.path={data}",
           f"--web.listen-address=127.0.0.1:{port}"]
    if cfg:
        cmd.insert(2, f"--config.file={cfg}")
    return cmd


def measure_server(kind, args, cfg, workdir, exporter):
    data = os.path.join(workdir, f"data-{kind}")
    shutil.rmtree(data, ignore_errors=True)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    p = start(server_cmd(kind, args, cfg, data, port), os.path.join(workdir, f"{kind}-a.log"))
    res = {"server": kind}
    try:
        t_start = time.time()
        wait_ready(base, p)
        res["ready_s"] = time.time() - t_start
        log(f"{kind}: ready after {res['ready_s']:.1f}s; warm-up {args.warmup} min")
        deadline = t_start + args.warmup * 60
        while time.time() < deadline:
            time.sleep(min(15, max(0.1, deadline - time.time())))
            if p.poll() is not None:
                raise RuntimeError(f"{kind} exited during warm-up")
        res["warmup_cpu_s"] = cpu_seconds(p.pid)
        up = query_scalar(base, "count(up == 1)")
        log(f"{kind}: after warm-up {res['warmup_cpu_s']:.1f} CPU s, up=={up}")
        # Measured window.
        w0, c0, e0, a0, m0 = time.time(), cpu_seconds(p.pid), cpu_seconds(exporter.pid), \
            samples_appended(base), machine_busy()
        la0 = loadavg()
        rss = []
        per_interval = []
        last_c, last_t = c0, w0
        end = w0 + args.minutes * 60
        while True:
            now = time.time()
            if now >= end:
                break
            time.sleep(min(15, end - now))
            if p.poll() is not None:
                raise RuntimeError(f"{kind} exited during the window")
            rss.append(mem_kib(p.pid)[0])
            c, t = cpu_seconds(p.pid), time.time()
            per_interval.append((c - last_c) / (t - last_t) * 15)
            last_c, last_t = c, t
        w1, c1, e1, a1, m1 = time.time(), cpu_seconds(p.pid), cpu_seconds(exporter.pid), \
            samples_appended(base), machine_busy()
        rss_end, hwm = mem_kib(p.pid)
        wall = w1 - w0
        res.update({
            "window_s": wall, "cpu_s": c1 - c0, "cpu_per_interval_s": (c1 - c0) / wall * 15,
            "cpu_pct": (c1 - c0) / wall * 100,
            "per_interval_min": min(per_interval) if per_interval else None,
            "per_interval_max": max(per_interval) if per_interval else None,
            "rss_end_kib": rss_end, "rss_avg_kib": sum(rss) / len(rss) if rss else rss_end,
            "rss_peak_kib": hwm,
            "samples_per_s": (a1 - a0) / wall if a0 is not None and a1 is not None else None,
            "exporter_cpu_pct": (e1 - e0) / wall * 100,
            "machine_busy_pct": (m1[0] - m0[0]) / max(1, m1[1] - m0[1]) * 100 * os.cpu_count(),
            "loadavg": f"{la0} -> {loadavg()}",
        })
        log(f"{kind}: window done: {res['cpu_s']:.1f} CPU s in {wall:.0f}s")
        # Figures read after the window (their CPU is not counted).
        q0 = time.time()
        res["series"] = query_scalar(base, 'count({__name__=~".+"})')
        res["series_query_s"] = time.time() - q0
        res["up"] = query_scalar(base, "count(up == 1)")
        res["targets"] = query_scalar(base, "count(up)")
        res["scraped_per_target"] = query_scalar(base, "avg(scrape_samples_scraped)")
        res["scrape_duration_avg_s"] = query_scalar(base, "avg(scrape_duration_seconds)")
        res["scrape_duration_max_s"] = query_scalar(base, "max(scrape_duration_seconds)")
        mins = max(1, int(wall // 60))
        res["scrapes_in_window"] = query_scalar(base, f"sum(count_over_time(up[{mins}m]))")
        res["scrapes_window_min"] = mins
        if res["samples_per_s"] is None and res["scrapes_in_window"] and res["scraped_per_target"]:
            res["samples_per_s"] = res["scrapes_in_window"] * (res["scraped_per_target"] + 5) / (mins * 60)
            res["samples_per_s_from"] = "scrapes x samples"
        if kind == "odin" and args.perf_seconds > 0 and shutil.which("perf"):
            res.update(profile(p.pid, args, workdir))
    finally:
        stop(p)
        if not args.keep:
            shutil.rmtree(data, ignore_errors=True)
    return res


def _squeeze(text, limit):
    out = []
    for line in text.splitlines():
        line = re.sub(r" {3,}", "  ", line).rstrip()
        line = re.sub(r"\s+-\s+-$", "", line)  # the empty IPC columns
        if line.startswith("#") and not line.startswith("# Samples") and not line.startswith("# Event"):
            continue
        if line:
            out.append(line[:220])
    return "\n".join(out[:limit])


def profile(pid, args, workdir):
    """perf record of a running ODIN (after its window, so not counted), three views:
    self cost by symbol, inclusive cost by symbol, and the call graph of the top."""
    pdata = os.path.join(workdir, "perf-odin.data")
    cg = ["--call-graph", "dwarf,16384"] if args.perf_call_graph == "dwarf" else ["-g"]
    log(f"odin: perf record {' '.join(cg)} -F {args.perf_freq} for {args.perf_seconds}s")
    subprocess.run(["perf", "record", *cg, "-F", str(args.perf_freq), "-o", pdata, "-p", str(pid),
                    "--", "sleep", str(args.perf_seconds)],
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = ["perf", "report", "-i", pdata, "--stdio"]
    run = lambda extra: subprocess.run(base + extra, capture_output=True, text=True).stdout  # noqa: E731
    res = {
        "perf_flat": _squeeze(run(["--no-children", "-g", "none", "--sort", "dso,symbol",
                                   "--percent-limit", "0.5"]), 80),
        # Inclusive cost, ODIN's own functions and the libraries it calls on its hot
        # path (the runtime's generic frames left out).
        "perf_inclusive": "\n".join(
            l for l in _squeeze(run(["--children", "-g", "none", "--sort", "symbol",
                                     "--percent-limit", "1.5"]), 1000).splitlines()
            if l.startswith("#") or re.search(r"odin::|miniz|snap::|hyper::|reqwest::|malloc|free", l)),
        "perf_report": _squeeze(run(["--no-children", "--sort", "symbol", "--percent-limit", "2",
                                     "-g", "caller,0.5,callee,function,percent",
                                     "--max-stack", "24"]), 400),
    }
    if not args.keep:
        os.remove(pdata)
    return res


def part_a(args, workdir):
    page_file = args.page
    if not page_file:
        page_file = os.path.join(workdir, "node_exporter-page.txt")
        with open(page_file, "w") as f:
            f.write(capture_node_page(args.node_exporter, workdir))
    with open(page_file) as f:
        real = f.read()
    text, info = amplify(real, args.series_per_target)
    info["real_series"] = sum(1 for l in real.splitlines() if l and not l.startswith("#"))
    info["bytes"] = len(text.encode())
    info["gzip_bytes"] = len(gzip.compress(text.encode(), 6))
    amp_file = os.path.join(workdir, "page-amplified.txt")
    with open(amp_file, "w") as f:
        f.write(text)
    log(f"page: {info}")
    cfg = os.path.join(workdir, "scrape-a.yml")
    with open(cfg, "w") as f:
        f.write(scrape_config(args.targets, args.base_port))
    exporter = start([sys.executable, os.path.abspath(__file__), "fake-exporter",
                      "--page", amp_file, "--targets", str(args.targets),
                      "--base-port", str(args.base_port), "--groups", str(args.groups)],
                     os.path.join(workdir, "fake-exporter.log"))
    results = []
    try:
        # Wait until the last port answers.
        last = f"http://127.0.0.1:{args.base_port + args.targets - 1}/metrics"
        for _ in range(120):
            try:
                http_get(last, timeout=5)
                break
            except Exception:
                time.sleep(0.5)
        else:
            raise RuntimeError("fake exporter did not start")
        for kind in args.order:
            results.append(measure_server(kind, args, cfg, workdir, exporter))
            if exporter.poll() is not None:
                raise RuntimeError("fake exporter died")
    finally:
        stop(exporter, grace=10)
    return {"page": info, "results": results}


# --------------------------------------------------------------------------------------
# Part (b): embedded default against Prometheus + node_exporter
# --------------------------------------------------------------------------------------

def part_b(args, workdir):
    o_port, p_port, n_port = free_port(), free_port(), free_port()
    o_data, p_data = os.path.join(workdir, "data-odin-b"), os.path.join(workdir, "data-prom-b")
    for d in (o_data, p_data):
        shutil.rmtree(d, ignore_errors=True)
    cfg = os.path.join(workdir, "prometheus-b.yml")
    with open(cfg, "w") as f:
        f.write("global:\n  scrape_interval: 15s\n  scrape_timeout: 10s\nscrape_configs:\n"
                f"  - job_name: prometheus\n    static_configs:\n      - targets: ['127.0.0.1:{p_port}']\n"
                f"  - job_name: node\n    static_configs:\n      - targets: ['127.0.0.1:{n_port}']\n")
    procs = {}
    res = {}
    try:
        procs["node_exporter"] = start([args.node_exporter, f"--web.listen-address=127.0.0.1:{n_port}"],
                                       os.path.join(workdir, "node_exporter-b.log"))
        procs["prometheus"] = start(server_cmd("prometheus", args, cfg, p_data, p_port),
                                    os.path.join(workdir, "prometheus-b.log"))
        procs["odin"] = start(server_cmd("odin", args, None, o_data, o_port),
                              os.path.join(workdir, "odin-b.log"))
        t0 = time.time()
        starts = {k: (t0, 0.0) for k in procs}  # CPU from process start
        wait_ready(f"http://127.0.0.1:{o_port}", procs["odin"])
        wait_ready(f"http://127.0.0.1:{p_port}", procs["prometheus"])
        total = args.default_minutes * 60
        half = None
        samples = []
        while True:
            el = time.time() - t0
            if el >= total:
                break
            time.sleep(min(15, total - el))
            for k, p in procs.items():
                if p.poll() is not None:
                    raise RuntimeError(f"{k} exited")
            row = {"t": time.time() - t0}
            for k, p in procs.items():
                row[k] = (cpu_seconds(p.pid), mem_kib(p.pid)[0])
            samples.append(row)
            if half is None and row["t"] >= total / 2:
                half = row
        end = {"t": time.time() - t0}
        for k, p in procs.items():
            end[k] = (cpu_seconds(p.pid), *mem_kib(p.pid))
        for k in procs:
            c, rss, hwm = end[k]
            rss_all = [s[k][1] for s in samples]
            res[k] = {
                "cpu_s": c, "cpu_pct_all": c / end["t"] * 100,
                "cpu_pct_2nd_half": (c - half[k][0]) / (end["t"] - half["t"]) * 100 if half else None,
                "rss_end_kib": rss, "rss_peak_kib": hwm,
                "rss_avg_2nd_half_kib": (sum(rss_all[len(rss_all) // 2:]) /
                                         max(1, len(rss_all[len(rss_all) // 2:]))),
            }
        res["wall_s"] = end["t"]
        res["half_t"] = half["t"] if half else None
        ob, pb = f"http://127.0.0.1:{o_port}", f"http://127.0.0.1:{p_port}"
        res["odin_series"] = query_scalar(ob, 'count({__name__=~".+"})')
        res["prometheus_series"] = query_scalar(pb, 'count({__name__=~".+"})')
        res["odin_by_job"] = {m.get("job", ""): v for m, v in
                              query_vector(ob, 'count by (job) ({__name__=~".+"})')}
        res["prometheus_by_job"] = {m.get("job", ""): v for m, v in
                                    query_vector(pb, 'count by (job) ({__name__=~".+"})')}
        res["odin_up"] = {m.get("job", ""): v for m, v in query_vector(ob, "up")}
        res["prometheus_up"] = {m.get("job", ""): v for m, v in query_vector(pb, "up")}
        res["loadavg_end"] = loadavg()
    finally:
        for p in procs.values():
            stop(p, grace=60)
        if not args.keep:
            for d in (o_data, p_data):
                shutil.rmtree(d, ignore_errors=True)
    return res


# --------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------

def fnum(v, nd=0):
    if v is None:
        return "n/a"
    return f"{v:,.{nd}f}"


def mib(kib):
    return None if kib is None else kib / 1024


def report_a(a, args):
    r = {x["server"]: x for x in a["results"]}
    P, O = r.get("prometheus"), r.get("odin")
    out = [f"## (a) {args.targets:,} node_exporter-sized targets, 15 s, one server at a time", ""]
    pg = a["page"]
    out.append(f"Page per target: {pg['series']:,} series ({pg['bytes']:,} B, {pg['gzip_bytes']:,} B "
               f"gzipped), from a real node_exporter page of {pg['real_series']:,} series widened to "
               f"{pg['cpus']} CPUs, {pg['disks']} disks, {pg['nics']} NICs; {args.groups} value streams, "
               f"counters rising, ~40% of non-trivial gauges moving. Warm-up {args.warmup} min, "
               f"measured window {args.minutes} min per server.")
    out.append("")

    def row(label, f, nd=0, ratio=True):
        pv = f(P) if P else None
        ov = f(O) if O else None
        rt = f"{ov / pv:.2f}" if ratio and pv and ov is not None else ""
        return f"| {label} | {fnum(ov, nd)} | {fnum(pv, nd)} | {rt} |"

    out += ["| figure | ODIN | Prometheus 2.42 | ODIN / Prometheus |", "| --- | ---: | ---: | ---: |",
            row("CPU s per 15 s scrape interval", lambda x: x["cpu_per_interval_s"], 3),
            row("CPU % of one core", lambda x: x["cpu_pct"], 1),
            row("CPU s per interval, lowest 15 s slice", lambda x: x["per_interval_min"], 3, False),
            row("CPU s per interval, highest 15 s slice", lambda x: x["per_interval_max"], 3, False),
            row("RSS at end of window (MiB)", lambda x: mib(x["rss_end_kib"]), 0),
            row("RSS average over window (MiB)", lambda x: mib(x["rss_avg_kib"]), 0),
            row("peak RSS (MiB)", lambda x: mib(x["rss_peak_kib"]), 0),
            row("series stored (count({__name__=~\".+\"}))", lambda x: x["series"], 0),
            row("samples/s ingested (own head counter)", lambda x: x["samples_per_s"], 0),
            row("RSS bytes per series", lambda x: x["rss_end_kib"] * 1024 / x["series"] if x.get("series") else None, 0),
            row("targets up / total", lambda x: x["up"], 0, False),
            row("avg samples scraped per target", lambda x: x["scraped_per_target"], 0, False),
            row("scrape_duration_seconds, average over targets", lambda x: x["scrape_duration_avg_s"], 4, False),
            row("scrape_duration_seconds, slowest target", lambda x: x["scrape_duration_max_s"], 4, False),
            row("scrapes in the last whole minutes of window", lambda x: x["scrapes_in_window"], 0, False),
            row("CPU s during warm-up (incl. series creation)", lambda x: x["warmup_cpu_s"], 1),
            row("fake exporter CPU % during window (not counted)", lambda x: x["exporter_cpu_pct"], 1, False),
            row("whole machine busy, cores x 100 % (all processes)", lambda x: x["machine_busy_pct"], 0, False),
            row("count({__name__=~\".+\"}) query time (s)", lambda x: x["series_query_s"], 2, False),
            ""]
    if P and O:
        goal = O["cpu_s"] <= 0.5 * P["cpu_s"]
        same = P.get("series") == O.get("series")
        out.append(f"Goal \"ODIN's CPU at most half of Prometheus's, same series stored\": CPU ratio "
                   f"{O['cpu_s'] / P['cpu_s']:.2f} -> {'met' if goal else 'NOT met'}; series "
                   f"{'equal' if same else 'differ'} ({fnum(O.get('series'))} vs {fnum(P.get('series'))}).")
        out.append("")
    for x in (P, O):
        if x:
            out.append(f"- {x['server']}: load average {x['loadavg']}, ready after {x['ready_s']:.1f} s")
    if O and O.get("perf_flat"):
        out += ["", f"### perf of ODIN ({args.perf_seconds} s after its window, "
                f"call graph {args.perf_call_graph})", "",
                "Self cost by symbol:", "", "```", O["perf_flat"], "```", "",
                "Inclusive cost by symbol (≥ 1.5 %; ODIN's functions, allocator, HTTP and codecs):", "", "```", O.get("perf_inclusive", ""), "```", "",
                "Call graphs of the top self costs:", "", "```", O.get("perf_report", ""), "```"]
    return "\n".join(out) + "\n"


def report_b(b, args):
    O, P, N = b["odin"], b["prometheus"], b["node_exporter"]
    pn = lambda f: (f(P) + f(N))  # noqa: E731
    out = [f"## (b) embedded default vs Prometheus + node_exporter, {b['wall_s'] / 60:.1f} min, concurrently", ""]
    out += ["| figure | ODIN (self+node+gpu) | Prometheus + node_exporter | Prometheus | node_exporter | goal |",
            "| --- | ---: | ---: | ---: | ---: | --- |"]

    def row(label, f, nd, goal=""):
        return (f"| {label} | {fnum(f(O), nd)} | {fnum(pn(f), nd)} | {fnum(f(P), nd)} | "
                f"{fnum(f(N), nd)} | {goal} |")

    out += [row("RSS at end (MiB)", lambda x: mib(x["rss_end_kib"]), 1, "ODIN ≤ 40 MB"),
            row("RSS avg, 2nd half (MiB)", lambda x: mib(x["rss_avg_2nd_half_kib"]), 1),
            row("peak RSS (MiB)", lambda x: mib(x["rss_peak_kib"]), 1),
            row("CPU % of a core, whole run", lambda x: x["cpu_pct_all"], 2, "ODIN < 1 %"),
            row("CPU % of a core, 2nd half", lambda x: x["cpu_pct_2nd_half"], 2),
            row("CPU s total", lambda x: x["cpu_s"], 1)]
    out.append(f"| series stored | {fnum(b['odin_series'])} | {fnum(b['prometheus_series'])} | | | |")
    out.append("")
    rss_mb = O["rss_end_kib"] * 1024 / 1e6
    out.append(f"ODIN: RSS {rss_mb:.1f} MB (10^6 B) -> {'met' if rss_mb <= 40 else 'NOT met'}; "
               f"CPU {O['cpu_pct_all']:.2f} % of a core -> {'met' if O['cpu_pct_all'] < 1 else 'NOT met'}.")
    out.append("")
    out.append(f"Series by job: ODIN {json.dumps(b['odin_by_job'], sort_keys=True)}; "
               f"Prometheus {json.dumps(b['prometheus_by_job'], sort_keys=True)}.")
    out.append(f"up: ODIN {json.dumps(b['odin_up'], sort_keys=True)}; Prometheus "
               f"{json.dumps(b['prometheus_up'], sort_keys=True)}. Load average at end {b['loadavg_end']}.")
    return "\n".join(out) + "\n"


def machine_info(args):
    model = ""
    try:
        with open("/proc/cpuinfo") as f:
            model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "")
    except OSError:
        pass
    ver = lambda cmd: subprocess.run(cmd, capture_output=True, text=True).stdout.splitlines()[:1]  # noqa: E731
    lines = [f"- machine: {os.cpu_count()} CPUs ({model}), {platform.platform()}",
             f"- odin: {args.odin} ({' '.join(ver([args.odin, '--version']))})",
             f"- prometheus: {' '.join(ver([args.prometheus, '--version']))}",
             f"- node_exporter: {' '.join(ver([args.node_exporter, '--version']))}",
             f"- command: {' '.join(sys.argv)}",
             f"- date: {time.strftime('%Y-%m-%d %H:%M:%S %Z')}"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd")
    fe = sub.add_parser("fake-exporter", help="(internal) serve the page on many ports")
    fe.add_argument("--page", required=True)
    fe.add_argument("--targets", type=int, default=1000)
    fe.add_argument("--base-port", type=int, default=21000)
    fe.add_argument("--groups", type=int, default=16)
    fe.add_argument("--step-seconds", type=float, default=5.0)

    ap.add_argument("--part", choices=["a", "b", "all"], default="all")
    ap.add_argument("--targets", type=int, default=1000, help="targets in (a)")
    ap.add_argument("--minutes", type=float, default=5, help="measured minutes per server in (a)")
    ap.add_argument("--warmup", type=float, default=2, help="warm-up minutes per server in (a)")
    ap.add_argument("--default-minutes", type=float, default=10, help="length of (b)")
    ap.add_argument("--series-per-target", type=int, default=1150,
                    help="widen the real node_exporter page to about this many series")
    ap.add_argument("--groups", type=int, default=16, help="distinct value streams in (a)")
    ap.add_argument("--base-port", type=int, default=21000, help="first fake-exporter port")
    ap.add_argument("--order", default="prometheus,odin", help="servers in (a), in order")
    ap.add_argument("--page", help="a saved node_exporter page (default: capture one)")
    ap.add_argument("--perf-seconds", type=int, default=0,
                    help="after ODIN's window in (a), perf record -g it this long")
    ap.add_argument("--perf-call-graph", choices=["fp", "dwarf"], default="dwarf",
                    help="perf's unwinder: dwarf (works without frame pointers) or fp")
    ap.add_argument("--perf-freq", type=int, default=499, help="perf samples per second")
    ap.add_argument("--odin", default=os.environ.get("ODIN", "target/release/odin"))
    ap.add_argument("--prometheus", default=shutil.which("prometheus") or "prometheus")
    ap.add_argument("--node-exporter", default=shutil.which("prometheus-node-exporter")
                    or shutil.which("node_exporter") or "node_exporter")
    ap.add_argument("--work-dir", help="scratch directory (default: a new one in /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep data directories")
    ap.add_argument("--out", default="results.md")
    ap.add_argument("--json", help="also write the raw figures as JSON here")
    args = ap.parse_args()

    if args.cmd == "fake-exporter":
        fake_exporter_main(args)
        return

    args.order = [x.strip() for x in args.order.split(",") if x.strip()]
    args.odin = os.path.abspath(args.odin)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, 4 * args.targets + 1024))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    atexit.register(cleanup)
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGHUP, _on_signal)

    workdir = args.work_dir or tempfile.mkdtemp(prefix="odin-scrape-bench-")
    os.makedirs(workdir, exist_ok=True)
    log(f"work dir {workdir}")
    raw = {}
    parts = [machine_info(args), ""]
    if args.part in ("b", "all"):
        raw["b"] = part_b(args, workdir)
        parts.append(report_b(raw["b"], args))
        log("(b) done")
        with open(args.out, "w") as f:
            f.write("# ODIN scrape benchmark\n\n" + "\n".join(parts))
    if args.part in ("a", "all"):
        raw["a"] = part_a(args, workdir)
        parts.append(report_a(raw["a"], args))
        log("(a) done")
    text = "# ODIN scrape benchmark\n\n" + "\n".join(parts)
    with open(args.out, "w") as f:
        f.write(text)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(raw, f, indent=1, default=str)
    print(text)
    if not args.keep and not args.work_dir:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
