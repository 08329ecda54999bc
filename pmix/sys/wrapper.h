/* What gangway-pmix-sys declares: the PMIx server API and the few client-side calls a server
 * process also makes (event handlers, version and error strings). Used only by the bindings
 * generator (tests/bindings.rs), never at build time. */
#include <pmix_server.h>
#include <pmix.h>
