"""Request/reply benchmark: tradewire's heartbeat path against a bare picows + orjson server.

usage: ``python bench/rr_heartbeat.py [--repeat 3] [--duration 5] [--warmup 1] [--conns 50]
[--inflight 16] [--quick] [--profile]``

Each run starts one fresh server process (``_servers.py``) pinned to core 0 and one load generator
(``_loadgen.py``) pinned to core 1 with ``taskset``; the load generator keeps ``--conns`` x
``--inflight`` heartbeats in flight and measures replies, the server's CPU time and its own CPU
time over ``--duration`` seconds after ``--warmup``. The two servers alternate (the order flips
each round, so slow drift hits both alike) for ``--repeat`` rounds. The verdict uses medians:

* throughput ratio = tradewire replies/s / bare replies/s — target >= 0.8;
* cost ratio = tradewire server µs/reply / bare server µs/reply (server CPU seconds / replies),
  which stays meaningful when the server is not the bottleneck (load generator saturated, or the
  server idling between bursts); its inverse, the capacity ratio, is what the throughput ratio
  would be if both servers were CPU-bound — it is checked against the same 0.8 target.

Every invocation appends one JSON line to ``bench/results/rr_heartbeat.jsonl``. ``--profile`` adds
one extra tradewire run under cProfile (not counted in the results) and prints its hot spots.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import os
import platform
import pstats
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
RESULTS_FILE = RESULTS_DIR / "rr_heartbeat.jsonl"
PROFILE_FILE = RESULTS_DIR / "rr_heartbeat_tradewire.prof"
KINDS = ("bare", "tradewire")
TARGET_RATIO = 0.8
READY_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
LIFETIME_MARGIN_S = 60.0  # servers stop themselves this long after the planned end of a run
LOADGEN_MARGIN_S = 60.0
SATURATED_CPU = 0.95
PROFILE_TOP = 20
METRICS = (
    "replies_per_s",
    "server_cpu_frac",
    "server_us_per_reply",
    "client_cpu_frac",
    "client_us_per_reply",
)


class BenchError(RuntimeError):
    """A run could not be completed (server or load generator failed)."""


@dataclass(frozen=True, slots=True)
class Config:
    repeat: int
    duration: float
    warmup: float
    conns: int
    inflight: int


@dataclass(frozen=True, slots=True)
class Pinning:
    server: list[str]
    client: list[str]
    note: str

    @property
    def pinned(self) -> bool:
        return bool(self.server)


@dataclass(slots=True)
class Run:
    kind: str
    round: int
    source: str = ""  # digest of tradewire's source when the server started
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    server_stderr: str = ""


# ---------------------------------------------------------------------------------------------- set-up
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


def environment() -> dict[str, Any]:
    versions: dict[str, str | None] = {}
    for dist in ("tradewire", "picows", "orjson", "uvloop", "msgspec", "psutil"):
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


# ---------------------------------------------------------------------------------------------- one run
def wait_ready(proc: subprocess.Popen[bytes], timeout: float) -> tuple[int, int]:
    """Read ``READY <port> <pid>`` from the server's stdout, within ``timeout`` seconds."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while (remaining := deadline - time.monotonic()) > 0:
        readable, _, _ = select.select([proc.stdout], [], [], remaining)
        if not readable:
            continue
        line = proc.stdout.readline().decode(errors="replace").split()
        if not line:
            raise BenchError(f"server exited before READY (exit code {proc.wait(STOP_TIMEOUT_S)})")
        if line[0] == "READY" and len(line) == 3:
            return int(line[1]), int(line[2])
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


