// The /ksm control directory (found by name, not listed by readdir of the root): the kernel's
// 24 files of /sys/kernel/mm/ksm with the same
// names, modes, formats, parsing and errno (ControlParser), served with direct I/O so every
// read shows the live value, plus the ksmfs additions, named so they cannot be mistaken for
// kernel files: `cow_ksm` (copy-on-write breaks, as /proc/vmstat), `merge_across_owners` and
// `drop_merged_page_cache` (the kernel's KSM never sees page cache).
import FUSE
import Glibc
import KSM

/// One file of /ksm: how to read it, and for a tunable how a write applies.
final class ControlFile {
    let name: String
    let isTunable: Bool
    let read: () -> [UInt8]
    let write: (UnsafeRawBufferPointer) -> Result<Int, Errno>
    /// For a stream (trace): a handle per open, reads that wait for data, and a release.
    var stream: (open: () -> UInt64, read: (UInt64, Int, Request) -> Result<[UInt8], Errno>, release: (UInt64) -> Void)?

    // The text an open file reads: made at its read at offset 0 and kept until release, as
    // sysfs does, so that a reader taking it in several reads never sees two values spliced
    // ("0\n" then the tail of "1024\n").
    private let snapshotLock = Mutex()
    private var snapshots: [UInt64: [UInt8]] = [:]
    private var nextHandle: UInt64 = 1

    func openHandle() -> UInt64 { snapshotLock.withLock { defer { nextHandle += 1 }; return nextHandle } }

    func text(handle: UInt64, offset: Int64) -> [UInt8] {
        if offset > 0, let t = snapshotLock.withLock({ snapshots[handle] }) { return t }
        let t = read()
        snapshotLock.withLock { snapshots[handle] = t }
        return t
    }

    func release(handle: UInt64) { _ = snapshotLock.withLock { snapshots.removeValue(forKey: handle) } }

    init(name: String, isTunable: Bool, read: @escaping () -> [UInt8],
         write: @escaping (UnsafeRawBufferPointer) -> Result<Int, Errno> = { _ in .failure(.acces) }) {
        self.name = name
        self.isTunable = isTunable
        self.read = read
        self.write = write
    }
}

/// Reads and writes of the control files against one engine (no FUSE types: tests drive it).
public struct ControlPlane {
    public let engine: KSMEngine
    /// Pages of merged files whose kernel page-cache copies were dropped (for metrics).
    let pageCacheDropped: () -> Int
    /// The shared page cache of identical immutable files (nil: share_immutable is not on).
    var sharedCache: () -> ImmutableSharing.Figures? = { nil }
    /// The page cache the kernel holds for the files, as last measured (nil: not yet).
    var pageCache: () -> PageCacheProbe.Result? = { nil }

    public init(engine: KSMEngine, pageCacheDropped: @escaping () -> Int = { 0 }) {
        self.engine = engine
        self.pageCacheDropped = pageCacheDropped
    }

    /// Files beyond the kernel's: (name, mode, isTunable).
    /// (`metrics` and `trace` are added beside these; they are not values.)
    public static let extraFiles: [(name: String, mode: UInt32, isTunable: Bool)] = [
        ("cow_ksm", 0o444, false),
        ("merge_across_owners", 0o644, true),
        ("drop_merged_page_cache", 0o644, true),
    ]

    public static var allFiles: [(name: String, mode: UInt32, isTunable: Bool)] {
        (ControlParser.files + extraFiles).sorted { $0.name < $1.name }
    }

