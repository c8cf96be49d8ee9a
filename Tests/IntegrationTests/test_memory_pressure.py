# Memory pressure (ksmfs-only): the kernel's KSM pages are swappable, so ksmfs's arena must be
# too. The daemon is put in a memory cgroup (v2 or v1, whichever has the memory controller) with
# a swap file on, 512 MiB of files are written and merged down to 400 MiB of blocks, and the
# cgroup's limit is set to 96 MiB: far below the arena, above the daemon's metadata. Proves:
# the arena's blocks go to swap like any memory, shared blocks among them; the scanner keeps
# passing over swapped pages; files read back intact (from a process outside the cgroup) both
# under the limit and after it is lifted; a shared block stays one block across page-out and
# page-in (same counters and live blocks, every page content in exactly one arena page, each
# shared block at its old offset in the arena's memfd, found through mincore and the memfd);
# copy-on-write works on a swapped shared block; and the daemon is never OOM-killed, down to a
# limit 24 MiB above its metadata. Needs root, a memory cgroup and swap: under CI a missing
# facility is a failure, elsewhere a skip.

import contextlib
import errno
import ctypes
import hashlib
import mmap
import os
import subprocess
import time

import pytest

from fsops import arena_fd, MiB, PAGE, read_cold
from ksmops import counters, kset, settle, start

pytestmark = pytest.mark.ksmfs_only

SWAP_BYTES = 1024 * MiB
FILE_BYTES = 16 * MiB
DUP_FILES = 8        # 8 copies of one 16 MiB random content: 4096 shared blocks, 28672 pages sharing
UNIQUE_FILES = 24    # 384 MiB of random data that cannot merge
LIMIT = 96 * MiB     # the arena holds 400 MiB after merging; this pushes three quarters of it out
FILE_PAGES = FILE_BYTES // PAGE
SHARED = FILE_PAGES
SHARING = (DUP_FILES - 1) * FILE_PAGES
LIVE = FILE_PAGES * (1 + UNIQUE_FILES)


def _unavailable(reason):
    """No cgroup memory controller or no swap: a failure under CI, a skip elsewhere."""
    if os.environ.get("CI"):
        pytest.fail("CI: memory-pressure test cannot run: " + reason)
    pytest.skip(reason)


def _write(path, value):
    with open(path, "w") as f:
        f.write(f"{value}\n")


def _read(path):
    with open(path) as f:
        return f.read()


# ---------------------------------------------------------------- swap file

def _swap_total_and_used():
    total = used = 0
    with open("/proc/swaps") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            total, used = total + int(fields[2]) * 1024, used + int(fields[3]) * 1024
    return total, used


@pytest.fixture
def swap():
    """A 1 GiB swap file on a disk filesystem (never tmpfs), on for the test, then swapped off
    and deleted whatever happened. Swap already configured is fine if it has room enough."""
    candidates = [d for d in ("/var/tmp", "/tmp", os.path.dirname(os.path.abspath(__file__)))
                  if os.path.isdir(d)]
    path, why = None, []
    for d in candidates:
        fstype = subprocess.run(["stat", "-f", "-c", "%T", d], capture_output=True, text=True).stdout.strip()
        if fstype in ("tmpfs", "ramfs", "overlayfs", "nfs", "fuseblk", "fuse"):
            why.append(f"{d} is {fstype}")
            continue
        p = os.path.join(d, f"ksmfs-test-swap-{os.getpid()}")
        errors = []
        for fill in (["fallocate", "-l", str(SWAP_BYTES), p],  # holes are refused by swapon: dd then
                     ["dd", "if=/dev/zero", f"of={p}", "bs=1M", f"count={SWAP_BYTES // MiB}", "status=none"]):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(p)
            steps = [fill, ["chmod", "600", p], ["mkswap", p], ["swapon", p]]
            for cmd in steps:
                r = subprocess.run(cmd, capture_output=True, text=True)
                if r.returncode != 0:
                    errors.append(f"{' '.join(cmd[:2])}: {r.stderr.strip()}")
                    break
            else:
                path = p
                break
        if path:
            break
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)
        why.append(f"swap file in {d} ({fstype}): {'; '.join(errors)}")
    if path is None:
        total, used = _swap_total_and_used()
        if total - used < 512 * MiB:
            _unavailable("no swap could be set up: " + " | ".join(why))
    try:
        yield path
    finally:
        if path:
            r = subprocess.run(["swapoff", path], capture_output=True, text=True)
            assert r.returncode == 0, f"swapoff {path} failed, swap file left on: {r.stderr}"
            os.unlink(path)


