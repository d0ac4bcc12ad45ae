#!/usr/bin/env python3
"""A stand-in for the mailpit image where no registry is reachable.

SMTP on port 1025 (any login accepted, also without TLS, as mailpit with
MP_SMTP_AUTH_ACCEPT_ANY and MP_SMTP_AUTH_ALLOW_INSECURE) through aiosmtpd,
a real SMTP server; and the part of mailpit's HTTP API on port 8025 that
talon's compose test reads:

  GET    /api/v1/messages?start=N&limit=N   newest first: total, count, start,
                                           messages [{ID, MessageID, Subject,
                                           From, To, Created, Size}]
  DELETE /api/v1/messages                  delete every message
  GET    /livez, /readyz                   200

Messages are kept in memory, as mailpit keeps them by default.
"""

import email
import email.policy
import itertools
import json
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult

LOCK = threading.Lock()
MESSAGES = []  # oldest first
IDS = itertools.count(1)


def address(value):
    name, addr = email.utils.parseaddr(value or "")
    return {"Name": name, "Address": addr}


class Store:
    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        msg = email.message_from_bytes(raw, policy=email.policy.default)
        summary = {
            "ID": str(next(IDS)),
            "MessageID": (msg.get("Message-ID") or "").strip("<>"),
            "Subject": str(msg.get("Subject") or ""),
            "From": address(msg.get("From")),
            "To": [address(a) for a in msg.get_all("To") or []],
            "Created": datetime.now(timezone.utc).isoformat(),
            "Size": len(raw),
        }
        with LOCK:
            MESSAGES.append(summary)
        return "250 OK"


def accept_any(server, session, envelope, mechanism, auth_data):
    return AuthResult(success=True)


class Api(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def reply(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urlparse(self.path)
        if url.path in ("/livez", "/readyz"):
            return self.reply(200, "ok")
        if url.path != "/api/v1/messages":
            return self.reply(404, {"error": "not found"})
        query = parse_qs(url.query)
        try:
            start = max(0, int(query.get("start", ["0"])[0]))
            limit = max(1, min(int(query.get("limit", ["50"])[0]), 10000))
        except ValueError:
            return self.reply(400, {"error": "bad start or limit"})
        with LOCK:
            newest_first = MESSAGES[::-1]
        page = newest_first[start : start + limit]
        total = len(newest_first)
        self.reply(200, {"total": total, "unread": total, "count": len(page),
                         "messages_count": total, "start": start, "messages": page})

    def do_DELETE(self):
        if urlparse(self.path).path != "/api/v1/messages":
            return self.reply(404, {"error": "not found"})
        with LOCK:
            MESSAGES.clear()
        self.reply(200, "ok")


def main():
    smtp = Controller(Store(), hostname="0.0.0.0", port=1025,
                      authenticator=accept_any, auth_require_tls=False,
                      data_size_limit=0)
    smtp.start()
    print("mailpit stand-in: SMTP on 1025, API on 8025", flush=True)
    ThreadingHTTPServer(("0.0.0.0", 8025), Api).serve_forever()


if __name__ == "__main__":
    main()
