/*
 * sdnotify.h — the systemd notification protocol from the event loop: READY=1, STATUS=,
 * WATCHDOG=1 keep-alives, RELOADING=1, STOPPING=1.
 *
 * The protocol is libsystemd's sd_notify(3) (address kinds, credentials, framing); this module
 * adds the timers on the event loop.  The environment is read once, by sdnotify_new:
 *	NOTIFY_SOCKET   set: notifications on (sent by sd_notify); unset: every send is a no-op
 *	WATCHDOG_USEC   watchdog period set by WatchdogSec= (microseconds)
 *	WATCHDOG_PID    when set, the watchdog applies only to the process with this pid
 * (read by sd_watchdog_enabled(3)).  When the watchdog is enabled a libevent timer
 * sends WATCHDOG=1 every WATCHDOG_USEC/2: if the loop stalls, the pings stop and systemd
 * restarts the service, which is the point of pinging from the loop rather than a thread.
 *
 * Usage in a daemon (loop thread):
 *	sdnotify_new(base, &sn);                      // starts the watchdog timer if enabled
 *	sdnotify_set_status(sn, status_fn, ctx, 5000); // STATUS= every 5 s when the text changed
 *	... open the store, bind listeners, probe workers ...
 *	sdnotify_ready(sn, "serving on port 7700");    // READY=1 + STATUS=
 *	SIGHUP:  sdnotify_reloading(sn); reload; sdnotify_ready(sn, NULL);
 *	SIGTERM: sdnotify_stopping(sn);                // the watchdog keeps running while draining
 *	... after the loop: sdnotify_free(sn);
 *
 * Threads: loop thread only.  Errors: sends return 0 (also when NOTIFY_SOCKET is unset or the
 * socket would block: notifications are best effort) or -errno from sd_notify (logged once),
 * e.g. -EINVAL for a NOTIFY_SOCKET that is not an address, -ENOENT when nobody listens there.
 */
#ifndef CERTA_LIB_SDNOTIFY_H
#define CERTA_LIB_SDNOTIFY_H

#include <stddef.h>
#include <stdint.h>

struct event_base;
struct sdnotify;

/* Fills buf (len bytes, NUL-terminated) with a one-line status such as
 * "programs running=3 queued=1 workers=2/2". */
typedef void (*sdnotify_status_fn)(char *buf, size_t len, void *arg);

/* Reads the environment and arms the watchdog timer (when enabled); a malformed NOTIFY_SOCKET
 * is reported by the first send.  *out is written only on success.  Returns 0 or -ENOMEM. */
int sdnotify_new(struct event_base *base, struct sdnotify **out);

/* Stops the timers.  NULL is a no-op. */
void sdnotify_free(struct sdnotify *n);

/* Non-zero when NOTIFY_SOCKET was set (started by systemd as Type=notify). */
int sdnotify_enabled(const struct sdnotify *n);

/* The watchdog period in microseconds, 0 when the watchdog is off. */
uint64_t sdnotify_watchdog_usec(const struct sdnotify *n);

/* Sends fn's text as "STATUS=..." now and then every interval_ms when it changed
 * (interval_ms <= 0: only now).  fn NULL stops the timer.  Returns 0, -ENOMEM, or a send
 * error. */
int sdnotify_set_status(struct sdnotify *n, sdnotify_status_fn fn, void *arg, int interval_ms);

/* Sends one raw message (lines "KEY=VALUE" separated by '\n'). */
int sdnotify_send(struct sdnotify *n, const char *msg);

/* "READY=1", plus "STATUS=status" when status is not NULL. */
int sdnotify_ready(struct sdnotify *n, const char *status);

/* "RELOADING=1" with "MONOTONIC_USEC=" (as Type=notify-reload expects); follow with
 * sdnotify_ready once the reload is done, whatever its outcome. */
int sdnotify_reloading(struct sdnotify *n);

/* "STOPPING=1".  The watchdog keeps pinging (draining may take a while); the periodic STATUS
 * keeps going too, so a status callback can report drain progress. */
int sdnotify_stopping(struct sdnotify *n);

/* WATCHDOG=1 messages actually sent so far (tests, debugging). */
uint64_t sdnotify_watchdog_pings(const struct sdnotify *n);

#endif
