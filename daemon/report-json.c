/* SPDX-License-Identifier: LGPL-2.1-or-later */
/*
 * UlpReport / UlpProcessStatus <-> JSON. See report-json.h for the shapes.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/macro.h"
#include "daemon/report-json.h"

const char *errno_name(int error) {
        const char *n;

        if (error == 0)
                return "OK";
        n = strerrorname_np(error < 0 ? -error : error);
        return n ? n : "EUNKNOWN";
}

/* json_object_object_add() takes the value's reference even on failure (json-c >= 0.13
 * returns an int we cannot do much with); NULL values become JSON null, so a failed
 * allocation below degrades to a missing field rather than a crash. */
static void add(struct json_object *o, const char *k, struct json_object *v) {
        json_object_object_add(o, k, v);
}

static struct json_object *stragglers_to_json(const UlpStraggler *s, size_t n) {
        struct json_object *a = json_object_new_array();

        if (!a)
                return NULL;
        for (size_t i = 0; i < n; i++) {
                struct json_object *e = json_object_new_object();
                if (!e)
                        break;
                add(e, "tid", json_object_new_int(s[i].tid));
                add(e, "name", json_object_new_string(s[i].comm));
                add(e, "function", json_object_new_string(s[i].function));
                json_object_array_add(a, e);
        }
        return a;
}

struct json_object *report_to_json(const UlpReport *r, int error) {
        struct json_object *o = json_object_new_object(), *w;

        if (!o)
                return NULL;
        add(o, "ok", json_object_new_boolean(error >= 0));
        if (error < 0)
                add(o, "error", json_object_new_string(r->message[0] ? r->message : strerror(-error)));
        add(o, "errno", json_object_new_int(error < 0 ? -error : 0));
        add(o, "errno_name", json_object_new_string(errno_name(error < 0 ? error : 0)));
        add(o, "patch", json_object_new_string(r->patch_name));
        add(o, "threads", json_object_new_int64(r->threads));
        add(o, "switched", json_object_new_int64(r->switched));
        add(o, "retries", json_object_new_int64(r->retries));
        add(o, "max_thread_stop_us", json_object_new_uint64(r->max_thread_stop_us));
        add(o, "max_stw_us", json_object_new_uint64(r->max_stw_us));
        add(o, "total_ms", json_object_new_uint64(r->total_ms));
        add(o, "forced", json_object_new_boolean(r->forced));
        w = json_object_new_array();
        for (size_t i = 0; w && r->warnings && i < r->n_warnings && r->warnings[i]; i++)
                json_object_array_add(w, json_object_new_string(r->warnings[i]));
        add(o, "warnings", w);
        add(o, "stragglers", stragglers_to_json(r->stragglers, r->n_stragglers));
        return o;
}

static const char *get_string(struct json_object *o, const char *k) {
        struct json_object *v;

        if (!json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_string))
                return NULL;
        return json_object_get_string(v);
}

static uint64_t get_u64(struct json_object *o, const char *k) {
        struct json_object *v;

        if (!json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_int))
                return 0;
        return json_object_get_uint64(v);
}

static int64_t get_i64(struct json_object *o, const char *k) {
        struct json_object *v;

        if (!json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_int))
                return 0;
        return json_object_get_int64(v);
}

static bool get_bool(struct json_object *o, const char *k) {
        struct json_object *v;

        if (!json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_boolean))
                return false;
        return json_object_get_boolean(v);
}

static struct json_object *get_array(struct json_object *o, const char *k) {
        struct json_object *v;

        if (!json_object_object_get_ex(o, k, &v) || !json_object_is_type(v, json_type_array))
                return NULL;
        return v;
}

static void copy_string(char *dst, size_t size, const char *src) {
        snprintf(dst, size, "%s", src ?: "");
}

