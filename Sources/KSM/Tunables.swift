// The engine's knobs, each declared once with the kernel's default and a one-line meaning
// (KSM-SPEC §2). The /ksm control files parse into these; the scanner reads a snapshot of
// them at the start of every batch.

public struct Tunables: Equatable, Sendable {
    /// 0 stop (keep merges), 1 run, 2 stop and unmerge everything.
    public var run: UInt32 = 0
    /// Pages handled per batch (skipped pages do not count).
    public var pagesToScan: UInt32 = 100
    /// Sleep between batches, in milliseconds.
    public var sleepMillisecs: UInt32 = 20
    /// Most items attached to one shared block; contents beyond it get more blocks (a chain).
    public var maxPageSharing: Int = 256
    /// NUMA: whether pages of different nodes merge (one node here: no effect but the value).
    public var mergeAcrossNodes = true
    /// Map all-zero pages onto the zero block instead of a shared block.
    public var useZeroPages = false
    /// How often a chain lookup walks all its dups, dropping stale ones.
    public var stableNodeChainsPruneMillisecs: UInt32 = 2000
    /// Skip pages that have not merged for a while, less often as they age.
    public var smartScan = true
    /// Whether the scan-time advisor sets pages_to_scan.
    public var advisorScanTime = false
    public var advisorMaxCPU: UInt32 = 70
    public var advisorMinPagesToScan: UInt64 = 500
    public var advisorMaxPagesToScan: UInt64 = 30000
    /// Seconds a full pass should take, as the advisor aims.
    public var advisorTargetScanTime: UInt64 = 200
    /// ksmfs: whether pages of files with different owners may merge (0 closes the
    /// copy-on-write timing side channel between users).
    public var mergeAcrossOwners = false
    /// ksmfs: whether the copies of merged pages are dropped from the kernel's page cache (for
    /// files nobody holds open), as the kernel's KSM frees a duplicate page when it merges it.
    public var dropMergedPageCache = true

    public init() {}
}
