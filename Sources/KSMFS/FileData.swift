// Data operations of regular files: open, read, write, fallocate, lseek, copy_file_range.
// Pages are read straight from the arena with fuse_reply_iov while the file's lock is held;
// writes and the rest go through `MergeableFile`, which does copy-on-write.
import FUSE
import Glibc
import KSM

extension MemoryFileSystem {
    func openReply(for inode: Inode, flags: Int32) -> OpenReply {
        switch inode.kind {
        case .control: return OpenReply(handle: 0, directIO: true, keepCache: false, nonSeekable: false)
        case .regular: return openRegular(inode, flags: flags)
        default: return OpenReply(handle: 0, directIO: false, keepCache: true)
        }
    }

    static func errno(_ e: FileError) -> Errno {
        switch e {
        case .noSpace: return .nospc
        case .tooBig: return .fbig
        case .invalid: return .inval
        case .noMemory: return .nomem
        }
    }

    public func open(_ r: Request, ino: UInt64, flags: Int32) -> Result<OpenReply, Errno> {
        guard let inode = inode(ino) else { return .failure(.noent) }
        let accmode = flags & O_ACCMODE
        if case .control(let cf) = inode.kind {
            // Who may write a tunable is what its mode says (root may chmod and chown the
            // files, as on sysfs); the kernel has checked it (default_permissions).
            if accmode != O_RDONLY && !cf.isTunable { return .failure(.acces) }
            var reply = openReply(for: inode, flags: flags)
            if let stream = cf.stream { reply.handle = stream.open(); reply.nonSeekable = true } else { reply.handle = cf.openHandle() }
            return .success(reply)
        }
        if inode.isDirectory && accmode != O_RDONLY { return .failure(.isdir) }
        if inode.file != nil, isProbe(r) {
            // The page-cache probe: read-only, never counted as keeping the mount busy, never
            // starting a shared page cache (but joining a live one, as the kernel requires).
            return .success(openRegular(inode, flags: O_RDONLY, backingID: sharing?.liveBacking(inode.ino) ?? 0, probe: true))
        }
        if accmode != O_RDONLY && options.readOnly { return .failure(.rofs) }
        // chattr +i: no opening for writing or truncating; +a: writing only to append.
        let fileFlags = inode.fileFlags
        let writes = accmode != O_RDONLY || flags & O_TRUNC != 0
        if fileFlags & FileFlags.immutable != 0 && writes { return .failure(.perm) }
        if fileFlags & FileFlags.append != 0 && writes && (flags & O_APPEND == 0 || flags & O_TRUNC != 0) { return .failure(.perm) }
        // A file served from a shared page cache keeps its content while it is (ETXTBSY).
        if writes, let sharing, let e = sharing.refuseChange(ino) { return .failure(e) }
        // O_TRUNC truncates whatever the access mode (O_RDONLY|O_TRUNC too, as on Linux: the
        // kernel has already checked write permission).
        if flags & O_TRUNC != 0, let f = inode.file {
            if options.readOnly { return .failure(.rofs) }
            do { try f.truncate(to: 0) } catch { return .failure(MemoryFileSystem.errno(error)) }
            inode.meta.withLock { inode.writebackFailedAt = .max }
            inode.touch(m: true, c: true)
            if r.uid != 0 && inode.dropSuidSgid() { kernelCache?.invalidateAttributes([ino]) }
        }
        if !writes, let sharing, let f = inode.file, let id = sharedBacking(inode, f, sharing) {
            return .success(openRegular(inode, flags: flags, backingID: id))
        }
        return .success(openReply(for: inode, flags: flags))
    }

    /// The backing id of the shared page cache for a read-only open of `inode`, or nil.
    private func sharedBacking(_ inode: Inode, _ f: MergeableFile, _ sharing: ImmutableSharing) -> Int32? {
        let t = engine.tunables
        let eligible = inode.isImmutable && t.run != 2 && engine.isMergeable(f)
        return sharing.open(ino: inode.ino, file: f, eligible: eligible, owner: t.mergeAcrossOwners ? nil : f.owner,
                            openHandles: { inode.meta.withLock { inode.openHandles } })
    }

    public func read(_ r: Request, ino: UInt64, size: Int, offset: Int64, handle: UInt64, reply: consuming ReadReply) {
        guard let inode = inode(ino) else { reply.fail(.noent); return }
        switch inode.kind {
        case .regular(let f):
            // The reply is sent inside the closure, while the pages are held.
            var pending: ReadReply? = consume reply
            f.withReadVectors(offset: offset, size: size) { iov in
                let rep = pending.take()!
                if iov.isEmpty {
                    rep.send(UnsafeRawBufferPointer(start: nil, count: 0))
                } else {
                    rep.send(iov.baseAddress!, count: iov.count)
                }
            }
        case .control(let cf) where cf.stream != nil:
            switch cf.stream!.read(handle, size, r) {
            case .success(let bytes): reply.send(bytes)
            case .failure(let e): reply.fail(e)
            }
        case .control(let cf):
            let text = cf.text(handle: handle, offset: offset)
            let start = Int(min(Int64(text.count), max(0, offset)))
            let end = min(text.count, start + size)
            reply.send(Array(text[start..<end]))
        case .directory:
            reply.fail(.isdir)
        default:
            reply.fail(.inval)
        }
    }

