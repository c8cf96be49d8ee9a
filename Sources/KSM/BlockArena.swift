// The block store: one large reserved mapping cut into 4 KiB blocks addressed by 32-bit ids,
// with atomic refcounts in a parallel array. Id 0 is a hole and id 1 the canonical zero
// block: neither is ever written nor counted. Capacity (`size=`) counts live blocks; its last
// `reserve` blocks are kept for data the kernel has already accepted from a writer (writeback
// of its page cache), so that data always fits: new data stops at `capacity - reserve`.
//
// The blocks live in a memfd mapped shared, not in anonymous memory. The pages then belong to
// the memfd, as a tmpfs file's pages belong to tmpfs, not to the daemon: whenever the daemon
// maps more than 32 MiB of them, a background thread drops its page-table entries
// (MADV_DONTNEED on a shared mapping unmaps, it never discards). So the OOM killer, which
// weighs a process by the pages it maps, sees a small daemon and picks the program that is
// eating memory, as it would with tmpfs, even where the daemon may not lower its
// oom_score_adj. The pages stay swappable (a shared block pages out once, for every file that
// uses it) and charged to the daemon's memory cgroup. Freed blocks are punched out of the
// memfd in batches (MADV_REMOVE), so the machine gets the memory back when files shrink or
// pages merge, and a reused block always starts zero-filled. Where no memfd can be had the
// arena falls back to anonymous memory.
import CKSMSupport
import Glibc

public final class BlockArena: @unchecked Sendable {
    public static let pageSize = 4096
    public static let pageShift = 12
    public static let hole: UInt32 = 0
    public static let zero: UInt32 = 1
    static let firstBlock: UInt32 = 2
    static let pendingLimit = 4096

    /// Gives free malloc memory (the daemon's metadata, not the arena) back to the OS, from
    /// every thread's malloc arena.
    public static func trimHeap() { ksm_heap_trim() }

    /// Base address of block 0; block `id` lives at `base + id << 12`.
    public let base: UnsafeMutableRawPointer
    /// The memfd holding the blocks, or -1 when they are anonymous memory (no memfd here).
    public let memfd: Int32
    /// Refcounts (also read by the engine); index = block id.
    let refcounts: UnsafeMutablePointer<UInt32>
    /// Items attached to a block while it is a KSM shared block (the stable node's rmap count).
    let sharers: UnsafeMutablePointer<UInt32>
    /// Most blocks that may be live at once (`size=` / 4 KiB).
    public private(set) var capacity: Int
    /// Blocks at the top of the capacity that only `allocate(_:into:fromReserve: true)` may use.
    public private(set) var reserve = 0
    let reserved: Int

    private let mutex = Mutex()
    private let freeStack: UnsafeMutablePointer<UInt32>
    private var freeCount = 0
    private let pending: UnsafeMutablePointer<UInt32>
    private var pendingCount = 0
    private var bump: UInt32 = BlockArena.firstBlock
    private var liveBlocks = 0
    /// Blocks returned to the OS so far (for tests and statistics).
    public private(set) var releasedToOS = 0

    /// A test seam: when set, `allocate` fails as if the arena were full.
    public var failAllocations = false
    /// Injected failures of allocation and of the syscalls behind it (tests; see ArenaFaults).
    public let faults = ArenaFaults()

    public struct OutOfSpace: Error {}

    /// Reserves address space for `capacityBlocks` blocks, or for `growableTo` if more (the
    /// most `setCapacity` may set later); nothing is resident until written.
    public init(capacityBlocks: Int, growableTo: Int = 0) {
        let most = max(capacityBlocks, growableTo)
        precondition(capacityBlocks >= 1 && most < Int(UInt32.max) - BlockArena.pendingLimit - 16,
                     "arena capacity out of range")
        capacity = capacityBlocks
        reserved = most + Int(BlockArena.firstBlock) + BlockArena.pendingLimit
        (base, memfd) = BlockArena.mapBlocks(bytes: reserved << BlockArena.pageShift)
        refcounts = BlockArena.map(bytes: reserved * 4).bindMemory(to: UInt32.self, capacity: reserved)
        sharers = BlockArena.map(bytes: reserved * 4).bindMemory(to: UInt32.self, capacity: reserved)
        freeStack = BlockArena.map(bytes: reserved * 4).bindMemory(to: UInt32.self, capacity: reserved)
        pending = .allocate(capacity: BlockArena.pendingLimit)
    }

