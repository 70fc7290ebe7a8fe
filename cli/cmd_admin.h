/*
 * cmd_admin.h — what the admin commands (cli/cmd_tenant.c, cmd_policy.c, cmd_worker.c,
 * cmd_stats.c, cmd_top.c) share: one call into the Admin service, one way to print a reply as
 * text or as one JSON line and free it, and one mapping from an output failure to an exit
 * status.  Main thread only.
 */
#ifndef CERTA_CLI_CMD_ADMIN_H
#define CERTA_CLI_CMD_ADMIN_H

#include <protobuf-c/protobuf-c.h>

#include "cli/cmd.h"

struct output;

/* Prints reply (the Admin reply a command received) through out, as text or JSON as
 * output_is_json(out) says; arg is the command's own context (its request, mostly).  Returns 0
 * or a negative errno (-ENOMEM: out of memory, not yet reported; anything else has been). */
typedef int (*cmd_admin_print_fn)(struct output *out, const ProtobufCMessage *reply,
    const void *arg);

/* Unary call of Admin/method.  On CLI_EXIT_OK *reply is the decoded reply (free with
 * protobuf_c_message_free_unpacked); otherwise the error has been printed and the exit status
 * is returned (client_call()). */
int cmd_admin_call(struct cmd_ctx *ctx, const char *method, const ProtobufCMessage *req,
    ProtobufCMessage **reply);

/* The exit status for an output result: CLI_EXIT_OK for 0, else CLI_EXIT_ERROR after printing
 * "certactl: out of memory" for -ENOMEM (other failures are reported where they happen). */
int cmd_admin_exit(int out_rc);

/* Prints reply with print (text or JSON as --json says), frees reply and returns the exit
 * status (cmd_admin_exit()). */
int cmd_admin_print(struct cmd_ctx *ctx, ProtobufCMessage *reply, cmd_admin_print_fn print,
    const void *arg);

/* cmd_admin_call() and, when it succeeds, cmd_admin_print(): the whole of most admin
 * commands once their request is built.  Returns the exit status. */
int cmd_admin_run(struct cmd_ctx *ctx, const char *method, const ProtobufCMessage *req,
    cmd_admin_print_fn print, const void *arg);

#endif
