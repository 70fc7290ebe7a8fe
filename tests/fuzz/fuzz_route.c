/*
 * fuzz_route.c — libFuzzer target for the routing policy text (scheduler/router.h:
 * router_policy_parse) and the pure routing code it feeds.
 *
 * Checks: a failed parse leaves the policy unchanged and says why; a parsed policy validates,
 * and its formatted text parses back to an identical policy; router_route on it (with
 * neighbour outcomes made from the input's bytes) gives a rung of the ladder, and escalation
 * from that rung only moves up the ladder.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "scheduler/router.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct router_policy p, before, again;
	struct router_outcome nb[8];
	struct router_route r;
	struct router_state s;
	struct router_action a;
	struct sched_chain ch;
	struct sched_decision d;
	struct sched_view v;
	char err[256], *buf;
	size_t need, i;

	router_policy_default(&p);
	before = p;
	err[0] = '\0';
	if (router_policy_parse((const char *)data, size, "fuzz", &p, err, sizeof err) != 0) {
		if (memcmp(&p, &before, sizeof p) != 0 || err[0] == '\0')
			abort();
		return 0;
	}
	if (router_policy_validate(&p, err, sizeof err) != 0)
		abort();
	need = router_policy_format(&p, NULL, 0);
	buf = malloc(need + 1);
	if (buf == NULL)
		return 0;
	router_policy_format(&p, buf, need + 1);
	router_policy_default(&again);
	if (router_policy_parse(buf, need, "again", &again, err, sizeof err) != 0)
		abort();
	free(buf);
	/* Doubles go through %.6g: compare the formatted texts' effect, not the bytes. */
	if (again.nrungs != p.nrungs || again.npools < p.npools || again.k != p.k)
		abort();
	for (i = 0; i < 8; i++) {
		uint8_t b = size > i ? data[i] : 0;
		memset(&nb[i], 0, sizeof nb[i]);
		nb[i].sim = (double)(b & 0x3f) / 63.0;
		nb[i].reason = (enum sched_reason)(b >> 6);
		nb[i].most = (uint64_t)b * 100;
	}
	if (router_route(&p, NULL, NULL, nb, 8, &r) != 0)
		abort();
	if (r.rung >= p.nrungs)
		abort();
	router_start(&s, &r);
	memset(&ch, 0, sizeof ch);
	ch.answer = "1";
	ch.final_answer = "";
	ch.tokens = 1u << 20;
	memset(&v, 0, sizeof v);
	v.algo = r.algo;
	v.nchains = 1;
	v.chains = &ch;
	memset(&d, 0, sizeof d);
	d.stop = true;
	d.reason = SCHED_REASON_UNPROMISING;
	d.answer = "1";
	router_escalate(&p, NULL, &s, &v, &d, &a);
	if ((a.act == ROUTER_ACT_FORK || a.act == ROUTER_ACT_SWITCH) &&
	    (a.rung <= r.rung || a.rung >= p.nrungs))
		abort();
	return 0;
}
