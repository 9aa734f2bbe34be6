/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * The patch directory (--patch-dir, docs/fleet.md): a patch file put there is applied as
 * a sticky patch (apply --all --sticky) to every running and future process it fits;
 * removing the file reverts it everywhere. Configuration management puts files on every
 * machine; this is all a fleet needs from ulp.
 *
 * The directory is a root trust boundary: whatever is in it runs inside other processes
 * with their privileges. So the directory and each file must belong to root and be
 * writable by nobody else; anything else is refused with a log line, never applied.
 *
 * Files are looked at when inotify says the directory changed (after a short quiet
 * period, so that a file being written is read once it is closed or renamed into
 * place), and on a slow timer in case the watch could not be set. While the directory
 * does not exist its parent is watched instead, so that a directory made after ulpd
 * started is looked at at once, not at the slow timer. Each file is remembered with the identity it was looked at with (device,
 * inode, size, change time): a file that failed is reported once, in the journal
 * and in status, and tried again only when it changes.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <syslog.h>
#include <unistd.h>

#include "common/errfmt.h"
#include "common/list.h"
#include "common/macro.h"
#include "daemon/ulpd.h"

#define PATCH_DIR_SETTLE_USEC (200ULL * 1000ULL)        /* quiet period after an event */
#define PATCH_DIR_RESCAN_USEC (30ULL * 1000000ULL)      /* the slow timer */
#define PATCH_DIR_FILES_MAX 256                         /* files considered per scan */
#define PATCH_DIR_EVENTS (IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_ATTRIB | \
                          IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR)
#define PATCH_DIR_PARENT_EVENTS (IN_CREATE | IN_MOVED_TO | IN_ONLYDIR)  /* the directory appears */

struct PatchDirFile {
        PatchDirFile *next;
        char file[256];          /* its name in the directory */
        dev_t dev;               /* the identity it was looked at with */
        ino_t ino;
        off_t size;
        struct timespec ctime;   /* any write, chmod or chown changes it */
        char patch[128];         /* the patch's name when applied, "" when it failed */
        char error[300];         /* why it was refused or failed, "" when applied */
        bool seen;               /* found by the scan in progress */
};

static bool same_identity(const PatchDirFile *f, const struct stat *st) {
        return f->dev == st->st_dev && f->ino == st->st_ino && f->size == st->st_size &&
               f->ctime.tv_sec == st->st_ctim.tv_sec && f->ctime.tv_nsec == st->st_ctim.tv_nsec;
}

/* Only root may have put it there, and only root may change it. "" when trusted. */
static const char *untrusted_why(const struct stat *st, char *buf, size_t len) {
        if (st->st_uid != 0)
                snprintf(buf, len, "owned by uid %u, not root", (unsigned) st->st_uid);
        else if (st->st_mode & (S_IWGRP | S_IWOTH))
                snprintf(buf, len, "writable by %s", (st->st_mode & S_IWOTH) ? "others" : "its group");
        else
                buf[0] = 0;
        return buf;
}

/* Reverts the patch called name in every process that carries it. */
static void revert_everywhere(Manager *m, const char *name) {
        _cleanup_free_ pid_t *pids = NULL;
        size_t n = 0;

        if (ulp_list_processes(&pids, &n) < 0)
                return;
        for (size_t i = 0; i < n; i++) {
                UlpProcessStatus s = {};
                UlpReport rep = {};
                bool has = false;
                Job *j;
                int r;

                if (ulp_status(pids[i], &s, &rep) >= 0) {
                        has = s.trusted && ulp_process_carries(&s, name);
                        ulp_status_done(&s);
                }
                ulp_report_done(&rep);
                if (!has)
                        continue;
                if (manager_pid_busy(m, pids[i])) {
                        log_full(LOG_WARNING, pids[i], name, NULL, "patch directory: pid %d has a transition "
                                 "running; %s stays applied there", (int) pids[i], name);
                        continue;
                }
                j = job_new(m, JOB_REVERT, pids[i], name);
                if (!j)
                        return;
                r = job_start(j, -1, &(UlpOptions) {});
                if (r < 0) {
                        job_log_result(j, r);
                        ulp_report_done(&j->report);
                        free(j);
                        continue;
                }
        }
}

/* A file that went away, or changed: its patch is no longer wished for. */
static void file_retire(Manager *m, PatchDirFile *f) {
        if (!f->patch[0])
                return;
        log_full(LOG_INFO, 0, f->patch, NULL, "patch directory: %s removed or replaced; reverting %s everywhere",
                 f->file, f->patch);
        (void) sticky_remove(m, f->patch);
        revert_everywhere(m, f->patch);
        f->patch[0] = 0;
}

