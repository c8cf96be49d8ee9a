# The ksmfs daemon itself (ksmfs-only, skipped under --target=tmpfs): its memory really
# goes back when files are deleted, SIGTERM and SIGINT unmount and exit 0, the command line
# rejects bad mountpoints and option values with one `ksmfs: ` line on stderr and leaves
# no mount behind, and --help / --version answer on stdout.

import os
import signal
import subprocess
import time

import pytest

from fsops import FSTYPE, is_mounted, ksmfs_bin, MiB, daemon_memory, write_file

pytestmark = pytest.mark.ksmfs_only


def test_daemon_memory_falls_by_200_MiB_after_deleting_256_MiB_of_files(mounted):
    with mounted("size=1g") as m:
        work = os.path.join(m.path, "w")
        os.mkdir(work)
        for i in range(8):
            write_file(os.path.join(work, f"f{i}"), os.urandom(32 * MiB))  # fsync'ed
        full = daemon_memory(m.pid)
        for i in range(8):
            os.unlink(os.path.join(work, f"f{i}"))
        deadline = time.monotonic() + 5
        while full - daemon_memory(m.pid) < 200 * MiB and time.monotonic() < deadline:
            time.sleep(0.1)
        after = daemon_memory(m.pid)
        assert full - after >= 200 * MiB, \
            f"daemon memory {full / MiB:.0f} MiB -> {after / MiB:.0f} MiB after deleting 256 MiB"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_unmounts_and_exits_0(mounted, sig):
    with mounted("size=64m") as m:
        write_file(os.path.join(m.path, "f"), b"data")
        code = m.stop(sig)
        assert code == 0, f"exit code {code} after {sig.name}\n{m.log()}"
        assert not is_mounted(m.path)


