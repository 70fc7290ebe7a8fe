/*
 * answer.c — canonicalization and equivalence of LaTeX math answers.
 *
 * The canonicalizer is a fixed pipeline of linear passes over a bounded work buffer (see
 * canon_passes[]).  Between passes the text is "internal form": LaTeX without whitespace, except
 * one space where a letter command is followed by a letter ("\cot x"), so command names stay
 * unambiguous; the final copy drops those spaces.  Nothing here recurses without a depth bound:
 * the evaluator and the structural comparison stop at MAX_DEPTH.
 */
#include "scheduler/answer.h"

#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/hash.h"

#define WORK_CAP (2 * ANSWER_MAX_LEN + 256)  /* longer intermediate forms: -E2BIG */
#define MAX_DEPTH 48                           /* evaluator nesting */
#define MAX_CMP_DEPTH 8                        /* structural comparison nesting */
#define MAX_ROUNDS 4                           /* pipeline repetitions */
#define MAX_SLASHES 64                         /* a/b rewrites per answer (bounds time) */
#define NUM_RTOL 1e-9
#define NUM_ATOL 1e-12
#define PI_VALUE 3.14159265358979323846

struct work {
	char buf[2][WORK_CAP];
	char tmp[WORK_CAP];   /* pass_slash operand */
	char prev[WORK_CAP];  /* previous round, for the fixpoint */
	int16_t match[WORK_CAP];
	int16_t stack[WORK_CAP];
	uint8_t flag[WORK_CAP];
	int8_t pend[WORK_CAP];
};

/* Output buffer that keeps command names unambiguous (see top comment). */
struct sb {
	char *p;
	size_t len, cap;
	bool over;
	bool after_lcmd;  /* last thing written was a letter command */
};