/* Applies the file at fd (open on the directory's entry f->file) as a sticky patch.
 * On failure, the reason goes into f->error and the journal, once. */
static void file_apply(Manager *m, PatchDirFile *f, int fd) {
        _cleanup_free_ char *origin = NULL;
        char reason[300] = "", name[128] = "";
        int r;

        r = check_patch_fd(&fd, reason, sizeof(reason));
        if (r >= 0)
                r = sticky_patch_name(fd, f->file, name, sizeof(name), reason, sizeof(reason));
        if (r >= 0) {
                LIST_FOREACH(o, m->patch_dir_files)
                        if (o != f && strcmp(o->patch, name) == 0)
                                r = fail(reason, sizeof(reason), -EEXIST, "the patch %s is already applied "
                                         "from %s in the same directory", name, o->file);
        }
        if (r >= 0 && asprintf(&origin, "%s/%s", m->patch_dir, f->file) < 0)
                r = fail(reason, sizeof(reason), -ENOMEM, "out of memory");
        if (r >= 0)
                r = sticky_add(m, fd, f->file, &(UlpOptions) {}, origin, reason, sizeof(reason));
        if (r >= 0)
                r = sticky_apply_running(m, name);
        close(fd);
        if (r < 0) {
                snprintf(f->error, sizeof(f->error), "%s", reason[0] ? reason : "cannot be applied");
                log_full(LOG_ERR, 0, name[0] ? name : NULL, NULL, "patch directory: %s/%s not applied: %s; "
                         "it is tried again when the file changes", m->patch_dir, f->file, f->error);
                return;
        }
        snprintf(f->patch, sizeof(f->patch), "%s", name);
        f->error[0] = 0;
        log_full(LOG_INFO, 0, name, NULL, "patch directory: %s/%s applied as sticky patch %s", m->patch_dir,
                 f->file, name);
}

static PatchDirFile *file_find(Manager *m, const char *name) {
        LIST_FOREACH(f, m->patch_dir_files)
                if (strcmp(f->file, name) == 0)
                        return f;
        return NULL;
}

/* Names the directory considers: NAME.so, not hidden (an editor's or a copy's
 * temporary file, renamed into place when complete). */
static bool wanted_name(const char *s) {
        size_t l = strlen(s);
        return s[0] != '.' && l > 3 && l < sizeof(((PatchDirFile *) NULL)->file) && strcmp(s + l - 3, ".so") == 0;
}

