/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * What a patch load leaves in the target until it is recorded (loader.c): the memfd is
 * an fd of the target from its memfd_create to its close, and the reservation with the
 * segments mapped into it is named by no record until the patch's (or the shadow
 * runtime's) is published. The control block's header names both while they are
 * unrecorded (docs/fault-tolerance.md, "A patch load cut short"), so that the next apply,
 * revert or resume closes and unmaps what a killed driver left: only what the header
 * names, checked against the target (the fd's name, ulp's, and inode; mappings of that
 * inode or ulp's reservation), never another fd or mapping of the program.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/macro.h"
#include "elf/maps.h"
#include "patcher/control.h"
#include "patcher/loader.h"
#include "patcher/rsys.h"

void loader_fd_clear(Control *c) {
        ControlHeader *h = &c->img->hdr;

        h->load_state = CONTROL_LOAD_NONE;
        h->load_pid = 0;
        h->load_start = 0;
        h->load_fd = 0;
        h->load_ino = 0;
        h->load_addr = 0;
        h->load_size = 0;
        memset(h->load_name, 0, sizeof(h->load_name));
}

int loader_fd_record(Target *t, Control *c, const char *name, uint64_t addr, uint64_t size) {
        ControlHeader *h = &c->img->hdr;

        if (strlen(name) >= sizeof(h->load_name))
                return -ENAMETOOLONG;
        loader_fd_clear(c);
        h->load_state = CONTROL_LOAD_CREATING;
        h->load_pid = control_self_pid();
        h->load_start = control_self_start_time();
        h->load_addr = addr;
        h->load_size = size;
        snprintf(h->load_name, sizeof(h->load_name), "%s", name);
        return control_write_header(t, c);
}

/* The inode of fd of pid, 0 when it cannot be read. */
static uint64_t fd_inode(pid_t pid, int fd) {
        char path[64];
        struct stat st;

        snprintf(path, sizeof(path), "/proc/%d/fd/%d", pid, fd);
        return stat(path, &st) < 0 ? 0 : (uint64_t)st.st_ino;
}

int loader_fd_opened(Target *t, Control *c, int fd) {
        ControlHeader *h = &c->img->hdr;
        uint64_t ino = fd_inode(t->pid, fd);

        if (!ino)
                return -ESRCH;
        h->load_state = CONTROL_LOAD_OPEN;
        h->load_fd = fd;
        h->load_ino = ino;
        return control_write_header(t, c);
}

int loader_fd_moved(Target *t, Control *c, uint64_t addr) {
        c->img->hdr.load_addr = addr;
        return control_write_header(t, c);
}

/* Whether fd of pid is the memfd named name: its link reads "/memfd:NAME (deleted)". */
static bool fd_is_memfd(pid_t pid, int fd, const char *name) {
        char path[64], link[256], want[256];
        ssize_t n;

        snprintf(path, sizeof(path), "/proc/%d/fd/%d", pid, fd);
        n = readlink(path, link, sizeof(link) - 1);
        if (n < 0)
                return false;
        link[n] = 0;
        snprintf(want, sizeof(want), "/memfd:%s (deleted)", name);
        return strcmp(link, want) == 0;
}

/* Whether some mapping is of the memfd inode ino: one memfd_create just made is not
 * mapped yet (the loader maps it only after its fd is recorded). */
static bool inode_mapped(const MapList *maps, uint64_t ino) {
        for (size_t i = 0; i < maps->n; i++)
                if (maps->v[i].inode == ino && maps->v[i].path && strncmp(maps->v[i].path, "/memfd:", 7) == 0)
                        return true;
        return false;
}

/* The fds a driver killed between the record and memfd_create's return may have left:
 * of the recorded name, and mapped nowhere. At most LOADER_FD_MAX. */
#define LOADER_FD_MAX 8
static size_t creating_fds(pid_t pid, const MapList *maps, const char *name, int *v) {
        char path[64];
        struct dirent *de;
        size_t n = 0;
        DIR *d;

        snprintf(path, sizeof(path), "/proc/%d/fd", pid);
        d = opendir(path);
        if (!d)
                return 0;
        while ((de = readdir(d)) && n < LOADER_FD_MAX) {
                char *end;
                long fd = strtol(de->d_name, &end, 10);
                if (de->d_name[0] < '0' || de->d_name[0] > '9' || *end || fd > INT32_MAX ||
                    !fd_is_memfd(pid, (int)fd, name))
                        continue;
                uint64_t ino = fd_inode(pid, (int)fd);
                if (ino && !inode_mapped(maps, ino))
                        v[n++] = (int)fd;
        }
        closedir(d);
        return n;
}

/* Whether a record of the block claims some byte of [addr, addr + size). */
static bool range_claimed(const ControlImage *img, uint64_t addr, uint64_t size) {
        const ControlHeader *h = &img->hdr;

        if (h->shadow_size && h->shadow_base < addr + size && addr < h->shadow_base + h->shadow_size)
                return true;
        for (unsigned i = 0; i < h->n_patches; i++) {
                const ControlPatch *p = &img->patches[i];
                if (p->map_size && p->map_start < addr + size && addr < p->map_start + p->map_size)
                        return true;
        }
        return false;
}

/* Whether e is a mapping of the load's memfd: its inode, and its name. The inode alone
 * would do for a record ulp wrote; one the process forged may name the inode of another
 * memfd, the control block's own among them. */
static bool is_load_mapping(const MapEntry *e, uint64_t ino, const char *name) {
        return e->inode == ino && e->path && strncmp(e->path, "/memfd:", 7) == 0 && strcmp(e->path + 7, name) == 0;
}

/* Whether [addr, addr + size) is wholly the load's: covered without a gap by mappings of
 * its memfd (ino, name) and by the reservation's anonymous PROT_NONE pages, at least one
 * of the memfd (the reservation succeeded: MAP_FIXED_NOREPLACE, then the segments over
 * it). */
static bool range_is_load(const MapList *maps, uint64_t ino, const char *name, uint64_t addr, uint64_t size) {
        uint64_t at = addr;
        bool seg = false;

        for (size_t i = 0; i < maps->n && at < addr + size; i++) {
                const MapEntry *e = &maps->v[i];
                if (e->end <= at)
                        continue;
                if (e->start > at)
                        return false;
                if (is_load_mapping(e, ino, name))
                        seg = true;
                else if (e->path || e->inode || e->prot != 0)
                        return false;
                at = e->end;
        }
        return seg && at >= addr + size;
}

bool loader_fd_left(const Control *c) {
        const ControlHeader *h = &c->img->hdr;

        /* Operations on one process never overlap, so a record of this very process is
         * left from one of its earlier operations too. */
        if (h->load_state == CONTROL_LOAD_NONE)
                return false;
        if (h->load_pid == control_self_pid())
                return true;
        return h->load_start == 0 || control_proc_start_time(h->load_pid) != h->load_start;
}

int loader_fd_reclaim(Target *t, Thread *th, Control *c) {
        const ControlHeader *h = &c->img->hdr;
        MapList maps = {};
        int v[LOADER_FD_MAX];
        size_t n = 0;
        int r, done = 0;

        if (!loader_fd_left(c))
                return 0;
        r = maps_read(t->pid, &maps);
        if (r < 0)
                return r;
        if (h->load_state == CONTROL_LOAD_OPEN) {
                if (fd_is_memfd(t->pid, h->load_fd, h->load_name) && fd_inode(t->pid, h->load_fd) == h->load_ino)
                        v[n++] = h->load_fd;
        } else
                n = creating_fds(t->pid, &maps, h->load_name, v);
        for (size_t i = 0; i < n; i++) {
                r = rsys_close(t, th, v[i]);
                if (r < 0 && r != -EBADF)
                        goto out;
                done++;
        }
        if (h->load_state == CONTROL_LOAD_OPEN && !range_claimed(c->img, h->load_addr, h->load_size) &&
            range_is_load(&maps, h->load_ino, h->load_name, h->load_addr, h->load_size)) {
                r = rsys_munmap(t, th, h->load_addr, h->load_size);
                if (r < 0)
                        goto out;
                done++;
        }
        loader_fd_clear(c);
        r = control_write_header(t, c);
out:
        maplist_done(&maps);
        return r < 0 ? r : done;
}
