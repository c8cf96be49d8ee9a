/* CFuse3 shim: plain functions over libfuse 3.14 macros and bitfields (see CFuse3.h). */
#include "CFuse3.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/uio.h>
#include <time.h>

/* The head of the kernel's fuse_init_out (include/uapi/linux/fuse.h). */
struct cfuse_init_out_head { uint32_t major, minor, max_readahead, flags; };
#define CFUSE_HANDLE_KILLPRIV_V2 (1u << 28)
#define CFUSE_INIT_EXT (1u << 30)
/* flags2 (byte 32 of fuse_init_out): FUSE_DIRECT_IO_ALLOW_MMAP (1ULL << 36). */
#define CFUSE_FLAGS2_OFFSET 32
#define CFUSE_DIRECT_IO_ALLOW_MMAP2 (1u << 4)
/* FUSE passthrough: FUSE_PASSTHROUGH is flags2 bit 5; max_stack_depth sits at byte 36 of
 * fuse_init_out; an OPEN reply's fuse_open_out has open_flags at 8 (FOPEN_PASSTHROUGH 1 << 7)
 * and backing_id at 12. */
#define CFUSE_PASSTHROUGH2 (1u << 5)
#define CFUSE_MAX_STACK_DEPTH_OFFSET 36
#define CFUSE_FOPEN_PASSTHROUGH (1u << 7)
#define CFUSE_OPCODE_INIT 26
static int cfuse_init_patched;
static int cfuse_passthrough_wanted;           /* set by the init callback, before the reply */
static _Atomic int cfuse_passthrough_on;       /* the INIT reply asked for it */
static _Atomic int cfuse_kernel_flags2_seen;   /* 1 + whether INIT offered passthrough */
static __thread int32_t cfuse_t_backing_id;

/* Requests by opcode: counts, and for those answered, the time from the read of the request
 * to the write of its reply, in power-of-two microsecond buckets. A libfuse worker reads a
 * request and answers it on the same thread, so the thread remembers what it read. */
static uint64_t cfuse_counts[CFUSE_OPCODES], cfuse_sum_ns[CFUSE_OPCODES];
static uint64_t cfuse_buckets[CFUSE_OPCODES][CFUSE_BUCKETS];
static __thread uint64_t cfuse_t_unique;
static __thread long long cfuse_t_start;
static __thread uint32_t cfuse_t_opcode;
/* Requests caused by one of the daemon's own threads (the page-cache probe), counted apart. */
static _Atomic int cfuse_own_tid;
static _Atomic uint64_t cfuse_own_requests;

void cfuse_set_own_thread(int tid) { cfuse_own_tid = tid; }
uint64_t cfuse_own_request_count(void) { return cfuse_own_requests; }
int cfuse_own_thread(void) { return cfuse_own_tid; }
void cfuse_reattribute_request(uint32_t opcode) {
    if (opcode >= CFUSE_OPCODES) return;
    __atomic_sub_fetch(&cfuse_counts[opcode], 1, __ATOMIC_RELAXED);
    cfuse_own_requests++;
}

static long long cfuse_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void cfuse_note_reply(const struct iovec *iov, int count) {
    if (count < 1 || iov[0].iov_len < 16 || cfuse_t_unique == 0) return;
    uint64_t unique;
    memcpy(&unique, (const char *)iov[0].iov_base + 8, sizeof unique);
    if (unique != cfuse_t_unique) return;
    uint64_t ns = (uint64_t)(cfuse_now_ns() - cfuse_t_start);
    uint64_t us = ns / 1000;
    unsigned b = 0;
    while (b < CFUSE_BUCKETS - 1 && us >= (1ull << b)) b++;
    __atomic_add_fetch(&cfuse_sum_ns[cfuse_t_opcode], ns, __ATOMIC_RELAXED);
    __atomic_add_fetch(&cfuse_buckets[cfuse_t_opcode][b], 1, __ATOMIC_RELAXED);
    cfuse_t_unique = 0;
}

