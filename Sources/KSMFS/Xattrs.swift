// Extended attributes as tmpfs keeps them: the user., trusted. and security. namespaces
// (the kernel checks trusted.'s privilege and user.'s file types; trusted. names are hidden
// from unprivileged lists here, as tmpfs does). `user.ksm.*` names are the per-file KSM
// interface: `user.ksm.mergeable` switches merging, the rest are read-only figures.
import FUSE
import Glibc
import KSM

private let xattrCreate: Int32 = 1   // XATTR_CREATE
private let xattrReplace: Int32 = 2  // XATTR_REPLACE

extension MemoryFileSystem {
    static let mergeableXattr: Name = "user.ksm.mergeable"
    static let statPrefix: Name = "user.ksm."
    static let figureNames = ["ksm_rmap_items", "ksm_zero_pages", "ksm_merging_pages", "ksm_process_profit",
                              "ksm_merge_any", "ksm_mergeable"]

    /// How an xattr name is handled.
    enum XattrClass: Equatable {
        /// Not user., trusted. or security.: EOPNOTSUPP, as tmpfs (system.* ACLs aside).
        case unsupported
        /// `user.ksm.mergeable`: the per-file switch.
        case mergeable
        /// `user.ksm.<figure>` or `user.ksm.stat`: read-only figures of files and directories.
        case figure(String)
        /// Stored as given.
        case plain
    }

    static func classify(_ name: Name) -> XattrClass {
        guard name.hasPrefix("user.") || name.hasPrefix("trusted.") || name.hasPrefix("security.") else { return .unsupported }
        if name == mergeableXattr { return .mergeable }
        if name.hasPrefix(statPrefix) {
            let rest = name.dropFirst(statPrefix.count)
            if rest == "stat" { return .figure("stat") }
            if let key = figureNames.first(where: { Name($0) == rest }) { return .figure(key) }
        }
        return .plain
    }

    /// A `user.ksm.mergeable` value: "1" or "0", a trailing newline allowed; nil otherwise.
    static func parseMergeable(_ value: [UInt8]) -> Bool? {
        var v = value[...]
        if v.last == UInt8(ascii: "\n") { v = v.dropLast() }
        guard v.count == 1, let c = v.first, c == UInt8(ascii: "0") || c == UInt8(ascii: "1") else { return nil }
        return c == UInt8(ascii: "1")
    }

    public func setxattr(_ r: Request, ino: UInt64, name: Name, value: UnsafeRawBufferPointer, flags: Int32) -> Errno? {
        guard let inode = inode(ino) else { return .noent }
        let kind = MemoryFileSystem.classify(name)
        if kind == .unsupported { return .opnotsupp }
        if case .control = inode.kind { return .perm }
        if inode === controlDirectory { return .perm }
        if ino == 1 && name == MemoryFileSystem.remountXattr { return remount(r, Array(value)) }
        if options.readOnly { return .rofs }
        if inode.isPinned { return .perm }   // chattr +i/+a
        let bytes = Array(value)
        if kind == .mergeable { return setMergeable(inode, bytes, flags: flags) }
        if case .figure = kind { return .perm }
        let err: Errno? = inode.meta.withLock {
            let exists = inode.xattrs[name] != nil
            if flags & xattrCreate != 0 && exists { return .exist }
            if flags & xattrReplace != 0 && !exists { return .nodata }
            inode.xattrs[name] = bytes
            return nil
        }
        if err == nil { inode.touch(c: true) }
        return err
    }

    /// `user.ksm.mergeable`: "1" or "0" (a trailing newline allowed). On a file it switches
    /// merging (0 unmerges its pages at once); on a directory it is inherited by new files.
    private func setMergeable(_ inode: Inode, _ bytes: [UInt8], flags: Int32) -> Errno? {
        guard let on = MemoryFileSystem.parseMergeable(bytes) else { return .inval }
        let v = [on ? UInt8(ascii: "1") : UInt8(ascii: "0")]
        if let f = inode.file {
            if flags & xattrCreate != 0 { return .exist }
            if !engine.setMergeable(f, on) { return .nomem }
        } else if inode.isDirectory {
            let err: Errno? = inode.meta.withLock {
                let exists = inode.xattrs[MemoryFileSystem.mergeableXattr] != nil
                if flags & xattrCreate != 0 && exists { return .exist }
                if flags & xattrReplace != 0 && !exists { return .nodata }
                inode.xattrs[MemoryFileSystem.mergeableXattr] = v
                return nil
            }
            if err != nil { return err }
        } else {
            return .perm
        }
        inode.touch(c: true)
        return nil
    }

