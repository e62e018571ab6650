// Counts OpenMP parallel regions (libgomp's GOMP_parallel entry) of a run: LD_PRELOAD shim
// that prints, at exit, how many regions were entered with more than one thread requested
// (num_threads 0 = the default team, or > 1) and how many ran serially through an if() clause
// (GCC passes num_threads 1 then). Per generated token = the difference between two runs
// that generate different numbers of tokens, divided by that difference.
//   gcc -O2 -shared -fPIC -o /tmp/omp_region_count.so bench/omp_region_count.c -ldl
//   LD_PRELOAD=/tmp/omp_region_count.so lowbit generate -m MODEL -n 32 --temperature 0 ...
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

static atomic_long parallel_regions, serial_regions;

static void report(void) {
  fprintf(stderr, "omp_region_count: %ld parallel regions, %ld serial (if clause false)\n",
          (long)parallel_regions, (long)serial_regions);
}

void GOMP_parallel(void (*fn)(void*), void* data, unsigned num_threads, unsigned flags) {
  static void (*real)(void (*)(void*), void*, unsigned, unsigned);
  if (!real) {
    real = (void (*)(void (*)(void*), void*, unsigned, unsigned))dlsym(RTLD_NEXT, "GOMP_parallel");
    atexit(report);
  }
  if (num_threads == 1)
    atomic_fetch_add(&serial_regions, 1);
  else
    atomic_fetch_add(&parallel_regions, 1);
  real(fn, data, num_threads, flags);
}
