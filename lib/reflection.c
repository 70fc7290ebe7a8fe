/* reflection.c — gRPC server reflection over the FileDescriptorSet embedded at build time. */
#include "lib/reflection.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "certa/internal/descview.pb-c.h"
#include "grpc/reflection/v1/reflection.pb-c.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/strmap.h"

/* The set protoc wrote (Makefile: $(FDS_C)). */
extern const unsigned char reflection_fds[];
extern const size_t reflection_fds_len;

/* At most this many files in one answer (the set has about ten). */
#define REFLECTION_MAX_FILES 64
#define REFLECTION_MAX_SERVICES 32

/* gRPC status codes in ErrorResponse.error_code. */
enum {
	REFLECTION_INVALID_ARGUMENT = 3,
	REFLECTION_NOT_FOUND = 5,
};

struct reflection_file {
	const char *name;                 /* in view */
	ProtobufCBinaryData bytes;        /* the FileDescriptorProto, in set */
	Certa__Internal__DescFile *view;
};

struct reflection {
	Certa__Internal__DescSet *set;
	struct reflection_file *files;
	size_t nfiles;
	struct strmap *by_name;           /* file name -> struct reflection_file */
	struct strmap *by_symbol;         /* fully qualified symbol -> struct reflection_file */
	struct strmap *types;             /* message names (for extension numbers) -> file */
};

/* Records "prefix.name" as declared in f. */
static int
reflection_add_symbol(struct reflection *r, struct strmap *m, const char *prefix,
    const char *name, struct reflection_file *f)
{
	char sym[512];
	int n;

	n = snprintf(sym, sizeof sym, "%s%s%s", prefix, prefix[0] ? "." : "", name);
	if (n < 0 || (size_t)n >= sizeof sym)
		return 0;   /* longer than any name of ours: not indexed */
	(void)r;
	return strmap_put(m, sym, f, NULL);
}

/* A message, its nested messages and enums, recursively. */
static int
reflection_add_message(struct reflection *r, const char *prefix,
    const Certa__Internal__DescMessage *msg, struct reflection_file *f)
{
	char full[512];
	size_t i;
	int rc;

	snprintf(full, sizeof full, "%s%s%s", prefix, prefix[0] ? "." : "", msg->name);
	if ((rc = reflection_add_symbol(r, r->by_symbol, prefix, msg->name, f)) != 0 ||
	    (rc = reflection_add_symbol(r, r->types, prefix, msg->name, f)) != 0)
		return rc;
	for (i = 0; i < msg->n_nested_type; i++)
		if ((rc = reflection_add_message(r, full, msg->nested_type[i], f)) != 0)
			return rc;
	for (i = 0; i < msg->n_enum_type; i++)
		if ((rc = reflection_add_symbol(r, r->by_symbol, full, msg->enum_type[i]->name,
		    f)) != 0)
			return rc;
	return 0;
}

/* Every symbol one file declares. */
static int
reflection_index_file(struct reflection *r, struct reflection_file *f)
{
	const Certa__Internal__DescFile *v = f->view;
	char svc[512];
	size_t i, j;
	int rc;

	if ((rc = strmap_put(r->by_name, v->name, f, NULL)) != 0)
		return rc;
	for (i = 0; i < v->n_message_type; i++)
		if ((rc = reflection_add_message(r, v->package, v->message_type[i], f)) != 0)
			return rc;
	for (i = 0; i < v->n_enum_type; i++)
		if ((rc = reflection_add_symbol(r, r->by_symbol, v->package, v->enum_type[i]->name,
		    f)) != 0)
			return rc;
	for (i = 0; i < v->n_service; i++) {
		const Certa__Internal__DescService *s = v->service[i];
		if ((rc = reflection_add_symbol(r, r->by_symbol, v->package, s->name, f)) != 0)
			return rc;
		snprintf(svc, sizeof svc, "%s%s%s", v->package, v->package[0] ? "." : "", s->name);
		for (j = 0; j < s->n_method; j++)
			if ((rc = reflection_add_symbol(r, r->by_symbol, svc, s->method[j]->name,
			    f)) != 0)
				return rc;
	}
	return 0;
}

