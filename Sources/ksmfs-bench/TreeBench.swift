// `ksmfs-bench tree`: real small-file work side by side in one run — tmpfs, the minimal C
// reference filesystem (CReferenceFS) and ksmfs — on a tarball of a real tree built from
// directories found on the machine (headers, Python's library, package docs), or a seeded
// synthetic tree with a realistic size mix where they are missing. Each repetition mounts each
// system afresh and runs, with the real tools: `tar x`, `cp -a` of the tree, a `find -printf
// %s` walk, `ls -lR`, reading every file after dropping the page cache, and `rm -rf` of both
// copies. Reported: time (min/median/max), ratio to tmpfs, FUSE requests per file of the tree
// and the daemon's CPU per request, for ksmfs and the reference alike.
import ArgumentParser
import Glibc
import KSMFS

struct TreeBench {
    var repetitions = 3
    var systems = ["tmpfs", "reference", "ksmfs"]
    var tarball = "/dev/shm/ksmfs-bench-tree.tar"
    var ksmfsOptions = ""
    var synthetic = 0
    var seed: UInt64 = 1

    static let sources = ["/usr/include", "/usr/lib/python3", "/usr/lib/python3.11", "/usr/lib/python3.12",
                          "/usr/lib/python3.13", "/usr/share/doc", "/usr/share/perl"]

    struct Step: Sendable {
        let name: String
        /// The shell command, given the mount and the tarball.
        let command: @Sendable (_ mount: String, _ tarball: String) -> String
        /// Drop the kernel's page cache first (tmpfs keeps its files: only FUSE's cache goes).
        var cold = false
    }

    static let steps: [Step] = [
        Step(name: "tar x", command: { m, tar in "mkdir \(m)/t1 && tar -xf \(tar) -C \(m)/t1" }),
        Step(name: "cp -a", command: { m, _ in "cp -a \(m)/t1 \(m)/t2" }),
        Step(name: "find -printf %s", command: { m, _ in "find \(m)/t1 -printf '%s\\n' > /dev/null" }),
        Step(name: "ls -lR", command: { m, _ in "ls -lR \(m)/t1 > /dev/null" }),
        Step(name: "read all (cold)", command: { m, _ in "find \(m)/t1 -type f -print0 | xargs -0 cat > /dev/null" }, cold: true),
        Step(name: "rm -rf", command: { m, _ in "rm -rf \(m)/t1 \(m)/t2" }),
    ]

    struct Sample {
        var seconds: Double
        var requests: Double?
        var cpuSeconds: Double?
        var byOp: [String: Double] = [:]
    }

    func log(_ s: String) {
        var b = Array((s + "\n").utf8)
        _ = Glibc.write(2, &b, b.count)
    }

    // MARK: the tree

    /// Builds the tarball if it is not there; returns (regular files, entries, bytes, what it holds).
    func prepareTarball() -> (files: Int, entries: Int, bytes: Int, source: String) {
        let found = TreeBench.sources.filter { isDirectory($0) }
        let listing = "/tmp/ksmfs-bench-tree.count"
        if access(tarball, R_OK) != 0 {
            if synthetic > 0 || found.isEmpty {
                let dir = "/dev/shm/ksmfs-bench-synthetic"
                sh("rm -rf \(dir)")
                writeSyntheticTree(dir, files: synthetic > 0 ? synthetic : 18_000)
                if sh("tar -cf \(tarball) -C \(dir) . && rm -rf \(dir)") != 0 { fail("cannot build \(tarball)") }
            } else {
                // No hard links (the reference has no link()); sockets and devices are skipped.
                if sh("tar --hard-dereference --warning=no-file-changed --warning=no-file-removed --ignore-failed-read -cf \(tarball) \(found.joined(separator: " ")) 2>/dev/null; test -s \(tarball)") != 0 {
                    fail("cannot build \(tarball)")
                }
            }
        }
        sh("tar -tvf \(tarball) | awk '{n++; if (substr($1,1,1)==\"-\") {f++; b+=$3}} END {print f, n, b}' > \(listing)")
        let parts = (readSmallFile(listing) ?? "").split(separator: " ").compactMap { Int(String($0).trimmingCharacters()) }
        guard parts.count == 3, parts[0] > 0 else { fail("cannot read \(tarball)") }
        let source = synthetic > 0 || found.isEmpty ? "synthetic tree, seed \(seed)" : found.joined(separator: " ")
        return (parts[0], parts[1], parts[2], source)
    }

