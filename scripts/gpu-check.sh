#!/usr/bin/env bash
# Compares ODIN's GPU collector with nvidia-smi on a machine with NVIDIA GPUs.
#
#   scripts/gpu-check.sh [path/to/odin] [extra args for `odin run`...]
#
# Starts `odin run` on a free port with a temporary data directory, waits (at most
# 90 s) until ODIN has scraped its GPU collector three times, then:
#   1. compares seven families per GPU with nvidia-smi and prints a table;
#   2. holds every DCGM_FI_* family against dcgm-exporter 3.3's default list
#      (tests/fixtures/dcgm-exporter/default-counters.csv): name, type, help, and
#      every default family present;
#   3. checks each series' labels: dcgm-exporter's label names, and gpu, UUID,
#      pci_bus_id, device, modelName equal to what nvidia-smi says of that GPU;
#      err_code/err_msg on DCGM_FI_DEV_XID_ERRORS;
#   4. MIG: a MIG-enabled GPU is reported as exactly the GPU instances
#      `nvidia-smi mig -lgi` lists, and has no series of its own;
#   5. processes: every compute process nvidia-smi lists has its
#      odin_gpu_process_memory_used_bytes, within 5 % or 64 MiB;
#   6. energy: the energy counter's increase over the window matches the average
#      power draw (±50 %: it catches unit errors, not noise);
#   7. NVLink: a GPU with active links has DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL; a
#      Hopper or later GPU has the GPM profiling fields (DCGM_FI_PROF_*).
# Exit status: 0 all hold, 1 a mismatch or a missing series, 2 set-up failure.
# Needs bash, curl and python3.
#
# Environment: ODIN_PORT (default 19090), ODIN_ARGS (replaces the default
# `--web.listen-address=127.0.0.1:$ODIN_PORT --storage.tsdb.path=$tmp` flags, for
# when the CLI spells them differently), ODIN_URL (check an ODIN that already runs;
# nothing is started).
set -euo pipefail

BIN="${1:-target/release/odin}"
shift || true
PORT="${ODIN_PORT:-19090}"
WAIT_S=90
FIXTURE="$(cd "$(dirname "$0")/.." && pwd)/tests/fixtures/dcgm-exporter/default-counters.csv"

command -v nvidia-smi >/dev/null || { echo "gpu-check: nvidia-smi not found" >&2; exit 2; }
command -v curl >/dev/null || { echo "gpu-check: curl not found" >&2; exit 2; }
command -v python3 >/dev/null || { echo "gpu-check: python3 not found" >&2; exit 2; }

TMP="$(mktemp -d)"
ODIN_PID=""
cleanup() {
  if [[ -n "$ODIN_PID" ]]; then
    kill "$ODIN_PID" 2>/dev/null || true
    wait "$ODIN_PID" 2>/dev/null || true
  fi
  rm -rf "$TMP"
}
trap cleanup EXIT

if [[ -n "${ODIN_URL:-}" ]]; then
  URL="${ODIN_URL%/}"
else
  [[ -x "$BIN" ]] || { echo "gpu-check: $BIN is not an executable (build with cargo build --release)" >&2; exit 2; }
  URL="http://127.0.0.1:${PORT}"
  # shellcheck disable=SC2206
  ARGS=(${ODIN_ARGS:---web.listen-address=127.0.0.1:${PORT} --storage.tsdb.path=${TMP}/data})
  "$BIN" run "${ARGS[@]}" "$@" >"$TMP/odin.log" 2>&1 &
  ODIN_PID=$!
fi

query() { # $1: PromQL; prints the JSON response
  curl -fsS --max-time 5 -G "$URL/api/v1/query" --data-urlencode "query=$1"
}

