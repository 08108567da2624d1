/* Password hashes in Werkzeug's formats, so a Flask application's user table
 * moves over unchanged (and back):
 *
 *   scrypt:N:r:p$SALT$HEX          (Werkzeug >= 3.0's default; 64-byte key)
 *   pbkdf2:HASH:ITERATIONS$SALT$HEX (HMAC-HASH, key as long as the digest)
 *
 * SALT is the text itself (its UTF-8 bytes are the salt), HEX the key in
 * lowercase hex. Work factors come from the stored string, so they are
 * bounded before any work is done: a hostile hash must not make a login cost
 * gigabytes or minutes. */
#include "vial.h"
#include "runtime/codec.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEFAULT_METHOD "scrypt:32768:8:1"
#define SALT_LEN 16
#define SCRYPT_KEY_LEN 64
#define MAX_KEY_LEN 64
/* Werkzeug 3.0's default, used for a "pbkdf2" or "pbkdf2:HASH" method
 * without an iteration count (stored hashes always carry theirs). */
#define PBKDF2_DEFAULT_ITERATIONS 600000
#define PBKDF2_MAX_ITERATIONS 10000000L
#define SCRYPT_MAX_MEM (1024L * 1024 * 1024)

typedef struct method {
    int scrypt;           /* else pbkdf2 */
    uint64_t n, r, p;     /* scrypt */
    const EVP_MD *md;     /* pbkdf2 */
    long iterations;      /* pbkdf2 */
    char canon[64];       /* the method as written into a new hash */
} method;

/* Decimal digits only, no sign, no leading '+', bounded. */
static int parse_u64(const char *s, size_t n, uint64_t max, uint64_t *out)
{
    if (!n || n > 19)
        return -EINVAL;
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -EINVAL;
        v = v * 10 + (uint64_t)(s[i] - '0');
    }
    if (v > max)
        return -EINVAL;
    *out = v;
    return 0;
}

/* Splits m[0..len) at ':' into at most 4 fields. */
static int split_colons(const char *m, size_t len, const char *f[4], size_t fl[4])
{
    int k = 0;
    const char *p = m, *end = m + len;
    while (k < 4) {
        const char *c = memchr(p, ':', (size_t)(end - p));
        f[k] = p;
        fl[k] = (size_t)((c ? c : end) - p);
        k++;
        if (!c)
            return k;
        p = c + 1;
    }
    return -EINVAL;
}

static int parse_method(const char *m, size_t len, method *out)
{
    const char *f[4];
    size_t fl[4];
    int k = split_colons(m, len, f, fl);
    if (k < 0)
        return k;
    memset(out, 0, sizeof *out);
    if (fl[0] == 6 && !memcmp(f[0], "scrypt", 6)) {
        out->scrypt = 1;
        out->n = 32768, out->r = 8, out->p = 1;
        if (k != 1 && k != 4)
            return -EINVAL;
        if (k == 4 && (parse_u64(f[1], fl[1], 1u << 24, &out->n) || parse_u64(f[2], fl[2], 64, &out->r) ||
                       parse_u64(f[3], fl[3], 64, &out->p)))
            return -EINVAL;
        /* scrypt's own rules, and its memory (about 128 * N * r bytes,
         * Werkzeug allows 132 * N * r * p) within a bound. */
        if (out->n < 2 || (out->n & (out->n - 1)) || !out->r || !out->p ||
            132 * out->n * out->r * out->p > (uint64_t)SCRYPT_MAX_MEM)
            return -EINVAL;
        snprintf(out->canon, sizeof out->canon, "scrypt:%llu:%llu:%llu", (unsigned long long)out->n,
                 (unsigned long long)out->r, (unsigned long long)out->p);
        return 0;
    }
    if (fl[0] == 6 && !memcmp(f[0], "pbkdf2", 6)) {
        if (k > 3)
            return -EINVAL;
        char name[16] = "sha256";
        if (k >= 2) {
            if (!fl[1] || fl[1] >= sizeof name)
                return -EINVAL;
            memcpy(name, f[1], fl[1]);
            name[fl[1]] = 0;
        }
        /* The digests hashlib.pbkdf2_hmac is used with; others refused. */
        static const char *const ok[] = {"sha1", "sha224", "sha256", "sha384", "sha512"};
        int known = 0;
        for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++)
            known |= !strcmp(name, ok[i]);
        out->md = known ? EVP_get_digestbyname(name) : NULL;
        if (!out->md)
            return -ENOTSUP;
        uint64_t it = PBKDF2_DEFAULT_ITERATIONS;
        if (k == 3 && parse_u64(f[2], fl[2], PBKDF2_MAX_ITERATIONS, &it))
            return -EINVAL;
        if (!it)
            return -EINVAL;
        out->iterations = (long)it;
        snprintf(out->canon, sizeof out->canon, "pbkdf2:%s:%ld", name, out->iterations);
        return 0;
    }
    return -ENOTSUP;
}

