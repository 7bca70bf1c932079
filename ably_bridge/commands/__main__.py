"""``python -m ably_bridge.commands TOOL ...``: the operator tools without the package CLI."""

from ably_bridge.commands import main

raise SystemExit(main())
