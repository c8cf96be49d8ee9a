# The per-file KSM interface (KSM-SPEC.md section 6, ksmfs-only): user.ksm.mergeable defaults to
# 1, setting 0 unmerges that file at once and keeps it out, 1 lets it merge again, a directory's
# value is inherited by files created in it later, `-o merge=none` starts every file opted out;
# the read-only figures (user.ksm.ksm_rmap_items ..., user.ksm.stat) add up to the global
# counters, and a directory's figures are the sums over its tree.

import errno
import os
import subprocess
import time

import pytest

from fsops import PAGE, raises_errno, read_cold, write_file
from ksmops import (SCAN_ITEM_BYTES, NUMBERS, kpath, kget, kset, counters, start, _wait, wait_passes, snapshot, settle)

pytestmark = pytest.mark.ksmfs_only

FIGURES = ["ksm_rmap_items", "ksm_zero_pages", "ksm_merging_pages", "ksm_process_profit",
           "ksm_merge_any", "ksm_mergeable"]
SUMMED = ["ksm_rmap_items", "ksm_zero_pages", "ksm_merging_pages", "ksm_process_profit"]

# ---------------------------------------------------------------- helpers

def mergeable(path):
    return os.getxattr(path, "user.ksm.mergeable")


def setfattr(path, value):
    r = subprocess.run(["setfattr", "-n", "user.ksm.mergeable", "-v", value, path],
                       capture_output=True, text=True)
    assert r.returncode == 0, f"setfattr {value} {path}: {r.stderr}"


def figures(path):
    """user.ksm.stat parsed (`name value` per line), checked against each single xattr."""
    text = os.getxattr(path, "user.ksm.stat").decode()
    assert text.endswith("\n"), repr(text)
    pairs = [line.split(" ") for line in text.splitlines()]
    assert all(len(p) == 2 for p in pairs), repr(text)
    stat = {n: int(v) for n, v in pairs}
    assert list(stat) == FIGURES, f"user.ksm.stat names {list(stat)}"
    for n in FIGURES:
        single = os.getxattr(path, "user.ksm." + n).decode()
        assert int(single) == stat[n], f"{path}: user.ksm.{n}={single!r} but stat says {stat[n]}"
    return stat


def data_files(top):
    out = []
    for dirpath, dirnames, filenames in os.walk(top):
        if dirpath == top and "ksm" in dirnames:
            dirnames.remove("ksm")
        out += [os.path.join(dirpath, f) for f in filenames]
    return sorted(out)


def workdir(m):
    path = os.path.join(m.path, "w")
    os.mkdir(path)
    return path


# ---------------------------------------------------------------- mergeable flag

def test_every_new_file_is_mergeable_1_and_getfattr_shows_it(mounted):
    with mounted("size=64m") as m:
        w = workdir(m)
        f = os.path.join(w, "f")
        write_file(f, b"x")
        assert mergeable(f) == b"1"
        # Asked by name it is there; the listing (getfattr -d) shows it only as an opt-out.
        out = subprocess.run(["getfattr", "-n", "user.ksm.mergeable", f], capture_output=True, text=True, check=True).stdout
        assert 'user.ksm.mergeable="1"' in out, out
        out = subprocess.run(["getfattr", "-d", f], capture_output=True, text=True, check=True).stdout
        assert "user.ksm" not in out, out
        setfattr(f, "0")
        out = subprocess.run(["getfattr", "-d", f], capture_output=True, text=True, check=True).stdout
        assert 'user.ksm.mergeable="0"' in out, out
        setfattr(f, "1")
        out = subprocess.run(["getfattr", "-n", "user.ksm.mergeable", "--only-values", f],
                             capture_output=True, text=True, check=True).stdout
        assert out == "1"
        assert figures(f)["ksm_mergeable"] == 1


def test_mergeable_2_is_EINVAL_and_the_figures_are_read_only(mounted):
    with mounted("size=64m") as m:
        w = workdir(m)
        f = os.path.join(w, "f")
        write_file(f, b"x" * PAGE)
        with raises_errno(errno.EINVAL):
            os.setxattr(f, "user.ksm.mergeable", b"2")
        assert mergeable(f) == b"1"
        r = subprocess.run(["setfattr", "-n", "user.ksm.mergeable", "-v", "2", f],
                           capture_output=True, text=True)
        assert r.returncode != 0 and "Invalid argument" in r.stderr, r.stderr
        for n in FIGURES + ["stat"]:
            with pytest.raises(OSError) as e:
                os.setxattr(f, "user.ksm." + n, b"5")
            assert e.value.errno in (errno.EPERM, errno.EACCES, errno.EINVAL, errno.EROFS), n
        assert figures(f)["ksm_rmap_items"] == 0