static bool is_alpha(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool is_digit(int c)
{
	return c >= '0' && c <= '9';
}

static bool is_alnum(int c)
{
	return is_alpha(c) || is_digit(c);
}

static bool is_space(int c)
{
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static bool span_eq(const char *s, size_t n, const char *lit)
{
	size_t l = strlen(lit);
	return n == l && memcmp(s, lit, l) == 0;
}

static bool span_has(const char *s, size_t n, const char *lit)
{
	size_t l = strlen(lit);
	for (size_t i = 0; i + l <= n; i++)
		if (memcmp(s + i, lit, l) == 0)
			return true;
	return false;
}

static void sb_init(struct sb *b, char *p, size_t cap)
{
	b->p = p;
	b->len = 0;
	b->cap = cap;
	b->over = false;
	b->after_lcmd = false;
}

static void sb_raw(struct sb *b, const char *s, size_t n)
{
	if (b->over || b->len + n >= b->cap) {
		b->over = true;
		return;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

/* Writes one plain character; separates it from a preceding letter command if needed. */
static void sb_char(struct sb *b, char c)
{
	if (b->after_lcmd && is_alpha((unsigned char)c))
		sb_raw(b, " ", 1);
	sb_raw(b, &c, 1);
	b->after_lcmd = false;
}

/* Writes "\name" (name is letters, or one non-letter character, or empty). */
static void sb_cmd(struct sb *b, const char *name, size_t n)
{
	sb_raw(b, "\\", 1);
	sb_raw(b, name, n);
	/* "\\" too: "\\frac" would read as a double-escaped "\frac" */
	b->after_lcmd = n > 0 && (is_alpha((unsigned char)name[0]) || name[0] == '\\');
}

/* End (exclusive) of the command starting at s[i] == '\\'. */
static size_t cmd_end(const char *s, size_t n, size_t i)
{
	size_t j = i + 1;
	if (j >= n)
		return j;
	if (!is_alpha((unsigned char)s[j]))
		return j + 1;
	while (j < n && is_alpha((unsigned char)s[j]))
		j++;
	return j;
}

/* Copies internal-form text, re-tokenizing commands so separators stay right. */
static void sb_text(struct sb *b, const char *s, size_t n)
{
	for (size_t i = 0; i < n;) {
		if (s[i] == ' ') {
			i++;
		} else if (s[i] == '\\') {
			size_t e = cmd_end(s, n, i);
			sb_cmd(b, s + i + 1, e - i - 1);
			i = e;
		} else {
			sb_char(b, s[i++]);
		}
	}
}

/* match[i] = index of the partner of an unescaped brace at i, or -1. */
static void match_braces(const char *s, size_t n, int16_t *match, int16_t *stack)
{
	size_t depth = 0;
	for (size_t i = 0; i < n;) {
		match[i] = -1;
		if (s[i] == '\\') {
			size_t e = cmd_end(s, n, i);
			for (size_t k = i + 1; k < e && k < n; k++)
				match[k] = -1;
			i = e;
			continue;
		}
		if (s[i] == '{') {
			stack[depth++] = (int16_t)i;
		} else if (s[i] == '}' && depth > 0) {
			int16_t o = stack[--depth];
			match[o] = (int16_t)i;
			match[i] = o;
		}
		i++;
	}
}

/* ---- pass 1: lexical clean-up ---------------------------------------------------------- */

struct utf8_map {
	const char *from;
	const char *to;
};

static const struct utf8_map utf8_table[] = {
	{"\xc2\xb0", ""},              /* degree sign */
	{"\xc2\xa0", ""},              /* no-break space */
	{"\xcf\x80", "\\pi"},
	{"\xe2\x88\x9a", "\\sqrt"},
	{"\xe2\x88\x92", "-"},         /* minus sign */
	{"\xe2\x80\x93", "-"},         /* en dash */
	{"\xc3\x97", "\\times"},
	{"\xc2\xb7", "\\cdot"},
	{"\xe2\x8b\x85", "\\cdot"},
	{"\xe2\x88\x9e", "\\infty"},
	{"\xe2\x89\xa4", "\\leq"},
	{"\xe2\x89\xa5", "\\geq"},
	{"\xe2\x89\xa0", "\\neq"},
	{"\xc2\xb2", "^2"},
	{"\xc2\xb3", "^3"},
	{"\xe2\x80\xa6", "\\ldots"},
	{"\xe2\x88\xaa", "\\cup"},
	{"\xc2\xb1", "\\pm"},
};

/* Length of the valid UTF-8 sequence at s[i] (a non-ASCII lead byte), or 0. */
static size_t utf8_len(const char *s, size_t n, size_t i)
{
	unsigned char c = (unsigned char)s[i];
	size_t l = c >= 0xc2 && c <= 0xdf ? 2 : c >= 0xe0 && c <= 0xef ? 3 :
		   c >= 0xf0 && c <= 0xf4 ? 4 : 0;
	if (l == 0 || i + l > n)
		return 0;
	for (size_t k = 1; k < l; k++)
		if (((unsigned char)s[i + k] & 0xc0) != 0x80)
			return 0;
	return l;
}

/* Commands a whitespace-stripping extractor glues to what follows ("\fracab", "\sqrtx"). */
static const char *const glued_prefix[] = {"dfrac", "tfrac", "cfrac", "frac", "sqrt", "cdot",
					   "times", "pi"};

/* Commands that appear double-escaped ("\\frac") in some model outputs. */
static const char *const double_escaped[] = {"frac", "dfrac", "tfrac", "sqrt", "pi", "cdot",
					     "times", "infty", "text", "left", "right", "boxed"};

static void pass_lex(const char *s, size_t n, struct sb *o, struct work *w)
{
	(void)w;
	bool has_env = span_has(s, n, "\\begin");
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		if (c < 0x20 || c == 0x7f || c == ' ' || c == '$') {
			i++;
			continue;
		}
		if (c >= 0x80) {
			size_t k;
			for (k = 0; k < sizeof(utf8_table) / sizeof(utf8_table[0]); k++) {
				size_t l = strlen(utf8_table[k].from);
				if (i + l <= n && memcmp(s + i, utf8_table[k].from, l) == 0) {
					sb_text(o, utf8_table[k].to, strlen(utf8_table[k].to));
					i += l;
					break;
				}
			}
			if (k == sizeof(utf8_table) / sizeof(utf8_table[0])) {
				/* keep whole UTF-8 sequences only: stray bytes could join later */
				size_t l = utf8_len(s, n, i);
				if (l == 0)
					i++;
				for (size_t j = 0; j < l; j++)
					sb_char(o, s[i++]);
			}
			continue;
		}
		if (c != '\\') {
			sb_char(o, s[i++]);
			continue;
		}
		if (i + 1 >= n) {  /* lone trailing backslash */
			i++;
			continue;
		}
		unsigned char d = (unsigned char)s[i + 1];
		if (d == '\\' && !has_env && i + 2 < n && is_alpha((unsigned char)s[i + 2])) {
			size_t e = cmd_end(s, n, i + 1);
			bool known = false;
			for (size_t k = 0; k < sizeof(double_escaped) / sizeof(double_escaped[0]); k++)
				known = known || span_eq(s + i + 2, e - i - 2, double_escaped[k]);
			if (known) {
				i++;  /* continue at the second backslash */
				continue;
			}
		}
		if (is_space(d)) {  /* "\ " is a space */
			i += 2;
			continue;
		}
		if (!is_alpha(d)) {
			sb_cmd(o, s + i + 1, 1);
			i += 2;
			continue;
		}
		size_t e = cmd_end(s, n, i);
		const char *name = s + i + 1;
		size_t nl = e - i - 1;
		size_t split = 0;
		for (size_t k = 0; k < sizeof(glued_prefix) / sizeof(glued_prefix[0]); k++) {
			size_t pl = strlen(glued_prefix[k]);
			if (nl > pl && memcmp(name, glued_prefix[k], pl) == 0 &&
			    !(pl == 2 && nl > 4) && !span_eq(name, nl, "pitchfork")) {
				split = pl;
				break;
			}
		}
		if (split) {
			sb_cmd(o, name, split);
			for (size_t k = split; k < nl; k++)
				sb_char(o, name[k]);
		} else {
			sb_cmd(o, name, nl);
		}
		i = e;
	}
}

/* ---- pass 2: commands ------------------------------------------------------------------ */

enum cmd_action { CA_DROP = 1, CA_DROP_DELIM, CA_RENAME, CA_TEXT, CA_BOXED, CA_CIRC };

struct cmd_rule {
	const char *name;
	enum cmd_action action;
	const char *to;
};

static const struct cmd_rule cmd_table[] = {
	{"left", CA_DROP_DELIM, NULL},   {"right", CA_DROP_DELIM, NULL},
	{"big", CA_DROP_DELIM, NULL},    {"Big", CA_DROP_DELIM, NULL},
	{"bigg", CA_DROP_DELIM, NULL},   {"Bigg", CA_DROP_DELIM, NULL},
	{"bigl", CA_DROP_DELIM, NULL},   {"bigr", CA_DROP_DELIM, NULL},
	{"Bigl", CA_DROP_DELIM, NULL},   {"Bigr", CA_DROP_DELIM, NULL},
	{"biggl", CA_DROP_DELIM, NULL},  {"biggr", CA_DROP_DELIM, NULL},
	{"Biggl", CA_DROP_DELIM, NULL},  {"Biggr", CA_DROP_DELIM, NULL},
	{"middle", CA_DROP_DELIM, NULL},
	{"displaystyle", CA_DROP, NULL}, {"textstyle", CA_DROP, NULL},
	{"scriptstyle", CA_DROP, NULL},  {"limits", CA_DROP, NULL},
	{"nolimits", CA_DROP, NULL},     {"quad", CA_DROP, NULL},
	{"qquad", CA_DROP, NULL},        {"thinspace", CA_DROP, NULL},
	{"medspace", CA_DROP, NULL},     {"thickspace", CA_DROP, NULL},
	{"enspace", CA_DROP, NULL},      {"negthinspace", CA_DROP, NULL},
	{"hfill", CA_DROP, NULL},        {"mathstrut", CA_DROP, NULL},
	{"degree", CA_DROP, NULL},       {"degrees", CA_DROP, NULL},
	{"circ", CA_CIRC, NULL},
	{"dfrac", CA_RENAME, "frac"},    {"tfrac", CA_RENAME, "frac"},
	{"cfrac", CA_RENAME, "frac"},    {"dbinom", CA_RENAME, "binom"},
	{"tbinom", CA_RENAME, "binom"},  {"le", CA_RENAME, "leq"},
	{"ge", CA_RENAME, "geq"},        {"leqslant", CA_RENAME, "leq"},
	{"geqslant", CA_RENAME, "geq"},  {"ne", CA_RENAME, "neq"},
	{"dots", CA_RENAME, "ldots"},    {"cdots", CA_RENAME, "ldots"},
	{"varnothing", CA_RENAME, "emptyset"},
	{"boxed", CA_BOXED, NULL},       {"fbox", CA_BOXED, NULL},
	{"framebox", CA_BOXED, NULL},
	{"text", CA_TEXT, NULL},         {"textbf", CA_TEXT, NULL},
	{"textit", CA_TEXT, NULL},       {"textrm", CA_TEXT, NULL},
	{"textsf", CA_TEXT, NULL},       {"texttt", CA_TEXT, NULL},
	{"textnormal", CA_TEXT, NULL},   {"mbox", CA_TEXT, NULL},
	{"hbox", CA_TEXT, NULL},         {"mathrm", CA_TEXT, NULL},
	{"mathbf", CA_TEXT, NULL},       {"mathit", CA_TEXT, NULL},
	{"mathsf", CA_TEXT, NULL},       {"mathtt", CA_TEXT, NULL},
	{"mathnormal", CA_TEXT, NULL},   {"operatorname", CA_TEXT, NULL},
	{"emph", CA_TEXT, NULL},         {"bm", CA_TEXT, NULL},
	{"boldsymbol", CA_TEXT, NULL},
};

static const struct cmd_rule *cmd_lookup(const char *name, size_t n)
{
	for (size_t k = 0; k < sizeof(cmd_table) / sizeof(cmd_table[0]); k++)
		if (span_eq(name, n, cmd_table[k].name))
			return &cmd_table[k];
	return NULL;
}

/* Last non-space character written, or 0. */
static char sb_last(const struct sb *b)
{
	for (size_t i = b->len; i > 0; i--)
		if (b->p[i - 1] != ' ')
			return b->p[i - 1];
	return 0;
}

/* A \text{} body that reads as a unit: letters, with '.', '/', '^' and digits allowed after. */
static bool is_unit_text(const char *s, size_t n)
{
	if (n == 0 || !is_alpha((unsigned char)s[0]))
		return false;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!is_alnum(c) && c != '.' && c != '/' && c != '^' && c != ' ' && c != '{' &&
		    c != '}')
			return false;
	}
	return true;
}

/* End of an optional "^2" / "^{3}" unit exponent at s[i], or i if none. */
static size_t unit_exponent_end(const char *s, size_t n, size_t i)
{
	if (i >= n || s[i] != '^')
		return i;
	if (i + 1 < n && is_digit((unsigned char)s[i + 1]))
		return i + 2;
	if (i + 3 < n && s[i + 1] == '{' && is_digit((unsigned char)s[i + 2]) && s[i + 3] == '}')
		return i + 4;
	return i;
}

static void pass_commands(const char *s, size_t n, struct sb *o, struct work *w)
{
	int16_t *m = w->match;
	uint8_t *drop = w->flag;
	match_braces(s, n, m, w->stack);
	memset(drop, 0, n);
	for (size_t i = 0; i < n;) {
		char c = s[i];
		if (drop[i] || c == ' ' || c == '%') {
			i++;
			continue;
		}
		if (c == '^') {  /* degrees: ^\circ, ^{\circ} */
			if (i + 6 <= n && memcmp(s + i + 1, "\\circ", 5) == 0 &&
			    cmd_end(s, n, i + 1) == i + 6) {
				i += 6;
				continue;
			}
			if (i + 1 < n && s[i + 1] == '{' && m[i + 1] >= 0 &&
			    span_eq(s + i + 2, (size_t)m[i + 1] - i - 2, "\\circ")) {
				i = (size_t)m[i + 1] + 1;
				continue;
			}
			sb_char(o, c);
			i++;
			continue;
		}
		if (c != '\\') {
			sb_char(o, c);
			i++;
			continue;
		}
		size_t e = cmd_end(s, n, i);
		const char *name = s + i + 1;
		size_t nl = e - i - 1;
		if (nl == 0) {
			i = e;
			continue;
		}
		if (!is_alpha((unsigned char)name[0])) {
			if (!strchr(",;:!> $%()[]", name[0]))
				sb_cmd(o, name, nl);
			i = e;
			continue;
		}
		const struct cmd_rule *r = cmd_lookup(name, nl);
		if (!r) {
			sb_cmd(o, name, nl);
			i = e;
			continue;
		}
		switch (r->action) {
		case CA_DROP:
			i = e;
			break;
		case CA_DROP_DELIM:
			i = e;
			if (i < n && s[i] == '.')
				i++;
			break;
		case CA_RENAME:
			sb_cmd(o, r->to, strlen(r->to));
			i = e;
			break;
		case CA_CIRC: {
			char last = sb_last(o);
			if (!is_digit((unsigned char)last) && last != '}')
				sb_cmd(o, name, nl);
			i = e;
			break;
		}
		case CA_BOXED:
			i = e;
			if (i < n && s[i] == '{' && m[i] >= 0) {
				drop[m[i]] = 1;
				i++;
			}
			break;
		case CA_TEXT:
			i = e;
			if (i < n && s[i] == '{' && m[i] >= 0) {
				size_t close = (size_t)m[i];
				size_t after = unit_exponent_end(s, n, close + 1);
				char last = sb_last(o);
				bool valued = is_digit((unsigned char)last) || last == '}' ||
					      last == ')' || last == ']';
				if (after == n && valued && is_unit_text(s + i + 1, close - i - 1)) {
					i = n;  /* trailing unit after a value */
				} else {
					drop[close] = 1;
					i++;
				}
			}
			break;
		}
	}
}

/* ---- pass 3: arguments and bare groups ------------------------------------------------- */

/* Number of brace arguments a command takes; -1: unknown, keep a following group as is. */
static int cmd_arity(const char *name, size_t n)
{
	static const char *const two[] = {"frac", "binom"};
	static const char *const one[] = {"sqrt", "overline", "underline", "hat", "bar", "vec",
					  "tilde", "widehat", "widetilde", "dot", "ddot", "mathbb",
					  "mathcal", "mathfrak", "mathscr", "begin", "end", "pmod",
					  "overrightarrow", "overleftrightarrow", "not"};
	for (size_t k = 0; k < sizeof(two) / sizeof(two[0]); k++)
		if (span_eq(name, n, two[k]))
			return 2;
	for (size_t k = 0; k < sizeof(one) / sizeof(one[0]); k++)
		if (span_eq(name, n, one[k]))
			return 1;
	return -1;
}

static void pass_args(const char *s, size_t n, struct sb *o, struct work *w)
{
	int16_t *m = w->match;
	uint8_t *bare = w->flag;
	int8_t *saved = w->pend;
	size_t depth = 0;
	int pending = 0;
	bool sqrt_opt = false;

	match_braces(s, n, m, w->stack);
	for (size_t i = 0; i < n;) {
		char c = s[i];
		if (c == ' ') {
			i++;
			continue;
		}
		if (c == '\\') {
			size_t e = cmd_end(s, n, i);
			const char *name = s + i + 1;
			size_t nl = e - i - 1;
			int ar = nl > 0 && is_alpha((unsigned char)name[0]) ? cmd_arity(name, nl) : 0;
			if (pending > 0 && ar <= 0) {
				sb_char(o, '{');
				sb_cmd(o, name, nl);
				sb_char(o, '}');
				pending--;
			} else {
				sb_cmd(o, name, nl);
				pending = ar;
			}
			sqrt_opt = span_eq(name, nl, "sqrt");
			i = e;
			continue;
		}
		if (c == '[' && sqrt_opt) {
			size_t k = i + 1;
			int d = 1;
			while (k < n && d > 0) {
				if (s[k] == '[')
					d++;
				else if (s[k] == ']')
					d--;
				if (d > 0)
					k++;
			}
			sqrt_opt = false;
			if (k < n) {
				sb_text(o, s + i, k - i + 1);
				i = k + 1;
				continue;
			}
		}
		sqrt_opt = false;
		if (c == '{') {
			if (m[i] >= 0) {
				bare[depth] = pending == 0;
				saved[depth] = (int8_t)(pending > 0 ? pending - 1 : 0);
				depth++;
				if (pending != 0)
					sb_char(o, '{');
				pending = 0;
			}
			i++;
			continue;
		}
		if (c == '}') {
			if (m[i] >= 0 && depth > 0) {
				depth--;
				if (!bare[depth])
					sb_char(o, '}');
				pending = saved[depth];
			}
			i++;
			continue;
		}
		if (c == '^' || c == '_') {
			sb_char(o, c);
			pending = 1;
			i++;
			continue;
		}
		if (pending > 0 && is_alnum((unsigned char)c)) {
			sb_char(o, '{');
			sb_char(o, c);
			sb_char(o, '}');
			pending--;
			i++;
			continue;
		}
		pending = 0;
		sb_char(o, c);
		i++;
	}
}

/* ---- numeric evaluation ---------------------------------------------------------------- */

struct ev {
	const char *s;
	size_t n, i;
	int depth;
	bool err;
};

static double ev_expr(struct ev *e);

static char ev_peek(struct ev *e)
{
	while (e->i < e->n && e->s[e->i] == ' ')
		e->i++;
	return e->i < e->n ? e->s[e->i] : 0;
}

/* True (and consumes it) if the next token is the command \name. */
static bool ev_cmd(struct ev *e, const char *name)
{
	if (ev_peek(e) != '\\')
		return false;
	size_t end = cmd_end(e->s, e->n, e->i);
	if (!span_eq(e->s + e->i + 1, end - e->i - 1, name))
		return false;
	e->i = end;
	return true;
}

static bool ev_expect(struct ev *e, char c)
{
	if (ev_peek(e) != c) {
		e->err = true;
		return false;
	}
	e->i++;
	return true;
}

static double ev_group(struct ev *e, char open, char close)
{
	if (!ev_expect(e, open))
		return 0;
	double v = ev_expr(e);
	ev_expect(e, close);
	return v;
}

/* Unsigned decimal literal; *is_int tells whether it had no decimal point. */
static double ev_number(struct ev *e, bool *is_int)
{
	double v = 0, scale = 1;
	bool dot = false, any = false;
	while (e->i < e->n) {
		char c = e->s[e->i];
		if (is_digit((unsigned char)c)) {
			if (dot) {
				scale /= 10;
				v += (c - '0') * scale;
			} else {
				v = v * 10 + (c - '0');
			}
			any = true;
		} else if (c == '.' && !dot) {
			dot = true;
		} else {
			break;
		}
		e->i++;
	}
	if (!any)
		e->err = true;
	*is_int = !dot;
	return v;
}

/* "\frac{D+}{D+}" ahead (a mixed number's fraction part)? */
static bool ev_mixed_ahead(const struct ev *e)
{
	const char *s = e->s + e->i;
	size_t n = e->n - e->i, k;
	if (n < 10 || memcmp(s, "\\frac{", 6) != 0)
		return false;
	for (k = 6; k < n && is_digit((unsigned char)s[k]); k++)
		;
	if (k == 6 || k + 1 >= n || s[k] != '}' || s[k + 1] != '{')
		return false;
	size_t j = k + 2;
	for (k = j; k < n && is_digit((unsigned char)s[k]); k++)
		;
	return k > j && k < n && s[k] == '}';
}

static double ev_primary(struct ev *e)
{
	char c = ev_peek(e);
	if (is_digit((unsigned char)c) || c == '.') {
		bool is_int;
		double v = ev_number(e, &is_int);
		if (is_int && ev_mixed_ahead(e)) {
			ev_cmd(e, "frac");
			double a = ev_group(e, '{', '}');
			double b = ev_group(e, '{', '}');
			v += a / b;
		}
		return v;
	}
	if (c == '(')
		return ev_group(e, '(', ')');
	if (c == '{')
		return ev_group(e, '{', '}');
	if (ev_cmd(e, "frac")) {
		double a = ev_group(e, '{', '}');
		double b = ev_group(e, '{', '}');
		return a / b;
	}
	if (ev_cmd(e, "sqrt")) {
		double root = 2;
		if (ev_peek(e) == '[')
			root = ev_group(e, '[', ']');
		double x = ev_group(e, '{', '}');
		if (x < 0 || root == 0)
			e->err = true;
		return root == 2 ? sqrt(x) : pow(x, 1 / root);
	}
	if (ev_cmd(e, "pi"))
		return PI_VALUE;
	e->err = true;
	return 0;
}

static double ev_postfix(struct ev *e)
{
	double v = ev_primary(e);
	while (!e->err && ev_peek(e) == '!') {
		e->i++;
		if (v < 0 || v > 170 || v != floor(v)) {
			e->err = true;
			break;
		}
		double f = 1;
		for (int k = 2; k <= (int)v; k++)
			f *= k;
		v = f;
	}
	return v;
}

static double ev_unary(struct ev *e);

static double ev_power(struct ev *e)
{
	double v = ev_postfix(e);
	if (!e->err && ev_peek(e) == '^') {
		e->i++;
		double x = ev_peek(e) == '{' ? ev_group(e, '{', '}') : ev_unary(e);
		v = pow(v, x);
	}
	return v;
}

static double ev_unary(struct ev *e)
{
	double sign = 1, v;
	char c;
	if (++e->depth > MAX_DEPTH) {  /* "2^-2^-2^-..." recurses through here */
		e->err = true;
		return 0;
	}
	while ((c = ev_peek(e)) == '-' || c == '+') {
		if (c == '-')
			sign = -sign;
		e->i++;
	}
	v = sign * ev_power(e);
	e->depth--;
	return v;
}

/* Can an implicit product continue here ("2\pi", "11(1+\sqrt{5})")? */
static bool ev_starts_factor(struct ev *e)
{
	char c = ev_peek(e);
	if (is_digit((unsigned char)c) || c == '(' || c == '{')
		return true;
	if (c != '\\')
		return false;
	size_t end = cmd_end(e->s, e->n, e->i);
	const char *nm = e->s + e->i + 1;
	size_t nl = end - e->i - 1;
	return span_eq(nm, nl, "frac") || span_eq(nm, nl, "sqrt") || span_eq(nm, nl, "pi");
}

static double ev_term(struct ev *e)
{
	double v = ev_unary(e);
	while (!e->err) {
		char c = ev_peek(e);
		if (c == '*') {
			e->i++;
			v *= ev_unary(e);
		} else if (c == '/') {
			e->i++;
			v /= ev_unary(e);
		} else if (ev_cmd(e, "cdot") || ev_cmd(e, "times")) {
			v *= ev_unary(e);
		} else if (ev_cmd(e, "div")) {
			v /= ev_unary(e);
		} else if (ev_starts_factor(e)) {
			v *= ev_power(e);
		} else {
			break;
		}
	}
	return v;
}

static double ev_expr(struct ev *e)
{
	if (++e->depth > MAX_DEPTH) {
		e->err = true;
		return 0;
	}
	double v = ev_term(e);
	while (!e->err) {
		char c = ev_peek(e);
		if (c == '+') {
			e->i++;
			v += ev_term(e);
		} else if (c == '-') {
			e->i++;
			v -= ev_term(e);
		} else {
			break;
		}
	}
	e->depth--;
	return v;
}

/* Value of a plain arithmetic expression in internal form; false if it is not one. */
static bool eval_number(const char *s, size_t n, double *out)
{
	struct ev e = {.s = s, .n = n};
	if (n == 0)
		return false;
	double v = ev_expr(&e);
	if (e.err || ev_peek(&e) != 0 || !isfinite(v))
		return false;
	*out = v;
	return true;
}

static bool num_eq(double x, double y)
{
	double d = fabs(x - y);
	return d <= NUM_ATOL || d <= NUM_RTOL * fmax(fabs(x), fabs(y));
}

/* ---- pass 4: whole-answer rewrites ----------------------------------------------------- */

/* Bracket depth change of the token at s[i]; *len gets the token length. */
static int bracket_delta(const char *s, size_t n, size_t i, size_t *len)
{
	if (s[i] == '\\') {
		size_t e = cmd_end(s, n, i);
		*len = e - i;
		const char *nm = s + i + 1;
		size_t nl = e - i - 1;
		if (span_eq(nm, nl, "{") || span_eq(nm, nl, "begin"))
			return 1;
		if (span_eq(nm, nl, "}") || span_eq(nm, nl, "end"))
			return -1;
		return 0;
	}
	*len = 1;
	if (s[i] == '(' || s[i] == '[' || s[i] == '{')
		return 1;
	if (s[i] == ')' || s[i] == ']' || s[i] == '}')
		return -1;
	return 0;
}

static bool is_greek(const char *nm, size_t nl)
{
	static const char *const greek[] = {
		"alpha", "beta", "gamma", "delta", "epsilon", "varepsilon", "zeta", "eta", "theta",
		"vartheta", "iota", "kappa", "lambda", "mu", "nu", "xi", "rho", "sigma", "tau",
		"upsilon", "phi", "varphi", "chi", "psi", "omega", "Gamma", "Delta", "Theta",
		"Lambda", "Xi", "Sigma", "Phi", "Psi", "Omega"};
	for (size_t k = 0; k < sizeof(greek) / sizeof(greek[0]); k++)
		if (span_eq(nm, nl, greek[k]))
			return true;
	return false;
}

/* One variable: "x", "\theta", "a_{1}", "f(x)". */
static bool is_single_var(const char *s, size_t n)
{
	size_t i = 0;
	if (n == 0)
		return false;
	if (s[0] == '\\') {
		size_t e = cmd_end(s, n, 0);
		if (!is_greek(s + 1, e - 1))
			return false;
		i = e;
	} else if (is_alpha((unsigned char)s[0])) {
		i = 1;
	} else {
		return false;
	}
	if (i < n && s[i] == ' ')
		i++;
	if (i + 1 < n && s[i] == '_') {
		if (s[i + 1] != '{')
			return false;
		size_t k = i + 2;
		while (k < n && is_alnum((unsigned char)s[k]))
			k++;
		if (k >= n || s[k] != '}')
			return false;
		i = k + 1;
	} else if (i < n && s[i] == '(') {
		size_t k = i + 1;
		while (k < n && (is_alpha((unsigned char)s[k]) || s[k] == ','))
			k++;
		if (k == i + 1 || k >= n || s[k] != ')')
			return false;
		i = k + 1;
	}
	return i == n;
}

/* Strips trailing dots and row breaks ("5." -> "5", "5\\" -> "5"), and a lone trailing
 * backslash, which escapes nothing ("\\.\\." used to leave "\\", whose own canonical form
 * is "": not idempotent, found by fuzz_answer). */
static void pass_trim(const char *s, size_t n, struct sb *o, struct work *w)
{
	(void)w;
	for (;;) {
		while (n > 0 && (s[n - 1] == '.' || s[n - 1] == ' '))
			n--;
		size_t bs = 0;
		while (bs < n && s[n - 1 - bs] == '\\')
			bs++;
		if (bs >= 2 && bs % 2 == 0)
			n -= 2;
		else if (bs % 2 == 1)
			n -= 1;
		else
			break;
	}
	sb_text(o, s, n);
}

/* "x=5" -> "5", "x\in[1,2]" -> "[1,2]", "6-1=5" -> "5". */
static void pass_lhs(const char *s, size_t n, struct sb *o, struct work *w)
{
	(void)w;
	size_t eq[8], neq = 0, in_at = 0, in_end = 0;
	bool too_many = false;
	int depth = 0;
	for (size_t i = 0; i < n;) {
		size_t len;
		int d = bracket_delta(s, n, i, &len);
		depth += d;
		if (depth == 0 && s[i] == '=') {
			if (neq < sizeof(eq) / sizeof(eq[0]))
				eq[neq++] = i;
			else
				too_many = true;
		}
		if (depth == 0 && s[i] == '\\' && !in_end && span_eq(s + i, len, "\\in")) {
			in_at = i;
			in_end = i + len;
		}
		i += len;
	}
	if (neq > 0 && !too_many) {
		size_t last = eq[neq - 1] + 1;
		if (last >= n)
			goto copy;
		if (neq == 1 && is_single_var(s, eq[0])) {
			sb_text(o, s + last, n - last);
			return;
		}
		double v;
		size_t start = 0;
		for (size_t k = 0; k <= neq; k++) {
			size_t end = k < neq ? eq[k] : n;
			if (!eval_number(s + start, end - start, &v))
				goto copy;
			start = end + 1;
		}
		sb_text(o, s + last, n - last);
		return;
	}
	if (neq == 0 && in_end && in_end < n && is_single_var(s, in_at)) {
		sb_text(o, s + in_end, n - in_end);
		return;
	}
copy:
	sb_text(o, s, n);
}

/* Multiple choice: "(B)" -> "B"; an all-letter answer is lower-cased ("East" -> "east"). */
static void pass_words(const char *s, size_t n, struct sb *o, struct work *w)
{
	(void)w;
	if (n == 3 && s[0] == '(' && s[2] == ')' && s[1] >= 'A' && s[1] <= 'Z') {
		sb_char(o, s[1]);
		return;
	}
	size_t i;
	for (i = 0; i < n && is_alpha((unsigned char)s[i]); i++)
		;
	if (n >= 2 && i == n) {
		for (i = 0; i < n; i++)
			sb_char(o, (char)(s[i] >= 'A' && s[i] <= 'Z' ? s[i] - 'A' + 'a' : s[i]));
		return;
	}
	sb_text(o, s, n);
}

/* "58,500" -> "58500": the whole answer is a number grouped in threes. */
static void pass_thousands(const char *s, size_t n, struct sb *o, struct work *w)
{
	(void)w;
	size_t i = 0, groups = 0;
	if (i < n && s[i] == '-')
		i++;
	size_t d0 = i;
	while (i < n && is_digit((unsigned char)s[i]))
		i++;
	bool ok = i > d0 && i - d0 <= 3;
	while (ok && i < n && s[i] == ',') {
		size_t g = i + 1;
		while (g < n && is_digit((unsigned char)s[g]))
			g++;
		if (g - i - 1 != 3) {
			ok = false;
			break;
		}
		groups++;
		i = g;
	}
	if (ok && i < n && s[i] == '.') {
		i++;
		while (i < n && is_digit((unsigned char)s[i]))
			i++;
	}
	if (!ok || groups == 0 || i != n) {
		sb_text(o, s, n);
		return;
	}
	for (i = 0; i < n; i++)
		if (s[i] != ',')
			sb_char(o, s[i]);
}

/* Numeric literals: "080" -> "80", "7.0" -> "7", ".5" -> "0.5", "5." -> "5". */
static void pass_numbers(const char *s, size_t n, struct sb *o, struct work *w)
{
	(void)w;
	for (size_t i = 0; i < n;) {
		char c = s[i];
		if (c == ' ') {
			i++;
			continue;
		}
		if (c == '\\') {
			size_t e = cmd_end(s, n, i);
			sb_cmd(o, s + i + 1, e - i - 1);
			i = e;
			continue;
		}
		bool start_ok = i == 0 || (s[i - 1] != '.' && !is_digit((unsigned char)s[i - 1]));
		bool starts = is_digit((unsigned char)c) ||
			      (c == '.' && i + 1 < n && is_digit((unsigned char)s[i + 1]));
		if (!start_ok || !starts) {
			sb_char(o, c);
			i++;
			continue;
		}
		size_t ib = i, ie = i;
		while (ie < n && is_digit((unsigned char)s[ie]))
			ie++;
		size_t fb = ie, fe = ie, end = ie;
		if (ie < n && s[ie] == '.') {
			fb = ie + 1;
			fe = fb;
			while (fe < n && is_digit((unsigned char)s[fe]))
				fe++;
			end = fe;
			if (fe < n && s[fe] == '.') {  /* "1.2.3": leave alone */
				while (end < n && (s[end] == '.' || is_digit((unsigned char)s[end])))
					end++;
				sb_text(o, s + i, end - i);
				i = end;
				continue;
			}
		}
		while (ie - ib > 1 && s[ib] == '0')
			ib++;
		while (fe > fb && s[fe - 1] == '0')
			fe--;
		if (ie == ib)
			sb_char(o, '0');
		for (size_t k = ib; k < ie; k++)
			sb_char(o, s[k]);
		if (fe > fb) {
			sb_char(o, '.');
			for (size_t k = fb; k < fe; k++)
				sb_char(o, s[k]);
		}
		i = end;
	}
}

/* Start of the simple operand that ends the output so far, or SIZE_MAX.  *inner_b and *inner_e
 * delimit the operand's text without enclosing parentheses. */
static size_t left_operand(const char *p, size_t len, size_t *inner_b, size_t *inner_e)
{
	size_t k = len;
	while (k > 0 && p[k - 1] == ' ')
		k--;
	if (k == 0)
		return SIZE_MAX;
	char c = p[k - 1];
	size_t b;
	*inner_e = k;
	if (is_digit((unsigned char)c) || c == '.') {
		b = k;
		while (b > 0 && (is_digit((unsigned char)p[b - 1]) || p[b - 1] == '.'))
			b--;
	} else if (is_alpha((unsigned char)c)) {
		b = k;
		while (b > 0 && is_alpha((unsigned char)p[b - 1]))
			b--;
		if (b > 0 && p[b - 1] == '\\')
			b--;  /* a command such as \pi */
		else
			b = k - 1;  /* one letter */
	} else if (c == ')' || c == '}') {
		char open = c == ')' ? '(' : '{';
		b = k;
		for (;;) {
			int d = 0;
			size_t j = b;
			while (j > 0) {
				j--;
				if (p[j] == c && !(j > 0 && p[j - 1] == '\\'))
					d++;
				else if (p[j] == open && !(j > 0 && p[j - 1] == '\\'))
					d--;
				if (d == 0)
					break;
			}
			if (d != 0)
				return SIZE_MAX;
			b = j;
			if (c == ')') {
				*inner_b = b + 1;
				*inner_e = k - 1;
				goto check;
			}
			if (b > 0 && p[b - 1] == '}')
				continue;  /* \frac{a}{b}: walk over all argument groups */
			if (b > 0 && p[b - 1] == ']') {  /* \sqrt[3]{x} */
				while (b > 0 && p[b - 1] != '[')
					b--;
				if (b == 0)
					return SIZE_MAX;
				b--;
			}
			break;
		}
		size_t a = b;
		while (a > 0 && is_alpha((unsigned char)p[a - 1]))
			a--;
		if (a == b || a == 0 || p[a - 1] != '\\')
			return SIZE_MAX;
		b = a - 1;
	} else {
		return SIZE_MAX;
	}
	*inner_b = b;
check:
	if (b > 0 && (p[b - 1] == '^' || p[b - 1] == '_'))
		return SIZE_MAX;
	return b;
}

/* End of the simple operand starting at s[i], or SIZE_MAX; inner span as for left_operand. */
static size_t right_operand(const char *s, size_t n, size_t i, size_t *inner_b, size_t *inner_e)
{
	size_t e;
	if (i >= n)
		return SIZE_MAX;
	char c = s[i];
	*inner_b = i;
	if (is_digit((unsigned char)c) || c == '.') {
		e = i;
		while (e < n && (is_digit((unsigned char)s[e]) || s[e] == '.'))
			e++;
		*inner_e = e;
	} else if (is_alpha((unsigned char)c)) {
		e = i + 1;
		*inner_e = e;
	} else if (c == '(') {
		int d = 0;
		for (e = i; e < n; e++) {
			if (s[e] == '(')
				d++;
			else if (s[e] == ')' && --d == 0)
				break;
		}
		if (e >= n)
			return SIZE_MAX;
		*inner_b = i + 1;
		*inner_e = e;
		e++;
	} else if (c == '\\') {
		e = cmd_end(s, n, i);
		if (e - i < 2 || !is_alpha((unsigned char)s[i + 1]))
			return SIZE_MAX;
		int groups = cmd_arity(s + i + 1, e - i - 1);
		if (groups < 0 && e < n && s[e] == '{')
			return SIZE_MAX;  /* unknown command with arguments */
		if (groups > 0 && e < n && s[e] == '[') {
			while (e < n && s[e] != ']')
				e++;
			if (e >= n)
				return SIZE_MAX;
			e++;
		}
		for (int g = 0; g < groups; g++) {
			if (e >= n || s[e] != '{')
				return SIZE_MAX;
			int d = 0;
			for (; e < n; e++) {
				if (s[e] == '\\' && e + 1 < n) {
					e++;
					continue;
				}
				if (s[e] == '{')
					d++;
				else if (s[e] == '}' && --d == 0)
					break;
			}
			if (e >= n)
				return SIZE_MAX;
			e++;
		}
		*inner_e = e;
	} else {
		return SIZE_MAX;
	}
	if (e < n && (s[e] == '^' || s[e] == '_' || s[e] == '!'))
		return SIZE_MAX;
	return e;
}

/* "a/b" with simple operands -> "\frac{a}{b}" ("-1/3" -> "-\frac{1}{3}", "(a+b)/2"). */
static void pass_slash(const char *s, size_t n, struct sb *o, struct work *w)
{
	int done = 0;
	for (size_t i = 0; i < n;) {
		char c = s[i];
		if (c == ' ') {
			i++;
			continue;
		}
		if (c == '\\') {
			size_t e = cmd_end(s, n, i);
			sb_cmd(o, s + i + 1, e - i - 1);
			i = e;
			continue;
		}
		if (c == '/' && done < MAX_SLASHES && !o->over) {
			size_t lb = 0, le = 0, rb = 0, re = 0;
			size_t l = left_operand(o->p, o->len, &lb, &le);
			size_t r = right_operand(s, n, i + 1, &rb, &re);
			if (l != SIZE_MAX && r != SIZE_MAX && le > lb && re > rb) {
				size_t ll = le - lb;
				memcpy(w->tmp, o->p + lb, ll);
				o->len = l;
				o->after_lcmd = false;
				sb_cmd(o, "frac", 4);
				sb_char(o, '{');
				sb_text(o, w->tmp, ll);
				sb_char(o, '}');
				sb_char(o, '{');
				sb_text(o, s + rb, re - rb);
				sb_char(o, '}');
				i = r;
				done++;
				continue;
			}
		}
		sb_char(o, c);
		i++;
	}
}

typedef void (*pass_fn)(const char *s, size_t n, struct sb *o, struct work *w);

/* The canonicalization pipeline, in order. */
static const pass_fn canon_passes[] = {
	pass_lex, pass_commands, pass_args, pass_trim, pass_lhs, pass_trim,
	pass_words, pass_thousands, pass_numbers, pass_slash,
};

/* Runs the pipeline until the text stops changing (a rewrite can expose another: removing
 * "{}" can make "^{{\circ}}" a degree sign), at most MAX_ROUNDS times.  The result (internal
 * form, NUL-terminated, inside w) is returned in *res. */
static int canon_internal(const char *in, size_t len, struct work *w, const char **res,
			  size_t *rlen)
{
	const char *src = in;
	size_t n = len;
	int cur = 0;
	if (len > ANSWER_MAX_LEN)
		return -E2BIG;
	for (int round = 0; round < MAX_ROUNDS; round++) {
		/* keep this round's input in prev to detect the fixpoint */
		if (round > 0)
			memcpy(w->prev, src, n);
		size_t before = n;
		for (size_t k = 0; k < sizeof(canon_passes) / sizeof(canon_passes[0]); k++) {
			struct sb o;
			sb_init(&o, w->buf[cur], WORK_CAP);
			canon_passes[k](src, n, &o, w);
			if (o.over)
				return -E2BIG;
			o.p[o.len] = '\0';
			src = o.p;
			n = o.len;
			cur ^= 1;
		}
		if (round > 0 && n == before && memcmp(w->prev, src, n) == 0)
			break;
	}
	*res = src;
	*rlen = n;
	return 0;
}

/* Copies the internal form out; returns its length or -ENOSPC. */
static int externalize(const char *s, size_t n, char *out, size_t outlen)
{
	if (n + 1 > outlen)
		return -ENOSPC;
	memcpy(out, s, n);
	out[n] = '\0';
	return (int)n;
}

/* The work areas of one thread: answer_canonical and answer_hash use w, answer_equivalent
 * all of it (none of them calls another).  Made on the thread's first call and kept until it
 * exits: a malloc of this size (~100 kB) per call was a large-bin request, which made glibc
 * consolidate its fast bins every time (certad calls these on every decision). */
struct eqwork {
	struct work w;
	char a[WORK_CAP], b[WORK_CAP];
};

static pthread_key_t answer_key;
static pthread_once_t answer_key_once = PTHREAD_ONCE_INIT;
static int answer_key_ok;

static void answer_key_make(void)
{
	answer_key_ok = pthread_key_create(&answer_key, free) == 0;
}

/* This thread's work areas; NULL without memory. */
static struct eqwork *answer_eqwork(void)
{
	struct eqwork *ew;

	if (pthread_once(&answer_key_once, answer_key_make) != 0 || !answer_key_ok)
		return NULL;
	ew = pthread_getspecific(answer_key);
	if (ew)
		return ew;
	ew = malloc(sizeof(*ew));
	if (!ew)
		return NULL;
	if (pthread_setspecific(answer_key, ew) != 0) {
		free(ew);
		return NULL;
	}
	return ew;
}

/* A plain integer of at most 8 digits without a leading zero ("0", "12", "20250"): its own
 * canonical form, and two different ones are never equivalent (they differ by more than the
 * numeric tolerance, 1 part in 10^9).  Most probe answers of math problems are such numbers
 * (73% of those in the recorded traces); these paths skip the canonicalization passes
 * (~6,000 instructions an answer).  tests/unit/test_answer.c checks them against the passes,
 * which the same number after a space goes through. */
static bool plain_int(const char *s, size_t n)
{
	if (s == NULL || n == 0 || n > 8 || (s[0] == '0' && n > 1))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_digit((unsigned char)s[i]))
			return false;
	return true;
}

