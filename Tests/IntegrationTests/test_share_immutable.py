# Identical immutable files share one page cache (ksmfs-only, `-o share_immutable`): read-only
# opens of immutable copies are served by FUSE passthrough from one backing file per content, so
# processes mapping N copies leave nothing in the copies' own page caches (cachestat of their
# descriptors is 0) and the mount shows one shared copy. Every edge the README defines: chattr -i
# while shared opens exist (writes and truncation wait, then ETXTBSY), contents that differ,
# unlink of a member, owners (merge_across_owners), run=2, the user.ksm.mergeable opt-out, and a
# daemon without the privilege passthrough needs (the mount works and says why, once).

import errno
import hashlib
import os
import re
import stat
import subprocess
import sys
import textwrap
import time

import pytest

from fsops import PAGE, read_file, write_file
from ksmops import kget, kset
from test_page_cache import cached_pages

pytestmark = pytest.mark.ksmfs_only

PAGES = 1024  # 4 MiB


def metric(m, name):
    found = re.search(rf"^ksmfs_{name}\{{[^}}]*\}} (\d+)$", kget(m, "metrics"), re.M)
    assert found, f"ksmfs_{name} missing from ksm/metrics"
    return int(found.group(1))


def chattr(path, flag):
    subprocess.run(["chattr", flag, path], check=True, capture_output=True)


def immutable_copies(m, name, data, n=4):
    d = os.path.join(m.path, name)
    os.mkdir(d)
    paths = [os.path.join(d, f"{i}") for i in range(n)]
    for p in paths:
        write_file(p, data)
        chattr(p, "+i")
    return paths


