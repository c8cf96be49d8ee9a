# Limits: a directory of 100,000 files (1,000,000 with KSMFS_LIMITS_FULL=1) listed exactly
# once each, file churn that leaves nothing behind in the daemon, a 64 GiB sparse file that
# costs the daemon nothing, 10,000 files open at once, a 100-deep directory tree and a
# 4000-byte path, 255-byte names (256 is ENAMETOOLONG), and the largest file, 2^63 - 1 bytes
# as on tmpfs (EFBIG past it, little memory at its edge). The daemon must be alive after each. Each test
# has its own mount and stays under 60 s (the full 1,000,000-file run does not).

import collections
import errno
import os
import resource
import stat

import pytest

from fsops import fallocate, MiB, PAGE, raises_errno, read_cold, daemon_memory, write_file

GiB = 1 << 30
TiB = 1 << 40
MAX_FILE = (1 << 63) - 1     # the kernel's MAX_LFS_FILESIZE: tmpfs's largest file, and ksmfs's


def test_a_directory_of_100000_files_lists_each_exactly_once_and_all_delete(mounted):
    """100,000 files in one directory; readdir (in many getdents calls) returns each name
    exactly once and nothing else. The issue asks for 1,000,000: that runs only with
    KSMFS_LIMITS_FULL=1 (it takes minutes on a 2-core machine)."""
    n = 1_000_000 if os.environ.get("KSMFS_LIMITS_FULL") == "1" else 100_000
    with mounted("size=256m") as m:
        d = os.path.join(m.path, "many")
        os.mkdir(d)
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for i in range(n):
                os.mknod(f"file-{i:07d}", stat.S_IFREG | 0o644, dir_fd=dfd)
        finally:
            os.close(dfd)
        m.assert_alive()
        names = collections.Counter(os.listdir(d))
        dups = [k for k, v in names.items() if v > 1]
        assert not dups, f"{len(dups)} names listed more than once, e.g. {dups[:5]}"
        want = {f"file-{i:07d}" for i in range(n)}
        missing, extra = want - names.keys(), names.keys() - want
        assert not missing and not extra, \
            f"{len(missing)} missing (e.g. {sorted(missing)[:5]}), {len(extra)} extra (e.g. {sorted(extra)[:5]})"
        assert os.stat(os.path.join(d, f"file-{n - 1:07d}")).st_size == 0
        # Deleting them all, in an order unlike creation's (each file leaves the scan list in
        # O(1): a list search per unlink made this quadratic).
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        try:
            for i in list(range(1, n, 2)) + list(range(0, n, 2)):
                os.unlink(f"file-{i:07d}", dir_fd=dfd)
        finally:
            os.close(dfd)
        assert os.listdir(d) == []
        os.rmdir(d)
        m.assert_alive()


@pytest.mark.ksmfs_only
def test_creating_and_deleting_files_with_run_0_does_not_grow_the_daemon(mounted):
    """run=0 is the default: a mount that never merges must not keep anything of deleted
    files. Five rounds of 25,000 create+unlink in a directory held open throughout (as a
    shell's cwd or a watcher holds it); after two warm-up rounds the daemon's RSS stays flat.
    (Removed names used to stay as tombstones while the directory was open: about 1 MiB a
    round; and freed metadata stayed in the malloc arenas until the daemon trimmed them.)"""
    with mounted("size=64m") as m:
        d = os.path.join(m.path, "churn")
        os.mkdir(d)
        dfd = os.open(d, os.O_RDONLY | os.O_DIRECTORY)
        sizes = []
        try:
            for _ in range(5):
                for i in range(25_000):
                    os.mknod(f"f{i}", stat.S_IFREG | 0o644, dir_fd=dfd)
                for i in range(25_000):
                    os.unlink(f"f{i}", dir_fd=dfd)
                sizes.append(daemon_memory(m.pid))
        finally:
            os.close(dfd)
        assert os.listdir(d) == []
        grown = sizes[-1] - sizes[1]
        print(f"\ndaemon memory after each round of 25,000 create+unlink: {[round(r / MiB, 1) for r in sizes]} MiB")
        assert grown < 6 * MiB, (f"daemon memory after each round of 25,000 create+unlink: "
                                 f"{[round(r / MiB) for r in sizes]} MiB: {grown / MiB:.0f} MiB kept for deleted files")
        m.assert_alive()


