#!/usr/bin/env python3
# One data-loading worker: maps its own copy of the dataset read-only (mmap, no read()
# calls), walks every record and prints one JSON line with what it computed.
# Usage: worker.py ID PATH
import hashlib
import json
import mmap
import sys
import time

wid, path = int(sys.argv[1]), sys.argv[2]
t0 = time.monotonic()
with open(path, "rb") as f:
    m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)
    try:
        view = memoryview(m)
        total = sum(view.cast("Q"))           # the dataset is a flat array of uint64 records
        digest = hashlib.sha256(view).hexdigest()
        view.release()
    finally:
        m.close()
print(json.dumps({"worker": wid, "path": path, "sum": total, "sha256": digest,
                  "seconds": round(time.monotonic() - t0, 2)}), flush=True)
