"""Runnable examples of ably-bridge: a producer, a chat worker and a token endpoint.

Run them from the repository root so that ``examples`` is importable, e.g.
``celery -A examples.chat_worker worker -Q chat``; see ``examples/README.md``.
"""
