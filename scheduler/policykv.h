/*
 * policykv.h — policy keys and values for certactl: `policy set KEY=VALUE...` and reading the
 * text form of a policy that certa.v1.Policy.text carries.
 *
 * The text form is scheduler/policy.h's `key = value` lines, lexed by lib/ini.h ('#'/';'
 * comments, [section] headers that prefix "section." to the keys below them).  The valid keys
 * are the scheduler's own table (policy_key_name(): step_tokens, ..., cot.threshold,
 * sc.threshold, cot.w.<feature>, sc.w.<feature>), so this list cannot drift from it.  Values are checked for syntax only (a finite decimal number); whole-number
 * keys and ranges are the server's to validate (SetPolicy answers INVALID_ARGUMENT naming the
 * field and the allowed range).
 *
 * Thread-safe (no shared state).
 */
#ifndef CERTA_SCHEDULER_POLICYKV_H
#define CERTA_SCHEDULER_POLICYKV_H

#include <stddef.h>

/* Writes the valid keys, ", "-separated in policy_format() order, into buf (truncated to
 * len - 1 bytes, NUL-terminated when len > 0).  Returns the length the whole list needs, 0
 * when out of memory. */
size_t policykv_keys(char *buf, size_t len);

/* 1 when key is a valid policy key, 0 when not. */
int policykv_is_key(const char *key);

/*
 * Turns n assignments "KEY=VALUE" into policy text "KEY = VALUE\n..." in *text (malloc'd,
 * caller frees; written only on success).  Returns:
 *   0        done
 *   -EINVAL  an assignment is not KEY=VALUE, or VALUE is not a finite decimal number
 *   -ENOENT  KEY is not a policy key (err lists the valid ones)
 *   -EEXIST  a KEY is given twice
 *   -ENOMEM
 * err (may be NULL) gets a one-line message naming the assignment on failure.
 */
int policykv_text(char *const *assignments, size_t n, char **text, char *err, size_t errlen);

/* Called with each key and its value (both trimmed, NUL-terminated) in text order. A
 * non-zero return stops the walk and is returned by policykv_each(). */
typedef int (*policykv_fn)(const char *key, const char *value, void *arg);

/* Walks the `key = value` lines of text (keys inside [section] are "section.key" unless a
 * full key by itself).  Returns 0, the callback's non-zero value, or CERTA_ECONFIG at the
 * first malformed line (the lines before it were walked), -ENOMEM. */
int policykv_each(const char *text, policykv_fn fn, void *arg);

/* Copies the value of key in text into val (truncated to vallen - 1).  Returns 0 or -ENOENT. */
int policykv_value(const char *text, const char *key, char *val, size_t vallen);

/* Called for each key whose value differs: old is NULL when the key is missing from the old
 * text, new is NULL when it is missing from the new one. */
typedef void (*policykv_change_fn)(const char *key, const char *old, const char *new,
    void *arg);

/* Compares two policy texts key by key (new text order, then keys only in the old text).
 * Values are compared as numbers when both parse as numbers ("0.90" equals "0.9"); a key given
 * twice in a text has its last value.  Returns the number of changes, or -ENOMEM (nothing
 * reported).  Time and memory linear in the texts' lengths. */
int policykv_diff(const char *old_text, const char *new_text, policykv_change_fn fn,
    void *arg);

#endif
