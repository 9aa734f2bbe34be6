/* SPDX-License-Identifier: LGPL-2.1-or-later */
#include <stddef.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "common/errfmt.h"
#include "common/invariant.h"
#include "common/macro.h"
#include "elf/maps.h"
#include "patcher/control-internal.h"
#include "patcher/procmem.h"
#include "runtime/shadow-abi.h"
#include "patcher/rsys.h"
#include "patcher/x86_64/sigtrap.h"

_Static_assert(sizeof(ControlHeader) == 4096, "control header is one page");

/*
 * The seqlock. A writer makes generation odd (with its identity, in one write) before it
 * changes anything a reader copies, and even again after; a reader copies between two
 * reads of generation and keeps the copy only when both are the same even value. The
 * corresponding reader is read_consistent().
 *
 * generation starts from the target's own value, not the local copy's: another process
 * may have written since this one loaded the block.
 */
typedef struct SeqWriter {
        uint32_t generation;
        int32_t writer_pid;
        uint64_t writer_start;
        int32_t writer_target;
} __attribute__((packed)) SeqWriter;

_Static_assert(offsetof(ControlHeader, writer_target) - offsetof(ControlHeader, generation) + 4 == sizeof(SeqWriter),
               "the seqlock fields are contiguous");

static int control_write_begin(Target *t, Control *c) {
        ControlHeader *h = &c->img->hdr;
        uint32_t cur = h->generation;
        SeqWriter w;

        if (target_read(t, c->addr + CONTROL_OFF(hdr.generation), &cur, sizeof(cur)) < 0)
                cur = h->generation;
        h->generation = (cur | 1) + ((cur & 1) ? 2 : 0);
        h->writer_pid = control_self_pid();
        h->writer_start = control_self_start_time();
        h->writer_target = t->pid;
        w = (SeqWriter) { h->generation, h->writer_pid, h->writer_start, h->writer_target };
        return target_write(t, c->addr + CONTROL_OFF(hdr.generation), &w, sizeof(w));
}

static int control_write_end(Target *t, Control *c) {
        c->img->hdr.generation++;
        return target_write(t, c->addr + CONTROL_OFF(hdr.generation), &c->img->hdr.generation,
                            sizeof(c->img->hdr.generation));
}

int control_batch_begin(Target *t, Control *c) {
        int r = control_settle(t, c);
        if (r < 0)
                return r;
        r = control_write_begin(t, c);
        c->batch = r >= 0;
        return r;
}

int control_batch_end(Target *t, Control *c) {
        if (!c->batch)
                return 0;
        c->batch = false;
        return control_write_end(t, c);
}

/* One write of a part of the block under the seqlock. The end is written even when the
 * write failed, so that the block is not left looking busy. */
static int control_write_locked(Target *t, Control *c, uint64_t off, const void *buf, size_t len) {
        int r, k;

        if (c->batch)
                return target_write(t, c->addr + off, buf, len);
        r = control_settle(t, c);
        if (r < 0)
                return r;
        r = control_write_begin(t, c);
        if (r < 0)
                return r;
        r = target_write(t, c->addr + off, buf, len);
        k = control_write_end(t, c);
        return r < 0 ? r : k;
}

/* True when the odd generation of h will never turn even: its writer is gone (killed
 * in the middle), is this very process (whose write failed half-way), or was writing
 * another process (this block is a forked copy of one being written). */
static bool writer_gone(const ControlHeader *h, pid_t pid) {
        if (h->writer_target != pid || h->writer_pid <= 0 || h->writer_pid == control_self_pid())
                return true;
        return control_proc_start_time(h->writer_pid) != h->writer_start;
}

#define CONTROL_READ_TRIES 50

