"""REST tests against the local emulator, run in JSON and msgpack."""
