// A mounted libfuse low-level session driving one `FileSystem`. The ops table is built from
// capture-free C callbacks that find the filesystem through `fuse_req_userdata`, decode the
// arguments, call the protocol, and send exactly one reply.
import CFuse3
import Glibc

/// Holds the filesystem for the C callbacks (passed as the session's userdata).
final class SessionBox {
    let fs: any FileSystem
    init(_ fs: any FileSystem) { self.fs = fs }
}

@inline(__always)
private func fs(_ req: fuse_req_t?) -> any FileSystem {
    Unmanaged<SessionBox>.fromOpaque(fuse_req_userdata(req)!).takeUnretainedValue().fs
}

private func replyEntry(_ req: fuse_req_t?, _ result: Result<Entry, Errno>) {
    switch result {
    case .success(let entry):
        var e = fuse_entry_param()
        fillEntry(&e, entry)
        fuse_reply_entry(req, &e)
    case .failure(let err):
        fuse_reply_err(req, err.rawValue)
    }
}

private func fillEntry(_ e: inout fuse_entry_param, _ entry: Entry) {
    e.ino = fuse_ino_t(entry.attributes.st_ino)
    e.generation = entry.generation
    e.attr = entry.attributes
    e.attr_timeout = entry.attributeTimeout
    e.entry_timeout = entry.entryTimeout
}

private func replyErr(_ req: fuse_req_t?, _ err: Errno?) {
    fuse_reply_err(req, err?.rawValue ?? 0)
}

private func applyOpen(_ fi: UnsafeMutablePointer<fuse_file_info>, _ o: OpenReply) {
    fi.pointee.fh = o.handle
    cfuse_fi_set_direct_io(fi, o.directIO ? 1 : 0)
    cfuse_fi_set_keep_cache(fi, o.keepCache ? 1 : 0)
    cfuse_fi_set_nonseekable(fi, o.nonSeekable ? 1 : 0)
}

private func replyXattr(_ req: fuse_req_t?, _ result: Result<XattrReply, Errno>, size: Int) {
    switch result {
    case .failure(let err): fuse_reply_err(req, err.rawValue)
    case .success(.size(let n)): fuse_reply_xattr(req, n)
    case .success(.data(let bytes)):
        if size == 0 { fuse_reply_xattr(req, bytes.count) }
        else if bytes.count > size { fuse_reply_err(req, ERANGE) }
        else { _ = bytes.withUnsafeBufferPointer { fuse_reply_buf(req, UnsafeRawPointer($0.baseAddress)?.assumingMemoryBound(to: CChar.self), $0.count) } }
    }
}

private func handle(_ fi: UnsafeMutablePointer<fuse_file_info>?) -> UInt64 { fi?.pointee.fh ?? 0 }

