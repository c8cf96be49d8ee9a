# The tools around a ksmfs mount (ksmfs-only): `ksmfs status` (plain and --json) agrees
# with the counter files, `ksm/metrics` is strict Prometheus text exposition whose values
# equal the counter files, `ksm/trace` streams a merge as it happens and its readers come and
# go without harming the daemon, and the ways of mounting: mount(8) through mount.fuse3,
# -o pidfile=, and a daemonized mount unmounted by fusermount3.

import json
import math
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

from fsops import FSTYPE, REPO_ROOT, is_mounted, ksmfs_bin, PAGE, daemon_memory, write_file

pytestmark = pytest.mark.ksmfs_only

# --- helpers ---------------------------------------------------------------------------


def ksm(m, name):
    with open(os.path.join(m.path, "ksm", name)) as f:
        return f.read().strip()


def set_ksm(m, name, value):
    with open(os.path.join(m.path, "ksm", name), "w") as f:
        f.write(f"{value}\n")


def wait_for(cond, timeout, what):
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def merge_and_settle(m, want_sharing):
    """Run the scanner fast until pages_sharing reaches want_sharing, stop it, and wait
    until the counters no longer move (the scanner may finish the batch it was in)."""
    set_ksm(m, "pages_to_scan", 5000)
    set_ksm(m, "sleep_millisecs", 0)
    set_ksm(m, "run", 1)
    wait_for(lambda: int(ksm(m, "pages_sharing")) >= want_sharing, 20, f"pages_sharing >= {want_sharing}")
    set_ksm(m, "run", 0)
    prev = None
    for _ in range(50):
        cur = (ksm(m, "pages_scanned"), ksm(m, "full_scans"), ksm(m, "pages_sharing"))
        if cur == prev:
            return
        prev = cur
        time.sleep(0.1)
    raise AssertionError(f"counters still moving 5s after run=0: {cur}")


def two_identical_files(m, pages=64, name="w"):
    d = os.path.join(m.path, name)
    os.mkdir(d)
    data = os.urandom(pages * PAGE)  # distinct pages: merging gives exactly `pages` sharing
    for f in ("a", "b"):
        write_file(os.path.join(d, f), data)
    return [os.path.join(d, f) for f in ("a", "b")]


def wait_for_mount(path, timeout=20):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if is_mounted(path):
            return True
        time.sleep(0.05)
    return False


def status(args, timeout=15):
    return subprocess.run([ksmfs_bin(), "status"] + args, capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL)


# --- ksmfs status ----------------------------------------------------------------------


def test_status_takes_any_path_inside_a_mount_and_says_when_a_path_is_in_none(mounted, tmp_path):
    with mounted("size=64m") as m:
        sub = os.path.join(m.path, "a", "b")
        os.makedirs(sub)
        with open(os.path.join(sub, "f"), "w") as f:
            f.write("x")
        for path in (sub, os.path.join(sub, "f"), m.path + "/ksm"):
            r = status([path])
            assert r.returncode == 0, r.stderr
            assert r.stdout.startswith(f"ksmfs {m.path}  ["), r.stdout
    r = status([str(tmp_path)])
    assert r.returncode == 1 and r.stderr == f"ksmfs: {tmp_path} is not in a ksmfs mount\n", r.stderr
    r = status([str(tmp_path / "missing")])
    assert r.returncode == 1 and r.stderr == f"ksmfs: {tmp_path}/missing: No such file or directory\n", r.stderr


def test_status_plain_shows_the_mount_its_counters_and_a_progress_bar(mounted):
    with mounted("size=64m") as m:
        two_identical_files(m)
        merge_and_settle(m, 64)
        r = status([m.path, "--interval", "0.2"])
        assert r.returncode == 0, r.stderr
        out = r.stdout
        first = out.splitlines()[0]
        assert first.startswith(f"ksmfs {m.path}  [stopped]"), out
        sharing = re.search(r"\bsharing (\d+)\b", out)
        assert sharing and sharing.group(1) == ksm(m, "pages_sharing") == "64", out
        shared = re.search(r"\bshared (\d+)\b", out)
        assert shared and shared.group(1) == ksm(m, "pages_shared"), out
        assert re.search(r"^  pass +#\d+ \[[#-]{10,}\] +\d+%", out, re.M), f"no progress bar:\n{out}"
        assert "dedup 2.00x" in out, out
        # without a mountpoint: every ksmfs mount, this one among them
        r = status(["--interval", "0.1"])
        assert r.returncode == 0, r.stderr
        assert f"ksmfs {m.path}  [" in r.stdout, r.stdout
        m.assert_alive()


