/* CKSMSupport: the few primitives the KSM engine needs from C: XXH64 of a page (inlined
 * from libxxhash's header), whole-page compare and zero test, and 32-bit atomics on raw
 * memory so refcounts can live in one flat array. */
#ifndef CKSMSUPPORT_H
#define CKSMSUPPORT_H
#include <stdint.h>
#include <stddef.h>
#include <string.h>

uint64_t ksm_xxh64(const void *data, size_t len, uint64_t seed);

static inline int ksm_memcmp(const void *a, const void *b, size_t n) { return memcmp(a, b, n); }
int ksm_is_zero(const void *p, size_t n);
/* Any length, any alignment. */
int ksm_is_zero_range(const void *p, size_t n);
/* Names the calling thread (prctl PR_SET_NAME), for top and ps. */
void ksm_set_thread_name(const char *name);
/* Bytes of heap in use (mallinfo2), for allocation checks in benchmarks. */
size_t ksm_heap_in_use(void);
/* Returns free heap memory of every malloc arena to the OS (malloc_trim). */
void ksm_heap_trim(void);
/* A memfd of `bytes` (sparse, close-on-exec) named `name`, or -1 with errno set. */
int ksm_memfd(const char *name, size_t bytes);
/* Bytes a file has allocated (st_blocks * 512): for a memfd, its pages in memory or in swap. */
long long ksm_fd_allocated_bytes(int fd);
/* Shared memory this process maps now (RssShmem of /proc/self/status), or -1. */
long long ksm_rss_shmem_bytes(void);
/* setxattr(2) of `path` (glibc's header is not in Swift's Glibc module); 0 or an errno. */
int ksm_setxattr(const char *path, const char *name, const void *value, size_t size);
/* 1 when the system has swap (sysinfo's totalswap), or when that cannot be told; else 0. */
int ksm_swap_configured(void);

static inline uint32_t ksm_atomic_load32(const uint32_t *p) { return __atomic_load_n(p, __ATOMIC_ACQUIRE); }
static inline void ksm_atomic_store32(uint32_t *p, uint32_t v) { __atomic_store_n(p, v, __ATOMIC_RELEASE); }
/* Returns the new value. */
static inline uint32_t ksm_atomic_add32(uint32_t *p, uint32_t v) { return __atomic_add_fetch(p, v, __ATOMIC_ACQ_REL); }
static inline uint32_t ksm_atomic_sub32(uint32_t *p, uint32_t v) { return __atomic_sub_fetch(p, v, __ATOMIC_ACQ_REL); }
static inline int64_t ksm_atomic_load64(const int64_t *p) { return __atomic_load_n(p, __ATOMIC_RELAXED); }
static inline int64_t ksm_atomic_add64(int64_t *p, int64_t v) { return __atomic_add_fetch(p, v, __ATOMIC_RELAXED); }
static inline void ksm_atomic_store64(int64_t *p, int64_t v) { __atomic_store_n(p, v, __ATOMIC_RELAXED); }

#endif
