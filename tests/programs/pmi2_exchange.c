/*
 * pmi2_exchange.c - exercise a PMI-2 server through Slurm's client library
 * (Debian libpmi2-0-dev: <slurm/pmi2.h>, -lpmi2). No MPI involved.
 *
 * Build: cc -O2 -Wall -I/usr/include/slurm -o pmi2_exchange pmi2_exchange.c -lpmi2
 *
 * Steps, each checked:
 *   PMI2_Init -> rank/size/appnum/spawned
 *   PMI2_Job_GetId
 *   PMI2_Info_GetJobAttr("PMI_process_mapping")   (must be found and start "(vector,")
 *   PMI2_Info_GetJobAttr("gangway-no-such-attr")  (must succeed with found = false)
 *   PMI2_KVS_Put("pmi2x-<rank>", "v<rank>;j=<jobid>")
 *   PMI2_KVS_Fence
 *   PMI2_KVS_Get of every other rank's key     (value must match)
 *   node attribute: the lowest rank on this node (from GANGWAY_LOCAL_RANK == 0 if set,
 *     else rank 0) puts "pmi2x-node" = "root<rank>"; every rank then gets it with wait=TRUE
 *     (non-roots may well ask before the root has put it: the server must hold the reply);
 *     then a wait=FALSE get of "pmi2x-never-put" must succeed with found = false
 *   PMI2_KVS_Fence (second round: make sure a fence after gets works)
 *   PMI2_Finalize
 *
 * Output, one line per rank on stdout on success:
 *   pmi2: rank R of N jobid J appnum A kvs ok (K keys) nodeattr ok mapping M
 * On failure: "pmi2: rank R FAIL <what>" on stderr, exit 1.
 *
 * Options:
 *   --no-node-attr   skip the node attribute step
 *   --sleep-root MS  the node root sleeps MS milliseconds before putting the node
 *                    attribute (default 200), to exercise wait=TRUE
 *   --plain-values   put values without ';' and '=' (default values contain both,
 *                    to check the server's escaping of ';;' and first-'=' splitting)
 *
 * Without a PMI server (no PMI_FD / PMI_PORT) the library runs as a singleton and
 * PMI2_Job_GetId fails: "pmi2: rank 0 FAIL PMI2_Job_GetId returned 14", exit 1.
 */
#include <pmi2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int g_rank = -1;

#define CHECK(call, what)                                                       \
    do {                                                                        \
        int rc_ = (call);                                                       \
        if (rc_ != PMI2_SUCCESS) {                                              \
            fprintf(stderr, "pmi2: rank %d FAIL %s returned %d\n", g_rank,      \
                    (what), rc_);                                               \
            return 1;                                                           \
        }                                                                       \
    } while (0)

