// The minimal in-memory filesystem `ksmfs-bench io` measures next to ksmfs: one global mutex,
// nodes in a hash table keyed by (parent, name), each file one contiguous malloc'd buffer,
// reads answered straight from it. It asks the kernel for what ksmfs asks (writeback cache,
// keep_cache, 1 MiB writes, the multithreaded loop), so the two differ only in the daemon.
#define FUSE_USE_VERSION 314
#define _GNU_SOURCE
#include "CReferenceFS.h"
#include <fuse3/fuse_lowlevel.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

struct node {
    fuse_ino_t ino, parent;
    char *name;
    mode_t mode;
    unsigned nlink;
    uint64_t lookups;
    char *data;
    size_t size, cap;
    struct timespec mtime;
    struct node *next_in_bucket;
};

#define BUCKETS (1u << 16)
static struct node *buckets[BUCKETS];
static struct node **by_ino;
static size_t ino_cap, next_ino = 2;
static struct node root = { .ino = 1, .mode = S_IFDIR | 0755, .nlink = 2 };
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static unsigned bucket(fuse_ino_t parent, const char *name) {
    unsigned h = 2166136261u ^ (unsigned)parent;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++) h = (h ^ *p) * 16777619u;
    return h & (BUCKETS - 1);
}

static struct node *find(fuse_ino_t parent, const char *name) {
    for (struct node *n = buckets[bucket(parent, name)]; n; n = n->next_in_bucket)
        if (n->parent == parent && strcmp(n->name, name) == 0) return n;
    return NULL;
}

static struct node *node_of(fuse_ino_t ino) {
    if (ino == 1) return &root;
    return ino < ino_cap ? by_ino[ino] : NULL;
}

static void unhash(struct node *n) {
    struct node **p = &buckets[bucket(n->parent, n->name)];
    while (*p != n) p = &(*p)->next_in_bucket;
    *p = n->next_in_bucket;
}

static void drop_if_unused(struct node *n) {
    if (n == &root || n->nlink > 0 || n->lookups > 0) return;
    by_ino[n->ino] = NULL;
    free(n->data);
    free(n->name);
    free(n);
}

static void fill_stat(const struct node *n, struct stat *st) {
    memset(st, 0, sizeof *st);
    st->st_ino = n->ino;
    st->st_mode = n->mode;
    st->st_nlink = n->nlink;
    st->st_size = (off_t)n->size;
    st->st_blocks = (blkcnt_t)((n->size + 511) / 512);
    st->st_blksize = 4096;
    st->st_mtim = st->st_ctim = st->st_atim = n->mtime;
}

/// Replies with `n`'s entry (a create reply when `fi` is given) and counts the lookup.
static void reply_entry(fuse_req_t req, struct node *n, struct fuse_file_info *fi) {
    struct fuse_entry_param e;
    memset(&e, 0, sizeof e);
    e.ino = n->ino;
    e.attr_timeout = 1;
    e.entry_timeout = 1;
    fill_stat(n, &e.attr);
    n->lookups++;
    if (fi) fuse_reply_create(req, &e, fi); else fuse_reply_entry(req, &e);
}

static struct node *add(fuse_ino_t parent, const char *name, mode_t mode) {
    struct node *n = calloc(1, sizeof *n);
    if (!n) return NULL;
    if (next_ino >= ino_cap) {
        size_t cap = ino_cap ? ino_cap * 2 : 1024;
        struct node **t = realloc(by_ino, cap * sizeof *t);
        if (!t) { free(n); return NULL; }
        memset(t + ino_cap, 0, (cap - ino_cap) * sizeof *t);
        by_ino = t;
        ino_cap = cap;
    }
    n->ino = next_ino++;
    n->parent = parent;
    n->name = strdup(name);
    n->mode = mode;
    n->nlink = S_ISDIR(mode) ? 2 : 1;
    clock_gettime(CLOCK_REALTIME, &n->mtime);
    by_ino[n->ino] = n;
    unsigned b = bucket(parent, name);
    n->next_in_bucket = buckets[b];
    buckets[b] = n;
    return n;
}