echo "gpu-check: waiting up to ${WAIT_S}s for three scrapes of DCGM_FI_DEV_GPU_TEMP at $URL"
deadline=$((SECONDS + WAIT_S))
while :; do
  if [[ -n "$ODIN_PID" ]] && ! kill -0 "$ODIN_PID" 2>/dev/null; then
    echo "gpu-check: odin exited; its log:" >&2
    tail -n 50 "$TMP/odin.log" >&2 || true
    exit 2
  fi
  # Three scrapes: rates (NVLink, PCIe, GPM) need two reads, the energy check a span.
  if body="$(query 'count_over_time(DCGM_FI_DEV_GPU_TEMP[5m]) >= 3' 2>/dev/null)" &&
    python3 -c 'import json,sys; sys.exit(0 if json.load(sys.stdin)["data"]["result"] else 1)' <<<"$body" 2>/dev/null; then
    break
  fi
  if ((SECONDS >= deadline)); then
    echo "gpu-check: DCGM_FI_DEV_GPU_TEMP did not appear within ${WAIT_S}s" >&2
    [[ -n "$ODIN_PID" ]] && tail -n 50 "$TMP/odin.log" >&2
    exit 1
  fi
  sleep 2
done

# Read both sides as close together in time as we can.
for metric in DCGM_FI_DEV_GPU_TEMP DCGM_FI_DEV_POWER_USAGE DCGM_FI_DEV_FB_USED DCGM_FI_DEV_FB_FREE \
  DCGM_FI_DEV_SM_CLOCK DCGM_FI_DEV_MEM_CLOCK DCGM_FI_DEV_GPU_UTIL; do
  query "${metric}" >"$TMP/$metric.json"
done
nvidia-smi --query-gpu=index,temperature.gpu,power.draw,memory.used,memory.free,clocks.sm,clocks.mem,utilization.gpu \
  --format=csv,noheader,nounits >"$TMP/smi.csv"

# What the structure checks read.
curl -fsS --max-time 10 -G "$URL/api/v1/series" --data-urlencode 'match[]={__name__=~"DCGM_FI_.*|odin_gpu_.*"}' \
  --data-urlencode "start=$(($(date +%s) - 60))" >"$TMP/series.json"
curl -fsS --max-time 10 "$URL/api/v1/metadata" >"$TMP/metadata.json"
query 'odin_gpu_process_memory_used_bytes' >"$TMP/processes.json"
# Raw samples of the window (a range selector answered as a matrix).
query 'DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION[5m]' >"$TMP/energy.json"
query 'DCGM_FI_DEV_POWER_USAGE[5m]' >"$TMP/power.json"
nvidia-smi --query-gpu=index,uuid,pci.bus_id,name,mig.mode.current --format=csv,noheader >"$TMP/identity.csv"
nvidia-smi --query-compute-apps=pid,gpu_uuid,used_memory --format=csv,noheader,nounits >"$TMP/apps.csv" 2>/dev/null || :
nvidia-smi mig -lgi >"$TMP/mig.txt" 2>/dev/null || :
nvidia-smi nvlink -s >"$TMP/nvlink.txt" 2>/dev/null || :

status=0
python3 - "$TMP" <<'PY' || status=$?
import json, os, sys

tmp = sys.argv[1]
# (metric, nvidia-smi column, tolerance kind, tolerance)
checks = [
    ("DCGM_FI_DEV_GPU_TEMP", 1, "abs", 2.0),      # ±2 °C
    ("DCGM_FI_DEV_POWER_USAGE", 2, "rel", 0.15),  # ±15 %
    ("DCGM_FI_DEV_FB_USED", 3, "rel", 0.02),      # ±2 % (of total memory, see below)
    ("DCGM_FI_DEV_FB_FREE", 4, "rel", 0.02),
    ("DCGM_FI_DEV_SM_CLOCK", 5, "rel", 0.10),     # ±10 %
    ("DCGM_FI_DEV_MEM_CLOCK", 6, "rel", 0.10),
    ("DCGM_FI_DEV_GPU_UTIL", 7, "abs", 20.0),     # ±20 points
]

smi = {}
with open(os.path.join(tmp, "smi.csv")) as f:
    for line in f:
        cols = [c.strip() for c in line.split(",")]
        if len(cols) >= 8:
            smi[cols[0]] = cols

odin = {}
mig_gpus = set()
for metric, *_ in checks:
    with open(os.path.join(tmp, metric + ".json")) as f:
        body = json.load(f)
    for r in body.get("data", {}).get("result", []):
        gpu = r["metric"].get("gpu")
        if r["metric"].get("GPU_I_ID"):
            # A MIG GPU's instances repeat the GPU's readings; their frame buffer is
            # the instance's own, not comparable with the whole GPU's.
            mig_gpus.add(gpu)
        odin.setdefault(metric, {})[gpu] = float(r["value"][1])

