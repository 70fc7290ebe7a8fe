/*
 * log.h — subsystem-tagged, level-checked logging.
 *
 * log_info(LOG_STORE, "opened %s", path) prints "[store] opened path" to stderr.  Under systemd
 * (JOURNAL_STREAM set, or log_init(.., LOG_FORMAT_JOURNAL)) every line starts with the syslog
 * priority prefix "<N>" so journald keeps the level.  Levels are checked before formatting.
 * One line per event; use key=value fields for anything a machine may want to grep.
 *
 * Thread safety: log_* may be called from any thread (one fprintf per line, stderr unbuffered
 * per line).  log_init/log_set_level are meant for the main thread at start or reload.
 */
#ifndef CERTA_LIB_LOG_H
#define CERTA_LIB_LOG_H

#include <stdarg.h>

/* Syslog-compatible levels (value == syslog priority). */
enum log_level {
	LOG_LVL_ERR = 3,
	LOG_LVL_WARN = 4,
	LOG_LVL_NOTICE = 5,
	LOG_LVL_INFO = 6,
	LOG_LVL_DEBUG = 7,
};

/* Subsystems; names in log.c's table. */
enum log_subsys {
	LOG_MAIN = 0,
	LOG_RPC,
	LOG_STORE,
	LOG_SCHED,
	LOG_WORKER,
	LOG_ENGINE,
	LOG_CONFIG,
	LOG_CLI,
	LOG_EVENT,
	LOG_DISPATCH,
	LOG_ADMIN,
	LOG_METRICS,
	LOG_SUBSYS_COUNT
};

enum log_format {
	LOG_FORMAT_AUTO = 0,  /* journal prefixes when JOURNAL_STREAM is set */
	LOG_FORMAT_PLAIN,     /* "certad: [store] msg" */
	LOG_FORMAT_JOURNAL,   /* "<6>[store] msg" */
};

/* Sets the program name shown in plain format, the format and the level; also takes over
 * libevent's log callback. */
void log_init(const char *progname, enum log_format format, enum log_level level);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Parses "err", "warn", "notice", "info", "debug"; returns 0 or -EINVAL. */
int log_level_parse(const char *s, enum log_level *out);
const char *log_subsys_name(enum log_subsys s);

void log_msg(enum log_level lvl, enum log_subsys sub, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
void log_vmsg(enum log_level lvl, enum log_subsys sub, const char *fmt, va_list ap);

extern enum log_level log_level_current;

#define log_at(lvl, sub, ...) \
	do { if ((lvl) <= log_level_current) log_msg((lvl), (sub), __VA_ARGS__); } while (0)
#define log_err(sub, ...)    log_at(LOG_LVL_ERR, sub, __VA_ARGS__)
#define log_warn(sub, ...)   log_at(LOG_LVL_WARN, sub, __VA_ARGS__)
#define log_notice(sub, ...) log_at(LOG_LVL_NOTICE, sub, __VA_ARGS__)
#define log_info(sub, ...)   log_at(LOG_LVL_INFO, sub, __VA_ARGS__)
#define log_debug(sub, ...)  log_at(LOG_LVL_DEBUG, sub, __VA_ARGS__)

#endif