# ---------------------------------------------------------------- memory cgroup

class MemoryCgroup:
    """One test cgroup under the memory controller; `v2` selects the file names."""

    def __init__(self, path, v2):
        self.path, self.v2 = path, v2
        self.homes = {}  # pid -> the cgroup directory it came from

    def f(self, name):
        return os.path.join(self.path, name)

    def add(self, pid):
        self.homes[pid] = self._home_of(pid)
        _write(self.f("cgroup.procs"), pid)  # moves every thread of the process

    def _home_of(self, pid):
        mount = os.path.dirname(self.path)
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                _, controllers, rel = line.rstrip("\n").split(":", 2)
                if (self.v2 and controllers == "") or (not self.v2 and "memory" in controllers.split(",")):
                    return os.path.join(mount, rel.lstrip("/"))
        return mount

    def holds(self, pid):
        """Every thread of `pid` is in this cgroup."""
        rel = "/" + os.path.basename(self.path)
        for tid in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{tid}/cgroup") as f:
                lines = [l.rstrip("\n").split(":", 2) for l in f]
            if not any(r == rel and ((self.v2 and c == "") or (not self.v2 and "memory" in c.split(",")))
                       for _, c, r in lines):
                return False
        return True

    def set_limit(self, limit, timeout=30.0):
        """Memory limit in bytes, or None for none. Lowering it reclaims (to swap) at once.
        v1 gives up with EBUSY as soon as one reclaim round frees nothing, which is what the
        first round does to freshly written pages: it only moves the referenced ones to the
        active list. So EBUSY is retried; only one that lasts `timeout` seconds is a failure.
        v2's memory.max retries by itself (and would OOM-kill rather than fail)."""
        if self.v2:
            _write(self.f("memory.max"), "max" if limit is None else limit)
            return
        deadline = time.monotonic() + timeout
        while True:
            try:
                _write(self.f("memory.limit_in_bytes"), -1 if limit is None else limit)
                return
            except OSError as e:
                if e.errno != errno.EBUSY or time.monotonic() > deadline:
                    raise AssertionError(f"cannot set memory.limit_in_bytes to {limit} (usage "
                                         f"{self.usage()}): {e}") from e
                time.sleep(0.05)

    def usage(self):
        return int(_read(self.f("memory.current" if self.v2 else "memory.usage_in_bytes")))

    def oom_kills(self):
        text = _read(self.f("memory.events" if self.v2 else "memory.oom_control"))
        for line in text.splitlines():
            k, _, v = line.partition(" ")
            if k == "oom_kill":
                return int(v)
        return 0  # an old v1 kernel without the count: liveness of the daemon is checked anyway

    def release_all(self):
        """Lift the limit and send every process left back where it came from."""
        with contextlib.suppress(OSError):
            self.set_limit(None)
        for pid in _read(self.f("cgroup.procs")).split():
            home = self.homes.get(int(pid), os.path.dirname(self.path))
            with contextlib.suppress(OSError):
                _write(os.path.join(home, "cgroup.procs"), pid)

    def remove(self):
        deadline = time.monotonic() + 10
        while True:
            try:
                os.rmdir(self.path)
                return
            except FileNotFoundError:
                return
            except OSError:  # EBUSY for a moment after the last task leaves
                if time.monotonic() > deadline:
                    raise
                self.release_all()
                time.sleep(0.1)


