# ksmfs: `make mount` mounts a demo and shows merging; `make test` runs every test.
# Both install what they need (Debian packages, pytest) when it is missing.
SWIFT ?= swift
MNT ?= /tmp/ksmfs-demo
BIN := .build/release/ksmfs

.PHONY: deps build mount demo test unit integration bench install clean

deps:
	@bash scripts/install-deps.sh

build: deps
	$(SWIFT) build -c release

mount demo: build
	@bash mount-examples/quickstart.sh $(MNT)

unit: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

integration: build
	python3 -m pytest Tests/IntegrationTests -q -ra

test: build unit integration

bench: build
	$(SWIFT) run -c release ksmfs-bench io

# Puts ksmfs in PATH so `mount -t fuse.ksmfs none /mnt -o size=4g` and /etc/fstab lines
# work through mount.fuse3 (util-linux falls back from mount.fuse.ksmfs to mount.fuse).
PREFIX ?= /usr/local
install: build
	install -m 0755 $(BIN) $(PREFIX)/bin/ksmfs
	@[ -e /sbin/mount.fuse ] || [ -e /usr/sbin/mount.fuse ] || ln -sf "$$(command -v mount.fuse3)" /usr/sbin/mount.fuse

clean:
	rm -rf .build
