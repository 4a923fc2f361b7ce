/* Loaded with LD_PRELOAD into DCMTK's storescp by `bench.ingest --durable-peer`: each
 * file the program wrote is fsynced, and then its folder, when the program closes it.
 * That is the work dicombox does before it answers 0000 and storescp never does, so the
 * two can also be compared doing the same job. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

static int (*real_close)(int);
static int (*real_fclose)(FILE *);

static void make_durable(int fd) {
    struct stat st;
    int flags = fcntl(fd, F_GETFL);
    if (flags < 0 || (flags & O_ACCMODE) == O_RDONLY || fstat(fd, &st) != 0 ||
        !S_ISREG(st.st_mode))
        return;
    fsync(fd);
    char link[64], path[PATH_MAX];
    snprintf(link, sizeof link, "/proc/self/fd/%d", fd);
    ssize_t n = readlink(link, path, sizeof path - 1);
    if (n <= 0)
        return;
    path[n] = '\0';
    int folder = open(dirname(path), O_RDONLY | O_DIRECTORY);
    if (folder >= 0) {
        fsync(folder);
        real_close(folder);
    }
}

int close(int fd) {
    if (!real_close)
        real_close = (int (*)(int))dlsym(RTLD_NEXT, "close");
    make_durable(fd);
    return real_close(fd);
}

/* stdio closes its descriptor inside libc, past close() above. */
int fclose(FILE *stream) {
    if (!real_fclose)
        real_fclose = (int (*)(FILE *))dlsym(RTLD_NEXT, "fclose");
    if (!real_close)
        real_close = (int (*)(int))dlsym(RTLD_NEXT, "close");
    if (fflush(stream) == 0)
        make_durable(fileno(stream));
    return real_fclose(stream);
}