def test_status_json_parses_and_matches_the_counter_files(mounted):
    with mounted("size=64m") as m:
        two_identical_files(m)
        merge_and_settle(m, 64)
        r = status([m.path, "--json", "--interval", "0.2"])
        assert r.returncode == 0, r.stderr
        data = json.loads(r.stdout)
        assert isinstance(data, list) and len(data) == 1, r.stdout
        s = data[0]
        assert s["mountpoint"] == m.path
        for name in ("pages_sharing", "pages_shared", "pages_unshared", "full_scans", "pages_scanned",
                     "general_profit", "cow_ksm", "ksm_zero_pages"):
            assert s[name] == int(ksm(m, name)), f"{name}: json {s[name]}, file {ksm(m, name)}"
        assert s["pages_sharing"] == 64
        assert s["tunable_run"] == 0 and s["tunable_pages_to_scan"] == 5000
        # every metric of ksm/metrics is a key (without the ksmfs_ prefix), plus derived keys
        _, samples, _ = parse_exposition(_read_metrics(m))
        # (series by FUSE operation are `name.op`; the histogram's buckets are left out)
        metric_keys = {name[len("ksmfs_"):] + ("." + dict(labels)["op"] if "op" in dict(labels) else "")
                       for name, labels in samples if not name.endswith("_bucket")}
        derived = {"scanned_per_second", "merged_per_second", "cow_per_second",
                   "scanner_cpu_percent", "dedup_ratio", "saved_bytes", "pass_progress",
                   "fuse_requests_per_second"}
        missing = (metric_keys | derived) - set(s)
        assert not missing, f"--json lacks {sorted(missing)}"
        for k in metric_keys | derived:
            assert isinstance(s[k], (int, float)) and not isinstance(s[k], bool), (k, s[k])
        assert s["logical_bytes"] == 128 * PAGE and s["physical_bytes"] == 64 * PAGE, s
        assert s["dedup_ratio"] == pytest.approx(2.0)
        assert s["saved_bytes"] == 64 * PAGE
        assert 0 <= s["pass_progress"] <= 1
        assert s["scanned_per_second"] == 0 and s["merged_per_second"] == 0, "scanner is stopped"


def test_status_without_any_ksmfs_mount_exits_1(tmp_path):
    """In a private mount namespace with every ksmfs mount detached (the real ones are not
    touched), `ksmfs status` finds nothing."""
    code = f"""
import json, subprocess, sys
with open("/proc/self/mounts") as f:
    paths = [l.split()[1].encode().decode("unicode_escape") for l in f if l.split()[2] == {FSTYPE!r}]
for p in paths:
    subprocess.run(["umount", "-l", p], check=True)
for args in ([], ["--json"]):
    r = subprocess.run([{ksmfs_bin()!r}, "status"] + args, capture_output=True, text=True, timeout=15)
    print(json.dumps([r.returncode, r.stdout, r.stderr]))
"""
    r = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c", code],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    results = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(results) == 2, r.stdout
    for rc, out, err in results:
        assert rc == 1, (rc, out, err)
        assert err.startswith("ksmfs: ") and err.count("\n") <= 1, err
        assert out in ("", "[]\n"), out


@pytest.mark.parametrize("kind", ["unmounted_dir", "proc", "missing"])
def test_status_of_a_path_that_is_not_a_ksmfs_mount_exits_1(tmp_path, kind):
    path = {"unmounted_dir": str(tmp_path), "proc": "/proc", "missing": str(tmp_path / "nope")}[kind]
    for args in ([path], [path, "--json"]):
        r = status(args)
        assert r.returncode == 1, (args, r.returncode, r.stdout, r.stderr)
        assert r.stderr.startswith("ksmfs: ") and r.stderr.count("\n") <= 1, r.stderr
        assert r.stdout == "", r.stdout


# --- ksm/metrics as Prometheus text exposition --------------------------------------------

_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"'
_LABEL_NC = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
_FLOAT = r"[+-]?(?:\d+(?:\.\d*)?(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?|Inf|NaN)"
_HELP_RE = re.compile(rf"# HELP ({_NAME}) ((?:[^\\\n]|\\[\\n])*)")
_TYPE_RE = re.compile(rf"# TYPE ({_NAME}) (counter|gauge|histogram)")
_SAMPLE_RE = re.compile(rf"(?P<name>{_NAME})(?:\{{(?P<labels>{_LABEL_NC}(?:,{_LABEL_NC})*,?)?\}})? "
                        rf"(?P<value>{_FLOAT})(?: -?\d+)?")


def _unescape(v):
    return re.sub(r"\\(.)", lambda g: {"n": "\n", "\\": "\\", '"': '"'}[g.group(1)], v)


def parse_exposition(text):
    """Strict parser for the Prometheus text format as ksmfs writes it: every line is
    `# HELP name text`, `# TYPE name counter|gauge|histogram` or `name{labels} value`; a
    metric's HELP and TYPE come once each, before its samples; a metric's samples are
    contiguous; a histogram's samples are name_bucket (with `le`), name_sum and name_count.
    Returns (types {name: type}, samples {(name, ((label, value), ...)): float}, helps)."""
    assert text.endswith("\n"), "the exposition must end with a newline"
    types, helps, samples = {}, {}, {}
    finished, current = set(), None
    for n, line in enumerate(text[:-1].split("\n"), 1):
        where = f"line {n}: {line!r}"
        if line.startswith("#"):
            mh, mt = _HELP_RE.fullmatch(line), _TYPE_RE.fullmatch(line)
            assert mh or mt, f"{where}: a comment must be '# HELP name text' or '# TYPE name counter|gauge'"
            name = (mh or mt).group(1)
            table = helps if mh else types
            assert name not in table, f"{where}: second {'HELP' if mh else 'TYPE'} for {name}"
            assert name not in finished and name != current, f"{where}: HELP/TYPE after {name}'s samples"
            table[name] = (mh or mt).group(2)
            continue
        ms = _SAMPLE_RE.fullmatch(line)
        assert ms, f"{where}: not `name{{labels}} value`"
        name = ms["name"]
        family = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and types.get(name[:-len(suffix)]) == "histogram":
                family = name[:-len(suffix)]
        assert family in helps and family in types, f"{where}: sample before its HELP and TYPE"
        assert types[family] != "histogram" or family != name, f"{where}: a histogram's sample needs a suffix"
        assert name.endswith("_bucket") == ("le=" in (ms["labels"] or "")), f"{where}: le belongs to buckets"
        if family != current:
            assert family not in finished, f"{where}: samples of {family} are not contiguous"
            if current:
                finished.add(current)
            current = family
        labels = tuple((k, _unescape(v)) for k, v in re.findall(_LABEL, ms["labels"] or ""))
        assert len({k for k, _ in labels}) == len(labels), f"{where}: repeated label"
        key = (name, labels)
        assert key not in samples, f"{where}: duplicate series"
        samples[key] = float(ms["value"])
    assert set(helps) == set(types), f"HELP without TYPE or the reverse: {set(helps) ^ set(types)}"
    return types, samples, helps


