# File contents survive the round trip: cp/cmp of a 50 MB random file, pread/pwrite at
# offsets that straddle 4 KiB pages (checked against an in-memory model, also after the
# kernel's page cache is dropped so the daemon's copy is what is read), O_APPEND, O_TRUNC,
# O_EXCL and reads at and past end of file.

import errno
import os
import random
import subprocess

from fsops import MiB, PAGE, drop_cache, raises_errno, read_cold, read_file, write_file


def test_cp_of_50_MB_random_file_in_and_out_is_byte_identical(d, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(50 * 1000 * 1000))
    inside = os.path.join(d, "copy.bin")
    back = tmp_path / "back.bin"

    subprocess.run(["cp", str(src), inside], check=True)
    assert os.stat(inside).st_size == 50_000_000
    assert subprocess.run(["cmp", str(src), inside]).returncode == 0
    drop_cache(inside)
    subprocess.run(["cp", inside, str(back)], check=True)
    assert subprocess.run(["cmp", inside, str(back)]).returncode == 0
    assert subprocess.run(["cmp", str(src), str(back)]).returncode == 0


def test_pwrite_and_pread_at_odd_offsets_spanning_pages_match_a_model(d):
    rng = random.Random(1234)
    path = os.path.join(d, "f")
    model = bytearray()
    # (offset, length): inside a page, across one boundary, across several, past EOF with a gap
    writes = [(0, 10), (4090, 12), (8191, 2), (1, 4095), (12287, 8194), (40000, 3),
              (3 * PAGE - 1, PAGE + 2), (70001, 20000), (5, 1)]
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        for off, n in writes:
            data = bytes(rng.randrange(1, 256) for _ in range(n))
            assert os.pwrite(fd, data, off) == n
            if len(model) < off + n:
                model.extend(b"\0" * (off + n - len(model)))
            model[off:off + n] = data
            assert os.fstat(fd).st_size == len(model)
            assert os.pread(fd, n, off) == data
        for off, n in [(0, len(model)), (4095, 2), (8190, 5000), (33, 70000), (len(model) - 7, 7)]:
            assert os.pread(fd, n, off) == bytes(model[off:off + n]), f"pread({n}, {off})"
    finally:
        os.close(fd)
    assert read_cold(path) == bytes(model)
    fd = os.open(path, os.O_RDONLY)
    try:
        for off, n in [(4095, 2), (12287, 8194), (40001, 1), (70000, 3)]:
            assert os.pread(fd, n, off) == bytes(model[off:off + n]), f"cold pread({n}, {off})"
    finally:
        os.close(fd)


def test_O_APPEND_writes_land_at_end_even_from_two_descriptors(d):
    path = os.path.join(d, "log")
    write_file(path, b"abc")
    a = os.open(path, os.O_WRONLY | os.O_APPEND)
    b = os.open(path, os.O_WRONLY | os.O_APPEND)
    try:
        os.lseek(a, 0, os.SEEK_SET)  # ignored by O_APPEND
        os.write(a, b"1")
        os.write(b, b"22")
        os.write(a, b"333")
    finally:
        os.close(a)
        os.close(b)
    assert read_file(path) == b"abc122333"
    assert read_cold(path) == b"abc122333"
    assert os.stat(path).st_size == 9


def test_O_TRUNC_empties_an_existing_file(d):
    path = os.path.join(d, "f")
    write_file(path, os.urandom(3 * PAGE + 5))
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    os.close(fd)
    assert os.stat(path).st_size == 0
    assert read_cold(path) == b""
    write_file(path, b"xy")  # and a rewrite after truncation holds only the new bytes
    assert read_cold(path) == b"xy"


def test_O_CREAT_O_EXCL_on_existing_name_is_EEXIST(d):
    path = os.path.join(d, "f")
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
    with raises_errno(errno.EEXIST):
        os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    os.symlink("dangling-target", os.path.join(d, "link"))
    with raises_errno(errno.EEXIST):
        os.open(os.path.join(d, "link"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    assert not os.path.lexists(os.path.join(d, "dangling-target"))


def test_read_at_or_past_EOF_returns_empty_bytes(d):
    path = os.path.join(d, "f")
    write_file(path, b"x" * 5000)
    drop_cache(path)
    fd = os.open(path, os.O_RDONLY)
    try:
        assert os.pread(fd, 100, 5000) == b""
        assert os.pread(fd, 100, 5100) == b""
        assert os.pread(fd, 100, 1 << 30) == b""
        assert os.pread(fd, 100, 4990) == b"x" * 10
        os.lseek(fd, 0, os.SEEK_END)
        assert os.read(fd, 10) == b""
    finally:
        os.close(fd)


def test_many_small_files_keep_their_own_contents(d):
    contents = {f"f{i}": os.urandom(i * 37 % 9000) for i in range(200)}
    for name, data in contents.items():
        write_file(os.path.join(d, name), data)
    assert sorted(os.listdir(d)) == sorted(contents)
    for name, data in contents.items():
        assert read_cold(os.path.join(d, name)) == data, name


def test_identical_pages_in_two_files_stay_independent_after_one_is_rewritten(d):
    # ksmfs may merge the identical pages; a write to one copy must not show in the other.
    page = os.urandom(PAGE)
    a, b = os.path.join(d, "a"), os.path.join(d, "b")
    write_file(a, page * 64)
    write_file(b, page * 64)
    fd = os.open(b, os.O_WRONLY)
    try:
        os.pwrite(fd, b"\xff" * 100, 10 * PAGE + 7)
        os.fsync(fd)
    finally:
        os.close(fd)
    assert read_cold(a) == page * 64
    expected = bytearray(page * 64)
    expected[10 * PAGE + 7:10 * PAGE + 107] = b"\xff" * 100
    assert read_cold(b) == bytes(expected)
    assert os.stat(a).st_size == os.stat(b).st_size == 64 * PAGE


def test_1_MiB_zero_file_reads_back_as_zeros(d):
    path = os.path.join(d, "z")
    write_file(path, bytes(MiB))
    assert read_cold(path) == bytes(MiB)
