# Differential test (ksmfs-only; needs root and /sys/kernel/mm/ksm): one write(2) of each of
# the trickiest inputs goes to the kernel's /sys/kernel/mm/ksm and to <mount>/ksm; errno, byte
# count and read-back value must agree, and so must the write mechanics (NUL, 4096 bytes,
# offset, 0 bytes), the advisor_mode/pages_to_scan coupling, offset reads, names and modes.
# All kernel tunables are saved and restored; the kernel's run only ever gets 0 or rejects.

import errno
import os

import pytest

pytestmark = pytest.mark.ksmfs_only

KERNEL_KSM = "/sys/kernel/mm/ksm"
KERNEL_TUNABLES = ["advisor_max_cpu", "advisor_max_pages_to_scan", "advisor_min_pages_to_scan",
                   "advisor_mode", "advisor_target_scan_time", "max_page_sharing",
                   "merge_across_nodes", "pages_to_scan", "run", "sleep_millisecs", "smart_scan",
                   "stable_node_chains_prune_millisecs", "use_zero_pages"]


class Ctl:
    """Raw access to one KSM control directory (the kernel's or a mount's)."""

    def __init__(self, path, label):
        self.path, self.label = path, label

    def write(self, name, data, offset=None):
        fd = os.open(os.path.join(self.path, name), os.O_WRONLY)
        try:
            return os.write(fd, data) if offset is None else os.pwrite(fd, data, offset)
        except OSError as e:
            return -e.errno
        finally:
            os.close(fd)

    def read(self, name, offset=0, size=4096):
        fd = os.open(os.path.join(self.path, name), os.O_RDONLY)
        try:
            return os.pread(fd, size, offset)
        finally:
            os.close(fd)

    def set(self, name, data):
        n = self.write(name, data)
        assert n == len(data), f"{self.label}: setting {name}={data!r} returned {n}"

    def save(self):
        return {n: self.read(n) for n in KERNEL_TUNABLES}

    def restore(self, saved):
        """Put every tunable back (advisor_mode first: it rewrites pages_to_scan); `run` is
        never written here, it must simply still be 0."""
        scan_time = saved["advisor_mode"].startswith(b"none [")
        self.set("advisor_mode", b"scan-time" if scan_time else b"none")
        for n in KERNEL_TUNABLES:
            if n in ("run", "advisor_mode") or (n == "pages_to_scan" and scan_time):
                continue
            if self.read(n) != saved[n]:
                self.set(n, saved[n])
        now = self.save()
        return [n for n in KERNEL_TUNABLES if now[n] != saved[n]]


@pytest.fixture(scope="module")
def kernel():
    if not os.path.isdir(KERNEL_KSM):
        pytest.skip(f"{KERNEL_KSM} is absent (kernel built without CONFIG_KSM): nothing to compare with")
    if os.geteuid() != 0:
        pytest.skip("not root: cannot write the kernel's /sys/kernel/mm/ksm tunables")
    k = Ctl(KERNEL_KSM, "kernel")
    saved = k.save()
    if saved["run"] != b"0\n":
        pytest.fail(f"the kernel's KSM is running (run={saved['run']!r}); this test only "
                    "compares with a stopped ksmd and will not stop it")
    busy = {n: k.read(n) for n in ("pages_shared", "pages_sharing")}
    if busy != {"pages_shared": b"0\n", "pages_sharing": b"0\n"}:
        pytest.fail(f"the kernel has merged pages {busy}: max_page_sharing/merge_across_nodes "
                    "writes would be EBUSY there; run `echo 2 > /sys/kernel/mm/ksm/run` first")
    try:
        yield k, saved
    finally:
        bad = k.restore(saved)
        assert k.read("run") == b"0\n", "the kernel's run is no longer 0"
        assert not bad, f"could not restore the kernel's {bad}"


@pytest.fixture(scope="module")
def fs(mounted):
    with mounted("size=64m") as m:
        yield m


@pytest.fixture
def both(kernel, fs):
    k, saved = kernel
    f = Ctl(os.path.join(fs.path, "ksm"), "ksmfs")
    fsaved = f.save()
    try:
        yield k, f
    finally:
        fs.assert_alive()
        bad_k = k.restore(saved)
        assert not bad_k, f"could not restore the kernel's {bad_k}"
        assert k.read("run") == b"0\n"
        f.restore(fsaved)


