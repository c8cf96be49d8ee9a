# Security of merging (ksmfs-only): with merge_across_owners=0 (the default) files of two
# users (uids 1001 and 1002, via setpriv, on an allow_other mount) with identical content never
# share a block, while files of one owner do; with merge_across_owners=1 they merge like the
# kernel's KSM. Sharing must not survive a change that makes two sharers different owners
# (chown, switching merge_across_owners back to 0). Only root writes tunables (EACCES for a
# user); counters refuse opening for write with EACCES even for root.

import errno
import os
import stat
import time

import pytest

from fsops import errname, run_as
from ksmops import kset, kval

pytestmark = pytest.mark.ksmfs_only

U1, U2 = 1001, 1002
PAGES = 32
# the same 32 distinct pages for everyone (a snippet regenerates them from the seed)
WRITE = """
import random
data = random.Random(7).randbytes({pages} * 4096)
fd = os.open({path!r}, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
os.write(fd, data)
os.fsync(fd)
os.close(fd)
"""


def merged(m):
    return int(kval(m, "pages_shared")), int(kval(m, "pages_sharing"))


def start(m):
    # smart_scan off: files written passes apart can age out of step under the kernel's
    # skip schedule and meet only much later; these tests are about owners, not that.
    kset(m, "smart_scan", 0)
    kset(m, "pages_to_scan", 10000)
    kset(m, "sleep_millisecs", 0)
    kset(m, "run", 1)


def passes(m, n, timeout=30):
    target = int(kval(m, "full_scans")) + n
    deadline = time.monotonic() + timeout
    while int(kval(m, "full_scans")) < target:
        assert time.monotonic() < deadline, f"the scanner did not complete {n} passes in {timeout}s"
        time.sleep(0.02)


def wait_merged(m, want, timeout=30):
    deadline = time.monotonic() + timeout
    while merged(m) != want and time.monotonic() < deadline:
        time.sleep(0.05)
    passes(m, 2)                      # and it stays
    assert merged(m) == want, f"(pages_shared, pages_sharing) = {merged(m)}, want {want}"


def merging_pages(path):
    return int(os.getxattr(path, "user.ksm.ksm_merging_pages"))


def write_as(uid, path):
    run_as(uid, uid, WRITE.format(pages=PAGES, path=path))
    assert os.stat(path).st_uid == uid


@pytest.fixture
def shared(mounted):
    """An allow_other mount with a world-writable sticky directory for the two users."""
    with mounted("allow_other,size=256m") as m:
        w = os.path.join(m.path, "w")
        os.mkdir(w)
        os.chmod(w, 0o1777)
        m.w = w
        yield m
        m.assert_alive()


def test_identical_files_of_two_owners_never_merge_by_default_but_one_owners_do(shared):
    m = shared
    assert kval(m, "merge_across_owners") == "0"
    a1, b = os.path.join(m.w, "a1"), os.path.join(m.w, "b")
    write_as(U1, a1)
    write_as(U2, b)
    start(m)
    passes(m, 5)
    assert merged(m) == (0, 0), f"files of uids {U1} and {U2} merged: {merged(m)}"
    # a second file of the first owner merges with the first, and only with it
    a2 = os.path.join(m.w, "a2")
    write_as(U1, a2)
    wait_merged(m, (PAGES, PAGES))
    assert (merging_pages(a1), merging_pages(a2), merging_pages(b)) == (PAGES, PAGES, 0)
    passes(m, 3)
    assert merged(m) == (PAGES, PAGES) and merging_pages(b) == 0


def test_with_merge_across_owners_1_files_of_two_owners_merge(shared):
    m = shared
    kset(m, "merge_across_owners", 1)
    assert kval(m, "merge_across_owners") == "1"
    a, b = os.path.join(m.w, "a"), os.path.join(m.w, "b")
    write_as(U1, a)
    write_as(U2, b)
    start(m)
    wait_merged(m, (PAGES, PAGES))
    assert (merging_pages(a), merging_pages(b)) == (PAGES, PAGES)


