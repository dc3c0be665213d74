/*
 * udp-pace: sends syslog datagrams at a steady rate, for npm run bench:udp. Every millisecond it
 * sends that millisecond's share (RATE/1000, the remainder spread), so the load is paced, not a
 * burst per second as loggen's is. Prints the number sent.
 *
 *   udp-pace HOST PORT RATE SECONDS [SIZE=200]
 */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
	if (argc < 5) {
		fprintf(stderr, "usage: udp-pace HOST PORT RATE SECONDS [SIZE]\n");
		return 2;
	}
	long rate = atol(argv[3]);
	long seconds = atol(argv[4]);
	int size = argc > 5 ? atoi(argv[5]) : 200;
	int fd = socket(AF_INET, SOCK_DGRAM, 0);
	int sndbuf = 4 << 20;
	setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof sndbuf);
	struct sockaddr_in to = { .sin_family = AF_INET, .sin_port = htons((unsigned short)atoi(argv[2])) };
	inet_pton(AF_INET, argv[1], &to.sin_addr);
	char *msg = malloc((size_t)size + 64);
	long total = rate * seconds, sent = 0;
	struct timespec start, now;
	clock_gettime(CLOCK_MONOTONIC, &start);
	for (long ms = 0; sent < total; ms++) {
		long due = (ms + 1) * rate / 1000;
		if (due > total) due = total;
		for (; sent < due; sent++) {
			int len = snprintf(msg, (size_t)size + 64, "<13>Jan  1 00:00:00 udphost pace: seq=%ld ", sent);
			while (len < size) msg[len++] = 'x';
			while (sendto(fd, msg, (size_t)len, 0, (struct sockaddr *)&to, sizeof to) < 0) usleep(50);
		}
		/* Sleep until the next millisecond slot. */
		struct timespec next = start;
		long ns = start.tv_nsec + (ms + 1) * 1000000L;
		next.tv_sec += ns / 1000000000L;
		next.tv_nsec = ns % 1000000000L;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec < next.tv_sec || (now.tv_sec == next.tv_sec && now.tv_nsec < next.tv_nsec))
			clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
	}
	clock_gettime(CLOCK_MONOTONIC, &now);
	printf("sent=%ld seconds=%.3f\n", sent, (double)(now.tv_sec - start.tv_sec) + (now.tv_nsec - start.tv_nsec) / 1e9);
	return 0;
}
