// The KSM engine: a userspace re-implementation of mm/ksm.c over the pages of files.
//
// Two red-black trees ordered by page content find identical pages. The stable tree holds
// shared blocks: immutable while shared, so searching it is always sound. The unstable tree
// holds pages seen unchanged for two visits; in the kernel its pages may change under it, and
// it is rebuilt every pass. Here the tree takes a reference on each block it holds, which
// makes the block copy-on-write too: the tree's contents never change, comparisons need no
// lock, and a merge only re-checks that the page still maps the block it had.
//
// Threads: only the scanner touches the trees and the dup pool. A file's page map and scan
// items change under that file's lock (exclusive for writes and merges). The write path
// never walks a tree: a copy-on-write break adjusts atomic counters (KSMStats) at once.
import CKSMSupport
import Glibc

public final class KSMEngine: @unchecked Sendable {
    /// Metadata bytes per scan item: the item (12) and its page-map slot (4).
    public static let bytesPerItem = MemoryLayout<ScanItem>.stride + MemoryLayout<UInt32>.stride
    static let stableFlag = BlockArena.stableFlag

    public let arena: BlockArena
    public let stats = KSMStats()
    public let trace = TraceBuffer()

    // Tunables, guarded by `tunablesLock`.
    private let tunablesLock = Mutex()
    private var _tunables = Tunables()
    /// Held for each batch; run/max_page_sharing/merge_across_nodes writes wait on it.
    let batchLock = Mutex()
    private let wake = Mutex()
    private var wakeups = 0
    private var stopping = false
    private var thread: pthread_t?

    // The file list in scan order (doubly linked, as the kernel's mm_slot list: O(1) to add
    // behind the cursor and to remove), and the cursor (nil: past the last file); guarded by
    // `registryLock`.
    private let registryLock = Mutex()
    private var listHead: MergeableFile?
    private var listTail: MergeableFile?
    private var listCount = 0
    private var cursorFile: MergeableFile?
    private var cursorPage = 0
    private var passActive = false

    // Scanner-owned state.
    let stable: ContentTree
    let unstable: ContentTree
    var dups = DupPool()
    /// Pages hashed by the volatility rule (scanner-owned; for tests).
    var checksumsComputed = 0
    private var removalBuffer: [UInt32] = []
    var current = Tunables()
    /// Pages merged in the current batch (batch lock held), for `onMerged`.
    private var mergedInBatch: [MergedPage] = []
    /// A page that merged: the file's inode number and the page index.
    public struct MergedPage: Sendable, Comparable {
        public let ino: UInt64
        public let page: Int
        public static func < (a: MergedPage, b: MergedPage) -> Bool { (a.ino, a.page) < (b.ino, b.page) }
    }
    /// Called at the end of a batch that merged pages while `dropMergedPageCache` is on, with
    /// the batch lock held: it may only queue work for another thread (never send a FUSE
    /// notification, block, or take a filesystem lock). Set before `start`.
    nonisolated(unsafe) public var onMerged: (([MergedPage]) -> Void)?
    private let epoch: timespec

    // Advisor state.
    var advisorLast: UInt64 = 0
    var advisorPrevChange: UInt64 = 0
    /// The advisor's last decision: (pass seconds, CPU percent, pages_to_scan).
    public internal(set) var lastAdvice: (seconds: UInt64, cpuPercent: UInt64, pagesToScan: UInt32) = (0, 0, 0)
    private var passStart = timespec()
    private var passCPUStart: Int64 = 0

    public init(arena: BlockArena) {
        self.arena = arena
        stable = ContentTree(arenaBase: UnsafeRawPointer(arena.base))
        unstable = ContentTree(arenaBase: UnsafeRawPointer(arena.base))
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        epoch = now
        removalBuffer.reserveCapacity(1024)
    }


    // MARK: tunables

    public var tunables: Tunables { tunablesLock.withLock { _tunables } }

    /// Changes tunables outside any batch (callers that must wait for the batch hold batchLock).
    public func updateTunables(_ body: (inout Tunables) -> Void) {
        tunablesLock.withLock { body(&_tunables) }
        kick()
    }

    public func updateTunablesQuietly(_ body: (inout Tunables) -> Void) {
        tunablesLock.withLock { body(&_tunables) }
    }

