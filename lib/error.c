/* error.c — names for certa error codes and errno values. */
#include "lib/error.h"

#include <string.h>

static const char *const certa_error_table[CERTA_ELAST - CERTA_EBASE] = {
	[CERTA_ENOTFOUND - CERTA_EBASE] = "not found",
	[CERTA_EEXIST - CERTA_EBASE] = "already exists",
	[CERTA_ECORRUPT - CERTA_EBASE] = "stored value is corrupt",
	[CERTA_ESCHEMA - CERTA_EBASE] = "store schema version mismatch",
	[CERTA_EMAPFULL - CERTA_EBASE] = "store map full",
	[CERTA_ESTORE - CERTA_EBASE] = "store failure",
	[CERTA_EDECODE - CERTA_EBASE] = "malformed message",
	[CERTA_EINVAL - CERTA_EBASE] = "invalid argument",
	[CERTA_ECAPACITY - CERTA_EBASE] = "capacity exhausted",
	[CERTA_EUNAVAIL - CERTA_EBASE] = "unavailable",
	[CERTA_ETIMEOUT - CERTA_EBASE] = "deadline exceeded",
	[CERTA_ECANCELLED - CERTA_EBASE] = "cancelled",
	[CERTA_ERPC - CERTA_EBASE] = "rpc failure",
	[CERTA_ECONFIG - CERTA_EBASE] = "configuration error",
	[CERTA_EAUTH - CERTA_EBASE] = "unauthenticated",
	[CERTA_EDENIED - CERTA_EBASE] = "permission denied",
	[CERTA_ESTATE - CERTA_EBASE] = "invalid state",
	[CERTA_ETRACE - CERTA_EBASE] = "malformed trace",
	[CERTA_EDATALOSS - CERTA_EBASE] = "stored data is damaged or lost",
	[CERTA_ENOSTATE - CERTA_EBASE] = "no state held for the request",
};

const char *
certa_strerror(int err)
{
	if (err == 0)
		return "success";
	if (err >= CERTA_EBASE && err < CERTA_ELAST) {
		const char *s = certa_error_table[err - CERTA_EBASE];
		return s != NULL ? s : "unknown certa error";
	}
	if (err < 0 && err > -4096)
		return strerror(-err);
	return "unknown error";
}
