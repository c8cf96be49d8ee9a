# Faults: capacity running out in the middle of an O_DIRECT write (ENOSPC, everything
# acknowledged intact, nothing past it), `run=2` when the private copies do not fit (ENOMEM,
# run reads 0, every file intact), the daemon killed with SIGKILL (auto_unmount releases the
# mountpoint within 5 s and a new daemon mounts there cleanly), SIGTERM while files are open
# and a mapping is live (exit 0, mount gone). (A read-only mount is in test_mount_options.py.)

import errno
import mmap
import os
import random
import signal
import subprocess
import sys
import time

import pytest

from fsops import FSTYPE, MiB, PAGE, is_mounted, ksmfs_bin, raises_errno, read_cold, write_file
from ksmops import kset, kval


def _direct_write_until_error(path, total, chunk, seed):
    """Write `total` bytes of seeded random data with O_DIRECT in `chunk`-byte writes (from an
    aligned buffer). Returns (bytes acknowledged, their content, errno that stopped it)."""
    rng = random.Random(seed)
    buf = mmap.mmap(-1, chunk)                        # page-aligned, as O_DIRECT wants
    acked = bytearray()
    err = None
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_DIRECT, 0o644)
    try:
        while len(acked) < total:
            data = rng.randbytes(chunk)
            buf[:] = data
            try:
                n = os.write(fd, buf)
            except OSError as e:
                err = e.errno
                break
            acked += data[:n]
    finally:
        os.close(fd)
        buf.close()
    return len(acked), bytes(acked), err


def test_O_DIRECT_write_of_16_MiB_into_8_MiB_stops_at_ENOSPC_with_what_was_acknowledged_intact(mounted):
    with mounted("size=8m") as m:
        keep = os.urandom(MiB)
        write_file(os.path.join(m.path, "keep"), keep)
        big = os.path.join(m.path, "big")
        # What new data may still take (ksmfs keeps a reserve for writeback: f_bavail < f_bfree).
        avail = os.statvfs(m.path).f_bavail * PAGE
        # 192 KiB writes: 8 MiB is not a multiple, so space runs out inside a write
        n, data, err = _direct_write_until_error(big, 16 * MiB, 192 * 1024, seed=1)
        assert err == errno.ENOSPC, f"got {err and errno.errorcode[err]} after {n} bytes (want ENOSPC)"
        assert avail - MiB <= n <= avail, f"{n} bytes acknowledged, with {avail} available"
        st = os.stat(big)
        assert st.st_size == n, f"st_size {st.st_size} but {n} bytes acknowledged: garbage past the last write"
        assert read_cold(big) == data, "acknowledged data damaged"
        assert read_cold(os.path.join(m.path, "keep")) == keep, "the file written before was damaged"
        m.assert_alive()
        # the space comes back, and is usable
        os.unlink(big)
        deadline = time.monotonic() + 5
        while os.statvfs(m.path).f_bfree * PAGE < 6 * MiB and time.monotonic() < deadline:
            time.sleep(0.05)
        n2, data2, err2 = _direct_write_until_error(big, 4 * MiB, 192 * 1024, seed=2)
        assert err2 is None and n2 >= 4 * MiB, f"after freeing: {n2} bytes, {err2 and errno.errorcode[err2]}"
        assert read_cold(big) == data2
        m.assert_alive()


# ---------------------------------------------------------------- ksm/run=2 that does not fit

