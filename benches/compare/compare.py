#!/usr/bin/env python3
"""Side-by-side comparison of tlsgate, NGINX and HAProxy as single-core TLS
terminators on loopback. Run through run.sh, which installs the tools and
builds the binaries; README.md beside this file explains every figure.

Design in short:
- One proxy alive at a time, pinned to CPU 0; every load generator and the
  backends pinned to CPU 1.
- Test by test, the proxies take turns: each repetition of a test runs
  every proxy once, back to back, in an order rotated from one repetition
  to the next, on a proxy started fresh for that one test. So the runs
  that a ratio compares lie seconds apart, not minutes: this VM's speed
  drifts by 20-30 % over minutes, and with whole rounds of all tests per
  proxy that drift decided the closer ratios.
- Every figure is the median of the repetitions. Next to it the harness
  records which core ran out: the proxy's (its CPU-seconds over the wall
  time) or the load generator's (CPU 1 busy time from /proc/stat).
- Every subprocess has a timeout, and everything started here is stopped
  by PID on exit, including on Ctrl-C.
- `--proxy-quota F` caps the proxy at a fraction F of CPU 0 (a cgroup CPU
  quota). On two cores the load generator and backends otherwise run out
  of CPU 1 before a fast proxy runs out of CPU 0, and the rate measures
  CPU 1; with the proxy capped below that, the rate is the proxy's own.

Standard library only (Python 3.11).
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent

PROXY_CPU = "0"
GEN_CPU = "1"
PORTS = {
    "PORT": 18443,  # one-way TLS listener
    "MTLS_PORT": 18444,  # mutual-TLS listener
    "BACKEND1_PORT": 18081,
    "BACKEND2_PORT": 18082,
    "ADMIN_PORT": 18901,  # tlsgate's admin API (metrics cross-check)
}
PROXIES = ("tlsgate", "nginx", "haproxy")
# Host in wrk's and h2load's URLs, hence their SNI. "localhost" as a real
# client would send a name; preflight falls back to 127.0.0.1 where
# localhost does not resolve to it first (wrk then sends the IP address as
# SNI, which RFC 6066 forbids and rustls logs a warning for).
URL_HOST = "localhost"
CLK_TCK = os.sysconf("SC_CLK_TCK")
ONE_MIB = 1024 * 1024
# A core counts as the limit when it was at least this busy.
SATURATED = 0.85
# The share of CPU 0 the proxy may use (--proxy-quota); 1.0: all of it.
PROXY_SHARE = 1.0
# CFS period of that quota: short, so that a capped proxy runs in slices
# of a few milliseconds rather than stalling for tens of them.
QUOTA_PERIOD_US = 10_000
# Other processes' CPU time on our two cores (fraction of one core) past
# which a figure is marked as disturbed.
NOISY = 0.10


def log(message: str) -> None:
    print(f"[compare {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Processes: everything started here, stopped by PID.


def children_map() -> dict[int, list[int]]:
    """ppid -> pids, from /proc (threads are not listed there, only processes)."""
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may hold spaces.
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def process_tree(pid: int) -> list[int]:
    """pid and its descendants (nginx: master + worker)."""
    tree = children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(tree.get(p, []))
    return out


def tree_cpu_times(pid: int) -> tuple[float, float]:
    """(utime, stime) of the process tree in seconds. /proc/PID/stat covers
    all threads of a process, including ones that already exited."""
    user = system = 0
    for p in process_tree(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text()
        except OSError:
            continue
        rest = fields[fields.rindex(")") + 2 :].split()
        user += int(rest[11])  # utime (field 14)
        system += int(rest[12])  # stime (field 15)
    return user / CLK_TCK, system / CLK_TCK


def tree_cpu_seconds(pid: int) -> float:
    """utime + stime of the process tree."""
    return sum(tree_cpu_times(pid))


def tree_rss_kib(pid: int) -> int:
    total = 0
    for p in process_tree(pid):
        try:
            status = Path(f"/proc/{p}/status").read_text()
        except OSError:
            continue
        m = re.search(r"^VmRSS:\s+(\d+) kB", status, re.M)
        if m:
            total += int(m.group(1))
    return total


def core_times() -> dict[str, tuple[int, int, int]]:
    """cpuN -> (task, busy, total) jiffies from /proc/stat: task = user +
    nice + system (time in processes), busy = all but idle and iowait
    (adds interrupts, softirq — loopback networking — and steal)."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if re.match(r"cpu\d+ ", line):
            name, *vals = line.split()
            v = [int(x) for x in vals[:8]]
            out[name] = (v[0] + v[1] + v[2], sum(v) - v[3] - v[4], sum(v))
    return out


class Processes:
    """The long-running processes this harness started."""

    def __init__(self) -> None:
        self.running: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, cmd: list[str], log_path: Path, **kw) -> subprocess.Popen:
        log_file = open(log_path, "ab")
        # A session of its own: a Ctrl-C in the terminal reaches only us,
        # and we stop it in order.
        # NO_COLOR: plain log lines (tlsgate colours them on a terminal).
        proc = subprocess.Popen(
            cmd, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True,
            env=dict(os.environ, NO_COLOR="1"), **kw
        )
        log_file.close()
        self.running.append((name, proc))
        return proc

    def stop(self, proc: subprocess.Popen, grace: float = 10.0) -> None:
        tree = process_tree(proc.pid) if proc.poll() is None else []
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                pass
        # Whatever of the tree is still alive (a worker whose master was
        # killed, a proxy that ignored SIGTERM): by PID, never by name.
        for p in tree:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if proc.poll() is None:
            proc.wait(timeout=5)
        self.running = [(n, p) for n, p in self.running if p is not proc]

    def stop_all(self) -> None:
        for _, proc in reversed(list(self.running)):
            try:
                self.stop(proc, grace=5.0)
            except Exception as err:  # cleanup must go on
                log(f"stopping pid {proc.pid}: {err}")


def run(cmd: list[str], timeout: float, check: bool = True, **kw) -> subprocess.CompletedProcess:
    """A bounded subprocess; its output is captured as text."""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=check, **kw)


def pinned(cpu: str, cmd: list[str]) -> list[str]:
    return ["taskset", "-c", cpu, *cmd]


class CpuQuota:
    """A cgroup capping its processes at a share of one CPU (v2 `cpu.max`,
    or v1 `cpu.cfs_quota_us`). Needs root, like any cgroup of one's own."""

    NAME = "tlsgate-compare-proxy"

    def __init__(self, share: float) -> None:
        root = Path("/sys/fs/cgroup")
        quota = int(share * QUOTA_PERIOD_US)
        if (root / "cgroup.controllers").exists():
            if "cpu" not in (root / "cgroup.controllers").read_text().split():
                raise SystemExit("--proxy-quota: the cgroup v2 cpu controller is not available here")
            (root / "cgroup.subtree_control").write_text("+cpu")
            self.path = root / self.NAME
            self.path.mkdir(exist_ok=True)
            (self.path / "cpu.max").write_text(f"{quota} {QUOTA_PERIOD_US}")
        elif (root / "cpu").is_dir():
            self.path = root / "cpu" / self.NAME
            self.path.mkdir(exist_ok=True)
            (self.path / "cpu.cfs_period_us").write_text(str(QUOTA_PERIOD_US))
            (self.path / "cpu.cfs_quota_us").write_text(str(quota))
        else:
            raise SystemExit("--proxy-quota: no cgroup CPU controller under /sys/fs/cgroup")

    def wrap(self, cmd: list[str]) -> list[str]:
        """cmd, started inside the cgroup (its children stay in it); the
        shell execs it, so the PID is cmd's."""
        return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(self.path / "cgroup.procs"), *cmd]

    def remove(self) -> None:
        try:
            self.path.rmdir()
        except OSError as err:
            log(f"cgroup {self.path} left in place: {err}")