    /// The text a read of `name` returns.
    public func read(_ name: String) -> [UInt8] {
        let t = engine.tunables
        let s = engine.stats
        func u(_ v: UInt64) -> [UInt8] { ControlParser.format(unsigned: v) }
        func u(_ v: Int64) -> [UInt8] { ControlParser.format(unsigned: UInt64(max(0, v))) }
        func b(_ v: Bool) -> [UInt8] { u(UInt64(v ? 1 : 0)) }
        switch name {
        case "run": return u(UInt64(t.run))
        case "pages_to_scan": return u(UInt64(t.pagesToScan))
        case "sleep_millisecs": return u(UInt64(t.sleepMillisecs))
        case "max_page_sharing": return u(UInt64(t.maxPageSharing))
        case "merge_across_nodes": return b(t.mergeAcrossNodes)
        case "use_zero_pages": return b(t.useZeroPages)
        case "stable_node_chains_prune_millisecs": return u(UInt64(t.stableNodeChainsPruneMillisecs))
        case "smart_scan": return b(t.smartScan)
        case "advisor_mode": return ControlParser.formatAdvisorMode(scanTime: t.advisorScanTime)
        case "advisor_max_cpu": return u(UInt64(t.advisorMaxCPU))
        case "advisor_min_pages_to_scan": return u(t.advisorMinPagesToScan)
        case "advisor_max_pages_to_scan": return u(t.advisorMaxPagesToScan)
        case "advisor_target_scan_time": return u(t.advisorTargetScanTime)
        case "merge_across_owners": return b(t.mergeAcrossOwners)
        case "drop_merged_page_cache": return b(t.dropMergedPageCache)
        case "full_scans": return u(s.fullScans)
        case "pages_scanned": return u(s.pagesScanned)
        case "pages_shared": return u(s.pagesShared)
        case "pages_sharing": return u(s.pagesSharing)
        case "pages_unshared": return u(s.pagesUnshared)
        case "pages_skipped": return u(s.pagesSkipped)
        case "pages_volatile": return ControlParser.format(signed: s.pagesVolatile)
        case "ksm_zero_pages": return ControlParser.format(signed: s.zeroPages)
        case "stable_node_chains": return u(s.stableNodeChains)
        case "stable_node_dups": return u(s.stableNodeDups)
        case "general_profit": return ControlParser.format(signed: engine.generalProfit)
        case "cow_ksm": return u(s.cowBreaks)
        default: return []
        }
    }

    /// A write to tunable `name`: the bytes written, or the kernel's errno.
    public func write(_ name: String, _ bytes: UnsafeRawBufferPointer) -> Result<Int, Errno> {
        let reported = min(bytes.count, ControlParser.maxWriteSize)
        if name == "drop_merged_page_cache" {
            // A boolean, parsed as the kernel's booleans; it takes effect at the next batch.
            if bytes.isEmpty { return .success(0) }
            switch ControlParser.parse(file: "smart_scan", bytes: bytes) {
            case .failure(let e): return .failure(Errno(e.errno))
            case .success(let w):
                if case .smartScan(let on)? = w { engine.updateTunables { $0.dropMergedPageCache = on } }
                return .success(reported)
            }
        }
        if name == "merge_across_owners" {
            // A boolean, parsed as the kernel's booleans; like merge_across_nodes, changing it
            // while shared blocks exist is EBUSY (unmerge first: echo 2 > run).
            if bytes.isEmpty { return .success(0) }
            switch ControlParser.parse(file: "smart_scan", bytes: bytes) {
            case .failure(let e): return .failure(Errno(e.errno))
            case .success(let w):
                guard case .smartScan(let on)? = w else { return .success(reported) }
                let busy: Bool = engine.betweenBatches {
                    if engine.tunables.mergeAcrossOwners == on { return false }
                    if engine.hasSharedBlocksLocked() { return true }
                    engine.updateTunablesQuietly { $0.mergeAcrossOwners = on }
                    return false
                }
                return busy ? .failure(.busy) : .success(reported)
            }
        }
        if name == "pages_to_scan" && !bytes.isEmpty && engine.tunables.advisorScanTime { return .failure(.inval) }
        let parsed: ControlWrite?
        switch ControlParser.parse(file: name, bytes: bytes) {
        case .failure(let e): return .failure(Errno(e.errno))
        case .success(let w): parsed = w
        }
        guard let w = parsed else { return .success(0) }
        switch w {
        case .run(let v):
            return engine.betweenBatches { () -> Result<Int, Errno> in
                let old = engine.tunables.run
                if old == v { return .success(reported) }
                if v == 2 {
                    engine.updateTunables { $0.run = 2 }
                    if !engine.unmergeAllLocked() {
                        engine.updateTunables { $0.run = 0 }
                        return .failure(.nomem)
                    }
                } else {
                    engine.updateTunables { $0.run = v }
                }
                return .success(reported)
            }
        case .pagesToScan(let v): engine.updateTunables { $0.pagesToScan = v }
        case .sleepMillisecs(let v): engine.updateTunables { $0.sleepMillisecs = v }
        case .maxPageSharing(let v):
            if engine.tunables.maxPageSharing == v { return .success(reported) }
            let busy: Bool = engine.betweenBatches {
                if engine.tunables.maxPageSharing == v { return false }
                if engine.hasSharedBlocksLocked() { return true }
                engine.updateTunablesQuietly { $0.maxPageSharing = v }
                return false
            }
            if busy { return .failure(.busy) }
        case .mergeAcrossNodes(let on):
            let busy: Bool = engine.betweenBatches {
                if engine.tunables.mergeAcrossNodes == on { return false }
                if engine.hasSharedBlocksLocked() { return true }
                engine.updateTunablesQuietly { $0.mergeAcrossNodes = on }
                return false
            }
            if busy { return .failure(.busy) }
        case .useZeroPages(let on): engine.updateTunables { $0.useZeroPages = on }
        case .stableNodeChainsPruneMillisecs(let v): engine.updateTunables { $0.stableNodeChainsPruneMillisecs = v }
        case .smartScan(let on): engine.updateTunables { $0.smartScan = on }
        case .advisorMode(let scanTime):
            engine.updateTunables { t in
                if t.advisorScanTime == scanTime { return }
                t.advisorScanTime = scanTime
                t.pagesToScan = scanTime ? UInt32(truncatingIfNeeded: t.advisorMinPagesToScan) : 100
            }
            engine.resetAdvisor()
        case .advisorMaxCPU(let v): engine.updateTunables { $0.advisorMaxCPU = v }
        case .advisorMinPagesToScan(let v): engine.updateTunables { $0.advisorMinPagesToScan = v }
        case .advisorMaxPagesToScan(let v): engine.updateTunables { $0.advisorMaxPagesToScan = v }
        case .advisorTargetScanTime(let v): engine.updateTunables { $0.advisorTargetScanTime = v }
        }
        return .success(reported)
    }
}

