"""Fan-out benchmark: tradewire's broadcast against a raw-socket floor and the seed's design.

usage: ``python bench/fanout.py [--n 100,1000,5000] [--repeat 3] [--quick] [--profile]
[--kinds floor,picows-raw,seed,tradewire] [--flood-deliveries 300000] [--burst 10] [--latency-seconds 4]``

Four servers (``_fanout_servers.py``), each in a fresh process pinned to core 0, with one load
generator (``_fanout_loadgen.py``) pinned to core 1 holding N subscriber connections:

* ``floor`` — no WebSocket library: one blocking ``sendall`` of a pre-built ~200-byte text frame per
  client per message (burst mode: the burst's frames joined, one ``sendall`` per client);
* ``picows-raw`` — extra reference, not a target: picows + uvloop with no framework, one frame per
  publish and ``transport.write`` per client (what any event-loop server pays per delivery);
* ``seed`` — FastAPI endpoint on uvicorn (``ws="auto"`` = websockets-sansio here), publish =
  ``asyncio.gather(*(ws.send_text(json.dumps(msg)) for ws in clients))``;
* ``tradewire`` — ``WebSocketAPIServer``; clients authenticate and subscribe to ``market_data``;
  publish = ``await server.broadcast_to_subscribers("market_data", tick)``.

Per server and N, over the same connections: ``warmup`` (not reported), ``flood`` (as fast as
possible, one publish per loop iteration), ``burst`` (floor and tradewire only: ``--burst``
publishes back to back, then one loop iteration — tradewire writes a connection's burst with one
transport write) and ``latency`` (a fixed rate: 100 publishes/s, or 10/s from N = ``--slow-from``
on, where 100/s would ask for more deliveries per second than the floor can make). Reported per
phase: deliveries/s, **server CPU µs per delivery** (server process CPU from schedstat, ns
resolution, / deliveries; meaningful even when the load generator is the bottleneck), client CPU,
and for ``latency`` the publish → receive p50/p99 (the stamp is ``time.monotonic_ns()`` taken when
the tick is published, so when a server cannot keep the rate — achieved pub/s below target — its
backlog is not in the latency; such rows are marked ``behind``). Servers alternate order each
round; the verdict uses medians. A phase during which other programs or the hypervisor took >= 15 %
of a core (``/proc/stat``) is "disturbed" and left out of the medians unless all runs were; each
session starts once the machine is quiet (bounded wait) and a disturbed one is run again once
(``--retries``).

Targets: tradewire flood <= 1.2 x floor (µs/delivery); tradewire burst < floor flood; seed flood
>= 4 x tradewire flood; tradewire p99 <= 3 ms at N=100 and <= 15 ms at N=1000.

Every invocation appends one JSON line to ``bench/results/fanout.jsonl``. ``--profile`` adds one
extra tradewire run (N = 1000 or the largest N below it; flood and burst) under cProfile, not in
the results, and prints its hot spots.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable
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
    wait_quiet,
    wait_ready,
    warn_if_source_changed,
)

HERE = Path(__file__).resolve().parent
RESULTS_DIR = HERE / "results"
RESULTS_FILE = RESULTS_DIR / "fanout.jsonl"
PROFILE_FILE = RESULTS_DIR / "fanout_tradewire.prof"
KINDS = ("floor", "picows-raw", "seed", "tradewire")
BURST_KINDS = ("floor", "tradewire")
BURST_FACTOR = 3
READY_TIMEOUT_S = 60.0
MIN_DELIVERIES_PER_S = 5_000  # phase time-outs assume at least this rate
PHASE_MARGIN_S = 15.0
LIFETIME_MARGIN_S = 60.0
BEHIND = 0.95  # achieved publish rate below this fraction of the target: the server fell behind
SATURATED_CPU = 0.95
# Other programs' CPU + steal (fraction of one core) that makes a phase suspect. Undisturbed phases
# show 0-0.1 (kernel threads, softirqs run from idle); disturbances seen were 0.5-1.0.
DISTURBED_CPU = 0.15
QUIET_CPU = 0.1  # before each session, wait (at most QUIET_WAIT_S) until the machine is this quiet
QUIET_WAIT_S = 20.0
TARGET_FLOOR_RATIO = 1.2
TARGET_SEED_RATIO = 4.0
TARGET_P99_MS = {100: 3.0, 1000: 15.0}


@dataclass(frozen=True, slots=True)
class Config:
    ns: tuple[int, ...]
    repeat: int
    kinds: tuple[str, ...]
    flood_deliveries: int
    burst: int
    rate: float
    slow_rate: float
    slow_from: int
    latency_seconds: float
    concurrency: int
    retries: int

    def latency_rate(self, n: int) -> float:
        return self.slow_rate if n >= self.slow_from else self.rate


@dataclass(slots=True)
class Session:
    """One server process and one load generator: all phases for one (server, N)."""

    kind: str
    n: int
    round: int
    source: str = ""  # digest of tradewire's source when the server started
    info: str = ""  # the seed's uvicorn WebSocket class
    load_before: float = 0.0  # cores used by other programs just before the session started
    connect_s: float | None = None
    phases: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    server_stderr: str = ""


# ---------------------------------------------------------------------------------------------- plan
def phase(name: str, m: int, n: int, rate: float = 0.0, burst: int = 1) -> dict[str, Any]:
    timeout = PHASE_MARGIN_S + (m / rate if rate else 0.0) + n * m / MIN_DELIVERIES_PER_S
    return {"name": name, "m": m, "rate": rate, "burst": burst, "latency": rate > 0, "timeout": timeout}


def plan(kind: str, n: int, cfg: Config) -> list[dict[str, Any]]:
    flood_m = max(cfg.burst * 2, round(cfg.flood_deliveries / n / cfg.burst) * cfg.burst)
    rate = cfg.latency_rate(n)
    phases = [phase("warmup", max(cfg.burst, flood_m // 10), n), phase("flood", flood_m, n)]
    if kind in BURST_KINDS:  # bursts deliver 3-5 x faster: more of them for a comparable duration
        phases.append(phase("burst", BURST_FACTOR * flood_m, n, burst=cfg.burst))
    phases.append(phase("latency", max(10, round(rate * cfg.latency_seconds)), n, rate=rate))
    return phases


# ---------------------------------------------------------------------------------------------- one session
def run_loadgen(
    cfg: Config, pinning: Pinning, fields: list[str], n: int, phases: list[dict[str, Any]]
) -> dict[str, Any]:
    port, server_pid, control_port, token = fields[:4]
    cmd = [
        *pinning.client,
        sys.executable,
        str(HERE / "_fanout_loadgen.py"),
        f"--port={port}",
        f"--control-port={control_port}",
        f"--server-pid={server_pid}",
        f"--n={n}",
        f"--phases={json.dumps(phases)}",
        f"--concurrency={cfg.concurrency}",
    ]
    if token != "-":
        cmd.append(f"--token={token}")
    result: dict[str, Any] = run_json(cmd, loadgen_bound(n, phases, cfg))
    return result


def loadgen_bound(n: int, phases: list[dict[str, Any]], cfg: Config) -> float:
    connect = 30.0 * (1 + n // cfg.concurrency)
    return connect + sum(float(p["timeout"]) + 10.0 for p in phases) + 30.0


def run_session(
    kind: str, n: int, round_no: int, cfg: Config, pinning: Pinning, workdir: Path, profile: Path | None
) -> Session:
    session = Session(kind, n, round_no, source_digest())
    phases = plan(kind, n, cfg)
    if profile is not None:
        phases = [p for p in phases if p["name"] != "latency"]
    lifetime = loadgen_bound(n, phases, cfg) + LIFETIME_MARGIN_S
    cmd = server_command(pinning, HERE / "_fanout_servers.py", kind, lifetime, workdir, profile)
    stderr_path = workdir / f"{kind}-{n}-{round_no}.stderr"
    with server_process(cmd, stderr_path, STOP_TIMEOUT_S * (3 if profile else 1)) as (proc, outcome):
        try:
            fields = wait_ready(proc, READY_TIMEOUT_S, min_fields=4)
            session.info = fields[4] if len(fields) > 4 and fields[4] != "-" else ""
            result = run_loadgen(cfg, pinning, fields, n, phases)
            session.connect_s = result["connect_s"]
            session.phases = result["phases"]
            if result["connected"] != n:
                session.error = f"only {result['connected']} of {n} connected"
        except BenchError as exc:
            session.error = str(exc)
    session.server_stderr = outcome.stderr
    session.error = session.error or phase_error(session, phases) or outcome.failed
    return session


def phase_error(session: Session, planned: list[dict[str, Any]]) -> str | None:
    for result in session.phases:
        if "error" in result["server"]:
            return f"{result['phase']}: {result['server']['error']}"
        if result["timed_out"]:
            return f"{result['phase']}: {result['delivered']} of {result['expected']} delivered in time"
    if len(session.phases) < len(planned):
        return f"only {len(session.phases)} of {len(planned)} phases ran"
    return None


# ---------------------------------------------------------------------------------------------- summary
NUMERIC = (
    "deliveries_per_s",
    "server_us_per_delivery",
    "client_us_per_delivery",
    "server_cpu_frac",
    "client_cpu_frac",
    "frame_bytes",
    "other_cpu_frac",
    "steal_frac",
    "lat_ms_p50",
    "lat_ms_p90",
    "lat_ms_p99",
    "lat_ms_max",
)


def phase_results(sessions: Iterable[Session], n: int, kind: str, name: str) -> list[dict[str, Any]]:
    return [
        p
        for s in sessions
        if s.n == n and s.kind == kind
        for p in s.phases
        if p["phase"] == name and not p["timed_out"] and "error" not in p["server"]
    ]


def disturbed(result: dict[str, Any]) -> bool:
    """Other programs (or the hypervisor) took a noticeable share of the CPUs during the phase."""
    return (result.get("other_cpu_frac") or 0.0) + (result.get("steal_frac") or 0.0) >= DISTURBED_CPU


def median_of(everything: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Medians over the undisturbed results, or over all of them when every one was disturbed."""
    if not everything:
        return None
    results = [r for r in everything if not disturbed(r)] or everything
    out: dict[str, Any] = {"runs": len(results), "left_out": len(everything) - len(results)}
    for key in NUMERIC:
        values = [float(r[key]) for r in results if r.get(key) is not None]
        if values:
            out[key] = statistics.median(values)
    spread = [float(r["server_us_per_delivery"]) for r in results]
    out["server_us_min"], out["server_us_max"] = min(spread), max(spread)
    out["delivered"] = sum(int(r["delivered"]) for r in results)
    out["expected"] = sum(int(r["expected"]) for r in results)
    out["disconnects"] = sum(int(r["disconnects"]) for r in results)
    out["bad_sampled"] = sum(int(r["bad_sampled"]) for r in results)
    rates = [float(r["server"]["pub_per_s"]) for r in results if r["server"].get("pub_per_s")]
    if rates:
        out["pub_per_s"] = statistics.median(rates)
    per_flush = [frames_per_write(r) for r in results]
    if all(v is not None for v in per_flush) and per_flush:
        out["frames_per_write"] = statistics.median(v for v in per_flush if v is not None)
    return out