def test_mergeable_0_unmerges_that_file_at_once_and_keeps_it_out_until_1(mounted):
    with mounted("size=64m") as m:
        w = workdir(m)
        data = os.urandom(16 * PAGE)
        a, b, c = (os.path.join(w, n) for n in "abc")
        for p in (a, b, c):
            write_file(p, data)
        start(m)
        settle(m, pages_shared=16, pages_sharing=32)
        assert figures(c)["ksm_merging_pages"] == 16

        setfattr(c, "0")
        now = counters(m)  # at once, as MADV_UNMERGEABLE
        fc = figures(c)
        assert (fc["ksm_merging_pages"], fc["ksm_mergeable"]) == (0, 0), fc
        assert (now["pages_shared"], now["pages_sharing"]) == (16, 16), now
        assert mergeable(c) == b"0"
        assert figures(a)["ksm_merging_pages"] == 16 and figures(b)["ksm_merging_pages"] == 16

        wait_passes(m, 3)  # later passes leave it alone
        assert figures(c)["ksm_merging_pages"] == 0
        assert counters(m)["pages_sharing"] == 16
        assert read_cold(c) == data

        setfattr(c, "1")
        settle(m, pages_shared=16, pages_sharing=32)
        assert figures(c)["ksm_merging_pages"] == 16
        assert read_cold(a) == data and read_cold(c) == data


def test_a_directorys_value_is_inherited_by_files_created_in_it_later(mounted):
    with mounted("size=64m") as m:
        w = workdir(m)
        data = os.urandom(8 * PAGE)
        d = os.path.join(w, "d")
        os.mkdir(d)
        before = os.path.join(d, "before")
        write_file(before, data)
        write_file(os.path.join(w, "ref"), data)
        setfattr(d, "0")
        assert mergeable(d) == b"0"
        assert mergeable(before) == b"1", "files already there keep their own value"
        later = os.path.join(d, "later")
        write_file(later, data)
        assert mergeable(later) == b"0"
        start(m)
        settle(m, pages_shared=8, pages_sharing=8)  # ref + before; later stays out
        assert figures(later)["ksm_merging_pages"] == 0
        assert figures(later)["ksm_rmap_items"] == 0

        setfattr(d, "1")
        again = os.path.join(d, "again")
        write_file(again, data)
        assert mergeable(again) == b"1" and mergeable(later) == b"0"
        settle(m, pages_shared=8, pages_sharing=16)
        assert read_cold(later) == data and read_cold(again) == data


def test_merge_none_mount_merges_nothing_until_files_opt_in(mounted):
    with mounted("size=64m,merge=none") as m:
        w = workdir(m)
        data = os.urandom(8 * PAGE)
        a, b, c = (os.path.join(w, n) for n in "abc")
        for p in (a, b):
            write_file(p, data)
        assert mergeable(a) == b"0" and mergeable(b) == b"0"
        start(m)
        time.sleep(1.0)  # the scanner may simply sleep: no file is mergeable
        now = counters(m)
        assert (now["pages_shared"], now["pages_sharing"], now["pages_unshared"]) == (0, 0, 0), now
        assert figures(a)["ksm_rmap_items"] == 0

        # Opt both in while the scanner is stopped: with smart scan and thousands of passes a
        # second, pages opted in a few ms apart age out of step and may never meet in one pass.
        kset(m, "run", 0)
        setfattr(a, "1")
        setfattr(b, "1")
        kset(m, "run", 1)
        settle(m, pages_shared=8, pages_sharing=8)
        write_file(c, data)  # still opted out by default
        assert mergeable(c) == b"0"
        wait_passes(m, 3)
        assert counters(m)["pages_sharing"] == 8 and figures(c)["ksm_merging_pages"] == 0
        assert read_cold(a) == data and read_cold(c) == data


# ---------------------------------------------------------------- figures add up

