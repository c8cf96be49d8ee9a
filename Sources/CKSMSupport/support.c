/* CKSMSupport: XXH64 inlined from libxxhash's header, and a word-wise zero test. */
#define XXH_INLINE_ALL
#include <xxhash.h>
#include "CKSMSupport.h"
#include <sys/prctl.h>
#include <malloc.h>
#include <sys/sysinfo.h>

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