/* One entry of the directory: new, changed or the same as before. */
static void scan_entry(Manager *m, int dfd, const char *name) {
        _cleanup_close_ int fd = -1;
        PatchDirFile *f = file_find(m, name);
        char why[128];
        struct stat st;

        fd = openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
        if (fd < 0 && errno == ENOENT)
                return;   /* gone meanwhile: the next scan retires it */
        if (fd >= 0 && fstat(fd, &st) < 0) {
                close(fd);
                fd = -1;
        }
        if (fd < 0 && fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return;
        if (f && same_identity(f, &st)) {
                f->seen = true;
                return;
        }
        if (f)
                file_retire(m, f);
        else {
                f = calloc(1, sizeof(*f));
                if (!f)
                        return;
                snprintf(f->file, sizeof(f->file), "%s", name);
                f->next = m->patch_dir_files;
                m->patch_dir_files = f;
        }
        *f = (PatchDirFile) { .next = f->next, .dev = st.st_dev, .ino = st.st_ino, .size = st.st_size,
                              .ctime = st.st_ctim, .seen = true };
        snprintf(f->file, sizeof(f->file), "%s", name);
        if (S_ISLNK(st.st_mode) || !S_ISREG(st.st_mode) || fd < 0)
                snprintf(f->error, sizeof(f->error), "%s", S_ISLNK(st.st_mode) ? "a symbolic link, not a file" :
                         !S_ISREG(st.st_mode) ? "not a regular file" : "cannot be opened");
        else if (untrusted_why(&st, why, sizeof(why))[0])
                snprintf(f->error, sizeof(f->error), "refused: %s (only root may put patches there)", why);
        else {
                file_apply(m, f, TAKE_FD(fd));
                return;
        }
        log_full(LOG_ERR, 0, NULL, NULL, "patch directory: %s/%s not applied: %s", m->patch_dir, name, f->error);
}

/* The directory itself: root's, writable by nobody else. Returns the open directory, or
 * NULL (why logged when it changes). */
static DIR *open_trusted_dir(Manager *m) {
        char why[128];
        struct stat st;
        DIR *d = opendir(m->patch_dir);

        if (!d) {
                if (errno != ENOENT)
                        snprintf(why, sizeof(why), "cannot be read");
                else
                        why[0] = 0;    /* no patches: not an error */
        } else if (fstat(dirfd(d), &st) < 0 || untrusted_why(&st, why, sizeof(why))[0]) {
                closedir(d);
                d = NULL;
        } else
                why[0] = 0;
        if (strcmp(why, m->patch_dir_error) != 0 && why[0])
                log_full(LOG_ERR, 0, NULL, NULL, "patch directory %s refused: %s (only root may put patches there)",
                         m->patch_dir, why);
        snprintf(m->patch_dir_error, sizeof(m->patch_dir_error), "%s", why);
        return d;
}

/* Sticky patches recorded from a file of the directory that no longer wishes them: the
 * file went (or was refused) while no ulpd was watching, or its scan just retired it. */
static void retire_orphans(Manager *m) {
        char **names = NULL;
        size_t n = 0;

        if (sticky_names_from(m, m->patch_dir, &names, &n) < 0)
                return;
        for (size_t i = 0; i < n; i++) {
                bool claimed = false;
                LIST_FOREACH(f, m->patch_dir_files)
                        claimed = claimed || strcmp(f->patch, names[i]) == 0;
                if (!claimed) {
                        log_full(LOG_INFO, 0, names[i], NULL, "patch directory: the file of sticky patch %s "
                                 "is gone; reverting it everywhere", names[i]);
                        (void) sticky_remove(m, names[i]);
                        revert_everywhere(m, names[i]);
                }
                free(names[i]);
        }
        free(names);
}

void patch_dir_scan(Manager *m) {
        DIR *d;
        struct dirent *de;
        size_t n = 0;

        if (!m->patch_dir)
                return;
        d = open_trusted_dir(m);
        if (!d && m->patch_dir_error[0])
                return;   /* an untrusted directory changes nothing that was applied */
        LIST_FOREACH(f, m->patch_dir_files)
                f->seen = false;
        while (d && (de = readdir(d)) && n < PATCH_DIR_FILES_MAX)
                if (wanted_name(de->d_name)) {
                        scan_entry(m, dirfd(d), de->d_name);
                        n++;
                }
        if (d)
                closedir(d);
        for (PatchDirFile **p = &m->patch_dir_files; *p;) {
                PatchDirFile *f = *p;
                if (f->seen) {
                        p = &f->next;
                        continue;
                }
                file_retire(m, f);
                *p = f->next;
                free(f);
        }
        retire_orphans(m);
        manager_update_status(m);
}

/* The last component of the directory's path: its start in *ret_base, its length
 * returned (trailing slashes left out). */
static size_t dir_base(const char *path, const char **ret_base) {
        const char *end = path + strlen(path), *b;

        while (end > path + 1 && end[-1] == '/')
                end--;
        for (b = end; b > path && b[-1] != '/'; b--)
                ;
        *ret_base = b;
        return (size_t) (end - b);
}

/* Watches the directory; while it cannot (it does not exist yet), its parent, for the
 * directory's name to appear there. The parent's watch goes once the directory's is set:
 * the parent's other entries are none of ulpd's business. */
static void patch_dir_watch(Manager *m) {
        _cleanup_free_ char *parent = NULL;
        const char *base;
        int fd = m->patch_dir_inotify_fd;

        if (fd < 0)
                return;
        if (m->patch_dir_wd < 0)
                m->patch_dir_wd = inotify_add_watch(fd, m->patch_dir, PATCH_DIR_EVENTS);
        if (m->patch_dir_wd >= 0) {
                if (m->patch_dir_parent_wd >= 0)
                        (void) inotify_rm_watch(fd, m->patch_dir_parent_wd);
                m->patch_dir_parent_wd = -1;
                return;
        }
        if (m->patch_dir_parent_wd >= 0)
                return;
        (void) dir_base(m->patch_dir, &base);
        parent = base == m->patch_dir ? strdup(".") : strndup(m->patch_dir, (size_t) (base - m->patch_dir));
        if (parent)
                m->patch_dir_parent_wd = inotify_add_watch(fd, parent, PATCH_DIR_PARENT_EVENTS);
}

/* An event of the parent's watch names the directory. */
static bool names_patch_dir(const Manager *m, const struct inotify_event *ev) {
        const char *base;
        size_t l = dir_base(m->patch_dir, &base);

        return ev->len > 0 && strnlen(ev->name, ev->len) == l && memcmp(ev->name, base, l) == 0;
}

static int patch_dir_on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        patch_dir_watch(m);
        patch_dir_scan(m);
        (void) sd_event_source_set_time_relative(s, PATCH_DIR_RESCAN_USEC);
        (void) sd_event_source_set_enabled(s, SD_EVENT_ONESHOT);
        return 0;
}

