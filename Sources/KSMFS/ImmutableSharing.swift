// Identical immutable files share one page cache (`-o share_immutable`). FUSE gives every inode
// its own page cache, so N processes mapping N copies of one file hold N copies in memory even
// once ksmfs has merged the copies' blocks. With FUSE passthrough, reads and mmaps of an open go
// to a backing file the daemon registered; opens of all files with the same content name the
// same backing file, so the kernel holds that content once, whoever maps which copy.
//
// The rules (README, "Sharing the page cache of identical immutable files"):
// - Only read-only opens of files that are immutable (`chattr +i`), mergeable and not under
//   `run=2` are passed through: a write through a passthrough open would change every sibling
//   behind ksmfs's back, and nothing in the kernel stops a store through such a mapping.
// - A group is the files of one content (size, hash, and every byte compared), and of one owner
//   unless `merge_across_owners` is 1. Its backing file, a memfd filled from the file's blocks,
//   exists while some member has a passthrough open; the last close frees it.
// - The kernel refuses to mix passthrough and cached opens of one inode: while a member has a
//   passthrough open, every open of it is one (even after `chattr -i`), and opening it for
//   writing or truncating it is refused with ETXTBSY, as for a running executable; while it has
//   a cached open (opened before it became immutable), new opens are cached too.
import FUSE
import Glibc
import KSM
import CKSMSupport
import Logging
import Synchronization

final class ImmutableSharing: @unchecked Sendable {
    struct Key: Hashable {
        let size: Int64
        let hash: UInt64
        /// The members' owner, or nil when owners may share (merge_across_owners=1).
        let owner: UInt32?
    }

    final class Group {
        let key: Key
        /// Member files by inode number.
        var members: [UInt64: MergeableFile] = [:]
        /// The registered backing file (0: none; made at the first passthrough open).
        var backingID: Int32 = 0
        /// Passthrough opens of all members.
        var opens = 0
        init(key: Key) { self.key = key }
    }

    struct Membership {
        let group: Group
        /// This inode's passthrough opens.
        var opens: Int32 = 0
        /// No longer immutable: it leaves the group at its last passthrough close.
        var leaving = false
    }

    /// Guards everything below; never held while a file's content is read.
    private let lock = Mutex()
    private var groups: [Key: Group] = [:]
    private var members: [UInt64: Membership] = [:]
    /// Serializes making backing files (a copy of the content), apart from `lock`.
    private let setup = Mutex()

    let enabled = Atomic<Bool>(false)
    var backing: BackingFiles?
    private let logger: Logger
    /// Counters for metrics: passthrough opens granted, backing files made, and their bytes.
    let opensGranted = Atomic<Int>(0)
    let backingsMade = Atomic<Int>(0)

    init(logger: Logger) { self.logger = logger }

    static let chunk = 1 << 20

    /// A chunk buffer mapped for the call and unmapped after: from malloc, a worker thread's
    /// arena would keep every such megabyte resident once freed.
    struct Buffer {
        let raw: UnsafeMutableRawBufferPointer
        /// Nil when no memory can be mapped (the open is then cached as without sharing).
        init?() {
            guard let p = mmap(nil, ImmutableSharing.chunk, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
                  p != MAP_FAILED else { return nil }
            raw = UnsafeMutableRawBufferPointer(start: p, count: ImmutableSharing.chunk)
        }
        var baseAddress: UnsafeMutableRawPointer? { raw.baseAddress }
        func release() { munmap(raw.baseAddress, raw.count) }
    }

    /// The content hash of `f` (XXH64 over 1 MiB chunks, chained), read through the arena.
    static func hash(_ f: MergeableFile, size: Int64) -> UInt64? {
        guard let buf = Buffer() else { return nil }
        defer { buf.release() }
        var h: UInt64 = UInt64(bitPattern: size)
        var off: Int64 = 0
        while off < size {
            let n = f.read(into: buf.raw, at: off)
            if n <= 0 { break }
            h = ksm_xxh64(buf.baseAddress, n, h)
            off += Int64(n)
        }
        return h
    }

