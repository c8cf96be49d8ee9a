// Invalidations of the kernel's caches, sent from a thread of their own. A notification sent
// from a request handler, or while holding a lock a handler needs, can deadlock (the kernel
// may wait for a reply that the blocked thread would send), so a filesystem only queues
// inode numbers (and page ranges) here; the thread sends them with no filesystem lock held.
import CFuse3
import Glibc
import Synchronization

public final class KernelCache: @unchecked Sendable {
    /// Pages `first ..< first + count` of inode `ino`.
    public struct PageRun: Sendable {
        public let ino: UInt64
        public let first: Int
        public let count: Int
        public init(ino: UInt64, first: Int, count: Int) { self.ino = ino; self.first = first; self.count = count }
    }
    private struct Queue {
        var attributes: [UInt64] = []
        var data: [PageRun] = []
        var stopping = false
    }
    private let queue = Mutex(Queue())
    private let wake: UnsafeMutablePointer<sem_t>
    private let session: OpaquePointer
    private var thread = pthread_t()
    private var running = false
    /// Notifications sent so far (tests and metrics).
    public let sent = Atomic<Int>(0)
    /// Pages whose cached copies were dropped by `dropData` (sent, not necessarily cached).
    public let pagesDropped = Atomic<Int>(0)
    /// Asked on this thread, just before a run is sent, whether the inode's runs must be kept
    /// after all (for a file opened since they were queued). Set before `start`.
    nonisolated(unsafe) public var keepData: ((UInt64) -> Bool)?

    /// Pages of node `ino` in the kernel's page cache, measured with cachestat(2) on a descriptor
    /// opened by handle on the mount of `mountFD` (root; the open reaches the filesystem, so this
    /// runs on a thread that serves no request and holds no filesystem lock).
    public static func cachedPages(mountFD: Int32, ino: UInt64) -> Result<Int, Errno> {
        let r = cfuse_cached_pages(mountFD, ino, 0)
        return r >= 0 ? .success(r) : .failure(Errno(Int32(-r)))
    }

    /// The calling thread's id, which is the `pid` of the requests it causes.
    public static func threadID() -> Int32 { cfuse_gettid() }

    init(session: OpaquePointer) {
        self.session = session
        wake = .allocate(capacity: 1)
        sem_init(wake, 0, 0)
    }

    deinit {
        stop()
        sem_destroy(wake); wake.deallocate()
    }

    func start() {
        guard !running else { return }
        running = true
        let me = Unmanaged.passUnretained(self).toOpaque()
        pthread_create(&thread, nil, { arg in
            let cache = Unmanaged<KernelCache>.fromOpaque(arg!).takeUnretainedValue()
            cache.serve()
            return nil
        }, me)
    }

    /// Ends the thread (before the session unmounts: pending invalidations are dropped).
    func stop() {
        guard running else { return }
        running = false
        queue.withLock { $0.stopping = true }
        sem_post(wake)
        pthread_join(thread, nil)
    }

    /// Makes the kernel forget the cached attributes of `inos`, so that the next operation
    /// that needs them (a `write` with the writeback cache, a `stat`) asks the filesystem.
    public func invalidateAttributes(_ inos: [UInt64]) {
        guard !inos.isEmpty else { return }
        queue.withLock { $0.attributes.append(contentsOf: inos) }
        sem_post(wake)
    }

    /// Makes the kernel drop its page-cache copies of `runs` (the kernel writes back a dirty
    /// page first, and unmaps a mapped one, which refaults from the filesystem).
    public func dropData(_ runs: [PageRun]) {
        guard !runs.isEmpty else { return }
        queue.withLock { $0.data.append(contentsOf: runs) }
        sem_post(wake)
    }

    private func serve() {
        while true {
            while sem_wait(wake) != 0 && errno == EINTR {}
            let (work, data, stopping) = queue.withLock { q -> ([UInt64], [PageRun], Bool) in
                defer { q.attributes.removeAll(keepingCapacity: true); q.data.removeAll(keepingCapacity: true) }
                return (q.attributes, q.data, q.stopping)
            }
            if stopping { return }
            var seen = Set<UInt64>()
            for ino in work where seen.insert(ino).inserted {
                // ENOENT: the kernel no longer has the inode, nothing to invalidate.
                _ = cfuse_notify_inval_inode(session, ino, -1, 0)
                sent.add(1, ordering: .relaxed)
            }
            var kept: (ino: UInt64, keep: Bool)?
            for run in data {
                if kept?.ino != run.ino { kept = (run.ino, keepData?(run.ino) ?? false) }
                if kept!.keep { continue }
                let offset = Int64(run.first) * 4096
                _ = cfuse_notify_inval_inode(session, run.ino, offset, Int64(run.count) * 4096)
                sent.add(1, ordering: .relaxed)
                pagesDropped.add(run.count, ordering: .relaxed)
            }
        }
    }
}
