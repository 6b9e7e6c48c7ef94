"""Run every benchmark script: ``python benchmarks/run_all.py [--full]``.

Without ``--full`` each script runs with ``--quick`` (minutes in total on 2 cores); with
``--full`` the full versions run (hours); ``--smoke`` runs tiny sizes that only check the scripts
work (what tests/test_benchmarks_smoke.py does). Output goes to stdout and to
``benchmarks/out/<script>.log``; the recorded tables live in ``benchmarks/results/`` (index:
``benchmarks/README.md``).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).parent


def scripts() -> list[Path]:
    """Benchmark scripts (every ``benchmarks/*.py`` but this one)."""
    return sorted(
        p
        for p in HERE.glob("*.py")
        if p.name != Path(__file__).name and not p.name.startswith("_")
    )


def main(argv=None) -> int:
    """Run the scripts one after the other; return the number that failed."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="full-size runs (hours)")
    parser.add_argument(
        "--smoke", action="store_true", help="tiny runs that only check the scripts work"
    )
    parser.add_argument("--only", nargs="*", help="substrings of script names to run")
    args = parser.parse_args(argv)
    out = HERE / "out"
    out.mkdir(exist_ok=True)
    failed = 0
    for script in scripts():
        if args.only and not any(s in script.name for s in args.only):
            continue
        mode = [] if args.full else ["--smoke"] if args.smoke else ["--quick"]
        cmd = [sys.executable, str(script)] + mode
        print(f"\n=== {' '.join(cmd[1:])}", flush=True)
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        log = proc.stdout + proc.stderr
        (out / f"{script.stem}.log").write_text(log)
        print(proc.stdout)
        status = "ok" if proc.returncode == 0 else f"FAILED ({proc.returncode})"
        print(f"--- {script.name}: {status} in {time.perf_counter() - start:.0f} s", flush=True)
        if proc.returncode:
            print(proc.stderr[-3000:])
            failed += 1
    return failed


if __name__ == "__main__":
    raise SystemExit(main())
