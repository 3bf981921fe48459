#!/usr/bin/env python3
"""The structure half of scripts/gpu-check.sh: what ODIN's GPU collector reports on a
real GPU host, held against dcgm-exporter 3.3's default list and nvidia-smi.

    gpu-check-structure.py TMPDIR FIXTURE_CSV

TMPDIR holds what gpu-check.sh fetched (series.json, metadata.json, processes.json,
energy.json, power.json, identity.csv, apps.csv, mig.txt, nvlink.txt). Prints one line
per check; exit status 1 when any fails.
"""

import csv
import json
import os
import re
import sys

tmp, fixture = sys.argv[1], sys.argv[2]
failures = []


def check(ok, what):
    print(f"  {'ok  ' if ok else 'FAIL'} {what}")
    if not ok:
        failures.append(what)


def load(name):
    path = os.path.join(tmp, name)
    if not os.path.exists(path):
        return {}
    with open(path) as f:
        return json.load(f)


def read_text(name):
    path = os.path.join(tmp, name)
    return open(path).read() if os.path.exists(path) else ""


# dcgm-exporter's list: name -> (type, help, default row?)
rows = {}
for line in open(fixture):
    default = not line.startswith("#")
    line = line.lstrip("#").strip()
    if not line.startswith("DCGM_FI_"):
        continue
    name, kind, help_text = [c.strip() for c in line.split(",", 2)]
    if name in rows and rows[name][2]:
        continue
    rows[name] = (kind, help_text, default)
# What ODIN emits beyond the list (see src/collect/gpu/tests.rs).
beyond = {
    "DCGM_FI_DEV_FB_RESERVED",
    "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
    "DCGM_FI_DEV_POWER_MGMT_LIMIT",
    "DCGM_FI_PROF_NVLINK_TX_BYTES",
    "DCGM_FI_PROF_NVLINK_RX_BYTES",
}
# Default rows with no value on bare metal, or only on some GPUs.
optional_defaults = {
    "DCGM_FI_DEV_VGPU_LICENSE_STATUS",  # vGPU only
    "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",  # GPUs with NVLink (checked below)
    "DCGM_FI_DEV_MEMORY_TEMP",  # cards without the sensor may refuse
    "DCGM_FI_DEV_ENC_UTIL",  # not on MIG
    "DCGM_FI_DEV_DEC_UTIL",
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_MEM_COPY_UTIL",
    # GPM (Hopper and later); checked below by architecture.
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
    "DCGM_FI_PROF_DRAM_ACTIVE",
    "DCGM_FI_PROF_PCIE_TX_BYTES",
    "DCGM_FI_PROF_PCIE_RX_BYTES",
}

series = load("series.json").get("data", [])
metadata = load("metadata.json").get("data", {})
by_family = {}
for s in series:
    by_family.setdefault(s["__name__"], []).append(s)

print("dcgm-exporter's default list:")
for name, (kind, help_text, default) in sorted(rows.items()):
    if kind == "label":
        continue
    present = name in by_family
    if default and name not in optional_defaults:
        check(present, f"{name} is reported")
    if present:
        meta = metadata.get(name, [{}])[0]
        check(meta.get("type") == kind, f"{name} type {meta.get('type')!r} == {kind!r}")
        check(meta.get("help") == help_text, f"{name} help matches")
for name in sorted(by_family):
    if name.startswith("DCGM_FI_") and name not in rows:
        check(name in beyond, f"{name} is dcgm-exporter's or a documented addition")

# nvidia-smi's identity of each GPU.
identity = {}
for cols in csv.reader(open(os.path.join(tmp, "identity.csv"))):
    cols = [c.strip() for c in cols]
    if len(cols) >= 5:
        index, uuid, bus, name, mig = cols[:5]
        identity[index] = {"uuid": uuid, "bus": bus, "name": name, "mig": mig == "Enabled"}

