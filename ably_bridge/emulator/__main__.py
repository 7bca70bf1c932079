"""``python -m ably_bridge.emulator``: run the emulator in the foreground."""

from __future__ import annotations

import argparse
import sys

from ably_bridge.emulator.cli import add_arguments, run


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m ably_bridge.emulator")
    add_arguments(parser)
    return run(parser.parse_args())


if __name__ == "__main__":
    sys.exit(main())