int answer_canonical(const char *in, size_t len, char *out, size_t outlen)
{
	if ((!in && len > 0) || !out)
		return -EINVAL;
	if (len > ANSWER_MAX_LEN)
		return -E2BIG;
	if (plain_int(in, len)) {
		if (len + 1 > outlen)
			return -ENOSPC;
		memcpy(out, in, len);
		out[len] = '\0';
		return (int)len;
	}
	struct eqwork *ew = answer_eqwork();
	if (!ew)
		return -ENOMEM;
	const char *res;
	size_t rlen;
	int rc = canon_internal(in ? in : "", len, &ew->w, &res, &rlen);
	if (rc == 0)
		rc = externalize(res, rlen, out, outlen);
	return rc;
}

/* ---- equivalence ----------------------------------------------------------------------- */

/* If s is one bracketed group ("(…]", "\{…\}", "\begin{pmatrix}…\end{pmatrix}"), sets the
 * opener length and closer start. */
static bool enclosure(const char *s, size_t n, size_t *open_len, size_t *close_at)
{
	size_t len;
	if (n < 2 || bracket_delta(s, n, 0, &len) != 1 || s[0] == '{')
		return false;
	size_t ol = len;
	if (s[0] == '\\' && span_eq(s, len, "\\begin")) {
		if (ol >= n || s[ol] != '{')
			return false;
		while (ol < n && s[ol] != '}')
			ol++;
		if (ol >= n)
			return false;
		ol++;
	}
	int depth = 0;
	size_t last = 0;
	for (size_t i = 0; i < n; i += len) {
		depth += bracket_delta(s, n, i, &len);
		last = i;
		if (depth <= 0 && i + len < n) {
			/* closed before the end: "\end{name}" is three tokens at depth <= 0 */
			if (s[i] == '\\' && span_eq(s + i, len, "\\end") && s[i + len] == '{') {
				size_t k = i + len;
				while (k < n && s[k] != '}')
					k++;
				if (k + 1 == n) {
					*open_len = ol;
					*close_at = i;
					return ol <= i;
				}
			}
			return false;
		}
	}
	if (depth != 0)
		return false;
	*open_len = ol;
	*close_at = last;
	return ol <= last;
}