def test_per_file_figures_add_up_to_the_global_counters_and_directories_sum_their_tree(mounted):
    with mounted("size=64m") as m:
        w = workdir(m)
        os.makedirs(os.path.join(w, "sub", "deep"))
        dup = os.urandom(12 * PAGE)
        write_file(os.path.join(w, "a"), dup)
        write_file(os.path.join(w, "b"), dup)
        write_file(os.path.join(w, "sub", "c"), dup[:6 * PAGE] + os.urandom(6 * PAGE))
        write_file(os.path.join(w, "sub", "unique"), os.urandom(5 * PAGE))
        write_file(os.path.join(w, "sub", "deep", "zeros"), bytes(7 * PAGE))
        write_file(os.path.join(w, "sub", "deep", "mixed"), dup[:3 * PAGE] + bytes(2 * PAGE))
        write_file(os.path.join(m.path, "top"), dup[5 * PAGE:9 * PAGE])
        write_file(os.path.join(w, "empty"), b"")
        # smart_scan off keeps the unshared pages in the unstable tree on every pass
        start(m, use_zero_pages=1, smart_scan=0)
        # dup's 12 pages: a+b 24 items, c 6, mixed 3, top 4 -> 37 items on 12 blocks
        # Pages on the zero block have no rmap item (the kernel frees it): volatile stays 0.
        g = settle(m, pages_shared=12, pages_sharing=25, ksm_zero_pages=9,
                   pages_unshared=11, pages_volatile=0)
        kset(m, "run", 0)  # a still picture for the sums
        g = counters(m)

        files = data_files(m.path)
        per = {p: figures(p) for p in files}
        items = g["pages_shared"] + g["pages_sharing"] + g["pages_unshared"] + g["pages_volatile"]
        assert items * SCAN_ITEM_BYTES == (g["pages_sharing"] + g["ksm_zero_pages"]) * PAGE \
            - g["general_profit"], g
        total = {n: sum(f[n] for f in per.values()) for n in SUMMED}
        assert total["ksm_rmap_items"] == items
        assert total["ksm_merging_pages"] == g["pages_shared"] + g["pages_sharing"]
        assert total["ksm_zero_pages"] == g["ksm_zero_pages"]
        for p, f in per.items():
            size_pages = -(-os.path.getsize(p) // PAGE)
            assert f["ksm_rmap_items"] == size_pages - f["ksm_zero_pages"], (p, f)
            assert f["ksm_process_profit"] == (f["ksm_merging_pages"] + f["ksm_zero_pages"]) * PAGE \
                - f["ksm_rmap_items"] * SCAN_ITEM_BYTES, (p, f)
            assert f["ksm_mergeable"] == 1, (p, f)
        assert per[os.path.join(w, "a")]["ksm_merging_pages"] == 12
        assert per[os.path.join(w, "sub", "deep", "zeros")]["ksm_zero_pages"] == 7
        assert per[os.path.join(w, "sub", "unique")]["ksm_merging_pages"] == 0

        for d in (w, os.path.join(w, "sub"), os.path.join(w, "sub", "deep"), m.path):
            got = {n: figures(d)[n] for n in SUMMED}
            want = {n: sum(per[p][n] for p in files if p.startswith(d.rstrip("/") + "/"))
                    for n in SUMMED}
            assert got == want, f"directory {d}: {got} != sum of its files {want}"
        root = figures(m.path)
        assert root["ksm_rmap_items"] == items
        assert root["ksm_merging_pages"] == g["pages_shared"] + g["pages_sharing"]


def test_mergeable_is_listed_only_as_an_opt_out_which_cp_a_carries_over(d):
    # A file at the mount's default lists no user.ksm.* (as on tmpfs, cp -a and rsync -X copy
    # nothing and ask nothing); an opted-out file lists user.ksm.mergeable, so cp -a keeps the
    # opt-out; removing the attribute restores the default and the name leaves the list.
    f = os.path.join(d, "f")
    write_file(f, b"x" * PAGE)
    assert [n for n in os.listxattr(f) if n.startswith("user.ksm.")] == []
    assert mergeable(f) == b"1"
    setfattr(f, "0")
    assert "user.ksm.mergeable" in os.listxattr(f)
    subprocess.run(["cp", "-a", f, os.path.join(d, "copy")], check=True)
    assert mergeable(os.path.join(d, "copy")) == b"0"
    subprocess.run(["cp", "-a", os.path.join(d, "copy"), os.path.join(d, "copy2")], check=True)
    assert mergeable(os.path.join(d, "copy2")) == b"0"
    subprocess.run(["setfattr", "-x", "user.ksm.mergeable", f], check=True)
    assert mergeable(f) == b"1"
    assert "user.ksm.mergeable" not in os.listxattr(f)
    plain = os.path.join(d, "plain")
    write_file(plain, b"y")
    r = subprocess.run(["strace", "-f", "-e", "trace=fgetxattr,fsetxattr", "cp", "-a", plain, os.path.join(d, "plain2")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "user.ksm" not in r.stderr, r.stderr
