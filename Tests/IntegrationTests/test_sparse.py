# Truncation, holes and block accounting: shrink-then-grow zero-fills (also inside a page),
# huge sparse sizes cost no blocks, SEEK_DATA/SEEK_HOLE find the real data, fallocate
# allocates / keeps size / punches holes / zeroes ranges, and copy_file_range copies
# exactly the requested bytes into an independent file.

import errno
import os

import pytest

from fsops import (FALLOC_FL_KEEP_SIZE, FALLOC_FL_PUNCH_HOLE, FALLOC_FL_ZERO_RANGE, MiB, PAGE,
                   drop_cache, fallocate, raises_errno, read_cold, read_file, write_file)


# --- truncate -------------------------------------------------------------------------

def test_truncate_down_then_up_reads_zeros_past_the_old_cut(d):
    path = os.path.join(d, "f")
    write_file(path, b"\xaa" * (3 * PAGE))
    os.truncate(path, 5000)
    assert os.stat(path).st_size == 5000
    os.truncate(path, 3 * PAGE)
    assert os.stat(path).st_size == 3 * PAGE
    expected = b"\xaa" * 5000 + bytes(3 * PAGE - 5000)
    assert read_file(path) == expected
    assert read_cold(path) == expected


def test_truncate_inside_a_page_then_extend_zeroes_the_tail_of_that_page(d):
    path = os.path.join(d, "f")
    write_file(path, b"\x55" * PAGE)
    os.truncate(path, 100)
    drop_cache(path)
    os.truncate(path, PAGE)
    assert read_file(path) == b"\x55" * 100 + bytes(PAGE - 100)
    assert read_cold(path) == b"\x55" * 100 + bytes(PAGE - 100)


def test_ftruncate_on_an_open_descriptor_shrinks_and_grows(d):
    path = os.path.join(d, "f")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"0123456789" * 1000)
        os.ftruncate(fd, 7)
        assert os.fstat(fd).st_size == 7
        assert os.pread(fd, 100, 0) == b"0123456"
        os.ftruncate(fd, 20000)
        assert os.fstat(fd).st_size == 20000
        assert os.pread(fd, 20000, 0) == b"0123456" + bytes(19993)
    finally:
        os.close(fd)
    assert read_cold(path) == b"0123456" + bytes(19993)


def test_truncate_to_1_TiB_is_sparse_costs_few_blocks_and_reads_zeros(d):
    path = os.path.join(d, "huge")
    write_file(path, b"x")
    os.truncate(path, 1 << 40)
    st = os.stat(path)
    assert st.st_size == 1 << 40
    assert st.st_blocks <= 8  # at most the one page holding "x"
    fd = os.open(path, os.O_RDONLY)
    try:
        assert os.pread(fd, 10, 0) == b"x" + bytes(9)
        assert os.pread(fd, 8192, (1 << 40) - 8192) == bytes(8192)
        assert os.pread(fd, 10, (1 << 39) + 3) == bytes(10)
    finally:
        os.close(fd)


# --- SEEK_DATA / SEEK_HOLE ---------------------------------------------------------------