@pytest.mark.ksmfs_only
def test_run_2_when_the_private_copies_do_not_fit_is_ENOMEM_run_reads_0_and_files_are_intact(mounted):
    with mounted("size=6m") as m:   # room for the 768 private copies, reserve aside
        work = os.path.join(m.path, "w")
        os.mkdir(work)
        page = bytes(range(256)) * 16
        same = page * 256                                    # 1 MiB of one page
        for i in range(3):
            write_file(os.path.join(work, f"same{i}"), same)
        for name, value in (("pages_to_scan", 10000), ("sleep_millisecs", 0), ("run", 1)):
            kset(m, name, value)
        deadline = time.monotonic() + 30
        while int(kval(m, "pages_shared")) + int(kval(m, "pages_sharing")) < 768:
            assert time.monotonic() < deadline, \
                f"768 identical pages did not merge: shared {kval(m, 'pages_shared')} sharing {kval(m, 'pages_sharing')}"
            time.sleep(0.05)
        kset(m, "run", 0)
        merged = (kval(m, "pages_shared"), kval(m, "pages_sharing"))

        fill = os.path.join(work, "fill")
        n, data, err = _direct_write_until_error(fill, 6 * MiB, PAGE, seed=3)
        # (ksmfs keeps the top of size= for writeback: new data stops at f_bavail == 0)
        assert err == errno.ENOSPC and n >= 2 * MiB, f"filling: {n} bytes then {err and errno.errorcode[err]}"
        assert os.statvfs(m.path).f_bavail == 0

        with raises_errno(errno.ENOMEM):
            kset(m, "run", 2)
        assert kval(m, "run") == "0", "after a failed run=2 ksm/run must read 0"
        m.assert_alive()
        for i in range(3):
            assert read_cold(os.path.join(work, f"same{i}")) == same, f"same{i} damaged by the failed unmerge"
        assert read_cold(fill) == data, "the fill file damaged by the failed unmerge"
        assert (kval(m, "pages_shared"), kval(m, "pages_sharing")) == merged, \
            "a failed run=2 must leave the merges as they were"
        assert os.statvfs(m.path).f_bavail == 0, "a failed run=2 leaked or freed space"

        # with room again, run=2 works and unmerges everything
        os.unlink(fill)
        kset(m, "run", 2)
        assert kval(m, "run") == "2"
        assert (kval(m, "pages_shared"), kval(m, "pages_sharing")) == ("0", "0")
        for i in range(3):
            assert read_cold(os.path.join(work, f"same{i}")) == same
        m.assert_alive()


# ---------------------------------------------------------------- signals

