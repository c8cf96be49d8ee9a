# Timestamps as tmpfs keeps them: creation sets atime = mtime = ctime, data changes bump
# mtime and ctime, metadata changes bump ctime only, utime/utimensat set exact
# nanoseconds and honour UTIME_NOW / UTIME_OMIT, and directory entries changing bump the
# parent's mtime and ctime. Reads (atime) are not checked: relatime makes them policy.

import os
import time

from fsops import UTIME_NOW, UTIME_OMIT, utimensat, write_file

TICK = 0.03        # sleep between steps so a change of timestamp is observable
SLACK_NS = 50_000_000  # kernel coarse clocks may trail time.time_ns() by a tick


def _times(path, follow=True):
    st = os.stat(path, follow_symlinks=follow)
    return st.st_atime_ns, st.st_mtime_ns, st.st_ctime_ns


def _between(ns, lo, hi):
    return lo - SLACK_NS <= ns <= hi + SLACK_NS


def test_new_file_has_atime_equal_mtime_equal_ctime_near_now(d):
    t0 = time.time_ns()
    path = os.path.join(d, "f")
    os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o644))
    t1 = time.time_ns()
    a, m, c = _times(path)
    assert a == m == c
    assert _between(m, t0, t1)


def test_new_dir_symlink_and_fifo_have_equal_atime_mtime_ctime(d):
    os.mkdir(os.path.join(d, "sub"))
    os.symlink("x", os.path.join(d, "l"))
    os.mkfifo(os.path.join(d, "p"))
    for name in ("sub", "l", "p"):
        a, m, c = _times(os.path.join(d, name), follow=False)
        assert a == m == c, name


def test_write_bumps_mtime_and_ctime(d):
    path = os.path.join(d, "f")
    write_file(path, b"one")
    _, m0, c0 = _times(path)
    time.sleep(TICK)
    fd = os.open(path, os.O_WRONLY)
    try:
        os.pwrite(fd, b"two", 3)
        os.fsync(fd)
        _, m1, c1 = _times(path)
    finally:
        os.close(fd)
    assert m1 > m0 and c1 > c0
    assert _times(path)[1:] == (m1, c1)  # close does not move them again


def test_truncate_bumps_mtime_and_ctime(d):
    path = os.path.join(d, "f")
    write_file(path, b"0123456789")
    _, m0, c0 = _times(path)
    time.sleep(TICK)
    os.truncate(path, 3)
    _, m1, c1 = _times(path)
    assert m1 > m0 and c1 > c0


def test_chmod_bumps_ctime_only(d):
    path = os.path.join(d, "f")
    write_file(path, b"x")
    a0, m0, c0 = _times(path)
    time.sleep(TICK)
    os.chmod(path, 0o600)
    a1, m1, c1 = _times(path)
    assert (a1, m1) == (a0, m0)
    assert c1 > c0


def test_chown_and_setxattr_bump_ctime_only(d):
    path = os.path.join(d, "f")
    write_file(path, b"x")
    a0, m0, c0 = _times(path)
    time.sleep(TICK)
    os.chown(path, 1000, 1000)
    a1, m1, c1 = _times(path)
    assert (a1, m1) == (a0, m0) and c1 > c0
    time.sleep(TICK)
    os.setxattr(path, "user.k", b"v")
    a2, m2, c2 = _times(path)
    assert (a2, m2) == (a0, m0) and c2 > c1


def test_utime_with_explicit_seconds_sets_atime_and_mtime(d):
    path = os.path.join(d, "f")
    write_file(path, b"x")
    _, _, c0 = _times(path)
    time.sleep(TICK)
    os.utime(path, (1_000_000_000, 1_100_000_000))
    st = os.stat(path)
    assert (st.st_atime_ns, st.st_mtime_ns) == (1_000_000_000 * 10**9, 1_100_000_000 * 10**9)
    assert st.st_ctime_ns > c0


def test_utime_with_nanoseconds_keeps_every_digit(d):
    path = os.path.join(d, "f")
    write_file(path, b"x")
    os.utime(path, ns=(1_234_567_890_123_456_789, 1_600_000_000_987_654_321))
    a, m, _ = _times(path)
    assert (a, m) == (1_234_567_890_123_456_789, 1_600_000_000_987_654_321)


def test_utime_before_1970_is_kept(d):
    path = os.path.join(d, "f")
    write_file(path, b"x")
    os.utime(path, ns=(-1_000_000_000, -86_400 * 10**9 + 5))
    a, m, _ = _times(path)
    assert (a, m) == (-1_000_000_000, -86_400 * 10**9 + 5)


