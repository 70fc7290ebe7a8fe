/*
 * routecmd.h — `certa-eval route`: the accuracy-vs-cost frontier of expert routing on a
 * traces directory against every fixed choice and the oracle, with the routing policy's
 * thresholds calibrated out-of-fold (docs/routing.md).
 *
 *   certa-eval route --traces DIR [--policy FILE] [--route-policy FILE] [--cost POOL=W]...
 *                    [--folds 5] [--target full|policy] [--min-accuracy PCT] [--out FILE]
 *                    [--no-sweep]
 */
#ifndef CERTA_EVAL_ROUTECMD_H
#define CERTA_EVAL_ROUTECMD_H

/* Runs the command on argv[1..argc) (argv[0] is "route"); returns the exit status. */
int routecmd_main(int argc, char **argv);

#endif