def frames_per_write(result: dict[str, Any]) -> float | None:
    """tradewire: deliveries per transport write (flushes); floor: deliveries per sendall."""
    counters = result["server"].get("counters", {})
    writes = counters.get("flushes") or counters.get("sends")
    return round(result["delivered"] / writes, 2) if writes else None


def summarize(sessions: list[Session], cfg: Config) -> dict[str, Any]:
    table: dict[str, Any] = {}
    for n in cfg.ns:
        for kind in cfg.kinds:
            for name in ("flood", "burst", "latency"):
                medians = median_of(phase_results(sessions, n, kind, name))
                if medians is not None:
                    table[f"{n}/{kind}/{name}"] = medians
    return {"medians": table, "targets": targets(table, sessions, cfg)}


def paired(sessions: list[Session], n: int, num: tuple[str, str], den: tuple[str, str]) -> list[float]:
    """Per-round ratio num/den of server µs per delivery (undisturbed results of both in the round)."""
    ratios = []
    for round_no in sorted({s.round for s in sessions}):
        same = [s for s in sessions if s.round == round_no]
        top, bottom = (
            [r for r in phase_results(same, n, kind, name) if not disturbed(r)] for kind, name in (num, den)
        )
        if top and bottom:
            ratios.append(top[0]["server_us_per_delivery"] / bottom[0]["server_us_per_delivery"])
    return ratios


