/*
 * osu.c: the Open MPI side of `go run ./bench osu`, OSU-style measurements
 * that mirror bench/osurank (the pispace side) case for case.
 *
 * Usage: mpirun -n N osu CASE...   where CASE is KIND:PARAM:ITERS:WARMUP
 *   lat:SIZE        ping-pong between ranks 0 and 1, half round trip in us
 *   bw:SIZE         windows of WINDOW non-blocking sends 0 -> 1, then a
 *                   4-byte ack back; MB/s (1e6 bytes)
 *   allreduce:COUNT MPI_Allreduce of COUNT doubles (sum), us per call
 *   barrier:0       MPI_Barrier, us per call
 * Rank 0 prints one line per case: "osu KIND PARAM VALUE UNIT".
 * Every rank checks the allreduce result; a wrong sum exits non-zero.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WINDOW 64

static int rank, size;

static void die(const char *msg) {
  fprintf(stderr, "osu rank %d: %s\n", rank, msg);
  MPI_Abort(MPI_COMM_WORLD, 1);
}

static double lat(char *buf, long n, int iters, int warmup) {
  double t0 = 0;
  MPI_Barrier(MPI_COMM_WORLD);
  for (int i = 0; i < warmup + iters; i++) {
    if (i == warmup) t0 = MPI_Wtime();
    if (rank == 0) {
      MPI_Send(buf, n, MPI_CHAR, 1, 1, MPI_COMM_WORLD);
      MPI_Recv(buf, n, MPI_CHAR, 1, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    } else if (rank == 1) {
      MPI_Recv(buf, n, MPI_CHAR, 0, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
      MPI_Send(buf, n, MPI_CHAR, 0, 1, MPI_COMM_WORLD);
    }
  }
  return (MPI_Wtime() - t0) * 1e6 / (2.0 * iters);
}

/* Like osu_bw, the sender sends one buffer WINDOW times; each receive has
 * its own slice of buf, as no two pending receives may share one. */
static double bw(char *buf, long n, int iters, int warmup) {
  MPI_Request reqs[WINDOW];
  char ack[4] = {0};
  double t0 = 0;
  MPI_Barrier(MPI_COMM_WORLD);
  for (int i = 0; i < warmup + iters; i++) {
    if (i == warmup) t0 = MPI_Wtime();
    if (rank == 0) {
      for (int w = 0; w < WINDOW; w++)
        MPI_Isend(buf, n, MPI_CHAR, 1, 2, MPI_COMM_WORLD, &reqs[w]);
      MPI_Waitall(WINDOW, reqs, MPI_STATUSES_IGNORE);
      MPI_Recv(ack, 4, MPI_CHAR, 1, 3, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    } else if (rank == 1) {
      for (int w = 0; w < WINDOW; w++)
        MPI_Irecv(buf + (long)w * n, n, MPI_CHAR, 0, 2, MPI_COMM_WORLD, &reqs[w]);
      MPI_Waitall(WINDOW, reqs, MPI_STATUSES_IGNORE);
      MPI_Send(ack, 4, MPI_CHAR, 0, 3, MPI_COMM_WORLD);
    }
  }
  double secs = MPI_Wtime() - t0;
  return (double)n * WINDOW * iters / secs / 1e6;
}

static double allreduce(long count, int iters, int warmup) {
  double *send = malloc(count * sizeof(double));
  double *recv = malloc(count * sizeof(double));
  if (!send || !recv) die("out of memory");
  for (long j = 0; j < count; j++) send[j] = rank + 1 + (double)(j % 7);
  double t0 = 0;
  MPI_Barrier(MPI_COMM_WORLD);
  for (int i = 0; i < warmup + iters; i++) {
    if (i == warmup) t0 = MPI_Wtime();
    MPI_Allreduce(send, recv, count, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
  }
  double us = (MPI_Wtime() - t0) * 1e6 / iters;
  double ranks = (double)size * (size + 1) / 2;
  for (long j = 0; j < count; j++)
    if (recv[j] != ranks + (double)size * (double)(j % 7)) die("allreduce: wrong sum");
  free(send);
  free(recv);
  return us;
}

static double barrier(int iters, int warmup) {
  double t0 = 0;
  MPI_Barrier(MPI_COMM_WORLD);
  for (int i = 0; i < warmup + iters; i++) {
    if (i == warmup) t0 = MPI_Wtime();
    MPI_Barrier(MPI_COMM_WORLD);
  }
  return (MPI_Wtime() - t0) * 1e6 / iters;
}

static void run(const char *spec) {
  char kind[32];
  long param;
  int iters, warmup;
  if (sscanf(spec, "%31[a-z]:%ld:%d:%d", kind, &param, &iters, &warmup) != 4 || iters < 1 ||
      warmup < 0 || param < 0)
    die("bad case (want KIND:PARAM:ITERS:WARMUP)");
  double v;
  const char *unit = "us";
  if (strcmp(kind, "lat") == 0 || strcmp(kind, "bw") == 0) {
    if (size < 2) die("point-to-point cases need 2 ranks");
    int isbw = kind[0] == 'b';
    long len = param * (isbw && rank == 1 ? WINDOW : 1) + 1;
    char *buf = malloc(len);
    if (!buf) die("out of memory");
    memset(buf, 'a', len);
    v = isbw ? bw(buf, param, iters, warmup) : lat(buf, param, iters, warmup);
    if (isbw) unit = "MB/s";
    free(buf);
  } else if (strcmp(kind, "allreduce") == 0) {
    v = allreduce(param, iters, warmup);
  } else if (strcmp(kind, "barrier") == 0) {
    v = barrier(iters, warmup);
  } else {
    die("unknown case kind");
    return;
  }
  if (rank == 0) {
    printf("osu %s %ld %.6g %s\n", kind, param, v, unit);
    fflush(stdout);
  }
}

int main(int argc, char **argv) {
  MPI_Init(&argc, &argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  for (int i = 1; i < argc; i++) run(argv[i]);
  MPI_Finalize();
  return 0;
}