void cfuse_request_stats(uint64_t *counts, uint64_t *sum_ns, uint64_t *buckets) {
    for (unsigned op = 0; op < CFUSE_OPCODES; op++) {
        counts[op] = __atomic_load_n(&cfuse_counts[op], __ATOMIC_RELAXED);
        sum_ns[op] = __atomic_load_n(&cfuse_sum_ns[op], __ATOMIC_RELAXED);
        for (unsigned b = 0; b < CFUSE_BUCKETS; b++)
            buckets[op * CFUSE_BUCKETS + b] = __atomic_load_n(&cfuse_buckets[op][b], __ATOMIC_RELAXED);
    }
}

static ssize_t cfuse_writev(int fd, struct iovec *iov, int count, void *userdata) {
    (void)userdata;
    cfuse_note_reply(iov, count);
    if (!__atomic_exchange_n(&cfuse_init_patched, 1, __ATOMIC_ACQ_REL)) {
        /* The first reply answers INIT: out header in iov[0], fuse_init_out in iov[1]. */
        if (count >= 2 && iov[1].iov_len >= sizeof(struct cfuse_init_out_head)) {
            struct cfuse_init_out_head *o = iov[1].iov_base;
            if (o->major == 7) {
                o->flags |= CFUSE_HANDLE_KILLPRIV_V2;
                /* MAP_SHARED keeps working on files opened with direct I/O (ksmfs opens
                 * files for writing that way while the mount is nearly full). */
                if (iov[1].iov_len >= CFUSE_FLAGS2_OFFSET + 4) {
                    o->flags |= CFUSE_INIT_EXT;
                    uint32_t *flags2 = (uint32_t *)((char *)iov[1].iov_base + CFUSE_FLAGS2_OFFSET);
                    *flags2 |= CFUSE_DIRECT_IO_ALLOW_MMAP2;
                    /* Passthrough needs a stack depth, and no writeback cache (the kernel
                     * turns it off silently then: the caller has not asked for it). */
                    if (cfuse_passthrough_wanted && iov[1].iov_len >= CFUSE_MAX_STACK_DEPTH_OFFSET + 4) {
                        *flags2 |= CFUSE_PASSTHROUGH2;
                        uint32_t depth = 1;
                        memcpy((char *)iov[1].iov_base + CFUSE_MAX_STACK_DEPTH_OFFSET, &depth, 4);
                        cfuse_passthrough_on = 1;
                    }
                }
            }
        }
    }
    /* An OPEN answered with a backing file: fuse_reply_open's fuse_open_out is iov[1]. */
    if (cfuse_t_backing_id > 0 && count >= 2 && iov[1].iov_len >= 16) {
        char *o = iov[1].iov_base;
        uint32_t open_flags;
        memcpy(&open_flags, o + 8, 4);
        open_flags |= CFUSE_FOPEN_PASSTHROUGH;
        memcpy(o + 8, &open_flags, 4);
        memcpy(o + 12, &cfuse_t_backing_id, 4);
        cfuse_t_backing_id = 0;
    }
    return writev(fd, iov, count);
}

static ssize_t cfuse_read(int fd, void *buf, size_t len, void *userdata) {
    (void)userdata;
    ssize_t n = read(fd, buf, len);
    if (n >= 16) {
        uint32_t opcode;
        memcpy(&opcode, (const char *)buf + 4, sizeof opcode);
        if (opcode == CFUSE_OPCODE_INIT && n >= 40 + 20) {
            /* fuse_init_in after the 40-byte header: flags at 12, flags2 at 16. */
            uint32_t flags, flags2;
            memcpy(&flags, (const char *)buf + 40 + 12, 4);
            memcpy(&flags2, (const char *)buf + 40 + 16, 4);
            int offers = (flags & CFUSE_INIT_EXT) && (flags2 & CFUSE_PASSTHROUGH2);
            cfuse_kernel_flags2_seen = 1 + offers;
        }
        if (opcode >= CFUSE_OPCODES) opcode = 0;  /* CUSE_INIT and unknown ones: "other" */
        uint32_t pid = 0;
        if (n >= 40) memcpy(&pid, (const char *)buf + 32, 4);   /* fuse_in_header.pid */
        if (pid != 0 && (int)pid == cfuse_own_tid) {
            cfuse_own_requests++;
            return n;
        }
        __atomic_add_fetch(&cfuse_counts[opcode], 1, __ATOMIC_RELAXED);
        /* FORGET (2) and BATCH_FORGET (42) get no reply. */
        if (opcode != 2 && opcode != 42) {
            memcpy(&cfuse_t_unique, (const char *)buf + 8, sizeof cfuse_t_unique);
            cfuse_t_opcode = opcode;
            cfuse_t_start = cfuse_now_ns();
        }
    }
    return n;
}

