// A file's data as the engine sees it: a page map over the arena, its size, and the scan
// items of its pages, under one reader-writer lock. Every data operation of the filesystem
// lives here so copy-on-write has one home: a page backed by a shared block (refcount > 1,
// a KSM block, a copy_file_range copy, or a block the unstable tree holds) or by the zero
// block gets a private copy before it is written. The write path never walks a tree: a
// break only adjusts atomic counters.
import CKSMSupport
import Glibc

public enum FileError: Error, Equatable {
    case noSpace
    case tooBig
    case invalid
    /// The machine (or the daemon's memory cgroup) could not give the pages: ENOMEM.
    case noMemory
}

public final class MergeableFile: @unchecked Sendable {
    /// Largest file size: page indexes fit in 32 bits (16 TiB).
    /// The largest file: the kernel's MAX_LFS_FILESIZE (2^63 - 1), tmpfs's limit too. Sizes
    /// are rounded up to pages with `pageCount`/`pageCeil`, which cannot overflow there.
    public static let maxSize: Int64 = Int64.max

    /// Pages needed to hold `bytes` bytes.
    @inline(__always) static func pageCount(_ bytes: Int64) -> Int { Int(bytes >> 12) + (bytes & 4095 == 0 ? 0 : 1) }

    /// `bytes` rounded up to a page boundary (Int64.max when that does not fit).
    @inline(__always) static func pageCeil(_ bytes: Int64) -> Int64 {
        bytes & 4095 == 0 ? bytes : (bytes > Int64.max - 4095 ? Int64.max : (bytes | 4095) + 1)
    }
    static let pageSize = BlockArena.pageSize

    public let arena: BlockArena
    let stats: KSMStats
    public let lock = ReadWriteLock()
    var pages = PageMap()
    private var _size: Int64 = 0
    /// Whether the scanner may merge this file's pages (user.ksm.mergeable).
    var _mergeable: Bool
    /// Set once the file's last name and handle are gone; the scanner then drops it.
    var dead = false
    /// Per-file figures (the kernel's /proc/PID/ksm_stat), guarded by `lock`.
    var itemCount = 0
    var mergingCount = 0
    var zeroCount = 0
    /// The engine that scans this file, if registered.
    weak var engine: KSMEngine?
    /// The filesystem's inode number, for trace events.
    public var ino: UInt64 = 0
    /// Owner uid, for merge_across_owners.
    public var owner: UInt32 = 0
    /// The scanner's id for this file (0 until it enters the unstable tree; scanner only).
    var scanID: UInt32 = 0
    /// Links of the engine's scan list (guarded by its registry lock). A listed file is held
    /// by its predecessor's `listNext` (or the list head), and unlinking fixes both
    /// neighbours, so `listPrev` need not be weak: a weak reference would give every file a
    /// side-table allocation.
    var listNext: MergeableFile?
    unowned(unsafe) var listPrev: MergeableFile?
    var listed = false

    public init(arena: BlockArena, stats: KSMStats, mergeable: Bool = true) {
        self.arena = arena
        self.stats = stats
        self._mergeable = mergeable
    }

    deinit {
        releaseAllLocked()
        pages.deallocate()
    }

    /// Size in bytes.
    public var size: Int64 { lock.withShared { _size } }
    /// Blocks mapped (holes excluded; shared blocks counted in each file), for st_blocks.
    public var dataPages: Int { lock.withShared { pages.dataPages } }

    /// Per-file KSM figures: (scan items, pages merged into shared blocks, zero pages).
    public var ksmFigures: (items: Int, merging: Int, zero: Int) {
        lock.withShared { (itemCount, mergingCount, zeroCount) }
    }

    // MARK: reading

