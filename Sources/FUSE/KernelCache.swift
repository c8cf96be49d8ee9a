// Invalidations of the kernel's caches, sent from a thread of their own. A notification sent
// from a request handler, or while holding a lock a handler needs, can deadlock (the kernel
// may wait for a reply that the blocked thread would send), so a filesystem only queues
// inode numbers here; the thread sends them with no filesystem lock held.
import CFuse3
import Glibc
import Synchronization

public final class KernelCache: @unchecked Sendable {
    private struct Queue {
        var attributes: [UInt64] = []
        var stopping = false
    }
    private let queue = Mutex(Queue())
    private let wake: UnsafeMutablePointer<sem_t>
    private let session: OpaquePointer
    private var thread = pthread_t()
    private var running = false
    /// Notifications sent so far (tests and metrics).
    public let sent = Atomic<Int>(0)

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

    private func serve() {
        while true {
            while sem_wait(wake) != 0 && errno == EINTR {}
            let (work, stopping) = queue.withLock { q -> ([UInt64], Bool) in
                defer { q.attributes.removeAll(keepingCapacity: true) }
                return (q.attributes, q.stopping)
            }
            if stopping { return }
            for ino in work {
                // ENOENT: the kernel no longer has the inode, nothing to invalidate.
                _ = cfuse_notify_inval_inode(session, ino, -1, 0)
                sent.add(1, ordering: .relaxed)
            }
        }
    }
}
