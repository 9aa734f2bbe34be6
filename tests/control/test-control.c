/* SPDX-License-Identifier: LGPL-2.1-or-later */
/* control_validate() on crafted blocks, the status read from a valid one, the MAC. */
#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <signal.h>
#include <stdatomic.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "patcher/op.h"
#include "patcher/siphash.h"
#include "patcher/target.h"
#include "control-sample.h"
#include "test.h"

/* dump-control-block.py and forger.c know these offsets. */
_Static_assert(CONTROL_OFF(hdr.n_areas) == 72 && sizeof(ControlArea) == 32 && CONTROL_OFF(areas) == 77824 && CONTROL_OFF(patches) == 79872 && CONTROL_OFF(funcs) == 119296 &&
               sizeof(ControlFunc) == 248 && sizeof(ControlImage) == 2155024 &&
               CONTROL_OFF(hdr.n_funcs) == 68 && CONTROL_OFF(hdr.generation) == 32 && CONTROL_OFF(hdr.self) == 16,
               "update tests/control/dump-control-block.py and forger.c");

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static ControlImage *img;
static char why[160];

static void fresh(void) {
        if (!img)
                img = malloc(sizeof(*img));
        ASSERT_TRUE(img);
        control_sample(img);
}

/* The block is refused with -EBADMSG and why contains what. */
#define ASSERT_REFUSED(what) do { \
                why[0] = 0; \
                ASSERT_ERR(control_validate(img, SAMPLE_SELF, why, sizeof(why)), -EBADMSG); \
                if (!strstr(why, what)) TEST__FAIL("reason \"%s\" does not say \"%s\"", why, what); \
        } while (0)

TEST(sample_is_valid) {
        UlpProcessStatus s = {};

        fresh();
        ASSERT_OK(control_validate(img, SAMPLE_SELF, why, sizeof(why)));
        ASSERT_OK(control_validate_table(img, why, sizeof(why)));
        ASSERT_OK(control_validate_stragglers(&img->stragglers, why, sizeof(why)));
        ASSERT_OK(op_status_convert(img, &s));
        ASSERT_EQ(s.n_patches, 1);
        ASSERT_STREQ(s.patches[0].name, "fix-compute");
        ASSERT_STREQ(ulp_patch_state_to_string(s.patches[0].state), "patched");
        ASSERT_EQ(s.patches[0].n_funcs, 1);
        ASSERT_STREQ(s.patches[0].funcs[0].symbol, "compute");
        ulp_status_done(&s);
}

