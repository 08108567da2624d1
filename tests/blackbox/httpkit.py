"""Raw-socket HTTP/1.1 client helpers for the black-box conformance suite.

Everything here talks to the server over real TCP sockets on 127.0.0.1, with a
deadline on every read, so a misbehaving server makes a test fail instead of
hanging it. The response reader is deliberately strict about what the server
sends (CRLF line endings, well-formed status line and chunked framing).
"""

import errno
import json
import re
import socket
import ssl
import time

import tlskit

DEFAULT_TIMEOUT = 5.0
MAX_HEAD = 1 << 20

GOOD_REQUEST = b"GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"

IMF_FIXDATE = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), [0-9]{2} "
    r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [0-9]{4} "
    r"[0-9]{2}:[0-9]{2}:[0-9]{2} GMT$"
)
STATUS_LINE = re.compile(rb"^(HTTP/[0-9]\.[0-9]) ([0-9]{3})(?: (.*))?$")


class ReadTimeout(AssertionError):
    """The server did not send the expected bytes before the deadline."""


class PeerClosed(AssertionError):
    """The server closed the connection while more bytes were expected."""


class BadResponse(AssertionError):
    """The server sent something that is not a well-formed HTTP/1.1 response."""


def _short(data, n=300):
    data = bytes(data)
    if len(data) > n:
        return repr(data[:n]) + "...(%d bytes)" % len(data)
    return repr(data)


class Response:
    def __init__(self):
        self.version = None
        self.status = None
        self.reason = None
        self.status_line = b""
        self.headers = []  # [(name, value)] as str, in order received
        self.body = b""
        self.trailers = []
        self.framing = None  # 'none' | 'length' | 'chunked' | 'close'
        self.raw_head = b""
        self.t_start = None  # monotonic time the first byte of the response was seen
        self.t_head = None  # ... its head was complete
        self.t_end = None  # ... it was complete

    def header_list(self, name):
        name = name.lower()
        return [v for (k, v) in self.headers if k.lower() == name]

    def header(self, name):
        vals = self.header_list(name)
        if not vals:
            return None
        return ", ".join(vals)

    def has(self, name):
        return bool(self.header_list(name))

    def tokens(self, name):
        """Comma-separated list header as a set of lower-case tokens."""
        out = set()
        for v in self.header_list(name):
            for t in v.split(","):
                t = t.strip().lower()
                if t:
                    out.add(t)
        return out

    @property
    def closes(self):
        return "close" in self.tokens("connection")

    def json(self):
        try:
            return json.loads(self.body.decode("utf-8"))
        except Exception as e:  # noqa: BLE001
            raise AssertionError("response body is not JSON (%s): %s" % (e, _short(self.body)))

    def text(self):
        return self.body.decode("utf-8")

    def allow_set(self):
        vals = self.header_list("allow")
        assert len(vals) == 1, "expected exactly one Allow header, got %r" % (vals,)
        items = [m.strip() for m in vals[0].split(",")]
        assert all(items), "empty element in Allow %r" % vals[0]
        assert len(items) == len(set(items)), "method repeated in Allow %r" % vals[0]
        return set(items)

    def __repr__(self):
        return "<Response %s %r headers=%r body=%s>" % (
            self.status,
            self.reason,
            self.headers,
            _short(self.body, 200),
        )