    /// Whether `a` and `b` hold the same `size` bytes.
    static func sameContent(_ a: MergeableFile, _ b: MergeableFile, size: Int64) -> Bool {
        if a === b { return true }
        guard let x = Buffer() else { return false }
        defer { x.release() }
        guard let y = Buffer() else { return false }
        defer { y.release() }
        var off: Int64 = 0
        while off < size {
            let n = a.read(into: x.raw, at: off), m = b.read(into: y.raw, at: off)
            if n != m || n <= 0 { return false }
            if memcmp(x.baseAddress!, y.baseAddress!, n) != 0 { return false }
            off += Int64(n)
        }
        return a.size == size && b.size == size
    }

    /// A memfd holding `f`'s content, or -1.
    static func backingCopy(of f: MergeableFile, size: Int64) -> Int32 {
        let fd = ksm_memfd("ksmfs-shared", Int(size))
        if fd < 0 { return -1 }
        guard let buf = Buffer() else { Glibc.close(fd); return -1 }
        defer { buf.release() }
        var off: Int64 = 0
        while off < size {
            let n = f.read(into: buf.raw, at: off)
            if n <= 0 { Glibc.close(fd); return -1 }
            var done = 0
            while done < n {
                let w = pwrite(fd, buf.baseAddress! + done, n - done, Int(off) + done)
                if w <= 0 { Glibc.close(fd); return -1 }
                done += w
            }
            off += Int64(n)
        }
        return fd
    }

    // MARK: opens

    /// The backing id for a read-only open of `inode` (file `f`), or nil for a cached open.
    /// `eligible`: immutable, mergeable and not under run=2 (the caller knows); `openHandles`
    /// counts the inode's open handles, passthrough or not.
    func open(ino: UInt64, file f: MergeableFile, eligible: Bool, owner: UInt32?, openHandles: () -> Int32) -> Int32? {
        // Opens of the inode that are not passthrough ones (lock held).
        func otherOpens() -> Int32 { openHandles() - (members[ino]?.opens ?? 0) }
        guard enabled.load(ordering: .relaxed), let backing else { return nil }
        // A member with live passthrough opens: this open must be one too (the kernel's rule).
        let live = liveBacking(ino)
        if live > 0 {
            opensGranted.add(1, ordering: .relaxed)
            return live
        }
        guard eligible else {
            // run=2 or no longer immutable: an idle member leaves its group.
            leave(ino)
            return nil
        }
        // Cached opens of the inode (their RELEASE may still be on its way: close(2) does not
        // wait for it) keep this one cached.
        if !waitUntil(milliseconds: 20, { lock.withLock { otherOpens() <= 0 } }) { return nil }
        let group: Group
        if let g = lock.withLock({ members[ino]?.group }) {
            group = g
        } else {
            guard let g = join(ino: ino, file: f, owner: owner) else { return nil }
            group = g
        }
        return setup.withLock { () -> Int32? in
            var made = false
            if lock.withLock({ group.backingID }) == 0 {
                let fd = ImmutableSharing.backingCopy(of: f, size: group.key.size)
                if fd < 0 { return nil }
                defer { Glibc.close(fd) }   // the kernel keeps its own reference
                switch backing.open(fd: fd) {
                case .success(let id):
                    lock.withLock { group.backingID = id }
                    made = true
                case .failure(let e):
                    if enabled.exchange(false, ordering: .relaxed) {
                        logger.notice("share_immutable: off from now on: the kernel refused a backing file (\(e.description)); files are cached per inode as without it")
                    }
                    return nil
                }
            }
            if made { backingsMade.add(1, ordering: .relaxed) }
            return lock.withLock { () -> Int32? in
                guard members[ino]?.group === group, group.backingID > 0, otherOpens() <= 0 else { return nil }
                countOpenLocked(ino)
                opensGranted.add(1, ordering: .relaxed)
                return group.backingID
            }
        }
    }

    /// The backing id of `ino`'s live passthrough opens, counting one more, or 0 (the probe's
    /// opens: they must be passthrough ones while others are, and start nothing).
    func liveBacking(_ ino: UInt64) -> Int32 {
        lock.withLock {
            guard let m = members[ino], m.opens > 0, m.group.backingID > 0 else { return 0 }
            countOpenLocked(ino)
            return m.group.backingID
        }
    }

    /// One more passthrough open of member `ino` (lock held).
    private func countOpenLocked(_ ino: UInt64) {
        guard var m = members[ino] else { return }
        m.opens += 1; m.group.opens += 1
        members[ino] = m
    }