int cfuse_enable_killpriv_v2(struct fuse_session *se) {
    struct fuse_custom_io io = { .writev = cfuse_writev, .read = cfuse_read };
    return fuse_session_custom_io(se, &io, fuse_session_fd(se));
}

int cfuse_kernel_offers_passthrough(void) { return cfuse_kernel_flags2_seen - 1; }
void cfuse_want_passthrough(int on) { cfuse_passthrough_wanted = on ? 1 : 0; }
int cfuse_passthrough_enabled(void) { return cfuse_passthrough_on; }

int cfuse_reply_open_backing(fuse_req_t req, const struct fuse_file_info *fi, int32_t backing_id) {
    cfuse_t_backing_id = backing_id;
    int r = fuse_reply_open(req, fi);
    cfuse_t_backing_id = 0;
    return r;
}

#include <sys/ioctl.h>
#include <errno.h>
#include <linux/capability.h>
#include <sys/syscall.h>
int cfuse_has_cap_sys_admin(void) {
    struct __user_cap_header_struct hdr = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
    struct __user_cap_data_struct data[2];
    memset(data, 0, sizeof data);
    if (syscall(SYS_capget, &hdr, data) != 0) return -1;
    return (data[0].effective >> CAP_SYS_ADMIN) & 1;
}

#include <fcntl.h>
int cfuse_gettid(void) { return (int)syscall(SYS_gettid); }

long cfuse_cached_pages(int mount_fd, uint64_t nodeid, uint32_t generation) {
    /* A FUSE file handle (fuse_encode_fh): type 0x81, node id high and low words, generation. */
    struct { unsigned int handle_bytes; int handle_type; uint32_t f[3]; } h = {
        12, 0x81, { (uint32_t)(nodeid >> 32), (uint32_t)nodeid, generation } };
    int fd = (int)syscall(SYS_open_by_handle_at, mount_fd, &h, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) return -errno;
    struct { uint64_t off, len; } range = { 0, 0 };
    uint64_t st[5] = { 0 };
    long r = syscall(451 /* cachestat */, fd, &range, st, 0);
    int e = errno;
    close(fd);
    return r == 0 ? (long)st[0] : -e;
}

struct cfuse_backing_map { int32_t fd; uint32_t flags; uint64_t padding; };
#define CFUSE_DEV_IOC_BACKING_OPEN 0x4010e501u
#define CFUSE_DEV_IOC_BACKING_CLOSE 0x4004e502u

int cfuse_backing_open(struct fuse_session *se, int fd) {
    struct cfuse_backing_map map = { .fd = fd, .flags = 0, .padding = 0 };
    int id = ioctl(fuse_session_fd(se), CFUSE_DEV_IOC_BACKING_OPEN, &map);
    return id < 0 ? -errno : id;
}

int cfuse_backing_close(struct fuse_session *se, int32_t id) {
    return ioctl(fuse_session_fd(se), CFUSE_DEV_IOC_BACKING_CLOSE, &id) < 0 ? -errno : 0;
}

struct fuse_args *cfuse_args_new(int argc, char **argv) {
    struct fuse_args *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->argc = argc;
    a->argv = argv;
    a->allocated = 0;
    return a;
}

void cfuse_args_free(struct fuse_args *args) {
    if (!args) return;
    fuse_opt_free_args(args);
    free(args);
}

int cfuse_session_loop_mt(struct fuse_session *se, unsigned max_threads, int clone_fd) {
    struct fuse_loop_config *cfg = fuse_loop_cfg_create();
    if (!cfg) return -1;
    fuse_loop_cfg_set_clone_fd(cfg, clone_fd ? 1 : 0);
    fuse_loop_cfg_set_max_threads(cfg, max_threads);
    fuse_loop_cfg_set_idle_threads(cfg, max_threads / 2 + 1);
    int r = fuse_session_loop_mt(se, cfg);
    fuse_loop_cfg_destroy(cfg);
    return r;
}

