// The ksmfs filesystem: a tmpfs-like tree of inodes whose regular files keep their pages in
// the engine's block arena. The kernel enforces permissions (default_permissions), sticky
// directories and suid/sgid clearing; this file does what a local filesystem must do itself:
// names, link counts, timestamps, setgid inheritance, capacity, and the operations' errno.
import FUSE
import Glibc
import KSM
import Logging
import Synchronization

public struct FileSystemOptions: Sendable {
    public var capacityBytes: Int
    public var maxInodes: Int
    public var rootMode: mode_t = 0o1777
    public var rootUID: uid_t = 0
    public var rootGID: gid_t = 0
    public var readOnly = false
    /// Whether new files are mergeable by default (`-o merge=all|none`).
    public var mergeByDefault = true
    /// Whether other users may use the mount (`allow_other`): decides who may write tunables.
    public var allowOther = false
    /// The uid that mounted the filesystem.
    public var mountOwner: uid_t = getuid()
    public var writebackCache = true
    /// Identical immutable files share one page cache through FUSE passthrough
    /// (`-o share_immutable`; the connection then has no writeback cache).
    public var shareImmutable = false
    /// Where the filesystem is mounted (labels in ksm/metrics).
    public var mountpoint = ""

    public init(capacityBytes: Int, maxInodes: Int) {
        self.capacityBytes = capacityBytes
        self.maxInodes = maxInodes
    }
}

public final class MemoryFileSystem: FileSystem, @unchecked Sendable {
    public static let nameMax = 255
    public static let symlinkMax = 4095

    public let options: FileSystemOptions
    public let arena: BlockArena
    public let engine: KSMEngine
    let logger: Logger
    /// Serializes namespace changes (create, link, unlink, rename, ...).
    let namespace = Mutex()
    private let tableLock = ReadWriteLock()
    private var table: [UInt64: Inode] = [:]
    private var nextIno: UInt64 = 2
    private var inodeCount = 0
    /// nr_inodes (guarded by `tableLock`; a remount changes it).
    private(set) var maxInodes: Int
    /// Inodes freed since malloc last gave memory back (see `removeLocked`).
    private var freedSinceTrim = 0
    let root: Inode
    var controlDirectory: Inode!
    /// Where cache invalidations go (the session's notifier thread); set before serving.
    public var kernelCache: KernelCache? { didSet { connectPageCacheDrop() } }
    /// The session's backing files, for the shared page cache of identical immutable files.
    public var backingFiles: BackingFiles? { didSet { sharing?.backing = backingFiles } }
    /// Identical immutable files sharing one page cache, with `-o share_immutable`.
    let sharing: ImmutableSharing?
    /// Measures the page cache the kernel holds for the files (for metrics and status).
    let probe = PageCacheProbe()
    /// How long the kernel may keep names, missing names and attributes without asking.
    /// ksmfs is the only writer of its namespace: every change but the few it makes on its
    /// own comes through the kernel, which updates or drops its copy, and for those few
    /// (atime of a listed directory or a read symlink, set-id bits a write clears) ksmfs
    /// tells it (`kernelCache`).
    public static let cacheSeconds: Double = 86_400
    public var negativeEntryTimeout: Double { MemoryFileSystem.cacheSeconds }
    /// Whether writes are admitted one by one (see Capacity.swift), and below how many
    /// available blocks that starts (0: never; set before serving).
    let nearlyFull = Atomic<Bool>(false)
    var nearlyFullBelow = 0

    public init(options: FileSystemOptions, logger: Logger = Logger(label: "ksmfs")) {
        self.options = options
        self.logger = logger
        sharing = options.shareImmutable ? ImmutableSharing(logger: logger) : nil
        let blocks = max(1, options.capacityBytes / BlockArena.pageSize)
        // Room to grow by remount up to the machine's RAM (address space only: NORESERVE), unless
        // the process may not have that much address space (ulimit -v): then the size it has.
        var growable = MemoryFileSystem.growableBlocks(capacityBlocks: blocks)
        if growable > blocks && BlockArena.reservationError(capacityBlocks: growable) != nil { growable = blocks }
        arena = BlockArena(capacityBlocks: blocks, growableTo: growable)
        maxInodes = options.maxInodes
        engine = KSMEngine(arena: arena)
        root = Inode(ino: 1, mode: S_IFDIR | (options.rootMode & 0o7777), uid: options.rootUID, gid: options.rootGID,
                     kind: .directory(Directory(parent: 1)))
        root.lookups = 1 << 62
        table[1] = root
        inodeCount = 1
        controlDirectory = makeControlDirectory()
    }

