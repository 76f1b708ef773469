#!/usr/bin/python3
"""tests/nixcache/faulty.py DIR ADDR PORT: a misbehaving binary cache server.

Serves the files under DIR over HTTP/1.1 with keep-alive (one thread per
connection), but the first path component of the URL picks a fault:

  /ok/<file>             serve DIR/<file> (404 when absent)
  /fail500-N/<file>      the first N requests for each distinct <file> get
                         "500 Internal Server Error", later ones are served
                         (N counts per file, in this server's lifetime)
  /fail503-N/<file>      the same with 503
  /hang/<file>           accept and read the request, then never answer
                         (the connection stays open until the client leaves)
  /close/<file>          close the connection without answering
  /redirect/<file>       302 to ftp://ADDR/<file> (another scheme)

Everything is logged to stderr as "METHOD PATH -> CODE". Started and stopped
by tests/nixcache/serve (serve faulty DIR ADDR PORT), which writes the pid.
"""
import http.server
import os
import sys
import threading
import time

ROOT = None
COUNTS = {}
LOCK = threading.Lock()


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s\n" % (fmt % args))
        sys.stderr.flush()

    def reply(self, code, body=b"", ctype="text/plain"):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def serve_file(self, rel):
        path = os.path.normpath(os.path.join(ROOT, rel))
        if not path.startswith(ROOT + os.sep) or not os.path.isfile(path):
            self.reply(404, b"404 not found\n")
            return
        with open(path, "rb") as f:
            body = f.read()
        self.reply(200, body, "application/octet-stream")

    def fault(self, mode, rel):
        if mode.startswith("fail500-") or mode.startswith("fail503-"):
            limit = int(mode[8:])
            with LOCK:
                seen = COUNTS.get((mode, rel), 0)
                COUNTS[(mode, rel)] = seen + 1
            if seen < limit:
                self.reply(int(mode[4:7]), b"injected failure\n")
                return
            self.serve_file(rel)
        elif mode == "hang":
            while True:
                time.sleep(3600)
        elif mode == "close":
            self.close_connection = True
            self.connection.close()
        elif mode == "redirect":
            self.send_response(302)
            self.send_header("Location", "ftp://127.0.0.1/" + rel)
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif mode == "ok":
            self.serve_file(rel)
        else:
            self.reply(400, b"unknown fault mode\n")

    def do_GET(self):
        parts = self.path.split("?", 1)[0].lstrip("/").split("/", 1)
        if len(parts) != 2:
            self.reply(404, b"404 not found\n")
            return
        self.fault(parts[0], parts[1])

    do_HEAD = do_GET


def main():
    global ROOT
    if len(sys.argv) != 4:
        sys.stderr.write("usage: faulty.py DIR ADDR PORT\n")
        sys.exit(2)
    ROOT = os.path.realpath(sys.argv[1])
    srv = http.server.ThreadingHTTPServer((sys.argv[2], int(sys.argv[3])),
                                          Handler)
    srv.daemon_threads = True
    srv.serve_forever()


if __name__ == "__main__":
    main()