    /// The per-file (or per-directory, summed over its tree) KSM figures, named as the kernel's
    /// /proc/PID/ksm_stat.
    func ksmFigures(_ inode: Inode) -> [String: Int64] {
        var items = 0, merging = 0, zero = 0, mergeable = 0, files = 0
        func visit(_ i: Inode, depth: Int) {
            if let f = i.file {
                let fig = f.ksmFigures
                items += fig.items - fig.zero; merging += fig.merging; zero += fig.zero   // rmap items as the kernel counts them
                files += 1
                if engine.isMergeable(f) { mergeable += 1 }
            } else if let d = i.directory, depth < 64 {
                d.forEach { _, _, child in visit(child, depth: depth + 1); return true }
            }
        }
        namespace.withLock { visit(inode, depth: 0) }
        let profit = Int64(merging + zero) * 4096 - Int64(items) * Int64(KSMEngine.bytesPerItem)
        return [
            "ksm_rmap_items": Int64(items),
            "ksm_zero_pages": Int64(zero),
            "ksm_merging_pages": Int64(merging),
            "ksm_process_profit": profit,
            "ksm_merge_any": inode.isDirectory ? Int64(mergeable == files && files > 0 ? 1 : 0) : Int64(mergeable),
            "ksm_mergeable": Int64(mergeable),
        ]
    }

    public func getxattr(_ r: Request, ino: UInt64, name: Name, size: Int) -> Result<XattrReply, Errno> {
        guard let inode = inode(ino) else { return .failure(.noent) }
        let kind = MemoryFileSystem.classify(name)
        if kind == .unsupported { return .failure(.opnotsupp) }
        if kind == .mergeable, let f = inode.file {
            return .success(.data(Array((engine.isMergeable(f) ? "1" : "0").utf8)))
        }
        if case .figure(let key) = kind, inode.file != nil || inode.isDirectory {
            let figs = ksmFigures(inode)
            if key == "stat" {
                let text = MemoryFileSystem.figureNames.map { "\($0) \(figs[$0]!)\n" }.joined()
                return .success(.data(Array(text.utf8)))
            }
            if let v = figs[key] { return .success(.data(Array(String(v).utf8))) }
        }
        return inode.meta.withLock {
            guard let v = inode.xattrs[name] else { return .failure(.nodata) }
            return .success(.data(v))
        }
    }

    public func listxattr(_ r: Request, ino: UInt64, size: Int) -> Result<XattrReply, Errno> {
        guard let inode = inode(ino) else { return .failure(.noent) }
        var names = inode.meta.withLock { Array(inode.xattrs.keys) }
        if r.uid != 0 { names.removeAll { $0.hasPrefix("trusted.") } }
        // Listed only where it is not the mount's default (an opt-out): tools that copy xattrs
        // (cp -a, rsync -X, tar --xattrs) then carry opt-outs over and cost nothing otherwise.
        if let f = inode.file, engine.isMergeable(f) != options.mergeByDefault { names.append(MemoryFileSystem.mergeableXattr) }
        var out: [UInt8] = []
        for n in names.sorted(by: { $0.bytes.lexicographicallyPrecedes($1.bytes) }) { out += n.bytes; out.append(0) }
        return .success(.data(out))
    }

    public func removexattr(_ r: Request, ino: UInt64, name: Name) -> Errno? {
        guard let inode = inode(ino) else { return .noent }
        let kind = MemoryFileSystem.classify(name)
        if kind == .unsupported { return .opnotsupp }
        if options.readOnly { return .rofs }
        if inode.isPinned { return .perm }   // chattr +i/+a
        if kind == .mergeable, let f = inode.file {
            // Back to the mount's default.
            _ = engine.setMergeable(f, options.mergeByDefault)
            return nil
        }
        let removed = inode.meta.withLock { inode.xattrs.removeValue(forKey: name) != nil }
        if !removed { return .nodata }
        inode.touch(c: true)
        return nil
    }
}