# ---------------------------------------------------------------- single writes

CASES = [
    # u32 numbers
    ("pages_to_scan", b"+007\n"), ("pages_to_scan", b"4294967295"), ("pages_to_scan", b"4294967296"),
    ("pages_to_scan", b"18446744073709551616"), ("pages_to_scan", b"-0"), ("pages_to_scan", b"5\n\n"),
    ("pages_to_scan", b"5\r\n"), ("pages_to_scan", b"\n"), ("pages_to_scan", b" 5"),
    ("pages_to_scan", b"0x10"), ("pages_to_scan", b"5\x00junk"), ("pages_to_scan", b"\x005"),
    ("pages_to_scan", b"0" * 4095 + b"7"), ("pages_to_scan", b"0" * 4095 + b"7x"),
    ("pages_to_scan", b"0" * 4094 + b"7x"), ("pages_to_scan", b"8" * 4096 + b"\n"),
    ("sleep_millisecs", b"+"), ("sleep_millisecs", b"++5"), ("sleep_millisecs", b"5.0"),
    ("sleep_millisecs", b"1e3"), ("sleep_millisecs", b"-1"), ("sleep_millisecs", "\u0665".encode()),
    ("sleep_millisecs", b"0" * 40 + b"4294967295"), ("sleep_millisecs", b"0" * 4096 + b"x" * 4096),
    ("stable_node_chains_prune_millisecs", b"0"),
    ("stable_node_chains_prune_millisecs", b"4294967295\n"),
    ("stable_node_chains_prune_millisecs", b"4294967296"),
    # max_page_sharing (int, 2 .. 2^31-1)
    ("max_page_sharing", b"0"), ("max_page_sharing", b"1"), ("max_page_sharing", b"2"),
    ("max_page_sharing", b"-1"), ("max_page_sharing", b"-0"), ("max_page_sharing", b"-2147483648"),
    ("max_page_sharing", b"-2147483649"), ("max_page_sharing", b"2147483647"),
    ("max_page_sharing", b"2147483648"), ("max_page_sharing", b"18446744073709551616abc"),
    ("max_page_sharing", b"-99999999999999999999abc"), ("max_page_sharing", b"+2\n"),
    ("max_page_sharing", b"9223372036854775808"), ("max_page_sharing", b"-9223372036854775809"),
    # merge_across_nodes
    ("merge_across_nodes", b"0"), ("merge_across_nodes", b"+1"), ("merge_across_nodes", b"01"),
    ("merge_across_nodes", b"2"), ("merge_across_nodes", b"18446744073709551615"),
    ("merge_across_nodes", b"18446744073709551616"), ("merge_across_nodes", b"-1"),
    ("merge_across_nodes", b"y"),
    # booleans
    ("use_zero_pages", b"e"), ("use_zero_pages", b"E"), ("use_zero_pages", b"d"),
    ("use_zero_pages", b"D"), ("use_zero_pages", b"ON"), ("use_zero_pages", b"OF"),
    ("use_zero_pages", b"of"), ("use_zero_pages", b"o"), ("use_zero_pages", b"oz"),
    ("use_zero_pages", b"o\n"), ("use_zero_pages", b"10"), ("use_zero_pages", b"01"),
    ("use_zero_pages", b"0junk"), ("use_zero_pages", b"1abc"), ("use_zero_pages", b"2"),
    ("use_zero_pages", b" 1"), ("use_zero_pages", b"\n"), ("use_zero_pages", b"\x001"),
    ("use_zero_pages", b"o\x00n"), ("use_zero_pages", b"o" + b"n" * 4200),
    ("smart_scan", b"yes"), ("smart_scan", b"no"), ("smart_scan", b"x"), ("smart_scan", b"-1"),
    ("smart_scan", b"t"), ("smart_scan", b"F"), ("smart_scan", b"1\r\n"),
    # advisor
    ("advisor_mode", b"none\n"), ("advisor_mode", b"scan-time\n"), ("advisor_mode", b"none\n\n"),
    ("advisor_mode", b"None"), ("advisor_mode", b" none"), ("advisor_mode", b"scan-time\x00"),
    ("advisor_mode", b"scan-time\n\x00x"), ("advisor_mode", b"[none]"),
    ("advisor_mode", b"none" + b"\x00" * 4200),
    ("advisor_max_cpu", b"4294967301"), ("advisor_max_cpu", b"18446744073709551615"),
    ("advisor_max_cpu", b"18446744073709551616"), ("advisor_max_cpu", b"101"),
    ("advisor_min_pages_to_scan", b"18446744073709551615"),
    ("advisor_min_pages_to_scan", b"18446744073709551616"),
    ("advisor_max_pages_to_scan", b"+0"), ("advisor_max_pages_to_scan", b"99999999999999999999999999"),
    ("advisor_target_scan_time", b"0"), ("advisor_target_scan_time", b"00"),
    ("advisor_target_scan_time", b"+0"), ("advisor_target_scan_time", b"1"),
    ("advisor_target_scan_time", b"18446744073709551616"),
    # run: 0 or rejected values only (never 1 or 2 on the kernel)
    ("run", b"0"), ("run", b"+0"), ("run", b"000\n"), ("run", b"3"), ("run", b"-1"), ("run", b"-0"),
    ("run", b"4294967296"), ("run", b"4294967298"), ("run", b"2x"), ("run", b"1 "),
    ("run", b"0x1"), ("run", b"\n"), ("run", b"18446744073709551616"),
]



