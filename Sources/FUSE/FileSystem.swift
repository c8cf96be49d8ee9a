// The operations protocol of the low-level FUSE API, in Swift. A filesystem implements
// `FileSystem`; every request is answered exactly once because an operation either returns a
// value (the session replies with it) or consumes a noncopyable reply. Operations that a
// filesystem does not implement answer ENOSYS through the default implementations below.
import CFuse3
import Glibc

/// Who sent a request: the caller's credentials, taken from `fuse_req_ctx`.
public struct Request {
    public let raw: fuse_req_t
    public init(_ raw: fuse_req_t) { self.raw = raw }
    public var uid: uid_t { cfuse_req_uid(raw) }
    public var gid: gid_t { cfuse_req_gid(raw) }
    public var pid: pid_t { cfuse_req_pid(raw) }
    public var umask: mode_t { cfuse_req_umask(raw) }

    /// Whether the caller gave up on this request (a signal interrupted it), or the session is
    /// ending: a long-running reply should stop waiting.
    public var shouldStop: Bool {
        if fuse_req_interrupted(raw) != 0 { return true }
        guard let se = Session.active else { return false }
        return fuse_session_exited(se) != 0
    }

    /// Supplementary groups of the caller (`fuse_req_getgroups`), empty if unavailable.
    public func groups() -> [gid_t] {
        var buf = [gid_t](repeating: 0, count: 64)
        let n = fuse_req_getgroups(raw, Int32(buf.count), &buf)
        if n <= 0 { return [] }
        if Int(n) > buf.count {
            buf = [gid_t](repeating: 0, count: Int(n))
            let m = fuse_req_getgroups(raw, Int32(buf.count), &buf)
            if m <= 0 { return [] }
            return Array(buf.prefix(Int(min(m, n))))
        }
        return Array(buf.prefix(Int(n)))
    }
}

/// A name lookup's answer: the inode, its attributes, and how long the kernel may cache them.
public struct Entry {
    public var attributes: stat
    public var generation: UInt64 = 0
    public var attributeTimeout: Double
    public var entryTimeout: Double
    public init(attributes: stat, attributeTimeout: Double = 1, entryTimeout: Double = 1) {
        self.attributes = attributes
        self.attributeTimeout = attributeTimeout
        self.entryTimeout = entryTimeout
    }
}

/// How an opened file is to be cached by the kernel.
public struct OpenReply {
    public var handle: UInt64
    public var directIO: Bool
    public var keepCache: Bool
    public var nonSeekable: Bool
    /// A backing file id (`BackingFiles.open`): reads and mmaps of this open go to it (passthrough).
    public var backingID: Int32 = 0
    public init(handle: UInt64 = 0, directIO: Bool = false, keepCache: Bool = false, nonSeekable: Bool = false) {
        self.handle = handle
        self.directIO = directIO
        self.keepCache = keepCache
        self.nonSeekable = nonSeekable
    }
}

/// Which attributes a `setattr` changes (the `FUSE_SET_ATTR_*` mask, spelled out).
public struct SetAttributes {
    public var mode: mode_t?
    public var uid: uid_t?
    public var gid: gid_t?
    public var size: UInt64?
    public var atime: TimeChange
    public var mtime: TimeChange
    public var ctime: timespec?
    public var handle: UInt64?
    /// FATTR_KILL_SUIDGID (the kernel asks the filesystem to drop suid/sgid: a truncate by a
    /// caller without CAP_FSETID, under FUSE_HANDLE_KILLPRIV_V2).
    public var killSuidGid = false

    public enum TimeChange { case unchanged, now, set(timespec) }

    public init(stat st: stat, mask: Int32, handle: UInt64?) {
        mode = mask & FUSE_SET_ATTR_MODE != 0 ? st.st_mode : nil
        uid = mask & FUSE_SET_ATTR_UID != 0 ? st.st_uid : nil
        gid = mask & FUSE_SET_ATTR_GID != 0 ? st.st_gid : nil
        size = mask & FUSE_SET_ATTR_SIZE != 0 ? UInt64(bitPattern: Int64(st.st_size)) : nil
        if mask & FUSE_SET_ATTR_ATIME_NOW != 0 { atime = .now }
        else if mask & FUSE_SET_ATTR_ATIME != 0 { atime = .set(st.st_atim) }
        else { atime = .unchanged }
        if mask & FUSE_SET_ATTR_MTIME_NOW != 0 { mtime = .now }
        else if mask & FUSE_SET_ATTR_MTIME != 0 { mtime = .set(st.st_mtim) }
        else { mtime = .unchanged }
        ctime = mask & FUSE_SET_ATTR_CTIME != 0 ? st.st_ctim : nil
        killSuidGid = mask & FUSE_SET_ATTR_KILL_SUID != 0
        self.handle = handle
    }

