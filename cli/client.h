/*
 * client.h — certactl's connection to certad: one channel, the bearer token on every call, and
 * the one place where a gRPC status becomes an exit status and an error message.
 *
 * Methods are named by service descriptor + method name ("Get"); the request and reply types
 * are taken from the generated method descriptor and checked, so a call cannot be made with the
 * wrong message types.  Errors are printed to stderr as
 *   certactl: STATUS_NAME: message from the server
 * and mapped by client_exit_code().  Main thread only.
 */
#ifndef CERTA_CLI_CLIENT_H
#define CERTA_CLI_CLIENT_H

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>

struct client;
struct rpc_stream;

/* Connects (lazily) to server and remembers the token (NULL: none) and the deadline of unary
 * calls.  admin: the calls go to the Admin service, so UNAUTHENTICATED and PERMISSION_DENIED
 * are reported with a hint about admin credentials.  Initializes gRPC.  Returns 0, -EINVAL
 * (token not usable as a header value) or -ENOMEM; *out is written only on success. */
int client_new(const char *server, const char *token, int admin, int timeout_ms,
    struct client **out);
/* Closes the channel and shuts gRPC down.  NULL is a no-op. */
void client_free(struct client *c);
const char *client_server(const struct client *c);

/* The exit status for a final gRPC status (enum cli_exit). */
int client_exit_code(grpc_status_code status);

/* Prints "certactl: NAME: details" (plus a hint for unreachable servers and deadlines) and
 * returns client_exit_code(status). */
int client_report(const struct client *c, grpc_status_code status, const char *details);

/* Unary call of svc/method with the --timeout deadline.  On CLI_EXIT_OK *reply is the decoded
 * reply (free with protobuf_c_message_free_unpacked(*reply, NULL)); otherwise the error has
 * been printed and the exit status is returned. */
int client_call(struct client *c, const ProtobufCServiceDescriptor *svc, const char *method,
    const ProtobufCMessage *req, ProtobufCMessage **reply);

/* Opens a server-streaming call without deadline.  Returns CLI_EXIT_OK with *out, or prints
 * the error and returns the exit status.  Read with rpc_sync_stream_next(). */
int client_stream_open(struct client *c, const ProtobufCServiceDescriptor *svc,
    const char *method, const ProtobufCMessage *req, struct rpc_stream **out);
/* Cancels the stream if it has not ended, waits for its status and frees it.  Returns the
 * status; *details (may be NULL) gets the message, malloc'd or NULL. */
grpc_status_code client_stream_close(struct rpc_stream *s, char **details);

#endif
