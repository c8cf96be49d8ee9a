# ksmfs: `make mount` mounts a demo and shows merging; `make test` runs every test.
# Both install what they need (Debian packages, pytest) when it is missing.
SWIFT ?= swift
MNT ?= /tmp/ksmfs-demo
BIN := .build/release/ksmfs
# Warnings are defects: every build of the project's own targets fails on one.
STRICT := -Xswiftc -warnings-as-errors

.PHONY: deps build mount demo test unit integration bench install sanitize soak clean

deps:
	@bash scripts/install-deps.sh

build: deps
	$(SWIFT) build -c release $(STRICT)

mount demo: build
	@bash mount-examples/quickstart.sh $(MNT)

unit: deps
	$(SWIFT) build --build-tests $(STRICT)
	$(SWIFT) test --skip-build

integration: build
	python3 -m pytest Tests/IntegrationTests -q -ra

test: build unit integration

bench: build
	$(SWIFT) run -c release $(STRICT) ksmfs-bench io

# The daemon built with ThreadSanitizer and with AddressSanitizer, each under the integration
# suite, and the unit tests under both. Any sanitizer report fails the target.
# - libfuse ends its worker threads with pthread_cancel, which TSan reports as "finished with
#   ignores enabled" and answers by ending the process (Die, with exitcode=0 below): not a race,
#   so only reports of races count, and the tests that check what the daemon does after its
#   loop ends (its last log lines, pidfile and daemon-record removal) cannot pass under TSan.
# - Under both, the shadow memory changes the daemon's mappings, memory and OOM score: memory,
#   memory-pressure and OOM tests are deselected (and the soak and limits, for time), and so
#   is the io bench's test (its ratios round to 0.00 under AddressSanitizer).
# - Unit-test leaks are checked at the end of the run (Tests/KSMTests/LeakCheck.swift).
SAN_SKIP := --ignore=Tests/IntegrationTests/test_soak.py --ignore=Tests/IntegrationTests/test_limits.py \
  --ignore=Tests/IntegrationTests/test_memory_pressure.py --ignore=Tests/IntegrationTests/test_oom.py
TSAN_AFTER_LOOP := not refused_SIGTERM and not SIGTERM_while_files and not status_without and \
  not status_of_a_path and not pidfile_goes and not PATH_symlink and not fstab-systemd and \
  not daemonized_mount_unmounts and not bench_io and not daemon_memory

sanitize: deps
	$(SWIFT) test --sanitize=thread --scratch-path .build-tsan-tests
	LSAN_OPTIONS=leak_check_at_exit=0:suppressions=$(CURDIR)/Tests/lsan.supp $(SWIFT) test --sanitize=address --scratch-path .build-asan-tests
	$(SWIFT) build --product ksmfs --sanitize=thread --scratch-path .build-tsan
	$(SWIFT) build --product ksmfs --sanitize=address --scratch-path .build-asan
	rm -f /tmp/ksmfs-tsan.* /tmp/ksmfs-asan.*
	KSMFS_BIN=$(CURDIR)/.build-tsan/debug/ksmfs TSAN_OPTIONS="log_path=/tmp/ksmfs-tsan exitcode=0" \
	  python3 -m pytest Tests/IntegrationTests -q $(SAN_SKIP) -k "$(TSAN_AFTER_LOOP)"
	KSMFS_BIN=$(CURDIR)/.build-asan/debug/ksmfs ASAN_OPTIONS="log_path=/tmp/ksmfs-asan detect_leaks=0" \
	  python3 -m pytest Tests/IntegrationTests -q $(SAN_SKIP) -k "not daemon_memory and not scenario and not bench_io"
	@! grep -l "ThreadSanitizer: data race\|ThreadSanitizer: lock-order" /tmp/ksmfs-tsan.* 2>/dev/null
	@! ls /tmp/ksmfs-asan.* 2>/dev/null
	@echo "sanitize: no ThreadSanitizer race and no AddressSanitizer report"

# The long soak by hand (CI runs 60 s of it in test_soak.py).
soak: build
	python3 tools/soak.py --seconds 600

# Installs ksmfs in PREFIX/bin, its man page in PREFIX/share/man/man1, and the mount helper
# mount.fuse.ksmfs, so that
# `mount -t fuse.ksmfs none /mnt -o size=4g` and /etc/fstab lines work: mount(8) runs
# /sbin/mount.fuse.ksmfs, which runs mount.fuse3 with PREFIX/bin first in its PATH. The helper
# goes to /usr/sbin (where mount(8) looks) for PREFIX /usr/local or /usr, else to PREFIX/sbin:
# nothing is written outside PREFIX then (set SBINDIR to choose).
PREFIX ?= /usr/local
SBINDIR ?= $(if $(filter /usr/local /usr,$(PREFIX)),/usr/sbin,$(PREFIX)/sbin)
install: build
	install -d $(PREFIX)/bin $(SBINDIR) $(PREFIX)/share/man/man1
	install -m 0755 $(BIN) $(PREFIX)/bin/ksmfs
	install -m 0644 docs/ksmfs.1 $(PREFIX)/share/man/man1/ksmfs.1
	printf '#!/bin/sh\n# mount -t fuse.ksmfs: mount.fuse3 with ksmfs (from $(PREFIX)/bin) on its PATH\nPATH="$(PREFIX)/bin:$$PATH" exec mount.fuse3 "$$@"\n' > $(SBINDIR)/mount.fuse.ksmfs
	chmod 0755 $(SBINDIR)/mount.fuse.ksmfs

clean:
	rm -rf .build