def port_free(port: int) -> bool:
    """Nothing listens on the port (TIME_WAIT leftovers do not count: the
    proxies bind with SO_REUSEADDR too)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def wait_port_free(port: int, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if port_free(port):
            return True
        time.sleep(0.1)
    return False


# --------------------------------------------------------------------------
# Setup: PKI, configs, backends.


def render(template: str, out: Path, values: dict[str, object]) -> None:
    text = (HERE / template).read_text()
    for key, value in values.items():
        text = text.replace(f"@@{key}@@", str(value))
    left = re.findall(r"@@[A-Z0-9_]+@@", text)
    if left:
        raise SystemExit(f"{template}: no value for {', '.join(sorted(set(left)))}")
    out.write_text(text)


def make_pki(pki: Path) -> None:
    """ECDSA P-256 everywhere: a self-signed server certificate for
    localhost/127.0.0.1 (the same file for all three proxies) and a client
    CA with one client certificate for the mutual-TLS figure."""
    pki.mkdir(parents=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
    run(
        ["openssl", "req", "-x509", *ec, "-days", "90",
         "-keyout", pki / "server.key", "-out", pki / "server.pem",
         "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
         "-addext", "keyUsage=critical,digitalSignature",
         "-addext", "extendedKeyUsage=serverAuth"],
        timeout=30,
    )
    run(
        ["openssl", "req", "-x509", *ec, "-days", "90",
         "-keyout", pki / "client-ca.key", "-out", pki / "client-ca.pem",
         "-subj", "/CN=tlsgate bench clients CA",
         "-addext", "basicConstraints=critical,CA:TRUE,pathlen:0",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign"],
        timeout=30,
    )
    run(
        ["openssl", "req", "-new", *ec,
         "-keyout", pki / "client.key", "-out", pki / "client.csr",
         "-subj", "/CN=bench-client"],
        timeout=30,
    )
    (pki / "client.ext").write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=clientAuth\n"
    )
    run(
        ["openssl", "x509", "-req", "-in", pki / "client.csr", "-days", "90",
         "-CA", pki / "client-ca.pem", "-CAkey", pki / "client-ca.key", "-CAcreateserial",
         "-extfile", pki / "client.ext", "-out", pki / "client.pem"],
        timeout=30,
    )
    # HAProxy wants the chain and the key in one file.
    (pki / "server-combined.pem").write_text(
        (pki / "server.pem").read_text() + (pki / "server.key").read_text()
    )


def nginx_user_line() -> str:
    # As root, nginx would switch its worker to "nobody", which cannot read
    # the 0700 work dir; as anyone else the directive is ignored anyway.
    return "user root;" if os.geteuid() == 0 else ""


def nginx_dirs(d: Path) -> None:
    for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (d / "tmp" / sub).mkdir(parents=True, exist_ok=True)


@dataclass
class Env:
    work: Path
    pki: Path
    tlsgate_bin: Path
    loadgen_bin: Path
    procs: Processes
    backend_pid: int = 0
    values: dict[str, object] = field(default_factory=dict)
    quota: CpuQuota | None = None


def write_configs(env: Env) -> None:
    # HAProxy needs two descriptors per connection and refuses to start
    # when it cannot have them.
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    maxconn = min(10_000, (nofile - 200) // 2)
    values = dict(PORTS, PKI=env.pki, USER_LINE=nginx_user_line(), MAXCONN=maxconn)
    env.values = values
    backend = env.work / "backend"
    nginx_dirs(backend)
    (backend / "www").mkdir()
    # Random bytes: nothing on the way can shrink them.
    (backend / "www" / "1m").write_bytes(os.urandom(ONE_MIB))
    render("backend-nginx.conf.in", backend / "nginx.conf", dict(values, DIR=backend))

    d = env.work / "nginx"
    nginx_dirs(d)
    render("nginx.conf.in", d / "nginx.conf", dict(values, DIR=d))

    d = env.work / "haproxy"
    d.mkdir()
    render("haproxy.cfg.in", d / "haproxy.cfg", values)

    d = env.work / "tlsgate"
    (d / "store" / "server" / "bench").mkdir(parents=True)
    (d / "store" / "ca" / "clients").mkdir(parents=True)
    shutil.copy(env.pki / "server.pem", d / "store" / "server" / "bench" / "cert.pem")
    shutil.copy(env.pki / "server.key", d / "store" / "server" / "bench" / "key.pem")
    shutil.copy(env.pki / "client-ca.pem", d / "store" / "ca" / "clients" / "ca.pem")
    render("tlsgate.toml.in", d / "tlsgate.toml", values)


def proxy_command(env: Env, name: str) -> list[str]:
    if name == "tlsgate":
        cfg = env.work / "tlsgate" / "tlsgate.toml"
        return [str(env.tlsgate_bin), "serve", "--config", str(cfg), "--workers", "1"]
    if name == "nginx":
        d = env.work / "nginx"
        return ["nginx", "-p", str(d), "-e", str(d / "error.log"), "-c", str(d / "nginx.conf")]
    if name == "haproxy":
        return ["haproxy", "-db", "-f", str(env.work / "haproxy" / "haproxy.cfg")]
    raise ValueError(name)


def check_config(env: Env, name: str) -> None:
    if name == "tlsgate":
        cmd = [str(env.tlsgate_bin), "check-config", "--config", str(env.work / "tlsgate" / "tlsgate.toml")]
    elif name == "nginx":
        d = env.work / "nginx"
        cmd = ["nginx", "-t", "-p", str(d), "-e", str(d / "error.log"), "-c", str(d / "nginx.conf")]
    else:
        cmd = ["haproxy", "-c", "-f", str(env.work / "haproxy" / "haproxy.cfg")]
    result = run(cmd, timeout=30, check=False)
    if result.returncode != 0:
        raise SystemExit(f"{name}: config check failed:\n{result.stdout}{result.stderr}")


# --------------------------------------------------------------------------
# A TLS client for readiness and sanity checks (not for load).


def https_get(port: int, path: str = "/", alpn: list[str] | None = None,
              client_cert: Path | None = None, client_key: Path | None = None,
              timeout: float = 3.0) -> tuple[int, str | None, int]:
    """(status, negotiated ALPN, body length) of one HTTP/1.1 GET; with ALPN
    h2 offered it only reports what was negotiated (status 0)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    if alpn:
        ctx.set_alpn_protocols(alpn)
    if client_cert:
        ctx.load_cert_chain(client_cert, client_key)
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as tls:
            negotiated = tls.selected_alpn_protocol()
            if negotiated == "h2":
                return 0, negotiated, 0
            tls.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
            data = b""
            while True:
                chunk = tls.recv(65536)
                if not chunk:
                    break
                data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1]) if head.startswith(b"HTTP/") else -1
    return status, negotiated, len(body)


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 20.0, **kw) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with code {proc.returncode} while starting")
        try:
            status, _, _ = https_get(port, **kw)
            if status == 200:
                return
            last = f"status {status}"
        except (OSError, ssl.SSLError, ValueError, IndexError) as err:
            last = str(err)
        time.sleep(0.2)
    raise RuntimeError(f"port {port} not ready after {timeout:.0f} s: {last}")


