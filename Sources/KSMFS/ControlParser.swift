// The /ksm control files: their names and modes, how a write(2) to a tunable is parsed and
// range-checked, and how a value reads back. It reproduces /sys/kernel/mm/ksm byte for byte
// (the `*_store`/`*_show` functions of mm/ksm.c over lib/kstrtox.c), as measured on Linux 6.18.
// Pure functions, no engine state: errors that depend on the engine (EBUSY, the advisor's lock
// on pages_to_scan) are the caller's, and `parse` says where the kernel checks them.

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// One parsed, range-checked write to a control file.
public enum ControlWrite: Equatable, Sendable {
    /// 0 stop (merges stay), 1 run, 2 stop and unmerge everything.
    case run(UInt32)
    case pagesToScan(UInt32)
    case sleepMillisecs(UInt32)
    /// 2 ... 2^31-1.
    case maxPageSharing(Int)
    case mergeAcrossNodes(Bool)
    case useZeroPages(Bool)
    case stableNodeChainsPruneMillisecs(UInt32)
    case smartScan(Bool)
    case advisorMode(scanTime: Bool)
    /// Any 64-bit value is accepted; the kernel stores it in 32 bits, so it is cut here.
    case advisorMaxCPU(UInt32)
    case advisorMinPagesToScan(UInt64)
    case advisorMaxPagesToScan(UInt64)
    /// Seconds, 1 ... 2^64-1.
    case advisorTargetScanTime(UInt64)
}

/// A write the kernel refuses, as the errno `write(2)` (or `open(2)`) reports.
public struct ControlError: Error, Equatable {
    public let errno: Int32
    public init(errno: Int32) { self.errno = errno }

    /// EINVAL: not a number, out of a range the file checks itself, or a wrong word.
    public static let invalid = ControlError(errno: EINVAL)
    /// ERANGE: a number that does not fit the kernel's integer type, where the file passes
    /// the conversion's error through (max_page_sharing, merge_across_nodes).
    public static let outOfRange = ControlError(errno: ERANGE)
    /// EACCES: a counter is read-only, for root too.
    public static let readOnly = ControlError(errno: EACCES)
    /// ENOENT: no such control file.
    public static let noSuchFile = ControlError(errno: ENOENT)
}

public enum ControlParser {
    /// Only this many bytes of one write reach the parser; a longer write reports this many.
    public static let maxWriteSize = 4096

    /// The 24 files of /sys/kernel/mm/ksm in `ls` order (byte order), with mode 0o644 for a
    /// tunable and 0o444 for a counter. `isSigned(file:)` tells which counters print `%ld`.
    public static let files: [(name: String, mode: UInt32, isTunable: Bool)] = [
        ("advisor_max_cpu", 0o644, true),
        ("advisor_max_pages_to_scan", 0o644, true),
        ("advisor_min_pages_to_scan", 0o644, true),
        ("advisor_mode", 0o644, true),
        ("advisor_target_scan_time", 0o644, true),
        ("full_scans", 0o444, false),
        ("general_profit", 0o444, false),
        ("ksm_zero_pages", 0o444, false),
        ("max_page_sharing", 0o644, true),
        ("merge_across_nodes", 0o644, true),
        ("pages_scanned", 0o444, false),
        ("pages_shared", 0o444, false),
        ("pages_sharing", 0o444, false),
        ("pages_skipped", 0o444, false),
        ("pages_to_scan", 0o644, true),
        ("pages_unshared", 0o444, false),
        ("pages_volatile", 0o444, false),
        ("run", 0o644, true),
        ("sleep_millisecs", 0o644, true),
        ("smart_scan", 0o644, true),
        ("stable_node_chains", 0o444, false),
        ("stable_node_chains_prune_millisecs", 0o644, true),
        ("stable_node_dups", 0o444, false),
        ("use_zero_pages", 0o644, true),
    ]