/*
 * How long a reader waits for a write in progress. A writer keeps the generation odd for
 * a few writes, longer when it is descheduled on a loaded machine: a reader retries for
 * about 90 ms (CONTROL_READ_TRIES, sleeping a little longer each time). A block that
 * stays odd while its named writer lives is either a write stalled that long or a forged
 * block naming a live process (pid 1 with its start time): the process's own user can
 * map many such blocks and have a listing of every process (ulpd's status, revert
 * --all, recovery) wait 90 ms on each. So a thread that waited out one such block reads
 * the blocks it meets in the next second without sleeping (CONTROL_READ_TRIES_IMPATIENT
 * reads back to back; a dead writer is still recognized): one full wait a second and
 * thread, however many blocks are forged.
 */
#define CONTROL_READ_TRIES_IMPATIENT 3
#define CONTROL_IMPATIENT_NS 1000000000ULL

static _Thread_local uint64_t impatient_until_ns;

static bool impatient(void) {
        return impatient_until_ns && monotonic_ns() < impatient_until_ns;
}

static unsigned read_tries(void) {
        return impatient() ? CONTROL_READ_TRIES_IMPATIENT : CONTROL_READ_TRIES;
}

/* The block stayed busy for all the tries: a full wait was spent (or none, when the
 * thread is impatient already, which does not extend it). */
static void waited_out(void) {
        if (!impatient())
                impatient_until_ns = monotonic_ns() + CONTROL_IMPATIENT_NS;
}

static void sleep_short(unsigned try) {
        struct timespec ts = { 0, (long)MIN(try + 1, 10u) * 200000L };
        if (impatient())
                return;
        nanosleep(&ts, NULL);
}

/* Copies the header and what it says is in use, consistently (see control_write_begin). */
/* All zeros: mapped by a creator that died before it wrote the header (control_create
 * maps first, then writes, since the header names the address the mapping got). The
 * seqlock's writer fields alone may be set: an older creator opened a write before
 * the first header, and a kill between the two left only them. */
static bool header_unborn(const ControlHeader *h) {
        const uint8_t *b = (const uint8_t *)h;
        const size_t seq_lo = offsetof(ControlHeader, generation), seq_hi = seq_lo + sizeof(SeqWriter);
        for (size_t i = 0; i < sizeof(*h); i++)
                if (b[i] && (i < seq_lo || i >= seq_hi))
                        return false;
        return true;
}

/* The patches and function records the header says are in use: at the front, or those
 * of a compaction staged but not copied into place yet (control_stage), which then are
 * the block's (the local copy's counts become the stage's). */
static int read_records(Target *t, Control *c) {
        ControlHeader *h = &c->img->hdr;
        uint64_t funcs = c->addr + CONTROL_OFF(funcs), patches = c->addr + CONTROL_OFF(patches);
        int r;

        if (h->stage_state == CONTROL_STAGED) {
                funcs += (uint64_t)h->stage_at * sizeof(ControlFunc);
                patches = funcs + (uint64_t)h->stage_funcs * sizeof(ControlFunc);
                h->n_patches = h->stage_patches;
                h->n_funcs = h->stage_funcs;
        }
        r = target_read(t, patches, c->img->patches, sizeof(ControlPatch) * h->n_patches);
        return r < 0 ? r : target_read(t, funcs, c->img->funcs, sizeof(ControlFunc) * h->n_funcs);
}

