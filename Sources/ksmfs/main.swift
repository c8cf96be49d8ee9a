// The ksmfs command: `ksmfs [SOURCE] MOUNTPOINT [-o ...]` mounts (the default subcommand, as
// mount.fuse3 calls it), `ksmfs status` shows what the engine is doing.
import ArgumentParser
import Glibc

struct KSMFSCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "ksmfs",
        abstract: "An in-memory filesystem that merges identical pages, tuned like the kernel's KSM.",
        discussion: """
        Files live in memory page by page. Identical pages of any files are merged into one shared
        block by a scanner driven through <mountpoint>/ksm/ (echo 1 > ksm/run; cat ksm/pages_sharing).

          ksmfs MOUNTPOINT [-f] [-d] [-o opt,...]    mount (-f foreground, -d debug)
          ksmfs status [MOUNTPOINT] [--watch] [--json]

        """ + mountOptionsHelp,
        version: "ksmfs 0.1.0",
        subcommands: [MountCommand.self, StatusCommand.self],
        defaultSubcommand: MountCommand.self
    )
}

func writeStderr(_ s: String) {
    var bytes = Array(s.utf8)
    _ = Glibc.write(2, &bytes, bytes.count)
}

KSMFSCommand.main()
