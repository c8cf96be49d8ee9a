# Limits: size= bounds the data (ENOSPC by close at the latest, nothing already stored is
# damaged, the daemon lives on, freed space is usable again), nr_inodes= bounds the number
# of files, and statfs reports both the way tmpfs does (4 KiB blocks, f_blocks * f_frsize
# equal to size=, f_files equal to nr_inodes=, free counts that follow writes and unlinks).
# Each test has its own small mount.

import errno
import os
import subprocess
import sys
import time

import pytest

from fsops import MiB, PAGE, fallocate, raises_errno, read_cold, write_file


def _write_until_error(path, total):
    """Write `total` random bytes in 1 MiB chunks, then fsync and close. Returns the first
    OSError errno and the stage it surfaced at ('write', 'fsync', 'close'), or (None, None).
    With FUSE's writeback cache ENOSPC may show only at fsync or close; it must show."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    first = (None, None)
    try:
        chunk = os.urandom(MiB)
        written = 0
        while written < total:
            view = memoryview(chunk)
            while view:
                view = view[os.write(fd, view):]
            written += MiB
    except OSError as e:
        first = (e.errno, "write")
    try:
        os.fsync(fd)
    except OSError as e:
        first = first if first[0] else (e.errno, "fsync")
    try:
        os.close(fd)
    except OSError as e:
        first = first if first[0] else (e.errno, "close")
    return first


def _wait_for(predicate, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)
    return predicate()


def test_writing_16_MiB_into_an_8_MiB_mount_is_ENOSPC_and_damages_nothing(mounted):
    with mounted("size=8m") as m:
        work = os.path.join(m.path, "w")
        os.mkdir(work)
        keep = os.urandom(MiB)
        write_file(os.path.join(work, "keep"), keep)

        err, stage = _write_until_error(os.path.join(work, "big"), 16 * MiB)
        assert err == errno.ENOSPC, f"16 MiB into size=8m: got {err and errno.errorcode[err]} at {stage}"

        m.assert_alive()
        assert read_cold(os.path.join(work, "keep")) == keep

        os.unlink(os.path.join(work, "big"))
        _wait_for(lambda: os.statvfs(m.path).f_bfree * PAGE >= 5 * MiB)
        again = os.urandom(4 * MiB)
        err, stage = _write_until_error(os.path.join(work, "again"), 4 * MiB)
        assert err is None, f"4 MiB after freeing 8: {errno.errorcode[err]} at {stage}"
        write_file(os.path.join(work, "again"), again)
        assert read_cold(os.path.join(work, "again")) == again
        assert read_cold(os.path.join(work, "keep")) == keep
        m.assert_alive()


def test_fallocate_beyond_free_space_is_ENOSPC_and_leaves_size_alone(mounted):
    with mounted("size=8m") as m:
        path = os.path.join(m.path, "f")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            with raises_errno(errno.ENOSPC):
                fallocate(fd, 0, 0, 16 * MiB)
            assert os.fstat(fd).st_size == 0
            fallocate(fd, 0, 0, 2 * MiB)  # what fits, fits
            assert os.fstat(fd).st_size == 2 * MiB
        finally:
            os.close(fd)


def test_nr_inodes_100_allows_exactly_the_free_inodes_statfs_reports_then_ENOSPC(mounted):
    # tmpfs counts its root inode, ksmfs also its ksm/ control files; so the figure to
    # match is f_ffree just before, not 100 minus a guess.
    with mounted("size=64m,nr_inodes=100") as m:
        work = os.path.join(m.path, "w")
        os.mkdir(work)
        st = os.statvfs(m.path)
        assert st.f_files == 100
        free = st.f_ffree
        assert 0 < free < 100
        created, err = 0, None
        for i in range(200):
            try:
                os.close(os.open(os.path.join(work, f"f{i}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
                created += 1
            except OSError as e:
                err = e.errno
                break
        assert err == errno.ENOSPC
        assert created == free
        assert os.statvfs(m.path).f_ffree == 0
        with raises_errno(errno.ENOSPC):
            os.mkdir(os.path.join(work, "dir"))
        with raises_errno(errno.ENOSPC):
            os.symlink("x", os.path.join(work, "link"))
        m.assert_alive()

        os.unlink(os.path.join(work, "f1"))
        assert _wait_for(lambda: os.statvfs(m.path).f_ffree == 1)
        os.close(os.open(os.path.join(work, "after-unlink"), os.O_CREAT | os.O_WRONLY, 0o644))
        assert os.statvfs(m.path).f_ffree == 0


def test_statfs_reports_4_KiB_blocks_size_nr_inodes_and_namemax_255(mounted):
    with mounted("size=8m,nr_inodes=1000") as m:
        st = os.statvfs(m.path)
        assert st.f_bsize == 4096
        assert st.f_frsize == 4096
        assert st.f_blocks * st.f_frsize == 8 * MiB
        assert st.f_files == 1000
        assert st.f_namemax == 255
        # ksmfs keeps a reserve for what the kernel's writeback cache holds (f_bfree counts
        # it, f_bavail does not, as ext4's reserved blocks); tmpfs has none.
        assert st.f_bavail <= st.f_bfree
        assert st.f_bfree <= st.f_blocks


@pytest.mark.parametrize("opt, size", [("size=8388608", 8 * MiB), ("size=12288k", 12 * MiB),
                                       ("size=24m", 24 * MiB), ("size=3g", 3 << 30)])
def test_size_option_in_bytes_k_m_g_sets_f_blocks(mounted, opt, size):
    with mounted(opt) as m:
        st = os.statvfs(m.path)
        assert st.f_blocks * st.f_frsize == size


def _ram_pages():
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 4


@pytest.mark.parametrize("opt, percent", [("size=10%", 10), ("", 50)])
def test_size_as_percent_of_RAM_and_default_of_50_percent(mounted, opt, percent):
    with mounted(opt) as m:
        st = os.statvfs(m.path)
        expected = _ram_pages() * percent // 100 * PAGE
        assert st.f_blocks * st.f_frsize == pytest.approx(expected, rel=1e-3)


def test_statfs_free_blocks_fall_by_the_data_written_and_return_after_unlink(mounted):
    with mounted("size=64m") as m:
        work = os.path.join(m.path, "w")
        os.mkdir(work)
        before = os.statvfs(m.path).f_bfree
        write_file(os.path.join(work, "f"), os.urandom(MiB))  # fsync'ed
        used = before - os.statvfs(m.path).f_bfree
        assert MiB // PAGE <= used <= MiB // PAGE + 2, f"1 MiB written used {used} blocks"
        os.unlink(os.path.join(work, "f"))
        assert _wait_for(lambda: os.statvfs(m.path).f_bfree == before), \
            f"f_bfree {os.statvfs(m.path).f_bfree} != {before} after unlink"


def test_statfs_free_inodes_fall_by_one_per_file_and_return_after_unlink(mounted):
    with mounted("size=64m,nr_inodes=1000") as m:
        work = os.path.join(m.path, "w")
        os.mkdir(work)
        before = os.statvfs(m.path).f_ffree
        for i in range(10):
            write_file(os.path.join(work, f"f{i}"), b"")
        assert os.statvfs(m.path).f_ffree == before - 10
        for i in range(10):
            os.unlink(os.path.join(work, f"f{i}"))
        assert _wait_for(lambda: os.statvfs(m.path).f_ffree == before)


def test_an_unlinked_open_file_keeps_its_pages_until_the_last_close(mounted):
    with mounted("size=64m") as m:
        a = os.path.join(m.path, "a")
        data = os.urandom(16 * MiB)
        write_file(a, data)
        free_full = os.statvfs(m.path).f_bfree
        fd1 = os.open(a, os.O_RDONLY)
        fd2 = os.open(a, os.O_RDWR)
        os.unlink(a)
        assert os.statvfs(m.path).f_bfree == free_full, "pages freed while the file is open"
        os.close(fd1)
        assert os.pread(fd2, len(data), 0) == data
        os.pwrite(fd2, b"x" * PAGE, 0)
        os.fsync(fd2)
        assert os.pread(fd2, PAGE + 3, 0) == b"x" * PAGE + data[PAGE:PAGE + 3]
        assert os.fstat(fd2).st_size == len(data)
        os.close(fd2)
        # RELEASE reaches the daemon after close() returns.
        assert _wait_for(lambda: (os.statvfs(m.path).f_bfree - free_full) * PAGE >= 16 * MiB)
        m.assert_alive()


_OPEN_UNLINK_RACE = r"""
import errno, os, sys, time
path, seconds, size = sys.argv[1], float(sys.argv[2]), int(sys.argv[3])
bad = opened = 0
end = time.monotonic() + seconds
while time.monotonic() < end:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        if e.errno != errno.ENOENT:
            print("open:", errno.errorcode[e.errno]); bad += 1
        continue
    opened += 1
    data = b""
    while True:
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            break
        data += chunk
    os.close(fd)
    if len(data) != size or data.count(data[:1]) != size:
        print("torn read:", len(data), data[:1], data.count(data[:1])); bad += 1
