// The engine's global counters, shared by the scanner and the write path. Each is one
// atomic 64-bit cell so a FUSE write can account a copy-on-write break at once without a
// lock or a tree walk. The /ksm counter files are derived from these (see KSM-SPEC §3).
import CKSMSupport

public final class KSMStats: @unchecked Sendable {
    enum Cell: Int, CaseIterable {
        case items, stableItems, pagesShared, unshared, zeroPages, fullScans, pagesScanned,
             pagesSkipped, chains, chainDups, cowBreaks, mergedTotal, scannerNanos, passStartNanos,
             lastPassNanos, passPagesDone
    }
    private let cells: UnsafeMutablePointer<Int64>

    init() {
        cells = .allocate(capacity: Cell.allCases.count)
        cells.initialize(repeating: 0, count: Cell.allCases.count)
    }
    deinit { cells.deallocate() }

    @inline(__always) func add(_ c: Cell, _ v: Int64) { _ = ksm_atomic_add64(cells + c.rawValue, v) }
    @inline(__always) func load(_ c: Cell) -> Int64 { ksm_atomic_load64(cells + c.rawValue) }
    @inline(__always) func set(_ c: Cell, _ v: Int64) { ksm_atomic_store64(cells + c.rawValue, v) }

    /// Scan items in existence (the kernel's rmap_items).
    public var items: Int64 { load(.items) }
    /// Shared blocks with at least one item attached.
    public var pagesShared: Int64 { load(.pagesShared) }
    /// Items attached to shared blocks beyond the first of each: the pages saved.
    public var pagesSharing: Int64 { max(0, load(.stableItems) - load(.pagesShared)) }
    /// Items in the unstable tree.
    public var pagesUnshared: Int64 { load(.unshared) }
    /// Items as the kernel counts rmap_items: it frees the item of a page mapped to the zero
    /// page, so items on the zero block are left out of the figures.
    public var rmapItems: Int64 { max(0, items - zeroPages) }
    /// Items that are none of the above: changed since the last visit, new, or skipped.
    public var pagesVolatile: Int64 { max(0, rmapItems - pagesShared - pagesSharing - pagesUnshared) }
    public var zeroPages: Int64 { load(.zeroPages) }
    public var fullScans: Int64 { load(.fullScans) }
    public var pagesScanned: Int64 { load(.pagesScanned) }
    public var pagesSkipped: Int64 { load(.pagesSkipped) }
    public var stableNodeChains: Int64 { load(.chains) }
    public var stableNodeDups: Int64 { load(.chainDups) }
    /// Copy-on-write breaks of shared (or zero) blocks by writes: /proc/vmstat's cow_ksm.
    public var cowBreaks: Int64 { load(.cowBreaks) }
    /// Pages merged since the start (into a shared block or the zero block).
    public var mergedTotal: Int64 { load(.mergedTotal) }
    /// CPU time the scanner thread has used, in nanoseconds.
    public var scannerCPUNanos: Int64 { load(.scannerNanos) }
}
