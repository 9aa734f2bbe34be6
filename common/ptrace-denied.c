/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* The ptrace refusal's one wording (common/ptrace-denied.h). */

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "common/ptrace-denied.h"

#define CAP_SYS_PTRACE_BIT 19

/* Reads "Key:" of /proc/PID/status: up to 4 numbers (base 10, or 16 for masks); how many. */
static int status_field(pid_t pid, const char *key, int base, unsigned long long v[4]) {
        char path[64], line[256];
        size_t klen = strlen(key);
        FILE *f;
        int n = -1;

        snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
        f = fopen(path, "re");
        if (!f)
                return -1;
        while (fgets(line, sizeof(line), f)) {
                char *p = line + klen, *end;

                if (strncmp(line, key, klen) != 0)
                        continue;
                for (n = 0; n < 4; n++, p = end) {
                        v[n] = strtoull(p, &end, base);
                        if (end == p)
                                break;
                }
                break;
        }
        fclose(f);
        return n;
}

/* Yama's ptrace_scope: 0 (classic) when it cannot be read. */
static int yama_scope(void) {
        FILE *f = fopen("/proc/sys/kernel/yama/ptrace_scope", "re");
        int scope = 0;

        if (!f)
                return 0;
        if (fscanf(f, "%d", &scope) != 1)
                scope = 0;
        fclose(f);
        return scope;
}

/* Which of the kernel's ptrace rules most likely refused us. The id rules bind only a
 * caller without CAP_SYS_PTRACE; root that lacks it (a unit's bounding set) is told so,
 * since root expects to be allowed. */
static const char *refusal_hint(pid_t pid) {
        unsigned long long u[4], g[4], cap[4], mine[4], eff[4];
        bool privileged = status_field(getpid(), "CapEff:", 16, eff) >= 1 && (eff[0] & (1ULL << CAP_SYS_PTRACE_BIT));
        uid_t eme = geteuid();
        gid_t egme = getegid();
        char path[64];
        struct stat st;

        if (!privileged) {
                /* the kernel compares the target's real, effective and saved ids with
                 * the caller's filesystem ids, which follow the effective ones */
                if (status_field(pid, "Uid:", 10, u) >= 3 && (u[0] != eme || u[1] != eme || u[2] != eme))
                        return eme == 0 ? ": its user ids are not all yours, and this process lacks CAP_SYS_PTRACE" :
                                          ": its user ids are not all yours";
                if (status_field(pid, "Gid:", 10, g) >= 3 && (g[0] != egme || g[1] != egme || g[2] != egme))
                        return ": its group ids are not all yours";
                snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
                if (stat(path, &st) == 0 && st.st_uid != eme)
                        return ": it is not dumpable";
                if (status_field(pid, "CapPrm:", 16, cap) >= 1 && status_field(getpid(), "CapPrm:", 16, mine) >= 1 &&
                    (cap[0] & ~mine[0]))
                        return ": it holds capabilities you lack";
        }
        /* scopes 1 and 2 let CAP_SYS_PTRACE through; 3 lets nobody */
        switch (yama_scope()) {
        case 0:
                return "";
        case 1:
                return privileged ? "" : ": Yama's ptrace_scope 1 allows only a process's ancestors";
        case 2:
                return privileged ? "" : ": Yama's ptrace_scope 2 allows only CAP_SYS_PTRACE";
        default:
                return ": Yama's ptrace_scope 3 allows no ptrace at all";
        }
}

char *ptrace_denied_line(pid_t pid, char *buf, size_t len) {
        if (len > 0)
                snprintf(buf, len, "not allowed to trace process %d (the kernel's ptrace access check for this user%s)",
                         (int) pid, refusal_hint(pid));
        return buf;
}