    /// Calls `body` with iovecs over `[offset, offset+size)` clipped to the file size, while the
    /// pages are held (shared lock): the caller replies straight from the arena. If a page is
    /// not resident (swapped out under memory pressure) the bytes go through a bounce buffer
    /// instead, so the swap-in is an ordinary fault of this process: left to the kernel's copy
    /// of the reply it happens inside get_user_pages, where a memory cgroup at its limit
    /// OOM-kills the daemon instead of reclaiming.
    public func withReadVectors<R>(offset: Int64, size: Int, _ body: (UnsafeBufferPointer<iovec>) -> R) -> R {
        lock.lockShared()
        defer { lock.unlock() }
        let end = offset < _size ? offset + min(Int64(size), _size - offset) : offset
        guard offset >= 0, end > offset else { return body(UnsafeBufferPointer(start: nil, count: 0)) }
        let first = Int(offset >> 12), last = Int((end - 1) >> 12)
        let count = last - first + 1
        return withUnsafeTemporaryAllocation(of: iovec.self, capacity: count) { iov in
            var pos = offset
            for i in 0..<count {
                let page = first + i
                let inPage = Int(pos & 4095)
                let n = Int(min(Int64(4096 - inPage), end - pos))
                let blk = pages.block(page)
                iov[i] = iovec(iov_base: arena.pointer(blk) + inPage, iov_len: n)
                pos += Int64(n)
            }
            if MergeableFile.resident(UnsafeBufferPointer(iov)) { return body(UnsafeBufferPointer(iov)) }
            let total = Int(end - offset)
            let bounce = UnsafeMutableRawPointer.allocate(byteCount: total, alignment: 4096)
            defer { bounce.deallocate() }
            var done = 0
            for v in iov {
                (bounce + done).copyMemory(from: v.iov_base!, byteCount: v.iov_len)
                done += v.iov_len
            }
            var one = iovec(iov_base: bounce, iov_len: total)
            return withUnsafePointer(to: &one) { body(UnsafeBufferPointer(start: $0, count: 1)) }
        }
    }

