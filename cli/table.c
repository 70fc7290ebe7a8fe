/* table.c — aligned text tables; see table.h. */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/output.h"
#include "cli/table.h"
#include "lib/array.h"

struct table {
	size_t ncols;
	const char *const *heads;
	char *align;
	size_t *max;                 /* per column, 0: no limit */
	char **cells;                /* row-major, ncells of them */
	size_t ncells, cap;
	size_t indent;
	int err;
};

int
table_new(const char *const *heads, const char *align, size_t ncols, struct table **out)
{
	struct table *t;
	size_t i;

	t = calloc(1, sizeof *t);
	if (t == NULL)
		return -ENOMEM;
	t->ncols = ncols;
	t->heads = heads;
	t->align = strdup(align);
	t->max = calloc(ncols, sizeof *t->max);
	if (t->align == NULL || t->max == NULL || strlen(align) != ncols) {
		free(t->align);
		free(t->max);
		free(t);
		return -ENOMEM;
	}
	for (i = 0; i < ncols; i++)
		t->max[i] = TABLE_DEFAULT_MAX;
	*out = t;
	return 0;
}

void
table_free(struct table *t)
{
	size_t i;

	if (t == NULL)
		return;
	for (i = 0; i < t->ncells; i++)
		free(t->cells[i]);
	free(t->cells);
	free(t->max);
	free(t->align);
	free(t);
}

void
table_set_max(struct table *t, size_t col, size_t maxcols)
{
	if (col < t->ncols)
		t->max[col] = maxcols;
}

void
table_set_indent(struct table *t, size_t indent)
{
	t->indent = indent;
}

/* Takes ownership of s (NULL: out of memory). */
static void
table_push(struct table *t, char *s)
{
	if (s == NULL || t->err != 0) {
		free(s);
		t->err = -ENOMEM;
		return;
	}
	if (ARRAY_GROW(t->cells, t->cap, t->ncells + 1) != 0) {
		free(s);
		t->err = -ENOMEM;
		return;
	}
	t->cells[t->ncells++] = s;
}

void
table_cell(struct table *t, const char *text)
{
	table_push(t, strdup(text != NULL ? text : ""));
}

void
table_cellf(struct table *t, const char *fmt, ...)
{
	va_list ap;
	char *s;

	va_start(ap, fmt);
	if (vasprintf(&s, fmt, ap) < 0)
		s = NULL;
	va_end(ap);
	table_push(t, s);
}

size_t
table_rows(const struct table *t)
{
	return t->ncells / t->ncols;
}

/* Columns a cell takes as output_text() writes it under limit max. */
static size_t
table_cell_cols(const char *s, size_t max)
{
	size_t w = *s ? output_text_cols(s) : 1;

	return max > 0 && w > max ? (max <= 3 ? 4 : max) : w;
}

/* One row of cells (the header when cells are the heads). */
static void
table_print_row(const struct table *t, FILE *f, const char *const *cells, const size_t *wid)
{
	size_t c, used;

	fprintf(f, "%*s", (int)t->indent, "");
	for (c = 0; c < t->ncols; c++) {
		if (c > 0)
			fputs("  ", f);
		if (t->align[c] == 'r') {
			for (used = table_cell_cols(cells[c], t->max[c]); used < wid[c]; used++)
				fputc(' ', f);
			output_text(f, cells[c], t->max[c]);
			continue;
		}
		used = output_text(f, cells[c], t->max[c]);
		if (c + 1 < t->ncols)
			for (; used < wid[c]; used++)
				fputc(' ', f);
	}
	fputc('\n', f);
}

int
table_print(const struct table *t, FILE *f)
{
	size_t *wid, rows = table_rows(t), r, c, w;

	if (t->err != 0)
		return t->err;
	wid = calloc(t->ncols, sizeof *wid);
	if (wid == NULL)
		return -ENOMEM;
	for (c = 0; c < t->ncols; c++)
		wid[c] = strlen(t->heads[c]);
	for (r = 0; r < rows; r++) {
		for (c = 0; c < t->ncols; c++) {
			w = table_cell_cols(t->cells[r * t->ncols + c], t->max[c]);
			if (w > wid[c])
				wid[c] = w;
		}
	}
	table_print_row(t, f, t->heads, wid);
	for (r = 0; r < rows; r++)
		table_print_row(t, f, (const char *const *)&t->cells[r * t->ncols], wid);
	free(wid);
	return 0;
}