static int read_consistent(Target *t, Control *c) {
        ControlImage *img = c->img;
        uint32_t after = 0;
        int r;

        for (unsigned try = 0, tries = read_tries(); try < tries; try++) {
                if (try > 0)
                        sleep_short(try);
                r = target_read(t, c->addr, &img->hdr, sizeof(img->hdr));
                if (r < 0)
                        return r;
                if (header_unborn(&img->hdr))
                        return -ENODATA;
                /* Where the generation is depends on the version: that first. Writers
                 * rewrite magic and version with the same bytes, never tearing them. */
                if (memcmp(img->hdr.magic, CONTROL_MAGIC, sizeof(img->hdr.magic)) != 0 ||
                    img->hdr.version != CONTROL_VERSION)
                        return control__validate_header(&img->hdr, c->addr, c->why, sizeof(c->why));
                if ((img->hdr.generation & 1) && !(try >= 2 && writer_gone(&img->hdr, t->pid)))
                        continue;
                /* Bounded before use: these counts size the reads below. */
                r = control__validate_header(&img->hdr, c->addr, c->why, sizeof(c->why));
                if (r < 0 && !(img->hdr.generation & 1)) {
                        /* Maybe a torn header: only a stable one is refused. */
                        if (target_read(t, c->addr + CONTROL_OFF(hdr.generation), &after, sizeof(after)) >= 0 &&
                            after != img->hdr.generation)
                                continue;
                        return r;
                }
                if (r < 0)
                        return r;
                r = target_read(t, c->addr + CONTROL_OFF(areas), img->areas, sizeof(img->areas));
                if (r >= 0)
                        r = read_records(t, c);
                if (r >= 0)
                        r = target_read(t, c->addr + CONTROL_OFF(hdr.generation), &after, sizeof(after));
                if (r < 0)
                        return r;
                if (after == img->hdr.generation)
                        return 0;
        }
        waited_out();
        snprintf(c->why, sizeof(c->why), "busy: another process kept writing it (generation %u)",
                 img->hdr.generation);
        return -EBUSY;
}

/* [addr, addr + len) is covered by anonymous private read-execute mappings, as
 * area_new() (nearmem.c) makes them. */
static bool area_mapped(const MapList *l, uint64_t addr, uint64_t len) {
        uint64_t at = addr, end = addr + len;
        for (size_t i = 0; i < l->n && at < end; i++) {
                const MapEntry *e = &l->v[i];
                if (e->end <= at || e->start > at)
                        continue;
                if (e->path || e->shared || e->prot != (PROT_READ | PROT_EXEC))
                        return false;
                at = e->end;
        }
        return at >= end;
}

static uint64_t map_dev(const MapEntry *e) {
        return ((uint64_t)e->dev_major << 32) | e->dev_minor;
}

/* The memfd of the block at addr: its dev and inode (the MAC's identity). */
static int control_file(const MapList *l, uint64_t addr, uint64_t *ret_dev, uint64_t *ret_inode) {
        for (size_t i = 0; i < l->n; i++)
                if (l->v[i].start == addr && control_is_mapping(&l->v[i])) {
                        *ret_dev = map_dev(&l->v[i]);
                        *ret_inode = l->v[i].inode;
                        return 0;
                }
        return -ENOENT;
}

/* The areas the block names are mappings ulp made: stubs and relocated entries, which
 * validation keeps inside them, then lie in code ulp wrote. Then the MAC (c->trusted). */
static int check_mappings(Target *t, Control *c) {
        uint64_t dev = 0, inode = 0;
        const MapList *l;
        int r;

        /* The step's read (procmem.h), which found the block: a read of its own a moment
         * later would be no more current, as the process's threads run meanwhile. */
        r = procmaps_get(t, &l);
        if (r < 0)
                return r;
        r = control_file(l, c->addr, &dev, &inode);
        if (r < 0)
                snprintf(c->why, sizeof(c->why), "it is no longer mapped"), r = -EBADMSG;
        for (unsigned i = 0; i < c->img->hdr.n_areas && r >= 0; i++)
                if (!area_mapped(l, c->img->areas[i].addr, c->img->areas[i].size))
                        r = -EBADMSG, snprintf(c->why, sizeof(c->why),
                                               "area %u at 0x%llx is not a mapping ulp made", i,
                                               (unsigned long long)c->img->areas[i].addr);
        if (r >= 0)
                c->trusted = control_verify(&c->img->hdr, dev, inode);
        return r;
}

/* Reads what is in use: the header, areas, patches and the used function records. The
 * thread table is read only by control_read_table(). */
int control_load(Target *t, Control *c) {
        int r = control__alloc(c);
        if (r < 0)
                return r;
        c->why[0] = 0;
        c->trusted = false;
        r = read_consistent(t, c);
        if (r < 0)
                return r;
        r = control_validate(c->img, c->addr, c->why, sizeof(c->why));
        if (r >= 0)
                r = check_mappings(t, c);
        return r;
}

