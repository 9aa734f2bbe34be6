/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The control block's writes and reads (patcher/control.c) on a block made by
 * control_create() in this process through the fake target: each write read back by a
 * second reader as another process would, the seqlock's generations, a writer that
 * stays inside (live: busy; dead: read anyway), and what the reader refuses.
 */
#include <pthread.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fake-target.h"
#include "patcher/control.h"
#include "patcher/procmem.h"
#include "test.h"

static Target *t;

/* CLOCK_BOOTTIME in ms: the clock /proc/PID/stat's start times count from. */
static long long clock_ms_since_boot(void) {
        struct timespec ts;
        clock_gettime(CLOCK_BOOTTIME, &ts);
        return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}
static Control w, rd;           /* the writer's copy and a reader's */

static void teardown(void) {
        control_done(&w);
        control_done(&rd);
        fake_target_free(t);
        t = NULL;
        w = rd = (Control) {};
}

static void setup(void) {
        teardown();
        t = fake_target_new();
        ASSERT_TRUE(t);
        fake_thread_add(t, 0, 0x1000);
        ASSERT_OK(target_stop_all(t));
        ASSERT_OK(control_create(t, target_any_stopped(t), &w));
        ASSERT_OK(target_resume_all(t));
        ASSERT_TRUE(w.addr != 0);
}

/* A fresh reader's load of the block: 0 or -errno, its reason in rd.why. */
/* A load as an operation's step makes it: with the maps as they are now (a step drops
 * the maps the last one read; control_load() uses the step's read). */
static int load(void) {
        control_done(&rd);
        rd = (Control) { .addr = w.addr };
        procmaps_drop(t);
        return control_load(t, &rd);
}

static uint32_t generation(void) {
        uint32_t g = 0;
        ASSERT_OK(target_read(t, w.addr + CONTROL_OFF(hdr.generation), &g, sizeof(g)));
        return g;
}

static void assert_refused(const char *what) {
        int r = load();
        if (r != -EBADMSG || !strstr(rd.why, what))
                TEST__FAIL("load = %d \"%s\", expected -EBADMSG saying \"%s\"", r, rd.why, what);
}

TEST(create_then_load) {
        uint64_t found = 0;

        setup();
        ASSERT_OK(load());
        ASSERT_TRUE(memcmp(rd.img->hdr.magic, CONTROL_MAGIC, 8) == 0);
        ASSERT_EQ(rd.img->hdr.version, CONTROL_VERSION);
        ASSERT_EQ_U64(rd.img->hdr.self, w.addr);
        ASSERT_EQ(rd.img->hdr.owner_pid, getpid());
        ASSERT_EQ(rd.img->hdr.target_state, THREAD_UNDEFINED);
        ASSERT_EQ(rd.img->hdr.transition_patch, -1);
        ASSERT_EQ(rd.img->hdr.n_patches, 0);
        /* Signed blocks check out; an unprivileged creator leaves it unsigned. */
        ASSERT_EQ(rd.trusted, w.trusted);
        /* Found by its mapping's name, as every reader finds it. */
        ASSERT_EQ(control_find(getpid(), &found), 1);
        ASSERT_EQ_U64(found, w.addr);
        teardown();
}