def _read_metrics(m):
    with open(os.path.join(m.path, "ksm", "metrics")) as f:
        return f.read()


def test_parser_is_strict():
    ok = '# HELP x_y A help.\n# TYPE x_y gauge\nx_y{a="1\\"q"} 1.5e3\n'
    types, samples, _ = parse_exposition(ok)
    assert samples == {("x_y", (("a", '1"q'),)): 1500.0} and types == {"x_y": "gauge"}
    for bad in ["x 1\n",                                        # no HELP/TYPE
                "# HELP x h\n# TYPE x gauge\nx 1",              # no final newline
                "# HELP x h\n# TYPE x gauge\nx one\n",          # not a float
                "# HELP x h\n# TYPE x gauge\nx 1_0\n",          # python float() would take it
                "# HELP x h\n# TYPE x gauge\n\nx 1\n",          # blank line
                "# HELP x h\n# TYPE x gaug\nx 1\n",             # bad type
                "# HELP 1x h\n# TYPE 1x gauge\n1x 1\n",         # bad name
                '# HELP x h\n# TYPE x gauge\nx{a="b} 1\n',      # bad label
                "# HELP x h\n# TYPE x gauge\nx 1\n# HELP y h\n# TYPE y gauge\ny 1\nx 2\n",
                "# HELP x h\n# TYPE x gauge\n# comment\nx 1\n"]:
        with pytest.raises(AssertionError):
            parse_exposition(bad)


KERNEL_COUNTERS = ["full_scans", "pages_scanned", "pages_skipped", "pages_shared", "pages_sharing",
                   "pages_unshared", "pages_volatile", "ksm_zero_pages", "stable_node_chains",
                   "stable_node_dups", "general_profit", "cow_ksm"]
TUNABLES = ["run", "pages_to_scan", "sleep_millisecs", "max_page_sharing", "use_zero_pages",
            "smart_scan", "merge_across_owners", "drop_merged_page_cache", "stable_node_chains_prune_millisecs",
            "advisor_max_cpu", "advisor_target_scan_time", "advisor_min_pages_to_scan",
            "advisor_max_pages_to_scan"]


def test_metrics_is_prometheus_text_and_equals_the_counter_files(mounted, tmp_path):
    with mounted("size=64m") as m:
        a, b = two_identical_files(m)
        merge_and_settle(m, 64)
        with open(b, "r+b") as f:  # one copy-on-write break, so cow_ksm is not 0
            f.write(b"x")
            f.flush()
            os.fsync(f.fileno())
        set_ksm(m, "pages_to_scan", 1234)  # non-default tunables: the metrics show live values
        set_ksm(m, "sleep_millisecs", 7)
        set_ksm(m, "advisor_max_cpu", 42)
        text = _read_metrics(m)
        types, samples, helps = parse_exposition(text)
        values = {}
        for (name, labels), v in samples.items():
            if name.startswith("ksmfs_fuse_request"):
                continue  # by operation, checked in the request-metrics test
            assert labels == (("mountpoint", m.path),), f"{name}: labels {labels}"
            values[name] = v
        assert all(h.strip() for h in helps.values())
        for name in KERNEL_COUNTERS:
            assert f"ksmfs_{name}" in values, f"ksmfs_{name} missing"
            assert values[f"ksmfs_{name}"] == int(ksm(m, name)), \
                f"ksmfs_{name} = {values[f'ksmfs_{name}']}, ksm/{name} = {ksm(m, name)}"
        for name in TUNABLES:
            assert values[f"ksmfs_tunable_{name}"] == int(ksm(m, name)), name
        assert values["ksmfs_tunable_pages_to_scan"] == 1234 and values["ksmfs_tunable_advisor_max_cpu"] == 42
        assert values["ksmfs_cow_ksm"] >= 1 and values["ksmfs_pages_sharing"] == 63
        for name in ("pass_pages_done", "pass_pages_total", "logical_bytes", "physical_bytes",
                     "daemon_resident_bytes", "capacity_bytes"):
            assert f"ksmfs_{name}" in values, f"ksmfs_{name} missing"
        assert values["ksmfs_logical_bytes"] == 128 * PAGE
        assert values["ksmfs_physical_bytes"] == 65 * PAGE  # 64 shared blocks + the private copy
        assert values["ksmfs_capacity_bytes"] == 64 << 20
        assert 0 <= values["ksmfs_pass_pages_done"] <= values["ksmfs_pass_pages_total"] <= 128
        resident = daemon_memory(m.pid)
        assert 0.5 * resident <= values["ksmfs_daemon_resident_bytes"] <= 2 * resident
        assert types["ksmfs_full_scans"] == "counter" and types["ksmfs_pages_sharing"] == "gauge"
        assert all(not math.isnan(v) for v in values.values())
        # read again: with the scanner stopped only the daemon's RSS may move
        again = parse_exposition(_read_metrics(m))[1]
        # (and the request counters: the page-cache probe's closes may still be arriving)
        moving = {k for k in samples | again if k[0] in ("ksmfs_daemon_resident_bytes", "ksmfs_page_cache_probe_requests_total")
                  or k[0].startswith("ksmfs_fuse_request")}
        assert {k: v for k, v in again.items() if k not in moving} == \
               {k: v for k, v in samples.items() if k not in moving}


