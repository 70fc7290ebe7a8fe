/*
 * error.h — one error convention for all of certa.
 *
 * Functions return 0 on success or a negative code: either -errno (e.g. -ENOMEM, -EINVAL) or one
 * of the project codes below, which live in a reserved range far from errno values.
 * certa_strerror() names both kinds.  Each foreign boundary (LMDB, gRPC, CUDA) has exactly one
 * translation function: store_error() in store/, rpc_status_from_error() in lib/rpc.
 */
#ifndef CERTA_LIB_ERROR_H
#define CERTA_LIB_ERROR_H

enum certa_error {
	CERTA_EBASE = -20000,
	CERTA_ENOTFOUND = CERTA_EBASE,  /* no such program / tenant / trace / key */
	CERTA_EEXIST,                   /* already exists */
	CERTA_ECORRUPT,                 /* a stored value does not decode */
	CERTA_ESCHEMA,                  /* store schema version mismatch */
	CERTA_EMAPFULL,                 /* store map full and could not grow */
	CERTA_ESTORE,                   /* other store failure */
	CERTA_EDECODE,                  /* malformed protobuf on the wire */
	CERTA_EINVAL,                   /* invalid argument from a peer (message says which) */
	CERTA_ECAPACITY,                /* capacity or quota exhausted */
	CERTA_EUNAVAIL,                 /* peer unavailable */
	CERTA_ETIMEOUT,                 /* deadline exceeded */
	CERTA_ECANCELLED,               /* operation cancelled */
	CERTA_ERPC,                     /* other RPC failure */
	CERTA_ECONFIG,                  /* configuration error */
	CERTA_EAUTH,                    /* missing or bad credential */
	CERTA_EDENIED,                  /* credential valid but not allowed */
	CERTA_ESTATE,                   /* illegal state transition / wrong state */
	CERTA_ETRACE,                   /* malformed trace file */
	CERTA_EDATALOSS,                /* stored data damaged or lost (checksum, truncation) */
	CERTA_ENOSTATE,                 /* a worker holds no state for a request that came
	                                 * without its prompt (worker.proto: state_missing) */
	CERTA_ELAST
};

/* Returns a static string describing a negative certa code or -errno; never NULL. */
const char *certa_strerror(int err);

#endif