struct parts {
	size_t b[64], e[64];
	char sep[64][8];
	size_t n;
};

/* Splits at top-level separators (, ; & \\ \cup); false if there are too many parts. */
static bool split_top(const char *s, size_t n, struct parts *p)
{
	int depth = 0;
	size_t start = 0, len;
	p->n = 0;
	for (size_t i = 0; i < n; i += len) {
		depth += bracket_delta(s, n, i, &len);
		bool sep = false;
		if (depth == 0) {
			if (s[i] == ',' || s[i] == ';' || s[i] == '&')
				sep = true;
			else if (s[i] == '\\' && (span_eq(s + i, len, "\\\\") ||
						  span_eq(s + i, len, "\\cup")))
				sep = true;
		}
		if (!sep)
			continue;
		if (p->n + 1 >= 64)
			return false;
		p->b[p->n] = start;
		p->e[p->n] = i;
		memset(p->sep[p->n], 0, sizeof(p->sep[p->n]));
		memcpy(p->sep[p->n], s + i, len < 7 ? len : 7);
		p->n++;
		start = i + len;
	}
	p->b[p->n] = start;
	p->e[p->n] = n;
	p->sep[p->n][0] = 0;
	p->n++;
	return true;
}

static bool eq_span(const char *a, size_t an, const char *b, size_t bn, int depth);

