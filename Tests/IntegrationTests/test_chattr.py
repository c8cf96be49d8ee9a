# chattr/lsattr with tmpfs's semantics, side by side (run with --target=tmpfs for the
# reference): the flags tmpfs keeps (immutable i, append-only a, nodump d, noatime A) are set
# and read back with the real tools; every operation an immutable or append-only file or
# directory forbids fails with tmpfs's errno; handles opened before the flag keep writing;
# unsupported flags are EOPNOTSUPP; only CAP_LINUX_IMMUTABLE sets i or a, while the owner may
# set d. Each test clears the flags it set, so the mount can be torn down.

import errno
import fcntl
import os
import struct
import subprocess

import pytest

from fsops import NOBODY, errname, run_as, write_file

GETFLAGS, SETFLAGS = 0x80086601, 0x40086602
IMMUTABLE, APPEND, NODUMP, NOATIME = 0x10, 0x20, 0x40, 0x80


def flags(path):
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        return struct.unpack("I", fcntl.ioctl(fd, GETFLAGS, b"\0" * 4))[0]
    finally:
        os.close(fd)


def chattr(*args):
    return subprocess.run(["chattr", *args], capture_output=True, text=True, timeout=30)


def lsattr_letters(path, directory=False):
    r = subprocess.run(["lsattr", "-d", path] if directory else ["lsattr", path],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    return r.stdout.split()[0]


@pytest.fixture
def m(mounted):
    with mounted("size=64m,allow_other") as mount:
        made = []
        yield mount, made
        for p in made:  # clear what a test set, whatever happened
            chattr("-ia", p)


def test_chattr_sets_and_lsattr_shows_each_flag_tmpfs_keeps(m):
    mnt, made = m
    f = os.path.join(mnt.path, "f")
    write_file(f, b"data")
    made.append(f)
    assert flags(f) == 0
    for letter, bit in (("i", IMMUTABLE), ("a", APPEND), ("d", NODUMP), ("A", NOATIME)):
        r = chattr(f"+{letter}", f)
        assert r.returncode == 0, r.stderr
        assert flags(f) & bit, letter
        assert letter in lsattr_letters(f)
        assert chattr(f"-{letter}", f).returncode == 0
        assert flags(f) == 0
    ctime = os.stat(f).st_ctime_ns
    assert chattr("+d", f).returncode == 0
    assert os.stat(f).st_ctime_ns >= ctime  # a flag change is an inode change
    assert chattr("-d", f).returncode == 0


def test_unsupported_flags_are_EOPNOTSUPP(m):
    mnt, _ = m
    f = os.path.join(mnt.path, "g")
    write_file(f, b"x")
    fd = os.open(f, os.O_RDONLY)
    try:
        for bad in (0x1, 0x8, 0x4000, 0x80000):  # secure deletion, sync, journal data, extents
            with pytest.raises(OSError) as e:
                fcntl.ioctl(fd, SETFLAGS, struct.pack("I", bad))
            assert e.value.errno == errno.EOPNOTSUPP, hex(bad)
        assert flags(f) == 0
    finally:
        os.close(fd)


def test_an_immutable_file_refuses_every_change_but_an_old_handle_keeps_writing(m):
    mnt, made = m
    d = mnt.path
    f = os.path.join(d, "imm")
    write_file(f, b"hello")
    write_file(os.path.join(d, "other"), b"o")
    old = os.open(f, os.O_RDWR)
    made.append(f)
    assert chattr("+i", f).returncode == 0
    try:
        got = {
            "open for writing": errname(lambda: os.close(os.open(f, os.O_WRONLY))),
            "open O_RDONLY|O_TRUNC": errname(lambda: os.close(os.open(f, os.O_RDONLY | os.O_TRUNC))),
            "truncate by name": errname(os.truncate, f, 1),
            "chmod": errname(os.chmod, f, 0o600),
            "chown": errname(os.chown, f, 0, 0),
            "utime": errname(os.utime, f, (1, 1)),
            "touch": errname(os.utime, f),
            "rename": errname(os.rename, f, os.path.join(d, "moved")),
            "rename over it": errname(os.rename, os.path.join(d, "other"), f),
            "link": errname(os.link, f, os.path.join(d, "hard")),
            "unlink": errname(os.unlink, f),
            "setxattr": errname(os.setxattr, f, "user.x", b"1"),
            "open for reading": errname(lambda: os.close(os.open(f, os.O_RDONLY))),
            "write through the old handle": errname(os.pwrite, old, b"J", 0),
        }
        assert got == {k: "EPERM" for k in got} | {"open for reading": "OK", "write through the old handle": "OK"}, got
        with open(f, "rb") as fh:
            assert fh.read() == b"Jello"
        assert os.path.exists(f) and not os.path.exists(os.path.join(d, "hard"))
    finally:
        os.close(old)
        assert chattr("-i", f).returncode == 0
    assert errname(os.unlink, f) == "OK"


def test_an_append_only_file_takes_appends_only(m):
    mnt, made = m
    f = os.path.join(mnt.path, "log")
    write_file(f, b"one\n")
    made.append(f)
    assert chattr("+a", f).returncode == 0
    try:
        assert errname(lambda: os.close(os.open(f, os.O_WRONLY))) == "EPERM"
        assert errname(lambda: os.close(os.open(f, os.O_WRONLY | os.O_APPEND | os.O_TRUNC))) == "EPERM"
        fd = os.open(f, os.O_WRONLY | os.O_APPEND)
        try:
            os.pwrite(fd, b"two\n", 0)  # O_APPEND: the offset is ignored, as on Linux
            os.write(fd, b"three\n")
        finally:
            os.close(fd)
        with open(f, "rb") as fh:
            assert fh.read() == b"one\ntwo\nthree\n"
        got = [errname(os.truncate, f, 0), errname(os.unlink, f), errname(os.chmod, f, 0o600),
               errname(os.rename, f, f + ".old"), errname(os.setxattr, f, "user.x", b"1")]
        assert got == ["EPERM"] * 5, got
    finally:
        assert chattr("-a", f).returncode == 0


def test_an_immutable_directory_takes_no_new_names_and_loses_none(m):
    mnt, made = m
    d = os.path.join(mnt.path, "dir")
    os.mkdir(d)
    write_file(os.path.join(d, "inside"), b"x")
    made.append(d)
    r = chattr("+i", d)
    assert r.returncode == 0, r.stderr
    try:
        assert "i" in lsattr_letters(d, directory=True)
        got = [errname(lambda: open(os.path.join(d, "new"), "w")),
               errname(os.mkdir, os.path.join(d, "sub")),
               errname(os.symlink, "x", os.path.join(d, "ln")),
               errname(os.unlink, os.path.join(d, "inside")),
               errname(os.rename, os.path.join(d, "inside"), os.path.join(mnt.path, "out")),
               errname(os.rmdir, d)]
        assert got == ["EPERM"] * 6, got
        with open(os.path.join(d, "inside"), "r+b") as fh:  # the files in it are not immutable
            fh.write(b"y")
    finally:
        assert chattr("-i", d).returncode == 0
    os.unlink(os.path.join(d, "inside"))
    os.rmdir(d)


def test_only_cap_linux_immutable_sets_i_or_a_and_the_owner_may_set_d(m):
    mnt, _ = m
    f = os.path.join(mnt.path, "mine")
    write_file(f, b"x")
    os.chown(f, NOBODY, NOBODY)
    out = run_as(NOBODY, NOBODY, f"""
        import fcntl, struct
        def setf(v):
            fd = os.open({f!r}, os.O_RDONLY)
            try: fcntl.ioctl(fd, {SETFLAGS}, struct.pack("I", v))
            finally: os.close(fd)
        print(errname(setf, {IMMUTABLE}), errname(setf, {APPEND}), errname(setf, {NODUMP}))
    """)
    assert out.split() == ["EPERM", "EPERM", "OK"], out
    assert flags(f) == NODUMP
