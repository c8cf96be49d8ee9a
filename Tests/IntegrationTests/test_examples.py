# Runs every example under mount-examples/ (ksmfs-only): each <dir>/demo.sh and
# quickstart.sh must exit 0 within its timeout. The demos check what they show themselves
# (pages_sharing, RSS, dedup ratio, opt-out counters, ...) and exit non-zero otherwise; here
# we also check that they print their PASS line and leave no mount and no temp files behind,
# and that the ksmtuned demo never changes the kernel's own KSM (it only dry-runs there).

import os
import signal
import subprocess

import pytest

from fsops import REPO_ROOT, ksmfs_bin

pytestmark = pytest.mark.ksmfs_only

EXAMPLES = os.path.join(REPO_ROOT, "mount-examples")
DEMOS = sorted(d for d in os.listdir(EXAMPLES) if os.path.isfile(os.path.join(EXAMPLES, d, "demo.sh")))
TIMEOUT_S = 120
KERNEL_KSM = "/sys/kernel/mm/ksm"


def _kernel_ksm_state():
    if not os.path.isdir(KERNEL_KSM):
        return None
    out = {}
    for name in ("run", "pages_to_scan", "sleep_millisecs"):
        with open(os.path.join(KERNEL_KSM, name)) as f:
            out[name] = f.read().strip()
    return out


def _mounts_under(path):
    with open("/proc/mounts") as f:
        return [line.split()[1] for line in f
                if line.split()[1].encode().decode("unicode_escape").startswith(path)]


def _run(cmd, tmp_path, check_kernel_ksm=False):
    """Run an example with TMPDIR=tmp_path; with check_kernel_ksm, the kernel's KSM settings
    must be the same afterwards (meaningful only while nothing else, such as
    test_ksm_kernel_diff.py in a parallel run, writes to /sys/kernel/mm/ksm)."""
    tmp = str(tmp_path)
    kernel_before = _kernel_ksm_state()
    # its own process group, so that a timeout also ends the demo's children (workers...)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd="/",
                            start_new_session=True,
                            env={**os.environ, "KSMFS_BIN": ksmfs_bin(), "TMPDIR": tmp,
                                 "PYTHONDONTWRITEBYTECODE": "1"})
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
        r = subprocess.CompletedProcess(cmd, proc.returncode, out, err)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGTERM)  # the trap unmounts
        try:
            out, _ = proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
        raise AssertionError(f"{cmd[-1]} still running after {TIMEOUT_S}s\n--- stdout ---\n{out}")
    finally:
        leaked = _mounts_under(tmp)
        for path in leaked:  # don't leave a mount behind for the next test
            subprocess.run(["umount", "-l", path], capture_output=True)
    assert r.returncode == 0, (f"{' '.join(cmd)} exited {r.returncode}\n--- stdout ---\n{r.stdout}"
                               f"--- stderr ---\n{r.stderr}")
    assert not leaked, f"left mounted: {leaked}"
    if check_kernel_ksm:
        assert _kernel_ksm_state() == kernel_before, "the kernel's KSM settings changed"
    return r


@pytest.mark.parametrize("demo", DEMOS)
def test_example_demo_exits_0(demo, tmp_path):
    r = _run(["bash", os.path.join(EXAMPLES, demo, "demo.sh")], tmp_path,
             check_kernel_ksm=(demo == "ksmtuned"))  # the only one that looks at the kernel's KSM
    assert r.stdout.rstrip().splitlines()[-1].startswith("PASS: "), r.stdout
    assert os.listdir(tmp_path) == [], f"temp files left behind: {os.listdir(tmp_path)}"


def test_every_example_has_a_readme_and_is_listed():
    with open(os.path.join(EXAMPLES, "README.md")) as f:
        index = f.read()
    for demo in DEMOS:
        assert os.path.isfile(os.path.join(EXAMPLES, demo, "README.md")), f"{demo}/README.md missing"
        assert os.access(os.path.join(EXAMPLES, demo, "demo.sh"), os.X_OK), f"{demo}/demo.sh not executable"
        assert f"]({demo}/)" in index, f"{demo} not listed in mount-examples/README.md"
    assert len(DEMOS) >= 6, DEMOS


def test_quickstart_exits_0(tmp_path):
    mnt = tmp_path / "mnt"
    r = _run(["bash", os.path.join(EXAMPLES, "quickstart.sh"), str(mnt)], tmp_path)
    assert "mmap read/write ok, b.img unchanged" in r.stdout, r.stdout


