/* test_install.c — `make install DESTDIR=tmp PREFIX=/usr` produces the expected tree, the
 * installed units pass `systemd-analyze verify` (when systemd-analyze exists), the example
 * configs validate, and `make uninstall` removes every file it put there.
 *
 * Runs from the repository root (as under `make check`); BUILD names the build directory. */
#include <errno.h>
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "tests/support/harness.h"

struct expect {
	const char *path;    /* under DESTDIR */
	mode_t mode;
};

static const struct expect expected[] = {
	{ "/usr/bin/certactl", 0755 },
	{ "/usr/bin/certa-eval", 0755 },
	{ "/usr/sbin/certad", 0755 },
	{ "/usr/sbin/certa-worker", 0755 },
	{ "/usr/lib/systemd/system/certad.service", 0644 },
	{ "/usr/lib/systemd/system/certa-worker@.service", 0644 },
	{ "/usr/lib/systemd/system/certa-worker-upstream@.service", 0644 },
	{ "/usr/lib/sysusers.d/certa.conf", 0644 },
	{ "/usr/lib/tmpfiles.d/certa.conf", 0644 },
	{ "/etc/certa/certad.conf.example", 0644 },
	{ "/etc/certa/certa-worker.conf.example", 0644 },
	{ "/usr/share/man/man8/certad.8", 0644 },
	{ "/usr/share/man/man8/certa-worker.8", 0644 },
	{ "/usr/share/man/man1/certactl.1", 0644 },
	{ "/usr/share/man/man1/certa-eval.1", 0644 },
	{ "/usr/share/man/man5/certad.conf.5", 0644 },
};
#define NEXPECTED (sizeof expected / sizeof expected[0])

static char root[64];        /* the temporary directory */
static char destdir[128];
static const char *build;

/* Reads a whole (small) file into a static buffer. */
static const char *
slurp(const char *path)
{
	static char buf[1 << 16];
	FILE *f = fopen(path, "r");
	size_t n;

	assert_non_null(f);
	n = fread(buf, 1, sizeof buf - 1, f);
	buf[n] = '\0';
	fclose(f);
	return buf;
}

/* Walks DESTDIR: counts regular files and those whose path mentions certa. */
static int walk_files, walk_certa;
static char walk_first[512];

static int
walk_fn(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
	(void)ftw;
	if (type == FTW_F || type == FTW_SL) {
		walk_files++;
		if (walk_first[0] == '\0')
			snprintf(walk_first, sizeof walk_first, "%s", path);
	}
	if (strstr(path + strlen(destdir), "certa") != NULL)
		walk_certa++;
	(void)st;
	return 0;
}

static void
walk(void)
{
	walk_files = walk_certa = 0;
	walk_first[0] = '\0';
	assert_int_equal(nftw(destdir, walk_fn, 16, FTW_PHYS), 0);
}

static int
setup(void **state)
{
	(void)state;
	build = getenv("BUILD");
	if (build == NULL || *build == '\0')
		build = "build";
	snprintf(root, sizeof root, "/tmp/certa-install-XXXXXX");
	assert_non_null(mkdtemp(root));
	snprintf(destdir, sizeof destdir, "%s/dest", root);
	/* The Makefile must be here: this test runs from the repository root. */
	assert_int_equal(access("Makefile", R_OK), 0);
	/* A make started by `make check` would inherit its jobserver; start clean. */
	unsetenv("MAKEFLAGS");
	unsetenv("MFLAGS");
	unsetenv("MAKELEVEL");
	/* Under check-asan the binaries run here are ASan builds; leaks on their early exits
	 * (--check-config, --print-config) are not what this test is about. */
	setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
	return 0;
}

static int
teardown(void **state)
{
	(void)state;
	harness_sh("rm -rf '%s'", root);
	return 0;
}

/* Installed units, with ExecStart pointing into DESTDIR, must verify without a word. */
static void
verify_units(void)
{
	char dir[256], out[300];
	const char *text;

	if (harness_sh("command -v systemd-analyze >/dev/null 2>&1") != 0) {
		print_message("systemd-analyze not found (Debian: systemd): unit verification "
		    "skipped\n");
		return;
	}
	snprintf(dir, sizeof dir, "%s/units", root);
	snprintf(out, sizeof out, "%s/verify.out", root);
	assert_int_equal(harness_sh("mkdir -p '%s'", dir), 0);
	/* verify wants an instance of a template, and executables that exist. */
	assert_int_equal(harness_sh("sed 's|=/usr/sbin/|=%s/usr/sbin/|' "
	    "'%s/usr/lib/systemd/system/certad.service' > '%s/certad.service' && "
	    "sed 's|=/usr/sbin/|=%s/usr/sbin/|' "
	    "'%s/usr/lib/systemd/system/certa-worker@.service' > '%s/certa-worker@0.service'",
	    destdir, destdir, dir, destdir, destdir, dir), 0);
	assert_int_equal(harness_sh("sed 's|=/usr/sbin/|=%s/usr/sbin/|' "
	    "'%s/usr/lib/systemd/system/certa-worker-upstream@.service' > "
	    "'%s/certa-worker-upstream@a.service'", destdir, destdir, dir), 0);
	/* --man=no: man(1) would look for the pages on the host, not in DESTDIR (they are
	 * checked above). */
	assert_int_equal(harness_sh("cd '%s' && systemd-analyze verify --man=no certad.service "
	    "certa-worker@0.service certa-worker-upstream@a.service > '%s' 2>&1", dir, out), 0);
	text = slurp(out);
	if (text[0] != '\0')
		fail_msg("systemd-analyze verify complained:\n%s", text);

	/* It really checks: a unit whose ExecStart does not exist must fail. */
	assert_int_equal(harness_sh("sed 's|^ExecStart=[^ ]*|ExecStart=/nonexistent/certad|' "
	    "'%s/certad.service' > '%s/broken.service'", dir, dir), 0);
	assert_int_not_equal(harness_sh("cd '%s' && systemd-analyze verify --man=no broken.service "
	    ">/dev/null 2>&1", dir), 0);

	/* The hardening is real: exposure score (0-100, lower is better) under a bound. */
	if (harness_sh("systemd-analyze security --help 2>/dev/null | grep -q -- --offline") == 0) {
		assert_int_equal(harness_sh("cd '%s' && systemd-analyze security --offline=yes "
		    "--threshold=25 certad.service > '%s' 2>&1", dir, out), 0);
		assert_int_equal(harness_sh("cd '%s' && systemd-analyze security --offline=yes "
		    "--threshold=30 certa-worker@0.service > '%s' 2>&1", dir, out), 0);
		assert_int_equal(harness_sh("cd '%s' && systemd-analyze security --offline=yes "
		    "--threshold=25 certa-worker-upstream@a.service > '%s' 2>&1", dir, out), 0);
	} else {
		print_message("systemd-analyze security --offline unsupported: skipped\n");
	}
}