    /// Runs `body` between batches, as the kernel's ksm_thread_mutex does.
    public func betweenBatches<R>(_ body: () throws -> R) rethrows -> R {
        try batchLock.withLock(body)
    }

    /// Wakes the scanner now (a changed sleep or run).
    public func kick() {
        wake.withLock { wakeups &+= 1; wake.broadcast() }
    }

    // MARK: files

    /// Adds a file just behind the scan cursor (it is first visited in the next pass).
    public func register(_ file: MergeableFile, mergeable: Bool) {
        file.engine = self
        file.lock.withExclusive { file._mergeable = mergeable }
        if trace.enabled { trace.emit("ksm_enter", "ino=\(file.ino)") }
        registryLock.withLock {
            // Just behind the cursor, as the kernel's list_add_tail before ksm_scan.mm_slot: with
            // no pass under way the cursor is at the head, and behind it is the tail.
            insertLocked(file, before: passActive ? cursorFile : nil)
        }
        kick()
    }

    /// The file is gone: it leaves the scan list at once (so deleted files cost nothing even
    /// while the scanner is stopped); a scanner working on it sees it dead and moves on.
    public func unregister(_ file: MergeableFile) {
        file.lock.withExclusive { file.dead = true }
        registryLock.withLock {
            removeLocked(file)
            if file.scanID != 0 { idTable[file.scanID] = nil }
        }
        if trace.enabled { trace.emit("ksm_exit", "ino=\(file.ino)") }
    }

    public func isMergeable(_ file: MergeableFile) -> Bool { file.lock.withShared { file._mergeable } }

    /// Switches merging of one file; off unmerges its pages (MADV_UNMERGEABLE). Returns false
    /// if private copies did not fit (merging stays on, as the kernel leaves the VMA mergeable).
    public func setMergeable(_ file: MergeableFile, _ on: Bool) -> Bool {
        if on {
            file.lock.withExclusive { file._mergeable = true }
            kick()
            return true
        }
        return batchLock.withLock {
            let ok = unmerge(file)
            if ok { file.lock.withExclusive { file._mergeable = false } }
            return ok
        }
    }

    /// The file changed owner: unless merge_across_owners, its pages leave the shared blocks
    /// of the old owner's files (they merge again with the new owner's). False if the
    /// private copies did not fit.
    public func ownerChanged(_ file: MergeableFile, to owner: UInt32) -> Bool {
        batchLock.withLock {
            file.lock.withExclusive { file.owner = owner }
            if tunables.mergeAcrossOwners { return true }
            return unmerge(file)
        }
    }

    var fileCount: Int { registryLock.withLock { listCount } }

    func registryLockedFiles() -> [MergeableFile] {
        registryLock.withLock {
            var out: [MergeableFile] = []
            out.reserveCapacity(listCount)
            var f = listHead
            while let g = f { out.append(g); f = g.listNext }
            return out
        }
    }

    /// Links `file` in before `next` (at the tail when nil); registry lock held.
    private func insertLocked(_ file: MergeableFile, before next: MergeableFile?) {
        guard !file.listed else { return }
        file.listed = true
        file.listNext = next
        if let next {
            file.listPrev = next.listPrev
            if let p = next.listPrev { p.listNext = file } else { listHead = file }
            next.listPrev = file
        } else {
            file.listPrev = listTail
            if let t = listTail { t.listNext = file } else { listHead = file }
            listTail = file
        }
        listCount += 1
    }

    /// Unlinks `file` (the cursor moves on if it was there); registry lock held.
    private func removeLocked(_ file: MergeableFile) {
        guard file.listed else { return }
        if cursorFile === file { cursorFile = file.listNext }
        if let p = file.listPrev { p.listNext = file.listNext } else { listHead = file.listNext }
        if let n = file.listNext { n.listPrev = file.listPrev } else { listTail = file.listPrev }
        file.listNext = nil
        file.listPrev = nil
        file.listed = false
        listCount -= 1
    }

    /// Forgets the current pass (after unmerging everything): the unstable tree is emptied and
    /// the next batch starts a new pass from the first file.
    func resetPass() {
        registryLock.withLock {
            passActive = false
            cursorFile = nil
            cursorPage = 0
        }
        clearUnstableTree()
    }

    // MARK: scanner thread

