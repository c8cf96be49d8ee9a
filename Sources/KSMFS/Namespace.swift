// Namespace operations: create, mknod, mkdir, symlink, link, unlink, rmdir, rename, readlink,
// setattr and directory listing. Every change runs under the namespace mutex, then takes
// inode mutexes one at a time for attributes (link counts, timestamps).
import FUSE
import Glibc
import KSM

extension MemoryFileSystem {
    /// Owner, group and mode of a new inode in `parent`: the group comes from a setgid parent,
    /// and a new directory inherits the setgid bit.
    private func ownership(_ r: Request, parent: Inode, mode: mode_t) -> (uid_t, gid_t, mode_t) {
        let (pmode, pgid) = parent.meta.withLock { (parent.mode, parent.gid) }
        var m = mode
        var gid = r.gid
        if pmode & S_ISGID != 0 {
            gid = pgid
            if m & S_IFMT == S_IFDIR { m |= S_ISGID }
        }
        return (r.uid, gid, m)
    }

    /// Adds a new inode under `parent/name` (namespace lock held by the caller).
    private func addChild(_ r: Request, parent: UInt64, name: Name, mode: mode_t,
                          make: () -> InodeKind) -> Result<Inode, Errno> {
        if let e = MemoryFileSystem.validName(name) { return .failure(e == .inval ? .exist : e) }
        if let e = writable() { return .failure(e) }
        return directory(parent).flatMap { (dirInode, dir) -> Result<Inode, Errno> in
            if dirInode === controlDirectory { return .failure(.acces) }
            if dir.lookup(name) != nil { return .failure(.exist) }
            if dirInode.isImmutable { return .failure(.perm) }
            let (uid, gid, m) = ownership(r, parent: dirInode, mode: mode)
            guard let child = newInode(mode: m, uid: uid, gid: gid, kind: make()) else { return .failure(.nospc) }
            if case .directory = child.kind {
                dirInode.meta.withLock { dirInode.nlink += 1 }
            }
            dir.insert(name, child)
            dirInode.touch(m: true, c: true)
            return .success(child)
        }
    }

    private func newFile() -> InodeKind {
        .regular(MergeableFile(arena: arena, stats: engine.stats, mergeable: options.mergeByDefault))
    }

    private func registerIfFile(_ inode: Inode, mergeable: Bool) {
        if let f = inode.file {
            f.owner = inode.uid
            f.ino = inode.ino
            engine.register(f, mergeable: mergeable)
        }
    }

    /// Whether files created in `dir` are mergeable: the directory's user.ksm.mergeable if set.
    func inheritedMergeable(_ dir: Inode) -> Bool {
        dir.meta.withLock {
            if let v = dir.xattrs[MemoryFileSystem.mergeableXattr] { return v.first == UInt8(ascii: "1") }
            return options.mergeByDefault
        }
    }

    public func mknod(_ r: Request, parent: UInt64, name: Name, mode: mode_t, rdev: dev_t) -> Result<Entry, Errno> {
        namespace.withLock {
            let type = mode & S_IFMT
            switch type {
            case S_IFREG, S_IFIFO, S_IFSOCK, S_IFCHR, S_IFBLK: break
            case 0: break
            default: return .failure(.inval)
            }
            let m = type == 0 ? (mode | S_IFREG) : mode
            return addChild(r, parent: parent, name: name, mode: m, make: { m & S_IFMT == S_IFREG ? newFile() : .special }).map { child in
                child.rdev = (type == S_IFCHR || type == S_IFBLK) ? rdev : 0
                if let dirInode = inode(parent) { registerIfFile(child, mergeable: inheritedMergeable(dirInode)) }
                return remember(child)
            }
        }
    }

    public func mkdir(_ r: Request, parent: UInt64, name: Name, mode: mode_t) -> Result<Entry, Errno> {
        namespace.withLock {
            addChild(r, parent: parent, name: name, mode: S_IFDIR | (mode & 0o7777), make: { .directory(Directory(parent: parent)) })
                .map { child in
                    if let dirInode = inode(parent), let v = dirInode.meta.withLock({ dirInode.xattrs[MemoryFileSystem.mergeableXattr] }) {
                        child.xattrs[MemoryFileSystem.mergeableXattr] = v
                    }
                    return remember(child)
                }
        }
    }

