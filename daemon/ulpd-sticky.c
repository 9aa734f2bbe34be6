/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * Sticky patches: `ulpctl apply --all --sticky fix.so` records the patch in the state
 * dir (the patch file copied to STATE/patches/NAME.so, the wish in NAME.wish as JSON),
 * and ulpd applies it to every process whose patched modules carry the build-ids the
 * patch pins: the running ones at once and at each start of ulpd, new ones when the
 * kernel's process connector reports their exec. The patch's own state in each target
 * stays the source of truth (docs/architecture.md, "State lives in the target"): a sticky patch only says "apply this where
 * it fits"; applying twice is refused by the core with -EEXIST and ignored here.
 *
 * A freshly exec'd process has only the dynamic linker and its executable mapped; the
 * patch's libraries (and the ones it resolves symbols against) come moments later. So
 * an exec starts a short series of tries (EXEC_TRY_DELAYS_MS) that ends at the first
 * success or definite mismatch.
 */

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/cn_proc.h>
#include <linux/connector.h>
#include <linux/netlink.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "common/errfmt.h"
#include "common/errno-clause.h"
#include "common/list.h"
#include "common/macro.h"
#include "daemon/ulpd.h"

typedef struct StickyObject {
        char *object;            /* "" main executable, else soname */
        char *build_id;          /* lower-case hex pin, or NULL */
} StickyObject;

struct StickyPatch {
        StickyPatch *next;
        char *name;
        char *so_path;
        char *record_path;
        char *origin;            /* the patch directory's file it came from (docs/fleet.md), or NULL */
        UlpOptions options;
        StickyObject *objects;
        size_t n_objects;
};

/* A process that exec'd recently and is tried again shortly. */
typedef struct ExecWatch {
        Manager *m;
        pid_t pid;
        unsigned attempt;
        sd_event_source *timer;
} ExecWatch;

static void sticky_listen(Manager *m);

static const unsigned EXEC_TRY_DELAYS_MS[] = { 5, 50, 200, 1000, 3000 };

static void sticky_objects_free(StickyObject *v, size_t n) {
        for (size_t i = 0; i < n; i++) {
                free(v[i].object);
                free(v[i].build_id);
        }
        free(v);
}

static void sticky_free(StickyPatch *w) {
        if (!w)
                return;
        sticky_objects_free(w->objects, w->n_objects);
        free(w->name);
        free(w->so_path);
        free(w->record_path);
        free(w->origin);
        free(w);
}

size_t sticky_count(Manager *m) {
        size_t n = 0;

        LIST_FOREACH(w, m->sticky_patches)
                n++;
        return n;
}

int sticky_patch_name(int fd, const char *hint, char *ret, size_t len, char *reason, size_t reason_len) {
        _cleanup_(ulp_patch_info_freep) UlpPatchInfo *pm = NULL;
        int r;

        r = ulp_patch_info_read(fd, hint, &pm, reason, reason_len);
        if (r < 0)
                return r;
        snprintf(ret, len, "%s", ulp_patch_info_name(pm));
        return 0;
}

/* The objects a patch patches, each with its pin. The main executable must be pinned:
 * "every process whose main executable is the one this patch was built for" means
 * nothing without a build-id. */
static int sticky_objects_from_meta(const UlpPatchInfo *pm, StickyObject **ret, size_t *ret_n,
                                  char *reason, size_t reason_len) {
        size_t n_funcs = ulp_patch_info_n_funcs(pm);
        StickyObject *v = calloc(n_funcs ?: 1, sizeof(*v));
        size_t n = 0;

        if (!v)
                return -ENOMEM;
        for (size_t i = 0; i < n_funcs; i++) {
                const char *obj = ulp_patch_info_func(pm, i).object;
                const char *pin = ulp_patch_info_pin_for(pm, obj);
                bool seen = false;

                for (size_t k = 0; k < n; k++)
                        seen = seen || strcmp(v[k].object, obj) == 0;
                if (seen)
                        continue;
                if (!*obj && !pin) {
                        snprintf(reason, reason_len,
                                 "patch %s does not pin the main executable's build-id (ULP_BUILD_ID(ULP_MAIN, ...)), "
                                 "so --all cannot tell which processes it is for", ulp_patch_info_name(pm));
                        sticky_objects_free(v, n);
                        return -EINVAL;
                }
                v[n].object = strdup(obj);
                v[n].build_id = pin ? strdup(pin) : NULL;
                n++;
        }
        *ret = v;
        *ret_n = n;
        return 0;
}