TEST(header) {
        fresh();
        img->hdr.magic[0] = 'X';
        ASSERT_REFUSED("bad magic");
        fresh();
        img->hdr.version = 2;
        ASSERT_REFUSED("version 2");
        fresh();
        img->hdr.image_size = 4096;
        ASSERT_REFUSED("size 4096");
        fresh();
        img->hdr.self = SAMPLE_SELF + 4096;
        ASSERT_REFUSED("it says it lives at");
        fresh();
        img->hdr.n_funcs = 0xffffffff;
        ASSERT_REFUSED("counts out of range");
        fresh();
        img->hdr.n_patches = CONTROL_MAX_PATCHES + 1;
        ASSERT_REFUSED("counts out of range");
        fresh();
        img->hdr.target_state = 7;
        ASSERT_REFUSED("unknown target state 7");
        fresh();
        img->hdr.untabled_state = 5;
        ASSERT_REFUSED("unknown untabled state 5");
        /* The untabled state and the init window (docs/stops.md, "The untabled state"). */
        fresh();
        img->hdr.transition_patch = 0;
        img->hdr.target_state = THREAD_PATCHED;
        img->hdr.untabled_state = THREAD_UNDEFINED;
        img->hdr.transition_flags = CT_FLAG_UNTABLED;
        ASSERT_REFUSED("untabled threads without a state");
        img->hdr.untabled_state = THREAD_UNPATCHED;
        ASSERT_OK(control_validate(img, SAMPLE_SELF, why, sizeof(why)));
        img->hdr.transition_flags |= CT_FLAG_INIT_WINDOW;
        ASSERT_REFUSED("an init window without its guard");
        img->hdr.guard_block = 0x1000;
        ASSERT_REFUSED("the SIGTRAP guard block 0x1000 is outside the areas");
        img->hdr.guard_block = 0;
        img->hdr.transition_flags = CT_FLAG_UNTABLED | CT_FLAG_END_WINDOW;
        ASSERT_REFUSED("a completion window without its guard, or with an init window");
        img->hdr.guard_block = 0x1000;
        img->hdr.transition_flags = CT_FLAG_UNTABLED | CT_FLAG_END_WINDOW | CT_FLAG_INIT_WINDOW;
        ASSERT_REFUSED("a completion window without its guard, or with an init window");
        img->hdr.transition_flags = CT_FLAG_UNTABLED | CT_FLAG_END_WINDOW;
        ASSERT_REFUSED("the SIGTRAP guard block 0x1000 is outside the areas");
        img->hdr.transition_flags = 1u << 4;
        ASSERT_REFUSED("unknown transition flags 0x10");
        fresh();
        img->hdr.transition_patch = 5;
        ASSERT_REFUSED("transition patch 5 out of range");
        fresh();
        img->hdr.transition_patch = -2;
        ASSERT_REFUSED("transition patch -2 out of range");
        fresh();
        img->patches[0].state = CP_TRANSITION;
        ASSERT_REFUSED("patch 0 is in transition, the header names -1");
        fresh();
        img->patches[0].state = CP_FREE;
        img->hdr.transition_patch = 0;
        ASSERT_REFUSED("the transition's patch 0 is a free slot");
        /* Left by a driver killed between the header and the patch record. */
        fresh();
        img->hdr.transition_patch = 0;
        ASSERT_OK(control_validate(img, SAMPLE_SELF, why, sizeof(why)));
        img->patches[0].state = CP_UNPATCHED;
        ASSERT_OK(control_validate(img, SAMPLE_SELF, why, sizeof(why)));
}

/* A compaction's stage (op-compact.c): bounded, and only between transitions. */
TEST(stage) {
        UlpProcessStatus s = {};

        fresh();
        img->hdr.stage_state = CONTROL_STAGED;
        img->hdr.stage_at = 1;
        img->hdr.stage_patches = 1;
        img->hdr.stage_funcs = 1;
        ASSERT_OK(control_validate(img, SAMPLE_SELF, why, sizeof(why)));
        img->hdr.stage_state = 2;
        ASSERT_REFUSED("unknown stage state 2");
        img->hdr.stage_state = CONTROL_STAGE_NONE;
        ASSERT_REFUSED("a compaction's stage without its state");
        img->hdr.stage_state = CONTROL_STAGED;
        img->hdr.stage_at = CONTROL_MAX_FUNCS - 2;
        ASSERT_REFUSED("a compaction's stage out of range");
        img->hdr.stage_at = 0;
        ASSERT_REFUSED("a compaction's stage out of range");
        img->hdr.stage_at = 0xfffffff0;
        ASSERT_REFUSED("a compaction's stage out of range");
        img->hdr.stage_at = 1;
        img->hdr.stage_patches = CONTROL_MAX_PATCHES + 1;
        ASSERT_REFUSED("a compaction's stage out of range");
        img->hdr.stage_patches = 1;
        img->hdr.transition_patch = 0;
        ASSERT_REFUSED("a compaction staged during a transition");

        /* A reverted patch whose code is still mapped is shown, one without is not. */
        fresh();
        img->patches[0].state = CP_UNPATCHED;
        ASSERT_OK(control_validate(img, SAMPLE_SELF, why, sizeof(why)));
        ASSERT_OK(op_status_convert(img, &s));
        ASSERT_EQ(s.n_patches, 1);
        ASSERT_STREQ(ulp_patch_state_to_string(s.patches[0].state), "unpatched");
        ASSERT_TRUE(s.patches[0].code_mapped);
        ulp_status_done(&s);
        img->patches[0].map_size = 0;
        ASSERT_OK(op_status_convert(img, &s));
        ASSERT_EQ(s.n_patches, 0);
        ulp_status_done(&s);
}

