/*
 * cmd_tenant.h — certactl commands on tenants and their API keys, over the Admin service:
 * tenant add, list, show, set, rm; tenant key rotate, revoke.  The entries are listed in
 * cmd.c's command table.
 */
#ifndef CERTA_CLI_CMD_TENANT_H
#define CERTA_CLI_CMD_TENANT_H

#include "cli/cmd.h"

extern const struct cmd_entry cmd_tenant_add_entry;
extern const struct cmd_entry cmd_tenant_list_entry;
extern const struct cmd_entry cmd_tenant_show_entry;
extern const struct cmd_entry cmd_tenant_set_entry;
extern const struct cmd_entry cmd_tenant_rm_entry;
extern const struct cmd_entry cmd_tenant_key_rotate_entry;
extern const struct cmd_entry cmd_tenant_key_revoke_entry;

#endif
