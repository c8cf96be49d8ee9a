# <mount>/ksm as real processes see it (ksmfs-only): names, modes, owners, defaults and
# offset reads of every file; each accepted and rejected write of KSM-SPEC.md section 2 as one
# write(2), with its errno and read-back value; the kernel-measured extras (NUL, 4096 bytes,
# offset, e/d booleans, scan-time mode); echo/printf/dd/python; EACCES for counters and
# non-root; EBUSY while merged; a directory that refuses create/unlink/rename/mkdir; chmod and
# chown of its files as on sysfs (the mode says who may write).

import errno
import os
import re
import stat
import subprocess
import time

import pytest

from fsops import NOBODY, PAGE, raises_errno, read_cold, run_as, write_file

pytestmark = pytest.mark.ksmfs_only

E = errno.errorcode

# name -> default text (tunables), in ls order
TUNABLE_DEFAULTS = {
    "advisor_max_cpu": "70\n",
    "advisor_max_pages_to_scan": "30000\n",
    "advisor_min_pages_to_scan": "500\n",
    "advisor_mode": "[none] scan-time\n",
    "advisor_target_scan_time": "200\n",
    "drop_merged_page_cache": "1\n",
    "max_page_sharing": "256\n",
    "merge_across_nodes": "1\n",
    "merge_across_owners": "0\n",
    "pages_to_scan": "100\n",
    "run": "0\n",
    "sleep_millisecs": "20\n",
    "smart_scan": "1\n",
    "stable_node_chains_prune_millisecs": "2000\n",
    "use_zero_pages": "0\n",
}
COUNTERS = ["cow_ksm", "full_scans", "general_profit", "ksm_zero_pages", "pages_scanned",
            "pages_shared", "pages_sharing", "pages_skipped", "pages_unshared", "pages_volatile",
            "stable_node_chains", "stable_node_dups"]
KSMFS_ADDITIONS = {"cow_ksm", "merge_across_owners", "drop_merged_page_cache"}
KERNEL_FILES = sorted((set(TUNABLE_DEFAULTS) | set(COUNTERS)) - KSMFS_ADDITIONS)
ALL_FILES = sorted(set(TUNABLE_DEFAULTS) | set(COUNTERS))


# ---------------------------------------------------------------- helpers

def kpath(m, name):
    return os.path.join(m.path, "ksm", name)


def kread(m, name, offset=0, size=4096):
    fd = os.open(kpath(m, name), os.O_RDONLY)
    try:
        return os.pread(fd, size, offset)
    finally:
        os.close(fd)


def kget(m, name):
    return kread(m, name).decode()


def kwrite(m, name, data, offset=None):
    """One write(2) (or pwrite) of exactly `data`; -> bytes written, or -errno."""
    fd = os.open(kpath(m, name), os.O_WRONLY)
    try:
        return os.write(fd, data) if offset is None else os.pwrite(fd, data, offset)
    except OSError as e:
        return -e.errno
    finally:
        os.close(fd)


def kset(m, name, value):
    data = str(value).encode()
    n = kwrite(m, name, data)
    assert n == len(data), f"writing {data!r} to ksm/{name} returned {n} ({E.get(-n, '')})"


def restore_defaults(m):
    kset(m, "run", 0)
    kset(m, "advisor_mode", "none")  # first: it rewrites pages_to_scan
    for name, text in TUNABLE_DEFAULTS.items():
        if name in ("run", "advisor_mode") or kget(m, name) == text:
            continue
        kset(m, name, text.split()[0].strip("[]"))
    now = {n: kget(m, n) for n in TUNABLE_DEFAULTS}
    assert now == TUNABLE_DEFAULTS, "could not restore the ksm tunables to their defaults"


@pytest.fixture(scope="module")
def km(mounted):
    """One mount for the parsing tests; tunables go back to their defaults after each test."""
    with mounted("size=64m") as m:
        yield m


