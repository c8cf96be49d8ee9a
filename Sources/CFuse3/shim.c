/* CFuse3 shim: plain functions over libfuse 3.14 macros and bitfields (see CFuse3.h). */
#include "CFuse3.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/uio.h>

/* The head of the kernel's fuse_init_out (include/uapi/linux/fuse.h). */
struct cfuse_init_out_head { uint32_t major, minor, max_readahead, flags; };
#define CFUSE_HANDLE_KILLPRIV_V2 (1u << 28)
#define CFUSE_INIT_EXT (1u << 30)
/* flags2 (byte 32 of fuse_init_out): FUSE_DIRECT_IO_ALLOW_MMAP (1ULL << 36). */
#define CFUSE_FLAGS2_OFFSET 32
#define CFUSE_DIRECT_IO_ALLOW_MMAP2 (1u << 4)
static int cfuse_init_patched;

static ssize_t cfuse_writev(int fd, struct iovec *iov, int count, void *userdata) {
    (void)userdata;
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
                }
            }
        }
    }
    return writev(fd, iov, count);
}

static ssize_t cfuse_read(int fd, void *buf, size_t len, void *userdata) {
    (void)userdata;
    return read(fd, buf, len);
}

int cfuse_enable_killpriv_v2(struct fuse_session *se) {
    struct fuse_custom_io io = { .writev = cfuse_writev, .read = cfuse_read };
    return fuse_session_custom_io(se, &io, fuse_session_fd(se));
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
