"""Command-line entry point (``bayesnn demo``)."""

from bayesnn.demo import main

__all__ = ["main"]

if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