def num(s):
    try:
        return float(s)
    except ValueError:
        return None  # "[N/A]", "[Not Supported]"

failed = False
print(f"{'gpu':>3}  {'metric':<26} {'odin':>10} {'nvidia-smi':>11} {'tolerance':>10}  result")
for gpu in sorted(smi, key=int):
    cols = smi[gpu]
    fb_total = (num(cols[3]) or 0) + (num(cols[4]) or 0)
    for metric, col, kind, tol in checks:
        want = num(cols[col])
        got = odin.get(metric, {}).get(gpu)
        short = metric.replace("DCGM_FI_DEV_", "")
        if want is None:
            print(f"{gpu:>3}  {short:<26} {'' if got is None else f'{got:10.2f}':>10} {cols[col]:>11} {'':>10}  skip (nvidia-smi has no value)")
            continue
        if gpu in mig_gpus and (metric.startswith("DCGM_FI_DEV_FB_") or metric == "DCGM_FI_DEV_GPU_UTIL"):
            print(f"{gpu:>3}  {short:<26} {'' if got is None else f'{got:10.2f}':>10} {want:11.2f} {'':>10}  skip (MIG: per instance)")
            continue
        if got is None:
            print(f"{gpu:>3}  {short:<26} {'missing':>10} {want:11.2f} {'':>10}  FAIL")
            failed = True
            continue
        if kind == "abs":
            allowed = tol
            label = f"±{tol:g}"
        elif metric.startswith("DCGM_FI_DEV_FB_"):
            # A few hundred MiB of used memory moves by more than 2 % of itself between
            # two reads; 2 % of the card is the meaningful bound.
            allowed = tol * fb_total
            label = f"±{tol*100:g}% tot"
        else:
            allowed = tol * max(abs(want), 1.0)
            label = f"±{tol*100:g}%"
        ok = abs(got - want) <= allowed
        failed |= not ok
        print(f"{gpu:>3}  {short:<26} {got:10.2f} {want:11.2f} {label:>10}  {'ok' if ok else 'FAIL'}")

extra = sorted(set().union(*[set(v) for v in odin.values()]) - set(smi)) if odin else []
if extra:
    print(f"gpu-check: ODIN reports GPUs nvidia-smi does not: {extra}")
    failed = True
sys.exit(1 if failed else 0)
PY

echo
echo "gpu-check: names, types, help and labels against dcgm-exporter's defaults; MIG, processes, energy, NVLink"
python3 "$(dirname "$0")/gpu-check-structure.py" "$TMP" "$FIXTURE" || status=1

echo
echo "gpu-check: node collectors on this host (for the record, not checked: no node_exporter here)"
if query 'node_scrape_collector_success' >"$TMP/node_success.json" &&
  query 'count by (__name__) ({__name__=~"node_(dmi|rapl|nvme|infiniband|md|schedstat|power_supply|bonding|xfs|zfs|nfsd?|ipvs|btrfs|bcache|fibrechannel|tape)_.+"})' >"$TMP/node_hw.json"; then
  python3 - "$TMP" <<'PY' || :
import json, os, sys
tmp = sys.argv[1]
load = lambda f: json.load(open(os.path.join(tmp, f)))["data"]["result"]
ok = sorted(r["metric"]["collector"] for r in load("node_success.json") if r["value"][1] == "1")
failed = sorted(r["metric"]["collector"] for r in load("node_success.json") if r["value"][1] != "1")
print(f"succeeded ({len(ok)}): {' '.join(ok)}")
print(f"failed or no data ({len(failed)}): {' '.join(failed)}")
for r in sorted(load("node_hw.json"), key=lambda r: r["metric"]["__name__"]):
    print(f"  {r['metric']['__name__']}: {r['value'][1]} series")
PY
else
  echo "gpu-check: could not query the node collector's series"
fi

if ((status == 0)); then echo "gpu-check: all hold"; else echo "gpu-check: MISMATCH" >&2; fi
exit "$status"