    /// Whether the file prints a signed value (`%ld`): `general_profit` (can be negative),
    /// `pages_volatile` and `ksm_zero_pages` (kernel `long`s). Every other file is unsigned.
    public static func isSigned(file name: String) -> Bool {
        name == "general_profit" || name == "pages_volatile" || name == "ksm_zero_pages"
    }

    // MARK: Writing

    /// Parses a write(2) to tunable `name`, as the kernel's store function does.
    ///
    /// - Returns `.success(nil)` for a 0-byte write: the kernel returns 0 before any store
    ///   function runs, so nothing is parsed or checked (not even the advisor lock below).
    /// - Only the first `maxWriteSize` (4096) bytes are seen, and the text ends at the first
    ///   NUL byte. On success the caller reports `min(bytes.count, 4096)` bytes written — the
    ///   whole slice, bytes after a NUL included (`"5\0junk"` reports 6).
    /// - `ENOENT` for an unknown name, `EACCES` for a counter (the kernel refuses the open).
    ///   Otherwise `EINVAL` or `ERANGE` as the file's store function returns them.
    ///
    /// Checks that need engine state, in the kernel's order:
    /// - `pages_to_scan`: while `advisor_mode` is scan-time, every non-empty write fails with
    ///   EINVAL *before* parsing, valid value or not. Parse errors are EINVAL too, so checking
    ///   after `parse` gives the same answers; just never apply the value.
    /// - `max_page_sharing`: parse and range first (EINVAL/ERANGE). Then, if the value equals
    ///   the current one, succeed and do nothing — even while shared blocks exist. Otherwise wait
    ///   for the scanner's current batch and fail with EBUSY if any shared block exists (kernel:
    ///   `pages_shared != 0`, or a stale stable node that cannot be removed).
    /// - `merge_across_nodes`: parse and range first (EINVAL/ERANGE). Then wait for the current
    ///   batch; only if the value differs from the current one, EBUSY when any shared block
    ///   exists (same condition as above). The same value always succeeds.
    /// - `run`: parse and range first; then wait for the current batch. The same value does
    ///   nothing (2 → 2 does not unmerge again). 2 unmerges inside the write; if that fails
    ///   the kernel leaves `run` at 0 and the write returns the unmerge's error.
    /// - `advisor_mode`: a change of mode resets `pages_to_scan` (to 100 for none, to
    ///   `advisor_min_pages_to_scan` cut to 32 bits for scan-time) and the advisor's history;
    ///   writing the current mode changes nothing.
    public static func parse(
        file name: String, bytes: UnsafeRawBufferPointer
    ) -> Result<ControlWrite?, ControlError> {
        guard let entry = files.first(where: { $0.name == name }) else {
            return .failure(.noSuchFile)
        }
        guard entry.isTunable else { return .failure(.readOnly) }
        if bytes.isEmpty { return .success(nil) }
        let text = Text(bytes)
        return parse(tunable: name, text).map { Optional($0) }
    }

    /// `parse(file:bytes:)` over an array.
    public static func parse(file name: String, bytes: [UInt8]) -> Result<ControlWrite?, ControlError> {
        bytes.withUnsafeBytes { parse(file: name, bytes: $0) }
    }

