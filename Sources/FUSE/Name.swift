// A name as the kernel passes it (a file name, a symlink target, an xattr name): bytes,
// compared byte for byte. Linux names are not Unicode text: any byte but NUL (and '/' in a
// file name) is allowed, and the two spellings of "é" (precomposed, or e + combining accent)
// are two different names. A Swift String would repair invalid UTF-8 and compare by
// canonical equivalence, so two distinct names could become one entry.

public struct Name: Hashable, Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
    public let bytes: [UInt8]

    public init(_ bytes: [UInt8]) { self.bytes = bytes }

    public init(_ string: String) { bytes = Array(string.utf8) }

    public init(stringLiteral value: String) { bytes = Array(value.utf8) }

    /// The bytes of a NUL-terminated C string.
    public init(cString: UnsafePointer<CChar>) {
        bytes = Array(UnsafeBufferPointer(start: UnsafeRawPointer(cString).assumingMemoryBound(to: UInt8.self),
                                          count: strlenBytes(cString)))
    }

    /// Length in bytes.
    public var count: Int { bytes.count }
    public var isEmpty: Bool { bytes.isEmpty }

    /// For messages only (invalid UTF-8 shows as U+FFFD).
    public var description: String { String(decoding: bytes, as: UTF8.self) }

    public func hasPrefix(_ prefix: Name) -> Bool { bytes.starts(with: prefix.bytes) }

    public func dropFirst(_ n: Int) -> Name { Name(Array(bytes.dropFirst(n))) }

    public func contains(_ byte: UInt8) -> Bool { bytes.contains(byte) }

    /// Calls `body` with the bytes as a NUL-terminated C string.
    public func withCString<R>(_ body: (UnsafePointer<CChar>) throws -> R) rethrows -> R {
        var z = bytes
        z.append(0)
        return try z.withUnsafeBufferPointer { try body(UnsafeRawPointer($0.baseAddress!).assumingMemoryBound(to: CChar.self)) }
    }
}

private func strlenBytes(_ s: UnsafePointer<CChar>) -> Int {
    var n = 0
    while s[n] != 0 { n += 1 }
    return n
}
