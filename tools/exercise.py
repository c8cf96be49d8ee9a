#!/usr/bin/env python3
# Random-syscall exerciser with a model: open/read/write/pwrite/lseek/mmap/msync/truncate/
# ftruncate/fallocate/rename/renameat2/link/unlink/setxattr/getxattr/removexattr/listxattr over
# a handful of names in one directory, each result (data, size, errno, link counts, inode
# identity, xattr values) checked against a Python model. The model is the kernel's tmpfs
# behaviour: run it with --target on a tmpfs first (that validates the model), then on ksmfs.
# The same seed gives the same sequence of syscalls on any target.
#
#   python3 tools/exercise.py --target DIR [--seed S] [--steps N] [-v]
#
# DIR must exist; the run works in a fresh subdirectory of it and removes it at the end.
# Prints `exercise: N steps, seed S, M mismatches` and exits 1 on any mismatch. After a
# mismatch the working directory is wiped and the model reset, so one bug is reported once
# and the run goes on (at most --max-mismatches reports). Each report carries the last
# operations, which with the seed is enough to replay the run.

import argparse
import collections
import errno
import mmap
import os
import random
import shutil
import stat
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "IntegrationTests"))
from fsops import (FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE,  # noqa: E402
                   RENAME_EXCHANGE, RENAME_NOREPLACE, fallocate, renameat2)

PAGE = 4096
NAMES = ["a", "b", "c", "d", "e", "f"]
DIRNAME = "sub"                       # a fixed subdirectory: EISDIR / ENOTDIR / EPERM cases
XNAMES = ["user.x", "user.y", "user.z", "user.longer.attribute.name"]
MAX_FDS = 8
MAX_OFF = 96 * 1024                   # offsets drawn below this (files stay small and fast)
EOPNOTSUPP = errno.EOPNOTSUPP


class Mismatch(Exception):
    pass


def ename(e):
    return "OK" if e is None else errno.errorcode.get(e, str(e))


def fstype_of(path):
    """The filesystem type of the mount holding `path` (longest /proc/mounts prefix)."""
    path = os.path.realpath(path)
    best, fs = "", "?"
    with open("/proc/mounts") as f:
        for line in f:
            fields = line.split()
            mp = fields[1].encode().decode("unicode_escape")
            if (path == mp or path.startswith(mp.rstrip("/") + "/")) and len(mp) >= len(best):
                best, fs = mp, fields[2]
    return fs


class Inode:
    _ids = 0

    def __init__(self):
        Inode._ids += 1
        self.id = Inode._ids
        self.data = bytearray()
        self.nlink = 1
        self.xattrs = {}


class Handle:
    def __init__(self, fd, inode, acc, append):
        self.fd, self.inode, self.acc, self.append, self.pos = fd, inode, acc, append, 0

    @property
    def readable(self):
        return self.acc in ("r", "rw")

    @property
    def writable(self):
        return self.acc in ("w", "rw")

    def __repr__(self):
        return f"fd{self.fd}({self.acc}{'+a' if self.append else ''},i{self.inode.id})"


def zero(data, start, end):
    end = min(end, len(data))
    if start < end:
        data[start:end] = bytes(end - start)


def put(data, off, buf):
    if off > len(data):
        data.extend(bytes(off - len(data)))
    data[off:off + len(buf)] = buf


def resize(data, size):
    if size < len(data):
        del data[size:]
    else:
        data.extend(bytes(size - len(data)))