def test_a_64_GiB_sparse_file_costs_almost_nothing_and_SEEK_DATA_finds_its_last_page(mounted, target):
    with mounted("size=64m") as m:
        path = os.path.join(m.path, "sparse")
        before = daemon_memory(m.pid) if target == "ksmfs" else 0
        end = os.urandom(PAGE)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            os.ftruncate(fd, 64 * GiB)
            assert os.pwrite(fd, end, 64 * GiB - PAGE) == PAGE
            os.fsync(fd)
            assert os.lseek(fd, 0, os.SEEK_DATA) == 64 * GiB - PAGE
            assert os.lseek(fd, 0, os.SEEK_HOLE) == 0
            assert os.lseek(fd, 64 * GiB - PAGE, os.SEEK_HOLE) == 64 * GiB
            with raises_errno(errno.ENXIO):
                os.lseek(fd, 64 * GiB, os.SEEK_DATA)
            assert os.pread(fd, PAGE, 32 * GiB) == bytes(PAGE)
        finally:
            os.close(fd)
        fd = os.open(path, os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            assert os.pread(fd, PAGE, 64 * GiB - PAGE) == end
        finally:
            os.close(fd)
        st = os.stat(path)
        assert st.st_size == 64 * GiB
        assert st.st_blocks <= 64, f"st_blocks {st.st_blocks} for one 4 KiB page of data"
        assert os.statvfs(m.path).f_bfree >= (64 * MiB - 64 * 1024) // PAGE, "the holes were charged to size="
        if target == "ksmfs":
            grown = daemon_memory(m.pid) - before
            assert grown < 8 * MiB, f"daemon memory grew by {grown / MiB:.1f} MiB for a 64 GiB sparse file"
            m.assert_alive()


def test_10000_files_open_at_once(mounted):
    n = 10_000
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = n + 256
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, need), max(hard, need)))
    fds = []
    try:
        with mounted("size=256m") as m:
            d = os.path.join(m.path, "open")
            os.mkdir(d)
            try:
                for i in range(n):
                    fd = os.open(os.path.join(d, f"f{i}"), os.O_RDWR | os.O_CREAT, 0o644)
                    fds.append(fd)
                    os.write(fd, f"file {i}\n".encode())
                m.assert_alive()
                for i, fd in enumerate(fds):
                    assert os.pread(fd, 64, 0) == f"file {i}\n".encode(), f"f{i} through its fd"
                for i in range(0, n, 997):
                    assert read_cold(os.path.join(d, f"f{i}")) == f"file {i}\n".encode()
            finally:
                while fds:
                    os.close(fds.pop())
            m.assert_alive()
    finally:
        for fd in fds:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_100_deep_tree_and_a_4000_byte_path(mounted):
    with mounted("size=64m") as m:
        # 100 levels
        deep = os.path.join(m.path, *["d"] * 100)
        os.makedirs(deep)
        write_file(os.path.join(deep, "bottom"), b"at depth 100")
        assert read_cold(os.path.join(deep, "bottom")) == b"at depth 100"
        depth = max(root[len(m.path):].count(os.sep) for root, _, _ in os.walk(os.path.join(m.path, "d")))
        assert depth == 100
        # a 4000-byte absolute path: components of 200 bytes, the last one sized to fit
        base = os.path.join(m.path, "long")
        os.mkdir(base)
        comps, length = [], len(base)
        while 4000 - length > 256 + 1:
            comps.append(chr(ord("a") + len(comps) % 26) * 200)
            length += 201
        leaf = "z" * (4000 - length - 1)
        path = os.path.join(base, *comps, leaf)
        assert len(path.encode()) == 4000
        os.makedirs(os.path.dirname(path))
        write_file(path, b"far away")
        assert read_cold(path) == b"far away"
        assert os.stat(path).st_size == 8
        # past PATH_MAX (4096 with the NUL) the kernel refuses before the filesystem sees it
        with raises_errno(errno.ENAMETOOLONG):
            os.stat(os.path.join(os.path.dirname(path), "y" * (4096 - len(os.path.dirname(path).encode()))))
        m.assert_alive()


