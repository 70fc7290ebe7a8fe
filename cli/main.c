/*
 * certactl — command-line client of certad: submit reasoning programs, follow their progress,
 * inspect, cancel and list them.  `certactl --help` lists the commands and the exit statuses.
 */
#include <stdio.h>

#include "cli/cmd.h"
#include "lib/log.h"

int
main(int argc, char **argv)
{
	struct cmd_ctx ctx;
	int rc;

	log_init("certactl", LOG_FORMAT_PLAIN, LOG_LVL_WARN);
	cmd_ctx_init(&ctx);
	rc = cmd_main(&ctx, argc, argv);
	/* Output that never reached its destination (full disk, closed pipe) is a failure. */
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "certactl: error writing output\n");
		if (rc == CLI_EXIT_OK)
			rc = CLI_EXIT_ERROR;
	}
	return rc;
}
