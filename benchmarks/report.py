"""Machine details, the targets, and the Markdown rendering of a run."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import subprocess
import sys
from typing import Any

MiB = 1024 * 1024
GiB = 1024 * MiB
PACKAGES = (
    "aioims",
    "aiohttp",
    "aiobotocore",
    "botocore",
    "boto3",
    "s3transfer",
    "aioboto3",
    "obstore",
    "s5cmd",
    "moto",
    "anyio",
)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> float:
    try:
        with open("/proc/meminfo") as info:
            for line in info:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / (1024 * 1024)
    except OSError:
        pass
    return 0.0


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def version_in(python: str, name: str) -> str | None:
    code = f"import importlib.metadata as m; print(m.version({name!r}))"
    try:
        done = subprocess.run(
            [python, "-c", code], capture_output=True, text=True, timeout=30, check=False
        )
    except OSError:
        return None
    return done.stdout.strip() or None


def machine(extra_versions: dict[str, str | None]) -> dict[str, Any]:
    versions = {name: _version(name) for name in PACKAGES}
    versions.update({k: v for k, v in extra_versions.items() if v})
    try:
        load = os.getloadavg()
    except OSError:
        load = (0.0, 0.0, 0.0)
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "ram_gib": round(_ram_gib(), 1),
        "kernel": platform.release(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "python_impl": platform.python_implementation(),
        "load_average_at_start": [round(x, 2) for x in load],
        "versions": versions,
    }


# -- formatting ----------------------------------------------------------------


def fmt(value: Any, digits: int = 0, suffix: str = "") -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:,.{digits}f}{suffix}"
    return f"{value}{suffix}"


def ratio(value: float | None) -> str:
    return "–" if value is None else f"{value:.2f}x"


def table(headers: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def size_label(size: int) -> str:
    if size >= GiB and size % GiB == 0:
        return f"{size // GiB} GiB"
    if size >= MiB:
        return f"{size / MiB:g} MiB"
    return f"{size} B"


def _upload_rows(section: dict[str, Any], ceiling: bool) -> list[list[str]]:
    rows = []
    for name, r in section["clients"].items():
        if not r.get("ok"):
            rows.append(
                [name, "failed: " + str(r.get("error", ""))[:80]] + ["–"] * (10 if ceiling else 9)
            )
            continue
        stall_max = stall_p99 = "–"
        if r.get("stall_max_ms") is not None:
            stall_max = "/".join(
                f"{r[k]:.0f}" for k in ("stall_max_ms", "stall_own_max_ms", "stall_cpu_max_ms")
            )
            stall_p99 = "/".join(
                f"{r[k]:.1f}" for k in ("stall_p99_ms", "stall_own_p99_ms", "stall_cpu_p99_ms")
            )
            if r.get("worst_callback_cpu_ms") is not None:
                stall_max += f" ({r['worst_callback_cpu_ms']:.0f})"
        row = [
            f"`{name}`",
            fmt(r["mib_s"]),
            ratio(r.get("vs_best_peer")),
        ]
        if ceiling:
            row.append(ratio(r.get("vs_ceiling")))
        row += [
            fmt(r["cpu_s_per_gib"], 2),
            fmt(r.get("loop_cpu_s_per_gib"), 2),
            fmt(r["rss_mib"]),
            f"{r['max_concurrency']}×{r['part_size'] // MiB} MiB" if r.get("part_size") else "–",
            ratio(r.get("rss_vs_buffers")),
            stall_max,
            stall_p99,
            r.get("spread", ""),
        ]
        rows.append(row)
    return rows


def render(result: dict[str, Any]) -> str:
    m = result["machine"]
    out = [f"# aioims benchmarks — {result['started']}", ""]
    out += [f"Command: `{result['command']}` (total {result['elapsed_s']:.0f} s)", ""]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    out += [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram_gib']} GiB RAM, Linux {m['kernel']}, "
        f"{m['python_impl']} {m['python']}; load average at start "
        f"{m['load_average_at_start']} (a shared machine: compare ratios, not absolutes).",
        "",
        f"Versions: {versions}.",
        "",
    ]
    if result.get("skipped"):
        out += ["Skipped: " + "; ".join(result["skipped"]) + ".", ""]
    if result.get("errors"):
        out += ["**Errors**: " + "; ".join(result["errors"]) + ".", ""]
    floors = result.get("floors")
    if floors:
        out += ["## Floors of the machine", ""]
        names = [
            ("file_read", "file read (page cache, preadv 8 MiB)"),
            ("md5", "MD5, one core"),
            ("md5_2threads", "MD5, two threads at once (aggregate)"),
            ("sha256", "SHA-256, one core"),
            ("crc32", "CRC32 (zlib), one core"),
        ]
        rows = [[label, fmt(floors[key]["median"] / MiB)] for key, label in names if key in floors]
        socket = floors.get("socket")
        if socket and socket.get("ok"):
            label = f"loopback socket → {result.get('sink', 'sink')} (the ceiling)"
            rows.insert(1, [label, fmt(socket["mib_s"])])
        out += table(["floor", "MiB/s"], rows)
        idle = floors.get("idle_loop")
        if idle:
            out += [
                f"Idle event loop, 1 ms ticker lateness: max {idle['max_ms']:.2f} ms, "
                f"p99 {idle['p99_ms']:.2f} ms, median {idle['median_ms']:.2f} ms.",
                "",
            ]
    headers = [
        "client",
        "MiB/s",
        "× best peer",
        "× ceiling",
        "CPU s/GiB",
        "loop-thread CPU s/GiB",
        "peak RSS MiB",
        "conc × part",
        "RSS / (conc×part)",
        "loop stall max ms raw/own/cpu (worst callback)",
        "loop stall p99 ms (raw/own/cpu)",
        "runs MiB/s",
    ]
    for key, title in (
        ("sink", "zero-cost sink, HTTP"),
        ("sink_https", "zero-cost sink, HTTPS (throw-away CA)"),
        ("moto", "moto (the emulator's S3)"),
    ):
        section = result.get("upload", {}).get(key)
        if not section:
            continue
        out += [
            f"## Upload to the {title} — {size_label(section['size'])}, "
            f"median of {section['runs']} interleaved runs",
            "",
        ]
        cols = headers if key == "sink" else [h for h in headers if h != "× ceiling"]
        out += table(cols, _upload_rows(section, key == "sink"))
    rss = result.get("rss")
    if rss:
        sizes = rss["sizes"]
        out += ["## Peak RSS vs file size (aioims, sink)", ""]
        rows = []
        for name, entry in rss["clients"].items():
            rows.append(
                [f"`{name}`"]
                + [fmt(entry["rss_mib"].get(str(s))) for s in sizes]
                + [fmt(entry["budget_mib"]), fmt(entry["growth_mib"], 1)]
            )
        out += table(["config", *[size_label(s) for s in sizes], "budget MiB", "growth MiB"], rows)
    e2e = result.get("e2e")
    if e2e:
        out += ["## End to end: `upload_image` through the emulator", ""]
        rows = []
        for name, r in e2e.items():
            if not r.get("ok"):
                rows.append([name, "failed: " + str(r.get("error", ""))[:80]] + ["–"] * 8)
                continue
            rows.append(
                [
                    name,
                    fmt(r["wall"], 2),
                    fmt(r["median_total"], 2),
                    fmt(r["median_transfer"], 2),
                    f"{r['median_outside_share'] * 100:.0f}%",
                    fmt(r["median_create"], 3),
                    fmt(r["median_prepare"], 3),
                    fmt(r["median_done"], 3),
                    fmt(r["median_wait"], 3),
                ]
            )
        out += table(
            [
                "images × size",
                "batch wall s",
                "per image s",
                "transfer s",
                "outside transfer",
                "create s",
                "prepare s",
                "done s",
                "wait s",
            ],
            rows,
        )
    api = result.get("api")
    if api:
        out += ["## API overhead: IMSSession vs raw aiohttp (fixed-response server)", ""]
        rows = []
        for r in api:
            rows.append(
                [
                    r["op"],
                    str(r["concurrency"]),
                    fmt(r["sdk_calls_s"]),
                    fmt(r["raw_calls_s"]),
                    ratio(r["ratio"]),
                    fmt(r["sdk_cpu_us"]),
                    fmt(r["raw_cpu_us"]),
                    ratio(r["cpu_ratio"]),
                ]
            )
        out += table(
            [
                "call",
                "concurrency",
                "SDK calls/s",
                "raw calls/s",
                "SDK / raw",
                "SDK CPU µs/call",
                "raw CPU µs/call",
                "CPU SDK / raw",
            ],
            rows,
        )
    imports = result.get("imports")
    if imports:
        out += ["## Import time (fresh interpreter, median)", ""]
        rows = [
            [f"`import {name}`", fmt(v["importtime_ms"], 1), fmt(v["wall_ms"], 1)]
            for name, v in imports.items()
        ]
        a = imports["aioims"]
        out += table(["module", "-X importtime ms", "wall ms (minus bare start-up)"], rows)
        out += [
            f"aioims / aiohttp: {a['ratio_importtime']:.2f}x (importtime), "
            f"{a['ratio_wall']:.2f}x (wall).",
            "",
        ]
    targets = result.get("targets")
    if targets:
        out += ["## Targets", ""]
        rows = [[t["target"], t["measured"], t["verdict"]] for t in targets]
        out += table(["target", "measured (same run)", "holds?"], rows)
    return "\n".join(out)