static bool eq_seq(const char *a, size_t an, const char *b, size_t bn, int depth)
{
	struct parts pa, pb;
	if (!split_top(a, an, &pa) || !split_top(b, bn, &pb) || pa.n != pb.n)
		return false;
	for (size_t k = 0; k < pa.n; k++)
		if (strcmp(pa.sep[k], pb.sep[k]) != 0)
			return false;
	for (size_t k = 0; k < pa.n; k++)
		if (!eq_span(a + pa.b[k], pa.e[k] - pa.b[k], b + pb.b[k], pb.e[k] - pb.b[k],
			     depth + 1))
			return false;
	return true;
}

/* Equivalence of two spans in internal form. */
static bool eq_span(const char *a, size_t an, const char *b, size_t bn, int depth)
{
	double x, y;
	if (an == bn && memcmp(a, b, an) == 0)
		return true;
	if (eval_number(a, an, &x) && eval_number(b, bn, &y))
		return num_eq(x, y);
	if (depth >= MAX_CMP_DEPTH)
		return false;
	size_t ao, ac, bo, bc;
	bool ea = enclosure(a, an, &ao, &ac), eb = enclosure(b, bn, &bo, &bc);
	if (ea || eb) {
		if (!ea || !eb || an - ac != bn - bc || ao != bo || memcmp(a, b, ao) != 0 ||
		    memcmp(a + ac, b + bc, an - ac) != 0)
			return false;
		return eq_seq(a + ao, ac - ao, b + bo, bc - bo, depth + 1);
	}
	struct parts pa;
	if (!split_top(a, an, &pa) || pa.n < 2)
		return false;
	return eq_seq(a, an, b, bn, depth + 1);
}