func makeOperations() -> fuse_lowlevel_ops {
    var ops = fuse_lowlevel_ops()
    ops.`init` = { userdata, conn in
        guard let userdata, let conn else { return }
        let box = Unmanaged<SessionBox>.fromOpaque(userdata).takeUnretainedValue()
        var s = box.fs.connectionSettings()
        if s.passthrough {
            // Asked for in the INIT reply (shim.c) when the kernel offers it and the daemon may.
            let why: String?
            if cfuse_kernel_offers_passthrough() != 1 {
                why = "this kernel does not offer FUSE passthrough (Linux 6.9 or later, CONFIG_FUSE_PASSTHROUGH)"
            } else {
                why = BackingFiles.privilegeProblem()
            }
            if let why {
                box.fs.passthroughDecided(.off(reason: why))
            } else {
                s.writebackCache = false
                cfuse_want_passthrough(1)
                box.fs.passthroughDecided(.on)
            }
        }
        var want: UInt32 = UInt32(FUSE_CAP_ATOMIC_O_TRUNC) | UInt32(FUSE_CAP_EXPORT_SUPPORT)
            | UInt32(FUSE_CAP_ASYNC_READ) | UInt32(FUSE_CAP_PARALLEL_DIROPS) | UInt32(FUSE_CAP_ASYNC_DIO)
        if s.writebackCache { want |= UInt32(FUSE_CAP_WRITEBACK_CACHE) }
        cfuse_conn_configure(conn, want, s.maxWrite, s.maxRead, s.maxReadahead, 1)
    }
    ops.destroy = { userdata in
        guard let userdata else { return }
        Unmanaged<SessionBox>.fromOpaque(userdata).takeUnretainedValue().fs.destroy()
    }
    ops.lookup = { req, parent, name in
        let f = fs(req)
        let result = f.lookup(Request(req!), parent: UInt64(parent), name: Name(cString: name!))
        if case .failure(let e) = result, e == .noent, f.negativeEntryTimeout > 0 {
            // A negative entry: node id 0, which the kernel keeps as a missing name.
            var entry = fuse_entry_param()
            entry.entry_timeout = f.negativeEntryTimeout
            fuse_reply_entry(req, &entry)
            return
        }
        replyEntry(req, result)
    }
    ops.forget = { req, ino, n in
        fs(req).forget(ino: UInt64(ino), lookups: n)
        fuse_reply_none(req)
    }
    ops.forget_multi = { req, count, forgets in
        let f = fs(req)
        for i in 0..<count {
            let one = forgets![i]
            f.forget(ino: UInt64(one.ino), lookups: one.nlookup)
        }
        fuse_reply_none(req)
    }
    ops.getattr = { req, ino, fi in
        let f = fs(req)
        switch f.getattr(Request(req!), ino: UInt64(ino), handle: fi.map { $0.pointee.fh }) {
        case .success(var st): fuse_reply_attr(req, &st, f.attributeTimeout(for: st))
        case .failure(let e): fuse_reply_err(req, e.rawValue)
        }
    }
    ops.setattr = { req, ino, attr, mask, fi in
        let change = SetAttributes(stat: attr!.pointee, mask: mask, handle: fi.map { $0.pointee.fh })
        let f = fs(req)
        switch f.setattr(Request(req!), ino: UInt64(ino), change) {
        case .success(var st): fuse_reply_attr(req, &st, f.attributeTimeout(for: st))
        case .failure(let e): fuse_reply_err(req, e.rawValue)
        }
    }
    ops.readlink = { req, ino in
        switch fs(req).readlink(Request(req!), ino: UInt64(ino)) {
        case .success(let target): _ = target.withCString { fuse_reply_readlink(req, $0) }
        case .failure(let e): fuse_reply_err(req, e.rawValue)
        }
    }
    ops.mknod = { req, parent, name, mode, rdev in
        replyEntry(req, fs(req).mknod(Request(req!), parent: UInt64(parent), name: Name(cString: name!), mode: mode, rdev: rdev))
    }
    ops.mkdir = { req, parent, name, mode in
        replyEntry(req, fs(req).mkdir(Request(req!), parent: UInt64(parent), name: Name(cString: name!), mode: mode))
    }
    ops.unlink = { req, parent, name in
        replyErr(req, fs(req).unlink(Request(req!), parent: UInt64(parent), name: Name(cString: name!)))
    }
    ops.rmdir = { req, parent, name in
        replyErr(req, fs(req).rmdir(Request(req!), parent: UInt64(parent), name: Name(cString: name!)))
    }
    ops.symlink = { req, link, parent, name in
        replyEntry(req, fs(req).symlink(Request(req!), target: Name(cString: link!), parent: UInt64(parent), name: Name(cString: name!)))
    }
    ops.rename = { req, parent, name, newParent, newName, flags in
        replyErr(req, fs(req).rename(Request(req!), parent: UInt64(parent), name: Name(cString: name!),
                                     newParent: UInt64(newParent), newName: Name(cString: newName!), flags: UInt32(flags)))
    }
    ops.link = { req, ino, newParent, newName in
        replyEntry(req, fs(req).link(Request(req!), ino: UInt64(ino), newParent: UInt64(newParent), newName: Name(cString: newName!)))
    }
    ops.open = { req, ino, fi in
        switch fs(req).open(Request(req!), ino: UInt64(ino), flags: fi!.pointee.flags) {
        case .success(let o):
            applyOpen(fi!, o)
            if o.backingID > 0 { cfuse_reply_open_backing(req, fi, o.backingID) } else { fuse_reply_open(req, fi) }
        case .failure(let e): fuse_reply_err(req, e.rawValue)
        }
    }
    ops.create = { req, parent, name, mode, fi in
        switch fs(req).create(Request(req!), parent: UInt64(parent), name: Name(cString: name!), mode: mode, flags: fi!.pointee.flags) {
        case .success(let (entry, o)):
            var e = fuse_entry_param()
            fillEntry(&e, entry)
            applyOpen(fi!, o)
            fuse_reply_create(req, &e, fi)
        case .failure(let e): fuse_reply_err(req, e.rawValue)
        }
    }
    ops.read = { req, ino, size, off, fi in
        fs(req).read(Request(req!), ino: UInt64(ino), size: size, offset: Int64(off), handle: handle(fi), reply: ReadReply(req!))
    }
    ops.write = { req, ino, buf, size, off, fi in
        let data = UnsafeRawBufferPointer(start: buf, count: size)
        switch fs(req).write(Request(req!), ino: UInt64(ino), data: data, offset: Int64(off), handle: handle(fi), flags: fi?.pointee.flags ?? 0,
                                 writepage: fi.map { cfuse_fi_writepage($0) != 0 } ?? true) {
        case .success(let n): fuse_reply_write(req, n)
        case .failure(let e): fuse_reply_err(req, e.rawValue)
        }
    }
    ops.flush = { req, ino, fi in replyErr(req, fs(req).flush(Request(req!), ino: UInt64(ino), handle: handle(fi))) }
    ops.release = { req, ino, fi in
        replyErr(req, fs(req).release(Request(req!), ino: UInt64(ino), handle: handle(fi), flags: fi?.pointee.flags ?? 0))
    }
    ops.fsync = { req, ino, datasync, fi in
        replyErr(req, fs(req).fsync(Request(req!), ino: UInt64(ino), dataOnly: datasync != 0, handle: handle(fi)))
    }
    ops.opendir = { req, ino, fi in
        switch fs(req).opendir(Request(req!), ino: UInt64(ino), flags: fi!.pointee.flags) {
        case .success(let o):
            fi!.pointee.fh = o.handle
            fuse_reply_open(req, fi)
        case .failure(let e): fuse_reply_err(req, e.rawValue)
        }
    }
    ops.readdir = { req, ino, size, off, fi in
        var buffer = DirectoryBuffer(req: req!, capacity: size)
        defer { buffer.free() }
        if let err = fs(req).readdir(Request(req!), ino: UInt64(ino), offset: Int64(off), handle: handle(fi), into: &buffer) {
            fuse_reply_err(req, err.rawValue)
        } else {
            fuse_reply_buf(req, buffer.storage, buffer.used)
        }
    }
    ops.releasedir = { req, ino, fi in
        replyErr(req, fs(req).releasedir(Request(req!), ino: UInt64(ino), handle: handle(fi))) }
    ops.fsyncdir = { req, ino, datasync, fi in
        replyErr(req, fs(req).fsyncdir(Request(req!), ino: UInt64(ino), dataOnly: datasync != 0, handle: handle(fi)))
    }
    ops.statfs = { req, ino in
        switch fs(req).statfs(Request(req!), ino: UInt64(ino)) {
        case .success(var sv): fuse_reply_statfs(req, &sv)
        case .failure(let e): fuse_reply_err(req, e.rawValue)
        }
    }
    ops.setxattr = { req, ino, name, value, size, flags in
        let v = UnsafeRawBufferPointer(start: value, count: size)
        replyErr(req, fs(req).setxattr(Request(req!), ino: UInt64(ino), name: Name(cString: name!), value: v, flags: flags))
    }
    ops.getxattr = { req, ino, name, size in
        replyXattr(req, fs(req).getxattr(Request(req!), ino: UInt64(ino), name: Name(cString: name!), size: size), size: size)
    }
    ops.listxattr = { req, ino, size in
        replyXattr(req, fs(req).listxattr(Request(req!), ino: UInt64(ino), size: size), size: size)
    }
    ops.removexattr = { req, ino, name in
        replyErr(req, fs(req).removexattr(Request(req!), ino: UInt64(ino), name: Name(cString: name!)))
    }
    ops.access = { req, ino, mask in replyErr(req, fs(req).access(Request(req!), ino: UInt64(ino), mask: mask)) }
    ops.fallocate = { req, ino, mode, off, len, fi in
        replyErr(req, fs(req).fallocate(Request(req!), ino: UInt64(ino), mode: mode, offset: Int64(off), length: Int64(len), handle: handle(fi)))
    }
    ops.ioctl = { req, ino, cmd, _, _, flags, inBuf, inSize, outSize in
        // Only restricted ioctls (the kernel sized both buffers from `cmd`); 32-bit callers too.
        if flags & UInt32(FUSE_IOCTL_UNRESTRICTED) != 0 { fuse_reply_err(req, ENOTTY); return }
        let input = UnsafeRawBufferPointer(start: inBuf, count: inBuf == nil ? 0 : inSize)
        switch fs(req).ioctl(Request(req!), ino: UInt64(ino), command: cmd, input: input, outputSize: outSize) {
        case .success(let bytes):
            let n = min(bytes.count, outSize)
            _ = bytes.withUnsafeBytes { fuse_reply_ioctl(req, 0, n > 0 ? $0.baseAddress : nil, n) }
        case .failure(let e): fuse_reply_err(req, e.rawValue)
        }
    }
    ops.lseek = { req, ino, off, whence, fi in
        switch fs(req).lseek(Request(req!), ino: UInt64(ino), offset: Int64(off), whence: whence, handle: handle(fi)) {
        case .success(let o): fuse_reply_lseek(req, off_t(o))
        case .failure(let e): fuse_reply_err(req, e.rawValue)
        }
    }
    ops.copy_file_range = { req, inoIn, offIn, fiIn, inoOut, offOut, fiOut, len, flags in
        switch fs(req).copyFileRange(Request(req!), inoIn: UInt64(inoIn), offsetIn: Int64(offIn), handleIn: handle(fiIn),
                                     inoOut: UInt64(inoOut), offsetOut: Int64(offOut), handleOut: handle(fiOut),
                                     length: len, flags: flags) {
        case .success(let n): fuse_reply_write(req, n)
        case .failure(let e): fuse_reply_err(req, e.rawValue)
        }
    }
    return ops
}

