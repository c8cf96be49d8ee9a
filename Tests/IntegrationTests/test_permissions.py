# Mode bits and ownership as seen by an unprivileged user (uid/gid 65534 through setpriv,
# no supplementary groups): no write to a 0644 root file, no create in a 0755 root dir,
# the sticky bit protects other users' files, setgid directories hand down their group
# (and S_ISGID to subdirs), a non-owner's write clears S_ISUID, chmod by a non-owner is
# EPERM, and new files belong to their creator. The mount uses allow_other so that the
# other user may enter it at all.

import os
import stat

import pytest

from fsops import NOBODY, as_nobody, read_file, run_as, write_file


@pytest.fixture(scope="module")
def mnt(mounted):
    with mounted("size=2g,allow_other") as m:
        yield m


@pytest.fixture
def d(d):
    os.chmod(d, 0o755)
    return d


def test_other_user_cannot_open_a_0644_root_file_for_writing_EACCES(d):
    path = os.path.join(d, "f")
    write_file(path, b"root's", mode=0o644)
    os.chmod(path, 0o644)
    assert as_nobody(f"print(errname(os.open, {path!r}, os.O_WRONLY))") == "EACCES"
    assert as_nobody(f"print(errname(os.truncate, {path!r}, 0))") == "EACCES"
    assert as_nobody(f"print(open({path!r}, 'rb').read().decode())") == "root's"
    assert read_file(path) == b"root's"


def test_other_user_cannot_read_a_0600_root_file_EACCES(d):
    path = os.path.join(d, "secret")
    write_file(path, b"s")
    os.chmod(path, 0o600)
    assert as_nobody(f"print(errname(os.open, {path!r}, os.O_RDONLY))") == "EACCES"


def test_other_user_cannot_create_or_remove_in_a_0755_root_dir_EACCES(d):
    write_file(os.path.join(d, "existing"), b"")
    out = as_nobody(f"""
        print(errname(os.open, {os.path.join(d, 'new')!r}, os.O_CREAT | os.O_WRONLY, 0o644))
        print(errname(os.mkdir, {os.path.join(d, 'newdir')!r}))
        print(errname(os.unlink, {os.path.join(d, 'existing')!r}))
    """)
    assert out.split() == ["EACCES", "EACCES", "EACCES"]
    assert os.listdir(d) == ["existing"]


def test_other_user_cannot_list_a_0700_dir_EACCES(d):
    sub = os.path.join(d, "private")
    os.mkdir(sub, 0o700)
    assert as_nobody(f"print(errname(os.listdir, {sub!r}))") == "EACCES"
    assert as_nobody(f"print(errname(os.stat, {os.path.join(sub, 'x')!r}))") == "EACCES"


def test_file_created_by_a_user_is_owned_by_that_user_and_group(d):
    os.chmod(d, 0o777)
    path = os.path.join(d, "mine")
    assert as_nobody(f"print(errname(os.open, {path!r}, os.O_CREAT | os.O_WRONLY, 0o640))") == "OK"
    st = os.stat(path)
    assert (st.st_uid, st.st_gid) == (NOBODY, NOBODY)
    assert stat.S_IMODE(st.st_mode) == 0o640 & ~0o022


def test_sticky_dir_lets_a_user_remove_own_files_but_not_another_users(d):
    sticky = os.path.join(d, "tmp")
    os.mkdir(sticky)
    os.chmod(sticky, 0o1777)
    theirs = os.path.join(sticky, "theirs")
    write_file(theirs, b"uid 1000's")
    os.chown(theirs, 1000, 1000)
    os.chmod(theirs, 0o666)
    mine = os.path.join(sticky, "mine")
    out = as_nobody(f"""
        fd = os.open({mine!r}, os.O_CREAT | os.O_WRONLY, 0o644); os.close(fd)
        print(errname(os.unlink, {theirs!r}))
        print(errname(os.rename, {theirs!r}, {os.path.join(sticky, 'stolen')!r}))
        print(errname(os.unlink, {mine!r}))
    """)
    assert out.split() == ["EPERM", "EPERM", "OK"]
    assert os.listdir(sticky) == ["theirs"]


def test_setgid_dir_gives_new_files_its_group_and_new_subdirs_its_group_and_S_ISGID(d):
    sg = os.path.join(d, "sg")
    os.mkdir(sg)
    os.chown(sg, 0, 4321)
    os.chmod(sg, 0o2777)
    assert stat.S_IMODE(os.stat(sg).st_mode) == 0o2777
    write_file(os.path.join(sg, "by-root"), b"")
    os.mkdir(os.path.join(sg, "subdir"))
    assert os.stat(os.path.join(sg, "by-root")).st_gid == 4321
    sub = os.stat(os.path.join(sg, "subdir"))
    assert sub.st_gid == 4321
    assert sub.st_mode & stat.S_ISGID
    # and for an unprivileged creator, who is not a member of group 4321
    as_nobody(f"""
        os.close(os.open({os.path.join(sg, 'by-nobody')!r}, os.O_CREAT | os.O_WRONLY, 0o644))
        os.mkdir({os.path.join(sg, 'nobodys-dir')!r})
    """)
    st = os.stat(os.path.join(sg, "by-nobody"))
    assert (st.st_uid, st.st_gid) == (NOBODY, 4321)
    st = os.stat(os.path.join(sg, "nobodys-dir"))
    assert (st.st_uid, st.st_gid) == (NOBODY, 4321)
    assert st.st_mode & stat.S_ISGID