    public func symlink(_ r: Request, target: Name, parent: UInt64, name: Name) -> Result<Entry, Errno> {
        if target.count > MemoryFileSystem.symlinkMax { return .failure(.nametoolong) }
        return namespace.withLock {
            addChild(r, parent: parent, name: name, mode: S_IFLNK | 0o777, make: { .symlink(target) }).map(remember)
        }
    }

    public func create(_ r: Request, parent: UInt64, name: Name, mode: mode_t, flags: Int32) -> Result<(Entry, OpenReply), Errno> {
        namespace.withLock {
            if case .success(let (_, dir)) = directory(parent), let child = dir.lookup(name) {
                // The kernel normally resolves O_CREAT on an existing name itself; be safe.
                if flags & O_EXCL != 0 { return .failure(.exist) }
                return open(r, ino: child.ino, flags: flags).map { (remember(child), $0) }
            }
            return addChild(r, parent: parent, name: name, mode: S_IFREG | (mode & 0o7777), make: newFile).map { child in
                if let dirInode = inode(parent) { registerIfFile(child, mergeable: inheritedMergeable(dirInode)) }
                return (remember(child), openReply(for: child, flags: flags))
            }
        }
    }

    public func link(_ r: Request, ino: UInt64, newParent: UInt64, newName: Name) -> Result<Entry, Errno> {
        if let e = MemoryFileSystem.validName(newName) { return .failure(e == .inval ? .exist : e) }
        if let e = writable() { return .failure(e) }
        return namespace.withLock {
            guard let target = inode(ino) else { return .failure(.noent) }
            if target.isDirectory { return .failure(.perm) }
            if case .control = target.kind { return .failure(.perm) }
            return directory(newParent).flatMap { (dirInode, dir) in
                if dirInode === controlDirectory { return .failure(.acces) }
                if dir.lookup(newName) != nil { return .failure(.exist) }
                if dirInode.isImmutable || target.isPinned { return .failure(.perm) }
                let tooMany = target.meta.withLock { () -> Bool in
                    if target.nlink >= UInt32(Int32.max) { return true }
                    target.nlink += 1
                    return false
                }
                if tooMany { return .failure(.mlink) }
                dir.insert(newName, target)
                target.touch(c: true)
                dirInode.touch(m: true, c: true)
                return .success(remember(target))
            }
        }
    }

    public func unlink(_ r: Request, parent: UInt64, name: Name) -> Errno? {
        if let e = writable() { return e }
        return namespace.withLock { () -> Errno? in
            switch directory(parent) {
            case .failure(let e): return e
            case .success(let (dirInode, dir)):
                if dirInode === controlDirectory { return .perm }
                guard let child = dir.lookup(name) else { return .noent }
                if dirInode.isPinned || child.isPinned { return .perm }
                if child.isDirectory { return .isdir }
                if child === controlDirectory { return .perm }
                dir.remove(name)
                child.meta.withLock { child.nlink -= 1 }
                child.touch(c: true)
                dirInode.touch(m: true, c: true)
                unlinked(child)
                return nil
            }
        }
    }

    public func rmdir(_ r: Request, parent: UInt64, name: Name) -> Errno? {
        if let e = writable() { return e }
        if name == "." { return .inval }
        if name == ".." { return .notempty }
        return namespace.withLock { () -> Errno? in
            switch directory(parent) {
            case .failure(let e): return e
            case .success(let (dirInode, dir)):
                guard let child = dir.lookup(name) else { return .noent }
                if dirInode.isPinned || child.isPinned { return .perm }
                guard let cdir = child.directory else { return .notdir }
                if child === controlDirectory || dirInode === controlDirectory { return .perm }
                if !cdir.isEmpty { return .notempty }
                dir.remove(name)
                child.meta.withLock { child.nlink = 0 }
                child.touch(c: true)
                dirInode.meta.withLock { dirInode.nlink -= 1 }
                dirInode.touch(m: true, c: true)
                unlinked(child)
                return nil
            }
        }
    }

    /// Whether directory `ancestor` is `ino` or one of its ancestors.
    private func isAncestor(_ ancestor: UInt64, of ino: UInt64) -> Bool {
        var cur = ino
        while true {
            if cur == ancestor { return true }
            guard let d = inode(cur)?.directory else { return false }
            if cur == 1 || d.parent == cur { return false }
            cur = d.parent
        }
    }

