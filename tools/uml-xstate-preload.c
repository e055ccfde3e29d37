/*
 * LD_PRELOAD shim for Debian's linux.uml (6.1) on hosts with a large XSAVE area.
 *
 * UML 6.1 saves and restores a guest thread's FPU state with
 * ptrace(PTRACE_GETREGSET / PTRACE_SETREGSET, NT_X86_XSTATE) through an 832-byte buffer
 * (legacy area + header + AVX). A host kernel only accepts SETREGSET with the complete
 * XSAVE area (arch/x86/kernel/fpu/regset.c: count != fpu_user_cfg.max_size -> EFAULT),
 * which is ~11 KiB on CPUs with AVX-512 and AMX, so the guest's init dies at once
 * ("userspace - ptrace set fp regs failed, errno = 14").
 *
 * This shim keeps, for each UML buffer address (one per guest thread), a full-size shadow:
 * GETREGSET reads the full area into the shadow and hands UML the part it asked for;
 * SETREGSET overlays UML's part on the shadow and writes the full area. So every guest
 * thread keeps its whole register state, including the parts UML does not know about.
 * Requests whose buffer is already big enough pass through untouched.
 *
 * Built on demand by tools/uml-run (gcc -shared -fPIC -O2 ... -ldl).
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <elf.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ptrace.h>
#include <sys/types.h>
#include <sys/uio.h>

#define PROBE_SIZE (64 * 1024)
#define SLOTS 8192

typedef long (*ptrace_fn)(int, pid_t, void *, void *);

struct shadow {
    void *owner;            /* UML's buffer address, NULL when free */
    unsigned char *area;    /* full XSAVE area, full_size bytes */
};

static ptrace_fn real_ptrace;
static size_t full_size;
static struct shadow shadows[SLOTS];

static long call_real(int request, pid_t pid, void *addr, void *data)
{
    if (!real_ptrace)
        real_ptrace = (ptrace_fn)dlsym(RTLD_NEXT, "ptrace");
    return real_ptrace(request, pid, addr, data);
}

/* The host's full XSAVE size: the kernel trims iov_len to it on GETREGSET. */
static size_t host_xstate_size(pid_t pid)
{
    if (full_size == 0) {
        void *probe = malloc(PROBE_SIZE);
        struct iovec iov = { probe, PROBE_SIZE };
        if (probe && call_real(PTRACE_GETREGSET, pid, (void *)NT_X86_XSTATE, &iov) == 0)
            full_size = iov.iov_len;
        free(probe);
    }
    return full_size;
}

static struct shadow *shadow_for(void *owner, int create)
{
    size_t start = ((uintptr_t)owner >> 4) % SLOTS;
    for (size_t i = 0; i < SLOTS; i++) {
        struct shadow *s = &shadows[(start + i) % SLOTS];
        if (s->owner == owner)
            return s;
        if (s->owner == NULL) {
            if (!create)
                return NULL;
            s->area = malloc(full_size);
            if (!s->area)
                return NULL;
            s->owner = owner;
            return s;
        }
    }
    return NULL;   /* table full: the caller falls back to the thread's current state */
}

static long get_xstate(pid_t pid, struct iovec *uml)
{
    struct shadow *s = shadow_for(uml->iov_base, 1);
    unsigned char *area = s ? s->area : malloc(full_size);
    struct iovec iov = { area, full_size };
    long rc;

    if (!area) {
        errno = ENOMEM;
        return -1;
    }
    rc = call_real(PTRACE_GETREGSET, pid, (void *)NT_X86_XSTATE, &iov);
    if (rc == 0)
        memcpy(uml->iov_base, area, uml->iov_len);
    if (!s)
        free(area);
    return rc;
}

static long set_xstate(pid_t pid, struct iovec *uml)
{
    struct shadow *s = shadow_for(uml->iov_base, 0);
    unsigned char *area = s ? s->area : malloc(full_size);
    struct iovec iov = { area, full_size };
    long rc;

    if (!area) {
        errno = ENOMEM;
        return -1;
    }
    if (!s && call_real(PTRACE_GETREGSET, pid, (void *)NT_X86_XSTATE, &iov) != 0) {
        free(area);
        return -1;
    }
    memcpy(area, uml->iov_base, uml->iov_len);
    iov.iov_len = full_size;
    rc = call_real(PTRACE_SETREGSET, pid, (void *)NT_X86_XSTATE, &iov);
    if (!s)
        free(area);
    return rc;
}

long ptrace(enum __ptrace_request request, ...)
{
    va_list ap;
    va_start(ap, request);
    pid_t pid = va_arg(ap, pid_t);
    void *addr = va_arg(ap, void *);
    void *data = va_arg(ap, void *);
    va_end(ap);

    if ((request == PTRACE_GETREGSET || request == PTRACE_SETREGSET)
        && (uintptr_t)addr == NT_X86_XSTATE && data != NULL) {
        struct iovec *uml = data;
        size_t size = host_xstate_size(pid);
        if (size > 0 && uml->iov_len < size)
            return request == PTRACE_GETREGSET ? get_xstate(pid, uml) : set_xstate(pid, uml);
    }
    return call_real((int)request, pid, addr, data);
}
