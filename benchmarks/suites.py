"""The benchmark sections: each client in its own child process, runs
interleaved (every round runs every variant once, the order rotated by one
each round), medians over the rounds."""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .servers import ACCESS_KEY, BUCKET, REGION, SECRET_KEY

HERE = Path(__file__).resolve().parent
CLIENT = HERE / "client.py"
MiB = 1024 * 1024
GiB = 1024 * MiB
Log = Callable[[str], None]


@dataclass
class Variant:
    """One client configuration."""

    name: str
    client: str
    spec: dict[str, Any] = field(default_factory=dict)
    group: str = "peer"  # aioims | sender | peer | ceiling
    python: str | None = None  # another interpreter (aioboto3 in its own venv)


def upload_variants(
    part_size: int,
    concurrency: int,
    available: set[str],
    aioboto3_python: str | None,
    experiments: list[str] | None = None,
) -> list[Variant]:
    """The clients of the upload comparison (missing peers left out)."""
    tuned_aioims = {
        "part_size": part_size,
        "max_concurrency": concurrency,
        "content_md5": False,
        "payload_signing": False,
    }
    shape = {"part_size": part_size, "max_concurrency": concurrency}
    thread = {"sender": "thread"}
    sender_shape = {"sender": "thread", "part_size": part_size, "max_concurrency": concurrency}
    aiohttp = {"sender": "aiohttp"}  # the 0.1 path: aiobotocore + aiohttp on the loop
    variants = [
        Variant("aioims-default", "aioims", {"config": aiohttp, "md5": True}, "aioims"),
        Variant(
            "aioims-md5", "aioims", {"config": {**tuned_aioims, **aiohttp}, "md5": True}, "aioims"
        ),
        Variant(
            "aioims-tuned",
            "aioims",
            {"config": {**tuned_aioims, **aiohttp}, "md5": False},
            "aioims",
        ),
        # issue 15: the threaded part sender; CRC32C per part where honoured
        Variant(
            "aioims-thread-default",
            "aioims",
            {"config": {**thread, "part_checksum": "auto"}, "md5": True},
            "aioims",
        ),
        Variant(
            "aioims-thread-tuned",
            "aioims",
            {"config": {**tuned_aioims, **thread}, "md5": False},
            "aioims",
        ),
        # the same, with aiobotocore on the caller's loop (no transfer loop)
        Variant(
            "aioims-inline-tuned",
            "aioims",
            {"config": {**tuned_aioims, **thread, "offload_s3": False}, "md5": False},
            "aioims",
        ),
        # the HTTP session alone, under a minimal multipart driver (benchmarks/client.py)
        Variant("sender-thread", "sender", sender_shape, "sender"),
        Variant(
            "sender-thread-crc32c", "sender", {**sender_shape, "part_checksum": "crc32c"}, "sender"
        ),
        Variant("sender-aiohttp", "sender", {**sender_shape, "sender": "aiohttp"}, "sender"),
    ]
    if experiments:
        variants += experiment_variants(tuned_aioims, experiments)
    for client in ("boto3", "aioboto3", "obstore", "s5cmd"):
        if client not in available:
            continue
        python = aioboto3_python if client == "aioboto3" else None
        variants.append(Variant(f"{client}-default", client, {}, python=python))
        variants.append(Variant(f"{client}-tuned", client, {"tuned": True, **shape}, python=python))
    return variants


def experiment_variants(tuned: dict[str, Any], names: list[str]) -> list[Variant]:
    """aioims with candidate engine changes (see :mod:`benchmarks.experiments`)."""
    label = names[0] if len(names) == 1 else "all"
    out = [
        Variant(
            f"aioims-tuned+{name}",
            "aioims",
            {"config": tuned, "md5": False, "patches": [name]},
            "aioims",
        )
        for name in names
    ]
    if len(names) > 1:
        out.append(
            Variant(
                "aioims-tuned+all",
                "aioims",
                {"config": tuned, "md5": False, "patches": names},
                "aioims",
            )
        )
    out.append(
        Variant(
            f"aioims-default+{label}",
            "aioims",
            {"config": {}, "md5": True, "patches": names},
            "aioims",
        )
    )
    out.append(
        Variant(
            f"aioims-md5+{label}",
            "aioims",
            {"config": tuned, "md5": True, "patches": names},
            "aioims",
        )
    )
    # Content-MD5 off but payload signing left to botocore: SHA-256 of each part
    # (over http, or without a checksum header) computed on the event loop.
    signed = {**tuned, "payload_signing": True}
    out.append(Variant("aioims-nomd5-signed", "aioims", {"config": signed, "md5": False}, "aioims"))
    return out


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    root = str(HERE.parent)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.setdefault("PYTHONWARNINGS", "ignore")
    return env