    public func rename(_ r: Request, parent: UInt64, name: Name, newParent: UInt64, newName: Name, flags: UInt32) -> Errno? {
        let noReplace = UInt32(1) // RENAME_NOREPLACE
        let exchange = UInt32(2)  // RENAME_EXCHANGE
        if flags & ~(noReplace | exchange) != 0 || flags == noReplace | exchange { return .inval }
        if let e = MemoryFileSystem.validName(newName) { return e == .inval ? .busy : e }
        if let e = writable() { return e }
        return namespace.withLock { () -> Errno? in
            guard case .success(let (srcDirInode, srcDir)) = directory(parent) else { return .noent }
            guard case .success(let (dstDirInode, dstDir)) = directory(newParent) else { return .noent }
            if srcDirInode === controlDirectory || dstDirInode === controlDirectory { return .perm }
            guard let moving = srcDir.lookup(name) else { return .noent }
            if moving === controlDirectory { return .perm }
            let target = dstDir.lookup(newName)
            if moving.isDirectory && isAncestor(moving.ino, of: newParent) { return .inval }
            // chattr: nothing leaves a +i/+a directory, nothing enters a +i one, a +i/+a inode
            // does not move and is not replaced.
            let pinned = srcDirInode.isPinned || moving.isPinned || dstDirInode.isImmutable
                || (target.map { $0.isPinned || dstDirInode.isPinned } ?? false)
            if let target {
                if target === controlDirectory { return .perm }
                if flags & noReplace != 0 { return .exist }
                if pinned && target !== moving { return .perm }
                if flags & exchange != 0 {
                    if target.isDirectory && isAncestor(target.ino, of: parent) { return .inval }
                    srcDir.replace(name, with: target)
                    dstDir.replace(newName, with: moving)
                    if srcDirInode !== dstDirInode && moving.isDirectory != target.isDirectory {
                        let delta: Int32 = moving.isDirectory ? 1 : -1
                        dstDirInode.meta.withLock { dstDirInode.nlink = UInt32(Int32(dstDirInode.nlink) + delta) }
                        srcDirInode.meta.withLock { srcDirInode.nlink = UInt32(Int32(srcDirInode.nlink) - delta) }
                    }
                    if let d = moving.directory { d.parent = newParent }
                    if let d = target.directory { d.parent = parent }
                    moving.touch(c: true); target.touch(c: true)
                    srcDirInode.touch(m: true, c: true); dstDirInode.touch(m: true, c: true)
                    return nil
                }
                if target === moving { return nil }
                if moving.isDirectory {
                    guard let tdir = target.directory else { return .notdir }
                    if !tdir.isEmpty { return .notempty }
                } else if target.isDirectory {
                    return .isdir
                }
            } else if flags & exchange != 0 {
                return .noent
            } else if pinned {
                return .perm
            }
            // Move: drop the replaced target, then relink.
            if let target {
                dstDir.remove(newName)
                if target.isDirectory {
                    target.meta.withLock { target.nlink = 0 }
                    dstDirInode.meta.withLock { dstDirInode.nlink -= 1 }
                } else {
                    target.meta.withLock { target.nlink -= 1 }
                }
                target.touch(c: true)
                unlinked(target)
            }
            srcDir.remove(name)
            dstDir.insert(newName, moving)
            if let d = moving.directory, srcDirInode !== dstDirInode {
                d.parent = newParent
                srcDirInode.meta.withLock { srcDirInode.nlink -= 1 }
                dstDirInode.meta.withLock { dstDirInode.nlink += 1 }
            }
            moving.touch(c: true)
            srcDirInode.touch(m: true, c: true)
            if srcDirInode !== dstDirInode { dstDirInode.touch(m: true, c: true) }
            return nil
        }
    }

    public func readlink(_ r: Request, ino: UInt64) -> Result<Name, Errno> {
        get(ino).flatMap { inode in
            if case .symlink(let t) = inode.kind {
                inode.touch(a: true)
                kernelCache?.invalidateAttributes([ino])  // the kernel keeps attributes long
                return .success(t)
            }
            return .failure(.inval)
        }
    }