    deinit {
        munmap(base, reserved << BlockArena.pageShift)
        if memfd >= 0 { close(memfd) }
        munmap(refcounts, reserved * 4)
        munmap(sharers, reserved * 4)
        munmap(freeStack, reserved * 4)
        pending.deallocate()
    }

    /// Whether the address space for `capacityBlocks` can be reserved (checked before a mount:
    /// `ulimit -v` or strict overcommit refuse it), or why not.
    public static func reservationError(capacityBlocks: Int) -> String? {
        let reserved = capacityBlocks + Int(BlockArena.firstBlock) + BlockArena.pendingLimit
        let sizes = [reserved << BlockArena.pageShift] + Array(repeating: reserved * 4, count: 3)
        var mapped: [(UnsafeMutableRawPointer, Int)] = []
        defer { for (p, n) in mapped { munmap(p, n) } }
        for n in sizes {
            let p = mmap(nil, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
            guard let p, p != MAP_FAILED else {
                return "cannot reserve \(n >> 20) MiB of address space for the arena: \(String(cString: strerror(errno))) (a smaller size=, or check ulimit -v and vm.overcommit_memory)"
            }
            mapped.append((p, n))
        }
        return nil
    }

    /// The blocks' mapping: a memfd of `bytes` mapped shared, or anonymous memory without one.
    private static func mapBlocks(bytes: Int) -> (UnsafeMutableRawPointer, Int32) {
        let fd = ksm_memfd("ksmfs-arena", bytes)
        if fd >= 0 {
            if let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_NORESERVE, fd, 0), p != MAP_FAILED {
                return (p, fd)
            }
            close(fd)
        }
        return (map(bytes: bytes), -1)
    }

    private static func map(bytes: Int) -> UnsafeMutableRawPointer {
        let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let p, p != MAP_FAILED else { fatalError("ksmfs: cannot reserve \(bytes) bytes of address space") }
        return p
    }

    /// Sets the reserve (at most half the capacity).
    public func setReserve(_ blocks: Int) {
        mutex.withLock { reserve = max(0, min(blocks, capacity / 2)) }
    }

    /// The most blocks `setCapacity` accepts (the address space reserved at the start).
    public var growableTo: Int { reserved - Int(BlockArena.firstBlock) - BlockArena.pendingLimit }

    /// Changes the capacity (remount); fails if more blocks are live than the new limit.
    public func setCapacity(_ blocks: Int) -> Bool {
        mutex.withLock {
            guard blocks >= liveBlocks, blocks + Int(BlockArena.firstBlock) + BlockArena.pendingLimit <= reserved else { return false }
            capacity = blocks
            return true
        }
    }

    @inline(__always) public func pointer(_ id: UInt32) -> UnsafeMutableRawPointer {
        base + (Int(id) << BlockArena.pageShift)
    }

    /// Live blocks (physical pages the files use, shared blocks counted once).
    public var used: Int { mutex.withLock { liveBlocks } }
    public var free: Int { mutex.withLock { max(0, capacity - liveBlocks) } }
    /// Blocks new data may still take (free minus the reserve): statfs's f_bavail.
    public var available: Int { mutex.withLock { max(0, capacity - reserve - liveBlocks) } }

    /// Allocates `count` zero-filled blocks with refcount 1 into `out`, all or nothing. New data
    /// stops short of the reserve; `fromReserve` (writeback of data a writer was already told
    /// is written) may use it.
    public func allocate(_ count: Int, into out: UnsafeMutablePointer<UInt32>, fromReserve: Bool = false) throws(OutOfSpace) {
        if count == 0 { return }
        mutex.lock()
        defer { mutex.unlock() }
        if failAllocations || faults.allocationFails() { throw OutOfSpace() }
        if liveBlocks + count > capacity - (fromReserve ? 0 : reserve) { throw OutOfSpace() }
        for i in 0..<count {
            var id: UInt32
            if freeCount > 0 {
                freeCount -= 1
                id = freeStack[freeCount]
            } else if Int(bump) < reserved {
                id = bump
                bump += 1
            } else {
                flushLocked()
                precondition(freeCount > 0, "arena: no block free although capacity allows")
                freeCount -= 1
                id = freeStack[freeCount]
            }
            ksm_atomic_store32(refcounts + Int(id), 1)
            out[i] = id
        }
        liveBlocks += count
    }