    public init() { atime = .unchanged; mtime = .unchanged }
}

/// What the filesystem wants from the kernel connection, decided in `initialize`.
public struct ConnectionSettings {
    public var writebackCache = true
    public var maxWrite: UInt32 = 1 << 20
    public var maxRead: UInt32 = 0
    public var maxReadahead: UInt32 = 1 << 20
    /// FUSE passthrough wanted: if the kernel and the daemon's privileges allow it, the
    /// connection gets it instead of the writeback cache (`FileSystem.passthroughDecided`).
    public var passthrough = false
    public init() {}
}

/// The low-level FUSE operations. `ino` values are FUSE node ids (1 is the root).
public protocol FileSystem: AnyObject {
    func connectionSettings() -> ConnectionSettings
    /// What became of `ConnectionSettings.passthrough` (called at INIT, only when it was asked).
    func passthroughDecided(_ decision: PassthroughDecision)
    func destroy()

    func lookup(_ r: Request, parent: UInt64, name: Name) -> Result<Entry, Errno>
    /// How long the kernel may remember that a name does not exist (0: it asks every time).
    var negativeEntryTimeout: Double { get }
    func forget(ino: UInt64, lookups: UInt64)
    /// `handle` is the file handle when the kernel asks on behalf of an open file (a `write`
    /// or `read` with the writeback cache, FUSE_GETATTR_FH).
    func getattr(_ r: Request, ino: UInt64, handle: UInt64?) -> Result<stat, Errno>
    /// How long the kernel may cache `attributes` (getattr and setattr replies).
    func attributeTimeout(for attributes: stat) -> Double
    func setattr(_ r: Request, ino: UInt64, _ change: SetAttributes) -> Result<stat, Errno>
    func readlink(_ r: Request, ino: UInt64) -> Result<Name, Errno>
    func mknod(_ r: Request, parent: UInt64, name: Name, mode: mode_t, rdev: dev_t) -> Result<Entry, Errno>
    func mkdir(_ r: Request, parent: UInt64, name: Name, mode: mode_t) -> Result<Entry, Errno>
    func unlink(_ r: Request, parent: UInt64, name: Name) -> Errno?
    func rmdir(_ r: Request, parent: UInt64, name: Name) -> Errno?
    func symlink(_ r: Request, target: Name, parent: UInt64, name: Name) -> Result<Entry, Errno>
    func rename(_ r: Request, parent: UInt64, name: Name, newParent: UInt64, newName: Name, flags: UInt32) -> Errno?
    func link(_ r: Request, ino: UInt64, newParent: UInt64, newName: Name) -> Result<Entry, Errno>
    func open(_ r: Request, ino: UInt64, flags: Int32) -> Result<OpenReply, Errno>
    func create(_ r: Request, parent: UInt64, name: Name, mode: mode_t, flags: Int32) -> Result<(Entry, OpenReply), Errno>
    func read(_ r: Request, ino: UInt64, size: Int, offset: Int64, handle: UInt64, reply: consuming ReadReply)
    func write(_ r: Request, ino: UInt64, data: UnsafeRawBufferPointer, offset: Int64, handle: UInt64, flags: Int32, writepage: Bool) -> Result<Int, Errno>
    func flush(_ r: Request, ino: UInt64, handle: UInt64) -> Errno?
    func release(_ r: Request, ino: UInt64, handle: UInt64, flags: Int32) -> Errno?
    func fsync(_ r: Request, ino: UInt64, dataOnly: Bool, handle: UInt64) -> Errno?
    func opendir(_ r: Request, ino: UInt64, flags: Int32) -> Result<OpenReply, Errno>
    func readdir(_ r: Request, ino: UInt64, offset: Int64, handle: UInt64, into buffer: inout DirectoryBuffer) -> Errno?
    func releasedir(_ r: Request, ino: UInt64, handle: UInt64) -> Errno?
    func fsyncdir(_ r: Request, ino: UInt64, dataOnly: Bool, handle: UInt64) -> Errno?
    func statfs(_ r: Request, ino: UInt64) -> Result<statvfs, Errno>
    func setxattr(_ r: Request, ino: UInt64, name: Name, value: UnsafeRawBufferPointer, flags: Int32) -> Errno?
    func getxattr(_ r: Request, ino: UInt64, name: Name, size: Int) -> Result<XattrReply, Errno>
    func listxattr(_ r: Request, ino: UInt64, size: Int) -> Result<XattrReply, Errno>
    func removexattr(_ r: Request, ino: UInt64, name: Name) -> Errno?
    func access(_ r: Request, ino: UInt64, mask: Int32) -> Errno?
    func fallocate(_ r: Request, ino: UInt64, mode: Int32, offset: Int64, length: Int64, handle: UInt64) -> Errno?
    func lseek(_ r: Request, ino: UInt64, offset: Int64, whence: Int32, handle: UInt64) -> Result<Int64, Errno>
    /// A restricted ioctl `command` with its input bytes; the output bytes (at most `outputSize`).
    func ioctl(_ r: Request, ino: UInt64, command: UInt32, input: UnsafeRawBufferPointer, outputSize: Int) -> Result<[UInt8], Errno>
    func copyFileRange(_ r: Request, inoIn: UInt64, offsetIn: Int64, handleIn: UInt64,
                       inoOut: UInt64, offsetOut: Int64, handleOut: UInt64, length: Int, flags: Int32) -> Result<Int, Errno>
}