/// Why a session could not start, with a message fit for one line on stderr.
public struct SessionError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// One FUSE session: create, mount, run the multithreaded loop, unmount.
public final class Session {
    /// The session being served (for requests that wait: they stop when it exits).
    nonisolated(unsafe) static var active: OpaquePointer?
    private let box: SessionBox
    private var session: OpaquePointer?
    private var args: UnsafeMutablePointer<fuse_args>?
    private var argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>
    private var argc: Int32
    private var mounted = false
    /// The kernel-cache notifier of this session (running while mounted).
    public private(set) var kernelCache: KernelCache?
    /// Backing files for passthrough opens (usable once the connection has it).
    public private(set) var backingFiles: BackingFiles?

    /// `options` are libfuse `-o` options (e.g. "default_permissions", "fsname=ksmfs").
    public init(filesystem: any FileSystem, options: [String], debug: Bool) throws {
        box = SessionBox(filesystem)
        var words = ["ksmfs"]
        if !options.isEmpty { words += ["-o", options.joined(separator: ",")] }
        if debug { words.append("-d") }
        argc = Int32(words.count)
        argv = .allocate(capacity: words.count + 1)
        for (i, w) in words.enumerated() { argv[i] = strdup(w) }
        argv[words.count] = nil
        args = cfuse_args_new(argc, argv)
        var ops = makeOperations()
        let userdata = Unmanaged.passUnretained(box).toOpaque()
        session = fuse_session_new(args, &ops, MemoryLayout<fuse_lowlevel_ops>.size, userdata)
        if session == nil { throw SessionError("could not create the FUSE session (bad FUSE option?)") }
    }