/* 1 when the patch fits pid: at least one of its objects is loaded, every loaded one
 * with the pinned build-id (the others become pending objects of the patch, patched
 * when pid loads them, as the kernel does for modules: ulpd-late.c); 0 when none is
 * loaded (yet); -ESTALE when a pinned object is loaded with another build-id (it never
 * will fit); -ESRCH when the process is gone or unreadable. */
static int objects_match(pid_t pid, const StickyObject *objs, size_t n) {
        _cleanup_(ulp_objects_freep) UlpObjects *l = NULL;
        bool any = false;
        int r;

        r = ulp_objects_read(pid, &l);
        if (r < 0)
                return r == -ENOMEM ? 0 : -ESRCH;   /* gone, or not ours to read: never */
        for (size_t i = 0; i < n; i++) {
                char hex[ULP_BUILD_ID_HEX_MAX];

                if (ulp_objects_find(l, objs[i].object, hex) <= 0) {
                        if (!objs[i].object[0])
                                return -ESTALE;
                        continue;
                }
                any = true;
                if (!objs[i].build_id)
                        continue;
                if (strcmp(hex, objs[i].build_id) != 0)
                        return -ESTALE;
        }
        return any ? 1 : 0;
}

/* Calls fn for every process but ulpd and kernel threads. */
static int for_each_process(Manager *m, int (*fn)(Manager *m, pid_t pid, void *ud), void *ud) {
        DIR *d = opendir("/proc");
        struct dirent *de;
        int r = 0;

        if (!d)
                return negative_errno();
        while ((de = readdir(d))) {
                char *end, path[64], target[16];
                long pid = strtol(de->d_name, &end, 10);
                struct stat st;

                /* a vfork child maps its parent's objects until its exec: the parent's */
                if (*end || pid <= 0 || (pid_t) pid == m->self || ulp_vfork_parent((pid_t) pid) > 0)
                        continue;
                snprintf(path, sizeof(path), "/proc/%ld/exe", pid);
                if (lstat(path, &st) < 0)
                        continue;
                /* kernel threads have no mm: their maps are empty, exe unreadable */
                if (readlink(path, target, sizeof(target)) < 0 && errno == ENOENT)
                        continue;
                r = fn(m, (pid_t) pid, ud);
                if (r < 0)
                        break;
        }
        closedir(d);
        return r;
}

typedef struct MatchCollect {
        const StickyObject *objs;
        size_t n_objs;
        pid_t *v;
        size_t n, alloc;
} MatchCollect;

static int collect_match(Manager *m, pid_t pid, void *ud) {
        MatchCollect *c = ud;

        if (objects_match(pid, c->objs, c->n_objs) <= 0)
                return 0;
        if (GROW_FOR_ONE(c->v, c->n, c->alloc, 16) < 0)
                return -ENOMEM;
        c->v[c->n++] = pid;
        return 0;
}

int sticky_matching_pids(Manager *m, int patch_fd, const char *name_hint,
                          pid_t **ret, size_t *ret_n, char *reason, size_t reason_len) {
        _cleanup_(ulp_patch_info_freep) UlpPatchInfo *pm = NULL;
        StickyObject *objs = NULL;
        MatchCollect c = {};
        size_t n_objs = 0;
        int r;

        r = ulp_patch_info_read(patch_fd, name_hint, &pm, reason, reason_len);
        if (r < 0)
                return r;
        r = sticky_objects_from_meta(pm, &objs, &n_objs, reason, reason_len);
        if (r < 0)
                return r;
        c.objs = objs;
        c.n_objs = n_objs;
        r = for_each_process(m, collect_match, &c);
        sticky_objects_free(objs, n_objs);
        if (r < 0) {
                free(c.v);
                return fail(reason, reason_len, r, "cannot list processes: %s", errno_clause(r));
        }
        *ret = c.v;
        *ret_n = c.n;
        return 0;
}