static int stragglers_from_json(struct json_object *a, UlpStraggler **ret, size_t *ret_n) {
        size_t n = a ? json_object_array_length(a) : 0;
        UlpStraggler *s;

        *ret = NULL;
        *ret_n = 0;
        if (n == 0)
                return 0;
        s = calloc(n, sizeof(*s));
        if (!s)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                struct json_object *e = json_object_array_get_idx(a, i);
                if (!json_object_is_type(e, json_type_object)) {
                        free(s);
                        return -EBADMSG;
                }
                s[i].tid = (pid_t) get_i64(e, "tid");
                copy_string(s[i].comm, sizeof(s[i].comm), get_string(e, "name"));
                copy_string(s[i].function, sizeof(s[i].function), get_string(e, "function"));
        }
        *ret = s;
        *ret_n = n;
        return 0;
}

void report_json_done(UlpReport *r) {
        if (!r)
                return;
        for (size_t i = 0; r->warnings && r->warnings[i]; i++)
                free(r->warnings[i]);
        free(r->warnings);
        free(r->stragglers);
        memset(r, 0, sizeof(*r));
}

int report_from_json(struct json_object *o, UlpReport *ret, int *ret_error) {
        UlpReport r = {};
        struct json_object *w;
        int e, error;

        if (!json_object_is_type(o, json_type_object) || !json_object_object_get_ex(o, "ok", NULL))
                return -EBADMSG;

        error = get_bool(o, "ok") ? 0 : -(int) get_i64(o, "errno");
        if (!get_bool(o, "ok") && error >= 0)
                error = -EIO;   /* failed but no errno: still a failure */
        if (error < 0)
                copy_string(r.message, sizeof(r.message), get_string(o, "error"));
        copy_string(r.patch_name, sizeof(r.patch_name), get_string(o, "patch"));
        r.threads = (unsigned) get_u64(o, "threads");
        r.switched = (unsigned) get_u64(o, "switched");
        r.retries = (unsigned) get_u64(o, "retries");
        r.max_thread_stop_us = get_u64(o, "max_thread_stop_us");
        r.max_stw_us = get_u64(o, "max_stw_us");
        r.total_ms = get_u64(o, "total_ms");
        r.forced = get_bool(o, "forced");

        w = get_array(o, "warnings");
        if (w && json_object_array_length(w) > 0) {
                size_t n = json_object_array_length(w), k = 0;

                r.warnings = calloc(n + 1, sizeof(char *));
                if (!r.warnings)
                        return -ENOMEM;
                for (size_t i = 0; i < n; i++) {
                        const char *s = json_object_get_string(json_object_array_get_idx(w, i));
                        if (!s)
                                continue;
                        r.warnings[k] = strdup(s);
                        if (!r.warnings[k]) {
                                report_json_done(&r);
                                return -ENOMEM;
                        }
                        k++;
                }
                r.n_warnings = k;
        }

        e = stragglers_from_json(get_array(o, "stragglers"), &r.stragglers, &r.n_stragglers);
        if (e < 0) {
                report_json_done(&r);
                return e;
        }

        *ret = r;
        if (ret_error)
                *ret_error = error;
        return 0;
}

/* An address as the tools that read them print it ("0x7f..."): a JSON number holds
 * 53 bits exactly in most readers, and nobody reads addresses in decimal. */
static struct json_object *hex_string(uint64_t v) {
        char buf[24];
        snprintf(buf, sizeof(buf), "0x%" PRIx64, v);
        return json_object_new_string(buf);
}

/* An address as hex_string() writes it, or as the number older ulpds sent; 0 otherwise. */
static uint64_t get_addr(struct json_object *o, const char *k) {
        struct json_object *v;
        const char *s;
        char *end;
        uint64_t a;

        if (!json_object_object_get_ex(o, k, &v))
                return 0;
        if (json_object_is_type(v, json_type_int))
                return json_object_get_uint64(v);
        s = json_object_get_string(v);
        if (!json_object_is_type(v, json_type_string) || strncmp(s, "0x", 2) != 0 || !s[2])
                return 0;
        errno = 0;
        a = strtoull(s + 2, &end, 16);
        return errno || *end ? 0 : a;
}

static struct json_object *patch_status_to_json(const UlpPatchStatus *p) {
        struct json_object *o = json_object_new_object(), *f;

