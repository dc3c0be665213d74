/*
 * relp-receive: a RELP server built on librelp (Debian's librelp-dev), for sluice's tests. Listens
 * on 127.0.0.1:PORT and writes each message it receives as one line to stdout (flushed per
 * message), until SIGTERM or SIGINT.
 *
 *   relp-receive PORT
 *
 * Written for sluice against librelp's public API (librelp.h), not taken from librelp's own tools.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <librelp.h>

static relpEngine_t *engine;

static void dbg(char *fmt, ...) { (void)fmt; }

static relpRetVal on_msg(void *usr, unsigned char *host, unsigned char *ip, unsigned char *msg, size_t len) {
	(void)usr; (void)host; (void)ip;
	fwrite(msg, 1, len, stdout);
	fputc('\n', stdout);
	fflush(stdout);
	return RELP_RET_OK;
}

static void stop(int sig) {
	(void)sig;
	relpEngineSetStop(engine);
}

int main(int argc, char **argv) {
	if (argc < 2) {
		fprintf(stderr, "usage: relp-receive PORT\n");
		return 2;
	}
	relpSrv_t *srv = NULL;
	signal(SIGTERM, stop);
	signal(SIGINT, stop);
	if (relpEngineConstruct(&engine) != RELP_RET_OK) return 1;
	relpEngineSetDbgprint(engine, dbg);
	relpEngineSetEnableCmd(engine, (unsigned char *)"syslog", eRelpCmdState_Required);
	relpEngineSetSyslogRcv2(engine, on_msg);
	if (relpEngineListnerConstruct(engine, &srv) != RELP_RET_OK) return 1;
	relpSrvSetLstnPort(srv, (unsigned char *)argv[1]);
	relpSrvSetLstnAddr(srv, (unsigned char *)"127.0.0.1");
	if (relpEngineListnerConstructFinalize(engine, srv) != RELP_RET_OK) {
		fprintf(stderr, "relp-receive: cannot listen on port %s\n", argv[1]);
		return 1;
	}
	fprintf(stderr, "relp-receive: listening on 127.0.0.1:%s\n", argv[1]);
	relpEngineRun(engine);
	relpEngineDestruct(&engine);
	return 0;
}
