// Merged pages stop costing page cache. The kernel keeps a copy of every page of a FUSE file
// that was written or read, per inode, merged or not; the kernel's KSM frees its duplicate at
// the moment it merges, and so does ksmfs here: when pages of a file merge and nobody holds the
// file open, the kernel is told to drop those pages' copies (FUSE_NOTIFY_INVAL_INODE on the
// page range), and the next read gets the shared block. The engine reports merges at the end
// of each batch; runs are queued to the kernel-cache thread, which serves no request and holds
// no lock, and which checks again just before it sends that the file is still closed.
//
// A file that is open keeps its cache until its last close (it may be mapped: dropping would
// unmap it and make every process refault), and then the whole file's copies are dropped
// once. A dirty page is never lost: the kernel writes it back before it drops it.
import FUSE
import KSM

extension MemoryFileSystem {
    /// Largest gap of unmerged pages folded into one run (cheaper than another notification).
    static let dropGapPages = 16

    /// Connects the engine's merge reports to the kernel-cache thread (`kernelCache` is set).
    func connectPageCacheDrop() {
        guard let cache = kernelCache else { engine.onMerged = nil; return }
        cache.keepData = { [unowned self] ino in
            guard let inode = self.inode(ino), inode.file != nil else { return true }
            return inode.meta.withLock {
                guard inode.openHandles > 0 else { return false }
                inode.mergedWhileOpen = true
                return true
            }
        }
        engine.onMerged = { [weak cache] pages in cache?.dropData(MemoryFileSystem.runs(of: pages)) }
    }

    /// Merged pages as runs per inode, sorted, with gaps of at most `dropGapPages` folded in.
    static func runs(of pages: [KSMEngine.MergedPage]) -> [KernelCache.PageRun] {
        var runs: [KernelCache.PageRun] = []
        var ino: UInt64 = 0, first = 0, end = 0
        for p in pages.sorted() {
            if end > 0, p.ino == ino, p.page <= end + dropGapPages {
                end = max(end, p.page + 1)
                continue
            }
            if end > 0 { runs.append(.init(ino: ino, first: first, count: end - first)) }
            ino = p.ino; first = p.page; end = p.page + 1
        }
        if end > 0 { runs.append(.init(ino: ino, first: first, count: end - first)) }
        return runs
    }

    /// The last handle of a file in which pages merged while it was open has closed.
    func dropPageCacheAtLastClose(_ inode: Inode) {
        guard let f = inode.file, engine.tunables.dropMergedPageCache else { return }
        let size = f.size
        let pages = Int(size >> 12) + (size & 4095 == 0 ? 0 : 1)
        if pages > 0 { kernelCache?.dropData([.init(ino: inode.ino, first: 0, count: pages)]) }
    }
}
