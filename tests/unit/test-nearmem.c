/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Near memory (patcher/nearmem.c): the gap search on made-up maps, and area_alloc()
 * mapping ulp's code areas in this process through the fake target.
 */
#include <sys/mman.h>

#include "fake-target.h"
#include "patcher/nearmem.h"
#include "patcher/procmem.h"
#include "test.h"

#define GiB (1ULL << 30)
#define PAGE 4096ULL

static MapList maps_of(MapEntry *v, size_t n) {
        return (MapList) { .v = v, .n = n };
}

TEST(reaches) {
        ASSERT_TRUE(nearmem_reaches(0x100000000, 4096, 0x100000000, 0x100001000));
        ASSERT_TRUE(nearmem_reaches(0x100000000 + NEAR_REACH - 4096, 4096, 0x100000000, 0x100000000));
        ASSERT_TRUE(!nearmem_reaches(0x100000000 + NEAR_REACH - 4095, 4096, 0x100000000, 0x100000000));
        /* Every byte of both: a long range narrows what reaches it. */
        ASSERT_TRUE(!nearmem_reaches(0x100000000 - NEAR_REACH + GiB, 4096, 0x100000000, 0x100000000 + GiB + 1));
}

/* The gap just above the range, past one guard page. */
TEST(find_gap_above) {
        MapEntry v[] = { { .start = 0x10000, .end = 0x500000 }, { .start = 0x800000, .end = 0x900000 } };
        MapList l = maps_of(v, 2);
        uint64_t at = 0;

        ASSERT_OK(nearmem_find(&l, 0x400000, 0x500000, 0x10000, &at));
        ASSERT_EQ_U64(at, 0x500000 + PAGE);
}

/* Below when the gap above is too small for the length and its guard pages. */
TEST(find_gap_below) {
        MapEntry v[] = { { .start = 0x40000000, .end = 0x40100000 }, { .start = 0x40102000, .end = 0x7ffffffff000 } };
        MapList l = maps_of(v, 2);
        uint64_t at = 0;

        ASSERT_OK(nearmem_find(&l, 0x40000000, 0x40100000, 0x10000, &at));
        ASSERT_EQ_U64(at, 0x40000000 - PAGE - 0x10000);
        /* One page fits in the gap above between its guards? 0x2000 - 2 guards: no. */
        ASSERT_OK(nearmem_find(&l, 0x40000000, 0x40100000, 1, &at));
        ASSERT_EQ_U64(at, 0x40000000 - 2 * PAGE);
}

/* Of two gaps, the closer (below, on a tie); none within reach: -ENOSPC. */
TEST(find_closest_or_none) {
        MapEntry v[] = { { .start = 0x10000, .end = 0x100000000 }, { .start = 0x100100000, .end = 0x100200000 },
                         { .start = 0x100300000, .end = 0x7ffffffff000 } };
        MapList l = maps_of(v, 3);
        uint64_t at = 0;

        ASSERT_OK(nearmem_find(&l, 0x100300000, 0x100400000, 0x1000, &at));
        ASSERT_EQ_U64(at, 0x100300000 - 2 * PAGE);
        ASSERT_OK(nearmem_find(&l, 0x100000000, 0x100001000, 0x1000, &at));
        ASSERT_EQ_U64(at, 0x100000000 + PAGE);
        /* The only gap is 12 GiB away. */
        v[0].end = 0x400000000;
        v[1] = (MapEntry) { .start = 0x400100000, .end = 0x7ffffffff000 };
        l.n = 2;
        ASSERT_ERR(nearmem_find(&l, 0x100100000, 0x100200000, 0x1000, &at), -ENOSPC);
}

/* area_alloc() maps a read+exec area near the range, with the trap bytes first, and
 * hands out 16-byte aligned pieces; a full area makes a new one. The block still
 * loads: its areas are mappings ulp made. */
