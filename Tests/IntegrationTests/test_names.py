# The namespace: rename in all its forms (over files and dirs, NOREPLACE, EXCHANGE, the
# loop and non-empty errors), hard links and link counts, orphaned open files, name and
# symlink-target length limits, and the special files (fifo, unix socket, char device).

import errno
import os
import socket
import stat
import threading

from fsops import (RENAME_EXCHANGE, RENAME_NOREPLACE, raises_errno, read_cold, read_file,
                   renameat2, write_file)


# --- rename ------------------------------------------------------------------------------

def test_rename_over_an_existing_file_replaces_it(d):
    a, b = os.path.join(d, "a"), os.path.join(d, "b")
    write_file(a, b"new")
    write_file(b, b"old-content")
    ino = os.stat(a).st_ino
    os.rename(a, b)
    assert not os.path.exists(a)
    assert read_cold(b) == b"new"
    assert os.stat(b).st_ino == ino
    assert sorted(os.listdir(d)) == ["b"]


def test_rename_dir_over_an_empty_dir_replaces_it(d):
    src, dst = os.path.join(d, "src"), os.path.join(d, "dst")
    os.mkdir(src)
    os.mkdir(dst)
    write_file(os.path.join(src, "inner"), b"i")
    os.rename(src, dst)
    assert sorted(os.listdir(d)) == ["dst"]
    assert read_file(os.path.join(dst, "inner")) == b"i"
    assert os.stat(d).st_nlink == 3


def test_rename_dir_onto_a_non_empty_dir_is_ENOTEMPTY(d):
    src, dst = os.path.join(d, "src"), os.path.join(d, "dst")
    os.mkdir(src)
    os.mkdir(dst)
    write_file(os.path.join(dst, "keep"), b"k")
    with raises_errno(errno.ENOTEMPTY):
        os.rename(src, dst)
    assert os.listdir(dst) == ["keep"]


def test_rename_dir_into_its_own_subdir_is_EINVAL(d):
    top = os.path.join(d, "top")
    os.makedirs(os.path.join(top, "sub", "deeper"))
    with raises_errno(errno.EINVAL):
        os.rename(top, os.path.join(top, "sub", "deeper", "top"))
    assert os.path.isdir(os.path.join(top, "sub", "deeper"))


def test_rename_file_over_dir_is_EISDIR_and_dir_over_file_is_ENOTDIR(d):
    f, sub = os.path.join(d, "f"), os.path.join(d, "sub")
    write_file(f, b"x")
    os.mkdir(sub)
    with raises_errno(errno.EISDIR):
        os.rename(f, sub)
    with raises_errno(errno.ENOTDIR):
        os.rename(sub, f)


def test_rename_between_directories_moves_the_entry_and_the_link_counts(d):
    a, b = os.path.join(d, "a"), os.path.join(d, "b")
    os.makedirs(os.path.join(a, "moving"))
    os.mkdir(b)
    assert (os.stat(a).st_nlink, os.stat(b).st_nlink) == (3, 2)
    os.rename(os.path.join(a, "moving"), os.path.join(b, "moving"))
    assert (os.stat(a).st_nlink, os.stat(b).st_nlink) == (2, 3)
    assert os.listdir(a) == [] and os.listdir(b) == ["moving"]
    assert os.path.samefile(os.path.join(b, "moving", ".."), b)


def test_RENAME_NOREPLACE_onto_an_existing_name_is_EEXIST_and_changes_nothing(d):
    a, b = os.path.join(d, "a"), os.path.join(d, "b")
    write_file(a, b"A")
    write_file(b, b"B")
    with raises_errno(errno.EEXIST):
        renameat2(a, b, RENAME_NOREPLACE)
    assert (read_file(a), read_file(b)) == (b"A", b"B")
    renameat2(a, os.path.join(d, "c"), RENAME_NOREPLACE)
    assert sorted(os.listdir(d)) == ["b", "c"]