@pytest.fixture
def k(km):
    km.assert_alive()
    yield km
    km.assert_alive()
    restore_defaults(km)


# ---------------------------------------------------------------- shape and defaults

def _extras(k):
    """Names beyond the kernel's 24 and the two ksmfs adds as values (e.g. a metrics file):
    allowed, as new names that are read-only to everyone."""
    return sorted(set(os.listdir(os.path.join(k.path, "ksm"))) - set(ALL_FILES))


def test_ksm_holds_the_kernels_24_files_plus_the_three_ksmfs_additions(k):
    names = set(os.listdir(os.path.join(k.path, "ksm")))
    assert len(KERNEL_FILES) == 24
    assert sorted(set(ALL_FILES) - names) == [], "missing from <mnt>/ksm"
    for extra in _extras(k):  # anything more must be a new, read-only name (never a tunable)
        st = os.stat(kpath(k, extra))
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o444, extra
        assert (st.st_uid, st.st_gid) == (0, 0), extra
        with raises_errno(errno.EACCES):
            os.close(os.open(kpath(k, extra), os.O_WRONLY))


def test_ls_l_shows_dir_0755_tunables_0644_counters_0444_all_root_owned(k):
    out = subprocess.run(["ls", "-ld", os.path.join(k.path, "ksm")], check=True,
                         capture_output=True, text=True).stdout.split()
    assert out[0] == "drwxr-xr-x" and out[2:4] == ["root", "root"], out
    lines = subprocess.run(["ls", "-l", os.path.join(k.path, "ksm")], check=True,
                           capture_output=True, text=True).stdout.splitlines()[1:]
    got = {l.split()[-1]: (l.split()[0], l.split()[2], l.split()[3]) for l in lines}
    want = {n: ("-rw-r--r--" if n in TUNABLE_DEFAULTS else "-r--r--r--", "root", "root")
            for n in ALL_FILES}
    assert {n: got.get(n) for n in ALL_FILES} == want
    for n in ALL_FILES:
        st = os.stat(kpath(k, n))
        assert stat.S_ISREG(st.st_mode) and st.st_uid == 0 and st.st_gid == 0, n


def test_fresh_mount_reads_the_kernel_defaults_and_zero_counters(k):
    got = {n: kget(k, n) for n in ALL_FILES}
    want = dict(TUNABLE_DEFAULTS, **{c: "0\n" for c in COUNTERS})
    assert got == want


@pytest.mark.parametrize("name", ALL_FILES)
def test_read_format_and_reads_at_an_offset_return_the_rest_then_nothing(k, name):
    text = kread(k, name)
    if name == "advisor_mode":
        assert text == b"[none] scan-time\n"
    else:
        assert re.fullmatch(rb"-?[0-9]+\n", text), text
    for off in range(len(text) + 3):
        assert kread(k, name, off) == text[off:], f"pread at offset {off}"
    assert kread(k, name, 1, 2) == text[1:3]
    assert kread(k, name, 4096) == b"" and kread(k, name, 1 << 20) == b""
    with open(kpath(k, name), "rb") as f:  # sequential reads: the text, then EOF
        assert f.read() == text and f.read() == b""


def test_an_open_file_keeps_the_text_of_its_first_read_as_sysfs_does(k):
    """A reader taking a value in several reads never sees two values spliced together:
    the text is made at the read at offset 0 and kept until close (seq_file behaviour)."""
    path = kpath(k, "pages_to_scan")
    with open(path, "w") as w:
        w.write("1000")
    fd = os.open(path, os.O_RDONLY)
    try:
        assert os.read(fd, 2) == b"10"
        with open(path, "w") as w:
            w.write("7")
        assert os.read(fd, 100) == b"00\n", "the rest of the text of the first read"
        assert os.read(fd, 100) == b""
        assert os.pread(fd, 100, 0) == b"7\n", "a read at offset 0 makes the text anew"
    finally:
        os.close(fd)
    assert kread(k, "pages_to_scan") == b"7\n"