    /// A seeded tree: directories of about 40 entries, sizes from a log-normal-like mix (median
    /// about 4 KiB, a tail to 1 MiB, some empty), and a symlink every 50 files.
    func writeSyntheticTree(_ root: String, files: Int) {
        var rng = seed | 1
        func next() -> UInt64 { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng }
        mkdir(root, 0o755)
        let buf = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 4096)
        defer { buf.deallocate() }
        for i in 0..<(1 << 20) / 8 { buf.storeBytes(of: next(), toByteOffset: i * 8, as: UInt64.self) }
        var dirs = [root]
        for i in 0..<files {
            if i % 40 == 0 {
                let parent = dirs[Int(next() % UInt64(dirs.count))]
                let d = "\(parent)/d\(i / 40)"
                mkdir(d, 0o755)
                dirs.append(d)
            }
            let dir = dirs.last!
            let path = "\(dir)/f\(i)"
            if i % 50 == 49 { symlink("f\(i - 1)", path); continue }
            let r = next() % 1000
            let size = r < 30 ? 0 : r < 500 ? Int(next() % 4096) : r < 900 ? 4096 + Int(next() % 28672) : r < 990 ? 32768 + Int(next() % 229_376) : Int(next() % (1 << 20))
            let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
            if fd < 0 { fail("create \(path): \(String(cString: strerror(errno)))") }
            if size > 0 { _ = Glibc.write(fd, buf + Int(next() % UInt64((1 << 20) - size + 1)), size) }
            Glibc.close(fd)
        }
    }

    func isDirectory(_ p: String) -> Bool {
        var st = stat()
        return stat(p, &st) == 0 && st.st_mode & S_IFMT == S_IFDIR
    }

    // MARK: counting

    /// Requests served so far by operation, and the daemon's CPU seconds (nil for tmpfs).
    func counters(_ m: BenchMount) -> (byOp: [String: Double], cpu: Double)? {
        guard m.kind != "tmpfs" else { return nil }
        var ops: [String: Double] = [:]
        if m.kind == "ksmfs" {
            for line in (readSmallFile(m.path + "/ksm/metrics", limit: 1 << 20) ?? "").split(separator: "\n") where line.hasPrefix("ksmfs_fuse_requests_total{") {
                guard let r = line.firstRange(of: "op=\""), let sp = line.lastIndex(of: " ") else { continue }
                let op = String(line[r.upperBound...].prefix { $0 != "\"" })
                ops[op] = Double(line[line.index(after: sp)...])
            }
        } else {
            let fd = open(BenchMount.referenceStats, O_RDONLY)
            if fd >= 0 {
                var v = [UInt64](repeating: 0, count: 64)
                _ = v.withUnsafeMutableBytes { pread(fd, $0.baseAddress, 512, 0) }
                Glibc.close(fd)
                for (op, n) in v.enumerated() where n > 0 { ops[TreeBench.opcodeNames[op] ?? "op\(op)"] = Double(n) }
            }
        }
        return (ops, ThreadCPU(dir: "/proc/\(m.pid)").statSeconds())
    }

    static let opcodeNames: [Int: String] = [1: "lookup", 2: "forget", 3: "getattr", 4: "setattr", 5: "readlink",
        6: "symlink", 8: "mknod", 9: "mkdir", 10: "unlink", 11: "rmdir", 12: "rename", 13: "link", 14: "open",
        15: "read", 16: "write", 17: "statfs", 18: "release", 20: "fsync", 21: "setxattr", 22: "getxattr",
        23: "listxattr", 24: "removexattr", 25: "flush", 26: "init", 27: "opendir", 28: "readdir",
        29: "releasedir", 30: "fsyncdir", 34: "access", 35: "create", 39: "ioctl", 42: "batch_forget",
        43: "fallocate", 44: "readdirplus", 45: "rename2", 46: "lseek", 47: "copy_file_range"]

    // MARK: running

    func runSteps(_ m: BenchMount) -> [Sample] {
        var out: [Sample] = []
        for step in TreeBench.steps {
            if step.cold { sync(); sh("echo 1 > /proc/sys/vm/drop_caches") }
            let before = counters(m)
            let command = step.command(m.path, tarball)
            let t0 = now()
            let rc = sh(command)
            let dt = now() - t0
            if rc != 0 { fail("\(m.kind): \(step.name) failed (exit \(rc)): \(command)") }
            var sample = Sample(seconds: dt)
            if let b = before, let a = counters(m) {
                var total = 0.0
                for (op, n) in a.byOp where op != "forget" && op != "batch_forget" {
                    let d = n - (b.byOp[op] ?? 0)
                    if d > 0 { sample.byOp[op] = d; total += d }
                }
                sample.requests = total
                sample.cpuSeconds = a.cpu - b.cpu
            }
            out.append(sample)
        }
        return out
    }

    func mount(_ system: String) -> BenchMount {
        switch system {
        case "tmpfs": return BenchMount(tmpfs: "size=4g,nr_inodes=1m")
        case "reference": return BenchMount(reference: ())
        default: return BenchMount(ksmfs: "size=4g" + (ksmfsOptions.isEmpty ? "" : "," + ksmfsOptions))
        }
    }

    func run() {
        if getuid() != 0 { fail("tree needs root (it mounts tmpfs and drops the page cache)") }
        let tree = prepareTarball()
        // The tarball is read from memory in every run (it is on /dev/shm or cached after this).
        sh("cat \(tarball) > /dev/null")
        var results: [String: [[Sample]]] = [:]
        let t0 = now()
        for rep in 0..<repetitions {
            let order = rep % 2 == 0 ? systems : systems.reversed()
            for system in order {
                log("rep \(rep + 1)/\(repetitions): \(system)")
                let m = mount(system)
                results[system, default: []].append(runSteps(m))
                m.close()
            }
        }
        report(results, tree: tree, seconds: now() - t0)
    }

    func report(_ results: [String: [[Sample]]], tree: (files: Int, entries: Int, bytes: Int, source: String), seconds: Double) {
        print("\nksmfs-bench tree: \(tree.files) files (\(tree.entries) entries, \(tree.bytes >> 20) MiB) from \(tree.source)")
        print("\(repetitions) repetitions, \(Int(seconds)) s; every system mounted afresh per repetition, order alternating"
              + (ksmfsOptions.isEmpty ? "" : "; ksmfs -o \(ksmfsOptions)"))
        print("requests/file: FUSE requests (FORGET excluded) per regular file of the tree; CPU/request: the daemon's user+system CPU per request\n")
        var header = ["step"]
        for s in systems { header.append("\(s) s min/med/max") }
        for s in systems where s != "tmpfs" { header.append("\(s)/tmpfs") }
        for s in systems where s != "tmpfs" { header += ["\(s) req/file", "\(s) CPU µs/req"] }
        var rows: [[String]] = []
        func stat3(_ v: [Double], _ d: Int = 2) -> String { let s = Stats(values: v); return "\(fmt(s.min, d)) / \(fmt(s.median, d)) / \(fmt(s.max, d))" }
        for (i, step) in TreeBench.steps.enumerated() {
            var row = [step.name]
            for s in systems { row.append(stat3(results[s]!.map { $0[i].seconds }, 3)) }
            for s in systems where s != "tmpfs" {
                if let t = results["tmpfs"] {
                    row.append(stat3(zip(results[s]!, t).map { $0[i].seconds / max(1e-9, $1[i].seconds) }, 1))
                } else { row.append("-") }
            }
            for s in systems where s != "tmpfs" {
                let reqs = results[s]!.compactMap { $0[i].requests }
                let cpu = results[s]!.compactMap { x in x[i].requests.flatMap { r in x[i].cpuSeconds.map { r > 0 ? $0 / r * 1e6 : 0 } } }
                row.append(reqs.isEmpty ? "-" : fmt(Stats(values: reqs).median / Double(tree.files), 1))
                row.append(cpu.isEmpty ? "-" : fmt(Stats(values: cpu).median, 0))
            }
            rows.append(row)
        }
        printTable(header, rows)
        print("\nRequests per file by operation (first repetition; under 0.01 left out):")
        for s in systems where s != "tmpfs" {
            guard let first = results[s]?.first else { continue }
            for (i, step) in TreeBench.steps.enumerated() {
                let ops = first[i].byOp.filter { $0.value / Double(tree.files) >= 0.01 }.sorted { $0.value > $1.value }
                print("\(s), \(step.name): " + ops.map { "\($0.key) \(fmt($0.value / Double(tree.files), 2))" }.joined(separator: ", "))
            }
        }
    }
}