def test_RENAME_EXCHANGE_swaps_two_files_and_both_still_exist(d):
    a, b = os.path.join(d, "a"), os.path.join(d, "b")
    write_file(a, b"content of a")
    write_file(b, b"content of b, longer")
    ino_a, ino_b = os.stat(a).st_ino, os.stat(b).st_ino
    renameat2(a, b, RENAME_EXCHANGE)
    assert read_cold(a) == b"content of b, longer"
    assert read_cold(b) == b"content of a"
    assert (os.stat(a).st_ino, os.stat(b).st_ino) == (ino_b, ino_a)


def test_RENAME_EXCHANGE_of_a_file_and_a_dir_swaps_their_types(d):
    f, sub = os.path.join(d, "f"), os.path.join(d, "sub")
    write_file(f, b"x")
    os.mkdir(sub)
    renameat2(f, sub, RENAME_EXCHANGE)
    assert os.path.isdir(f) and os.path.isfile(sub)
    assert read_file(sub) == b"x"


def test_RENAME_EXCHANGE_with_a_missing_target_is_ENOENT(d):
    a = os.path.join(d, "a")
    write_file(a, b"A")
    with raises_errno(errno.ENOENT):
        renameat2(a, os.path.join(d, "missing"), RENAME_EXCHANGE)
    assert read_file(a) == b"A"


# --- links -------------------------------------------------------------------------------

def test_hard_links_share_the_inode_and_count_in_st_nlink(d):
    a, b, c = (os.path.join(d, n) for n in "abc")
    write_file(a, b"shared")
    os.link(a, b)
    os.link(b, c)
    assert [os.stat(p).st_nlink for p in (a, b, c)] == [3, 3, 3]
    assert os.stat(a).st_ino == os.stat(c).st_ino
    with open(b, "ab") as f:
        f.write(b"+more")
    assert read_cold(c) == b"shared+more"
    os.unlink(a)
    assert os.stat(b).st_nlink == 2
    os.unlink(b)
    assert os.stat(c).st_nlink == 1


def test_directory_nlink_is_2_plus_number_of_subdirectories(d):
    assert os.stat(d).st_nlink == 2
    for n in ("s1", "s2", "s3"):
        os.mkdir(os.path.join(d, n))
    write_file(os.path.join(d, "plainfile"), b"")
    assert os.stat(d).st_nlink == 5
    assert os.stat(os.path.join(d, "s1")).st_nlink == 2
    os.rmdir(os.path.join(d, "s2"))
    assert os.stat(d).st_nlink == 4


def test_hard_link_to_a_directory_is_EPERM(d):
    os.mkdir(os.path.join(d, "dir"))
    with raises_errno(errno.EPERM):
        os.link(os.path.join(d, "dir"), os.path.join(d, "dirlink"))


def test_link_onto_an_existing_name_is_EEXIST(d):
    write_file(os.path.join(d, "a"), b"")
    write_file(os.path.join(d, "b"), b"")
    with raises_errno(errno.EEXIST):
        os.link(os.path.join(d, "a"), os.path.join(d, "b"))


def test_unlinked_open_file_stays_readable_and_writable_until_close(d):
    path = os.path.join(d, "orphan")
    write_file(path, b"before-unlink")
    fd = os.open(path, os.O_RDWR)
    try:
        os.unlink(path)
        assert not os.path.exists(path)
        assert os.listdir(d) == []
        assert os.fstat(fd).st_nlink == 0
        assert os.pread(fd, 100, 0) == b"before-unlink"
        os.pwrite(fd, b"+after", 13)
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        assert os.pread(fd, 100, 0) == b"before-unlink+after"
        assert os.fstat(fd).st_size == 19
    finally:
        os.close(fd)
    assert os.listdir(d) == []


def test_rmdir_of_a_non_empty_directory_is_ENOTEMPTY(d):
    sub = os.path.join(d, "sub")
    os.mkdir(sub)
    write_file(os.path.join(sub, "f"), b"")
    with raises_errno(errno.ENOTEMPTY):
        os.rmdir(sub)
    os.unlink(os.path.join(sub, "f"))
    os.rmdir(sub)
    assert os.listdir(d) == []