# --------------------------------------------------------------------------
# Measurement windows and the load generators.


@dataclass
class Window:
    """What a load run cost: wall time, the proxy's CPU, the cores' busy time."""

    wall: float
    proxy_cpu: float
    proxy_user: float  # the part of proxy_cpu spent in user space
    gen_cpu: float  # the load generator's own CPU (reaped child rusage)
    backend_cpu: float
    core_busy: dict[str, float]  # cpuN -> busy fraction over the window
    core_task: dict[str, float]  # cpuN -> fraction spent in processes

    @property
    def proxy_util(self) -> float:
        return self.proxy_cpu / self.wall if self.wall else 0.0

    @property
    def proxy_core_util(self) -> float:
        return self.core_busy.get(f"cpu{PROXY_CPU}", 0.0)

    @property
    def gen_core_util(self) -> float:
        return self.core_busy.get(f"cpu{GEN_CPU}", 0.0)

    @property
    def foreign(self) -> float:
        """Process time on either core that was none of ours (someone
        else's build, say), as a fraction of one core: the noise indicator.
        Softirq time (loopback networking done for our processes) is not
        counted here."""
        ours = {
            f"cpu{PROXY_CPU}": self.proxy_util,
            f"cpu{GEN_CPU}": (self.gen_cpu + self.backend_cpu) / self.wall if self.wall else 0.0,
        }
        return sum(max(0.0, self.core_task.get(core, 0.0) - mine) for core, mine in ours.items())

    def gen_cpu_per(self, count: int, per: int) -> float:
        """CPU 1's processes (load generator and backends) per `per` of
        `count` units of work."""
        return (self.gen_cpu + self.backend_cpu) / count * per if count else float("nan")

    def limit(self) -> str:
        """P: the proxy used its core; p: the proxy's core was full but
        not with the proxy alone (softirq, other processes); G: the load
        generator's core was full; -: neither."""
        if self.proxy_util >= SATURATED * PROXY_SHARE:
            out = "P"
        else:
            out = "p" if self.proxy_core_util >= SATURATED else ""
        # Both cores full (PG): the rate is bounded by the load generator's
        # core as much as by the proxy, so no proxy can go much faster.
        if self.gen_core_util >= SATURATED:
            out += "G"
        return out or "-"

    def cell(self) -> str:
        noisy = "!" if self.foreign > NOISY else ""
        return (f"{self.limit()}{noisy} {self.proxy_util * 100:.0f}/{self.proxy_core_util * 100:.0f}"
                f"/{self.gen_core_util * 100:.0f}")


def measured(env: Env, proxy_pid: int, fn):
    """Runs fn (one load run) and records what it cost whom."""
    user0, sys0 = tree_cpu_times(proxy_pid)
    backend0 = tree_cpu_seconds(env.backend_pid)
    cores0 = core_times()
    ru0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    result = fn()
    wall = time.monotonic() - t0
    ru1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    cores1 = core_times()
    user1, sys1 = tree_cpu_times(proxy_pid)
    backend1 = tree_cpu_seconds(env.backend_pid)
    busy, task = {}, {}
    for core, (k1, b1, t1) in cores1.items():
        k0, b0, t0_ = cores0.get(core, (k1, b1, t1))
        busy[core] = (b1 - b0) / (t1 - t0_) if t1 > t0_ else 0.0
        task[core] = (k1 - k0) / (t1 - t0_) if t1 > t0_ else 0.0
    gen = (ru1.ru_utime - ru0.ru_utime) + (ru1.ru_stime - ru0.ru_stime)
    cpu = (user1 + sys1) - (user0 + sys0)
    return result, Window(wall, cpu, user1 - user0, gen, backend1 - backend0, busy, task)


UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
SIZES = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def wrk_latency_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s|m|h)", text)
    if not m:
        raise ValueError(f"wrk latency {text!r}")
    return float(m.group(1)) * UNITS[m.group(2)]