/* Internal forms compare with spaces; strip them so "\cot x" equals "\cotx". */
static size_t squeeze(char *s, size_t n)
{
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ')
			s[k++] = s[i];
	s[k] = '\0';
	return k;
}

/* The form answer_equivalent compares: the canonical internal form of s[0..n) without
 * separators, into dst (WORK_CAP bytes; not ew->w's buffers), its length in *len.  The
 * evaluator and splitter read two forms alike as long as both are squeezed. */
static int form_into(const char *s, size_t n, struct eqwork *ew, char *dst, size_t *len)
{
	const char *r;
	int rc = canon_internal(s, n, &ew->w, &r, len);
	if (rc != 0)
		return rc;
	memcpy(dst, r, *len + 1);
	*len = squeeze(dst, *len);
	return 0;
}

int answer_form(const char *a, size_t len, char *out, size_t outlen)
{
	if ((!a && len > 0) || !out)
		return -EINVAL;
	if (len > ANSWER_MAX_LEN)
		return -E2BIG;
	struct eqwork *ew = answer_eqwork();
	if (!ew)
		return -ENOMEM;
	size_t n;
	int rc = form_into(a ? a : "", len, ew, ew->a, &n);
	if (rc != 0)
		return rc;
	if (n + 1 > outlen)
		return -ENOSPC;
	memcpy(out, ew->a, n + 1);
	return (int)n;
}