    private static func parse(tunable name: String, _ text: Text) -> Result<ControlWrite, ControlError> {
        switch name {
        case "run":
            // kstrtouint, then > 2; every error is EINVAL.
            return unsigned32(text).flatMap { $0 <= 2 ? .success(.run($0)) : .failure(.invalid) }
        case "pages_to_scan":
            return unsigned32(text).map { .pagesToScan($0) }
        case "sleep_millisecs":
            return unsigned32(text).map { .sleepMillisecs($0) }
        case "stable_node_chains_prune_millisecs":
            return unsigned32(text).map { .stableNodeChainsPruneMillisecs($0) }
        case "max_page_sharing":
            // kstrtoint, its error passed through (ERANGE past Int32, negatives included);
            // then < 2 is EINVAL (a signed test, so it also rejects -1).
            return signed(text).flatMap { value in
                guard value >= Int64(Int32.min), value <= Int64(Int32.max) else {
                    return .failure(.outOfRange)
                }
                return value < 2 ? .failure(.invalid) : .success(.maxPageSharing(Int(value)))
            }
        case "merge_across_nodes":
            // kstrtoul, its error passed through (ERANGE past 2^64-1); then > 1 is EINVAL.
            return unsigned(text).flatMap { $0 <= 1 ? .success(.mergeAcrossNodes($0 == 1)) : .failure(.invalid) }
        case "use_zero_pages":
            return boolean(text).map { .success(.useZeroPages($0)) } ?? .failure(.invalid)
        case "smart_scan":
            return boolean(text).map { .success(.smartScan($0)) } ?? .failure(.invalid)
        case "advisor_mode":
            if text.equalsWord("scan-time") { return .success(.advisorMode(scanTime: true)) }
            if text.equalsWord("none") { return .success(.advisorMode(scanTime: false)) }
            return .failure(.invalid)
        case "advisor_max_cpu":
            // kstrtoul into an unsigned int: no range check, the high bits are dropped.
            return unsigned64OrInvalid(text).map { .advisorMaxCPU(UInt32(truncatingIfNeeded: $0)) }
        case "advisor_min_pages_to_scan":
            return unsigned64OrInvalid(text).map { .advisorMinPagesToScan($0) }
        case "advisor_max_pages_to_scan":
            return unsigned64OrInvalid(text).map { .advisorMaxPagesToScan($0) }
        case "advisor_target_scan_time":
            return unsigned64OrInvalid(text).flatMap {
                $0 == 0 ? .failure(.invalid) : .success(.advisorTargetScanTime($0))
            }
        default:
            return .failure(.noSuchFile)
        }
    }

    // MARK: Numbers and words (lib/kstrtox.c, base 10)

    /// The bytes a store function sees: at most 4096 of the write, up to the first NUL.
    private struct Text {
        let bytes: UnsafeRawBufferPointer

        init(_ write: UnsafeRawBufferPointer) {
            var end = 0
            let limit = min(write.count, ControlParser.maxWriteSize)
            while end < limit && write[end] != 0 { end += 1 }
            bytes = UnsafeRawBufferPointer(rebasing: write[0..<end])
        }

        /// The byte at `i`, or 0 past the end (the C string's terminator).
        subscript(i: Int) -> UInt8 { i < bytes.count ? bytes[i] : 0 }

        /// sysfs_streq: equal to `word`, or to `word` followed by one "\n".
        func equalsWord(_ word: StaticString) -> Bool {
            let n = word.utf8CodeUnitCount
            guard bytes.count == n || (bytes.count == n + 1 && bytes[n] == UInt8(ascii: "\n")) else {
                return false
            }
            return word.withUTF8Buffer { w in
                var i = 0
                while i < n {
                    if w[i] != bytes[i] { return false }
                    i += 1
                }
                return true
            }
        }
    }

    /// kstrtoull: an optional "+", then `digits(from:)`.
    private static func unsigned(_ text: Text) -> Result<UInt64, ControlError> {
        digits(text, from: text[0] == UInt8(ascii: "+") ? 1 : 0)
    }

    /// kstrtoll: "-" then digits (no "+" after it), else `unsigned`; ERANGE past Int64.
    private static func signed(_ text: Text) -> Result<Int64, ControlError> {
        if text[0] == UInt8(ascii: "-") {
            return digits(text, from: 1).flatMap { magnitude in
                if magnitude > UInt64(Int64.max) + 1 { return .failure(.outOfRange) }
                return .success(Int64(truncatingIfNeeded: 0 &- magnitude))
            }
        }
        return unsigned(text).flatMap {
            $0 > UInt64(Int64.max) ? .failure(.outOfRange) : .success(Int64($0))
        }
    }