class Client:
    """One TCP connection with a receive buffer."""

    def __init__(self, host, port, timeout=DEFAULT_TIMEOUT, connect=True):
        self.host = host
        self.port = port
        self.timeout = timeout
        self.buf = bytearray()
        self.eof = False
        self.eof_at = None
        self.reset = False
        self.last_response_end = None
        self.sock = None
        if connect:
            self.sock = socket.create_connection((host, port), timeout=timeout)
            self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if tlskit.ENABLED:
                self.sock = tlskit.wrap(self.sock)

    # -- context manager -------------------------------------------------
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
            self.sock = None

    # -- sending ---------------------------------------------------------
    def send(self, data, ignore_errors=False):
        """sendall; with ignore_errors, a reset/broken pipe is swallowed (returns False)."""
        if isinstance(data, str):
            data = data.encode("latin-1")
        self.sock.settimeout(max(self.timeout, 10.0))
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, socket.timeout, ssl.SSLEOFError):
            if not ignore_errors:
                raise
            return False

    # -- low-level reading -----------------------------------------------
    def _fill(self, deadline, what="data"):
        if self.eof:
            raise PeerClosed(
                "server closed the connection while waiting for %s; buffered: %s"
                % (what, _short(self.buf))
            )
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise ReadTimeout("timed out waiting for %s; buffered: %s" % (what, _short(self.buf)))
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(262144)
        except socket.timeout:
            raise ReadTimeout(
                "timed out waiting for %s; buffered: %s" % (what, _short(self.buf))
            ) from None
        except ConnectionResetError:
            self.reset = True
            data = b""
        if not data:
            self.eof = True
            self.eof_at = time.monotonic()
            raise PeerClosed(
                "server closed the connection while waiting for %s; buffered: %s"
                % (what, _short(self.buf))
            )
        self.buf += data

    def _take(self, n):
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_exact(self, n, deadline, what="body bytes"):
        while len(self.buf) < n:
            self._fill(deadline, what)
        return self._take(n)

    def read_crlf_line(self, deadline, what="line", limit=65536):
        """A line ending in CRLF (returned without it). A bare LF is an error."""
        while True:
            i = self.buf.find(b"\n")
            if i >= 0:
                if i == 0 or self.buf[i - 1] != 0x0D:
                    raise BadResponse("bare LF in %s: %s" % (what, _short(self.buf[: i + 1])))
                line = self._take(i + 1)[:-2]
                return line
            if len(self.buf) > limit:
                raise BadResponse("%s too long: %s" % (what, _short(self.buf)))
            self._fill(deadline, what)

    def read_some(self, timeout):
        """Whatever arrives within timeout (b'' on EOF). Raises ReadTimeout if nothing."""
        if self.buf:
            return self._take(len(self.buf))
        self._fill(time.monotonic() + timeout, "any data")
        return self._take(len(self.buf))

    # -- responses ---------------------------------------------------------
    def read_head(self, deadline):
        resp = Response()
        # Wait for the first byte to timestamp the start.
        while not self.buf:
            self._fill(deadline, "a response")
        resp.t_start = time.monotonic()
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                head = self._take(i + 4)
                break
            if len(self.buf) > MAX_HEAD:
                raise BadResponse("response head too long: %s" % _short(self.buf))
            self._fill(deadline, "the end of a response head")
        resp.t_head = time.monotonic()
        resp.raw_head = head
        lines = head[:-4].split(b"\r\n")
        for ln in lines:
            if b"\n" in ln or b"\r" in ln:
                raise BadResponse("bare CR/LF in response head: %s" % _short(head))
        m = STATUS_LINE.match(lines[0])
        if not m:
            raise BadResponse("malformed status line: %s (head %s)" % (_short(lines[0]), _short(head)))
        resp.status_line = lines[0]
        resp.version = m.group(1).decode()
        resp.status = int(m.group(2))
        resp.reason = (m.group(3) or b"").decode("latin-1")
        for ln in lines[1:]:
            if ln[:1] in (b" ", b"\t"):
                raise BadResponse("obs-fold in response head: %s" % _short(head))
            k, sep, v = ln.partition(b":")
            if not sep or not k or k != k.strip():
                raise BadResponse("malformed response header line %s" % _short(ln))
            resp.headers.append((k.decode("latin-1"), v.strip(b" \t").decode("latin-1")))
        return resp

    def read_response(self, method="GET", timeout=None, on_data=None):
        """Read the next response (an interim 1xx response is returned as is).

        on_data(t, bytes) is called for each piece of decoded body as it arrives.
        """
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        resp = self.read_head(deadline)
        body = bytearray()

        def got(piece):
            body.extend(piece)
            if on_data is not None and piece:
                on_data(time.monotonic(), bytes(piece))

        te = resp.header_list("transfer-encoding")
        cl = resp.header_list("content-length")
        if 100 <= resp.status < 200 or resp.status in (204, 304) or method == "HEAD":
            resp.framing = "none"
        elif te:
            codings = [t.strip().lower() for t in ", ".join(te).split(",") if t.strip()]
            if codings[-1:] != ["chunked"]:
                raise BadResponse("response Transfer-Encoding without final chunked: %r" % te)
            resp.framing = "chunked"
            if cl:
                raise BadResponse("response with both Transfer-Encoding and Content-Length")
            self._read_chunked(resp, deadline, got)
        elif cl:
            vals = {v.strip() for c in cl for v in c.split(",")}
            if len(vals) != 1 or not next(iter(vals)).isdigit():
                raise BadResponse("bad response Content-Length %r" % cl)
            n = int(next(iter(vals)))
            resp.framing = "length"
            while n > 0:
                while not self.buf:
                    self._fill(deadline, "%d more body bytes (Content-Length %s)" % (n, cl))
                piece = self._take(min(n, len(self.buf)))
                n -= len(piece)
                got(piece)
        else:
            resp.framing = "close"
            while True:
                if self.buf:
                    got(self._take(len(self.buf)))
                try:
                    self._fill(deadline, "the end of a close-delimited body")
                except PeerClosed:
                    break
        resp.body = bytes(body)
        resp.t_end = time.monotonic()
        self.last_response_end = resp.t_end
        return resp

    def _read_chunked(self, resp, deadline, got):
        while True:
            line = self.read_crlf_line(deadline, "chunk-size line")
            size_s = line.split(b";", 1)[0].strip()
            if not re.fullmatch(rb"[0-9A-Fa-f]{1,16}", size_s):
                raise BadResponse("bad chunk-size line from server: %s" % _short(line))
            size = int(size_s, 16)
            if size == 0:
                break
            left = size
            while left > 0:
                while not self.buf:
                    self._fill(deadline, "chunk data")
                piece = self._take(min(left, len(self.buf)))
                left -= len(piece)
                got(piece)
            crlf = self.read_exact(2, deadline, "CRLF after chunk data")
            if crlf != b"\r\n":
                raise BadResponse("chunk data not followed by CRLF: %r" % crlf)
        while True:
            line = self.read_crlf_line(deadline, "trailer section")
            if line == b"":
                break
            resp.trailers.append(line)

    def read_final(self, method="GET", timeout=None, on_data=None):
        """Next final (non-1xx) response; interim responses are skipped and kept in .interim."""
        interim = []
        deadline = time.monotonic() + (timeout if timeout is not None else self.timeout)
        while True:
            r = self.read_response(method, timeout=max(0.001, deadline - time.monotonic()), on_data=on_data)
            if 100 <= r.status < 200:
                interim.append(r)
                continue
            r.interim = interim
            return r

    def request(self, raw, method=None, timeout=None):
        """Send raw bytes and read one final response."""
        if isinstance(raw, str):
            raw = raw.encode("latin-1")
        if method is None:
            method = raw.lstrip(b"\r\n").split(b" ", 1)[0].decode("latin-1")
        self.send(raw)
        return self.read_final(method, timeout=timeout)

    # -- connection state ----------------------------------------------------
    def wait_closed(self, timeout):
        """Wait for EOF (or reset). Returns (closed, bytes_received_before_eof)."""
        got = bytearray(self.buf)
        self.buf.clear()
        if self.eof:
            return True, bytes(got)
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False, bytes(got)
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return False, bytes(got)
            except ConnectionResetError:
                self.reset = True
                data = b""
            except OSError as e:
                if e.errno in (errno.ECONNRESET, errno.EPIPE):
                    self.reset = True
                    data = b""
                else:
                    raise
            if not data:
                self.eof = True
                self.eof_at = time.monotonic()
                return True, bytes(got)
            got += data

    def assert_closed(self, within=1.0, since=None, what=""):
        """Assert the server sends nothing more and closes (FIN, or reset) within `within` s.

        `since` defaults to the end of the last response read on this connection.
        """
        if since is None:
            since = self.last_response_end or time.monotonic()
        remaining = since + within - time.monotonic()
        closed, extra = self.wait_closed(max(remaining, 0.0) + 0.05)
        assert extra == b"", "server sent data after %s: %s" % (what or "the response", _short(extra))
        assert closed, "server did not close the connection within %.2f s %s" % (within, what)
        assert self.eof_at - since <= within + 0.25, (
            "server closed the connection only %.2f s after %s (limit %.2f s)"
            % (self.eof_at - since, what or "the response", within)
        )

    def assert_open(self, quiet_for=0.3):
        """Assert nothing arrives and the connection stays open for quiet_for seconds."""
        closed, extra = self.wait_closed(quiet_for)
        assert extra == b"", "unexpected data from server: %s" % _short(extra)
        assert not closed, "server closed the connection unexpectedly"