TEST(patch_and_records_round_trip) {
        ControlPatch *p;
        ControlFunc *f;

        setup();
        p = &w.img->patches[0];
        f = &w.img->funcs[0];
        snprintf(p->name, sizeof(p->name), "fix-compute");
        snprintf(p->file, sizeof(p->file), "/x/fix.so");
        snprintf(p->late[0], sizeof(p->late[0]), "libplugin.so");
        p->state = CP_UNPATCHED;
        p->n_funcs = 1;
        p->seq = 1;
        p->map_start = 0x700000000000;
        p->map_size = 0x3000;
        *f = (ControlFunc) { .old_addr = 0x555555554000, .old_size = 64, .new_addr = 0x700000001000,
                             .new_size = 32, .displaced_len = 5, .orig_bytes = { 1, 2, 3, 4, 5 } };
        snprintf(f->symbol, sizeof(f->symbol), "compute");
        w.img->hdr.n_patches = 1;
        w.img->hdr.n_funcs = 1;
        ASSERT_OK(control_write_funcs(t, &w, 0, 1));
        ASSERT_OK(control_write_patch(t, &w, 0));
        ASSERT_OK(control_write_header(t, &w));
        ASSERT_OK(load());
        ASSERT_TRUE(memcmp(&rd.img->patches[0], p, sizeof(*p)) == 0);
        ASSERT_TRUE(memcmp(&rd.img->funcs[0], f, sizeof(*f)) == 0);
        ASSERT_EQ(control_find_patch(&rd, "fix-compute"), -ENOENT); /* not applied */
        ASSERT_EQ(control_top_func(&rd, f->old_addr, -1), -1);
        teardown();
}

/* Each write brackets itself: odd inside, even after, two more each time; a batch is
 * one bracket however many writes it holds. */
TEST(seqlock_generations) {
        uint32_t g;

        setup();
        g = generation();
        ASSERT_EQ(g % 2, 0);
        ASSERT_OK(control_write_header(t, &w));
        ASSERT_EQ(generation(), g + 2);
        ASSERT_OK(control_write_patch(t, &w, 0));
        ASSERT_EQ(generation(), g + 4);
        ASSERT_OK(control_batch_begin(t, &w));
        ASSERT_EQ(generation(), g + 5);
        ASSERT_OK(control_write_header(t, &w));
        ASSERT_OK(control_write_patch(t, &w, 0));
        ASSERT_OK(control_write_areas(t, &w));
        ASSERT_EQ(generation(), g + 5);
        ASSERT_OK(control_batch_end(t, &w));
        ASSERT_EQ(generation(), g + 6);
        ASSERT_OK(load());
        ASSERT_EQ(rd.img->hdr.generation, g + 6);
        ASSERT_EQ(rd.img->hdr.writer_pid, getpid());
        ASSERT_EQ(rd.img->hdr.writer_target, getpid());
        teardown();
}

/* Leaves the block's generation odd in the name of a live writer: a child of ours that
 * only waits (at most 30 s, should a failed assertion leave it behind). Its pid; the
 * header as written in *h. */
static pid_t hold_odd_by_live_writer(ControlHeader *h) {
        pid_t child = fork();

        ASSERT_TRUE(child >= 0);
        if (child == 0) {
                alarm(30);
                pause();
                _exit(0);
        }
        ASSERT_OK(target_read(t, w.addr, h, sizeof(*h)));
        h->generation |= 1;
        h->writer_pid = child;
        h->writer_start = control_proc_start_time(child);
        h->writer_target = getpid();
        ASSERT_OK(target_write(t, w.addr, h, sizeof(*h)));
        return child;
}

/* An odd generation whose writer is alive (another process, same start time) is busy;
 * one whose writer is gone is read after a few tries. */
TEST(seqlock_writer_inside) {
        ControlHeader h;
        pid_t child;
        int st;

        setup();
        child = hold_odd_by_live_writer(&h);
        ASSERT_ERR(load(), -EBUSY);
        ASSERT_TRUE(strstr(rd.why, "busy: another process kept writing it"));
        kill(child, SIGKILL);
        ASSERT_EQ(waitpid(child, &st, 0), child);
        ASSERT_OK(load());
        /* The same writer pid with another start time: reused, gone. */
        h.writer_pid = getppid();
        h.writer_start = 1;
        ASSERT_OK(target_write(t, w.addr, &h, sizeof(h)));
        ASSERT_OK(load());
        /* A write from a process working on another pid: a forked copy, never finished. */
        h.writer_pid = getppid();
        h.writer_start = control_proc_start_time(getppid());
        h.writer_target = getpid() + 1;
        ASSERT_OK(target_write(t, w.addr, &h, sizeof(h)));
        ASSERT_OK(load());
        teardown();
}