def parse_wrk(out: str) -> dict:
    res = {}
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+), ([\d.]+)(\w+) read", out)
    if not m:
        raise ValueError(f"unexpected wrk output:\n{out}")
    res["requests"] = int(m.group(1))
    m = re.search(r"Requests/sec:\s+([\d.]+)", out)
    res["rps"] = float(m.group(1)) if m else 0.0
    m = re.search(r"Transfer/sec:\s+([\d.]+)(\w+)", out)
    res["bytes_per_s"] = float(m.group(1)) * SIZES.get(m.group(2), 1) if m else 0.0
    for pct in ("50", "99"):
        m = re.search(rf"^\s+{pct}(?:\.000)?%\s+(\S+)", out, re.M)
        if m:
            res[f"p{pct}_ms"] = wrk_latency_ms(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    res["socket_errors"] = dict(zip(("connect", "read", "write", "timeout"), map(int, m.groups()))) if m else {}
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    res["non_2xx"] = int(m.group(1)) if m else 0
    return res


def run_wrk(url: str, conns: int, secs: int) -> dict:
    cmd = pinned(GEN_CPU, ["wrk", "-t1", f"-c{conns}", f"-d{secs}s", "--timeout", "5s", "--latency", url])
    result = run(cmd, timeout=secs + 30)
    return parse_wrk(result.stdout)


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest rank."""
    if not sorted_values:
        return float("nan")
    rank = max(1, round(pct / 100 * len(sorted_values) + 0.5 - 1e-9))
    return sorted_values[min(rank, len(sorted_values)) - 1]


def run_h2load(url: str, conns: int, streams: int, secs: int, log_path: Path) -> dict:
    # h2load prints no percentiles: they come from its per-request log
    # (start time, status, microseconds to the end of the response).
    cmd = pinned(GEN_CPU, ["h2load", "-t1", f"-c{conns}", f"-m{streams}", "-D", str(secs),
                           f"--log-file={log_path}", url])
    result = run(cmd, timeout=secs + 30)
    out = result.stdout
    res: dict = {}
    m = re.search(r"finished in ([\d.]+)s, ([\d.]+) req/s", out)
    if not m:
        raise ValueError(f"unexpected h2load output:\n{out}\n{result.stderr}")
    res["rps"] = float(m.group(2))
    m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout", out)
    if m:
        res["requests"] = int(m.group(4))
        res["failed"] = int(m.group(5))
        res["errored"] = int(m.group(6))
        res["timeout"] = int(m.group(7))
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    res["non_2xx"] = sum(map(int, m.groups()[1:])) if m else 0
    # Spread of req/s across h2load's clients (connections): fairness.
    m = re.search(r"^req/s\s+:\s+([\d.]+)\s+([\d.]+)", out, re.M)
    if m:
        res["client_rps_min"], res["client_rps_max"] = float(m.group(1)), float(m.group(2))
    m = re.search(r"Application protocol: (\S+)", out)
    res["protocol"] = m.group(1) if m else "none"
    latencies = []
    with open(log_path) as f:
        for line in f:
            parts = line.split("\t")
            if len(parts) >= 3:
                latencies.append(int(parts[2]) / 1000.0)
    latencies.sort()
    res["p50_ms"] = percentile(latencies, 50)
    res["p99_ms"] = percentile(latencies, 99)
    log_path.unlink(missing_ok=True)
    return res


def run_loadgen(env: Env, mode: str, port: int, conns: int, secs: int) -> dict:
    cmd = [str(env.loadgen_bin), "--connect", f"127.0.0.1:{port}", "--mode", mode,
           "--concurrency", str(conns), "--duration", str(secs)]
    if mode == "mtls":
        cmd += ["--cert", str(env.pki / "client.pem"), "--key", str(env.pki / "client.key")]
    result = run(pinned(GEN_CPU, cmd), timeout=secs + 30)
    for line in result.stderr.splitlines():
        log(f"  {line}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def run_idle_rss(env: Env, proxy_pid: int, count: int) -> dict:
    """Opens and holds `count` TLS connections (one request each), then
    compares the proxy's RSS with its RSS before."""
    time.sleep(1.0)
    before = tree_rss_kib(proxy_pid)
    cmd = [str(env.loadgen_bin), "--connect", f"127.0.0.1:{PORTS['PORT']}", "--mode", "hold",
           "--connections", str(count), "--concurrency", "50", "--duration", "90"]
    proc = subprocess.Popen(pinned(GEN_CPU, cmd), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        sel = selectors.DefaultSelector()
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout=60):
            raise RuntimeError("idle connections not established within 60 s")
        line = proc.stdout.readline()
        if not line.startswith("ready "):
            raise RuntimeError(f"loadgen hold: {line!r} {proc.stderr.read() if proc.poll() is not None else ''}")
        ready = json.loads(line[len("ready "):])
        # Let the proxy finish whatever the last handshakes started.
        time.sleep(2.0)
        after = tree_rss_kib(proxy_pid)
    finally:
        if proc.stdin:
            proc.stdin.close()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    held = ready["ok"]
    ready.update(
        rss_before_kib=before,
        rss_after_kib=after,
        kib_per_conn=(after - before) / held if held else float("nan"),
    )
    return ready


def tlsgate_metrics() -> dict[str, float]:
    """tlsgate's own handshake counters (the resumption cross-check)."""
    url = f"http://127.0.0.1:{PORTS['ADMIN_PORT']}/metrics"
    with urllib.request.urlopen(url, timeout=3) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        m = re.match(r"(tlsgate_handshakes_(?:total|resumed_total)|tlsgate_requests_total)\{([^}]*)\} ([\d.e+]+)", line)
        if m:
            key = f"{m.group(1)}{{{m.group(2)}}}"
            out[key] = float(m.group(3))
    return out


# --------------------------------------------------------------------------
# The figures.


@dataclass
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool
    fmt: str


METRICS = [
    Metric("h1_rps", "Keep-alive HTTP/1.1", "req/s", True, "{:,.0f}"),
    Metric("h1_p50", "Keep-alive HTTP/1.1 p50", "ms", False, "{:.2f}"),
    Metric("h1_p99", "Keep-alive HTTP/1.1 p99", "ms", False, "{:.2f}"),
    Metric("h2_rps", "Keep-alive HTTP/2", "req/s", True, "{:,.0f}"),
    Metric("h2_p50", "Keep-alive HTTP/2 p50", "ms", False, "{:.2f}"),
    Metric("h2_p99", "Keep-alive HTTP/2 p99", "ms", False, "{:.2f}"),
    Metric("full_hs", "Full handshakes (TLS 1.3, no resumption)", "/s", True, "{:,.0f}"),
    Metric("mtls_hs", "Mutual-TLS handshakes", "/s", True, "{:,.0f}"),
    Metric("resumed_hs", "Resumed handshakes (TLS 1.3 tickets)", "/s", True, "{:,.0f}"),
    Metric("mib_1m", "1 MiB responses", "MiB/s", True, "{:,.0f}"),
    Metric("rss_idle", "RSS per idle TLS connection", "KiB", False, "{:.1f}"),
    Metric("cpu_full", "Proxy CPU per 1,000 full handshakes", "CPU-s", False, "{:.3f}"),
    Metric("cpu_mtls", "Proxy CPU per 1,000 mTLS handshakes", "CPU-s", False, "{:.3f}"),
    Metric("cpu_resumed", "Proxy CPU per 1,000 resumed handshakes", "CPU-s", False, "{:.3f}"),
    Metric("cpu_h1", "Proxy CPU per 10,000 HTTP/1.1 requests", "CPU-s", False, "{:.3f}"),
    Metric("cpu_h2", "Proxy CPU per 10,000 HTTP/2 requests", "CPU-s", False, "{:.3f}"),
    # The proxy's own code (TLS records, HTTP parsing, its event loop); the
    # rest of its CPU is the kernel's loopback TCP, which every proxy pays
    # alike for the same syscalls and packets.
    Metric("usr_h1", "Proxy user-space CPU per 10,000 HTTP/1.1 requests", "CPU-s", False, "{:.3f}"),
    Metric("usr_h2", "Proxy user-space CPU per 10,000 HTTP/2 requests", "CPU-s", False, "{:.3f}"),
    # What the same requests cost CPU 1 (load generator and backends): the
    # same for every proxy when CPU 1 is the limit, so no proxy's rate can
    # pull far ahead of another's there.
    Metric("gen_h1", "CPU 1 (load generator + backends) per 10,000 HTTP/1.1 requests", "CPU-s", False,
           "{:.3f}"),
    Metric("gen_h2", "CPU 1 (load generator + backends) per 10,000 HTTP/2 requests", "CPU-s", False,
           "{:.3f}"),
    Metric("cpu_1m", "Proxy CPU per GiB of 1 MiB responses", "CPU-s", False, "{:.3f}"),
]


@dataclass
class Sample:
    value: float
    window: Window | None = None


class Results:
    def __init__(self) -> None:
        # proxy -> metric -> samples (one per repetition)
        self.samples: dict[str, dict[str, list[Sample]]] = {}
        self.anomalies: list[str] = []
        self.raw: list[dict] = []

    def add(self, proxy: str, key: str, value: float, window: Window | None = None) -> None:
        self.samples.setdefault(proxy, {}).setdefault(key, []).append(Sample(value, window))

    def note(self, message: str) -> None:
        if message not in self.anomalies:
            self.anomalies.append(message)
        log(f"NOTE: {message}")

    def median(self, proxy: str, key: str) -> Sample | None:
        samples = [s for s in self.samples.get(proxy, {}).get(key, []) if s.value == s.value]
        if not samples:
            return None
        samples.sort(key=lambda s: s.value)
        # The median run itself (lower middle for an even count), so that
        # its window tells what limited that figure.
        return samples[(len(samples) - 1) // 2]


def check_errors(results: Results, proxy: str, test: str, res: dict) -> None:
    bad = {k: v for k, v in res.get("socket_errors", {}).items() if v}
    for k in ("non_2xx", "failed", "errored", "timeout", "connect_errors", "tls_errors", "read_errors", "timeouts"):
        if res.get(k):
            bad[k] = res[k]
    if bad:
        results.note(f"{proxy} {test}: errors {bad}")


def wait_for_quiet(opts) -> None:
    """On a shared machine, waits (bounded) until someone else's build has
    left the two cores: with no load running, they should be nearly idle.
    Up to --quiet-wait seconds per test, --quiet-budget seconds per
    harness run; after that the runs go ahead and are marked if disturbed."""
    deadline = time.monotonic() + min(opts.quiet_wait, opts.quiet_budget)
    start = time.monotonic()
    while True:
        before = core_times()
        time.sleep(0.5)
        after = core_times()
        busy = sum((after[c][1] - before[c][1]) / max(1, after[c][2] - before[c][2])
                   for c in (f"cpu{PROXY_CPU}", f"cpu{GEN_CPU}") if c in after and c in before)
        if busy < NOISY or time.monotonic() >= deadline:
            break
    waited = time.monotonic() - start
    opts.quiet_budget = max(0.0, opts.quiet_budget - waited)
    if waited > 2:
        log(f"waited {waited:.0f} s for other processes to leave the cores (now {busy:.0%} busy)")


@dataclass
class Ctx:
    """One proxy's turn: what each test needs."""

    env: Env
    name: str
    pid: int
    results: Results
    opts: argparse.Namespace

    @property
    def url(self) -> str:
        return f"https://{URL_HOST}:{PORTS['PORT']}/"


def test_idle(c: Ctx) -> None:
    res = run_idle_rss(c.env, c.pid, c.opts.idle_connections)
    c.results.add(c.name, "rss_idle", res["kib_per_conn"])
    check_errors(c.results, c.name, "idle connections", res)
    if res["ok"] < c.opts.idle_connections:
        c.results.note(f"{c.name} idle connections: only {res['ok']} of {c.opts.idle_connections} opened")
    log(f"{c.name}: idle RSS {res['rss_before_kib']} -> {res['rss_after_kib']} KiB, "
        f"{res['kib_per_conn']:.1f} KiB/conn ({res['ok']} held)")
    c.results.raw.append({"proxy": c.name, "test": "idle", **res})
    # Let the proxy close the 2,000 connections before the next test.
    time.sleep(1.0)


def test_h1(c: Ctx) -> None:
    res, w = measured(c.env, c.pid, lambda: run_wrk(c.url, c.opts.h1_connections, c.opts.duration))
    check_errors(c.results, c.name, "HTTP/1.1", res)
    c.results.add(c.name, "h1_rps", res["rps"], w)
    c.results.add(c.name, "h1_p50", res.get("p50_ms", float("nan")), w)
    c.results.add(c.name, "h1_p99", res.get("p99_ms", float("nan")), w)
    c.results.add(c.name, "cpu_h1", w.proxy_cpu / res["requests"] * 10_000 if res["requests"] else float("nan"), w)
    c.results.add(c.name, "usr_h1", w.proxy_user / res["requests"] * 10_000 if res["requests"] else float("nan"), w)
    c.results.add(c.name, "gen_h1", w.gen_cpu_per(res["requests"], 10_000), w)
    log(f"{c.name}: h1 {res['rps']:,.0f} req/s p50 {res.get('p50_ms')} p99 {res.get('p99_ms')} ms [{w.cell()}]")
    c.results.raw.append({"proxy": c.name, "test": "h1", **res, "window": w.__dict__})


def test_h2(c: Ctx) -> None:
    h2log = c.env.work / f"h2load-{c.name}.log"
    o = c.opts
    res, w = measured(c.env, c.pid, lambda: run_h2load(c.url, o.h2_connections, o.h2_streams, o.duration, h2log))
    check_errors(c.results, c.name, "HTTP/2", res)
    if res["protocol"] != "h2":
        c.results.note(f"{c.name} HTTP/2: h2load negotiated {res['protocol']!r}, not h2")
    c.results.add(c.name, "h2_rps", res["rps"], w)
    c.results.add(c.name, "h2_p50", res["p50_ms"], w)
    c.results.add(c.name, "h2_p99", res["p99_ms"], w)
    c.results.add(c.name, "cpu_h2", w.proxy_cpu / res["requests"] * 10_000 if res.get("requests") else float("nan"), w)
    c.results.add(c.name, "usr_h2", w.proxy_user / res["requests"] * 10_000 if res.get("requests") else float("nan"), w)
    c.results.add(c.name, "gen_h2", w.gen_cpu_per(res.get("requests", 0), 10_000), w)
    log(f"{c.name}: h2 {res['rps']:,.0f} req/s p50 {res['p50_ms']:.2f} p99 {res['p99_ms']:.2f} ms "
        f"(per-connection req/s min {res.get('client_rps_min')} max {res.get('client_rps_max')}) [{w.cell()}]")
    c.results.raw.append({"proxy": c.name, "test": "h2", **res, "window": w.__dict__})


def handshake_test(mode: str, key: str, cpu_key: str, port_key: str):
    def test(c: Ctx) -> None:
        before = tlsgate_metrics() if c.name == "tlsgate" else {}
        port = PORTS[port_key]
        res, w = measured(c.env, c.pid,
                          lambda: run_loadgen(c.env, mode, port, c.opts.hs_connections, c.opts.duration))
        check_errors(c.results, c.name, f"{mode} handshakes", res)
        ok = res["ok"]
        if mode == "resumed":
            # The first connection of each loadgen worker is a full handshake.
            if ok and res["resumed"] < 0.9 * ok:
                c.results.note(f"{c.name} resumed handshakes: only {res['resumed']} of {ok} resumed")
        elif res["resumed"]:
            c.results.note(f"{c.name} {mode} handshakes: {res['resumed']} resumed (expected none)")
        if before:
            after = tlsgate_metrics()
            resumed = sum(v for k, v in after.items() if "resumed" in k) - sum(
                v for k, v in before.items() if "resumed" in k)
            res["tlsgate_resumed_counter"] = resumed
            # The server's own count must agree with the client's (give or
            # take the connections cut off at the deadline).
            if abs(resumed - res["resumed"]) > max(60, 0.02 * ok):
                c.results.note(f"tlsgate {mode} handshakes: tlsgate counted {resumed:.0f} resumed, "
                               f"the load generator {res['resumed']}")
        c.results.add(c.name, key, res["rate"], w)
        c.results.add(c.name, cpu_key, w.proxy_cpu / ok * 1000 if ok else float("nan"), w)
        log(f"{c.name}: {mode} {res['rate']:,.0f} handshakes/s, {res['resumed']} resumed [{w.cell()}]")
        c.results.raw.append({"proxy": c.name, "test": mode, **res, "window": w.__dict__})

    return test


def test_1m(c: Ctx) -> None:
    url = f"https://{URL_HOST}:{PORTS['PORT']}/1m"
    res, w = measured(c.env, c.pid, lambda: run_wrk(url, c.opts.mib_connections, c.opts.duration))
    check_errors(c.results, c.name, "1 MiB", res)
    mib_s = res["bytes_per_s"] / ONE_MIB
    c.results.add(c.name, "mib_1m", mib_s, w)
    gib = res["requests"] / 1024
    c.results.add(c.name, "cpu_1m", w.proxy_cpu / gib if gib else float("nan"), w)
    log(f"{c.name}: 1 MiB {mib_s:,.0f} MiB/s [{w.cell()}]")
    c.results.raw.append({"proxy": c.name, "test": "1m", **res, "window": w.__dict__})


# Run in this order, each on a proxy that has seen only the warm-up (so the
# idle test's "before" is not inflated by allocator caches of heavier tests).
TESTS = {
    "idle": test_idle,
    "h1": test_h1,
    "h2": test_h2,
    "full": handshake_test("full", "full_hs", "cpu_full", "PORT"),
    "mtls": handshake_test("mtls", "mtls_hs", "cpu_mtls", "MTLS_PORT"),
    "resumed": handshake_test("resumed", "resumed_hs", "cpu_resumed", "PORT"),
    "1m": test_1m,
}


def measure_proxy(env: Env, name: str, test: str, results: Results, opts, first: bool) -> None:
    """One turn: starts the proxy, warms it up, runs one test, stops it."""
    port, mport = PORTS["PORT"], PORTS["MTLS_PORT"]
    for p in (port, mport):
        if not wait_port_free(p):
            raise RuntimeError(f"port {p} still in use")
    log(f"{name}: starting on CPU {PROXY_CPU}")
    cmd = pinned(PROXY_CPU, proxy_command(env, name))
    if env.quota:
        cmd = env.quota.wrap(cmd)
    proc = env.procs.start(name, cmd, env.work / f"{name}.log")
    ctx = Ctx(env, name, proc.pid, results, opts)  # taskset execs the proxy: same PID
    try:
        wait_ready(port, proc)
        wait_ready(mport, proc, client_cert=env.pki / "client.pem", client_key=env.pki / "client.key")
        if first:
            sanity_checks(env, name, results)
        # Warm-up: lazily built state (TLS configs, backend pools, page
        # cache) is there before anything is measured.
        run_wrk(ctx.url, 10, 1)
        if proc.poll() is not None:
            raise RuntimeError(f"exited with code {proc.returncode} during the warm-up")
        wait_for_quiet(opts)
        try:
            TESTS[test](ctx)
        except (RuntimeError, ValueError, KeyError, json.JSONDecodeError,
                subprocess.SubprocessError, OSError) as err:
            results.note(f"{name} {test}: {err}")
    finally:
        env.procs.stop(proc)
        if proc.returncode not in (0, -signal.SIGTERM, 143):
            results.note(f"{name} exited with code {proc.returncode} when stopped (log: {name}.log)")
        scan_log(env, name, results)


# Lines in a proxy's own log that say something went wrong while serving.
LOG_PROBLEMS = {
    "tlsgate": re.compile(r"\b(WARN|ERROR)\b"),
    "nginx": re.compile(r"\[(error|crit|alert|emerg)\]"),
    "haproxy": re.compile(r"\[(ALERT|WARNING)\]"),
}


def scan_log(env: Env, name: str, results: Results) -> None:
    """Counts the warnings and errors the proxy logged in this turn (the
    logs are truncated after each turn)."""
    paths = [env.work / f"{name}.log"]
    if name == "nginx":
        paths.append(env.work / "nginx" / "error.log")
    hits: list[str] = []
    for path in paths:
        if path.exists():
            hits += [line for line in path.read_text(errors="replace").splitlines() if LOG_PROBLEMS[name].search(line)]
            path.write_text("")
    if hits:
        sample = re.sub(r"\x1b\[[0-9;]*m", "", hits[0]).strip()[:300]
        results.note(f"{name} logged {len(hits)} warning/error line(s), e.g. {sample!r}")


def sanity_checks(env: Env, name: str, results: Results) -> None:
    """Once per proxy: ALPN h2 is offered, /1m arrives whole, mTLS refuses a
    client without a certificate."""
    port, mport = PORTS["PORT"], PORTS["MTLS_PORT"]
    _, negotiated, _ = https_get(port, alpn=["h2", "http/1.1"])
    if negotiated != "h2":
        results.note(f"{name}: ALPN h2 not negotiated (got {negotiated!r})")
    status, _, length = https_get(port, path="/1m")
    if status != 200 or length != ONE_MIB:
        results.note(f"{name}: GET /1m gave status {status}, {length} bytes (expected 200, {ONE_MIB})")
    try:
        status, _, _ = https_get(mport)
        # NGINX completes the handshake and answers 400 ("No required SSL
        # certificate was sent"); the others refuse the handshake.
        if status != 400:
            results.note(f"{name}: mutual-TLS listener answered {status} to a client without a certificate")
    except (OSError, ssl.SSLError, IndexError, ValueError):
        pass  # refused, as it must be


# --------------------------------------------------------------------------
# Report.


def fmt(metric: Metric, sample: Sample | None) -> str:
    return "n/a" if sample is None else metric.fmt.format(sample.value)


def limit_cell(results: Results, key: str, proxies: list[str]) -> str:
    parts = []
    for p in proxies:
        s = results.median(p, key)
        if s is None or s.window is None:
            parts.append("·")
            continue
        parts.append(s.window.cell())
    return " · ".join(parts)


def ratio(a: Sample | None, b: Sample | None) -> str:
    if a is None or b is None or not b.value:
        return "n/a"
    return f"{a.value / b.value:.2f}"


def done_criteria(results: Results) -> list[str]:
    def v(p: str, k: str) -> float | None:
        s = results.median(p, k)
        return None if s is None else s.value

    def lim(p: str, k: str) -> str:
        s = results.median(p, k)
        return s.window.limit() if s and s.window else "?"

    out = []

    def check(label: str, ok: bool | None, detail: str) -> None:
        verdict = "n/a" if ok is None else ("pass" if ok else "**FAIL**")
        out.append(f"- {verdict}: {label} ({detail})")

    for key, cpu_key, label in (("full_hs", "cpu_full", "full handshakes"), ("mtls_hs", "cpu_mtls", "mTLS handshakes")):
        t, n, tc, nc = v("tlsgate", key), v("nginx", key), v("tlsgate", cpu_key), v("nginx", cpu_key)
        if None in (t, n, tc, nc):
            check(f"{label} ≥ 2× NGINX", None, "missing figures")
            continue
        rate_ok = t >= 2 * n
        # Where the load generator saturated instead of tlsgate, the rate
        # says little; CPU per handshake still compares.
        cpu_ok = not lim("tlsgate", key).startswith("P") and tc <= 0.5 * nc
        check(f"{label} ≥ 2× NGINX, or proxy CPU per handshake ≤ ½ NGINX's where the load generator saturates",
              rate_ok or cpu_ok, f"rate ×{t / n:.2f}, CPU per handshake ×{tc / nc:.2f}")
    t, n, h = v("tlsgate", "h1_rps"), v("nginx", "h1_rps"), v("haproxy", "h1_rps")
    if None not in (t, n):
        detail = f"×{t / n:.2f}"
        tc, nc, tg, ng = v("tlsgate", "cpu_h1"), v("nginx", "cpu_h1"), v("tlsgate", "gen_h1"), v("nginx", "gen_h1")
        if None not in (tc, nc, tg, ng):
            # Where CPU 1 is the limit for both, these say why the rate
            # ratio stays near 1: what each request costs the proxy, and
            # what it costs CPU 1.
            detail += f"; proxy CPU per request ×{tc / nc:.2f}, CPU 1 per request ×{tg / ng:.2f}"
        check("keep-alive HTTP/1.1 ≥ 1.2× NGINX", t >= 1.2 * n, detail)
    if None not in (t, h):
        check("keep-alive HTTP/1.1 ≥ HAProxy", t >= h, f"×{t / h:.2f}")
    t, h = v("tlsgate", "h2_rps"), v("haproxy", "h2_rps")
    if None not in (t, h):
        check("HTTP/2 ≥ HAProxy", t >= h, f"×{t / h:.2f}")
    for key, label in (("h1_p99", "HTTP/1.1 p99 ≤ NGINX's"), ("h2_p99", "HTTP/2 p99 ≤ NGINX's")):
        t, n = v("tlsgate", key), v("nginx", key)
        if None not in (t, n):
            check(label, t <= n, f"{t:.2f} vs {n:.2f} ms")
    t, n = v("tlsgate", "mib_1m"), v("nginx", "mib_1m")
    if None not in (t, n):
        check("1 MiB throughput ≥ NGINX", t >= n, f"×{t / n:.2f}")
    t, n = v("tlsgate", "rss_idle"), v("nginx", "rss_idle")
    if None not in (t, n):
        check("RSS per idle connection ≤ NGINX's", t <= n, f"{t:.1f} vs {n:.1f} KiB")
    return out


def machine_and_versions(env: Env, opts) -> list[str]:
    """Taken when the run starts, when the binaries are snapshotted."""
    def first_line(cmd: list[str]) -> str:
        try:
            r = run(cmd, timeout=10, check=False)
            return (r.stdout or r.stderr).strip().splitlines()[0]
        except (OSError, subprocess.TimeoutExpired, IndexError):
            return "unknown"

    model = "unknown"
    for line in run(["lscpu"], timeout=10, check=False).stdout.splitlines():
        if line.startswith("Model name:"):
            model = line.split(":", 1)[1].strip()
    mem_kib = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))
    os_name = "unknown"
    if Path("/etc/os-release").exists():
        m = re.search(r'^PRETTY_NAME="?([^"\n]*)', Path("/etc/os-release").read_text(), re.M)
        os_name = m.group(1) if m else os_name
    if opts.tlsgate_version:
        tlsgate = opts.tlsgate_version
    else:
        commit = first_line(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"])
        dirty = run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                    timeout=10, check=False).stdout
        tlsgate = f"{commit}{' + uncommitted changes in the tree' if dirty.strip() else ''}"
    digest = hashlib.sha256(env.tlsgate_bin.read_bytes()).hexdigest()[:12]
    lock = (REPO / "Cargo.lock").read_text()

    def crate(name: str) -> str:
        m = re.search(rf'name = "{name}"\nversion = "([^"]+)"', lock)
        return m.group(1) if m else "?"

    return [
        f"- Machine: {model}, {os.cpu_count()} CPUs, {mem_kib / 1024 / 1024:.0f} GiB, {os_name}, "
        f"kernel {os.uname().release}; load average at start {os.getloadavg()[0]:.2f}",
        f"- tlsgate {tlsgate}, binary sha256 {digest}…, "
        f"{first_line(['rustc', '--version'])}, rustls {crate('rustls')}, aws-lc-rs {crate('aws-lc-rs')}",
        f"- {first_line(['nginx', '-v'])}; {first_line(['haproxy', '-v'])}",
        f"- {first_line(['openssl', 'version'])} (NGINX, HAProxy, wrk, h2load); "
        f"{first_line(['wrk', '-v'])}; {first_line(['h2load', '--version'])}",
    ]