def test_ksmtuned_rejects_a_directory_without_ksm_files(tmp_path):
    r = subprocess.run(["bash", os.path.join(EXAMPLES, "ksmtuned", "ksmtuned.sh"), str(tmp_path), "--once"],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 2 and "not a KSM control directory" in r.stderr, (r.returncode, r.stderr)


@pytest.mark.skipif(not os.path.isdir(KERNEL_KSM), reason="no /sys/kernel/mm/ksm")
def test_ksmtuned_dry_run_on_the_kernel_writes_nothing(tmp_path):
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 16777216 kB\nMemAvailable: 1048576 kB\n")  # tight: would start
    before = _kernel_ksm_state()
    r = subprocess.run(["bash", os.path.join(EXAMPLES, "ksmtuned", "ksmtuned.sh"), KERNEL_KSM,
                        "--once", "--dry-run"], capture_output=True, text=True, timeout=10,
                       env={**os.environ, "KSMTUNED_MEMINFO": str(meminfo)})
    assert r.returncode == 0, r.stderr
    assert _kernel_ksm_state() == before
    want_np = min(1250, max(64, int(before["pages_to_scan"]) + 300))
    if before["run"] == "0":  # (run=2, an unmerge someone asked for, is left alone)
        assert f"would write: echo 1 > {KERNEL_KSM}/run" in r.stdout, r.stdout
    else:
        assert f"> {KERNEL_KSM}/run" not in r.stdout, r.stdout
    if str(want_np) != before["pages_to_scan"]:
        assert f"would write: echo {want_np} > {KERNEL_KSM}/pages_to_scan" in r.stdout, r.stdout


def test_every_link_of_the_docs_points_inside_the_repository():
    # A clone has no ../shared: the README and the docs link only files of their own tree, and
    # the /ksm reference names every file a mount's ksm directory has.
    import re
    docs = [os.path.join(REPO_ROOT, "README.md")] + [
        os.path.join(root, f) for root, _, files in os.walk(os.path.join(REPO_ROOT, "docs")) for f in files if f.endswith(".md")]
    docs += [os.path.join(EXAMPLES, d, "README.md") for d in os.listdir(EXAMPLES) if os.path.isfile(os.path.join(EXAMPLES, d, "README.md"))]
    for doc in docs:
        with open(doc) as f:
            text = f.read()
        for target in re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text):
            if re.match(r"[a-z]+://", target):
                continue
            path = os.path.normpath(os.path.join(os.path.dirname(doc), target))
            assert path.startswith(REPO_ROOT + os.sep), f"{doc}: link {target} leaves the repository"
            assert os.path.exists(path), f"{doc}: link {target} is dead"
    with open(os.path.join(REPO_ROOT, "docs", "ksm-reference.md")) as f:
        reference = f.read()
    with open(os.path.join(REPO_ROOT, "Sources", "KSMFS", "ControlParser.swift")) as f:
        kernel_files = re.findall(r'\("([a-z_]+)", 0o[46]44, (?:true|false)\)', f.read())
    assert len(kernel_files) == 24
    for name in kernel_files + ["cow_ksm", "merge_across_owners", "drop_merged_page_cache", "metrics", "trace"]:
        assert f"`{name}`" in reference, f"docs/ksm-reference.md does not describe {name}"


def test_debians_ksmtuned_drives_ksmfs_through_a_bind_mount(mounted, tmp_path):
    # Debian's ksmtuned hardcodes /sys/kernel/mm/ksm and /proc/meminfo. In a private mount
    # namespace, MNT/ksm bind-mounted over the first (and a meminfo of a 16 GiB machine with
    # 1 MiB free over the second) makes the unmodified script drive ksmfs: it starts merging
    # with its boosts of 300 pages and its sleep for 16 GiB. The kernel's KSM is never touched.
    script = os.path.join(REPO_ROOT, ".build", "deps", "ksmtuned", "usr", "sbin", "ksmtuned")
    assert os.path.isfile(script), f"{script} missing: `make deps` extracts Debian's ksmtuned there"
    before = _kernel_ksm_state()
    with mounted("size=64m") as m:
        meminfo = tmp_path / "meminfo"
        meminfo.write_text("MemTotal:       16777216 kB\nMemFree:            1024 kB\nBuffers:               0 kB\nCached:                0 kB\n")
        pidfile = tmp_path / "ksmtuned.pid"
        code = (f"mount --bind {m.path}/ksm /sys/kernel/mm/ksm && mount --bind {meminfo} /proc/meminfo && "
                f"KSM_MONITOR_INTERVAL=1 PIDFILE={pidfile} bash {script} && sleep 3 && "
                f"kill $(cat {pidfile}) && sleep 1.2")
        r = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", code],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        values = {n: open(os.path.join(m.path, "ksm", n)).read().strip() for n in ("run", "pages_to_scan", "sleep_millisecs")}
        # One boost of 300 per round (a round a second here), at most KSM_NPAGES_MAX 1250.
        assert values["run"] == "1" and values["sleep_millisecs"] == "10", values
        assert values["pages_to_scan"] in ("300", "600", "900", "1200", "1250"), values
    assert _kernel_ksm_state() == before, "the kernel's KSM changed"
