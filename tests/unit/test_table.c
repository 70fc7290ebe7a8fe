/* test_table.c — cli/table: certactl's aligned text tables (alignment, limits, escaping). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "cli/table.h"

/* Prints t into a string (caller frees). */
static char *
render(const struct table *t)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);

	assert_non_null(f);
	assert_int_equal(table_print(t, f), 0);
	fclose(f);
	return buf;
}

static void
test_alignment_and_last_column_unpadded(void **state)
{
	static const char *const heads[] = { "NAME", "PROGRAMS", "NOTE" };
	struct table *t;
	char *s;

	(void)state;
	assert_int_equal(table_new(heads, "lrl", 3, &t), 0);
	table_cell(t, "acme");
	table_cellf(t, "%d", 7);
	table_cell(t, "ok");
	table_cell(t, "b");
	table_cellf(t, "%u", 12345u);
	table_cell(t, "long note here");
	assert_int_equal(table_rows(t), 2);
	s = render(t);
	assert_string_equal(s,
	    "NAME  PROGRAMS  NOTE\n"
	    "acme         7  ok\n"
	    "b        12345  long note here\n");
	free(s);
	table_free(t);
}

static void
test_empty_cells_limits_and_escaping(void **state)
{
	static const char *const heads[] = { "NAME", "N", "NOTE" };
	struct table *t;
	char *s;

	(void)state;
	assert_int_equal(table_new(heads, "lrl", 3, &t), 0);
	table_set_max(t, 0, 6);
	table_cell(t, "averylongname");
	table_cell(t, "");
	table_cell(t, NULL);
	table_cell(t, "a\tb");
	table_cell(t, "1");
	table_cell(t, "x\033[2Jy");
	s = render(t);
	assert_string_equal(s,
	    "NAME    N  NOTE\n"
	    "ave...  -  -\n"
	    "a\\tb    1  x\\x1b[2Jy\n");
	free(s);
	table_free(t);
}

static void
test_indent_and_no_rows(void **state)
{
	static const char *const heads[] = { "A", "B" };
	struct table *t;
	char *s;

	(void)state;
	assert_int_equal(table_new(heads, "ll", 2, &t), 0);
	table_set_indent(t, 2);
	s = render(t);
	assert_string_equal(s, "  A  B\n");
	free(s);
	/* An incomplete row is not a row. */
	table_cell(t, "x");
	assert_int_equal(table_rows(t), 0);
	table_free(t);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_alignment_and_last_column_unpadded),
		cmocka_unit_test(test_empty_cells_limits_and_escaping),
		cmocka_unit_test(test_indent_and_no_rows),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