/* The unborn mapping is still there, whole, writable, and still all zeros where the
 * header goes (read again: the process may have written to it meanwhile). */
static bool unborn_mapping_ok(pid_t pid, uint64_t addr) {
        MapList l = {};
        bool ok = false;

        if (maps_read(pid, &l) < 0)
                return false;
        for (size_t i = 0; i < l.n; i++)
                if (l.v[i].start == addr && control_is_mapping(&l.v[i]))
                        ok = l.v[i].end - l.v[i].start == ALIGN_UP(sizeof(ControlImage), 4096) &&
                             l.v[i].prot == (PROT_READ | PROT_WRITE) && !l.v[i].shared;
        maplist_done(&l);
        return ok;
}

int control_create(Target *t, Thread *th, Control *c) {
        MapList l = {};
        int remote_fd = -1, r;
        uint64_t addr = 0;

        r = control__alloc(c);
        if (r < 0)
                return r;
        if (c->unborn_addr && unborn_mapping_ok(t->pid, c->unborn_addr))
                addr = c->unborn_addr;
        else {
                r = target_syscall_batch_begin(t, th);   /* four calls in a row */
                if (r < 0)
                        return r;
                r = rsys_memfd_create(t, th, CONTROL_MAPPING_NAME, &remote_fd);
                if (r >= 0) {
                        r = rsys_ftruncate(t, th, remote_fd, ALIGN_UP(sizeof(ControlImage), 4096));
                        if (r >= 0)
                                r = rsys_mmap(t, th, 0, ALIGN_UP(sizeof(ControlImage), 4096),
                                              PROT_READ | PROT_WRITE, MAP_PRIVATE, remote_fd, 0, &addr);
                        (void)rsys_close(t, th, remote_fd);
                }
                int k = target_syscall_batch_end(t, th);
                if (r >= 0)
                        r = k;
                if (r < 0)
                        return r;
        }
        c->unborn_addr = 0;

        control__clear(c);
        memcpy(c->img->hdr.magic, CONTROL_MAGIC, 8);
        c->img->hdr.version = CONTROL_VERSION;
        c->img->hdr.image_size = sizeof(ControlImage);
        c->img->hdr.self = addr;
        c->img->hdr.owner_pid = t->pid;
        c->img->hdr.target_state = THREAD_UNDEFINED;
        c->img->hdr.untabled_state = THREAD_UNDEFINED;
        c->img->hdr.transition_patch = -1;
        c->addr = addr;
        /* Unsigned when this process cannot read the key: then only its owner acts on it. */
        c->trusted = false;
        if (maps_read(t->pid, &l) >= 0) {
                uint64_t dev, inode;
                if (control_file(&l, addr, &dev, &inode) >= 0)
                        c->trusted = control_sign(c, t->pid, dev, inode) >= 0;
                maplist_done(&l);
        }
        /* The first header in one write, with no seqlock around it: until it lands the
         * block is all zeros (unborn, as if none), and a write cannot be half done by a
         * kill. A seqlock write would first set the generation in a header without its
         * magic, which a kill right then would leave for every later reader to refuse. */
        ASSERT_RETURN(!c->batch && c->img->hdr.generation == 0, -EUCLEAN);
        return target_write(t, c->addr, &c->img->hdr, sizeof(c->img->hdr));
}


/* The header itself goes with the odd generation; the end makes it even. */
static int write_header_locked(Target *t, Control *c) {
        int r = control_write_begin(t, c), k;
        if (r < 0)
                return r;
        r = target_write(t, c->addr, &c->img->hdr, sizeof(c->img->hdr));
        k = control_write_end(t, c);
        return r < 0 ? r : k;
}

int control_write_header(Target *t, Control *c) {
        int r;

        if (c->batch)
                return target_write(t, c->addr, &c->img->hdr, sizeof(c->img->hdr));
        r = control_settle(t, c);
        return r < 0 ? r : write_header_locked(t, c);
}

