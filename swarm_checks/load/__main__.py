"""Command line: `python -m swarm_checks.load {run,sweep,calibrate} ...` (see --help)."""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

from swarm_checks.load import roofline, thresholds
from swarm_checks.load.metrics import Slo
from swarm_checks.load.runner import LoadSpec, RunResult, run_load, sweep
from swarm_checks.load.workload import Workload


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--base-url", required=True, help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")
    parser.add_argument("--model", required=True)
    parser.add_argument("--api-key-env", default="", help="name of the environment variable holding the API key")
    parser.add_argument("--endpoint", choices=("chat", "completions"), default="chat")
    parser.add_argument("--requests", type=int, default=50, help="measured requests (upper bound)")
    parser.add_argument("--duration", type=float, default=120.0, help="seconds (upper bound)")
    parser.add_argument("--warmup", type=int, default=2, help="requests sent first and left out")
    parser.add_argument("--input-words", type=int, default=48)
    parser.add_argument("--output-tokens", type=int, default=64)
    parser.add_argument("--jitter", type=float, default=0.0, help="random lengths within +-this fraction")
    parser.add_argument("--prompts", type=Path, default=None, help="a text file, one prompt per line")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--ignore-eos", action="store_true", help="vLLM: always generate --output-tokens")
    parser.add_argument("--metrics-url", default=None, help="the engine's Prometheus /metrics, for server-side deltas")
    parser.add_argument("--slo-ttft-ms", type=float, default=None)
    parser.add_argument("--slo-tpot-ms", type=float, default=None)
    parser.add_argument("--output", type=Path, default=None, help="write the result JSON here")
    parser.add_argument("--gpu", default=None,
                        help="the engine's GPU as nvidia-smi names it on the engine's machine (environment, hardware class)")


def _workload(args: argparse.Namespace) -> Workload:
    return Workload(endpoint=args.endpoint, input_words=args.input_words, input_jitter=args.jitter,
                    output_tokens=args.output_tokens, output_jitter=args.jitter, prompts_file=args.prompts,
                    seed=args.seed, ignore_eos=args.ignore_eos)


def _slo(args: argparse.Namespace) -> Slo | None:
    return Slo(ttft_ms=args.slo_ttft_ms, tpot_ms=args.slo_tpot_ms) if (args.slo_ttft_ms or args.slo_tpot_ms) else None


def _key(args: argparse.Namespace) -> str | None:
    return os.environ.get(args.api_key_env) if args.api_key_env else None


def print_summary(result: RunResult, label: str = "") -> None:
    s = result.summary
    print(f"\n{label or 'result'}: {s['completed']} completed, {s['failed']} failed, {s['incomplete']} incomplete "
          f"in {s['duration_s']:.1f} s; errors: {s['error_kinds'] or 'none'}")
    print(f"  request throughput {s['request_throughput']:.2f} req/s, output {s['output_throughput']:.1f} tok/s, "
          f"total {s['total_token_throughput']:.1f} tok/s" + (f", goodput {s['goodput']:.2f} req/s" if s["goodput"] is not None else ""))
    if s["tokens_estimated"]:
        print("  token counts estimated from chunks: the engine sent no usage")
    print(f"  {'ms':<18}{'mean':>9}{'median':>9}{'std':>9}{'p90':>9}{'p99':>9}")
    for name in ("ttft_ms", "tpot_ms", "itl_ms", "e2el_ms", "scheduling_lag_ms", "excess_lag_ms", "client_loop_lag_ms"):
        d = s.get(name) or {}
        if d.get("count"):
            print(f"  {name:<18}" + "".join(f"{d[k]:>9.2f}" for k in ("mean", "median", "std", "p90", "p99")))
    if (s.get("schedule") or {}).get("kept") is not None:
        print(f"  schedule: {s['schedule']['reason']}")
    server = result.document["server_metrics"]
    if server.get("available") and "generated_tokens_counter" in server:
        print(f"  server: {server['generated_tokens_counter']} +{server['generated_tokens_delta']:.0f} "
              f"(usage says {server['usage_output_tokens']}; match: {server['generated_matches_usage']})")
    elif not server.get("available"):
        print(f"  server metrics: {server.get('reason')}")


def _write(path: Path | None, document: dict[str, Any]) -> None:
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(document, indent=2))
        print(f"  result: {path}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m swarm_checks.load", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="one load run")
    _common(run)
    run.add_argument("--mode", choices=("concurrency", "rate", "poisson"), default="concurrency")
    run.add_argument("--concurrency", type=int, default=None,
                     help="requests in flight (mode concurrency, default 1); rate, poisson: an optional cap")
    run.add_argument("--rate", type=float, default=None, help="requests per second (rate, poisson)")
    run.add_argument("--burstiness", type=float, default=1.0, help="gamma shape for poisson (1: Poisson)")
    run.add_argument("--save-requests", action="store_true", help="keep per-request records in the JSON")
    for name, helptext in (("sweep", "from one stream up to saturation"), ("calibrate", "measure and write a thresholds entry")):
        sub = commands.add_parser(name, help=helptext)
        _common(sub)
        sub.add_argument("--concurrencies", default="1,2,4,8,16,32")
        if name == "calibrate":
            sub.add_argument("--key", default=None, help="thresholds key (default: <hardware class>/<model>)")
            sub.add_argument("--thresholds", type=Path, default=thresholds.DEFAULT_FILE)
    args = parser.parse_args(argv)
    workload, key = _workload(args), _key(args)
    if args.command == "run":
        spec = LoadSpec(mode=args.mode, concurrency=args.concurrency, rate=args.rate, burstiness=args.burstiness,
                        max_requests=args.requests, max_seconds=args.duration, warmup_requests=args.warmup, seed=args.seed)
        with tqdm(total=args.requests, unit="req", file=sys.stderr) as bar:
            result = run_load(args.base_url, args.model, workload, spec, api_key=key, metrics_url=args.metrics_url,
                              slo=_slo(args), keep_requests=args.save_requests, progress=bar.update, gpu=args.gpu)
        print_summary(result, f"{args.mode} run")
        _write(args.output, result.document)
        if result.summary.get("schedule_kept") is False:
            print(f"schedule not kept: {result.summary['schedule']['reason']}", file=sys.stderr)
            return 1
        return 0 if result.summary["completed"] else 1
    base = LoadSpec(max_requests=args.requests, max_seconds=args.duration, warmup_requests=args.warmup, seed=args.seed)
    levels = [int(c) for c in args.concurrencies.split(",") if c.strip()]
    swept = sweep(args.base_url, args.model, workload, base, levels, api_key=key, metrics_url=args.metrics_url, slo=_slo(args),
                  gpu=args.gpu)
    for point in swept.points:
        print_summary(point, f"concurrency {point.document['load']['concurrency']}")
    print(f"\nsweep stopped: {swept.stopped_because}")
    document = {"schema": "swarm-checks/load-sweep/1", "points": [p.document for p in swept.points],
                "stopped_because": swept.stopped_because}
    _write(args.output, document)
    if args.command == "calibrate":
        entry_key = args.key or f"{roofline.hardware_class(args.gpu or roofline.gpu_name())}/{args.model}"
        measured = {p.document["load"]["concurrency"]: p.summary for p in swept.points}
        entry = thresholds.calibrate(entry_key, measured, args.thresholds)
        print(f"\nwrote {entry_key} to {args.thresholds}: {json.dumps(entry)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