/* File names in the state dir come from patch names: keep them tame. */
static void name_to_file(const char *name, char *buf, size_t len) {
        size_t k = 0;

        if (len == 0)
                return;
        if (name[0] == '.' && k + 1 < len)
                buf[k++] = '_';
        for (const char *s = name; *s && k + 1 < len; s++)
                buf[k++] = (strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._+-", *s)) ? *s : '_';
        buf[k] = 0;
}

static int copy_fd_to(int fd, const char *path) {
        _cleanup_free_ char *tmp = NULL;
        _cleanup_close_ int out = -1;
        struct stat st;
        off_t off = 0;

        if (fstat(fd, &st) < 0)
                return negative_errno();
        if (asprintf(&tmp, "%s.tmp", path) < 0)
                return -ENOMEM;
        out = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (out < 0)
                return negative_errno();
        while (off < st.st_size) {
                ssize_t n = sendfile(out, fd, &off, (size_t) (st.st_size - off));
                if (n < 0) {
                        int r = negative_errno();
                        unlink(tmp);
                        return r;
                }
                if (n == 0)
                        break;
        }
        if (fsync(out) < 0 || rename(tmp, path) < 0) {
                int r = negative_errno();
                unlink(tmp);
                return r;
        }
        return 0;
}

static int write_string_atomic(const char *path, const char *s) {
        _cleanup_free_ char *tmp = NULL;
        FILE *f;
        int r = 0;

        if (asprintf(&tmp, "%s.tmp", path) < 0)
                return -ENOMEM;
        f = fopen(tmp, "we");
        if (!f)
                return negative_errno();
        if (fputs(s, f) < 0 || fputc('\n', f) < 0 || fflush(f) != 0 || fsync(fileno(f)) < 0)
                r = negative_errno();
        if (fclose(f) != 0 && r == 0)
                r = negative_errno();
        if (r == 0 && rename(tmp, path) < 0)
                r = negative_errno();
        if (r < 0)
                unlink(tmp);
        return r;
}

static struct json_object *sticky_to_json(const StickyPatch *w, const char *so_file) {
        struct json_object *o = json_object_new_object(), *objs = json_object_new_array(), *opt;

        json_object_object_add(o, "name", json_object_new_string(w->name));
        json_object_object_add(o, "file", json_object_new_string(so_file));
        if (w->origin)
                json_object_object_add(o, "origin", json_object_new_string(w->origin));
        for (size_t i = 0; i < w->n_objects; i++) {
                struct json_object *e = json_object_new_object();
                json_object_object_add(e, "object", json_object_new_string(w->objects[i].object));
                if (w->objects[i].build_id)
                        json_object_object_add(e, "build_id", json_object_new_string(w->objects[i].build_id));
                json_object_array_add(objs, e);
        }
        json_object_object_add(o, "objects", objs);
        opt = json_object_new_object();
        json_object_object_add(opt, "timeout_ms", json_object_new_int64(w->options.timeout_ms));
        json_object_object_add(opt, "force", json_object_new_boolean(w->options.force));
        json_object_object_add(opt, "global", json_object_new_boolean(w->options.global));
        json_object_object_add(opt, "return_trap", json_object_new_boolean(w->options.return_trap));
        json_object_object_add(o, "options", opt);
        return o;
}

static int patches_dir(Manager *m, char **ret) {
        char *d;

        if (asprintf(&d, "%s/patches", m->state_dir) < 0)
                return -ENOMEM;
        if (mkdir(m->state_dir, 0755) < 0 && errno != EEXIST) {
                free(d);
                return negative_errno();
        }
        if (mkdir(d, 0700) < 0 && errno != EEXIST) {
                free(d);
                return negative_errno();
        }
        *ret = d;
        return 0;
}

static void sticky_unlink_all(Manager *m, const char *name) {
        for (StickyPatch **p = &m->sticky_patches; *p; p = &(*p)->next)
                if (strcmp((*p)->name, name) == 0) {
                        StickyPatch *w = *p;
                        *p = w->next;
                        sticky_free(w);
                        return;
                }
}

int sticky_add(Manager *m, int patch_fd, const char *name_hint, const UlpOptions *o, const char *origin,
                char *reason, size_t reason_len) {
        _cleanup_(ulp_patch_info_freep) UlpPatchInfo *pm = NULL;
        _cleanup_free_ char *dir = NULL;
        char file[200];
        struct json_object *j;
        StickyPatch *w;
        int r;

        r = ulp_patch_info_read(patch_fd, name_hint, &pm, reason, reason_len);
        if (r < 0)
                return r;
        w = calloc(1, sizeof(*w));
        if (!w)
                return -ENOMEM;
        w->options = *o;
        w->name = strdup(ulp_patch_info_name(pm));
        if (origin && !(w->origin = strdup(origin))) {
                sticky_free(w);
                return -ENOMEM;
        }
        r = sticky_objects_from_meta(pm, &w->objects, &w->n_objects, reason, reason_len);
        if (r < 0 || !w->name) {
                sticky_free(w);
                return r < 0 ? r : -ENOMEM;
        }
        r = patches_dir(m, &dir);
        if (r < 0) {
                snprintf(reason, reason_len, "cannot create %s/patches: %s", m->state_dir, errno_clause(r));
                sticky_free(w);
                return r;
        }
        name_to_file(ulp_patch_info_name(pm), file, sizeof(file));
        if (asprintf(&w->so_path, "%s/%s.so", dir, file) < 0 ||
            asprintf(&w->record_path, "%s/%s.wish", dir, file) < 0) {
                sticky_free(w);
                return -ENOMEM;
        }
        r = copy_fd_to(patch_fd, w->so_path);
        if (r >= 0) {
                char so_file[210];
                snprintf(so_file, sizeof(so_file), "%s.so", file);
                j = sticky_to_json(w, so_file);
                r = j ? write_string_atomic(w->record_path,
                                            json_object_to_json_string_ext(j, JSON_C_TO_STRING_PRETTY)) : -ENOMEM;
                json_object_put(j);
        }
        if (r < 0) {
                snprintf(reason, reason_len, "cannot record the sticky patch in %s: %s", dir, errno_clause(r));
                sticky_free(w);
                return r;
        }
        sticky_unlink_all(m, w->name);
        w->next = m->sticky_patches;
        m->sticky_patches = w;
        log_full(LOG_INFO, 0, w->name, NULL, "sticky patch %s recorded; new processes it fits get it", w->name);
        sticky_listen(m);
        manager_update_status(m);
        return 0;
}

int sticky_remove(Manager *m, const char *name) {
        LIST_FOREACH(w, m->sticky_patches)
                if (strcmp(w->name, name) == 0) {
                        (void) unlink(w->record_path);
                        (void) unlink(w->so_path);
                        log_full(LOG_INFO, 0, name, NULL, "sticky patch %s removed", name);
                        sticky_unlink_all(m, name);
                        manager_update_status(m);
                        return 0;
                }
        return -ENOENT;
}

/* Tries every sticky patch on pid. Returns 1 when nothing is left to try later, 0 when
 * some may still fit once more of the process is loaded. */
static int sticky_try_process(Manager *m, pid_t pid) {
        bool again = false;

        LIST_FOREACH(w, m->sticky_patches) {
                _cleanup_close_ int fd = -1;
                const char *slash;
                int r;

                r = objects_match(pid, w->objects, w->n_objects);
                if (r < 0)
                        continue;     /* another build */
                if (r == 0) {
                        again = true;
                        continue;
                }
                fd = open(w->so_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
                if (fd < 0) {
                        log_full(LOG_WARNING, 0, w->name, NULL, "sticky patch %s: cannot open %s: %m",
                                 w->name, w->so_path);
                        continue;
                }
                slash = strrchr(w->so_path, '/');
                r = manager_start_auto_apply(m, pid, fd, slash ? slash + 1 : w->so_path, &w->options);
                if (r == -EBUSY || r == -ENOENT)
                        again = true;  /* busy, or a library it links against not there yet */
        }
        return again ? 0 : 1;
}

void sticky_process_appeared(Manager *m, pid_t pid) {
        (void) sticky_try_process(m, pid);
}

/* The watch's timer is floating (the loop owns it) and frees the watch when destroyed,
 * so watches still pending at exit go with sd_event_unref(). */
static void exec_watch_end(ExecWatch *w) {
        sd_event_source *s = sd_event_source_ref(w->timer);

        (void) sd_event_source_set_floating(s, false);   /* drops the loop's reference */
        sd_event_source_disable_unref(s);    /* the last one: frees w through the destroy callback */
}

static int exec_watch_on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        ExecWatch *w = userdata;

        if (sticky_try_process(w->m, w->pid) == 0 && ++w->attempt < ELEMENTSOF(EXEC_TRY_DELAYS_MS)) {
                (void) sd_event_source_set_time_relative(w->timer, EXEC_TRY_DELAYS_MS[w->attempt] * 1000ULL);
                (void) sd_event_source_set_enabled(w->timer, SD_EVENT_ONESHOT);
                return 0;
        }
        exec_watch_end(w);
        return 0;
}

static void sticky_on_exec(Manager *m, pid_t pid) {
        ExecWatch *w;

        if (!m->sticky_patches || pid == m->self)
                return;
        w = calloc(1, sizeof(*w));
        if (!w)
                return;
        w->m = m;
        w->pid = pid;
        if (sd_event_add_time_relative(m->event, &w->timer, CLOCK_MONOTONIC,
                                       EXEC_TRY_DELAYS_MS[0] * 1000ULL, 0, exec_watch_on_timer, w) < 0) {
                free(w);
                return;
        }
        (void) sd_event_source_set_destroy_callback(w->timer, free);
        (void) sd_event_source_set_floating(w->timer, true);
        sd_event_source_unref(w->timer);    /* the loop holds it now; w->timer stays valid */
}

/* ---- the process connector --------------------------------------------------------- */

static void sticky_apply_everywhere(Manager *m, StickyPatch *w);

/* The process connector reports pids as the initial pid namespace numbers them. In
 * another one (ulpd in a container) they name other processes or none: an exec event
 * then only says that some process started, and every process is looked at. */
static bool pid_ns_is_initial(void) {
        struct stat st;

        /* PROC_PID_INIT_INO: the inode number of the initial pid namespace. */
        return stat("/proc/self/ns/pid", &st) < 0 || st.st_ino == 0xEFFFFFFCU;
}

/* Exec events were lost (the socket overran on a busy host), or name pids of another
 * namespace: look at every process once, a little later, instead of missing one. */
static int rescan_on_timer(sd_event_source *s, uint64_t usec, void *userdata) {
        Manager *m = userdata;

        if (pid_ns_is_initial())
                log_info("exec events were lost: looking at every process for sticky patches");
        LIST_FOREACH(w, m->sticky_patches)
                sticky_apply_everywhere(m, w);
        return 0;
}

static void schedule_rescan(Manager *m) {
        int enabled = SD_EVENT_OFF;

        if (m->rescan_source) {
                (void) sd_event_source_get_enabled(m->rescan_source, &enabled);
                if (enabled != SD_EVENT_OFF)
                        return;   /* one is due already */
                (void) sd_event_source_set_time_relative(m->rescan_source, 500 * 1000);
                (void) sd_event_source_set_enabled(m->rescan_source, SD_EVENT_ONESHOT);
                return;
        }
        (void) sd_event_add_time_relative(m->event, &m->rescan_source, CLOCK_MONOTONIC,
                                          500 * 1000, 0, rescan_on_timer, m);
}

static int netlink_on_io(sd_event_source *s, int fd, uint32_t revents, void *userdata) {
        Manager *m = userdata;

        for (int i = 0; i < 256; i++) {
                char buf[8192] __attribute__((aligned(NLMSG_ALIGNTO)));
                struct sockaddr_nl from;
                socklen_t fl = sizeof(from);
                ssize_t n = recvfrom(fd, buf, sizeof(buf), MSG_DONTWAIT, (struct sockaddr *) &from, &fl);

                if (n < 0) {
                        if (errno == ENOBUFS && m->sticky_patches)
                                schedule_rescan(m);
                        if (errno == ENOBUFS)
                                continue;
                        break;
                }
                if (from.nl_pid != 0)   /* only the kernel speaks here */
                        continue;
                for (struct nlmsghdr *h = (struct nlmsghdr *) buf; NLMSG_OK(h, (size_t) n); h = NLMSG_NEXT(h, n)) {
                        struct cn_msg *cn;
                        struct proc_event *ev;

                        if (h->nlmsg_type == NLMSG_NOOP || h->nlmsg_type == NLMSG_ERROR)
                                continue;
                        if (h->nlmsg_len < NLMSG_LENGTH(sizeof(struct cn_msg) + sizeof(struct proc_event)))
                                continue;
                        cn = NLMSG_DATA(h);
                        if (cn->id.idx != CN_IDX_PROC || cn->id.val != CN_VAL_PROC)
                                continue;
                        ev = (struct proc_event *) cn->data;
                        if (ev->what != PROC_EVENT_EXEC)
                                continue;
                        if (m->sticky_patches && !pid_ns_is_initial())
                                schedule_rescan(m);
                        else
                                sticky_on_exec(m, ev->event_data.exec.process_tgid);
                }
        }
        return 0;
}

/* Subscribes to the process connector's events (needs CAP_NET_ADMIN in the initial
 * user namespace). Called only once there is a sticky patch: without any ulpd has
 * no use for the stream of every fork and exit on the host. */
static int netlink_setup(Manager *m) {
        struct sockaddr_nl sa = { .nl_family = AF_NETLINK, .nl_groups = CN_IDX_PROC };
        /* the header, then a cn_msg whose data[] is the op: as bytes, since a struct with
         * cn_msg (a flexible array) anywhere but last is no standard C */
        union {
                char buf[NLMSG_LENGTH(sizeof(struct cn_msg) + sizeof(enum proc_cn_mcast_op))];
                struct nlmsghdr h;
        } msg = {};
        struct cn_msg *cn = NLMSG_DATA(&msg.h);
        enum proc_cn_mcast_op op = PROC_CN_MCAST_LISTEN;
        _cleanup_close_ int fd = -1;
        int r, size = 8 << 20;

        if (m->netlink_fd >= 0)
                return 0;
        fd = socket(AF_NETLINK, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_CONNECTOR);
        if (fd < 0)
                return negative_errno();
        /* every fork and exit of the host comes through here: room for bursts */
        if (setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &size, sizeof(size)) < 0)
                (void) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof(size));
        if (bind(fd, (struct sockaddr *) &sa, sizeof(sa)) < 0)
                return negative_errno();
        msg.h.nlmsg_len = sizeof(msg.buf);
        msg.h.nlmsg_type = NLMSG_DONE;
        msg.h.nlmsg_pid = 0;
        cn->id.idx = CN_IDX_PROC;
        cn->id.val = CN_VAL_PROC;
        cn->len = sizeof(op);
        memcpy(cn->data, &op, sizeof(op));
        if (send(fd, msg.buf, sizeof(msg.buf), 0) < 0)
                return negative_errno();
        r = sd_event_add_io(m->event, &m->netlink_source, fd, EPOLLIN, netlink_on_io, m);
        if (r < 0)
                return r;
        m->netlink_fd = TAKE_FD(fd);
        m->exec_events = true;
        log_info("listening for exec events (process connector)%s",
                 pid_ns_is_initial() ? "" : "; in a pid namespace of its own, ulpd looks at every process after one");
        return 0;
}

