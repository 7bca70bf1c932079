"""REST unit tests: the mock HTTP transport and a FakeClock, no network, no sleeps.

Ported in spirit from the Ably spec's portable ``uts/rest/unit`` specs
(ably/specification 7ae7662): fallback, auth_scheme, auth_callback, authorize,
client_id, token_renewal, idempotency, publish, history, rest_presence,
paginated_result, request, time, stats, batch_publish, channels_collection.
Deliberate deviations are listed in the DEVIATIONS section of the
``ably_bridge.rest`` package docstring; in the tests themselves:

* The UTS mocks expect the raw token in ``Authorization: Bearer``; we send it
  base64-encoded (RSA3b allows either), so tests decode before comparing.
* UTS mocks answer capability errors with 403; we only rely on codes.
* Durations in options are seconds (``fallback_retry_timeout=0.1``, not 100).
* "Request timeout" cases are driven by a transport raising a timeout error,
  not by a slow server.
"""
