/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Which processes carry a control block, seen from /proc/PID/maps alone: a mapping of
 * the control memfd at offset 0 (control.h). This file and the maps parser
 * are libulp-carriers, the corner of the core a thin client links to list those
 * processes without loading libelf, libdw or capstone (docs/architecture.md, "The
 * library boundary"); libulp has them too, and finds every block this one way.
 */

#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/macro.h"
#include "elf/maps.h"
#include "patcher/control.h"
#include "patcher/vfork.h"
#include "ulp/libulp.h"

bool control_is_mapping(const MapEntry *e) {
        return e->path && e->offset == 0 && strcmp(e->path, "/memfd:" CONTROL_MAPPING_NAME) == 0;
}

int control_find_in(const MapList *l, uint64_t *ret_addr) {
        for (size_t i = 0; i < l->n; i++)
                if (control_is_mapping(&l->v[i])) {
                        *ret_addr = l->v[i].start;
                        return 1;
                }
        return 0;
}

int control_find(pid_t pid, uint64_t *ret_addr) {
        _cleanup_(maplist_done) MapList l = {};
        int r = maps_read(pid, &l);

        return r < 0 ? r : control_find_in(&l, ret_addr);
}

int ulp_list_processes(pid_t **ret, size_t *ret_n) {
        DIR *d = opendir("/proc");
        struct dirent *de;
        pid_t *v = NULL;
        size_t n = 0;

        if (!d)
                return negative_errno();
        while ((de = readdir(d))) {
                char *end;
                long pid = strtol(de->d_name, &end, 10);
                uint64_t addr;

                /* A vfork child maps its parent's block: it is the parent's. One that
                 * executes a program between the first look and the vfork check is no
                 * vfork child any more, and its new image has no block: looked at again. */
                if (*end || pid <= 0 || pid > INT32_MAX || control_find((pid_t) pid, &addr) <= 0 ||
                    vfork_parent_of((pid_t) pid) > 0 || control_find((pid_t) pid, &addr) <= 0)
                        continue;
                pid_t *nv = reallocarray(v, n + 1, sizeof(pid_t));
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