def report(results: Results, opts, proxies: list[str], started: str, versions: list[str]) -> str:
    cols = list(proxies)
    has_nginx = "nginx" in proxies
    head = ["Figure", *cols]
    if has_nginx and "tlsgate" in proxies:
        head.append("tlsgate/nginx")
    if has_nginx and "haproxy" in proxies:
        head.append("haproxy/nginx")
    head.append("limited by (" + " · ".join(cols) + ")")
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in METRICS:
        arrow = "↑" if m.higher_is_better else "↓"
        row = [f"{m.label}, {m.unit} {arrow}"]
        row += [fmt(m, results.median(p, m.key)) for p in cols]
        if has_nginx and "tlsgate" in proxies:
            row.append(ratio(results.median("tlsgate", m.key), results.median("nginx", m.key)))
        if has_nginx and "haproxy" in proxies:
            row.append(ratio(results.median("haproxy", m.key), results.median("nginx", m.key)))
        row.append("" if m.key == "rss_idle" else limit_cell(results, m.key, cols))
        lines.append("| " + " | ".join(row) + " |")

    reps = opts.repeat
    out = [
        f"# tlsgate vs NGINX vs HAProxy ({'quick run' if opts.quick else 'full run'})",
        "",
        f"{started}. Each figure is the median of {reps} run{'s' if reps > 1 else ''} of {opts.duration} s; "
        "one proxy alive at a time, pinned to CPU 0 (single worker/thread)"
        + (f", capped at {PROXY_SHARE:.0%} of it by a cgroup CPU quota ({QUOTA_PERIOD_US // 1000} ms period)"
           if PROXY_SHARE < 1.0 else "")
        + "; load generators and backends on CPU 1. "
        "↑ higher is better, ↓ lower is better.",
        "",
        *lines,
        "",
        f"Limited by, for each proxy in column order: `P` the proxy used ≥ {SATURATED * PROXY_SHARE:.0%} of its core (CPU 0)"
        + (" (85 % of its quota)" if PROXY_SHARE < 1.0 else "") + "; "
        "`p` CPU 0 was ≥ 85 % busy but not all with the proxy (kernel softirq for loopback traffic, "
        "other processes); `G` the load generator's core (CPU 1: load generator + backends) was ≥ 85 % busy; "
        "`-` neither (latency or concurrency bound); `PG` both cores full, so the rate is bounded by the load "
        "generator's core too and the CPU-per-work rows compare the proxies. Then proxy CPU % / CPU 0 busy % / CPU 1 busy %. "
        "Where the proxy is not the limit, its rate is a floor and the CPU-per-work rows are the fair comparison. "
        "`!`: other processes used more than 10 % of a core during that run (see below).",
        "",
        "Load: HTTP/1.1 `wrk -t1 -c{h1}` GET / (3-byte body); HTTP/2 `h2load -t1 -c{h2} -m{m}`; handshakes "
        "`tlsgate-loadgen -c{hs}`, one GET / with `Connection: close` per connection, TLS 1.3 X25519 AES-128-GCM "
        "(full and mTLS: resumption off; resumed: TLS 1.3 tickets); 1 MiB `wrk -t1 -c{mib}` GET /1m; idle RSS: "
        "{idle} connections held after one request each.".format(
            h1=opts.h1_connections, h2=opts.h2_connections, m=opts.h2_streams, hs=opts.hs_connections,
            mib=opts.mib_connections, idle=opts.idle_connections),
        "",
        *versions,
    ]
    if "tlsgate" in proxies and "nginx" in proxies:
        out += ["", "## Done criteria (tlsgate vs NGINX / HAProxy)", ""]
        if PROXY_SHARE < 1.0:
            out += ["With the proxy capped (--proxy-quota), rates compare the proxies where each is the "
                    "limit, and latencies include the quota's stalls: the issue's targets are judged on a "
                    "run without the cap.", ""]
        out += done_criteria(results)
    noisy = []
    for p in cols:
        hit = [s.window.foreign for m in METRICS
               if (s := results.median(p, m.key)) and s.window and s.window.foreign > NOISY]
        if hit:
            noisy.append(f"{p} {len(hit)} (up to {max(hit):.0%} of a core)")
    if noisy:
        results.note("figures whose median run shared the two cores with other processes (marked `!`): "
                     + ", ".join(noisy) + " — those are less reliable")
    out += ["", "## Errors and anomalies", ""]
    out += [f"- {a}" for a in results.anomalies] or ["- none"]
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="one run of each figure, 3 s each")
    ap.add_argument("--only", default=",".join(PROXIES), help="comma-separated proxies (default: all three)")
    ap.add_argument("--repeat", type=int, help="runs per figure (default 3; 1 with --quick)")
    ap.add_argument("--duration", type=int, help="seconds per run (default 10; 3 with --quick)")
    ap.add_argument("--tests", default=",".join(TESTS), help=f"comma-separated subset of {','.join(TESTS)}")
    ap.add_argument("--tlsgate-bin", type=Path, default=REPO / "target/release/tlsgate")
    ap.add_argument("--loadgen-bin", type=Path, default=REPO / "target/release/tlsgate-loadgen")
    ap.add_argument("--tlsgate-version", help="how the report names the tlsgate build (default: git HEAD of this tree)")
    ap.add_argument("--out", type=Path, help="report file (default results/latest.md, quick: results/quick.md)")
    ap.add_argument("--keep-work", action="store_true", help="keep the temporary work dir (configs, logs)")
    ap.add_argument("--quiet-wait", type=float, default=15.0,
                    help="before each test, wait up to this many seconds for the cores to be idle (0: never)")
    ap.add_argument("--quiet-budget", type=float, default=300.0,
                    help="total seconds a run may spend waiting for idle cores")
    ap.add_argument("--proxy-quota", type=float, metavar="F",
                    help="cap the proxy at this fraction of CPU 0 (0.1-0.95; cgroup CPU quota, needs root) "
                         "so that it, not the load generator's core, is the limit")
    ap.add_argument("--h1-connections", type=int, default=50)
    ap.add_argument("--h2-connections", type=int, default=50)
    ap.add_argument("--h2-streams", type=int, default=10)
    ap.add_argument("--hs-connections", type=int, default=50)
    ap.add_argument("--mib-connections", type=int, default=10)
    ap.add_argument("--idle-connections", type=int, default=2000)
    opts = ap.parse_args()
    opts.repeat = opts.repeat or (1 if opts.quick else 3)
    opts.duration = opts.duration or (3 if opts.quick else 10)
    opts.tests = [t.strip() for t in opts.tests.split(",") if t.strip()]
    if set(opts.tests) - set(TESTS) or not opts.tests:
        ap.error(f"--tests takes {', '.join(TESTS)}")
    opts.proxies = [p.strip() for p in opts.only.split(",") if p.strip()]
    unknown = set(opts.proxies) - set(PROXIES)
    if unknown or not opts.proxies:
        ap.error(f"--only takes {', '.join(PROXIES)}")
    if opts.proxy_quota is not None and not 0.1 <= opts.proxy_quota <= 0.95:
        ap.error("--proxy-quota takes a fraction of one core between 0.1 and 0.95")
    opts.out = opts.out or HERE / "results" / ("quick.md" if opts.quick else "latest.md")
    return opts


