// Replies that cannot be plain return values. `ReadReply` is noncopyable and answers its
// request exactly once: a consuming `send`/`fail`, or EIO from `deinit` if the filesystem
// forgot (a bug, but never a hung caller). `DirectoryBuffer` packs readdir entries.
import CFuse3
import Glibc

public struct ReadReply: ~Copyable {
    let req: fuse_req_t
    init(_ req: fuse_req_t) { self.req = req }

    /// Replies with data gathered from `iov` (`fuse_reply_iov`): the memory need only stay
    /// valid until this call returns, so a filesystem sends straight from its pages under lock.
    public consuming func send(_ iov: UnsafePointer<iovec>, count: Int) {
        fuse_reply_iov(req, iov, Int32(count))
        discard self
    }

    /// Replies with one contiguous buffer.
    public consuming func send(_ bytes: UnsafeRawBufferPointer) {
        fuse_reply_buf(req, bytes.baseAddress?.assumingMemoryBound(to: CChar.self), bytes.count)
        discard self
    }

    /// Replies with the bytes of an array.
    public consuming func send(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { b in
            _ = fuse_reply_buf(req, b.baseAddress?.assumingMemoryBound(to: CChar.self), b.count)
        }
        discard self
    }

    public consuming func fail(_ error: Errno) {
        fuse_reply_err(req, error.rawValue)
        discard self
    }

    deinit { fuse_reply_err(req, EIO) }
}

/// A readdir reply under construction, at most `capacity` bytes (the kernel's buffer size).
public struct DirectoryBuffer {
    let req: fuse_req_t
    let storage: UnsafeMutablePointer<CChar>
    let capacity: Int
    public private(set) var used = 0

    init(req: fuse_req_t, capacity: Int) {
        self.req = req
        self.capacity = capacity
        storage = .allocate(capacity: max(capacity, 1))
    }

    /// Adds one entry whose next offset is `nextOffset`; returns false when it does not fit.
    public mutating func add(name: Name, ino: UInt64, mode: mode_t, nextOffset: Int64) -> Bool {
        var st = stat()
        st.st_ino = UInt(ino)
        st.st_mode = mode
        let need = name.withCString { fuse_add_direntry(req, nil, 0, $0, nil, 0) }
        if used + need > capacity { return false }
        _ = name.withCString { fuse_add_direntry(req, storage + used, capacity - used, $0, &st, off_t(nextOffset)) }
        used += need
        return true
    }

    func free() { storage.deallocate() }
}