void cfuse_fi_set_direct_io(struct fuse_file_info *fi, int on) { fi->direct_io = on ? 1 : 0; }
void cfuse_fi_set_keep_cache(struct fuse_file_info *fi, int on) { fi->keep_cache = on ? 1 : 0; }
void cfuse_fi_set_nonseekable(struct fuse_file_info *fi, int on) { fi->nonseekable = on ? 1 : 0; }
void cfuse_fi_set_cache_readdir(struct fuse_file_info *fi, int on) { fi->cache_readdir = on ? 1 : 0; }
int cfuse_fi_writepage(const struct fuse_file_info *fi) { return fi->writepage; }

void cfuse_conn_configure(struct fuse_conn_info *conn, unsigned want, unsigned max_write,
                          unsigned max_read, unsigned max_readahead, unsigned time_gran) {
    conn->want |= (want & conn->capable);
    /* With the writeback cache the kernel's own size and mtime win: auto_inval_data would only
     * add a GETATTR before reads. */
    if (want & FUSE_CAP_WRITEBACK_CACHE) conn->want &= ~FUSE_CAP_AUTO_INVAL_DATA;
    if (max_write) conn->max_write = max_write;
    if (max_read) conn->max_read = max_read;
    if (max_readahead) conn->max_readahead = max_readahead;
    conn->time_gran = time_gran;
}
unsigned cfuse_conn_capable(const struct fuse_conn_info *conn) { return conn->capable; }
unsigned cfuse_conn_want(const struct fuse_conn_info *conn) { return conn->want; }

uid_t cfuse_req_uid(fuse_req_t req) { return fuse_req_ctx(req)->uid; }
gid_t cfuse_req_gid(fuse_req_t req) { return fuse_req_ctx(req)->gid; }
pid_t cfuse_req_pid(fuse_req_t req) { return fuse_req_ctx(req)->pid; }
mode_t cfuse_req_umask(fuse_req_t req) { return fuse_req_ctx(req)->umask; }

int cfuse_notify_inval_inode(struct fuse_session *se, uint64_t ino, int64_t off, int64_t len) {
    return fuse_lowlevel_notify_inval_inode(se, (fuse_ino_t)ino, (off_t)off, (off_t)len);
}

/* ---- Stopping: SIGTERM/SIGINT/SIGHUP while files are open ----
 * The handler is plain C (async-signal-safe): it reads the count of open handles, and either
 * refuses the first signal while busy (as umount says EBUSY) or ends the session's loop. What
 * happened is posted to a semaphore that a normal thread waits on and logs. */
#include <errno.h>
#include <signal.h>
#include <semaphore.h>
#include <time.h>

static _Atomic long cfuse_open_handles;
static struct fuse_session *cfuse_stop_session;
static sem_t cfuse_stop_sem;
static _Atomic int cfuse_stop_last_event;      /* CFUSE_STOP_* of the last signal */
static _Atomic int cfuse_stop_last_signal;
static _Atomic long cfuse_stop_busy_at_signal;
static _Atomic long long cfuse_stop_refused_at_ns;
static long long cfuse_stop_grace_ns;

long cfuse_open_handle_count(void) { return cfuse_open_handles; }

void cfuse_handle_opened(void) { cfuse_open_handles++; }
void cfuse_handle_closed(void) {
    /* A refused stop goes ahead once the last handle is closed. */
    if (--cfuse_open_handles == 0 && cfuse_stop_refused_at_ns != 0 && cfuse_stop_session
        && !fuse_session_exited(cfuse_stop_session)) {
        cfuse_stop_last_event = CFUSE_STOP_IDLE;
        fuse_session_exit(cfuse_stop_session);
        sem_post(&cfuse_stop_sem);
    }
}