    public func start() {
        arena.startUnmapping()
        guard thread == nil else { return }
        let ctx = Unmanaged.passRetained(self).toOpaque()
        var t = pthread_t()
        pthread_create(&t, nil, { arg in
            let engine = Unmanaged<KSMEngine>.fromOpaque(arg!).takeRetainedValue()
            engine.loop()
            return nil
        }, ctx)
        thread = t
    }

    public func stop() {
        wake.withLock { stopping = true; wake.broadcast() }
        if let t = thread { pthread_join(t, nil); thread = nil }
        arena.stopUnmapping()
    }

    private func loop() {
        ksm_set_thread_name("ksmd")
        while true {
            let seen = wake.withLock { wakeups }
            if wake.withLock({ stopping }) { return }
            let t = tunables
            var ran = false
            if t.run == 1 && fileCount > 0 {
                batchLock.withLock { _ = scanBatchTimed() }
                ran = true
            }
            wake.withLock {
                if stopping || wakeups != seen { return }
                wake.wait(nanoseconds: ran ? UInt64(t.sleepMillisecs) * 1_000_000 : nil)
            }
        }
    }

    private func threadCPUNanos() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    /// One batch with its CPU time accounted (scanner thread or a test's thread).
    @discardableResult
    func scanBatchTimed() -> Int {
        let c0 = threadCPUNanos()
        let n = scanBatch(limit: Int(tunables.pagesToScan))
        stats.add(.scannerNanos, threadCPUNanos() - c0)
        return n
    }

    /// Runs batches of `pages` until `limit` pages have been handled or passes complete; for
    /// tests and benchmarks (the caller is the scanner: the thread must not be started).
    @discardableResult
    public func scan(pages: Int) -> Int {
        batchLock.withLock {
            let c0 = threadCPUNanos()
            let n = scanBatch(limit: pages)
            stats.add(.scannerNanos, threadCPUNanos() - c0)
            return n
        }
    }

    /// Runs full passes until `passes` more have completed.
    public func scanPasses(_ passes: Int) {
        let target = stats.fullScans + Int64(passes)
        while stats.fullScans < target { scan(pages: 1 << 20) }
    }

    // MARK: the batch

    /// Handles up to `limit` pages (skipped ones do not count); stops at the end of a pass.
    /// Returns the pages handled.
    func scanBatch(limit: Int) -> Int {
        current = tunables
        var done = 0, handled = 0
        // Counters are added once per file run, not per page (one atomic each).
        func account() {
            stats.add(.pagesScanned, Int64(done - accounted))
            stats.add(.passPagesDone, Int64(handled))
            accounted = done
            handled = 0
        }
        var accounted = 0
        while done < limit {
            guard let f = cursorFileObject() else { break }
            // Stay on this file without the registry lock until it has no more pages.
            while done < limit, let (p, outcome) = processNext(f, from: cursorPage) {
                cursorPage = p + 1
                handled += 1
                if case .scanned = outcome { done += 1 }
            }
            account()
            if done < limit { advanceFile(f) }
        }
        account()
        arena.flush()
        if !mergedInBatch.isEmpty {
            onMerged?(mergedInBatch)
            mergedInBatch.removeAll(keepingCapacity: true)
        }
        return done
    }

    /// The file under the cursor, starting a pass if none is active; nil when the pass ends
    /// (which it completes).
    private func cursorFileObject() -> MergeableFile? {
        registryLock.lock()
        defer { registryLock.unlock() }
        if !passActive { startPassLocked() }
        if let f = cursorFile { return f }
        endPassLocked()
        return nil
    }

    /// Moves the cursor past file `f`, dropping it from the list if it is gone.
    private func advanceFile(_ f: MergeableFile) {
        let dead = f.lock.withShared { f.dead }
        registryLock.withLock {
            if cursorFile === f {
                if dead {
                    removeLocked(f)         // the cursor moves to the next file
                    if f.scanID != 0 { idTable[f.scanID] = nil }
                } else {
                    cursorFile = f.listNext
                }
            }
            cursorPage = 0
        }
    }

    private func startPassLocked() {
        passActive = true
        cursorFile = listHead
        cursorPage = 0
        clearUnstableTree()
        // For the whole pass: pages of different owners stay apart unless they may merge.
        unstable.orderEqualContentByC = !tunables.mergeAcrossOwners
        clock_gettime(CLOCK_MONOTONIC, &passStart)
        passCPUStart = stats.scannerCPUNanos
        stats.set(.passPagesDone, 0)
        if trace.enabled { trace.emit("ksm_start_scan", "seq=\(stats.fullScans) rmap_items=\(stats.items)") }
    }

