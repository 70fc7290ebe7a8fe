/*
 * cmd_worker.h — certactl commands on the worker pool, over the Admin service: worker list,
 * add, rm, drain.  The entries are listed in cmd.c's command table; the printers are shared
 * with `certactl top`.  Main thread only.
 */
#ifndef CERTA_CLI_CMD_WORKER_H
#define CERTA_CLI_CMD_WORKER_H

#include <stddef.h>
#include <stdio.h>

#include "certa/v1/admin.pb-c.h"
#include "cli/cmd.h"

struct jsonw;

extern const struct cmd_entry cmd_worker_list_entry;
extern const struct cmd_entry cmd_worker_add_entry;
extern const struct cmd_entry cmd_worker_rm_entry;
extern const struct cmd_entry cmd_worker_drain_entry;

/* Writes the workers to f as a table (ADDRESS STATE ENGINE MODEL ACTIVE CAPACITY SEEN
 * ERROR).  Returns 0 or -ENOMEM (nothing written). */
int cmd_worker_table(FILE *f, Certa__V1__WorkerStatus *const *ws, size_t n);
/* Writes one worker as a JSON object value: {"address":...,"state":"up","engine":...,
 * "model":...,"capacity":N,"active":N,"last_seen_unix_ms":...,"last_error":...}. */
void cmd_worker_json(struct jsonw *w, const Certa__V1__WorkerStatus *ws);

#endif
