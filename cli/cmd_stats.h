/*
 * cmd_stats.h — `certactl stats`: per-tenant program counts, tokens used and saved, and the
 * share of tokens each tenant received against its weight, over the Admin service.  The
 * printers are shared with `certactl top`.  Main thread only.
 */
#ifndef CERTA_CLI_CMD_STATS_H
#define CERTA_CLI_CMD_STATS_H

#include <stdio.h>

#include "certa/v1/admin.pb-c.h"
#include "cli/cmd.h"

struct jsonw;

extern const struct cmd_entry cmd_stats_entry;

/* Writes the per-tenant table (TENANT QUEUED RUNNING FINISHED CANCELLED FAILED TOKENS SAVED
 * SHARE WEIGHT) to f.  Returns 0 or -ENOMEM (nothing written). */
int cmd_stats_table(FILE *f, const Certa__V1__StatsReply *r);
/* Writes "workers up: N  steps: M" and a newline to f. */
void cmd_stats_summary(FILE *f, const Certa__V1__StatsReply *r);
/* One line per risk controller (StatsReply.riskctl), each after prefix ("# " in policy get). */
void cmd_stats_riskctl(FILE *f, const Certa__V1__StatsReply *r, const char *prefix);
/* Writes the reply as a JSON object value: {"tenants":[{"tenant":...,"queued":N,...,
 * "share_received":0.25,"share_weight":0.25}],"workers_up":N,"steps_total":N}. */
void cmd_stats_json(struct jsonw *w, const Certa__V1__StatsReply *r);

#endif