    /// Whether every page behind `iov` is in memory (mincore, one call per run of adjacent
    /// pages; the zero page and holes count as resident). Without swap no arena page can be
    /// out of memory, and the check (a fifth of the daemon's CPU on cold reads) is skipped.
    static func resident(_ iov: UnsafeBufferPointer<iovec>) -> Bool {
        if !SwapState.configured() { return true }
        return withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 256) { vec -> Bool in
            let flags = vec.baseAddress!
            var i = 0
            while i < iov.count {
                let start = UInt(bitPattern: iov[i].iov_base) & ~4095
                var j = i + 1
                while j < iov.count && j - i < vec.count
                        && UInt(bitPattern: iov[j].iov_base) & ~4095 == start + UInt(j - i) * 4096 { j += 1 }
                if mincore(UnsafeMutableRawPointer(bitPattern: start), (j - i) * 4096, flags) == 0 {
                    for k in 0..<(j - i) where flags[k] & 1 == 0 { return false }
                }
                i = j
            }
            return true
        }
    }

    /// Copies bytes out (for tests and internal copies); returns the count read.
    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) -> Int {
        withReadVectors(offset: offset, size: buffer.count) { iov in
            var done = 0
            for v in iov {
                (buffer.baseAddress! + done).copyMemory(from: v.iov_base!, byteCount: v.iov_len)
                done += v.iov_len
            }
            return done
        }
    }

    // MARK: writing

    /// Writes `data` at `offset`, all or nothing: ENOSPC before any byte lands if the private
    /// copies it needs do not fit. `fromReserve`: the arena's reserve may be used (writeback of
    /// data the kernel already accepted).
    public func write(_ data: UnsafeRawBufferPointer, at offset: Int64, fromReserve: Bool = false) throws(FileError) -> Int {
        if data.isEmpty { return 0 }
        guard offset >= 0 else { throw .invalid }
        guard offset < MergeableFile.maxSize, Int64(data.count) <= MergeableFile.maxSize - offset else { throw .tooBig }
        lock.lockExclusive()
        defer { lock.unlock() }
        let end = offset + Int64(data.count)
        try writeLocked(data.baseAddress!, count: data.count, at: offset, fromReserve: fromReserve)
        if end > _size { _size = end }
        return data.count
    }

    /// Whether writing page `p` needs a new block.
    @inline(__always) private func needsBlock(_ b: UInt32) -> Bool {
        b < 2 || arena.refcount(b) > 1
    }

    private func writeLocked(_ src: UnsafeRawPointer, count: Int, at offset: Int64, fromReserve: Bool = false) throws(FileError) {
        let first = Int(offset >> 12)
        let last = Int((offset + Int64(count) - 1) >> 12)
        var need = 0
        for p in first...last where needsBlock(pages.block(p)) { need += 1 }
        try withFreshBlocks(need, fromReserve: fromReserve) { (fresh: UnsafeMutablePointer<UInt32>, used: inout Int) in
            var pos = offset
            var done = 0
            for p in first...last {
                let inPage = Int(pos & 4095)
                let n = min(4096 - inPage, count - done)
                if unchangedRewrite(p, src + done, at: inPage, count: n) {
                    done += n
                    pos += Int64(n)
                    continue
                }
                let dst = writablePage(p, fullOverwrite: n == 4096, fresh: fresh, used: &used)
                (dst + inPage).copyMemory(from: src + done, byteCount: n)
                done += n
                pos += Int64(n)
            }
        }
    }

    /// Whether writing `n` bytes at `inPage` of page `p` would leave its bytes as they are,
    /// for a page the scanner has visited and that has not changed since (so it keeps its
    /// "unchanged" standing with the scanner, as an identical rewrite keeps the kernel's
    /// checksum). Such a write is skipped: no copy, and no copy-on-write of a block the
    /// unstable tree holds. A merged page still breaks sharing on write, as on the kernel.
    @inline(__always) private func unchangedRewrite(_ p: Int, _ src: UnsafeRawPointer, at inPage: Int, count n: Int) -> Bool {
        guard let it = pages.existingItem(p), !it.pointee.changed, it.pointee.state != .stable else { return false }
        let b = pages.block(p)
        return b >= 2 && memcmp(arena.pointer(b) + inPage, src, n) == 0
    }

    /// Allocates `need` blocks, runs `body`, and gives back whatever it did not use.
    private func withFreshBlocks(_ need: Int, fromReserve: Bool = false, _ body: (UnsafeMutablePointer<UInt32>, inout Int) -> Void) throws(FileError) {
        if need == 0 {
            var used = 0
            var dummy: UInt32 = 0
            body(&dummy, &used)
            return
        }
        // The block list lives on the stack (a 1 MiB write needs 256 ids): no heap per write.
        let failure = withUnsafeTemporaryAllocation(of: UInt32.self, capacity: need) { buf -> FileError? in
            let fresh = buf.baseAddress!
            do { try arena.allocate(need, into: fresh, fromReserve: fromReserve) } catch { return .noSpace }
            // Fault the pages in before touching them: when memory runs out this is an ENOMEM
            // here, not a store that faults for ever (a memory cgroup with nothing to kill).
            if !arena.populate(fresh, count: need) {
                for i in 0..<need { arena.release(fresh[i]) }
                return .noMemory
            }
            var used = 0
            body(fresh, &used)
            precondition(used <= need, "write used more fresh blocks than counted")
            for i in used..<need { arena.release(fresh[i]) }
            return nil
        }
        if let failure { throw failure }
        arena.flush()
    }

    /// Makes page `p` privately writable and returns its address (copy-on-write if shared).
    private func writablePage(_ p: Int, fullOverwrite: Bool, fresh: UnsafeMutablePointer<UInt32>, used: inout Int) -> UnsafeMutableRawPointer {
        pages.existingItem(p)?.pointee.changed = true     // the scanner re-hashes it
        let b = pages.block(p)
        if b >= 2 && arena.refcount(b) == 1 { return arena.pointer(b) }
        let nb = fresh[used]
        used += 1
        if b >= 2 {
            if !fullOverwrite { arena.pointer(nb).copyMemory(from: arena.pointer(b), byteCount: 4096) }
            breakSharing(p, oldBlock: b)
            pages.set(p, nb)
            arena.release(b)
        } else {
            if b == BlockArena.zero { breakSharing(p, oldBlock: b) }
            pages.set(p, nb)
        }
        return arena.pointer(nb)
    }

    /// Accounts a copy-on-write break of page `p` (its item leaves the shared or zero block).
    private func breakSharing(_ p: Int, oldBlock: UInt32) {
        guard let it = pages.existingItem(p) else {
            if oldBlock == BlockArena.zero { return }
            return
        }
        switch it.pointee.state {
        case .stable:
            if arena.removeSharer(oldBlock) == 0 { stats.add(.pagesShared, -1) }
            stats.add(.stableItems, -1)
            stats.add(.cowBreaks, 1)
            mergingCount -= 1
            it.pointee.state = .visited
        case .zero:
            stats.add(.zeroPages, -1)
            stats.add(.cowBreaks, 1)
            zeroCount -= 1
            it.pointee.state = .visited
        default:
            break
        }
    }

    /// Drops the item of page `p` (the page is going away).
    private func dropItem(_ p: Int) {
        guard let it = pages.existingItem(p) else { return }
        switch it.pointee.state {
        case .stable:
            if arena.removeSharer(pages.block(p)) == 0 { stats.add(.pagesShared, -1) }
            stats.add(.stableItems, -1)
            mergingCount -= 1
        case .zero:
            stats.add(.zeroPages, -1)
            zeroCount -= 1
        case .unstable:
            stats.add(.unshared, -1)
        default:
            break
        }
        stats.add(.items, -1)
        itemCount -= 1
        it.pointee = ScanItem()
    }

    /// Removes page `p` (item and block reference).
    private func removePage(_ p: Int) {
        dropItem(p)
        let old = pages.set(p, BlockArena.hole)
        arena.release(old)
    }

    // MARK: size and holes

    public func truncate(to newSize: Int64) throws(FileError) {
        guard newSize >= 0 else { throw .invalid }
        guard newSize <= MergeableFile.maxSize else { throw .tooBig }
        lock.lockExclusive()
        defer { lock.unlock() }
        if newSize < _size {
            try zeroTail(from: newSize, to: min(_size, MergeableFile.pageCeil(newSize)))
            let firstGone = MergeableFile.pageCount(newSize)
            removePages(from: firstGone, to: MergeableFile.pageCount(_size))
            pages.trim(fromPage: firstGone)
            arena.flush()
        }
        _size = newSize
    }

    /// Removes every page in [from, to).
    private func removePages(from: Int, to: Int) {
        var p = from
        while p < to, let d = pages.nextData(from: p, limit: to) {
            removePage(d)
            p = d + 1
        }
    }

    /// Zeroes bytes [from, to) within one page, copy-on-write if needed; skips holes and
    /// ranges that are already zero (so shrinking a shared file needs no new block).
    private func zeroTail(from: Int64, to: Int64) throws(FileError) {
        guard to > from else { return }
        let p = Int(from >> 12)
        let b = pages.block(p)
        if b < 2 { return }
        let inPage = Int(from & 4095)
        let n = Int(to - from)
        if ksm_is_zero_range(arena.pointer(b) + inPage, n) != 0 { return }
        let need = arena.refcount(b) > 1 ? 1 : 0
        try withFreshBlocks(need) { fresh, used in
            let dst = writablePage(p, fullOverwrite: false, fresh: fresh, used: &used)
            (dst + inPage).initializeMemory(as: UInt8.self, repeating: 0, count: n)
        }
    }

    /// FALLOC_FL_PUNCH_HOLE (size unchanged): whole pages become holes, edges are zeroed.
    public func punchHole(offset: Int64, length: Int64) throws(FileError) {
        guard offset >= 0, length > 0 else { throw .invalid }
        lock.lockExclusive()
        defer { lock.unlock() }
        try clearRange(offset: offset, end: length > _size - offset ? _size : offset + length)
    }

    private func clearRange(offset: Int64, end: Int64) throws(FileError) {
        guard end > offset else { return }
        let firstFull = MergeableFile.pageCount(offset)
        let lastFullEnd = Int(end >> 12)
        if firstFull > lastFullEnd {
            try zeroTail(from: offset, to: end)   // inside one page
            return
        }
        try zeroTail(from: offset, to: Int64(firstFull) << 12)
        try zeroTail(from: Int64(lastFullEnd) << 12, to: end)
        removePages(from: firstFull, to: lastFullEnd)
        arena.flush()
    }

    /// FALLOC_FL_ZERO_RANGE: the range reads as zeros (as holes, costing nothing); the size
    /// grows to cover it unless `keepSize`.
    public func zeroRange(offset: Int64, length: Int64, keepSize: Bool) throws(FileError) {
        guard offset >= 0, length > 0 else { throw .invalid }
        guard offset <= MergeableFile.maxSize, length <= MergeableFile.maxSize - offset else { throw .tooBig }
        lock.lockExclusive()
        defer { lock.unlock() }
        try clearRange(offset: offset, end: min(_size, offset + length))
        if !keepSize && offset + length > _size { _size = offset + length }
    }

    /// fallocate mode 0 / KEEP_SIZE: reserves blocks for the holes in the range (ENOSPC, all or
    /// nothing, if they do not fit) and grows the size unless `keepSize`.
    public func allocate(offset: Int64, length: Int64, keepSize: Bool) throws(FileError) {
        guard offset >= 0, length > 0 else { throw .invalid }
        guard offset <= MergeableFile.maxSize, length <= MergeableFile.maxSize - offset else { throw .tooBig }
        lock.lockExclusive()
        defer { lock.unlock() }
        let first = Int(offset >> 12), last = Int((offset + length - 1) >> 12)
        // More pages than the whole arena can hold fail at once (counting the holes of an
        // 8 EiB range one by one would not end).
        if last - first >= arena.capacity + pages.dataPages { throw .noSpace }
        var need = 0
        var p = first
        while p <= last, let h = pages.nextHole(from: p, limit: last + 1) { need += 1; p = h + 1 }
        try withFreshBlocks(need) { fresh, used in
            var q = first
            while q <= last, let h = pages.nextHole(from: q, limit: last + 1) {
                pages.set(h, fresh[used]); used += 1
                q = h + 1
            }
        }
        if !keepSize && offset + length > _size { _size = offset + length }
    }

    /// SEEK_DATA / SEEK_HOLE from `offset`; nil means ENXIO.
    public func seek(from offset: Int64, data: Bool) -> Int64? {
        lock.withShared {
            guard offset >= 0, offset < _size else { return nil }
            let limit = MergeableFile.pageCount(_size)
            let page = Int(offset >> 12)
            if data {
                guard let d = pages.nextData(from: page, limit: limit) else { return nil }
                return max(offset, Int64(d) << 12)
            }
            guard let h = pages.nextHole(from: page, limit: limit) else { return _size }
            return min(_size, max(offset, Int64(h) << 12))
        }
    }

    // MARK: copies

    /// copy_file_range: whole pages at matching page offsets are shared copy-on-write (no
    /// memory until written); the rest is copied. Returns bytes copied.
    public static func copyRange(from src: MergeableFile, at srcOffset: Int64, to dst: MergeableFile,
                                 at dstOffset: Int64, length: Int) throws(FileError) -> Int {
        guard srcOffset >= 0, dstOffset >= 0 else { throw .invalid }
        if src === dst {
            src.lock.lockExclusive()
            defer { src.lock.unlock() }
            return try copyLocked(src, srcOffset, dst, dstOffset, length)
        }
        let (a, b) = ObjectIdentifier(src) < ObjectIdentifier(dst) ? (src, dst) : (dst, src)
        if a === src { a.lock.lockShared() } else { a.lock.lockExclusive() }
        if b === src { b.lock.lockShared() } else { b.lock.lockExclusive() }
        defer { b.lock.unlock(); a.lock.unlock() }
        return try copyLocked(src, srcOffset, dst, dstOffset, length)
    }

    private static func copyLocked(_ src: MergeableFile, _ srcOffset: Int64, _ dst: MergeableFile,
                                   _ dstOffset: Int64, _ length: Int) throws(FileError) -> Int {
        let n = Int(max(0, min(Int64(length), src._size - srcOffset)))
        if n == 0 { return 0 }
        guard dstOffset < maxSize, Int64(n) <= maxSize - dstOffset else { throw .tooBig }
        let overlap = src === dst && srcOffset < dstOffset + Int64(n) && dstOffset < srcOffset + Int64(n)
        if !overlap && srcOffset & 4095 == 0 && dstOffset & 4095 == 0 {
            let whole = n >> 12
            let sp = Int(srcOffset >> 12), dp = Int(dstOffset >> 12)
            for i in 0..<whole {
                let b = src.pages.block(sp + i)
                src.arena.retain(b)
                dst.dropItem(dp + i)
                let old = dst.pages.set(dp + i, b)
                dst.arena.release(old)
            }
            let tail = n - (whole << 12)
            if tail > 0 {
                try copyBytes(src, srcOffset + Int64(whole << 12), dst, dstOffset + Int64(whole << 12), tail)
            }
            dst.arena.flush()
        } else {
            try copyBytes(src, srcOffset, dst, dstOffset, n)
        }
        let end = dstOffset + Int64(n)
        if end > dst._size { dst._size = end }
        return n
    }

    /// Byte copy through a bounce buffer (locks already held).
    private static func copyBytes(_ src: MergeableFile, _ so: Int64, _ dst: MergeableFile, _ dOff: Int64, _ n: Int) throws(FileError) {
        let chunk = 1 << 20
        let buf = UnsafeMutableRawPointer.allocate(byteCount: min(n, chunk), alignment: 16)
        defer { buf.deallocate() }
        var done = 0
        while done < n {
            let m = min(chunk, n - done)
            var got = 0
            var pos = so + Int64(done)
            while got < m {
                let inPage = Int(pos & 4095)
                let k = min(4096 - inPage, m - got)
                let b = src.pages.block(Int(pos >> 12))
                (buf + got).copyMemory(from: src.arena.pointer(b) + inPage, byteCount: k)
                got += k
                pos += Int64(k)
            }
            try dst.writeLocked(buf, count: m, at: dOff + Int64(done))
            done += m
        }
    }

    // MARK: lifetime

    /// Drops every page (the file was deleted and closed).
    public func releaseAll() {
        lock.withExclusive {
            releaseAllLocked()
            pages.deallocate()
            _size = 0
            dead = true
        }
        arena.flush()
    }

    private func releaseAllLocked() {
        removePages(from: 0, to: pages.pageLimit)
    }
}

/// Whether the system has any swap (sysinfo's total swap), looked up at most every 10 ms:
/// swapon takes effect for reads within that time, long before the first page could be
/// reclaimed to it.
enum SwapState {
    /// [0]: CLOCK_MONOTONIC_COARSE nanoseconds of the next lookup; [1]: 1 when swap exists.
    nonisolated(unsafe) private static let words: UnsafeMutablePointer<Int64> = {
        let p = UnsafeMutablePointer<Int64>.allocate(capacity: 2)
        p.initialize(repeating: 0, count: 2)
        return p
    }()

    static func configured() -> Bool {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC_COARSE, &ts)
        let now = Int64(ts.tv_sec) &* 1_000_000_000 &+ Int64(ts.tv_nsec)
        if now < ksm_atomic_load64(words) { return ksm_atomic_load64(words + 1) != 0 }
        let present = ksm_swap_configured() != 0
        ksm_atomic_store64(words + 1, present ? 1 : 0)
        ksm_atomic_store64(words, now &+ 10_000_000)
        return present
    }
}