static void
test_install_uninstall(void **state)
{
	char path[512];
	const char *text;
	struct stat st;
	size_t i;
	int rc;

	(void)state;
	rc = harness_sh("make --no-print-directory install DESTDIR='%s' PREFIX=/usr BUILD='%s' "
	    "> '%s/install.log' 2>&1", destdir, build, root);
	if (rc != 0) {
		snprintf(path, sizeof path, "%s/install.log", root);
		fail_msg("make install failed (%d):\n%s", rc, slurp(path));
	}

	/* Every expected file, with its mode, and nothing else. */
	for (i = 0; i < NEXPECTED; i++) {
		snprintf(path, sizeof path, "%s%s", destdir, expected[i].path);
		if (stat(path, &st) != 0)
			fail_msg("not installed: %s", expected[i].path);
		assert_true(S_ISREG(st.st_mode));
		if ((st.st_mode & 07777) != expected[i].mode)
			fail_msg("%s: mode %o, expected %o", expected[i].path,
			    (unsigned)(st.st_mode & 07777), (unsigned)expected[i].mode);
		assert_true(st.st_size > 0);
	}
	walk();
	assert_int_equal(walk_files, NEXPECTED);

	/* Units point at the installed paths. */
	snprintf(path, sizeof path, "%s/usr/lib/systemd/system/certad.service", destdir);
	text = slurp(path);
	assert_non_null(strstr(text, "\nExecStart=/usr/sbin/certad --config "
	    "/etc/certa/certad.conf --state-dir /var/lib/certa\n"));
	assert_non_null(strstr(text, "\nType=notify\n"));
	assert_non_null(strstr(text, "\nWatchdogSec="));
	snprintf(path, sizeof path, "%s/usr/lib/systemd/system/certa-worker@.service", destdir);
	text = slurp(path);
	assert_non_null(strstr(text, "\nExecStart=/usr/sbin/certa-worker --config "
	    "/etc/certa/certa-worker.conf"));
	assert_non_null(strstr(text, "\nEnvironment=CUDA_VISIBLE_DEVICES=%i\n"));

	/* Man pages: the OPTIONS section was spliced in. */
	snprintf(path, sizeof path, "%s/usr/share/man/man5/certad.conf.5", destdir);
	text = slurp(path);
	assert_null(strstr(text, "@OPTIONS@"));
	assert_non_null(strstr(text, "\n.SH OPTIONS\n"));
	assert_non_null(strstr(text, "state_dir"));
	snprintf(path, sizeof path, "%s/usr/share/man/man8/certa-worker.8", destdir);
	text = slurp(path);
	assert_null(strstr(text, "@OPTIONS@"));
	assert_non_null(strstr(text, "\n.SH OPTIONS\n"));
	assert_non_null(strstr(text, "\\fBcapacity\\fR"));   /* generated from the table */

	/* The example configurations are valid configurations (everything commented out). */
	assert_int_equal(harness_sh("'%s/usr/sbin/certad' --check-config --config "
	    "'%s/etc/certa/certad.conf.example' >/dev/null", destdir, destdir), 0);
	assert_int_equal(harness_sh("'%s/usr/sbin/certa-worker' --check-config --config "
	    "'%s/etc/certa/certa-worker.conf.example' >/dev/null", destdir, destdir), 0);

	verify_units();

	rc = harness_sh("make --no-print-directory uninstall DESTDIR='%s' PREFIX=/usr BUILD='%s' "
	    "> '%s/uninstall.log' 2>&1", destdir, build, root);
	assert_int_equal(rc, 0);
	walk();
	if (walk_files != 0)
		fail_msg("%d files left after uninstall, e.g. %s", walk_files, walk_first);
	assert_int_equal(walk_certa, 0);   /* not even the /etc/certa directory */
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_install_uninstall, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
