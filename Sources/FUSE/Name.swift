// A name as the kernel passes it (a file name, a symlink target, an xattr name): bytes,
// compared byte for byte. Linux names are not Unicode text: any byte but NUL (and '/' in a
// file name) is allowed, and the two spellings of "é" (precomposed, or e + combining accent)
// are two different names. A Swift String would repair invalid UTF-8 and compare by
// canonical equivalence, so two distinct names could become one entry. Names of up to 15
// bytes (most file names) are stored inline, without a heap allocation.

public struct Name: Hashable, Sendable, ExpressibleByStringLiteral, CustomStringConvertible {
    private enum Storage: Hashable, Sendable {
        /// Up to 15 bytes in two words, the count in the top byte of `high`.
        case inline(UInt64, UInt64)
        case heap([UInt8])
    }
    private let storage: Storage
    static let inlineMax = 15

    public init<C: Collection>(_ bytes: C) where C.Element == UInt8 {
        if bytes.count <= Name.inlineMax {
            var words: (UInt64, UInt64) = (0, 0)
            withUnsafeMutableBytes(of: &words) { raw in
                var i = 0
                for b in bytes { raw[i] = b; i += 1 }
                raw[15] = UInt8(i)
            }
            storage = .inline(words.0, words.1)
        } else {
            storage = .heap(Array(bytes))
        }
    }

    public init(_ string: String) { self.init(string.utf8) }

    public init(stringLiteral value: String) { self.init(value.utf8) }

    /// The bytes of a NUL-terminated C string.
    public init(cString: UnsafePointer<CChar>) {
        var n = 0
        while cString[n] != 0 { n += 1 }
        self.init(UnsafeRawBufferPointer(start: cString, count: n))
    }

    /// Calls `body` with the bytes.
    public func withBytes<R>(_ body: (UnsafeRawBufferPointer) throws -> R) rethrows -> R {
        switch storage {
        case .inline(let a, let b):
            var words = (a, b)
            return try withUnsafeBytes(of: &words) { raw in try body(UnsafeRawBufferPointer(rebasing: raw[0..<Int(raw[15])])) }
        case .heap(let bytes):
            return try bytes.withUnsafeBytes(body)
        }
    }

    public var bytes: [UInt8] { withBytes { Array($0) } }

    /// Length in bytes.
    public var count: Int {
        switch storage {
        case .inline(_, let b): return Int(b >> 56)
        case .heap(let bytes): return bytes.count
        }
    }

    public var isEmpty: Bool { count == 0 }

    /// For messages only (invalid UTF-8 shows as U+FFFD).
    public var description: String { withBytes { String(decoding: $0, as: UTF8.self) } }

    public func hasPrefix(_ prefix: Name) -> Bool {
        withBytes { a in prefix.withBytes { p in a.count >= p.count && a.starts(with: p) } }
    }

    public func dropFirst(_ n: Int) -> Name { withBytes { Name($0.dropFirst(n)) } }

    public func contains(_ byte: UInt8) -> Bool { withBytes { $0.contains(byte) } }

    /// Calls `body` with the bytes as a NUL-terminated C string.
    public func withCString<R>(_ body: (UnsafePointer<CChar>) throws -> R) rethrows -> R {
        try withBytes { raw in
            try withUnsafeTemporaryAllocation(of: CChar.self, capacity: raw.count + 1) { buf in
                raw.withMemoryRebound(to: CChar.self) { src in
                    for i in 0..<src.count { buf[i] = src[i] }
                }
                buf[raw.count] = 0
                return try body(UnsafePointer(buf.baseAddress!))
            }
        }
    }
}
