/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <time.h>

#include "common/macro.h"
#include "elf/maps.h"
#include "patcher/control.h"
#include "patcher/rsys.h"

_Static_assert(sizeof(ControlHeader) == 4096, "control header is one page");

static bool is_control_mapping(const MapEntry *e) {
        return e->path && strcmp(e->path, "/memfd:" CONTROL_MAPPING_NAME) == 0 && e->offset == 0;
}

int control_find(pid_t pid, uint64_t *ret_addr) {
        MapList l = {};
        int r = maps_read(pid, &l);
        if (r < 0)
                return r;
        r = 0;
        for (size_t i = 0; i < l.n; i++)
                if (is_control_mapping(&l.v[i])) {
                        *ret_addr = l.v[i].start;
                        r = 1;
                        break;
                }
        maplist_done(&l);
        return r;
}

static int control_alloc(Control *c) {
        if (!c->img) {
                c->img = calloc(1, sizeof(ControlImage));
                if (!c->img)
                        return -ENOMEM;
        }
        return 0;
}

/* Reads what is in use: the header, areas, patches and the used function records. The
 * thread table is read only by control_read_table(). */
int control_load(Target *t, Control *c) {
        ControlImage *img;
        int r = control_alloc(c);
        if (r < 0)
                return r;
        img = c->img;
        r = target_read(t, c->addr, &img->hdr, sizeof(img->hdr));
        if (r < 0)
                return r;
        if (memcmp(img->hdr.magic, CONTROL_MAGIC, 8) != 0 || img->hdr.version != CONTROL_VERSION ||
            img->hdr.image_size != sizeof(ControlImage) || img->hdr.n_funcs > CONTROL_MAX_FUNCS ||
            img->hdr.n_patches > CONTROL_MAX_PATCHES || img->hdr.n_areas > CONTROL_MAX_AREAS)
                return -EBADMSG;
        r = target_read(t, c->addr + CONTROL_OFF(areas), img->areas, sizeof(img->areas));
        if (r < 0)
                return r;
        r = target_read(t, c->addr + CONTROL_OFF(patches), img->patches,
                        sizeof(ControlPatch) * img->hdr.n_patches);
        if (r < 0)
                return r;
        return target_read(t, c->addr + CONTROL_OFF(funcs), img->funcs,
                           sizeof(ControlFunc) * img->hdr.n_funcs);
}

int control_create(Target *t, Thread *th, Control *c) {
        _cleanup_close_ int fd = -1;
        int remote_fd = -1, r;
        uint64_t addr = 0;

        r = control_alloc(c);
        if (r < 0)
                return r;
        r = rsys_memfd_create(t, th, CONTROL_MAPPING_NAME, &remote_fd);
        if (r < 0)
                return r;
        r = rsys_ftruncate(t, th, remote_fd, ALIGN_UP(sizeof(ControlImage), 4096));
        if (r >= 0)
                r = rsys_mmap(t, th, 0, ALIGN_UP(sizeof(ControlImage), 4096), PROT_READ | PROT_WRITE,
                              MAP_PRIVATE, remote_fd, 0, &addr);
        (void)rsys_close(t, th, remote_fd);
        if (r < 0)
                return r;

        memset(c->img, 0, sizeof(*c->img));
        memcpy(c->img->hdr.magic, CONTROL_MAGIC, 8);
        c->img->hdr.version = CONTROL_VERSION;
        c->img->hdr.image_size = sizeof(ControlImage);
        c->img->hdr.self = addr;
        c->img->hdr.owner_pid = t->pid;
        c->img->hdr.target_state = THREAD_UNDEFINED;
        c->img->hdr.transition_patch = -1;
        c->addr = addr;
        return control_write_header(t, c);
}

void control_done(Control *c) {
        free(c->img);
        c->img = NULL;
}

int control_write_header(Target *t, Control *c) {
        c->img->hdr.generation++;
        return target_write(t, c->addr, &c->img->hdr, sizeof(c->img->hdr));
}

int control_write_patch(Target *t, Control *c, unsigned idx) {
        return target_write(t, c->addr + CONTROL_OFF(patches) + idx * sizeof(ControlPatch),
                            &c->img->patches[idx], sizeof(ControlPatch));
}

int control_write_funcs(Target *t, Control *c, unsigned first, unsigned n) {
        if (n == 0)
                return 0;
        return target_write(t, c->addr + CONTROL_OFF(funcs) + first * sizeof(ControlFunc),
                            &c->img->funcs[first], n * sizeof(ControlFunc));
}

int control_write_areas(Target *t, Control *c) {
        return target_write(t, c->addr + CONTROL_OFF(areas), c->img->areas, sizeof(c->img->areas));
}

int control_read_table(Target *t, Control *c) {
        int r = target_read(t, c->addr + CONTROL_OFF(table_tp), c->img->table_tp,
                            sizeof(c->img->table_tp));
        if (r < 0)
                return r;
        return target_read(t, c->addr + CONTROL_OFF(table_state), c->img->table_state,
                           sizeof(c->img->table_state));
}

