# Merged pages stop costing page cache (ksmfs-only): when pages of files nobody holds open
# merge, the kernel's page-cache copies of those pages are dropped, as the kernel's KSM frees
# its duplicate at merge time; `ksm/drop_merged_page_cache` 0 keeps them; a file held open
# keeps its cache until its last close, and then loses it; a page stored through a mapping
# while the file merged is never lost. What the kernel caches is read with cachestat(2) on a
# descriptor opened through the mount, after the merge (an open file would keep its cache).

import ctypes
import mmap
import os
import re
import time

import pytest

from fsops import PAGE, read_file, write_file
from ksmops import _wait, kget, kset, start, settle

pytestmark = pytest.mark.ksmfs_only

COPIES = 6
PAGES = 1024  # 4 MiB each

_libc = ctypes.CDLL(None, use_errno=True)
_SYS_cachestat = 451  # x86-64


class _Range(ctypes.Structure):
    _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]


class _Stat(ctypes.Structure):
    _fields_ = [(n, ctypes.c_uint64) for n in
                ("nr_cache", "nr_dirty", "nr_writeback", "nr_evicted", "nr_recently_evicted")]


def cached_pages(path=None, fd=None):
    """Pages of the file in the kernel's page cache (cachestat over the whole file)."""
    own = fd is None
    if own:
        fd = os.open(path, os.O_RDONLY)
    try:
        rng, st = _Range(0, 0), _Stat()
        if _libc.syscall(_SYS_cachestat, fd, ctypes.byref(rng), ctypes.byref(st), 0) != 0:
            e = ctypes.get_errno()
            raise OSError(e, os.strerror(e))
        return st.nr_cache
    finally:
        if own:
            os.close(fd)


def dropped_metric(m):
    text = kget(m, "metrics")
    found = re.search(r"^ksmfs_page_cache_pages_dropped_total\{[^}]*\} (\d+)$", text, re.M)
    assert found, "ksmfs_page_cache_pages_dropped_total missing from ksm/metrics"
    return int(found.group(1))


def copies(m, name="c"):
    d = os.path.join(m.path, name)
    os.mkdir(d)
    data = os.urandom(PAGES * PAGE)
    paths = [os.path.join(d, f"{i}") for i in range(COPIES)]
    for p in paths:
        write_file(p, data)  # ordinary write()s through the writeback cache, then close
    return data, paths


def merge(m):
    start(m)
    settle(m, pages_shared=PAGES, pages_sharing=(COPIES - 1) * PAGES)


def wait_until(pred, timeout=20.0):
    return bool(_wait(pred, timeout))


