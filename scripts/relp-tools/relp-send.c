/*
 * relp-send: a RELP client built on librelp (Debian's librelp-dev), for sluice's tests and
 * benchmarks. Sends COUNT syslog messages of about SIZE bytes over one session with a window of
 * WINDOW, then closes the session, which waits for every answer. Exit status 0 only if every
 * message was sent and the session closed cleanly.
 *
 *   relp-send HOST PORT COUNT [WINDOW=128] [SIZE=200]
 *
 * Each message is "<13>Jan  1 00:00:00 relphost relp-send: seq=N " padded with 'x' to SIZE bytes.
 * Written for sluice against librelp's public API (librelp.h), not taken from librelp's own tools.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <librelp.h>

static void dbg(char *fmt, ...) { (void)fmt; }

static void on_err(void *usr, char *object, char *msg, relpRetVal err) {
	(void)usr;
	fprintf(stderr, "relp-send: librelp error %d on %s: %s\n", (int)err, object, msg);
}

int main(int argc, char **argv) {
	if (argc < 4) {
		fprintf(stderr, "usage: relp-send HOST PORT COUNT [WINDOW] [SIZE]\n");
		return 2;
	}
	long count = atol(argv[3]);
	int window = argc > 4 ? atoi(argv[4]) : 128;
	int size = argc > 5 ? atoi(argv[5]) : 200;
	relpEngine_t *engine = NULL;
	relpClt_t *clt = NULL;
	if (relpEngineConstruct(&engine) != RELP_RET_OK) return 1;
	relpEngineSetDbgprint(engine, dbg);
	relpEngineSetOnErr(engine, on_err);
	relpEngineSetEnableCmd(engine, (unsigned char *)"syslog", eRelpCmdState_Required);
	if (relpEngineCltConstruct(engine, &clt) != RELP_RET_OK) return 1;
	relpCltSetWindowSize(clt, window);
	relpCltSetTimeout(clt, 60);
	relpRetVal r = relpCltConnect(clt, AF_INET, (unsigned char *)argv[2], (unsigned char *)argv[1]);
	if (r != RELP_RET_OK) {
		fprintf(stderr, "relp-send: connect failed: %d\n", (int)r);
		return 1;
	}
	char *msg = malloc((size_t)size + 64);
	long sent = 0;
	for (long i = 0; i < count; i++) {
		int len = snprintf(msg, (size_t)size + 64, "<13>Jan  1 00:00:00 relphost relp-send: seq=%ld ", i);
		while (len < size) msg[len++] = 'x';
		r = relpCltSendSyslog(clt, (unsigned char *)msg, (size_t)len);
		if (r != RELP_RET_OK) {
			fprintf(stderr, "relp-send: send of seq=%ld failed: %d\n", i, (int)r);
			break;
		}
		sent++;
	}
	/* Closing the session waits for the answers to everything sent. */
	r = relpEngineCltDestruct(engine, &clt);
	relpEngineDestruct(&engine);
	free(msg);
	printf("sent=%ld close=%d\n", sent, (int)r);
	return sent == count && r == RELP_RET_OK ? 0 : 1;
}