    private func endPassLocked() {
        passActive = false
        cursorFile = nil
        cursorPage = 0
        sweepStableTree()
        if trace.enabled { trace.emit("ksm_stop_scan", "seq=\(stats.fullScans) rmap_items=\(stats.items)") }
        stats.add(.fullScans, 1)
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let ms = Int64(now.tv_sec - passStart.tv_sec) * 1000 + Int64(now.tv_nsec - passStart.tv_nsec) / 1_000_000
        stats.set(.lastPassNanos, ms * 1_000_000)
        if current.advisorScanTime { runAdvisor(elapsedMs: UInt64(max(0, ms)), cpuMs: UInt64(max(0, (stats.scannerCPUNanos - passCPUStart) / 1_000_000))) }
    }

    var seq: UInt8 { UInt8(truncatingIfNeeded: stats.fullScans) }

    /// Empties the unstable tree, dropping its references (a new pass starts).
    private func clearUnstableTree() {
        var n = unstable.first()
        while n != 0 {
            arena.release(unstable.block(n))
            n = unstable.next(n)
        }
        unstable.removeAll()
    }

    // MARK: cmp_and_merge_page

    enum Outcome { case scanned, skipped, gone }

    @inline(__always) func isStableBlock(_ b: UInt32) -> Bool {
        b >= 2 && ksm_atomic_load32(arena.sharers + Int(b)) & KSMEngine.stableFlag != 0
    }

    /// Finds the next page of `f` at or after `from` and runs cmp_and_merge_page on it.
    /// Returns nil when the file has no more pages.
    private func processNext(_ f: MergeableFile, from: Int) -> (Int, Outcome)? {
        // Under the shared lock the page cannot change (writers take the lock exclusively) and
        // shared blocks never change: the stable search and the checksum read the live block.
        var outcome: Outcome = .scanned
        var stableBlock: UInt32 = 0
        var zeroCandidate = false
        var frozen = false
        var forkAttach = false
        let owner = f.owner
        f.lock.lockShared()
        guard !f.dead, f._mergeable,
              let p = f.pages.nextData(from: from, limit: f.pages.pageLimit) else {
            f.lock.unlock()
            return nil
        }
        let b = f.pages.block(p)
        if b < 2 {
            f.lock.unlock()
            return (p, .gone)               // the zero block: already as merged as it gets
        }
        let it = f.pages.item(p)
        let firstVisit = it.pointee.state == .absent
        if firstVisit {
            it.pointee.rawState = ScanItem.State.visited.rawValue   // unchanged, not hashed
            it.pointee.age = 0
            it.pointee.skip = 0
            f.itemCount += 1
            stats.add(.items, 1)
        }
        if it.pointee.state == .stable {
            outcome = .scanned              // already merged: the cheap path
        } else if isStableBlock(b) {
            // The page maps a shared block its item is not attached to (a copy_file_range
            // copy of a merged page: the kernel's "KSM fork"): attach it, over the limit if
            // need be, as stable_tree_append's bypass does.
            removeFromTree(it)
            forkAttach = true
        } else if current.smartScan && shouldSkip(it) {
            removeFromTree(it)
            stats.add(.pagesSkipped, 1)
            outcome = .skipped
        } else {
            removeFromTree(it)
            let page = UnsafeRawPointer(arena.pointer(b))
            stableBlock = searchStable(page, owner: owner).block
            if stableBlock == 0 {
                if isVolatile(it, page, firstVisit: firstVisit) {
                    // changed since the last visit: not in the unstable tree this pass
                } else if current.useZeroPages && ksm_is_zero(page, BlockArena.pageSize) != 0 {
                    zeroCandidate = true
                } else {
                    arena.retain(b)                 // the unstable tree's reference: b is now copy-on-write
                    frozen = true
                }
            }
        }
        f.lock.unlock()

        if forkAttach {
            f.lock.withExclusive {
                if !f.dead, f.pages.block(p) == b, let it = f.pages.existingItem(p), it.pointee.state != .stable { attach(f, p, it, b) }
            }
        } else if stableBlock != 0 {
            mergeIntoStable(f, p, expect: b, stableBlock: stableBlock)
        } else if zeroCandidate {
            mergeIntoZero(f, p, expect: b)
        } else if frozen {
            unstableStep(f, p, block: b, owner: owner)
        }
        return (p, outcome)
    }

