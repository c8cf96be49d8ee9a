// Inodes of the memory filesystem: attributes, directory entries, symlink targets, xattrs,
// and for regular files the `MergeableFile` that holds the pages. Attribute fields are
// guarded by the inode's `meta` mutex; namespace changes also hold the filesystem's
// namespace mutex (taken first), so no path ever takes two inode mutexes but in ino order.
import FUSE
import Glibc
import KSM

/// What an inode is beyond its attributes.
enum InodeKind {
    case regular(MergeableFile)
    case directory(Directory)
    case symlink(Name)
    case special
    /// A file of the /ksm control directory.
    case control(ControlFile)
}

final class Inode: @unchecked Sendable {
    let ino: UInt64
    let meta = Mutex(waitable: false)
    var mode: mode_t
    var uid: uid_t
    var gid: gid_t
    var nlink: UInt32
    /// Open handles that write through the kernel's page cache, and all open handles of a
    /// regular file (guarded by `meta`; 32 bits, packed beside the other 32-bit fields: an
    /// inode is held per file, and a small file should cost about what it does on tmpfs).
    var cachedWriters: Int32 = 0
    var openHandles: Int32 = 0
    var rdev: dev_t = 0
    var atime: timespec
    var mtime: timespec
    var ctime: timespec
    let btime: timespec
    var xattrs: [Name: [UInt8]] = [:]
    var kind: InodeKind
    /// Kernel lookup references (FUSE lookup count); guarded by the inode table's lock.
    var lookups: UInt64 = 0
    /// Whether pages merged while the file was open, so that their page-cache copies are
    /// dropped at its last close (guarded by `meta`).
    var mergedWhileOpen = false
    /// chattr flags (FS_*_FL, see FileFlags.swift; all of them fit in a byte), guarded by `meta`.
    var fsFlags: UInt8 = 0
    /// The lowest offset whose writeback was refused (guarded by `meta`): later writeback may
    /// not grow the file past it, so a failure never leaves a hole that reads as zeros.
    var writebackFailedAt = Int64.max

    init(ino: UInt64, mode: mode_t, uid: uid_t, gid: gid_t, kind: InodeKind) {
        self.ino = ino
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.kind = kind
        let now = Clock.now()
        atime = now; mtime = now; ctime = now; btime = now
        if case .directory = kind { nlink = 2 } else { nlink = 1 }
    }

    var isDirectory: Bool { if case .directory = kind { return true }; return false }
    var directory: Directory? { if case .directory(let d) = kind { return d }; return nil }
    var file: MergeableFile? { if case .regular(let f) = kind { return f }; return nil }

    /// Attributes as `stat`, taking `meta`.
    func attributes() -> stat {
        var st = stat()
        meta.withLock {
            st.st_ino = UInt(ino)
            st.st_mode = mode
            st.st_nlink = UInt(nlink)
            st.st_uid = uid
            st.st_gid = gid
            st.st_rdev = rdev
            st.st_atim = atime
            st.st_mtim = mtime
            st.st_ctim = ctime
        }
        st.st_blksize = 4096
        switch kind {
        case .regular(let f):
            st.st_size = Int(f.size)
            st.st_blocks = f.dataPages * 8
        case .directory(let d):
            st.st_size = d.byteSize
        case .symlink(let target):
            st.st_size = target.count
        case .control:
            st.st_size = 4096
        case .special:
            break
        }
        return st
    }

    /// Clears S_ISUID, and S_ISGID when group-executable (a set-group-id without S_IXGRP
    /// marks mandatory locking and stays), and the file capability, as a write by an
    /// unprivileged caller, a chown or a truncate must.
    /// `anyType`: also for FIFOs, sockets and device nodes (a chown clears them on every
    /// non-directory, as tmpfs does).
    /// Returns whether the mode changed.
    @discardableResult
    func dropSuidSgid(anyType: Bool = false) -> Bool {
        meta.withLock {
            let type = mode & S_IFMT
            guard type == S_IFREG || (anyType && type != S_IFDIR) else { return false }
            var m = mode & ~S_ISUID
            if m & S_IXGRP != 0 { m &= ~S_ISGID }
            xattrs.removeValue(forKey: "security.capability")
            guard m != mode else { return false }
            mode = m; ctime = Clock.now()
            return true
        }
    }

