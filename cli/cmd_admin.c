/* cmd_admin.c — the call, print and exit-status plumbing of the admin commands; see
 * cmd_admin.h. */
#include <errno.h>
#include <stdio.h>

#include "certa/v1/admin.pb-c.h"
#include "cli/client.h"
#include "cli/cmd_admin.h"
#include "cli/output.h"

/* Every admin command goes through here, so the service is named once. */
int
cmd_admin_call(struct cmd_ctx *ctx, const char *method, const ProtobufCMessage *req,
    ProtobufCMessage **reply)
{
	return client_call(ctx->client, &certa__v1__admin__descriptor, method, req, reply);
}

/* Output errors other than -ENOMEM were printed by the writer that hit them. */
int
cmd_admin_exit(int out_rc)
{
	if (out_rc == -ENOMEM)
		fprintf(stderr, "certactl: out of memory\n");
	return out_rc == 0 ? CLI_EXIT_OK : CLI_EXIT_ERROR;
}

/* A printer that cannot be made is reported as out of memory, like a failing one. */
int
cmd_admin_print(struct cmd_ctx *ctx, ProtobufCMessage *reply, cmd_admin_print_fn print,
    const void *arg)
{
	struct output *out;
	int rc = -ENOMEM;

	if (output_new(ctx->json, &out) == 0) {
		rc = print(out, reply, arg);
		output_free(out);
	}
	protobuf_c_message_free_unpacked(reply, NULL);
	return cmd_admin_exit(rc);
}

/* A failed call has printed its error; only a reply is printed. */
int
cmd_admin_run(struct cmd_ctx *ctx, const char *method, const ProtobufCMessage *req,
    cmd_admin_print_fn print, const void *arg)
{
	ProtobufCMessage *reply;
	int rc;

	rc = cmd_admin_call(ctx, method, req, &reply);
	if (rc != CLI_EXIT_OK)
		return rc;
	return cmd_admin_print(ctx, reply, print, arg);
}