def _run_cli(args, timeout=10):
    """Run ksmfs expecting it to exit by itself. A daemon that mounts instead of failing
    is stopped (and the test fails)."""
    proc = subprocess.Popen([ksmfs_bin()] + args, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        for a in args:
            if os.path.isdir(a) and is_mounted(a, FSTYPE):
                subprocess.run(["fusermount3", "-u", a], capture_output=True)
        proc.kill()
        out, err = proc.communicate()
        raise AssertionError(f"ksmfs {' '.join(args)} still running after {timeout}s (mounted?)\n{err}")
    return proc.returncode, out, err


def _assert_one_line_error(code, err, args):
    assert code != 0, f"ksmfs {' '.join(args)} exited 0"
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("ksmfs: "), \
        f"ksmfs {' '.join(args)}: want one 'ksmfs: ...' line on stderr, got {err!r}"


def test_nonexistent_mountpoint_is_a_one_line_error(tmp_path):
    mp = str(tmp_path / "does-not-exist")
    code, _, err = _run_cli([mp, "-f"])
    _assert_one_line_error(code, err, [mp])
    assert not os.path.exists(mp)


def test_regular_file_as_mountpoint_is_a_one_line_error(tmp_path):
    mp = tmp_path / "file"
    mp.write_bytes(b"not a dir")
    code, _, err = _run_cli([str(mp), "-f"])
    _assert_one_line_error(code, err, [str(mp)])
    assert not is_mounted(str(mp))
    assert mp.read_bytes() == b"not a dir"


def test_already_mounted_mountpoint_is_a_one_line_error_and_the_first_mount_lives(mounted):
    with mounted("size=64m") as m:
        write_file(os.path.join(m.path, "f"), b"first")
        code, _, err = _run_cli([m.path, "-f"])
        _assert_one_line_error(code, err, [m.path])
        m.assert_alive()
        with open("/proc/mounts") as f:
            assert sum(1 for line in f if line.split()[1] == m.path) == 1
        with open(os.path.join(m.path, "f"), "rb") as f:
            assert f.read() == b"first"


@pytest.mark.parametrize("opt", ["size=banana", "size=12q", "size=-5m", "nr_inodes=banana",
                                 "mode=0999", "uid=banana", "gid=banana", "readahead=banana",
                                 "readahead=-1", "readahead=2g"])
def test_bad_option_value_is_a_one_line_error_and_leaves_no_mount(tmp_path, opt):
    mp = tmp_path / "mp"
    mp.mkdir()
    code, _, err = _run_cli([str(mp), "-f", "-o", opt])
    _assert_one_line_error(code, err, [str(mp), "-o", opt])
    assert not is_mounted(str(mp))


def test_help_exits_0_and_lists_the_options_on_stdout():
    code, out, _ = _run_cli(["--help"])
    assert code == 0
    for word in ("size", "nr_inodes", "allow_other", "mode", "uid", "gid"):
        assert word in out, f"--help does not mention {word}"


def test_version_exits_0_and_prints_a_version_on_stdout():
    code, out, _ = _run_cli(["--version"])
    assert code == 0
    assert any(ch.isdigit() for ch in out), f"--version printed {out!r}"


def test_a_daemonized_ksmfs_without_syslog_logs_to_a_default_file(base_dir):
    """No /dev/log (a container, this CI): the log goes to a default file (/var/log/ksmfs.log, or
    $KSMFS_RUNTIME_DIR/ksmfs.log as the tests set it), tagged with the daemon's pid; with syslog
    it goes there instead (the journal), which this test cannot read."""
    path = os.path.join(base_dir, "daemonized-log")
    os.mkdir(path)
    r = subprocess.run([ksmfs_bin(), path, "-o", "size=16m"], capture_output=True, text=True, timeout=30)
    try:
        assert r.returncode == 0, r.stderr
        deadline = time.monotonic() + 10
        while not is_mounted(path, FSTYPE) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert is_mounted(path, FSTYPE)
        if os.path.exists("/dev/log"):
            return
        log = os.path.join(os.environ["KSMFS_RUNTIME_DIR"], "ksmfs.log")   # set by conftest
        deadline = time.monotonic() + 5
        text = ""
        while time.monotonic() < deadline:
            with open(log, errors="replace") as f:
                text = f.read()
            if f"mounted at {path}," in text:
                break
            time.sleep(0.05)
        line = [l for l in text.splitlines() if f"mounted at {path}," in l]
        assert line and " ksmfs[" in line[-1], text[-2000:]
    finally:
        subprocess.run(["fusermount3", "-u", path], capture_output=True)
        deadline = time.monotonic() + 10
        while is_mounted(path) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.rmdir(path)


@pytest.mark.ksmfs_only
def test_a_connection_aborted_under_a_mount_is_an_error_exit_but_an_unmount_is_not(mounted):
    # An unmount ends the connection cleanly even if closes were still queued (exit 0, checked
    # by every test's teardown); aborting the connection while it is mounted
    # (/sys/fs/fuse/connections/N/abort) loses whatever was open: exit 1 and a warning.
    with mounted("size=64m") as m:
        with open(os.path.join(m.path, "f"), "w") as f:
            f.write("x")
        dev = os.stat(m.path).st_dev
        ctl = "/sys/fs/fuse/connections"
        mounted_ctl = not os.path.exists(os.path.join(ctl, str(os.minor(dev))))
        if mounted_ctl:  # fusectl is not mounted here: mount it for the test, unmount after
            subprocess.run(["mount", "-t", "fusectl", "none", ctl], check=True)
        conn = f"{ctl}/{os.minor(dev)}/abort"
        held = os.open(os.path.join(m.path, "f"), os.O_RDONLY)
        try:
            with open(conn, "w") as f:
                f.write("1")
            assert m.proc.wait(20) == 1
            m.stopped = True
        finally:
            os.close(held)
            subprocess.run(["umount", "-l", m.path], capture_output=True)
            if mounted_ctl:
                subprocess.run(["umount", ctl], capture_output=True)
        with open(m.log_path) as f:
            assert "still open" in f.read()