def _wait_unmounted(path, timeout):
    deadline = time.monotonic() + timeout
    while is_mounted(path):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _start_daemon(path, opts, log_path):
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([ksmfs_bin(), path, "-f", "-o", opts], stdin=subprocess.DEVNULL,
                                stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while not is_mounted(path, FSTYPE):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            with open(log_path, errors="replace") as f:
                raise AssertionError(f"restart on {path} did not mount (exit {proc.poll()}):\n{f.read()[-3000:]}")
        time.sleep(0.02)
    return proc


@pytest.mark.ksmfs_only
def test_SIGKILL_releases_the_mountpoint_within_5s_and_a_restart_mounts_there_cleanly(mounted):
    with mounted("size=64m") as m:
        write_file(os.path.join(m.path, "f"), os.urandom(MiB))
        fd = os.open(os.path.join(m.path, "f"), os.O_RDONLY)   # a busy mount, too
        try:
            m.stop(signal.SIGKILL)
            assert _wait_unmounted(m.path, 5.0), "mountpoint still mounted 5 s after SIGKILL (auto_unmount)"
        finally:
            try:
                os.close(fd)
            except OSError as e:   # the flush on close goes to a dead connection
                assert e.errno == errno.ENOTCONN, e
        proc = _start_daemon(m.path, "size=64m", m.log_path)
        try:
            assert os.listdir(m.path) == [], f"a fresh mount lists nothing (ksm/ is found by name): {os.listdir(m.path)}"
            data = os.urandom(MiB)
            write_file(os.path.join(m.path, "g"), data)
            assert read_cold(os.path.join(m.path, "g")) == data
            assert kval(m, "run") == "0"
        finally:
            r = subprocess.run(["fusermount3", "-u", m.path], capture_output=True, text=True)
            code = proc.wait(10)
        assert r.returncode == 0, r.stderr
        assert code == 0, f"restarted daemon exited {code}"
        assert not is_mounted(m.path)


HOLDER = r"""
import mmap, os, sys
path = sys.argv[1]
fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
os.write(fd, os.urandom(1 << 20))
other = os.open(path + ".2", os.O_WRONLY | os.O_CREAT, 0o644)
os.write(other, b"x" * 5000)                 # dirty in the page cache, never fsync'ed
m = mmap.mmap(fd, 1 << 20, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
m[0:4096] = b"y" * 4096                      # a live mapping with a dirty page
print("ready", flush=True)
sys.stdin.read()                             # hold everything until told to go
os._exit(0)                                  # no munmap/close through a dead mount
"""


@pytest.mark.ksmfs_only
def test_SIGTERM_while_files_are_open_is_refused_and_logged_and_a_second_one_forces_the_stop(mounted):
    """As `umount` of a busy tmpfs says EBUSY, the first SIGTERM while files are open or mapped
    keeps the mount serving (and says why in the log); a second one within 10 s stops anyway,
    exits 0, unmounts, and logs what was discarded."""
    with mounted("size=64m") as m:
        holder = subprocess.Popen([sys.executable, "-c", HOLDER, os.path.join(m.path, "f")],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        try:
            assert holder.stdout.readline().strip() == "ready"
            m.proc.send_signal(signal.SIGTERM)
            time.sleep(1.0)
            m.assert_alive()
            assert is_mounted(m.path), "the first SIGTERM unmounted a mount in use"
            with open(os.path.join(m.path, "f"), "rb") as f:     # still serving
                assert len(f.read()) == MiB
            deadline = time.monotonic() + 5
            while "SIGTERM refused" not in m.log() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert "SIGTERM refused" in m.log() and "is in use" in m.log(), m.log()
            code = m.stop(signal.SIGTERM, timeout=15)
            assert code == 0, f"exit code {code} after the second SIGTERM\n{m.log()}"
            assert _wait_unmounted(m.path, 5.0), "still mounted after the daemon exited"
            log = m.log()
            assert "stopping although" in log and "discarded" in log, log
        finally:
            holder.stdin.close()
            try:
                holder.wait(10)
            except subprocess.TimeoutExpired:
                holder.kill()
                holder.wait()
                raise AssertionError("a process holding files on the dead mount hung")


@pytest.mark.ksmfs_only
def test_a_refused_SIGTERM_stops_the_daemon_when_the_last_file_is_closed(mounted):
    with mounted("size=64m") as m:
        path = os.path.join(m.path, "f")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        os.write(fd, b"x" * MiB)
        m.stopped = True
        m.proc.send_signal(signal.SIGTERM)
        time.sleep(0.5)
        assert is_mounted(m.path) and m.alive()
        os.close(fd)
        code = m.proc.wait(timeout=10)
        assert code == 0
        assert _wait_unmounted(m.path, 5.0)
        assert "stopping as asked" in m.log(), m.log()
        assert "unmounted" in m.log() and "1 file or directory with 1 MiB of data discarded" in m.log(), m.log()


@pytest.mark.ksmfs_only
def test_the_next_mount_and_status_say_that_the_previous_daemon_was_killed(mounted):
    with mounted("size=64m") as m:
        write_file(os.path.join(m.path, "f"), os.urandom(MiB))
        pid = m.pid
        m.stop(signal.SIGKILL)
        assert _wait_unmounted(m.path, 5.0)
        r = subprocess.run([ksmfs_bin(), "status"], capture_output=True, text=True, timeout=10)
        assert f"pid {pid}" in r.stderr and "was killed" in r.stderr and "files were lost" in r.stderr, r.stderr
        proc = _start_daemon(m.path, "size=64m", m.log_path)
        try:
            with open(m.log_path, errors="replace") as f:
                log = f.read()
            assert f"the previous ksmfs on {m.path} (pid {pid}" in log and "was killed" in log, log[-2000:]
        finally:
            subprocess.run(["fusermount3", "-u", m.path], capture_output=True)
            proc.wait(10)
        r = subprocess.run([ksmfs_bin(), "status"], capture_output=True, text=True, timeout=10)
        assert f"pid {pid}" not in r.stderr, "a death already reported by the next mount is reported again"
