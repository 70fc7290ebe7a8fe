/* log.c — subsystem-tagged logging with journald priority prefixes. */
#include "lib/log.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <event2/event.h>

enum log_level log_level_current = LOG_LVL_INFO;

static const char *log_progname = "certa";
static int log_journal;

static const char *const log_subsys_names[LOG_SUBSYS_COUNT] = {
	[LOG_MAIN] = "main",
	[LOG_RPC] = "rpc",
	[LOG_STORE] = "store",
	[LOG_SCHED] = "sched",
	[LOG_WORKER] = "worker",
	[LOG_ENGINE] = "engine",
	[LOG_CONFIG] = "config",
	[LOG_CLI] = "cli",
	[LOG_EVENT] = "event",
	[LOG_DISPATCH] = "dispatch",
	[LOG_ADMIN] = "admin",
	[LOG_METRICS] = "metrics",
};

static const struct {
	const char *name;
	enum log_level level;
} log_level_table[] = {
	{ "err", LOG_LVL_ERR },
	{ "error", LOG_LVL_ERR },
	{ "warn", LOG_LVL_WARN },
	{ "warning", LOG_LVL_WARN },
	{ "notice", LOG_LVL_NOTICE },
	{ "info", LOG_LVL_INFO },
	{ "debug", LOG_LVL_DEBUG },
};

/* libevent's internal messages go through our subsystem "event". */
static void
log_event_cb(int severity, const char *msg)
{
	enum log_level lvl = LOG_LVL_DEBUG;

	if (severity == EVENT_LOG_ERR)
		lvl = LOG_LVL_ERR;
	else if (severity == EVENT_LOG_WARN)
		lvl = LOG_LVL_WARN;
	else if (severity == EVENT_LOG_MSG)
		lvl = LOG_LVL_INFO;
	log_at(lvl, LOG_EVENT, "%s", msg);
}

void
log_init(const char *progname, enum log_format format, enum log_level level)
{
	if (progname != NULL)
		log_progname = progname;
	if (format == LOG_FORMAT_AUTO)
		log_journal = getenv("JOURNAL_STREAM") != NULL;
	else
		log_journal = format == LOG_FORMAT_JOURNAL;
	log_level_current = level;
	event_set_log_callback(log_event_cb);
}

void
log_set_level(enum log_level level)
{
	log_level_current = level;
}

enum log_level
log_get_level(void)
{
	return log_level_current;
}

int
log_level_parse(const char *s, enum log_level *out)
{
	size_t i;

	for (i = 0; i < sizeof log_level_table / sizeof log_level_table[0]; i++) {
		if (strcmp(s, log_level_table[i].name) == 0) {
			*out = log_level_table[i].level;
			return 0;
		}
	}
	return -EINVAL;
}

const char *
log_subsys_name(enum log_subsys s)
{
	if ((unsigned)s >= LOG_SUBSYS_COUNT)
		return "?";
	return log_subsys_names[s];
}

void
log_vmsg(enum log_level lvl, enum log_subsys sub, const char *fmt, va_list ap)
{
	char line[2048];
	int n;

	n = vsnprintf(line, sizeof line, fmt, ap);
	if (n < 0)
		return;
	/* One write per line so concurrent threads do not interleave. */
	if (log_journal)
		fprintf(stderr, "<%d>[%s] %s\n", (int)lvl, log_subsys_name(sub), line);
	else
		fprintf(stderr, "%s: [%s] %s\n", log_progname, log_subsys_name(sub), line);
}

void
log_msg(enum log_level lvl, enum log_subsys sub, const char *fmt, ...)
{
	va_list ap;

	if (lvl > log_level_current)
		return;
	va_start(ap, fmt);
	log_vmsg(lvl, sub, fmt, ap);
	va_end(ap);
}