static int reserve(struct node *n, size_t end) {
    if (end <= n->cap) return 0;
    size_t cap = n->cap ? n->cap : 4096;
    while (cap < end) cap *= 2;
    char *d = realloc(n->data, cap);
    if (!d) return ENOSPC;
    n->data = d;
    n->cap = cap;
    return 0;
}

static void op_init(void *ud, struct fuse_conn_info *conn) {
    (void)ud;
    conn->want |= conn->capable & FUSE_CAP_WRITEBACK_CACHE;
    conn->max_write = 1 << 20;
    conn->time_gran = 1;
}

static void op_lookup(fuse_req_t req, fuse_ino_t parent, const char *name) {
    pthread_mutex_lock(&mu);
    struct node *n = find(parent, name);
    if (n) reply_entry(req, n, NULL); else fuse_reply_err(req, ENOENT);
    pthread_mutex_unlock(&mu);
}

static void op_forget(fuse_req_t req, fuse_ino_t ino, uint64_t nlookup) {
    pthread_mutex_lock(&mu);
    struct node *n = node_of(ino);
    if (n && n != &root) {
        n->lookups = n->lookups > nlookup ? n->lookups - nlookup : 0;
        drop_if_unused(n);
    }
    pthread_mutex_unlock(&mu);
    fuse_reply_none(req);
}

static void op_getattr(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    (void)fi;
    struct stat st;
    pthread_mutex_lock(&mu);
    struct node *n = node_of(ino);
    if (n) fill_stat(n, &st);
    pthread_mutex_unlock(&mu);
    if (n) fuse_reply_attr(req, &st, 1); else fuse_reply_err(req, ENOENT);
}

static void op_setattr(fuse_req_t req, fuse_ino_t ino, struct stat *attr, int to_set, struct fuse_file_info *fi) {
    (void)fi;
    struct stat st;
    int err = 0;
    pthread_mutex_lock(&mu);
    struct node *n = node_of(ino);
    if (!n) err = ENOENT;
    else {
        if (to_set & FUSE_SET_ATTR_MODE) n->mode = (n->mode & S_IFMT) | (attr->st_mode & 07777);
        if (to_set & FUSE_SET_ATTR_SIZE) {
            size_t size = (size_t)attr->st_size;
            if (size > n->size && (err = reserve(n, size)) == 0) memset(n->data + n->size, 0, size - n->size);
            if (!err) n->size = size;
        }
        if (to_set & FUSE_SET_ATTR_MTIME) n->mtime = attr->st_mtim;
        fill_stat(n, &st);
    }
    pthread_mutex_unlock(&mu);
    if (err) fuse_reply_err(req, err); else fuse_reply_attr(req, &st, 1);
}

static void op_mkdir(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode) {
    pthread_mutex_lock(&mu);
    struct node *n = find(parent, name) ? NULL : add(parent, name, S_IFDIR | (mode & 07777));
    if (n) reply_entry(req, n, NULL); else fuse_reply_err(req, EEXIST);
    pthread_mutex_unlock(&mu);
}

static void op_create(fuse_req_t req, fuse_ino_t parent, const char *name, mode_t mode, struct fuse_file_info *fi) {
    pthread_mutex_lock(&mu);
    struct node *n = find(parent, name);
    if (!n) n = add(parent, name, S_IFREG | (mode & 07777));
    if (!n) { pthread_mutex_unlock(&mu); fuse_reply_err(req, ENOMEM); return; }
    if (fi->flags & O_TRUNC) n->size = 0;
    fi->keep_cache = 1;
    reply_entry(req, n, fi);
    pthread_mutex_unlock(&mu);
}

static void op_open(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) {
    pthread_mutex_lock(&mu);
    struct node *n = node_of(ino);
    if (n && (fi->flags & O_TRUNC)) n->size = 0;
    pthread_mutex_unlock(&mu);
    fi->keep_cache = 1;
    if (n) fuse_reply_open(req, fi); else fuse_reply_err(req, ENOENT);
}