# ---------------------------------------------------------------- parsing, one write(2) each

# expected: a value read back (int, or the exact text) or -errno
EINVAL, ERANGE = -errno.EINVAL, -errno.ERANGE
U32, U64 = "4294967295", "18446744073709551615"
OVER64 = "18446744073709551616"

NUMBER_OK = [(b"5", 5), (b"5\n", 5), (b"+5", 5), (b"+5\n", 5), (b"007", 7), (b"007\n", 7),
             (b"+007", 7)]
NUMBER_BAD = [b"\n", b" 5", b"5 ", b"\t5", b"5\t", b"5\n\n", b"5\r\n", b"-1", b"-0", b"0x10",
              b"1e3", b"5.0", b"abc", b"5abc", b"+", b"-", b"++5", b"5_000", b"\x005"]


def _number_cases(name, lo_ok=True, top=None, over=None):
    c = [(name, d, v) for d, v in NUMBER_OK] + [(name, d, EINVAL) for d in NUMBER_BAD]
    if lo_ok:
        c += [(name, b"0", 0), (name, b"0\n", 0)]
    if top is not None:
        c += [(name, top.encode(), int(top)), (name, top.encode() + b"\n", int(top))]
    if over is not None:
        c += [(name, over.encode(), EINVAL), (name, OVER64.encode(), EINVAL),
              (name, b"99999999999999999999999999", EINVAL)]
    return c


CASES = (
    _number_cases("pages_to_scan", top=U32, over="4294967296")
    + _number_cases("sleep_millisecs", top=U32, over="4294967296")
    + _number_cases("stable_node_chains_prune_millisecs", top=U32, over="4294967296")
    + _number_cases("advisor_min_pages_to_scan", top=U64, over=OVER64)
    + _number_cases("advisor_max_pages_to_scan", top=U64, over=OVER64)
    + _number_cases("advisor_target_scan_time", lo_ok=False, top=U64, over=OVER64)
    + [("advisor_target_scan_time", d, EINVAL) for d in (b"0", b"00", b"0\n", b"+0")]
    + [("advisor_target_scan_time", b"1", 1)]
    + _number_cases("advisor_max_cpu", over=OVER64)
    + [("advisor_max_cpu", b"101", 101), ("advisor_max_cpu", b"4294967301", 5),
       ("advisor_max_cpu", b"4294967296", 0), ("advisor_max_cpu", U64.encode(), 2**32 - 1)]
    + [("max_page_sharing", d, v) for d, v in
       [(b"2", 2), (b"3", 3), (b"+2\n", 2), (b"02", 2), (b"2147483647", 2**31 - 1),
        (b"0", EINVAL), (b"1", EINVAL), (b"01", EINVAL), (b"-0", EINVAL),
        (b"-1", EINVAL), (b"-2", EINVAL), (b"-2147483648", EINVAL),
        (b"2147483648", ERANGE), (b"4294967296", ERANGE),
        (b"-2147483649", ERANGE), (b"9223372036854775808", ERANGE),
        (OVER64.encode(), ERANGE), (b"18446744073709551616abc", ERANGE),
        (b"abc", EINVAL), (b"5abc", EINVAL), (b" 5", EINVAL),
        (b"5\n\n", EINVAL), (b"\n", EINVAL), (b"0x10", EINVAL)]]
    + [("merge_across_nodes", d, v) for d, v in
       [(b"0", 0), (b"1", 1), (b"1\n", 1), (b"+1", 1), (b"01", 1), (b"000", 0),
        (b"2", EINVAL), (b"255", EINVAL), (b"-1", EINVAL),
        (b"-0", EINVAL), (U64.encode(), EINVAL), (OVER64.encode(), ERANGE),
        (b"y", EINVAL), (b"on", EINVAL), (b"1 ", EINVAL), (b"\n", EINVAL)]]
    + [(b, d, v) for b in ("use_zero_pages", "smart_scan") for d, v in
       [(x, 1) for x in (b"1", b"1\n", b"y", b"Y", b"t", b"T", b"e", b"E", b"on", b"ON", b"On",
                         b"yes", b"true", b"enable", b"10", b"1abc", b"y\n\n", b"1 ")]
       + [(x, 0) for x in (b"0", b"0\n", b"n", b"N", b"f", b"F", b"d", b"D", b"off", b"OFF",
                           b"of", b"OF", b"oF", b"no", b"false", b"disable", b"01", b"0junk")]
       + [(x, EINVAL) for x in (b"2", b"9", b"x", b"o", b"O", b"oz", b"o\n", b"-1", b"+1",
                                      b" 1", b"\t1", b"\n", b"\x001")]]
    + [("advisor_mode", d, v) for d, v in
       [(b"none", "[none] scan-time\n"), (b"none\n", "[none] scan-time\n"),
        (b"scan-time", "none [scan-time]\n"), (b"scan-time\n", "none [scan-time]\n"),
        (b"none\n\n", EINVAL), (b" none", EINVAL), (b"none ", EINVAL),
        (b"None", EINVAL), (b"NONE", EINVAL), (b"scan_time", EINVAL),
        (b"scan", EINVAL), (b"[none]", EINVAL), (b"none\r\n", EINVAL),
        (b"\n", EINVAL), (b"0", EINVAL), (b"scan-time-", EINVAL)]]
    + [("run", d, v) for d, v in
       [(b"0", 0), (b"0\n", 0), (b"+0", 0), (b"000", 0), (b"3", EINVAL),
        (b"255", EINVAL), (b"-1", EINVAL), (b"-0", EINVAL),
        (b"4294967296", EINVAL), (b"4294967298", EINVAL), (b"1 ", EINVAL),
        (b"2x", EINVAL), (b"x", EINVAL), (b"\n", EINVAL), (b"0x1", EINVAL),
        (OVER64.encode(), EINVAL)]]
    + [(name, d, v) for name in ("merge_across_owners", "drop_merged_page_cache") for d, v in
       [(b"1", 1), (b"0", 0), (b"1\n", 1), (b"2", EINVAL), (b"x", EINVAL),
        (b"-1", EINVAL), (b"\n", EINVAL)]]
)