static int patch_dir_on_inotify(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Manager *m = userdata;
        char buf[4096] __attribute__((aligned(__alignof__(struct inotify_event))));
        bool rescan = false;
        ssize_t n;

        while ((n = read(fd, buf, sizeof(buf))) > 0)
                for (char *p = buf; p < buf + n; p += sizeof(struct inotify_event) + ((struct inotify_event *) p)->len) {
                        const struct inotify_event *ev = (const struct inotify_event *) p;

                        if (m->patch_dir_parent_wd >= 0 && ev->wd == m->patch_dir_parent_wd) {
                                if (ev->mask & IN_IGNORED)
                                        m->patch_dir_parent_wd = -1;
                                rescan = rescan || names_patch_dir(m, ev);
                                continue;
                        }
                        rescan = true;
                        if (m->patch_dir_wd >= 0 && ev->wd == m->patch_dir_wd &&
                            (ev->mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF))) {
                                /* the directory went: the timer watches it, or its parent, again */
                                (void) inotify_rm_watch(fd, m->patch_dir_wd);
                                m->patch_dir_wd = -1;
                        }
                }
        if (!rescan)
                return 0;
        /* a burst of events (a file being copied in) makes one scan, once it is quiet; the
         * scan first sets the watch of a directory that just appeared */
        (void) sd_event_source_set_time_relative(m->patch_dir_timer, PATCH_DIR_SETTLE_USEC);
        (void) sd_event_source_set_enabled(m->patch_dir_timer, SD_EVENT_ONESHOT);
        return 0;
}

int patch_dir_setup(Manager *m) {
        int r;

        m->patch_dir_inotify_fd = m->patch_dir_wd = m->patch_dir_parent_wd = -1;
        if (!m->patch_dir)
                return 0;
        m->patch_dir_inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
        if (m->patch_dir_inotify_fd < 0)
                log_warning("patch directory %s: no inotify (%m); looked at every %llu s", m->patch_dir,
                            PATCH_DIR_RESCAN_USEC / 1000000ULL);
        else {
                r = sd_event_add_io(m->event, &m->patch_dir_io, m->patch_dir_inotify_fd, EPOLLIN,
                                    patch_dir_on_inotify, m);
                if (r < 0)
                        return log_error_errno(r, "cannot watch the patch directory %s", m->patch_dir);
        }
        /* the first scan at once, from the loop */
        r = sd_event_add_time_relative(m->event, &m->patch_dir_timer, CLOCK_MONOTONIC, 0, JOB_TIMER_ACCURACY_USEC,
                                       patch_dir_on_timer, m);
        if (r < 0)
                return log_error_errno(r, "cannot set up the timer of the patch directory %s", m->patch_dir);
        return 0;
}

void patch_dir_done(Manager *m) {
        while (m->patch_dir_files) {
                PatchDirFile *f = m->patch_dir_files;
                m->patch_dir_files = f->next;
                free(f);
        }
        m->patch_dir_io = sd_event_source_disable_unref(m->patch_dir_io);
        m->patch_dir_timer = sd_event_source_disable_unref(m->patch_dir_timer);
        if (m->patch_dir_inotify_fd >= 0)
                close(m->patch_dir_inotify_fd);
        m->patch_dir_inotify_fd = -1;
        free(m->patch_dir);
        m->patch_dir = NULL;
}

struct json_object *patch_dir_to_json(Manager *m) {
        struct json_object *o, *files;

        if (!m->patch_dir)
                return NULL;
        o = json_object_new_object();
        files = json_object_new_array();
        if (!o || !files) {
                json_object_put(o);
                json_object_put(files);
                return NULL;
        }
        json_object_object_add(o, "path", json_object_new_string(m->patch_dir));
        if (m->patch_dir_error[0])
                json_object_object_add(o, "error", json_object_new_string(m->patch_dir_error));
        LIST_FOREACH(f, m->patch_dir_files) {
                struct json_object *e = json_object_new_object();
                if (!e)
                        break;
                json_object_object_add(e, "file", json_object_new_string(f->file));
                json_object_object_add(e, "state", json_object_new_string(f->patch[0] ? "applied" : "failed"));
                if (f->patch[0])
                        json_object_object_add(e, "patch", json_object_new_string(f->patch));
                else
                        json_object_object_add(e, "error", json_object_new_string(f->error));
                json_object_array_add(files, e);
        }
        json_object_object_add(o, "files", files);
        return o;
}