/* A driver killed between a completion's patch write and its header write: the header
 * still names the reverted patch, which is shown in transition (an apply refuses, a
 * revert takes it over), not hidden as reverted. The same for an init killed between its
 * header write and its patch write. */
TEST(header_names_patch) {
        UlpProcessStatus s = {};

        fresh();
        img->patches[0].state = CP_UNPATCHED;
        img->hdr.transition_patch = 0;
        img->hdr.target_state = THREAD_UNPATCHED;
        ASSERT_OK(control_validate(img, SAMPLE_SELF, why, sizeof(why)));
        ASSERT_OK(op_status_convert(img, &s));
        ASSERT_EQ(s.n_patches, 1);
        ASSERT_STREQ(ulp_patch_state_to_string(s.patches[0].state), "transition");
        ulp_status_done(&s);
        img->patches[0].state = CP_PATCHED;
        ASSERT_OK(control_validate(img, SAMPLE_SELF, why, sizeof(why)));
        ASSERT_OK(op_status_convert(img, &s));
        ASSERT_EQ(s.n_patches, 1);
        ASSERT_STREQ(ulp_patch_state_to_string(s.patches[0].state), "transition");
        ulp_status_done(&s);
}

/* A patch load not yet recorded (loader-fd.c): its driver, ulp's memfd name, a sane
 * range, the fd's inode once it is known. */
TEST(load) {
        fresh();
        img->hdr.load_state = CONTROL_LOAD_CREATING;
        img->hdr.load_pid = 42;
        img->hdr.load_start = 7;
        img->hdr.load_addr = 0x7f0000000000;
        img->hdr.load_size = 0x3000;
        strcpy(img->hdr.load_name, "ulp-patch:fix");
        ASSERT_OK(control_validate(img, SAMPLE_SELF, why, sizeof(why)));
        img->hdr.load_state = CONTROL_LOAD_OPEN;
        ASSERT_REFUSED("a patch load without its driver, fd or inode");
        img->hdr.load_ino = 99;
        img->hdr.load_fd = 5;
        ASSERT_OK(control_validate(img, SAMPLE_SELF, why, sizeof(why)));
        img->hdr.load_state = 3;
        ASSERT_REFUSED("unknown load state 3");
        img->hdr.load_state = CONTROL_LOAD_OPEN;
        img->hdr.load_pid = 0;
        ASSERT_REFUSED("a patch load without its driver, fd or inode");
        img->hdr.load_pid = 42;
        strcpy(img->hdr.load_name, "my-memfd");
        ASSERT_REFUSED("a patch load's memfd name is not ulp's");
        memset(img->hdr.load_name, 'u', sizeof(img->hdr.load_name));
        ASSERT_REFUSED("a patch load's memfd name is not ulp's");
        strcpy(img->hdr.load_name, "ulp-patch:fix");
        img->hdr.load_size = 0;
        ASSERT_REFUSED("a patch load's range is not a sane mapping");
        img->hdr.load_size = 0x3000;
        img->hdr.load_addr = UINT64_MAX & ~0xfffULL;
        ASSERT_REFUSED("a patch load's range is not a sane mapping");
        /* The layout test-memfd-forged.sh and test-memfd.sh (tests/fault) use in a live block. */
        ASSERT_EQ(offsetof(ControlHeader, load_state), 248);
        ASSERT_EQ(offsetof(ControlHeader, load_ino), 272);
        ASSERT_EQ(offsetof(ControlHeader, load_name), 296);
}