int control_stage_room(const ControlImage *img, unsigned used) {
        uint64_t need = control_stage_records(img->hdr.n_patches, img->hdr.n_funcs);
        if (used < img->hdr.n_funcs || used > CONTROL_MAX_FUNCS || need > CONTROL_MAX_FUNCS - used)
                return -ENOSPC;
        return (int)used;
}

/* The stage is written where no reader looks (past the used records), then published by
 * one header write. */
int control_stage(Target *t, Control *c, unsigned at) {
        ControlHeader *h = &c->img->hdr;
        size_t nf = (size_t)h->n_funcs * sizeof(ControlFunc), np = (size_t)h->n_patches * sizeof(ControlPatch);
        _cleanup_free_ uint8_t *buf = NULL;
        int r;

        ASSERT_RETURN(!c->batch && h->stage_state == CONTROL_STAGE_NONE && h->transition_patch < 0, -EUCLEAN);
        ASSERT_RETURN(control_stage_room(c->img, at) == (int)at, -EUCLEAN);
        buf = malloc(nf + np + 1);
        if (!buf)
                return -ENOMEM;
        memcpy(buf, c->img->funcs, nf);
        memcpy(buf + nf, c->img->patches, np);
        r = target_write(t, c->addr + CONTROL_OFF(funcs) + (uint64_t)at * sizeof(ControlFunc), buf, nf + np);
        if (r < 0)
                return r;
        /* Kept in the local copy even if this write fails: the next write settles the
         * stage, which completes the compaction either way. */
        h->stage_state = CONTROL_STAGED;
        h->stage_at = at;
        h->stage_patches = h->n_patches;
        h->stage_funcs = h->n_funcs;
        return write_header_locked(t, c);
}

/* Copies the stage into place and writes the header without it, in one bracket: until
 * that header write readers take the stage, so a writer killed in here leaves the block
 * as it was staged, and the next settle copies the same stage again. */
int control_settle(Target *t, Control *c) {
        ControlHeader *h = &c->img->hdr;
        ControlHeader staged;
        int r, k;

        if (h->stage_state != CONTROL_STAGED || c->batch)
                return 0;
        r = control_write_begin(t, c);
        if (r < 0)
                return r;
        if (h->n_funcs)
                r = target_write(t, c->addr + CONTROL_OFF(funcs), c->img->funcs, h->n_funcs * sizeof(ControlFunc));
        if (r >= 0 && h->n_patches)
                r = target_write(t, c->addr + CONTROL_OFF(patches), c->img->patches,
                                 h->n_patches * sizeof(ControlPatch));
        staged = *h;
        h->stage_state = CONTROL_STAGE_NONE;
        h->stage_at = h->stage_patches = h->stage_funcs = 0;
        if (r >= 0)
                r = target_write(t, c->addr, h, sizeof(*h));
        if (r < 0) {
                h->stage_state = staged.stage_state;
                h->stage_at = staged.stage_at;
                h->stage_patches = staged.stage_patches;
                h->stage_funcs = staged.stage_funcs;
        }
        k = control_write_end(t, c);
        return r < 0 ? r : k;
}

int control_write_patch(Target *t, Control *c, unsigned idx) {
        return control_write_locked(t, c, CONTROL_OFF(patches) + idx * sizeof(ControlPatch),
                                    &c->img->patches[idx], sizeof(ControlPatch));
}

int control_write_funcs(Target *t, Control *c, unsigned first, unsigned n) {
        if (n == 0)
                return 0;
        return control_write_locked(t, c, CONTROL_OFF(funcs) + first * sizeof(ControlFunc),
                                    &c->img->funcs[first], n * sizeof(ControlFunc));
}

int control_write_areas(Target *t, Control *c) {
        return control_write_locked(t, c, CONTROL_OFF(areas), c->img->areas, sizeof(c->img->areas));
}

/* The table is not under the seqlock: only the driver of a transition reads it (with
 * every thread stopped), and another takes over only once that one is gone. */