def _two_islands(path):
    """Data in [0, 4096) and [1 MiB, 1 MiB + 4096); a hole between. Returns an fd."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    os.pwrite(fd, b"A" * PAGE, 0)
    os.pwrite(fd, b"B" * PAGE, MiB)
    os.fsync(fd)
    return fd


def test_SEEK_DATA_and_SEEK_HOLE_find_data_at_0_and_1_MiB_and_the_hole_between(d):
    fd = _two_islands(os.path.join(d, "f"))
    try:
        assert os.fstat(fd).st_size == MiB + PAGE
        assert os.lseek(fd, 0, os.SEEK_DATA) == 0
        assert os.lseek(fd, 0, os.SEEK_HOLE) == PAGE
        assert os.lseek(fd, 100, os.SEEK_HOLE) == PAGE
        assert os.lseek(fd, PAGE, os.SEEK_DATA) == MiB
        assert os.lseek(fd, PAGE + 1, os.SEEK_DATA) == MiB
        assert os.lseek(fd, MiB, os.SEEK_HOLE) == MiB + PAGE  # EOF is a hole
        assert os.pread(fd, 8, PAGE) == bytes(8)
        assert os.pread(fd, 8, MiB - 8) == bytes(8)
    finally:
        os.close(fd)


def test_SEEK_DATA_past_the_last_data_and_at_or_past_EOF_is_ENXIO(d):
    fd = _two_islands(os.path.join(d, "f"))
    try:
        os.ftruncate(fd, 2 * MiB)  # a trailing hole after the second island
        os.fsync(fd)
        with raises_errno(errno.ENXIO):
            os.lseek(fd, MiB + PAGE, os.SEEK_DATA)  # inside the file, but no data after
        with raises_errno(errno.ENXIO):
            os.lseek(fd, 2 * MiB, os.SEEK_DATA)  # exactly EOF
        with raises_errno(errno.ENXIO):
            os.lseek(fd, 3 * MiB, os.SEEK_DATA)  # past EOF
        with raises_errno(errno.ENXIO):
            os.lseek(fd, 3 * MiB, os.SEEK_HOLE)
        assert os.lseek(fd, MiB + 5, os.SEEK_DATA) == MiB + 5
    finally:
        os.close(fd)


def test_trailing_hole_after_truncate_up_is_found_and_has_no_data(d):
    path = os.path.join(d, "f")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.write(fd, b"D" * PAGE)
        os.ftruncate(fd, MiB)
        os.fsync(fd)
        assert os.lseek(fd, 0, os.SEEK_HOLE) == PAGE
        with raises_errno(errno.ENXIO):
            os.lseek(fd, PAGE, os.SEEK_DATA)  # no data after the first page
        assert os.lseek(fd, PAGE + 17, os.SEEK_HOLE) == PAGE + 17
    finally:
        os.close(fd)


# --- fallocate ---------------------------------------------------------------------------

def test_fallocate_default_mode_extends_size_and_allocates_blocks(d):
    path = os.path.join(d, "f")
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        before = os.fstat(fd).st_blocks
        fallocate(fd, 0, 0, MiB)
        st = os.fstat(fd)
        assert st.st_size == MiB
        assert st.st_blocks * 512 >= MiB > before * 512
        assert os.pread(fd, MiB, 0) == bytes(MiB)
    finally:
        os.close(fd)


def test_fallocate_KEEP_SIZE_allocates_past_EOF_without_changing_size(d):
    path = os.path.join(d, "f")
    write_file(path, b"z" * 100)
    fd = os.open(path, os.O_RDWR)
    try:
        before = os.fstat(fd).st_blocks
        fallocate(fd, FALLOC_FL_KEEP_SIZE, 0, MiB)
        st = os.fstat(fd)
        assert st.st_size == 100
        assert st.st_blocks > before
        assert st.st_blocks * 512 >= MiB
    finally:
        os.close(fd)
    assert read_cold(path) == b"z" * 100


def test_fallocate_PUNCH_HOLE_zeroes_the_range_keeps_size_and_leaves_a_seekable_hole(d):
    path = os.path.join(d, "f")
    write_file(path, b"\xaa" * (3 * PAGE))
    fd = os.open(path, os.O_RDWR)
    try:
        blocks = os.fstat(fd).st_blocks
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, PAGE, PAGE)
        st = os.fstat(fd)
        assert st.st_size == 3 * PAGE
        assert st.st_blocks == blocks - PAGE // 512
        os.fsync(fd)
        assert os.lseek(fd, 0, os.SEEK_HOLE) == PAGE
        assert os.lseek(fd, PAGE, os.SEEK_DATA) == 2 * PAGE
    finally:
        os.close(fd)
    expected = b"\xaa" * PAGE + bytes(PAGE) + b"\xaa" * PAGE
    assert read_file(path) == expected
    assert read_cold(path) == expected


def test_fallocate_PUNCH_HOLE_of_an_unaligned_range_zeroes_just_those_bytes(d):
    path = os.path.join(d, "f")
    write_file(path, b"\xaa" * (3 * PAGE))
    fd = os.open(path, os.O_RDWR)
    try:
        fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, 100, 2 * PAGE)  # 100 .. 8292
    finally:
        os.close(fd)
    expected = b"\xaa" * 100 + bytes(2 * PAGE) + b"\xaa" * (PAGE - 100)
    assert os.stat(path).st_size == 3 * PAGE
    assert read_file(path) == expected
    assert read_cold(path) == expected


@pytest.mark.ksmfs_only  # tmpfs answers EOPNOTSUPP to FALLOC_FL_ZERO_RANGE; ksmfs implements it
def test_fallocate_ZERO_RANGE_zeroes_an_unaligned_range_and_keeps_the_rest(d):
    path = os.path.join(d, "f")
    write_file(path, b"\xaa" * (3 * PAGE))
    fd = os.open(path, os.O_RDWR)
    try:
        fallocate(fd, FALLOC_FL_ZERO_RANGE, 100, 5000)
        assert os.fstat(fd).st_size == 3 * PAGE
        fallocate(fd, FALLOC_FL_ZERO_RANGE, 3 * PAGE - 10, 20)  # past EOF: extends the file
        assert os.fstat(fd).st_size == 3 * PAGE + 10
    finally:
        os.close(fd)
    expected = b"\xaa" * 100 + bytes(5000) + b"\xaa" * (3 * PAGE - 5100 - 10) + bytes(20)
    assert read_file(path) == expected
    assert read_cold(path) == expected


# --- copy_file_range ---------------------------------------------------------------------

def _copy_all(src_fd, dst_fd, count, src_off=None, dst_off=None):
    done = 0
    while done < count:
        n = os.copy_file_range(src_fd, dst_fd, count - done,
                               None if src_off is None else src_off + done,
                               None if dst_off is None else dst_off + done)
        assert n > 0, f"copy_file_range returned 0 with {count - done} bytes left"
        done += n


def test_copy_file_range_of_a_whole_file_gives_equal_content(d):
    src, dst = os.path.join(d, "src"), os.path.join(d, "dst")
    data = os.urandom(3 * MiB + 123)
    write_file(src, data)
    s = os.open(src, os.O_RDONLY)
    t = os.open(dst, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        _copy_all(s, t, len(data))
        os.fsync(t)
    finally:
        os.close(s)
        os.close(t)
    assert os.stat(dst).st_size == len(data)
    assert read_cold(dst) == data


def test_copy_file_range_of_unaligned_ranges_matches_a_model(d):
    src, dst = os.path.join(d, "src"), os.path.join(d, "dst")
    data = os.urandom(200_000)
    base = bytearray(b"\x01" * 100_000)
    write_file(src, data)
    write_file(dst, bytes(base))
    s = os.open(src, os.O_RDONLY)
    t = os.open(dst, os.O_RDWR)
    try:
        for src_off, dst_off, n in [(1000, 777, 50_000), (4095, 8193, 2), (123_457, 99_990, 30_001)]:
            _copy_all(s, t, n, src_off, dst_off)
            if len(base) < dst_off + n:
                base.extend(bytes(dst_off + n - len(base)))
            base[dst_off:dst_off + n] = data[src_off:src_off + n]
        os.fsync(t)
    finally:
        os.close(s)
        os.close(t)
    assert read_file(dst) == bytes(base)
    assert read_cold(dst) == bytes(base)
    assert read_cold(src) == data


def test_writing_a_copy_made_by_copy_file_range_leaves_the_source_unchanged(d):
    src, dst = os.path.join(d, "src"), os.path.join(d, "dst")
    data = os.urandom(16 * PAGE)
    write_file(src, data)
    s = os.open(src, os.O_RDONLY)
    t = os.open(dst, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _copy_all(s, t, len(data), 0, 0)
        os.pwrite(t, b"\x00" * 3 * PAGE, 5 * PAGE - 1)
        os.fsync(t)
    finally:
        os.close(s)
        os.close(t)
    assert read_cold(src) == data
    expected = data[:5 * PAGE - 1] + bytes(3 * PAGE) + data[8 * PAGE - 1:]
    assert read_cold(dst) == expected