static long long elapsed_ms(const struct timespec *since) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        return (long long)(now.tv_sec - since->tv_sec) * 1000 + (now.tv_nsec - since->tv_nsec) / 1000000;
}

/* A block that stays odd under a live writer: waited on 90 ms once (each retry sleeps,
 * so never less), then, for a second, read without waiting (a forged block per process
 * must not cost every listing 90 ms a process). A dead writer is recognized either way. */
static void *busy_waits_once(void *arg) {
        ControlHeader h;
        struct timespec t0;
        pid_t child;
        int st;

        (void) arg;
        child = hold_odd_by_live_writer(&h);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        ASSERT_ERR(load(), -EBUSY);
        ASSERT_TRUE(elapsed_ms(&t0) >= 80);
        for (int i = 0; i < 20; i++) {
                clock_gettime(CLOCK_MONOTONIC, &t0);
                ASSERT_ERR(load(), -EBUSY);
                ASSERT_TRUE(strstr(rd.why, "busy: another process kept writing it"));
                ASSERT_TRUE(elapsed_ms(&t0) < 50);
        }
        /* Past the second: a full wait again. */
        usleep(1100 * 1000);
        clock_gettime(CLOCK_MONOTONIC, &t0);
        ASSERT_ERR(load(), -EBUSY);
        ASSERT_TRUE(elapsed_ms(&t0) >= 80);
        /* Impatient now: the writer's death is still seen, and the block read. */
        kill(child, SIGKILL);
        ASSERT_EQ(waitpid(child, &st, 0), child);
        ASSERT_OK(load());
        return NULL;
}

TEST(seqlock_busy_waits_once_a_second) {
        pthread_t th;

        setup();
        /* a thread of its own: the patience is per thread, this one's is spent above */
        ASSERT_EQ(pthread_create(&th, NULL, busy_waits_once, NULL), 0);
        ASSERT_EQ(pthread_join(th, NULL), 0);
        teardown();
}

/* A writer names itself by its start time, read once per process: a forked child
 * (here started at least one clock tick after this process) reads its own. */
TEST(self_start_time_per_process) {
        uint64_t mine = control_proc_start_time(getpid());
        pid_t child;
        int st;

        ASSERT_TRUE(mine != 0);
        ASSERT_EQ_U64(control_self_start_time(), mine);
        ASSERT_EQ_U64(control_self_start_time(), mine);
        while (control_proc_start_time(getpid()) * 1000 / (uint64_t)sysconf(_SC_CLK_TCK) + 20 >=
               (uint64_t)clock_ms_since_boot())
                usleep(5000);
        child = fork();
        ASSERT_TRUE(child >= 0);
        if (child == 0)
                _exit(control_self_start_time() == control_proc_start_time(getpid()) &&
                      control_self_start_time() != mine ? 0 : 1);
        ASSERT_EQ(waitpid(child, &st, 0), child);
        ASSERT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0);
}

TEST(thread_table_round_trip) {
        int slot;

        setup();
        ASSERT_ERR(control_table_find(&w, 0x7f00deadb000), -ENOENT);
        /* Two thread pointers with the same hash probe on. */
        w.img->table_tp[100] = 0x7f0000001000;
        w.img->table_state[100] = THREAD_UNPATCHED;
        w.img->table_tp[101] = 0x7f0000002000;
        w.img->table_state[101] = THREAD_PATCHED;
        ASSERT_OK(control_write_table(t, &w));
        ASSERT_OK(control_write_thread_state(t, &w, 100, THREAD_PATCHED));
        ASSERT_OK(load());
        ASSERT_OK(control_read_table(t, &rd));
        ASSERT_EQ_U64(rd.img->table_tp[100], 0x7f0000001000);
        ASSERT_EQ(rd.img->table_state[100], THREAD_PATCHED);
        ASSERT_EQ(rd.img->table_state[101], THREAD_PATCHED);
        slot = (int)thread_table_hash(0x7f0000003000, CONTROL_TABLE_ORDER);
        w.img->table_tp[slot] = 0x7f0000003000;
        ASSERT_EQ(control_table_find(&w, 0x7f0000003000), slot);
        /* A state byte no writer makes: the writer refuses to make it (an invariant), and
         * a reader refuses a block where something else wrote it. */
        ASSERT_ERR(control_write_thread_state(t, &w, 101, 7), -EUCLEAN);
        ASSERT_OK(target_write(t, w.addr + CONTROL_OFF(table_state) + 101, &(uint8_t) { 7 }, 1));
        ASSERT_ERR(control_read_table(t, &rd), -EBADMSG);
        ASSERT_STREQ(rd.why, "thread table slot 101 has unknown state 7");
        teardown();
}

