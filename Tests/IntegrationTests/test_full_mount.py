# A full mount loses nothing: with the writeback cache on (the default), ENOSPC reaches the
# writer at write() as on tmpfs, every write() that returned success is stored, close and fsync
# report nothing late, and after the kernel's caches are dropped every file reads back exactly
# as its writer was told (no phantom size, no zero pages). dd, cp, echo, mmap stores and
# several writers at once; the same tests pass on tmpfs (--target=tmpfs).

import errno
import os
import signal
import subprocess
import sys
import textwrap

import pytest

from fsops import MiB, PAGE, read_file

SEED_BYTES = 8 * MiB


def drop_all_caches():
    """Write back and drop the page cache and unused inodes machine-wide, so that sizes and
    bytes come from the filesystem, not from what the kernel kept."""
    os.sync()
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def pattern(tag, n):
    """n bytes of data unique to `tag` (no page equals another, so nothing merges away)."""
    out = bytearray()
    block = 0
    while len(out) < n:
        out += (f"{tag}:{block:012d}:".encode() * 200)[:PAGE]
        block += 1
    return bytes(out[:n])


WRITER = textwrap.dedent("""
    import os, sys, json
    path, tag, chunk = sys.argv[1], sys.argv[2], int(sys.argv[3])
    sys.path.insert(0, sys.argv[4])
    from test_full_mount import pattern
    data = pattern(tag, 256 * chunk)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    told, first = 0, None
    while told < len(data):
        try:
            n = os.write(fd, data[told:told + chunk])
        except OSError as e:
            first = ("write", e.errno); break
        told += n
    late = None
    for stage, call in (("fsync", lambda: os.fsync(fd)), ("close", lambda: os.close(fd))):
        try:
            call()
        except OSError as e:
            late = late or (stage, e.errno)
    print(json.dumps({"told": told, "first": first, "late": late}))
""")


def start_writer(path, tag, chunk):
    here = os.path.dirname(os.path.abspath(__file__))
    return subprocess.Popen([sys.executable, "-c", WRITER, path, tag, str(chunk), here],
                            stdout=subprocess.PIPE, text=True)


def finish_writer(p):
    import json
    out, _ = p.communicate(timeout=120)
    assert p.returncode == 0, f"writer failed (rc {p.returncode})"
    return json.loads(out)


def assert_reads_back_as_told(path, tag, told):
    """The file is exactly the first `told` bytes its writer wrote: size and every byte."""
    size = os.stat(path).st_size
    assert size == told, f"{path}: size {size} but its writer was told {told} bytes were written"
    got = read_file(path)
    want = pattern(tag, told)
    if got != want:
        bad = next(i for i in range(0, told, PAGE) if got[i:i + PAGE] != want[i:i + PAGE])
        zeros = got[bad:bad + PAGE] == bytes(PAGE)
        pytest.fail(f"{path}: page at {bad} differs from what was written{' (reads as zeros)' if zeros else ''}")


def fill(path, tag):
    """One writer fills the mount in 1 MiB write() calls; returns what it was told."""
    r = finish_writer(start_writer(path, tag, MiB))
    assert r["first"] == ["write", errno.ENOSPC], f"expected ENOSPC at write(), got {r}"
    assert r["late"] is None, f"an error surfaced only at {r['late']} (data the writer thought stored)"
    return r["told"]


def test_one_writer_gets_ENOSPC_at_write_and_every_byte_it_was_told_of_is_stored(mounted):
    with mounted("size=64m") as m:
        keep = pattern("keep", 3 * MiB)
        with open(os.path.join(m.path, "keep"), "wb") as f:
            f.write(keep)
        told = fill(os.path.join(m.path, "big"), "big")
        assert told >= 40 * MiB, f"only {told >> 20} MiB of a 64 MiB mount accepted"
        st = os.statvfs(m.path)
        assert st.f_bavail == 0, "ENOSPC while statfs still shows space available"
        drop_all_caches()
        assert_reads_back_as_told(os.path.join(m.path, "big"), "big", told)
        assert read_file(os.path.join(m.path, "keep")) == keep
        m.assert_alive()


def test_echo_and_dd_on_a_full_mount_fail_at_write_and_leave_what_they_wrote(mounted):
    with mounted("size=32m") as m:
        fill(os.path.join(m.path, "filler"), "filler")
        note = os.path.join(m.path, "note.txt")
        r = subprocess.run(["bash", "-c", f"echo important > {note}"], capture_output=True, text=True)
        assert r.returncode != 0, "echo into a full mount returned 0"
        assert "No space left on device" in r.stderr
        src = os.path.join(m.path, "..", "dd-src")
        with open(src, "wb") as f:
            f.write(pattern("dd", 4 * MiB))
        try:
            r = subprocess.run(["dd", f"if={src}", f"of={m.path}/dd-out", "bs=64k"], capture_output=True, text=True)
        finally:
            os.unlink(src)
        assert r.returncode != 0
        assert "error writing" in r.stderr and "No space left on device" in r.stderr, r.stderr
        assert "closing" not in r.stderr, f"ENOSPC surfaced only at close: {r.stderr}"
        drop_all_caches()
        assert os.stat(note).st_size == 0, "echo failed but its text was stored"
        assert os.stat(os.path.join(m.path, "dd-out")).st_size == 0, "dd wrote into a mount with no space available"
        m.assert_alive()


