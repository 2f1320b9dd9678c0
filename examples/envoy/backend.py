"""The seed's back end for the host examples: GET /http/v1/test/hello answers
"Hello world from IFlow"; anything else is 404.

Usage: python3 backend.py [HOST:PORT]   (default 127.0.0.1:9000)
"""

import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HELLO = b"Hello world from IFlow"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        found = self.path.split("?", 1)[0] == "/http/v1/test/hello"
        body = HELLO if found else b"Not found"
        self.send_response(200 if found else 404)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def main():
    host, port = (sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:9000").rsplit(":", 1)
    ThreadingHTTPServer((host, int(port)), Handler).serve_forever()


if __name__ == "__main__":
    main()
