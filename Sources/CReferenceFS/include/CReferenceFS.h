// A minimal in-memory libfuse filesystem, for `ksmfs-bench io` only: the baseline that
// issue 2's targets are stated against ("a minimal C libfuse in-memory filesystem"), run
// side by side with ksmfs and tmpfs. Not part of ksmfs.
#pragma once

/// Mounts the reference filesystem at `mountpoint` and serves it in the foreground until
/// unmounted. Returns the session loop's result, or 1 if the mount failed.
int reffs_run(const char *mountpoint);