def run_value(data):
    """What `run` would be set to if the kernel accepted `data` (None: not a plain number)."""
    s = data.split(b"\0")[0]
    s = s[:-1] if s.endswith(b"\n") else s
    s = s[1:] if s.startswith(b"+") else s
    return int(s) if s.isdigit() else None

BASELINES = {
    "run": [b"0"],
    "merge_across_nodes": [b"0", b"1"],
    "use_zero_pages": [b"0", b"1"],
    "smart_scan": [b"0", b"1"],
    "advisor_mode": [b"none", b"scan-time"],
}


def observe(c, name, data):
    """Write each baseline, then the case, read back; -> list of (bytes written or -errno,
    value read back) per baseline, so that "set to X" and "left unchanged" differ."""
    out = []
    for base in BASELINES.get(name, [b"12345", b"54321"]):
        if name == "pages_to_scan":
            c.set("advisor_mode", b"none")
        c.set(name, base)
        assert name != "run" or run_value(data) not in (1, 2), "never start or unmerge ksmd"
        n = c.write(name, data)
        out.append((n if n >= 0 else errno.errorcode.get(-n, -n), c.read(name)))
        if name == "run":
            assert c.read("run") == b"0\n", f"{c.label}: run is no longer 0 after {data!r}"
    return out


def _id(case):
    name, data = case
    return f"{name}={data[:20]!r}" + (f"+{len(data) - 20}" if len(data) > 20 else "")


def test_case_list_never_starts_or_unmerges_the_kernel():
    assert [d for n, d in CASES if n == "run" and run_value(d) in (1, 2)] == []


@pytest.mark.parametrize("name,data", CASES, ids=[_id(c) for c in CASES])
def test_one_write_gives_the_same_errno_count_and_value_as_the_kernel(both, name, data):
    k, f = both
    want = observe(k, name, data)
    got = observe(f, name, data)
    assert got == want, f"ksmfs {got} != kernel {want}"


# ---------------------------------------------------------------- mechanics and coupling