def test_write_by_a_non_owner_clears_S_ISUID_of_a_04777_file(d):
    path = os.path.join(d, "suid")
    write_file(path, b"#!/bin/true\n")
    os.chmod(path, 0o4777)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o4777
    assert as_nobody(f"""
        fd = os.open({path!r}, os.O_WRONLY | os.O_APPEND)
        os.write(fd, b"# appended\\n")
        os.close(fd)
        print("OK")
    """) == "OK"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o777
    assert read_file(path) == b"#!/bin/true\n# appended\n"


def test_truncate_by_a_non_owner_clears_S_ISUID_too(d):
    path = os.path.join(d, "suid")
    write_file(path, b"0123456789")
    os.chmod(path, 0o4777)
    assert as_nobody(f"print(errname(os.truncate, {path!r}, 4))") == "OK"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o777
    assert os.stat(path).st_size == 4


def test_chmod_and_chown_by_a_non_owner_are_EPERM(d):
    path = os.path.join(d, "f")
    write_file(path, b"")
    os.chmod(path, 0o666)
    out = as_nobody(f"""
        print(errname(os.chmod, {path!r}, 0o777))
        print(errname(os.chown, {path!r}, {NOBODY}, {NOBODY}))
    """)
    assert out.split() == ["EPERM", "EPERM"]
    st = os.stat(path)
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o666, 0)


def test_owner_may_chmod_own_file_but_not_give_it_away(d):
    os.chmod(d, 0o777)
    path = os.path.join(d, "mine")
    out = as_nobody(f"""
        os.close(os.open({path!r}, os.O_CREAT | os.O_WRONLY, 0o644))
        print(errname(os.chmod, {path!r}, 0o600))
        print(errname(os.chown, {path!r}, 0, -1))
    """)
    assert out.split() == ["OK", "EPERM"]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


def test_chmod_g_plus_s_by_owner_not_in_group_drops_S_ISGID(d):
    # The owner may chmod, but setting S_ISGID on a file whose group the owner is not in
    # is silently dropped (kernel rule, tmpfs follows it).
    path = os.path.join(d, "f")
    write_file(path, b"")
    os.chown(path, NOBODY, 4321)
    assert as_nobody(f"print(errname(os.chmod, {path!r}, 0o2755))") == "OK"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o755


def test_user_in_the_files_group_gets_group_permissions(d):
    path = os.path.join(d, "grp")
    write_file(path, b"group data")
    os.chown(path, 0, 4321)
    os.chmod(path, 0o640)
    assert run_as(NOBODY, NOBODY, f"print(errname(os.open, {path!r}, os.O_RDONLY))") == "EACCES"
    assert run_as(NOBODY, NOBODY, f"print(errname(os.open, {path!r}, os.O_RDONLY))",
                  groups=[4321]) == "OK"


def test_other_user_can_read_but_not_set_user_xattrs_of_a_0644_file(d):
    f = os.path.join(d, "f")
    write_file(f, b"")
    os.chmod(f, 0o644)
    os.setxattr(f, "user.k", b"v")
    out = as_nobody(f"""
        print(errname(os.setxattr, {f!r}, "user.k", b"w"))
        print(os.getxattr({f!r}, "user.k").decode())
    """)
    assert out.split() == ["EACCES", "v"]


@pytest.mark.parametrize("kind", ["regular", "fifo", "chardev", "blockdev", "socket"])
def test_chown_to_own_group_by_the_owner_clears_set_id_bits_of_every_type(d, kind):
    """An unprivileged owner who chowns a 06555 node to a group it belongs to loses S_ISUID
    and S_ISGID, whatever the node is, as on tmpfs (ksmfs used to keep them on special files)."""
    import socket
    path = os.path.join(d, f"setid-{kind}")
    if kind == "regular":
        write_file(path, b"x")
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "chardev":
        os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))
    elif kind == "blockdev":
        os.mknod(path, stat.S_IFBLK | 0o600, os.makedev(7, 0))
    else:
        s = socket.socket(socket.AF_UNIX)
        s.bind(path)
        s.close()
    os.chown(path, NOBODY, NOBODY)
    os.chmod(path, 0o6555)
    assert stat.S_IMODE(os.lstat(path).st_mode) == 0o6555
    group = 100
    out = run_as(NOBODY, NOBODY, f"""
        os.chown({path!r}, -1, {group})
        print(oct(os.lstat({path!r}).st_mode & 0o7777), os.lstat({path!r}).st_gid)
        """, groups=[NOBODY, group])
    mode, gid = out.split()
    assert int(gid) == group
    assert int(mode, 8) == 0o555, f"{kind}: mode {mode} after chown by its owner (set-id bits kept)"
