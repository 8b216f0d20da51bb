"""Run the aioims benchmarks (issue 7).  See docs/performance.md.

    python -m benchmarks                 # the full run (~15 min on 2 cores)
    python -m benchmarks --smoke         # tiny sizes, one iteration (CI, < 60 s)
    python -m benchmarks --only sink,api --size 256MiB --runs 5 --out /tmp/res

Writes ``latest.md`` and ``latest.json`` into ``--out`` (default
``benchmarks/results/``).  Optional peers (boto3, aioboto3, obstore, s5cmd,
nginx) are used when installed and skipped (and listed) otherwise.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # python benchmarks/run.py
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks import floors as floors_mod
from benchmarks import imports as imports_mod
from benchmarks import report, servers, suites
from benchmarks.targets import evaluate

HERE = Path(__file__).resolve().parent
MiB = 1024 * 1024
GiB = 1024 * MiB
SECTIONS = ("floors", "sink", "moto", "rss", "e2e", "api", "imports")
_UNITS = {"": 1, "B": 1, "KIB": 1024, "MIB": MiB, "GIB": GiB, "KB": 1000, "MB": 10**6, "GB": 10**9}


def parse_size(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not match or match.group(2).upper() not in _UNITS:
        raise argparse.ArgumentTypeError(f"bad size {text!r} (e.g. 1GiB, 256MiB)")
    return int(float(match.group(1)) * _UNITS[match.group(2).upper()])


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.split("\n")[0])
    p.add_argument("--smoke", action="store_true", help="tiny sizes, one run (CI)")
    p.add_argument("--size", type=parse_size, help="upload file size for the sink (default 1GiB)")
    p.add_argument("--moto-size", type=parse_size, help="file size for moto (default 256MiB)")
    p.add_argument("--rss-sizes", help="comma list for the RSS check (default 256MiB,1GiB,4GiB)")
    p.add_argument("--runs", type=int, help="interleaved runs per figure (default 3)")
    p.add_argument("--only", help=f"comma list of sections: {','.join(SECTIONS)}")
    p.add_argument("--clients", help="comma list of client-name prefixes (e.g. aioims,boto3)")
    p.add_argument("--out", default=str(HERE / "results"), help="where latest.md/json go")
    p.add_argument(
        "--sink",
        choices=("asyncio", "nginx"),
        default="nginx",
        help="zero-cost sink: nginx (HTTP and HTTPS; falls back to asyncio, HTTP only, "
        "when nginx or its echo module is missing) or asyncio (see docs/performance.md)",
    )
    p.add_argument("--part-size", type=parse_size, default=16 * MiB, help="tuned part size")
    p.add_argument("--concurrency", type=int, default=8, help="tuned max_concurrency")
    p.add_argument(
        "--aioboto3-python",
        default=os.environ.get("AIOIMS_BENCH_AIOBOTO3_PYTHON"),
        help="interpreter with aioboto3 (it pins an older aiobotocore)",
    )
    p.add_argument("--workdir", help="where the test files go (default: a temp dir)")
    p.add_argument("--profile", action="store_true", help="cProfile the aioims upload runs")
    p.add_argument(
        "--nice",
        type=int,
        default=0,
        help="os.nice() increment for the harness and every child (e.g. -10 on a shared box)",
    )
    p.add_argument(
        "--experiments",
        help="comma list of candidate engine patches to measure too "
        "(see benchmarks/experiments.py; 'all' for every one)",
    )
    args = p.parse_args(argv)
    smoke = args.smoke
    args.size = args.size or (16 * MiB if smoke else GiB)
    args.moto_size = args.moto_size or (16 * MiB if smoke else 256 * MiB)
    default_rss = "16MiB" if smoke else "256MiB,1GiB,4GiB"
    args.rss_sizes = [parse_size(s) for s in (args.rss_sizes or default_rss).split(",")]
    args.runs = args.runs or (1 if smoke else 3)
    args.only = set(args.only.split(",")) if args.only else set(SECTIONS)
    unknown = args.only - set(SECTIONS)
    if unknown:
        p.error(f"unknown section(s) {sorted(unknown)}; choose from {SECTIONS}")
    args.clients = args.clients.split(",") if args.clients else None
    from benchmarks.experiments import PATCHES

    if args.experiments == "all":
        args.experiments = "view-writes-128k"
    args.experiments = args.experiments.split(",") if args.experiments else []
    bad = set(args.experiments) - set(PATCHES)
    if bad:
        p.error(f"unknown experiment(s) {sorted(bad)}; choose from {sorted(PATCHES)}")
    return args


def log(message: str) -> None:
    print(message, flush=True)


def make_file(path: Path, size: int) -> str:
    """A file of ``size`` bytes of incompressible data (cached between runs)."""
    if path.exists() and path.stat().st_size == size:
        return str(path)
    block = os.urandom(min(size, 64 * MiB)) or b""
    with path.open("wb") as out:
        left = size
        while left:
            piece = block[: min(left, len(block))]
            out.write(piece)
            left -= len(piece)
    return str(path)


def peers(args: argparse.Namespace, skipped: list[str]) -> tuple[set[str], dict[str, str | None]]:
    """The optional peers present, and their versions."""
    found: set[str] = set()
    versions: dict[str, str | None] = {}
    for name in ("boto3", "obstore"):
        if importlib.util.find_spec(name) is not None:
            found.add(name)
        else:
            skipped.append(f"{name} (not installed)")
    python = args.aioboto3_python
    if python is None and importlib.util.find_spec("aioboto3") is not None:
        python = sys.executable
    if python is not None and report.version_in(python, "aioboto3"):
        found.add("aioboto3")
        args.aioboto3_python = None if python == sys.executable else python
        versions["aioboto3"] = report.version_in(python, "aioboto3")
        versions["aiobotocore (aioboto3's)"] = report.version_in(python, "aiobotocore")
    else:
        skipped.append("aioboto3 (not installed; it pins aiobotocore 2.x: see --aioboto3-python)")
    binary = shutil.which("s5cmd") or str(Path(sys.executable).parent / "s5cmd")
    if os.access(binary, os.X_OK):
        found.add("s5cmd")
        done = subprocess.run([binary, "version"], capture_output=True, text=True, check=False)
        versions["s5cmd binary"] = done.stdout.strip()
    else:
        skipped.append("s5cmd (not installed)")
    return found, versions


def start_sink(kind: str, skipped: list[str]) -> servers.Server:
    if kind != "asyncio":
        try:
            return servers.start_nginx_sink()
        except (OSError, RuntimeError) as exc:
            skipped.append(f"{kind} sink ({exc}): used the asyncio sink")
    return servers.start_script("sink.py", kind="asyncio-sink")


def require_moto() -> None:
    """moto (the ``emulator`` extra) backs the moto and end-to-end sections."""
    if importlib.util.find_spec("moto") is None:
        raise ModuleNotFoundError("moto is not installed (pip install 'aioims[emulator]')")


class Run:
    """One benchmark run: its sections share the test files and the result."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.skipped: list[str] = []
        self.errors: list[str] = []
        self.result: dict[str, Any] = {
            "started": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "command": "python -m benchmarks " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            "smoke": args.smoke,
        }
        found, extra_versions = peers(args, self.skipped)
        self.result["machine"] = report.machine(extra_versions)
        self.workdir = Path(args.workdir or tempfile.mkdtemp(prefix="aioims-bench-"))
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.profile_dir: str | None = None
        if args.profile:
            self.profile_dir = str(self.out / "profiles")
            os.makedirs(self.profile_dir, exist_ok=True)
        self.variants = suites.upload_variants(
            args.part_size, args.concurrency, found, args.aioboto3_python, args.experiments
        )
        if args.clients:
            self.variants = [v for v in self.variants if v.name.startswith(tuple(args.clients))]

    def file(self, size: int) -> str:
        return make_file(self.workdir / f"data-{size}.bin", size)

    def section(self, name: str, body: Any) -> None:
        """Run one section; a missing optional dependency skips it, any other
        failure is recorded (and makes the exit status 1)."""
        if name not in self.args.only:
            return
        try:
            body()
        except ModuleNotFoundError as exc:
            self.skipped.append(f"{name} section ({exc})")
            log(f"  {name}: skipped ({exc})")
        except Exception as exc:
            self.errors.append(f"{name}: {type(exc).__name__}: {exc}")
            log(f"  {name}: FAILED {type(exc).__name__}: {exc}")

    def floors(self) -> None:
        log("floors: file read, hashes, idle loop")
        args = self.args
        floors = floors_mod.measure(
            self.file(args.size), args.size, args.runs, min(args.size, 256 * MiB)
        )
        self.result["floors"] = {**floors, **self.result.get("floors", {})}

    def sink(self) -> None:
        args = self.args
        if "sink" not in args.only and "rss" not in args.only:
            return
        sink = start_sink(args.sink, self.skipped)
        self.result["sink"] = f"{sink.kind} {sink.version}".strip()
        log(f"sink: {self.result['sink']} at {sink.url}")
        try:
            if "sink" in args.only:
                shape = {"part_size": args.part_size}
                ceiling = suites.Variant("socket", "socket", shape, "ceiling")
                section = suites.upload_section(
                    sink.url, self.file(args.size), args.size, args.runs,
                    [*self.variants, ceiling], log, self.profile_dir,
                )  # fmt: skip
                self.result.setdefault("upload", {})["sink"] = section
                self.result.setdefault("floors", {})["socket"] = section["clients"]["socket"]
                for name, entry in section["clients"].items():
                    if entry.get("group") in ("aioims", "sender") and not entry.get("ok"):
                        self.errors.append(f"sink: {name} failed: {entry.get('error')}")
                if sink.tls_url:
                    log(f"sink over HTTPS at {sink.tls_url} (throw-away CA)")
                    tls_variants = [v for v in self.variants if v.client != "s5cmd"]
                    if args.smoke:
                        smoke = ("aioims-thread-tuned", "sender-thread")
                        tls_variants = [v for v in tls_variants if v.name in smoke]
                    section = suites.upload_section(
                        sink.tls_url, self.file(args.size), args.size, args.runs,
                        tls_variants, log, None, ca_file=sink.ca_file,
                    )  # fmt: skip
                    self.result["upload"]["sink_https"] = section
                    for name, entry in section["clients"].items():
                        if entry.get("group") in ("aioims", "sender") and not entry.get("ok"):
                            self.errors.append(f"sink_https: {name} failed: {entry.get('error')}")
            if "rss" in args.only:
                files = {size: self.file(size) for size in args.rss_sizes}
                rss_names = ("aioims-thread-default", "aioims-thread-tuned")  # the shipping path
                chosen = [v for v in self.variants if v.name in rss_names]
                self.result["rss"] = suites.rss_section(sink.url, files, args.runs, chosen, log)
        finally:
            sink.stop()

    def moto(self) -> None:
        args = self.args
        require_moto()
        chosen = [v for v in self.variants if not v.spec.get("patches") and "signed" not in v.name]
        if args.smoke:
            chosen = [v for v in chosen if v.name in ("aioims-default", "boto3-default")]
        log("moto S3 server")
        with servers.start_moto() as moto:
            self.result.setdefault("upload", {})["moto"] = suites.upload_section(
                moto.url, self.file(args.moto_size), args.moto_size, args.runs, chosen, log
            )

    def e2e(self) -> None:
        args = self.args
        require_moto()
        one, many = (2 * MiB, MiB) if args.smoke else (256 * MiB, 16 * MiB)
        count = 4 if args.smoke else 16
        cases = [(1, self.file(one), one), (count, self.file(many), many)]
        log("emulator: upload_image end to end")
        with servers.start_emulator() as emulator:
            self.result["e2e"] = suites.e2e_section(emulator.url, cases, args.runs, {}, log)

    def api(self) -> None:
        args = self.args
        log("API overhead: fixed-response server")
        with servers.start_script("apiserver.py", kind="api") as api:
            self.result["api"] = suites.api_section(
                api.url, args.runs, 0.3 if args.smoke else 2.0,
                [1] if args.smoke else [1, 16], log,
            )  # fmt: skip

    def imports(self) -> None:
        log("import time")
        self.result["imports"] = imports_mod.measure(1 if self.args.smoke else 7)

    def execute(self) -> dict[str, Any]:
        started = time.monotonic()
        try:
            self.section("floors", self.floors)
            for name in ("sink", "rss"):
                if name in self.args.only:
                    self.section(name, self.sink)
                    break
            self.section("moto", self.moto)
            self.section("e2e", self.e2e)
            self.section("api", self.api)
            self.section("imports", self.imports)
        finally:
            if self.args.workdir is None:
                shutil.rmtree(self.workdir, ignore_errors=True)
        self.result["skipped"] = self.skipped
        self.result["errors"] = self.errors
        self.result["targets"] = evaluate(self.result)
        self.result["elapsed_s"] = time.monotonic() - started
        return self.result


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.nice:
        try:
            os.nice(args.nice)
        except OSError as exc:
            log(f"could not change the priority ({exc}); running at the default")
    result = Run(args).execute()
    out = Path(args.out)
    (out / "latest.json").write_text(json.dumps(result, indent=1, default=str) + "\n")
    markdown = report.render(result)
    (out / "latest.md").write_text(markdown + "\n")
    log("")
    log(markdown)
    if result["skipped"]:
        log("skipped: " + "; ".join(result["skipped"]))
    if result["errors"]:
        log("errors: " + "; ".join(result["errors"]))
    log(f"\nwrote {out / 'latest.md'} and {out / 'latest.json'} in {result['elapsed_s']:.0f} s")
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
