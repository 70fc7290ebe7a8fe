/* events.c — program events (accepted, progress, finished) to client streams. */
#include "daemon/events.h"
#include "daemon/core_impl.h"

#include "daemon/program.h"
#include "lib/rpc_server.h"

/* --- events to client streams --- */

/*
 * Event numbers (ProgramEvent.seq) follow from the program's committed step count, which is
 * stored with it: `accepted` is 1, the `progress` after its k-th step is k + 1, `finished` is
 * its step count + 2.  Every stream of one program (Submit, a retried Submit, Watch, Watch
 * after a restart or after the end) sees the same number for the same event, so clients
 * de-duplicate on it; numbers may skip (a step that ends the program sends no progress).
 */
uint64_t
events_seq_progress(uint64_t steps)
{
	return steps + 1;
}

uint64_t
events_seq_finished(uint64_t steps)
{
	return steps + 2;
}

/* Sends one event to every watcher; drops watchers whose stream is gone. */
static void
events_broadcast(struct program *p, Certa__V1__ProgramEvent *ev)
{
	size_t i = 0;

	while (i < p->nwatchers) {
		struct rpc_call *w = p->watchers[i];
		if (rpc_call_send(w, &ev->base) != 0) {
			program_unwatch(p, w);
			continue;
		}
		i++;
	}
}

void
events_accepted(struct program *p, struct rpc_call *to, int duplicate)
{
	Certa__V1__ProgramEvent ev = CERTA__V1__PROGRAM_EVENT__INIT;
	Certa__V1__Accepted acc = CERTA__V1__ACCEPTED__INIT;

	acc.program_id = p->id;
	acc.accepted_unix_ms = p->created_ms;
	acc.duplicate = duplicate;
	ev.event_case = CERTA__V1__PROGRAM_EVENT__EVENT_ACCEPTED;
	ev.accepted = &acc;
	ev.seq = EVENTS_SEQ_ACCEPTED;
	rpc_call_send(to, &ev.base);
}

/* The program is no longer live: the accepted event comes from its idempotency record. */
void
events_accepted_stored(struct rpc_call *to, const char *id, int64_t created_unix_ms)
{
	Certa__V1__ProgramEvent ev = CERTA__V1__PROGRAM_EVENT__INIT;
	Certa__V1__Accepted acc = CERTA__V1__ACCEPTED__INIT;

	acc.program_id = (char *)id;
	acc.accepted_unix_ms = created_unix_ms;
	acc.duplicate = 1;
	ev.event_case = CERTA__V1__PROGRAM_EVENT__EVENT_ACCEPTED;
	ev.accepted = &acc;
	ev.seq = EVENTS_SEQ_ACCEPTED;
	rpc_call_send(to, &ev.base);
}

void
events_progress(struct program *p)
{
	Certa__V1__ProgramEvent ev = CERTA__V1__PROGRAM_EVENT__INIT;
	Certa__V1__Progress pr = CERTA__V1__PROGRESS__INIT;
	struct program_pb pb;

	if (p->nwatchers == 0 || program_pb_fill(p, &pb) != 0)
		return;
	pr.program_id = p->id;
	pr.tokens_used = pb.msg.tokens_used;
	pr.certaindex = p->certaindex;
	pr.n_requests = pb.msg.n_requests;
	pr.requests = pb.msg.requests;
	pr.answer = p->answer;
	pr.experts_per_token = program_experts_per_token(p);
	ev.event_case = CERTA__V1__PROGRAM_EVENT__EVENT_PROGRESS;
	ev.progress = &pr;
	ev.seq = events_seq_progress(p->steps);
	events_broadcast(p, &ev);
	program_pb_free(&pb);
}

/* Sends the finished event to one stream (to != NULL) or all, and ends the stream(s). */
void
events_finished(struct program *p, struct rpc_call *to)
{
	Certa__V1__ProgramEvent ev = CERTA__V1__PROGRAM_EVENT__INIT;
	Certa__V1__Finished fin = CERTA__V1__FINISHED__INIT;
	struct program_pb pb;
	size_t i;

	if (program_pb_fill(p, &pb) != 0)
		return;
	fin.program_id = p->id;
	fin.result = &pb.result;
	fin.n_requests = pb.msg.n_requests;
	fin.requests = pb.msg.requests;
	ev.event_case = CERTA__V1__PROGRAM_EVENT__EVENT_FINISHED;
	ev.finished = &fin;
	ev.seq = events_seq_finished(p->steps);
	/* The stream ends OK whatever the program's outcome: a FAILED program is data (its
	 * result's reason and error_message); a non-OK status means the call itself failed. */
	for (i = 0; i < (to != NULL ? 1 : p->nwatchers); i++) {
		struct rpc_call *w = to != NULL ? to : p->watchers[i];
		rpc_call_send(w, &ev.base);
		rpc_call_finish(w, GRPC_STATUS_OK, NULL);
	}
	program_pb_free(&pb);
}
