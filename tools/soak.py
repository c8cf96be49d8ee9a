#!/usr/bin/env python3
# Soak test under load: worker processes write (pwrite, aligned and not), mmap-write (MAP_SHARED
# + msync), truncate up and down, punch holes, copy (copy_file_range), rename, unlink and
# recreate files made mostly of a small pool of page patterns, so pages merge and break all
# the time, while a controller toggles ksm/run between 0, 1 and 2 with the scanner at full speed
# and injects faults (daemon stalls, per-file unmerge, tunable changes, bad control writes).
# Every worker keeps a byte-exact model of its own files and checks every byte of the file
# it touched after every step (pread after fsync, and through the mapping for mmap steps),
# and all its files every --verify-every steps, half the time with the page cache dropped so
# the daemon serves the read.
#
#   python3 tools/soak.py --seconds 600 [--seed S] [--procs 4] [--mnt MOUNT|none] [--no-faults]
#                         [--opts no_writeback_cache] [--ops N] [--max-file-kib K]
#
# Without --mnt (or with --mnt none) it mounts ksmfs itself (size=2g) with the integration
# tests' harness and also checks the daemon: alive throughout, clean unmount and exit 0, and
# no line of its log containing "error", "fatal" or "fault". The last line is the summary:
#   soak: N operations, X GB verified, 0 mismatches, 0 errors, 0 daemon errors, T run toggles, F faults injected, seed S
# Exit status 1 on any mismatch, unexpected errno, hang, dead daemon or bad log line.
# Each worker's sequence of operations is a function of (seed, worker index) alone; the
# interleaving with the controller and the scanner is not, so a mismatch report carries the
# worker, its step number and its last operations.

import argparse
import collections
import contextlib
import errno
import mmap
import multiprocessing as mp
import os
import queue
import random
import re
import shutil
import signal
import sys
import tempfile
import time
import traceback

TESTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "IntegrationTests")
sys.path.insert(0, os.path.abspath(TESTS))
from fsops import FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, fallocate, is_mounted  # noqa: E402

PAGE = 4096
MiB = 1 << 20
DEAD = (errno.ENOTCONN, errno.ECONNABORTED)   # what a dead FUSE daemon answers
LOG_BAD = re.compile(r"error|fatal|fault", re.I)
OPS = [("write_pages", 20), ("write_unaligned", 14), ("mmap_write", 12), ("truncate", 8),
       ("punch", 8), ("copy_range", 8), ("copy_file", 5), ("rename", 5), ("unlink", 3),
       ("recreate", 7), ("mergeable", 2)]


def make_pool(seed, n=12):
    """The page patterns every worker draws from (same for all workers, so files of different
    workers merge too): the zero page, pages of one repeated byte, random pages, and a few
    near-duplicates of a random page."""
    r = random.Random(f"ksmfs-soak/pool/{seed}")
    pool = [bytes(PAGE)]
    pool += [bytes([r.randrange(1, 256)]) * PAGE for _ in range(3)]
    rand = [r.randbytes(PAGE) for _ in range(n - 7)]
    pool += rand
    for _ in range(3):
        p = bytearray(rand[0])
        p[r.randrange(PAGE)] ^= 0xFF
        pool.append(bytes(p))
    return pool


# ---------------------------------------------------------------- worker

