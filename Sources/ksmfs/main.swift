// The ksmfs daemon: parses the command line, checks the mountpoint, mounts, starts the
// scanner thread (ksmd) and serves until unmounted or signalled, then unmounts cleanly.
import ArgumentParser
import FUSE
import Glibc
import KSMFS
import Logging

struct KSMFSCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ksmfs",
        abstract: "An in-memory filesystem that merges identical pages, tuned like the kernel's KSM.",
        discussion: """
        Files live in memory page by page. Identical pages of any files are merged into one shared
        block by a scanner driven through <mountpoint>/ksm/ (echo 1 > ksm/run; cat ksm/pages_sharing).

        Options (-o, comma separated):
          size=N[k|m|g|t|%]   capacity in physical blocks (default 50% of RAM, like tmpfs)
          nr_inodes=N         most inodes (default half the RAM pages; 0 = no limit)
          mode=OCTAL,uid=N,gid=N   the root directory's mode and owner (default 1777, 0, 0)
          merge=all|none      whether new files are mergeable (default all; per file: user.ksm.mergeable)
          no_writeback_cache  send every write to the daemon at once (slower small writes)
          allow_other, ro, and the usual FUSE mount options
        """,
        version: "ksmfs 0.1.0"
    )

    @Argument(help: "Where to mount (an existing directory).")
    var mountpoint: String

    @Flag(name: .customShort("f"), help: "Stay in the foreground.")
    var foreground = false

    @Flag(name: .customShort("d"), help: "Debug output (implies -f).")
    var debug = false

    @Option(name: .customShort("o"), help: "Mount options, comma separated (see above).")
    var options: [String] = []

    func fail(_ message: String) -> Never {
        FileHandle.stderr.write("ksmfs: \(message)\n")
        Glibc.exit(1)
    }

    func run() throws {
        LoggingSystem.bootstrap { label in
            var h = StreamLogHandler.standardError(label: label)
            h.logLevel = .info
            return h
        }
        var logger = Logger(label: "ksmfs")
        logger.logLevel = debug ? .debug : .info

        let words = options.flatMap { $0.split(separator: ",").map(String.init) }
        let parsed: MountOptions
        do { parsed = try MountOptions.parse(words) } catch { fail(error.description) }

        var st = stat()
        if stat(mountpoint, &st) != 0 { fail("mountpoint \(mountpoint) does not exist") }
        if st.st_mode & S_IFMT != S_IFDIR { fail("mountpoint \(mountpoint) is not a directory") }
        let absolute = realpath(mountpoint, nil).map { p in defer { free(p) }; return String(cString: p) } ?? mountpoint
        if MountTable.isKSMFSMount(absolute) { fail("\(absolute) is already a ksmfs mount (unmount it first: fusermount3 -u \(absolute))") }
        if access("/dev/fuse", F_OK) != 0 { fail("/dev/fuse is missing: load the fuse module (modprobe fuse) or give the container the device") }
        if access("/dev/fuse", R_OK | W_OK) != 0 && getuid() != 0 && access("/usr/bin/fusermount3", X_OK) != 0 {
            fail("permission denied on /dev/fuse and no fusermount3 to mount as a user")
        }

        let fs = MemoryFileSystem(options: parsed.filesystem, logger: logger)
        let session: Session
        do { session = try Session(filesystem: fs, options: parsed.fuseOptions, debug: debug) } catch { fail("\(error)") }
        do { try session.mount(at: absolute) } catch {
            fail("could not mount \(absolute): \(error) (permission denied? try as root, or check /etc/fuse.conf for allow_other)")
        }
        if !(foreground || debug) {
            if !session.daemonize(foreground: false) { fail("could not detach from the terminal") }
        }
        logger.info("mounted at \(absolute), capacity \(parsed.filesystem.capacityBytes >> 20) MiB, \(parsed.filesystem.maxInodes) inodes")
        fs.engine.start()
        let rc = session.run(maxThreads: 16)
        session.unmount()
        fs.engine.stop()
        logger.info("unmounted \(absolute)")
        if rc < 0 { Glibc.exit(1) }
    }
}

enum FileHandle {
    case stderr
    func write(_ s: String) {
        var bytes = Array(s.utf8)
        _ = Glibc.write(2, &bytes, bytes.count)
    }
}

KSMFSCommand.main()
