/*
 * cmd_top.h — `certactl top`: a live view of the per-tenant statistics and the workers,
 * refreshed every --interval until Ctrl-C or --count refreshes.  Listed in cmd.c's command
 * table.
 */
#ifndef CERTA_CLI_CMD_TOP_H
#define CERTA_CLI_CMD_TOP_H

#include "cli/cmd.h"

extern const struct cmd_entry cmd_top_entry;

#endif
