// Seeded fuzzing of the xattr parsing: a million random names (namespace prefixes, the
// user.ksm.* names and near misses, random bytes including invalid UTF-8 and NULs) and a
// million random user.ksm.mergeable values, each checked against an oracle written from the
// README's rules with plain byte comparisons, never with the parser's helpers.
import FUSE
import XCTest
@testable import KSMFS

final class XattrFuzzTests: XCTestCase {
    static let figures = ["ksm_rmap_items", "ksm_zero_pages", "ksm_merging_pages", "ksm_process_profit",
                          "ksm_merge_any", "ksm_mergeable", "stat"]

    enum Expect: Equatable { case unsupported, mergeable, figure(String), plain }

    static func oracle(_ n: [UInt8]) -> Expect {
        func starts(_ p: String) -> Bool { n.count >= p.utf8.count && Array(n[0..<p.utf8.count]) == Array(p.utf8) }
        if !(starts("user.") || starts("trusted.") || starts("security.")) { return .unsupported }
        if n == Array("user.ksm.mergeable".utf8) { return .mergeable }
        for f in figures where n == Array("user.ksm.\(f)".utf8) { return .figure(f) }
        return .plain
    }

    static func oracleValue(_ v: [UInt8]) -> Bool? {
        switch v {
        case [0x30], [0x30, 0x0A]: return false
        case [0x31], [0x31, 0x0A]: return true
        default: return nil
        }
    }

    func testAMillionRandomXattrNamesAreClassifiedAsTheOracleSays() {
        var rng = Rng(s: 0x5EED_0001)
        let prefixes = ["user.", "trusted.", "security.", "system.", "user.ksm.", "user.ksm.mergeable", "", "user",
                        "USER.", "user..", "trusted", "security", "user.ksm", " user.", "user.ksm.stat"]
        let tails = ["", "mergeable", "stat", "ksm_rmap_items", "ksm_zero_pages", "ksm_merging_pages", "ksm_process_profit",
                     "ksm_merge_any", "ksm_mergeable", "mergeable\n", "Mergeable", "stat ", "ksm_mergeable\0", "x"]
        var seen: [String: Int] = [:]
        for _ in 0..<1_000_000 {
            var n = Array(prefixes[rng.below(prefixes.count)].utf8)
            switch rng.below(4) {
            case 0: n += Array(tails[rng.below(tails.count)].utf8)
            case 1: n += rng.bytes(rng.below(24))
            case 2: n += Array(tails[rng.below(tails.count)].utf8) + rng.bytes(rng.below(3))
            default: if !n.isEmpty && rng.below(2) == 0 { n.removeLast(rng.below(n.count) + 1) }
            }
            let got = MemoryFileSystem.classify(Name(n))
            let want = XattrFuzzTests.oracle(n)
            let gotE: Expect
            switch got {
            case .unsupported: gotE = .unsupported
            case .mergeable: gotE = .mergeable
            case .figure(let f): gotE = .figure(f)
            case .plain: gotE = .plain
            }
            if gotE != want { XCTFail("name \(n): classified \(gotE), expected \(want)"); return }
            seen["\(want)", default: 0] += 1
        }
        // Every class was exercised, not only the easy ones.
        XCTAssertGreaterThan(seen["unsupported"] ?? 0, 1000)
        XCTAssertGreaterThan(seen["mergeable"] ?? 0, 1000)
        XCTAssertGreaterThan(seen["plain"] ?? 0, 1000)
        XCTAssertGreaterThan(seen.keys.filter { $0.hasPrefix("figure") }.count, 6)
    }

    func testAMillionRandomMergeableValuesParseAsTheOracleSays() {
        var rng = Rng(s: 0x5EED_0002)
        let seeds = ["0", "1", "0\n", "1\n", "", "\n", "01", "10", "1\n\n", " 1", "1 ", "+1", "-0", "2", "0x1",
                     "1\0", "\0", "true", "yes", "11", "1\r\n"]
        var accepted = 0, refused = 0
        for _ in 0..<1_000_000 {
            var v: [UInt8]
            switch rng.below(3) {
            case 0: v = Array(seeds[rng.below(seeds.count)].utf8)
            case 1: v = rng.bytes(rng.below(4))
            default:
                v = Array(seeds[rng.below(seeds.count)].utf8)
                if !v.isEmpty { v[rng.below(v.count)] = UInt8(truncatingIfNeeded: rng.next()) }
                if rng.below(2) == 0 { v += rng.bytes(rng.below(3)) }
            }
            let got = MemoryFileSystem.parseMergeable(v)
            let want = XattrFuzzTests.oracleValue(v)
            if got != want { XCTFail("value \(v): parsed \(String(describing: got)), expected \(String(describing: want))"); return }
            if want == nil { refused += 1 } else { accepted += 1 }
        }
        XCTAssertGreaterThan(accepted, 10_000)
        XCTAssertGreaterThan(refused, 10_000)
    }
}
