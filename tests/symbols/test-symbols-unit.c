/* SPDX-License-Identifier: LGPL-2.1-or-later */

/* Demangled names and separate debug files, without a process. */

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/macro.h"
#include "elf/debugfile.h"
#include "elf/demangle.h"
#include "elf/symtab.h"
#include "test.h"

TEST(normalize) {
        char buf[64];

        ASSERT_OK(demangle_normalize("shop::Cart::total(int) const", buf, sizeof(buf)));
        ASSERT_STREQ(buf, "shop::Cart::total(int)const");
        ASSERT_OK(demangle_normalize("f( unsigned  long , char* )", buf, sizeof(buf)));
        ASSERT_STREQ(buf, "f(unsigned long,char*)");
        ASSERT_ERR(demangle_normalize("shop::Cart::total(int) const", buf, 8), -ENOBUFS);
        ASSERT_TRUE(demangle_looks_demangled("a::b"));
        ASSERT_TRUE(demangle_looks_demangled("f(int)"));
        ASSERT_TRUE(!demangle_looks_demangled("compute"));
        ASSERT_TRUE(!demangle_looks_demangled("_ZNK4shop4Cart5totalEi"));
}

TEST(demangle) {
        char buf[128];

        ASSERT_OK(demangle("_ZNK4shop4Cart5totalEi", buf, sizeof(buf)));
        ASSERT_STREQ(buf, "shop::Cart::total(int)const");
        ASSERT_ERR(demangle("compute", buf, sizeof(buf)), -EINVAL);
        ASSERT_ERR(demangle("_Zgarbage!", buf, sizeof(buf)), -EINVAL);
}

/* The CRC .gnu_debuglink records: the zlib CRC-32 ("123456789" is 0xcbf43926). */
TEST(crc32) {
        char path[] = "/tmp/ulp-crc-XXXXXX";
        int fd = mkstemp(path);
        uint32_t crc;

        ASSERT_TRUE(fd >= 0);
        unlink(path);
        ASSERT_EQ(write(fd, "123456789", 9), 9);
        ASSERT_OK(debugfile_crc32(fd, &crc));
        ASSERT_EQ(crc, 0xcbf43926u);
        close(fd);
}

/* A file with a .symtab needs no debug file and looks for none. */
TEST(not_stripped) {
        SymTab *st = NULL;

        ASSERT_OK(symtab_open_module("/proc/self/exe", "/proc/self/exe", &st));
        ASSERT_TRUE(symtab_debug_path(st) == NULL);
        ASSERT_TRUE(symtab_searched(st) == NULL);
        symtab_free(st);
}

TEST_MAIN();
