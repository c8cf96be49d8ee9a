# Real-mount harness for the ksmfs integration tests: starts the daemon on a temporary
# mountpoint, waits for /proc/mounts to show it, and on the way out checks that the
# daemon was still alive, unmounts it and that it exited 0. With --target=tmpfs the very
# same tests run on a kernel tmpfs instead: that is how a test is shown to encode tmpfs
# behaviour. Tests marked ksmfs_only (CLI, /ksm, signals, daemon memory) are the only ones
# ever skipped, and only under --target=tmpfs.
#
#   python3 -m pytest Tests/IntegrationTests [--target=ksmfs|tmpfs]
#   env: KSMFS_BIN (default <repo>/.build/release/ksmfs), KSMFS_TEST_TARGET, KSMFS_TEST_DEBUG=1 (-d)

import contextlib
import itertools
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

import pytest

from fsops import FSTYPE, is_mounted, ksmfs_bin

MOUNT_WAIT_S = 10.0

# Daemon records and the default log of daemonized mounts go to a directory of this run, not
# the host's /run/ksmfs and /var/log (a record left by one test must not show in another's
# `ksmfs status`, and the host keeps nothing). Removed at the end of the session.
RUNTIME_DIR = os.environ.setdefault("KSMFS_RUNTIME_DIR", tempfile.mkdtemp(prefix="ksmfs-it-run-"))


def pytest_sessionfinish(session, exitstatus):
    if os.path.basename(RUNTIME_DIR).startswith("ksmfs-it-run-"):
        shutil.rmtree(RUNTIME_DIR, ignore_errors=True)


def pytest_addoption(parser):
    parser.addoption("--target", choices=["ksmfs", "tmpfs"],
                     default=os.environ.get("KSMFS_TEST_TARGET", "ksmfs"),
                     help="filesystem under test; tmpfs is the reference behaviour (default: ksmfs)")


def pytest_configure(config):
    config.addinivalue_line("markers", "ksmfs_only: checks ksmfs itself (daemon, CLI, /ksm); "
                                       "skipped only under --target=tmpfs")


def pytest_report_header(config):
    t = config.getoption("--target")
    return f"ksmfs integration target: {t}" + (f" ({ksmfs_bin()})" if t == "ksmfs" else "")


def pytest_sessionstart(session):
    """Refuse to run rather than skip: without root, /dev/fuse or the binary nothing here
    could show anything, and a run that skips everything must not look green."""
    target = session.config.getoption("--target")
    problems = []
    if os.geteuid() != 0:
        problems.append("the integration tests must run as root (mounts, setpriv, mknod, trusted.* xattrs)")
    if target == "ksmfs":
        if not os.path.exists("/dev/fuse"):
            problems.append("/dev/fuse is missing")
        if not os.access(ksmfs_bin(), os.X_OK):
            problems.append(f"ksmfs binary not found or not executable: {ksmfs_bin()} "
                            "(build it with `swift build -c release` or set KSMFS_BIN)")
    if problems:
        why = "; ".join(problems)
        if os.environ.get("CI"):
            why = "CI: " + why
        pytest.exit("cannot run ksmfs integration tests: " + why, returncode=1)


def pytest_collection_modifyitems(config, items):
    if config.getoption("--target") != "tmpfs":
        return
    skip = pytest.mark.skip(reason="ksmfs-only test (daemon/CLI/ksm behaviour tmpfs does not have)")
    for item in items:
        if "ksmfs_only" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def target(pytestconfig):
    return pytestconfig.getoption("--target")


@pytest.fixture(scope="session")
def base_dir():
    """Parent of every mountpoint; 0755 so that setpriv'd users can reach the mounts."""
    path = tempfile.mkdtemp(prefix="ksmfs-it-")
    os.chmod(path, 0o755)
    yield path
    for entry in os.listdir(path):
        full = os.path.join(path, entry)
        if is_mounted(full):  # a leak from a failed teardown: don't rmtree through a mount
            subprocess.run(["umount", "-l", full], capture_output=True)
    shutil.rmtree(path, ignore_errors=True)


class Mount:
    """One mounted filesystem under test. `.path`, `.proc` and `.pid` (None on tmpfs)."""

    def __init__(self, path, target, opts, log_path=None):
        self.path = path
        self.target = target
        self.opts = opts
        self.log_path = log_path
        self.proc = None
        self.pid = None
        self.stopped = False  # set when a test ends the daemon on purpose (stop())

    def log(self):
        """The daemon's log for a failure message: its end, plus where a full copy was kept
        (the mount's temp dir goes away with the session)."""
        if not self.log_path or not os.path.exists(self.log_path):
            return ""
        with open(self.log_path, errors="replace") as f:
            text = f.read()
        kept = os.path.join(tempfile.gettempdir(), "ksmfs-it-failed-" + os.path.basename(
            os.path.dirname(self.log_path)) + "-" + os.path.basename(self.log_path))
        shutil.copyfile(self.log_path, kept)
        # Swift runtime backtrace: make sure the crashed thread's frames are shown
        crashed = re.search(r"^Thread \d+.* crashed:$", text, re.M)
        head = ""
        if crashed and crashed.start() < len(text) - 6000:
            head = text[crashed.start():crashed.start() + 3000] + "\n[...]\n"
        return f"(full log: {kept})\n" + head + text[-6000:]

    def alive(self):
        return self.proc is None or self.proc.poll() is None

    def assert_alive(self):
        if not self.alive():
            raise AssertionError(
                f"ksmfs daemon died (exit code {self.proc.returncode}) while mounted on {self.path}\n"
                f"--- daemon log ---\n{self.log()}")

    def stop(self, sig, timeout=10):
        """Send `sig` to the daemon and return its exit code (test ends the daemon itself)."""
        assert self.proc is not None, "stop() is for the ksmfs daemon"
        self.stopped = True
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"daemon did not exit within {timeout}s of signal {sig}\n{self.log()}")