print("opened", opened, "bad", bad)
sys.exit(1 if bad or opened == 0 else 0)
"""


def test_opens_racing_unlink_and_replace_see_a_whole_file_or_ENOENT(mounted):
    # Readers open and read a name while a writer replaces it by rename and removes it: a
    # reader sees a whole version of the file or ENOENT, never an empty or partial one, as
    # on tmpfs. (An open can reach the daemon after the unlink that removed its file's last
    # name: the pages must still be there, so they go only when the kernel forgets the inode.
    # Freeing them in unlink instead made 6 of 4,300 opens here fail with ESTALE.)
    with mounted("size=256m") as m:
        path = os.path.join(m.path, "f")
        size = 256 * 1024
        readers = [subprocess.Popen([sys.executable, "-c", _OPEN_UNLINK_RACE, path, "4", str(size)],
                                    stdout=subprocess.PIPE, text=True) for _ in range(3)]
        end = time.monotonic() + 4.5
        v = 0
        while time.monotonic() < end:
            v += 1
            tmp = path + ".tmp"
            write_file(tmp, bytes([v % 251 + 1]) * size)
            os.rename(tmp, path)
            if v % 3 == 0:
                os.unlink(path)
        outs = [r.communicate(timeout=60)[0] for r in readers]
        assert all(r.returncode == 0 for r in readers), outs
        m.assert_alive()