def _requests(m):
    types, samples, _ = parse_exposition(_read_metrics(m))
    assert types["ksmfs_fuse_requests_total"] == "counter"
    assert types["ksmfs_fuse_request_seconds"] == "histogram"
    by = {}
    for (name, labels), v in samples.items():
        if name.startswith("ksmfs_fuse_request"):
            d = dict(labels)
            assert d["mountpoint"] == m.path and set(d) <= {"mountpoint", "op", "le"}, labels
            by[(name, d["op"], d.get("le"))] = v
    return by


def test_metrics_count_every_fuse_request_by_operation_with_a_latency_histogram(mounted):
    with mounted("size=64m") as m:
        before = _requests(m)
        for i in range(3):
            os.mkdir(os.path.join(m.path, f"d{i}"))
        write_file(os.path.join(m.path, "f"), b"x" * 100)
        for _ in range(5):
            os.close(os.open(os.path.join(m.path, "f"), os.O_RDONLY))
        after = _requests(m)
        count = lambda by, op: by.get(("ksmfs_fuse_requests_total", op, None), 0)
        assert count(after, "mkdir") - count(before, "mkdir") == 3
        assert count(after, "create") - count(before, "create") == 1
        assert count(after, "open") - count(before, "open") >= 5
        assert count(after, "flush") <= 1, "FLUSH is answered ENOSYS once, then never sent"
        for op in {k[1] for k in after if k[0] == "ksmfs_fuse_request_seconds_count"}:
            buckets = sorted(((float(le), v) for (n, o, le), v in after.items()
                              if n == "ksmfs_fuse_request_seconds_bucket" and o == op), key=lambda x: x[0])
            assert buckets and buckets[-1][0] == math.inf, op
            assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])), f"{op}: buckets not cumulative"
            n = after[("ksmfs_fuse_request_seconds_count", op, None)]
            assert buckets[-1][1] == n <= count(after, op), op
            assert 0 < after[("ksmfs_fuse_request_seconds_sum", op, None)] < 60 * n, op
        r = status([m.path, "--interval", "0.2"])
        assert r.returncode == 0, r.stderr
        line = [x for x in r.stdout.splitlines() if x.strip().startswith("requests")]
        assert line and re.search(r"requests +\d+/s .*total \d+", line[0]), r.stdout
        js = json.loads(status([m.path, "--json", "--interval", "0.2"]).stdout)[0]
        assert js["fuse_requests_total.mkdir"] == 3 and "fuse_requests_per_second" in js