@dataclass(frozen=True, slots=True)
class RatioTarget:
    """``num`` / ``den`` of server µs per delivery (``"kind/phase"`` keys) compared with ``limit``."""

    num: str
    den: str
    op: str  # "<=", "<" or ">="
    limit: float

    @property
    def text(self) -> str:
        return f"{self.num.replace('/', ' ')} / {self.den.replace('/', ' ')}"

    def passes(self, value: float) -> bool:
        if self.op == "<=":
            return value <= self.limit
        return value < self.limit if self.op == "<" else value >= self.limit


RATIO_TARGETS = (
    RatioTarget("tradewire/flood", "floor/flood", "<=", TARGET_FLOOR_RATIO),
    RatioTarget("tradewire/burst", "floor/flood", "<", 1.0),
    RatioTarget("seed/flood", "tradewire/flood", ">=", TARGET_SEED_RATIO),
)


def ratio_target(
    table: dict[str, Any], sessions: list[Session], n: int, spec: RatioTarget
) -> dict[str, Any] | None:
    num, den = table.get(f"{n}/{spec.num}"), table.get(f"{n}/{spec.den}")
    if num is None or den is None:
        return None
    value = num["server_us_per_delivery"] / den["server_us_per_delivery"]
    num_kind, num_phase = spec.num.split("/")
    den_kind, den_phase = spec.den.split("/")
    pairs = paired(sessions, n, (num_kind, num_phase), (den_kind, den_phase))
    return {
        "target": "ratio",
        "n": n,
        "text": spec.text,
        "op": spec.op,
        "value": round(value, 3),
        "limit": spec.limit,
        "paired": [round(p, 3) for p in pairs],
        "verdict": "PASS" if spec.passes(value) else "FAIL",
    }


