/* SHA-256 for the compiled codec's data-phase pump: OpenSSL's EVP when the
 * build found its headers (DICOMNET_WITH_OPENSSL), else stubs that report
 * "no digest" so the storage computes it after the fact. */
#ifndef DICOMNET_PDU_DIGEST_H
#define DICOMNET_PDU_DIGEST_H

#include <stddef.h>

#ifdef DICOMNET_WITH_OPENSSL
#include <openssl/evp.h>
#define DN_HAVE_SHA256 1
typedef EVP_MD_CTX dn_sha256;
static dn_sha256 *dn_sha256_new(void) { return EVP_MD_CTX_new(); }
static void dn_sha256_free(dn_sha256 *ctx) { EVP_MD_CTX_free(ctx); }
static int dn_sha256_init(dn_sha256 *ctx) { return EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1; }
static int dn_sha256_update(dn_sha256 *ctx, const void *data, size_t size) {
    return EVP_DigestUpdate(ctx, data, size) == 1;
}
static int dn_sha256_final(dn_sha256 *ctx, unsigned char *out) {
    unsigned int size = 0;
    return EVP_DigestFinal_ex(ctx, out, &size) == 1 && size == 32;
}
#else
#define DN_HAVE_SHA256 0
typedef struct dn_sha256 dn_sha256;
static dn_sha256 *dn_sha256_new(void) { return NULL; }
static void dn_sha256_free(dn_sha256 *ctx) { (void)ctx; }
static int dn_sha256_init(dn_sha256 *ctx) { (void)ctx; return 0; }
static int dn_sha256_update(dn_sha256 *ctx, const void *data, size_t size) {
    (void)ctx; (void)data; (void)size; return 0;
}
static int dn_sha256_final(dn_sha256 *ctx, unsigned char *out) { (void)ctx; (void)out; return 0; }
#endif

#endif