TEST(stragglers_round_trip) {
        ControlStraggler v[CONTROL_MAX_STRAGGLERS + 3] = {};

        setup();
        for (unsigned i = 0; i < CONTROL_MAX_STRAGGLERS + 3; i++) {
                v[i].tid = (int32_t)(1000 + i);
                snprintf(v[i].comm, sizeof(v[i].comm), "worker%u", i);
                snprintf(v[i].blocker, sizeof(v[i].blocker), "compute+0x%x", i);
        }
        ASSERT_OK(control_write_stragglers(t, &w, v, 2, 7));
        ASSERT_OK(load());
        ASSERT_OK(control_read_stragglers(t, &rd));
        ASSERT_EQ(rd.img->stragglers.n, 2);
        ASSERT_EQ(rd.img->stragglers.pass, 7);
        ASSERT_EQ(rd.img->stragglers.v[1].tid, 1001);
        ASSERT_STREQ(rd.img->stragglers.v[1].blocker, "compute+0x1");
        /* At most CONTROL_MAX_STRAGGLERS are kept. */
        ASSERT_OK(control_write_stragglers(t, &w, v, CONTROL_MAX_STRAGGLERS + 3, 8));
        ASSERT_OK(control_read_stragglers(t, &rd));
        ASSERT_EQ(rd.img->stragglers.n, CONTROL_MAX_STRAGGLERS);
        ASSERT_OK(control_write_stragglers(t, &w, NULL, 0, 9));
        ASSERT_OK(control_read_stragglers(t, &rd));
        ASSERT_EQ(rd.img->stragglers.n, 0);
        teardown();
}

/* What a reader refuses although the block itself validates: areas that are not
 * mappings ulp made, a block that is not in its memfd. */
TEST(refuses_foreign_mappings) {
        ControlImage *copy;
        void *rw;

        setup();
        rw = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        ASSERT_TRUE(rw != MAP_FAILED);
        w.img->areas[0] = (ControlArea) { .addr = (uint64_t)(uintptr_t)rw, .size = 4096 };
        w.img->hdr.n_areas = 1;
        ASSERT_OK(control_write_areas(t, &w));
        ASSERT_OK(control_write_header(t, &w));
        assert_refused("is not a mapping ulp made");
        ASSERT_OK(mprotect(rw, 4096, PROT_READ | PROT_EXEC));
        ASSERT_OK(load());
        munmap(rw, 4096);

        /* A copy on the heap, self pointing at itself, is no control block mapping. */
        copy = malloc(sizeof(*copy));
        ASSERT_TRUE(copy);
        w.img->hdr.n_areas = 0;
        memcpy(copy, w.img, sizeof(*copy));
        copy->hdr.self = (uint64_t)(uintptr_t)copy;
        control_done(&rd);
        rd = (Control) { .addr = (uint64_t)(uintptr_t)copy };
        ASSERT_ERR(control_load(t, &rd), -EBADMSG);
        ASSERT_STREQ(rd.why, "it is no longer mapped");
        free(copy);
        teardown();
}

/* A mapping whose creator died before writing anything: -ENODATA, and the next
 * create reuses it. */
