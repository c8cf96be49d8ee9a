// chattr/lsattr: the inode flags tmpfs keeps — immutable, append-only, nodump, noatime —
// through FS_IOC_GETFLAGS/SETFLAGS (and the FS_IOC_FSGETXATTR/FSSETXATTR form), which the
// kernel's FUSE turns into FUSE_IOCTL on a handle it opens for the purpose. Who may change i
// and a (CAP_LINUX_IMMUTABLE) and who may change flags at all (the owner) the kernel checks
// before it asks; what the flags forbid ksmfs enforces, as tmpfs does through the VFS: an
// immutable file cannot be opened for writing, truncated by name, renamed, linked, unlinked
// or have its attributes or xattrs changed, nor can names be added to or removed from an
// immutable directory; an append-only file may only be opened for appending, and it and the
// names in an append-only directory cannot be removed. Handles opened before the flag was
// set keep writing, as on tmpfs.
import FUSE
import Glibc

enum FileFlags {
    static let immutable: UInt32 = 0x10   // FS_IMMUTABLE_FL
    static let append: UInt32 = 0x20      // FS_APPEND_FL
    static let nodump: UInt32 = 0x40      // FS_NODUMP_FL
    static let noatime: UInt32 = 0x80     // FS_NOATIME_FL
    /// What tmpfs lets a user set (SHMEM_FL_USER_MODIFIABLE, casefolding aside).
    static let settable = immutable | append | nodump | noatime

    static let getFlags: UInt32 = 0x8008_6601     // FS_IOC_GETFLAGS
    static let setFlags: UInt32 = 0x4008_6602     // FS_IOC_SETFLAGS
    static let fsGetXattr: UInt32 = 0x801C_581F   // FS_IOC_FSGETXATTR
    static let fsSetXattr: UInt32 = 0x401C_5820   // FS_IOC_FSSETXATTR
    static let fsxattrSize = 28

    /// FS_XFLAG_* for each flag (struct fsxattr's fsx_xflags).
    static let xflags: [(flag: UInt32, xflag: UInt32)] = [(immutable, 0x8), (append, 0x10), (nodump, 0x80), (noatime, 0x40)]
}

extension Inode {
    var fileFlags: UInt32 { meta.withLock { UInt32(fsFlags) } }
    /// Immutable or append-only: the inode may not be removed, renamed, linked or changed.
    var isPinned: Bool { fileFlags & (FileFlags.immutable | FileFlags.append) != 0 }
    var isImmutable: Bool { fileFlags & FileFlags.immutable != 0 }
}

extension MemoryFileSystem {
    public func ioctl(_ r: Request, ino: UInt64, command: UInt32, input: UnsafeRawBufferPointer, outputSize: Int) -> Result<[UInt8], Errno> {
        guard let inode = inode(ino) else { return .failure(.noent) }
        if case .control = inode.kind { return .failure(Errno(ENOTTY)) }
        if inode === controlDirectory { return .failure(Errno(ENOTTY)) }
        guard inode.file != nil || inode.isDirectory else { return .failure(Errno(ENOTTY)) }
        func word(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }
        switch command {
        case FileFlags.getFlags:
            guard outputSize >= 4 else { return .failure(.inval) }
            return .success(word(inode.fileFlags))
        case FileFlags.fsGetXattr:
            guard outputSize >= FileFlags.fsxattrSize else { return .failure(.inval) }
            let flags = inode.fileFlags
            var out = word(FileFlags.xflags.reduce(0) { flags & $1.flag != 0 ? $0 | $1.xflag : $0 })
            out += [UInt8](repeating: 0, count: FileFlags.fsxattrSize - 4)
            return .success(out)
        case FileFlags.setFlags:
            guard input.count >= 4 else { return .failure(.inval) }
            return apply(input.loadUnaligned(as: UInt32.self), to: inode)
        case FileFlags.fsSetXattr:
            guard input.count >= FileFlags.fsxattrSize else { return .failure(.inval) }
            let x = input.loadUnaligned(as: UInt32.self)
            // Only the flags tmpfs has; extent sizes and project ids are not kept.
            let known = FileFlags.xflags.reduce(UInt32(0)) { $0 | $1.xflag }
            if x & ~known != 0 || input[4..<20].contains(where: { $0 != 0 }) { return .failure(.opnotsupp) }
            return apply(FileFlags.xflags.reduce(0) { x & $1.xflag != 0 ? $0 | $1.flag : $0 }, to: inode)
        default:
            return .failure(Errno(ENOTTY))
        }
    }

    private func apply(_ flags: UInt32, to inode: Inode) -> Result<[UInt8], Errno> {
        if flags & ~FileFlags.settable != 0 { return .failure(.opnotsupp) }
        if options.readOnly { return .failure(.rofs) }
        var clearedImmutable = false
        let changed = inode.meta.withLock { () -> Bool in
            guard UInt32(inode.fsFlags) != flags else { return false }
            if UInt32(inode.fsFlags) & FileFlags.immutable != 0 && flags & FileFlags.immutable == 0 { clearedImmutable = true }
            inode.fsFlags = UInt8(truncatingIfNeeded: flags)  // (settable flags are all below 0x100)
            inode.ctime = Clock.now()
            return true
        }
        if changed { kernelCache?.invalidateAttributes([inode.ino]) }  // the kernel keeps ctime long
        if clearedImmutable { sharing?.immutableCleared(inode.ino) }
        return .success([])
    }
}
