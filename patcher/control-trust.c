/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Which control blocks ulp made: any user can map a memfd named "ulp-control" with any
 * content, so a block found in a process proves nothing by itself. When ulp creates a
 * block it stores a MAC under a per-boot key only root can read (docs/control-block.md)
 * of the block's identity: the memfd it lives in (device and inode, as /proc/PID/maps
 * shows them), its address, the process that created it (pid and start time) and a
 * random nonce. A forged block has no valid MAC; a copy of a real block's bytes in
 * another memfd does not match. A forked child maps the very same memfd at the same
 * address: its inherited copy checks out, as it should.
 *
 * The key: CONTROL_KEY_PATH (in /run, so a new one each boot), 16 random bytes, owned by
 * root with mode 0600 in a root-owned directory; created by the first root process that
 * signs a block (ulpd, or ulpctl --direct as root). ULP_CONTROL_KEY names another file
 * (tests), which must then belong to the caller; a caller's own key convinces only that
 * caller.
 */
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "common/macro.h"
#include "patcher/control.h"
#include "patcher/siphash.h"

#define CONTROL_KEY_PATH "/run/ulp/control.key"
#define CONTROL_KEY_ENV "ULP_CONTROL_KEY"
#define CONTROL_KEY_SIZE 16

static const char *key_path(bool *ret_default) {
        const char *p = secure_getenv(CONTROL_KEY_ENV);
        *ret_default = !p || !*p;
        return *ret_default ? CONTROL_KEY_PATH : p;
}

/* The key file, if it is one we may trust: a regular file of the right size that only its
 * owner can read, and that owner root (the default path) or ourselves. */
static int read_key(const char *path, bool is_default, uint8_t key[CONTROL_KEY_SIZE]) {
        _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        struct stat st;
        ssize_t n;

        if (fd < 0)
                return negative_errno();
        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (!S_ISREG(st.st_mode) || st.st_size != CONTROL_KEY_SIZE || (st.st_mode & 077) ||
            st.st_uid != (is_default ? 0 : geteuid()))
                return -EPERM;
        n = read(fd, key, CONTROL_KEY_SIZE);
        if (n < 0)
                return negative_errno();
        return n == CONTROL_KEY_SIZE ? 0 : -EIO;
}

/* Creates the key once: written to a temporary file, then linked under its name, so that
 * two processes creating it at once agree on one key. */
static int create_key(const char *path, uint8_t key[CONTROL_KEY_SIZE]) {
        char dir[PATH_MAX], tmp[PATH_MAX + 32];
        _cleanup_close_ int fd = -1;
        int r;

        snprintf(dir, sizeof(dir), "%s", path);
        snprintf(tmp, sizeof(tmp), "%s/.control.key.XXXXXX", dirname(dir));
        if (mkdir(dir, 0755) < 0 && errno != EEXIST)
                return negative_errno();
        fd = mkstemp(tmp);
        if (fd < 0)
                return negative_errno();
        r = fchmod(fd, 0600) < 0 ? negative_errno() : 0;
        if (r >= 0 && getrandom(key, CONTROL_KEY_SIZE, 0) != CONTROL_KEY_SIZE)
                r = -EIO;
        if (r >= 0 && write(fd, key, CONTROL_KEY_SIZE) != CONTROL_KEY_SIZE)
                r = -EIO;
        if (r >= 0 && link(tmp, path) < 0)
                r = negative_errno();
        (void)unlink(tmp);
        return r;
}

/* The key, read once per process; created when create is set and it does not exist. */
static int control_key_locked(bool create, uint8_t key[CONTROL_KEY_SIZE]) {
        /* A process-wide cache of a process-wide secret: the key does not change while
         * the machine is up. */
        static uint8_t cached[CONTROL_KEY_SIZE];
        static bool have;
        bool is_default;
        const char *path = key_path(&is_default);
        int r;

        if (have) {
                memcpy(key, cached, CONTROL_KEY_SIZE);
                return 0;
        }
        r = read_key(path, is_default, key);
        if (r == -ENOENT && create && (!is_default || geteuid() == 0)) {
                r = create_key(path, key);
                if (r == -EEXIST)
                        r = read_key(path, is_default, key);
        }
        if (r < 0)
                return r;
        memcpy(cached, key, CONTROL_KEY_SIZE);
        have = true;
        return 0;
}

/* Several threads sign and check blocks at once (ulpd's drivers): the cache is filled
 * and read under a lock, so that none sees it marked filled before its bytes. */
static int control_key(bool create, uint8_t key[CONTROL_KEY_SIZE]) {
        static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
        int r;

        pthread_mutex_lock(&lock);
        r = control_key_locked(create, key);
        pthread_mutex_unlock(&lock);
        return r;
}

typedef struct ControlIdentity {
        char domain[16];
        int32_t creator_pid;
        uint32_t pad;
        uint64_t creator_start;
        uint64_t self;
        uint64_t dev;
        uint64_t inode;
        uint8_t nonce[16];
} ControlIdentity;

static void identity_mac(const uint8_t key[CONTROL_KEY_SIZE], const ControlHeader *h, uint64_t dev, uint64_t inode,
                         uint8_t out[16]) {
        ControlIdentity id = { .domain = "ulp-control-v3", .creator_pid = h->owner_pid,
                               .creator_start = h->owner_start, .self = h->self, .dev = dev, .inode = inode };

        memcpy(id.nonce, h->nonce, sizeof(id.nonce));
        siphash24_128(key, &id, sizeof(id), out);
}

int control_sign(Control *c, pid_t pid, uint64_t dev, uint64_t inode) {
        ControlHeader *h = &c->img->hdr;
        uint8_t key[CONTROL_KEY_SIZE];
        int r = control_key(true, key);

        memset(h->nonce, 0, sizeof(h->nonce));
        memset(h->mac, 0, sizeof(h->mac));
        h->owner_pid = pid;
        h->owner_start = control_proc_start_time(pid);
        if (r < 0)
                return r == -EPERM || r == -ENOENT ? -EACCES : r;
        if (h->owner_start == 0 || inode == 0 || getrandom(h->nonce, sizeof(h->nonce), 0) != sizeof(h->nonce))
                return -EIO;
        identity_mac(key, h, dev, inode, h->mac);
        return 0;
}

bool control_verify(const ControlHeader *h, uint64_t dev, uint64_t inode) {
        static const uint8_t zero[16];
        uint8_t key[CONTROL_KEY_SIZE], mac[16], diff = 0;

        if (memcmp(h->mac, zero, sizeof(zero)) == 0 || inode == 0 || control_key(false, key) < 0)
                return false;
        identity_mac(key, h, dev, inode, mac);
        for (size_t i = 0; i < sizeof(mac); i++)
                diff |= mac[i] ^ h->mac[i];
        return diff == 0;
}