BOOLEANS = ("use_zero_pages", "smart_scan", "merge_across_owners", "drop_merged_page_cache")


def _baseline(name, want):
    """A value to write first that differs from the expected result, so that "set" and
    "left unchanged" can be told apart."""
    if name == "run":
        return b"0"
    if name in BOOLEANS or name == "merge_across_nodes":
        return b"0" if want == 1 else b"1"
    if name == "advisor_mode":
        return b"none" if isinstance(want, str) and want.startswith("none [") else b"scan-time"
    return b"12345"


def _case_id(c):
    return f"{c[0]}={c[1][:24]!r}"


@pytest.mark.parametrize("name,data,want", CASES, ids=[_case_id(c) for c in CASES])
def test_single_write_is_accepted_or_rejected_with_the_kernels_errno(k, name, data, want):
    base = _baseline(name, want)
    kset(k, name, base.decode())
    before = kget(k, name)
    n = kwrite(k, name, data)
    after = kget(k, name)
    if isinstance(want, int) and want < 0:
        assert n == want, f"write {data!r} -> {n if n >= 0 else E[-n]}, want {E[-want]}"
        assert after == before, f"a rejected write changed ksm/{name}: {before!r} -> {after!r}"
    else:
        assert n == min(len(data), 4096), f"write {data!r} -> {n if n >= 0 else E[-n]}"
        text = want if isinstance(want, str) else f"{want}\n"
        assert after == text


# ---------------------------------------------------------------- write(2) mechanics

