/*
 * cmd_policy.h — certactl commands on scheduling and certainty policies, over the Admin
 * service: policy get, set, history, rollback (global default or --tenant T).  The entries are
 * listed in cmd.c's command table.
 */
#ifndef CERTA_CLI_CMD_POLICY_H
#define CERTA_CLI_CMD_POLICY_H

#include "cli/cmd.h"

extern const struct cmd_entry cmd_policy_get_entry;
extern const struct cmd_entry cmd_policy_set_entry;
extern const struct cmd_entry cmd_policy_history_entry;
extern const struct cmd_entry cmd_policy_rollback_entry;

#endif
