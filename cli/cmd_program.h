/*
 * cmd_program.h — certactl commands on programs, over the Reasoning service:
 * submit, watch, get, cancel, list.  The entries are listed in cmd.c's command table.
 */
#ifndef CERTA_CLI_CMD_PROGRAM_H
#define CERTA_CLI_CMD_PROGRAM_H

#include "cli/cmd.h"

extern const struct cmd_entry cmd_program_submit_entry;
extern const struct cmd_entry cmd_program_watch_entry;
extern const struct cmd_entry cmd_program_get_entry;
extern const struct cmd_entry cmd_program_cancel_entry;
extern const struct cmd_entry cmd_program_list_entry;

#endif