bool answer_forms_equivalent(const char *fa, size_t fal, const char *fb, size_t fbl)
{
	return eq_span(fa, fal, fb, fbl, 0);
}

bool answer_equivalent(const char *a, const char *b)
{
	if (!a)
		a = "";
	if (!b)
		b = "";
	size_t al = strlen(a), bl = strlen(b);
	if (al == bl && memcmp(a, b, al) == 0)
		return true;
	if (al > ANSWER_MAX_LEN || bl > ANSWER_MAX_LEN)
		return false;
	if (plain_int(a, al) && plain_int(b, bl))
		return false;   /* two different plain integers */
	struct eqwork *ew = answer_eqwork();
	size_t an, bn;
	if (!ew || form_into(a, al, ew, ew->a, &an) != 0 || form_into(b, bl, ew, ew->b, &bn) != 0)
		return false;
	return eq_span(ew->a, an, ew->b, bn, 0);
}

/* ---- placeholders and hashing ---------------------------------------------------------- */

/* Does the plain number num (normalized, unsigned) occur as a whole number token in text? */
static bool number_in_text(const char *num, size_t nl, bool neg, const char *text)
{
	size_t n = strlen(text);
	for (size_t i = 0; i < n;) {
		bool starts = is_digit((unsigned char)text[i]) ||
			      (text[i] == '.' && i + 1 < n && is_digit((unsigned char)text[i + 1]));
		if (!starts || (i > 0 && (is_digit((unsigned char)text[i - 1]) ||
					  text[i - 1] == '.'))) {
			i++;
			continue;
		}
		size_t e = i;
		while (e < n && (is_digit((unsigned char)text[e]) || text[e] == '.'))
			e++;
		size_t te = e;
		while (te > i && text[te - 1] == '.')
			te--;  /* sentence-ending dot */
		char norm[64];
		struct sb o;
		sb_init(&o, norm, sizeof(norm));
		pass_numbers(text + i, te - i, &o, NULL);
		bool sign_ok = !neg || (i > 0 && text[i - 1] == '-');
		if (!o.over && sign_ok && o.len == nl && memcmp(norm, num, nl) == 0)
			return true;
		i = e;
	}
	return false;
}

