# What the test files share: syscalls Python's os module lacks (renameat2, fallocate,
# utimensat, raw getxattr size queries) as thin ctypes wrappers raising OSError like os
# does, errno assertions, page-cache dropping, running code as another user, and where the
# ksmfs binary is and whether a path is mounted. Starting mounts lives in conftest.py.

import contextlib
import ctypes
import ctypes.util
import errno
import os
import subprocess
import sys
import textwrap

REPO_ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DEFAULT_BIN = os.path.join(REPO_ROOT, ".build", "release", "ksmfs")
FSTYPE = "fuse.ksmfs"

PAGE = 4096
MiB = 1 << 20


def ksmfs_bin():
    return os.environ.get("KSMFS_BIN") or DEFAULT_BIN


def arena_fd(pid):
    """/proc/PID/fd/N of the daemon's arena memfd, or None (a process without one)."""
    d = f"/proc/{pid}/fd"
    for n in os.listdir(d):
        with contextlib.suppress(OSError):
            if os.readlink(os.path.join(d, n)).startswith("/memfd:ksmfs-arena"):
                return os.path.join(d, n)
    return None


def daemon_memory(pid):
    """What a process costs the machine in bytes: its resident memory other than shared
    memory (VmRSS - RssShmem), plus, for a ksmfs daemon, its arena's pages, which belong to a
    memfd and are mapped only now and then (os.stat of the memfd: pages in memory or swap)."""
    status = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssShmem"):
                status[k] = int(v.split()[0]) * 1024
    if "VmRSS" not in status:
        raise AssertionError(f"no VmRSS for pid {pid}")
    fd = arena_fd(pid)
    arena = os.stat(fd).st_blocks * 512 if fd else 0
    return status["VmRSS"] - status.get("RssShmem", 0) + arena


def mount_entry(path):
    """The last /proc/mounts entry (split into fields) for mountpoint `path`, or None."""
    path = os.path.realpath(path)
    found = None
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            if fields[1].encode().decode("unicode_escape") == path:  # \040 etc. escapes
                found = fields
    return found


def is_mounted(path, fstype=None):
    e = mount_entry(path)
    return e is not None and (fstype is None or e[2] == fstype)


_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)

AT_FDCWD = -100
AT_SYMLINK_NOFOLLOW = 0x100

RENAME_NOREPLACE = 1 << 0
RENAME_EXCHANGE = 1 << 1

FALLOC_FL_KEEP_SIZE = 0x01
FALLOC_FL_PUNCH_HOLE = 0x02
FALLOC_FL_ZERO_RANGE = 0x10

UTIME_NOW = (1 << 30) - 1
UTIME_OMIT = (1 << 30) - 2


def _check(ret, *paths):
    if ret == -1:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e), *paths[:1])
    return ret


_libc.renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
_libc.renameat2.restype = ctypes.c_int


def renameat2(old, new, flags):
    """renameat2(2) with RENAME_NOREPLACE / RENAME_EXCHANGE."""
    _check(_libc.renameat2(AT_FDCWD, os.fsencode(old), AT_FDCWD, os.fsencode(new), flags), old)


_libc.fallocate.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64]
_libc.fallocate.restype = ctypes.c_int


def fallocate(fd, mode, offset, length):
    """fallocate(2) itself: unlike posix_fallocate it never falls back to writing zeros."""
    _check(_libc.fallocate(fd, mode, offset, length))


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


_libc.utimensat.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.POINTER(_Timespec), ctypes.c_int]
_libc.utimensat.restype = ctypes.c_int


def utimensat(path, atime, mtime, flags=0):
    """utimensat(2); atime/mtime are (sec, nsec) tuples, or UTIME_NOW / UTIME_OMIT."""
    ts = (_Timespec * 2)()
    for i, t in enumerate((atime, mtime)):
        if t in (UTIME_NOW, UTIME_OMIT):
            ts[i].tv_sec, ts[i].tv_nsec = 0, t
        else:
            ts[i].tv_sec, ts[i].tv_nsec = t
    _check(_libc.utimensat(AT_FDCWD, os.fsencode(path), ts, flags), path)


_libc.getxattr.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
_libc.getxattr.restype = ctypes.c_ssize_t
_libc.listxattr.argtypes = [ctypes.c_char_p, ctypes.c_void_p, ctypes.c_size_t]
_libc.listxattr.restype = ctypes.c_ssize_t


def getxattr_size(path, name):
    """getxattr(path, name, NULL, 0): the size of the value, without fetching it."""
    return _check(_libc.getxattr(os.fsencode(path), os.fsencode(name), None, 0), path)


def listxattr_size(path):
    """listxattr(path, NULL, 0): the length of the NUL-separated name list."""
    return _check(_libc.listxattr(os.fsencode(path), None, 0), path)


@contextlib.contextmanager
def raises_errno(expected):
    """Assert that the block raises OSError with exactly errno `expected`."""
    import pytest  # here, not at the top: snippets run as other users import fsops without pytest
    with pytest.raises(OSError) as info:
        yield info
    got = info.value.errno
    assert got == expected, (
        f"expected {errno.errorcode.get(expected)}, got {errno.errorcode.get(got, got)}: {info.value}")


def errname(fn, *args, **kwargs):
    """Run fn; return 'OK' or the errno name it failed with (for table-like asserts)."""
    try:
        fn(*args, **kwargs)
        return "OK"
    except OSError as e:
        return errno.errorcode.get(e.errno, str(e.errno))


def write_file(path, data, mode=0o644):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    finally:
        os.close(fd)


def read_file(path):
    with open(path, "rb") as f:
        return f.read()


def drop_cache(path):
    """Flush a file and drop its clean page-cache pages, so the next read really asks the
    filesystem (the daemon) rather than the kernel's cache. A no-op on tmpfs, whose pages
    are the data itself."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def read_cold(path):
    """The file's content as stored by the filesystem, not as cached by the kernel."""
    drop_cache(path)
    return read_file(path)


NOBODY = 65534


def run_as(uid, gid, code, groups=None, check=True):
    """Run a Python snippet as uid/gid (via setpriv, no supplementary groups) and return its
    stripped stdout. Snippets report outcomes by printing, typically errname(...) results;
    fsops is importable in them."""
    prelude = ("import os, sys, errno\n"
               f"sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})\n"
               "from fsops import errname\n")
    cmd = ["setpriv", f"--reuid={uid}", f"--regid={gid}"]
    cmd += ["--clear-groups"] if not groups else [f"--groups={','.join(map(str, groups))}"]
    cmd += [sys.executable, "-c", prelude + textwrap.dedent(code)]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=60, cwd="/",
                       env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    if check:
        assert r.returncode == 0, f"snippet as uid {uid} failed:\n{r.stderr}"
    return r.stdout.strip()


def as_nobody(code):
    return run_as(NOBODY, NOBODY, code)


def run_python(code, timeout=120):
    """Run a Python snippet in a separate process (as root); return stripped stdout."""
    prelude = ("import os, sys, errno, mmap\n"
               f"sys.path.insert(0, {os.path.dirname(os.path.abspath(__file__))!r})\n")
    r = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)],
                       capture_output=True, text=True, timeout=timeout, cwd="/",
                       env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert r.returncode == 0, f"child process failed:\n{r.stderr}"
    return r.stdout.strip()
