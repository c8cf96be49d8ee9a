// Remount: `size=`, `nr_inodes=`, `mode=`, `uid=` and `gid=` change on a live mount, as on
// tmpfs. FUSE's kernel side keeps none of them, so the request reaches the daemon as the
// root-only extended attribute `trusted.ksmfs.remount` of the mount's root, set by
// `ksmfs MNT -o remount,...` (what mount.fuse3 runs for `mount -o remount,size=2g MNT`).
// Every value is checked before any is applied: a size below the data held or an inode count
// below the inodes in use is EINVAL, as tmpfs says ("too small a size for current use"); a size
// past the address space reserved at mount (the RAM, or the first size= if larger) is EFBIG.
import CKSMSupport
import FUSE
import Glibc
import KSM

extension MemoryFileSystem {
    static let remountXattr: Name = "trusted.ksmfs.remount"

    /// Options a remount may change.
    public static let remountable: Set<String> = ["size", "nr_inodes", "mode", "uid", "gid"]

    /// Asks the daemon of the mount at `path` to remount with `text`; 0 or the errno.
    public static func requestRemount(of path: String, _ text: String) -> Int32 {
        text.withCString { ksm_setxattr(path, "trusted.ksmfs.remount", $0, strlen($0)) }
    }

    /// Applies the remount options in `bytes` ("size=2g,mode=755"); nil on success.
    func remount(_ r: Request, _ bytes: [UInt8]) -> Errno? {
        guard r.uid == 0 else { return .perm }
        let text = String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
        // The values mean what they mean at mount: the mount options' own parser reads them.
        let words = text.split(separator: ",").map(String.init)
        let given = Set(words.map { String($0.split(separator: "=", maxSplits: 1)[0]) })
        guard given.isSubset(of: MemoryFileSystem.remountable),
              let fs = try? MountOptions.parse(words, asRoot: false).filesystem else { return .inval }
        let blocks = given.contains("size") ? max(1, fs.capacityBytes / BlockArena.pageSize) : nil
        let inodes = given.contains("nr_inodes") ? fs.maxInodes : nil
        let mode = given.contains("mode") ? fs.rootMode : nil
        let uid = given.contains("uid") ? fs.rootUID : nil
        let gid = given.contains("gid") ? fs.rootGID : nil
        if let blocks {
            if blocks > arena.growableTo { return Errno(EFBIG) }
            // What the kernel may still hold dirty was accepted against the current reserve:
            // the new size keeps room for that reserve above the data held, or writeback could
            // find no block for a write already reported done.
            // (and the reserve is at most half a capacity).
            if blocks < arena.used + arena.reserve || blocks < 2 * arena.reserve { return .inval }
        }
        if let inodes, inodes < usedInodes { return .inval }
        if let blocks {
            guard arena.setCapacity(blocks) else { return .inval }
            // The kernel's dirty limit and the writeback reserve follow the capacity, as at mount;
            // the reserve is sized from the limit the kernel actually has.
            if options.writebackCache {
                let bytes = blocks * BlockArena.pageSize
                let want = CapacityReserve.dirtyLimit(forCapacity: bytes)
                _ = MountTable.setDirtyLimit(bytes: want, of: options.mountpoint)
                let actual = MountTable.dirtyLimit(of: options.mountpoint) ?? want
                // Never below the reserve the kernel's dirty pages were accepted against.
                configureReserve(CapacityReserve(capacityBytes: bytes, dirtyLimitBytes: actual), atLeast: arena.reserve)
            }
            updateFullness()
        }
        if let inodes, !setMaxInodes(inodes) { return .inval }
        if mode != nil || uid != nil || gid != nil {
            root.meta.withLock {
                if let mode { root.mode = S_IFDIR | mode }
                if let uid { root.uid = uid }
                if let gid { root.gid = gid }
                root.ctime = Clock.now()
            }
            kernelCache?.invalidateAttributes([1])
        }
        logger.info("remounted: \(text)")
        return nil
    }
}