def test_metrics_label_escapes_quote_and_backslash_in_the_mountpoint(base_dir):
    """The mountpoint label is the path; a `"` or `\\` in it must be escaped."""
    weird = os.path.join(base_dir, 'we"ird\\ dir')
    os.mkdir(weird)
    proc = subprocess.Popen([ksmfs_bin(), weird, "-f", "-o", "size=16m"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: is_mounted(weird, FSTYPE), 10, "the mount")
        with open(os.path.join(weird, "ksm", "metrics")) as f:
            text = f.read()
        _, samples, _ = parse_exposition(text)
        assert {labels[0] for _, labels in samples} == {("mountpoint", weird)}
        r = status([weird, "--json", "--interval", "0.1"])
        assert r.returncode == 0 and json.loads(r.stdout)[0]["mountpoint"] == weird, r
    finally:
        subprocess.run(["fusermount3", "-u", weird], capture_output=True)
        assert proc.wait(10) == 0
        os.rmdir(weird)


# --- ksm/trace ---------------------------------------------------------------------------

MERGE_RE = re.compile(r"^(\d+\.\d{6}) ksm_merge_one_page: kpfn=(\d+) ino=(\d+) page=(\d+) "
                      r"tree_ino=(\d+) tree_page=(\d+) err=(-?\d+)$")


class TraceReader:
    """`cat <mnt>/ksm/trace` in a child process; a thread collects its lines."""

    def __init__(self, m):
        self.proc = subprocess.Popen(["cat", os.path.join(m.path, "ksm", "trace")],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines = []
        self.thread = threading.Thread(target=self._pump, daemon=True)
        self.thread.start()
        trace = os.path.join(m.path, "ksm", "trace")
        wait_for(lambda: self._has_open(trace), 5, "the reader to open ksm/trace")

    def _has_open(self, path):
        fds = f"/proc/{self.proc.pid}/fd"
        try:
            return any(os.readlink(os.path.join(fds, fd)) == path for fd in os.listdir(fds))
        except FileNotFoundError:
            return False

    def _pump(self):
        for line in self.proc.stdout:
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def wait_line(self, regex, timeout):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for t, line in list(self.lines):
                mt = regex.match(line)
                if mt:
                    return t, mt
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        raise AssertionError(f"no line matching {regex.pattern} within {timeout}s; got "
                             f"{[l for _, l in self.lines[:20]]} (reader rc {self.proc.poll()})")

    def close(self, sig=signal.SIGTERM, timeout=5):
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"trace reader still blocked {timeout}s after signal {sig} "
                                 f"(a FUSE read the daemon never answers or interrupts)")
        self.thread.join(5)
        return rc


def test_trace_shows_a_merge_as_it_happens(mounted):
    with mounted("size=64m") as m:
        reader = TraceReader(m)
        try:
            time.sleep(0.3)  # the reader is in place before anything happens
            a, b = two_identical_files(m, pages=16)
            inos = {os.stat(a).st_ino, os.stat(b).st_ino}
            set_ksm(m, "pages_to_scan", 1000)
            t_run = time.monotonic()
            set_ksm(m, "run", 1)
            t_line, mt = reader.wait_line(MERGE_RE, 10)
            assert t_line - t_run < 10
            assert mt.group(7) == "0", mt.group(0)
            assert {int(mt.group(3)), int(mt.group(5))} == inos, (mt.group(0), inos)
            assert 0 <= int(mt.group(4)) < 16 and mt.group(4) == mt.group(6)  # same page of each copy
            wait_for(lambda: int(ksm(m, "pages_sharing")) == 16, 10, "pages_sharing 16")
            set_ksm(m, "run", 0)
            time.sleep(0.3)
            merges = [l for _, l in reader.lines if MERGE_RE.match(l)]
            assert len(merges) == 16, merges
            assert any(" ksm_start_scan: " in l for _, l in reader.lines)
            stamps = [float(l.split()[0]) for _, l in reader.lines]
            assert stamps == sorted(stamps), "timestamps go backwards"
        finally:
            rc = reader.close()
        assert rc in (0, -signal.SIGTERM), rc
        m.assert_alive()


def test_two_trace_readers_each_see_every_merge(mounted):
    with mounted("size=64m") as m:
        readers = [TraceReader(m), TraceReader(m)]
        try:
            time.sleep(0.3)
            two_identical_files(m, pages=16)
            set_ksm(m, "pages_to_scan", 1000)
            set_ksm(m, "run", 1)
            wait_for(lambda: int(ksm(m, "pages_sharing")) == 16, 10, "pages_sharing 16")
            set_ksm(m, "run", 0)
            for r in readers:
                wait_for(lambda: sum(1 for _, l in r.lines if MERGE_RE.match(l)) >= 16, 5,
                         "16 ksm_merge_one_page lines in each reader")
            a, b = ([l for _, l in r.lines if MERGE_RE.match(l)] for r in readers)
            assert a == b and len(a) == 16
        finally:
            for r in readers:
                r.close()
        m.assert_alive()


def test_a_stalled_trace_reader_does_not_stall_merging(mounted):
    """A reader that opens the trace, reads one byte and then stops reading must not hold
    up the scanner: events are buffered or dropped, never waited for."""
    with mounted("size=512m") as m:
        stalled = subprocess.Popen(
            [sys.executable, "-c", "import sys, time; f = open(sys.argv[1], 'rb', buffering=0); "
             "f.read(1); time.sleep(60)", os.path.join(m.path, "ksm", "trace")])
        try:
            time.sleep(0.3)
            two_identical_files(m, pages=32768)  # 2 x 128 MiB: 32768 merge events
            t0 = time.monotonic()
            merge_and_settle(m, 32768)
            assert time.monotonic() - t0 < 20
            assert ksm(m, "pages_sharing") == "32768"
        finally:
            stalled.kill()
            stalled.wait(10)
        m.assert_alive()


def test_closing_a_blocked_trace_reader_leaves_the_daemon_fine(mounted):
    with mounted("size=64m") as m:
        reader = TraceReader(m)
        time.sleep(0.5)  # scanner stopped: the read blocks, nothing to say
        assert reader.proc.poll() is None, "with nothing happening the trace read should block"
        reader.close(signal.SIGTERM)
        reader2 = TraceReader(m)  # and again, with SIGKILL
        time.sleep(0.3)
        reader2.close(signal.SIGKILL)
        m.assert_alive()
        assert ksm(m, "run") == "0"
        # the daemon still serves: a file, the counters, and a new reader gets events
        a, b = two_identical_files(m, pages=4)
        reader3 = TraceReader(m)
        try:
            time.sleep(0.2)
            set_ksm(m, "run", 1)
            reader3.wait_line(MERGE_RE, 10)
        finally:
            set_ksm(m, "run", 0)
            reader3.close()
        with open(a, "rb") as f:
            assert len(f.read()) == 4 * PAGE
        m.assert_alive()


def test_unmount_with_sigterm_while_a_trace_reader_is_blocked(mounted):
    with mounted("size=64m") as m:
        reader = TraceReader(m)
        time.sleep(0.5)
        assert reader.proc.poll() is None
        code = m.stop(signal.SIGTERM)
        assert code == 0, f"daemon exit code {code}\n{m.log()}"
        assert not is_mounted(m.path)
        try:
            reader.proc.wait(5)
        except subprocess.TimeoutExpired:
            reader.close(signal.SIGKILL)
            raise AssertionError("the trace reader was left blocked after the daemon exited")
        reader.thread.join(5)


# --- ways of mounting --------------------------------------------------------------------


def _wait_gone(pid, timeout=10):
    deadline = time.monotonic() + timeout
    while os.path.exists(f"/proc/{pid}"):
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    return  # exited; a zombie waiting for a parent that is not us
        except FileNotFoundError:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"process {pid} still running {timeout}s after unmount")
        time.sleep(0.05)


def _daemon_pid_from(pidfile, mnt):
    with open(pidfile) as f:
        text = f.read()
    assert re.fullmatch(r"\d+\n?", text), f"pidfile content {text!r}"
    pid = int(text)
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = f.read().split(b"\0")
    assert os.path.realpath(f"/proc/{pid}/exe") == os.path.realpath(ksmfs_bin()), argv
    assert os.fsencode(mnt) in argv, argv
    return pid