/* key = the method's derivation of password with salt; returns its length. */
static int derive(const method *m, const char *password, const char *salt, size_t salt_len,
                  unsigned char key[MAX_KEY_LEN])
{
    if (m->scrypt) {
        if (!EVP_PBE_scrypt(password, strlen(password), (const unsigned char *)salt, salt_len, m->n, m->r,
                            m->p, 132 * m->n * m->r * m->p + 1024 * 1024, key, SCRYPT_KEY_LEN))
            return -ENOMEM;
        return SCRYPT_KEY_LEN;
    }
    int len = EVP_MD_get_size(m->md);
    if (len <= 0 || len > MAX_KEY_LEN)
        return -ENOTSUP;
    if (!PKCS5_PBKDF2_HMAC(password, (int)strlen(password), (const unsigned char *)salt, (int)salt_len,
                           (int)m->iterations, m->md, len, key))
        return -ENOMEM;
    return len;
}

/* Werkzeug's gen_salt: letters and digits, uniformly (rejection sampling). */
static int gen_salt(char out[SALT_LEN + 1])
{
    static const char chars[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    int n = 0;
    while (n < SALT_LEN) {
        unsigned char b[32];
        if (RAND_bytes(b, sizeof b) != 1)
            return -EIO;
        for (size_t i = 0; i < sizeof b && n < SALT_LEN; i++)
            if (b[i] < 248) /* 248 = 4 * 62: no bias */
                out[n++] = chars[b[i] % 62];
    }
    out[n] = 0;
    return 0;
}

int vial_password_hash_with(const char *password, const char *method_text, char *out, size_t cap)
{
    if (!password || !out)
        return -EINVAL;
    method m;
    const char *mt = method_text ? method_text : DEFAULT_METHOD;
    int r = parse_method(mt, strlen(mt), &m);
    if (r < 0)
        return r;
    char salt[SALT_LEN + 1];
    if ((r = gen_salt(salt)) < 0)
        return r;
    unsigned char key[MAX_KEY_LEN];
    int klen = derive(&m, password, salt, SALT_LEN, key);
    if (klen < 0)
        return klen;
    size_t need = strlen(m.canon) + 1 + SALT_LEN + 1 + 2 * (size_t)klen + 1;
    if (cap < need)
        return -ENOSPC;
    int n = snprintf(out, cap, "%s$%s$", m.canon, salt);
    vial_hex_encode(out + n, key, (size_t)klen);
    out[n + 2 * klen] = 0;
    OPENSSL_cleanse(key, sizeof key);
    return 0;
}

int vial_password_hash(const char *password, char *out, size_t cap)
{
    return vial_password_hash_with(password, NULL, out, cap);
}

int vial_password_verify(const char *hash, const char *password)
{
    if (!hash || !password)
        return -EINVAL;
    const char *d1 = strchr(hash, '$');
    const char *d2 = d1 ? strchr(d1 + 1, '$') : NULL;
    if (!d1 || !d2)
        return -EINVAL;
    method m;
    int r = parse_method(hash, (size_t)(d1 - hash), &m);
    if (r < 0)
        return r;
    const char *stored = d2 + 1;
    size_t slen = strlen(stored);
    unsigned char key[MAX_KEY_LEN];
    int klen = derive(&m, password, d1 + 1, (size_t)(d2 - d1 - 1), key);
    if (klen < 0)
        return klen;
    char hex[2 * MAX_KEY_LEN + 1];
    vial_hex_encode(hex, key, (size_t)klen);
    OPENSSL_cleanse(key, sizeof key);
    /* Werkzeug compares the hex texts (hmac.compare_digest): a stored hash
     * in uppercase hex does not match there either. Lengths are public. */
    return slen == 2 * (size_t)klen && CRYPTO_memcmp(hex, stored, slen) == 0;
}