int
reflection_new(struct reflection **out)
{
	struct reflection *r;
	size_t i;
	int rc = -ENOMEM;

	r = calloc(1, sizeof *r);
	if (r == NULL)
		return -ENOMEM;
	r->by_name = strmap_new();
	r->by_symbol = strmap_new();
	r->types = strmap_new();
	if (r->by_name == NULL || r->by_symbol == NULL || r->types == NULL)
		goto fail;
	r->set = certa__internal__desc_set__unpack(NULL, reflection_fds_len, reflection_fds);
	if (r->set == NULL) {
		rc = CERTA_EDECODE;
		goto fail;
	}
	r->files = calloc(r->set->n_file ? r->set->n_file : 1, sizeof *r->files);
	if (r->files == NULL)
		goto fail;
	for (i = 0; i < r->set->n_file; i++) {
		struct reflection_file *f = &r->files[r->nfiles];
		f->bytes = r->set->file[i];
		f->view = certa__internal__desc_file__unpack(NULL, f->bytes.len, f->bytes.data);
		if (f->view == NULL) {
			rc = CERTA_EDECODE;
			goto fail;
		}
		f->name = f->view->name;
		r->nfiles++;
		if ((rc = reflection_index_file(r, f)) != 0)
			goto fail;
	}
	*out = r;
	return 0;
fail:
	reflection_free(r);
	return rc;
}

void
reflection_free(struct reflection *r)
{
	size_t i;

	if (r == NULL)
		return;
	for (i = 0; i < r->nfiles; i++)
		certa__internal__desc_file__free_unpacked(r->files[i].view, NULL);
	free(r->files);
	if (r->set != NULL)
		certa__internal__desc_set__free_unpacked(r->set, NULL);
	strmap_free(r->by_name, NULL);
	strmap_free(r->by_symbol, NULL);
	strmap_free(r->types, NULL);
	free(r);
}

size_t
reflection_nfiles(const struct reflection *r)
{
	return r->nfiles;
}

/* --- answers --- */

struct reflection_files {
	const struct reflection_file *f[REFLECTION_MAX_FILES];
	ProtobufCBinaryData bytes[REFLECTION_MAX_FILES];
	size_t n;
};

/* f, then what it imports (depth first), each once. */
static void
reflection_collect(const struct reflection *r, const struct reflection_file *f,
    struct reflection_files *out)
{
	size_t i;

	for (i = 0; i < out->n; i++)
		if (out->f[i] == f)
			return;
	if (out->n == REFLECTION_MAX_FILES)
		return;
	out->f[out->n] = f;
	out->bytes[out->n] = f->bytes;
	out->n++;
	for (i = 0; i < f->view->n_dependency; i++) {
		const struct reflection_file *d = strmap_get(r->by_name, f->view->dependency[i]);
		if (d != NULL)
			reflection_collect(r, d, out);
	}
}

struct reflection_services {
	char names[REFLECTION_MAX_SERVICES][160];
	Grpc__Reflection__V1__ServiceResponse items[REFLECTION_MAX_SERVICES];
	Grpc__Reflection__V1__ServiceResponse *ptrs[REFLECTION_MAX_SERVICES];
	size_t n;
};

/* "/pkg.Service/Method" -> "pkg.Service", each once. */
static void
reflection_service_of(void *arg, const char *path)
{
	struct reflection_services *s = arg;
	const char *slash;
	size_t len, i;

	if (path[0] != '/' || (slash = strchr(path + 1, '/')) == NULL)
		return;
	len = (size_t)(slash - path - 1);
	if (len == 0 || len >= sizeof s->names[0])
		return;
	for (i = 0; i < s->n; i++)
		if (strlen(s->names[i]) == len && strncmp(s->names[i], path + 1, len) == 0)
			return;
	if (s->n == REFLECTION_MAX_SERVICES)
		return;
	memcpy(s->names[s->n], path + 1, len);
	s->names[s->n][len] = '\0';
	grpc__reflection__v1__service_response__init(&s->items[s->n]);
	s->items[s->n].name = s->names[s->n];
	s->ptrs[s->n] = &s->items[s->n];
	s->n++;
}