class Holder:
    """Another process holding `path` open (mapped and every page touched, or read)."""

    CODE = textwrap.dedent("""
        import ctypes, hashlib, mmap, os, sys
        libc = ctypes.CDLL(None, use_errno=True)
        class R(ctypes.Structure): _fields_ = [("off", ctypes.c_uint64), ("len", ctypes.c_uint64)]
        class S(ctypes.Structure): _fields_ = [(n, ctypes.c_uint64) for n in ("c", "d", "w", "e", "r")]
        fd = os.open(sys.argv[1], os.O_RDONLY)
        size = os.fstat(fd).st_size
        if sys.argv[2] == "mmap":
            mm = mmap.mmap(fd, size, prot=mmap.PROT_READ)
            digest = hashlib.sha256(mm).hexdigest()
        else:
            digest = hashlib.sha256(os.pread(fd, size, 0)).hexdigest()
        r, s = R(0, 0), S()
        assert libc.syscall(451, fd, ctypes.byref(r), ctypes.byref(s), 0) == 0
        print(s.c, digest, flush=True)
        sys.stdin.read()
    """)

    def __init__(self, path, how="mmap"):
        self.proc = subprocess.Popen([sys.executable, "-c", self.CODE, path, how], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().split()
        assert len(line) == 2, f"holder of {path} failed"
        self.cached, self.digest = int(line[0]), line[1]

    def close(self):
        self.proc.stdin.close()
        self.proc.wait(10)


def sha(data):
    return hashlib.sha256(data).hexdigest()


def wait_for(pred, timeout=5.0):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def test_processes_mapping_identical_immutable_copies_share_one_page_cache(mounted):
    with mounted("size=256m,share_immutable") as m:
        assert metric(m, "share_immutable") == 1
        data = os.urandom(PAGES * PAGE)
        paths = immutable_copies(m, "a", data)
        holders = [Holder(p) for p in paths]
        try:
            # Each mapping was served by the shared backing file: nothing in the copy's own cache.
            assert [h.cached for h in holders] == [0] * 4
            assert {h.digest for h in holders} == {sha(data)}
            assert metric(m, "shared_groups") == 1
            assert metric(m, "shared_group_files") == 4
            assert metric(m, "shared_opens") == 4
            assert metric(m, "shared_cache_bytes") == len(data)
            assert metric(m, "shared_cache_saved_bytes") == 3 * len(data)
        finally:
            for h in holders:
                h.close()
        # The last close frees the shared copy; the next open fills it again.
        assert wait_for(lambda: metric(m, "shared_cache_bytes") == 0)
        fills = metric(m, "shared_cache_fills_total")
        assert read_file(paths[2]) == data
        assert metric(m, "shared_cache_fills_total") == fills + 1
        # A file that is not immutable is cached per inode, as without the option.
        plain = os.path.join(m.path, "plain")
        write_file(plain, data)
        h = Holder(plain)
        try:
            assert h.cached >= PAGES * 9 // 10 and h.digest == sha(data)
        finally:
            h.close()


def test_without_the_option_immutable_copies_are_cached_per_inode(mounted):
    with mounted("size=256m") as m:
        assert metric(m, "share_immutable") == 0
        data = os.urandom(PAGES * PAGE)
        paths = immutable_copies(m, "a", data, n=2)
        holders = [Holder(p) for p in paths]
        try:
            assert all(h.cached >= PAGES * 9 // 10 for h in holders), [h.cached for h in holders]
        finally:
            for h in holders:
                h.close()


def test_chattr_minus_i_while_shared_refuses_writes_until_the_shared_opens_close(mounted):
    with mounted("size=256m,share_immutable") as m:
        data = os.urandom(PAGES * PAGE)
        paths = immutable_copies(m, "a", data, n=2)
        h = Holder(paths[0])
        try:
            chattr(paths[0], "-i")
            assert os.stat(paths[0]).st_size == len(data)
            t0 = time.monotonic()
            with pytest.raises(OSError) as e:
                os.open(paths[0], os.O_WRONLY)
            assert e.value.errno == errno.ETXTBSY
            assert time.monotonic() - t0 >= 0.5  # it waited for closes on their way first
            with pytest.raises(OSError) as e:
                os.truncate(paths[0], 0)
            assert e.value.errno == errno.ETXTBSY
            # New read-only opens are still served from the shared copy (the kernel's rule).
            assert cached_pages(paths[0]) == 0
            assert read_file(paths[0]) == data
        finally:
            h.close()
        # Once the last shared open is closed the file is an ordinary one again.
        with open(paths[0], "r+b") as f:
            f.write(b"changed")
        assert read_file(paths[0])[:7] == b"changed"
        assert read_file(paths[1]) == data, "a sibling changed with the file that left the group"
        h = Holder(paths[0])
        try:
            assert h.cached > 0 and h.digest != sha(data)
        finally:
            h.close()
        assert metric(m, "shared_groups") == 0  # one member left: no group of two


def test_different_contents_and_sizes_never_share(mounted):
    with mounted("size=256m,share_immutable") as m:
        a = os.urandom(PAGES * PAGE)
        b = bytearray(a)
        b[-1] ^= 1
        shorter = a[:-PAGE]
        d = os.path.join(m.path, "d")
        os.mkdir(d)
        files = {"a1": a, "a2": a, "b": bytes(b), "short": shorter}
        for name, content in files.items():
            write_file(os.path.join(d, name), content)
            chattr(os.path.join(d, name), "+i")
        holders = {name: Holder(os.path.join(d, name)) for name in files}
        try:
            for name, h in holders.items():
                assert h.digest == sha(files[name]), name
                assert h.cached == 0
            assert metric(m, "shared_groups") == 1 and metric(m, "shared_group_files") == 2
            assert metric(m, "shared_cache_bytes") == 2 * len(a) + len(shorter)
        finally:
            for h in holders.values():
                h.close()


def test_unlinking_a_member_leaves_the_others_intact(mounted):
    with mounted("size=256m,share_immutable") as m:
        data = os.urandom(PAGES * PAGE)
        paths = immutable_copies(m, "a", data, n=3)
        holders = [Holder(p) for p in paths[1:]]
        try:
            with pytest.raises(PermissionError):
                os.unlink(paths[0])  # immutable
            h0 = Holder(paths[0])
            chattr(paths[0], "-i")
            os.unlink(paths[0])
            assert h0.digest == sha(data)
            h0.close()
            for p in paths[1:]:
                assert read_file(p) == data
            assert wait_for(lambda: metric(m, "shared_group_files") == 2)
        finally:
            for h in holders:
                h.close()


def test_owners_share_only_with_merge_across_owners(mounted):
    with mounted("size=256m,share_immutable") as m:
        data = os.urandom(PAGES * PAGE)
        for sub, across in (("apart", 0), ("across", 1)):
            kset(m, "merge_across_owners", across)
            d = os.path.join(m.path, sub)
            os.mkdir(d)
            paths = [os.path.join(d, f"u{uid}") for uid in (1001, 1002)]
            for p, uid in zip(paths, (1001, 1002)):
                write_file(p, data)
                os.chown(p, uid, uid)
                chattr(p, "+i")
            holders = [Holder(p) for p in paths]
            try:
                assert [h.cached for h in holders] == [0, 0]
                assert metric(m, "shared_groups") == across
                assert metric(m, "shared_cache_bytes") == (1 if across else 2) * len(data)
            finally:
                for h in holders:
                    h.close()
            for p in paths:
                chattr(p, "-i")


def test_run_2_and_the_mergeable_opt_out_stop_sharing(mounted):
    with mounted("size=256m,share_immutable") as m:
        data = os.urandom(PAGES * PAGE)
        paths = immutable_copies(m, "a", data, n=2)
        assert read_file(paths[0]) == data and read_file(paths[1]) == data
        assert metric(m, "shared_groups") == 1
        kset(m, "run", 2)
        h = Holder(paths[0])
        try:
            assert h.cached >= PAGES * 9 // 10 and h.digest == sha(data)
        finally:
            h.close()
        assert metric(m, "shared_groups") == 0
        # run=0 keeps what is shared and lets sharing start again.
        kset(m, "run", 0)
        h = Holder(paths[1])
        try:
            assert h.cached == 0
        finally:
            h.close()
        # user.ksm.mergeable=0 opts a file out of sharing as out of merging.
        opt_out = os.path.join(m.path, "optout")
        write_file(opt_out, data)
        subprocess.run(["setfattr", "-n", "user.ksm.mergeable", "-v", "0", opt_out], check=True)
        chattr(opt_out, "+i")
        h = Holder(opt_out)
        try:
            assert h.cached >= PAGES * 9 // 10
        finally:
            h.close()


def test_a_daemon_without_the_privilege_mounts_and_says_why_once(base_dir):
    # /dev/fuse is root-only here; an unprivileged daemon needs it (restored after).
    mode = stat.S_IMODE(os.stat("/dev/fuse").st_mode)
    path = os.path.join(base_dir, "unpriv")
    os.mkdir(path)
    os.chown(path, 65534, 65534)
    log = os.path.join(base_dir, "unpriv.log")
    from fsops import ksmfs_bin, is_mounted
    os.chmod("/dev/fuse", 0o666)
    proc = None
    try:
        with open(log, "wb") as out:
            proc = subprocess.Popen(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                                     ksmfs_bin(), path, "-f", "-o", "size=64m,share_immutable"],
                                    stdout=out, stderr=subprocess.STDOUT, cwd="/")
        assert wait_for(lambda: is_mounted(path) or proc.poll() is not None, 20)
        text = open(log).read()
        assert is_mounted(path), text
        lines = [l for l in text.splitlines() if "share_immutable" in l]
        assert len(lines) == 1 and "CAP_SYS_ADMIN" in lines[0] and "works as without it" in lines[0], text
        r = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c",
                            f"echo hello > {path}/f && cat {path}/f && cat {path}/ksm/metrics"],
                           capture_output=True, text=True, cwd="/")
        assert r.returncode == 0 and r.stdout.startswith("hello\n"), r.stderr
        assert re.search(r"^ksmfs_share_immutable\{[^}]*\} 0$", r.stdout, re.M)
    finally:
        os.chmod("/dev/fuse", mode)
        if proc is not None:
            subprocess.run(["fusermount3", "-u", path], capture_output=True)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        os.rmdir(path)


def test_share_immutable_and_writeback_cache_exclude_each_other(base_dir):
    from fsops import ksmfs_bin
    path = os.path.join(base_dir, "excl")
    os.mkdir(path)
    try:
        r = subprocess.run([ksmfs_bin(), path, "-f", "-o", "share_immutable,writeback_cache"],
                           capture_output=True, text=True, timeout=20)
        assert r.returncode != 0
        assert "share_immutable and writeback_cache exclude each other" in r.stderr
    finally:
        os.rmdir(path)
