"""Example token endpoint for browser clients (Flask), using ``create_token_request``.

A browser must never hold the API key. It asks this endpoint instead::

    const realtime = new Ably.Realtime({ authUrl: "/ably/token" });

and the endpoint answers with a TokenRequest signed with the key (no call to
Ably is made here: the browser exchanges the request for a token itself). The
token is bound to the signed-in user's clientId and limited to the chat
channels. The user comes from the Flask session; replace :func:`session_user`
with your own authentication.

To try it against the dev stack (Flask comes with the ``dev`` extras; on its
own: ``pip install flask``), with the stack's variables loaded
(``set -a; . ./.ably-dev.env; set +a``)::

    FLASK_SECRET_KEY=change-me TOKEN_SERVER_DEMO_LOGIN=1 python -m examples.token_server
    curl -c jar 'http://127.0.0.1:5000/demo/login?user=alice'   # stands in for your sign-in
    curl -b jar http://127.0.0.1:5000/ably/token                # a TokenRequest for alice

Without a signed-in user ``/ably/token`` answers 401. ``/demo/login`` exists
only with ``TOKEN_SERVER_DEMO_LOGIN=1``: it signs anybody in, so never set it
outside development. ``ABLY_KEY`` and the other ``ABLY_*`` client variables
are read the way the workers read them (``deploy/env.example``);
``FLASK_SECRET_KEY`` signs the session cookie (required); ``TOKEN_SERVER_PORT``
is the port (default 5000) on 127.0.0.1.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from flask import Flask, Response, abort, jsonify, request, session

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
    rest: AblyRest | None = None,
    identify: Callable[[], str | None] = session_user,
    *,
    demo_login: bool = False,
) -> Flask:
    """The Flask app; ``rest`` defaults to a client configured from the environment."""
    app = Flask(__name__)
    app.config.from_prefixed_env()  # FLASK_SECRET_KEY -> SECRET_KEY
    client = rest or AblyRest(WorkerSettings.from_env().client_options_value())

    if demo_login:

        @app.get("/demo/login")
        def demo_sign_in() -> Response:
            """Development only: sign in as ``?user=NAME`` (stands in for real sign-in)."""
            user = request.args.get("user", "").strip()
            if not user:
                abort(400, "give ?user=NAME")
            session["user_id"] = user
            return jsonify({"user": user})

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


def main() -> None:
    if not os.environ.get("FLASK_SECRET_KEY"):
        raise SystemExit("token_server: set FLASK_SECRET_KEY (it signs the session cookie)")
    demo = os.environ.get("TOKEN_SERVER_DEMO_LOGIN") == "1"
    app = create_app(demo_login=demo)
    port = int(os.environ.get("TOKEN_SERVER_PORT", "5000"))
    app.run(host="127.0.0.1", port=port)


if __name__ == "__main__":
    main()