/* One request, one response (v1 and v1alpha are the same bytes). */
static void
reflection_info(struct rpc_call *call, const ProtobufCMessage *msg, void *ctx)
{
	const struct reflection *r = ctx;
	const Grpc__Reflection__V1__ServerReflectionRequest *req =
	    (const Grpc__Reflection__V1__ServerReflectionRequest *)msg;
	Grpc__Reflection__V1__ServerReflectionResponse resp =
	    GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__INIT;
	Grpc__Reflection__V1__FileDescriptorResponse fdr =
	    GRPC__REFLECTION__V1__FILE_DESCRIPTOR_RESPONSE__INIT;
	Grpc__Reflection__V1__ListServiceResponse lsr =
	    GRPC__REFLECTION__V1__LIST_SERVICE_RESPONSE__INIT;
	Grpc__Reflection__V1__ExtensionNumberResponse enr =
	    GRPC__REFLECTION__V1__EXTENSION_NUMBER_RESPONSE__INIT;
	Grpc__Reflection__V1__ErrorResponse er = GRPC__REFLECTION__V1__ERROR_RESPONSE__INIT;
	struct reflection_services *svcs = NULL;
	struct reflection_files files;
	const struct reflection_file *f = NULL;
	const char *what = NULL;
	char emsg[600];

	resp.valid_host = req->host;
	resp.original_request = (Grpc__Reflection__V1__ServerReflectionRequest *)req;
	files.n = 0;
	emsg[0] = '\0';
	switch (req->message_request_case) {
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_LIST_SERVICES:
		svcs = calloc(1, sizeof *svcs);
		if (svcs == NULL) {
			rpc_call_fail(call, -ENOMEM, "out of memory");
			return;
		}
		rpc_server_each_method(rpc_call_server(call), reflection_service_of, svcs);
		lsr.n_service = svcs->n;
		lsr.service = svcs->ptrs;
		resp.message_response_case =
		    GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_LIST_SERVICES_RESPONSE;
		resp.list_services_response = &lsr;
		break;
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_BY_FILENAME:
		what = req->file_by_filename;
		f = strmap_get(r->by_name, what);
		if (f == NULL)
			snprintf(emsg, sizeof emsg, "file not found: %s", what);
		break;
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_SYMBOL:
		what = req->file_containing_symbol;
		f = strmap_get(r->by_symbol, what);
		if (f == NULL)
			snprintf(emsg, sizeof emsg, "symbol not found: %s", what);
		break;
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_ALL_EXTENSION_NUMBERS_OF_TYPE:
		what = req->all_extension_numbers_of_type;
		if (strmap_get(r->types, what) == NULL) {
			snprintf(emsg, sizeof emsg, "type not found: %s", what);
			break;
		}
		enr.base_type_name = (char *)what;   /* proto3: no extensions */
		resp.message_response_case =
		    GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ALL_EXTENSION_NUMBERS_RESPONSE;
		resp.all_extension_numbers_response = &enr;
		break;
	case GRPC__REFLECTION__V1__SERVER_REFLECTION_REQUEST__MESSAGE_REQUEST_FILE_CONTAINING_EXTENSION:
		snprintf(emsg, sizeof emsg, "extension not found: %s %d",
		    req->file_containing_extension ?
		    req->file_containing_extension->containing_type : "",
		    req->file_containing_extension ?
		    req->file_containing_extension->extension_number : 0);
		break;
	default:
		er.error_code = REFLECTION_INVALID_ARGUMENT;
		er.error_message = (char *)"no request set";
		resp.message_response_case =
		    GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
		resp.error_response = &er;
		break;
	}
	if (f != NULL) {
		reflection_collect(r, f, &files);
		fdr.n_file_descriptor_proto = files.n;
		fdr.file_descriptor_proto = files.bytes;
		resp.message_response_case =
		    GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_FILE_DESCRIPTOR_RESPONSE;
		resp.file_descriptor_response = &fdr;
	} else if (emsg[0] != '\0') {
		er.error_code = REFLECTION_NOT_FOUND;
		er.error_message = emsg;
		resp.message_response_case =
		    GRPC__REFLECTION__V1__SERVER_REFLECTION_RESPONSE__MESSAGE_RESPONSE_ERROR_RESPONSE;
		resp.error_response = &er;
	}
	log_debug(LOG_RPC, "reflection from %s: case %d %s -> %d", rpc_call_peer(call),
	    (int)req->message_request_case, what ? what : "", (int)resp.message_response_case);
	(void)rpc_call_send(call, &resp.base);
	free(svcs);
}

static const struct rpc_method reflection_table[] = {
	{ "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", RPC_BIDI,
	  &grpc__reflection__v1__server_reflection_request__descriptor, reflection_info, 0 },
	{ "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", RPC_BIDI,
	  &grpc__reflection__v1__server_reflection_request__descriptor, reflection_info, 0 },
};

const struct rpc_method *
reflection_methods(size_t *n)
{
	*n = sizeof reflection_table / sizeof reflection_table[0];
	return reflection_table;
}