def test_utimensat_UTIME_OMIT_keeps_atime_and_UTIME_NOW_sets_mtime_to_now(d):
    path = os.path.join(d, "f")
    write_file(path, b"x")
    os.utime(path, ns=(1_000_000_000_000_000_001, 1_000_000_000_000_000_002))
    t0 = time.time_ns()
    utimensat(path, UTIME_OMIT, UTIME_NOW)
    t1 = time.time_ns()
    a, m, c = _times(path)
    assert a == 1_000_000_000_000_000_001
    assert _between(m, t0, t1)
    assert _between(c, t0, t1)


def test_utimensat_UTIME_NOW_sets_atime_and_UTIME_OMIT_keeps_mtime(d):
    path = os.path.join(d, "f")
    write_file(path, b"x")
    os.utime(path, ns=(1_000_000_000_000_000_001, 1_000_000_000_000_000_002))
    t0 = time.time_ns()
    utimensat(path, UTIME_NOW, UTIME_OMIT)
    t1 = time.time_ns()
    a, m, _ = _times(path)
    assert _between(a, t0, t1)
    assert m == 1_000_000_000_000_000_002


def test_utimensat_on_a_symlink_with_NOFOLLOW_sets_the_link_times(d):
    write_file(os.path.join(d, "target"), b"x")
    link = os.path.join(d, "l")
    os.symlink("target", link)
    target_before = _times(os.path.join(d, "target"))
    os.utime(link, ns=(2_000_000_000_000_000_000, 2_000_000_000_000_000_001), follow_symlinks=False)
    a, m, _ = _times(link, follow=False)
    assert (a, m) == (2_000_000_000_000_000_000, 2_000_000_000_000_000_001)
    assert _times(os.path.join(d, "target")) == target_before


def test_creating_and_removing_entries_bumps_parent_mtime_and_ctime(d):
    steps = [
        ("create file", lambda: write_file(os.path.join(d, "f"), b"")),
        ("mkdir", lambda: os.mkdir(os.path.join(d, "sub"))),
        ("symlink", lambda: os.symlink("f", os.path.join(d, "l"))),
        ("link", lambda: os.link(os.path.join(d, "f"), os.path.join(d, "f2"))),
        ("rename within", lambda: os.rename(os.path.join(d, "f2"), os.path.join(d, "f3"))),
        ("unlink", lambda: os.unlink(os.path.join(d, "f3"))),
        ("rmdir", lambda: os.rmdir(os.path.join(d, "sub"))),
    ]
    for what, step in steps:
        _, m0, c0 = _times(d)
        time.sleep(TICK)
        step()
        _, m1, c1 = _times(d)
        assert m1 > m0, f"{what}: parent mtime not bumped"
        assert c1 > c0, f"{what}: parent ctime not bumped"


def test_rename_bumps_both_parents_and_the_moved_entrys_ctime_not_its_mtime(d):
    a, b = os.path.join(d, "a"), os.path.join(d, "b")
    os.mkdir(a)
    os.mkdir(b)
    f = os.path.join(a, "f")
    write_file(f, b"x")
    _, fm0, fc0 = _times(f)
    _, am0, ac0 = _times(a)
    _, bm0, bc0 = _times(b)
    time.sleep(TICK)
    os.rename(f, os.path.join(b, "g"))
    _, fm1, fc1 = _times(os.path.join(b, "g"))
    _, am1, ac1 = _times(a)
    _, bm1, bc1 = _times(b)
    assert fm1 == fm0 and fc1 > fc0
    assert am1 > am0 and ac1 > ac0
    assert bm1 > bm0 and bc1 > bc0


def test_link_and_unlink_bump_ctime_of_the_file(d):
    f = os.path.join(d, "f")
    write_file(f, b"x")
    _, m0, c0 = _times(f)
    time.sleep(TICK)
    os.link(f, os.path.join(d, "g"))
    _, m1, c1 = _times(f)
    assert m1 == m0 and c1 > c0
    time.sleep(TICK)
    os.unlink(os.path.join(d, "g"))
    _, m2, c2 = _times(f)
    assert m2 == m0 and c2 > c1


def test_reading_a_file_does_not_change_mtime_or_ctime(d):
    path = os.path.join(d, "f")
    write_file(path, b"x" * 10000)
    _, m0, c0 = _times(path)
    time.sleep(TICK)
    with open(path, "rb") as f:
        f.read()
    _, m1, c1 = _times(path)
    assert (m1, c1) == (m0, c0)