def _memory_cgroup_roots():
    """(mountpoint, v2) of the hierarchies that have the memory controller, v2 first."""
    v2, v1 = [], []
    with open("/proc/mounts") as f:
        for line in f:
            _, mnt, fstype, opts = line.split()[:4]
            if fstype == "cgroup2":
                with contextlib.suppress(OSError):
                    if "memory" in _read(os.path.join(mnt, "cgroup.controllers")).split():
                        v2.append((mnt, True))
            elif fstype == "cgroup" and "memory" in opts.split(","):
                v1.append((mnt, False))
    return v2 + v1


@pytest.fixture
def memcg():
    """A fresh memory cgroup at the root of the hierarchy, with swap allowed; removed at the
    end (any process still in it is moved back first)."""
    roots = _memory_cgroup_roots()
    if not roots:
        _unavailable("no cgroup hierarchy (v1 or v2) has the memory controller")
    name = f"ksmfs-test-{os.getpid()}"
    cg, why = None, []
    for root, v2 in roots:
        path = os.path.join(root, name)
        try:
            if v2 and "memory" not in _read(os.path.join(root, "cgroup.subtree_control")).split():
                _write(os.path.join(root, "cgroup.subtree_control"), "+memory")
            os.mkdir(path)
        except OSError as e:
            why.append(f"{path}: {e}")
            continue
        cg = MemoryCgroup(path, v2)
        try:
            if v2:
                if os.path.exists(cg.f("memory.swap.max")):  # absent: swap accounting off, no limit
                    _write(cg.f("memory.swap.max"), "max")
            else:
                _write(cg.f("memory.swappiness"), 100)  # anon pages are the cgroup's only reclaimable memory
        except OSError as e:
            why.append(f"{path}: {e}")
            os.rmdir(path)
            cg = None
            continue
        break
    if cg is None:
        _unavailable("cannot create a memory cgroup: " + " | ".join(why))
    try:
        yield cg
    finally:
        cg.release_all()
        cg.remove()


# ---------------------------------------------------------------- the daemon's memory

def _mappings(pid):
    """[(start, end, {field: bytes})] from /proc/pid/smaps (Rss, Swap, ...)."""
    maps, cur = [], None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and not head[0].endswith(":"):
                lo, hi = (int(x, 16) for x in head[0].split("-"))
                cur = (lo, hi, {"path": head[5] if len(head) > 5 else ""})
                maps.append(cur)
            elif head[0].endswith(":") and len(head) == 3 and head[2] == "kB":
                cur[2][head[0][:-1]] = int(head[1]) * 1024
    return maps


def _arena(pid):
    """The arena: (its memfd as /proc/PID/fd/N, the daemon's mapping of it). The blocks live in
    a memfd mapped shared; the daemon maps pages only while it uses them."""
    fd = arena_fd(pid)
    assert fd, f"no arena memfd among the daemon's descriptors"
    maps = [m for m in _mappings(pid) if m[2]["path"].startswith("/memfd:ksmfs-arena")]
    assert len(maps) == 1, f"expected one mapping of the arena memfd in the daemon, got {maps}"
    return fd, maps[0]


def _memory(pid):
    """The daemon's figures in bytes: the arena's pages resident and swapped (its memfd's
    allocated pages, and the swap the kernel reports for the mapping of it), everything else
    (metadata, heap, stacks, code) resident plus swapped, and VmRSS / VmSwap."""
    fd, mapping = _arena(pid)
    allocated = os.stat(fd).st_blocks * 512
    swapped = mapping[2].get("Swap", 0)
    meta = sum(m[2].get("Rss", 0) + m[2].get("Swap", 0) for m in _mappings(pid) if m[0] != mapping[0])
    status = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmSwap", "RssAnon"):
                status[k] = int(v.split()[0]) * 1024
    return {"arena_rss": allocated - swapped, "arena_swap": swapped, "meta": meta, **status}


PRESENT, SWAPPED = "present", "swapped"
_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]