def test_rmdir_of_a_file_is_ENOTDIR_and_unlink_of_a_dir_is_EISDIR(d):
    write_file(os.path.join(d, "f"), b"")
    os.mkdir(os.path.join(d, "sub"))
    with raises_errno(errno.ENOTDIR):
        os.rmdir(os.path.join(d, "f"))
    with raises_errno(errno.EISDIR):
        os.unlink(os.path.join(d, "sub"))


def test_deleting_each_entry_as_it_is_read_skips_none_as_rm_r_does(d):
    """rm -r and find -delete unlink each name as readdir returns it, across many getdents
    calls; the directory is compacted while it is open, and no name may be skipped."""
    names = {f"entry-{i:05d}-" + "x" * 40 for i in range(6000)}
    for n in names:
        os.mknod(os.path.join(d, n), stat.S_IFREG | 0o644)
    seen = []
    with os.scandir(d) as it:
        for e in it:
            seen.append(e.name)
            os.unlink(e.path)
    assert os.listdir(d) == [], f"{len(os.listdir(d))} names skipped by the walk"
    assert sorted(seen) == sorted(names)


def test_a_walk_lists_once_every_name_that_stays_while_others_come_and_go(d):
    """While a directory is read in many getdents calls, other names are removed and added;
    each name present throughout is listed exactly once (POSIX leaves the others open)."""
    stay = {f"stay-{i:05d}" for i in range(3000)}
    go = [f"go-{i:05d}" for i in range(3000)]
    for n in list(stay) + go:
        os.mknod(os.path.join(d, n), stat.S_IFREG | 0o644)
    seen = []
    with os.scandir(d) as it:
        for k, e in enumerate(it):
            seen.append(e.name)
            if k % 2 == 0 and go:
                os.unlink(os.path.join(d, go.pop()))
                os.mknod(os.path.join(d, f"new-{k:05d}"), stat.S_IFREG | 0o644)
    listed = [n for n in seen if n in stay]
    assert len(listed) == len(set(listed)), "a name listed twice"
    assert set(listed) == stay, f"{len(stay - set(listed))} names missed"


# --- name lengths --------------------------------------------------------------------------

def test_names_of_255_bytes_work_and_256_bytes_are_ENAMETOOLONG(d):
    ok = "n" * 250 + "é" * 2 + "x"  # 255 bytes in UTF-8
    assert len(ok.encode()) == 255
    write_file(os.path.join(d, ok), b"long name")
    os.mkdir(os.path.join(d, "d" * 255))
    assert sorted(os.listdir(d)) == sorted([ok, "d" * 255])
    assert read_file(os.path.join(d, ok)) == b"long name"
    long = "m" * 256
    with raises_errno(errno.ENAMETOOLONG):
        os.open(os.path.join(d, long), os.O_CREAT | os.O_WRONLY, 0o644)
    with raises_errno(errno.ENAMETOOLONG):
        os.mkdir(os.path.join(d, long))
    with raises_errno(errno.ENAMETOOLONG):
        os.stat(os.path.join(d, long))
    with raises_errno(errno.ENAMETOOLONG):
        os.rename(os.path.join(d, ok), os.path.join(d, long))
    with raises_errno(errno.ENAMETOOLONG):
        os.symlink("t", os.path.join(d, long))
    assert sorted(os.listdir(d)) == sorted([ok, "d" * 255])


# --- symlinks --------------------------------------------------------------------------------

def test_symlink_readlink_round_trip_and_following(d):
    write_file(os.path.join(d, "target"), b"via link")
    os.symlink("target", os.path.join(d, "rel"))
    os.symlink("/nonexistent/abs/path", os.path.join(d, "dangling"))
    assert os.readlink(os.path.join(d, "rel")) == "target"
    assert os.readlink(os.path.join(d, "dangling")) == "/nonexistent/abs/path"
    assert read_file(os.path.join(d, "rel")) == b"via link"
    st = os.lstat(os.path.join(d, "rel"))
    assert stat.S_ISLNK(st.st_mode) and st.st_size == len("target")
    assert not os.path.exists(os.path.join(d, "dangling"))


def test_symlink_with_a_4095_byte_target_round_trips(d):
    target = ("abcdefg/" * 512)[:4095]
    os.symlink(target, os.path.join(d, "l"))
    assert os.readlink(os.path.join(d, "l")) == target
    assert os.lstat(os.path.join(d, "l")).st_size == 4095


