"""Websockets under abuse (the abuse issue, item 1): a flooding client can
neither hold its loop nor grow the server's memory, and the other members
keep receiving. Reduced versions of bench/abuse/abuse.py's ws-echo-flood and
ws-chat-flood, on private servers with one loop thread (so a held loop shows
in the latency of plain requests on it).

The flooding client runs in its own process (this file, run as a script), so
the interpreter lock of this one cannot blur what the probes measure."""

import base64
import os
import socket
import struct
import subprocess
import sys
import threading
import time

FLOOD_SECS = 2.0
# Wide margins: a held loop showed as seconds here, a fair one as a few ms.
MAX_PLAIN_WAIT = 0.5
MAX_RSS_GROWTH_KIB = 64 * 1024


# --- client bits ----------------------------------------------------------------------------


def ws_connect(addr, path):
    s = socket.create_connection(addr, timeout=5)
    key = base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, key)).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        assert chunk, "closed during the handshake"
        buf += chunk
    assert b" 101 " in buf.split(b"\r\n", 1)[0], buf[:80]
    return s, buf.partition(b"\r\n\r\n")[2]


def ws_frame(payload, opcode=2):
    # a zero masking key is legal and leaves the payload as it is
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
    return head + b"\0\0\0\0" + payload


class Reader(threading.Thread):
    """Reads a websocket as fast as it comes; counts bytes and finds tags."""

    def __init__(self, sock, pending=b"", tags=()):
        super().__init__(daemon=True)
        self.sock, self.bytes, self.closed = sock, len(pending), False
        self.tail, self.seen, self.tags = pending[-64:], set(), list(tags)
        self.halt = threading.Event()
        self.sock.settimeout(0.1)

    def run(self):
        while not self.halt.is_set():
            try:
                chunk = self.sock.recv(262144)
            except socket.timeout:
                continue
            except OSError:
                self.closed = True
                return
            if not chunk:
                self.closed = True
                return
            self.bytes += len(chunk)
            if self.tags:
                window = self.tail + chunk
                for t in self.tags:
                    if t not in self.seen and t in window:
                        self.seen.add(t)
                self.tail = window[-64:]

    def stop(self):
        self.halt.set()
        self.join()


class Prober(threading.Thread):
    """Plain keep-alive GETs every 10 ms; the longest wait (a failure counts
    as the time it took)."""

    def __init__(self, addr):
        super().__init__(daemon=True)
        self.addr, self.worst, self.n, self.failures = addr, 0.0, 0, 0
        self.halt = threading.Event()

    def run(self):
        sock = None
        while not self.halt.is_set():
            t0 = time.monotonic()
            try:
                if sock is None:
                    sock = socket.create_connection(self.addr, timeout=5)
                sock.sendall(b"GET /hello/probe HTTP/1.1\r\nHost: x\r\n\r\n")
                buf = b""
                while b"\r\n\r\n" not in buf:
                    chunk = sock.recv(65536)
                    if not chunk:
                        raise ConnectionError("closed")
                    buf += chunk
                head, _, body = buf.partition(b"\r\n\r\n")
                length = int([l.split(b":")[1] for l in head.split(b"\r\n")
                              if l.lower().startswith(b"content-length")][0])
                while len(body) < length:
                    body += sock.recv(65536)
                self.n += 1
            except (OSError, ValueError, IndexError):
                self.failures += 1
                if sock:
                    sock.close()
                sock = None
            self.worst = max(self.worst, time.monotonic() - t0)
            self.halt.wait(0.01)
        if sock:
            sock.close()

    def stop(self):
        self.halt.set()
        self.join()


class RssPeak(threading.Thread):
    def __init__(self, srv):
        super().__init__(daemon=True)
        self.srv, self.peak, self.halt = srv, srv.rss_kib(), threading.Event()

    def run(self):
        while not self.halt.wait(0.02):
            self.peak = max(self.peak, self.srv.rss_kib())

    def stop(self):
        self.halt.set()
        self.join()
        return self.peak


