"""``python -m ably_bridge.check_shortcuts``: is every library shortcut taken here?

Prints one line per shortcut of :mod:`ably_bridge.shortcuts` (taken, or off and
on the public path, with each library's installed version and tested range) and
exits 1 when any is off, so a deployment or an upgrade can check it.
"""

from __future__ import annotations

import sys

from ably_bridge.shortcuts import check, report


def main() -> int:
    print("\n".join(report()))
    return 0 if all(check().values()) else 1


if __name__ == "__main__":
    sys.exit(main())