static void sleep_ms(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv)
{
    int use_node_attr = 1;
    int plain_values = 0;
    long root_sleep_ms = 200;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--no-node-attr") == 0) {
            use_node_attr = 0;
        } else if (strcmp(argv[i], "--plain-values") == 0) {
            plain_values = 1;
        } else if (strcmp(argv[i], "--sleep-root") == 0 && i + 1 < argc) {
            root_sleep_ms = atol(argv[++i]);
        } else {
            fprintf(stderr, "usage: %s [--no-node-attr] [--sleep-root MS] [--plain-values]\n", argv[0]);
            return 2;
        }
    }

    int spawned = -1, size = -1, rank = -1, appnum = -1;
    CHECK(PMI2_Init(&spawned, &size, &rank, &appnum), "PMI2_Init");
    g_rank = rank;

    if (!PMI2_Initialized()) {
        fprintf(stderr, "pmi2: rank %d FAIL PMI2_Initialized is false\n", rank);
        return 1;
    }
    if (size < 1 || rank < 0 || rank >= size) {
        fprintf(stderr, "pmi2: rank %d FAIL bad rank/size %d/%d\n", rank, rank, size);
        return 1;
    }
    if (spawned != 0) {
        fprintf(stderr, "pmi2: rank %d FAIL spawned=%d for a normal job\n", rank, spawned);
        return 1;
    }

    /* Cross-check against the launcher's environment when present. */
    const char *env_rank = getenv("PMI_RANK");
    if (env_rank && atoi(env_rank) != rank) {
        fprintf(stderr, "pmi2: rank %d FAIL PMI_RANK=%s disagrees with fullinit\n", rank, env_rank);
        return 1;
    }
    const char *env_size = getenv("PMI_SIZE");
    if (env_size && atoi(env_size) != size) {
        fprintf(stderr, "pmi2: rank %d FAIL PMI_SIZE=%s but fullinit size=%d\n", rank, env_size, size);
        return 1;
    }

    char jobid[PMI2_MAX_VALLEN] = "";
    CHECK(PMI2_Job_GetId(jobid, sizeof jobid), "PMI2_Job_GetId");
    if (jobid[0] == '\0') {
        fprintf(stderr, "pmi2: rank %d FAIL empty job id\n", rank);
        return 1;
    }

    char mapping[PMI2_MAX_VALLEN] = "";
    int found = 0;
    CHECK(PMI2_Info_GetJobAttr("PMI_process_mapping", mapping, sizeof mapping, &found),
          "PMI2_Info_GetJobAttr(PMI_process_mapping)");
    if (!found || mapping[0] == '\0') {
        fprintf(stderr, "pmi2: rank %d FAIL PMI_process_mapping missing or empty\n", rank);
        return 1;
    }
    if (strncmp(mapping, "(vector,", 8) != 0) {
        fprintf(stderr, "pmi2: rank %d FAIL PMI_process_mapping malformed: %s\n", rank, mapping);
        return 1;
    }

    /* A job attribute that does not exist must come back as not found, not an error. */
    char dummy[64];
    found = 1;
    CHECK(PMI2_Info_GetJobAttr("gangway-no-such-attr", dummy, sizeof dummy, &found),
          "PMI2_Info_GetJobAttr(missing)");
    if (found) {
        fprintf(stderr, "pmi2: rank %d FAIL missing job attribute reported as found\n", rank);
        return 1;
    }

    char key[PMI2_MAX_KEYLEN], val[PMI2_MAX_VALLEN], expect[PMI2_MAX_VALLEN];
    snprintf(key, sizeof key, "pmi2x-%d", rank);
    /* Include a ';' and an '=' to check escaping and first-'='-split handling. */
    const char *fmt = plain_values ? "v%d-j-%s" : "v%d;j=%s";
    snprintf(val, sizeof val, fmt, rank, jobid);
    CHECK(PMI2_KVS_Put(key, val), "PMI2_KVS_Put");
    CHECK(PMI2_KVS_Fence(), "PMI2_KVS_Fence");

    int nkeys = 0;
    for (int r = 0; r < size; r++) {
        if (r == rank)
            continue;
        int vallen = 0;
        snprintf(key, sizeof key, "pmi2x-%d", r);
        snprintf(expect, sizeof expect, fmt, r, jobid);
        memset(val, 0, sizeof val);
        CHECK(PMI2_KVS_Get(jobid, r, key, val, sizeof val, &vallen), "PMI2_KVS_Get");
        if (strcmp(val, expect) != 0) {
            fprintf(stderr, "pmi2: rank %d FAIL key %s = '%s', expected '%s'\n", rank, key, val, expect);
            return 1;
        }
        nkeys++;
    }

    const char *node_result = "skipped";
    if (use_node_attr) {
        const char *lr = getenv("GANGWAY_LOCAL_RANK");
        int is_root = lr ? atoi(lr) == 0 : rank == 0;
        char nodeval[PMI2_MAX_VALLEN] = "";
        if (is_root) {
            sleep_ms(root_sleep_ms);
            snprintf(nodeval, sizeof nodeval, "root%d", rank);
            CHECK(PMI2_Info_PutNodeAttr("pmi2x-node", nodeval), "PMI2_Info_PutNodeAttr");
        }
        char got[PMI2_MAX_VALLEN] = "";
        found = 0;
        CHECK(PMI2_Info_GetNodeAttr("pmi2x-node", got, sizeof got, &found, 1),
              "PMI2_Info_GetNodeAttr(wait)");
        if (!found || strncmp(got, "root", 4) != 0) {
            fprintf(stderr, "pmi2: rank %d FAIL node attribute found=%d value='%s'\n", rank, found, got);
            return 1;
        }
        if (is_root && strcmp(got, nodeval) != 0) {
            fprintf(stderr, "pmi2: rank %d FAIL node attribute '%s', put '%s'\n", rank, got, nodeval);
            return 1;
        }
        /* Non-waiting get of an attribute nobody put: found must be false. */
        found = 1;
        CHECK(PMI2_Info_GetNodeAttr("pmi2x-never-put", got, sizeof got, &found, 0),
              "PMI2_Info_GetNodeAttr(nowait)");
        if (found) {
            fprintf(stderr, "pmi2: rank %d FAIL never-put node attribute reported found\n", rank);
            return 1;
        }
        node_result = "ok";
    }

    CHECK(PMI2_KVS_Fence(), "PMI2_KVS_Fence(2)");

    printf("pmi2: rank %d of %d jobid %s appnum %d kvs ok (%d keys) nodeattr %s mapping %s\n",
           rank, size, jobid, appnum, nkeys, node_result, mapping);
    fflush(stdout);

    CHECK(PMI2_Finalize(), "PMI2_Finalize");
    return 0;
}