def start_flood(addr, path, read):
    """The flooding client, in its own process: 1 KiB frames, 64 per send,
    for FLOOD_SECS; reads what it gets only if `read`."""
    return subprocess.Popen([sys.executable, os.path.abspath(__file__), "flood", addr[0], str(addr[1]),
                             path, "read" if read else "noread", str(FLOOD_SECS)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def flood_main(host, port, path, mode, secs):
    s, pend = ws_connect((host, int(port)), path)
    got = [len(pend)]
    if mode == "read":
        def drain():
            try:
                while True:
                    chunk = s.recv(262144)
                    if not chunk:
                        return
                    got[0] += len(chunk)
            except OSError:
                pass
        threading.Thread(target=drain, daemon=True).start()
    s.settimeout(0.2)
    batch = ws_frame(b"f" * 1024) * 64
    sent, t0 = 0, time.monotonic()
    while time.monotonic() - t0 < float(secs):
        try:
            sent += s.send(batch)
        except socket.timeout:
            continue
        except OSError:
            break
    print(sent, got[0], flush=True)
    s.close()


def finish(proc):
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err.decode(errors="replace")
    sent, got = map(int, out.split())
    return sent, got


# --- the tests -------------------------------------------------------------------------------


def test_echo_flood_does_not_hold_the_loop(spawn_server):
    # An echo client that sends as fast as it can and reads its echoes never
    # makes the server wait for input or for room: before the slice budget
    # its coroutine kept the loop for seconds.
    srv = spawn_server(["--threads", "1"])
    prober = Prober(srv.addr)
    prober.start()
    time.sleep(0.1)
    flood = start_flood(srv.addr, "/ws/echo", read=True)
    sent, echoed = finish(flood)
    prober.stop()
    assert sent > 1 << 20 and echoed > 1 << 20, (sent, echoed)
    assert prober.n > 20, "plain requests barely ran during the flood: %d" % prober.n
    assert prober.worst < MAX_PLAIN_WAIT, \
        "a plain request on the flooded loop waited %.0f ms" % (prober.worst * 1e3)


def test_chat_flooder_cannot_starve_members_or_grow_memory(spawn_server):
    # A member floods 1 KiB frames and never reads. The server stops reading
    # it while its broadcasts are queued beyond a bound; the other members
    # keep receiving (the tagged messages of a third member arrive during the
    # flood), plain requests are served, and memory stays bounded.
    srv = spawn_server(["--threads", "1"])
    base = srv.rss_kib()
    tags = [b"tag-%04d-%s" % (i, os.urandom(4).hex().encode()) for i in range(8)]
    rs, rpend = ws_connect(srv.addr, "/ws/chat")
    reader = Reader(rs, rpend, tags)
    reader.start()
    ts, tpend = ws_connect(srv.addr, "/ws/chat")
    talker_drain = Reader(ts, tpend)  # the talker reads too: it is well-behaved
    talker_drain.start()
    rss = RssPeak(srv)
    rss.start()
    prober = Prober(srv.addr)
    prober.start()
    flood = start_flood(srv.addr, "/ws/chat", read=False)
    time.sleep(0.3)  # the flood is under way
    for t in tags:
        ts.sendall(ws_frame(t, opcode=1))
        time.sleep(FLOOD_SECS / 2 / len(tags))
    sent, _ = finish(flood)
    deadline = time.monotonic() + 2
    while len(reader.seen) < len(tags) and time.monotonic() < deadline:
        time.sleep(0.05)
    prober.stop()
    peak = rss.stop()
    reader.stop()
    talker_drain.stop()
    rs.close()
    ts.close()
    assert sent > 1 << 20, sent
    assert not reader.closed, "the member that reads was dropped"
    assert reader.bytes > 64 << 10, "the member that reads got %d bytes" % reader.bytes
    assert len(reader.seen) == len(tags), \
        "%d of %d messages of a well-behaved member reached the reader" % (len(reader.seen), len(tags))
    assert peak - base < MAX_RSS_GROWTH_KIB, "RSS grew by %d KiB during the flood" % (peak - base)
    assert prober.worst < MAX_PLAIN_WAIT, \
        "a plain request on the flooded loop waited %.0f ms" % (prober.worst * 1e3)


def test_chat_flooder_is_not_read_while_its_broadcasts_are_queued(spawn_server):
    # Backpressure to the sender: a member that floods and never reads gets
    # through only about what the bounds allow (its broadcasts queued at the
    # members, the socket buffers); the rest of what it sends stays in TCP.
    # Before, the server read all of it (hundreds of MiB in 2 s).
    srv = spawn_server(["--threads", "1"])
    rs, rpend = ws_connect(srv.addr, "/ws/chat")
    reader = Reader(rs, rpend)
    reader.start()
    flood = start_flood(srv.addr, "/ws/chat", read=False)
    sent, _ = finish(flood)
    reader.stop()
    rs.close()
    assert not reader.closed
    # 1 MiB of queued broadcasts, both members' socket buffers and the
    # flooder's own: far below what an unthrottled read takes in 2 s
    assert sent < 48 << 20, "the server read %.1f MiB from a member that never reads" % (sent / 2**20)


class SlowReader(Reader):
    """Reads at most `rate` bytes a second."""

    def __init__(self, sock, pending, rate):
        super().__init__(sock, pending)
        self.rate = rate

    def run(self):
        t0 = time.monotonic()
        while not self.halt.is_set():
            if self.bytes > self.rate * (time.monotonic() - t0):
                time.sleep(0.01)
                continue
            try:
                chunk = self.sock.recv(16384)
            except socket.timeout:
                continue
            except OSError:
                self.closed = True
                return
            if not chunk:
                self.closed = True
                return
            self.bytes += len(chunk)


def test_chat_slow_reader_paces_the_sender_instead_of_being_dropped(spawn_server):
    # A member that reads, but slower than another member floods (and reads
    # its own echoes at full speed): the flooder is throttled to the pace of
    # the slow reader, which stays in the room. Before, the slow reader's
    # queue passed 4 MiB within a second and it was dropped.
    srv = spawn_server(["--threads", "1"])
    ss, spend = ws_connect(srv.addr, "/ws/chat")
    ss.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    slow = SlowReader(ss, spend, rate=1 << 20)
    slow.start()
    flood = start_flood(srv.addr, "/ws/chat", read=True)
    sent, echoed = finish(flood)
    time.sleep(0.5)
    slow.stop()
    ss.close()
    assert not slow.closed, "the member that reads slowly was dropped (got %d bytes)" % slow.bytes
    assert slow.bytes > 512 << 10, slow.bytes
    assert sent > 512 << 10, sent


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "flood":
    flood_main(*sys.argv[2:])