    /// Base-10 digits from `start`, then at most one "\n", then the end of the text. All the
    /// digits are read before the tail is looked at, so an overflow wins: ERANGE for
    /// "18446744073709551616abc", EINVAL for "5abc", EINVAL when there is no digit at all.
    private static func digits(_ text: Text, from start: Int) -> Result<UInt64, ControlError> {
        var i = start
        var value: UInt64 = 0
        var overflow = false
        while i < text.bytes.count {
            let d = text.bytes[i] &- UInt8(ascii: "0")
            if d > 9 { break }
            let (times10, o1) = value.multipliedReportingOverflow(by: 10)
            let (sum, o2) = times10.addingReportingOverflow(UInt64(d))
            overflow = overflow || o1 || o2
            value = sum
            i += 1
        }
        if overflow { return .failure(.outOfRange) }
        if i == start { return .failure(.invalid) }
        if text[i] == UInt8(ascii: "\n") { i += 1 }
        return i == text.bytes.count ? .success(value) : .failure(.invalid)
    }

    /// kstrtouint with the store function's `return -EINVAL` on any error (≥ 2^32 included).
    private static func unsigned32(_ text: Text) -> Result<UInt32, ControlError> {
        switch unsigned(text) {
        case .success(let v) where v <= UInt64(UInt32.max): return .success(UInt32(v))
        default: return .failure(.invalid)
        }
    }

    /// kstrtoul with the store function's `return -EINVAL` on any error (≥ 2^64 included).
    private static func unsigned64OrInvalid(_ text: Text) -> Result<UInt64, ControlError> {
        unsigned(text).mapError { _ in .invalid }
    }

    /// kstrtobool: the first character decides — `1 y Y t T e E` on, `0 n N f F d D` off —
    /// except `o`/`O`, where the second decides: `n N` on, `f F` off. Anything else is nil.
    private static func boolean(_ text: Text) -> Bool? {
        switch text[0] {
        case UInt8(ascii: "1"), UInt8(ascii: "y"), UInt8(ascii: "Y"), UInt8(ascii: "t"),
             UInt8(ascii: "T"), UInt8(ascii: "e"), UInt8(ascii: "E"):
            return true
        case UInt8(ascii: "0"), UInt8(ascii: "n"), UInt8(ascii: "N"), UInt8(ascii: "f"),
             UInt8(ascii: "F"), UInt8(ascii: "d"), UInt8(ascii: "D"):
            return false
        case UInt8(ascii: "o"), UInt8(ascii: "O"):
            switch text[1] {
            case UInt8(ascii: "n"), UInt8(ascii: "N"): return true
            case UInt8(ascii: "f"), UInt8(ascii: "F"): return false
            default: return nil
            }
        default:
            return nil
        }
    }

    // MARK: Reading

    /// `%lu\n`: every unsigned tunable and counter.
    public static func format(unsigned value: UInt64) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(21)
        appendDigits(of: value, to: &out)
        out.append(UInt8(ascii: "\n"))
        return out
    }

    /// `%ld\n`: `general_profit`, `pages_volatile`, `ksm_zero_pages`.
    public static func format(signed value: Int64) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(22)
        if value < 0 { out.append(UInt8(ascii: "-")) }
        appendDigits(of: value.magnitude, to: &out)
        out.append(UInt8(ascii: "\n"))
        return out
    }

    /// `[none] scan-time\n` or `none [scan-time]\n`.
    public static func formatAdvisorMode(scanTime: Bool) -> [UInt8] {
        Array((scanTime ? "none [scan-time]\n" : "[none] scan-time\n").utf8)
    }

    private static func appendDigits(of value: UInt64, to out: inout [UInt8]) {
        let start = out.count
        var v = value
        repeat {
            out.append(UInt8(ascii: "0") + UInt8(v % 10))
            v /= 10
        } while v != 0
        out[start...].reverse()
    }

    /// What a read of `size` bytes at `offset` returns: the rest of `text` from `offset`,
    /// at most `size` bytes; empty at or past its end (and for a negative offset or size).
    public static func slice(_ text: [UInt8], offset: Int, size: Int) -> ArraySlice<UInt8> {
        guard offset >= 0, size > 0, offset < text.count else {
            return text[text.endIndex..<text.endIndex]
        }
        return text[offset..<(offset + min(size, text.count - offset))]
    }
}