_MOUNT8_SCRIPT = r"""
import os, subprocess, sys, time
bindir, mnt, pidfile, binary = sys.argv[1:5]
# /bin/sh's default PATH: mount.fuse3 runs `ksmfs` through /bin/sh with no PATH set
sh_path = subprocess.run(["env", "-i", "/bin/sh", "-c", 'echo "$PATH"'], capture_output=True,
                         text=True, check=True).stdout.strip()
first = next(d for d in sh_path.split(":") if os.path.isdir(d))
subprocess.run(["mount", "--bind", bindir, first], check=True)
env = {**os.environ, "PATH": bindir + ":" + os.environ.get("PATH", "")}
r = subprocess.run(["mount", "-t", "fuse.ksmfs", "none", mnt, "-o", "size=64m,pidfile=" + pidfile],
                   capture_output=True, text=True, timeout=20, env=env)
assert r.returncode == 0, "mount: " + r.stderr
try:
    with open("/proc/self/mounts") as f:
        types = [l.split()[2] for l in f if l.split()[1] == mnt]
    assert types == ["fuse.ksmfs"], types
    pid = int(open(pidfile).read())
    exe = os.path.realpath(f"/proc/{pid}/exe")
    assert exe == os.path.realpath(binary), f"mount(8) ran {exe}, not {binary}"
    with open(os.path.join(mnt, "f"), "w") as f:
        f.write("hello")
    with open(os.path.join(mnt, "ksm", "metrics")) as f:
        want = 'ksmfs_capacity_bytes{mountpoint="%s"} %d\n' % (mnt, 64 << 20)
        assert want in f.read(), "capacity is not size=64m"
finally:
    r = subprocess.run(["umount", mnt], capture_output=True, text=True, timeout=20)
assert r.returncode == 0, "umount: " + r.stderr
for _ in range(100):
    if not os.path.exists(pidfile) and not os.path.exists(f"/proc/{pid}"):
        break
    time.sleep(0.05)
assert not os.path.exists(pidfile), "pidfile left behind after umount"
assert not os.path.exists(f"/proc/{pid}"), "daemon still running after umount"
print("OK")
"""


