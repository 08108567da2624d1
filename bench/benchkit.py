"""What the Python benchmarks share: starting an example app on a free
loopback port, and reading a process's resident memory.

    from benchkit import start_server, rss_kib
    proc, base = start_server("build/examples/conformance")
"""

import re
import subprocess
import sys
import threading
import time


def start_server(binary, args=(), timeout=5.0):
    """Starts binary on 127.0.0.1 with --port 0 and returns (proc, base URL)
    once its log says where it listens; exits the benchmark if it does not
    within timeout. Its stderr is drained in the background."""
    proc = subprocess.Popen([binary, "--host", "127.0.0.1", "--port", "0", *args],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL)
    port = None
    t0 = time.monotonic()
    while port is None and time.monotonic() - t0 < timeout:
        m = re.search(rb"listening on http://[^ ]*:([0-9]+) ", proc.stderr.readline())
        if m:
            port = int(m.group(1))
    if port is None:
        proc.kill()
        sys.exit("%s did not start" % binary)
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()
    return proc, "http://127.0.0.1:%d" % port


def rss_kib(pid):
    """VmRSS of pid in KiB (0 if it is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0