def targets(table: dict[str, Any], sessions: list[Session], cfg: Config) -> list[dict[str, Any]]:
    out = []
    for n in cfg.ns:
        for spec in RATIO_TARGETS:
            result = ratio_target(table, sessions, n, spec)
            if result is not None:
                out.append(result)
        latency = table.get(f"{n}/tradewire/latency")
        if n in TARGET_P99_MS and latency is not None and "lat_ms_p99" in latency:
            limit = TARGET_P99_MS[n]
            behind = latency.get("pub_per_s", 0) < BEHIND * cfg.latency_rate(n)
            out.append(
                {
                    "target": "p99 latency",
                    "n": n,
                    "text": f"tradewire p99 ms at {cfg.latency_rate(n):g}/s",
                    "value": latency["lat_ms_p99"],
                    "limit": limit,
                    "behind": behind,
                    "verdict": "PASS" if latency["lat_ms_p99"] <= limit and not behind else "FAIL",
                }
            )
    return out


# ---------------------------------------------------------------------------------------------- report
THROUGHPUT_HEADER = (
    f"{'N':>5} {'server':<10} {'mode':<6} {'delivered/expected':>19} {'deliv/s':>9} "
    f"{'srv µs/deliv':>12} {'(min–max)':>13} {'srv CPU':>7} {'cli CPU':>7} {'cli µs':>6} "
    f"{'frame B':>7} {'fr/write':>8}  notes"
)
LATENCY_HEADER = (
    f"{'N':>5} {'server':<10} {'pub/s':>5} {'achieved':>8} {'p50 ms':>7} {'p90 ms':>7} {'p99 ms':>7} "
    f"{'max ms':>7} {'srv CPU':>7} {'srv µs/deliv':>12} {'cli CPU':>7}  notes"
)


