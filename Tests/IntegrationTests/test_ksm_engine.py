# The kernel's KSM selftest scenarios (tools/testing/selftests/mm/ksm_tests.c) ported to files
# on a real mount (ksmfs-only): merge, unmerge with run=2, zero pages, max_page_sharing chains,
# the 65,536-page dup16 figure, copy-on-write isolation for write(2), truncate and mmap, files
# created while the scanner runs, deleted files, and the daemon's memory really falling (and rising
# again on unmerge). Each test has its own mount, so counters start from zero.

import hashlib
import os
import time

import pytest

from fsops import MiB, PAGE, read_cold, daemon_memory, run_python, write_file

pytestmark = pytest.mark.ksmfs_only

from ksmops import (SCAN_ITEM_BYTES, NUMBERS, kpath, kget, kset, counters, start, _wait, wait_passes, snapshot, settle)


def items(c):
    return c["pages_shared"] + c["pages_sharing"] + c["pages_unshared"] + c["pages_volatile"]


def assert_profit(c):
    want = (c["pages_sharing"] + c["ksm_zero_pages"]) * PAGE - items(c) * SCAN_ITEM_BYTES
    assert c["general_profit"] == want, f"general_profit {c['general_profit']} != {want}: {c}"


def pwrite_sync(path, data, offset):
    fd = os.open(path, os.O_WRONLY)
    try:
        assert os.pwrite(fd, data, offset) == len(data)
        os.fsync(fd)
    finally:
        os.close(fd)


def workdir(m):
    path = os.path.join(m.path, "w")
    os.mkdir(path)
    return path


def sha(path):
    return hashlib.sha256(read_cold(path)).hexdigest()


# ---------------------------------------------------------------- merge

def test_merge_5_files_of_one_repeated_page_gives_shared_1_sharing_39(mounted):
    with mounted("size=64m") as m:
        w = workdir(m)
        data = os.urandom(PAGE) * 8
        for i in range(5):
            write_file(os.path.join(w, f"f{i}"), data)
        start(m)
        c = settle(m, pages_shared=1, pages_sharing=39, pages_unshared=0, pages_volatile=0,
                   stable_node_chains=0, stable_node_dups=0, ksm_zero_pages=0, cow_ksm=0)
        assert_profit(c)
        assert c["general_profit"] == 39 * PAGE - 40 * SCAN_ITEM_BYTES
        for i in range(5):
            assert read_cold(os.path.join(w, f"f{i}")) == data


def test_merge_4_files_of_32_distinct_pages_and_a_unique_file(mounted):
    with mounted("size=64m") as m:
        w = workdir(m)
        data = os.urandom(32 * PAGE)
        unique = os.urandom(8 * PAGE)
        for i in range(4):
            write_file(os.path.join(w, f"f{i}"), data)
        write_file(os.path.join(w, "unique"), unique)
        start(m, smart_scan=0)  # smart scan would drop skipped unique pages from the unstable tree
        c = settle(m, pages_shared=32, pages_sharing=96, pages_unshared=8, pages_volatile=0)
        assert_profit(c)
        for i in range(4):
            assert read_cold(os.path.join(w, f"f{i}")) == data
        assert read_cold(os.path.join(w, "unique")) == unique


def test_nothing_merges_with_run_0_nor_on_the_first_visit(mounted):
    with mounted("size=64m") as m:
        w = workdir(m)
        data = os.urandom(4 * PAGE)
        write_file(os.path.join(w, "a"), data)
        write_file(os.path.join(w, "b"), data)
        kset(m, "pages_to_scan", 10000)
        kset(m, "sleep_millisecs", 3000)
        time.sleep(0.5)  # run is 0: the scanner sleeps
        c = counters(m)
        assert (c["full_scans"], c["pages_scanned"], c["pages_sharing"]) == (0, 0, 0), c
        kset(m, "run", 1)  # one batch is one pass here (8 pages), then a 3 s sleep
        assert _wait(lambda: counters(m)["pages_scanned"] >= 8, 2.5), counters(m)
        c = counters(m)
        assert c["pages_scanned"] == 8, f"more than one pass before the sleep: {c}"
        assert (c["pages_shared"], c["pages_sharing"], c["pages_unshared"]) == (0, 0, 0), \
            f"merged on the first visit (checksum not yet seen twice): {c}"
        kset(m, "sleep_millisecs", 0)  # wakes the scanner at once
        settle(m, pages_shared=4, pages_sharing=4)