def test_chown_of_a_merged_file_to_another_owner_ends_its_sharing(shared):
    """Files merged while one user owned them, then one given to another user (root
    provisioning copies, then chown): with merge_across_owners=0 the two owners must not
    keep sharing blocks (that is the timing side channel the default closes)."""
    m = shared
    a, b = os.path.join(m.w, "a"), os.path.join(m.w, "b")
    write_as(U1, a)
    write_as(U1, b)
    start(m)
    wait_merged(m, (PAGES, PAGES))
    os.chown(b, U2, U2)
    passes(m, 3)
    # b left the shared blocks; a's pages may stay on them alone (the kernel too counts a
    # KSM page with one remaining mapping in pages_shared), but nothing is shared any more.
    assert merging_pages(b) == 0 and merged(m)[1] == 0, (
        f"after chown to uid {U2}: still shared across owners: (pages_shared, pages_sharing) "
        f"{merged(m)}, merging pages a {merging_pages(a)} b {merging_pages(b)}")
    # and b merges again, with a file of its new owner
    c = os.path.join(m.w, "c")
    write_as(U2, c)
    deadline = time.monotonic() + 30
    while merging_pages(c) != PAGES and time.monotonic() < deadline:
        time.sleep(0.05)
    passes(m, 2)
    assert (merging_pages(b), merging_pages(c)) == (PAGES, PAGES), \
        f"b and c (both uid {U2}) did not merge: {merging_pages(b)}, {merging_pages(c)}"
    assert merged(m)[1] == PAGES, f"(pages_shared, pages_sharing) {merged(m)}"


def test_merge_across_owners_back_to_0_is_EBUSY_or_unmerges_the_cross_owner_pages(shared):
    """Like merge_across_nodes, a change while pages are merged may be refused (EBUSY); if
    it is accepted, nothing may stay shared between owners."""
    m = shared
    kset(m, "merge_across_owners", 1)
    a, b = os.path.join(m.w, "a"), os.path.join(m.w, "b")
    write_as(U1, a)
    write_as(U2, b)
    start(m)
    wait_merged(m, (PAGES, PAGES))
    try:
        kset(m, "merge_across_owners", 0)
    except OSError as e:
        assert e.errno == errno.EBUSY, e
        assert kval(m, "merge_across_owners") == "1"
        return
    assert kval(m, "merge_across_owners") == "0"
    passes(m, 3)
    assert merged(m) == (0, 0) and merging_pages(b) == 0, (
        f"merge_across_owners=0 accepted, but uids {U1} and {U2} still share: "
        f"(pages_shared, pages_sharing) {merged(m)}")


def _control_files(m):
    d = os.path.join(m.path, "ksm")
    tunables, counters = [], []
    for name in sorted(os.listdir(d)):
        mode = stat.S_IMODE(os.stat(os.path.join(d, name)).st_mode)
        (tunables if mode == 0o644 else counters).append(name)
        assert mode in (0o644, 0o444), f"ksm/{name} has mode {oct(mode)}"
    return tunables, counters


def test_a_user_cannot_write_any_tunable_EACCES_but_can_read_them(shared):
    m = shared
    tunables, counters = _control_files(m)
    assert "run" in tunables and "merge_across_owners" in tunables
    out = run_as(U1, U1, f"""
        d = {os.path.join(m.path, "ksm")!r}
        for name in {tunables!r}:
            print(name, errname(os.open, os.path.join(d, name), os.O_WRONLY),
                  errname(os.open, os.path.join(d, name), os.O_RDWR),
                  errname(lambda: open(os.path.join(d, name)).read()))
        """)
    bad = [line for line in out.splitlines() if line.split()[1:] != ["EACCES", "EACCES", "OK"]]
    assert not bad, "as uid 1001 (want write-open EACCES, read OK):\n" + "\n".join(bad)
    assert kval(m, "run") == "0"


def test_counters_refuse_write_open_with_EACCES_even_for_root(shared):
    m = shared
    _, counters = _control_files(m)
    assert {"pages_sharing", "pages_shared", "full_scans", "cow_ksm"} <= set(counters)
    d = os.path.join(m.path, "ksm")
    got = {name: (errname(os.open, os.path.join(d, name), os.O_WRONLY),
                  errname(os.open, os.path.join(d, name), os.O_RDWR),
                  errname(os.open, os.path.join(d, name), os.O_WRONLY | os.O_TRUNC))
           for name in counters}
    bad = {k: v for k, v in got.items() if v != ("EACCES", "EACCES", "EACCES")}
    assert not bad, f"root opening counters for write (want EACCES): {bad}"
