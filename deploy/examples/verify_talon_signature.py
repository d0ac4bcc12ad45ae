#!/usr/bin/env python3
"""Verify a talon web-hook request: its X-Talon-Signature over
"<X-Talon-Timestamp>.<body>", and that the timestamp is recent.

In a receiver:

    from verify_talon_signature import verify
    ok = verify(secret, request.headers["X-Talon-Timestamp"],
                request.headers["X-Talon-Signature"], request.get_data())

From the command line (exit 0 when valid, 1 when not, with the reason):

    verify_talon_signature.py SECRET TIMESTAMP SIGNATURE BODY_FILE [--now UNIX_SECONDS]
"""

import hashlib
import hmac
import sys
import time

# A request signed longer ago than this (or this far in the future) is
# refused: a captured request cannot be replayed later.
TOLERANCE_SECONDS = 300


def check(secret: bytes, timestamp: str, signature: str, body: bytes, now=None):
    """Returns None when the request is valid, else the reason it is not."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError):
        return "the timestamp is not a number"
    now = int(time.time()) if now is None else now
    if abs(now - ts) > TOLERANCE_SECONDS:
        return "the timestamp is %d s from now, more than %d s" % (now - ts, TOLERANCE_SECONDS)
    expected = "sha256=" + hmac.new(secret, b"%d." % ts + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature or ""):
        return "the signature does not match"
    return None


def verify(secret: bytes, timestamp: str, signature: str, body: bytes, now=None) -> bool:
    return check(secret, timestamp, signature, body, now) is None


def main(argv):
    args = list(argv[1:])
    now = None
    if "--now" in args:
        at = args.index("--now")
        now = int(args[at + 1])
        del args[at : at + 2]
    if len(args) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    secret, timestamp, signature, body_file = args
    with open(body_file, "rb") as f:
        body = f.read()
    reason = check(secret.encode(), timestamp, signature, body, now)
    if reason:
        print("invalid: " + reason)
        return 1
    print("valid")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
