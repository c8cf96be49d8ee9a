// `ksmfs [SOURCE] MOUNTPOINT`: checks the mountpoint, mounts, daemonizes unless -f, starts the
// scanner thread (ksmd) and serves until unmounted or signalled, then unmounts cleanly.
import ArgumentParser
import FUSE
import Glibc
import KSMFS
import Logging

/// The -o options, shown by `ksmfs --help` and `ksmfs mount --help`.
let mountOptionsHelp = """
    Mount options (-o, comma separated):
      size=N[kmgt%]       capacity (default 50% of RAM, like tmpfs)
      nr_inodes=N         most inodes (default: half the RAM pages; 0: no limit)
      mode=,uid=,gid=     the root directory's mode and owner (1777, 0, 0)
      merge=all|none      new files mergeable (default all; user.ksm.mergeable)
      no_writeback_cache  every write to the daemon at once (slower small writes)
      share_immutable     identical chattr +i files share one page cache (root)
      private             a root mount for root only (default: shared, as tmpfs)
      remount             with size=, nr_inodes=, mode=, uid=, gid=: change a live mount
      readahead=N[km]     the mount's read-ahead (default 1m; 0: the kernel's)
      oom_score_adj=N     the daemon's OOM score (default -1000: never killed)
      log=FILE            where a daemonized ksmfs logs (default: syslog)
      pidfile=FILE        write the daemon's pid there
      allow_other, ro, noatime and the usual FUSE mount options

    As mount(8) calls it: mount -t fuse.ksmfs none /mnt -o size=4g (after `make install`, \
    which installs the helper mount(8) runs: mount.fuse.ksmfs).
    """