def notes_for(values: dict[str, Any]) -> str:
    notes = []
    if values["disconnects"]:
        notes.append(f"{values['disconnects']} disconnects")
    if values["bad_sampled"]:
        notes.append(f"{values['bad_sampled']} sampled frames without stamp")
    if values.get("client_cpu_frac", 0) >= SATURATED_CPU:
        notes.append("load generator saturated")
    if values.get("server_cpu_frac", 0) >= SATURATED_CPU:
        notes.append("server saturated")
    if disturbed(values):
        notes.append(f"disturbed: other CPU {values['other_cpu_frac']:.2f}, steal {values['steal_frac']:.2f}")
    if values["left_out"]:
        notes.append(f"{values['left_out']} disturbed run(s) left out")
    if values["runs"] > 1:
        notes.append(f"median of {values['runs']}")
    return "; ".join(notes)


def throughput_row(n: int, kind: str, name: str, v: dict[str, Any]) -> str:
    fpw = v.get("frames_per_write")
    return (
        f"{n:>5} {kind:<10} {name:<6} {v['delivered']:>9}/{v['expected']:<9} {v['deliveries_per_s']:>9.0f} "
        f"{v['server_us_per_delivery']:>12.2f} {v['server_us_min']:>6.2f}–{v['server_us_max']:<6.2f} "
        f"{v['server_cpu_frac']:>7.2f} {v['client_cpu_frac']:>7.2f} {v['client_us_per_delivery']:>6.2f} "
        f"{v.get('frame_bytes', 0):>7.0f} {fpw if fpw is not None else '-':>8}  {notes_for(v)}"
    ).rstrip()


def latency_row(n: int, kind: str, v: dict[str, Any], rate: float) -> str:
    achieved = v.get("pub_per_s", 0.0)
    notes = notes_for(v)
    if achieved < BEHIND * rate:
        notes = "; ".join(filter(None, ["behind: backlog not in the latency", notes]))
    return (
        f"{n:>5} {kind:<10} {rate:>5g} {achieved:>8.1f} {v['lat_ms_p50']:>7.3f} {v['lat_ms_p90']:>7.3f} "
        f"{v['lat_ms_p99']:>7.3f} {v['lat_ms_max']:>7.3f} {v['server_cpu_frac']:>7.2f} "
        f"{v['server_us_per_delivery']:>12.2f} {v['client_cpu_frac']:>7.2f}  {notes}"
    ).rstrip()


def print_report(cfg: Config, pinning: Pinning, sessions: list[Session], summary: dict[str, Any]) -> None:
    table = summary["medians"]
    print(
        "\nThroughput (flood: one publish per loop iteration; burst: "
        f"{cfg.burst} publishes back to back per iteration; server µs per delivered message)"
    )
    print(THROUGHPUT_HEADER)
    for n in cfg.ns:
        for kind in cfg.kinds:
            for name in ("flood", "burst"):
                values = table.get(f"{n}/{kind}/{name}")
                if values is not None:
                    print(throughput_row(n, kind, name, values))
    print("\nLatency publish → receive at a fixed publish rate")
    print(LATENCY_HEADER)
    for n in cfg.ns:
        for kind in cfg.kinds:
            values = table.get(f"{n}/{kind}/latency")
            if values is not None and "lat_ms_p99" in values:
                print(latency_row(n, kind, values, cfg.latency_rate(n)))
    print("\nTargets (server µs per delivery ratios of medians; per-round ratios in brackets)")
    for t in summary["targets"]:
        if t["target"] == "p99 latency":
            extra = " (server fell behind the rate)" if t["behind"] else ""
            print(
                f"  N={t['n']:<5} {t['text']:<34} {t['value']:>8.3f}  limit {t['limit']:<5g} "
                f"-> {t['verdict']}{extra}"
            )
        else:
            print(
                f"  N={t['n']:<5} {t['text']:<34} {t['value']:>8.3f}  {t['op']} {t['limit']:<5g}  "
                f"-> {t['verdict']}  {t['paired']}"
            )
    print_caveats(cfg, pinning, sessions, table)