    /// Why a filesystem of `capacityBytes` could not be set up (its arena's address space), or nil.
    public static func reservationError(capacityBytes: Int) -> String? {
        BlockArena.reservationError(capacityBlocks: max(1, capacityBytes / BlockArena.pageSize))
    }

    /// The most blocks a remount may grow a mount of `capacityBlocks` to: the RAM's pages, or
    /// the capacity if larger (what fits in the arena's 32-bit block ids).
    static func growableBlocks(capacityBlocks: Int) -> Int {
        max(capacityBlocks, min(MountOptions.physicalMemory / BlockArena.pageSize, (1 << 32) - 8192))
    }

    // MARK: inode table

    func inode(_ ino: UInt64) -> Inode? {
        tableLock.withShared { table[ino] }
    }

    func get(_ ino: UInt64) -> Result<Inode, Errno> {
        if let i = inode(ino) { return .success(i) }
        return .failure(.noent)
    }

    /// Creates an inode counted against nr_inodes (or not, for control files).
    func newInode(mode: mode_t, uid: uid_t, gid: gid_t, kind: InodeKind, counted: Bool = true) -> Inode? {
        tableLock.withExclusive {
            if counted && inodeCount >= maxInodes { return nil }
            let ino = nextIno
            nextIno += 1
            let inode = Inode(ino: ino, mode: mode, uid: uid, gid: gid, kind: kind)
            table[ino] = inode
            if counted { inodeCount += 1 }
            return inode
        }
    }

    var usedInodes: Int { tableLock.withShared { inodeCount } }

    /// Sets nr_inodes (remount); false if more inodes are in use.
    func setMaxInodes(_ n: Int) -> Bool {
        tableLock.withExclusive {
            guard n >= inodeCount else { return false }
            maxInodes = n
            return true
        }
    }

    /// Regular files the kernel holds a lookup reference on.
    func inodesKernelHolds() -> [Inode] {
        tableLock.withShared { table.values.filter { $0.lookups > 0 && $0.file != nil } }
    }

    /// Inodes in use (the root counts) and bytes of data held (shared blocks once).
    public var contents: (inodes: Int, bytes: Int) { (usedInodes, arena.used * BlockArena.pageSize) }

    /// Regular files that some handle has open for cached writing.
    func cachedWriterInodes() -> [UInt64] {
        tableLock.withShared {
            table.values.compactMap { i in
                guard i.file != nil else { return nil }
                return i.meta.withLock { i.cachedWriters } > 0 ? i.ino : nil
            }
        }
    }

    /// Counts one kernel reference for an entry handed out.
    func remember(_ inode: Inode) -> Entry {
        tableLock.withExclusive { inode.lookups += 1 }
        return entry(inode)
    }

    func entry(_ inode: Inode) -> Entry {
        let st = inode.attributes()
        let timeout: Double
        if case .control = inode.kind { timeout = 0 } else { timeout = attributeTimeout(for: st) }
        return Entry(attributes: st, attributeTimeout: timeout, entryTimeout: MemoryFileSystem.cacheSeconds)
    }

    public func forget(ino: UInt64, lookups: UInt64) {
        guard ino != 1 else { return }
        var dropped: Inode?
        var trim = false
        tableLock.withExclusive {
            guard let inode = table[ino] else { return }
            inode.lookups = inode.lookups >= lookups ? inode.lookups - lookups : 0
            if inode.lookups == 0 && inode.meta.withLock({ inode.nlink }) == 0 {
                trim = removeLocked(inode)
                dropped = inode
            }
        }
        if let dropped { discard(dropped, trim: trim) }
    }

    /// An inode whose last name went away: free it now if the kernel holds no reference.
    func unlinked(_ inode: Inode) {
        var dropped = false
        var trim = false
        tableLock.withExclusive {
            if inode.lookups == 0 && inode.meta.withLock({ inode.nlink }) == 0 && table[inode.ino] != nil {
                trim = removeLocked(inode)
                dropped = true
            }
        }
        if dropped { discard(inode, trim: trim) }
    }

