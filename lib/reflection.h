/*
 * reflection.h — gRPC server reflection (grpc.reflection.v1 and v1alpha ServerReflection) for
 * certad and certa-worker, so that grpcurl, Postman, evans and grpc_cli discover the API.
 *
 * The descriptors served are the project's own: the FileDescriptorSet protoc writes at build
 * time (Makefile: --include_imports over certa/v1, grpc/health/v1 and the reflection protos)
 * is embedded in the binary and indexed once by reflection_new.  The method table
 * (reflection_methods) is added to a server with rpc_server_add_methods, passing the struct
 * reflection as the table's ctx:
 *
 *	reflection_new(&r);
 *	rpc_server_add_methods(srv, reflection_methods(&n), n, r);
 *	... after the server's done callback: reflection_free(r).
 *
 * Wire behaviour (as the reference implementations in grpc C++/Go), one response per request
 * on the bidirectional stream, which ends OK when the client half-closes:
 *  - list_services: the services of the server the call arrived on (from its method tables);
 *  - file_by_filename, file_containing_symbol (package.Service, package.Service.Method,
 *    package.Message, nested messages and enums): the file and the files it imports,
 *    transitively, each once, the requested file first;
 *  - all_extension_numbers_of_type: a known message has none (proto3);
 *  - file_containing_extension, unknown names: error_response NOT_FOUND (5); a request
 *    with nothing set: error_response INVALID_ARGUMENT (3).
 * The methods need no credentials (flags 0), like health: descriptors are public.
 *
 * Threads: reflection_new/free anywhere; the handlers run on the server's loop thread and
 * only read the index.
 */
#ifndef CERTA_LIB_REFLECTION_H
#define CERTA_LIB_REFLECTION_H

#include <stddef.h>

#include "lib/rpc_server.h"

struct reflection;

/* Indexes the embedded FileDescriptorSet.  Returns 0, -ENOMEM, or CERTA_EDECODE when the
 * embedded set does not decode (a build problem). */
int reflection_new(struct reflection **out);
void reflection_free(struct reflection *r);

/* The method table (both protocol versions; ctx = the struct reflection). */
const struct rpc_method *reflection_methods(size_t *n);

/* Number of files in the embedded set (tests). */
size_t reflection_nfiles(const struct reflection *r);

#endif