    /// The two-visit volatility rule of cmp_and_merge_page: a page whose checksum differs from
    /// the one of its last visit is volatile and stays out of the unstable tree this pass.
    /// The kernel hashes every page it reaches here to learn that; a filesystem sees every
    /// write, so only pages whose bytes changed since then are hashed (the write path flags
    /// them, an identical rewrite does not): an unchanged page has the same checksum by
    /// definition. A first visit is volatile whatever the page holds, as the kernel's new item
    /// (checksum 0) makes it. The one difference: a page changed and changed back between two
    /// visits, never hashed before, waits one more pass than on the kernel.
    @inline(__always) private func isVolatile(_ it: UnsafeMutablePointer<ScanItem>, _ page: UnsafeRawPointer, firstVisit: Bool) -> Bool {
        if firstVisit { return true }
        if !it.pointee.changed { return false }
        checksumsComputed &+= 1
        let checksum = UInt32(truncatingIfNeeded: ksm_xxh64(page, BlockArena.pageSize, 0))
        let same = it.pointee.hashed && checksum == it.pointee.checksum
        it.pointee.checksum = checksum
        it.pointee.hashed = true
        it.pointee.changed = false
        return !same
    }

    /// Searches the unstable tree with frozen block `b` of page `p`: inserts it, or merges
    /// with the equal page found there.
    private func unstableStep(_ f: MergeableFile, _ p: Int, block b: UInt32, owner: UInt32) {
        let fileSlot = fileID(f)
        let (node, inserted) = unstable.findOrInsert(UnsafeRawPointer(arena.pointer(b)), block: b,
                                                     a: fileSlot, b: UInt32(truncatingIfNeeded: p), c: owner)
        if inserted {
            let kept: Bool = f.lock.withShared {
                guard f.pages.block(p) == b, let it = f.pages.existingItem(p) else { return false }
                it.pointee.state = .unstable
                it.pointee.node = node
                it.pointee.seq = seq
                stats.add(.unshared, 1)
                return true
            }
            if !kept {
                unstable.remove(node)
                arena.release(b)
            }
            return
        }
        // A match in the unstable tree: owners agree (the tree keys by owner too) unless the
        // pass began with merge_across_owners on and it has just been turned off.
        if current.mergeAcrossOwners || unstable.c(node) == owner {
            mergeWithUnstable(f, p, block: b, node: node)
        }
        arena.release(b)        // our freeze reference
    }

    /// Smart scan's schedule (mm/ksm.c should_skip_rmap_item).
    @inline(__always) private func shouldSkip(_ it: UnsafeMutablePointer<ScanItem>) -> Bool {
        let age = it.pointee.age
        if age != 255 { it.pointee.age = age + 1 }
        if age < 3 { return false }
        if it.pointee.skip == 0 {
            it.pointee.skip = age <= 3 ? 1 : age <= 5 ? 2 : age <= 8 ? 4 : 8
            return false
        }
        it.pointee.skip -= 1
        return true
    }

    /// Takes an item out of the unstable tree (its file's lock held).
    @inline(__always) private func removeFromTree(_ it: UnsafeMutablePointer<ScanItem>) {
        if it.pointee.state == .unstable {
            if it.pointee.seq == seq && passActive {
                let n = it.pointee.node
                if n != 0 && unstable.isLive(n) {
                    arena.release(unstable.block(n))
                    unstable.remove(n)
                }
            }
            stats.add(.unshared, -1)
            it.pointee.state = .visited
            it.pointee.node = 0
        }
    }

    /// A small stable id for a file while it is registered (its position is not stable, so
    /// use the object's address, cut to 32 bits, verified on use).
    /// (The table is guarded by `registryLock`: files leave it when they are deleted.)
    @inline(__always) private func fileID(_ f: MergeableFile) -> UInt32 {
        if f.scanID != 0 { return f.scanID }
        return registryLock.withLock {
            if f.dead { return 0 }
            f.scanID = nextScanID
            nextScanID &+= 1
            if nextScanID == 0 { nextScanID = 1 }
            idTable[f.scanID] = Unmanaged.passUnretained(f)
            return f.scanID
        }
    }