    /// Takes `inode` out of the table (tableLock held). Returns whether malloc should give
    /// memory back now: every FUSE worker thread allocates from its own malloc arena, and an
    /// arena gives back only its top, so after many files are deleted the memory of their
    /// inodes, names and page maps stays resident in the middle of the arenas. Trimming every
    /// 4,096 freed inodes returns it (the daemon's RSS falls after `rm -r`, as tmpfs's slab
    /// memory does), at well under a millisecond per thousand files.
    private func removeLocked(_ inode: Inode) -> Bool {
        table.removeValue(forKey: inode.ino)
        if case .control = inode.kind {} else { inodeCount -= 1 }
        freedSinceTrim += 1
        guard freedSinceTrim >= 4096 else { return false }
        freedSinceTrim = 0
        return true
    }

    private func discard(_ inode: Inode, trim: Bool) {
        if let f = inode.file {
            sharing?.forget(inode.ino)
            engine.unregister(f)
            f.releaseAll()
        }
        if trim { BlockArena.trimHeap() }
    }

    // MARK: helpers

    static func validName(_ name: Name) -> Errno? {
        if name.count > nameMax { return .nametoolong }
        if name.isEmpty || name == "." || name == ".." { return .inval }
        return nil
    }

    func directory(_ ino: UInt64) -> Result<(Inode, Directory), Errno> {
        guard let inode = inode(ino) else { return .failure(.noent) }
        guard let d = inode.directory else { return .failure(.notdir) }
        return .success((inode, d))
    }

    func writable() -> Errno? { options.readOnly ? .rofs : nil }

    // MARK: FileSystem

    public func connectionSettings() -> ConnectionSettings {
        var s = ConnectionSettings()
        s.writebackCache = options.writebackCache
        s.passthrough = sharing != nil
        return s
    }

    public func passthroughDecided(_ decision: PassthroughDecision) {
        switch decision {
        case .on:
            sharing?.enabled.store(true, ordering: .relaxed)
            logger.info("share_immutable: identical immutable files share one page cache (FUSE passthrough; no writeback cache on this mount)")
        case .off(let reason):
            logger.notice("share_immutable is off: \(reason); the mount works as without it")
        }
    }

    public func destroy() {
        engine.stop()
    }

    public func lookup(_ r: Request, parent: UInt64, name: Name) -> Result<Entry, Errno> {
        if name.count > MemoryFileSystem.nameMax { return .failure(.nametoolong) }
        return namespace.withLock {
            directory(parent).flatMap { (dirInode, dir) in
                if name == "." { return .success(remember(dirInode)) }
                if name == ".." { return get(dir.parent).map(remember) }
                guard let child = dir.lookup(name) else { return .failure(.noent) }
                return .success(remember(child))
            }
        }
    }

    public func getattr(_ r: Request, ino: UInt64, handle: UInt64?) -> Result<stat, Errno> {
        // Before a cached write() while nearly full: refuse it if nothing is available.
        if refusesCachedWrite(handle) { return .failure(.nospc) }
        return get(ino).map { $0.attributes() }
    }

    public func statfs(_ r: Request, ino: UInt64) -> Result<statvfs, Errno> {
        var sv = statvfs()
        sv.f_bsize = UInt(BlockArena.pageSize)
        sv.f_frsize = UInt(BlockArena.pageSize)
        sv.f_blocks = UInt(arena.capacity)
        sv.f_bfree = UInt(arena.free)
        sv.f_bavail = UInt(arena.available)
        let (limit, used) = tableLock.withShared { (maxInodes, inodeCount) }
        sv.f_files = UInt(limit)
        sv.f_ffree = UInt(max(0, limit - used))
        sv.f_favail = sv.f_ffree
        sv.f_namemax = UInt(MemoryFileSystem.nameMax)
        return .success(sv)
    }

    public func access(_ r: Request, ino: UInt64, mask: Int32) -> Errno? {
        guard let inode = inode(ino) else { return .noent }
        if mask & W_OK != 0 && options.readOnly { return .rofs }
        if r.uid == 0 {
            if mask & X_OK != 0 && !inode.isDirectory && inode.meta.withLock({ inode.mode }) & 0o111 == 0 { return .acces }
            return nil
        }
        let (mode, uid, gid) = inode.meta.withLock { (inode.mode, inode.uid, inode.gid) }
        let bits: mode_t
        if r.uid == uid { bits = (mode >> 6) & 7 }
        else if r.gid == gid || r.groups().contains(gid) { bits = (mode >> 3) & 7 }
        else { bits = mode & 7 }
        return mode_t(mask) & ~bits & 7 == 0 ? nil : .acces
    }
}
