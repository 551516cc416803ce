/* bench_rag.h - what bench_rag.c (the load and query steps) and
 * bench_retrieve.c (step 5) share. One process, one thread running them. */
#ifndef KM_BENCH_RAG_H
#define KM_BENCH_RAG_H

#include "rag/rag.h"

/* Print the error and exit (a benchmark's main-level failure). */
void die(const struct km_err *e);
/* CPU seconds (user + system) of process pid so far, from /proc. */
double cpu_of(int pid);
/* The p-th percentile (0..1) of v[0..n); sorts v. */
double pct(double *v, int n, double p);
/* One bare top-10 HNSW query of collection c for q; returns its seconds. */
double raw_query(struct rag_db *db, const struct rag_collection *c, const float *q);
/* Step 5: nq query texts through POST /v1/embeddings, the bare SQL and
 * POST /v1/retrieve of the server on 127.0.0.1:port, printed. */
void retrieve_vs_sql(struct rag_db *db, const struct rag_collection *c, int nq, int port);

#endif