int control_read_table(Target *t, Control *c) {
        int r = target_read(t, c->addr + CONTROL_OFF(table_tp), c->img->table_tp,
                            sizeof(c->img->table_tp));
        if (r < 0)
                return r;
        r = target_read(t, c->addr + CONTROL_OFF(table_state), c->img->table_state,
                        sizeof(c->img->table_state));
        if (r < 0)
                return r;
        return control_validate_table(c->img, c->why, sizeof(c->why));
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
        ASSERT_RETURN(slot < CONTROL_TABLE_SLOTS, -EUCLEAN);
        ASSERT_RETURN(state == THREAD_PATCHED || state == THREAD_UNPATCHED, -EUCLEAN);
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
        return control_write_locked(t, c, CONTROL_OFF(stragglers), s,
                                    offsetof(ControlStragglers, v) + s->n * sizeof(*v));
}

int control_read_stragglers(Target *t, Control *c) {
        ControlStragglers *s = &c->img->stragglers;
        uint32_t before, after;
        int r;

        for (unsigned try = 0, tries = read_tries(); try < tries; try++) {
                if (try > 0)
                        sleep_short(try);
                r = target_read(t, c->addr + CONTROL_OFF(hdr.generation), &before, sizeof(before));
                if (r < 0)
                        return r;
                if ((before & 1) && try < 2)
                        continue;
                r = target_read(t, c->addr + CONTROL_OFF(stragglers), s, offsetof(ControlStragglers, v));
                if (r >= 0 && s->n <= CONTROL_MAX_STRAGGLERS && s->n)
                        r = target_read(t, c->addr + CONTROL_OFF(stragglers.v), s->v, s->n * sizeof(*s->v));
                if (r >= 0)
                        r = target_read(t, c->addr + CONTROL_OFF(hdr.generation), &after, sizeof(after));
                if (r < 0)
                        return r;
                /* A stable copy. An odd generation that stays is a writer gone or slow: the
                 * list is informational, and validated either way. */
                if (after == before)
                        return control_validate_stragglers(s, c->why, sizeof(c->why));
        }
        waited_out();
        s->n = 0;
        snprintf(c->why, sizeof(c->why), "busy: another process kept writing it");
        return -EBUSY;
}

/* Field 22 of /proc/PID/stat: start time in clock ticks since boot; 0 if unreadable. */
uint64_t control_proc_start_time(pid_t pid) {
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

static _Atomic pid_t cached_self_pid;

static void self_pid_forked(void) {
        cached_self_pid = 0;
}

static void self_pid_register(void) {
        (void) pthread_atfork(NULL, NULL, self_pid_forked);
}

pid_t control_self_pid(void) {
        static pthread_once_t once = PTHREAD_ONCE_INIT;
        pid_t p = cached_self_pid;

        if (p > 0)
                return p;
        (void) pthread_once(&once, self_pid_register);
        p = getpid();
        cached_self_pid = p;
        return p;
}

/* Read once per process (every write of the block names its writer, 13 times in one
 * apply): keyed by pid, so a forked child reads its own. */
uint64_t control_self_start_time(void) {
        static _Atomic uint64_t cached_pid_start;   /* pid << 40 | start, 0: unread */
        uint64_t c = cached_pid_start, pid = (uint64_t)control_self_pid(), start;

        if (c && c >> 40 == pid)
                return c & ((1ULL << 40) - 1);
        start = control_proc_start_time((pid_t)pid);
        if (start && start < (1ULL << 40))
                cached_pid_start = pid << 40 | start;
        return start;
}

void control_claim_driver(Control *c) {
        c->img->hdr.driver_pid = control_self_pid();
        c->img->hdr.driver_start = control_self_start_time();
}

pid_t control_live_driver(const Control *c) {
        pid_t pid = c->img->hdr.driver_pid;
        if (pid <= 0 || pid == control_self_pid())
                return 0;
        if (control_proc_start_time(pid) != c->img->hdr.driver_start || c->img->hdr.driver_start == 0)
                return 0;
        return pid;
}

pid_t control_live_writer(const Control *c, pid_t target) {
        return writer_gone(&c->img->hdr, target) ? 0 : c->img->hdr.writer_pid;
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
