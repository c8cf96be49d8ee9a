// FUSE passthrough (kernel 6.9+): an open whose reads, splices and mmaps the kernel serves from
// a backing file the daemon registered, without asking the daemon. libfuse 3.14 knows nothing of
// it, so the shim asks for it by patching the INIT reply and marks OPEN replies with the backing
// id (see shim.c). The kernel allows it only to a daemon with CAP_SYS_ADMIN, and never on a
// connection with the writeback cache: a filesystem that wants it gives up that cache.
import CFuse3
import Glibc

/// Backing files of a session: register a file's descriptor, get the id an open reply names.
public final class BackingFiles: @unchecked Sendable {
    private let session: OpaquePointer

    init(session: OpaquePointer) { self.session = session }

    /// Whether the connection has passthrough (the INIT reply asked for it).
    public var enabled: Bool { cfuse_passthrough_enabled() != 0 }

    /// Registers `fd` (a regular file; the kernel keeps its own reference, so the caller may
    /// close it). Returns the backing id.
    public func open(fd: Int32) -> Result<Int32, Errno> {
        let r = cfuse_backing_open(session, fd)
        return r > 0 ? .success(r) : .failure(Errno(-r))
    }

    /// Unregisters `id`; opens that use it keep the file until they close.
    public func close(id: Int32) { _ = cfuse_backing_close(session, id) }

    /// Why this process cannot use passthrough, asked before INIT (nil: it may).
    public static func privilegeProblem() -> String? {
        switch cfuse_has_cap_sys_admin() {
        case 1: return nil
        case 0: return "the daemon lacks CAP_SYS_ADMIN, which the kernel asks of a daemon that passes files through"
        default: return "the daemon's capabilities cannot be read"
        }
    }
}

/// The session's answer to a filesystem that wanted passthrough, given once at INIT.
public enum PassthroughDecision: Sendable {
    case on
    case off(reason: String)
}