def test_value_ends_at_the_first_NUL_and_the_whole_write_is_reported(k):
    assert kwrite(k, "sleep_millisecs", b"5\0junk") == 6
    assert kget(k, "sleep_millisecs") == "5\n"
    assert kwrite(k, "advisor_mode", b"scan-time\0xyz") == 13
    assert kget(k, "advisor_mode") == "none [scan-time]\n"
    assert kwrite(k, "use_zero_pages", b"y\0") == 2 and kget(k, "use_zero_pages") == "1\n"


def test_only_the_first_4096_bytes_are_parsed_and_the_write_reports_4096(k):
    kset(k, "sleep_millisecs", 12345)
    assert kwrite(k, "sleep_millisecs", b"0" * 8192) == 4096
    assert kget(k, "sleep_millisecs") == "0\n"
    assert kwrite(k, "pages_to_scan", b"0" * 4095 + b"7" + b"x" * 4096) == 4096
    assert kget(k, "pages_to_scan") == "7\n"
    assert kwrite(k, "pages_to_scan", b"0" * 4094 + b"7x") == -errno.EINVAL
    assert kget(k, "pages_to_scan") == "7\n"


def test_a_zero_byte_write_returns_0_and_changes_nothing(k):
    for name in TUNABLE_DEFAULTS:
        assert kwrite(k, name, b"") == 0, name
    assert {n: kget(k, n) for n in TUNABLE_DEFAULTS} == TUNABLE_DEFAULTS
    kset(k, "advisor_mode", "scan-time")
    assert kwrite(k, "pages_to_scan", b"") == 0  # even in scan-time mode


def test_the_write_offset_is_ignored(k):
    assert kwrite(k, "sleep_millisecs", b"77", offset=3) == 2
    assert kget(k, "sleep_millisecs") == "77\n"
    assert kwrite(k, "max_page_sharing", b"9", offset=4095) == 1
    assert kget(k, "max_page_sharing") == "9\n"


def test_writing_the_current_value_succeeds(k):
    assert kwrite(k, "max_page_sharing", b"256") == 3
    assert kwrite(k, "run", b"0") == 1
    assert kwrite(k, "advisor_mode", b"none") == 4
    assert kwrite(k, "merge_across_nodes", b"1") == 1


def test_run_accepts_1_and_2_and_2_again(k):
    for v in (b"1", b"0", b"2", b"2", b"1\n", b"0"):
        assert kwrite(k, "run", v) == len(v)
        assert kget(k, "run") == v.decode().strip() + "\n"


# ---------------------------------------------------------------- advisor_mode and pages_to_scan

def test_any_pages_to_scan_write_is_EINVAL_while_advisor_mode_is_scan_time(k):
    kset(k, "advisor_min_pages_to_scan", 777)
    kset(k, "pages_to_scan", 55)
    assert kwrite(k, "advisor_mode", b"none") == 4
    assert kget(k, "pages_to_scan") == "55\n", "none -> none must keep pages_to_scan"
    kset(k, "advisor_mode", "scan-time")
    assert kget(k, "pages_to_scan") == "777\n", "scan-time sets pages_to_scan = advisor_min"
    for d in (b"5", b"777", b"abc", b"0"):
        assert kwrite(k, "pages_to_scan", d) == -errno.EINVAL, d
    assert kget(k, "pages_to_scan") == "777\n"
    kset(k, "advisor_min_pages_to_scan", 888)
    assert kget(k, "pages_to_scan") == "777\n", "advisor_min change alone must not touch it"
    assert kwrite(k, "advisor_mode", b"scan-time") == 9
    assert kget(k, "pages_to_scan") == "777\n", "scan-time -> scan-time must keep it"
    kset(k, "advisor_mode", "none")
    assert kget(k, "pages_to_scan") == "100\n", "-> none sets pages_to_scan = 100"
    assert kwrite(k, "pages_to_scan", b"5") == 1


