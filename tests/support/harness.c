/* harness.c — start real certa processes for integration tests; hard timeouts, no leftovers. */
#include "tests/support/harness.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "certa/v1/worker.pb-c.h"
#include "lib/error.h"
#include "lib/log.h"
#include "lib/rpc_client.h"
#include "lib/traces.h"

#define HARNESS_MAX_PROCS 512
#define HARNESS_POLL_MS 10
#define HARNESS_DUMP_MAX (64 * 1024)
#define HARNESS_WORKER_READY_MS 20000
#define HARNESS_INFO_DEADLINE_MS 1000
#define HARNESS_CERTAD_READY_MS 20000
#define HARNESS_CERTAD_MAX_ARGS 512

struct harness_proc {
	pid_t pid;
	int reaped;
	int status;
	int slot;
	char *name;
	char *log_path;
};

/* Process groups to kill on the way out; read by signal handlers, so plain pids only. */
static volatile pid_t harness_pgids[HARNESS_MAX_PROCS];
static int harness_initialized;
static unsigned harness_nworkers;

static const int harness_fatal_signals[] = { SIGALRM, SIGTERM, SIGINT, SIGHUP, SIGQUIT };

/* Kills every registered group; async-signal-safe. */
static int
harness_kill_registered(void)
{
	int i, n = 0;

	for (i = 0; i < HARNESS_MAX_PROCS; i++) {
		pid_t pg = harness_pgids[i];
		if (pg > 0 && kill(-pg, SIGKILL) == 0)
			n++;
	}
	return n;
}

static void
harness_atexit(void)
{
	int i;

	if (harness_kill_registered() > 0)
		fprintf(stderr, "harness: killed processes still running at exit\n");
	for (i = 0; i < HARNESS_MAX_PROCS; i++)
		if (harness_pgids[i] > 0)
			(void)waitpid(harness_pgids[i], NULL, WNOHANG);
}

/* Writes a constant string with write(2) (async-signal-safe). */
static void
harness_say(const char *s)
{
	ssize_t r = write(STDERR_FILENO, s, strlen(s));
	(void)r;
}

/* "harness: exec PATH failed: errno N" from a forked child (no stdio, no locale). */
static void
harness_say_exec_error(const char *path, int err)
{
	char num[16];
	int i = (int)sizeof num - 1;

	num[i] = '\0';
	do {
		num[--i] = (char)('0' + err % 10);
		err /= 10;
	} while (err > 0 && i > 0);
	harness_say("harness: exec ");
	harness_say(path);
	harness_say(" failed: errno ");
	harness_say(num + i);
	harness_say("\n");
}

/* A fatal signal or the hard timeout: kill the children, then die of the signal. */
static void
harness_on_fatal(int sig)
{
	harness_say(sig == SIGALRM ?
	    "\nharness: hard timeout of the running test expired; killing child processes\n" :
	    "\nharness: fatal signal; killing child processes\n");
	harness_kill_registered();
	signal(sig, SIG_DFL);
	raise(sig);
}

void
harness_init(void)
{
	struct sigaction sa;
	size_t i;

	if (harness_initialized)
		return;
	harness_initialized = 1;
	atexit(harness_atexit);
	memset(&sa, 0, sizeof sa);
	sa.sa_handler = harness_on_fatal;
	sigemptyset(&sa.sa_mask);
	for (i = 0; i < sizeof harness_fatal_signals / sizeof harness_fatal_signals[0]; i++)
		(void)sigaction(harness_fatal_signals[i], &sa, NULL);
}

void
harness_alarm(unsigned seconds)
{
	harness_init();
	alarm(seconds);
}

char *
harness_bin(const char *name)
{
	const char *build = getenv("BUILD");
	char *path;

	if (build == NULL || build[0] == '\0')
		build = "build";
	if (asprintf(&path, "%s/bin/%s", build, name) < 0)
		return NULL;
	return path;
}

int
harness_tmpdir(char **out)
{
	const char *base = getenv("TMPDIR");
	char *path;

	if (base == NULL || base[0] == '\0')
		base = "/tmp";
	if (asprintf(&path, "%s/certa-itest.XXXXXX", base) < 0)
		return -ENOMEM;
	if (mkdtemp(path) == NULL) {
		int err = -errno;
		free(path);
		return err;
	}
	*out = path;
	return 0;
}

