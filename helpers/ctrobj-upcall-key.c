/* ctrobj-upcall-key: what /sbin/request-key runs per key request when it
 * was built (scripts/build-c-helpers.sh: static against musl, so the exec
 * costs about 0.2 ms against 0.6 ms for ctrobj-upcall). The key route
 * itself, one implementation for both, is CShim's keyhelper.c. */
#include "cshim.h"

int main(int argc, char **argv)
{
	return ccs_key_helper(argc, argv);
}