def test_switching_to_scan_time_cuts_advisor_min_pages_to_scan_to_32_bits(k):
    kset(k, "advisor_min_pages_to_scan", 2**32 + 5)
    assert kget(k, "advisor_min_pages_to_scan") == f"{2**32 + 5}\n"
    kset(k, "advisor_mode", "scan-time")
    assert kget(k, "pages_to_scan") == "5\n"
    kset(k, "advisor_mode", "none")
    kset(k, "advisor_min_pages_to_scan", 2**64 - 1)
    kset(k, "advisor_mode", "scan-time")
    assert kget(k, "pages_to_scan") == f"{2**32 - 1}\n"


# ---------------------------------------------------------------- ordinary tools

def _sh(cmd):
    r = subprocess.run(["sh", "-c", cmd], capture_output=True, text=True)
    assert r.returncode == 0, f"{cmd}: {r.stderr}"


def test_echo_printf_dd_and_python_open_w_all_set_a_tunable(k):
    p = lambda n: kpath(k, n)  # noqa: E731
    _sh(f"echo 1234 > {p('pages_to_scan')}")
    assert kget(k, "pages_to_scan") == "1234\n"
    _sh(f"printf 77 > {p('sleep_millisecs')}")
    assert kget(k, "sleep_millisecs") == "77\n"
    _sh(f"echo 4321 | dd of={p('pages_to_scan')} status=none")
    assert kget(k, "pages_to_scan") == "4321\n"
    _sh(f"printf 99 | dd of={p('sleep_millisecs')} conv=notrunc status=none")
    assert kget(k, "sleep_millisecs") == "99\n"
    with open(p("stable_node_chains_prune_millisecs"), "w") as f:
        f.write("555\n")
    assert kget(k, "stable_node_chains_prune_millisecs") == "555\n"
    _sh(f"echo scan-time > {p('advisor_mode')}")
    assert kget(k, "advisor_mode") == "none [scan-time]\n"
    _sh(f"echo 1 | tee {p('use_zero_pages')} >/dev/null")
    assert kget(k, "use_zero_pages") == "1\n"
    r = subprocess.run(["bash", "-c", f"echo 3 > {p('run')}"], capture_output=True, text=True)
    assert r.returncode != 0 and "Invalid argument" in r.stderr, r.stderr
    assert subprocess.run(["cat", p("pages_to_scan")], capture_output=True,
                          text=True).stdout == "500\n"  # scan-time set it to advisor_min


# ---------------------------------------------------------------- permissions

@pytest.mark.parametrize("flags", [os.O_WRONLY, os.O_RDWR, os.O_WRONLY | os.O_TRUNC],
                         ids=["O_WRONLY", "O_RDWR", "O_TRUNC"])
def test_opening_any_counter_for_writing_is_EACCES_even_for_root(k, flags):
    for name in COUNTERS:
        with raises_errno(errno.EACCES):
            os.close(os.open(kpath(k, name), flags))
        assert kget(k, name) == "0\n"


def test_a_user_other_than_root_can_read_but_not_write_a_tunable(mounted):
    with mounted("size=64m,allow_other") as k:  # allow_other: let uid 65534 into the mount
        _nobody_cannot_write(k)


def _nobody_cannot_write(k):
    out = run_as(NOBODY, NOBODY, f"""
        for name in ("pages_to_scan", "run", "advisor_mode", "use_zero_pages"):
            p = os.path.join({os.path.join(k.path, 'ksm')!r}, name)
            def w():
                fd = os.open(p, os.O_WRONLY)
                try:
                    os.write(fd, b"1")
                finally:
                    os.close(fd)
            print(name, errname(w), open(p).read().strip().replace(" ", "_"))
        print("counter", errname(lambda: open({kpath(k, 'pages_sharing')!r}, "w")))
    """)
    assert out.splitlines() == ["pages_to_scan EACCES 100", "run EACCES 0",
                                "advisor_mode EACCES [none]_scan-time", "use_zero_pages EACCES 0",
                                "counter EACCES"]
    assert {n: kget(k, n) for n in TUNABLE_DEFAULTS} == TUNABLE_DEFAULTS


