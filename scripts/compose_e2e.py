#!/usr/bin/env python3
"""The driver of scripts/test-compose: raises alerts through ingest's
published port and counts what reached mailpit's API and the console.

  compose_e2e.py send  INGEST_URL TOKEN FIRST COUNT [PREFIX [KEY_SALT]]
  compose_e2e.py mails MAILPIT_URL PREFIX EXPECTED TIMEOUT   -> sent/delivered/duplicates/lost
  compose_e2e.py inbox CONSOLE_URL PASSWORD PREFIX EXPECTED TIMEOUT
"""

import collections
import json
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
    first, count = int(first), int(count)
    for start in range(first, first + count, 100):
        batch = [{"name": f"{prefix}-{i:05d}", "severity": "high", "client_id": f"C.{i:016x}",
                  "timestamp": int(time.time())}
                 for i in range(start, min(start + 100, first + count))]
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


def mails(url, prefix, expected, timeout):
    expected, deadline = int(expected), time.time() + float(timeout)
    while True:
        with urllib.request.urlopen(f"{url}/api/v1/messages?start=0&limit=10000", timeout=30) as r:
            page = json.load(r)
        counts = collections.Counter()
        for m in page["messages"]:
            for word in m["Subject"].split():
                if word.startswith(prefix + "-"):
                    counts[word] += 1
        if len(counts) >= expected or time.time() > deadline:
            break
        time.sleep(2)
    dups = sum(c - 1 for c in counts.values())
    lost = expected - len(counts)
    print(f"mails: expected {expected}, delivered {len(counts)}, duplicates {dups}, lost {lost}")
    if lost < 0:
        print(f"mails: unexpected: {sorted(counts)[:10]}")
    sys.exit(0 if lost == 0 and dups == 0 else 1)


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
    {"send": send, "mails": mails, "inbox": inbox}[sys.argv[1]](*sys.argv[2:])