        if (!o)
                return NULL;
        add(o, "name", json_object_new_string(p->name));
        add(o, "state", json_object_new_string(ulp_patch_state_to_string(p->state)));
        add(o, "forced", json_object_new_boolean(p->forced));
        add(o, "replace", json_object_new_boolean(p->replace));
        if (p->applied_ns) {
                char when[32];
                time_t t = (time_t)(p->applied_ns / 1000000000ULL);
                struct tm tm;
                if (gmtime_r(&t, &tm) && strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm))
                        add(o, "applied_at", json_object_new_string(when));
                add(o, "applied_by_uid", json_object_new_int64(p->applied_uid));
        }
        add(o, "code_mapped", json_object_new_boolean(p->code_mapped));
        f = json_object_new_array();
        for (size_t i = 0; f && i < p->n_funcs; i++) {
                struct json_object *e = json_object_new_object();
                if (!e)
                        break;
                add(e, "object", json_object_new_string(p->funcs[i].object));
                add(e, "symbol", json_object_new_string(p->funcs[i].symbol));
                add(e, "addr", hex_string(p->funcs[i].addr));
                json_object_array_add(f, e);
        }
        add(o, "functions", f);
        add(o, "stragglers", stragglers_to_json(p->stragglers, p->n_stragglers));
        f = json_object_new_array();
        for (size_t i = 0; f && i < p->n_late_objects; i++)
                json_object_array_add(f, json_object_new_string(p->late_objects[i]));
        add(o, "pending_objects", f);
        return o;
}

/* The shadow-variable runtime's counters (docs/shadow.md). */
static struct json_object *shadow_to_json(const UlpProcessStatus *s) {
        struct json_object *o = json_object_new_object();

        if (!o)
                return NULL;
        if (s->shadow_refused) {
                add(o, "error", json_object_new_string("counters refused (not those of ulp's runtime)"));
                return o;
        }
        add(o, "variables", json_object_new_uint64(s->shadow_variables));
        add(o, "bytes", json_object_new_uint64(s->shadow_bytes));
        add(o, "mapped", json_object_new_uint64(s->shadow_mapped));
        return o;
}

static void shadow_from_json(struct json_object *p, UlpProcessStatus *s) {
        struct json_object *o;

        if (!json_object_object_get_ex(p, "shadow", &o) || !json_object_is_type(o, json_type_object))
                return;
        s->has_shadow = true;
        s->shadow_refused = get_string(o, "error") != NULL;
        s->shadow_variables = get_u64(o, "variables");
        s->shadow_bytes = get_u64(o, "bytes");
        s->shadow_mapped = get_u64(o, "mapped");
}

struct json_object *status_to_json(const UlpProcessStatus *s, size_t n) {
        struct json_object *o = json_object_new_object(), *procs = json_object_new_array();

        if (!o || !procs) {
                json_object_put(o);
                json_object_put(procs);
                return NULL;
        }
        for (size_t i = 0; i < n; i++) {
                struct json_object *p = json_object_new_object(), *patches;
                if (!p)
                        break;
                add(p, "pid", json_object_new_int(s[i].pid));
                add(p, "comm", json_object_new_string(s[i].comm));
                add(p, "trusted", json_object_new_boolean(s[i].trusted));
                if (s[i].problem[0])
                        add(p, "error", json_object_new_string(s[i].problem));
                patches = json_object_new_array();
                for (size_t j = 0; patches && j < s[i].n_patches; j++)
                        json_object_array_add(patches, patch_status_to_json(&s[i].patches[j]));
                add(p, "patches", patches);
                if (s[i].has_shadow)
                        add(p, "shadow", shadow_to_json(&s[i]));
                json_object_array_add(procs, p);
        }
        add(o, "processes", procs);
        return o;
}

static void patch_status_free(UlpPatchStatus *p) {
        free(p->funcs);
        free(p->stragglers);
}

/* "2026-11-29T19:20:01Z" as written above, in ns since the epoch; 0 for anything else. */
static uint64_t applied_from_json(const char *s) {
        struct tm tm = {};
        const char *end;
        time_t t;

        if (!s)
                return 0;
        end = strptime(s, "%Y-%m-%dT%H:%M:%SZ", &tm);
        if (!end || *end)
                return 0;
        t = timegm(&tm);
        return t > 0 ? (uint64_t) t * 1000000000ULL : 0;
}