/// The answer to getxattr/listxattr: the size alone (when the caller asked with size 0) or the bytes.
public enum XattrReply {
    case size(Int)
    case data([UInt8])
}

extension FileSystem {
    public func connectionSettings() -> ConnectionSettings { ConnectionSettings() }
    public func passthroughDecided(_ decision: PassthroughDecision) {}
    public func destroy() {}
    public func forget(ino: UInt64, lookups: UInt64) {}
    public var negativeEntryTimeout: Double { 0 }
    public func attributeTimeout(for attributes: stat) -> Double { 1 }
    public func setattr(_ r: Request, ino: UInt64, _ change: SetAttributes) -> Result<stat, Errno> { .failure(.nosys) }
    public func readlink(_ r: Request, ino: UInt64) -> Result<Name, Errno> { .failure(.nosys) }
    public func mknod(_ r: Request, parent: UInt64, name: Name, mode: mode_t, rdev: dev_t) -> Result<Entry, Errno> { .failure(.nosys) }
    public func mkdir(_ r: Request, parent: UInt64, name: Name, mode: mode_t) -> Result<Entry, Errno> { .failure(.nosys) }
    public func unlink(_ r: Request, parent: UInt64, name: Name) -> Errno? { .nosys }
    public func rmdir(_ r: Request, parent: UInt64, name: Name) -> Errno? { .nosys }
    public func symlink(_ r: Request, target: Name, parent: UInt64, name: Name) -> Result<Entry, Errno> { .failure(.nosys) }
    public func rename(_ r: Request, parent: UInt64, name: Name, newParent: UInt64, newName: Name, flags: UInt32) -> Errno? { .nosys }
    public func link(_ r: Request, ino: UInt64, newParent: UInt64, newName: Name) -> Result<Entry, Errno> { .failure(.nosys) }
    public func create(_ r: Request, parent: UInt64, name: Name, mode: mode_t, flags: Int32) -> Result<(Entry, OpenReply), Errno> { .failure(.nosys) }
    public func flush(_ r: Request, ino: UInt64, handle: UInt64) -> Errno? { nil }
    public func release(_ r: Request, ino: UInt64, handle: UInt64, flags: Int32) -> Errno? { nil }
    public func fsync(_ r: Request, ino: UInt64, dataOnly: Bool, handle: UInt64) -> Errno? { nil }
    public func opendir(_ r: Request, ino: UInt64, flags: Int32) -> Result<OpenReply, Errno> { .success(OpenReply()) }
    public func releasedir(_ r: Request, ino: UInt64, handle: UInt64) -> Errno? { nil }
    public func fsyncdir(_ r: Request, ino: UInt64, dataOnly: Bool, handle: UInt64) -> Errno? { nil }
    public func setxattr(_ r: Request, ino: UInt64, name: Name, value: UnsafeRawBufferPointer, flags: Int32) -> Errno? { .nosys }
    public func getxattr(_ r: Request, ino: UInt64, name: Name, size: Int) -> Result<XattrReply, Errno> { .failure(.nosys) }
    public func listxattr(_ r: Request, ino: UInt64, size: Int) -> Result<XattrReply, Errno> { .failure(.nosys) }
    public func removexattr(_ r: Request, ino: UInt64, name: Name) -> Errno? { .nosys }
    public func access(_ r: Request, ino: UInt64, mask: Int32) -> Errno? { nil }
    public func fallocate(_ r: Request, ino: UInt64, mode: Int32, offset: Int64, length: Int64, handle: UInt64) -> Errno? { .nosys }
    public func lseek(_ r: Request, ino: UInt64, offset: Int64, whence: Int32, handle: UInt64) -> Result<Int64, Errno> { .failure(.nosys) }
    public func ioctl(_ r: Request, ino: UInt64, command: UInt32, input: UnsafeRawBufferPointer, outputSize: Int) -> Result<[UInt8], Errno> { .failure(Errno(ENOTTY)) }
    public func copyFileRange(_ r: Request, inoIn: UInt64, offsetIn: Int64, handleIn: UInt64,
                              inoOut: UInt64, offsetOut: Int64, handleOut: UInt64, length: Int, flags: Int32) -> Result<Int, Errno> { .failure(.nosys) }
}
