/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * ulpd's log: structured journal entries when systemd started us (stderr is then a
 * journal stream, $JOURNAL_STREAM), plain lines on stderr otherwise.
 */

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <syslog.h>
#include <systemd/sd-journal.h>
#include <unistd.h>

#include "daemon/ulpd.h"

int log_max_priority = LOG_INFO;
static bool log_to_journal;

/* $JOURNAL_STREAM is "DEV:INODE" of the journal stream systemd connected to stderr; it
 * is only ours if stderr still is that file (a child of a service inherits the
 * variable but may have stderr redirected). */
static bool stderr_is_journal(void) {
        const char *e = getenv("JOURNAL_STREAM");
        unsigned long long dev, ino;
        struct stat st;

        if (!e || sscanf(e, "%llu:%llu", &dev, &ino) != 2)
                return false;
        if (fstat(STDERR_FILENO, &st) < 0)
                return false;
        return st.st_dev == dev && st.st_ino == ino;
}

void log_setup(void) {
        const char *l = getenv("ULPD_LOG_LEVEL");

        log_to_journal = stderr_is_journal();
        if (l && strcmp(l, "debug") == 0)
                log_max_priority = LOG_DEBUG;
}

void log_full(int priority, pid_t pid, const char *patch, const char *func,
              const char *fmt, ...) {
        char msg[1024];
        va_list ap;

        if (priority > log_max_priority)
                return;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof(msg), fmt, ap);
        va_end(ap);

        if (log_to_journal) {
                char f_msg[1100], f_prio[16], f_pid[32], f_patch[160], f_func[160];
                struct iovec iov[6];
                size_t n = 0;

#define FIELD(buf, ...) do { \
                snprintf(buf, sizeof(buf), __VA_ARGS__); \
                iov[n++] = (struct iovec) { buf, strlen(buf) }; \
        } while (0)
                FIELD(f_msg, "MESSAGE=%s", msg);
                FIELD(f_prio, "PRIORITY=%i", priority);
                iov[n++] = (struct iovec) { (char *) "SYSLOG_IDENTIFIER=ulpd", strlen("SYSLOG_IDENTIFIER=ulpd") };
                if (pid > 0)
                        FIELD(f_pid, "ULP_PID=%d", (int) pid);
                if (patch)
                        FIELD(f_patch, "ULP_PATCH=%s", patch);
                if (func)
                        FIELD(f_func, "ULP_FUNC=%s", func);
#undef FIELD
                if (sd_journal_sendv(iov, (int) n) >= 0)
                        return;
        }
        fprintf(stderr, "ulpd: %s\n", msg);
}
