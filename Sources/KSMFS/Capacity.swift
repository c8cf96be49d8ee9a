// Capacity without data loss under the writeback cache. The kernel tells a writer its
// `write()` succeeded as soon as the bytes are in its page cache; ksmfs sees them later, as
// writeback. So (1) the top `reserve` blocks of `size=` are kept for that writeback: new data
// (direct writes, fallocate, copies, and cached writes admitted below) stops short of it, and
// the kernel's dirty data for the mount is capped below it (the bdi's max_bytes); (2) when
// the mount is nearly full, writes are admitted one by one: new opens for writing use direct
// I/O (ENOSPC at `write()`, exactly as tmpfs), and files already open for cached writing get
// their attributes invalidated with a zero timeout, so each `write()` asks first (GETATTR with
// the file handle) and is refused with ENOSPC once nothing is available. statfs shows the
// reserve as ext4 shows its reserved blocks: f_bfree counts it, f_bavail does not.
import FUSE
import Glibc
import KSM

/// What a regular file's open handle is, carried in its FUSE file handle.
struct FileHandle {
    static let regularFlag: UInt64 = 1 << 62
    static let writableFlag: UInt64 = 1
    static let directFlag: UInt64 = 2
    static let passthroughFlag: UInt64 = 4
    static let probeFlag: UInt64 = 8

    let raw: UInt64
    init(raw: UInt64) { self.raw = raw }
    init(writable: Bool, direct: Bool) {
        raw = FileHandle.regularFlag | (writable ? FileHandle.writableFlag : 0) | (direct ? FileHandle.directFlag : 0)
    }
    var isRegular: Bool { raw & FileHandle.regularFlag != 0 }
    var writable: Bool { isRegular && raw & FileHandle.writableFlag != 0 }
    var direct: Bool { isRegular && raw & FileHandle.directFlag != 0 }
    /// Reads and mmaps of this open go to a shared backing file (ImmutableSharing.swift).
    var passthrough: Bool { isRegular && raw & FileHandle.passthroughFlag != 0 }
    /// Opened by the page-cache probe (PageCacheProbe.swift): does not keep the mount busy.
    var probe: Bool { isRegular && raw & FileHandle.probeFlag != 0 }
    /// Writes through this handle reach ksmfs only as writeback (not one by one).
    var cachedWriter: Bool { writable && !direct }
}

/// The reserve for the kernel's dirty data, and the limit asked of the kernel for it.
public struct CapacityReserve: Sendable, Equatable {
    /// The most dirty (and in-writeback) bytes the kernel should hold for the mount.
    public let dirtyLimitBytes: Int
    /// Blocks kept for writeback.
    public let blocks: Int

    /// The dirty limit to ask of the kernel for a mount of `capacityBytes`: 1/16 of it, between
    /// 1 MiB and 64 MiB (the kernel's own default for a FUSE mount here is about 48 MiB; less
    /// than a few MiB slows large writes, measured: 4 MiB halves them).
    public static func dirtyLimit(forCapacity capacityBytes: Int) -> Int {
        min(64 << 20, max(1 << 20, capacityBytes / 16))
    }

    /// The reserve for a kernel dirty limit: twice the limit (the kernel overshoots it by
    /// each writer's rate-limit batch) plus 2 MiB for write() calls in flight, at most a quarter
    /// of the capacity.
    public init(capacityBytes: Int, dirtyLimitBytes: Int) {
        self.dirtyLimitBytes = dirtyLimitBytes
        let want = 2 * dirtyLimitBytes + (2 << 20)
        blocks = min(capacityBytes / 4, want) / BlockArena.pageSize
    }
}

extension MemoryFileSystem {
    /// Sets the reserve once the kernel's dirty limit for the mount is known (the daemon calls
    /// this after mounting; without the writeback cache there is nothing to reserve).
    /// `atLeast`: blocks the reserve keeps however small the new one is (a remount's shrink).
    public func configureReserve(_ reserve: CapacityReserve, atLeast: Int = 0) {
        guard options.writebackCache else { return }
        arena.setReserve(max(reserve.blocks, atLeast))
        nearlyFullBelow = max(256, arena.reserve)
        updateFullness()
    }

    /// Enters or leaves the nearly-full state (with hysteresis) from the available blocks.
    func updateFullness() {
        guard options.writebackCache, nearlyFullBelow > 0 else { return }
        let available = arena.available
        if !nearlyFull.load(ordering: .relaxed) {
            guard available < nearlyFullBelow,
                  nearlyFull.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged else { return }
            // From now on every attribute reply has a zero timeout; make the kernel drop what it
            // cached for files open for cached writing, so their next write() asks.
            let writers = cachedWriterInodes()
            logger.debug("nearly full (\(available) blocks available): writes admitted one by one, \(writers.count) files open for cached writing")
            kernelCache?.invalidateAttributes(writers)
        } else if available > nearlyFullBelow + nearlyFullBelow / 2 {
            nearlyFull.store(false, ordering: .relaxed)
        }
    }

    /// Whether a cached write through `handle` must be refused now (GETATTR with the handle
    /// comes before each such write() while the mount is nearly full).
    func refusesCachedWrite(_ handle: UInt64?) -> Bool {
        guard let handle, FileHandle(raw: handle).cachedWriter else { return false }
        updateFullness()
        return nearlyFull.load(ordering: .relaxed) && arena.available == 0
    }

    /// The open handle and kernel caching for a regular file opened with `flags`.
    func openRegular(_ inode: Inode, flags: Int32, backingID: Int32 = 0, probe: Bool = false) -> OpenReply {
        if !probe { Session.handleOpened() }
        inode.meta.withLock { inode.openHandles += 1 }
        let probeBit = probe ? FileHandle.probeFlag : 0
        if backingID > 0 {
            // The kernel refuses keep_cache with passthrough; it reads the backing file.
            var reply = OpenReply(handle: FileHandle(writable: false, direct: false).raw | FileHandle.passthroughFlag | probeBit)
            reply.backingID = backingID
            return reply
        }
        if probe { return OpenReply(handle: FileHandle(writable: false, direct: false).raw | probeBit, keepCache: true) }
        let writable = flags & O_ACCMODE != O_RDONLY
        var direct = false
        if writable {
            updateFullness()
            direct = nearlyFull.load(ordering: .relaxed)
            if !direct { inode.meta.withLock { inode.cachedWriters += 1 } }
        }
        return OpenReply(handle: FileHandle(writable: writable, direct: direct).raw, directIO: direct, keepCache: !direct)
    }

    /// A regular file's handle is closed (its inode may already be gone from the table).
    func releaseRegular(_ inode: Inode?, ino: UInt64, handle: UInt64) {
        if FileHandle(raw: handle).probe { RequestStats.releaseWasOwn() } else { Session.handleClosed() }
        if let inode {
            let cached = FileHandle(raw: handle).cachedWriter
            let dropNow = inode.meta.withLock { () -> Bool in
                if cached { inode.cachedWriters -= 1 }
                inode.openHandles -= 1
                guard inode.openHandles == 0, inode.mergedWhileOpen else { return false }
                inode.mergedWhileOpen = false
                return true
            }
            if dropNow { dropPageCacheAtLastClose(inode) }
        }
        if FileHandle(raw: handle).passthrough { sharing?.closed(ino: ino) }
        updateFullness()
    }

    public func attributeTimeout(for attributes: stat) -> Double {
        attributes.st_mode & S_IFMT == S_IFREG && nearlyFull.load(ordering: .relaxed) ? 0 : MemoryFileSystem.cacheSeconds
    }
}
