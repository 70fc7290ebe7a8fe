/*
 * interrupt.h — Ctrl-C while certactl follows a program stream.
 *
 * Two phases.  While a call is being set up (interrupt_arm), certactl may sit inside gRPC where
 * a flag would go unnoticed, so SIGINT prints the prepared hint and exits with status 130 right
 * in the handler (write + _exit, both async-signal-safe).  Once the stream is polled
 * (interrupt_poll), SIGINT only sets a flag that the poll loop checks every ~200 ms to cancel the
 * stream cleanly; a second Ctrl-C before that exits at once like the first phase.
 * The program on the server is never cancelled by any of this.  Main thread only.
 */
#ifndef CERTA_CLI_INTERRUPT_H
#define CERTA_CLI_INTERRUPT_H

/* Installs the SIGINT handler in the exit-at-once phase with hint (copied; may be NULL). */
void interrupt_arm(const char *hint);
/* Replaces the hint (copied), e.g. once the program id is known. */
void interrupt_set_hint(const char *hint);
/* The hint currently prepared ("" when none); valid until the next interrupt_set_hint(). */
const char *interrupt_hint(void);
/* Switches to the flag phase. */
void interrupt_poll(void);
/* True when Ctrl-C was pressed in the flag phase. */
int interrupt_pending(void);
/* Restores the previous SIGINT disposition. */
void interrupt_disarm(void);

#endif