def test_names_of_255_bytes_work_and_256_bytes_are_ENAMETOOLONG(mounted):
    with mounted("size=64m") as m:
        d = os.path.join(m.path, "names")
        os.mkdir(d)
        n255, n256 = "n" * 255, "n" * 256
        utf8 = "\u20ac" * 85                         # 255 bytes of 3-byte characters
        assert len(utf8.encode()) == 255
        write_file(os.path.join(d, n255), b"255")
        write_file(os.path.join(d, utf8), b"utf8")
        os.mkdir(os.path.join(d, "D" * 255))
        os.symlink(n255, os.path.join(d, "L" * 255))
        os.link(os.path.join(d, n255), os.path.join(d, "H" * 255))
        os.rename(os.path.join(d, utf8), os.path.join(d, "R" * 255))
        assert sorted(os.listdir(d)) == sorted([n255, "D" * 255, "L" * 255, "H" * 255, "R" * 255])
        assert read_cold(os.path.join(d, "L" * 255)) == b"255"
        assert read_cold(os.path.join(d, "R" * 255)) == b"utf8"

        p = os.path.join(d, n256)
        with raises_errno(errno.ENAMETOOLONG):
            os.open(p, os.O_WRONLY | os.O_CREAT, 0o644)
        with raises_errno(errno.ENAMETOOLONG):
            os.mkdir(p)
        with raises_errno(errno.ENAMETOOLONG):
            os.mknod(p, stat.S_IFREG | 0o644)
        with raises_errno(errno.ENAMETOOLONG):
            os.symlink("x", p)
        with raises_errno(errno.ENAMETOOLONG):
            os.link(os.path.join(d, n255), p)
        with raises_errno(errno.ENAMETOOLONG):
            os.rename(os.path.join(d, n255), p)
        with raises_errno(errno.ENAMETOOLONG):
            os.stat(p)
        with raises_errno(errno.ENAMETOOLONG):
            os.open(os.path.join(d, "\u20ac" * 85 + "x"), os.O_WRONLY | os.O_CREAT, 0o644)
        assert sorted(os.listdir(d)) == sorted([n255, "D" * 255, "L" * 255, "H" * 255, "R" * 255])
        m.assert_alive()


# ---------------------------------------------------------------- the 16 TiB file size limit

def test_truncate_to_the_largest_size_works_and_past_it_is_EFBIG(mounted):
    with mounted("size=64m") as m:
        path = os.path.join(m.path, "f")
        write_file(path, b"head")
        os.truncate(path, MAX_FILE)
        assert os.stat(path).st_size == MAX_FILE
        fd = os.open(path, os.O_RDWR)
        try:
            with raises_errno(errno.EFBIG):
                fallocate(fd, 0, MAX_FILE - PAGE + 1, PAGE)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            assert os.pread(fd, 4, 0) == b"head"
            assert os.pread(fd, 2, MAX_FILE - 2) == b"\0\0"
            with raises_errno(errno.EINVAL):       # offset + count past 2^63 - 1 (the VFS)
                os.pread(fd, 4, MAX_FILE - 2)
            assert os.lseek(fd, 0, os.SEEK_HOLE) == PAGE
            with raises_errno(errno.ENXIO):
                os.lseek(fd, PAGE, os.SEEK_DATA)
            os.ftruncate(fd, 3)
        finally:
            os.close(fd)
        assert read_cold(path) == b"hea"
        m.assert_alive()


def test_writes_far_past_16_TiB_and_at_the_last_byte_work_and_one_more_is_refused(mounted):
    with mounted("size=64m") as m:
        path = os.path.join(m.path, "f")
        write_file(path, b"head")
        fd = os.open(path, os.O_RDWR)
        try:
            assert os.pwrite(fd, b"x" * 10, (1 << 44) + 5) == 10
            assert os.pwrite(fd, b"y", MAX_FILE - 1) == 1
            with raises_errno(errno.EINVAL):       # offset + count past 2^63 - 1 (the VFS)
                os.pwrite(fd, b"z", MAX_FILE)
            os.fsync(fd)
            assert os.fstat(fd).st_size == MAX_FILE
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            assert os.pread(fd, 12, (1 << 44) + 4) == b"\0" + b"x" * 10 + b"\0"
            assert os.pread(fd, 1, MAX_FILE - 1) == b"y"
            assert os.lseek(fd, 1 << 40, os.SEEK_DATA) == 1 << 44
            assert os.lseek(fd, (1 << 44) + 16, os.SEEK_HOLE) == (1 << 44) + PAGE
            os.ftruncate(fd, (1 << 44) + 8)
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            assert os.pread(fd, 16, (1 << 44) + 4) == b"\0xxx"
        finally:
            os.close(fd)
        assert os.stat(path).st_size == (1 << 44) + 8
        m.assert_alive()


@pytest.mark.ksmfs_only
def test_one_byte_at_the_last_offset_costs_the_daemon_little_memory(mounted):
    """The largest legal offset. The data is one page; the daemon's memory for the file
    must not grow with the file's logical size (8 EiB here; a 64 GiB sparse file likewise)."""
    with mounted("size=64m") as m:
        path = os.path.join(m.path, "f")
        before = daemon_memory(m.pid)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            assert os.pwrite(fd, b"x", MAX_FILE - 1) == 1
            assert os.pwrite(fd, b"x", 1 << 50) == 1
            os.fsync(fd)
        finally:
            os.close(fd)
        assert os.stat(path).st_size == MAX_FILE
        grown = daemon_memory(m.pid) - before
        assert grown < 4 * MiB, f"daemon memory grew by {grown / MiB:.1f} MiB for two bytes far out"
        os.unlink(path)
        m.assert_alive()