TEST(unborn_block_is_reused) {
        void *m;
        uint64_t addr;

        setup();
        m = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        ASSERT_TRUE(m != MAP_FAILED);
        control_done(&rd);
        rd = (Control) { .addr = (uint64_t)(uintptr_t)m };
        ASSERT_ERR(control_load(t, &rd), -ENODATA);
        munmap(m, 4096);
        /* control_create() with unborn_addr of a real but zeroed block mapping. */
        addr = w.addr;
        ASSERT_OK(target_write(t, addr, (uint8_t[4096]) {}, 4096));
        ASSERT_ERR(load(), -ENODATA);
        control_done(&w);
        w = (Control) { .unborn_addr = addr };
        ASSERT_OK(target_stop_all(t));
        ASSERT_OK(control_create(t, target_any_stopped(t), &w));
        ASSERT_OK(target_resume_all(t));
        ASSERT_EQ_U64(w.addr, addr);
        ASSERT_OK(load());
        teardown();
}

/* Pages of a local copy that are resident: what was touched of its 2.1 MiB. */
static size_t resident_pages(const Control *c) {
        uintptr_t lo = (uintptr_t)c->img & ~(uintptr_t)4095;
        size_t len = ((uintptr_t)c->img + sizeof(ControlImage) - lo + 4095) & ~(size_t)4095, n = 0;
        unsigned char vec[sizeof(ControlImage) / 4096 + 2];

        ASSERT_OK(mincore((void *)lo, len, vec));
        for (size_t i = 0; i < len / 4096; i++)
                n += vec[i] & 1;
        return n;
}

/* A load touches the header, the areas and the records in use, not the whole copy;
 * nor does a creation. Loads one after another (a driver's operations) each get fresh
 * pages, never a recycled copy cleared whole. */
TEST(copy_touches_what_is_used) {
        const size_t most = 48, all = sizeof(ControlImage) / 4096;

        setup();
        if (resident_pages(&w) > most)
                TEST__FAIL("control_create touched %zu pages of %zu", resident_pages(&w), all);
        for (int i = 0; i < 4; i++) {
                ASSERT_OK(load());
                if (resident_pages(&rd) > most)
                        TEST__FAIL("load %d touched %zu pages of %zu", i, resident_pages(&rd), all);
        }
        ASSERT_OK(control_read_table(t, &rd));
        ASSERT_TRUE(resident_pages(&rd) <= most + sizeof(rd.img->table_tp) / 4096 + sizeof(rd.img->table_state) / 4096 + 2);
        teardown();
}

/* A thread keeps the copy of its last operation for the next one: the same mapping,
 * with every byte the last one wrote cleared (a page far out in the function records, one
 * in the thread table, the last byte), and what a load reads in place. */
TEST(kept_copy_is_reused_cleared) {
        uint8_t *b;
        ControlImage *first;

        setup();
        control_kept_drop();
        ASSERT_OK(load());
        first = rd.img;
        memset(&rd.img->funcs[CONTROL_MAX_FUNCS - 1], 0xab, sizeof(rd.img->funcs[0]));
        rd.img->table_tp[CONTROL_TABLE_SLOTS / 2] = 0x1234;
        b = (uint8_t *)rd.img;
        b[sizeof(ControlImage) - 1] = 0x5a;
        control_done(&rd);
        ASSERT_OK(load());
        ASSERT_TRUE(rd.img == first);
        b = (uint8_t *)&rd.img->funcs[CONTROL_MAX_FUNCS - 1];
        for (size_t i = 0; i < sizeof(rd.img->funcs[0]); i++)
                ASSERT_EQ(b[i], 0);
        ASSERT_EQ(rd.img->table_tp[CONTROL_TABLE_SLOTS / 2], 0);
        ASSERT_EQ(((uint8_t *)rd.img)[sizeof(ControlImage) - 1], 0);
        ASSERT_TRUE(memcmp(rd.img->hdr.magic, CONTROL_MAGIC, 8) == 0);
        teardown();
        control_kept_drop();
}

TEST_MAIN()