    public func write(_ r: Request, ino: UInt64, data: UnsafeRawBufferPointer, offset: Int64, handle: UInt64, flags: Int32, writepage: Bool) -> Result<Int, Errno> {
        guard let inode = inode(ino) else { return .failure(.noent) }
        switch inode.kind {
        case .regular(let f):
            if options.readOnly { return .failure(.rofs) }
            // Writeback carries bytes a writer was already told are written: it may use the
            // reserve. After a refusal, later writeback may not grow the file past the refused
            // offset (a hole there would read back as zeros).
            if writepage {
                let failedAt = inode.meta.withLock { inode.writebackFailedAt }
                if offset > failedAt && offset + Int64(data.count) > f.size { return .failure(.nospc) }
            }
            do {
                let n = try f.write(data, at: offset, fromReserve: writepage)
                updateFullness()
                inode.touch(m: true, c: true)
                // Under KILLPRIV_V2 the kernel writes through (not as writepage) when a caller
                // without CAP_FSETID writes to a suid/sgid file: drop the bits as tmpfs does.
                // The kernel keeps the attributes it has (long timeouts): tell it the mode changed.
                if !writepage && r.uid != 0 && inode.dropSuidSgid() { kernelCache?.invalidateAttributes([ino]) }
                return .success(n)
            } catch {
                if writepage && (error == .noSpace || error == .noMemory) {
                    inode.meta.withLock { inode.writebackFailedAt = min(inode.writebackFailedAt, offset) }
                    logger.warning("writeback of \(data.count) bytes at \(offset) of inode \(ino) refused (\(error == .noSpace ? "the reserve is used up" : "out of memory")): its writer sees the error at fsync/close")
                }
                return .failure(MemoryFileSystem.errno(error))
            }
        case .control(let cf):
            guard cf.isTunable else { return .failure(.acces) }
            return cf.write(data)
        case .directory:
            return .failure(.isdir)
        default:
            return .failure(.inval)
        }
    }

    public func fallocate(_ r: Request, ino: UInt64, mode: Int32, offset: Int64, length: Int64, handle: UInt64) -> Errno? {
        guard let inode = inode(ino) else { return .noent }
        guard let f = inode.file else { return inode.isDirectory ? .isdir : .nodev }
        if options.readOnly { return .rofs }
        let keepSize: Int32 = 0x01, punch: Int32 = 0x02, zeroRange: Int32 = 0x10
        if mode & ~(keepSize | punch | zeroRange) != 0 { return .opnotsupp }
        if offset < 0 || length <= 0 { return .inval }
        do {
            if mode & punch != 0 {
                if mode & keepSize == 0 || mode & zeroRange != 0 { return .opnotsupp }
                try f.punchHole(offset: offset, length: length)
                inode.touch(m: true, c: true)
            } else if mode & zeroRange != 0 {
                try f.zeroRange(offset: offset, length: length, keepSize: mode & keepSize != 0)
                inode.touch(m: true, c: true)
            } else {
                let before = f.size
                try f.allocate(offset: offset, length: length, keepSize: mode & keepSize != 0)
                if f.size != before { inode.touch(m: true, c: true) }
            }
        } catch {
            return MemoryFileSystem.errno(error)
        }
        return nil
    }

    public func lseek(_ r: Request, ino: UInt64, offset: Int64, whence: Int32, handle: UInt64) -> Result<Int64, Errno> {
        guard let inode = inode(ino) else { return .failure(.noent) }
        guard let f = inode.file else { return .failure(.inval) }
        switch whence {
        case 3, 4:   // SEEK_DATA, SEEK_HOLE
            if let o = f.seek(from: offset, data: whence == 3) { return .success(o) }
            return .failure(.nxio)
        case SEEK_SET: return .success(offset)
        case SEEK_END: return .success(f.size + offset)
        default: return .failure(.inval)
        }
    }

    public func copyFileRange(_ r: Request, inoIn: UInt64, offsetIn: Int64, handleIn: UInt64,
                              inoOut: UInt64, offsetOut: Int64, handleOut: UInt64, length: Int, flags: Int32) -> Result<Int, Errno> {
        if flags != 0 { return .failure(.inval) }
        guard let src = inode(inoIn), let dst = inode(inoOut) else { return .failure(.noent) }
        guard let sf = src.file, let df = dst.file else { return .failure(.inval) }
        if options.readOnly { return .failure(.rofs) }
        do {
            let n = try MergeableFile.copyRange(from: sf, at: offsetIn, to: df, at: offsetOut, length: length)
            if n > 0 { dst.touch(m: true, c: true) }
            return .success(n)
        } catch {
            return .failure(MemoryFileSystem.errno(error))
        }
    }

    public func fsync(_ r: Request, ino: UInt64, dataOnly: Bool, handle: UInt64) -> Errno? { nil }
    /// Nothing to do at close (the kernel has written dirty pages back before FLUSH, and
    /// reports their errors itself): ENOSYS makes the kernel stop sending FLUSH at all.
    public func flush(_ r: Request, ino: UInt64, handle: UInt64) -> Errno? { .nosys }
    public func release(_ r: Request, ino: UInt64, handle: UInt64, flags: Int32) -> Errno? {
        let inode = inode(ino)
        if FileHandle(raw: handle).isRegular { releaseRegular(inode, ino: ino, handle: handle); return nil }
        if let inode, case .control(let cf) = inode.kind {
            if let stream = cf.stream { stream.release(handle) } else { cf.release(handle: handle) }
        }
        return nil
    }

}