# ---------------------------------------------------------------- unmerge

def test_run_2_unmerges_everything_at_once_contents_intact_and_daemon_memory_back_up(mounted):
    with mounted("size=512m") as m:
        w = workdir(m)
        data = os.urandom(4 * MiB)  # 1024 distinct pages, 16 copies: 60 MiB to save
        for i in range(16):
            write_file(os.path.join(w, f"f{i}"), data)
        before = daemon_memory(m.pid)
        start(m)
        c = settle(m, pages_shared=1024, pages_sharing=15 * 1024)
        saved = c["pages_sharing"] * PAGE
        dropped = _wait(lambda: before - daemon_memory(m.pid) >= 0.9 * saved, 10)  # freed in batches
        merged_rss = daemon_memory(m.pid)
        assert dropped, f"daemon memory {before / MiB:.1f} -> {merged_rss / MiB:.1f} MiB after merging"

        kset(m, "run", 2)  # synchronous: everything is zero when the write returns
        c = counters(m)
        assert kget(m, "run") == "2\n"
        assert {k: c[k] for k in ("full_scans", "pages_shared", "pages_sharing", "pages_unshared",
                                  "pages_volatile", "stable_node_chains", "stable_node_dups",
                                  "ksm_zero_pages", "general_profit")} == dict.fromkeys(
            ("full_scans", "pages_shared", "pages_sharing", "pages_unshared", "pages_volatile",
             "stable_node_chains", "stable_node_dups", "ksm_zero_pages", "general_profit"), 0)
        assert c["pages_scanned"] > 0, "pages_scanned is never reset"
        for i in range(16):
            assert read_cold(os.path.join(w, f"f{i}")) == data
        _wait(lambda: daemon_memory(m.pid) - merged_rss >= 0.9 * saved, 5)
        grown = daemon_memory(m.pid) - merged_rss
        assert grown >= 0.9 * saved, \
            f"daemon memory grew by {grown / MiB:.1f} MiB after run=2, want >= {0.9 * saved / MiB:.1f} MiB"
        time.sleep(0.3)  # run=2 stays stopped: nothing merges again
        assert counters(m)["pages_sharing"] == 0 and counters(m)["full_scans"] == 0


def test_daemon_memory_falls_by_90_percent_of_the_pages_saved(mounted):
    with mounted("size=512m") as m:
        w = workdir(m)
        data = os.urandom(4 * MiB)
        for i in range(16):  # 64 MiB written, 4 MiB distinct
            write_file(os.path.join(w, f"f{i}"), data)
        before = daemon_memory(m.pid)
        start(m)
        c = settle(m, pages_shared=1024, pages_sharing=15 * 1024, pages_unshared=0)
        want = 0.9 * c["pages_sharing"] * PAGE
        _wait(lambda: before - daemon_memory(m.pid) >= want, 10)  # freed blocks go back in batches
        after = daemon_memory(m.pid)
        assert before - after >= want, (f"daemon memory {before / MiB:.1f} -> {after / MiB:.1f} MiB, "
                                         f"want a drop of >= {want / MiB:.1f} MiB")
        for i in (0, 15):
            assert read_cold(os.path.join(w, f"f{i}")) == data


# ---------------------------------------------------------------- zero pages