def preflight(opts) -> None:
    if (os.cpu_count() or 1) < 2:
        raise SystemExit("needs two CPUs: one for the proxy, one for the load generators")
    need = ["taskset", "openssl", "wrk", "h2load", "nginx"]
    if "haproxy" in opts.proxies:
        need.append("haproxy")
    missing = [t for t in need if not shutil.which(t)]
    for b in (opts.tlsgate_bin, opts.loadgen_bin):
        if not b.exists():
            missing.append(str(b))
    if missing:
        raise SystemExit(f"missing: {', '.join(missing)} (run.sh installs and builds them)")
    global URL_HOST
    try:
        first = socket.getaddrinfo("localhost", PORTS["PORT"], type=socket.SOCK_STREAM)[0][4][0]
    except OSError:
        first = None
    if first != "127.0.0.1":
        URL_HOST = "127.0.0.1"
        log(f"localhost resolves to {first} first: wrk and h2load will connect to 127.0.0.1 (and send it as SNI)")
    busy = [p for p in PORTS.values() if not port_free(p)]
    if busy:
        raise SystemExit(f"ports in use: {busy} (another run still going?)")
    # 2,000 held connections on each side plus backend connections.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = max(soft, min(hard, 65536)) if hard != resource.RLIM_INFINITY else 65536
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    if want < opts.idle_connections + 1000:
        raise SystemExit(f"open-file limit {want} is too low for {opts.idle_connections} idle connections")