static void sticky_listen(Manager *m) {
        int r;

        if (m->netlink_fd >= 0 || !m->sticky_patches)
                return;
        r = netlink_setup(m);
        if (r < 0)
                log_warning("no exec events from the kernel's process connector (%s): "
                            "sticky patches reach processes running when ulpd starts or --sticky is given, "
                            "not ones started later", process_errno_clause(r));
}

/* ---- loading sticky_patches ------------------------------------------------------------------ */

static StickyPatch *sticky_load(Manager *m, const char *dir, const char *file) {
        _cleanup_free_ char *path = NULL;
        struct json_object *j, *objs, *opt;
        const char *name, *so;
        StickyPatch *w;

        if (asprintf(&path, "%s/%s", dir, file) < 0)
                return NULL;
        j = json_object_from_file(path);
        if (!j) {
                log_warning("ignoring unreadable sticky patch record %s", path);
                return NULL;
        }
        name = protocol_get_string(j, "name");
        so = protocol_get_string(j, "file");
        w = calloc(1, sizeof(*w));
        if (!w || !name || !so || strchr(so, '/') ||
            !json_object_object_get_ex(j, "objects", &objs) || !json_object_is_type(objs, json_type_array))
                goto bad;
        w->name = strdup(name);
        if (protocol_get_string(j, "origin"))
                w->origin = strdup(protocol_get_string(j, "origin"));
        w->record_path = TAKE_PTR(path);
        if (asprintf(&w->so_path, "%s/%s", dir, so) < 0)
                goto bad;
        w->n_objects = json_object_array_length(objs);
        w->objects = calloc(w->n_objects ?: 1, sizeof(StickyObject));
        if (!w->objects || !w->name)
                goto bad;
        for (size_t i = 0; i < w->n_objects; i++) {
                struct json_object *e = json_object_array_get_idx(objs, i);
                const char *obj = protocol_get_string(e, "object"), *bid = protocol_get_string(e, "build_id");

                if (!obj || (!*obj && !bid))
                        goto bad;
                w->objects[i].object = strdup(obj);
                w->objects[i].build_id = bid ? strdup(bid) : NULL;
        }
        if (json_object_object_get_ex(j, "options", &opt)) {
                int64_t t = 0;
                (void) protocol_get_int(opt, "timeout_ms", 0, 24LL * 3600 * 1000, &t);
                w->options.timeout_ms = (unsigned) t;
                w->options.force = protocol_get_bool(opt, "force", false);
                w->options.global = protocol_get_bool(opt, "global", false);
                w->options.return_trap = protocol_get_bool(opt, "return_trap", false);
        }
        json_object_put(j);
        return w;
bad:
        log_warning("ignoring malformed sticky patch record %s/%s", dir, file);
        json_object_put(j);
        sticky_free(w);
        return NULL;
}