def test_cp_of_a_file_larger_than_the_mount_fails_and_keeps_an_exact_prefix(mounted, tmp_path):
    with mounted("size=32m") as m:
        src = tmp_path / "src"
        data = pattern("cp", 48 * MiB)
        src.write_bytes(data)
        dst = os.path.join(m.path, "copy")
        r = subprocess.run(["cp", str(src), dst], capture_output=True, text=True)
        assert r.returncode != 0 and "No space left on device" in r.stderr, r.stderr
        drop_all_caches()
        got = read_file(dst)
        assert len(got) > 8 * MiB
        assert got == data[:len(got)], "the copy is not a prefix of its source"
        m.assert_alive()


def test_four_writers_at_once_each_read_back_exactly_as_told(mounted):
    with mounted("size=64m") as m:
        procs = [(t, start_writer(os.path.join(m.path, t), t, c))
                 for t, c in (("w1", MiB), ("w2", 256 << 10), ("w3", 64 << 10), ("w4", 4096))]
        results = {t: finish_writer(p) for t, p in procs}
        for t, r in results.items():
            assert r["late"] is None, f"{t}: an error surfaced only at {r['late']}"
            assert r["first"] in (None, ["write", errno.ENOSPC]), f"{t}: {r}"
        assert any(r["first"] for r in results.values()), "the mount never filled"
        sizes_before = {t: os.stat(os.path.join(m.path, t)).st_size for t in results}
        drop_all_caches()
        for t, r in results.items():
            assert sizes_before[t] == r["told"], f"{t}: size {sizes_before[t]} before the caches were dropped, told {r['told']}"
            assert_reads_back_as_told(os.path.join(m.path, t), t, r["told"])
        m.assert_alive()


MMAP_STORE = textwrap.dedent("""
    import mmap, os, sys
    path, n = sys.argv[1], int(sys.argv[2])
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    os.ftruncate(fd, n)
    mm = mmap.mmap(fd, n)
    for off in range(0, n, 4096):
        mm[off:off + 8] = b"page%04d" % (off // 4096)
    try:
        mm.flush()
    except OSError as e:
        print("msync", e.errno); sys.exit(0)
    mm.close()
    os.close(fd)
    print("ok")
""")


def test_mmap_stores_on_a_full_mount_are_kept_or_refused_never_lost(mounted):
    """tmpfs kills the storing process with SIGBUS; ksmfs keeps the stores (the reserve holds
    what the kernel accepted). Either way, what msync reported as stored reads back."""
    with mounted("size=32m") as m:
        fill(os.path.join(m.path, "filler"), "filler")
        path = os.path.join(m.path, "mapped")
        n = 256 * 1024
        p = subprocess.run([sys.executable, "-c", MMAP_STORE, path, str(n)], capture_output=True, text=True, timeout=60)
        if p.returncode == -signal.SIGBUS:
            pass   # tmpfs: the store itself was refused
        else:
            assert p.returncode == 0, p.stderr
            drop_all_caches()
            got = read_file(path)
            if p.stdout.strip() == "ok":
                for off in range(0, n, 4096):
                    assert got[off:off + 8] == b"page%04d" % (off // 4096), f"store at {off} reported by msync but lost"
            else:
                assert p.stdout.split()[0] == "msync"
        m.assert_alive()


def test_writes_work_again_after_space_is_freed(mounted):
    with mounted("size=32m") as m:
        fill(os.path.join(m.path, "a"), "a")
        os.unlink(os.path.join(m.path, "a"))
        r = finish_writer(start_writer(os.path.join(m.path, "b"), "b", 256 << 10))
        assert r["late"] is None
        told = r["told"]
        assert told >= 16 * MiB, f"only {told >> 20} MiB after freeing the whole mount"
        drop_all_caches()
        assert_reads_back_as_told(os.path.join(m.path, "b"), "b", told)
        m.assert_alive()


def test_without_writeback_cache_ENOSPC_is_exact_at_write(mounted):
    with mounted("size=16m,no_writeback_cache") as m:
        told = fill(os.path.join(m.path, "big"), "big")
        drop_all_caches()
        assert_reads_back_as_told(os.path.join(m.path, "big"), "big", told)
        assert told >= 15 * MiB, "without the writeback cache nothing needs a reserve"