def test_chmod_and_chown_of_ksm_files_work_as_on_sysfs_and_the_mode_says_who_may_write(mounted):
    # On /sys/kernel/mm/ksm root may chmod and chown every file, and after `chmod 666 run` an
    # unprivileged user can write it; a counter stays unwritable whatever its mode.
    with mounted("size=64m,allow_other") as m:
        run, sleep, counter = kpath(m, "run"), kpath(m, "sleep_millisecs"), kpath(m, "pages_sharing")
        write_as_nobody = lambda path, v: run_as(NOBODY, NOBODY, f"""
            def w():
                fd = os.open({path!r}, os.O_WRONLY)
                try: os.write(fd, b"{v}")
                finally: os.close(fd)
            print(errname(w))""")
        assert write_as_nobody(sleep, 33) == "EACCES"
        os.chmod(sleep, 0o666)
        assert stat.S_IMODE(os.stat(sleep).st_mode) == 0o666
        assert write_as_nobody(sleep, 33) == "OK" and kget(m, "sleep_millisecs") == "33\n"
        os.chmod(sleep, 0o644)
        assert write_as_nobody(sleep, 44) == "EACCES" and kget(m, "sleep_millisecs") == "33\n"
        os.chown(run, NOBODY, NOBODY)
        assert os.stat(run).st_uid == NOBODY
        assert write_as_nobody(run, 0) == "OK"
        os.chown(run, 0, 0)
        assert write_as_nobody(run, 0) == "EACCES"
        os.chmod(counter, 0o666)
        assert write_as_nobody(counter, 1) == "EACCES"
        with raises_errno(errno.EACCES):
            os.close(os.open(counter, os.O_WRONLY))
        os.chmod(counter, 0o444)
        os.chmod(os.path.join(m.path, "ksm"), 0o700)
        assert stat.S_IMODE(os.stat(os.path.join(m.path, "ksm")).st_mode) == 0o700
        os.chmod(os.path.join(m.path, "ksm"), 0o755)
        rc = subprocess.run(["chmod", "600", run], capture_output=True, text=True)
        assert rc.returncode == 0, rc.stderr
        assert stat.S_IMODE(os.stat(run).st_mode) == 0o600


def test_the_ksm_directory_refuses_create_unlink_rename_mkdir(k):
    ksm = os.path.join(k.path, "ksm")
    outside = os.path.join(k.path, "outside")
    write_file(outside, b"x")
    listing = sorted(os.listdir(ksm))
    try:
        attempts = {
            "create": lambda: os.close(os.open(os.path.join(ksm, "new"), os.O_CREAT | os.O_WRONLY, 0o644)),
            "mknod": lambda: os.mknod(os.path.join(ksm, "fifo"), 0o644 | stat.S_IFIFO),
            "symlink": lambda: os.symlink("run", os.path.join(ksm, "link")),
            "link": lambda: os.link(kpath(k, "run"), os.path.join(ksm, "run2")),
            "unlink": lambda: os.unlink(kpath(k, "run")),
            "rename": lambda: os.rename(kpath(k, "run"), os.path.join(ksm, "run2")),
            "rename-over": lambda: os.rename(kpath(k, "run"), kpath(k, "sleep_millisecs")),
            "rename-out": lambda: os.rename(kpath(k, "run"), os.path.join(k.path, "run")),
            "rename-in": lambda: os.rename(outside, os.path.join(ksm, "outside")),
            "mkdir": lambda: os.mkdir(os.path.join(ksm, "sub")),
        }
        got = {}
        for what, fn in attempts.items():
            try:
                fn()
                got[what] = "OK"
            except OSError as e:
                got[what] = E.get(e.errno, e.errno)
        assert {w: g for w, g in got.items() if g not in ("EPERM", "EACCES")} == {}
        assert sorted(os.listdir(ksm)) == listing
        assert stat.S_IMODE(os.stat(ksm).st_mode) == 0o755
        assert stat.S_IMODE(os.stat(kpath(k, "run")).st_mode) == 0o644
        assert stat.S_IMODE(os.stat(kpath(k, "pages_sharing")).st_mode) == 0o444
        assert os.stat(kpath(k, "run")).st_uid == 0
        assert os.path.exists(outside)
    finally:
        if os.path.exists(outside):
            os.unlink(outside)