# -- request building --------------------------------------------------------


def req(method="GET", target="/", headers=(), body=b"", version="HTTP/1.1", host="localhost",
        content_length="auto", eol=b"\r\n"):
    """Build raw request bytes.

    headers: iterable of (name, value) pairs or raw str/bytes field lines.
    content_length: 'auto' adds one when body is non-empty; None never; or an explicit value.
    """
    def b(x):
        return x if isinstance(x, bytes) else x.encode("latin-1")

    out = [b(method) + b" " + b(target) + b" " + b(version)]
    if host is not None:
        out.append(b"Host: " + b(host))
    for h in headers:
        if isinstance(h, (bytes, str)):
            out.append(b(h))
        else:
            out.append(b(h[0]) + b": " + b(str(h[1])))
    if isinstance(body, str):
        body = body.encode("utf-8")
    if content_length == "auto":
        if body:
            out.append(b"Content-Length: %d" % len(body))
    elif content_length is not None:
        out.append(b"Content-Length: " + b(str(content_length)))
    return eol.join(out) + eol + eol + body


def chunked(*pieces, trailers=b""):
    """Encode body pieces with chunked framing."""
    out = bytearray()
    for p in pieces:
        if isinstance(p, str):
            p = p.encode()
        if not p:
            continue
        out += b"%x\r\n" % len(p) + p + b"\r\n"
    out += b"0\r\n" + trailers + b"\r\n"
    return bytes(out)