    public func setattr(_ r: Request, ino: UInt64, _ change: SetAttributes) -> Result<stat, Errno> {
        guard let inode = inode(ino) else { return .failure(.noent) }
        if case .control = inode.kind {
            // As on sysfs: chmod, chown and times apply (the kernel let only root or the
            // owner ask); a size (O_TRUNC of a tunable) is ignored.
            let now = Clock.now()
            inode.meta.withLock {
                if let m = change.mode { inode.mode = (inode.mode & S_IFMT) | (m & 0o7777) }
                if let u = change.uid { inode.uid = u }
                if let g = change.gid { inode.gid = g }
                if case .set(let t) = change.atime { inode.atime = t } else if case .now = change.atime { inode.atime = now }
                if case .set(let t) = change.mtime { inode.mtime = t } else if case .now = change.mtime { inode.mtime = now }
                if change.mode != nil || change.uid != nil || change.gid != nil { inode.ctime = now }
            }
            return .success(inode.attributes())
        }
        if options.readOnly { return .failure(.rofs) }
        let pinned = inode.fileFlags & (FileFlags.immutable | FileFlags.append)
        if pinned != 0 {
            // chattr +i/+a: no chmod, chown, utimes or truncate by name. Through a handle (an
            // ftruncate, the kernel's own flush of the times of writes) what tmpfs allows.
            let owner = change.mode != nil || change.uid != nil || change.gid != nil
            var times = true
            if case .unchanged = change.atime, case .unchanged = change.mtime { times = false }
            if change.handle == nil && (owner || times || change.size != nil) { return .failure(.perm) }
            if owner || (change.size != nil && pinned & FileFlags.append != 0) { return .failure(.perm) }
        }
        if let size = change.size {
            guard let f = inode.file else { return .failure(inode.isDirectory ? .isdir : .inval) }
            if let sharing, let e = sharing.refuseChange(ino) { return .failure(e) }
            let old = f.size
            do { try f.truncate(to: Int64(bitPattern: size)) } catch {
                return .failure(MemoryFileSystem.errno(error))
            }
            _ = old
            inode.meta.withLock { inode.writebackFailedAt = .max }
            inode.touch(m: true, c: true)
        }
        let now = Clock.now()
        inode.meta.withLock {
            if let m = change.mode { inode.mode = (inode.mode & S_IFMT) | (m & 0o7777) }
            if let u = change.uid { inode.uid = u }
            if let g = change.gid { inode.gid = g }
            switch change.atime {
            case .unchanged: break
            case .now: inode.atime = now
            case .set(let t): inode.atime = t
            }
            switch change.mtime {
            case .unchanged: break
            case .now: inode.mtime = now
            case .set(let t): inode.mtime = t
            }
            if let c = change.ctime { inode.ctime = c } else { inode.ctime = now }
        }
        // KILLPRIV_V2: a chown, or a truncate the kernel flags, drops suid/sgid here.
        if change.killSuidGid { inode.dropSuidSgid() }
        if (change.uid != nil || change.gid != nil) && change.mode == nil { inode.dropSuidSgid(anyType: true) }
        if change.uid != nil, let f = inode.file {
            let uid = inode.meta.withLock { inode.uid }
            if uid != f.owner && !engine.ownerChanged(f, to: uid) { return .failure(.nomem) }
        }
        return .success(inode.attributes())
    }

    // MARK: directories

    public func opendir(_ r: Request, ino: UInt64, flags: Int32) -> Result<OpenReply, Errno> {
        let result = namespace.withLock { directory(ino).map { _ in OpenReply() } }
        if case .success = result { Session.handleOpened() }
        return result
    }

    public func releasedir(_ r: Request, ino: UInt64, handle: UInt64) -> Errno? {
        Session.handleClosed()
        return nil
    }

    public func readdir(_ r: Request, ino: UInt64, offset: Int64, handle: UInt64, into buffer: inout DirectoryBuffer) -> Errno? {
        namespace.withLock { () -> Errno? in
            switch directory(ino) {
            case .failure(let e): return e
            case .success(let (dirInode, dir)):
                var off = max(0, offset)
                if off == 0 {
                    guard buffer.add(name: ".", ino: dirInode.ino, mode: S_IFDIR, nextOffset: 1) else { return nil }
                    off = 1
                }
                if off == 1 {
                    guard buffer.add(name: "..", ino: dir.parent, mode: S_IFDIR, nextOffset: 2) else { return nil }
                    off = 2
                }
                // Offset 2 + seq resumes at the entry with sequence number seq.
                dir.forEach(from: off - 2, listedOnly: true) { seq, name, inode in
                    let mode = inode.meta.withLock { inode.mode }
                    return buffer.add(name: name, ino: inode.ino, mode: mode, nextOffset: seq + 3)
                }
                dirInode.touch(a: true)
                kernelCache?.invalidateAttributes([dirInode.ino])  // the kernel keeps attributes long
                return nil
            }
        }
    }
}