def test_use_zero_pages_maps_zero_pages_to_the_zero_block_and_a_write_drops_it_at_once(mounted):
    with mounted("size=64m") as m:
        w = workdir(m)
        f = os.path.join(w, "zeros")
        write_file(f, bytes(64 * PAGE))  # written zeros, not holes
        start(m, use_zero_pages=1)
        c = settle(m, ksm_zero_pages=64, pages_shared=0, pages_sharing=0)
        assert_profit(c)
        pwrite_sync(f, b"not zero", 3 * PAGE + 100)
        c = counters(m)
        assert c["ksm_zero_pages"] == 63, f"ksm_zero_pages after writing one zero page: {c}"
        expect = bytearray(64 * PAGE)
        expect[3 * PAGE + 100:3 * PAGE + 108] = b"not zero"
        assert read_cold(f) == bytes(expect)
        c = settle(m, ksm_zero_pages=63)
        assert_profit(c)


def test_without_use_zero_pages_zero_pages_merge_like_any_other_content(mounted):
    with mounted("size=64m") as m:
        w = workdir(m)
        write_file(os.path.join(w, "zeros"), bytes(64 * PAGE))
        start(m)
        c = settle(m, pages_shared=1, pages_sharing=63, ksm_zero_pages=0)
        assert_profit(c)
        assert read_cold(os.path.join(w, "zeros")) == bytes(64 * PAGE)


# ---------------------------------------------------------------- max_page_sharing and chains

def test_max_page_sharing_4_with_21_identical_pages_builds_one_chain_of_5_dups(mounted):
    with mounted("size=64m") as m:
        w = workdir(m)
        data = os.urandom(PAGE) * 21
        write_file(os.path.join(w, "f"), data)
        kset(m, "max_page_sharing", 4)
        start(m, smart_scan=0)  # keep the 21st page in the unstable tree on every pass
        c = settle(m, pages_shared=5, pages_sharing=15, pages_unshared=1,
                   stable_node_chains=1, stable_node_dups=5)
        assert_profit(c)
        assert read_cold(os.path.join(w, "f")) == data


def test_dup16_65536_pages_of_16_contents_end_at_shared_256_sharing_65280(mounted):
    with mounted("size=512m") as m:
        w = workdir(m)
        pattern = os.urandom(16 * PAGE)  # page i holds content i mod 16
        data = pattern * 4096
        f = os.path.join(w, "dup16")
        write_file(f, data)
        digest = hashlib.sha256(data).hexdigest()
        del data
        start(m)
        c = settle(m, timeout=60, pages_shared=256, pages_sharing=65280, pages_unshared=0,
                   stable_node_chains=16, stable_node_dups=256)
        assert_profit(c)
        assert sha(f) == digest


# ---------------------------------------------------------------- copy-on-write

def _three_merged(m, pages=16):
    w = workdir(m)
    data = os.urandom(pages * PAGE)
    paths = [os.path.join(w, n) for n in ("a", "b", "c")]
    for p in paths:
        write_file(p, data)
    start(m)
    settle(m, pages_shared=pages, pages_sharing=2 * pages, cow_ksm=0)
    kset(m, "run", 0)  # keep the merges, but let no visit re-merge a page behind our back
    return paths, data


def test_a_write_to_a_merged_page_is_copy_on_write_seen_by_that_file_only(mounted):
    with mounted("size=64m") as m:
        (a, b, c), data = _three_merged(m)
        pwrite_sync(b, b"\xee" * 10, 5 * PAGE + 3)
        now = counters(m)  # at once, not at the next visit
        assert (now["cow_ksm"], now["pages_sharing"], now["pages_shared"]) == (1, 31, 16), now
        expect_b = data[:5 * PAGE + 3] + b"\xee" * 10 + data[5 * PAGE + 13:]
        assert read_cold(a) == data and read_cold(c) == data
        assert read_cold(b) == expect_b
        pwrite_sync(b, b"\xdd", 5 * PAGE)  # that page is private now: no second copy
        assert counters(m)["cow_ksm"] == 1
        expect_b = expect_b[:5 * PAGE] + b"\xdd" + expect_b[5 * PAGE + 1:]
        pwrite_sync(a, data[:PAGE], 0)  # same bytes still break the sharing of page 0 of a
        now = counters(m)
        assert (now["cow_ksm"], now["pages_sharing"]) == (2, 30), now
        assert read_cold(a) == data and read_cold(b) == expect_b and read_cold(c) == data
        kset(m, "run", 1)
        c2 = settle(m, pages_shared=16, pages_sharing=31)  # a's page 0 merges back, b's stays apart
        assert_profit(c2)
        assert read_cold(c) == data


