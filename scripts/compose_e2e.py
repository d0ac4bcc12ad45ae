#!/usr/bin/env python3
"""The driver of scripts/test-compose: raises alerts through ingest's
published port and counts what reached mailpit's API and the console.

  compose_e2e.py send  INGEST_URL TOKEN FIRST COUNT [PREFIX [KEY_SALT]]
  compose_e2e.py mails MAILPIT_URL PREFIX EXPECTED TIMEOUT [MAX_RESENT]
  compose_e2e.py inbox CONSOLE_URL PASSWORD PREFIX EXPECTED TIMEOUT
  compose_e2e.py quiet < jsz.json   (nats-server's /jsz?consumers=true)

mails and inbox print expected, delivered, duplicates and lost. A mail may
arrive twice only where DESIGN's one duplicate window allows it: a notify
replica SIGKILLed after the SMTP server took the mail and before the ledger
recorded it. Such a resend carries the same Message-ID (mail clients show
it once); MAX_RESENT (default 0) bounds how many the run accepts, and a
second copy with another Message-ID always fails.
"""

import collections
import json
import os
import sys
import time
import urllib.error
import urllib.request


def post(url, body, headers):
    req = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                 headers={"Content-Type": "application/json", **headers})
    with urllib.request.urlopen(req, timeout=30) as r:
        return r.status, r.read()


def send(url, token, first, count, prefix="e2e", salt=""):
    """POSTs COUNT alerts in batches of E2E_BATCH (100), E2E_PAUSE seconds
    (0) apart; a batch refused with 503 or not answered is sent again with
    the same Idempotency-Key."""
    first, count = int(first), int(count)
    size, pause = int(os.environ.get("E2E_BATCH", 100)), float(os.environ.get("E2E_PAUSE", 0))
    for start in range(first, first + count, size):
        time.sleep(pause)
        batch = [{"name": f"{prefix}-{i:05d}", "severity": "high", "client_id": f"C.{i:016x}",
                  "timestamp": int(time.time())}
                 for i in range(start, min(start + size, first + count))]
        for attempt in range(60):
            try:
                status, answer = post(url + "/v1/alerts", batch,
                                 {"Authorization": f"Bearer {token}",
                                  "Idempotency-Key": f"{prefix}-{start}{salt}"})
                rejected = json.loads(answer)["rejected"]
                if rejected:
                    sys.exit(f"send: batch {start}: rejected {rejected[:3]}")
                break
            except urllib.error.HTTPError as e:
                if e.code != 503:  # only a 503 (NATS away) is worth a retry
                    sys.exit(f"send: batch {start}: {e.code} {e.read()[:500]!r}")
                print(f"send: retry batch {start}: {e}", file=sys.stderr)
            except OSError as e:  # refused or reset while a container restarts
                print(f"send: retry batch {start}: {e}", file=sys.stderr)
            time.sleep(1)
        else:
            sys.exit(f"send: batch {start} never accepted")
    print(f"sent {count}")


def mails(url, prefix, expected, timeout, max_resent=0):
    expected, deadline = int(expected), time.time() + float(timeout)
    while True:
        with urllib.request.urlopen(f"{url}/api/v1/messages?start=0&limit=10000", timeout=30) as r:
            page = json.load(r)
        ids = collections.defaultdict(list)  # alert name -> Message-IDs
        for m in page["messages"]:
            for word in m["Subject"].split():
                if word.startswith(prefix + "-"):
                    ids[word].append(m["MessageID"])
        if len(ids) >= expected or time.time() > deadline:
            break
        time.sleep(2)
    resent = {n: v for n, v in ids.items() if len(v) > 1 and len(set(v)) == 1}
    other = {n: v for n, v in ids.items() if len(set(v)) > 1}
    dups = sum(len(v) - 1 for v in ids.values())
    lost = expected - len(ids)
    print(f"mails: expected {expected}, delivered {len(ids)}, duplicates {dups} "
          f"({sum(len(v) - 1 for v in resent.values())} resent with the same Message-ID), lost {lost}")
    if lost < 0:
        print(f"mails: unexpected: {sorted(ids)[:10]}")
    for name, v in list(resent.items())[:5] + list(other.items())[:5]:
        print(f"mails: {name} arrived {len(v)} times: {sorted(set(v))}")
    ok = lost == 0 and not other and dups <= int(max_resent)
    sys.exit(0 if ok else 1)


def quiet():
    """0 when no consumer of any stream holds a message handed out and not
    yet acked (a killed replica's messages stay so until redelivered and
    acked). Messages never fetched (channels no replica serves) do not
    count."""
    busy = []
    for account in json.load(sys.stdin).get("account_details", []):
        for stream in account.get("stream_detail", []):
            for c in stream.get("consumer_detail", []):
                if c.get("num_ack_pending", 0):
                    busy.append(f"{stream['name']}/{c['name']}: unacked {c['num_ack_pending']}")
    print("; ".join(busy) or "quiet")
    sys.exit(1 if busy else 0)


def inbox(url, password, prefix, expected, timeout):
    expected, deadline = int(expected), time.time() + float(timeout)
    # The cookie is Secure (the console listens beyond loopback): a browser
    # would send it only over TLS; this script sends it back as it is.
    req = urllib.request.Request(url + "/v1/login", method="POST",
                                 data=json.dumps({"name": "alice", "password": password}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        cookie = r.headers["Set-Cookie"].split(";")[0]
    opener = urllib.request.build_opener()
    opener.addheaders = [("Cookie", cookie)]
    while True:
        names, before = collections.Counter(), None
        while True:
            q = f"?limit=200" + (f"&before={before}" if before else "")
            page = json.load(opener.open(url + "/v1/messages" + q, timeout=30))
            for m in page["messages"]:
                if m["name"].startswith(prefix + "-"):
                    names[m["name"]] += 1
            before = page.get("next_before")
            if not page["messages"] or not before:
                break
        if len(names) >= expected or time.time() > deadline:
            break
        time.sleep(2)
    dups = sum(c - 1 for c in names.values())
    print(f"inbox: expected {expected}, delivered {len(names)}, duplicates {dups}, lost {expected - len(names)}")
    sys.exit(0 if len(names) == expected and dups == 0 else 1)


if __name__ == "__main__":
    {"send": send, "mails": mails, "inbox": inbox, "quiet": quiet}[sys.argv[1]](*sys.argv[2:])