TEST(patches) {
        fresh();
        img->patches[0].first_func = 0x40000000;
        ASSERT_REFUSED("outside the 1 records");
        fresh();
        img->patches[0].n_funcs = 0xffffffff;
        ASSERT_REFUSED("outside the 1 records");
        fresh();
        img->patches[0].state = 9;
        ASSERT_REFUSED("unknown state 9");
        fresh();
        memset(img->patches[0].name, 'a', sizeof(img->patches[0].name));
        ASSERT_REFUSED("its name is not a terminated printable string");
        fresh();
        strcpy(img->patches[0].name, "evil\nulpd: forged line");
        ASSERT_REFUSED("its name is not a terminated printable string");
        fresh();
        memset(img->patches[0].late[3], 'x', sizeof(img->patches[0].late[3]));
        ASSERT_REFUSED("late object 3");
        fresh();
        /* An unused entry's state means nothing (an older build frees it by its name). */
        img->patches[0].late[1][CONTROL_LATE_STATE] = CONTROL_LATE_PREPATCHED;
        ASSERT_OK(control_validate(img, SAMPLE_SELF, why, sizeof(why)));
        fresh();
        strcpy(img->patches[0].late[1], "libplugin.so");
        img->patches[0].late[1][CONTROL_LATE_STATE] = 6;
        ASSERT_REFUSED("late object 1 has state 6");
        fresh();
        strcpy(img->patches[0].late[1], "libplugin.so");
        img->patches[0].late[1][CONTROL_LATE_STATE] = CONTROL_LATE_PREPATCHED;
        ASSERT_OK(control_validate(img, SAMPLE_SELF, why, sizeof(why)));
        img->patches[0].late[1][CONTROL_LATE_STATE] = CONTROL_LATE_LOADED;
        ASSERT_OK(control_validate(img, SAMPLE_SELF, why, sizeof(why)));
        img->patches[0].late[1][CONTROL_LATE_STATE] = CONTROL_LATE_POSTPENDING;
        ASSERT_OK(control_validate(img, SAMPLE_SELF, why, sizeof(why)));
        img->patches[0].late[1][CONTROL_LATE_STATE] = CONTROL_LATE_PRECALL;
        ASSERT_OK(control_validate(img, SAMPLE_SELF, why, sizeof(why)));
        img->patches[0].late[1][CONTROL_LATE_STATE] = CONTROL_LATE_POSTCALL;
        ASSERT_OK(control_validate(img, SAMPLE_SELF, why, sizeof(why)));
        fresh();
        img->patches[0].callbacks[CP_CB_POST_PATCH] = 0x401000;
        ASSERT_REFUSED("callback 1 is outside the patch's code");
        fresh();
        img->patches[0].map_start = UINT64_MAX - 10;
        ASSERT_REFUSED("wraps around");
        fresh();
        img->patches[0].build_id_len = 21;
        ASSERT_REFUSED("build-id length 21");
        fresh();
        img->patches[0].flags = 0x80;
        ASSERT_REFUSED("unknown flags 0x80");
}

TEST(funcs) {
        fresh();
        img->funcs[0].patch = 1;
        ASSERT_REFUSED("names patch 1 of 1");
        fresh();
        img->hdr.n_funcs = 2;
        ASSERT_REFUSED("lies outside the records of its patch");
        fresh();
        img->funcs[0].displaced_len = 15;
        ASSERT_REFUSED("exceed 16 bytes");
        fresh();
        img->funcs[0].stub_addr = 0x1000;
        ASSERT_REFUSED("its stub is outside ulp's areas");
        fresh();
        img->funcs[0].copy_addr = SAMPLE_AREA + 8192;
        ASSERT_REFUSED("its relocated entry is outside ulp's areas");
        fresh();
        img->funcs[0].new_addr = 0x401000;
        ASSERT_REFUSED("its new function is outside its patch's code");
        fresh();
        memset(img->funcs[0].symbol, 'f', sizeof(img->funcs[0].symbol));
        ASSERT_REFUSED("object or symbol");
        fresh();
        img->funcs[0].old_size = UINT64_MAX;
        ASSERT_REFUSED("address ranges");
        fresh();
        img->areas[0].used = CONTROL_AREA_SIZE + 1;
        ASSERT_REFUSED("area 0 is not a sane mapping");
        fresh();
        img->hdr.trap_addr = 0x1234;
        ASSERT_REFUSED("the trap address is outside ulp's areas");
}