extension Bench {
    struct Tree: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Small-file work on a real tree: tar x, cp -a, find, ls -lR, read, rm -rf (root).",
            discussion: """
                Side by side in one run: tmpfs, a minimal C libfuse filesystem (the reference) and \
                ksmfs, each mounted afresh per repetition. The tree is a tarball of directories \
                found on the machine (headers, Python's library, package documentation), built once \
                at --tarball, or a seeded synthetic tree (--synthetic N files) where none is found.
                """)
        @Option(help: "Repetitions (the order of systems alternates).") var repetitions = 3
        @Option(help: "Systems, comma separated: tmpfs, reference, ksmfs.") var systems = "tmpfs,reference,ksmfs"
        @Option(help: "The tarball (built when missing).") var tarball = "/dev/shm/ksmfs-bench-tree.tar"
        @Option(help: "Build a synthetic tree of this many files instead of using the machine's directories.") var synthetic = 0
        @Option(help: "Seed of the synthetic tree.") var seed: UInt64 = 1
        @Option(help: "More ksmfs mount options, comma separated.") var ksmfsOptions = ""

        func validate() throws {
            if repetitions < 1 || repetitions > 100 { throw ValidationError("--repetitions must be between 1 and 100") }
            if synthetic < 0 || synthetic > 1_000_000 { throw ValidationError("--synthetic must be between 0 and 1000000") }
            let list = systems.split(separator: ",").map(String.init)
            for s in list where !["tmpfs", "reference", "ksmfs"].contains(s) {
                throw ValidationError("--systems: unknown system \(s) (tmpfs, reference, ksmfs)")
            }
            if list.isEmpty { throw ValidationError("--systems may not be empty") }
        }

        func run() {
            var b = TreeBench()
            b.repetitions = repetitions
            b.systems = systems.split(separator: ",").map(String.init)
            b.tarball = tarball
            b.synthetic = synthetic
            b.seed = seed
            b.ksmfsOptions = ksmfsOptions
            b.run()
        }
    }
}