# --- special files ------------------------------------------------------------------------------

def test_mkfifo_creates_a_fifo_that_carries_data(d):
    path = os.path.join(d, "fifo")
    os.mkfifo(path, 0o600)
    st = os.lstat(path)
    assert stat.S_ISFIFO(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    got = []
    reader = threading.Thread(target=lambda: got.append(read_file(path)))
    reader.start()
    with open(path, "wb") as w:
        w.write(b"through the pipe")
    reader.join(10)
    assert got == [b"through the pipe"]


def test_unix_socket_bound_in_the_fs_is_a_socket_and_accepts_connections(d):
    path = os.path.join(d, "sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind(path)
        server.listen(1)
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
        client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        client.settimeout(5)
        client.connect(path)
        conn, _ = server.accept()
        client.sendall(b"ping")
        assert conn.recv(4) == b"ping"
        conn.close()
        client.close()
    finally:
        server.close()


def test_mknod_char_device_keeps_type_and_rdev(d):
    path = os.path.join(d, "null")
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    st = os.lstat(path)
    assert stat.S_ISCHR(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o666 & ~_umask()
    assert (os.major(st.st_rdev), os.minor(st.st_rdev)) == (1, 3)


def _umask():
    m = os.umask(0)
    os.umask(m)
    return m


# --- names are bytes ---------------------------------------------------------------------
# Linux names are byte strings: invalid UTF-8 is a valid name, and two Unicode spellings of
# the same text (NFC and NFD "é", the Kelvin sign and "K") are different names. tmpfs keeps
# them apart; a filesystem that decoded names as text would merge them and lose a file.

BYTE_NAMES = [b"a\xff", b"a\xfe", b"caf\xc3\xa9", b"cafe\xcc\x81", b"\xe2\x84\xaa", b"K",
              b"\x80\x81", b"\xed\xa0\x80", b"tab\there", b"new\nline"]


def test_names_that_differ_only_in_bytes_are_distinct_files(d):
    root = os.fsencode(d)
    for i, n in enumerate(BYTE_NAMES):
        write_file(os.path.join(root, n), b"content %d" % i)
    assert sorted(os.listdir(root)) == sorted(BYTE_NAMES)
    for i, n in enumerate(BYTE_NAMES):
        assert read_cold(os.path.join(root, n)) == b"content %d" % i
    os.rename(os.path.join(root, b"a\xff"), os.path.join(root, b"b\xff"))
    os.unlink(os.path.join(root, b"cafe\xcc\x81"))
    assert read_file(os.path.join(root, b"caf\xc3\xa9")) == b"content 2"
    assert read_file(os.path.join(root, b"b\xff")) == b"content 0"
    assert read_file(os.path.join(root, b"a\xfe")) == b"content 1"


def test_directories_and_symlink_targets_keep_their_bytes(d):
    root = os.fsencode(d)
    os.mkdir(os.path.join(root, b"dir\xff"))
    os.mkdir(os.path.join(root, b"dir\xfe"))
    write_file(os.path.join(root, b"dir\xff", b"f"), b"ff")
    target = b"dir\xff/f"
    os.symlink(target, os.path.join(root, b"ln"))
    assert os.readlink(os.path.join(root, b"ln")) == target
    assert read_file(os.path.join(root, b"ln")) == b"ff"
    assert os.listdir(os.path.join(root, b"dir\xfe")) == []


def test_xattr_names_that_differ_only_in_bytes_are_distinct(d):
    p = os.path.join(os.fsencode(d), b"f")
    write_file(p, b"x")
    names = [b"user.\xff", b"user.\xfe", b"user.caf\xc3\xa9", b"user.cafe\xcc\x81"]
    for i, n in enumerate(names):
        os.setxattr(p, n, b"v%d" % i)
    for i, n in enumerate(names):
        assert os.getxattr(p, n) == b"v%d" % i
    listed = {os.fsencode(n) for n in os.listxattr(p)}
    assert set(names) <= listed
    os.removexattr(p, b"user.\xff")
    assert os.getxattr(p, b"user.\xfe") == b"v1"