def run_child(
    spec: dict[str, Any], python: str | None = None, timeout: float = 900
) -> dict[str, Any]:
    argv = [python or sys.executable, str(CLIENT), json.dumps(spec)]
    try:
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=child_env(), cwd=HERE.parent
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"timed out after {timeout:.0f} s"}
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            result: dict[str, Any] = json.loads(line[7:])
            return result
    tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
    return {"ok": False, "error": f"exit {done.returncode}: {' | '.join(tail)}"[:800]}


def base_spec(url: str, path: str, size: int) -> dict[str, Any]:
    return {
        "url": url,
        "bucket": BUCKET,
        "key": "bench/object",
        "file": path,
        "size": size,
        "access_key": ACCESS_KEY,
        "secret_key": SECRET_KEY,
        "region": REGION,
    }


def _median(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r.get(key) is not None]
    return statistics.median(values) if values else None


def aggregate(runs: list[dict[str, Any]], size: int) -> dict[str, Any]:
    ok = [r for r in runs if r.get("ok")]
    if not ok:
        return {"ok": False, "error": runs[0].get("error") if runs else "not run", "runs": runs}
    rates = [size / r["wall"] / MiB for r in ok]
    for r in ok:
        r["mib_s"] = size / r["wall"] / MiB
        r["cpu_s_per_gib"] = r["cpu"] / size * GiB
    for r in ok:
        if r.get("loop_cpu") is not None:
            r["loop_cpu_s_per_gib"] = r["loop_cpu"] / size * GiB
    out: dict[str, Any] = {
        "ok": True,
        "mib_s": statistics.median(rates),
        "loop_cpu_s_per_gib": _median(ok, "loop_cpu_s_per_gib"),
        "cpu_s_per_gib": _median(ok, "cpu_s_per_gib"),
        "rss_mib": _median(ok, "rss_mib"),
        "spread": f"{min(rates):,.0f}–{max(rates):,.0f}",
        "runs": runs,
        "failed_runs": len(runs) - len(ok),
    }
    for key in (
        "stall_max_ms",
        "stall_p99_ms",
        "stall_own_max_ms",
        "stall_own_p99_ms",
        "stall_cpu_max_ms",
        "stall_cpu_p99_ms",
        "worst_callback_cpu_ms",
    ):
        out[key] = _median(ok, key)
        if out[key] is not None:
            out[key.replace("_ms", "_worst_run_ms")] = max(r[key] for r in ok)
    if ok[0].get("part_size"):
        out["part_size"] = ok[0]["part_size"]
        out["max_concurrency"] = ok[0]["max_concurrency"]
        buffers = out["part_size"] * out["max_concurrency"] / MiB
        out["buffers_mib"] = buffers
        out["rss_vs_buffers"] = out["rss_mib"] / buffers
        out["rss_budget_mib"] = 100 + 1.5 * buffers
    return out


def _shown(result: dict[str, Any], size: int) -> str:
    if not result.get("ok"):
        return "FAILED " + str(result.get("error"))[:300]
    if "calls_per_s" in result:
        return f"{result['calls_per_s']:,.0f} calls/s, {result['cpu_us_per_call']:.0f} µs CPU/call"
    if "images" in result:
        return f"{result['wall']:.2f} s, outside transfer {result['median_outside_share']:.0%}"
    return f"{size / result['wall'] / MiB:,.0f} MiB/s, RSS {result['rss_mib']:.0f} MiB"


def interleaved(
    variants: list[Variant],
    runs: int,
    make_spec: Callable[[Variant], dict[str, Any]],
    log: Log,
    timeout: float,
) -> dict[str, list[dict[str, Any]]]:
    results: dict[str, list[dict[str, Any]]] = {v.name: [] for v in variants}
    for round_ in range(runs):
        shift = round_ % max(len(variants), 1)
        for variant in variants[shift:] + variants[:shift]:
            result = run_child(make_spec(variant), variant.python, timeout)
            results[variant.name].append(result)
            shown = _shown(result, make_spec(variant).get("size", 0))
            log(f"    round {round_ + 1}/{runs} {variant.name}: {shown}")
    return results


def upload_section(
    url: str,
    path: str,
    size: int,
    runs: int,
    variants: list[Variant],
    log: Log,
    profile_dir: str | None = None,
    ca_file: str | None = None,
) -> dict[str, Any]:
    def make_spec(variant: Variant) -> dict[str, Any]:
        spec = {**base_spec(url, path, size), "client": variant.client, **variant.spec}
        if ca_file:
            spec["ca_file"] = ca_file
        if profile_dir and variant.group == "aioims":
            spec["profile"] = os.path.join(profile_dir, f"{variant.name}.pstats")
        return spec

    timeout = 120 + size / (5 * MiB)
    raw = interleaved(variants, runs, make_spec, log, timeout)
    clients = {v.name: {**aggregate(raw[v.name], size), "group": v.group} for v in variants}
    peers = [c["mib_s"] for c in clients.values() if c["group"] == "peer" and c["ok"]]
    ceiling = clients.get("socket")
    for entry in clients.values():
        if not entry["ok"]:
            continue
        entry["vs_best_peer"] = entry["mib_s"] / max(peers) if peers else None
        if ceiling and ceiling["ok"]:
            entry["vs_ceiling"] = entry["mib_s"] / ceiling["mib_s"]
    return {"size": size, "runs": runs, "clients": clients}


