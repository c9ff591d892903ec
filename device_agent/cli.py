"""`edge-agent`: the device agent's command line (being built: see issue 3)."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="edge-agent", description="edge-toolkit device agent")
    parser.parse_args(argv)
    print("edge-agent: 'run' is not available in this version yet", file=sys.stderr)
    sys.exit(2)
