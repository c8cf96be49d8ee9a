# Everyday tools that walk, copy, archive, checksum, sync or empty a mount never hang, fail or
# change KSM state because of /ksm: the control directory is found by name but not listed by
# readdir of the root (as ZFS hides .zfs), so `grep -r`, `find`, `cp -a`, `tar c`, `rsync -a`,
# `du` and `rm -rf MNT/*` see the user's files only, exactly as on tmpfs; `cat MNT/ksm/run`
# still works. Runs on both targets (--target=tmpfs for the reference).

import os
import stat
import subprocess

import pytest

from fsops import write_file

TIMEOUT = 60


def tree(m):
    os.makedirs(os.path.join(m.path, "a", "b"))
    write_file(os.path.join(m.path, "a", "one.txt"), b"hello zzzz\n")
    write_file(os.path.join(m.path, "a", "b", "two.bin"), os.urandom(9000))
    write_file(os.path.join(m.path, "top.txt"), b"top\n")
    os.symlink("a/one.txt", os.path.join(m.path, "link"))


def ksm_state(m, target):
    """Every value file of /ksm (not metrics or trace), or {} on tmpfs."""
    if target != "ksmfs":
        return {}
    d = os.path.join(m.path, "ksm")
    out = {}
    for name in ("run", "pages_to_scan", "sleep_millisecs", "max_page_sharing", "merge_across_nodes",
                 "use_zero_pages", "smart_scan", "merge_across_owners", "drop_merged_page_cache",
                 "advisor_mode", "full_scans", "pages_scanned", "pages_shared", "pages_sharing"):
        with open(os.path.join(d, name)) as f:
            out[name] = f.read()
    return out


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL, **kw)


@pytest.fixture
def m(mounted, target):
    with mounted("size=64m") as mount:
        tree(mount)
        before = ksm_state(mount, target)
        yield mount
        assert ksm_state(mount, target) == before, "a tree tool changed KSM state"


def test_the_root_lists_only_the_users_files_and_ksm_is_still_found_by_name(m, target):
    assert sorted(os.listdir(m.path)) == ["a", "link", "top.txt"]
    assert os.stat(m.path).st_nlink == 3  # ".", "a"'s "..", and the name in the parent
    if target == "ksmfs":
        assert stat.S_ISDIR(os.stat(os.path.join(m.path, "ksm")).st_mode)
        with open(os.path.join(m.path, "ksm", "run")) as f:
            assert f.read() == "0\n"
        r = run(["ls", "-a", m.path])
        assert r.returncode == 0 and "ksm" not in r.stdout.split(), r.stdout


def test_grep_r_finishes_and_finds_only_the_users_file(m):
    r = run(["grep", "-r", "zzzz", m.path])
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [f"{m.path}/a/one.txt:hello zzzz"]
    r = run(["grep", "-r", "no-such-text-anywhere", m.path])
    assert r.returncode == 1 and r.stderr == ""


def test_find_exec_sha256sum_checksums_every_file(m):
    r = run(["find", m.path, "-type", "f", "-exec", "sha256sum", "{}", "+"])
    assert r.returncode == 0, r.stderr
    assert sorted(line.split()[1] for line in r.stdout.splitlines()) == \
        sorted([f"{m.path}/a/one.txt", f"{m.path}/a/b/two.bin", f"{m.path}/top.txt"])


def test_cp_a_tar_c_and_rsync_a_copy_the_tree_without_ksm(m, tmp_path):
    r = run(["cp", "-a", m.path, str(tmp_path / "cp")])
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path / "cp")) == ["a", "link", "top.txt"]
    assert os.readlink(tmp_path / "cp" / "link") == "a/one.txt"
    r = run(["tar", "cf", str(tmp_path / "t.tar"), "-C", m.path, "."])
    assert r.returncode == 0, r.stderr
    names = run(["tar", "tf", str(tmp_path / "t.tar")]).stdout.split()
    assert not [n for n in names if n.startswith("./ksm")] and "./a/b/two.bin" in names, names
    r = run(["rsync", "-a", m.path + "/", str(tmp_path / "rs")])
    assert r.returncode == 0, r.stderr
    assert sorted(os.listdir(tmp_path / "rs")) == ["a", "link", "top.txt"]
    with open(tmp_path / "rs" / "a" / "b" / "two.bin", "rb") as a, open(os.path.join(m.path, "a", "b", "two.bin"), "rb") as b:
        assert a.read() == b.read()


def test_du_counts_the_users_files(m):
    r = run(["du", "-s", "--apparent-size", "-B1", m.path])
    assert r.returncode == 0, r.stderr
    assert int(r.stdout.split()[0]) < 64 * 1024, r.stdout


def test_rm_rf_of_every_name_empties_the_mount(m, target):
    r = run(f"rm -rf {m.path}/*", shell=True)
    assert r.returncode == 0, r.stderr
    assert r.stderr == ""
    assert os.listdir(m.path) == []
    if target == "ksmfs":
        assert os.path.isdir(os.path.join(m.path, "ksm")), "/ksm stays"
