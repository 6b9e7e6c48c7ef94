"""The ``bayesnn`` command line: help texts and errors (the demo itself is in test_demo.py)."""

import re
import tomllib
from pathlib import Path

import pytest

from bayesnn.datasets import SHIPPED_UCI
from bayesnn.demo import main


def _help(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 0
    return capsys.readouterr().out


def test_top_level_help_lists_the_demo_command(capsys):
    out = _help(capsys, ["--help"])
    assert re.search(r"^\s+demo\s+\S.*SGHMC", out, re.M), out


def test_demo_help_describes_every_option(capsys):
    out = _help(capsys, ["demo", "--help"])
    usage = out.split("\n\n")[0]
    options = set(re.findall(r"\[(--[a-z-]+)", usage))
    assert {"--dataset", "--chains", "--samples", "--burnin", "--thinning", "--seed"} <= options
    for opt in options:
        # the option's entry: "  --opt METAVAR  description (default: ...)", possibly wrapped
        entry = re.search(rf"^  {opt}(?: \S+)?\s+(\S.*(?:\n {{10,}}\S.*)*)", out, re.M)
        assert entry, f"{opt} has no help line:\n{out}"
        words = re.sub(r"\(default: [^)]*\)", "", entry.group(1)).split()
        assert len(words) >= 3, f"{opt}: help text too short: {entry.group(1)!r}"
        assert "(default:" in entry.group(1), f"{opt}: default not shown"
    for name in SHIPPED_UCI:  # the known data sets are listed in the help
        assert name in out.replace("\n", " ").replace("  ", "")


def test_unknown_dataset_is_one_line_listing_the_known_ones(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--dataset", "imaginary"])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert "imaginary" in err
    assert all(name in err for name in SHIPPED_UCI)


def test_console_script_points_at_main():
    pyproject = tomllib.loads(
        (Path(__file__).resolve().parent.parent / "pyproject.toml").read_text()
    )
    target = pyproject["project"]["scripts"]["bayesnn"]
    module, func = target.split(":")
    import importlib

    assert getattr(importlib.import_module(module), func) is main