TEST(table_and_stragglers) {
        fresh();
        img->table_tp[3] = 0x7f00deadb000;
        img->table_state[3] = 1;
        ASSERT_OK(control_validate_table(img, why, sizeof(why)));
        img->table_state[3] = 0xff;
        ASSERT_ERR(control_validate_table(img, why, sizeof(why)), -EBADMSG);
        img->table_state[3] = 0;
        /* An empty slot may hold a state (a thread entering the table, docs/stops.md),
         * not an unknown one. */
        img->table_state[4] = 1;
        ASSERT_OK(control_validate_table(img, why, sizeof(why)));
        img->table_state[4] = 2;
        ASSERT_ERR(control_validate_table(img, why, sizeof(why)), -EBADMSG);

        fresh();
        img->stragglers.n = 1;
        img->stragglers.v[0].tid = 42;
        strcpy(img->stragglers.v[0].comm, "worker");
        strcpy(img->stragglers.v[0].blocker, "compute+0x4");
        ASSERT_OK(control_validate_stragglers(&img->stragglers, why, sizeof(why)));
        memset(img->stragglers.v[0].comm, 'c', sizeof(img->stragglers.v[0].comm));
        ASSERT_ERR(control_validate_stragglers(&img->stragglers, why, sizeof(why)), -EBADMSG);
        img->stragglers.n = CONTROL_MAX_STRAGGLERS + 1;
        ASSERT_ERR(control_validate_stragglers(&img->stragglers, why, sizeof(why)), -EBADMSG);
}

/* The vectors of the SipHash paper (key 00..0f, message 00..len-1). */
TEST(siphash_vectors) {
        uint8_t key[16], msg[64], out[16];
        static const uint8_t want128_empty[16] = { 0xa3, 0x81, 0x7f, 0x04, 0xba, 0x25, 0xa8, 0xe6,
                                                   0x6d, 0xf6, 0x72, 0x14, 0xc7, 0x55, 0x02, 0x93 };

        for (int i = 0; i < 16; i++)
                key[i] = (uint8_t)i;
        for (int i = 0; i < 64; i++)
                msg[i] = (uint8_t)i;
        ASSERT_EQ_U64(siphash24(key, msg, 0), 0x726fdb47dd0e0e31ULL);
        ASSERT_EQ_U64(siphash24(key, msg, 15), 0xa129ca6149be45e5ULL);
        siphash24_128(key, msg, 0, out);
        ASSERT_TRUE(memcmp(out, want128_empty, 16) == 0);
}

TEST(mac) {
        char dir[] = "/tmp/ulp-test-key-XXXXXX", path[64];
        Control c = {};

        ASSERT_TRUE(mkdtemp(dir));
        snprintf(path, sizeof(path), "%s/key", dir);
        setenv("ULP_CONTROL_KEY", path, 1);
        fresh();
        c.img = img;
        ASSERT_OK(control_sign(&c, getpid(), 0x2a, 1234));
        ASSERT_EQ(img->hdr.owner_pid, getpid());
        ASSERT_TRUE(control_verify(&img->hdr, 0x2a, 1234));
        /* The same bytes in another memfd (a copy) do not match. */
        ASSERT_TRUE(!control_verify(&img->hdr, 0x2a, 1235));
        ASSERT_TRUE(!control_verify(&img->hdr, 0x2b, 1234));
        img->hdr.self += 4096;
        ASSERT_TRUE(!control_verify(&img->hdr, 0x2a, 1234));
        img->hdr.self -= 4096;
        img->hdr.nonce[0] ^= 1;
        ASSERT_TRUE(!control_verify(&img->hdr, 0x2a, 1234));
        img->hdr.nonce[0] ^= 1;
        img->hdr.owner_pid++;
        ASSERT_TRUE(!control_verify(&img->hdr, 0x2a, 1234));
        img->hdr.owner_pid--;
        ASSERT_TRUE(control_verify(&img->hdr, 0x2a, 1234));
        memset(img->hdr.mac, 0, sizeof(img->hdr.mac));
        ASSERT_TRUE(!control_verify(&img->hdr, 0x2a, 1234));
        unlink(path);
        rmdir(dir);
}

/* A child keeps rewriting its block under the seqlock, as control_write_*() do: two patch
 * names and a symbol, all with the same letter each time. Every copy control_load() keeps
 * must have one letter throughout; it may refuse as busy, never hand out a mix. */
