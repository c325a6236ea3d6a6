"""Helpers shared by the benchmark drivers (``rr_heartbeat.py``, ``fanout.py``) and their processes.

Driver side: core pinning with ``taskset``, the environment record, a digest of tradewire's source
(to notice edits made while a benchmark runs), starting and stopping a server subprocess that
announces itself with one ``READY ...`` line, running a load generator that prints one JSON line,
and printing cProfile hot spots. Process side: :func:`raise_nofile_limit`.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import platform
import pstats
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

STOP_TIMEOUT_S = 10.0
# The HS256 key of every benchmark server: loopback only, not a secret; random-looking so the
# server's weak-secret check stays quiet during runs.
BENCH_SECRET = "7c1e9a4f02d86b3e5a17c9d40f8b2e6a3d5c7f91b0e4a28d"
TICKS_PER_S = os.sysconf("SC_CLK_TCK")
BASE_DISTS = ("tradewire", "picows", "orjson", "uvloop", "msgspec", "psutil")


class BenchError(RuntimeError):
    """A run could not be completed (server or load generator failed)."""


@dataclass(frozen=True, slots=True)
class Pinning:
    server: list[str]
    client: list[str]
    note: str

    @property
    def pinned(self) -> bool:
        return bool(self.server)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` right now (bound and released)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0–1) of ``values`` by rank in the sorted list (no interpolation)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def detect_pinning() -> Pinning:
    """Server on core 0 and load generator on core 1 via taskset, or unpinned (and say why)."""
    taskset = shutil.which("taskset")
    if taskset is None:
        return Pinning([], [], "UNPINNED: taskset not found; server and load generator share all cores")
    allowed = os.sched_getaffinity(0)
    if not {0, 1} <= allowed:
        return Pinning([], [], f"UNPINNED: cores 0 and 1 are not both available (allowed: {sorted(allowed)})")
    probe = subprocess.run([taskset, "-c", "1", "true"], capture_output=True, timeout=10, check=False)
    if probe.returncode != 0:
        return Pinning([], [], f"UNPINNED: taskset failed ({probe.stderr.decode(errors='replace').strip()})")
    return Pinning([taskset, "-c", "0"], [taskset, "-c", "1"], "server on core 0, load generator on core 1")


def environment(extra_dists: tuple[str, ...] = ()) -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for dist in BASE_DISTS + extra_dists:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[dist] = None
    return {
        "python": platform.python_version(),
        "kernel": platform.release(),
        "cpu_count": os.cpu_count(),
        "versions": versions,
    }


def source_digest() -> str:
    """Short digest of the imported tradewire package's .py files (detects edits during a run)."""
    spec = importlib.util.find_spec("tradewire")
    if spec is None or spec.origin is None:
        return "not-installed"
    digest = hashlib.sha256()
    root = Path(spec.origin).parent
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def server_env() -> dict[str, str]:
    """The environment minus TRADEWIRE_* variables, so settings come from the benchmark only."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TRADEWIRE_")}


def machine_busy() -> tuple[float, float]:
    """Busy and stolen CPU seconds of the whole machine so far (``/proc/stat``, clock ticks)."""
    try:
        with open("/proc/stat", "rb") as stat:
            fields = [int(v) for v in stat.readline().split()[1:9]]
    except (OSError, ValueError):
        return 0.0, 0.0
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq) / TICKS_PER_S, steal / TICKS_PER_S


def wait_quiet(threshold: float, max_wait: float, sample: float = 0.5) -> float:
    """Wait (at most ``max_wait`` s) until other programs use < ``threshold`` cores; returns their use."""
    deadline = time.monotonic() + max_wait
    while True:
        busy0, steal0 = machine_busy()
        time.sleep(sample)
        busy1, steal1 = machine_busy()
        load = (busy1 - busy0 + steal1 - steal0) / sample
        if load < threshold or time.monotonic() > deadline:
            return round(load, 3)


def raise_nofile_limit() -> int:
    """Raise this process's open-file limit to its hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            return soft
    return hard


# ---------------------------------------------------------------------------------------------- processes
def wait_ready(proc: subprocess.Popen[bytes], timeout: float, min_fields: int = 2) -> list[str]:
    """Read ``READY <port> <pid> ...`` from the server's stdout; returns the fields after READY."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([proc.stdout], [], [], remaining)
        if not readable:
            continue
        line = proc.stdout.readline().decode(errors="replace").split()
        if not line:
            raise BenchError(f"server exited before READY (exit code {proc.wait(STOP_TIMEOUT_S)})")
        if line[0] == "READY" and len(line) > min_fields:
            return line[1:]
    raise BenchError(f"server not READY within {timeout:.0f} s")


def stop_server(proc: subprocess.Popen[bytes], timeout: float) -> None:
    if proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(STOP_TIMEOUT_S)


def run_json(cmd: list[str], timeout: float, what: str = "load generator") -> Any:
    """Run ``cmd`` to completion (bounded) and parse the last line of its stdout as JSON."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{what} did not finish within {timeout:.0f} s") from exc
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise BenchError(f"{what} failed (exit {done.returncode}): {done.stderr.strip()[-1500:]}")
    return json.loads(lines[-1])