def mechanics(c):
    """A fixed sequence of operations; every observation is recorded for comparison."""
    for n, v in [("advisor_mode", b"none"), ("pages_to_scan", b"100"), ("sleep_millisecs", b"20"),
                 ("use_zero_pages", b"0"), ("max_page_sharing", b"256"), ("merge_across_nodes", b"1"),
                 ("advisor_target_scan_time", b"200"), ("run", b"0")]:
        c.set(n, v)  # the same starting point on both sides
    obs = []
    rec = lambda what, v: obs.append((what, v))  # noqa: E731
    for n in ("pages_to_scan", "sleep_millisecs", "use_zero_pages", "advisor_mode", "run",
              "max_page_sharing", "merge_across_nodes", "advisor_target_scan_time"):
        rec("0-byte write to " + n, (c.write(n, b""), c.read(n) if n != "advisor_mode" else None))
    c.set("advisor_mode", b"none")
    c.set("advisor_min_pages_to_scan", b"777")
    c.set("pages_to_scan", b"55")
    rec("none -> none", (c.write("advisor_mode", b"none"), c.read("pages_to_scan")))
    rec("none -> scan-time", (c.write("advisor_mode", b"scan-time\n"), c.read("pages_to_scan")))
    rec("scan-time: valid pages_to_scan", (c.write("pages_to_scan", b"5"), c.read("pages_to_scan")))
    rec("scan-time: invalid pages_to_scan", c.write("pages_to_scan", b"abc"))
    rec("scan-time: 0-byte pages_to_scan", c.write("pages_to_scan", b""))
    rec("scan-time: min change", (c.write("advisor_min_pages_to_scan", b"888"), c.read("pages_to_scan")))
    rec("scan-time -> scan-time", (c.write("advisor_mode", b"scan-time"), c.read("pages_to_scan")))
    rec("scan-time -> none", (c.write("advisor_mode", b"none"), c.read("pages_to_scan")))
    c.set("advisor_min_pages_to_scan", b"4294967301")
    rec("2^32+5 -> scan-time", (c.write("advisor_mode", b"scan-time"), c.read("pages_to_scan"),
                                c.read("advisor_min_pages_to_scan")))
    c.set("advisor_mode", b"none")
    rec("pwrite offset 3", (c.write("sleep_millisecs", b"77", offset=3), c.read("sleep_millisecs")))
    rec("pwrite offset 4095", (c.write("sleep_millisecs", b"78", offset=4095), c.read("sleep_millisecs")))
    rec("NUL", (c.write("sleep_millisecs", b"5\0junk"), c.read("sleep_millisecs")))
    rec("8192 bytes", (c.write("sleep_millisecs", b"0" * 8192), c.read("sleep_millisecs")))
    rec("4097 NUL past cut", (c.write("sleep_millisecs", b"0" * 4096 + b"\0"), c.read("sleep_millisecs")))
    rec("same max_page_sharing", c.write("max_page_sharing", c.read("max_page_sharing").strip()))
    c.set("sleep_millisecs", b"12345")
    for off, size in [(0, 4096), (2, 4096), (5, 4096), (6, 4096), (100, 4096), (1, 2), (0, 0)]:
        rec(f"pread({size}, {off})", c.read("sleep_millisecs", off, size))
    rec("advisor_mode read", c.read("advisor_mode"))
    rec("advisor_mode read at 3", c.read("advisor_mode", 3))
    return obs


def test_write_mechanics_and_advisor_coupling_match_the_kernel(both):
    k, f = both
    want = mechanics(k)
    got = mechanics(f)
    diffs = [(w[0], g[1], w[1]) for g, w in zip(got, want) if g != w]
    assert not diffs, "ksmfs vs kernel:\n" + "\n".join(f"  {what}: ksmfs {g!r}, kernel {w!r}"
                                                        for what, g, w in diffs)


def test_names_and_modes_match_the_kernel_and_ksmfs_adds_three_files(both):
    k, f = both
    kn = {n: os.stat(os.path.join(k.path, n)).st_mode & 0o7777 for n in os.listdir(k.path)}
    fn = {n: os.stat(os.path.join(f.path, n)).st_mode & 0o7777 for n in os.listdir(f.path)}
    added = {"cow_ksm", "merge_across_owners", "drop_merged_page_cache"}
    assert added <= set(fn) - set(kn)
    assert {n: fn.get(n) for n in kn} == kn
    others = set(fn) - set(kn) - added
    assert {n: fn[n] for n in others} == dict.fromkeys(others, 0o444), \
        "names ksmfs adds beyond these must be read-only"
    assert os.stat(f.path).st_mode & 0o7777 == os.stat(k.path).st_mode & 0o7777


def test_opening_a_counter_for_writing_fails_like_the_kernel(both):
    k, f = both
    for name in ("full_scans", "pages_shared", "general_profit", "ksm_zero_pages"):
        res = []
        for c in (k, f):
            try:
                os.close(os.open(os.path.join(c.path, name), os.O_WRONLY))
                res.append("opened")
            except OSError as e:
                res.append(errno.errorcode[e.errno])
        assert res[1] == res[0], f"{name}: ksmfs {res[1]}, kernel {res[0]}"