def run_loadgen(cfg: Config, pinning: Pinning, port: int, server_pid: int, kind: str) -> dict[str, Any]:
    cmd = [
        *pinning.client,
        sys.executable,
        str(HERE / "_loadgen.py"),
        f"--port={port}",
        f"--server-pid={server_pid}",
        "--path=/ws",
        f"--conns={cfg.conns}",
        f"--inflight={cfg.inflight}",
        f"--warmup={cfg.warmup}",
        f"--duration={cfg.duration}",
    ]
    if kind == "tradewire":
        cmd.append("--welcome")
    timeout = cfg.warmup + cfg.duration + LOADGEN_MARGIN_S
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"load generator did not finish within {timeout:.0f} s") from exc
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise BenchError(f"load generator failed (exit {done.returncode}): {done.stderr.strip()[-1500:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def run_once(
    kind: str, round_no: int, cfg: Config, pinning: Pinning, workdir: Path, profile: Path | None
) -> Run:
    run = Run(kind, round_no, source_digest())
    lifetime = cfg.warmup + cfg.duration + LIFETIME_MARGIN_S
    cmd = [
        *pinning.server,
        sys.executable,
        str(HERE / "_servers.py"),
        kind,
        f"--lifetime={lifetime}",
        f"--data-dir={workdir}",
    ]
    if profile is not None:
        cmd.append(f"--profile={profile}")
    stderr_path = workdir / f"{kind}-{round_no}.stderr"
    with stderr_path.open("wb") as stderr:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr, env=server_env()
        )
    try:
        port, server_pid = wait_ready(proc, READY_TIMEOUT_S)
        run.result = run_loadgen(cfg, pinning, port, server_pid, kind)
    except BenchError as exc:
        run.error = str(exc)
    finally:
        stop_server(proc, STOP_TIMEOUT_S * (3 if profile else 1))
        if proc.stdout is not None:
            proc.stdout.close()
    run.server_stderr = stderr_path.read_text(errors="replace").strip()[-2000:]
    if run.result and proc.returncode not in (0, -signal.SIGTERM):
        run.error = f"server exit code {proc.returncode}"
    return run


# ---------------------------------------------------------------------------------------------- report
def ok_runs(runs: list[Run], kind: str) -> list[Run]:
    return [r for r in runs if r.kind == kind and r.error is None]


def medians(runs: list[Run], kind: str) -> dict[str, float] | None:
    selected = ok_runs(runs, kind)
    if not selected:
        return None
    keys = (
        "replies_per_s",
        "server_cpu_frac",
        "server_us_per_reply",
        "client_cpu_frac",
        "client_us_per_reply",
    )
    return {k: statistics.median(float(r.result[k]) for r in selected) for k in keys}


def paired_ratios(runs: list[Run], key: str) -> list[float]:
    """tradewire/bare per round (both runs of a round must have succeeded)."""
    ratios = []
    for round_no in sorted({r.round for r in runs}):
        pair = {r.kind: r for r in runs if r.round == round_no and r.error is None}
        if set(KINDS) <= pair.keys():
            ratios.append(float(pair["tradewire"].result[key]) / float(pair["bare"].result[key]))
    return ratios


def summarize(runs: list[Run]) -> dict[str, Any]:
    med = {kind: medians(runs, kind) for kind in KINDS}
    bare, tw = med["bare"], med["tradewire"]
    summary: dict[str, Any] = {"medians": med}
    if bare is None or tw is None:
        summary["verdict"] = "incomplete"
        return summary
    throughput = tw["replies_per_s"] / bare["replies_per_s"]
    cost = tw["server_us_per_reply"] / bare["server_us_per_reply"]
    summary.update(
        throughput_ratio=round(throughput, 3),
        us_per_reply_ratio=round(cost, 3),
        paired_throughput_ratio=round(statistics.median(paired_ratios(runs, "replies_per_s")), 3),
        paired_us_per_reply_ratio=round(statistics.median(paired_ratios(runs, "server_us_per_reply")), 3),
        capacity_ratio=round(1 / cost, 3),
        target=f"tradewire >= {TARGET_RATIO} x bare",
        verdict="PASS" if throughput >= TARGET_RATIO else "FAIL",
        verdict_capacity="PASS" if 1 / cost >= TARGET_RATIO else "FAIL",
    )
    return summary


HEADER = (
    f"{'server':<10} {'round':>5} {'replies/s':>10} {'srv CPU':>8} {'srv µs/reply':>13} "
    f"{'cli CPU':>8} {'cli µs/reply':>13}  notes"
)