def rss_section(
    url: str, files: dict[int, str], runs: int, variants: list[Variant], log: Log
) -> dict[str, Any]:
    sizes = sorted(files)
    out: dict[str, Any] = {"sizes": sizes, "clients": {}}
    per_size: dict[int, dict[str, list[dict[str, Any]]]] = {}
    for size in sizes:
        log(f"  RSS: {size // MiB} MiB file")
        per_size[size] = interleaved(
            variants,
            runs,
            lambda v, s=size: {**base_spec(url, files[s], s), "client": v.client, **v.spec},
            log,
            120 + size / (5 * MiB),
        )
    for variant in variants:
        rss: dict[str, float | None] = {}
        budget = None
        for size in sizes:
            agg = aggregate(per_size[size][variant.name], size)
            rss[str(size)] = agg.get("rss_mib")
            budget = agg.get("rss_budget_mib", budget)
        values = [v for v in rss.values() if v is not None]
        out["clients"][variant.name] = {
            "rss_mib": rss,
            "budget_mib": budget,
            "growth_mib": (values[-1] - values[0]) if len(values) >= 2 else None,
            "max_rss_mib": max(values) if values else None,
        }
    return out


def api_section(
    url: str, runs: int, duration: float, concurrencies: list[int], log: Log
) -> list[dict[str, Any]]:
    rows = []
    for op in ("get_image", "list_private_images"):
        for concurrency in concurrencies:
            variants = [
                Variant(f"{op}-c{concurrency}-{impl}", "api", {"impl": impl})
                for impl in ("sdk", "raw")
            ]

            def make_spec(v: Variant, op: str = op, c: int = concurrency) -> dict[str, Any]:
                return {
                    "client": "api",
                    "url": url,
                    "op": op,
                    "duration": duration,
                    "concurrency": c,
                    "size": 1,
                    **v.spec,
                }

            raw = interleaved(variants, runs, make_spec, log, 120 + duration * 2)
            sdk_runs = [r for r in raw[variants[0].name] if r.get("ok")]
            raw_runs = [r for r in raw[variants[1].name] if r.get("ok")]
            if not sdk_runs or not raw_runs:
                rows.append(
                    {
                        "op": op,
                        "concurrency": concurrency,
                        "ok": False,
                        "sdk_calls_s": None,
                        "raw_calls_s": None,
                        "ratio": None,
                        "sdk_cpu_us": None,
                        "raw_cpu_us": None,
                        "cpu_ratio": None,
                        "error": str((raw[variants[0].name] + raw[variants[1].name])[0]),
                    }
                )
                continue
            sdk = statistics.median(r["calls_per_s"] for r in sdk_runs)
            plain = statistics.median(r["calls_per_s"] for r in raw_runs)
            sdk_cpu = statistics.median(r["cpu_us_per_call"] for r in sdk_runs)
            raw_cpu = statistics.median(r["cpu_us_per_call"] for r in raw_runs)
            rows.append(
                {
                    "op": op,
                    "concurrency": concurrency,
                    "ok": True,
                    "sdk_calls_s": sdk,
                    "raw_calls_s": plain,
                    "ratio": sdk / plain,
                    "sdk_cpu_us": sdk_cpu,
                    "raw_cpu_us": raw_cpu,
                    "cpu_ratio": sdk_cpu / raw_cpu,
                    "runs": raw,
                }
            )
    return rows


def e2e_section(
    url: str, cases: list[tuple[int, str, int]], runs: int, config: dict[str, Any], log: Log
) -> dict[str, Any]:
    """``cases``: (image count, file path, file size)."""
    variants = [
        Variant(
            f"{count} × {size / MiB:g} MiB", "e2e", {"count": count, "path": path, "size": size}
        )
        for count, path, size in cases
    ]

    def make_spec(v: Variant) -> dict[str, Any]:
        return {
            "client": "e2e",
            "url": url,
            "files": [v.spec["path"]] * v.spec["count"],
            "size": v.spec["size"],
            "config": config,
        }

    raw = interleaved(variants, runs, make_spec, log, 600)
    out: dict[str, Any] = {}
    for v in variants:
        ok = [r for r in raw[v.name] if r.get("ok")]
        if not ok:
            out[v.name] = {"ok": False, "error": raw[v.name][0].get("error"), "runs": raw[v.name]}
            continue
        keys = [k for k in ok[0] if k.startswith("median_") or k == "wall"]
        out[v.name] = {
            "ok": True,
            **{k: statistics.median(r[k] for r in ok) for k in keys},
            "runs": raw[v.name],
        }
    return out
