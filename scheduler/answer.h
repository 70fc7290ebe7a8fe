/*
 * answer.h — equivalence of LaTeX math answers (probe answers, final answers, reference answers).
 *
 * Reasoning models answer in LaTeX fragments: "\left( 3, \dfrac{\pi}{2} \right)", "080", "7.0",
 * "x = 5", "15\text{ cm}", "\text{(B)}".  To count votes and to see whether a chain's probed
 * answers have settled, certa compares answers after canonicalization, then, where both sides
 * are plain arithmetic (numbers, \frac, \sqrt, \pi, ^, !, + - * /), by numeric value, and
 * element-wise for tuples, intervals, unions, lists and matrices.
 *
 * Canonical form (answer_canonical): whitespace, $ and \( \) delimiters, \left/\right/\big*,
 * spacing commands (\, \; \: \! \quad, "\ "), \$, %, \%, degrees (^\circ, ^{\circ}, °, \degree),
 * \boxed/\fbox wrappers, bare {...} groups and unbalanced braces are removed; \dfrac/\tfrac/
 * \cfrac become \frac, \le/\ge/\ne become \leq/\geq/\neq; \text/\mbox/\mathrm/\textbf/... are
 * unwrapped, or dropped entirely when they are a trailing unit after a value ("15\text{ cm}^2"
 * -> "15"); single-token arguments get braces ("\frac12" -> "\frac{1}{2}", "\sqrt2" ->
 * "\sqrt{2}", "x^2" -> "x^{2}"); "a/b" with simple operands becomes "\frac{a}{b}"; numbers lose
 * leading zeros and trailing fractional zeros ("080" -> "80", "7.0" -> "7", ".5" -> "0.5");
 * "1,000" (groups of exactly three digits, whole answer) -> "1000"; "x = 5" and "x \in [1,2]"
 * keep the right side when the left side is one variable; "2+3=5" (arithmetic chain) keeps the
 * last value; "(B)" -> "B"; an answer made of letters only is lower-cased ("East" -> "east");
 * trailing dots go.  The result has no whitespace except one space between a letter command
 * and a letter that follows it ("\cot x"; "\cotx" from whitespace-stripping extractors compares
 * equal to it).  Canonicalization is idempotent up to equivalence.  Common Unicode (π √ − × · ∞ ≤ ≥ ≠ ² ³ …)
 * is mapped to its LaTeX command.
 *
 * Limits: inputs longer than ANSWER_MAX_LEN bytes are not canonicalized (-E2BIG); such answers
 * are equivalent only when byte-identical.  Every function accepts any byte string, runs in time
 * bounded by a polynomial of the (capped) length, never recurses deeper than a fixed bound and
 * uses only heap memory bounded by a constant (under 128 KiB per call, freed before return).
 *
 * Thread safety: no global mutable state; every function may be called from any thread.
 * Determinism: same input, same output, on every platform with IEEE-754 doubles.
 */
#ifndef CERTA_SCHEDULER_ANSWER_H
#define CERTA_SCHEDULER_ANSWER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Longest answer, in bytes, that is canonicalized. */
#define ANSWER_MAX_LEN 4096

/*
 * Writes the canonical form of in[0..len) (any bytes; NUL bytes are ignored) to out as a
 * NUL-terminated string.  Returns its length (excluding the NUL) or:
 *   -EINVAL  in is NULL with len > 0, or out is NULL;
 *   -E2BIG   len > ANSWER_MAX_LEN, or the canonical form would exceed the internal work size;
 *   -ENOSPC  the canonical form plus NUL does not fit in outlen bytes;
 *   -ENOMEM  the work area could not be allocated.
 * out is written only on success.  The caller owns out.
 */
int answer_canonical(const char *in, size_t len, char *out, size_t outlen);

/*
 * True if a and b (NUL-terminated; NULL counts as "") denote the same answer: equal canonical
 * forms, or equal numeric values (relative tolerance 1e-9), or the same bracket structure
 * ("(", "[", "\{", \begin{pmatrix}, separators "," ";" "&" "\\" "\cup") with pairwise
 * equivalent elements.  Symmetric and reflexive.  Answers over ANSWER_MAX_LEN bytes, or whose
 * work area cannot be allocated, are equivalent only when byte-identical.
 */
bool answer_equivalent(const char *a, const char *b);

/*
 * The form answer_equivalent compares (canonical, internal, without separators) of a[0..len)
 * into out, NUL-terminated, for a caller that compares the same answer many times
 * (answer_forms_equivalent).  Returns its length or -EINVAL, -E2BIG, -ENOSPC, -ENOMEM as
 * answer_canonical; when it fails, answer_equivalent of the answer is byte equality.
 */
int answer_form(const char *a, size_t len, char *out, size_t outlen);

/* answer_equivalent(a, b) from answer_form(a) and answer_form(b) (fa[0..fal), fb[0..fbl)). */
bool answer_forms_equivalent(const char *fa, size_t fal, const char *fb, size_t fbl);

/*
 * True if ans carries no information about the answer and should not count as a vote for it
 * (typical of early probes).  The rule, applied to the canonical form:
 *   - empty, or no letter or digit at all ("?", "\\", "}", "(,)"), unless it is \infty or
 *     \emptyset;
 *   - a lone variable: one ASCII letter, or one Greek-letter command other than \pi; a lone
 *     capital letter A-E is still an answer when problem lists that choice as "(A)"; or
 *   - a plain number (optionally signed, integer or decimal) that occurs in problem as a whole
 *     number token, compared after the same number normalization ("080" matches "80").
 * problem may be NULL (then only the first two rules apply).  Answers over ANSWER_MAX_LEN bytes
 * are not placeholders.
 */
bool answer_is_placeholder(const char *ans, const char *problem);

/*
 * 64-bit hash for vote counting: answers with equal canonical forms hash equally, and so do
 * answers that evaluate to the same number up to 12 significant digits ("0.5", "\frac12",
 * "1/2").  Equivalent answers may still, rarely, hash apart (tuples of numerically equal
 * elements written differently, rounding boundaries); confirm merges with answer_equivalent.
 * Answers over ANSWER_MAX_LEN bytes hash their raw bytes.
 */
uint64_t answer_hash(const char *ans);

#endif