static void cfuse_stop_handler(int sig) {
    int saved = errno;
    long busy = cfuse_open_handles;
    long long now = cfuse_now_ns(), refused = cfuse_stop_refused_at_ns;
    cfuse_stop_last_signal = sig;
    cfuse_stop_busy_at_signal = busy;
    if (busy > 0 && (refused == 0 || now - refused > cfuse_stop_grace_ns)) {
        cfuse_stop_refused_at_ns = now;
        cfuse_stop_last_event = CFUSE_STOP_REFUSED;
    } else {
        cfuse_stop_last_event = busy > 0 ? CFUSE_STOP_FORCED : CFUSE_STOP_CLEAN;
        if (cfuse_stop_session) fuse_session_exit(cfuse_stop_session);
    }
    sem_post(&cfuse_stop_sem);
    errno = saved;
}

int cfuse_install_stop_handlers(struct fuse_session *se, int grace_ms) {
    struct sigaction sa;
    cfuse_stop_session = se;
    cfuse_stop_grace_ns = (long long)grace_ms * 1000000LL;
    sem_init(&cfuse_stop_sem, 0, 0);
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = cfuse_stop_handler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;   /* no SA_RESTART: the loop's sem_wait must wake up */
    if (sigaction(SIGINT, &sa, NULL) || sigaction(SIGTERM, &sa, NULL) || sigaction(SIGHUP, &sa, NULL)) return -1;
    sa.sa_handler = SIG_IGN;
    return sigaction(SIGPIPE, &sa, NULL);
}

void cfuse_remove_stop_handlers(void) {
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGHUP, SIG_DFL);
    cfuse_stop_session = NULL;
}

static _Atomic int cfuse_stop_quit;

/* The event is taken (exchanged with 0), so a QUIT posted right after a signal's event can
 * neither overwrite it nor be reported in its place; 0 means nothing new on this wake-up. */
int cfuse_wait_stop_event(int *signal_out, long *busy_out) {
    while (sem_wait(&cfuse_stop_sem) != 0) {}
    *signal_out = cfuse_stop_last_signal;
    *busy_out = cfuse_stop_busy_at_signal;
    int event = __atomic_exchange_n((int *)&cfuse_stop_last_event, 0, __ATOMIC_ACQ_REL);
    if (event == 0 && cfuse_stop_quit) return CFUSE_STOP_QUIT;
    return event;
}

void cfuse_post_stop_event(int event) {
    if (event == CFUSE_STOP_QUIT) cfuse_stop_quit = 1; else cfuse_stop_last_event = event;
    sem_post(&cfuse_stop_sem);
}

/* ---- Crash record: a fatal signal writes one line to a file kept open for it ---- */
static int cfuse_crash_fd = -1;
static struct sigaction cfuse_crash_previous[65];

static void cfuse_crash_handler(int sig, siginfo_t *info, void *ctx) {
    if (cfuse_crash_fd >= 0) {
        char line[64] = "ended=signal ";
        int n = 13;
        char digits[12]; int d = 0; int s = sig;
        do { digits[d++] = (char)('0' + s % 10); s /= 10; } while (s && d < 11);
        while (d) line[n++] = digits[--d];
        line[n++] = '\n';
        ssize_t w = write(cfuse_crash_fd, line, (size_t)n);
        (void)w;
    }
    struct sigaction *prev = &cfuse_crash_previous[sig];
    if (prev->sa_flags & SA_SIGINFO && prev->sa_sigaction) { prev->sa_sigaction(sig, info, ctx); return; }
    if (prev->sa_handler != SIG_DFL && prev->sa_handler != SIG_IGN && prev->sa_handler) { prev->sa_handler(sig); return; }
    signal(sig, SIG_DFL);
    raise(sig);
}

int cfuse_record_crashes(int fd) {
    static const int sigs[] = { SIGSEGV, SIGBUS, SIGILL, SIGTRAP, SIGFPE, SIGABRT };
    cfuse_crash_fd = fd;
    for (unsigned i = 0; i < sizeof sigs / sizeof sigs[0]; i++) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = cfuse_crash_handler;
        sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
        sigemptyset(&sa.sa_mask);
        if (sigaction(sigs[i], &sa, &cfuse_crash_previous[sigs[i]])) return -1;
    }
    return 0;
}

#include <sys/klog.h>
int cfuse_klogctl(int type, char *buf, int len) { return klogctl(type, buf, len); }
