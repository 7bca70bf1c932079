"""Example producer: enqueue Ably publishes from any Python process (a web view, a cron job).

The publish runs later in a Celery worker (``celery -A workers worker``), with
retries through the broker; the message ids are fixed here, at enqueue time,
so however often the task is retried Ably stores each message once.

    python -m examples.producer --channel chat:lobby --count 3 --wait

Configuration comes from the environment (``CELERY_BROKER_URL`` and friends,
see ``deploy/env.example``); the producer itself needs no Ably key.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from workers import producers


def enqueue(channel: str, count: int, *, app: Any = None) -> list[producers.PublishReceipt]:
    """Enqueue ``count`` chat messages on ``channel``; one receipt per publish."""
    receipts = []
    for number in range(1, count + 1):
        receipt = producers.publish(
            channel,
            "text",
            {"text": f"announcement {number} of {count}", "number": number},
            client_id="producer",
            app=app,
        )
        receipts.append(receipt)
    return receipts


def main(argv: Sequence[str] | None = None, *, app: Any = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m examples.producer", description="Enqueue publishes for the workers."
    )
    parser.add_argument("--channel", default="chat:lobby", help="channel (default chat:lobby)")
    parser.add_argument("--count", type=int, default=1, help="messages to enqueue (default 1)")
    parser.add_argument(
        "--wait", action="store_true", help="wait for each publish (needs a result backend)"
    )
    args = parser.parse_args(argv)
    for receipt in enqueue(args.channel, args.count, app=app):
        print(f"enqueued task {receipt.task_id}: message ids {', '.join(receipt.message_ids)}")
        if args.wait:
            print(f"  published: {receipt.get(timeout=60)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
