/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* maps_parse() on hand-written text, maps_read() on ourselves. */

#include <sys/mman.h>
#include <unistd.h>

#include "common/macro.h"
#include "elf/maps.h"
#include "test.h"

static const char sample[] =
        "55d0c0a00000-55d0c0a01000 r--p 00000000 fe:01 1234   /usr/bin/victim\n"
        "55d0c0a01000-55d0c0a02000 r-xp 00001000 fe:01 1234   /usr/bin/victim\n"
        "7f0000000000-7f0000021000 rw-p 00000000 00:00 0 \n"
        "7f1000000000-7f1000001000 r-xp 00000000 00:01 77     /memfd:ulp-patch:fix (deleted)\n"
        "7f2000000000-7f2000001000 rw-s 00002000 08:02 99     /tmp/with space (deleted)\n"
        "7ffc00000000-7ffc00021000 rw-p 00000000 00:00 0      [stack]\n"
        "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0  [vsyscall]";

TEST(parse_fields) {
        _cleanup_(maplist_done) MapList l = {};

        ASSERT_OK(maps_parse(sample, &l));
        ASSERT_EQ(l.n, 7);
        ASSERT_EQ_U64(l.v[0].start, 0x55d0c0a00000);
        ASSERT_EQ_U64(l.v[0].end, 0x55d0c0a01000);
        ASSERT_EQ(l.v[0].prot, PROT_READ);
        ASSERT_EQ(l.v[1].prot, PROT_READ | PROT_EXEC);
        ASSERT_EQ_U64(l.v[1].offset, 0x1000);
        ASSERT_EQ(l.v[1].dev_major, 0xfe);
        ASSERT_EQ(l.v[1].dev_minor, 1);
        ASSERT_EQ(l.v[1].inode, 1234);
        ASSERT_STREQ(l.v[1].path, "/usr/bin/victim");
        ASSERT_TRUE(!l.v[1].deleted && !l.v[1].shared);
        ASSERT_TRUE(l.v[2].path == NULL);
        ASSERT_EQ(l.v[2].prot, PROT_READ | PROT_WRITE);
}

TEST(parse_deleted_and_special) {
        _cleanup_(maplist_done) MapList l = {};

        ASSERT_OK(maps_parse(sample, &l));
        ASSERT_STREQ(l.v[3].path, "/memfd:ulp-patch:fix");
        ASSERT_TRUE(l.v[3].deleted);
        ASSERT_STREQ(l.v[4].path, "/tmp/with space");
        ASSERT_TRUE(l.v[4].deleted && l.v[4].shared);
        ASSERT_STREQ(l.v[5].path, "[stack]");
        ASSERT_TRUE(!l.v[5].deleted);
        ASSERT_EQ_U64(l.v[6].start, 0xffffffffff600000);
        ASSERT_STREQ(l.v[6].path, "[vsyscall]");
}

TEST(parse_garbage) {
        MapList l = {};

        ASSERT_ERR(maps_parse("not a maps line\n", &l), -EBADMSG);
        ASSERT_EQ(l.n, 0);
        ASSERT_OK(maps_parse("", &l));
        ASSERT_EQ(l.n, 0);
        /* An anonymous mapping on the last line, without trailing blanks. */
        ASSERT_OK(maps_parse("1000-2000 rw-p 00000000 00:00 0", &l));
        ASSERT_EQ(l.n, 1);
        ASSERT_TRUE(l.v[0].path == NULL);
        ASSERT_EQ_U64(l.v[0].end, 0x2000);
        maplist_done(&l);
        /* Fields missing, cut short or too long for 64 bits are refused, not guessed. */
        ASSERT_ERR(maps_parse("1000-2000 rw-p 00000000 00:00\n", &l), -EBADMSG);
        ASSERT_ERR(maps_parse("1000-2000 rw-p\n", &l), -EBADMSG);
        ASSERT_ERR(maps_parse("10000000000000000-20000000000000000 rw-p 00000000 00:00 0\n", &l), -EBADMSG);
        ASSERT_ERR(maps_parse("2000-1000 rw-p 00000000 00:00 0\n", &l), -EBADMSG);
        ASSERT_ERR(maps_parse("1000-2000 rw p 00000000 00:00 0\n", &l), -EBADMSG);
        ASSERT_ERR(maps_parse("1000-2000 rw-p 00000000 00:00 99999999999999999999999\n", &l), -EBADMSG);
        ASSERT_EQ(l.n, 0);
}

TEST(find) {
        _cleanup_(maplist_done) MapList l = {};

        ASSERT_OK(maps_parse(sample, &l));
        ASSERT_TRUE(maps_find(&l, 0x55d0c0a01800) == &l.v[1]);
        ASSERT_TRUE(maps_find(&l, 0x55d0c0a00000) == &l.v[0]);
        ASSERT_TRUE(maps_find(&l, 0x55d0c0a02000) == NULL);
        ASSERT_TRUE(maps_find(&l, 0) == NULL);
}

TEST(read_self) {
        _cleanup_(maplist_done) MapList l = {};
        static int here;

        ASSERT_OK(maps_read(getpid(), &l));
        const MapEntry *e = maps_find(&l, (uint64_t)(uintptr_t)&here);
        ASSERT_TRUE(e != NULL);
        ASSERT_TRUE(e->prot & PROT_WRITE);
        e = maps_find(&l, (uint64_t)(uintptr_t)&maps_find);
        ASSERT_TRUE(e && (e->prot & PROT_EXEC) && e->path && e->inode != 0);
        ASSERT_ERR(maps_read(0x7ffffff0, &l), -ESRCH);
}

TEST_MAIN();
