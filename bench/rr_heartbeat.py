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
import statistics
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from _harness import (
    STOP_TIMEOUT_S,
    BenchError,
    Pinning,
    append_record,
    detect_pinning,
    print_profile,
    run_json,
    server_command,
    server_process,
    source_digest,
    wait_ready,
    warn_if_source_changed,
)

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
RESULTS_FILE = RESULTS_DIR / "rr_heartbeat.jsonl"
PROFILE_FILE = RESULTS_DIR / "rr_heartbeat_tradewire.prof"
KINDS = ("bare", "tradewire")
TARGET_RATIO = 0.8
READY_TIMEOUT_S = 30.0
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


@dataclass(frozen=True, slots=True)
class Config:
    repeat: int
    duration: float
    warmup: float
    conns: int
    inflight: int


@dataclass(slots=True)
class Run:
    kind: str
    round: int
    source: str = ""  # digest of tradewire's source when the server started
    result: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    server_stderr: str = ""


# ---------------------------------------------------------------------------------------------- one run
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
    result: dict[str, Any] = run_json(cmd, cfg.warmup + cfg.duration + LOADGEN_MARGIN_S)
    return result


def run_once(
    kind: str, round_no: int, cfg: Config, pinning: Pinning, workdir: Path, profile: Path | None
) -> Run:
    run = Run(kind, round_no, source_digest())
    lifetime = cfg.warmup + cfg.duration + LIFETIME_MARGIN_S
    cmd = server_command(pinning, HERE / "_servers.py", kind, lifetime, workdir, profile)
    stderr_path = workdir / f"{kind}-{round_no}.stderr"
    with server_process(cmd, stderr_path, STOP_TIMEOUT_S * (3 if profile else 1)) as (proc, outcome):
        try:
            port, server_pid = (int(field) for field in wait_ready(proc, READY_TIMEOUT_S)[:2])
            run.result = run_loadgen(cfg, pinning, port, server_pid, kind)
        except BenchError as exc:
            run.error = str(exc)
    run.server_stderr = outcome.stderr
    if run.result and outcome.failed:
        run.error = outcome.failed
    return run


# ---------------------------------------------------------------------------------------------- report
def ok_runs(runs: list[Run], kind: str) -> list[Run]:
    return [r for r in runs if r.kind == kind and r.error is None]


def medians(runs: list[Run], kind: str) -> dict[str, float] | None:
    selected = ok_runs(runs, kind)
    if not selected:
        return None
    return {k: statistics.median(float(r.result[k]) for r in selected) for k in METRICS}


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
    warn_if_source_changed({r.source for r in runs})
    for run in runs:
        if run.server_stderr:
            print(f"note: {run.kind} round {run.round} server stderr: {run.server_stderr[-300:]!r}")


def write_results(cfg: Config, pinning: Pinning, runs: list[Run], summary: dict[str, Any]) -> None:
    append_record(
        RESULTS_FILE,
        "rr_heartbeat",
        pinning,
        (),
        config=asdict(cfg),
        tradewire_source=sorted({r.source for r in runs}),
        runs=[asdict(r) for r in runs],
        summary=summary,
    )


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
                print_profile(PROFILE_FILE, profiled.result.get("server_cpu_s"), PROFILE_TOP)
    return 1 if any(r.error for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
