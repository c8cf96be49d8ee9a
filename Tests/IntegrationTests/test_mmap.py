# mmap(MAP_SHARED) on the mount: stores made through a mapping in one process reach
# read() in another (and the daemon: checked after the page cache is dropped), mapped
# reads see write()s, and a file grown with truncate can be mapped and written to its
# last byte. The shared-writable mapping is what writeback-cache FUSE must get right.

import mmap
import os

from fsops import PAGE, read_cold, read_file, run_python, write_file


def test_MAP_SHARED_stores_in_one_process_are_read_by_another_process(d):
    path = os.path.join(d, "shared")
    write_file(path, bytes(4 * PAGE))
    # child: map, store a marker at offsets straddling pages, msync, exit
    run_python(f"""
        fd = os.open({path!r}, os.O_RDWR)
        m = mmap.mmap(fd, 4 * 4096, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        m[4090:4106] = b"ACROSS-PAGE-EDGE"
        m[0:5] = b"start"
        m[4 * 4096 - 3:] = b"end"
        m.flush()
        m.close()
        os.close(fd)
    """)
    expected = bytearray(4 * PAGE)
    expected[4090:4106] = b"ACROSS-PAGE-EDGE"
    expected[0:5] = b"start"
    expected[-3:] = b"end"
    out = run_python(f"""
        with open({path!r}, "rb") as f:
            sys.stdout.write(f.read().hex())
    """)
    assert bytes.fromhex(out) == bytes(expected)
    assert read_cold(path) == bytes(expected)


def test_mmap_read_sees_data_written_with_write(d):
    path = os.path.join(d, "f")
    data = os.urandom(3 * PAGE + 123)
    write_file(path, data)
    out = run_python(f"""
        fd = os.open({path!r}, os.O_RDONLY)
        m = mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ)
        sys.stdout.write(m[:].hex())
        m.close()
        os.close(fd)
    """)
    assert bytes.fromhex(out) == data


def test_mmap_write_then_munmap_then_read_back_in_same_process(d):
    path = os.path.join(d, "f")
    write_file(path, b"\x11" * (2 * PAGE))
    fd = os.open(path, os.O_RDWR)
    try:
        m = mmap.mmap(fd, 2 * PAGE, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        m[PAGE - 2:PAGE + 2] = b"WXYZ"
        m.close()
    finally:
        os.close(fd)
    expected = b"\x11" * (PAGE - 2) + b"WXYZ" + b"\x11" * (PAGE - 2)
    assert read_file(path) == expected
    assert read_cold(path) == expected


def test_file_extended_by_truncate_maps_as_data_then_zeros_and_takes_stores(d):
    path = os.path.join(d, "f")
    write_file(path, b"head" * 25)  # 100 bytes
    size = 3 * PAGE + 5
    os.truncate(path, size)
    fd = os.open(path, os.O_RDWR)
    try:
        m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        assert m[:100] == b"head" * 25
        assert m[100:] == bytes(size - 100)
        m[size - 1] = 0x7A
        m[2 * PAGE] = 0x41
        m.flush()
        m.close()
    finally:
        os.close(fd)
    expected = bytearray(b"head" * 25 + bytes(size - 100))
    expected[size - 1] = 0x7A
    expected[2 * PAGE] = 0x41
    assert os.stat(path).st_size == size
    assert read_cold(path) == bytes(expected)


def test_write_through_fd_is_visible_in_an_existing_shared_mapping(d):
    path = os.path.join(d, "f")
    write_file(path, bytes(2 * PAGE))
    fd = os.open(path, os.O_RDWR)
    try:
        m = mmap.mmap(fd, 2 * PAGE, mmap.MAP_SHARED, mmap.PROT_READ)
        assert m[PAGE:PAGE + 5] == bytes(5)
        os.pwrite(fd, b"hello", PAGE)
        assert m[PAGE:PAGE + 5] == b"hello"
        m.close()
    finally:
        os.close(fd)