def _tmpfs_opts(opts):
    keep = []
    for o in filter(None, opts.split(",")):
        if o.split("=")[0] in ("allow_other", "auto_unmount", "default_permissions", "no_writeback_cache"):
            continue
        keep.append(o)
    return ",".join(keep)


_counter = itertools.count()


@contextlib.contextmanager
def _mounted(base, target, opts=""):
    n = next(_counter)
    path = os.path.join(base, f"m{n}")
    os.mkdir(path)
    m = Mount(path, target, opts, log_path=os.path.join(base, f"m{n}.log"))
    if target == "tmpfs":
        cmd = ["mount", "-t", "tmpfs"] + (["-o", _tmpfs_opts(opts)] if _tmpfs_opts(opts) else []) + ["tmpfs", path]
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, f"{' '.join(cmd)} failed: {r.stderr}"
        m.log_path = None
        try:
            yield m
        finally:
            r = subprocess.run(["umount", path], capture_output=True, text=True)
            if r.returncode != 0:
                subprocess.run(["umount", "-l", path], capture_output=True)
            os.rmdir(path)
        return

    cmd = [ksmfs_bin(), path, "-f"]
    if os.environ.get("KSMFS_TEST_DEBUG"):
        cmd.append("-d")
    if opts:
        cmd += ["-o", opts]
    log = open(m.log_path, "wb")
    log.write(("$ " + " ".join(cmd) + "\n").encode())
    log.flush()
    m.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    m.pid = m.proc.pid
    log.close()
    deadline = time.monotonic() + MOUNT_WAIT_S
    while not is_mounted(path, FSTYPE):
        if m.proc.poll() is not None:
            os.rmdir(path)
            raise AssertionError(f"ksmfs exited with {m.proc.returncode} before mounting {path} "
                                 f"(-o {opts})\n--- daemon log ---\n{m.log()}")
        if time.monotonic() > deadline:
            _teardown_daemon(m)
            raise AssertionError(f"ksmfs did not mount {path} within {MOUNT_WAIT_S}s\n{m.log()}")
        time.sleep(0.02)

    body_error = None
    try:
        yield m
    except BaseException as e:
        body_error = e
        raise
    finally:
        problems = []
        if not m.stopped and m.proc.poll() is not None:
            problems.append(f"daemon died during the test (exit code {m.proc.returncode})")
        problems += _teardown_daemon(m)
        try:
            os.rmdir(path)
        except OSError:
            pass
        if problems:
            msg = "; ".join(problems) + f"\n--- daemon log ({m.log_path}) ---\n{m.log()}"
            if body_error is None:
                raise AssertionError(msg)
            body_error.add_note("ksmfs teardown: " + msg)


def _teardown_daemon(m):
    """Unmount and reap the daemon: fusermount3 -u, then SIGTERM, then SIGKILL. Returns a
    list of problems (unclean exit, mount left behind)."""
    problems = []
    proc, path = m.proc, m.path
    if proc.poll() is None:
        r = subprocess.run(["fusermount3", "-u", path], capture_output=True, text=True)
        if r.returncode != 0:
            problems.append(f"fusermount3 -u failed: {r.stderr.strip()}")
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            problems.append("daemon still running 10s after unmount; sent SIGTERM")
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                problems.append("daemon ignored SIGTERM; killed with SIGKILL")
                proc.kill()
                proc.wait()
        if proc.returncode != 0 and not m.stopped and not problems:
            problems.append(f"daemon exited with code {proc.returncode} after unmount (want 0)")
    if is_mounted(path):
        subprocess.run(["fusermount3", "-u", "-z", path], capture_output=True)
        subprocess.run(["umount", "-l", path], capture_output=True)
        if not m.stopped:
            problems.append("mount still present after the daemon exited")
    return problems


@pytest.fixture(scope="session")
def mounted(base_dir, target):
    """Factory: `with mounted("size=64m") as m:` mounts the target with these options."""
    def factory(opts=""):
        return _mounted(base_dir, target, opts)
    return factory


@pytest.fixture(scope="module")
def mnt(base_dir, target):
    """One 2 GiB mount shared by the tests of a module."""
    with _mounted(base_dir, target, "size=2g") as m:
        yield m


_dir_counter = itertools.count()


@pytest.fixture
def d(mnt):
    """A fresh empty directory in the module's mount (the mount root holds ksm/, so tests
    never work in the root itself). Removed afterwards; the daemon must still be alive."""
    mnt.assert_alive()
    path = os.path.join(mnt.path, f"t{next(_dir_counter)}")
    os.mkdir(path)
    yield path
    mnt.assert_alive()
    shutil.rmtree(path, ignore_errors=True)
    mnt.assert_alive()