def test_truncating_a_merged_file_changes_no_other_file(mounted):
    with mounted("size=64m") as m:
        (a, b, c), data = _three_merged(m)
        os.truncate(b, 5 * PAGE + 100)  # cuts into a merged page
        os.truncate(b, 16 * PAGE)
        expect = data[:5 * PAGE + 100] + bytes(16 * PAGE - (5 * PAGE + 100))
        assert read_cold(b) == expect
        assert read_cold(a) == data and read_cold(c) == data
        assert counters(m)["cow_ksm"] >= 1


def test_an_mmap_store_into_a_merged_page_reaches_another_process_and_no_other_file(mounted):
    with mounted("size=64m") as m:
        (a, b, c), data = _three_merged(m)
        run_python(f"""
            fd = os.open({b!r}, os.O_RDWR)
            mm = mmap.mmap(fd, 16 * 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
            mm[2 * 4096 + 7:2 * 4096 + 7 + 6] = b"MAPPED"
            mm.flush()
            mm.close()
            os.close(fd)
        """)
        now = counters(m)
        assert (now["cow_ksm"], now["pages_sharing"]) == (1, 31), now
        out = run_python(f"""
            for p in ({a!r}, {b!r}, {c!r}):
                fd = os.open(p, os.O_RDONLY)
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                os.close(fd)
                with open(p, "rb") as f:
                    print(f.read().hex())
        """).splitlines()
        expect_b = bytearray(data)
        expect_b[2 * PAGE + 7:2 * PAGE + 13] = b"MAPPED"
        assert [bytes.fromhex(x) for x in out] == [data, bytes(expect_b), data]


# ---------------------------------------------------------------- files coming and going

def test_files_created_while_the_scanner_runs_are_merged_later(mounted):
    with mounted("size=64m") as m:
        w = workdir(m)
        data = os.urandom(16 * PAGE)
        write_file(os.path.join(w, "a"), data)
        write_file(os.path.join(w, "b"), data)
        start(m)
        settle(m, pages_shared=16, pages_sharing=16)
        write_file(os.path.join(w, "c"), data)
        os.mkdir(os.path.join(w, "sub"))
        write_file(os.path.join(w, "sub", "d"), data)
        write_file(os.path.join(w, "sub", "other"), os.urandom(4 * PAGE))
        c = settle(m, pages_shared=16, pages_sharing=48)
        assert_profit(c)
        assert read_cold(os.path.join(w, "sub", "d")) == data


def test_deleting_merged_files_drops_pages_sharing(mounted):
    with mounted("size=64m") as m:
        w = workdir(m)
        data = os.urandom(16 * PAGE)
        paths = [os.path.join(w, f"f{i}") for i in range(4)]
        for p in paths:
            write_file(p, data)
        start(m)
        settle(m, pages_shared=16, pages_sharing=48)
        os.unlink(paths[3])
        settle(m, pages_shared=16, pages_sharing=32)
        os.unlink(paths[2])
        os.unlink(paths[1])
        settle(m, pages_shared=16, pages_sharing=0)  # one user left: still a shared block
        assert read_cold(paths[0]) == data
        os.unlink(paths[0])
        # no file left: the scanner may go to sleep (no passes to wait for), but nothing
        # may still be counted as shared
        zero = dict.fromkeys(("pages_shared", "pages_sharing", "pages_unshared",
                              "pages_volatile", "general_profit"), 0)
        pick = lambda: {k: counters(m)[k] for k in zero}  # noqa: E731
        _wait(lambda: pick() == zero, 15)
        assert pick() == zero, f"all files deleted, yet {counters(m)}"
