// The stable side of the engine: shared blocks in the content tree, each tree node owning a
// list of dups (blocks of the same content, more than one when max_page_sharing forces a
// chain), lazy removal of stale dups, unmerging, the advisor, and the whole-engine
// invariants that tests check after every step.
import CKSMSupport
import Dispatch
import Glibc

/// Blocks of one content, linked per stable-tree node (the kernel's stable_node dups).
struct DupPool {
    var block: [UInt32] = [0]
    var next: [UInt32] = [0]
    var owner: [UInt32] = [0]
    var free: [UInt32] = []

    mutating func make(_ b: UInt32, owner o: UInt32, next n: UInt32) -> UInt32 {
        if let d = free.popLast() {
            block[Int(d)] = b; next[Int(d)] = n; owner[Int(d)] = o
            return d
        }
        block.append(b); next.append(n); owner.append(o)
        return UInt32(block.count - 1)
    }

    mutating func release(_ d: UInt32) { block[Int(d)] = 0; free.append(d) }

    mutating func reset() { block = [0]; next = [0]; owner = [0]; free = [] }
}

extension KSMEngine {
    private var nowMs: UInt32 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt32(truncatingIfNeeded: Int64(now.tv_sec) * 1000 + Int64(now.tv_nsec) / 1_000_000)
    }

    /// A shared block with `page`'s content and room for one more item (and, unless
    /// merge_across_owners, the same owner), or block 0.
    func searchStable(_ page: UnsafeRawPointer, owner: UInt32) -> (block: UInt32, node: UInt32) {
        let n = stable.search(page)
        if n == 0 { return (0, 0) }
        return (chooseDup(n, owner: owner), n)
    }

    /// Walks node `n`'s dups, dropping stale ones; the first with room, or with a prune due,
    /// the fullest with room (mm/ksm.c __stable_node_dup).
    private func chooseDup(_ n: UInt32, owner: UInt32) -> UInt32 {
        let isChain = stable.b(n) > 1
        var prune = false
        if isChain {
            let now = nowMs
            if now &- stable.c(n) >= current.stableNodeChainsPruneMillisecs {
                prune = true
                stable.setC(n, now)
            }
        }
        var best: UInt32 = 0
        var bestCount = -1
        var prev: UInt32 = 0
        var d = stable.a(n)
        while d != 0 {
            let next = dups.next[Int(d)]
            let blk = dups.block[Int(d)]
            if arena.refcount(blk) <= 1 {
                if removeDup(n, d, prev: prev) { return 0 }   // node gone
                d = next
                continue
            }
            let count = Int(arena.sharerCount(blk) & ~KSMEngine.stableFlag)
            if count < current.maxPageSharing && (current.mergeAcrossOwners || dups.owner[Int(d)] == owner) {
                if !prune { return blk }
                if count > bestCount { best = blk; bestCount = count }
            }
            prev = d
            d = next
        }
        return best
    }

    /// Unlinks dup `d` of node `n` and frees its block; returns true if the node went away.
    @discardableResult
    private func removeDup(_ n: UInt32, _ d: UInt32, prev: UInt32) -> Bool {
        let blk = dups.block[Int(d)]
        let next = dups.next[Int(d)]
        if prev == 0 { stable.setA(n, next) } else { dups.next[Int(prev)] = next }
        dups.release(d)
        let count = stable.b(n) - 1
        stable.setB(n, count)
        if count >= 1 { stats.add(.chainDups, -1) }
        if count == 1 { stats.add(.chains, -1); stats.add(.chainDups, -1) }
        arena.resetSharers(blk)
        if trace.enabled { trace.emit("ksm_remove_ksm_page", "kpfn=\(blk)") }
        if count == 0 {
            stable.remove(n)
        } else if stable.block(n) == blk {
            stable.setBlock(n, dups.block[Int(stable.a(n))])
        }
        arena.release(blk)
        return count == 0
    }

    /// Makes block `c` (its reference now the tree's) a shared block in the stable tree:
    /// a new node, or one more dup of a node whose dups are full (a chain).
    @discardableResult
    func insertStable(_ c: UInt32, owner: UInt32) -> UInt32 {
        arena.resetSharers(c)
        _ = ksm_atomic_add32(arena.sharers + Int(c), KSMEngine.stableFlag)
        let (n, inserted) = stable.findOrInsert(UnsafeRawPointer(arena.pointer(c)), block: c, a: 0, b: 1, c: nowMs)
        if inserted {
            stable.setA(n, dups.make(c, owner: owner, next: 0))
            return n
        }
        let d = dups.make(c, owner: owner, next: stable.a(n))
        stable.setA(n, d)
        let count = stable.b(n) + 1
        stable.setB(n, count)
        if count == 2 { stats.add(.chains, 1); stats.add(.chainDups, 2) } else { stats.add(.chainDups, 1) }
        return n
    }

    /// Drops every stale dup (a shared block no page maps any more) at the end of a pass.
    func sweepStableTree() {
        var nodes: [UInt32] = []
        nodes.reserveCapacity(stable.count)
        var n = stable.first()
        while n != 0 { nodes.append(n); n = stable.next(n) }
        for n in nodes {
            var prev: UInt32 = 0
            var d = stable.a(n)
            while d != 0 {
                let next = dups.next[Int(d)]
                if arena.refcount(dups.block[Int(d)]) <= 1 {
                    if removeDup(n, d, prev: prev) { break }
                } else {
                    prev = d
                }
                d = next
            }
        }
    }

    // MARK: unmerging

    /// Gives every page of `f` that maps a shared or zero block a private copy and drops its
    /// items. Returns false if the copies did not fit (what was done stays done, no data lost).
    func unmerge(_ f: MergeableFile) -> Bool {
        let ok: Bool = f.lock.withExclusive {
            let limit = f.pages.pageLimit
            func needsCopy(_ b: UInt32, _ it: UnsafeMutablePointer<ScanItem>?) -> Bool {
                isStableBlock(b) || (b == BlockArena.zero && it?.pointee.state == .zero)
            }
            // Count the copies first so that fresh blocks come in batches, pre-faulted.
            var copies = 0
            var p = 0
            while let d = f.pages.nextData(from: p, limit: limit) {
                p = d + 1
                if needsCopy(f.pages.block(d), f.pages.existingItem(d)) { copies += 1 }
            }
            var shared: Int64 = 0, stableItems: Int64 = 0, zeroPages: Int64 = 0, unshared: Int64 = 0, items: Int64 = 0
            defer {
                stats.add(.pagesShared, -shared); stats.add(.stableItems, -stableItems)
                stats.add(.zeroPages, -zeroPages); stats.add(.unshared, -unshared); stats.add(.items, -items)
            }
            let batch = 512
            return withUnsafeTemporaryAllocation(of: UInt32.self, capacity: batch) { buf -> Bool in
                let fresh = buf.baseAddress!
                var have = 0, used = 0
                p = 0
                while let d = f.pages.nextData(from: p, limit: limit) {
                    p = d + 1
                    let b = f.pages.block(d)
                    let it = f.pages.existingItem(d)
                    if needsCopy(b, it) {
                        if used == have {
                            let n = min(batch, copies)
                            do { try arena.allocate(n, into: fresh) } catch { return false }
                            if !arena.populate(fresh, count: n) {
                                for i in 0..<n { arena.release(fresh[i]) }
                                return false
                            }
                            have = n; used = 0; copies -= n
                        }
                        let nb = fresh[used]
                        used += 1
                        if b != BlockArena.zero { arena.pointer(nb).copyMemory(from: arena.pointer(b), byteCount: BlockArena.pageSize) }
                        f.pages.set(d, nb)
                        if let it {
                            if it.pointee.state == .stable {
                                if arena.removeSharer(b) == 0 { shared += 1 }
                                stableItems += 1
                                f.mergingCount -= 1
                            } else if it.pointee.state == .zero {
                                zeroPages += 1
                                f.zeroCount -= 1
                            }
                            it.pointee.state = .visited
                        }
                        arena.release(b)
                    }
                    if let it {
                        if it.pointee.state == .unstable { unshared += 1 }
                        if it.pointee.state == .stable {
                            if arena.removeSharer(b) == 0 { shared += 1 }
                            stableItems += 1
                            f.mergingCount -= 1
                        }
                        it.pointee = ScanItem()
                        f.itemCount -= 1
                        items += 1
                    }
                }
                for i in used..<have { arena.release(fresh[i]) }
                return true
            }
        }
        arena.flush()
        return ok
    }

    /// run=2: unmerges every file, empties both trees, resets full_scans. Returns false if
    /// private copies did not fit.
    public func unmergeAll() -> Bool {
        batchLock.withLock { unmergeAllLocked() }
    }

    /// `unmergeAll` for a caller that already holds the batch lock (a write to run).
    public func unmergeAllLocked() -> Bool {
        let all = allFiles()
        // Files are independent here (each under its own lock; the arena and the counters are
        // shared safely), so they are unmerged on every core: the kernel does it in the
        // writer's thread alone.
        let workers = max(1, min(all.count, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))), 8))
        // An atomic flag, read and set with atomics only.
        nonisolated(unsafe) let failed = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
        failed.initialize(to: 0)
        defer { failed.deallocate() }
        let work: @Sendable (Int) -> Void = { (w: Int) in
            var i = w
            while i < all.count, ksm_atomic_load32(failed) == 0 {
                if !self.unmerge(all[i]) { ksm_atomic_store32(failed, 1) }
                i += workers
            }
        }
        if workers == 1 { work(0) } else { DispatchQueue.concurrentPerform(iterations: workers, execute: work) }
        if ksm_atomic_load32(failed) != 0 { return false }
        clearTrees()
        stats.set(.fullScans, 0)
        return true
    }

    func allFiles() -> [MergeableFile] { registryLockedFiles() }

    /// Whether any shared block exists (stale ones are dropped first); batch lock held.
    public func hasSharedBlocksLocked() -> Bool {
        if stats.pagesShared > 0 { return true }
        sweepStableTree()
        return stable.count > 0
    }

    /// general_profit: pages saved (sharing + zero pages) minus the items' metadata.
    public var generalProfit: Int64 {
        (stats.pagesSharing + stats.zeroPages) * Int64(BlockArena.pageSize) - stats.rmapItems * Int64(KSMEngine.bytesPerItem)
    }

    /// Pages handled in the current pass, and the pages of mergeable files (the pass's size).
    public var passProgress: (done: Int64, total: Int64) {
        var total: Int64 = 0
        for f in allFiles() { total += f.lock.withShared { (f.dead || !f._mergeable) ? 0 : Int64(f.pages.dataPages) } }
        return (stats.load(.passPagesDone), total)
    }

    /// Seconds the last full pass took.
    public var lastPassSeconds: Double { Double(stats.load(.lastPassNanos)) / 1e9 }

    /// Pages of all files (logical, holes excluded) and blocks they use (physical).
    public var logicalPages: Int64 {
        var total: Int64 = 0
        for f in allFiles() { total += f.lock.withShared { f.dead ? 0 : Int64(f.pages.dataPages) } }
        return total
    }

    /// Forgets the advisor's history (advisor_mode changed).
    public func resetAdvisor() {
        batchLock.withLock {
            advisorLast = 0
            advisorPrevChange = 0
        }
    }

    /// Empties both trees and the dup pool, dropping their references (all pages unmerged).
    private func clearTrees() {
        resetPass()
        var n = stable.first()
        while n != 0 {
            var d = stable.a(n)
            while d != 0 {
                let blk = dups.block[Int(d)]
                arena.resetSharers(blk)
                arena.release(blk)
                d = dups.next[Int(d)]
            }
            n = stable.next(n)
        }
        stable.removeAll()
        dups.reset()
        stats.set(.chains, 0)
        stats.set(.chainDups, 0)
        stats.set(.pagesShared, 0)
        arena.flush()
    }

    // MARK: advisor

    /// The scan-time advisor (KSM-SPEC §4.6), run at the end of each pass.
    func runAdvisor(elapsedMs: UInt64, cpuMs: UInt64) {
        let st = max(1, elapsedMs / 1000)
        let cpu = max(1, cpuMs &* 100 / (st &* 1000))
        let last = advisorLast == 0 ? st : advisorLast
        let target = max(1, current.advisorTargetScanTime)
        let factor = max(1, target &* 100 / st)
        var change = max(1, st &* 100 / last)
        change = (70 &* advisorPrevChange &+ 30 &* change) / 100
        let pts = UInt64(current.pagesToScan)
        var p = pts &* 100 / factor &* change / 100
        let perCPU = max(1, pts / cpu)
        p = min(p, perCPU &* UInt64(current.advisorMaxCPU))
        p = max(p, perCPU &* 10)
        p = min(p, current.advisorMaxPagesToScan)
        advisorPrevChange = change
        advisorLast = st
        let newValue = UInt32(truncatingIfNeeded: p)
        updateTunablesQuietly { $0.pagesToScan = newValue }
        current.pagesToScan = newValue
        lastAdvice = (st, cpu, newValue)
        if trace.enabled { trace.emit("ksm_advisor", "scan_time=\(st) pages_to_scan=\(newValue) cpu_percent=\(cpu)") }
    }

    // MARK: invariants

    /// Checks the whole engine (call with no scanner running and no concurrent writers):
    /// trees, refcounts = mappings + tree references, sharer counts, counters, stable contents.
    public func checkInvariants() {
        batchLock.withLock {
            stable.checkInvariants()
            unstable.checkInvariants()
            var refs: [UInt32: Int] = [:]
            var sharers: [UInt32: Int] = [:]
            var items = 0, stableItems = 0, zero = 0, unshared = 0
            for f in allFiles() {
                f.lock.withShared {
                    var fi = 0, fm = 0, fz = 0
                    let limit = f.pages.pageLimit
                    for p in 0..<limit {
                        let b = f.pages.block(p)
                        if b >= 2 { refs[b, default: 0] += 1 }
                        guard let it = f.pages.existingItem(p) else { continue }
                        fi += 1
                        switch it.pointee.state {
                        case .stable:
                            precondition(isStableBlock(b), "item attached but page \(p) maps non-shared block \(b)")
                            sharers[b, default: 0] += 1
                            fm += 1
                        case .zero:
                            precondition(b == BlockArena.zero, "zero item on a non-zero block")
                            fz += 1
                        case .unstable:
                            unshared += 1
                        default: break
                        }
                    }
                    precondition(fi == f.itemCount && fm == f.mergingCount && fz == f.zeroCount, "per-file figures drifted")
                    items += fi; stableItems += fm; zero += fz
                }
            }
            var n = unstable.first()
            while n != 0 { refs[unstable.block(n), default: 0] += 1; n = unstable.next(n) }
            var shared = 0
            n = stable.first()
            while n != 0 {
                var d = stable.a(n)
                var count: UInt32 = 0
                while d != 0 {
                    let blk = dups.block[Int(d)]
                    refs[blk, default: 0] += 1
                    precondition(isStableBlock(blk), "dup block \(blk) lost its stable flag")
                    precondition(ksm_memcmp(arena.pointer(blk), arena.pointer(stable.block(n)), BlockArena.pageSize) == 0,
                                 "a shared block's content changed")
                    let s = Int(arena.sharerCount(blk) & ~KSMEngine.stableFlag)
                    precondition(s == sharers[blk, default: 0], "sharer count of \(blk) is \(s), items say \(sharers[blk, default: 0])")
                    if s > 0 { shared += 1 }
                    count += 1
                    d = dups.next[Int(d)]
                }
                precondition(count == stable.b(n) && count >= 1, "dup count of a stable node is wrong")
                n = stable.next(n)
            }
            for (b, r) in refs {
                precondition(arena.refcount(b) == UInt32(r), "block \(b): refcount \(arena.refcount(b)) but \(r) references")
            }
            precondition(Int64(items) == stats.items, "items counter \(stats.items) != \(items)")
            precondition(Int64(stableItems) == stats.load(.stableItems), "stable items counter drifted")
            precondition(Int64(shared) == stats.pagesShared, "pages_shared \(stats.pagesShared) != \(shared)")
            precondition(Int64(zero) == stats.zeroPages, "ksm_zero_pages drifted")
            precondition(Int64(unshared) == stats.pagesUnshared, "pages_unshared \(stats.pagesUnshared) != \(unshared)")
        }
    }
}
