/* interrupt.c — SIGINT handling while following a stream; see interrupt.h. */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cmd.h"
#include "cli/interrupt.h"

#define INTERRUPT_HINT_MAX 2048

/* Two hint buffers: the handler reads the one `interrupt_cur` names, set_hint fills the other
 * and then flips the index, so the handler never sees a half-written hint. */
static char interrupt_hints[2][INTERRUPT_HINT_MAX];
static volatile sig_atomic_t interrupt_cur;
static volatile sig_atomic_t interrupt_polling;
static volatile sig_atomic_t interrupt_flag;
static struct sigaction interrupt_old;
static int interrupt_armed;

/* Only async-signal-safe calls here. */
static void
interrupt_handler(int sig)
{
	const char *h;
	size_t len;
	ssize_t n;

	(void)sig;
	if (interrupt_polling && !interrupt_flag) {
		interrupt_flag = 1;
		return;
	}
	h = interrupt_hints[interrupt_cur];
	len = strlen(h);
	while (len > 0) {
		n = write(STDERR_FILENO, h, len);
		if (n <= 0)
			break;
		h += n;
		len -= (size_t)n;
	}
	_exit(CLI_EXIT_INTERRUPTED);
}

void
interrupt_set_hint(const char *hint)
{
	int next = !interrupt_cur;

	snprintf(interrupt_hints[next], INTERRUPT_HINT_MAX, "%s", hint != NULL ? hint : "");
	interrupt_cur = next;
}

const char *
interrupt_hint(void)
{
	return interrupt_hints[interrupt_cur];
}

void
interrupt_arm(const char *hint)
{
	struct sigaction sa;

	interrupt_set_hint(hint);
	interrupt_polling = 0;
	interrupt_flag = 0;
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = interrupt_handler;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	if (sigaction(SIGINT, &sa, &interrupt_old) == 0)
		interrupt_armed = 1;
}

void
interrupt_poll(void)
{
	interrupt_polling = 1;
}

int
interrupt_pending(void)
{
	return interrupt_flag != 0;
}

void
interrupt_disarm(void)
{
	if (interrupt_armed)
		(void)sigaction(SIGINT, &interrupt_old, NULL);
	interrupt_armed = 0;
	interrupt_polling = 0;
}
