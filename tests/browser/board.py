"""Two headless Chromium windows against examples/demo (see run.sh).

Alice and Bob register in their own browser (separate cookie jars); both
open the board; a task Alice adds appears on Bob's board without a reload
(websocket) and in his activity feed (SSE); Bob moves it and Alice sees it
move; Alice logs out and in again; a form posted without its CSRF token is
refused with a 400. Screenshots of each step go to --out.
"""
import argparse
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

WAIT = 10  # seconds for anything the page should do by itself


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_demo(binary, appdir, workdir):
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    # stdout says where it listens (one line); stderr, the log, goes to a file.
    p = subprocess.Popen([binary, "--host", "127.0.0.1", "--port", "0",
                          "--db", os.path.join(workdir, "board.db"), "--dir", appdir],
                         stdout=subprocess.PIPE, bufsize=0,
                         stderr=open(os.path.join(workdir, "demo.log"), "wb"),
                         env=env, start_new_session=True)
    deadline = time.monotonic() + 20
    seen = b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([p.stdout], [], [], 0.5)
        if ready:
            line = p.stdout.readline()
            seen += line
            m = re.search(rb"point your browser at (http://127\.0\.0\.1:\d+)/", line)
            if m:
                return p, m.group(1).decode()
        if p.poll() is not None:
            break
    p.kill()
    raise AssertionError("the demo did not start: %r\n%s" % (seen, demo_log(workdir)))


def demo_log(workdir):
    with open(os.path.join(workdir, "demo.log"), errors="replace") as f:
        return f.read()[-4000:]


def start_chromedriver(workdir):
    port = free_port()
    log = open(os.path.join(workdir, "chromedriver.log"), "wb")
    p = subprocess.Popen(["chromedriver", f"--port={port}"], stdout=log, stderr=log,
                         start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(url + "/status", timeout=1).read()
            return p, url
        except OSError:
            time.sleep(0.2)
    raise AssertionError("chromedriver did not start: " + open(os.path.join(workdir, "chromedriver.log"), errors="replace").read()[-2000:])


def browser(driver_url, workdir, name):
    o = webdriver.ChromeOptions()
    o.binary_location = shutil.which("chromium")
    for a in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
              "--no-first-run", "--disable-background-networking", "--disable-sync",
              "--disable-component-update", "--window-size=1280,900",
              f"--user-data-dir={os.path.join(workdir, 'profile-' + name)}"):
        o.add_argument(a)
    d = webdriver.Remote(command_executor=driver_url, options=o)
    d.set_page_load_timeout(20)
    d.set_script_timeout(WAIT)
    return d


def stop(p):
    """Stops a process we started, and the children in its session, by id."""
    if p and p.poll() is None:
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=5)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(timeout=5)


class Check:
    def __init__(self, out):
        self.out, self.n = out, 0

    def shot(self, d, name):
        self.n += 1
        path = os.path.join(self.out, f"{self.n:02d}-{name}.png")
        d.save_screenshot(path)
        print("  screenshot", path)

    @staticmethod
    def step(what):
        print("ok -", what)


def wait(d, cond, what):
    try:
        return WebDriverWait(d, WAIT).until(cond)
    except Exception:
        raise AssertionError(f"timed out ({WAIT}s) waiting for {what}; page: {d.current_url}\n"
                             + d.find_element(By.TAG_NAME, "body").text[:2000])


def text_in(d, css, text):
    return EC.text_to_be_present_in_element((By.CSS_SELECTOR, css), text)


def account(d, base, page, name, password):
    d.get(f"{base}/{page}")
    d.find_element(By.NAME, "name").send_keys(name)
    d.find_element(By.NAME, "password").send_keys(password)
    d.find_element(By.CSS_SELECTOR, "form.account button").click()
    wait(d, text_in(d, "#whoami", name), f"{name} logged in after {page}")


def live(d, who):
    d.find_element(By.CSS_SELECTOR, "#new-task")  # on the board
    wait(d, EC.presence_of_element_located((By.CSS_SELECTOR, "#live.on")),
         f"{who}'s websocket to connect")