TEST(seqlock_never_a_torn_copy) {
        size_t size = (sizeof(ControlImage) + 4095) & ~(size_t)4095;
        int fd = memfd_create("ulp-control", MFD_CLOEXEC);
        ControlImage *b;
        Target *t = NULL;
        Control c = {};
        unsigned kept = 0, busy = 0;
        pid_t child;

        ASSERT_TRUE(fd >= 0 && ftruncate(fd, (off_t)size) == 0);
        b = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        ASSERT_TRUE(b != MAP_FAILED);
        /* the sample's code area, as ulp would have mapped it */
        ASSERT_TRUE(mmap((void *)SAMPLE_AREA, CONTROL_AREA_SIZE, PROT_READ | PROT_EXEC,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) != MAP_FAILED);
        fresh();
        img->hdr.self = (uint64_t)(uintptr_t)b;
        img->hdr.n_patches = 2;
        img->patches[1] = img->patches[0];
        img->patches[1].state = CP_UNPATCHED;
        img->patches[1].first_func = 1;
        img->patches[1].n_funcs = 0;
        memset(img->patches[0].name, 'z', 100);
        memset(img->patches[1].name, 'z', 100);
        memset(img->funcs[0].symbol, 'z', 60);
        memcpy(b, img, sizeof(*img));
        child = fork();
        ASSERT_TRUE(child >= 0);
        if (child == 0) {
                _Atomic uint32_t *gen = (_Atomic uint32_t *)&b->hdr.generation;
                prctl(PR_SET_PDEATHSIG, SIGKILL);   /* a failed assertion leaves no writer */
                for (char letter = 'a';; letter = letter == 'z' ? 'a' : letter + 1) {
                        b->hdr.writer_pid = b->hdr.writer_target = getpid();
                        b->hdr.writer_start = control_proc_start_time(getpid());
                        atomic_fetch_add_explicit(gen, 1, memory_order_seq_cst);
                        memset(b->patches[0].name, letter, 100);
                        memset(b->funcs[0].symbol, letter, 60);
                        memset(b->patches[1].name, letter, 100);
                        atomic_fetch_add_explicit(gen, 1, memory_order_seq_cst);
                        usleep(20);
                }
        }
        ASSERT_OK(TEST_TARGET_OPEN(child, &t));
        c.addr = (uint64_t)(uintptr_t)b;
        for (int i = 0; i < 3000; i++) {
                int r = control_load(t, &c);
                if (r == -EBUSY) {
                        busy++;
                        continue;
                }
                ASSERT_OK(r);
                ASSERT_TRUE(strspn(c.img->patches[0].name, c.img->patches[0].name[0] ? c.img->patches[0].name : "-") ==
                            strlen(c.img->patches[0].name));
                ASSERT_STREQ(c.img->patches[0].name, c.img->patches[1].name);
                ASSERT_EQ(c.img->funcs[0].symbol[0], c.img->patches[0].name[0]);
                kept++;
        }
        kill(child, SIGKILL);
        waitpid(child, NULL, 0);
        target_free(t);
        control_done(&c);
        fprintf(stderr, "  %u consistent copies, %u refused as busy\n", kept, busy);
        ASSERT_TRUE(kept > 0);
        munmap(b, size);
        munmap((void *)SAMPLE_AREA, CONTROL_AREA_SIZE);
        close(fd);
}

/* The fuzz target over its committed corpus: real blocks, truncated and mutated ones. */
TEST(fuzz_corpus) {
        DIR *d = opendir(CORPUS_DIR);
        struct dirent *de;
        unsigned n = 0;

        ASSERT_TRUE(d);
        while ((de = readdir(d))) {
                char path[4096];
                static uint8_t buf[1 << 20];
                FILE *f;
                size_t len;
                if (de->d_name[0] == '.')
                        continue;
                snprintf(path, sizeof(path), "%s/%s", CORPUS_DIR, de->d_name);
                f = fopen(path, "re");
                ASSERT_TRUE(f);
                len = fread(buf, 1, sizeof(buf), f);
                fclose(f);
                ASSERT_OK(LLVMFuzzerTestOneInput(buf, len));
                n++;
        }
        closedir(d);
        ASSERT_TRUE(n >= 5);
}

TEST_MAIN()
