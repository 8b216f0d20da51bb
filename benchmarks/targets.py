"""The issue-7 and issue-15 targets, judged on ratios measured in the same run."""

from __future__ import annotations

from typing import Any

MiB = 1024 * 1024
RSS_GROWTH_LIMIT_MIB = 16.0


def _verdict(ok: bool | None) -> str:
    if ok is None:
        return "n/a"
    return "yes" if ok else "**NO**"


def _client(result: dict[str, Any], section: str, name: str) -> dict[str, Any] | None:
    entry = result.get("upload", {}).get(section, {}).get("clients", {}).get(name)
    return entry if entry and entry.get("ok") else None


def _throughput(result: dict[str, Any]) -> list[dict[str, str]]:
    rows = []
    tuned = _client(result, "sink", "aioims-tuned")
    boto = _client(result, "sink", "boto3-tuned")
    ok = None
    measured = "missing client(s)"
    if tuned and boto:
        r = tuned["mib_s"] / boto["mib_s"]
        ok, measured = r >= 1.0, f"{r:.2f}x ({tuned['mib_s']:,.0f} vs {boto['mib_s']:,.0f} MiB/s)"
    rows.append(
        {
            "target": "sink, integrity off: aioims-tuned >= 1.0x boto3-tuned",
            "measured": measured,
            "verdict": _verdict(ok),
        }
    )
    obstores = [
        c
        for c in (
            _client(result, "sink", "obstore-default"),
            _client(result, "sink", "obstore-tuned"),
        )
        if c
    ]
    ok, measured = None, "missing client(s)"
    if tuned and obstores:
        best = max(c["mib_s"] for c in obstores)
        r = tuned["mib_s"] / best
        ok, measured = (
            r >= 0.9,
            f"{r:.2f}x ({tuned['mib_s']:,.0f} vs {best:,.0f} MiB/s, best obstore)",
        )
    rows.append(
        {
            "target": "sink, integrity off: aioims-tuned >= 0.9x obstore",
            "measured": measured,
            "verdict": _verdict(ok),
        }
    )
    md5_rate = result.get("floors", {}).get("md5", {}).get("median")
    for name in ("aioims-md5", "aioims-default"):
        client = _client(result, "sink", name)
        ok, measured = None, "missing"
        if client and md5_rate:
            r = client["mib_s"] * MiB / md5_rate
            ok = r >= 0.9
            measured = f"{r:.2f}x ({client['mib_s']:,.0f} vs MD5 {md5_rate / MiB:,.0f} MiB/s)"
        what = (
            "whole-file MD5 only" if name == "aioims-md5" else "defaults: Content-MD5 + whole MD5"
        )
        rows.append(
            {
                "target": f"sink, {what}: `{name}` >= 0.9x one-core MD5 rate",
                "measured": measured,
                "verdict": _verdict(ok),
            }
        )
    return rows


def _memory(result: dict[str, Any]) -> list[dict[str, str]]:
    rows = []
    rss = result.get("rss", {})
    for name, entry in rss.get("clients", {}).items():
        budget, worst = entry.get("budget_mib"), entry.get("max_rss_mib")
        ok = None if budget is None or worst is None else worst <= budget
        sizes = ", ".join(
            f"{int(s) // MiB} MiB: {v:,.0f}" for s, v in entry["rss_mib"].items() if v is not None
        )
        rows.append(
            {
                "target": f"`{name}` peak RSS <= 100 MiB + 1.5 x conc x part",
                "measured": f"max {worst:,.0f} MiB vs budget {budget:,.0f} MiB ({sizes})"
                if ok is not None
                else "missing",
                "verdict": _verdict(ok),
            }
        )
        growth = entry.get("growth_mib")
        flat = None if growth is None else growth <= RSS_GROWTH_LIMIT_MIB
        rows.append(
            {
                "target": f"`{name}` peak RSS flat from smallest to largest file "
                f"(growth <= {RSS_GROWTH_LIMIT_MIB:.0f} MiB)",
                "measured": "one size only" if growth is None else f"{growth:+.1f} MiB",
                "verdict": _verdict(flat),
            }
        )
    return rows


