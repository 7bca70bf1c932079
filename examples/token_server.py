"""Example token endpoint for browser clients (Flask), using ``create_token_request``.

A browser must never hold the API key. It asks this endpoint instead::

    const realtime = new Ably.Realtime({ authUrl: "/ably/token" });

and the endpoint answers with a TokenRequest signed with the key (no call to
Ably is made here: the browser exchanges the request for a token itself). The
token is bound to the signed-in user's clientId and limited to the chat
channels. The user comes from the Flask session; replace :func:`session_user`
with your own authentication.

    pip install flask
    FLASK_SECRET_KEY=... ABLY_KEY=... python -m examples.token_server

``ABLY_KEY`` and the other ``ABLY_*`` client variables are read the way the
workers read them (``deploy/env.example``); ``FLASK_SECRET_KEY`` signs the
session cookie; ``TOKEN_SERVER_PORT`` is the port (default 5000).
"""

from __future__ import annotations

import os
from collections.abc import Callable

from flask import Flask, Response, abort, jsonify, session

from ably_bridge import AblyRest
from workers.settings import WorkerSettings

# What a browser user may do: read and write chat, be present, read history.
CHAT_CAPABILITY = {"chat:*": ["subscribe", "publish", "presence", "history"]}
TOKEN_TTL = 3600.0  # seconds


def session_user() -> str | None:
    """The signed-in user's id (replace with your authentication)."""
    user = session.get("user_id")
    return str(user) if user else None


def create_app(
    rest: AblyRest | None = None, identify: Callable[[], str | None] = session_user
) -> Flask:
    """The Flask app; ``rest`` defaults to a client configured from the environment."""
    app = Flask(__name__)
    app.config.from_prefixed_env()  # FLASK_SECRET_KEY -> SECRET_KEY
    client = rest or AblyRest(WorkerSettings.from_env().client_options_value())

    @app.get("/ably/token")
    def ably_token() -> Response:
        user = identify()
        if user is None:
            abort(401)
        token_request = client.auth.create_token_request(
            {"client_id": user, "capability": CHAT_CAPABILITY, "ttl": TOKEN_TTL}
        )
        response = jsonify(token_request.to_dict())
        response.headers["Cache-Control"] = "no-store"  # a credential: never cached
        return response

    return app


if __name__ == "__main__":
    create_app().run(port=int(os.environ.get("TOKEN_SERVER_PORT", "5000")))
