/*
 * table.h — aligned text tables for certactl's human output (tenant list, worker list, stats,
 * policy history).
 *
 * Cells are added row by row (a row ends after as many cells as there are columns), measured
 * when printed, and written terminal-safe by output_text(): control characters from the
 * server are escaped, a cell wider than its column's limit ends in "...", an empty cell shows
 * as "-".  Columns are separated by two spaces; the header row is the column names as given.
 * The last column is not padded.
 *
 * Errors are sticky (out of memory): later calls do nothing and table_print() reports it.
 * Main thread only.
 */
#ifndef CERTA_CLI_TABLE_H
#define CERTA_CLI_TABLE_H

#include <stddef.h>
#include <stdio.h>

struct table;

/* Widest cell by default, in columns; table_set_max() changes it per column. */
#define TABLE_DEFAULT_MAX 40

/*
 * Creates a table with ncols columns named heads[0..ncols-1] (copied pointers: they must
 * outlive the table; string literals in practice).  align has one character per column: 'l'
 * (left) or 'r' (right, for numbers).  Returns 0 or -ENOMEM; *out is written only on success.
 */
int table_new(const char *const *heads, const char *align, size_t ncols, struct table **out);
/* Frees the table and its cells.  NULL is a no-op. */
void table_free(struct table *t);

/* Limits column col to maxcols columns (0: no limit). */
void table_set_max(struct table *t, size_t col, size_t maxcols);

/* Starts every printed line with indent spaces (default 0). */
void table_set_indent(struct table *t, size_t indent);

/* Appends a cell (copied; NULL shows as "-"). */
void table_cell(struct table *t, const char *text);
/* Appends a printf-formatted cell. */
void table_cellf(struct table *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Number of complete rows so far. */
size_t table_rows(const struct table *t);

/* Writes the header and the rows to f.  Returns 0, or -ENOMEM when a cell could not be
 * stored (then nothing is written). */
int table_print(const struct table *t, FILE *f);

#endif
