// The page contents `ksmfs-bench compare` lays out twice, once in a helper's anonymous
// memory and once in files on a ksmfs mount. Page i of a pattern is a pure function of
// (pattern, page count, i), so both sides hold byte-identical data in the same scan order.
// `merges(i)` says whether page i has a twin anywhere (the copy-on-write latency test picks
// merged and unmerged pages with it); it is derived from the layout, not measured.
import Glibc

enum ComparePattern: String, CaseIterable {
    /// Page i holds content i mod 16 (every page merges; chains past max_page_sharing).
    case dup16
    /// Even pages unique random, odd pages one of 256 contents.
    case half
    /// Three of four pages all-zero (use_zero_pages=1 on both sides); of the rest, half unique,
    /// half one of 64 contents.
    case zeroHeavy = "zero-heavy"
    /// Four copies of one generated "OS image" (zero runs, repeated blocks, text and binary
    /// pages with common headers); each copy changes 2% of its pages by a few bytes.
    case image
    /// Every page distinct (one copy of a file of random bytes; `memory` holds it N times).
    case unique

    static let imageCopies = 4

    /// Whether the pattern needs use_zero_pages=1 to mean what it says.
    var forcesZeroPages: Bool { self == .zeroHeavy }

    /// splitmix64: a stateless hash of a page number, for layout decisions.
    static func mix(_ v: UInt64) -> UInt64 {
        var z = v &+ 0x9E37_79B9_7F4A_7C15
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// The image's page kinds, by hash of the page number within the image.
    enum ImageKind { case zero, common(Int), text, binary }

    static func imageKind(_ j: Int) -> ImageKind {
        let h = mix(UInt64(j) &+ 0x1000)
        switch h % 100 {
        case 0..<8: return .zero
        case 8..<14: return .common(Int((h >> 8) % 24))
        case 14..<55: return .text
        default: return .binary
        }
    }

    /// Whether copy `c` of the image changes page `j` (2% of pages per copy).
    static func imageModified(copy c: Int, page j: Int) -> Bool {
        mix(UInt64(c) << 40 ^ UInt64(j) ^ 0x5EED) % 1000 < 20
    }

    /// Writes page `i` of `pages` into the 4096 bytes at `dst`.
    func fill(_ dst: UnsafeMutableRawPointer, page i: Int, of pages: Int) {
        switch self {
        case .dup16:
            EngineBench.fill(dst, tag: EngineBench.tag("dup16", i))
        case .half:
            EngineBench.fill(dst, tag: EngineBench.tag("half", i))
        case .zeroHeavy:
            if i % 4 != 3 { memset(dst, 0, 4096); return }
            let k = i / 4
            EngineBench.fill(dst, tag: k % 2 == 0 ? 3_000_000 + UInt64(k) : 4_000_000 + UInt64((k / 2) % 64))
        case .unique:
            EngineBench.fill(dst, tag: 8_000_000 + UInt64(i))
        case .image:
            let m = max(1, pages / ComparePattern.imageCopies)
            let c = i / m, j = i % m
            ComparePattern.fillImagePage(dst, j)
            if ComparePattern.imageModified(copy: c, page: j) {
                // A small change: 16 bytes somewhere past the header (a timestamp, a host name).
                let h = ComparePattern.mix(UInt64(c) << 40 ^ UInt64(j) ^ 0xD1FF)
                let off = 256 + Int(h % 3824)
                for b in 0..<16 { dst.storeBytes(of: UInt8(truncatingIfNeeded: h >> UInt64(b * 4)) | 1, toByteOffset: off + b, as: UInt8.self) }
            }
        }
    }

    /// The base image's page j.
    static func fillImagePage(_ dst: UnsafeMutableRawPointer, _ j: Int) {
        switch imageKind(j) {
        case .zero:
            memset(dst, 0, 4096)
        case .common(let k):
            EngineBench.fill(dst, tag: 6_000_000 + UInt64(k))
        case .text:
            // Text with one of 8 shared 256-byte headers (a licence block), so tree compares
            // walk a common prefix as they do on real file systems.
            header(dst, 256, kind: 0x100 + mix(UInt64(j)) % 8)
            var x = mix(UInt64(j) ^ 0x7E57) | 1
            let alphabet: StaticString = "etaoinshrdlucmfwypvbgkjqxz  \n\n..,_-/=:;()ETAOINSHRDLU0123456789#"
            let a = alphabet.utf8Start
            for off in stride(from: 256, to: 4096, by: 8) {
                x ^= x << 13; x ^= x >> 7; x ^= x << 17
                var w: UInt64 = 0
                for b in 0..<8 { w |= UInt64(a[Int((x >> UInt64(b * 6)) & 63)]) << UInt64(b * 8) }
                dst.storeBytes(of: w, toByteOffset: off, as: UInt64.self)
            }
        case .binary:
            // Binary with one of 4 shared 64-byte headers (an ELF header).
            EngineBench.fill(dst, tag: 7_000_000 + UInt64(j))
            header(dst, 64, kind: 0x200 + mix(UInt64(j)) % 4)
        }
    }

    /// `bytes` bytes of header number `kind`, the same on every page that has it.
    static func header(_ dst: UnsafeMutableRawPointer, _ bytes: Int, kind: UInt64) {
        for w in 0..<bytes / 8 { dst.storeBytes(of: mix(kind << 16 | UInt64(w)), toByteOffset: w * 8, as: UInt64.self) }
    }

    /// Whether page i has an identical twin somewhere in the layout (so it ends up merged, or
    /// on the zero page).
    func merges(_ i: Int, of pages: Int) -> Bool {
        switch self {
        case .dup16: return true
        case .unique: return false
        case .half: return i % 2 == 1
        case .zeroHeavy: return i % 4 != 3 || (i / 4) % 2 == 1
        case .image:
            let m = max(1, pages / ComparePattern.imageCopies)
            let c = i / m, j = i % m
            if ComparePattern.imageModified(copy: c, page: j) { return false }
            switch ComparePattern.imageKind(j) {
            case .zero, .common: return true
            default:
                var same = 0
                for k in 0..<ComparePattern.imageCopies where !ComparePattern.imageModified(copy: k, page: j) { same += 1 }
                return same >= 2
            }
        }
    }
}