static int harness_rmrf_err;

/* nftw callback: children come before their directory (FTW_DEPTH). */
static int
harness_rmrf_one(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
	if (remove(path) != 0 && errno != ENOENT && harness_rmrf_err == 0)
		harness_rmrf_err = -errno;
	return 0;
}

int
harness_rmrf(const char *path)
{
	struct stat st;

	if (lstat(path, &st) != 0)
		return errno == ENOENT ? 0 : -errno;
	harness_rmrf_err = 0;
	if (nftw(path, harness_rmrf_one, 16, FTW_DEPTH | FTW_PHYS) != 0 && harness_rmrf_err == 0)
		harness_rmrf_err = -errno;
	return harness_rmrf_err;
}

/* Sleeps ms milliseconds (restarting after signals). */
static void
harness_sleep_ms(int ms)
{
	struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static int64_t
harness_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/*
 * The common part of harness_spawn() and harness_spawn_io(): stdout to out_path (opened with
 * O_WRONLY | O_CREAT | mode_flags), stderr to err_path (same flags) or, when err_path is NULL,
 * to the same file descriptor.
 */
static int
harness_spawn_files(struct harness_proc **out, const char *out_path, const char *err_path,
    int mode_flags, char *const argv[])
{
	struct harness_proc *p;
	const char *base;
	sigset_t all;
	int fd, efd, devnull, slot, i, err;
	pid_t pid;

	harness_init();
	for (slot = 0; slot < HARNESS_MAX_PROCS; slot++)
		if (harness_pgids[slot] == 0)
			break;
	if (slot == HARNESS_MAX_PROCS)
		return -EMFILE;
	p = calloc(1, sizeof *p);
	if (p == NULL)
		return -ENOMEM;
	base = strrchr(argv[0], '/');
	p->name = strdup(base != NULL ? base + 1 : argv[0]);
	p->log_path = strdup(out_path);
	if (p->name == NULL || p->log_path == NULL) {
		err = -ENOMEM;
		goto fail_p;
	}
	fd = open(out_path, O_WRONLY | O_CREAT | O_CLOEXEC | mode_flags, 0644);
	if (fd < 0) {
		err = -errno;
		goto fail_p;
	}
	efd = fd;
	if (err_path != NULL) {
		efd = open(err_path, O_WRONLY | O_CREAT | O_CLOEXEC | mode_flags, 0644);
		if (efd < 0) {
			err = -errno;
			goto fail_fd;
		}
	}
	devnull = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (devnull < 0) {
		err = -errno;
		goto fail_efd;
	}
	pid = fork();
	if (pid < 0) {
		err = -errno;
		goto fail_devnull;
	}
	if (pid == 0) {
		/* Child: async-signal-safe calls only (the parent runs gRPC threads). */
		struct sigaction dfl;
		sigemptyset(&all);
		sigprocmask(SIG_SETMASK, &all, NULL);
		memset(&dfl, 0, sizeof dfl);
		dfl.sa_handler = SIG_DFL;
		for (i = 1; i < NSIG; i++)
			(void)sigaction(i, &dfl, NULL);
		setpgid(0, 0);
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (dup2(devnull, STDIN_FILENO) < 0 || dup2(fd, STDOUT_FILENO) < 0 ||
		    dup2(efd, STDERR_FILENO) < 0)
			_exit(127);
		execv(argv[0], argv);
		harness_say_exec_error(argv[0], errno);
		_exit(127);
	}
	/* Parent: also set the group here so a kill right after fork reaches it. */
	(void)setpgid(pid, pid);
	close(devnull);
	if (efd != fd)
		close(efd);
	close(fd);
	p->pid = pid;
	p->slot = slot;
	harness_pgids[slot] = pid;
	*out = p;
	return 0;

fail_devnull:
	close(devnull);
fail_efd:
	if (efd != fd)
		close(efd);
fail_fd:
	close(fd);
fail_p:
	free(p->name);
	free(p->log_path);
	free(p);
	return err;
}

int
harness_spawn(struct harness_proc **out, const char *log_path, char *const argv[])
{
	return harness_spawn_files(out, log_path, NULL, O_APPEND, argv);
}

int
harness_spawn_io(struct harness_proc **out, const char *out_path, const char *err_path,
    char *const argv[])
{
	return harness_spawn_files(out, out_path, err_path, O_TRUNC, argv);
}

pid_t
harness_pid(const struct harness_proc *p)
{
	return p->pid;
}

const char *
harness_log_path(const struct harness_proc *p)
{
	return p->log_path;
}

int
harness_signal(struct harness_proc *p, int sig)
{
	if (p->reaped)
		return -ESRCH;
	return kill(p->pid, sig) == 0 ? 0 : -errno;
}

/* One non-blocking reap attempt: 1 reaped (now or before), 0 still running, or -errno. */
static int
harness_try_reap(struct harness_proc *p)
{
	pid_t r;
	int st;

	if (p->reaped)
		return 1;
	do
		r = waitpid(p->pid, &st, WNOHANG);
	while (r < 0 && errno == EINTR);
	if (r < 0)
		return -errno;
	if (r == 0)
		return 0;
	p->reaped = 1;
	p->status = st;
	/* The group may still hold grandchildren; they go with the leader. */
	(void)kill(-p->pid, SIGKILL);
	harness_pgids[p->slot] = 0;
	return 1;
}

int
harness_wait_exit(struct harness_proc *p, int timeout_ms, int *status)
{
	int64_t end = harness_now_ms() + (timeout_ms > 0 ? timeout_ms : 0);
	int r;

	for (;;) {
		r = harness_try_reap(p);
		if (r < 0)
			return r;
		if (r == 1) {
			*status = p->status;
			return 0;
		}
		if (harness_now_ms() >= end)
			return CERTA_ETIMEOUT;
		harness_sleep_ms(HARNESS_POLL_MS);
	}
}

int
harness_running(struct harness_proc *p)
{
	return harness_try_reap(p) == 0;
}

int
harness_kill9(struct harness_proc *p)
{
	int st;

	if (p->reaped)
		return 0;
	(void)kill(-p->pid, SIGKILL);
	(void)kill(p->pid, SIGKILL);
	return harness_wait_exit(p, 5000, &st);
}

void
harness_proc_free(struct harness_proc *p)
{
	if (p == NULL)
		return;
	if (harness_kill9(p) != 0)
		fprintf(stderr, "harness: %s (pid %d) could not be reaped\n", p->name,
		    (int)p->pid);
	/* Kept registered when unreaped, so the exit handler tries again. */
	if (p->reaped)
		harness_pgids[p->slot] = 0;
	free(p->name);
	free(p->log_path);
	free(p);
}

int
harness_read_file(const char *path, char **out)
{
	FILE *f = fopen(path, "re");
	char *buf = NULL;
	size_t len = 0, cap = 0, n;
	int err = 0;

	if (f == NULL)
		return -errno;
	for (;;) {
		if (cap - len < 4096) {
			char *nb = realloc(buf, cap + 65536);
			if (nb == NULL) {
				err = -ENOMEM;
				break;
			}
			buf = nb;
			cap += 65536;
		}
		n = fread(buf + len, 1, cap - len - 1, f);
		len += n;
		if (n == 0) {
			if (ferror(f))
				err = -EIO;
			break;
		}
	}
	fclose(f);
	if (err != 0) {
		free(buf);
		return err;
	}
	buf[len] = '\0';
	*out = buf;
	return 0;
}

void
harness_dump_log(const struct harness_proc *p)
{
	char *text = NULL;
	const char *from;
	size_t len;
	int rc = harness_read_file(p->log_path, &text);

	fprintf(stderr, "---- log of %s (pid %d): %s ----\n", p->name, (int)p->pid, p->log_path);
	if (rc != 0) {
		fprintf(stderr, "(cannot read it: %s)\n", certa_strerror(rc));
	} else {
		len = strlen(text);
		from = text;
		if (len > HARNESS_DUMP_MAX) {
			from = text + len - HARNESS_DUMP_MAX;
			fprintf(stderr, "(... first %zu bytes left out ...)\n",
			    len - HARNESS_DUMP_MAX);
		}
		fputs(from, stderr);
		if (len > 0 && text[len - 1] != '\n')
			fputc('\n', stderr);
	}
	fprintf(stderr, "---- end of log of %s ----\n", p->name);
	free(text);
}

/* Parses "PORT\n": 1 with the port, 0 while absent, CERTA_EINVAL for other content. */
static int
harness_parse_port_file(const char *path, int *port)
{
	char *text = NULL, *end;
	long v;
	int rc = harness_read_file(path, &text);

	if (rc == -ENOENT)
		return 0;
	if (rc != 0)
		return rc;
	errno = 0;
	v = strtol(text, &end, 10);
	rc = CERTA_EINVAL;
	if (errno == 0 && end != text && (*end == '\n' || *end == '\0') && v > 0 && v < 65536) {
		*port = (int)v;
		rc = 1;
	}
	free(text);
	return rc;
}

/* Waits for the port file, giving up early when proc (if any) exits. */
static int
harness_wait_port_proc(const char *path, struct harness_proc *proc, int timeout_ms, int *port)
{
	int64_t end = harness_now_ms() + timeout_ms;
	int rc, v = 0;

	for (;;) {
		rc = harness_parse_port_file(path, &v);
		if (rc == 1) {
			*port = v;
			return 0;
		}
		if (rc < 0)
			return rc;
		if (proc != NULL && !harness_running(proc))
			return CERTA_EUNAVAIL;
		if (harness_now_ms() >= end)
			return CERTA_ETIMEOUT;
		harness_sleep_ms(HARNESS_POLL_MS);
	}
}

int
harness_wait_port_file(const char *path, int timeout_ms, int *port)
{
	return harness_wait_port_proc(path, NULL, timeout_ms, port);
}

/* Polls Worker.Info until it answers OK, the process exits or the time is up. */
static int
harness_wait_info(int port, struct harness_proc *proc, int64_t end)
{
	Certa__V1__InfoRequest req = CERTA__V1__INFO_REQUEST__INIT;
	struct rpc_channel *ch = NULL;
	ProtobufCMessage *reply;
	grpc_status_code st;
	char target[64], *details;
	int rc;

	snprintf(target, sizeof target, "127.0.0.1:%d", port);
	rc = rpc_channel_new(target, &ch);
	if (rc != 0)
		return rc;
	for (;;) {
		reply = NULL;
		details = NULL;
		rc = rpc_sync_unary(ch, "/certa.v1.Worker/Info", &req.base,
		    &certa__v1__info_reply__descriptor, HARNESS_INFO_DEADLINE_MS, NULL, 0,
		    &reply, &st, &details);
		free(details);
		if (rc == 0 && st == GRPC_STATUS_OK) {
			protobuf_c_message_free_unpacked(reply, NULL);
			break;
		}
		if (!harness_running(proc)) {
			rc = CERTA_EUNAVAIL;
			break;
		}
		if (harness_now_ms() >= end) {
			rc = CERTA_ETIMEOUT;
			break;
		}
		harness_sleep_ms(50);
	}
	rpc_channel_free(ch);
	return rc;
}

int
harness_start_worker(const char *dir, const char *traces_dir, const char *const extra[],
    struct harness_proc **proc, int *port)
{
	const char *fixed[] = { "--listen", "127.0.0.1:0", "--port-file", NULL, "--engine",
	    "replay", "--traces", traces_dir };
	const size_t nfixed = sizeof fixed / sizeof fixed[0];
	char *bin = NULL, *port_path = NULL, *log_path = NULL;
	char **argv = NULL;
	struct harness_proc *p = NULL;
	size_t nextra = 0, i, k = 0;
	unsigned n = harness_nworkers++;
	int64_t end = harness_now_ms() + HARNESS_WORKER_READY_MS;
	int rc, v = 0;

	while (extra != NULL && extra[nextra] != NULL)
		nextra++;
	bin = harness_bin("certa-worker");
	if (asprintf(&port_path, "%s/w%u.port", dir, n) < 0)
		port_path = NULL;
	if (asprintf(&log_path, "%s/w%u.log", dir, n) < 0)
		log_path = NULL;
	if (bin == NULL || port_path == NULL || log_path == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	fixed[3] = port_path;
	argv = calloc(1 + nfixed + nextra + 1, sizeof *argv);
	if (argv == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	argv[k++] = bin;
	for (i = 0; i < nfixed; i++)
		argv[k++] = (char *)fixed[i];
	for (i = 0; i < nextra; i++)
		argv[k++] = (char *)extra[i];
	argv[k] = NULL;
	rc = harness_spawn(&p, log_path, argv);
	if (rc != 0) {
		fprintf(stderr, "harness: cannot start %s: %s\n", bin, certa_strerror(rc));
		goto out;
	}
	rc = harness_wait_port_proc(port_path, p, HARNESS_WORKER_READY_MS, &v);
	if (rc == 0)
		rc = harness_wait_info(v, p, end);
	if (rc != 0) {
		fprintf(stderr, "harness: certa-worker did not become ready: %s\n",
		    certa_strerror(rc));
		(void)harness_kill9(p);
		harness_dump_log(p);
		harness_proc_free(p);
		goto out;
	}
	*proc = p;
	*port = v;
out:
	free(argv);
	free(bin);
	free(port_path);
	free(log_path);
	return rc;
}

/* "DIR/NAME" in a new malloc'd string; NULL if out of memory. */
static char *
harness_path(const char *dir, const char *name)
{
	char *path;

	if (asprintf(&path, "%s/%s", dir, name) < 0)
		return NULL;
	return path;
}

int
harness_spawn_certad(const char *dir, const char *const args[], struct harness_proc **out)
{
	char *bin = harness_bin("certad"), *port_path = harness_path(dir, "d.port");
	char *log_path = harness_path(dir, "d.log");
	char **argv = NULL;
	size_t nargs = 0, i;
	int rc;

	while (args != NULL && args[nargs] != NULL)
		nargs++;
	if (bin == NULL || port_path == NULL || log_path == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	argv = calloc(nargs + 2, sizeof *argv);
	if (argv == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	argv[0] = bin;
	for (i = 0; i < nargs; i++)
		argv[i + 1] = (char *)args[i];
	(void)unlink(port_path);
	rc = harness_spawn(out, log_path, argv);
	if (rc != 0)
		fprintf(stderr, "harness: cannot start %s: %s\n", bin, certa_strerror(rc));
out:
	free(argv);
	free(bin);
	free(port_path);
	free(log_path);
	return rc;
}

int
harness_wait_certad(const char *dir, struct harness_proc *d, int *port)
{
	char *port_path = harness_path(dir, "d.port");
	int rc, v = 0;

	if (port_path == NULL)
		return -ENOMEM;
	rc = harness_wait_port_proc(port_path, d, HARNESS_CERTAD_READY_MS, &v);
	free(port_path);
	if (rc != 0) {
		fprintf(stderr, "harness: certad did not become ready: %s\n", certa_strerror(rc));
		harness_dump_log(d);
		return rc;
	}
	*port = v;
	return 0;
}

int
harness_start_certad(const char *dir, const int wports[], size_t nworkers,
    const char *const sets[], const char *const extra[], struct harness_proc **out, int *port)
{
	const char *args[HARNESS_CERTAD_MAX_ARGS + 1];
	char *state = harness_path(dir, "state"), *port_path = harness_path(dir, "d.port");
	char *waddr = NULL;
	struct harness_proc *d = NULL;
	size_t a = 0, i, nsets = 0, nextra = 0, wlen = 0;
	int rc, v = 0;

	while (sets != NULL && sets[nsets] != NULL)
		nsets++;
	while (extra != NULL && extra[nextra] != NULL)
		nextra++;
	if (6 + 2 * nworkers + 2 * nsets + nextra > HARNESS_CERTAD_MAX_ARGS) {
		rc = -E2BIG;
		goto out;
	}
	/* One buffer holds every "127.0.0.1:PORT" (at most 16 bytes with the NUL each). */
	waddr = calloc(nworkers > 0 ? nworkers : 1, 16);
	if (state == NULL || port_path == NULL || waddr == NULL) {
		rc = -ENOMEM;
		goto out;
	}
	args[a++] = "--listen";
	args[a++] = "127.0.0.1:0";
	args[a++] = "--state-dir";
	args[a++] = state;
	args[a++] = "--port-file";
	args[a++] = port_path;
	for (i = 0; i < nworkers; i++) {
		snprintf(waddr + wlen, 16, "127.0.0.1:%d", wports[i]);
		args[a++] = "--worker";
		args[a++] = waddr + wlen;
		wlen += 16;
	}
	for (i = 0; i < nsets; i++) {
		args[a++] = "--set";
		args[a++] = sets[i];
	}
	for (i = 0; i < nextra; i++)
		args[a++] = extra[i];
	args[a] = NULL;
	rc = harness_spawn_certad(dir, args, &d);
	if (rc != 0)
		goto out;
	rc = harness_wait_certad(dir, d, &v);
	if (rc != 0) {
		harness_proc_free(d);
		goto out;
	}
	*out = d;
	*port = v;
out:
	free(waddr);
	free(state);
	free(port_path);
	return rc;
}

const char *
harness_traces_dir(void)
{
	const char *dir = getenv("CERTA_TRACES");
	struct stat st;

	if (dir == NULL || dir[0] == '\0' || stat(dir, &st) != 0 || !S_ISDIR(st.st_mode))
		return NULL;
	return dir;
}

int
harness_demo_traces(struct traces **out)
{
	static const char demo[] = "data/traces-demo";
	struct stat st;

	*out = NULL;
	if (stat(demo, &st) != 0)
		return -ENOENT;
	log_set_level(LOG_LVL_WARN);
	return traces_load(demo, out);
}

/* Whether a program makes a useful test case (see harness.h). */
static int
harness_trace_usable(const struct traces_program *pg)
{
	const struct trace *t0;
	size_t i, j;

	if (pg->nsamples < 2)
		return 0;
	t0 = pg->samples[0];
	if (t0->final_answer[0] == '\0' || t0->nprobes == 0 || t0->think_end == 0 ||
	    t0->tokens_used == 0)
		return 0;
	for (i = 0; i < pg->nsamples; i++)
		for (j = i + 1; j < pg->nsamples; j++)
			if (strcmp(pg->samples[i]->text, pg->samples[j]->text) == 0)
				return 0;
	return 1;
}

int
harness_trace_pick(const char *dir, const char *model, const char *dataset,
    struct harness_trace **out)
{
	struct harness_trace *ht;
	const struct traces_program *pg;
	struct traces *set = NULL;
	size_t i;
	int rc;

	rc = traces_load(dir, &set);
	if (rc != 0)
		return rc;
	if (model == NULL || model[0] == '\0')
		model = traces_model_name(set, 0);
	for (i = 0; model != NULL && (pg = traces_program_at(set, i)) != NULL; i++) {
		if (strcmp(pg->model, model) != 0 || strcmp(pg->dataset, dataset) != 0 ||
		    !harness_trace_usable(pg))
			continue;
		ht = calloc(1, sizeof *ht);
		if (ht == NULL) {
			traces_free(set);
			return -ENOMEM;
		}
		ht->set = set;
		ht->model = pg->model;
		ht->dataset = pg->dataset;
		ht->problem = pg->problem;
		ht->final_answer = pg->samples[0]->final_answer;
		ht->tokens_used = pg->samples[0]->tokens_used;
		ht->nsamples = pg->nsamples;
		ht->samples = pg->samples;
		*out = ht;
		return 0;
	}
	traces_free(set);
	return CERTA_ENOTFOUND;
}

void
harness_trace_free(struct harness_trace *ht)
{
	if (ht == NULL)
		return;
	traces_free(ht->set);
	free(ht);
}

int
harness_fixture_setup(unsigned timeout_s, char **dir, struct harness_trace **tr)
{
	struct harness_trace *t = NULL;
	char *d = NULL;
	int rc;

	harness_alarm(timeout_s);
	rc = harness_tmpdir(&d);
	if (rc != 0)
		return rc;
	if (tr != NULL) {
		rc = harness_traces_dir() == NULL ? CERTA_ENOTFOUND :
		    harness_trace_pick(harness_traces_dir(), NULL, "math500", &t);
		if (rc != 0)
			goto fail_dir;
		*tr = t;
	}
	*dir = d;
	return 0;

fail_dir:
	(void)harness_rmrf(d);
	free(d);
	return rc;
}

void
harness_fixture_teardown(char *dir, struct harness_trace *tr)
{
	harness_trace_free(tr);
	if (dir != NULL) {
		(void)harness_rmrf(dir);
		free(dir);
	}
	harness_alarm(0);
}

int
harness_write_file(const char *path, const char *fmt, ...)
{
	va_list ap;
	FILE *f = fopen(path, "we");
	int rc = 0;

	if (f == NULL)
		return -errno;
	va_start(ap, fmt);
	if (vfprintf(f, fmt, ap) < 0)
		rc = -EIO;
	va_end(ap);
	if (fclose(f) != 0 && rc == 0)
		rc = -errno;
	return rc;
}

int
harness_sh(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	int rc;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	rc = system(cmd);
	return WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
}

int
harness_aborts(void (*fn)(void *arg), void *arg)
{
	pid_t pid;
	int status;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -errno;
	if (pid == 0) {
		int devnull = open("/dev/null", O_WRONLY);
		if (devnull >= 0)
			dup2(devnull, STDERR_FILENO);
		signal(SIGABRT, SIG_DFL);
		fn(arg);
		_exit(0);
	}
	if (waitpid(pid, &status, 0) != pid)
		return -errno;
	return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
}

int
harness_free_port(void)
{
	struct sockaddr_in a;
	socklen_t len = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), rc;

	if (fd < 0)
		return -errno;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if (bind(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
	    getsockname(fd, (struct sockaddr *)&a, &len) != 0)
		rc = -errno;
	else
		rc = ntohs(a.sin_port);
	close(fd);
	return rc;
}

int
harness_http_get(int port, const char *path, char *buf, size_t len)
{
	struct sockaddr_in a;
	char req[256];
	size_t got = 0;
	ssize_t n;
	int fd = socket(AF_INET, SOCK_STREAM, 0), code = -1;
	char *body;

	if (fd < 0 || len == 0)
		goto fail_fd;
	memset(&a, 0, sizeof a);
	a.sin_family = AF_INET;
	a.sin_port = htons((uint16_t)port);
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	snprintf(req, sizeof req, "GET %s HTTP/1.0\r\nHost: localhost\r\n\r\n", path);
	if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0 ||
	    write(fd, req, strlen(req)) != (ssize_t)strlen(req))
		goto fail_fd;
	while (got + 1 < len && (n = read(fd, buf + got, len - 1 - got)) > 0)
		got += (size_t)n;
	buf[got] = '\0';
	sscanf(buf, "HTTP/1.%*d %d", &code);
	body = strstr(buf, "\r\n\r\n");
	if (body != NULL)
		memmove(buf, body + 4, strlen(body + 4) + 1);
fail_fd:
	if (fd >= 0)
		close(fd);
	return code;
}

double
harness_metric(int port, const char *series)
{
	size_t len = 1 << 18, n = strlen(series);
	char *body = malloc(len), *l;
	double v = -1;

	if (body == NULL)
		return -1;
	if (harness_http_get(port, "/metrics", body, len) == 200)
		for (l = body; l != NULL; l = strchr(l, '\n') != NULL ? strchr(l, '\n') + 1 : NULL)
			if (strncmp(l, series, n) == 0 && l[n] == ' ')
				sscanf(l + n + 1, "%lf", &v);
	free(body);
	return v;
}

double
harness_clock_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

/* qsort order for doubles. */
static int
harness_cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

double
harness_percentile(double *v, size_t n, double p)
{
	if (n == 0)
		return 0;
	qsort(v, n, sizeof *v, harness_cmp_double);
	return v[(size_t)(p * (double)(n - 1) + 0.5)];
}
