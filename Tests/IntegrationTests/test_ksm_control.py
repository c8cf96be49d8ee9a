# The <mount>/ksm control directory end to end, with plain echo and cat (ksmfs-only): its
# shape (KSM-SPEC.md section 2), and the scanner merging two identical files into shared
# blocks with the kernel's counter figures, copy-on-write keeping them apart after a write,
# and run=2 unmerging. Parsing details are the unit tests' job, not this file's.

import errno
import os
import stat
import subprocess
import time

import pytest

from fsops import PAGE, raises_errno, read_cold, write_file

pytestmark = pytest.mark.ksmfs_only


def _cat(m, name):
    return subprocess.run(["cat", os.path.join(m.path, "ksm", name)], check=True,
                          capture_output=True, text=True).stdout


def _echo(m, value, name):
    subprocess.run(["sh", "-c", f'echo {value} > "{os.path.join(m.path, "ksm", name)}"'], check=True)


def _wait_counter(m, name, want, timeout=15.0):
    deadline = time.monotonic() + timeout
    while int(_cat(m, name)) != want and time.monotonic() < deadline:
        time.sleep(0.05)
    return int(_cat(m, name))


def test_ksm_dir_is_root_0755_with_tunables_0644_and_counters_0444(mounted):
    with mounted("size=64m") as m:
        st = os.stat(os.path.join(m.path, "ksm"))
        assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o755 and st.st_uid == 0
        names = set(os.listdir(os.path.join(m.path, "ksm")))
        assert {"run", "pages_to_scan", "sleep_millisecs", "pages_shared", "pages_sharing",
                "pages_unshared", "pages_volatile", "full_scans"} <= names
        assert stat.S_IMODE(os.stat(os.path.join(m.path, "ksm", "run")).st_mode) == 0o644
        assert stat.S_IMODE(os.stat(os.path.join(m.path, "ksm", "pages_sharing")).st_mode) == 0o444
        assert _cat(m, "run") == "0\n"
        assert _cat(m, "pages_to_scan") == "100\n"
        assert _cat(m, "sleep_millisecs") == "20\n"
        assert _cat(m, "pages_sharing") == "0\n"


def test_opening_a_counter_for_writing_is_EACCES_even_for_root(mounted):
    with mounted("size=64m") as m:
        with raises_errno(errno.EACCES):
            os.open(os.path.join(m.path, "ksm", "pages_sharing"), os.O_WRONLY)


def test_echo_to_a_tunable_is_read_back_by_cat_and_a_bad_value_is_EINVAL(mounted):
    with mounted("size=64m") as m:
        _echo(m, 1234, "pages_to_scan")
        assert _cat(m, "pages_to_scan") == "1234\n"
        fd = os.open(os.path.join(m.path, "ksm", "run"), os.O_WRONLY)
        try:
            with raises_errno(errno.EINVAL):
                os.write(fd, b"7\n")
        finally:
            os.close(fd)
        assert _cat(m, "run") == "0\n"


def test_two_identical_64_page_files_merge_to_64_shared_64_sharing_and_stay_correct(mounted):
    with mounted("size=256m") as m:
        work = os.path.join(m.path, "w")
        os.mkdir(work)
        data = os.urandom(64 * PAGE)  # 64 distinct pages, each present in both files
        a, b = os.path.join(work, "a"), os.path.join(work, "b")
        write_file(a, data)
        write_file(b, data)
        _echo(m, 10000, "pages_to_scan")
        _echo(m, 1, "run")
        assert _wait_counter(m, "pages_sharing", 64) == 64
        assert int(_cat(m, "pages_shared")) == 64
        assert read_cold(a) == data and read_cold(b) == data

        fd = os.open(b, os.O_WRONLY)  # copy-on-write: only b may see this
        try:
            os.pwrite(fd, b"\xee" * 10, 5 * PAGE + 3)
            os.fsync(fd)
        finally:
            os.close(fd)
        assert read_cold(a) == data
        assert read_cold(b) == data[:5 * PAGE + 3] + b"\xee" * 10 + data[5 * PAGE + 13:]

        _echo(m, 2, "run")  # stop and unmerge everything
        assert _wait_counter(m, "pages_shared", 0) == 0
        assert int(_cat(m, "pages_sharing")) == 0
        assert read_cold(a) == data