def run(args, workdir):
    c = Check(args.out)
    demo, base = start_demo(args.demo, args.dir, workdir)
    driver = a = b = None
    try:
        print("demo at", base)
        driver, url = start_chromedriver(workdir)
        a = browser(url, workdir, "alice")
        b = browser(url, workdir, "bob")

        account(a, base, "register", "alice", "wonderland")
        c.shot(a, "alice-registered")
        account(b, base, "register", "bob", "builder99")
        wait(b, text_in(b, ".flash", "Welcome, bob"), "the welcome flash")
        c.step("register and log in (two users, two browsers)")

        live(a, "alice")
        live(b, "bob")
        b.execute_script("window.notReloaded = 42")
        title = "Write the release notes"
        a.find_element(By.NAME, "title").send_keys(title)
        a.find_element(By.NAME, "assignee").send_keys("bob")
        a.find_element(By.CSS_SELECTOR, "#new-task button").click()
        wait(a, text_in(a, ".flash", "Added task #1"), "the 'added' flash")
        wait(b, text_in(b, '.column[data-status="todo"]', title), "the task on Bob's board")
        assert b.execute_script("return window.notReloaded") == 42, "Bob's page was reloaded"
        c.shot(a, "alice-added-task")
        c.step("a task added in one window appears in the other without a reload")

        wait(b, text_in(b, "#feed", f'alice created #1 "{title}"'), "the activity feed (SSE)")
        c.shot(b, "bob-board-live")
        c.step("the activity feed shows it (SSE)")

        b.find_element(By.CSS_SELECTOR, '.task[data-id="1"] button.move').click()
        wait(a, text_in(a, '.column[data-status="doing"]', title), "the task moving on Alice's board")
        wait(a, text_in(a, "#feed", "bob moved #1"), "the move in Alice's feed")
        c.shot(a, "alice-sees-move")
        c.step("a move made by Bob (JSON API) shows on Alice's board")

        a.find_element(By.ID, "logout").click()
        wait(a, text_in(a, ".flash", "Logged out."), "the logout flash")
        assert a.find_elements(By.ID, "whoami") == [], "still logged in after logout"
        a.get(base + "/board")
        wait(a, text_in(a, ".flash", "Please log in first."), "the board to ask for a login")
        c.shot(a, "alice-logged-out")
        account(a, base, "login", "alice", "wonderland")
        wait(a, text_in(a, ".flash", "Logged in as alice."), "the login flash")
        c.step("log out and in again")

        # The same form, its token removed: the server refuses it.
        status = a.execute_async_script("""
            const done = arguments[0];
            fetch('/tasks', {method: 'POST', body: new URLSearchParams({title: 'forged'})})
              .then(r => done(r.status), e => done(String(e)));""")
        assert status == 400, f"a POST without CSRF token answered {status}"
        a.execute_script("document.querySelector('#new-task [name=csrf_token]').remove()")
        a.find_element(By.NAME, "title").send_keys("forged task")
        a.find_element(By.CSS_SELECTOR, "#new-task button").click()
        wait(a, text_in(a, "body", "400 Bad Request"), "the 400 for the missing token")
        assert "CSRF" in a.find_element(By.TAG_NAME, "body").text
        c.shot(a, "csrf-refused")
        a.get(base + "/board")
        assert "forged" not in a.find_element(By.ID, "board").text, "the forged task was added"
        c.step("a form posted without its CSRF token is refused (400)")

        # The page's script talks to the JSON API with the token in a header.
        status = a.execute_async_script("""
            const done = arguments[0];
            const token = document.querySelector('meta[name="csrf-token"]').content;
            const post = (task) => fetch('/api/tasks', {method: 'POST', body: JSON.stringify(task),
                headers: {'Content-Type': 'application/json', 'X-CSRFToken': token}});
            Promise.all([post({title: 'Review the websocket code', assignee: 'alice'}),
                         post({title: 'Ship 0.2.0', status: 'done'})])
              .then(rs => done(rs.map(r => r.status)), e => done(String(e)));""")
        assert status == [201, 201], f"API calls from the page answered {status}"
        wait(b, text_in(b, '.column[data-status="done"]', "Ship 0.2.0"), "the API's task on Bob's board")
        wait(b, text_in(b, "#feed", "Review the websocket code"), "the API's task in Bob's feed")
        c.shot(b, "bob-board-final")
        c.step("tasks created through the JSON API show on the other board")
    finally:
        for d in (a, b):
            if d:
                try:
                    d.quit()
                except Exception:
                    pass
        stop(driver)
        stop(demo)
    # A clean stop, and no sanitizer report when the demo was built with them.
    log = demo_log(workdir)
    assert demo.returncode == 0, f"the demo exited with {demo.returncode}:\n{log}"
    for bad in ("AddressSanitizer", "LeakSanitizer", "runtime error:"):
        assert bad not in log, log


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--demo", required=True)
    ap.add_argument("--dir", default=os.path.join(os.path.dirname(__file__), "../../examples/demo"))
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    workdir = tempfile.mkdtemp(prefix="vial-browser-")
    try:
        run(args, workdir)
    except AssertionError as e:
        print("browser test: FAILED:", e, file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("browser test: passed; screenshots in", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
