#!/bin/sh
# env.sh - non-MPI example: print what the launcher told this rank.
#
#   gangway run -n 4 examples/env.sh
#
# One line per rank, fields separated by single spaces, unset variables shown as "-":
#   env: rank R size N local_rank L local_size LS node_id I nnodes NN host H pmi_rank PR pmi_size PS pmi_fd F pmi_port P pmi_id ID pmi_jobid J job_id JID nodelist NL mpi_localrankid LR mpi_localnranks LN
# With -v (first argument) it also prints every GANGWAY_*/PMI_*/MPI_* variable,
# sorted, as "env: R VAR=value" lines. PMI_VERSION / PMI_SUBVERSION should never
# appear there: gangway must not export them.

v() { eval "x=\${$1-}"; if [ -n "$x" ]; then printf '%s' "$x"; else printf '%s' -; fi; }

host=$(hostname 2>/dev/null || uname -n)
echo "env: rank $(v GANGWAY_RANK) size $(v GANGWAY_SIZE) local_rank $(v GANGWAY_LOCAL_RANK)" \
    "local_size $(v GANGWAY_LOCAL_SIZE) node_id $(v GANGWAY_NODE_ID) nnodes $(v GANGWAY_NNODES)" \
    "host $host pmi_rank $(v PMI_RANK) pmi_size $(v PMI_SIZE) pmi_fd $(v PMI_FD)" \
    "pmi_port $(v PMI_PORT) pmi_id $(v PMI_ID) pmi_jobid $(v PMI_JOBID) job_id $(v GANGWAY_JOB_ID)" \
    "nodelist $(v GANGWAY_NODELIST) mpi_localrankid $(v MPI_LOCALRANKID) mpi_localnranks $(v MPI_LOCALNRANKS)"

if [ "${1-}" = "-v" ]; then
    r=${GANGWAY_RANK:-${PMI_RANK:--}}
    env | grep -E '^(GANGWAY|PMI|MPI)_' | LC_ALL=C sort | while IFS= read -r line; do
        echo "env: $r $line"
    done
fi
exit 0
