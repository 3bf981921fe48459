#!/usr/bin/env python3
"""Ingest CPU with TLS and basic auth against plain HTTP (issue 16).

The shared harness's remote-write workload (a tsbench dataset, replayed by tsbench)
into one ODIN twice, in one run: plain HTTP, then TLS (certificates from `odin certs`)
with a basic-auth user. tsbench speaks plain HTTP, so for the TLS run a small local
relay (this script, asyncio) takes its connections and opens a TLS connection to
ODIN for each; tsbench sends the user in the URL (basic auth). Only ODIN's own CPU
(from /proc/PID/stat, ingest plus settle) is counted: the relay's is not.

Usage:
  benches/security/tls_vs_plain.py --odin target/release/odin --tsbench TSBENCH \
      --dataset DIR [--out results.json]
"""

import argparse
import asyncio
import json
import os
import shutil
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

CLK = os.sysconf("SC_CLK_TCK")
USER = "bench"
PASSWORD = "bench-password"
# bcrypt (cost 10) of PASSWORD, as `htpasswd -nbBC 10 bench bench-password` makes.
HASH = "$2b$10$AkpUFyve8GcIyrm7Usm0ceLUEDmj5pXmEPL4IVP/NKyQfbM6g81v2"


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


def relay(listen_port, target_port, ca_file, ready):
    """Plain TCP in, TLS to ODIN out, one TLS connection per incoming one."""
    ctx = ssl.create_default_context(cafile=ca_file)

    async def pipe(reader, writer):
        try:
            while True:
                data = await reader.read(1 << 16)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            try:
                writer.close()
            except Exception:
                pass

    async def handle(client_r, client_w):
        server_r, server_w = await asyncio.open_connection(
            "127.0.0.1", target_port, ssl=ctx, server_hostname="127.0.0.1")
        await asyncio.gather(pipe(client_r, server_w), pipe(server_r, client_w))

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", listen_port)
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


def run(args, tls):
    root = tempfile.mkdtemp(prefix="odin-tls-bench-")
    port = free_port()
    cmd = [args.odin, "run", f"--storage.tsdb.path={root}/data",
           f"--web.listen-address=127.0.0.1:{port}", "--grpc-address=",
           f"--config.file={root}/empty.yml"]
    with open(f"{root}/empty.yml", "w") as f:
        f.write("global: {}\n")
    if tls:
        certs = f"{root}/certs"
        for sub in (["ca"], ["node", "--name=odin", "--host=127.0.0.1"]):
            subprocess.run([args.odin, "certs", *sub, f"--dir={certs}"], check=True,
                           stdout=subprocess.DEVNULL)
        with open(f"{certs}/web.yml", "w") as f:
            f.write("tls_server_config:\n  cert_file: odin.crt\n  key_file: odin.key\n"
                    f"basic_auth_users:\n  {USER}: '{HASH}'\n")
        cmd.append(f"--web.config.file={certs}/web.yml")
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        if tls:
            ctx = ssl.create_default_context(cafile=f"{root}/certs/ca.crt")
            base = f"https://127.0.0.1:{port}"
        else:
            ctx = None
            base = f"http://127.0.0.1:{port}"
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(base + "/-/ready", timeout=2, context=ctx) as r:
                    if r.status == 200:
                        break
            except Exception:
                time.sleep(0.1)
        if tls:
            relay_port = free_port()
            ready = threading.Event()
            threading.Thread(target=relay, args=(relay_port, port, f"{root}/certs/ca.crt", ready),
                             daemon=True).start()
            ready.wait(10)
            url = f"http://{USER}:{PASSWORD}@127.0.0.1:{relay_port}/api/v1/write"
        else:
            url = base + "/api/v1/write"
        c0 = cpu_s(proc.pid)
        rp = subprocess.run([args.tsbench, "replay", "--dir", args.dataset, "--url", url,
                             "--timeout-s", "1800"], stdout=subprocess.PIPE, check=True)
        rep = json.loads(rp.stdout)
        prev = cpu_s(proc.pid)
        for _ in range(30):
            time.sleep(2)
            c = cpu_s(proc.pid)
            if c - prev < 0.1:
                break
            prev = c
        c1 = cpu_s(proc.pid)
        acc = rep["samples_accepted"]
        out = {"tls_and_auth": tls, "samples_accepted": acc, "error_requests": rep["error_requests"],
               "samples_per_s": rep["samples_per_s"], "cpu_s": round(c1 - c0, 2),
               "cpu_s_per_1M_samples": round((c1 - c0) / max(acc, 1) * 1e6, 3)}
        log(json.dumps(out))
        return out
    finally:
        proc.terminate()
        proc.wait()
        shutil.rmtree(root, ignore_errors=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--odin", required=True)
    p.add_argument("--tsbench", required=True)
    p.add_argument("--dataset", required=True)
    p.add_argument("--out")
    args = p.parse_args()
    plain = run(args, False)
    secured = run(args, True)
    res = {"plain": plain, "tls_and_auth": secured,
           "cpu_per_sample_ratio": round(secured["cpu_s_per_1M_samples"] / plain["cpu_s_per_1M_samples"], 3)}
    text = json.dumps(res, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
