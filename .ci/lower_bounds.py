"""Print pip constraints pinning every dependency in pyproject.toml to its lower bound.

``.ci/run`` installs the package against these constraints in a second environment and runs a
smoke test there, so the lower bounds in ``pyproject.toml`` are versions that were tested.
"""

import pathlib
import sys
import tomllib

from packaging.requirements import Requirement


def lower_bounds(pyproject: pathlib.Path) -> dict[str, str]:
    """``{name: version}`` from each dependency's ``>=`` clause (a dependency without one is an error)."""
    deps = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    out = {}
    for line in deps:
        req = Requirement(line)
        lows = [s.version for s in req.specifier if s.operator == ">="]
        if len(lows) != 1:
            raise SystemExit(f"dependency {line!r} needs exactly one '>=' lower bound")
        out[req.name] = lows[0]
    return out


if __name__ == "__main__":
    root = pathlib.Path(__file__).resolve().parent.parent
    path = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else root / "pyproject.toml"
    for name, version in lower_bounds(path).items():
        print(f"{name}=={version}")