    /// What a stop signal did: refused while files were open, forced (a second signal within
    /// the grace period), or a clean stop of an idle mount.
    public enum StopEvent {
        case refused(signal: Int32, openHandles: Int)
        case forced(signal: Int32, openHandles: Int)
        case clean(signal: Int32)
        /// The last open handle was closed after a refused signal: stopping now.
        case idle
    }
    /// A second stop signal within this many seconds of a refused one forces the stop.
    public static let forceWithin = 10
    /// Called (on a thread of its own, never in the signal handler) for each stop signal.
    public var onStopSignal: ((StopEvent) -> Void)?
    private var reporter = pthread_t()
    private var reporting = false

    /// Handles that make the mount busy (a filesystem counts them with `handleOpened` and
    /// `handleClosed`: open files and directories that hold data, not status files).
    public static var openHandles: Int { cfuse_open_handle_count() }
    public static func handleOpened() { cfuse_handle_opened() }
    public static func handleClosed() { cfuse_handle_closed() }

    /// Mounts at `path` (`fuse_session_mount`) and installs SIGINT/SIGTERM/SIGHUP handlers:
    /// the loop ends (so the caller unmounts cleanly) unless files are open, in which case the
    /// first signal is refused, as `umount` of a busy filesystem is.
    public func mount(at path: String) throws {
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
        signal(SIGHUP, SIG_DFL)
        if cfuse_install_stop_handlers(session, Int32(Session.forceWithin * 1000)) != 0 { throw SessionError("could not install signal handlers") }
        if fuse_session_mount(session, path) != 0 {
            cfuse_remove_stop_handlers()
            throw SessionError("mounting \(path) failed (see the message above)")
        }
        mounted = true
        Session.active = session
        if cfuse_enable_killpriv_v2(session) != 0 { throw SessionError("could not set up the session's I/O") }
        kernelCache = KernelCache(session: session!)
        backingFiles = BackingFiles(session: session!)
    }