static int patch_status_from_json(struct json_object *o, UlpPatchStatus *p) {
        struct json_object *f;
        int r;

        if (!json_object_is_type(o, json_type_object))
                return -EBADMSG;
        copy_string(p->name, sizeof(p->name), get_string(o, "name"));
        p->state = ulp_patch_state_from_string(get_string(o, "state"));
        p->forced = get_bool(o, "forced");
        p->replace = get_bool(o, "replace");
        p->applied_ns = applied_from_json(get_string(o, "applied_at"));
        p->applied_uid = (uid_t) get_u64(o, "applied_by_uid");
        p->code_mapped = get_bool(o, "code_mapped");
        f = get_array(o, "functions");
        if (f && json_object_array_length(f) > 0) {
                size_t n = json_object_array_length(f);

                p->funcs = calloc(n, sizeof(*p->funcs));
                if (!p->funcs)
                        return -ENOMEM;
                p->n_funcs = n;
                for (size_t i = 0; i < n; i++) {
                        struct json_object *e = json_object_array_get_idx(f, i);
                        if (!json_object_is_type(e, json_type_object))
                                return -EBADMSG;
                        copy_string(p->funcs[i].object, sizeof(p->funcs[i].object), get_string(e, "object"));
                        copy_string(p->funcs[i].symbol, sizeof(p->funcs[i].symbol), get_string(e, "symbol"));
                        p->funcs[i].addr = get_addr(e, "addr");
                }
        }
        f = get_array(o, "pending_objects");
        for (size_t i = 0; f && i < json_object_array_length(f) && i < ELEMENTSOF(p->late_objects); i++)
                copy_string(p->late_objects[p->n_late_objects++], sizeof(p->late_objects[0]),
                            json_object_get_string(json_object_array_get_idx(f, i)));
        r = stragglers_from_json(get_array(o, "stragglers"), &p->stragglers, &p->n_stragglers);
        return r;
}

void status_json_free(UlpProcessStatus *s, size_t n) {
        for (size_t i = 0; s && i < n; i++) {
                for (size_t j = 0; j < s[i].n_patches; j++)
                        patch_status_free(&s[i].patches[j]);
                free(s[i].patches);
        }
        free(s);
}

int status_from_json(struct json_object *o, UlpProcessStatus **ret, size_t *ret_n) {
        struct json_object *procs = get_array(o, "processes");
        UlpProcessStatus *s;
        size_t n;
        int r;

        if (!json_object_is_type(o, json_type_object) || !procs)
                return -EBADMSG;
        n = json_object_array_length(procs);
        s = calloc(n ?: 1, sizeof(*s));
        if (!s)
                return -ENOMEM;
        for (size_t i = 0; i < n; i++) {
                struct json_object *p = json_object_array_get_idx(procs, i), *patches;
                size_t m;

                if (!json_object_is_type(p, json_type_object)) {
                        status_json_free(s, n);
                        return -EBADMSG;
                }
                s[i].pid = (pid_t) get_i64(p, "pid");
                copy_string(s[i].comm, sizeof(s[i].comm), get_string(p, "comm"));
                s[i].trusted = get_bool(p, "trusted");
                copy_string(s[i].problem, sizeof(s[i].problem), get_string(p, "error"));
                shadow_from_json(p, &s[i]);
                patches = get_array(p, "patches");
                m = patches ? json_object_array_length(patches) : 0;
                if (m == 0)
                        continue;
                s[i].patches = calloc(m, sizeof(UlpPatchStatus));
                if (!s[i].patches) {
                        status_json_free(s, n);
                        return -ENOMEM;
                }
                s[i].n_patches = m;
                for (size_t j = 0; j < m; j++) {
                        r = patch_status_from_json(json_object_array_get_idx(patches, j), &s[i].patches[j]);
                        if (r < 0) {
                                status_json_free(s, n);
                                return r;
                        }
                }
        }
        *ret = s;
        *ret_n = n;
        return 0;
}