/* Milliseconds since pid started, or -errno. */
static int64_t process_age_ms(pid_t pid) {
        char path[64], buf[1024], *p;
        unsigned long long start_ticks;
        struct timespec now;
        ssize_t n;
        _cleanup_close_ int fd = -1;

        snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
        fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
                return negative_errno();
        n = read(fd, buf, sizeof(buf) - 1);
        if (n <= 0)
                return -ESRCH;
        buf[n] = 0;
        /* after the command name, which may hold anything: state is field 3, starttime 22 */
        p = strrchr(buf, ')');
        if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu",
                         &start_ticks) != 1)
                return -EIO;
        if (clock_gettime(CLOCK_BOOTTIME, &now) < 0)
                return negative_errno();
        return (int64_t) now.tv_sec * 1000 + now.tv_nsec / 1000000 -
               (int64_t) (start_ticks * 1000 / (unsigned long long) sysconf(_SC_CLK_TCK));
}

static int apply_sticky_to(Manager *m, pid_t pid, void *ud) {
        StickyPatch *w = ud;
        _cleanup_close_ int fd = -1;
        const char *slash;

        /* Where exec events name no pid (see pid_ns_is_initial), a pass may find a
         * process a moment after its exec, still in its dynamic linker: patching it then
         * would work from a list of its objects about to change. It is looked at again
         * on a later pass. */
        if (!pid_ns_is_initial()) {
                int64_t age = process_age_ms(pid);
                if (age >= 0 && age < 1000) {
                        schedule_rescan(m);
                        return 0;
                }
        }
        if (objects_match(pid, w->objects, w->n_objects) <= 0)
                return 0;
        fd = open(w->so_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0)
                return 0;
        slash = strrchr(w->so_path, '/');
        (void) manager_start_auto_apply(m, pid, fd, slash ? slash + 1 : w->so_path, &w->options);
        return 0;
}

