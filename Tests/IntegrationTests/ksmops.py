# Helpers for the KSM integration tests: read and write <mnt>/ksm files with single
# syscalls, start the scanner fast, and wait for counters to settle on a frozen snapshot.
import os
import time

SCAN_ITEM_BYTES = 16  # ksmfs's per-item metadata, the `items × 16` of general_profit
NUMBERS = ["cow_ksm", "full_scans", "general_profit", "ksm_zero_pages", "pages_scanned",
           "pages_shared", "pages_sharing", "pages_skipped", "pages_unshared", "pages_volatile",
           "stable_node_chains", "stable_node_dups"]


def kpath(m, name):
    return os.path.join(m.path, "ksm", name)


def kget(m, name):
    with open(kpath(m, name)) as f:
        return f.read()


def kval(m, name):
    """The file's value without its newline."""
    return kget(m, name).strip()


def kset(m, name, value):
    fd = os.open(kpath(m, name), os.O_WRONLY)
    try:
        data = f"{value}\n".encode()
        assert os.write(fd, data) == len(data)
    finally:
        os.close(fd)


def counters(m):
    return {n: int(kget(m, n)) for n in NUMBERS}


def start(m, **tunables):
    """Fast scanning (10000 pages a batch, no sleep), the given tunables, then run=1."""
    kset(m, "pages_to_scan", 10000)
    kset(m, "sleep_millisecs", 0)
    for name, value in tunables.items():
        kset(m, name, value)
    kset(m, "run", 1)


def _wait(pred, timeout):
    deadline = time.monotonic() + timeout
    while True:
        v = pred()
        if v or time.monotonic() > deadline:
            return v
        time.sleep(0.05)


def wait_passes(m, n, timeout=30.0):
    """Wait until `n` more full passes have completed."""
    target = int(kget(m, "full_scans")) + n
    assert _wait(lambda: int(kget(m, "full_scans")) >= target, timeout), \
        f"the scanner did not complete {n} passes in {timeout}s: {counters(m)}"


def snapshot(m):
    """All counters at one instant. Each is a separate file read, so while the scanner runs a
    pass can fall between two reads; run=0 waits for the current batch and freezes them."""
    running = kget(m, "run") == "1\n"
    if running:
        kset(m, "run", 0)
    c = counters(m)
    if running:
        kset(m, "run", 1)
    return c


def settle(m, timeout=30.0, **want):
    """Wait until every counter named in `want` has that value, then check, on a frozen
    snapshot two full passes later, that it still has it (stable, not passing through).
    Returns that snapshot."""
    last = {}

    def ok():
        last.update(counters(m))
        return all(last[k] == v for k, v in want.items())

    m.assert_alive()
    if not _wait(ok, timeout):
        raise AssertionError(f"counters did not reach {want} in {timeout}s; last "
                             f"{ {k: last[k] for k in want} } (all: {last})")
    wait_passes(m, 2)
    now = snapshot(m)
    assert {k: now[k] for k in want} == want, f"not stable: {want} became {now}"
    return now