# ---------------------------------------------------------------------------------------------- profile
def where(key: tuple[str, int, str]) -> str:
    filename, line, func = key
    if filename == "~":  # built-in / C function
        return func
    for marker in ("/src/", "/site-packages/", "/lib/python"):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
            break
    return f"{filename}:{line}:{func}"


def print_profile(path: Path, server_cpu_s: float | None, top: int = 20) -> None:
    stats = pstats.Stats(str(path))
    table: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    total = float(stats.total_tt)  # type: ignore[attr-defined]
    print(f"\nprofile: {path} (cProfile; {total:.2f} s in profiled functions", end="")
    print(f", server CPU in the window {server_cpu_s:.2f} s)" if server_cpu_s else ")")
    print("cProfile adds a fixed cost per Python call, so many small calls look heavier than they are.")
    by_self = sorted(table.items(), key=lambda kv: kv[1][2], reverse=True)[:top]
    print(f"\ntop {top} by self time (% of profiled time):")
    for key, (_, calls, tt, ct, _) in by_self:
        print(f"  {100 * tt / total:5.1f}% self {100 * ct / total:5.1f}% cum {calls:>9}  {where(key)}")
    ours = [kv for kv in table.items() if "tradewire" in kv[0][0] and "/bench/" not in kv[0][0]]
    by_cum = sorted(ours, key=lambda kv: kv[1][3], reverse=True)[:top]
    print(f"\ntop {top} tradewire functions by cumulative time (% of profiled time):")
    for key, (_, calls, tt, ct, _) in by_cum:
        print(f"  {100 * ct / total:5.1f}% cum {100 * tt / total:5.1f}% self {calls:>9}  {where(key)}")


# ---------------------------------------------------------------------------------------------- servers
def server_command(
    pinning: Pinning, script: Path, kind: str, lifetime: float, workdir: Path, profile: Path | None
) -> list[str]:
    """The pinned command line of a benchmark server script (``_servers.py`` conventions)."""
    cmd = [
        *pinning.server,
        sys.executable,
        str(script),
        kind,
        f"--lifetime={lifetime}",
        f"--data-dir={workdir}",
    ]
    if profile is not None:
        cmd.append(f"--profile={profile}")
    return cmd


@dataclass(slots=True)
class ServerOutcome:
    """Filled in when :func:`server_process` has stopped the server."""

    returncode: int | None = None
    stderr: str = ""  # the tail of its stderr

    @property
    def failed(self) -> str | None:
        """Why the exit counts as a failure (SIGTERM from us and exit 0 do not), or None."""
        if self.returncode in (0, -signal.SIGTERM):
            return None
        return f"server exit code {self.returncode}"


@contextlib.contextmanager
def server_process(
    cmd: list[str], stderr_path: Path, stop_timeout: float = STOP_TIMEOUT_S
) -> Iterator[tuple[subprocess.Popen[bytes], ServerOutcome]]:
    """Run a server (stdout piped for READY, stderr to ``stderr_path``); always stopped on exit."""
    outcome = ServerOutcome()
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, env=server_env()
        )
    try:
        yield proc, outcome
    finally:
        stop_server(proc, stop_timeout)
        if proc.stdout is not None:
            proc.stdout.close()
        outcome.returncode = proc.returncode
        outcome.stderr = stderr_path.read_text(errors="replace").strip()[-2000:]


# ---------------------------------------------------------------------------------------------- results
def warn_if_source_changed(sources: set[str]) -> None:
    if len(sources) > 1:
        print(f"WARNING: tradewire's source changed during this invocation ({len(sources)} versions:")
        print(f"         {', '.join(sorted(sources))}); the runs measured different code.")


def append_record(
    path: Path, bench: str, pinning: Pinning, extra_dists: tuple[str, ...], **fields: Any
) -> None:
    """Append one JSON line: bench name, time, pinning, environment, then ``fields``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {
        "bench": bench,
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "pinning": pinning.note,
        "pinned": pinning.pinned,
        "env": environment(extra_dists),
        **fields,
    }
    with path.open("a") as out:
        out.write(json.dumps(record) + "\n")