def run_row(label: str, round_text: str, values: dict[str, Any], notes: str = "") -> str:
    return (
        f"{label:<10} {round_text:>5} {values['replies_per_s']:>10.0f} {values['server_cpu_frac']:>8.2f} "
        f"{values['server_us_per_reply']:>13.2f} {values['client_cpu_frac']:>8.2f} "
        f"{values['client_us_per_reply']:>13.2f}  {notes}"
    ).rstrip()


def run_notes(run: Run) -> str:
    notes = []
    if run.result.get("bad_sampled"):
        notes.append(f"{run.result['bad_sampled']} sampled replies not a pong")
    if run.result.get("disconnects"):
        notes.append(f"{run.result['disconnects']} server closes")
    if float(run.result.get("client_cpu_frac", 0)) >= SATURATED_CPU:
        notes.append("load generator saturated")
    return "; ".join(notes)


def print_report(cfg: Config, pinning: Pinning, runs: list[Run], summary: dict[str, Any]) -> None:
    print(HEADER)
    for run in runs:
        if run.error is not None:
            print(f"{run.kind:<10} {run.round:>5}  ERROR: {run.error}")
        else:
            print(run_row(run.kind, str(run.round), run.result, run_notes(run)))
    print("-" * len(HEADER))
    for kind in KINDS:
        values = summary["medians"][kind]
        if values is not None:
            print(run_row(kind, "med", values, f"median of {len(ok_runs(runs, kind))} runs"))
    print()
    if summary["verdict"] == "incomplete":
        print("verdict: INCOMPLETE (a server has no successful run)")
        return
    print(
        f"throughput  tradewire/bare = {summary['throughput_ratio']:.3f}  "
        f"(median of per-round ratios {summary['paired_throughput_ratio']:.3f})"
    )
    print(
        f"µs/reply    tradewire/bare = {summary['us_per_reply_ratio']:.3f}  "
        f"(median of per-round ratios {summary['paired_us_per_reply_ratio']:.3f}; lower is better, "
        f"<= {1 / TARGET_RATIO:.2f} matches the target)"
    )
    print(
        f"capacity    tradewire/bare = {summary['capacity_ratio']:.3f}  "
        "(bare µs/reply / tradewire µs/reply: the throughput ratio if both were CPU-bound)"
    )
    print(
        f"target: {summary['target']} -> throughput {summary['verdict']} "
        f"({summary['throughput_ratio']:.3f}), capacity {summary['verdict_capacity']} "
        f"({summary['capacity_ratio']:.3f})"
    )
    print_caveats(pinning, runs)


def print_caveats(pinning: Pinning, runs: list[Run]) -> None:
    ok = [r for r in runs if r.error is None]
    if any(float(r.result["client_cpu_frac"]) >= SATURATED_CPU for r in ok):
        print("note: the load generator saturated its core in some runs; there the throughput ratio")
        print("      understates the server difference; the µs/reply ratio is the better measure.")
    idle = [f"{r.kind}/{r.round}" for r in ok if float(r.result["server_cpu_frac"]) < SATURATED_CPU]
    if idle:
        print(
            f"note: server below {SATURATED_CPU:.0%} CPU in runs {', '.join(idle)}: not CPU-bound there, so"
        )
        print("      the throughput ratio is not a capacity comparison; read the µs/reply (capacity) ratio.")
    if not pinning.pinned:
        print(f"note: {pinning.note}; numbers are not comparable with pinned runs.")
    sources = {r.source for r in runs}
    if len(sources) > 1:
        print(f"WARNING: tradewire's source changed during this invocation ({len(sources)} versions:")
        print(f"         {', '.join(sorted(sources))}); the runs measured different code.")
    for run in runs:
        if run.server_stderr:
            print(f"note: {run.kind} round {run.round} server stderr: {run.server_stderr[-300:]!r}")


def write_results(cfg: Config, pinning: Pinning, runs: list[Run], summary: dict[str, Any]) -> None:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    record = {
        "bench": "rr_heartbeat",
        "time": datetime.now(UTC).isoformat(timespec="seconds"),
        "config": asdict(cfg),
        "pinning": pinning.note,
        "pinned": pinning.pinned,
        "env": environment(),
        "tradewire_source": sorted({r.source for r in runs}),
        "runs": [asdict(r) for r in runs],
        "summary": summary,
    }
    with RESULTS_FILE.open("a") as out:
        out.write(json.dumps(record) + "\n")


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