int control_write_table(Target *t, Control *c) {
        int r = target_write(t, c->addr + CONTROL_OFF(table_tp), c->img->table_tp,
                             sizeof(c->img->table_tp));
        if (r < 0)
                return r;
        return target_write(t, c->addr + CONTROL_OFF(table_state), c->img->table_state,
                            sizeof(c->img->table_state));
}

/* Same probe sequence as the stubs' (stub.c). */
int control_table_find(const Control *c, uint64_t tp) {
        uint64_t i = thread_table_hash(tp, CONTROL_TABLE_ORDER);
        for (unsigned n = 0; n < CONTROL_TABLE_SLOTS; n++) {
                if (c->img->table_tp[i] == tp)
                        return (int)i;
                if (c->img->table_tp[i] == 0)
                        return -ENOENT;
                i = (i + 1) & (CONTROL_TABLE_SLOTS - 1);
        }
        return -ENOENT;
}

/* A one-byte write: atomic for the stubs reading it concurrently. */
int control_write_thread_state(Target *t, Control *c, unsigned slot, uint8_t state) {
        c->img->table_state[slot] = state;
        return target_write(t, c->addr + CONTROL_OFF(table_state) + slot, &state, 1);
}

int control_write_stragglers(Target *t, Control *c, const ControlStraggler *v, size_t n, unsigned pass) {
        ControlStragglers *s = &c->img->stragglers;
        struct timespec ts;

        clock_gettime(CLOCK_REALTIME, &ts);
        s->n = (uint32_t)MIN(n, (size_t)CONTROL_MAX_STRAGGLERS);
        s->pass = pass;
        s->updated_ns = (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
        if (s->n)
                memcpy(s->v, v, s->n * sizeof(*v));
        return target_write(t, c->addr + CONTROL_OFF(stragglers), s,
                            offsetof(ControlStragglers, v) + s->n * sizeof(*v));
}

int control_read_stragglers(Target *t, Control *c) {
        ControlStragglers *s = &c->img->stragglers;
        int r = target_read(t, c->addr + CONTROL_OFF(stragglers), s, offsetof(ControlStragglers, v));
        if (r < 0)
                return r;
        if (s->n > CONTROL_MAX_STRAGGLERS)
                return -EBADMSG;
        return s->n ? target_read(t, c->addr + CONTROL_OFF(stragglers.v), s->v, s->n * sizeof(*s->v)) : 0;
}

/* Field 22 of /proc/PID/stat: start time in clock ticks since boot; 0 if unreadable. */
static uint64_t proc_start_time(pid_t pid) {
        char path[64], buf[1024];
        _cleanup_close_ int fd = -1;
        const char *p;
        ssize_t n;

        snprintf(path, sizeof(path), "/proc/%d/stat", pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0 || (n = read(fd, buf, sizeof(buf) - 1)) <= 0)
                return 0;
        buf[n] = 0;
        p = strrchr(buf, ')'); /* the name may hold spaces and parentheses */
        for (int field = 2; p && field < 22; field++)
                p = strchr(p + 1, ' ');
        return p ? strtoull(p + 1, NULL, 10) : 0;
}

void control_claim_driver(Control *c) {
        c->img->hdr.driver_pid = getpid();
        c->img->hdr.driver_start = proc_start_time(getpid());
}

pid_t control_live_driver(const Control *c) {
        pid_t pid = c->img->hdr.driver_pid;
        if (pid <= 0 || pid == getpid())
                return 0;
        if (proc_start_time(pid) != c->img->hdr.driver_start || c->img->hdr.driver_start == 0)
                return 0;
        return pid;
}

static bool patch_live(const ControlPatch *p) {
        return p->state == CP_PATCHED || p->state == CP_TRANSITION;
}

int control_find_patch(const Control *c, const char *name) {
        for (unsigned i = 0; i < c->img->hdr.n_patches; i++)
                if (patch_live(&c->img->patches[i]) && strcmp(c->img->patches[i].name, name) == 0)
                        return (int)i;
        return -ENOENT;
}

int control_top_func(const Control *c, uint64_t old_addr, int exclude) {
        int best = -1;
        uint32_t best_seq = 0;
        for (unsigned i = 0; i < c->img->hdr.n_funcs; i++) {
                const ControlFunc *f = &c->img->funcs[i];
                const ControlPatch *p = &c->img->patches[f->patch];
                if (f->old_addr != old_addr || !patch_live(p) || (int)f->patch == exclude)
                        continue;
                if (best < 0 || p->seq > best_seq) {
                        best = (int)i;
                        best_seq = p->seq;
                }
        }
        return best;
}

int control_any_func(const Control *c, uint64_t old_addr) {
        for (unsigned i = 0; i < c->img->hdr.n_funcs; i++)
                if (c->img->funcs[i].old_addr == old_addr && c->img->funcs[i].copy_addr)
                        return (int)i;
        return -1;
}
