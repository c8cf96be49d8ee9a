# Mount options shared with tmpfs: ro refuses every change with EROFS (the ksm/ tunables too,
# while its counters are still served), and mode=, uid=, gid= set the root directory's
# attributes (which then govern who may create there); and ksmfs's readahead=, the kernel's
# read-ahead window for the mount.

import errno
import os
import subprocess
import stat

import pytest

from fsops import mount_entry, raises_errno, run_as
from ksmops import kval


def test_ro_mount_is_read_only_in_proc_mounts_and_statfs_and_refuses_writes_with_EROFS(mounted, target):
    with mounted("size=8m,ro") as m:
        assert "ro" in mount_entry(m.path)[3].split(",")
        assert os.statvfs(m.path).f_flag & os.ST_RDONLY
        with raises_errno(errno.EROFS):
            os.open(os.path.join(m.path, "f"), os.O_CREAT | os.O_WRONLY, 0o644)
        with raises_errno(errno.EROFS):
            os.mkdir(os.path.join(m.path, "d"))
        with raises_errno(errno.EROFS):
            os.symlink("x", os.path.join(m.path, "l"))
        with raises_errno(errno.EROFS):
            os.chmod(m.path, 0o700)
        with raises_errno(errno.EROFS):
            os.setxattr(m.path, "user.k", b"v")
        assert sorted(os.listdir(m.path)) == []  # (ksmfs's ksm/ is found by name, not listed)
        if target == "ksmfs":       # the counters are still served; the tunables refuse writes
            assert kval(m, "run") == "0"
            assert kval(m, "pages_sharing") == "0"
            with raises_errno(errno.EROFS):
                os.open(os.path.join(m.path, "ksm", "run"), os.O_WRONLY)
            m.assert_alive()


def test_mode_uid_gid_options_set_the_root_directory(mounted):
    with mounted("mode=0700,uid=1000,gid=1000,allow_other") as m:
        st = os.stat(m.path)
        assert stat.S_ISDIR(st.st_mode)
        assert stat.S_IMODE(st.st_mode) == 0o700
        assert (st.st_uid, st.st_gid) == (1000, 1000)
        # the owner may create there, another user may not even look
        path = os.path.join(m.path, "owners-file")
        assert run_as(1000, 1000, f"print(errname(os.mkdir, {path!r}))") == "OK"
        assert run_as(65534, 65534, f"print(errname(os.listdir, {m.path!r}))") == "EACCES"
        st = os.stat(path)
        assert (st.st_uid, st.st_gid) == (1000, 1000)


def test_mode_1777_root_lets_any_user_create_but_keeps_the_sticky_bit(mounted):
    with mounted("mode=1777,allow_other") as m:
        assert stat.S_IMODE(os.stat(m.path).st_mode) == 0o1777
        path = os.path.join(m.path, "anyones")
        assert run_as(65534, 65534, f"print(errname(os.mkdir, {path!r}))") == "OK"
        assert os.stat(path).st_uid == 65534


def test_a_root_mount_is_usable_by_every_user_its_modes_allow(mounted):
    # As on tmpfs: no allow_other needed for nobody to work in a root mount's 1777 root.
    with mounted("size=64m") as m:
        path = os.path.join(m.path, "by-nobody")
        assert run_as(65534, 65534, f"open({path!r}, 'w').write('hi'); print(open({path!r}).read())") == "hi"
        assert os.stat(path).st_uid == 65534
        mine = os.path.join(m.path, "roots")
        with open(mine, "w") as f:
            f.write("root's")
        os.chmod(mine, 0o600)
        assert run_as(65534, 65534, f"print(errname(open, {mine!r}))") == "EACCES"
        assert run_as(65534, 65534, f"print(errname(os.unlink, {mine!r}))") == "EPERM"  # sticky root


@pytest.mark.ksmfs_only
def test_private_keeps_a_root_mount_to_root(mounted):
    with mounted("size=64m,private") as m:
        assert run_as(65534, 65534, f"print(errname(os.listdir, {m.path!r}))") == "EACCES"
        with open("/proc/mounts") as f:
            line = next(l for l in f if l.split()[1] == m.path)
        assert "allow_other" not in line
    with mounted("size=64m") as m:
        with open("/proc/mounts") as f:
            line = next(l for l in f if l.split()[1] == m.path)
        assert "allow_other" in line


@pytest.mark.ksmfs_only
def test_private_and_allow_other_exclude_each_other(base_dir):
    from fsops import ksmfs_bin
    path = os.path.join(base_dir, "privother")
    os.mkdir(path)
    try:
        r = subprocess.run([ksmfs_bin(), path, "-f", "-o", "private,allow_other"], capture_output=True, text=True, timeout=20)
        assert r.returncode == 1 and "private and allow_other/allow_root exclude each other" in r.stderr, r.stderr
    finally:
        os.rmdir(path)

def _read_ahead_kb(path):
    with open("/proc/self/mountinfo") as f:
        dev = [line.split()[2] for line in f if line.split()[4] == path][-1]
    with open(f"/sys/class/bdi/{dev}/read_ahead_kb") as f:
        return int(f.read())


