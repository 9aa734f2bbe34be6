/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The processes that carry a ulp control block, for ulpctl's status through ulpd: the
 * same test as the core's (a shared mapping of the control memfd at offset 0, see
 * patcher/control.c), with only the maps parser, so that ulpctl loads none of the core.
 */

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/macro.h"
#include "daemon/client.h"
#include "elf/maps.h"
#include "patcher/control.h"

static bool carries_block(pid_t pid) {
        _cleanup_(maplist_done) MapList l = {};

        if (maps_read(pid, &l) < 0)
                return false;
        for (size_t i = 0; i < l.n; i++)
                if (l.v[i].path && l.v[i].offset == 0 && strcmp(l.v[i].path, "/memfd:" CONTROL_MAPPING_NAME) == 0)
                        return true;
        return false;
}

int client_list_carriers(pid_t **ret, size_t *ret_n) {
        DIR *d = opendir("/proc");
        struct dirent *de;
        pid_t *v = NULL;
        size_t n = 0;

        if (!d)
                return negative_errno();
        while ((de = readdir(d))) {
                char *end;
                long pid = strtol(de->d_name, &end, 10);

                if (*end || pid <= 0 || pid > INT32_MAX || !carries_block((pid_t) pid))
                        continue;
                pid_t *nv = realloc(v, (n + 1) * sizeof(pid_t));
                if (!nv) {
                        free(v);
                        closedir(d);
                        return -ENOMEM;
                }
                v = nv;
                v[n++] = (pid_t) pid;
        }
        closedir(d);
        *ret = v;
        *ret_n = n;
        return 0;
}