def test_merged_pages_of_closed_files_leave_the_page_cache_and_read_back_intact(mounted):
    with mounted("size=256m") as m:
        assert kget(m, "drop_merged_page_cache") == "1\n"
        data, paths = copies(m)
        before = [cached_pages(p) for p in paths]
        assert all(c >= PAGES * 9 // 10 for c in before), f"written copies not cached: {before}"
        merge(m)
        assert wait_until(lambda: sum(cached_pages(p) for p in paths) <= COPIES * PAGES // 20), \
            f"cached pages after the merge: {[cached_pages(p) for p in paths]} of {PAGES} each"
        assert dropped_metric(m) >= COPIES * PAGES
        for p in paths:
            assert read_file(p) == data, f"{p} changed"
        # The next read gets the shared block and caches it again, as any read does.
        assert cached_pages(paths[0]) >= PAGES * 9 // 10


def test_with_drop_merged_page_cache_0_merged_pages_stay_cached(mounted):
    with mounted("size=256m") as m:
        kset(m, "drop_merged_page_cache", 0)
        assert kget(m, "drop_merged_page_cache") == "0\n"
        _, paths = copies(m)
        merge(m)
        time.sleep(1)
        after = [cached_pages(p) for p in paths]
        assert all(c >= PAGES * 9 // 10 for c in after), f"pages dropped with the tunable at 0: {after}"
        assert dropped_metric(m) == 0


def test_a_file_held_open_keeps_its_cache_until_its_last_close(mounted):
    with mounted("size=256m") as m:
        data, paths = copies(m)
        fd = os.open(paths[0], os.O_RDONLY)
        try:
            merge(m)
            assert wait_until(lambda: cached_pages(paths[1]) <= PAGES // 20), "closed copy kept its cache"
            time.sleep(0.5)
            assert cached_pages(fd=fd) >= PAGES * 9 // 10, "the open file's cache was dropped"
        finally:
            os.close(fd)
        assert wait_until(lambda: cached_pages(paths[0]) <= PAGES // 20), \
            f"cache of the file kept after its last close: {cached_pages(paths[0])} pages"
        assert read_file(paths[0]) == data


def test_a_page_stored_through_a_mapping_while_the_file_merged_is_not_lost(mounted):
    with mounted("size=256m") as m:
        data, paths = copies(m)
        fd = os.open(paths[2], os.O_RDWR)
        mm = mmap.mmap(fd, PAGES * PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        try:
            for off in range(0, PAGES * PAGE, PAGE):  # map every page
                mm[off]
            merge(m)
            mm[3 * PAGE:3 * PAGE + 5] = b"hello"  # dirty, not yet written back
        finally:
            mm.close()
            os.close(fd)
        want = bytearray(data)
        want[3 * PAGE:3 * PAGE + 5] = b"hello"
        assert wait_until(lambda: cached_pages(paths[2]) <= PAGES // 20), "cache kept after the last close"
        assert read_file(paths[2]) == bytes(want), "the store through the mapping was lost"
        for p in paths[:2] + paths[3:]:
            assert read_file(p) == data, f"{p} changed by another file's store"


def metric_value(m, name):
    found = re.search(rf"^ksmfs_{name}\{{[^}}]*\}} ([0-9.e+-]+)$", kget(m, "metrics"), re.M)
    return float(found.group(1)) if found else None


def test_metrics_and_status_show_the_page_cache_the_kernel_holds(mounted):
    import subprocess
    from fsops import ksmfs_bin
    with mounted("size=256m") as m:
        data, paths = copies(m)
        for p in paths:
            assert read_file(p) == data
        # The daemon measures (cachestat of each file, opened by handle) when the metrics are
        # read, at most every 30 s; the read waits for it.
        text = kget(m, "metrics")
        held = metric_value(m, "page_cache_bytes")
        assert held is not None, text
        measured = sum(cached_pages(p) for p in paths) * PAGE
        assert abs(held - measured) <= COPIES * PAGE * 4, (held, measured)
        assert held >= COPIES * PAGES * PAGE * 9 // 10
        assert metric_value(m, "page_cache_files_held") == COPIES
        assert metric_value(m, "page_cache_files_probed") == COPIES
        assert time.time() - metric_value(m, "page_cache_measured_timestamp_seconds") < 5
        # Its requests are counted apart: the opens by operation are the test's own.
        own = metric_value(m, "page_cache_probe_requests_total")
        assert own >= 2 * COPIES
        found = re.search(r'^ksmfs_fuse_requests_total\{[^}]*op="open"\} (\d+)$', text, re.M)
        assert found and int(found.group(1)) <= COPIES + 2, found and found.group(0)
        r = subprocess.run([ksmfs_bin(), "status", m.path], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stderr
        line = next(l for l in r.stdout.splitlines() if l.strip().startswith("page cache"))
        assert "in the files' own caches (6 files" in line and "dropped 0.0 B" in line, line
        assert "on tmpfs: 24.0 MiB" in r.stdout
    with mounted("size=256m") as m:
        # Once the copies merged (nobody has them open), their cache is dropped: measured so.
        data, paths = copies(m)
        merge(m)
        assert wait_until(lambda: sum(cached_pages(p) for p in paths) <= COPIES * PAGES // 20)
        assert metric_value(m, "page_cache_bytes") <= COPIES * PAGES * PAGE // 10
        r = subprocess.run([ksmfs_bin(), "status", m.path], capture_output=True, text=True, timeout=30)
        line = next(l for l in r.stdout.splitlines() if l.strip().startswith("page cache"))
        assert "dropped 2" in line, line