    func touch(m: Bool = false, c: Bool = false, a: Bool = false) {
        let now = Clock.now()
        meta.withLock {
            if m { mtime = now }
            if c { ctime = now }
            if a { atime = now }
        }
    }
}

/// A directory's entries in creation order. Readdir offsets are entry sequence numbers, so
/// they survive removals; removed names are tombstones until compaction, which may run at any
/// time.
final class Directory {
    /// A name in the directory. `seq` is the entry's place in readdir order, given when the
    /// name was added and never changed: readdir offsets are sequence numbers, not positions,
    /// so removed entries can be compacted away at any time, even while the directory is open
    /// (a process holding a directory open must not make every deleted name cost memory).
    struct Slot {
        let seq: Int64
        let name: Name
        var inode: Inode?
        /// Found by name but not listed (readdir skips it).
        var unlisted = false
    }
    /// In ascending `seq` order; removed names stay as tombstones (inode nil) until compaction.
    private var slots: [Slot] = []
    /// Name → position in `slots` (rebuilt at compaction).
    private var index: [Name: Int] = [:]
    private var tombstones = 0
    private var nextSeq: Int64 = 0
    /// The parent directory's inode number (the root is its own parent).
    var parent: UInt64

    init(parent: UInt64) { self.parent = parent }

    /// Entry count for getattr, which runs without the namespace lock (a Dictionary must not
    /// be read while another thread changes it).
    private let sizeLock = Mutex(waitable: false)
    private var liveCount = 0

    var count: Int { index.count }
    var isEmpty: Bool { index.isEmpty }
    /// Slots held, tombstones included, and the room reserved for them (for tests).
    var storedSlots: Int { slots.count }
    var slotCapacity: Int { slots.capacity }
    /// Reported st_size: tmpfs style, a nominal 20 bytes per entry plus 40.
    var byteSize: Int { sizeLock.withLock { 40 + 20 * liveCount } }

    private func recount() { sizeLock.withLock { liveCount = index.count } }

    func lookup(_ name: Name) -> Inode? {
        guard let i = index[name] else { return nil }
        return slots[i].inode
    }

    /// Adds `name`; an `unlisted` name is found by lookup but not shown by readdir.
    func insert(_ name: Name, _ inode: Inode, unlisted: Bool = false) {
        index[name] = slots.count
        slots.append(Slot(seq: nextSeq, name: name, inode: inode, unlisted: unlisted))
        nextSeq += 1
        recount()
    }

    @discardableResult
    func remove(_ name: Name) -> Inode? {
        guard let i = index.removeValue(forKey: name) else { return nil }
        let inode = slots[i].inode
        slots[i].inode = nil
        tombstones += 1
        recount()
        compact()
        return inode
    }

    /// Replaces the inode an existing name points at (rename over, exchange); the name keeps
    /// its place in readdir order.
    func replace(_ name: Name, with inode: Inode) {
        guard let i = index[name] else { insert(name, inode); return }
        slots[i].inode = inode
    }

    /// Drops tombstones once they are more than half the slots (amortized O(1) per remove).
    /// The survivors go to a new array, so a directory that shrank gives its memory back.
    private func compact() {
        guard tombstones > 32, tombstones * 2 > slots.count else { return }
        slots = slots.filter { $0.inode != nil }
        index = Dictionary(minimumCapacity: slots.count)
        for (i, s) in slots.enumerated() { index[s.name] = i }
        tombstones = 0
    }

    /// Visits the live entries from readdir position `from` (the sequence number of the first
    /// entry wanted) on, in order; `body` returns false to stop.
    /// `listedOnly`: as readdir shows them (unlisted names left out).
    func forEach(from: Int64 = 0, listedOnly: Bool = false, _ body: (_ seq: Int64, _ name: Name, _ inode: Inode) -> Bool) {
        var lo = 0, hi = slots.count
        while lo < hi {
            let mid = lo + (hi - lo) / 2
            if slots[mid].seq < from { lo = mid + 1 } else { hi = mid }
        }
        while lo < slots.count {
            let s = slots[lo]
            if let inode = s.inode, !(listedOnly && s.unlisted), !body(s.seq, s.name, inode) { return }
            lo += 1
        }
    }
}

enum Clock {
    static func now() -> timespec {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return ts
    }
}
