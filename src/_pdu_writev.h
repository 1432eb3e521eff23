/* Gather writes for the compiled codec's data-phase pump: POSIX's writev, or on
 * Windows (which has no <sys/uio.h>) the same contract over _write, one buffer
 * after the other. dn_writev returns the bytes written, or -1 with errno set. */
#ifndef DICOMNET_PDU_WRITEV_H
#define DICOMNET_PDU_WRITEV_H

#include <stddef.h>

#ifdef _WIN32
#include <errno.h>
#include <io.h>
struct iovec {
    void *iov_base;
    size_t iov_len;
};
static long long dn_writev(int fd, const struct iovec *iov, int count) {
    long long total = 0;
    int i;
    for (i = 0; i < count; i++) {
        const char *base = (const char *)iov[i].iov_base;
        size_t left = iov[i].iov_len;
        while (left > 0) {
            unsigned int chunk = left > 0x40000000u ? 0x40000000u : (unsigned int)left;
            int n = _write(fd, base, chunk);
            if (n < 0) {
                return total > 0 ? total : -1;
            }
            total += n;
            base += n;
            left -= (size_t)n;
            if ((unsigned int)n < chunk) {
                return total; /* a short write: the caller writes the rest */
            }
        }
    }
    return total;
}
#else
#include <sys/uio.h>
static long long dn_writev(int fd, const struct iovec *iov, int count) {
    return (long long)writev(fd, iov, count);
}
#endif

#endif