    /// Detaches from the terminal unless `foreground` (`fuse_daemonize`).
    public func daemonize(foreground: Bool) -> Bool { fuse_daemonize(foreground ? 1 : 0) == 0 }

    /// Runs until unmounted or signalled. Returns 0 on a clean end.
    /// The notifier thread starts here, after any `daemonize` (a fork keeps no threads).
    public func run(maxThreads: Int) -> Int32 {
        kernelCache?.start()
        startReporter()
        let rc = cfuse_session_loop_mt(session, UInt32(max(1, maxThreads)), 0)
        stopReporter()
        return rc
    }

    private func startReporter() {
        guard onStopSignal != nil else { return }
        reporting = true
        pthread_create(&reporter, nil, { arg in
            let s = Unmanaged<Session>.fromOpaque(arg!).takeUnretainedValue()
            while true {
                var sig: Int32 = 0
                var busy = 0
                let event = cfuse_wait_stop_event(&sig, &busy)
                switch Int(event) {
                case Int(CFUSE_STOP_REFUSED): s.onStopSignal?(.refused(signal: sig, openHandles: busy))
                case Int(CFUSE_STOP_FORCED): s.onStopSignal?(.forced(signal: sig, openHandles: busy))
                case Int(CFUSE_STOP_CLEAN): s.onStopSignal?(.clean(signal: sig))
                case Int(CFUSE_STOP_IDLE): s.onStopSignal?(.idle)
                case Int(CFUSE_STOP_QUIT): return nil
                default: continue
                }
            }
        }, Unmanaged.passUnretained(self).toOpaque())
    }

    private func stopReporter() {
        guard reporting else { return }
        reporting = false
        cfuse_post_stop_event(Int32(CFUSE_STOP_QUIT))
        pthread_join(reporter, nil)
    }

    /// Asks the loop to end (from any thread).
    public func exit() { fuse_session_exit(session) }

    public func unmount() {
        guard mounted else { return }
        kernelCache?.stop()
        cfuse_remove_stop_handlers()
        fuse_session_unmount(session)
        mounted = false
    }

    deinit {
        unmount()
        if let session { fuse_session_destroy(session) }
        cfuse_args_free(args)
    }
}