def print_profile(path: Path, server_cpu_s: float | None) -> None:
    stats = pstats.Stats(str(path))
    table: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    total = float(stats.total_tt)  # type: ignore[attr-defined]
    print(f"\nprofile: {path} (cProfile; {total:.2f} s in profiled functions", end="")
    print(f", server CPU in the window {server_cpu_s:.2f} s)" if server_cpu_s else ")")
    print("cProfile adds a fixed cost per Python call, so many small calls look heavier than they are.")
    by_self = sorted(table.items(), key=lambda kv: kv[1][2], reverse=True)[:PROFILE_TOP]
    print(f"\ntop {PROFILE_TOP} by self time (% of profiled time):")
    for key, (_, calls, tt, ct, _) in by_self:
        print(f"  {100 * tt / total:5.1f}% self {100 * ct / total:5.1f}% cum {calls:>9}  {where(key)}")
    ours = [kv for kv in table.items() if "tradewire" in kv[0][0] and "/bench/" not in kv[0][0]]
    by_cum = sorted(ours, key=lambda kv: kv[1][3], reverse=True)[:PROFILE_TOP]
    print(f"\ntop {PROFILE_TOP} tradewire functions by cumulative time (% of profiled time):")
    for key, (_, calls, tt, ct, _) in by_cum:
        print(f"  {100 * ct / total:5.1f}% cum {100 * tt / total:5.1f}% self {calls:>9}  {where(key)}")


# ---------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> tuple[Config, bool]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each round runs both servers")
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before measuring")
    parser.add_argument("--conns", type=int, default=50)
    parser.add_argument("--inflight", type=int, default=16, help="requests outstanding per connection")
    parser.add_argument("--quick", action="store_true", help="smoke run: 1 round of 2 s")
    parser.add_argument(
        "--profile", action="store_true", help=f"extra cProfile'd tradewire run -> {PROFILE_FILE}"
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.repeat, args.duration = 1, 2.0
    if args.repeat < 1 or args.duration <= 0 or args.warmup < 0 or args.conns < 1 or args.inflight < 2:
        parser.error("need --repeat >= 1, --duration > 0, --warmup >= 0, --conns >= 1, --inflight >= 2")
    cfg = Config(args.repeat, args.duration, args.warmup, args.conns, args.inflight)
    return cfg, bool(args.profile)


def main(argv: list[str] | None = None) -> int:
    cfg, profile = parse_args(argv)
    pinning = detect_pinning()
    print(
        f"rr_heartbeat: {cfg.conns} conns x {cfg.inflight} in flight, {cfg.repeat} round(s) of "
        f"{cfg.duration:g} s after {cfg.warmup:g} s warm-up; {pinning.note}; "
        f"tradewire source {source_digest()}",
        flush=True,
    )
    runs: list[Run] = []
    with tempfile.TemporaryDirectory(prefix="tw-rr-") as tmp:
        workdir = Path(tmp)
        for round_no in range(cfg.repeat):
            order = KINDS if round_no % 2 == 0 else KINDS[::-1]
            for kind in order:
                runs.append(run_once(kind, round_no, cfg, pinning, workdir, None))
                print(f"  round {round_no} {kind}: {runs[-1].error or 'done'}", flush=True)
        summary = summarize(runs)
        print()
        print_report(cfg, pinning, runs, summary)
        write_results(cfg, pinning, runs, summary)
        print(f"\nresults appended to {RESULTS_FILE.relative_to(HERE.parent)}")
        if profile:
            RESULTS_DIR.mkdir(parents=True, exist_ok=True)
            profiled = run_once("tradewire", cfg.repeat, cfg, pinning, workdir, PROFILE_FILE)
            if profiled.error is not None or not PROFILE_FILE.exists():
                print(f"profile run failed: {profiled.error}")
            else:
                print("\nprofiled tradewire run (not in the results):")
                print(run_row("tradewire", "prof", profiled.result))
                print_profile(PROFILE_FILE, profiled.result.get("server_cpu_s"))
    return 1 if any(r.error for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
