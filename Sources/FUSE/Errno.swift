// Typed errno for FUSE replies. A filesystem returns `Errno` values; the session turns them
// into `fuse_reply_err`. Only the codes a filesystem answers with are named here.
import Glibc

public struct Errno: Error, Equatable, Hashable, CustomStringConvertible, Sendable {
    public let rawValue: Int32
    public init(_ rawValue: Int32) { self.rawValue = rawValue }

    public static let perm = Errno(EPERM)
    public static let noent = Errno(ENOENT)
    public static let io = Errno(EIO)
    public static let badf = Errno(EBADF)
    public static let nomem = Errno(ENOMEM)
    public static let acces = Errno(EACCES)
    public static let busy = Errno(EBUSY)
    public static let exist = Errno(EEXIST)
    public static let xdev = Errno(EXDEV)
    public static let notdir = Errno(ENOTDIR)
    public static let isdir = Errno(EISDIR)
    public static let inval = Errno(EINVAL)
    public static let fbig = Errno(EFBIG)
    public static let nospc = Errno(ENOSPC)
    public static let rofs = Errno(EROFS)
    public static let mlink = Errno(EMLINK)
    public static let range = Errno(ERANGE)
    public static let nametoolong = Errno(ENAMETOOLONG)
    public static let nosys = Errno(ENOSYS)
    public static let notempty = Errno(ENOTEMPTY)
    public static let nodata = Errno(ENODATA)
    public static let nxio = Errno(ENXIO)
    public static let nodev = Errno(ENODEV)
    public static let opnotsupp = Errno(EOPNOTSUPP)
    public static let toobig = Errno(E2BIG)
    public static let overflow = Errno(EOVERFLOW)

    public var description: String { String(cString: strerror(rawValue)) }
}
