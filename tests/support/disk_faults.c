/*
 * Disk faults for the tests, preloaded into the real binary (LD_PRELOAD).
 *
 * While the file named by GYM_CHECKIN_DISK_FAULT exists, its first word chooses the fault:
 *   enospc  every pwrite fails with ENOSPC (a full disk)
 *   erofs   every pwrite fails with EROFS  (a read-only filesystem)
 *   eio     every fsync fails with EIO     (a failing disk)
 * Without the file, the calls go through. Only SQLite uses pwrite and fsync in gym-checkin.
 *
 * Each call failed is noted, one line with the fault's name, in the file that
 * GYM_CHECKIN_DISK_FAULT_LOG names (if it is set): a test sees there that the service has tried
 * to write again, and failed.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

static int fault(const char *kind) {
    const char *path = getenv("GYM_CHECKIN_DISK_FAULT");
    if (path == NULL) return 0;
    FILE *file = fopen(path, "r");
    if (file == NULL) return 0;
    char word[16] = {0};
    int matched = fscanf(file, "%15s", word) == 1 && strcmp(word, kind) == 0;
    fclose(file);
    return matched;
}

static void note(const char *kind) {
    const char *path = getenv("GYM_CHECKIN_DISK_FAULT_LOG");
    if (path == NULL) return;
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0) return;
    char line[16];
    int length = snprintf(line, sizeof line, "%s\n", kind);
    if (write(fd, line, (size_t)length) < 0) { /* the note is lost; the fault is not */ }
    close(fd);
}

ssize_t pwrite64(int fd, const void *buffer, size_t count, off_t offset) {
    static ssize_t (*real)(int, const void *, size_t, off_t);
    if (real == NULL) real = dlsym(RTLD_NEXT, "pwrite64");
    if (fault("enospc")) { note("enospc"); errno = ENOSPC; return -1; }
    if (fault("erofs")) { note("erofs"); errno = EROFS; return -1; }
    return real(fd, buffer, count, offset);
}

int fsync(int fd) {
    static int (*real)(int);
    if (real == NULL) real = dlsym(RTLD_NEXT, "fsync");
    if (fault("eio")) { note("eio"); errno = EIO; return -1; }
    return real(fd);
}