print("labels:")
base = ["gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "DCGM_FI_DRIVER_VERSION"]
mig_labels = ["GPU_I_PROFILE", "GPU_I_ID"]
attributes = {"container", "namespace", "pod"}
bad = []
for name, members in by_family.items():
    if not name.startswith("DCGM_FI_"):
        continue
    for s in members:
        names = set(s) - {"__name__", "job", "instance"}
        expected = set(base) | (set(mig_labels) if "GPU_I_ID" in s else set())
        if name == "DCGM_FI_DEV_XID_ERRORS":
            expected |= {"err_code", "err_msg"}
        if names - attributes != expected:
            bad.append((name, sorted(names)))
        gpu = identity.get(s.get("gpu"))
        if gpu is None:
            bad.append((name, f"gpu {s.get('gpu')} unknown to nvidia-smi"))
            continue
        # nvidia-smi writes the bus ID with a 8-digit domain, as NVML does.
        if (
            s.get("UUID") != gpu["uuid"]
            or s.get("pci_bus_id", "").lower() != gpu["bus"].lower()
            or s.get("device") != f"nvidia{s.get('gpu')}"
            or s.get("modelName") != gpu["name"]
        ):
            bad.append((name, {k: s.get(k) for k in ("gpu", "UUID", "pci_bus_id", "device", "modelName")}))
check(not bad, f"every series has dcgm-exporter's labels with nvidia-smi's values ({len(bad)} wrong: {bad[:3]})")
xid = by_family.get("DCGM_FI_DEV_XID_ERRORS", [])
check(bool(xid) and all("err_code" in s and "err_msg" in s for s in xid), "XID series carry err_code and err_msg")

print("MIG:")
# `nvidia-smi mig -lgi` rows: |   0  MIG 1g.10gb       19        9          2:1     |
lgi = {}
for line in read_text("mig.txt").splitlines():
    m = re.match(r"\|\s+(\d+)\s+MIG\s+(\S+)\s+(\d+)\s+(\d+)\s+\S+\s+\|", line)
    if m:
        lgi.setdefault(m.group(1), {})[m.group(4)] = m.group(2)
for index, gpu in sorted(identity.items()):
    temps = [s for s in by_family.get("DCGM_FI_DEV_GPU_TEMP", []) if s.get("gpu") == index]
    if not gpu["mig"]:
        check(bool(temps) and all("GPU_I_ID" not in s for s in temps), f"GPU {index} (MIG off) is reported whole")
        continue
    reported = {s["GPU_I_ID"]: s.get("GPU_I_PROFILE") for s in temps if "GPU_I_ID" in s}
    listed = lgi.get(index, {})
    check(set(reported) == set(listed), f"GPU {index}: GPU instances {sorted(reported)} == nvidia-smi's {sorted(listed)}")
    check(all("GPU_I_ID" in s for s in temps), f"GPU {index}: no series of the MIG GPU itself")
    # DCGM names an instance <slices>g.<GiB rounded up>gb, which may differ from
    # nvidia-smi's name by a GB (7g.79gb / 7g.80gb): the shape is checked, both printed.
    for gi in sorted(reported):
        shape = re.fullmatch(r"\d+g\.\d+gb", reported[gi] or "") is not None
        check(shape, f"GPU {index} instance {gi}: ODIN {reported[gi]}, nvidia-smi {listed.get(gi)}")

print("processes:")
processes = {}
for r in load("processes.json").get("data", {}).get("result", []):
    processes[(r["metric"].get("pid"), r["metric"].get("UUID"))] = float(r["value"][1])
apps = list(csv.reader(open(os.path.join(tmp, "apps.csv")))) if os.path.exists(os.path.join(tmp, "apps.csv")) else []
if not apps:
    print("       (no compute processes on the GPUs: nothing to compare)")
for cols in apps:
    cols = [c.strip() for c in cols]
    if len(cols) < 3:
        continue
    pid, uuid, used_mib = cols[0], cols[1], cols[2]
    got = processes.get((pid, uuid))
    try:
        want = float(used_mib) * 1024 * 1024
    except ValueError:
        want = None
    ok = got is not None and (want is None or abs(got - want) <= max(0.05 * want, 64 << 20))
    check(ok, f"pid {pid} on {uuid}: ODIN {got}, nvidia-smi {used_mib} MiB")

print("energy:")
energy = {r["metric"].get("gpu") + "/" + r["metric"].get("GPU_I_ID", ""): r["values"]
          for r in load("energy.json").get("data", {}).get("result", [])}
power = {r["metric"].get("gpu") + "/" + r["metric"].get("GPU_I_ID", ""): r["values"]
         for r in load("power.json").get("data", {}).get("result", [])}
for key, values in sorted(energy.items()):
    if len(values) < 3 or key not in power:
        check(False, f"GPU {key}: too few energy samples ({len(values)})")
        continue
    (t0, e0), (t1, e1) = values[0], values[-1]
    joules = (float(e1) - float(e0)) / 1000.0
    seconds = float(t1) - float(t0)
    watts = [float(v) for t, v in power[key] if float(t0) <= float(t) <= float(t1)]
    mean = sum(watts) / len(watts) if watts else 0.0
    derived = joules / seconds if seconds > 0 else 0.0
    # Loose: a few instantaneous power readings against an average; a unit error
    # (mJ read as J) is off by a factor of 1,000.
    ok = joules > 0 and abs(derived - mean) <= 0.5 * max(mean, 1.0)
    check(ok, f"GPU {key}: {joules:.0f} J over {seconds:.0f} s = {derived:.1f} W; mean power {mean:.1f} W")

print("NVLink and GPM:")
active_links = {}
current = None
for line in read_text("nvlink.txt").splitlines():
    m = re.match(r"GPU (\d+):", line)
    if m:
        current = m.group(1)
        active_links.setdefault(current, 0)
    elif current is not None and re.search(r"Link \d+: \d", line):
        active_links[current] += 1
for index in sorted(identity):
    if active_links.get(index):
        present = any(s.get("gpu") == index for s in by_family.get("DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL", []))
        check(present, f"GPU {index}: {active_links[index]} active NVLinks, bandwidth reported")
    hopper_or_later = re.search(r"H100|H200|H800|H20\b|GH200|B100|B200|GB200", identity[index]["name"])
    if hopper_or_later:
        names = ["DCGM_FI_PROF_GR_ENGINE_ACTIVE", "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE", "DCGM_FI_PROF_DRAM_ACTIVE"]
        if not identity[index]["mig"]:
            # Per MIG instance GPM may not measure PCIe; whole GPUs must have it.
            names.append("DCGM_FI_PROF_PCIE_TX_BYTES")
        for name in names:
            present = any(s.get("gpu") == index for s in by_family.get(name, []))
            check(present, f"GPU {index} ({identity[index]['name']}): {name} from GPM")

errors = by_family.get("odin_gpu_collector_errors_total", [])
if errors:
    print("collector errors (fields NVML refused):", sorted(s.get("field") for s in errors))

sys.exit(1 if failures else 0)