struct MountCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mount",
        abstract: "Mount ksmfs (the default: `ksmfs MOUNTPOINT` is `ksmfs mount MOUNTPOINT`).",
        discussion: mountOptionsHelp
    )

    @Argument(help: "[SOURCE] MOUNTPOINT: an existing directory (a SOURCE such as `none` is ignored, as tmpfs does).")
    var paths: [String]

    @Flag(name: .customShort("f"), help: "Stay in the foreground.")
    var foreground = false

    @Flag(name: .customShort("d"), help: "Debug output (implies -f).")
    var debug = false

    @Option(name: .customShort("o"), help: "Mount options, comma separated (see above).")
    var options: [String] = []

    func fail(_ message: String) -> Never {
        writeStderr("ksmfs: \(message)\n")
        Glibc.exit(1)
    }

    /// `-o remount,size=2g` (as mount.fuse3 runs it for `mount -o remount`): the running
    /// daemon of the mount at `mountpoint` applies what changes (see Remount.swift); the
    /// options that mount(8) adds and that do not change are accepted as they are.
    func remount(_ mountpoint: String, _ words: [String]) -> Never {
        guard let abs = realpath(mountpoint, nil).map({ p in defer { free(p) }; return String(cString: p) }),
              MountTable.isKSMFSMount(abs) else { fail("\(mountpoint) is not a ksmfs mount (remount changes a mounted one)") }
        var change: [String] = []
        for word in words where word != "remount" {
            let key = String(word.split(separator: "=", maxSplits: 1)[0])
            if MemoryFileSystem.remountable.contains(key) {
                change.append(word)
            } else if !MountOptions.unchangedByRemount(word) {
                fail("\(key) cannot be changed by remount (size, nr_inodes, mode, uid and gid can)")
            }
        }
        if change.isEmpty { Glibc.exit(0) }
        // Values are checked here first, for a readable message.
        do { _ = try MountOptions.parse(change) } catch { fail(error.description) }
        let text = change.joined(separator: ",")
        let e = MemoryFileSystem.requestRemount(of: abs, text)
        if e != 0 {
            switch e {
            case EINVAL: fail("cannot remount \(abs) with \(text): below what the mount holds (its data and writeback reserve: see df -h \(abs); its inodes: df -i \(abs))")
            case EFBIG: fail("cannot remount \(abs) with \(text): larger than the mount can grow to (its RAM, or its first size= if larger; unmount and mount again)")
            case EPERM: fail("cannot remount \(abs): only root may")
            default: fail("cannot remount \(abs): \(String(cString: strerror(e)))")
            }
        }
        Glibc.exit(0)
    }

    func run() throws {
        guard paths.count == 1 || paths.count == 2 else { fail("expected [SOURCE] MOUNTPOINT (see ksmfs --help)") }
        let mountpoint = paths.last!
        let words = options.flatMap { $0.split(separator: ",").map(String.init) }
        if words.contains("remount") { remount(mountpoint, words) }
        let parsed: MountOptions
        do { parsed = try MountOptions.parse(words) } catch { fail(error.description) }
        let daemon = !(foreground || debug)
        var st = stat()
        if stat(mountpoint, &st) != 0 { fail("mountpoint \(mountpoint) does not exist") }
        if st.st_mode & S_IFMT != S_IFDIR { fail("mountpoint \(mountpoint) is not a directory") }
        let absolute = realpath(mountpoint, nil).map { p in defer { free(p) }; return String(decoding: UnsafeRawBufferPointer(start: p, count: strlen(p)), as: UTF8.self) } ?? mountpoint
        // Log where a user will look: stderr in the foreground; daemonized, syslog (the
        // journal), or a file when there is no syslog socket.
        var logFile = parsed.logFile
        if daemon && logFile == nil && access("/dev/log", F_OK) != 0 { mkdir(DaemonRecord.directory, 0o755); logFile = DaemonRecord.defaultLog }
        LogSetup.bootstrap(level: debug ? .debug : .info, file: logFile, syslog: daemon && logFile == nil)
        let logger = Logger(label: "ksmfs")
        _ = DaemonRecord.dead()      // forgets records of mountpoints that no longer exist
        for previous in DaemonRecord.dead(mountpoint: absolute) {
            writeStderr("ksmfs: warning: \(previous.line)\n")
            logger.warning("\(previous.line)")
        }
        if MountTable.isKSMFSMount(absolute) { fail("\(absolute) is already a ksmfs mount (unmount it first: fusermount3 -u \(absolute))") }
        if access("/dev/fuse", F_OK) != 0 { fail("/dev/fuse is missing: load the fuse module (modprobe fuse) or give the container the device") }
        if access("/dev/fuse", R_OK | W_OK) != 0 && getuid() != 0 && access("/usr/bin/fusermount3", X_OK) != 0 {
            fail("permission denied on /dev/fuse and no fusermount3 to mount as a user")
        }

        if let pidFile = parsed.pidFile {
            // Checked before mounting: a service manager that relies on it must not get a mount
            // without one.
            let fd = open(pidFile, O_WRONLY | O_CREAT, 0o644)
            if fd < 0 { fail("cannot write pid file \(pidFile): \(String(cString: strerror(errno)))") }
            close(fd)
        }

        let oom = OOMScore.apply(parsed.oomScoreAdj)
        if !oom.exact {
            let line = "running with oom_score_adj \(oom.value), not \(parsed.oomScoreAdj) (lowering it needs root or CAP_SYS_RESOURCE): the OOM killer does not count file data against the daemon (it lives in a memfd, as in tmpfs), but could still choose it"
            // In the foreground the log is stderr already; daemonized, say it on the terminal too.
            if daemon { writeStderr("ksmfs: notice: \(line)\n") }
            logger.notice("\(line)")
        }

        var fsOptions = parsed.filesystem
        fsOptions.mountpoint = absolute
        if fsOptions.shareImmutable, let why = BackingFiles.privilegeProblem() {
            // Said once, here; the mount goes on as without the option (writeback cache on).
            let line = "share_immutable is off: \(why); the mount works as without it"
            if daemon { writeStderr("ksmfs: notice: \(line)\n") }
            logger.notice("\(line)")
            fsOptions.shareImmutable = false
        }
        if let why = MemoryFileSystem.reservationError(capacityBytes: fsOptions.capacityBytes) { fail(why) }
        let fs = MemoryFileSystem(options: fsOptions, logger: logger)
        if let spec = getenv("KSMFS_FAULTS") {
            do { try fs.arena.faults.configure(String(cString: spec)) } catch { fail(error.description) }
            logger.warning("fault injection on: KSMFS_FAULTS=\(String(cString: spec))")
        }
        let session: Session
        do { session = try Session(filesystem: fs, options: parsed.fuseOptions, debug: debug) } catch { fail("\(error)") }
        do { try session.mount(at: absolute) } catch {
            fail("could not mount \(absolute): \(error) (permission denied? try as root, or check /etc/fuse.conf for allow_other)")
        }
        let device = MountTable.device(of: absolute)
        let readahead = parsed.readahead ?? MountOptions.defaultReadahead
        if readahead > 0, let why = MountTable.setReadahead(bytes: readahead, of: absolute) {
            let message: Logger.Message = "read-ahead left at the kernel's default: \(why)"
            if parsed.readahead != nil { logger.warning(message) } else { logger.debug(message) }
        }
        fs.kernelCache = session.kernelCache
        fs.backingFiles = session.backingFiles
        if fsOptions.writebackCache {
            // The kernel holds a writer's data in its page cache before ksmfs sees it: cap that
            // and keep a reserve for it (see Capacity.swift).
            let want = CapacityReserve.dirtyLimit(forCapacity: fsOptions.capacityBytes)
            if let why = MountTable.setDirtyLimit(bytes: want, of: absolute) { logger.debug("dirty limit left at the kernel's: \(why)") }
            let actual = MountTable.dirtyLimit(of: absolute) ?? want
            let reserve = CapacityReserve(capacityBytes: fsOptions.capacityBytes, dirtyLimitBytes: actual)
            fs.configureReserve(reserve)
            if actual > want * 2 {
                logger.notice("the kernel may hold \(actual >> 20) MiB of unwritten data for this mount (its dirty limit could not be lowered: not root); \(reserve.blocks >> 8) MiB are reserved for it")
            }
        }
        if daemon && !session.daemonize(foreground: false) { fail("could not detach from the terminal") }
        if let pidFile = parsed.pidFile {
            let text = "\(getpid())\n"
            let fd = open(pidFile, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            if fd >= 0 { _ = text.withCString { Glibc.write(fd, $0, strlen($0)) }; close(fd) }
            else { logger.warning("cannot write pid file \(pidFile): \(String(cString: strerror(errno)))") }
        }
        let record = DaemonRecord(mountpoint: absolute, log: logFile ?? (daemon ? "syslog" : "stderr"))
        logger.info("mounted at \(absolute), capacity \(parsed.filesystem.capacityBytes >> 20) MiB, \(parsed.filesystem.maxInodes) inodes")
        var forced = false
        session.onStopSignal = { event in
            switch event {
            case .refused(let sig, let open):
                logger.warning("\(DaemonRecord.signalName(sig)) refused: \(absolute) is in use (\(open) open \(open == 1 ? "file or directory" : "files or directories"); unmounting would lose them, as umount says EBUSY). It stops when the last one is closed; signal again within \(Session.forceWithin) s to stop now.")
            case .forced(let sig, let open):
                forced = true
                logger.warning("\(DaemonRecord.signalName(sig)) again: stopping although \(open) \(open == 1 ? "file or directory is" : "files or directories are") open")
            case .clean(let sig):
                logger.info("\(DaemonRecord.signalName(sig)): stopping")
            case .idle:
                logger.info("the last open file was closed: stopping as asked")
            }
        }
        fs.engine.start()
        let rc = session.run(maxThreads: 16)
        // Unmounted from outside (umount, fusermount -u, or lazily once the last user let go):
        // the kernel then holds no open file, and handles counted open are closes whose
        // RELEASE was still queued when the kernel dropped the connection's requests (it ends
        // the connection with ECONNABORTED then, which is no error of ours).
        let unmountedOutside = device != nil && MountTable.device(of: absolute) != device
        let (inodes, bytes) = fs.contents
        let open = Session.openHandles
        session.unmount()
        fs.engine.stop()
        if let pidFile = parsed.pidFile { unlink(pidFile) }
        let files = max(0, inodes - 1)
        let discarded = "\(files) \(files == 1 ? "file or directory" : "files and directories") with \(bytes >> 20) MiB of data discarded"
        if forced || (open > 0 && !unmountedOutside) {
            logger.warning("unmounted \(absolute) with \(open) still open: \(discarded)")
        } else if open > 0 {
            logger.info("unmounted \(absolute): \(discarded) (\(open) closes were still on their way)")
        } else {
            logger.info("unmounted \(absolute): \(discarded)")
        }
        record?.remove()
        // An error, or the connection aborted under the mount with files open (what they held
        // is lost): exit 1. A forced stop was asked for (its warning says what was open).
        if !unmountedOutside && (rc < 0 || (open > 0 && !forced)) { Glibc.exit(1) }
    }
}