static void sticky_apply_everywhere(Manager *m, StickyPatch *w) {
        if (!w)
                return;
        (void) for_each_process(m, apply_sticky_to, w);
}

int sticky_names_from(Manager *m, const char *dir, char ***ret, size_t *ret_n) {
        size_t l = strlen(dir), n = 0;
        char **v = calloc(sticky_count(m) + 1, sizeof(char *));

        if (!v)
                return -ENOMEM;
        LIST_FOREACH(w, m->sticky_patches)
                if (w->origin && strncmp(w->origin, dir, l) == 0 && w->origin[l] == '/' &&
                    !strchr(w->origin + l + 1, '/') && (v[n] = strdup(w->name)))
                        n++;
        *ret = v;
        *ret_n = n;
        return 0;
}

int sticky_apply_running(Manager *m, const char *name) {
        LIST_FOREACH(w, m->sticky_patches)
                if (strcmp(w->name, name) == 0) {
                        sticky_apply_everywhere(m, w);
                        return 0;
                }
        return -ENOENT;
}

static bool from_patch_dir(Manager *m, const StickyPatch *w) {
        size_t l = m->patch_dir ? strlen(m->patch_dir) : 0;
        return w->origin && l && strncmp(w->origin, m->patch_dir, l) == 0 && w->origin[l] == '/';
}