class Exerciser:
    def __init__(self, target, seed, steps, verbose=False, max_mismatches=20, zero_range=None, avoid=()):
        self.root = target
        self.seed = seed
        self.steps = steps
        self.verbose = verbose
        self.max_mismatches = max_mismatches
        self.fstype = fstype_of(target)
        # tmpfs's fallocate knows only KEEP_SIZE and PUNCH_HOLE; ksmfs also does ZERO_RANGE
        self.zero_range = (self.fstype != "tmpfs") if zero_range is None else zero_range
        self.avoid = set(avoid)
        self.rng = random.Random(seed)
        self.dir = os.path.join(target, f"exercise-{seed}-{os.getpid()}")
        self.trace = collections.deque(maxlen=40)
        self.mismatches = []
        self.counts = collections.Counter()
        self.bytes_checked = 0
        self.names = {}
        self.handles = []
        self.dir_xattrs = {}

    # ------------------------------------------------------------ setup / reset

    def reset(self):
        for h in self.handles:
            try:
                os.close(h.fd)
            except OSError:
                pass
        self.handles = []
        self.names = {}
        self.dir_xattrs = {}
        if os.path.lexists(self.dir):
            shutil.rmtree(self.dir)
        os.mkdir(self.dir)
        os.mkdir(self.p(DIRNAME))

    def p(self, name):
        return os.path.join(self.dir, name)

    # ------------------------------------------------------------ comparison

    def fail(self, what):
        raise Mismatch(what)

    def expect_errno(self, op, want, fn):
        """Run fn; compare its errno (None = success) with `want`. Returns fn's result."""
        try:
            r = fn()
            got = None
        except OSError as e:
            r, got = None, e.errno
        if got != want and not (want == EOPNOTSUPP and got == errno.ENOTSUP):
            self.fail(f"{op}: expected {ename(want)}, got {ename(got)}")
        return r

    def content_of(self, inode, cold=False):
        """Read the inode's data back: through a name if it has one, else through a readable fd.
        `cold`: fsync and drop the file's page cache first, so that a FUSE filesystem has to
        serve the read itself (a no-op on tmpfs)."""
        def read(fd):
            if cold:
                os.fsync(fd)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            return self._read_all(fd, len(inode.data))
        for name, ino in self.names.items():
            if ino is inode:
                fd = os.open(self.p(name), os.O_RDONLY)
                try:
                    return read(fd)
                finally:
                    os.close(fd)
        for h in self.handles:
            if h.inode is inode and h.readable:
                return read(h.fd)
        return None

    @staticmethod
    def _read_all(fd, hint):
        out = bytearray()
        while True:
            chunk = os.pread(fd, max(hint + 1 - len(out), 65536), len(out))
            if not chunk:
                return bytes(out)
            out += chunk

    def check_data(self, inode, why, cold=False):
        got = self.content_of(inode, cold)
        if got is None:
            return
        self.bytes_checked += len(got)
        want = bytes(inode.data)
        if got != want:
            at = next((i for i in range(min(len(got), len(want))) if got[i] != want[i]), min(len(got), len(want)))
            self.fail(f"data of inode i{inode.id} after {why}: {len(got)} bytes read, model has {len(want)}; "
                      f"first difference at offset {at}: got {got[at:at + 16].hex()} want {want[at:at + 16].hex()}")

    def check_namespace(self):
        listed = sorted(os.listdir(self.dir))
        want = sorted(list(self.names) + [DIRNAME])
        if listed != want:
            self.fail(f"readdir: got {listed}, model has {want}")
        seen = {}
        for name, inode in self.names.items():
            st = os.stat(self.p(name))
            if not stat.S_ISREG(st.st_mode):
                self.fail(f"stat {name}: not a regular file (mode {oct(st.st_mode)})")
            if st.st_size != len(inode.data):
                self.fail(f"stat {name}: st_size {st.st_size}, model {len(inode.data)}")
            if st.st_nlink != inode.nlink:
                self.fail(f"stat {name}: st_nlink {st.st_nlink}, model {inode.nlink}")
            if inode.id in seen and seen[inode.id] != st.st_ino:
                self.fail(f"{name}: st_ino {st.st_ino}, but another link of the same inode has {seen[inode.id]}")
            seen[inode.id] = st.st_ino
        if len(set(seen.values())) != len(seen):
            self.fail(f"two distinct model inodes share an st_ino: {seen}")
        for h in self.handles:
            st = os.fstat(h.fd)
            if st.st_size != len(h.inode.data) or st.st_nlink != h.inode.nlink:
                self.fail(f"fstat {h}: size {st.st_size} nlink {st.st_nlink}, "
                          f"model size {len(h.inode.data)} nlink {h.inode.nlink}")

    def all_inodes(self):
        out = {}
        for i in list(self.names.values()) + [h.inode for h in self.handles]:
            out[i.id] = i
        return out.values()

    # ------------------------------------------------------------ random choices

    def pick_name(self, with_dir=True):
        if with_dir and self.rng.random() < 0.06:
            return DIRNAME
        return self.rng.choice(NAMES)

    def pick_handle(self):
        return self.rng.choice(self.handles) if self.handles else None

    def pick_off(self):
        r = self.rng.random()
        if r < 0.4:
            return self.rng.randrange(0, MAX_OFF // PAGE) * PAGE
        if r < 0.5:
            return 0
        return self.rng.randrange(0, MAX_OFF)

    def pick_len(self):
        r = self.rng.random()
        if r < 0.3:
            return PAGE * self.rng.randint(1, 6)
        if r < 0.6:
            return self.rng.randint(1, 64)
        return self.rng.randint(1, 20000)

    def pick_data(self, n):
        r = self.rng.random()
        if r < 0.3:
            return self.rng.randbytes(n)
        if r < 0.45:
            return bytes(n)                      # zeros: exercise the zero page
        pat = bytes([self.rng.randrange(256)]) * 7 + self.rng.randbytes(1)
        return (pat * (n // len(pat) + 1))[:n]

    def pick_size(self):
        r = self.rng.random()
        if r < 0.2:
            return 0
        if r < 0.5:
            return self.rng.randrange(0, MAX_OFF // PAGE + 2) * PAGE
        return self.rng.randrange(0, MAX_OFF + PAGE)

    # ------------------------------------------------------------ operations

    def op_open(self):
        if len(self.handles) >= MAX_FDS:
            return self.op_close()
        name = self.pick_name()
        acc = self.rng.choice(["r", "w", "rw"])
        flags = {"r": os.O_RDONLY, "w": os.O_WRONLY, "rw": os.O_RDWR}[acc]
        creat = self.rng.random() < 0.6
        excl = creat and self.rng.random() < 0.2
        trunc = self.rng.random() < 0.2
        append = self.rng.random() < 0.15
        if acc == "r" and "rdonly-trunc" in self.avoid:
            trunc = False                       # drawn all the same: the sequence stays the seed's
        flags |= (os.O_CREAT if creat else 0) | (os.O_EXCL if excl else 0) | \
                 (os.O_TRUNC if trunc else 0) | (os.O_APPEND if append else 0)
        desc = f"open({name}, {acc}{' CREAT' * creat}{' EXCL' * excl}{' TRUNC' * trunc}{' APPEND' * append})"
        if name == DIRNAME:
            want = errno.EEXIST if excl else (errno.EISDIR if (creat or acc != "r" or trunc) else None)
            if want is None:                    # a plain O_RDONLY open of a directory works
                fd = self.expect_errno(desc, None, lambda: os.open(self.p(name), flags))
                os.close(fd)
                return desc
            self.expect_errno(desc, want, lambda: os.open(self.p(name), flags, 0o644))
            return desc
        inode = self.names.get(name)
        if inode is None:
            if not creat:
                self.expect_errno(desc, errno.ENOENT, lambda: os.open(self.p(name), flags, 0o644))
                return desc
            fd = self.expect_errno(desc, None, lambda: os.open(self.p(name), flags, 0o644))
            inode = Inode()
            self.names[name] = inode
        else:
            if excl:
                self.expect_errno(desc, errno.EEXIST, lambda: os.open(self.p(name), flags, 0o644))
                return desc
            fd = self.expect_errno(desc, None, lambda: os.open(self.p(name), flags, 0o644))
            if trunc:                            # Linux truncates even with O_RDONLY|O_TRUNC
                resize(inode.data, 0)
        h = Handle(fd, inode, acc, append)
        self.handles.append(h)
        self.touched = inode
        return desc + f" -> {h}"

    def op_close(self):
        h = self.pick_handle()
        if h is None:
            return self.op_open()
        self.handles.remove(h)
        self.expect_errno(f"close({h})", None, lambda: os.close(h.fd))
        return f"close({h})"

    def op_read(self, positional):
        h = self.pick_handle()
        if h is None:
            return self.op_open()
        n = self.pick_len()
        off = self.pick_off() if positional else h.pos
        desc = f"{'pread' if positional else 'read'}({h}, {n}, @{off})"
        if not h.readable:
            self.expect_errno(desc, errno.EBADF,
                              (lambda: os.pread(h.fd, n, off)) if positional else (lambda: os.read(h.fd, n)))
            return desc
        got = self.expect_errno(desc, None,
                                (lambda: os.pread(h.fd, n, off)) if positional else (lambda: os.read(h.fd, n)))
        want = bytes(h.inode.data[off:off + n])
        if got != want:
            self.fail(f"{desc}: got {len(got)} bytes {got[:16].hex()}..., model {len(want)} bytes {want[:16].hex()}...")
        self.bytes_checked += len(got)
        if not positional:
            h.pos += len(got)
        return desc

    def op_write(self, positional):
        h = self.pick_handle()
        if h is None:
            return self.op_open()
        data = self.pick_data(self.pick_len())
        off = self.pick_off() if positional else h.pos
        desc = f"{'pwrite' if positional else 'write'}({h}, {len(data)}, @{off})"
        fn = (lambda: os.pwrite(h.fd, data, off)) if positional else (lambda: os.write(h.fd, data))
        if not h.writable:
            self.expect_errno(desc, errno.EBADF, fn)
            return desc
        n = self.expect_errno(desc, None, fn)
        if n != len(data):
            self.fail(f"{desc}: short write {n}")
        at = len(h.inode.data) if h.append else off   # Linux: pwrite on O_APPEND appends
        put(h.inode.data, at, data)
        if not positional:
            h.pos = at + n
        self.touched = h.inode
        return desc + (f" (appended @{at})" if h.append else "")

    def op_lseek(self):
        h = self.pick_handle()
        if h is None:
            return self.op_open()
        whence = self.rng.choice([os.SEEK_SET, os.SEEK_CUR, os.SEEK_END])
        off = self.rng.randrange(-PAGE, MAX_OFF) if whence != os.SEEK_SET else self.pick_off()
        base = {os.SEEK_SET: 0, os.SEEK_CUR: h.pos, os.SEEK_END: len(h.inode.data)}[whence]
        desc = f"lseek({h}, {off}, {['SET', 'CUR', 'END'][whence]})"
        if base + off < 0:
            self.expect_errno(desc, errno.EINVAL, lambda: os.lseek(h.fd, off, whence))
            return desc
        r = self.expect_errno(desc, None, lambda: os.lseek(h.fd, off, whence))
        if r != base + off:
            self.fail(f"{desc}: returned {r}, model {base + off}")
        h.pos = r
        return desc

    def op_mmap(self):
        h = self.pick_handle()
        if h is None:
            return self.op_open()
        size = len(h.inode.data)
        if size == 0:
            return self.op_write(True)
        off = self.rng.randrange(0, (size + PAGE - 1) // PAGE) * PAGE
        length = self.rng.randint(1, size - off)
        write = h.writable and self.rng.random() < 0.8
        access = mmap.ACCESS_WRITE if write else mmap.ACCESS_READ
        desc = f"mmap({h}, @{off}, {length}, {'rw' if write else 'r'})"
        if not h.readable:   # mmap needs an fd open for reading
            self.expect_errno(desc, errno.EACCES, lambda: mmap.mmap(h.fd, length, offset=off, access=access))
            return desc
        m = self.expect_errno(desc, None, lambda: mmap.mmap(h.fd, length, offset=off, access=access))
        try:
            model = h.inode.data
            got = m[:]
            if got != bytes(model[off:off + length]):
                self.fail(f"{desc}: mapping content differs from the model before any store")
            self.bytes_checked += length
            if write:
                stores = []
                for _ in range(self.rng.randint(1, 4)):
                    s = self.rng.randrange(0, length)
                    n = min(self.rng.randint(1, 3 * PAGE), length - s)
                    buf = self.pick_data(n)
                    m[s:s + n] = buf
                    model[off + s:off + s + n] = buf
                    stores.append((s, n))
                m.flush()                           # msync(MS_SYNC)
                desc += f" stores {stores} msync"
                if m[:] != bytes(model[off:off + length]):
                    self.fail(f"{desc}: mapping content differs from the model after the stores")
                self.touched = h.inode
        finally:
            m.close()
        return desc

    def op_ftruncate(self):
        h = self.pick_handle()
        if h is None:
            return self.op_open()
        size = self.pick_size()
        desc = f"ftruncate({h}, {size})"
        if not h.writable:
            self.expect_errno(desc, errno.EINVAL, lambda: os.ftruncate(h.fd, size))
            return desc
        self.expect_errno(desc, None, lambda: os.ftruncate(h.fd, size))
        resize(h.inode.data, size)
        self.touched = h.inode
        return desc

    def op_truncate(self):
        name = self.pick_name()
        size = self.pick_size()
        desc = f"truncate({name}, {size})"
        if name == DIRNAME:
            self.expect_errno(desc, errno.EISDIR, lambda: os.truncate(self.p(name), size))
        elif name not in self.names:
            self.expect_errno(desc, errno.ENOENT, lambda: os.truncate(self.p(name), size))
        else:
            self.expect_errno(desc, None, lambda: os.truncate(self.p(name), size))
            resize(self.names[name].data, size)
            self.touched = self.names[name]
        return desc

    def op_fallocate(self):
        h = self.pick_handle()
        if h is None:
            return self.op_open()
        mode = self.rng.choice([0, FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                                FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE,
                                FALLOC_FL_ZERO_RANGE, FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE])
        off = self.pick_off()
        length = 0 if self.rng.random() < 0.03 else self.pick_len()
        names = {0: "0", 1: "KEEP_SIZE", 3: "PUNCH_HOLE|KEEP_SIZE", 2: "PUNCH_HOLE",
                 0x10: "ZERO_RANGE", 0x11: "ZERO_RANGE|KEEP_SIZE"}
        desc = f"fallocate({h}, {names[mode]}, @{off}, {length})"
        fn = lambda: fallocate(h.fd, mode, off, length)  # noqa: E731
        data = h.inode.data
        # vfs_fallocate's order: length, then the mode's validity, then the fd, then the fs
        if length <= 0:
            want = errno.EINVAL
        elif mode == FALLOC_FL_PUNCH_HOLE:
            want = EOPNOTSUPP
        elif not h.writable:
            want = errno.EBADF
        elif mode & FALLOC_FL_ZERO_RANGE and not self.zero_range:
            want = EOPNOTSUPP
        else:
            want = None
        self.expect_errno(desc, want, fn)
        if want is not None:
            return desc
        if mode & FALLOC_FL_PUNCH_HOLE:
            zero(data, off, off + length)
        elif mode & FALLOC_FL_ZERO_RANGE:
            zero(data, off, off + length)
            if not mode & FALLOC_FL_KEEP_SIZE and off + length > len(data):
                resize(data, off + length)
        elif not mode & FALLOC_FL_KEEP_SIZE and off + length > len(data):
            resize(data, off + length)
        self.touched = h.inode
        return desc

    def op_fsync(self):
        h = self.pick_handle()
        if h is None:
            return self.op_open()
        desc = f"fsync({h})"
        self.expect_errno(desc, None, lambda: os.fsync(h.fd))
        return desc

    def op_rename(self):
        a, b = self.pick_name(), self.pick_name()
        r = self.rng.random()
        flags = 0 if r < 0.7 else (RENAME_NOREPLACE if r < 0.85 else RENAME_EXCHANGE)
        fl = {0: "", RENAME_NOREPLACE: ", NOREPLACE", RENAME_EXCHANGE: ", EXCHANGE"}[flags]
        desc = f"rename({a}, {b}{fl})"
        fn = (lambda: os.rename(self.p(a), self.p(b))) if flags == 0 else \
            (lambda: renameat2(self.p(a), self.p(b), flags))
        ia = self.names.get(a, "dir" if a == DIRNAME else None)
        ib = self.names.get(b, "dir" if b == DIRNAME else None)
        if ia is None:
            self.expect_errno(desc, errno.ENOENT, fn)
            return desc
        if flags == RENAME_EXCHANGE:
            if ib is None:
                self.expect_errno(desc, errno.ENOENT, fn)
                return desc
            self.expect_errno(desc, None, fn)
            if a != b:
                self.swap(a, b, ia, ib)
            return desc
        if flags == RENAME_NOREPLACE and ib is not None:
            self.expect_errno(desc, errno.EEXIST, fn)
            return desc
        if ia is ib:                            # same name or two links of one inode: nothing happens
            self.expect_errno(desc, None, fn)
            return desc
        if ia == "dir" and ib is not None:
            self.expect_errno(desc, errno.ENOTDIR, fn)
            return desc
        if ib == "dir":
            self.expect_errno(desc, errno.EISDIR, fn)
            return desc
        self.expect_errno(desc, None, fn)
        if ia == "dir":                         # the directory moved to a free file name: move it back
            os.rename(self.p(b), self.p(a))
            return desc + " (moved back)"
        if ib is not None:
            ib.nlink -= 1
        self.names[b] = ia
        del self.names[a]
        return desc

    def swap(self, a, b, ia, ib):
        if "dir" in (ia, ib):                   # exchange with the directory: swap it back
            renameat2(self.p(a), self.p(b), RENAME_EXCHANGE)
            return
        self.names[a], self.names[b] = ib, ia

    def op_link(self):
        a, b = self.pick_name(), self.pick_name()
        desc = f"link({a}, {b})"
        fn = lambda: os.link(self.p(a), self.p(b))  # noqa: E731
        if a != DIRNAME and a not in self.names:
            want = errno.ENOENT
        elif b == DIRNAME or b in self.names:
            want = errno.EEXIST
        elif a == DIRNAME:
            want = errno.EPERM
        else:
            want = None
        self.expect_errno(desc, want, fn)
        if want is None:
            self.names[b] = self.names[a]
            self.names[a].nlink += 1
        return desc

    def op_unlink(self):
        name = self.pick_name()
        desc = f"unlink({name})"
        fn = lambda: os.unlink(self.p(name))  # noqa: E731
        if name == DIRNAME:
            self.expect_errno(desc, errno.EISDIR, fn)
        elif name not in self.names:
            self.expect_errno(desc, errno.ENOENT, fn)
        else:
            self.expect_errno(desc, None, fn)
            self.names.pop(name).nlink -= 1
        return desc

    def xattr_target(self):
        """(description, path-or-fd, model dict or None if the path does not exist)."""
        if self.handles and self.rng.random() < 0.3:
            h = self.pick_handle()
            return repr(h), h.fd, h.inode.xattrs
        name = self.pick_name()
        if name == DIRNAME:
            return name, self.p(name), self.dir_xattrs
        i = self.names.get(name)
        return name, self.p(name), (i.xattrs if i else None)

    def op_setxattr(self):
        what, target, model = self.xattr_target()
        key = self.rng.choice(XNAMES)
        value = self.rng.randbytes(self.rng.choice([0, 1, 7, 100, 300]))
        flags = self.rng.choice([0, 0, os.XATTR_CREATE, os.XATTR_REPLACE])
        desc = f"setxattr({what}, {key}, {len(value)} bytes, {['0', 'CREATE', 'REPLACE'][flags]})"
        fn = lambda: os.setxattr(target, key, value, flags)  # noqa: E731
        if model is None:
            want = errno.ENOENT
        elif flags == os.XATTR_CREATE and key in model:
            want = errno.EEXIST
        elif flags == os.XATTR_REPLACE and key not in model:
            want = errno.ENODATA
        else:
            want = None
        self.expect_errno(desc, want, fn)
        if want is None:
            model[key] = value
        return desc

    def op_getxattr(self):
        what, target, model = self.xattr_target()
        key = self.rng.choice(XNAMES)
        desc = f"getxattr({what}, {key})"
        fn = lambda: os.getxattr(target, key)  # noqa: E731
        if model is None:
            self.expect_errno(desc, errno.ENOENT, fn)
        elif key not in model:
            self.expect_errno(desc, errno.ENODATA, fn)
        else:
            got = self.expect_errno(desc, None, fn)
            if got != model[key]:
                self.fail(f"{desc}: got {got[:32].hex()} ({len(got)} bytes), model {model[key][:32].hex()} "
                          f"({len(model[key])} bytes)")
        return desc

    def op_removexattr(self):
        what, target, model = self.xattr_target()
        key = self.rng.choice(XNAMES)
        desc = f"removexattr({what}, {key})"
        fn = lambda: os.removexattr(target, key)  # noqa: E731
        want = errno.ENOENT if model is None else (errno.ENODATA if key not in model else None)
        self.expect_errno(desc, want, fn)
        if want is None:
            del model[key]
        return desc

    def op_listxattr(self):
        what, target, model = self.xattr_target()
        desc = f"listxattr({what})"
        fn = lambda: os.listxattr(target)  # noqa: E731
        if model is None:
            self.expect_errno(desc, errno.ENOENT, fn)
            return desc
        got = self.expect_errno(desc, None, fn)
        got = sorted(n for n in got if n.startswith("user.") and not n.startswith("user.ksm."))
        if got != sorted(model):
            self.fail(f"{desc}: got {got}, model {sorted(model)}")
        return desc

    OPS = [("open", 10), ("close", 6), ("read", 6), ("pread", 8), ("write", 8), ("pwrite", 12),
           ("lseek", 3), ("mmap", 7), ("ftruncate", 5), ("truncate", 4), ("fallocate", 8),
           ("fsync", 2), ("rename", 5), ("link", 4), ("unlink", 4), ("setxattr", 4),
           ("getxattr", 3), ("removexattr", 2), ("listxattr", 2)]

    def step(self):
        names, weights = zip(*self.OPS)
        op = self.rng.choices(names, weights)[0]
        self.touched = None
        fn = {"read": lambda: self.op_read(False), "pread": lambda: self.op_read(True),
              "write": lambda: self.op_write(False), "pwrite": lambda: self.op_write(True)}.get(op)
        desc = fn() if fn else getattr(self, "op_" + op)()
        self.counts[op] += 1
        return desc

    # ------------------------------------------------------------ main loop

    def run(self):
        self.reset()
        started = time.monotonic()
        i = 0
        try:
            for i in range(1, self.steps + 1):
                desc = None
                try:
                    desc = self.step()
                    self.trace.append(f"{i}: {desc}")
                    if self.verbose:
                        print(f"  {i}: {desc}", flush=True)
                    self.check_namespace()
                    if self.touched is not None:
                        self.check_data(self.touched, desc)
                    if i % 25 == 0:
                        for inode in self.all_inodes():
                            self.check_data(inode, f"step {i} (periodic check of every file, cold)", cold=True)
                except (Mismatch, OSError) as e:
                    kind = "mismatch" if isinstance(e, Mismatch) else "unexpected OSError in the harness"
                    if desc is None:
                        desc = "(the step itself)"
                        self.trace.append(f"{i}: {desc} -> {e}")
                    self.mismatches.append(i)
                    print(f"exercise: MISMATCH at step {i} ({kind}): {e}\n  last operations:\n    "
                          + "\n    ".join(self.trace), file=sys.stderr, flush=True)
                    if len(self.mismatches) >= self.max_mismatches:
                        print("exercise: too many mismatches, stopping", file=sys.stderr)
                        break
                    self.trace.clear()
                    self.reset()
        finally:
            for h in self.handles:
                try:
                    os.close(h.fd)
                except OSError:
                    pass
            self.handles = []
            shutil.rmtree(self.dir, ignore_errors=True)
        return i, time.monotonic() - started


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__ or "random-syscall exerciser with a model")
    ap.add_argument("--target", required=True, help="directory to run in (a tmpfs validates the model)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--max-mismatches", type=int, default=20)
    ap.add_argument("--zero-range", choices=["auto", "yes", "no"], default="auto",
                    help="whether fallocate ZERO_RANGE is expected to work (auto: not on tmpfs)")
    ap.add_argument("--avoid", action="append", default=[], choices=["rdonly-trunc"],
                    help="leave out a case (e.g. a known bug) to look past it: rdonly-trunc = "
                         "open(O_RDONLY|O_TRUNC)")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every operation")
    a = ap.parse_args(argv)
    if not os.path.isdir(a.target):
        ap.error(f"--target {a.target} is not a directory")
    zr = None if a.zero_range == "auto" else a.zero_range == "yes"
    ex = Exerciser(a.target, a.seed, a.steps, a.verbose, a.max_mismatches, zr, a.avoid)
    steps, secs = ex.run()
    ops = " ".join(f"{k}={v}" for k, v in sorted(ex.counts.items()))
    print(f"exercise: {steps} steps on {ex.fstype} in {secs:.1f}s, {ex.bytes_checked / 1e6:.1f} MB checked ({ops})",
          file=sys.stderr)
    print(f"exercise: {steps} steps, seed {a.seed}, {len(ex.mismatches)} mismatches", flush=True)
    return 1 if ex.mismatches else 0


if __name__ == "__main__":
    sys.exit(main())