extension MemoryFileSystem {
    /// Creates /ksm and its files under the root.
    func makeControlDirectory() -> Inode {
        let owner: uid_t = options.allowOther ? 0 : options.mountOwner
        let dir = newInode(mode: S_IFDIR | 0o755, uid: 0, gid: 0, kind: .directory(Directory(parent: 1)), counted: false)!
        // Found by name, never listed: a tool that walks, copies, archives, checksums or
        // empties the mount (grep -r, find, cp -a, tar, rsync, du, rm -rf MNT/*) does not
        // see it, as ZFS hides .zfs. Not counted in the root's link count either, so that
        // find's leaf optimisation and a fresh mount's nlink (2) are tmpfs's.
        root.directory!.insert("ksm", dir, unlisted: true)
        var plane = ControlPlane(engine: engine, pageCacheDropped: { [unowned self] in
            self.kernelCache?.pagesDropped.load(ordering: .relaxed) ?? 0
        })
        plane.pageCache = { [unowned self] in self.probe.sample(self) }
        plane.sharedCache = { [unowned self] in
            guard let s = self.sharing, s.enabled.load(ordering: .relaxed) else { return nil }
            return s.figures
        }
        for spec in ControlPlane.allFiles {
            let name = spec.name
            let cf = ControlFile(name: name, isTunable: spec.isTunable, read: { plane.read(name) },
                                 write: { plane.write(name, $0) })
            let inode = newInode(mode: S_IFREG | mode_t(spec.mode), uid: spec.isTunable ? owner : 0, gid: 0,
                                 kind: .control(cf), counted: false)!
            dir.directory!.insert(Name(name), inode)
        }
        let mountpoint = options.mountpoint
        let metrics = ControlFile(name: "metrics", isTunable: false, read: { plane.metrics(mountpoint: mountpoint) })
        let trace = ControlFile(name: "trace", isTunable: false, read: { [] })
        let buffer = engine.trace
        trace.stream = (
            open: { buffer.attach() },
            read: { handle, size, request in
                while true {
                    let bytes = buffer.read(handle, max: max(size, 1), timeoutMs: 200)
                    if !bytes.isEmpty { return .success(bytes) }
                    if request.shouldStop { return .failure(Errno(EINTR)) }
                }
            },
            release: { buffer.detach($0) }
        )
        for cf in [metrics, trace] {
            let inode = newInode(mode: S_IFREG | 0o444, uid: 0, gid: 0, kind: .control(cf), counted: false)!
            dir.directory!.insert(Name(cf.name), inode)
        }
        return dir
    }
}