@pytest.mark.ksmfs_only
@pytest.mark.parametrize("opt,kib", [("", 1024), ("readahead=256k", 256), ("readahead=3000", 4),
                                     ("readahead=0", 128)])
def test_readahead_sets_the_mounts_read_ahead_window(mounted, opt, kib):
    """By default a cold sequential read reaches the daemon in 1 MiB requests (the kernel's
    default window is 128 KiB); readahead= sets it in whole pages, 0 leaves the kernel's."""
    with mounted(",".join(o for o in ("size=64m", opt) if o)) as m:
        assert _read_ahead_kb(m.path) == kib
        data = os.urandom(3 * 1024 * 1024 + 5)
        with open(os.path.join(m.path, "f"), "wb") as f:
            f.write(data)
        fd = os.open(os.path.join(m.path, "f"), os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
            got = b"".join(iter(lambda: os.read(fd, 4096), b""))
        finally:
            os.close(fd)
        assert got == data


def _ksmfs(*args, timeout=30):
    from fsops import ksmfs_bin
    return subprocess.run([ksmfs_bin(), *args], capture_output=True, text=True, timeout=timeout)


def _size(path):
    sv = os.statvfs(path)
    return sv.f_blocks * sv.f_frsize


@pytest.mark.ksmfs_only
def test_remount_changes_size_inodes_and_mode_live_and_refuses_below_use(mounted):
    with mounted("size=16m,nr_inodes=1000") as m:
        big = os.path.join(m.path, "big")
        with pytest.raises(OSError) as e:
            with open(big, "wb") as f:
                f.write(os.urandom(24 << 20))
        assert e.value.errno == errno.ENOSPC
        os.unlink(big)
        r = _ksmfs(m.path, "-o", "remount,size=64m,nr_inodes=5000,mode=0755")
        assert r.returncode == 0, r.stderr
        assert _size(m.path) == 64 << 20
        assert os.statvfs(m.path).f_files == 5000
        assert stat.S_IMODE(os.stat(m.path).st_mode) == 0o755
        data = os.urandom(24 << 20)
        with open(big, "wb") as f:
            f.write(data)
        with open(big, "rb") as f:
            assert f.read() == data
        # Below what the mount holds: refused with a reason, nothing changed (tmpfs: EINVAL).
        r = _ksmfs(m.path, "-o", "remount,size=8m")
        assert r.returncode == 1 and "below what the mount holds" in r.stderr, r.stderr
        assert _size(m.path) == 64 << 20
        for i in range(10):
            open(os.path.join(m.path, f"f{i}"), "w").close()
        r = _ksmfs(m.path, "-o", "remount,nr_inodes=5")
        assert r.returncode == 1 and "below what the mount holds" in r.stderr, r.stderr
        # What mount(8) passes along unchanged is accepted; what cannot change is said.
        r = _ksmfs(m.path, "-o", "rw,nosuid,nodev,relatime,user_id=0,group_id=0,default_permissions,remount,size=48m")
        assert r.returncode == 0 and _size(m.path) == 48 << 20, r.stderr
        r = _ksmfs(m.path, "-o", "remount,size=abc")
        assert r.returncode == 1 and "bad value for size" in r.stderr, r.stderr
        r = _ksmfs(m.path, "-o", "remount,frobnicate=1")
        assert r.returncode == 1 and "frobnicate cannot be changed by remount" in r.stderr, r.stderr
        # Only root: the request is a trusted.* xattr of the root.
        out = run_as(65534, 65534, f"print(errname(os.setxattr, {m.path!r}, 'trusted.ksmfs.remount', b'size=1g'))")
        assert out == "EPERM"
        assert _size(m.path) == 48 << 20
        with open(big, "rb") as f:
            assert f.read() == data


@pytest.mark.ksmfs_only
def test_mount_o_remount_goes_through_the_installed_helper(mounted, tmp_path):
    # `mount -o remount,size=32m MNT` as a user types it: mount(8) runs mount.fuse.ksmfs (what
    # `make install` puts in /usr/sbin), which runs ksmfs with -o remount. Here the helper and
    # ksmfs are made visible in a private mount namespace (a directory holding only the helper,
    # bind-mounted over /usr/sbin; the helper runs a copy of mount.fuse3), so the real system
    # is not touched.
    from fsops import ksmfs_bin
    import shutil
    sbin = tmp_path / "sbin"
    sbin.mkdir()
    helper_bin = tmp_path / "bin"
    helper_bin.mkdir()
    shutil.copy(shutil.which("mount.fuse3"), helper_bin / "mount.fuse3")
    (sbin / "mount.fuse.ksmfs").write_text(f'#!/bin/sh\nPATH="{os.path.dirname(ksmfs_bin())}:{helper_bin}:$PATH" exec mount.fuse3 "$@"\n')
    os.chmod(sbin / "mount.fuse.ksmfs", 0o755)
    with mounted("size=16m") as m:
        r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c",
                            f"mount --bind {sbin} /usr/sbin && mount -o remount,size=32m {m.path}"],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        assert _size(m.path) == 32 << 20