    /// Faults in runs of adjacent blocks in one call (MADV_POPULATE_WRITE) instead of one page
    /// fault per block: a large write then fills memory that is already mapped. Returns false
    /// when the memory cannot be had (ENOMEM: the machine or the daemon's cgroup is out of it,
    /// or the `failPopulate` seam); a kernel without MADV_POPULATE_WRITE counts as success.
    @discardableResult
    public func populate(_ ids: UnsafePointer<UInt32>, count: Int) -> Bool {
        if faults.populateFails() { return false }
        // Runs of consecutive ids, ascending (fresh blocks) or descending (the free stack
        // hands back sorted runs in reverse).
        var i = 0
        while i < count {
            var j = i + 1
            while j < count && ids[j] == ids[j - 1] &+ 1 { j += 1 }
            if j == i + 1 { while j < count && ids[j] &+ 1 == ids[j - 1] { j += 1 } }
            let low = min(ids[i], ids[j - 1])
            if madvise(pointer(low), (j - i) << BlockArena.pageShift, 23 /* MADV_POPULATE_WRITE */) != 0
                && (errno == ENOMEM || errno == EFAULT) { return false }
            i = j
        }
        return true
    }

    /// Allocates one block, or nil when the arena is full.
    public func allocateOne() -> UInt32? {
        var id: UInt32 = 0
        do { try allocate(1, into: &id) } catch { return nil }
        return id
    }

    @inline(__always) public func refcount(_ id: UInt32) -> UInt32 {
        id < BlockArena.firstBlock ? 0 : ksm_atomic_load32(refcounts + Int(id))
    }

    @inline(__always) public func retain(_ id: UInt32) {
        if id >= BlockArena.firstBlock { _ = ksm_atomic_add32(refcounts + Int(id), 1) }
    }

    /// Drops one reference; the last one queues the block for return to the OS.
    @inline(__always) public func release(_ id: UInt32) {
        guard id >= BlockArena.firstBlock else { return }
        let left = ksm_atomic_sub32(refcounts + Int(id), 1)
        precondition(left != UInt32.max, "arena: refcount underflow on block \(id)")
        if left == 0 { enqueueFree(id) }
    }

    private func enqueueFree(_ id: UInt32) {
        mutex.lock()
        pending[pendingCount] = id
        pendingCount += 1
        liveBlocks -= 1
        if pendingCount == BlockArena.pendingLimit { flushLocked() }
        mutex.unlock()
    }

    /// Returns queued blocks to the OS now (one madvise per run of adjacent blocks).
    public func flush() {
        mutex.withLock { flushLocked() }
    }

    private func flushLocked() {
        guard pendingCount > 0 else { return }
        var buf = UnsafeMutableBufferPointer(start: pending, count: pendingCount)
        buf.sort()
        var i = 0
        while i < pendingCount {
            var j = i + 1
            while j < pendingCount && pending[j] == pending[j - 1] + 1 { j += 1 }
            let run = pointer(pending[i]), bytes = (j - i) << BlockArena.pageShift
            // A reused block must read as zeros: if the kernel cannot drop the pages, zero them.
            let advice = memfd >= 0 ? 9 /* MADV_REMOVE: punch the pages out of the memfd */ : MADV_DONTNEED
            if faults.releaseFails() || madvise(run, bytes, advice) != 0 { memset(run, 0, bytes) }
            i = j
        }
        for k in 0..<pendingCount {
            freeStack[freeCount] = pending[k]
            freeCount += 1
        }
        releasedToOS += pendingCount
        pendingCount = 0
    }

    // MARK: the daemon's page-table entries

    /// Bytes the blocks take on the machine: the memfd's pages in memory or in swap (every
    /// block written and not yet freed, shared blocks once), or 0 for anonymous blocks (they
    /// are in the process's RSS instead).
    public var memfdBytes: Int { memfd >= 0 ? Int(ksm_fd_allocated_bytes(memfd)) : 0 }