def print_caveats(cfg: Config, pinning: Pinning, sessions: list[Session], table: dict[str, Any]) -> None:
    if "floor" in cfg.kinds and cfg.kinds != ("floor",):
        print("note: floor burst = the burst's frames joined into one sendall per client (ideal coalescing);")
        print("      the burst target compares tradewire burst with floor flood (one send per message).")
    for n in (n for n in cfg.ns if n >= cfg.slow_from):
        floor = table.get(f"{n}/floor/flood")
        capacity = f"the floor made {floor['deliveries_per_s']:,.0f}/s in its flood" if floor else "see floor"
        print(
            f"note: latency at N={n} uses {cfg.slow_rate:g} publishes/s, not {cfg.rate:g}: {cfg.rate:g}/s "
            f"would need\n      {cfg.rate * n:,.0f} deliveries/s on one core ({capacity})."
        )
    infos = {s.info for s in sessions if s.kind == "seed" and s.info}
    if infos:
        print(f"note: seed = FastAPI on uvicorn ws='auto' -> {', '.join(sorted(infos))}")
    if not pinning.pinned:
        print(f"note: {pinning.note}; numbers are not comparable with pinned runs.")
    warn_if_source_changed({s.source for s in sessions})
    for s in sessions:
        if s.error is not None:
            print(f"ERROR: {s.kind} N={s.n} round {s.round}: {s.error}")
        if s.server_stderr:
            print(f"note: {s.kind} N={s.n} round {s.round} server stderr: {s.server_stderr[-300:]!r}")


def write_results(cfg: Config, pinning: Pinning, sessions: list[Session], summary: dict[str, Any]) -> None:
    append_record(
        RESULTS_FILE,
        "fanout",
        pinning,
        ("fastapi", "starlette", "uvicorn", "websockets", "httptools"),
        config=asdict(cfg),
        tradewire_source=sorted({s.source for s in sessions}),
        sessions=[asdict(s) for s in sessions],
        summary=summary,
    )