static void remove_name(fuse_req_t req, fuse_ino_t parent, const char *name, int dir) {
    int err = 0;
    pthread_mutex_lock(&mu);
    struct node *n = find(parent, name);
    if (!n) err = ENOENT;
    else if (dir != !!S_ISDIR(n->mode)) err = dir ? ENOTDIR : EISDIR;
    else {
        unhash(n);
        n->nlink = 0;
        drop_if_unused(n);
    }
    pthread_mutex_unlock(&mu);
    fuse_reply_err(req, err);
}

static void op_unlink(fuse_req_t req, fuse_ino_t parent, const char *name) { remove_name(req, parent, name, 0); }
static void op_rmdir(fuse_req_t req, fuse_ino_t parent, const char *name) { remove_name(req, parent, name, 1); }

static void op_read(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
    (void)fi;
    pthread_mutex_lock(&mu);
    struct node *n = node_of(ino);
    if (!n) { pthread_mutex_unlock(&mu); fuse_reply_err(req, ENOENT); return; }
    size_t o = (size_t)off;
    if (o >= n->size) size = 0;
    else if (size > n->size - o) size = n->size - o;
    fuse_reply_buf(req, size ? n->data + o : NULL, size);
    pthread_mutex_unlock(&mu);
}

static void op_write(fuse_req_t req, fuse_ino_t ino, const char *buf, size_t size, off_t off, struct fuse_file_info *fi) {
    (void)fi;
    int err = 0;
    pthread_mutex_lock(&mu);
    struct node *n = node_of(ino);
    size_t o = (size_t)off;
    if (!n) err = ENOENT;
    else if ((err = reserve(n, o + size)) == 0) {
        if (o > n->size) memset(n->data + n->size, 0, o - n->size);
        memcpy(n->data + o, buf, size);
        if (o + size > n->size) n->size = o + size;
    }
    pthread_mutex_unlock(&mu);
    if (err) fuse_reply_err(req, err); else fuse_reply_write(req, size);
}

static void op_ok(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) { (void)ino; (void)fi; fuse_reply_err(req, 0); }
static void op_fsync(fuse_req_t req, fuse_ino_t ino, int datasync, struct fuse_file_info *fi) { (void)datasync; op_ok(req, ino, fi); }

static void op_opendir(fuse_req_t req, fuse_ino_t ino, struct fuse_file_info *fi) { (void)ino; fuse_reply_open(req, fi); }

static void op_readdir(fuse_req_t req, fuse_ino_t ino, size_t size, off_t off, struct fuse_file_info *fi) {
    (void)ino; (void)size; (void)off; (void)fi;
    fuse_reply_buf(req, NULL, 0);
}

int reffs_run(const char *mountpoint) {
    static const struct fuse_lowlevel_ops ops = {
        .init = op_init, .lookup = op_lookup, .forget = op_forget, .getattr = op_getattr,
        .setattr = op_setattr, .mkdir = op_mkdir, .create = op_create, .open = op_open,
        .unlink = op_unlink, .rmdir = op_rmdir, .read = op_read, .write = op_write,
        .flush = op_ok, .release = op_ok, .fsync = op_fsync, .opendir = op_opendir,
        .releasedir = op_ok, .readdir = op_readdir,
    };
    char *argv[] = { strdup("ksmfs-bench-reference"), strdup("-o"), strdup("fsname=ksmfs-reference,default_permissions"), NULL };
    struct fuse_args args = FUSE_ARGS_INIT(3, argv);
    clock_gettime(CLOCK_REALTIME, &root.mtime);
    struct fuse_session *se = fuse_session_new(&args, &ops, sizeof ops, NULL);
    if (!se) return 1;
    if (fuse_set_signal_handlers(se) != 0 || fuse_session_mount(se, mountpoint) != 0) return 1;
    struct fuse_loop_config *cfg = fuse_loop_cfg_create();
    fuse_loop_cfg_set_max_threads(cfg, 16);
    int r = fuse_session_loop_mt(se, cfg);
    fuse_loop_cfg_destroy(cfg);
    fuse_session_unmount(se);
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    return r;
}