    /// Puts `ino` in the group of its content (made if new). Nil when its hash matches a group
    /// whose bytes differ (never shared then).
    private func join(ino: UInt64, file f: MergeableFile, owner: UInt32?) -> Group? {
        let size = f.size
        guard let hash = ImmutableSharing.hash(f, size: size) else { return nil }
        let key = Key(size: size, hash: hash, owner: owner)
        while true {
            let rep: MergeableFile? = lock.withLock {
                groups[key]?.members.first?.value
            }
            if let rep, !ImmutableSharing.sameContent(f, rep, size: size) { return nil }
            let joined = lock.withLock { () -> Group? in
                if let m = members[ino] { return m.group }
                let g = groups[key] ?? Group(key: key)
                // The one compared with must still be a member (else compare again).
                if let rep, g.members.values.contains(where: { $0 === rep }) == false { return nil }
                if rep == nil && !g.members.isEmpty { return nil }
                groups[key] = g
                g.members[ino] = f
                members[ino] = Membership(group: g)
                return g
            }
            if let joined { return joined }
        }
    }

    /// A passthrough open of `ino` was closed.
    func closed(ino: UInt64) {
        var close: (BackingFiles, Int32)?
        lock.withLock {
            guard var m = members[ino], m.opens > 0 else { return }
            m.opens -= 1; m.group.opens -= 1
            members[ino] = m
            if m.group.opens == 0, m.group.backingID > 0, let backing {
                close = (backing, m.group.backingID)
                m.group.backingID = 0
            }
            if m.opens == 0 && m.leaving { removeLocked(ino) }
        }
        if let (b, id) = close { b.close(id: id) }
    }

    /// Whether `ino` has passthrough opens (its content must not change).
    func inUse(_ ino: UInt64) -> Bool { lock.withLock { (members[ino]?.opens ?? 0) > 0 } }

    /// ETXTBSY if `ino` has passthrough opens a second from now (closes reach ksmfs a little
    /// after close(2) returns), else nil.
    func refuseChange(_ ino: UInt64) -> Errno? {
        waitUntil(milliseconds: 1000, { !inUse(ino) }) ? nil : Errno(ETXTBSY)
    }

    /// `ino` is no longer immutable: it leaves its group now, or at its last passthrough close.
    func immutableCleared(_ ino: UInt64) {
        lock.withLock {
            guard var m = members[ino] else { return }
            if m.opens == 0 { removeLocked(ino) } else { m.leaving = true; members[ino] = m }
        }
    }

    /// An idle member leaves its group (a member with passthrough opens stays).
    func leave(_ ino: UInt64) {
        lock.withLock {
            guard let m = members[ino], m.opens == 0 else { return }
            removeLocked(ino)
        }
    }

    /// The inode is gone.
    func forget(_ ino: UInt64) { leave(ino) }

    private func removeLocked(_ ino: UInt64) {
        guard let m = members.removeValue(forKey: ino) else { return }
        m.group.members.removeValue(forKey: ino)
        if m.group.members.isEmpty { groups.removeValue(forKey: m.group.key) }
    }

    private func waitUntil(milliseconds: Int, _ done: () -> Bool) -> Bool {
        if done() { return true }
        var waited = 0
        while waited < milliseconds * 1000 {
            usleep(500)
            waited += 500
            if done() { return true }
        }
        return false
    }

    // MARK: figures

    struct Figures {
        /// Groups with two members or more, and their members.
        var groups = 0
        var members = 0
        /// Groups whose backing file is live, and its bytes (held once, in shared memory).
        var backed = 0
        var backedBytes: Int64 = 0
        /// Passthrough opens now.
        var opens = 0
        /// Bytes of page cache the members in use would hold without sharing, minus the one copy.
        var savedBytes: Int64 = 0
        var opensTotal = 0
        /// Times a content was copied into a new backing file.
        var fillsTotal = 0
    }

    var figures: Figures {
        lock.withLock {
            var f = Figures()
            f.opensTotal = opensGranted.load(ordering: .relaxed)
            f.fillsTotal = backingsMade.load(ordering: .relaxed)
            for g in groups.values {
                if g.members.count >= 2 { f.groups += 1; f.members += g.members.count }
                f.opens += g.opens
                guard g.backingID > 0 else { continue }
                f.backed += 1
                f.backedBytes += g.key.size
                let inUse = g.members.keys.filter { (members[$0]?.opens ?? 0) > 0 }.count
                if inUse > 1 { f.savedBytes += Int64(inUse - 1) * g.key.size }
            }
            return f
        }
    }
}