def _stalls(result: dict[str, Any]) -> list[dict[str, str]]:
    """Judged on the loop thread's CPU time per 1 ms tick (everything the
    loop ran between two wake-ups of the ticker: immune to neighbours taking
    the CPU, blind to GIL waits); the raw and own lateness are shown too."""
    rows = []
    section = result.get("upload", {}).get("sink", {})
    size = section.get("size", 0)
    for name in ("aioims-thread-default", "aioims-thread-tuned", "aioims-default", "aioims-tuned"):
        client = _client(result, "sink", name)
        if not client or client.get("stall_cpu_max_ms") is None:
            continue
        worst, p99 = client["stall_cpu_max_ms"], client["stall_cpu_p99_ms"]
        ok = worst < 20 and p99 < 5
        rows.append(
            {
                "target": f"`{name}` loop stall during a {size // MiB} MiB upload: "
                "worst < 20 ms, p99 < 5 ms",
                "measured": f"loop CPU per tick max {worst:.1f} / p99 {p99:.1f} ms "
                f"(worst callback {client.get('worst_callback_cpu_ms') or 0:.1f} ms); "
                f"lateness raw {client['stall_max_ms']:.0f} / "
                f"{client['stall_p99_ms']:.1f} ms, own {client['stall_own_max_ms']:.0f}"
                f" / {client['stall_own_p99_ms']:.1f} ms",
                "verdict": _verdict(ok),
            }
        )
    return rows


def _api(result: dict[str, Any]) -> list[dict[str, str]]:
    rows = []
    for row in result.get("api", []):
        ok = None if row.get("ratio") is None else row["ratio"] >= 0.8
        rows.append(
            {
                "target": f"`{row['op']}` (concurrency {row['concurrency']}): SDK >= 0.8x raw "
                "aiohttp calls/s",
                "measured": "failed"
                if row.get("ratio") is None
                else f"{row['ratio']:.2f}x ({row['sdk_calls_s']:,.0f} vs {row['raw_calls_s']:,.0f} "
                f"calls/s; CPU/call {row['cpu_ratio']:.2f}x)",
                "verdict": _verdict(ok),
            }
        )
    return rows


def _ratio_row(
    result: dict[str, Any], section: str, name: str, peers: tuple[str, ...], floor: float, what: str
) -> dict[str, str]:
    ours = _client(result, section, name)
    others = [(p, c) for p in peers if (c := _client(result, section, p))]
    ok, measured = None, "missing client(s)"
    if ours and others:
        peer, best = max(others, key=lambda pc: pc[1]["mib_s"])
        r = ours["mib_s"] / best["mib_s"]
        ok = r >= floor
        measured = f"{r:.2f}x ({ours['mib_s']:,.0f} vs {best['mib_s']:,.0f} MiB/s, {peer})"
    return {
        "target": f"{section}, {what}: `{name}` >= {floor:.1f}x best of {', '.join(peers)}",
        "measured": measured,
        "verdict": _verdict(ok),
    }


def _sender(result: dict[str, Any]) -> list[dict[str, str]]:
    """Issue 15: the threaded part sender (``TransferConfig(sender="thread")``)."""
    tuned_peers = ("boto3-tuned", "obstore-tuned")
    rows = [
        _ratio_row(result, "sink", "aioims-thread-tuned", tuned_peers, 1.2, "integrity off"),
        _ratio_row(result, "sink_https", "aioims-thread-tuned", tuned_peers, 1.0, "integrity off"),
        _ratio_row(result, "sink", "aioims-thread-default", ("boto3-default",), 1.0, "defaults"),
        _ratio_row(
            result, "sink_https", "aioims-thread-default", ("boto3-default",), 1.0, "defaults"
        ),
    ]
    # the defaults compute two MD5 passes over every byte (Content-MD5 per
    # part where CRC32C is not honoured, and the whole-file MD5): their limit
    # on this machine is half the aggregate rate of two MD5 threads
    two = result.get("floors", {}).get("md5_2threads", {}).get("median")
    for section in ("sink", "sink_https"):
        client = _client(result, section, "aioims-thread-default")
        ok, measured = None, "missing"
        if client and two:
            limit = two / 2
            r = client["mib_s"] * MiB / limit
            ok = r >= 0.9
            measured = f"{r:.2f}x ({client['mib_s']:,.0f} vs {limit / MiB:,.0f} MiB/s)"
        rows.append(
            {
                "target": f"{section}, defaults: `aioims-thread-default` >= 0.9x the 2-core "
                "limit of two MD5 passes",
                "measured": measured,
                "verdict": _verdict(ok),
            }
        )
    for section in ("sink", "sink_https"):
        for name in ("aioims-thread-tuned", "aioims-thread-default"):
            client = _client(result, section, name)
            value = client.get("loop_cpu_s_per_gib") if client else None
            rows.append(
                {
                    "target": f"{section}: `{name}` event-loop thread <= 0.15 CPU-s/GiB",
                    "measured": "missing" if value is None else f"{value:.2f} CPU-s/GiB",
                    "verdict": _verdict(None if value is None else value <= 0.15),
                }
            )
    return rows


def evaluate(result: dict[str, Any]) -> list[dict[str, str]]:
    rows = [
        *_throughput(result),
        *_sender(result),
        *_memory(result),
        *_stalls(result),
        *_api(result),
    ]
    if result.get("smoke"):  # tiny sizes, one run: the harness works, nothing is judged
        for row in rows:
            row["verdict"] = "n/a (smoke)"
    return rows
