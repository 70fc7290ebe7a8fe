/*
 * test_tls.c — the mTLS listener: a client certificate whose CN is on tls.admin_cn gets the
 * Admin service; another valid certificate does not; tenants use their API keys over TLS;
 * a client without a certificate cannot connect.  Certificates are made with the openssl CLI.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>

#include "certa/v1/admin.pb-c.h"
#include "certa/v1/reasoning.pb-c.h"
#include "lib/rpc_client.h"
#include "tests/support/certa_client.h"
#include "tests/support/harness.h"
#include "tests/support/itest.h"

struct env {
	struct itest it;             /* first */
	int tls_port;
};

/* A CA, a server certificate for localhost, and client certificates with two CNs. */
static int
make_certs(const char *d)
{
	return harness_sh("cd %s && "
	    "openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 "
	    "-subj /CN=certa-test-ca >/dev/null 2>&1 && "
	    "printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\\n' > san.ext && "
	    "openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr "
	    "-subj /CN=localhost >/dev/null 2>&1 && "
	    "openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
	    "-out server.pem -days 2 -extfile san.ext >/dev/null 2>&1 && "
	    "for cn in ops-admin someone; do "
	    "openssl req -newkey rsa:2048 -nodes -keyout $cn.key -out $cn.csr -subj /CN=$cn "
	    ">/dev/null 2>&1 && openssl x509 -req -in $cn.csr -CA ca.pem -CAkey ca.key "
	    "-CAcreateserial -out $cn.pem -days 2 >/dev/null 2>&1 || exit 1; done", d);
}

static char *
slurp(const char *dir, const char *name)
{
	char path[700], *s = NULL;

	snprintf(path, sizeof path, "%s/%s", dir, name);
	assert_int_equal(harness_read_file(path, &s), 0);
	return s;
}

static int
setup(void **state)
{
	struct env *e = itest_new(sizeof *e, 120, ITEST_TRACES_NONE);
	char tls[80], cert[700], key[700], ca[700];
	const char *sets[] = { tls, cert, key, ca, "tls.admin_cn=ops-admin", NULL };

	*state = e;
	if (access("/usr/bin/openssl", X_OK) != 0 || make_certs(e->it.dir) != 0) {
		*state = NULL;
		itest_free(&e->it);
		return 0;
	}
	e->tls_port = harness_free_port();
	snprintf(tls, sizeof tls, "tls.listen=127.0.0.1:%d", e->tls_port);
	snprintf(cert, sizeof cert, "tls.cert=%s/server.pem", e->it.dir);
	snprintf(key, sizeof key, "tls.key=%s/server.key", e->it.dir);
	snprintf(ca, sizeof ca, "tls.ca=%s/ca.pem", e->it.dir);
	itest_start(&e->it, NULL, ITEST_NO_WORKER | ITEST_NO_ADMIN_SOCKET, sets);
	return 0;
}

/* A TLS channel presenting client certificate `cn` (NULL: none). */
static struct rpc_channel *
tls_channel(struct env *e, const char *cn)
{
	grpc_ssl_pem_key_cert_pair pair;
	grpc_channel_credentials *creds;
	struct rpc_channel *ch;
	char target[64], name[64];
	char *ca = slurp(e->it.dir, "ca.pem"), *crt = NULL, *key = NULL;

	if (cn != NULL) {
		snprintf(name, sizeof name, "%s.pem", cn);
		crt = slurp(e->it.dir, name);
		snprintf(name, sizeof name, "%s.key", cn);
		key = slurp(e->it.dir, name);
		pair.private_key = key;
		pair.cert_chain = crt;
	}
	creds = grpc_ssl_credentials_create(ca, cn != NULL ? &pair : NULL, NULL, NULL);
	snprintf(target, sizeof target, "localhost:%d", e->tls_port);
	assert_int_equal(rpc_channel_new_creds(target, creds, &ch), 0);
	grpc_channel_credentials_release(creds);
	free(ca);
	free(crt);
	free(key);
	return ch;
}

static grpc_status_code
list_tenants(struct rpc_channel *ch, char *msg, size_t len)
{
	Certa__V1__ListTenantsRequest req = CERTA__V1__LIST_TENANTS_REQUEST__INIT;

	return itest_call(ch, "/certa.v1.Admin/ListTenants", &req.base,
	    &certa__v1__list_tenants_reply__descriptor, NULL, NULL, msg, len);
}

static void
test_admin_by_client_certificate(void **state)
{
	struct env *e = *state;
	struct rpc_channel *ch;
	Certa__V1__CreateTenantRequest ct = CERTA__V1__CREATE_TENANT_REQUEST__INIT;
	Certa__V1__Tenant t = CERTA__V1__TENANT__INIT;
	Certa__V1__CreateTenantReply *cr = NULL;
	grpc_status_code st;
	char msg[512];

	if (e == NULL) {
		print_message("skipped: the openssl command is not available to make certificates\n");
		skip();
	}
	ch = tls_channel(e, "ops-admin");
	assert_int_equal(list_tenants(ch, msg, sizeof msg), GRPC_STATUS_OK);
	t.name = (char *)"tls-tenant";
	ct.tenant = &t;
	assert_int_equal(rpc_sync_unary(ch, "/certa.v1.Admin/CreateTenant", &ct.base,
	    &certa__v1__create_tenant_reply__descriptor, 10000, NULL, 0, (ProtobufCMessage **)&cr,
	    &st, NULL), 0);
	assert_int_equal(st, GRPC_STATUS_OK);
	rpc_channel_free(ch);

	/* A valid certificate whose CN is not an admin: refused. */
	ch = tls_channel(e, "someone");
	assert_int_equal(list_tenants(ch, msg, sizeof msg), GRPC_STATUS_UNAUTHENTICATED);
	assert_non_null(strstr(msg, "admin credential"));
	/* ... but its tenant key works for Reasoning over the same TLS connection. */
	{
		Certa__V1__ListRequest lr = CERTA__V1__LIST_REQUEST__INIT;
		ProtobufCMessage *r = NULL;
		assert_int_equal(certa_client_unary(ch, "/certa.v1.Reasoning/List", &lr.base,
		    &certa__v1__list_reply__descriptor, 10000, cr->api_key, &r, &st, NULL), 0);
		assert_int_equal(st, GRPC_STATUS_OK);
		protobuf_c_message_free_unpacked(r, NULL);
	}
	rpc_channel_free(ch);
	protobuf_c_message_free_unpacked(&cr->base, NULL);

	/* No client certificate: the handshake fails. */
	ch = tls_channel(e, NULL);
	assert_int_equal(list_tenants(ch, msg, sizeof msg), GRPC_STATUS_UNAVAILABLE);
	rpc_channel_free(ch);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_admin_by_client_certificate, setup,
		    itest_teardown),
	};
	int rc;

	grpc_init();
	rc = cmocka_run_group_tests(tests, NULL, NULL);
	grpc_shutdown();
	return rc;
}
