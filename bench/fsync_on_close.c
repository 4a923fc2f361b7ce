/* Loaded with LD_PRELOAD into DCMTK's storescp by `bench.ingest --durable-peer`: each
 * file the program wrote is fsynced when the program closes it, and then its folder
 * unless FSYNC_ON_CLOSE_FOLDER=0. That is the flush dicombox makes before it answers
 * 0000 and storescp never makes, so the two can also be compared doing the same job.
 * storescp closes its files with fclose() (DCMTK's OFFile), which glibc does inside
 * itself, past close(); it uses none of freopen, fcloseall or close_range. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int (*real_close)(int);
static int (*real_fclose)(FILE *);
static int flush_folder = 1;

__attribute__((constructor)) static void find_the_real_ones(void) {
    real_close = (int (*)(int))dlsym(RTLD_NEXT, "close");
    real_fclose = (int (*)(FILE *))dlsym(RTLD_NEXT, "fclose");
    const char *folder = getenv("FSYNC_ON_CLOSE_FOLDER");
    flush_folder = !(folder && strcmp(folder, "0") == 0);
    if (!real_close || !real_fclose) {
        fputs("fsync_on_close: close() or fclose() not found\n", stderr);
        abort();
    }
}

static void flush_folder_of(int fd) {
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path);
    if (n <= 0 || n == (ssize_t)sizeof path) /* none, or cut short */
        return;
    path[n] = '\0';
    int folder = open(dirname(path), O_RDONLY | O_DIRECTORY);
    if (folder >= 0) {
        fsync(folder);
        real_close(folder);
    }
}

/* Leaves errno as it found it: the caller sees only what the real close sets. */
static void make_durable(int fd) {
    int saved = errno;
    struct stat st;
    int flags = fd < 0 ? -1 : fcntl(fd, F_GETFL);
    if (flags >= 0 && (flags & O_ACCMODE) != O_RDONLY && fstat(fd, &st) == 0 &&
        S_ISREG(st.st_mode)) {
        fsync(fd);
        if (flush_folder)
            flush_folder_of(fd);
    }
    errno = saved;
}

int close(int fd) {
    make_durable(fd);
    return real_close(fd);
}

int fclose(FILE *stream) {
    int saved = errno;
    if (fflush(stream) == 0)
        make_durable(fileno(stream));
    errno = saved;
    return real_fclose(stream);
}
