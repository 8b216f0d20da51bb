"""Import time of ``aioims`` vs ``aiohttp``, each in a fresh interpreter.

Two measures per module, runs interleaved (A B A B ...), medians:

* ``importtime_ms``: the module's cumulative time from ``-X importtime``
  (its own imports included; interpreter start-up excluded);
* ``wall_ms``: wall time of ``python -c "import X"`` minus that of
  ``python -c "pass"`` (what a CLI user waits for).
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time

MODULES = ("aiohttp", "aioims")


def _importtime(module: str) -> float:
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"],
        capture_output=True,
        text=True,
        check=True,
    )
    for line in reversed(done.stderr.splitlines()):
        # "import time:  self [us] | cumulative | imported package"
        parts = [p.strip() for p in line.split("|")]
        if len(parts) == 3 and parts[2] == module:
            return int(parts[1]) / 1000
    raise RuntimeError(f"no importtime line for {module}")


def _wall(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return (time.perf_counter() - start) * 1000


def measure(runs: int) -> dict[str, dict[str, float]]:
    samples: dict[str, dict[str, list[float]]] = {
        m: {"importtime_ms": [], "wall_ms": []} for m in MODULES
    }
    for _ in range(runs):
        for module in MODULES:
            samples[module]["importtime_ms"].append(_importtime(module))
            base = _wall("pass")
            samples[module]["wall_ms"].append(_wall(f"import {module}") - base)
    result = {
        module: {name: statistics.median(values) for name, values in kinds.items()}
        for module, kinds in samples.items()
    }
    base = result["aiohttp"]
    result["aioims"]["ratio_importtime"] = result["aioims"]["importtime_ms"] / max(
        base["importtime_ms"], 1e-9
    )
    result["aioims"]["ratio_wall"] = result["aioims"]["wall_ms"] / max(base["wall_ms"], 1e-9)
    return result
