/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <linux/capability.h>
#include <stdio.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "common/macro.h"
#include "elf/maps.h"
#include "patcher/procmem.h"
#include "patcher/target.h"

/* Whether cap is in this thread's effective set. */
static int have_effective_cap(unsigned cap) {
        struct __user_cap_header_struct h = { .version = _LINUX_CAPABILITY_VERSION_3 };
        struct __user_cap_data_struct d[_LINUX_CAPABILITY_U32S_3] = {};

        if (cap >= 32 * _LINUX_CAPABILITY_U32S_3)
                return -EINVAL;
        if (syscall(SYS_capget, &h, d) < 0)
                return negative_errno();
        return !!(d[cap / 32].effective & (1U << (cap % 32)));
}

int procmem_mode_denies(pid_t pid, uid_t *ret_owner) {
        char path[64];
        struct stat st;
        mode_t want;
        int r;

        snprintf(path, sizeof(path), "/proc/%d/mem", pid);
        if (stat(path, &st) < 0)
                return negative_errno();
        if (ret_owner)
                *ret_owner = st.st_uid;
        /* The kernel compares the fsuid, which ulp never changes from the euid. */
        if (st.st_uid == geteuid())
                want = S_IRUSR | S_IWUSR;
        else if (st.st_gid == getegid() || group_member(st.st_gid))
                want = S_IRGRP | S_IWGRP;
        else
                want = S_IROTH | S_IWOTH;
        if ((st.st_mode & want) == want)
                return 0;
        r = have_effective_cap(CAP_DAC_OVERRIDE);
        if (r != 0)
                return r < 0 ? r : 0;
        /* A caller without CAP_SYS_PTRACE that does not own the file is not the target's
         * uid either: the ptrace check refuses it as well, and is the cause to name. */
        return have_effective_cap(CAP_SYS_PTRACE);
}

int procmaps_get(Target *t, const MapList **ret) {
        if (!t->maps) {
                _cleanup_free_ MapList *l = calloc(1, sizeof(*l));
                if (!l)
                        return -ENOMEM;
                int r = maps_read(t->pid, l);
                if (r < 0)
                        return r;
                t->maps = TAKE_PTR(l);
        }
        *ret = t->maps;
        return 0;
}

void procmaps_drop(Target *t) {
        if (!t->maps)
                return;
        maplist_done(t->maps);
        free(t->maps);
        t->maps = NULL;
}
