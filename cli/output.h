/*
 * output.h — everything certactl prints on stdout, as text for people or as JSON lines for
 * scripts (--json: one compact JSON object per line, stable field names).
 *
 * Text output never passes raw control characters from the server to the terminal: answers,
 * problems and ids are written with C-style escapes (\n, \t, \xNN) for control characters and
 * invalid UTF-8, so a hostile answer cannot move the cursor or change colours.
 *
 * Text formats:
 *   accepted: p-01abc
 *   [p-01abc] tokens=1280 certaindex=0.42 answers: #0 "36" (1280 tok) #1 "27" (1216 tok, done)
 *   answer: 36  reason: certain  tokens: 2900  certaindex: 0.93  low confidence
 * JSON event lines: {"event":"accepted"|"progress"|"finished","seq":N,"program_id":...,...}
 * (fields in output.c next to the code that writes them; names follow the proto fields).
 *
 * stdout is flushed after every event so `certactl watch ID | ...` sees lines as they come.
 * Main thread only.
 */
#ifndef CERTA_CLI_OUTPUT_H
#define CERTA_CLI_OUTPUT_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "certa/v1/reasoning.pb-c.h"

struct jsonw;

struct output;

/* Creates a printer for text (json == 0) or JSON lines.  Returns 0 or -ENOMEM. */
int output_new(int json, struct output **out);
void output_free(struct output *o);

/* Each returns 0, or -ENOMEM/-EINVAL when a JSON line could not be built (then an error has
 * been printed to stderr). */

/* One stream event: accepted line, progress line or final result line. */
int output_event(struct output *o, const Certa__V1__ProgramEvent *ev);
/* submit --detach: only the id (text), or the accepted event (JSON). */
int output_accepted_id(struct output *o, const Certa__V1__ProgramEvent *ev);
/* get: the whole program. */
int output_program(struct output *o, const Certa__V1__Program *p);
/* The same, followed in text by every routing decision with its reason (`get --explain`);
 * JSON is output_program's (its "routing" array). */
int output_program_explain(struct output *o, const Certa__V1__Program *p);
/* cancel: the state after the call. */
int output_cancel(struct output *o, const char *program_id, Certa__V1__ProgramState state);
/* list: a table (text) or one program object per line (JSON). */
int output_list(struct output *o, Certa__V1__Program *const *programs, size_t n);

/*
 * Building blocks for the admin commands' printers (cli/cmd_tenant.c, ...), which keep the
 * same rules: terminal-safe text, one JSON document per line.
 */

/* True when o prints JSON lines. */
int output_is_json(const struct output *o);
/* The JSON writer of a JSON printer (NULL for text): build one document, then
 * output_json_line(). */
struct jsonw *output_jsonw(struct output *o);
/* Writes the finished document as one line on stdout and resets the writer.  Returns 0, or
 * the writer's error (printed to stderr). */
int output_json_line(struct output *o);

/* Writes s to f terminal-safe (control characters and invalid UTF-8 escaped), shortened to at
 * most maxcols columns with a trailing "..." (0: whole); NULL or "" is written as "-".
 * Returns the columns written. */
size_t output_text(FILE *f, const char *s, size_t maxcols);
/* Columns s takes when written by output_text(f, s, 0) (0 for ""). */
size_t output_text_cols(const char *s);
/* "2024-05-01T12:00:00Z" (UTC) in buf, or "-" for unix_ms <= 0; returns buf or "-". */
const char *output_time(char *buf, size_t len, int64_t unix_ms);
/* The current time in milliseconds since the epoch (the clock of the *_unix_ms fields). */
int64_t output_now_ms(void);
/* s, or "-" for NULL (a name this build does not know). */
const char *output_or_dash(const char *s);
/* Writes the label of a `label:   value` line to stdout, padded to width columns. */
void output_label(const char *label, int width);

#endif