TEST(area_alloc_in_process) {
        Target *t = fake_target_new();
        Control c = {}, rd = {};
        Thread *th;
        uint64_t a, b, d, lo = (uint64_t)(uintptr_t)&maps_of, hi = lo + 1;
        uint8_t trap[16], int3[16];

        ASSERT_TRUE(t);
        fake_thread_add(t, 0, lo);
        ASSERT_OK(target_stop_all(t));
        th = target_any_stopped(t);
        ASSERT_OK(control_create(t, th, &c));
        ASSERT_OK(area_alloc(t, th, &c, lo, hi, 100, &a));
        ASSERT_EQ(c.img->hdr.n_areas, 1);
        ASSERT_EQ_U64(c.img->hdr.trap_addr, c.img->areas[0].addr);
        ASSERT_EQ_U64(a, c.img->areas[0].addr + NEARMEM_CALL_RETURN_OFF + 16);
        ASSERT_TRUE(nearmem_reaches(c.img->areas[0].addr, CONTROL_AREA_SIZE, lo, hi));
        ASSERT_OK(target_read(t, c.img->hdr.trap_addr, trap, sizeof(trap)));
        memset(int3, 0xcc, sizeof(int3));
        ASSERT_TRUE(memcmp(trap, int3, sizeof(trap)) == 0);
        ASSERT_OK(area_alloc(t, th, &c, lo, hi, 1, &b));
        ASSERT_EQ_U64(b, a + 112);
        ASSERT_OK(area_alloc(t, th, &c, lo, hi, CONTROL_AREA_SIZE - 150, &d));
        ASSERT_EQ(c.img->hdr.n_areas, 2);
        ASSERT_EQ_U64(d, c.img->areas[1].addr);
        ASSERT_OK(control_write_header(t, &c));
        ASSERT_OK(target_resume_all(t));

        rd.addr = c.addr;
        ASSERT_OK(control_load(t, &rd));
        ASSERT_EQ(rd.img->hdr.n_areas, 2);
        ASSERT_EQ_U64(rd.img->areas[0].used, 160);
        for (unsigned i = 0; i < 2; i++)
                munmap((void *)(uintptr_t)rd.img->areas[i].addr, CONTROL_AREA_SIZE);
        control_done(&rd);
        control_done(&c);
        fake_target_free(t);
}

/* The maps are read once and shared (patcher/procmem.h) until a remote system call; a
 * range the process mapped after that read is refused to the area's MAP_FIXED_NOREPLACE,
 * and the area goes where the maps read again say. */
TEST(area_after_stale_maps) {
        Target *t = fake_target_new();
        const MapList *m1, *m2;
        Control c = {};
        Thread *th;
        uint64_t at = 0, a, lo = (uint64_t)(uintptr_t)&maps_of, hi = lo + 1;
        void *taken;

        ASSERT_TRUE(t);
        fake_thread_add(t, 0, lo);
        ASSERT_OK(target_stop_all(t));
        th = target_any_stopped(t);
        ASSERT_OK(control_create(t, th, &c));
        ASSERT_OK(procmaps_get(t, &m1));
        ASSERT_OK(procmaps_get(t, &m2));
        ASSERT_TRUE(m1 == m2);
        /* The process takes the range the area would get, after the read. */
        ASSERT_OK(nearmem_find(m1, lo, hi, CONTROL_AREA_SIZE, &at));
        taken = mmap((void *)(uintptr_t)at, CONTROL_AREA_SIZE, PROT_NONE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
        ASSERT_TRUE(taken == (void *)(uintptr_t)at);
        ASSERT_TRUE(procmaps_get(t, &m2) == 0 && m2 == m1 && !maps_find(m2, at));
        ASSERT_OK(area_alloc(t, th, &c, lo, hi, 100, &a));
        ASSERT_EQ(c.img->hdr.n_areas, 1);
        ASSERT_TRUE(c.img->areas[0].addr != at);
        ASSERT_TRUE(nearmem_reaches(c.img->areas[0].addr, CONTROL_AREA_SIZE, lo, hi));
        /* Read again after the area's mmap: both mappings are in it. */
        ASSERT_OK(procmaps_get(t, &m2));
        ASSERT_TRUE(maps_find(m2, at) && maps_find(m2, c.img->areas[0].addr));
        ASSERT_OK(target_resume_all(t));
        munmap(taken, CONTROL_AREA_SIZE);
        munmap((void *)(uintptr_t)c.img->areas[0].addr, CONTROL_AREA_SIZE);
        control_done(&c);
        fake_target_free(t);
}

TEST_MAIN()