# ---------------------------------------------------------------- while pages are merged

def _wait(pred, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_max_page_sharing_and_merge_across_nodes_are_EBUSY_while_pages_are_merged(mounted):
    with mounted("size=64m") as m:
        data = os.urandom(8 * PAGE)
        os.mkdir(os.path.join(m.path, "w"))
        for n in ("a", "b"):
            write_file(os.path.join(m.path, "w", n), data)
        kset(m, "pages_to_scan", 10000)
        kset(m, "sleep_millisecs", 0)
        kset(m, "run", 1)
        assert _wait(lambda: kget(m, "pages_sharing") == "8\n"), \
            f"never merged: pages_sharing {kget(m, 'pages_sharing')!r}"
        kset(m, "run", 0)  # merges are kept
        assert kget(m, "pages_shared") == "8\n"
        assert kwrite(m, "max_page_sharing", b"300") == -errno.EBUSY
        assert kwrite(m, "max_page_sharing", b"2") == -errno.EBUSY
        assert kwrite(m, "max_page_sharing", b"256") == 3, "the same value is accepted"
        assert kwrite(m, "max_page_sharing", b"1") == -errno.EINVAL, "parsing comes first"
        assert kwrite(m, "merge_across_nodes", b"0") == -errno.EBUSY
        assert kwrite(m, "merge_across_nodes", b"1\n") == 2
        assert kget(m, "max_page_sharing") == "256\n" and kget(m, "merge_across_nodes") == "1\n"
        kset(m, "run", 2)  # unmerge everything: nothing is shared any more
        assert kget(m, "pages_shared") == "0\n"
        assert kwrite(m, "max_page_sharing", b"300") == 3 and kget(m, "max_page_sharing") == "300\n"
        assert kwrite(m, "merge_across_nodes", b"0") == 1 and kget(m, "merge_across_nodes") == "0\n"
        assert read_cold(os.path.join(m.path, "w", "a")) == data


# ---------------------------------------------------------------- echo/cat end to end

def _cat(m, name):
    return subprocess.run(["cat", kpath(m, name)], check=True, capture_output=True,
                          text=True).stdout


def _echo(m, value, name):
    subprocess.run(["sh", "-c", f'echo {value} > "{kpath(m, name)}"'], check=True)


def test_two_identical_64_page_files_merge_to_64_shared_64_sharing_and_stay_correct(mounted):
    with mounted("size=256m") as m:
        work = os.path.join(m.path, "w")
        os.mkdir(work)
        data = os.urandom(64 * PAGE)  # 64 distinct pages, each present in both files
        a, b = os.path.join(work, "a"), os.path.join(work, "b")
        write_file(a, data)
        write_file(b, data)
        _echo(m, 10000, "pages_to_scan")
        _echo(m, 0, "sleep_millisecs")
        _echo(m, 1, "run")
        assert _wait(lambda: _cat(m, "pages_sharing") == "64\n"), _cat(m, "pages_sharing")
        assert _cat(m, "pages_shared") == "64\n"
        assert read_cold(a) == data and read_cold(b) == data

        fd = os.open(b, os.O_WRONLY)  # copy-on-write: only b may see this
        try:
            os.pwrite(fd, b"\xee" * 10, 5 * PAGE + 3)
            os.fsync(fd)
        finally:
            os.close(fd)
        assert read_cold(a) == data
        assert read_cold(b) == data[:5 * PAGE + 3] + b"\xee" * 10 + data[5 * PAGE + 13:]

        _echo(m, 2, "run")  # stop and unmerge everything, synchronously
        assert _cat(m, "pages_shared") == "0\n" and _cat(m, "pages_sharing") == "0\n"
        assert read_cold(a) == data
