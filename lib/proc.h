/*
 * proc.h — process scaffolding shared by certad and certa-worker: the libevent base, signals
 * as libevent events handled in one callback, the gRPC completion-queue bridge, and an orderly
 * shutdown sequence.
 *
 * Lifecycle: proc_new() (calls grpc_init) -> register servers/channels on proc_bridge() ->
 * proc_run() (dispatches until proc_stop_loop() or the bridge is shut down) -> proc_free()
 * (grpc_shutdown).  Main thread only.
 */
#ifndef CERTA_LIB_PROC_H
#define CERTA_LIB_PROC_H

struct event_base;
struct cqbridge;
struct proc;

/* sig is SIGTERM, SIGINT or SIGHUP. */
typedef void (*proc_signal_fn)(int sig, void *arg);

/* Creates the loop, the bridge and signal events for SIGTERM, SIGINT, SIGHUP (SIGPIPE is
 * ignored).  Returns 0, -ENOMEM, or -errno. */
int proc_new(proc_signal_fn on_signal, void *arg, struct proc **out);
struct event_base *proc_base(struct proc *p);
struct cqbridge *proc_bridge(struct proc *p);
/* Runs the loop until proc_finish() completes.  Returns 0. */
int proc_run(struct proc *p);
/* Shuts the bridge down (call once every server and channel is destroyed) and leaves the loop
 * when the queue is drained. */
void proc_finish(struct proc *p);
void proc_free(struct proc *p);

/* Writes "PORT\n" to path atomically (tmp + rename); for tests and supervisors that start a
 * process on port 0.  Returns 0 or -errno. */
int proc_write_port_file(const char *path, int port);

#endif