    /// The live file with scanner id `id`, retained for the caller.
    private func file(withID id: UInt32) -> MergeableFile? {
        registryLock.withLock { idTable[id]?.takeUnretainedValue() }
    }
    private var nextScanID: UInt32 = 1
    private var idTable: [UInt32: Unmanaged<MergeableFile>] = [:]

    /// Points page `p` at shared block `s` if it still maps `expect` with the same bytes.
    private func mergeIntoStable(_ f: MergeableFile, _ p: Int, expect b: UInt32, stableBlock s: UInt32) {
        f.lock.withExclusive {
            guard !f.dead, f.pages.block(p) == b, let it = f.pages.existingItem(p), it.pointee.state != .stable else { return }
            guard ksm_memcmp(arena.pointer(b), arena.pointer(s), BlockArena.pageSize) == 0 else { return }
            arena.retain(s)
            f.pages.set(p, s)
            arena.release(b)
            attach(f, p, it, s)
            if trace.enabled { trace.emit("ksm_merge_with_ksm_page", "ksm_page=\(s) ino=\(f.ino) page=\(p) err=0") }
        }
    }

    /// Notes page `p` of `f` as merged in this batch, for `onMerged`.
    @inline(__always) private func noteMerged(_ f: MergeableFile, _ p: Int) {
        if current.dropMergedPageCache && onMerged != nil { mergedInBatch.append(MergedPage(ino: f.ino, page: p)) }
    }

    /// Marks page `p`'s item attached to shared block `s` (its file's lock held).
    private func attach(_ f: MergeableFile, _ p: Int, _ it: UnsafeMutablePointer<ScanItem>, _ s: UInt32) {
        noteMerged(f, p)
        if it.pointee.state == .unstable { stats.add(.unshared, -1) }
        it.pointee.state = .stable
        it.pointee.node = s
        if arena.addSharer(s) == 1 { stats.add(.pagesShared, 1) }
        stats.add(.stableItems, 1)
        stats.add(.mergedTotal, 1)
        f.mergingCount += 1
    }

    private func mergeIntoZero(_ f: MergeableFile, _ p: Int, expect b: UInt32) {
        f.lock.withExclusive {
            guard !f.dead, f.pages.block(p) == b, let it = f.pages.existingItem(p) else { return }
            guard ksm_is_zero(arena.pointer(b), BlockArena.pageSize) != 0 else { return }
            f.pages.set(p, BlockArena.zero)
            arena.release(b)
            noteMerged(f, p)
            it.pointee.state = .zero
            f.zeroCount += 1
            if trace.enabled { trace.emit("ksm_merge_one_page", "kpfn=zero ino=\(f.ino) page=\(p) err=0") }
            stats.add(.zeroPages, 1)
            stats.add(.mergedTotal, 1)
        }
    }

    /// Our page (mapping frozen block `b`) equals unstable node `node`'s block `c`: make `c`
    /// shared, point both pages at it, and move it to the stable tree.
    private func mergeWithUnstable(_ f: MergeableFile, _ p: Int, block b: UInt32, node: UInt32) {
        let c = unstable.block(node)
        let otherID = unstable.a(node)
        let otherPage = Int(unstable.b(node))
        let owner = unstable.c(node)
        unstable.remove(node)          // the tree's reference on c passes to the stable tree
        if trace.enabled { trace.emit("ksm_merge_one_page", "kpfn=\(c) ino=\(f.ino) page=\(p) tree_ino=\(file(withID: otherID)?.ino ?? 0) tree_page=\(otherPage) err=0") }
        let s = insertStable(c, owner: owner)
        var attached = 0
        f.lock.withExclusive {
            guard !f.dead, f.pages.block(p) == b, let it = f.pages.existingItem(p) else { return }
            arena.retain(c)
            f.pages.set(p, c)
            arena.release(b)
            attach(f, p, it, c)
            attached += 1
        }
        if let other = file(withID: otherID) {
            other.lock.withExclusive {
                guard let it = other.pages.existingItem(otherPage), it.pointee.state == .unstable,
                      it.pointee.node == node, it.pointee.seq == seq else { return }
                if !other.dead && other.pages.block(otherPage) == c {
                    attach(other, otherPage, it, c)
                    attached += 1
                } else {
                    stats.add(.unshared, -1)
                    it.pointee.state = .visited
                    it.pointee.node = 0
                }
            }
        }
        _ = s
        _ = attached
    }
}