class Worker:
    def __init__(self, index, args, root, pool, deadline, progress, current):
        self.index = index
        self.rng = random.Random(f"ksmfs-soak/{args.seed}/{index}")
        self.dir = os.path.join(root, f"w{index}")
        self.pool = pool
        self.deadline = deadline
        self.max_pages = args.max_file_kib * 1024 // PAGE
        self.max_size = self.max_pages * PAGE
        self.verify_every = args.verify_every
        self.ops_limit = args.ops
        self.progress = progress       # shared: operations done, per worker
        self.current = current         # shared: index of the operation in progress (for hangs)
        self.names = [f"f{k}" for k in range(args.files)]
        self.files = {}                # name -> bytearray: the model
        self.mergeable_xattr = args.ksmfs
        self.trace = collections.deque(maxlen=12)
        self.ops = collections.Counter()
        self.verified = 0
        self.mismatches = []
        self.errors = []
        self.dead = False

    def p(self, name):
        return os.path.join(self.dir, name)

    # ---------------------------------------------------------------- data

    def page(self):
        r = self.rng.random()
        if r < 0.85:
            return self.pool[self.rng.randrange(len(self.pool))]
        if r < 0.95:                       # a pool page with one of a few small edits: merges too
            p = bytearray(self.pool[self.rng.randrange(len(self.pool))])
            p[self.rng.choice((0, 1, 2048, 4095))] = self.rng.choice((0x11, 0x22))
            return bytes(p)
        return self.rng.randbytes(PAGE)    # unique

    def pages(self, n):
        return b"".join(self.page() for _ in range(n))

    def bytes_(self, n):
        """Unaligned data: a slice of pool pages at a random shift, or random bytes."""
        if self.rng.random() < 0.6:
            src = self.pages(n // PAGE + 2)
            s = self.rng.randrange(PAGE)
            return src[s:s + n]
        return self.rng.randbytes(n)

    def pick_existing(self):
        have = sorted(self.files)
        return self.rng.choice(have) if have else None

    # ---------------------------------------------------------------- verification

    @staticmethod
    def read_all(fd, hint):
        out = bytearray()
        while True:
            chunk = os.pread(fd, max(MiB, hint + 1 - len(out)), len(out))
            if not chunk:
                return out
            out += chunk

    def verify(self, name, step, what, cold=None, fd=None):
        """fsync, then pread the whole file and compare every byte with the model."""
        if cold is None:
            cold = self.rng.random() < 0.3
        own = fd is None
        if own:
            fd = os.open(self.p(name), os.O_RDONLY)
        try:
            os.fsync(fd)
            if cold:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            size = os.fstat(fd).st_size
            got = self.read_all(fd, len(self.files[name]))
        finally:
            if own:
                os.close(fd)
        want = self.files[name]
        self.verified += len(got)
        if got != want or size != len(want):
            self.mismatch(step, what, name, got, want, size, "pread" + (" (cold)" if cold else ""))

    def mismatch(self, step, what, name, got, want, size, how):
        n = min(len(got), len(want))
        at = next((i for i in range(n) if got[i] != want[i]), n)
        pages = sorted({i // PAGE for i in range(n) if got[i] != want[i]})[:20] if n < 8 * MiB else []
        msg = (f"worker {self.index} step {step} after {what}: {name} via {how}: st_size {size}, "
               f"{len(got)} bytes read, model {len(want)}; first difference at {at} "
               f"(page {at // PAGE}+{at % PAGE}): got {bytes(got[at:at + 16]).hex()} want "
               f"{bytes(want[at:at + 16]).hex()}; differing pages {pages}; last operations: "
               + " | ".join(self.trace))
        self.mismatches.append(msg)
        print("soak: MISMATCH " + msg, file=sys.stderr, flush=True)
        self.files[name] = bytearray(got)    # resync, so one corruption is reported once

    def verify_all(self, step):
        listed = sorted(os.listdir(self.dir))
        if listed != sorted(self.files):
            msg = (f"worker {self.index} step {step}: directory lists {listed}, model has "
                   f"{sorted(self.files)}; last operations: " + " | ".join(self.trace))
            self.mismatches.append(msg)
            print("soak: MISMATCH " + msg, file=sys.stderr, flush=True)
            self.resync_names()
        cold = self.rng.random() < 0.5
        for name in sorted(self.files):
            self.verify(name, step, "periodic check", cold=cold)

    def resync_names(self):
        listed = set(os.listdir(self.dir))
        for name in list(self.files):
            if name not in listed:
                del self.files[name]
        for name in listed:
            if name not in self.files:
                with open(self.p(name), "rb") as f:
                    self.files[name] = bytearray(f.read())

    # ---------------------------------------------------------------- operations
    # Each returns (description, names to verify).

    def op_write_pages(self):
        name = self.rng.choice(self.names)
        first = self.rng.randrange(self.max_pages)
        n = min(self.rng.randint(1, 16), self.max_pages - first)
        data = self.pages(n)
        fd = os.open(self.p(name), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            assert os.pwrite(fd, data, first * PAGE) == len(data), "short pwrite"
        finally:
            os.close(fd)
        self.put(name, first * PAGE, data)
        return f"pwrite {name} pages {first}+{n}", [name]

    def op_write_unaligned(self):
        name = self.rng.choice(self.names)
        off = self.rng.randrange(self.max_size)
        n = min(self.rng.choice((1, 7, 100, PAGE - 1, PAGE + 1, self.rng.randint(1, 3 * PAGE))), self.max_size - off)
        data = self.bytes_(n)
        fd = os.open(self.p(name), os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            assert os.pwrite(fd, data, off) == len(data), "short pwrite"
        finally:
            os.close(fd)
        self.put(name, off, data)
        return f"pwrite {name} @{off}+{n}", [name]

    def op_mmap_write(self, step):
        name = self.pick_existing()
        if name is None or not self.files[name]:
            return self.op_write_pages()
        model = self.files[name]
        size = len(model)
        fd = os.open(self.p(name), os.O_RDWR)
        stores = []
        try:
            with mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE) as m:
                for _ in range(self.rng.randint(1, 6)):
                    if self.rng.random() < 0.6 and size >= PAGE:
                        pg = self.rng.randrange(size // PAGE)
                        buf = self.page()
                        s = pg * PAGE
                    else:
                        s = self.rng.randrange(size)
                        buf = self.bytes_(min(self.rng.randint(1, 2 * PAGE), size - s))
                    m[s:s + len(buf)] = buf
                    model[s:s + len(buf)] = buf
                    stores.append(f"{s}+{len(buf)}")
                m.flush()                                   # msync(MS_SYNC)
                desc = f"mmap-write {name} size {size} stores {','.join(stores)} msync"
                got = m[:]                                  # through the mapping
                self.verified += len(got)
                if got != model:
                    self.mismatch(step, desc, name, got, model, size, "the mapping")
            self.verify(name, step, desc, fd=fd)            # and with pread after fsync
        finally:
            os.close(fd)
        return desc, []

    def op_truncate(self):
        name = self.pick_existing()
        if name is None:
            return self.op_write_pages()
        cur = len(self.files[name])
        r = self.rng.random()
        if r < 0.3:
            size = self.rng.randrange(self.max_pages + 1) * PAGE
        elif r < 0.5:
            size = max(0, min(self.max_size, cur + self.rng.randint(-3 * PAGE, 3 * PAGE)))
        elif r < 0.55:
            size = 0
        else:
            size = self.rng.randrange(self.max_size + 1)
        fd = os.open(self.p(name), os.O_WRONLY)
        try:
            os.ftruncate(fd, size)
        finally:
            os.close(fd)
        m = self.files[name]
        if size < len(m):
            del m[size:]
        else:
            m.extend(bytes(size - len(m)))
        return f"truncate {name} {cur} -> {size}", [name]

    def op_punch(self):
        name = self.pick_existing()
        if name is None:
            return self.op_write_pages()
        if self.rng.random() < 0.6:
            off = self.rng.randrange(self.max_pages) * PAGE
            n = self.rng.randint(1, 32) * PAGE
        else:
            off = self.rng.randrange(self.max_size)
            n = self.rng.randint(1, 5 * PAGE)
        fd = os.open(self.p(name), os.O_WRONLY)
        try:
            fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, off, n)
        finally:
            os.close(fd)
        m = self.files[name]
        end = min(off + n, len(m))
        if off < end:
            m[off:end] = bytes(end - off)
        return f"punch {name} @{off}+{n}", [name]

    def copy(self, src, dst, sfd, dfd, n, so, do):
        """copy_file_range until `n` bytes are copied or the source ends, applying each call's
        effect to the model as it returns (a copy within one file can grow its own source).
        Each call must copy exactly what the model says is there. Returns bytes copied."""
        done = 0
        while done < n:
            want = bytes(self.files[src][so + done:so + n])
            c = os.copy_file_range(sfd, dfd, n - done, so + done, do + done)
            if c != len(want) and not (0 < c < len(want)):
                raise AssertionError(f"copy_file_range {src}@{so + done} -> {dst}@{do + done} "
                                     f"n {n - done}: copied {c}, the source has {len(want)} bytes there")
            if c == 0:
                break
            self.put(dst, do + done, want[:c])
            done += c
        return done

    def op_copy_range(self):
        src = self.pick_existing()
        if src is None:
            return self.op_write_pages()
        dst = self.rng.choice(self.names)
        aligned = self.rng.random() < 0.6
        if aligned:
            so = self.rng.randrange(self.max_pages) * PAGE
            do = self.rng.randrange(self.max_pages) * PAGE
            n = self.rng.randint(1, 32) * PAGE
        else:
            so = self.rng.randrange(self.max_size)
            do = self.rng.randrange(self.max_size)
            n = self.rng.randint(1, 5 * PAGE)
        n = min(n, self.max_size - do)
        if dst == src and so < do + n and do < so + n:   # overlapping ranges of one file: EINVAL
            dst = self.rng.choice([x for x in self.names if x != src])
        sfd = os.open(self.p(src), os.O_RDONLY)
        try:
            dfd = os.open(self.p(dst), os.O_WRONLY | os.O_CREAT, 0o644)
            self.files.setdefault(dst, bytearray())
            try:
                done = self.copy(src, dst, sfd, dfd, n, so, do)
            finally:
                os.close(dfd)
        finally:
            os.close(sfd)
        return f"copy_file_range {src}@{so} -> {dst}@{do} n {n} ({done})", [dst]

    def op_copy_file(self):
        src = self.pick_existing()
        if src is None:
            return self.op_write_pages()
        dst = self.rng.choice([x for x in self.names if x != src])
        sfd = os.open(self.p(src), os.O_RDONLY)
        try:
            dfd = os.open(self.p(dst), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            self.files[dst] = bytearray()
            try:
                done = self.copy(src, dst, sfd, dfd, len(self.files[src]), 0, 0)
            finally:
                os.close(dfd)
        finally:
            os.close(sfd)
        if done != len(self.files[src]):
            raise AssertionError(f"copy {src} -> {dst}: {done} of {len(self.files[src])} bytes copied")
        return f"copy {src} -> {dst} ({done})", [dst]

    def op_rename(self):
        src = self.pick_existing()
        if src is None:
            return self.op_write_pages()
        dst = self.rng.choice(self.names)
        os.rename(self.p(src), self.p(dst))
        if dst != src:
            self.files[dst] = self.files.pop(src)
            if os.path.lexists(self.p(src)):
                raise AssertionError(f"rename {src} -> {dst}: {src} still exists")
        return f"rename {src} -> {dst}", [dst]

    def op_unlink(self):
        name = self.pick_existing()
        if name is None:
            return self.op_write_pages()
        os.unlink(self.p(name))
        del self.files[name]
        if os.path.lexists(self.p(name)):
            raise AssertionError(f"unlink {name}: still exists")
        return f"unlink {name}", []

    def op_recreate(self):
        name = self.rng.choice(self.names)
        n = self.rng.randint(0, self.max_pages)
        data = self.pages(n)
        if self.rng.random() < 0.3 and n:
            data = data[:-self.rng.randint(1, PAGE - 1)]   # a ragged end
        if name in self.files and self.rng.random() < 0.5:
            os.unlink(self.p(name))
            del self.files[name]
        fd = os.open(self.p(name), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        self.files[name] = bytearray()
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
        finally:
            os.close(fd)
        self.files[name] = bytearray(data)
        return f"recreate {name} {len(data)} bytes", [name]

    def op_mergeable(self):
        name = self.pick_existing()
        if name is None or not self.mergeable_xattr:
            return self.op_write_pages()
        v = self.rng.choice((b"0", b"1", b"1"))
        os.setxattr(self.p(name), "user.ksm.mergeable", v)
        return f"user.ksm.mergeable={v.decode()} {name}", [name]

    def put(self, name, off, data):
        m = self.files.setdefault(name, bytearray())
        if off > len(m):
            m.extend(bytes(off - len(m)))
        m[off:off + len(data)] = data

    # ---------------------------------------------------------------- loop

    def run(self):
        os.mkdir(self.dir)
        names, weights = zip(*OPS)
        step = 0
        while time.monotonic() < self.deadline and not self.dead and (not self.ops_limit or step < self.ops_limit):
            step += 1
            op = self.rng.choices(names, weights)[0]
            self.current.value = names.index(op) + 1
            desc = op
            try:
                desc, touched = self.op_mmap_write(step) if op == "mmap_write" else getattr(self, "op_" + op)()
                self.trace.append(f"{step}:{desc}")
                for name in touched:
                    self.verify(name, step, desc)
                if step % self.verify_every == 0:
                    self.verify_all(step)
            except (OSError, AssertionError) as e:
                self.trace.append(f"{step}:{desc} -> {e!r}")
                if isinstance(e, OSError) and e.errno in DEAD:
                    self.dead = True
                msg = (f"worker {self.index} step {step} {desc}: {e!r}; last operations: " + " | ".join(self.trace))
                self.errors.append(msg)
                print("soak: ERROR " + msg, file=sys.stderr, flush=True)
                if not self.dead:
                    with contextlib.suppress(OSError):
                        self.resync_names()
            self.ops[op] += 1
            self.progress.value = step
        self.current.value = 0
        return step


def worker_main(index, args, root, pool, deadline, progress, current, results):
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    w = Worker(index, args, root, pool, deadline, progress, current)
    try:
        steps = w.run()
    except BaseException:   # noqa: BLE001 - a crash is reported, not swallowed
        w.errors.append(f"worker {index} crashed: {traceback.format_exc()}")
        steps = w.progress.value
    results.put({"index": index, "steps": steps, "verified": w.verified, "ops": dict(w.ops),
                 "mismatches": w.mismatches, "errors": w.errors})


# ---------------------------------------------------------------- controller

def ksm_path(mnt, name):
    return os.path.join(mnt, "ksm", name)


def ksm_get(mnt, name):
    with open(ksm_path(mnt, name)) as f:
        return f.read().strip()


def ksm_set(mnt, name, value):
    fd = os.open(ksm_path(mnt, name), os.O_WRONLY)
    try:
        data = f"{value}\n".encode()
        n = os.write(fd, data)
        if n != len(data):
            raise OSError(errno.EIO, f"short write {n} to ksm/{name}")
    finally:
        os.close(fd)


def controller_main(args, mnt, root, daemon_pid, deadline, sharing, results):
    """Toggle run between 0, 1 and 2 at random intervals, check what can be checked about the
    counters at that moment, and inject faults."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    rng = random.Random(f"ksmfs-soak/{args.seed}/controller")
    toggles = collections.Counter()
    faults = collections.Counter()
    errors = []
    max_sharing = 0

    def err(msg):
        errors.append(msg)
        print("soak: CONTROLLER ERROR " + msg, file=sys.stderr, flush=True)

    while time.monotonic() < deadline and len(errors) < 20:
        time.sleep(min(rng.choice((0.05, 0.2, 0.5, 1.0, 2.0, 3.0)) * rng.random() * 2,
                       max(0, deadline - time.monotonic())))
        if time.monotonic() >= deadline:
            break
        try:
            sharing.value = int(ksm_get(mnt, "pages_sharing"))
            max_sharing = max(max_sharing, sharing.value)
            v = rng.choices((0, 1, 2), (2, 5, 3))[0]
            t0 = time.monotonic()
            ksm_set(mnt, "run", v)
            took = time.monotonic() - t0
            toggles[v] += 1
            now = ksm_get(mnt, "run")
            if now != str(v):
                err(f"wrote {v} to ksm/run, it reads {now!r}")
            if v == 2:
                # run=2 is synchronous: nothing is merged once it returns, and nothing merges
                # again until run=1
                sh, sg = ksm_get(mnt, "pages_shared"), ksm_get(mnt, "pages_sharing")
                if (sh, sg) != ("0", "0"):
                    err(f"right after run=2 ({took:.2f}s): pages_shared {sh}, pages_sharing {sg} (want 0, 0)")
            if not args.faults:
                continue
            f = rng.random()
            if f < 0.25 and daemon_pid:
                # a daemon stall: every FUSE request and the scanner wait
                os.kill(daemon_pid, signal.SIGSTOP)
                time.sleep(rng.uniform(0.02, 0.3))
                os.kill(daemon_pid, signal.SIGCONT)
                faults["daemon SIGSTOP/SIGCONT"] += 1
            elif f < 0.45:
                # unmerge one random file now (like MADV_UNMERGEABLE), then opt back in
                w = rng.randrange(args.procs)
                name = os.path.join(root, f"w{w}", f"f{rng.randrange(args.files)}")
                try:
                    os.setxattr(name, "user.ksm.mergeable", b"0")
                    time.sleep(rng.uniform(0, 0.1))
                    os.setxattr(name, "user.ksm.mergeable", b"1")
                    faults["unmerge a file under its writer"] += 1
                except FileNotFoundError:
                    pass
            elif f < 0.55:
                # bad control writes must be refused with EINVAL and change nothing
                name, bad = rng.choice((("run", "3"), ("run", "x"), ("pages_to_scan", "-1"),
                                        ("sleep_millisecs", "abc"), ("max_page_sharing", "1")))
                before = ksm_get(mnt, name)
                try:
                    ksm_set(mnt, name, bad)
                    err(f"writing {bad!r} to ksm/{name} succeeded (want EINVAL)")
                except OSError as e:
                    if e.errno != errno.EINVAL:
                        err(f"writing {bad!r} to ksm/{name}: {e!r} (want EINVAL)")
                if ksm_get(mnt, name) != before:
                    err(f"ksm/{name} changed from {before} after a refused write")
                faults["bad control write"] += 1
            elif f < 0.65 and v == 2:
                # with nothing merged, max_page_sharing may change: small values build chains
                mps = rng.choice((2, 3, 8, 256, 256))
                ksm_set(mnt, "max_page_sharing", mps)
                faults[f"max_page_sharing={mps}"] += 1
            elif f < 0.75:
                z = rng.choice((0, 1))
                ksm_set(mnt, "use_zero_pages", z)
                faults[f"use_zero_pages={z}"] += 1
            elif f < 0.8:
                s = rng.choice((0, 1))
                ksm_set(mnt, "smart_scan", s)
                faults[f"smart_scan={s}"] += 1
        except OSError as e:
            if e.errno in DEAD or not os.path.exists(ksm_path(mnt, "run")):
                err(f"the mount is gone: {e!r}")
                break
            if e.errno == errno.EBUSY:      # max_page_sharing while merged: the kernel's answer too
                continue
            err(f"{e!r}")
    if daemon_pid:
        with contextlib.suppress(OSError):
            os.kill(daemon_pid, signal.SIGCONT)
    results.put({"index": "controller", "toggles": dict(toggles), "faults": dict(faults),
                 "errors": errors, "max_sharing": max_sharing})


def trace_reader_main(mnt, results):
    """Reads ksm/trace for the whole run (formatting events is more load on the scanner) and
    checks that every line looks like an event."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    bad = []
    events = collections.Counter()

    def stop(*_):
        results.put({"index": "trace", "events": dict(events), "errors": bad[:5]})
        results.close()
        results.join_thread()      # flush the queue before leaving without the usual exit path
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    try:
        with open(ksm_path(mnt, "trace"), "rb", buffering=0) as f:
            pending = b""
            while True:
                chunk = f.read(65536)
                if not chunk:
                    break
                lines = (pending + chunk).split(b"\n")
                pending = lines.pop()
                for line in lines:
                    m = re.search(rb"\b(ksm_[a-z_]+)\b", line)
                    if m:
                        events[m.group(1).decode()] += 1
                    elif b"lost" not in line and line.strip():
                        bad.append(line[:200].decode(errors="replace"))
    except OSError as e:
        if e.errno not in DEAD:
            bad.append(f"reading ksm/trace: {e!r}")
    stop()


# ---------------------------------------------------------------- main

def listed_in_proc_mounts(mnt):
    """Whether `mnt` (an absolute, resolved path) is a mountpoint, from /proc/mounts alone:
    unlike stat or realpath this never waits for the daemon."""
    with open("/proc/mounts") as f:
        return any(line.split()[1].encode().decode("unicode_escape") == mnt for line in f)


def find_connection_abort(mnt):
    """/sys/fs/fuse/connections/N/abort of the mount at `mnt`, for unsticking a hang (found
    through /proc/self/mountinfo: a stat of the mountpoint would wait for the daemon)."""
    minor = None
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[4].encode().decode("unicode_escape") == mnt:
                minor = int(fields[2].split(":")[1])
    path = f"/sys/fs/fuse/connections/{minor}/abort"
    return path if minor is not None and os.path.exists(path) else None


def run_soak(args, mnt, daemon):
    """Run the workers and the controller on the mounted `mnt`. `daemon` is the conftest Mount
    (or None for a mount we did not start). Returns the collected report."""
    report = {"ops": collections.Counter(), "verified": 0, "mismatches": [], "errors": [],
              "daemon_errors": [], "toggles": {}, "faults": {}, "max_sharing": 0, "trace": {}}
    restore = {}
    if daemon is None:        # someone else's mount: put the tunables back afterwards
        restore = {n: ksm_get(mnt, n) for n in ("pages_to_scan", "sleep_millisecs", "max_page_sharing",
                                                 "use_zero_pages", "smart_scan", "run")}
    for name, value in (("pages_to_scan", 10000), ("sleep_millisecs", 0), ("run", 1)):
        ksm_set(mnt, name, value)
    root = os.path.join(mnt, f"soak-{args.seed}-{os.getpid()}")
    os.mkdir(root)
    ctx = mp.get_context("fork")
    results = ctx.Queue()
    pool = make_pool(args.seed)
    start = time.monotonic()
    deadline = start + args.seconds
    progress = [ctx.Value("q", 0, lock=False) for _ in range(args.procs)]
    sharing = ctx.Value("q", 0, lock=False)
    current = [ctx.Value("i", 0, lock=False) for _ in range(args.procs)]
    procs = [ctx.Process(target=worker_main, name=f"soak-worker-{i}",
                         args=(i, args, root, pool, deadline, progress[i], current[i], results))
             for i in range(args.procs)]
    daemon_pid = daemon.pid if (daemon is not None and args.faults) else None
    procs.append(ctx.Process(target=controller_main, name="soak-controller",
                             args=(args, mnt, root, daemon_pid, deadline, sharing, results)))
    tracer = None
    if os.path.exists(ksm_path(mnt, "trace")):
        tracer = ctx.Process(target=trace_reader_main, name="soak-trace", args=(mnt, results))
    for p in procs + ([tracer] if tracer else []):
        p.start()

    got = {}
    expected = list(range(args.procs)) + ["controller"]
    last = [(0, start)] * args.procs
    next_report = start + args.report_every
    hung = None
    try:
        while not all(k in got for k in expected):
            try:
                r = results.get(timeout=0.5)
                got[r["index"]] = r
                if r["index"] == "trace":
                    tracer = None
                continue
            except queue.Empty:
                pass
            now = time.monotonic()
            if daemon is not None and not daemon.alive():
                report["daemon_errors"].append(f"the daemon died (exit code {daemon.proc.returncode}) "
                                               f"after {now - start:.0f}s")
                break
            if not listed_in_proc_mounts(mnt):
                report["daemon_errors"].append(f"{mnt} was unmounted after {now - start:.0f}s")
                break
            for i in range(args.procs):
                v = progress[i].value
                if v != last[i][0]:
                    last[i] = (v, now)
                elif i not in got and now - last[i][1] > args.hang_seconds and current[i].value:
                    hung = (f"worker {i} made no progress for {now - last[i][1]:.0f}s in operation "
                            f"{OPS[current[i].value - 1][0]} (step {v + 1})")
            if hung:
                break
            if now > deadline + args.hang_seconds + 30:
                hung = "workers did not finish: " + ", ".join(
                    f"w{i}" for i in range(args.procs) if i not in got)
                break
            if now >= next_report:
                next_report += args.report_every
                total = sum(p.value for p in progress)
                # (nothing here may touch the mount: a stuck daemon must not stop the watch)
                print(f"soak: {now - start:.0f}s, {total} operations, pages_sharing {sharing.value} "
                      f"at the controller's last look", file=sys.stderr, flush=True)
    finally:
        if hung or not all(k in got for k in expected):
            if hung:
                report["daemon_errors"].append("HANG: " + hung + (
                    f"; daemon threads: {daemon_threads(daemon.pid)}" if daemon is not None else ""))
                print("soak: " + report["daemon_errors"][-1], file=sys.stderr, flush=True)
                abort = find_connection_abort(mnt)
                if abort:   # unstick the processes waiting on the daemon
                    with contextlib.suppress(OSError), open(abort, "w") as f:
                        f.write("1")
            for p in procs:
                if p.is_alive():
                    p.kill()
        for p in procs:
            p.join(10)
        while True:
            try:
                r = results.get(timeout=0.2)
                got.setdefault(r["index"], r)
            except queue.Empty:
                break
        if tracer is not None and tracer.is_alive():
            tracer.terminate()
            with contextlib.suppress(queue.Empty):
                r = results.get(timeout=5)
                got.setdefault(r["index"], r)
            tracer.join(5)
            if tracer.is_alive():
                tracer.kill()

    if daemon is not None and not daemon.alive() and not report["daemon_errors"]:
        report["daemon_errors"].append(f"the daemon died (exit code {daemon.proc.returncode})")
    for i in range(args.procs):
        r = got.get(i)
        if r is None:
            report["errors"].append(f"worker {i} reported nothing (killed or crashed; exit code "
                                    f"{procs[i].exitcode})")
            report["ops"]["(unreported)"] += progress[i].value
            continue
        report["ops"].update(r["ops"])
        report["verified"] += r["verified"]
        report["mismatches"] += r["mismatches"]
        report["errors"] += r["errors"]
    c = got.get("controller")
    if c is None:
        report["errors"].append("the controller reported nothing")
    else:
        report["toggles"], report["faults"] = c["toggles"], c["faults"]
        report["errors"] += c["errors"]
        report["max_sharing"] = c["max_sharing"]
    t = got.get("trace")
    if t is not None:
        report["trace"] = t["events"]
        report["errors"] += [f"ksm/trace: malformed line {x!r}" for x in t["errors"]]
    report["seconds"] = time.monotonic() - start
    if hung:
        return report
    with contextlib.suppress(OSError):
        report["final"] = {n: ksm_get(mnt, n) for n in ("full_scans", "pages_shared", "pages_sharing",
                                                         "cow_ksm", "pages_scanned")}
    if not hung and (daemon is None or daemon.alive()):
        with contextlib.suppress(OSError):
            ksm_set(mnt, "run", 2)
            shutil.rmtree(root)
            for name, value in restore.items():
                if value.startswith("["):      # not a number: leave it
                    continue
                if name != "run" or value != "2":
                    ksm_set(mnt, name, value)
    return report


def daemon_threads(pid):
    """Each thread of the daemon with its state and kernel wait channel (for a hang report)."""
    out = []
    with contextlib.suppress(OSError):
        for tid in sorted(os.listdir(f"/proc/{pid}/task"), key=int):
            with contextlib.suppress(OSError):
                with open(f"/proc/{pid}/task/{tid}/comm") as f:
                    comm = f.read().strip()
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    state = f.read().rsplit(")", 1)[1].split()[0]
                with open(f"/proc/{pid}/task/{tid}/wchan") as f:
                    wchan = f.read().strip()
                out.append(f"{tid}:{comm}:{state}:{wchan}")
    return ", ".join(out)


def scan_log(path):
    bad = []
    with contextlib.suppress(OSError), open(path, errors="replace") as f:
        for line in f:
            if line.startswith("$ "):      # the harness's own command line
                continue
            if LOG_BAD.search(line):
                bad.append(line.rstrip()[:300])
    return bad


def main(argv=None):
    ap = argparse.ArgumentParser(description="ksmfs soak test under load (see the top of this file)")
    ap.add_argument("--seconds", type=float, default=600)
    ap.add_argument("--seed", type=int, default=None, help="master seed (default: random, printed)")
    ap.add_argument("--procs", type=int, default=4, help="worker processes")
    ap.add_argument("--mnt", default="none", help="an existing ksmfs mount to use, or none (mount one)")
    ap.add_argument("--size", default="2g", help="size= of the mount made here")
    ap.add_argument("--opts", default="", help="more mount options for the mount made here (e.g. no_writeback_cache)")
    ap.add_argument("--files", type=int, default=6, help="file names per worker")
    ap.add_argument("--max-file-kib", type=int, default=1024)
    ap.add_argument("--verify-every", type=int, default=50, help="check all of a worker's files every N steps")
    ap.add_argument("--ops", type=int, default=0, help="stop each worker after N operations (0: time only)")
    ap.add_argument("--hang-seconds", type=float, default=60, help="a worker stuck this long is a hang")
    ap.add_argument("--report-every", type=float, default=30, help="progress line interval on stderr")
    ap.add_argument("--no-faults", dest="faults", action="store_false",
                    help="no fault injection (daemon stalls, unmerges, tunable changes, bad writes)")
    args = ap.parse_args(argv)
    if args.seed is None:
        args.seed = random.SystemRandom().randrange(1 << 31)
    if os.geteuid() != 0:
        ap.error("run as root (mounting, ksm tunables)")
    print(f"soak: seed {args.seed}, {args.procs} workers, {args.seconds:g}s", file=sys.stderr, flush=True)

    daemon_errors = []
    if args.mnt and args.mnt != "none":
        mnt = os.path.realpath(args.mnt)
        if not os.path.isdir(os.path.join(mnt, "ksm")):
            ap.error(f"{mnt} has no ksm/ directory: not a ksmfs mount")
        args.ksmfs = True
        report = run_soak(args, mnt, None)
        if not is_mounted(mnt):
            daemon_errors.append(f"{mnt} is no longer mounted")
    else:
        from conftest import _mounted   # the integration tests' harness: mount, wait, teardown
        args.ksmfs = True
        base = tempfile.mkdtemp(prefix="ksmfs-soak-")
        os.chmod(base, 0o755)
        report = None
        m = None
        try:
            with _mounted(base, "ksmfs", f"size={args.size}" + (f",{args.opts}" if args.opts else "")) as m:
                report = run_soak(args, os.path.realpath(m.path), m)
        except AssertionError as e:    # the harness's teardown: unclean exit, mount left behind
            daemon_errors.append(f"teardown: {str(e).splitlines()[0]}")
        finally:
            if m is not None and m.log_path:
                bad = scan_log(m.log_path)
                daemon_errors += [f"daemon log: {line}" for line in bad]
                if bad or daemon_errors or (report and (report["daemon_errors"] or report["mismatches"])):
                    kept = os.path.join(tempfile.gettempdir(), f"ksmfs-soak-{args.seed}.log")
                    with contextlib.suppress(OSError):
                        shutil.copyfile(m.log_path, kept)
                        print(f"soak: daemon log kept at {kept}", file=sys.stderr)
            shutil.rmtree(base, ignore_errors=True)
        if report is None:
            print(f"soak: 0 operations, 0.0 GB verified, 0 mismatches, 0 errors, {len(daemon_errors)} "
                  f"daemon errors, 0 run toggles, 0 faults injected, seed {args.seed}")
            return 1

    daemon_errors = report["daemon_errors"] + daemon_errors
    for e in daemon_errors:
        print("soak: DAEMON ERROR " + e, file=sys.stderr)
    ops = sum(report["ops"].values())
    toggles = sum(report["toggles"].values())
    faults = sum(report["faults"].values())
    print(f"soak: {report['seconds']:.0f}s; operations: "
          + ", ".join(f"{k} {v}" for k, v in sorted(report["ops"].items())), file=sys.stderr)
    print("soak: run toggles: " + ", ".join(f"run={k} {v}" for k, v in sorted(report["toggles"].items()))
          + "; faults: " + (", ".join(f"{k} {v}" for k, v in sorted(report["faults"].items())) or "none"),
          file=sys.stderr)
    print(f"soak: ksm: pages_sharing up to {report['max_sharing']}; at the end "
          + ", ".join(f"{k} {v}" for k, v in report.get("final", {}).items())
          + ("; trace events " + str(sum(report["trace"].values())) if report["trace"] else ""), file=sys.stderr)
    for e in report["errors"][:20]:
        print("soak: ERROR " + e, file=sys.stderr)
    print(f"soak: {ops} operations, {report['verified'] / 1e9:.1f} GB verified, "
          f"{len(report['mismatches'])} mismatches, {len(report['errors'])} errors, "
          f"{len(daemon_errors)} daemon errors, {toggles} run toggles, {faults} faults injected, "
          f"seed {args.seed}", flush=True)
    return 1 if (report["mismatches"] or report["errors"] or daemon_errors) else 0


if __name__ == "__main__":
    sys.exit(main())