bool answer_is_placeholder(const char *ans, const char *problem)
{
	char c[2 * ANSWER_MAX_LEN];
	if (!ans)
		return true;
	size_t al = strlen(ans);
	if (al > ANSWER_MAX_LEN)
		return false;
	if (plain_int(ans, al))   /* content, not a letter or a command: only the last rule */
		return problem != NULL && number_in_text(ans, al, false, problem);
	int n = answer_canonical(ans, al, c, sizeof(c));
	if (n < 0)
		return false;
	if (n == 0)
		return true;

	bool content = false;
	for (int i = 0; i < n;) {
		if (c[i] == '\\') {
			size_t e = cmd_end(c, (size_t)n, (size_t)i);
			const char *nm = c + i + 1;
			size_t nl = e - (size_t)i - 1;
			if (span_eq(nm, nl, "infty") || span_eq(nm, nl, "emptyset") ||
			    span_eq(nm, nl, "pi") || is_greek(nm, nl))
				content = true;
			i = (int)e;
			continue;
		}
		if (is_alnum((unsigned char)c[i]))
			content = true;
		i++;
	}
	if (!content)
		return true;

	if (n == 1 && is_alpha((unsigned char)c[0])) {
		if (c[0] >= 'A' && c[0] <= 'E' && problem) {
			char choice[4] = {'(', c[0], ')', '\0'};
			if (strstr(problem, choice))
				return false;
		}
		return true;
	}
	if (c[0] == '\\') {
		size_t e = cmd_end(c, (size_t)n, 0);
		if (e == (size_t)n && is_greek(c + 1, e - 1))
			return true;
	}

	if (!problem)
		return false;
	bool neg = c[0] == '-';
	const char *num = c + (neg ? 1 : 0);
	size_t nl = (size_t)n - (neg ? 1 : 0);
	bool dot = false;
	if (nl == 0)
		return false;
	for (size_t i = 0; i < nl; i++) {
		if (num[i] == '.' && !dot)
			dot = true;
		else if (!is_digit((unsigned char)num[i]))
			return false;
	}
	return number_in_text(num, nl, neg, problem);
}

uint64_t answer_hash(const char *ans)
{
	const uint64_t basis = HASH_FNV1A_BASIS;
	if (!ans)
		ans = "";
	size_t al = strlen(ans);
	struct eqwork *ew = al <= ANSWER_MAX_LEN ? answer_eqwork() : NULL;
	struct work *w = ew != NULL ? &ew->w : NULL;
	const char *r;
	size_t rl;
	if (!w || canon_internal(ans, al, w, &r, &rl) != 0) {
		return hash_fnv1a(ans, al, hash_fnv1a("raw:", 4, basis));
	}
	char *s = (char *)r;  /* points into w's buffers */
	rl = squeeze(s, rl);
	double v;
	uint64_t h;
	if (eval_number(s, rl, &v)) {
		char num[40];
		int k = snprintf(num, sizeof(num), "%.12g", v + 0.0);
		h = hash_fnv1a(num, (size_t)k, hash_fnv1a("num:", 4, basis));
	} else {
		h = hash_fnv1a(s, rl, hash_fnv1a("tex:", 4, basis));
	}
	return h;
}