def connect(server, timeout=DEFAULT_TIMEOUT):
    host, port = server
    return Client(host, port, timeout=timeout)


def roundtrip(server, raw, method=None, timeout=DEFAULT_TIMEOUT):
    """One request on a fresh connection; returns the final response."""
    with connect(server, timeout) as c:
        return c.request(raw, method=method, timeout=timeout)


def assert_rejected(server, raw, status, follow=GOOD_REQUEST, send_follow=True, timeout=DEFAULT_TIMEOUT):
    """Send a request the HTTP layer must reject with `status`, followed by a valid request.

    Asserts the status, `Connection: close`, and that the server FINs within 1 s
    without answering anything sent after the rejected request.
    """
    with connect(server, timeout) as c:
        c.send(raw + (follow if send_follow else b""), ignore_errors=True)
        r = c.read_response(timeout=timeout)
        assert r.status == status, "expected %d for %s, got %r" % (status, _short(raw), r)
        assert r.closes, "rejection %d lacks Connection: close: %r" % (status, r)
        c.assert_closed(within=1.0, what="the %d rejection" % status)
        return r


def check_date(resp):
    dates = resp.header_list("date")
    assert len(dates) == 1, "expected one Date header, got %r in %r" % (dates, resp)
    assert IMF_FIXDATE.match(dates[0]), "Date is not an IMF-fixdate: %r" % dates[0]
    import email.utils

    ts = email.utils.parsedate_to_datetime(dates[0]).timestamp()
    assert abs(ts - time.time()) < 120, "Date %r is far from now" % dates[0]


def check_common(resp, method="GET", streamed=False):
    """The §2 invariants: HTTP/1.1 status line, Date, Content-Length on non-streamed responses."""
    assert resp.version == "HTTP/1.1", "status line %r does not use HTTP/1.1" % resp.status_line
    check_date(resp)
    cl = resp.header_list("content-length")
    if resp.status == 204 or 100 <= resp.status < 200:
        assert not cl, "%d response with Content-Length %r" % (resp.status, cl)
    elif streamed:
        assert not cl, "streamed response with Content-Length %r" % (cl,)
        assert resp.framing in ("chunked", "close", "none"), resp.framing
    elif resp.status != 304:
        assert len(cl) == 1, "non-streamed response without exactly one Content-Length: %r" % (resp,)
        if method != "HEAD":
            assert int(cl[0]) == len(resp.body), "Content-Length %s but body of %d bytes" % (cl[0], len(resp.body))