    /// Drops this process's page-table entries for every block (the data stays in the memfd;
    /// the next access maps it again with a minor fault). A no-op for anonymous blocks.
    public func unmapResident() {
        guard memfd >= 0 else { return }
        let top = mutex.withLock { Int(bump) }
        _ = madvise(base, top << BlockArena.pageShift, MADV_DONTNEED)
    }

    private let unmapper = Mutex()
    private var unmapperThread: pthread_t?
    private var unmapperStopping = false

    /// Most arena memory the daemon keeps mapped: past it, `unmapResident` runs.
    public static let mappedLimit = 32 << 20

    /// Starts the thread that checks every `millis` ms how much of the arena this process maps
    /// and unmaps it all past `mappedLimit` (call after any fork: threads do not survive one).
    /// 50 times a second: reads of cold data map arena pages at up to a GB/s, and pages left
    /// mapped are slower to reclaim under a tight memory limit.
    /// A hot working set smaller than that stays mapped; a larger one is faulted back in as it
    /// is used (reads of a mount mostly come from the kernel's page cache anyway). A no-op for
    /// anonymous blocks or when already running. The thread holds the arena: `stopUnmapping`
    /// ends it.
    public func startUnmapping(everyMillis millis: Int = 20) {
        guard memfd >= 0 else { return }
        unmapper.lock()
        defer { unmapper.unlock() }
        guard unmapperThread == nil else { return }
        unmapperStopping = false
        unmapperInterval = UInt64(max(1, millis)) * 1_000_000
        let ctx = Unmanaged.passRetained(self).toOpaque()
        var t = pthread_t()
        guard pthread_create(&t, nil, { arg in
            let arena = Unmanaged<BlockArena>.fromOpaque(arg!).takeRetainedValue()
            ksm_set_thread_name("ksmfs-unmap")
            arena.unmapLoop()
            return nil
        }, ctx) == 0 else {
            Unmanaged<BlockArena>.fromOpaque(ctx).release()
            return
        }
        unmapperThread = t
    }

    private var unmapperInterval: UInt64 = 20_000_000
    /// Unmaps past this many bytes mapped (tests lower it).
    public var unmapAbove = BlockArena.mappedLimit

    /// Stops the thread started by `startUnmapping` and waits for it.
    public func stopUnmapping() {
        unmapper.lock()
        let t = unmapperThread
        unmapperThread = nil
        unmapperStopping = true
        unmapper.broadcast()
        unmapper.unlock()
        if let t { pthread_join(t, nil) }
    }

    private func unmapLoop() {
        unmapper.lock()
        while !unmapperStopping {
            unmapper.wait(nanoseconds: unmapperInterval)
            if unmapperStopping { break }
            unmapper.unlock()
            // RssShmem counts every shared mapping of the process; the arena is the only big one.
            if ksm_rss_shmem_bytes() > Int64(unmapAbove) { unmapResident() }
            unmapper.lock()
        }
        unmapper.unlock()
    }

    // MARK: sharers (the engine's per-shared-block item count)

    @inline(__always) func sharerCount(_ id: UInt32) -> UInt32 { ksm_atomic_load32(sharers + Int(id)) }
    /// The high bit marks a block as a KSM shared block; the low 31 bits count attached items.
    static let stableFlag: UInt32 = 0x8000_0000
    /// Returns the new count of attached items (flag masked off).
    @inline(__always) func addSharer(_ id: UInt32) -> UInt32 { ksm_atomic_add32(sharers + Int(id), 1) & ~BlockArena.stableFlag }
    @inline(__always) func removeSharer(_ id: UInt32) -> UInt32 { ksm_atomic_sub32(sharers + Int(id), 1) & ~BlockArena.stableFlag }
    @inline(__always) func resetSharers(_ id: UInt32) { ksm_atomic_store32(sharers + Int(id), 0) }

    /// A 4 KiB page of zeros that is never written, for replies over holes.
    nonisolated(unsafe) public static let zeroPage: UnsafeMutableRawPointer = {
        let p = UnsafeMutableRawPointer.allocate(byteCount: pageSize, alignment: pageSize)
        p.initializeMemory(as: UInt8.self, repeating: 0, count: pageSize)
        return p
    }()
}
