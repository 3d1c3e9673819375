// SPDX-License-Identifier: GPL-2.0-only
/*
 * shmr-ioctl: the guest's way to the ioctls of /dev/shmr (Node.js has no ioctl).
 *
 *   shmr-ioctl info DEVICE                     size=... block_bytes=... topology=... copies=...
 *   shmr-ioctl corrupt DEVICE OFFSET COPY|all payload|header
 *   shmr-ioctl decode DEVICE                   decodes a stream of buffers
 *
 * decode reads records from stdin, each a little-endian u32 layout (enum shmr_decode_layout),
 * a u32 length and that many bytes, and writes for each: i32 status (0, or the errno of the
 * ioctl), u32 error kind, u32 text length and the text. One process serves thousands of
 * decodes. Built static by vm-tests (gcc -static) so the busybox guest needs nothing else.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "../../kmod-spec/shmr_ioctl.h"

#define INPUT_BYTES_MAX (4u << 20)
#define OUTPUT_BYTES_MAX (64u << 10)

static int read_full(int fd, void *buffer, size_t length)
{
	size_t done = 0;

	while (done < length) {
		ssize_t got = read(fd, (char *)buffer + done, length - done);

		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			return done == 0 && got == 0 ? 0 : -1;
		done += (size_t)got;
	}
	return 1;
}

static int write_full(int fd, const void *buffer, size_t length)
{
	size_t done = 0;

	while (done < length) {
		ssize_t put = write(fd, (const char *)buffer + done, length - done);

		if (put < 0 && errno == EINTR)
			continue;
		if (put <= 0)
			return -1;
		done += (size_t)put;
	}
	return 0;
}

static int decode_stream(int device)
{
	static unsigned char input[INPUT_BYTES_MAX];
	static char output[OUTPUT_BYTES_MAX];

	for (;;) {
		uint32_t head[2];
		int got = read_full(0, head, sizeof(head));

		if (got == 0)
			return 0;
		if (got < 0 || head[1] > INPUT_BYTES_MAX || read_full(0, input, head[1]) != 1) {
			fprintf(stderr, "shmr-ioctl: bad record on stdin\n");
			return 1;
		}
		struct shmr_decode request = {
			.input = (uintptr_t)input,
			.output = (uintptr_t)output,
			.input_bytes = head[1],
			.output_bytes = OUTPUT_BYTES_MAX,
			.layout = head[0],
		};
		int32_t status = 0;

		if (ioctl(device, SHMR_IOC_DECODE, &request) != 0) {
			status = errno;
			request.output_bytes = 0;
			request.error_kind = 0;
		}
		uint32_t reply[3] = { (uint32_t)status, request.error_kind, request.output_bytes };

		if (write_full(1, reply, sizeof(reply)) || write_full(1, output, request.output_bytes))
			return 1;
	}
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: shmr-ioctl info|corrupt|decode DEVICE ...\n");
		return 2;
	}
	int device = open(argv[2], O_RDWR | O_CLOEXEC);

	if (device < 0) {
		perror(argv[2]);
		return 1;
	}
	if (strcmp(argv[1], "info") == 0) {
		struct shmr_info info;

		if (ioctl(device, SHMR_IOC_INFO, &info) != 0) {
			perror("SHMR_IOC_INFO");
			return 1;
		}
		printf("size=%llu block_bytes=%u topology=%u copies=%u blocks_stored=%llu\n",
		       (unsigned long long)info.size_bytes, info.block_bytes, info.topology,
		       info.copies, (unsigned long long)info.blocks_stored);
		return 0;
	}
	if (strcmp(argv[1], "corrupt") == 0 && argc == 6) {
		struct shmr_corrupt request = {
			.offset = strtoull(argv[3], NULL, 0),
			.copy = strcmp(argv[4], "all") == 0 ? 0xffffffffu : (uint32_t)strtoul(argv[4], NULL, 0),
			.target = strcmp(argv[5], "header") == 0 ? 1 : 0,
		};

		if (ioctl(device, SHMR_IOC_CORRUPT, &request) != 0) {
			printf("errno=%d\n", errno);
			return 1;
		}
		return 0;
	}
	if (strcmp(argv[1], "decode") == 0)
		return decode_stream(device);
	fprintf(stderr, "shmr-ioctl: unknown command %s\n", argv[1]);
	return 2;
}