def test_mount_t_fuse_ksmfs_through_a_PATH_symlink(base_dir, tmp_path):
    """`mount -t fuse.ksmfs none MNT -o size=64m` runs mount.fuse3, which runs `ksmfs` found
    through /bin/sh's default PATH (mount(8) drops the caller's PATH from the helper's
    environment, so a PATH prefix alone is not enough). In a private mount namespace a temp
    dir holding a `ksmfs` symlink to the binary under test is bind-mounted over the first
    directory of that PATH: the real system is not touched, `make install` not needed."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    os.symlink(os.path.realpath(ksmfs_bin()), bindir / "ksmfs")
    mnt = os.path.join(base_dir, "via-mount8")
    os.mkdir(mnt)
    try:
        r = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable, "-c",
                            _MOUNT8_SCRIPT, str(bindir), mnt, str(tmp_path / "ksmfs.pid"), ksmfs_bin()],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0 and r.stdout.strip() == "OK", r.stdout + r.stderr
    finally:
        os.rmdir(mnt)


def test_the_man_page_names_every_mount_option_and_subcommand_of_the_help():
    r = subprocess.run([ksmfs_bin(), "--help"], capture_output=True, text=True)
    assert r.returncode == 0
    section = r.stdout.split("Mount options (-o, comma separated):")[1].split("\n\n")[0]
    options = [line.split()[0] for line in section.splitlines() if line.startswith("  ") and not line.startswith("   ")]
    assert len(options) >= 12, section
    with open(os.path.join(REPO_ROOT, "docs", "ksmfs.1")) as f:
        page = f.read().replace("\\-", "-").replace("\\fB", "").replace("\\fR", "").replace("\\fI", "")
    for option in options:
        for word in option.rstrip(",").split(","):
            name = word.split("=")[0].split("|")[0]
            assert name in page, f"docs/ksmfs.1 does not describe -o {name}"
    assert "ksmfs status" in page and "remount" in page


def test_make_install_into_a_prefix_writes_only_there_and_its_helper_mounts(base_dir, tmp_path):
    """`make install PREFIX=DIR` creates DIR/bin and DIR/sbin, puts ksmfs and the mount helper
    mount.fuse.ksmfs there and nothing elsewhere; the helper (what mount(8) runs for
    -t fuse.ksmfs) mounts with a PATH that does not have ksmfs."""
    prefix = tmp_path / "prefix"
    system_helper = "/usr/sbin/mount.fuse.ksmfs"
    had_helper = os.path.exists(system_helper)
    r = subprocess.run(["make", "-s", "install", f"PREFIX={prefix}"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert os.access(prefix / "bin" / "ksmfs", os.X_OK)
    helper = prefix / "sbin" / "mount.fuse.ksmfs"
    assert os.access(helper, os.X_OK)
    assert sorted(p.name for p in prefix.iterdir()) == ["bin", "sbin", "share"]
    page = subprocess.run(["man", "-l", str(prefix / "share" / "man" / "man1" / "ksmfs.1")], capture_output=True,
                          text=True, env={**os.environ, "MANWIDTH": "80", "MANPAGER": "cat", "PAGER": "cat"})
    assert page.returncode == 0 and "SYNOPSIS" in page.stdout and "MOUNT OPTIONS" in page.stdout, page.stderr
    assert os.path.exists(system_helper) == had_helper, "make install wrote outside PREFIX"
    mnt = os.path.join(base_dir, "via-helper")
    os.mkdir(mnt)
    try:
        r = subprocess.run([str(helper), "none", mnt, "-o", "size=64m", "-t", "fuse.ksmfs"], capture_output=True, text=True,
                           timeout=60, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
        assert r.returncode == 0, r.stdout + r.stderr
        assert wait_for_mount(mnt), "the helper did not mount"
        with open(os.path.join(mnt, "f"), "w") as f:
            f.write("via mount.fuse.ksmfs")
    finally:
        subprocess.run(["fusermount3", "-u", mnt], capture_output=True)
        time.sleep(0.3)
        os.rmdir(mnt)

def test_pidfile_of_a_foreground_mount_is_its_pid_and_goes_at_unmount(mounted, tmp_path):
    pidfile = str(tmp_path / "fg.pid")
    with mounted(f"size=64m,pidfile={pidfile}") as m:
        assert _daemon_pid_from(pidfile, m.path) == m.pid
    assert not os.path.exists(pidfile), "pidfile left behind after unmount"


def test_pidfile_goes_when_sigterm_unmounts(mounted, tmp_path):
    pidfile = tmp_path / "term.pid"
    pidfile.write_text("99999\n")  # a stale file from an earlier run is replaced
    with mounted(f"size=64m,pidfile={pidfile}") as m:
        assert _daemon_pid_from(str(pidfile), m.path) == m.pid
        assert m.stop(signal.SIGTERM) == 0
    assert not pidfile.exists(), "pidfile left behind after SIGTERM"


def test_daemonized_mount_unmounts_with_fusermount3(base_dir, tmp_path):
    mnt = os.path.join(base_dir, "daemonized")
    os.mkdir(mnt)
    pidfile = str(tmp_path / "bg.pid")
    log = str(tmp_path / "ksmfs.log")
    try:
        t0 = time.monotonic()
        r = subprocess.run([ksmfs_bin(), mnt, "-o", f"size=64m,pidfile={pidfile},log={log}"],
                           capture_output=True, text=True, timeout=20, stdin=subprocess.DEVNULL)
        assert r.returncode == 0, r.stderr
        assert time.monotonic() - t0 < 10
        assert is_mounted(mnt, FSTYPE), "the mount must be there when `ksmfs MNT` returns"
        pid = _daemon_pid_from(pidfile, mnt)
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # fields after the command name: state, ppid, pgrp, session
        assert int(fields[1]) != os.getpid(), "not daemonized: its parent is the caller"
        assert int(fields[3]) == pid, "a daemon leads its own session (setsid)"
        write_file(os.path.join(mnt, "f"), b"x" * PAGE * 2)
        with open(os.path.join(mnt, "ksm", "run"), "w") as f:  # unmount with the scanner running
            f.write("1\n")
        r = subprocess.run(["fusermount3", "-u", mnt], capture_output=True, text=True, timeout=20)
        assert r.returncode == 0, r.stderr
        assert not is_mounted(mnt)
        _wait_gone(pid)
        assert not os.path.exists(pidfile), "pidfile left behind after unmount"
        with open(log) as f:
            text = f.read()
        assert f"mounted at {mnt}" in text and f"unmounted {mnt}" in text, text
    finally:
        if is_mounted(mnt):
            subprocess.run(["fusermount3", "-u", "-z", mnt], capture_output=True)
        os.rmdir(mnt)


def test_bench_io_runs_ksmfs_the_reference_filesystem_and_tmpfs_side_by_side():
    # `ksmfs-bench io` mounts ksmfs, the minimal C libfuse filesystem issue 2's targets are
    # stated against (served by the bench itself) and tmpfs, runs every case on each, prints
    # min/median/max per filesystem and the three ratios, and leaves nothing mounted.
    bench = os.path.join(REPO_ROOT, ".build", "release", "ksmfs-bench")
    r = subprocess.run([bench, "io", "--mib", "16", "--repetitions", "2", "--files", "50"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("| ") and not line.startswith("| test")]
    names = [row.strip("|").split("|")[0].strip() for row in rows]
    assert names == ["seq write 1 MiB", "seq read 1 MiB", "seq write 4 KiB", "seq read 4 KiB",
                     "mmap read (cold cache)", "mmap read (warm cache)", "mmap read (hot file)",
                     "create+stat+unlink"], r.stdout
    for row in rows:
        cells = [c.strip() for c in row.strip().strip("|").split("|")][2:]
        assert len(cells) == 6, row
        for cell in cells:
            low, mid, high = (float(x) for x in cell.split(" / "))
            assert 0 < low <= mid <= high, row
    with open("/proc/mounts") as f:
        assert "ksmfs-bench-" not in f.read()


def test_bench_memory_reports_what_copies_cost_the_machine_on_tmpfs_and_ksmfs(tmp_path):
    # `ksmfs-bench memory` writes N copies with write() on tmpfs and ksmfs, merges them, and
    # reports machine-level growth per scenario. The page-cache counters are exact, so the
    # figures that must hold are checked on them: tmpfs holds N copies in Shmem; merged ksmfs
    # files nobody uses cost one copy (the arena) and no page cache; N processes mapping their
    # copies map N copies on both.
    bench = os.path.join(REPO_ROOT, ".build", "release", "ksmfs-bench")
    out = tmp_path / "memory.json"
    r = subprocess.run([bench, "memory", "--mib", "16", "--copies", "4", "--repetitions", "1",
                        "--systems", "tmpfs,ksmfs,ksmfs-share", "--settle", "1", "--json", str(out)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    for scenario in ("(a) written, merged, unused", "(b) N processes read() their copy",
                     "(c) N processes mmap their copy", "(d) as (c), chattr +i"):
        for system in ("tmpfs", "ksmfs"):
            assert re.search(rf"^\| {re.escape(scenario)} +\| {system} +\|", r.stdout, re.M), (scenario, system, r.stdout)
    samples = {(s["system"], s["scenario"]): s for s in json.loads(out.read_text())["samples"]}
    unique = 16 * 1024
    ratio = lambda system, scenario, key: samples[(system, scenario)][key] / unique
    assert 3.8 <= ratio("tmpfs", "a", "shmem_kib") <= 4.3
    assert ratio("ksmfs", "a", "cached_kib") <= 1.5, samples[("ksmfs", "a")]
    assert 0.9 <= ratio("ksmfs", "a", "shmem_kib") <= 1.2, samples[("ksmfs", "a")]
    assert 3.8 <= ratio("tmpfs", "c", "mapped_kib") <= 4.3, samples[("tmpfs", "c")]
    # ksmfs: the copies, plus what the daemon has mapped of its arena (at most 32 MiB).
    assert 3.8 <= ratio("ksmfs", "c", "mapped_kib") <= 4.3 + 2, samples[("ksmfs", "c")]
    # share_immutable: the 4 immutable copies in use hold one page cache (plus the arena's copy),
    # where they hold 4 without it (16 MiB files: a few MiB of other cache are noise here).
    assert ratio("ksmfs", "d", "cached_kib") >= 4.5, samples[("ksmfs", "d")]
    assert 1.8 <= ratio("ksmfs-share", "d", "cached_kib") <= ratio("ksmfs", "d", "cached_kib") - 1.8, \
        (samples[("ksmfs-share", "d")], samples[("ksmfs", "d")])
    assert "MemTotal-MemFree growth, median" in r.stdout
    with open("/proc/mounts") as f:
        assert "ksmfs-bench-" not in f.read()


def test_bench_tree_runs_real_tools_on_tmpfs_the_reference_and_ksmfs(tmp_path):
    # `ksmfs-bench tree` unpacks a tarball (here a seeded synthetic tree of 400 entries, every
    # 50th a symlink) on each system, copies, walks, lists, reads and removes it with the real
    # tools, and reports times, ratios, requests per file and CPU per request for both FUSE
    # daemons (the reference counts its own requests).
    bench = os.path.join(REPO_ROOT, ".build", "release", "ksmfs-bench")
    r = subprocess.run([bench, "tree", "--synthetic", "400", "--repetitions", "1", "--tarball", str(tmp_path / "tree.tar")],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "ksmfs-bench tree: 392 files" in r.stdout, r.stdout
    rows = [[c.strip() for c in line.strip().strip("|").split("|")] for line in r.stdout.splitlines()
            if line.startswith("| ") and not line.startswith("| step")]
    assert [row[0] for row in rows] == ["tar x", "cp -a", "find -printf %s", "ls -lR", "read all (cold)", "rm -rf"], r.stdout
    for row in rows:
        for cell in row[1:6]:
            low, mid, high = (float(x) for x in cell.split(" / "))
            assert 0 <= low <= mid <= high and high > 0 or cell == row[1], row
    tar = rows[0]
    # reference req/file, CPU, ksmfs req/file, CPU: an unpack costs several requests a file.
    assert float(tar[6]) >= 4 and float(tar[8]) >= 4, tar
    assert re.search(r"^ksmfs, tar x: .*create 1\.00", r.stdout, re.M), r.stdout
    assert re.search(r"^reference, tar x: .*create 1\.00", r.stdout, re.M), r.stdout
    assert re.search(r"^ksmfs, rm -rf: .*unlink 2\.0", r.stdout, re.M), r.stdout  # both copies
    with open("/proc/mounts") as f:
        assert "ksmfs-bench-" not in f.read()


def test_bench_memory_small_files_cost_the_daemon_about_a_kilobyte_each_once_merged():
    # 2,000 identical 8 KiB files: the daemon holds their 8 KiB each until they merge, then
    # its per-file metadata (inode, page map, scan items, directory entry). A page map sized
    # for large files (8 KiB per file) would fail the bound.
    bench = os.path.join(REPO_ROOT, ".build", "release", "ksmfs-bench")
    r = subprocess.run([bench, "memory", "--small-files", "2000", "--repetitions", "1", "--settle", "1"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    rows = {tuple(c.strip() for c in line.strip("|").split("|")[:2]): [c.strip() for c in line.strip("|").split("|")[2:]]
            for line in r.stdout.splitlines() if line.startswith("| ") and not line.startswith("| system")}
    written, merged = int(rows[("ksmfs", "written")][1]), int(rows[("ksmfs", "merged")][1])
    assert written >= 8192, r.stdout
    assert merged <= 2048, f"{merged} bytes of daemon memory per merged small file\n{r.stdout}"
    with open("/proc/mounts") as f:
        assert "ksmfs-bench-" not in f.read()


def test_bench_compare_reports_machine_memory_beside_daemon_memory_and_restores_the_kernel(tmp_path):
    # A small `ksmfs-bench compare` (dup16, 4096 pages, one repetition): both sides converge to
    # the same counters, the table has the machine-level row (MemTotal - MemFree released) next
    # to the helper's and the daemon's memory, the JSON has the machine figures, and every
    # kernel KSM tunable reads as before.
    with open("/sys/kernel/mm/ksm/run") as f:
        if f.read().strip() != "0":
            pytest.skip("the kernel's KSM is in use on this machine")
    bench = os.path.join(REPO_ROOT, ".build", "release", "ksmfs-bench")
    out, svg = tmp_path / "c.json", tmp_path / "c.svg"
    r = subprocess.run([bench, "compare", "--pages", "4096", "--patterns", "dup16", "--repetitions", "1",
                        "--files", "4", "--latency-samples", "20", "--json", str(out), "--svg", str(svg)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "machine memory released (MemTotal - MemFree)" in r.stdout, r.stdout
    assert "MISMATCH" not in r.stdout, r.stdout
    assert "kernel KSM restored" in r.stdout, r.stdout
    data = json.loads(out.read_text())
    text = json.dumps(data)
    assert "machine_used_before" in text and "machine_used_after" in text
    with open("/sys/kernel/mm/ksm/run") as f:
        assert f.read().strip() == "0"