def _pages(fd, flag):
    """Offsets of the arena memfd's pages that are in memory (PRESENT: mincore, which faults
    nothing in) or allocated but not in memory (SWAPPED: data by SEEK_DATA, not in core)."""
    size = os.fstat(fd).st_size
    addr = _libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    assert addr not in (None, ctypes.c_void_p(-1).value), f"mmap of the arena: {os.strerror(ctypes.get_errno())}"
    try:
        vec = (ctypes.c_ubyte * (size // PAGE))()
        assert _libc.mincore(addr, size, vec) == 0, f"mincore: {os.strerror(ctypes.get_errno())}"
        core = bytes(vec)
    finally:
        _libc.munmap(addr, size)
    if flag == PRESENT:
        return [i * PAGE for i, v in enumerate(core) if v & 1]
    out, pos = [], 0
    while True:
        try:
            data = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError as e:
            if e.errno == errno.ENXIO:
                return out
            raise
        hole = os.lseek(fd, data, os.SEEK_HOLE)
        out += [o for o in range(data, hole, PAGE) if not core[o // PAGE] & 1]
        pos = hole


def _data_pages(pid, prefixes, flag):
    """Where file data sits in the arena: {key: [offsets in its memfd]} for the pages that are
    `flag` (PRESENT or SWAPPED) and whose first 64 bytes are a key of `prefixes` (every page
    written is random, so 64 bytes name it). Reads the memfd: a swapped page read is paged in
    (charged to the daemon's cgroup), so only call it with no limit set."""
    path, _ = _arena(pid)
    fd = os.open(path, os.O_RDONLY)
    found = {}
    try:
        offsets = _pages(fd, flag)
        i = 0
        while i < len(offsets):
            j = i + 1
            while j < len(offsets) and offsets[j] == offsets[j - 1] + PAGE and j - i < 1024:
                j += 1
            chunk = os.pread(fd, (j - i) * PAGE, offsets[i])
            for k in range(0, len(chunk), PAGE):
                key = prefixes.get(chunk[k:k + 64])
                if key is not None:
                    found.setdefault(key, []).append(offsets[i] + k)
            i = j
    finally:
        os.close(fd)
    return found


def _assert_each_content_once(found, prefixes, when):
    missing = len(set(prefixes.values()) - set(found))
    doubled = sum(1 for a in found.values() if len(a) > 1)
    assert missing == 0 and doubled == 0, \
        (f"{when}: each page content written should be in exactly one resident arena page; "
         f"{missing} of {len(prefixes)} contents not found, {doubled} found in more than one page")


def _live_blocks(m):
    st = os.statvfs(m.path)
    return st.f_blocks - st.f_bfree


def _fmt(b):
    return f"{b / MiB:.1f} MiB"


# ---------------------------------------------------------------- scenario

class Scene:
    """What a test knows after `_merged_and_paged_out`: the files and their digests, the
    shared content and where each of its pages lives in the arena, the figures so far."""


def _write_bytes(path, data):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view):]
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # keep the test's own page cache small
    finally:
        os.close(fd)


def _verify_all(s, names=None):
    """Read files cold (page cache dropped, so the daemon serves every byte) from this
    process, which is outside the cgroup, and compare with the digests."""
    for name in names or s.expect:
        got = hashlib.sha256(read_cold(os.path.join(s.w, name))).hexdigest()
        assert got == s.expect[name], f"{name} changed across page-out/page-in"


def _oom_report(s, m, what):
    """The failure message when the daemon died or a read failed: was it the OOM killer?"""
    kills = s.cg.oom_kills() - s.kills
    lines = []
    with contextlib.suppress(Exception):
        if not kills:
            raise LookupError("no OOM kill: nothing to quote from the kernel log")
        log = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=10).stdout.splitlines()
        start_at = max((i for i, l in enumerate(log) if "invoked oom-killer" in l), default=None)
        if start_at is not None:
            lines = [l for l in log[start_at:start_at + 60]
                     if any(k in l for k in ("invoked oom-killer", "fuse_", "do_swap_page", "swapin",
                                              "try_charge", "memory: usage", "Killed process"))]
    return (f"{what}: the daemon was {'OOM-killed' if kills else 'lost'} (oom_kill +{kills}, exit "
            f"{m.proc.poll()}) at a cgroup limit of {_fmt(s.limit) if s.limit else 'none'} with {_fmt(s.meta)} of metadata; "
            f"figures so far: {s.figures}\nkernel log:\n" + "\n".join(lines))


def _merged_and_paged_out(m, cg, figures):
    """Daemon in the cgroup, 8 identical + 24 unique 16 MiB files written and merged (scanner
    stopped with run=0, merges kept), shared blocks located in the arena, then the limit set
    to LIMIT and the arena pushed out to swap. Asserts everything on the way."""
    s = Scene()
    s.t0, s.cg, s.figures, s.limit, s.meta, s.kills = time.monotonic(), cg, figures, None, 0, cg.oom_kills()
    pid = m.pid
    cg.add(pid)  # before any data: every arena block is charged to the test cgroup
    assert cg.holds(pid), "the daemon's threads did not all move into the test cgroup"
    assert not cg.holds(os.getpid()), "the test itself must read from outside the cgroup"

    s.w = os.path.join(m.path, "w")
    os.mkdir(s.w)
    s.dup = os.urandom(FILE_BYTES)
    # every page content by its first 64 bytes: ("dup", i) for page i of the shared content
    s.prefixes = {s.dup[i:i + 64]: ("dup", i // PAGE) for i in range(0, FILE_BYTES, PAGE)}
    s.expect = {}
    for i in range(DUP_FILES):
        _write_bytes(os.path.join(s.w, f"dup{i}"), s.dup)
        s.expect[f"dup{i}"] = hashlib.sha256(s.dup).hexdigest()
    for i in range(UNIQUE_FILES):
        data = os.urandom(FILE_BYTES)
        _write_bytes(os.path.join(s.w, f"uniq{i}"), data)
        s.expect[f"uniq{i}"] = hashlib.sha256(data).hexdigest()
        s.prefixes.update((data[k:k + 64], (f"uniq{i}", k // PAGE)) for k in range(0, FILE_BYTES, PAGE))
    assert len(s.prefixes) == LIVE
    s.figures["rss_after_write"] = _fmt(_memory(pid)["VmRSS"])

    start(m)
    settle(m, timeout=60, pages_shared=SHARED, pages_sharing=SHARING)
    kset(m, "run", 0)  # keep the merges; nothing scans until a test says so
    s.merged = counters(m)
    assert _live_blocks(m) == LIVE, f"live blocks {_live_blocks(m)} after merging, want {LIVE}"
    before = _memory(pid)
    s.meta = before["meta"]
    s.figures.update(setup_s=round(time.monotonic() - s.t0, 1), rss_before=_fmt(before["VmRSS"]),
                     arena_rss_before=_fmt(before["arena_rss"]), metadata=_fmt(before["meta"]),
                     pages_shared_before=s.merged["pages_shared"], pages_sharing_before=s.merged["pages_sharing"])
    assert before["arena_rss"] >= 0.95 * LIVE * PAGE, f"arena not resident before the limit: {before}"
    assert before["meta"] < LIMIT / 2, \
        f"daemon metadata {_fmt(before['meta'])} is not well below the {_fmt(LIMIT)} limit: {before}"
    found = _data_pages(pid, s.prefixes, PRESENT)
    _assert_each_content_once(found, s.prefixes, "after merging")
    s.shared_at = {k: a[0] for k, a in found.items() if k[0] == "dup"}

    s.limit = LIMIT
    cg.set_limit(LIMIT)
    deadline = time.monotonic() + 30
    while True:
        now = _memory(pid)
        if now["arena_rss"] <= LIMIT and now["arena_swap"] >= 0.9 * (LIVE * PAGE - LIMIT):
            break
        assert time.monotonic() < deadline, f"the arena did not go to swap under the limit: {now}"
        time.sleep(0.2)
    m.assert_alive()
    s.figures.update(limit=_fmt(LIMIT), vmswap=_fmt(now["VmSwap"]), arena_swap=_fmt(now["arena_swap"]),
                     rss_under_limit=_fmt(now["VmRSS"]), cgroup_usage=_fmt(cg.usage()))
    assert now["arena_swap"] > 256 * MiB, now
    path, _ = _arena(pid)
    fd = os.open(path, os.O_RDONLY)
    try:
        out = set(_pages(fd, SWAPPED))
    finally:
        os.close(fd)
    swapped = sum(1 for a in s.shared_at.values() if a in out)
    s.figures["shared_blocks_swapped"] = f"{swapped}/{SHARED}"
    assert swapped >= SHARED // 4, \
        f"only {swapped} of {SHARED} shared blocks were paged out; the test would show nothing about them"
    c = counters(m)
    assert (c["pages_shared"], c["pages_sharing"]) == (SHARED, SHARING), f"paging out changed the counters: {c}"
    assert cg.oom_kills() == s.kills, "the OOM killer ran while the limit was set"
    s.figures["page_out_s"] = round(time.monotonic() - s.t0, 1)
    return s


def _page_in_and_check_one_block_each(m, s, sharing):
    """No limit: page the arena back in by reading every file (from outside the cgroup). Then
    no file data is left in swap, every page content written is in exactly one resident arena
    page (no sharer got its own copy of a shared block), and each shared block is at the
    address it had before the page-out."""
    s.cg.set_limit(None)
    s.limit = None
    _verify_all(s)
    back = _memory(m.pid)
    s.figures.update(arena_rss_back=_fmt(back["arena_rss"]), arena_swap_back=_fmt(back["arena_swap"]))
    c = counters(m)
    s.figures.update(pages_shared_after=c["pages_shared"], pages_sharing_after=c["pages_sharing"])
    assert (c["pages_shared"], c["pages_sharing"]) == (SHARED, sharing), c
    left = _data_pages(m.pid, s.prefixes, SWAPPED)  # reads them in, so only after counting
    assert not left, f"{len(left)} pages of file data still in swap after reading every file"
    found = _data_pages(m.pid, s.prefixes, PRESENT)
    _assert_each_content_once(found, s.prefixes, "after page-out and page-in")
    moved = sum(1 for k, a in s.shared_at.items() if found[k] != [a])
    assert moved == 0, f"after page-out and page-in {moved} of {SHARED} shared blocks are not where they were"
    assert _live_blocks(m) == LIVE + (SHARING - sharing), "live blocks after page-in"


@contextlib.contextmanager
def _oom_explained(s, m, memcg, phase):
    """A failure while the daemon was OOM-killed is reported as that kill, with the kernel's
    account of it, rather than as the read or assertion that noticed it."""
    try:
        yield
    except (OSError, AssertionError) as e:
        if not m.alive() or memcg.oom_kills() != s.kills:
            raise AssertionError(_oom_report(s, m, phase)) from e
        raise


def _run(mounted, memcg, body):
    """Mount, run `body(m)`, and always lift the limit and take the daemon out of the cgroup
    before the harness unmounts; print the figures."""
    figures = {}
    with mounted("size=1g") as m:
        try:
            body(m, figures)
        finally:
            memcg.release_all()
    print("\nmemory pressure figures:", ", ".join(f"{k}={v}" for k, v in figures.items()))


# ---------------------------------------------------------------- tests

def test_under_a_cgroup_limit_the_arena_goes_to_swap_and_a_shared_block_stays_one_block(mounted, swap, memcg):
    """Page-out by the cgroup limit, the scanner passing over swapped pages under the limit
    (and under a limit just above the metadata), then page-in with the limit lifted."""
    def body(m, figures):
        s = _merged_and_paged_out(m, memcg, figures)
        with _oom_explained(s, m, memcg, "page-out/scan/page-in"):
            # the scanner under pressure: full passes fault every mergeable page in and out
            start(m)
            c = settle(m, timeout=60, pages_shared=SHARED, pages_sharing=SHARING)
            assert c["full_scans"] >= s.merged["full_scans"] + 2 and c["cow_ksm"] == s.merged["cow_ksm"], c
            assert memcg.oom_kills() == s.kills, "the OOM killer ran while the scanner passed under the limit"
            s.figures["scan_under_limit_s"] = round(time.monotonic() - s.t0, 1)
            # a limit just above the metadata: the scanner goes on, the daemon lives
            tight = (_memory(m.pid)["meta"] // MiB + 24) * MiB
            s.limit = tight
            memcg.set_limit(tight)
            s.figures["tight_limit"] = _fmt(tight)
            c = settle(m, timeout=60, pages_shared=SHARED, pages_sharing=SHARING)
            kset(m, "run", 0)
            assert memcg.oom_kills() == s.kills, f"the OOM killer ran at a limit of {_fmt(tight)}"
            m.assert_alive()
            s.figures["scan_under_tight_limit_s"] = round(time.monotonic() - s.t0, 1)

            _page_in_and_check_one_block_each(m, s, SHARING)
            assert memcg.oom_kills() == s.kills
            m.assert_alive()
            s.figures["total_s"] = round(time.monotonic() - s.t0, 1)
    _run(mounted, memcg, body)


def test_files_read_back_intact_under_the_limit_and_the_daemon_is_not_oom_killed(mounted, swap, memcg):
    """Page-in by FUSE reads while the limit stays on: every file intact, the counters and
    live blocks unchanged, copy-on-write of a swapped shared block, a limit just above the
    metadata, and never an OOM kill; then page-in with the limit lifted."""
    def body(m, figures):
        s = _merged_and_paged_out(m, memcg, figures)
        with _oom_explained(s, m, memcg, "reading files back under the limit"):
            _verify_all(s)
            c = counters(m)
            assert (c["pages_shared"], c["pages_sharing"], c["cow_ksm"]) == \
                (SHARED, SHARING, s.merged["cow_ksm"]), f"reading under the limit changed the counters: {c}"
            assert _live_blocks(m) == LIVE, "reading under the limit changed the number of live blocks"
            assert memcg.oom_kills() == s.kills
            s.figures["read_under_limit_s"] = round(time.monotonic() - s.t0, 1)

            # copy-on-write of a (likely swapped) shared block, under the limit
            new_page = os.urandom(PAGE)
            fd = os.open(os.path.join(s.w, "dup3"), os.O_WRONLY)
            try:
                assert os.pwrite(fd, new_page, 7 * PAGE) == PAGE
                os.fsync(fd)
            finally:
                os.close(fd)
            c = counters(m)
            assert (c["cow_ksm"], c["pages_shared"], c["pages_sharing"]) == \
                (s.merged["cow_ksm"] + 1, SHARED, SHARING - 1), c
            s.expect["dup3"] = hashlib.sha256(s.dup[:7 * PAGE] + new_page + s.dup[8 * PAGE:]).hexdigest()
            s.prefixes[new_page[:64]] = ("dup3 copy", 7)
            _verify_all(s, ["dup2", "dup3", "dup4"])

            # a limit just above the metadata: slow, but every byte still comes back (a quarter
            # of the files, 128 MiB, well over the limit, to keep the run short)
            tight = (_memory(m.pid)["meta"] // MiB + 24) * MiB
            s.limit = tight
            memcg.set_limit(tight)
            s.figures["tight_limit"] = _fmt(tight)
            _verify_all(s, [f"dup{i}" for i in range(4)] + [f"uniq{i}" for i in range(4)])
            assert memcg.oom_kills() == s.kills, f"the OOM killer ran at a limit of {_fmt(tight)}"
            m.assert_alive()
            s.figures["read_under_tight_limit_s"] = round(time.monotonic() - s.t0, 1)

            _page_in_and_check_one_block_each(m, s, SHARING - 1)
            assert memcg.oom_kills() == s.kills
            m.assert_alive()
            s.figures["total_s"] = round(time.monotonic() - s.t0, 1)
    _run(mounted, memcg, body)