int sticky_setup(Manager *m) {
        _cleanup_free_ char *dir = NULL;
        struct dirent *de;
        DIR *d;

        if (asprintf(&dir, "%s/patches", m->state_dir) < 0)
                return -ENOMEM;
        d = opendir(dir);
        if (d) {
                while ((de = readdir(d))) {
                        size_t l = strlen(de->d_name);
                        StickyPatch *w;

                        if (l < 6 || strcmp(de->d_name + l - 5, ".wish") != 0)
                                continue;
                        w = sticky_load(m, dir, de->d_name);
                        if (!w)
                                continue;
                        sticky_unlink_all(m, w->name);
                        w->next = m->sticky_patches;
                        m->sticky_patches = w;
                }
                closedir(d);
        }

        sticky_listen(m);

        LIST_FOREACH(w, m->sticky_patches) {
                log_full(LOG_INFO, 0, w->name, NULL, "sticky patch %s loaded", w->name);
                /* one from the patch directory waits for its scan: its file may be gone */
                if (!from_patch_dir(m, w))
                        sticky_apply_everywhere(m, w);
        }
        return 0;
}

void sticky_done(Manager *m) {
        while (m->sticky_patches) {
                StickyPatch *w = m->sticky_patches;
                m->sticky_patches = w->next;
                sticky_free(w);
        }
        m->netlink_source = sd_event_source_disable_unref(m->netlink_source);
        m->rescan_source = sd_event_source_disable_unref(m->rescan_source);
        if (m->netlink_fd >= 0)
                close(m->netlink_fd);
        m->netlink_fd = -1;
}
