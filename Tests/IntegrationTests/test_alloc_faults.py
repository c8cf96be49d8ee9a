# Allocation failures are survived (ksmfs-only). The daemon runs with injected failures
# (KSMFS_FAULTS): every 13th block allocation refused, every 7th MADV_POPULATE_WRITE failing
# with ENOMEM, every 5th MADV_DONTNEED failing (freed pages then zeroed by hand), while three
# writers, an mmap writer and sparse writes run at once and the engine merges, with run=2
# toggled. Each failing operation must return ENOSPC or ENOMEM (and be retried by its writer),
# no other file may change, the daemon keeps serving, and at the end every file is exactly as
# written, unmerging leaves no shared pages, and the blocks in use are exactly the files' pages
# (no block leaked by a failed operation).

import errno
import mmap
import os
import subprocess
import sys
import textwrap
import time

import pytest

from fsops import MiB, PAGE, read_file
from ksmops import kset, kval

pytestmark = pytest.mark.ksmfs_only

FAULTS = "allocate:13,populate:7,release:5"
ALLOWED = (errno.ENOSPC, errno.ENOMEM)

WRITER = textwrap.dedent("""
    import errno, os, sys
    path, seed, chunk, total, expect = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
    # Half the chunks repeat one page (they merge), half are unique.
    same = bytes((seed * 7 + i) % 251 for i in range(4096))
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    failures, off = 0, 0
    while off < total:
        k = off // chunk
        data = (same * (chunk // 4096)) if k % 2 else os.urandom(chunk)
        while True:
            try:
                assert os.pwrite(fd, data, off) == len(data)
                break
            except OSError as e:
                if e.errno not in (errno.ENOSPC, errno.ENOMEM):
                    print("BAD", e.errno, flush=True); sys.exit(1)
                failures += 1
        with open(expect, "r+b" if os.path.exists(expect) else "wb") as x:
            x.seek(off); x.write(data)
        off += chunk
    os.close(fd)
    print("failures", failures, flush=True)
""")

MMAP_WRITER = textwrap.dedent("""
    import errno, mmap, os, sys
    path, n = sys.argv[1], int(sys.argv[2])
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    os.ftruncate(fd, n)
    m = mmap.mmap(fd, n)
    failures = 0
    for round in range(4):
        for off in range(0, n, 4096):
            m[off:off + 16] = b"r%d-page%09d" % (round, off // 4096)
        while True:
            try:
                m.flush(); break
            except OSError as e:
                if e.errno not in (errno.ENOSPC, errno.ENOMEM, errno.EIO):
                    print("BAD", e.errno, flush=True); sys.exit(1)
                failures += 1
                # the failed pages were dropped from the dirty set: store them again
                for off in range(0, n, 4096):
                    m[off:off + 16] = b"r%d-page%09d" % (round, off // 4096)
    m.close(); os.close(fd)
    print("failures", failures, flush=True)
""")


def _start(code, *args):
    return subprocess.Popen([sys.executable, "-c", code, *map(str, args)], stdout=subprocess.PIPE, text=True)


def test_injected_allocation_and_madvise_failures_are_errno_and_damage_nothing(mounted, tmp_path, monkeypatch):
    monkeypatch.setenv("KSMFS_FAULTS", FAULTS)
    with mounted("size=256m,no_writeback_cache") as m:
        assert "fault injection on" in m.log()
        keep = os.urandom(2 * MiB)
        with open(os.path.join(m.path, "keep"), "wb") as f:
            f.write(keep)
        for name, value in (("pages_to_scan", 10000), ("sleep_millisecs", 0), ("run", 1)):
            kset(m, name, value)
        writers = [_start(WRITER, os.path.join(m.path, f"w{i}"), i, c, 8 * MiB, tmp_path / f"w{i}")
                   for i, c in enumerate((MiB, 64 << 10, 4096))]
        mapper = _start(MMAP_WRITER, os.path.join(m.path, "mapped"), 2 * MiB)
        # Sparse writes: 100 bytes in the middle of fresh pages; the rest of each page must
        # read as zeros even where a freed block came back without MADV_DONTNEED.
        sparse = os.path.join(m.path, "sparse")
        fd = os.open(sparse, os.O_RDWR | os.O_CREAT, 0o644)
        sparse_failures = 0
        for k in range(512):
            while True:
                try:
                    os.pwrite(fd, b"S" * 100, k * 3 * PAGE + 1000)
                    break
                except OSError as e:
                    assert e.errno in ALLOWED, e
                    sparse_failures += 1
        os.close(fd)
        run2 = {"ok": 0, "failed": 0}
        while any(p.poll() is None for p in writers + [mapper]):
            try:
                kset(m, "run", 2)
                run2["ok"] += 1
            except OSError as e:
                assert e.errno in ALLOWED, e
                run2["failed"] += 1
            kset(m, "run", 1)
            time.sleep(0.2)
        outs = [p.communicate()[0] for p in writers + [mapper]]
        assert all(p.returncode == 0 for p in writers + [mapper]), outs
        failures = sum(int(o.split()[-1]) for o in outs) + sparse_failures
        m.assert_alive()
        with open(f"/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        for i in range(3):
            p = os.path.join(m.path, f"w{i}")
            assert read_file(p) == read_file(tmp_path / f"w{i}"), f"w{i} differs from what was written"
        mapped = read_file(os.path.join(m.path, "mapped"))
        for off in range(0, 2 * MiB, 4096):
            assert mapped[off:off + 16] == b"r3-page%09d" % (off // 4096), f"mapped page {off // 4096} lost"
        data = read_file(sparse)
        for k in range(512):
            page = data[k * 3 * PAGE:k * 3 * PAGE + PAGE]
            want = (bytes(1000) + b"S" * 100 + bytes(PAGE - 1100))[:len(page)]   # the last page ends at EOF
            assert page == want, f"sparse page {k}: not zeros around the write"
        assert read_file(os.path.join(m.path, "keep")) == keep
        # Unmerge everything (retrying injected failures): no shared page is left, and the
        # blocks in use are exactly the pages the files hold.
        for _ in range(200):
            try:
                kset(m, "run", 2)
                break
            except OSError as e:
                assert e.errno in ALLOWED, e
        assert kval(m, "run") == "2"
        assert (kval(m, "pages_shared"), kval(m, "pages_sharing")) == ("0", "0")
        held = sum(os.stat(os.path.join(m.path, p)).st_blocks // 8 for p in os.listdir(m.path) if p != "ksm")
        st = os.statvfs(m.path)
        assert st.f_blocks - st.f_bfree == held, f"{st.f_blocks - st.f_bfree} blocks in use, the files hold {held}"
        print(f"\ninjected failures seen by writers: {failures}; run=2 ok {run2['ok']}, failed {run2['failed']}")
        assert failures > 0, "no injected failure reached a writer: the seam is not driven"
        m.assert_alive()