def main() -> int:
    opts = parse_args()
    preflight(opts)
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    procs = Processes()

    def on_signal(signum, _frame):
        raise SystemExit(128 + signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)
    work = Path(tempfile.mkdtemp(prefix="tlsgate-compare."))
    # Copies of the binaries: on a shared tree someone may rebuild
    # target/release while we run, and every turn must run the same build.
    (work / "bin").mkdir()
    tlsgate_bin = Path(shutil.copy2(opts.tlsgate_bin, work / "bin" / "tlsgate"))
    loadgen_bin = Path(shutil.copy2(opts.loadgen_bin, work / "bin" / "tlsgate-loadgen"))
    env = Env(work=work, pki=work / "pki", tlsgate_bin=tlsgate_bin, loadgen_bin=loadgen_bin, procs=procs)
    versions = machine_and_versions(env, opts)
    results = Results()
    t0 = time.monotonic()
    try:
        log(f"work dir {work}")
        if opts.proxy_quota is not None:
            global PROXY_SHARE
            PROXY_SHARE = opts.proxy_quota
            env.quota = CpuQuota(opts.proxy_quota)
        make_pki(env.pki)
        write_configs(env)
        for p in opts.proxies:
            check_config(env, p)
        backend = work / "backend"
        backend_proc = procs.start(
            "backend",
            pinned(GEN_CPU, ["nginx", "-p", str(backend), "-e", str(backend / "error.log"),
                             "-c", str(backend / "nginx.conf")]),
            work / "backend.log",
        )
        env.backend_pid = backend_proc.pid
        deadline = time.monotonic() + 10
        while any(port_free(PORTS[k]) for k in ("BACKEND1_PORT", "BACKEND2_PORT")):
            if backend_proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"backend nginx did not start: {(work / 'backend.log').read_text()}"
                                 f"{(backend / 'error.log').read_text() if (backend / 'error.log').exists() else ''}")
            time.sleep(0.1)
        checked: set[str] = set()
        for test in opts.tests:
            for rep in range(opts.repeat):
                # Rotated, so that no proxy always runs first or last.
                shift = rep % len(opts.proxies)
                for name in opts.proxies[shift:] + opts.proxies[:shift]:
                    log(f"{test}, repetition {rep + 1}/{opts.repeat}: {name}")
                    try:
                        measure_proxy(env, name, test, results, opts, first=name not in checked)
                        checked.add(name)
                    except (RuntimeError, subprocess.SubprocessError, OSError) as err:
                        results.note(f"{name} ({test}, repetition {rep + 1}): {err}")
                        tail = (work / f"{name}.log")
                        if tail.exists():
                            for line in tail.read_text(errors="replace").splitlines()[-5:]:
                                log(f"  {name}.log: {line}")
        text = report(results, opts, opts.proxies, started, versions)
        text += f"\nHarness wall time: {(time.monotonic() - t0) / 60:.1f} min.\n"
        print(text)
        opts.out.parent.mkdir(parents=True, exist_ok=True)
        opts.out.write_text(text)
        opts.out.with_suffix(".json").write_text(json.dumps(results.raw, indent=1, default=str) + "\n")
        log(f"report written to {opts.out}")
    finally:
        procs.stop_all()
        if env.quota:
            env.quota.remove()
        if opts.keep_work:
            log(f"work dir kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        sys.exit(130)
