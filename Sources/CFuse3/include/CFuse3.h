/* CFuse3: the only C that the FUSE layer touches. Fixes the libfuse API version at 3.14,
 * and turns what Swift cannot call (macros, bitfields, versioned loop symbols, variadic
 * setup) into plain functions. Nothing here knows about ksmfs. */
#ifndef CFUSE3_H
#define CFUSE3_H

#define FUSE_USE_VERSION 314
#include <fuse3/fuse_lowlevel.h>
#include <fuse3/fuse_opt.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/uio.h>
#include <sys/types.h>
#include <stdint.h>

/* fuse_args from an argv that the caller keeps alive (strdup'd strings). */
struct fuse_args *cfuse_args_new(int argc, char **argv);
void cfuse_args_free(struct fuse_args *args);

/* The multithreaded loop, whatever symbol version libfuse exports. */
int cfuse_session_loop_mt(struct fuse_session *se, unsigned max_threads, int clone_fd);

/* Routes the session's replies through a writev that adds FUSE_HANDLE_KILLPRIV_V2 to the
 * INIT reply (libfuse 3.14 cannot ask for it). The kernel then stops asking for
 * security.capability on every write (SB_NOSEC), and the filesystem clears suid/sgid itself.
 * Call after fuse_session_mount. Returns 0 on success. */
int cfuse_enable_killpriv_v2(struct fuse_session *se);

/* FUSE passthrough (kernel 6.9+, root): whether the kernel's INIT offered it (-1 before INIT),
 * asking for it in the INIT reply (from the init callback; never with the writeback cache),
 * whether that reply asked, an OPEN reply whose reads and mmaps go to the backing file
 * `backing_id`, and the backing files themselves (an id > 0, or -errno). */
int cfuse_kernel_offers_passthrough(void);
void cfuse_want_passthrough(int on);
int cfuse_passthrough_enabled(void);
int cfuse_reply_open_backing(fuse_req_t req, const struct fuse_file_info *fi, int32_t backing_id);
int cfuse_backing_open(struct fuse_session *se, int fd);
int cfuse_backing_close(struct fuse_session *se, int32_t id);
/* Pages of FUSE node `nodeid` in the kernel's page cache (cachestat of a descriptor opened by
 * handle on the mount of `mount_fd`, which sends an OPEN and a RELEASE), or -errno. Never from
 * a request handler: the open waits for one. */
long cfuse_cached_pages(int mount_fd, uint64_t nodeid, uint32_t generation);
/* The calling thread's id (the pid a FUSE request carries for it). */
int cfuse_gettid(void);
/* 1 if CAP_SYS_ADMIN is in the effective set, 0 if not, -1 if that cannot be told. */
int cfuse_has_cap_sys_admin(void);

/* Requests seen since the session started, by opcode (index 0: opcodes unknown here): counts,
 * total nanoseconds from request to reply, and replies per latency bucket (bucket b: under
 * 2^b microseconds; the last one open-ended), buckets[op * CFUSE_BUCKETS + b]. */
#define CFUSE_OPCODES 64
#define CFUSE_BUCKETS 16
void cfuse_request_stats(uint64_t *counts, uint64_t *sum_ns, uint64_t *buckets);
/* Requests from thread `tid` of the daemon itself (0: none) are counted apart, not by opcode;
 * a request that carries no caller (an asynchronous RELEASE) can be moved there afterwards. */
void cfuse_set_own_thread(int tid);
uint64_t cfuse_own_request_count(void);
int cfuse_own_thread(void);
void cfuse_reattribute_request(uint32_t opcode);

/* FUSE_NOTIFY_INVAL_INODE (off < 0: attributes only). Never from a request handler. */
int cfuse_notify_inval_inode(struct fuse_session *se, uint64_t ino, int64_t off, int64_t len);

/* Stopping. Open handles are counted by the session's callbacks; SIGINT/SIGTERM/SIGHUP while
 * any is open are refused (a second signal within grace_ms forces the stop; closing the last
 * handle lets the refused stop go ahead). Events are
 * read by a normal thread with cfuse_wait_stop_event. */
enum { CFUSE_STOP_REFUSED = 1, CFUSE_STOP_FORCED = 2, CFUSE_STOP_CLEAN = 3, CFUSE_STOP_QUIT = 4, CFUSE_STOP_IDLE = 5 };
void cfuse_handle_opened(void);
void cfuse_handle_closed(void);
long cfuse_open_handle_count(void);
int cfuse_install_stop_handlers(struct fuse_session *se, int grace_ms);
void cfuse_remove_stop_handlers(void);
int cfuse_wait_stop_event(int *signal_out, long *busy_out);
void cfuse_post_stop_event(int event);
/* A fatal signal (SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGFPE, SIGABRT) appends
 * "ended=signal N" to fd, then goes on to the handler that was there before. */
int cfuse_record_crashes(int fd);
/* klogctl(2) (glibc's wrapper is not in Swift's Glibc module): the kernel log, for the daemon's
 * own OOM kill. */
int cfuse_klogctl(int type, char *buf, int len);

/* fuse_file_info bitfields. */
void cfuse_fi_set_direct_io(struct fuse_file_info *fi, int on);
void cfuse_fi_set_keep_cache(struct fuse_file_info *fi, int on);
void cfuse_fi_set_nonseekable(struct fuse_file_info *fi, int on);
void cfuse_fi_set_cache_readdir(struct fuse_file_info *fi, int on);
int cfuse_fi_writepage(const struct fuse_file_info *fi);

/* Negotiation in init: ask for what the kernel offers among `want`, set sizes. */
void cfuse_conn_configure(struct fuse_conn_info *conn, unsigned want, unsigned max_write,
                          unsigned max_read, unsigned max_readahead, unsigned time_gran);
unsigned cfuse_conn_capable(const struct fuse_conn_info *conn);
unsigned cfuse_conn_want(const struct fuse_conn_info *conn);

/* Caller identity of a request. */
uid_t cfuse_req_uid(fuse_req_t req);
gid_t cfuse_req_gid(fuse_req_t req);
pid_t cfuse_req_pid(fuse_req_t req);
mode_t cfuse_req_umask(fuse_req_t req);

/* stat fields that are macros (st_atim etc. are fine in Swift, these are for clarity). */
static inline void cfuse_stat_set_times(struct stat *st, struct timespec a, struct timespec m,
                                        struct timespec c) {
    st->st_atim = a; st->st_mtim = m; st->st_ctim = c;
}

#endif
