# The OOM killer never takes the files (ksmfs-only): the daemon and an ordinary memory-hungry
# program share one memory cgroup (as in a container or a systemd slice), files are written
# first, then the program allocates past the limit. The kernel must kill the program and leave
# the daemon: every byte reads back, writes work again. This holds whatever oom_score_adj the
# daemon could get (-1000 needs CAP_SYS_RESOURCE, which some sandboxes' root lacks): the file
# data lives in the arena's memfd, whose pages the OOM killer does not count against the daemon
# (as it does not count a tmpfs file against anybody), so the daemon weighs only its metadata.
# The control experiment, oom_score_adj=1000, shows the test sees a daemon killed when it is.
# No swap in the cgroup, so the outcome does not depend on the machine's.

import os
import signal
import subprocess
import sys
import time

import pytest

from fsops import MiB, read_cold
from test_memory_pressure import memcg  # noqa: F401  (the fixture)

pytestmark = pytest.mark.ksmfs_only

LIMIT = 320 * MiB
FILES = 10
FILE_BYTES = 16 * MiB     # 160 MiB of distinct data: more than the hog gets before the limit

HOG = """
import sys, time
chunks = []
while True:
    b = bytearray(16 << 20)
    for i in range(0, len(b), 4096):
        b[i] = 1
    chunks.append(b)
"""


def _no_swap(cg):
    if cg.v2:
        if os.path.exists(cg.f("memory.swap.max")):
            with open(cg.f("memory.swap.max"), "w") as f:
                f.write("0\n")
    else:
        with open(cg.f("memory.swappiness"), "w") as f:
            f.write("0\n")


def _hog_in(cg):
    """Starts the memory hog stopped, moves it into the cgroup, then lets it run."""
    p = subprocess.Popen([sys.executable, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGSTOP)\n" + HOG])
    deadline = time.monotonic() + 10
    while True:
        with open(f"/proc/{p.pid}/stat") as f:
            if f.read().split(") ")[1].split()[0] == "T":
                break
        assert time.monotonic() < deadline, "hog did not stop"
        time.sleep(0.01)
    cg.add(p.pid)
    os.kill(p.pid, signal.SIGCONT)
    return p


def _write_files(m):
    files = {}
    for i in range(FILES):
        path = os.path.join(m.path, f"f{i}")
        data = os.urandom(FILE_BYTES)
        with open(path, "wb") as f:
            f.write(data)
            os.fsync(f.fileno())
        files[path] = data
    return files


def lowest_allowed_oom_score_adj():
    """The lowest oom_score_adj a new process of ours may take (-1000 with CAP_SYS_RESOURCE)."""
    r = subprocess.run(["sh", "-c", "for v in -1000 -999 -500 -1 0; do echo $v > /proc/self/oom_score_adj 2>/dev/null && break; done; "
                        "cat /proc/self/oom_score_adj"], capture_output=True, text=True)
    return int(r.stdout.strip())


def test_the_daemon_takes_the_lowest_oom_score_adj_allowed_and_says_so_when_not_minus_1000(mounted):
    lowest = lowest_allowed_oom_score_adj()
    with mounted("size=64m") as m:
        with open(f"/proc/{m.pid}/oom_score_adj") as f:
            value = int(f.read().strip())
        if lowest == -1000:
            assert value == -1000, "the daemon does not protect itself from the OOM killer"
            assert "oom_score_adj" not in m.log()
        else:
            assert value <= max(lowest, 0), f"oom_score_adj {value}, the lowest allowed here is {lowest}"
            notice = [l for l in m.log().splitlines() if "notice ksmfs[" in l and "running with oom_score_adj" in l]
            assert len(notice) == 1 and "CAP_SYS_RESOURCE" in notice[0], m.log()
            print(f"\nNOTE: this machine does not allow oom_score_adj -1000 (lowest {lowest})")


def test_the_hog_is_killed_and_the_daemon_with_every_file_survives(mounted, memcg):
    with mounted("size=1g") as m:
        with open(f"/proc/{m.pid}/oom_score_adj") as f:
            adj = int(f.read().strip())
        assert adj == lowest_allowed_oom_score_adj(), f"the daemon runs with oom_score_adj {adj}"
        _no_swap(memcg)
        memcg.add(m.pid)
        files = _write_files(m)
        memcg.set_limit(LIMIT)
        hog = _hog_in(memcg)
        rc = hog.wait(timeout=120)
        print(f"\ndaemon oom_score_adj {adj}; hog ended with {rc}; OOM kills {memcg.oom_kills()}")
        m.assert_alive()
        assert rc == -signal.SIGKILL, f"the hog ended with {rc}, not killed"
        assert memcg.oom_kills() >= 1
        for path, data in files.items():
            assert read_cold(path) == data, f"{path} damaged"
        again = os.urandom(8 * MiB)
        path = os.path.join(m.path, "after")
        with open(path, "wb") as f:
            f.write(again)
        assert read_cold(path) == again
        m.assert_alive()


def test_with_oom_score_adj_1000_the_daemon_is_the_victim(mounted, memcg):
    """The control experiment: the same set-up with the daemon marked as the first to go loses
    the mount, so the test above would see a daemon killed."""
    with mounted("size=1g,oom_score_adj=1000") as m:
        with open(f"/proc/{m.pid}/oom_score_adj") as f:
            assert f.read().strip() == "1000"
        _no_swap(memcg)
        memcg.add(m.pid)
        _write_files(m)
        memcg.set_limit(LIMIT)
        hog = _hog_in(memcg)
        deadline = time.monotonic() + 120
        while m.alive() and hog.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        # The hog may be killed too once the daemon is (a dying process frees its memfd last):
        # give the daemon's exit a moment to be seen.
        settle = time.monotonic() + 10
        while m.alive() and time.monotonic() < settle:
            time.sleep(0.05)
        m.stopped = True           # its death is the expected outcome here
        died = not m.alive()
        hog.kill()
        hog.wait()
        assert died, "the daemon marked oom_score_adj=1000 was not the OOM killer's choice"
        assert m.proc.returncode == -signal.SIGKILL


def test_bad_oom_score_adj_values_are_refused_with_one_line(tmp_path):
    from fsops import ksmfs_bin
    for bad in ("-1001", "1001", "x", ""):
        r = subprocess.run([ksmfs_bin(), str(tmp_path), "-f", "-o", f"oom_score_adj={bad}"],
                           capture_output=True, text=True, timeout=10)
        assert r.returncode == 1
        assert r.stderr.startswith("ksmfs: ") and r.stderr.count("\n") == 1, r.stderr


def test_an_arena_that_cannot_be_reserved_is_a_one_line_error_not_a_crash(tmp_path):
    """ulimit -v below the arena's address space: mmap fails; the daemon says so and exits 1."""
    from fsops import ksmfs_bin
    r = subprocess.run(["bash", "-c", f"ulimit -v 2000000; exec {ksmfs_bin()} {tmp_path} -f -o size=8g"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 1, (r.returncode, r.stderr)
    lines = [l for l in r.stderr.splitlines() if "oom_score_adj" not in l]
    assert len(lines) == 1 and lines[0].startswith("ksmfs: cannot reserve"), r.stderr
