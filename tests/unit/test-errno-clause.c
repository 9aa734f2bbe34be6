/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The words that end a library message instead of the C library's errno text
 * (common/errno-clause.h, docs/architecture.md "Failing"): the causes an operator meets
 * on a target process and on a file each have ulp's own words, the same for r and -r.
 */
#include <errno.h>

#include "common/errno-clause.h"
#include "test.h"

TEST(process_causes_in_ulps_words) {
        ASSERT_STREQ(process_errno_clause(-ESRCH), "the process exited");
        ASSERT_STREQ(process_errno_clause(-EFAULT), "a bad address in the process (unmapped memory or a fault)");
        ASSERT_STREQ(process_errno_clause(-EIO), "a bad address in the process (unmapped memory or a fault)");
        ASSERT_STREQ(process_errno_clause(-EPERM), "the kernel refused to let ulp trace it");
        ASSERT_STREQ(process_errno_clause(-ETIMEDOUT), "a thread did not stop in time");
        ASSERT_STREQ(process_errno_clause(-ENOSYS),
                     "the kernel or the process's seccomp filter refused a system call ulp needs");
        ASSERT_STREQ(process_errno_clause(ESRCH), process_errno_clause(-ESRCH));
}

TEST(file_causes_in_ulps_words) {
        ASSERT_STREQ(errno_clause(-ENOSPC), "the file system is full");
        ASSERT_STREQ(errno_clause(-EROFS), "the file system is read-only");
        ASSERT_STREQ(errno_clause(-EIO), "the storage reported an I/O error");
        /* what a process operation has no words for is said as for a file */
        ASSERT_STREQ(process_errno_clause(-ENOMEM), "out of memory");
        ASSERT_STREQ(process_errno_clause(-EMFILE), "too many files are open");
}

TEST_MAIN()
