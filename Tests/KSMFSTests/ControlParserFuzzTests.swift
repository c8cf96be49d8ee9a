// Seeded fuzzing of the control-file parser: over a million inputs (mutations of valid
// writes, random bytes, long runs, NULs), checked against an independent oracle written from
// KSM-SPEC §2 with arbitrary-precision digits, never against the parser's own helpers.
import Glibc
import XCTest
@testable import KSMFS

final class ControlParserFuzzTests: XCTestCase {
    /// What the kernel's kstrtoull sees: up to the first NUL of the first 4096 bytes.
    static func visible(_ b: [UInt8]) -> [UInt8] {
        let head = b.prefix(4096)
        return Array(head.prefix { $0 != 0 })
    }

    enum Num: Equatable { case value(UInt64), overflow, invalid }

    /// Independent reading of "[+]digits[\n]": the value, overflow past 2^64-1, or invalid.
    static func oracleUnsigned(_ t: [UInt8]) -> Num {
        var i = 0
        if t.first == UInt8(ascii: "+") { i = 1 }
        var digits: [UInt8] = []
        while i < t.count, t[i] >= 48, t[i] <= 57 { digits.append(t[i] - 48); i += 1 }
        // Overflow is decided on the digits alone (kernel order), before the tail.
        let significant = Array(digits.drop { $0 == 0 })
        let max: [UInt8] = Array("18446744073709551615".utf8).map { $0 - 48 }
        let overflow = significant.count > max.count || (significant.count == max.count && significant.lexicographicallyPrecedes(max) == false && significant != max)
        if overflow { return .overflow }
        if digits.isEmpty { return .invalid }
        if i < t.count && t[i] == UInt8(ascii: "\n") { i += 1 }
        if i != t.count { return .invalid }
        var v: UInt64 = 0
        for d in significant { v = v * 10 + UInt64(d) }
        return .value(v)
    }

    func expected(_ file: String, _ raw: [UInt8]) -> Result<ControlWrite?, ControlError> {
        if raw.isEmpty { return .success(nil) }
        let t = Self.visible(raw)
        let u = Self.oracleUnsigned(t)
        func u32(_ make: (UInt32) -> ControlWrite) -> Result<ControlWrite?, ControlError> {
            if case .value(let v) = u, v <= UInt64(UInt32.max) { return .success(make(UInt32(v))) }
            return .failure(.invalid)
        }
        func u64(_ make: (UInt64) -> ControlWrite) -> Result<ControlWrite?, ControlError> {
            if case .value(let v) = u { return .success(make(v)) }
            return .failure(.invalid)
        }
        switch file {
        case "pages_to_scan": return u32 { .pagesToScan($0) }
        case "sleep_millisecs": return u32 { .sleepMillisecs($0) }
        case "stable_node_chains_prune_millisecs": return u32 { .stableNodeChainsPruneMillisecs($0) }
        case "advisor_min_pages_to_scan": return u64 { .advisorMinPagesToScan($0) }
        case "advisor_max_pages_to_scan": return u64 { .advisorMaxPagesToScan($0) }
        case "advisor_max_cpu": return u64 { .advisorMaxCPU(UInt32(truncatingIfNeeded: $0)) }
        case "advisor_target_scan_time":
            if case .value(let v) = u, v >= 1 { return .success(.advisorTargetScanTime(v)) }
            return .failure(.invalid)
        case "merge_across_nodes":
            switch u {
            case .overflow: return .failure(.outOfRange)
            case .value(let v) where v <= 1: return .success(.mergeAcrossNodes(v == 1))
            default: return .failure(.invalid)
            }
        case "run":
            if case .value(let v) = u, v <= 2 { return .success(.run(UInt32(v))) }
            return .failure(.invalid)
        default:
            fatalError(file)
        }
    }

    func testAMillionSeededInputsMatchTheOracle() {
        let files = ["pages_to_scan", "sleep_millisecs", "stable_node_chains_prune_millisecs", "advisor_min_pages_to_scan",
                     "advisor_max_pages_to_scan", "advisor_max_cpu", "advisor_target_scan_time", "merge_across_nodes", "run"]
        let seeds: [[UInt8]] = ["0", "1", "2", "100", "+7", "007", "4294967295", "4294967296", "18446744073709551615",
                                "18446744073709551616", "5\n", "5\n\n", " 5", "-1", "0x10", "1e3", ""].map { Array($0.utf8) }
        let alphabet = Array("0123456789+-\n \t\0xe.".utf8)
        var rng = Rng(s: 0x4B53_4D46_5553_5A31)
        var mismatches = 0
        for n in 0..<1_000_000 {
            var input: [UInt8]
            switch rng.below(100) {
            case 0..<10:  // random bytes
                input = (0..<rng.below(24)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            case 10:      // long runs around the 4096-byte limit
                input = [UInt8](repeating: UInt8(ascii: "0"), count: 4090 + rng.below(12))
                input.append(UInt8(ascii: "0") + UInt8(rng.below(10)))
                if rng.below(2) == 0 { input.append(UInt8(ascii: "x")) }
            default:      // mutations of a valid or tricky seed
                input = seeds[rng.below(seeds.count)]
                for _ in 0..<rng.below(4) {
                    let c = alphabet[rng.below(alphabet.count)]
                    switch rng.below(3) {
                    case 0: input.insert(c, at: rng.below(input.count + 1))
                    case 1: if !input.isEmpty { input[rng.below(input.count)] = c }
                    default: if !input.isEmpty { input.remove(at: rng.below(input.count)) }
                    }
                }
            }
            let file = files[n % files.count]
            let got = ControlParser.parse(file: file, bytes: input)
            let want = expected(file, input)
            if got != want {
                mismatches += 1
                if mismatches <= 5 { XCTFail("\(file) \(input): parser \(got), oracle \(want)") }
            }
        }
        XCTAssertEqual(mismatches, 0)
    }

    func testBooleanFilesNeverAcceptWhatTheFirstCharacterRejects() {
        var rng = Rng(s: 77)
        for _ in 0..<200_000 {
            let input = (0..<(1 + rng.below(6))).map { _ in UInt8(truncatingIfNeeded: rng.next() % 128) }
            let first = Self.visible(input).first ?? 0
            let result = ControlParser.parse(file: "use_zero_pages", bytes: input)
            let decisive = Array("1yYtTeE0nNfFdDoO".utf8)
            if !decisive.contains(first) {
                XCTAssertEqual(result, .failure(.invalid), "\(input)")
            }
            if case .success(.some(.useZeroPages(let on))) = result, first != UInt8(ascii: "o"), first != UInt8(ascii: "O") {
                XCTAssertEqual(on, Array("1yYtTeE".utf8).contains(first))
            }
        }
    }
}
