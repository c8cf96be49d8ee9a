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
        var blocks: Int?, inodes: Int?, mode: mode_t?, uid: uid_t?, gid: gid_t?
        for word in text.split(separator: ",") {
            let parts = word.split(separator: "=", maxSplits: 1)
            let key = String(parts[0]), value = parts.count > 1 ? String(parts[1]) : ""
            guard MemoryFileSystem.remountable.contains(key) else { return .inval }
            switch key {
            case "size":
                guard let b = MountOptions.parseSize(value, ram: MountOptions.physicalMemory) else { return .inval }
                blocks = max(1, (b == 0 ? MountOptions.physicalMemory : b) / BlockArena.pageSize)
            case "nr_inodes":
                guard let n = MountOptions.parseSize(value, ram: nil) else { return .inval }
                inodes = n == 0 ? Int.max : max(2, n)
            case "mode":
                guard let m = UInt32(value, radix: 8), m <= 0o7777 else { return .inval }
                mode = m
            case "uid":
                guard let u = UInt32(value) else { return .inval }
                uid = u
            default:
                guard let g = UInt32(value) else { return .inval }
                gid = g
            }
        }
        if let blocks {
            if blocks > arena.growableTo { return Errno(EFBIG) }
            if blocks < arena.used { return .inval }
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
                configureReserve(CapacityReserve(capacityBytes: bytes, dirtyLimitBytes: actual))
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
