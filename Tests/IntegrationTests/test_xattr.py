# Extended attributes as tmpfs has them: user.* set/get/list/remove through os and through
# setfattr/getfattr, the XATTR_CREATE/XATTR_REPLACE and missing-name errors, size-only
# queries, a 64 KiB value, trusted.* and security.* for root, EOPNOTSUPP for a namespace
# nobody knows, and EPERM for user.* on a symlink.

import errno
import os
import subprocess

from fsops import getxattr_size, listxattr_size, raises_errno, write_file


def _user_names(path, follow=True):
    """The user.* names a test set. ksmfs reserves user.ksm.* for its per-file KSM interface
    (KSM-SPEC.md section 6) and may list those on every file; they are not counted here."""
    return sorted(n for n in os.listxattr(path, follow_symlinks=follow)
                  if n.startswith("user.") and not n.startswith("user.ksm."))


def test_user_xattr_set_get_list_remove_round_trip(d):
    f = os.path.join(d, "f")
    write_file(f, b"")
    os.setxattr(f, "user.color", b"blue")
    os.setxattr(f, "user.empty", b"")
    os.setxattr(f, "user.binary", bytes(range(256)))
    assert os.getxattr(f, "user.color") == b"blue"
    assert os.getxattr(f, "user.empty") == b""
    assert os.getxattr(f, "user.binary") == bytes(range(256))
    assert _user_names(f) == ["user.binary", "user.color", "user.empty"]
    os.setxattr(f, "user.color", b"a much longer red")  # overwrite, longer
    assert os.getxattr(f, "user.color") == b"a much longer red"
    os.setxattr(f, "user.color", b"red")  # overwrite, shorter
    assert os.getxattr(f, "user.color") == b"red"
    os.removexattr(f, "user.color")
    assert _user_names(f) == ["user.binary", "user.empty"]
    with raises_errno(errno.ENODATA):
        os.getxattr(f, "user.color")


def test_xattrs_on_a_directory_and_via_an_open_fd(d):
    sub = os.path.join(d, "sub")
    os.mkdir(sub)
    os.setxattr(sub, "user.dir", b"on a dir")
    assert os.getxattr(sub, "user.dir") == b"on a dir"
    f = os.path.join(d, "f")
    write_file(f, b"")
    fd = os.open(f, os.O_RDONLY)
    try:
        os.setxattr(fd, "user.fd", b"via fd")
        assert os.getxattr(fd, "user.fd") == b"via fd"
    finally:
        os.close(fd)
    assert os.getxattr(f, "user.fd") == b"via fd"


def test_setfattr_and_getfattr_round_trip(d):
    f = os.path.join(d, "f")
    write_file(f, b"")
    subprocess.run(["setfattr", "-n", "user.cli", "-v", "hello world", f], check=True)
    out = subprocess.run(["getfattr", "--only-values", "-n", "user.cli", f],
                         check=True, capture_output=True).stdout
    assert out == b"hello world"
    dump = subprocess.run(["getfattr", "-d", "--absolute-names", f], check=True,
                          capture_output=True, text=True).stdout
    assert 'user.cli="hello world"' in dump
    subprocess.run(["setfattr", "-x", "user.cli", f], check=True)
    assert _user_names(f) == []


def test_XATTR_CREATE_on_existing_name_is_EEXIST(d):
    f = os.path.join(d, "f")
    write_file(f, b"")
    os.setxattr(f, "user.k", b"first", os.XATTR_CREATE)
    with raises_errno(errno.EEXIST):
        os.setxattr(f, "user.k", b"second", os.XATTR_CREATE)
    assert os.getxattr(f, "user.k") == b"first"


def test_XATTR_REPLACE_on_missing_name_is_ENODATA(d):
    f = os.path.join(d, "f")
    write_file(f, b"")
    with raises_errno(errno.ENODATA):
        os.setxattr(f, "user.missing", b"v", os.XATTR_REPLACE)
    assert _user_names(f) == []
    os.setxattr(f, "user.k", b"v")
    os.setxattr(f, "user.k", b"replaced", os.XATTR_REPLACE)
    assert os.getxattr(f, "user.k") == b"replaced"


def test_get_and_remove_of_a_missing_xattr_are_ENODATA(d):
    f = os.path.join(d, "f")
    write_file(f, b"")
    with raises_errno(errno.ENODATA):
        os.getxattr(f, "user.nope")
    with raises_errno(errno.ENODATA):
        os.removexattr(f, "user.nope")


def test_size_zero_queries_return_the_value_and_list_lengths(d):
    f = os.path.join(d, "f")
    write_file(f, b"")
    assert listxattr_size(f) >= 0
    base = listxattr_size(f)
    os.setxattr(f, "user.abc", b"12345")
    os.setxattr(f, "user.de", b"")
    assert getxattr_size(f, "user.abc") == 5
    assert getxattr_size(f, "user.de") == 0
    assert listxattr_size(f) == base + len("user.abc\0user.de\0")


def test_a_64_KiB_xattr_value_round_trips(d):
    f = os.path.join(d, "f")
    write_file(f, b"")
    value = os.urandom(65536)
    os.setxattr(f, "user.big", value)
    assert getxattr_size(f, "user.big") == 65536
    assert os.getxattr(f, "user.big") == value


def test_trusted_xattr_as_root_round_trips(d):
    f = os.path.join(d, "f")
    write_file(f, b"")
    os.setxattr(f, "trusted.overlay.origin", b"\x00\xfb")
    assert os.getxattr(f, "trusted.overlay.origin") == b"\x00\xfb"
    assert "trusted.overlay.origin" in os.listxattr(f)
    os.removexattr(f, "trusted.overlay.origin")
    assert "trusted.overlay.origin" not in os.listxattr(f)


def test_security_xattr_round_trips(d):
    f = os.path.join(d, "f")
    write_file(f, b"")
    os.setxattr(f, "security.ksmfs-test", b"label")
    assert os.getxattr(f, "security.ksmfs-test") == b"label"
    os.removexattr(f, "security.ksmfs-test")
    with raises_errno(errno.ENODATA):
        os.getxattr(f, "security.ksmfs-test")


def test_unknown_namespace_is_EOPNOTSUPP(d):
    f = os.path.join(d, "f")
    write_file(f, b"")
    with raises_errno(errno.EOPNOTSUPP):
        os.setxattr(f, "foo.bar", b"v")
    with raises_errno(errno.EOPNOTSUPP):
        os.getxattr(f, "foo.bar")


def test_user_xattr_on_a_symlink_itself_is_EPERM(d):
    write_file(os.path.join(d, "target"), b"")
    link = os.path.join(d, "l")
    os.symlink("target", link)
    with raises_errno(errno.EPERM):
        os.setxattr(link, "user.k", b"v", follow_symlinks=False)
    os.setxattr(link, "user.k", b"on target")  # following the link is fine
    assert os.getxattr(os.path.join(d, "target"), "user.k") == b"on target"


def test_xattrs_follow_the_inode_through_rename_and_hard_link(d):
    a = os.path.join(d, "a")
    write_file(a, b"")
    os.setxattr(a, "user.k", b"v")
    os.rename(a, os.path.join(d, "b"))
    os.link(os.path.join(d, "b"), os.path.join(d, "c"))
    assert os.getxattr(os.path.join(d, "b"), "user.k") == b"v"
    assert os.getxattr(os.path.join(d, "c"), "user.k") == b"v"

