/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Integration tests of unwind/: threads of victim-unwind, stopped here with a few lines
 * of ptrace, unwound, their frames symbolized (by a separate libdwfl session on the
 * victim's symbol tables) and compared with the chains the victim is known to sit in.
 */

#include <elfutils/libdwfl.h>
#include <fcntl.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/macro.h"
#include "elf/module.h"
#include "patcher/control.h"
#include "patcher/unwcache.h"
#include "tests/test.h"
#include "unwind/unwind.h"

#if !defined(VICTIM_PATH) || !defined(VICTIM_PATCH_PATH) || !defined(VICTIM_DLOPEN_PATH) || \
    !defined(VICTIM_BIG_PATH) || !defined(VICTIM_HOSTILE_PATH) || !defined(VICTIM_NOFDE_PATH)
#error "VICTIM_PATH, VICTIM_PATCH_PATH and the dlopen victim's paths must be defined"
#endif

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

enum {
        ROLE_MAIN, ROLE_CHAIN, ROLE_NOCFI, ROLE_ANON, ROLE_SIGNAL, ROLE_DEEP, ROLE_PATCH,
        ROLE_MAX
};
static const char *const role_names[ROLE_MAX] = {
        "main", "chain", "nocfi", "anon", "signal", "deep", "patch",
};

typedef struct Victim {
        pid_t pid;
        pid_t tids[ROLE_MAX];
        ModuleList mods;
        Dwfl *sym;               /* symbolizer, independent of the code under test */
        pid_t stopped;           /* thread we seized, 0 when none */
} Victim;

static Victim victim;

/* Kills the victim and reaps it and its threads (we may be their tracer). */
static void victim_kill(void) {
        if (victim.pid <= 0)
                return;
        kill(victim.pid, SIGKILL);
        while (waitpid(-1, NULL, __WALL) > 0 || errno == EINTR)
                ;
        if (victim.sym)
                dwfl_end(victim.sym);
        modulelist_done(&victim.mods);
        victim = (Victim) {};
}

/* The state letter of /proc/PID/task/TID/stat, or 0. */
static char thread_state(pid_t pid, pid_t tid) {
        char path[64], buf[512];
        ssize_t n;
        int fd;

        snprintf(path, sizeof(path), "/proc/%d/task/%d/stat", pid, tid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return 0;
        n = read(fd, buf, sizeof(buf) - 1);
        close(fd);
        if (n <= 0)
                return 0;
        buf[n] = '\0';
        char *p = strrchr(buf, ')');
        return p && p[1] == ' ' ? p[2] : 0;
}

static const Dwfl_Callbacks sym_callbacks = {
        .find_elf = dwfl_linux_proc_find_elf,
        .find_debuginfo = dwfl_standard_find_debuginfo,
};

/* Starts the victim, learns its thread ids, waits until every thread sleeps (parked in
 * its chain) and reads its modules. */
static void victim_start(void) {
        int p[2];
        char line[128];
        FILE *f;

        victim_kill();
        ASSERT_OK(pipe2(p, O_CLOEXEC));
        victim.pid = fork();
        ASSERT_TRUE(victim.pid >= 0);
        if (victim.pid == 0) {
                dup2(p[1], STDOUT_FILENO);
                execl(VICTIM_PATH, VICTIM_PATH, VICTIM_PATCH_PATH, (char *) NULL);
                _exit(127);
        }
        close(p[1]);
        f = fdopen(p[0], "r");
        ASSERT_TRUE(f);
        while (fgets(line, sizeof(line), f) && strcmp(line, "ready\n") != 0) {
                char role[32];
                int tid;
                if (sscanf(line, "%31s %d", role, &tid) != 2)
                        continue;
                for (int i = 0; i < ROLE_MAX; i++)
                        if (strcmp(role, role_names[i]) == 0)
                                victim.tids[i] = tid;
        }
        fclose(f);
        for (int i = 0; i < ROLE_MAX; i++) {
                ASSERT_TRUE(victim.tids[i] > 0);
                for (int k = 0; k < 2000 && thread_state(victim.pid, victim.tids[i]) != 'S'; k++)
                        usleep(1000);
                ASSERT_EQ(thread_state(victim.pid, victim.tids[i]), 'S');
        }
        /* The last instructions before the blocking syscalls are not sleeping yet. */
        usleep(20000);

        ASSERT_OK(modules_read(victim.pid, &victim.mods));
        victim.sym = dwfl_begin(&sym_callbacks);
        ASSERT_TRUE(victim.sym);
        /* from modules_read's list, through map_files: /proc/PID/maps scanning by
         * libdwfl would miss the memfd-backed patch */
        dwfl_report_begin(victim.sym);
        for (size_t i = 0; i < victim.mods.n; i++)
                ASSERT_TRUE(dwfl_report_elf(victim.sym, victim.mods.v[i].path,
                                            victim.mods.v[i].open_path, -1,
                                            victim.mods.v[i].bias, true));
        ASSERT_OK(dwfl_report_end(victim.sym, NULL, NULL) == 0 ? 0 : -EIO);
}

/* Stops one thread the way the patcher does: seize, interrupt, wait, read registers. */
static void thread_stop(pid_t tid, struct user_regs_struct *regs) {
        int status;

        ASSERT_OK(ptrace(PTRACE_SEIZE, tid, 0, 0));
        victim.stopped = tid;
        ASSERT_OK(ptrace(PTRACE_INTERRUPT, tid, 0, 0));
        ASSERT_EQ(waitpid(tid, &status, __WALL), tid);
        ASSERT_TRUE(WIFSTOPPED(status));
        ASSERT_OK(ptrace(PTRACE_GETREGS, tid, 0, regs));
}

static void thread_resume(void) {
        if (victim.stopped > 0)
                ptrace(PTRACE_DETACH, victim.stopped, 0, 0);
        victim.stopped = 0;
}

/* The unwind_read_fn of the real caller: process_vm_readv. */
static int read_vm(void *userdata, uint64_t addr, void *buf, size_t len) {
        pid_t pid = *(pid_t *) userdata;
        struct iovec local = { buf, len }, remote = { (void *) (uintptr_t) addr, len };
        ssize_t n = process_vm_readv(pid, &local, 1, &remote, 1, 0);

        if (n < 0)
                return negative_errno();
        return (size_t) n == len ? 0 : -EIO;
}

/* Name of the function containing frame i of res ("?" if none). */
static const char *frame_name(const UnwindResult *res, size_t i) {
        uint64_t pc = i == 0 ? res->pcs[0] : res->pcs[i] - 1;
        Dwfl_Module *mod;

        /* none for the dlopen victim: it would map the file a test truncates */
        if (!victim.sym)
                return "?";
        mod = dwfl_addrmodule(victim.sym, pc);
        const char *name = mod ? dwfl_module_addrname(mod, pc) : NULL;

        /* The signal trampoline is "returned" to at its first byte: pc - 1 is the nop
         * glibc puts before it, inside its FDE but in no symbol. */
        if (!name && i > 0) {
                mod = dwfl_addrmodule(victim.sym, res->pcs[i]);
                name = mod ? dwfl_module_addrname(mod, res->pcs[i]) : NULL;
        }
        return name ? name : "?";
}

static void print_result(const char *what, const UnwindResult *res) {
        fprintf(stderr, "  %s: %zu frames, %s%s%s\n", what, res->n,
                res->reliable ? "reliable" : "unreliable",
                res->reliable ? "" : ": ", res->reason);
        for (size_t i = 0; i < res->n && i < 12; i++)
                fprintf(stderr, "    #%-2zu 0x%012" PRIx64 " %s\n", i, res->pcs[i],
                        frame_name(res, i));
}

/* Index of the first frame named name at or after from, or -1. */
static long find_frame(const UnwindResult *res, size_t from, const char *name) {
        for (size_t i = from; i < res->n; i++)
                if (strcmp(frame_name(res, i), name) == 0)
                        return (long) i;
        return -1;
}

/* Asserts that names appear as consecutive frames, the first at or after from. */
static long expect_chain(const UnwindResult *res, size_t from, const char *const *names,
                         size_t n) {
        long at = find_frame(res, from, names[0]);

        if (at < 0)
                TEST__FAIL("no frame %s", names[0]);
        for (size_t k = 1; k < n; k++)
                if ((size_t) at + k >= res->n || strcmp(frame_name(res, at + k), names[k]) != 0)
                        TEST__FAIL("frame #%ld is %s, expected %s", at + (long) k,
                                   (size_t) at + k < res->n ? frame_name(res, at + k) : "(end)",
                                   names[k]);
        return at;
}

/* Stops thread role, unwinds it with a fresh unwinder, resumes it. */
static void unwind_role(int role, UnwindResult *res) {
        struct user_regs_struct regs;
        Unwinder *u;

        ASSERT_OK(unwinder_new(victim.pid, &victim.mods, read_vm, &victim.pid, &u));
        thread_stop(victim.tids[role], &regs);
        int r = unwinder_unwind(u, victim.tids[role], &regs, res);
        thread_resume();
        unwinder_free(u);
        ASSERT_OK(r);
        ASSERT_TRUE(res->n > 0);
        ASSERT_EQ_U64(res->pcs[0], regs.rip);
        print_result(role_names[role], res);
}

TEST(main_thread_reliable) {
        static const char *const chain[] = { "c", "b", "a", "main" };
        UnwindResult res;

        victim_start();
        unwind_role(ROLE_MAIN, &res);
        ASSERT_TRUE(res.reliable);
        ASSERT_STREQ(res.reason, "");
        /* c is right above the libc syscall wrapper it blocks in */
        long at = expect_chain(&res, 0, chain, ELEMENTSOF(chain));
        ASSERT_TRUE(at >= 1 && at <= 2);
        ASSERT_STREQ(frame_name(&res, res.n - 1), "_start");
        victim_kill();
}

TEST(pthread_reliable) {
        static const char *const chain[] = { "f2", "f1", "chain_thread", "start_thread" };
        UnwindResult res;

        victim_start();
        unwind_role(ROLE_CHAIN, &res);
        ASSERT_TRUE(res.reliable);
        long at = expect_chain(&res, 0, chain, ELEMENTSOF(chain));
        ASSERT_TRUE(at >= 1 && at <= 2);
        /* the clone3 child marks the end of the stack */
        ASSERT_EQ((long) res.n, at + (long) ELEMENTSOF(chain) + 1);
        ASSERT_STREQ(frame_name(&res, res.n - 1), "__clone3");
        victim_kill();
}

TEST(no_cfi_unreliable) {
        static const char *const chain[] = { "nocfi_park", "nocfi_thread", "start_thread",
                                             "__clone3" };
        UnwindResult res;

        victim_start();
        unwind_role(ROLE_NOCFI, &res);
        /* libdw found nocfi_park's caller by its frame-pointer fallback (nocfi_park keeps
         * a frame pointer), went on by CFI and ended "normally": the chain is even right,
         * but it was a guess. */
        long at = expect_chain(&res, 0, chain, ELEMENTSOF(chain));
        ASSERT_TRUE(at >= 1 && at <= 2);
        ASSERT_EQ((long) res.n, at + (long) ELEMENTSOF(chain));
        ASSERT_TRUE(!res.reliable);
        ASSERT_TRUE(strstr(res.reason, "no CFI"));
        ASSERT_TRUE(strstr(res.reason, "victim-unwind"));
        char want[32];
        snprintf(want, sizeof(want), "frame #%ld ", at);
        ASSERT_TRUE(strstr(res.reason, want));
        victim_kill();
}

TEST(anonymous_code_unreliable) {
        UnwindResult res;

        victim_start();
        unwind_role(ROLE_ANON, &res);
        ASSERT_TRUE(!res.reliable);
        ASSERT_TRUE(strstr(res.reason, "frame #0 "));
        ASSERT_TRUE(strstr(res.reason, "outside any module"));
        ASSERT_TRUE(modules_find_addr(&victim.mods, res.pcs[0]) == NULL);
        victim_kill();
}

TEST(signal_frame_unreliable) {
        static const char *const inner[] = { "h_inner", "handler", "__restore_rt" };
        static const char *const outer[] = { "sig_outer", "signal_thread", "start_thread",
                                             "__clone3" };
        UnwindResult res;

        victim_start();
        unwind_role(ROLE_SIGNAL, &res);
        /* libdw unwinds through __restore_rt (CIE augmentation "S") into the interrupted
         * frame and on to the end: the chain is complete and correct... */
        long at = expect_chain(&res, 0, inner, ELEMENTSOF(inner));
        long out = expect_chain(&res, at + ELEMENTSOF(inner), outer, ELEMENTSOF(outer));
        ASSERT_EQ((long) res.n, out + (long) ELEMENTSOF(outer));
        /* ...but code interrupted by a signal is not at a call site: never reliable. */
        ASSERT_TRUE(!res.reliable);
        ASSERT_TRUE(strstr(res.reason, "signal frame"));
        victim_kill();
}

TEST(deep_recursion_capped) {
        UnwindResult res;

        victim_start();
        unwind_role(ROLE_DEEP, &res);
        ASSERT_TRUE(!res.reliable);
        ASSERT_EQ(res.n, UNWIND_MAX_FRAMES);
        ASSERT_TRUE(strstr(res.reason, "more than"));
        for (size_t i = 3; i < res.n; i++)
                ASSERT_STREQ(frame_name(&res, i), "deep");
        victim_kill();
}

/* The unwinder is reused across threads and after its module set changes. */
TEST(reuse_and_set_modules) {
        static const char *const chain[] = { "c", "b", "a", "main" };
        struct user_regs_struct regs;
        UnwindResult res;
        Unwinder *u;
        size_t n_ok = 0, n_failed = 0;

        victim_start();
        ASSERT_OK(unwinder_new(victim.pid, &victim.mods, read_vm, &victim.pid, &u));
        unwinder_module_counts(u, &n_ok, &n_failed);
        ASSERT_EQ(n_ok, victim.mods.n);
        ASSERT_EQ(n_failed, 0);

        /* Without the main executable, main's frames are outside any module. */
        ModuleList without_main = victim.mods;
        ASSERT_TRUE(victim.mods.v[0].is_main);
        without_main.v++;
        without_main.n--;
        ASSERT_OK(unwinder_set_modules(u, &without_main));
        unwinder_module_counts(u, &n_ok, &n_failed);
        ASSERT_EQ(n_ok, without_main.n);
        ASSERT_EQ(n_failed, 0);

        thread_stop(victim.tids[ROLE_MAIN], &regs);
        ASSERT_OK(unwinder_unwind(u, victim.tids[ROLE_MAIN], &regs, &res));
        print_result("main, executable not reported", &res);
        ASSERT_TRUE(!res.reliable);
        ASSERT_TRUE(strstr(res.reason, "outside any module"));

        /* twice: the second time every module is already known and kept */
        for (int k = 0; k < 2; k++) {
                ASSERT_OK(unwinder_set_modules(u, &victim.mods));
                unwinder_module_counts(u, &n_ok, &n_failed);
                ASSERT_EQ(n_ok, victim.mods.n);
                ASSERT_EQ(n_failed, 0);
        }
        ASSERT_OK(unwinder_unwind(u, victim.tids[ROLE_MAIN], &regs, &res));
        ASSERT_TRUE(res.reliable);
        expect_chain(&res, 0, chain, ELEMENTSOF(chain));
        thread_resume();

        /* the same unwinder on the other threads, in between */
        thread_stop(victim.tids[ROLE_NOCFI], &regs);
        ASSERT_OK(unwinder_unwind(u, victim.tids[ROLE_NOCFI], &regs, &res));
        ASSERT_TRUE(!res.reliable);
        thread_resume();
        thread_stop(victim.tids[ROLE_CHAIN], &regs);
        ASSERT_OK(unwinder_unwind(u, victim.tids[ROLE_CHAIN], &regs, &res));
        ASSERT_TRUE(res.reliable);
        thread_resume();

        unwinder_free(u);
        victim_kill();
}

/* A patch mapped from a memfd ("/memfd:ulp-patch:NAME", reported through map_files):
 * before the unwinder knows of it, a thread inside it is outside any module; after
 * unwinder_set_modules, its stack is reliable. */
TEST(patch_module_from_memfd) {
        static const char *const chain[] = { "patch_inner", "patch_park", "patch_thread" };
        struct user_regs_struct regs;
        UnwindResult res;
        Unwinder *u;
        const Module *pm = NULL;

        victim_start();
        for (size_t i = 0; i < victim.mods.n; i++)
                if (victim.mods.v[i].is_patch)
                        pm = &victim.mods.v[i];
        ASSERT_TRUE(pm);
        ASSERT_STREQ(pm->path, "/memfd:ulp-patch:unwind");
        ASSERT_TRUE(pm == &victim.mods.v[victim.mods.n - 1]); /* patches come last */

        ModuleList before = victim.mods;
        before.n--;
        ASSERT_OK(unwinder_new(victim.pid, &before, read_vm, &victim.pid, &u));
        thread_stop(victim.tids[ROLE_PATCH], &regs);
        ASSERT_OK(unwinder_unwind(u, victim.tids[ROLE_PATCH], &regs, &res));
        print_result("patch, not yet reported", &res);
        ASSERT_TRUE(!res.reliable);
        ASSERT_TRUE(strstr(res.reason, "outside any module"));

        ASSERT_OK(unwinder_set_modules(u, &victim.mods));
        ASSERT_OK(unwinder_unwind(u, victim.tids[ROLE_PATCH], &regs, &res));
        thread_resume();
        print_result("patch", &res);
        ASSERT_TRUE(res.reliable);
        long at = expect_chain(&res, 0, chain, ELEMENTSOF(chain));
        ASSERT_TRUE(at >= 1 && at <= 2);
        ASSERT_TRUE(modules_find_addr(&victim.mods, res.pcs[at]) == pm);
        unwinder_free(u);
        victim_kill();
}

/* Stops the dlopen victim once its PC is in the module whose path ends in name (it says
 * "ready" before it calls the function: on a loaded machine it may not be there yet). */
static void dlopen_victim_stop_in(const char *name, struct user_regs_struct *regs) {
        for (int i = 0; i < 500; i++) {
                const Module *m;

                thread_stop(victim.pid, regs);
                m = modules_find_addr(&victim.mods, regs->rip);
                if (m && m->path && strlen(m->path) >= strlen(name) &&
                    strcmp(m->path + strlen(m->path) - strlen(name), name) == 0)
                        return;
                thread_resume();
                usleep(10000);
        }
        ASSERT_TRUE(!"the victim reached its function within 5 s");
}

/* victim-dlopen with lib and fn, as the victim (victim_kill() ends it); its modules read
 * once it said "ready". */
static void dlopen_victim_start(const char *lib, const char *fn) {
        int p[2];
        char line[128] = "";
        FILE *f;

        victim_kill();
        ASSERT_OK(pipe2(p, O_CLOEXEC));
        victim.pid = fork();
        ASSERT_TRUE(victim.pid >= 0);
        if (victim.pid == 0) {
                dup2(p[1], STDOUT_FILENO);
                execl(VICTIM_DLOPEN_PATH, VICTIM_DLOPEN_PATH, lib, fn, (char *) NULL);
                _exit(127);
        }
        close(p[1]);
        f = fdopen(p[0], "r");
        ASSERT_TRUE(f);
        ASSERT_TRUE(fgets(line, sizeof(line), f) != NULL);
        fclose(f);
        ASSERT_STREQ(line, "ready\n");
        ASSERT_OK(modules_read(victim.pid, &victim.mods));
}

/* A copy of the library at from, at to, writable by others (a file its user could
 * change, whoever owns it). */
static void copy_file(const char *from, const char *to) {
        char buf[65536];
        int in, out;
        ssize_t n;

        in = open(from, O_RDONLY | O_CLOEXEC);
        ASSERT_TRUE(in >= 0);
        out = open(to, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        ASSERT_TRUE(out >= 0);
        ASSERT_OK(fchmod(out, 0666));
        while ((n = read(in, buf, sizeof(buf))) > 0)
                ASSERT_EQ(write(out, buf, (size_t) n), n);
        close(in);
        close(out);
}

/* A library of the target's user without CFI for the thread's PC, with debug sections
 * compressed from 96 MiB of zeros: not given to libdwfl (which would inflate them all, for
 * .debug_frame, and keep them as long as the unwinder), so the frame is outside any
 * module. The same library without them is given. */
TEST(inflating_module_refused) {
        char dir[] = "/tmp/ulp-unwind-XXXXXX", plain[64], bomb[64], zeros[64], cmd[640];
        struct user_regs_struct regs;
        UnwindResult res;
        size_t reported, failed;
        Unwinder *u;
        int fd;

        ASSERT_TRUE(mkdtemp(dir) != NULL);
        snprintf(plain, sizeof(plain), "%s/plain.so", dir);
        snprintf(bomb, sizeof(bomb), "%s/bomb.so", dir);
        snprintf(zeros, sizeof(zeros), "%s/zeros", dir);
        copy_file(VICTIM_NOFDE_PATH, plain);
        fd = open(zeros, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(ftruncate(fd, 96 << 20));
        close(fd);
        /* (objcopy compresses only sections already there) */
        snprintf(cmd, sizeof(cmd), "objcopy --add-section .debug_info=%s --set-section-flags .debug_info=readonly,debug "
                 "%s %s.tmp && objcopy --compress-debug-sections=zlib %s.tmp %s && rm %s.tmp && chmod 666 %s",
                 zeros, plain, bomb, bomb, bomb, bomb, bomb);
        ASSERT_EQ(system(cmd), 0);
        unlink(zeros);

        dlopen_victim_start(plain, "nofde_spin");
        ASSERT_OK(unwinder_new(victim.pid, &victim.mods, read_vm, &victim.pid, &u));
        unwinder_module_counts(u, &reported, &failed);
        ASSERT_EQ(failed, 0);
        unwinder_free(u);

        dlopen_victim_start(bomb, "nofde_spin");
        ASSERT_OK(unwinder_new(victim.pid, &victim.mods, read_vm, &victim.pid, &u));
        unwinder_module_counts(u, &reported, &failed);
        ASSERT_EQ(failed, 1);
        dlopen_victim_stop_in("/bomb.so", &regs);
        ASSERT_OK(unwinder_unwind(u, victim.pid, &regs, &res));
        print_result("in a module whose debug sections inflate to 96 MiB", &res);
        ASSERT_TRUE(!res.reliable);
        ASSERT_TRUE(strstr(res.reason, "outside any module") != NULL);
        thread_resume();
        unwinder_free(u);
        victim_kill();
        unlink(plain);
        unlink(bomb);
        rmdir(dir);
}

static long self_rss_kib(void) {
        char line[256];
        long kib = -1;
        FILE *f = fopen("/proc/self/status", "re");

        ASSERT_TRUE(f != NULL);
        while (fgets(line, sizeof(line), f))
                if (strncmp(line, "VmRSS:", 6) == 0)
                        kib = strtol(line + 6, NULL, 10);
        fclose(f);
        return kib;
}

/* A library without CFI for the thread's PC whose build-id names an installed debug
 * file (/usr/lib/debug/.build-id) with debug sections compressed from 96 MiB of zeros:
 * the build-id is the target's to choose, and libdw would inflate the file's sections,
 * looking for .debug_frame, and keep them. The file is not used: the unwinder does not
 * grow by them, and the frame is unreliable. */
TEST(inflating_debug_file_refused) {
        char dir[] = "/tmp/ulp-unwind-XXXXXX", lib[64], dbg[64], zeros[64], script[64], idfile[64];
        char cmd[2048], hex[64] = "", installed[256], subdir[64];
        struct user_regs_struct regs;
        UnwindResult res;
        Unwinder *u;
        long before, after;
        FILE *f;
        int fd;

        if (geteuid() != 0)
                test_skip("installing a file under /usr/lib/debug/.build-id needs root");
        ASSERT_TRUE(mkdtemp(dir) != NULL);
        snprintf(lib, sizeof(lib), "%s/lib.so", dir);
        snprintf(dbg, sizeof(dbg), "%s/lib.debug", dir);
        snprintf(zeros, sizeof(zeros), "%s/zeros", dir);
        snprintf(script, sizeof(script), "%s/id.py", dir);
        snprintf(idfile, sizeof(idfile), "%s/id", dir);
        copy_file(VICTIM_NOFDE_PATH, lib);
        /* a build-id of its own: no installed file can be this run's but the one it makes */
        f = fopen(script, "we");
        ASSERT_TRUE(f != NULL);
        fputs("import sys, os, subprocess\n"
              "p = sys.argv[1]\n"
              "out = subprocess.run(['readelf', '-n', p], capture_output=True, text=True).stdout\n"
              "old = bytes.fromhex(out.split('Build ID: ')[1].split()[0])\n"
              "new = os.urandom(len(old))\n"
              "b = open(p, 'rb').read()\n"
              "assert b.count(old) == 1\n"
              "open(p, 'wb').write(b.replace(old, new))\n"
              "open(sys.argv[2], 'w').write(new.hex())\n", f);
        fclose(f);
        snprintf(cmd, sizeof(cmd), "python3 %s %s %s", script, lib, idfile);
        ASSERT_EQ(system(cmd), 0);
        f = fopen(idfile, "re");
        ASSERT_TRUE(f != NULL && fgets(hex, sizeof(hex), f) != NULL);
        fclose(f);
        ASSERT_TRUE(strlen(hex) >= 4);
        fd = open(zeros, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        ASSERT_TRUE(fd >= 0);
        ASSERT_OK(ftruncate(fd, 96 << 20));
        close(fd);
        snprintf(subdir, sizeof(subdir), "/usr/lib/debug/.build-id/%.2s", hex);
        snprintf(installed, sizeof(installed), "%s/%s.debug", subdir, hex + 2);
        snprintf(cmd, sizeof(cmd), "objcopy --only-keep-debug %s %s.tmp && objcopy --add-section .debug_info=%s "
                 "--set-section-flags .debug_info=readonly,debug %s.tmp %s.tmp2 && mkdir -p %s && "
                 "objcopy --compress-debug-sections=zlib %s.tmp2 %s && rm -f %s.tmp %s.tmp2 %s",
                 lib, dbg, zeros, dbg, dbg, subdir, dbg, installed, dbg, dbg, zeros);
        ASSERT_EQ(system(cmd), 0);

        dlopen_victim_start(lib, "nofde_spin");
        ASSERT_OK(unwinder_new(victim.pid, &victim.mods, read_vm, &victim.pid, &u));
        dlopen_victim_stop_in("/lib.so", &regs);
        before = self_rss_kib();
        ASSERT_OK(unwinder_unwind(u, victim.pid, &regs, &res));
        after = self_rss_kib();
        print_result("in a module whose installed debug file inflates to 96 MiB", &res);
        fprintf(stderr, "  the unwinder grew by %ld KiB\n", after - before);
        thread_resume();
        unwinder_free(u);
        victim_kill();
        unlink(installed);
        (void) rmdir(subdir);
        unlink(lib);
        unlink(script);
        unlink(idfile);
        rmdir(dir);
        ASSERT_TRUE(after - before < 32 * 1024);
        ASSERT_TRUE(!res.reliable);
}

/* The target's user truncates a library of theirs while an unwinder has it: the
 * unwinder read a sealed copy (a mapping of the file itself would kill this process with
 * SIGBUS at the next unwind that touches its CFI, past the new end). */
TEST(truncated_module_file) {
        char dir[] = "/tmp/ulp-unwind-XXXXXX", lib[64];
        struct user_regs_struct regs;
        UnwindResult res;
        size_t n1;
        Unwinder *u;

        ASSERT_TRUE(mkdtemp(dir) != NULL);
        snprintf(lib, sizeof(lib), "%s/big.so", dir);
        copy_file(VICTIM_BIG_PATH, lib);

        dlopen_victim_start(lib, "big_spin");
        ASSERT_OK(unwinder_new(victim.pid, &victim.mods, read_vm, &victim.pid, &u));
        dlopen_victim_stop_in("/big.so", &regs);
        ASSERT_OK(unwinder_unwind(u, victim.pid, &regs, &res));
        print_result("in a library of more than 1 MiB", &res);
        ASSERT_TRUE(res.reliable);
        ASSERT_TRUE(res.n >= 3);
        n1 = res.n;
        ASSERT_OK(truncate(lib, 4096));
        ASSERT_OK(unwinder_unwind(u, victim.pid, &regs, &res));
        print_result("the same, its file truncated", &res);
        ASSERT_TRUE(res.reliable);
        ASSERT_EQ(res.n, n1);
        thread_resume();
        unwinder_free(u);
        victim_kill();
        unlink(lib);
        rmdir(dir);
}

/* An Unwinder kept between operations on one process (ulpd's unwcache.c): the next take
 * for the same pid and image gets the same one, its modules re-reported, and still
 * unwinds right; a file of the target rewritten since (or another file mapped where one
 * was: the patch an apply loads where a revert unloaded another) is read again (a new
 * copy, the old one let go) into a module of its own, not served from what was kept, and
 * the kept Unwinder serves on; another image (a reused pid, a program executed since) or
 * another process gets a new one. */
TEST(kept_between_operations) {
        char dir[] = "/tmp/ulp-unwind-XXXXXX", lib[64];
        struct user_regs_struct regs;
        struct timespec later[2] = { { .tv_nsec = UTIME_NOW }, { .tv_nsec = UTIME_NOW } };
        UnwindResult res;
        size_t ok, failed, n1;
        uint64_t copied;
        uint8_t image[UNWCACHE_IMAGE_LEN] = { 0x5a, 1, 2, 3 }, other_image[UNWCACHE_IMAGE_LEN];
        Unwinder *u, *again, *other;

        ASSERT_TRUE(mkdtemp(dir) != NULL);
        snprintf(lib, sizeof(lib), "%s/big.so", dir);
        copy_file(VICTIM_BIG_PATH, lib);   /* mode 0666: copied, not read in place */
        dlopen_victim_start(lib, "big_spin");

        ASSERT_OK(unwcache_take(victim.pid, image, &victim.mods, read_vm, &victim.pid, &u));
        dlopen_victim_stop_in("/big.so", &regs);
        ASSERT_OK(unwinder_unwind(u, victim.pid, &regs, &res));
        ASSERT_TRUE(res.reliable);
        n1 = res.n;
        copied = unwinder_copied_bytes(u);
        ASSERT_TRUE(copied > 0);
        unwcache_give(victim.pid, image, u);

        ASSERT_OK(unwcache_take(victim.pid, image, &victim.mods, read_vm, &victim.pid, &again));
        ASSERT_TRUE(again == u);
        unwinder_module_counts(again, &ok, &failed);
        ASSERT_EQ(ok, victim.mods.n);
        ASSERT_EQ(failed, 0);
        ASSERT_EQ(unwinder_copied_bytes(again), copied);   /* nothing copied again */
        ASSERT_OK(unwinder_unwind(again, victim.pid, &regs, &res));
        ASSERT_TRUE(res.reliable);
        ASSERT_EQ(res.n, n1);
        unwcache_give(victim.pid, image, again);

        /* the library's times change: the file is copied again and reported as a new
         * module (libdwfl, finding its module by name and range, would take the report for
         * an overlap with the old module and drop it: frames in it unreliable), the old
         * copy let go, the kept Unwinder taken */
        ASSERT_OK(utimensat(AT_FDCWD, lib, later, 0));
        ASSERT_OK(unwcache_take(victim.pid, image, &victim.mods, read_vm, &victim.pid, &again));
        ASSERT_TRUE(again == u);
        unwinder_module_counts(again, &ok, &failed);
        ASSERT_EQ(ok, victim.mods.n);
        ASSERT_EQ(failed, 0);
        ASSERT_EQ(unwinder_copied_bytes(again), copied);
        ASSERT_OK(unwinder_unwind(again, victim.pid, &regs, &res));
        print_result("kept unwinder, library rewritten", &res);
        ASSERT_TRUE(res.reliable);
        ASSERT_EQ(res.n, n1);
        unwcache_give(victim.pid, image, again);

        /* another image (a program executed since, or the pid reused): not the kept one;
         * an image not known is never the kept one */
        ASSERT_OK(unwcache_take(victim.pid, NULL, &victim.mods, read_vm, &victim.pid, &other));
        ASSERT_TRUE(other != u);
        unwinder_free(other);
        memcpy(other_image, image, sizeof(image));
        other_image[15] ^= 1;
        ASSERT_OK(unwcache_take(victim.pid, other_image, &victim.mods, read_vm, &victim.pid, &other));
        ASSERT_TRUE(other != u);
        ASSERT_ERR(unwinder_rebind(other, victim.pid + 1, &victim.mods, read_vm, &victim.pid), -ESTALE);
        unwinder_free(other);
        thread_resume();

        /* more given back than may be kept: the oldest go, the bounds hold */
        for (uint64_t k = 0; k <= UNWCACHE_MAX; k++) {
                size_t fds;
                ASSERT_OK(unwinder_new(victim.pid, &victim.mods, read_vm, &victim.pid, &other));
                ASSERT_TRUE(unwinder_fds(other) >= victim.mods.n);
                other_image[0] = (uint8_t) (100 + k);
                unwcache_give(victim.pid, other_image, other);
                ASSERT_TRUE(unwcache_kept(&fds, NULL) <= UNWCACHE_MAX);
                ASSERT_TRUE(fds <= UNWCACHE_FDS_MAX);
        }
        ASSERT_OK(unwcache_take(victim.pid, other_image, &victim.mods, read_vm, &victim.pid, &again));
        ASSERT_TRUE(again == other);   /* the last one given is kept */
        unwinder_free(again);
        unwcache_flush();
        victim_kill();
        unlink(lib);
        rmdir(dir);
}

/* CFI that makes every frame read thousands of words: the unwind ends at its read
 * budget, unreliable, instead of taking seconds for each thread and pass. */
TEST(hostile_cfi_bounded) {
        struct user_regs_struct regs;
        UnwindResult res;
        Unwinder *u;

        dlopen_victim_start(VICTIM_HOSTILE_PATH, "hostile_spin");
        ASSERT_OK(unwinder_new(victim.pid, &victim.mods, read_vm, &victim.pid, &u));
        /* past the mov that sets rbx, which the CFI reads from */
        dlopen_victim_stop_in("/libunwind-victim-hostile-cfi.so", &regs);
        while (regs.rbx != regs.rdi) {   /* mov %rdi, %rbx not run yet */
                thread_resume();
                usleep(10000);
                dlopen_victim_stop_in("/libunwind-victim-hostile-cfi.so", &regs);
        }
        ASSERT_OK(unwinder_unwind(u, victim.pid, &regs, &res));
        print_result("hostile CFI", &res);
        ASSERT_TRUE(!res.reliable);
        ASSERT_TRUE(strstr(res.reason, "memory reads") != NULL);
        thread_resume();
        unwinder_free(u);
        victim_kill();
}

static int cmp_u64(const void *a, const void *b) {
        uint64_t x = *(const uint64_t *) a, y = *(const uint64_t *) b;
        return x < y ? -1 : x > y;
}

static uint64_t now_ns(void) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (uint64_t) ts.tv_sec * 1000000000u + (uint64_t) ts.tv_nsec;
}

/* The per-thread stack check of a transition: median over 1000 unwinds of one stopped
 * thread, with a warm unwinder (its first unwind, which loads CFI, is timed apart). */
TEST(benchmark_unwind) {
        enum { N = 1000 };
        static uint64_t t[N];
        struct user_regs_struct regs;
        UnwindResult res;
        Unwinder *u;

        victim_start();
        ASSERT_OK(unwinder_new(victim.pid, &victim.mods, read_vm, &victim.pid, &u));
        thread_stop(victim.tids[ROLE_CHAIN], &regs);
        uint64_t t0 = now_ns();
        ASSERT_OK(unwinder_unwind(u, victim.tids[ROLE_CHAIN], &regs, &res));
        uint64_t cold = now_ns() - t0;
        ASSERT_TRUE(res.reliable);
        for (int i = 0; i < N; i++) {
                t0 = now_ns();
                ASSERT_OK(unwinder_unwind(u, victim.tids[ROLE_CHAIN], &regs, &res));
                t[i] = now_ns() - t0;
                ASSERT_TRUE(res.reliable);
        }
        thread_resume();
        unwinder_free(u);
        qsort(t, N, sizeof(t[0]), cmp_u64);
        fprintf(stderr, "  unwind of a %zu-frame stack: median %.1f us, p90 %.1f us, "
                "max %.1f us, first (cold) %.1f us%s\n", res.n, t[N / 2] / 1e3,
                t[N * 9 / 10] / 1e3, t[N - 1] / 1e3, cold / 1e3,
                SANITIZED ? " (sanitized build)" : "");
        if (!SANITIZED)
                ASSERT_TRUE(t[N / 2] < 50000);
        victim_kill();
}

static void cleanup_at_exit(void) {
        thread_resume();
        victim_kill();
}

__attribute__((constructor)) static void register_cleanup(void) {
        atexit(cleanup_at_exit);
}

TEST_MAIN()