# ---------------------------------------------------------------------------------------------- main
def parse_args(argv: list[str] | None = None) -> tuple[Config, bool]:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", default="100,1000,5000", help="subscriber counts, comma-separated")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each round runs every server and N")
    parser.add_argument("--kinds", default=",".join(KINDS), help="servers to run, comma-separated")
    parser.add_argument("--flood-deliveries", type=int, default=300_000, help="deliveries per flood phase")
    parser.add_argument("--burst", type=int, default=10, help="publishes per loop iteration in burst mode")
    parser.add_argument("--rate", type=float, default=100.0, help="latency phase: publishes per second")
    parser.add_argument("--slow-rate", type=float, default=10.0, help="latency rate from --slow-from on")
    parser.add_argument("--slow-from", type=int, default=5000, help="N from which --slow-rate applies")
    parser.add_argument("--latency-seconds", type=float, default=4.0, help="length of the latency phase")
    parser.add_argument("--concurrency", type=int, default=200, help="client handshakes in flight at most")
    parser.add_argument(
        "--retries", type=int, default=1, help="re-runs of a session that other programs disturbed"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: N=50,200, 1 round, small counts")
    parser.add_argument(
        "--profile", action="store_true", help=f"extra cProfile'd tradewire run -> {PROFILE_FILE}"
    )
    args = parser.parse_args(argv)
    ns = args.n
    if args.quick:
        ns = "50,200" if args.n == parser.get_default("n") else args.n
        args.repeat, args.flood_deliveries, args.latency_seconds = 1, 20_000, 1.0
    try:
        cfg = Config(
            ns=tuple(int(v) for v in ns.split(",")),
            repeat=args.repeat,
            kinds=tuple(k for k in KINDS if k in args.kinds.split(",")),
            flood_deliveries=args.flood_deliveries,
            burst=args.burst,
            rate=args.rate,
            slow_rate=args.slow_rate,
            slow_from=args.slow_from,
            latency_seconds=args.latency_seconds,
            concurrency=args.concurrency,
            retries=max(0, args.retries),
        )
    except ValueError:
        parser.error("--n takes comma-separated integers, e.g. --n 100,1000")
    if min(cfg.ns) < 1 or max(cfg.ns) > 15_000 or cfg.repeat < 1 or cfg.burst < 2 or not cfg.kinds:
        parser.error("need 1 <= N <= 15000, --repeat >= 1, --burst >= 2 and at least one known server")
    return cfg, bool(args.profile)


def run_with_retry(
    kind: str, n: int, round_no: int, cfg: Config, pinning: Pinning, workdir: Path, started: float
) -> list[Session]:
    """One session after the machine went quiet; once more if other programs disturbed it."""
    sessions: list[Session] = []
    for attempt in range(1 + cfg.retries):
        load = wait_quiet(QUIET_CPU, QUIET_WAIT_S)
        session = run_session(kind, n, round_no, cfg, pinning, workdir, None)
        session.load_before = load
        sessions.append(session)
        noisy = [p["phase"] for p in session.phases if disturbed(p)]
        print(
            f"  [{time.monotonic() - started:6.1f} s] round {round_no} N={n} {kind}: "
            f"{session.error or 'done'} (connect {session.connect_s} s"
            + (f"; attempt {attempt + 1}" if attempt else "")
            + (f"; disturbed: {', '.join(noisy)}" if noisy else "")
            + ")",
            flush=True,
        )
        if not noisy:
            break
    return sessions


def run_profile(cfg: Config, pinning: Pinning, workdir: Path) -> None:
    n = max([v for v in cfg.ns if v <= 1000] or [min(cfg.ns)])
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    session = run_session("tradewire", n, cfg.repeat, cfg, pinning, workdir, PROFILE_FILE)
    if session.error is not None or not PROFILE_FILE.exists():
        print(f"profile run failed: {session.error}")
        return
    print(f"\nprofiled tradewire run at N={n} (not in the results):")
    print(THROUGHPUT_HEADER)
    for result in session.phases:
        if result["phase"] in ("flood", "burst"):
            values = median_of([result])
            assert values is not None
            print(throughput_row(n, "tradewire", result["phase"], values))
    cpu = sum(float(p["server_cpu_s"]) for p in session.phases)
    print_profile(PROFILE_FILE, cpu)


def main(argv: list[str] | None = None) -> int:
    cfg, profile = parse_args(argv)
    pinning = detect_pinning()
    print(
        f"fanout: N={','.join(map(str, cfg.ns))}, servers {', '.join(cfg.kinds)}, {cfg.repeat} round(s); "
        f"flood ~{cfg.flood_deliveries:,} deliveries, burst {cfg.burst}, latency {cfg.latency_seconds:g} s; "
        f"{pinning.note}; tradewire source {source_digest()}",
        flush=True,
    )
    started = time.monotonic()
    sessions: list[Session] = []
    with tempfile.TemporaryDirectory(prefix="tw-fanout-") as tmp:
        workdir = Path(tmp)
        for round_no in range(cfg.repeat):
            order = cfg.kinds if round_no % 2 == 0 else cfg.kinds[::-1]
            for n in cfg.ns:
                for kind in order:
                    sessions += run_with_retry(kind, n, round_no, cfg, pinning, workdir, started)
        summary = summarize(sessions, cfg)
        print_report(cfg, pinning, sessions, summary)
        write_results(cfg, pinning, sessions, summary)
        elapsed = time.monotonic() - started
        print(f"\nresults appended to {RESULTS_FILE.relative_to(HERE.parent)} ({elapsed:.0f} s in all)")
        if profile:
            run_profile(cfg, pinning, workdir)
    return 1 if any(s.error for s in sessions) else 0


if __name__ == "__main__":
    sys.exit(main())
