#!/usr/bin/env python3
"""strackt's sample app, for the deploy tests and benchmark.

Serves HTTP on the socket systemd passes it (LISTEN_FDS: fd 3), reads its database (libpq's
PG* variables, which strackt sets) on every request, and on SIGTERM stops accepting, finishes
the requests it holds, and exits: what an app needs for deploys that lose no request.

  python3 app.py           serve
  python3 app.py --check   validate: the release can start and reach its database

The package tests give it a library, the module `strackt_demo_lib` (package
strackt-demo-lib): GET /lib answers its VERSION when it is installed, and with DEMO_LIB=required
in the app's settings the app cannot start without it.
"""
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import psycopg2

HERE = os.path.dirname(os.path.abspath(__file__))
# A release without its VERSION file cannot start: the tests' "broken release".
VERSION = open(os.path.join(HERE, "VERSION")).read().strip()

# Only a missing module is optional: one that fails to import stops the app, as a broken
# library upgrade would.
if os.environ.get("DEMO_LIB") == "required":
    import strackt_demo_lib
else:
    try:
        import strackt_demo_lib
    except ImportError:
        strackt_demo_lib = None


def query(sql):
    conn = psycopg2.connect("")
    try:
        with conn.cursor() as cur:
            cur.execute(sql)
            return cur.fetchall()
    finally:
        conn.close()


def fails_health_on(port):
    """Test hook: a FAIL_HEALTH_ON_PORT file makes /health fail on that port only, so the
    release passes validation (spare port) and fails after the switch."""
    try:
        return open(os.path.join(HERE, "FAIL_HEALTH_ON_PORT")).read().strip() == str(port)
    except FileNotFoundError:
        return False


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        try:
            if self.path == "/health":
                if fails_health_on(self.server.server_address[1]):
                    raise RuntimeError("unhealthy on this port")
                query("SELECT 1")
                body = f"ok {VERSION}\n"
            elif self.path == "/":
                rows = query("SELECT name FROM items ORDER BY id")
                body = f"version {VERSION}; items: {', '.join(r[0] for r in rows)}\n"
            elif self.path == "/lib" and strackt_demo_lib is not None:
                body = f"lib {strackt_demo_lib.VERSION}\n"
            elif self.path == "/slow":
                time.sleep(3)
                body = f"slow {VERSION}\n"
            else:
                self.send_error(404)
                return
            code = 200
        except Exception as e:  # the answer says what broke
            code, body = 500, f"error: {e}\n"
        data = body.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args):
        pass


class Server(ThreadingHTTPServer):
    # Join request threads on close: in-flight requests finish before the process exits.
    daemon_threads = False
    block_on_close = True


def main():
    if "--check" in sys.argv:
        query("SELECT 1")
        print(f"version {VERSION} reaches its database")
        return
    if os.environ.get("LISTEN_FDS") != "1":
        sys.exit("app.py serves on the socket systemd passes it (LISTEN_FDS=1)")
    sock = socket.socket(fileno=3)
    server = Server(sock.getsockname(), Handler, bind_and_activate=False)
    server.socket.close()
    server.socket = sock
    server.server_address = sock.getsockname()
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    server.serve_forever(poll_interval=0.1)
    server.server_close()


if __name__ == "__main__":
    main()
