/* CKSMSupport: XXH64 inlined from libxxhash's header, and a word-wise zero test. */
#define _GNU_SOURCE
#define XXH_INLINE_ALL
#include <xxhash.h>
#include "CKSMSupport.h"
#include <sys/prctl.h>
#include <malloc.h>
#include <sys/sysinfo.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

uint64_t ksm_xxh64(const void *data, size_t len, uint64_t seed) {
    return XXH64(data, len, seed);
}

int ksm_is_zero(const void *p, size_t n) {
    const uint64_t *w = (const uint64_t *)p;
    size_t words = n / 8;
    for (size_t i = 0; i < words; i += 4) {
        if ((w[i] | w[i + 1] | w[i + 2] | w[i + 3]) != 0) return 0;
    }
    return 1;
}

int ksm_is_zero_range(const void *p, size_t n) {
    const unsigned char *b = (const unsigned char *)p;
    for (size_t i = 0; i < n; i++) if (b[i]) return 0;
    return 1;
}

void ksm_set_thread_name(const char *name) { prctl(PR_SET_NAME, name, 0, 0, 0); }

size_t ksm_heap_in_use(void) { return mallinfo2().uordblks; }

void ksm_heap_trim(void) { malloc_trim(0); }

int ksm_swap_configured(void) {
    struct sysinfo info;
    if (sysinfo(&info) != 0) return 1;
    return info.totalswap > 0;
}

int ksm_memfd(const char *name, size_t bytes) {
    int fd = memfd_create(name, MFD_CLOEXEC);
    if (fd < 0) return -1;
    if (ftruncate(fd, (off_t)bytes) != 0) {
        int e = errno;
        close(fd);
        errno = e;
        return -1;
    }
    return fd;
}

long long ksm_fd_allocated_bytes(int fd) {
    struct stat st;
    if (fstat(fd, &st) != 0) return 0;
    return (long long)st.st_blocks * 512;
}

long long ksm_rss_shmem_bytes(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long long kib = -1;
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "RssShmem:", 9) == 0) { kib = strtoll(line + 9, NULL, 10); break; }
    }
    fclose(f);
    return kib < 0 ? -1 : kib * 1024;
}

#include <sys/xattr.h>
#include <errno.h>
int ksm_setxattr(const char *path, const char *name, const void *value, size_t size) {
    return setxattr(path, name, value, size, 0) == 0 ? 0 : errno;
}
