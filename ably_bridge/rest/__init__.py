"""The synchronous REST client: ``AblyRest``, ``Auth``, channels and pagination.

Modules: :mod:`.client` (AblyRest), :mod:`.http` (the one request funnel:
headers, formats, fallbacks, token renewal, errors), :mod:`.auth` (Auth),
:mod:`.channels` (Channels, Channel, Presence), :mod:`.pagination`
(PaginatedResult, HttpPaginatedResponse, Link parsing).

DEVIATIONS from the Ably features spec / UTS, on purpose:

* Durations are seconds (floats), as everywhere in this library; TokenParams
  ``ttl`` too. Wire values stay in ms.
* ``time()`` returns an int of ms since the epoch (as the official ``ably``
  package), not a datetime.
* Network failures raise ``AblyException`` 50003 (timeout) or 50002
  (unreachable/refused) with HTTP status 500 and the transport error as
  ``cause``; the spec leaves the code open.
* ``X-Ably-ClientId`` (RSA7e2) is sent only with Basic auth; with token auth
  the identity is inside the token (as ably-js does).
* Token expiry is also checked locally against the injected clock (plus the
  server offset when ``query_time`` has measured it) even when the server time
  was never queried (RSA4b1 asks for the offset first); a skewed local clock
  costs at most one extra token request.
* A success on a remembered fallback host neither extends nor revives the
  remembered period (RSC15f), so a late answer cannot re-pin an expired host.
* A failed ``auth_callback``/``auth_url`` is ``AuthenticationError`` 40170/401
  with the original error as ``cause`` (RSA4e); 40171 (no means to renew) is
  HTTP 403 as in ably-common.
* Client-side argument checks (limit 1..1000, direction, unit) raise 40003
  before any request is sent.
* The official ``ably`` package's ``Auth.Method`` enum is the string
  property ``auth.auth_mechanism`` ("basic" / "token").
"""

from ably_bridge.rest.auth import Auth, AuthOptions
from ably_bridge.rest.channels import Channel, Channels, Presence, PublishResult
from ably_bridge.rest.client import AblyRest, BatchPublishSpec, BatchResult
from ably_bridge.rest.pagination import HttpPaginatedResponse, PaginatedResult

__all__ = [
    "AblyRest",
    "Auth",
    "AuthOptions",
    "BatchPublishSpec",
    "BatchResult",
    "Channel",
    "Channels",
    "HttpPaginatedResponse",
    "PaginatedResult",
    "Presence",
    "PublishResult",
]
